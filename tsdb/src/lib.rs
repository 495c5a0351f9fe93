//! The Ringtail time-series store: a memory-mapped ring of compressed chunks on a fixed disk
//! budget, with an inverted index over series labels.
//!
//! Map of the crate:
//! - `db`: the public face ([`Db`]): the value, its series table and lock order (`db/mod.rs`);
//!   opening and recovery (`db/recover.rs`); the write path, one door for samples, and the
//!   [`AppendObserver`] it tells of every stored sample (`db/append.rs`); select, latest
//!   samples, series and label listing (`db/read.rs`); the background work that keeps the store
//!   in its budget: idle open chunks closed, dead series removed, the series log compacted
//!   (`db/maintain.rs`); figures (`db/stats.rs`, `db/cardinality.rs`).
//! - `paged`: vectors by series id that give memory back when series die.
//! - `options`: [`Options`], how a store is opened (directory, backend, budget, segment size).
//! - `index` (+ `index/postings`, `index/selection_cache`): label set ↔ series id and label →
//!   value → postings.
//! - `chunk` and `bitstream`: sample compression (delta-of-delta timestamps, short decimals with
//!   a Gorilla XOR fallback), bit-exact for every `f64`.
//! - `head`: open chunks in a pool of 512-byte mapped slots, written in place on every append.
//! - `segment` and `ring`: closed chunks in fixed-size segment files reused oldest first.
//! - `series_log`: the append-only file of series identities and removals (compacted).
//! - `lock`: the data directory's lock file (one process per directory).
//! - `storage`: the storage seam, a small `Directory` trait (fixed-size regions, one log, list,
//!   rename, remove) with two implementations chosen by [`Storage`]: memory-mapped files
//!   (`storage/mmap_dir.rs`) and [`MemoryDirectory`] (`storage/memory.rs`, for tests; every
//!   store test runs on both).
//! - `mmap`: the only module with `unsafe` — copies in and out of mapped files, each byte
//!   allocated on disk before it is written (a full volume is an error, never SIGBUS).
//! - `select`: query results that decode lazily; `labels`, `matcher`, `sample`, `error`: types.
//!
//! The key decision: an append writes straight into shared mapped pages (the series' head slot)
//! and publishes the new sample count with one store, so an acknowledged sample survives kill -9
//! with no write-ahead log and no syscall per append; msync (`Db::flush`) only bounds loss on power
//! failure. File formats are in `tsdb/docs/format/`. The storage seam costs the hot path nothing
//! measurable: the directory is a trait object only where files are opened, listed or renamed,
//! and each byte access goes through `storage::Region`, an enum of the two file kinds (one
//! predictable branch, no virtual call).
//!
//! ```
//! use tsdb::{Db, Matcher, Options, Sample, SeriesSamples};
//! let dir = tempfile::tempdir().unwrap();
//! let db = Db::open(Options::new(dir.path())).unwrap();
//! let labels = [("__name__", "up"), ("job", "api")];
//! let samples = [Sample::new(1_000, 1.0), Sample::new(16_000, 1.0)];
//! db.append(&[SeriesSamples::labels(&labels, &samples)]).unwrap();
//! let found = db.select(&[Matcher::equal("job", "api")], 0, 20_000).unwrap();
//! assert_eq!(found[0].samples().count(), 2);
//! ```
#![deny(unsafe_code)]

mod bitstream;
pub mod chunk;
mod db;
mod error;
mod head;
mod index;
mod labels;
mod lock;
mod matcher;
mod mmap;
mod options;
mod paged;
mod ring;
mod sample;
mod segment;
mod select;
mod series_log;
mod storage;

pub use db::{
    AcceptedSample, AppendObserver, AppendReport, Cardinality, Db, DeleteReport, LatestSample, MaintenanceReport,
    PlannedSelection, Rejection, SeriesId, SeriesKey, SeriesSamples, Stats, WriteHealth,
};
pub use error::{Error, RejectReason};
pub use labels::{
    validate_labels, Label, Labels, MAX_LABELS_PER_SERIES, MAX_LABEL_BYTES, MAX_LABEL_SET_BYTES, METRIC_NAME,
};
pub use matcher::{MatchOp, Matcher};
pub use options::{BudgetSplit, Options};
pub use sample::{is_stale_nan, now_ms, stale_nan, Sample, STALE_NAN_BITS};
pub use select::{SampleIter, SelectedSeries};
pub use storage::{MemoryDirectory, Storage};
