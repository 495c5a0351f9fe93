//! Helpers shared by the integration tests.

use std::path::Path;
use tsdb::{AppendReport, Db, Matcher, Options, Sample, SeriesId, SeriesSamples};

/// Options for a small store in `dir`.
pub fn small_options(dir: &Path, storage_bytes: u64, segment_bytes: u64) -> Options {
    let mut options = Options::new(dir);
    options.storage_size_bytes = storage_bytes;
    options.segment_size_bytes = Some(segment_bytes);
    options
}

/// Appends `(series, sample)` pairs, one batch entry each (so a rejection's index is the pair's).
pub fn append_pairs(db: &Db, pairs: &[(SeriesId, Sample)]) -> Result<AppendReport, tsdb::Error> {
    let batch: Vec<SeriesSamples<'_>> =
        pairs.iter().map(|(id, sample)| SeriesSamples::id(*id, std::slice::from_ref(sample))).collect();
    db.append(&batch)
}

/// All samples of the series `__name__=name` in the whole time range.
pub fn all_samples(db: &Db, name: &str) -> Vec<Sample> {
    let found = db.select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX).unwrap();
    assert!(found.len() <= 1, "expected at most one series named {name}");
    found.first().map(|s| s.samples().collect()).unwrap_or_default()
}

/// A deterministic xorshift generator (fixed seeds, no dependency on `rand` versions).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
