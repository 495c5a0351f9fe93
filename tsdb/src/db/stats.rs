//! `Stats` is the store's figures for `/metrics` and benchmarks, and `Db::stats` gathers them.

use super::Db;
use crate::RejectReason;
use std::sync::atomic::Ordering;

/// Store figures for `/metrics` and benchmarks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub series: u64,
    /// Samples held (closed chunks in the ring plus open chunks).
    pub samples: u64,
    /// Size of all files of the store.
    pub bytes_on_disk: u64,
    /// `data_bytes / samples`.
    pub bytes_per_sample: f64,
    pub rejected: Vec<(RejectReason, u64)>,
    /// Exact repeats accepted idempotently since open.
    pub duplicates: u64,
    /// Samples stored late, older than their series' newest, since open
    /// ([`crate::Options::out_of_order_window`]).
    pub late_samples_stored: u64,
    /// Compressed bytes holding the samples: chunk records (with headers) and open chunk payloads.
    pub data_bytes: u64,
    /// Samples in open (head) chunks.
    pub head_samples: u64,
    /// Segment files in the ring.
    pub segments: u64,
    /// Series created since the store was opened.
    pub series_created: u64,
    /// Series removed since the store was opened (no sample left inside the retention, or their
    /// last chunk overwritten by the ring).
    pub series_removed: u64,
    /// Bytes of head slots holding an open chunk, and bytes of allocated slots that are free.
    pub head_slot_bytes_used: u64,
    pub head_slot_bytes_free: u64,
    /// Bytes of the series log file (live identities plus removals not yet compacted away).
    pub series_log_bytes: u64,
    /// The whole disk budget (`Options::storage_size_bytes`) and its split.
    pub budget_bytes: u64,
    pub ring_budget_bytes: u64,
    pub head_budget_bytes: u64,
    pub series_log_budget_bytes: u64,
}

pub(super) fn reason_slot(reason: RejectReason) -> usize {
    match reason {
        RejectReason::OutOfOrder => 0,
        RejectReason::DuplicateTimestamp => 1,
        RejectReason::TooOld => 2,
    }
}

impl Db {
    /// Live series now (cheap: one shared lock).
    pub fn live_series(&self) -> usize {
        self.index.read().len()
    }

    /// Current store figures.
    pub fn stats(&self) -> Stats {
        let series = self.index.read().len() as u64;
        let (ring_samples, ring_bytes, segment_file_bytes) = self.ring.usage();
        let head_samples = self.head_samples.load(Ordering::Relaxed).max(0) as u64;
        let head_bytes = self.head_bytes.load(Ordering::Relaxed).max(0) as u64;
        let samples = ring_samples + head_samples;
        let (head_slot_bytes_used, head_slot_bytes_free) = self.heads.slot_bytes();
        let series_log_bytes = self.series_log.lock().len_bytes();
        let split = self.options.budget_split();
        let data_bytes = ring_bytes + head_bytes;
        Stats {
            series,
            samples,
            bytes_on_disk: segment_file_bytes + self.heads.bytes_on_disk() + series_log_bytes,
            bytes_per_sample: if samples == 0 { 0.0 } else { data_bytes as f64 / samples as f64 },
            rejected: RejectReason::ALL
                .iter()
                .map(|r| (*r, self.rejected[reason_slot(*r)].load(Ordering::Relaxed)))
                .collect(),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            late_samples_stored: self.late_samples_stored.load(Ordering::Relaxed),
            data_bytes,
            head_samples,
            segments: self.ring.segment_count() as u64,
            series_created: self.series_created.load(Ordering::Relaxed),
            series_removed: self.series_removed.load(Ordering::Relaxed),
            head_slot_bytes_used,
            head_slot_bytes_free,
            series_log_bytes,
            budget_bytes: self.options.storage_size_bytes,
            ring_budget_bytes: split.ring_bytes,
            head_budget_bytes: split.head_bytes,
            series_log_budget_bytes: split.series_log_bytes,
        }
    }
}

/// Whether the store takes writes now, for `/-/ready` detail and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteHealth {
    /// Opened read-only ([`crate::Options::read_only`]): every append is refused.
    pub read_only: bool,
    /// Why the latest append failed for lack of space (`None` once an append succeeds again).
    pub no_space: Option<String>,
}

impl Db {
    /// Whether writes are accepted now, and why not.
    pub fn write_health(&self) -> WriteHealth {
        WriteHealth { read_only: self.options.read_only, no_space: self.no_space.lock().clone() }
    }

    /// Remembers the outcome of an append for [`Db::write_health`]. The common case (a success
    /// while nothing was refused) costs one relaxed load, no lock.
    pub(super) fn note_write_outcome<T>(&self, result: &Result<T, crate::Error>) {
        match result {
            Err(e) if e.is_no_space() => {
                *self.no_space.lock() = Some(e.to_string());
                self.refusing_writes.store(true, Ordering::Relaxed);
            }
            Ok(_) if self.refusing_writes.load(Ordering::Relaxed) => {
                self.refusing_writes.store(false, Ordering::Relaxed);
                *self.no_space.lock() = None;
            }
            _ => {}
        }
    }
}
