//! Integration tests of the ring store through its public API. Each store test runs against both
//! storage backends (memory-mapped files and `MemoryDirectory`, see `helpers::both_backends!`);
//! the crash test needs real files and a real process kill, so it runs on mmap only.

/// Append, select, ordering rules, labels, concurrency.
mod api;
/// Series churn: removal, bounded files, stale ids, a full head.
mod churn;
/// Child-process crash test: kill -9 at random moments loses no acknowledged sample.
mod crash;
/// Head slot sizes: small slots for short series, growth, page reuse, the previous format.
mod head_slots;
/// Shared helpers (test stores on either backend, sample generators).
mod helpers;
/// Recovery: restart, torn tails, corrupt and foreign files.
mod recovery;
/// The ring wraps at the disk budget and keeps the newest data.
mod ring;
/// Full volume, read-only opening, the directory lock, budget changes, label set limits.
mod storage_limits;
