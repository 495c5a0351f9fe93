//! Integration tests of the ring store through its public API.

/// Append, select, ordering rules, labels, concurrency.
mod api;
/// Child-process crash test: kill -9 at random moments loses no acknowledged sample.
mod crash;
/// Shared helpers (temp stores, sample generators).
mod helpers;
/// Recovery: restart, torn tails, corrupt and foreign files.
mod recovery;
/// The ring wraps at the disk budget and keeps the newest data.
mod ring;
