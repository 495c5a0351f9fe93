//! `Options` is how a store is opened: where its files live (directory and storage backend), the
//! disk budget and its split into ring segments, flushing and retention.

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

/// How to open a store.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding the store's files (not touched with [`Storage::Memory`]).
    pub data_dir: PathBuf,
    /// Total disk budget for closed chunks (the segment ring); the oldest segment is reused when it
    /// is full. Head slots (512 bytes per series) and the series log come on top.
    pub storage_size_bytes: u64,
    /// How often mapped pages are flushed to disk (bounds loss on power failure, not on kill -9).
    pub sync_interval: Duration,
    /// Optional time retention: samples older than this are dropped.
    pub retention: Option<Duration>,
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
    /// The defaults for `data_dir`: 1 GiB budget, 1 s sync, no time retention.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Options {
            data_dir: data_dir.into(),
            storage_size_bytes: 1 << 30,
            sync_interval: Duration::from_secs(1),
            retention: None,
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

    /// The segment size in effect and the number of segments the budget holds.
    pub fn ring_geometry(&self) -> Result<(u64, usize), Error> {
        let segment_bytes = self.segment_size_bytes.unwrap_or_else(|| {
            (self.storage_size_bytes / 16).clamp(DEFAULT_SEGMENT_MIN_BYTES, DEFAULT_SEGMENT_MAX_BYTES)
        });
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&segment_bytes) {
            return Err(Error::InvalidOptions(format!(
                "segment size {segment_bytes} bytes is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}"
            )));
        }
        let count = self.storage_size_bytes / segment_bytes;
        if count < 2 {
            return Err(Error::InvalidOptions(format!(
                "storage size {} bytes holds fewer than 2 segments of {segment_bytes} bytes",
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
        assert_eq!(options.ring_geometry().unwrap(), (64 << 20, 16));
        options.storage_size_bytes = 4096;
        assert!(options.ring_geometry().is_err(), "fewer than 2 segments");
        options.segment_size_bytes = Some(1024);
        assert!(options.ring_geometry().is_err(), "segment below the minimum");
    }
}
