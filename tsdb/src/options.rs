//! `Options` is how a store is opened: where its files live (directory and storage backend), the
//! disk budget and its split (ring segments, head slots, series log), flushing and retention.
//!
//! One budget: `storage_size_bytes` bounds every file the store writes. It is split once:
//! 1/8 for head files (open chunks, whole 2 MiB files, at least one), 1/8 for the series log
//! (identities of live series; a compaction drops removed ones), the rest for the ring of closed
//! chunks. When the ring is full its oldest segment is reused (the oldest samples go first); when
//! every head slot holds an open chunk, the stalest open chunks are closed into the ring early;
//! when the live series' identities fill the series log's share, the series whose newest sample
//! is the oldest are removed (with their samples) to make room. Budgets under 32 MiB cannot hold their first head file in their share: that
//! one file (2 MiB) comes on top.

use crate::head::HEAD_FILE_BYTES;
use crate::ring::MAX_SEGMENT_FILES;
use crate::storage::{MemoryDirectory, Storage};
use crate::Error;
use std::path::PathBuf;
use std::time::Duration;

/// Smallest segment accepted: a header and a few full chunks.
pub(crate) const MIN_SEGMENT_BYTES: u64 = 4096;
/// Largest segment (offsets in chunk references are 32-bit).
pub(crate) const MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// Default segment size bounds: budget / 16, clamped to this range.
const DEFAULT_SEGMENT_MIN_BYTES: u64 = 1 << 20;
const DEFAULT_SEGMENT_MAX_BYTES: u64 = 256 << 20;

/// The series log's share is at least this much (small test budgets still hold some series).
const MIN_SERIES_LOG_BYTES: u64 = 1 << 20;

/// How [`Options::storage_size_bytes`] is shared (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSplit {
    /// Closed chunks (the ring of segments).
    pub ring_bytes: u64,
    /// Head files the budget allows, and their bytes.
    pub head_files: usize,
    pub head_bytes: u64,
    /// The series log's share.
    pub series_log_bytes: u64,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding the store's files (not touched with [`Storage::Memory`]).
    pub data_dir: PathBuf,
    /// Total disk budget for every file of the store (see the module documentation for the
    /// split and what happens when each part is full).
    pub storage_size_bytes: u64,
    /// How often mapped pages are flushed to disk (bounds loss on power failure, not on kill -9).
    pub sync_interval: Duration,
    /// Optional time retention: samples older than this are dropped, and a series with no
    /// sample inside it is removed by [`crate::Db::maintain`].
    pub retention: Option<Duration>,
    /// An open chunk with no sample for this long is closed into the ring by
    /// [`crate::Db::maintain`] and its head slot given back (a series that went away stops
    /// holding a slot; one that comes back starts a new chunk).
    pub head_idle_close: Duration,
    /// How much older than its series' newest sample a sample may be and still be stored, in its
    /// place in time: vmagent's parallel queues, a collector's retry queue or two senders of one
    /// series deliver samples a little out of order. Such a sample goes into the series' open
    /// chunk (it must be later than every closed chunk of the series); older ones, and all out of
    /// order samples when this is zero (Prometheus's default), are refused as out of order.
    pub out_of_order_window: Duration,
    /// Size of one ring segment; `None` means budget / 16 clamped to 1 MiB ..= 256 MiB.
    pub segment_size_bytes: Option<u64>,
    /// Where the files live: memory-mapped files in `data_dir` (the default) or in memory.
    pub storage: Storage,
    /// Open without writing anything: no lock file is taken, nothing is created, repaired or
    /// allocated, and every append fails with [`Error::ReadOnly`]. For a volume that is full at
    /// start (queries keep working) and for inspecting a copy of a data directory.
    pub read_only: bool,
}

impl Options {
    /// The defaults for `data_dir`: 1 GiB budget, 1 s sync, no time retention, no out-of-order window.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Options {
            data_dir: data_dir.into(),
            storage_size_bytes: 1 << 30,
            sync_interval: Duration::from_secs(1),
            retention: None,
            head_idle_close: Duration::from_secs(15 * 60),
            out_of_order_window: Duration::ZERO,
            segment_size_bytes: None,
            storage: Storage::Mmap,
            read_only: false,
        }
    }

    /// The defaults, with the files in a new, empty [`MemoryDirectory`] instead of on disk (for
    /// tests). Clones of these options share the files, so opening a store again with a clone is
    /// a restart.
    pub fn in_memory() -> Self {
        Options { storage: Storage::Memory(MemoryDirectory::new()), ..Options::new("<memory>") }
    }

    /// How the budget is split between the ring, the head files and the series log.
    pub fn budget_split(&self) -> BudgetSplit {
        let budget = self.storage_size_bytes;
        let head_files = ((budget / 8) / HEAD_FILE_BYTES).max(1) as usize;
        let series_log_bytes = budget / 8;
        BudgetSplit {
            ring_bytes: budget - budget / 8 - series_log_bytes,
            head_files,
            head_bytes: head_files as u64 * HEAD_FILE_BYTES,
            series_log_bytes: series_log_bytes.max(MIN_SERIES_LOG_BYTES),
        }
    }

    /// The segment size in effect and the number of segments the ring's share of the budget holds.
    pub fn ring_geometry(&self) -> Result<(u64, usize), Error> {
        let ring_bytes = self.budget_split().ring_bytes;
        let segment_bytes = self
            .segment_size_bytes
            .unwrap_or_else(|| (ring_bytes / 16).clamp(DEFAULT_SEGMENT_MIN_BYTES, DEFAULT_SEGMENT_MAX_BYTES));
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&segment_bytes) {
            return Err(Error::InvalidOptions(format!(
                "segment size {segment_bytes} bytes is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}"
            )));
        }
        let count = ring_bytes / segment_bytes;
        if count < 2 {
            return Err(Error::InvalidOptions(format!(
                "storage size {} bytes leaves {ring_bytes} bytes for the ring, fewer than 2 segments of \
                 {segment_bytes} bytes",
                self.storage_size_bytes
            )));
        }
        if count > MAX_SEGMENT_FILES as u64 {
            return Err(Error::InvalidOptions(format!(
                "storage size {} bytes needs {count} segments of {segment_bytes} bytes (max {MAX_SEGMENT_FILES}); \
                 raise the segment size",
                self.storage_size_bytes
            )));
        }
        Ok((segment_bytes, count as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Db, Sample, SeriesSamples};

    #[test]
    fn in_memory_options_share_their_files_across_reopens() {
        let options = Options::in_memory();
        let labels = [("__name__", "up")];
        let db = Db::open(options.clone()).unwrap();
        db.append(&[SeriesSamples::labels(&labels, &[Sample::new(1_000, 1.0)])]).unwrap();
        std::mem::forget(db);
        let db = Db::open(options.clone()).unwrap();
        assert_eq!(db.stats().samples, 1);
        assert!(!options.data_dir.exists(), "nothing on disk");
        let fresh = Db::open(Options::in_memory()).unwrap();
        assert_eq!(fresh.stats().series, 0, "a new in-memory store starts empty");
    }

    #[test]
    fn ring_geometry_defaults_and_limits() {
        let mut options = Options::new("unused");
        let split = options.budget_split();
        assert_eq!(split.ring_bytes, 768 << 20);
        assert_eq!(split.head_files, 63);
        assert_eq!(split.series_log_bytes, 128 << 20);
        assert_eq!(options.ring_geometry().unwrap(), (48 << 20, 16));
        options.storage_size_bytes = 4096;
        assert!(options.ring_geometry().is_err(), "fewer than 2 segments");
        options.segment_size_bytes = Some(1024);
        assert!(options.ring_geometry().is_err(), "segment below the minimum");
    }
}
