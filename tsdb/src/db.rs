//! `Db` is the store's public face: append batches, select series by matchers, list labels.
//!
//! PROVISIONAL: this body is a naive in-memory placeholder that fixes the public API so the other
//! crates can be written against it; the ring store replaces everything behind these signatures.

use crate::{Error, Labels, Matcher, RejectReason, Sample, METRIC_NAME};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Stable identifier of a series for the life of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u64);

/// How to open a store.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding the segment files.
    pub data_dir: PathBuf,
    /// Total disk budget for sample data; the oldest segment is reused when it is full.
    pub storage_size_bytes: u64,
    /// How often mapped pages are flushed to disk (bounds loss on power failure, not on kill -9).
    pub sync_interval: Duration,
    /// Optional time retention: samples older than this are dropped.
    pub retention: Option<Duration>,
}

impl Options {
    /// The defaults for `data_dir`: 1 GiB budget, 1 s sync, no time retention.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Options {
            data_dir: data_dir.into(),
            storage_size_bytes: 1 << 30,
            sync_interval: Duration::from_secs(1),
            retention: None,
        }
    }
}

/// The samples for one series inside an append batch. `labels` must include `__name__`; order does
/// not matter (they are sorted by the store), names must be unique.
#[derive(Debug, Clone, Copy)]
pub struct SeriesSamples<'a> {
    pub labels: &'a [(&'a str, &'a str)],
    pub samples: &'a [Sample],
}

/// One refused sample of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Index of the series in the batch (or of the entry in `append_ids`).
    pub index: usize,
    pub ts_ms: i64,
    pub reason: RejectReason,
}

/// What an append did. Rejections are per sample; everything else in the batch was stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendReport {
    /// Samples newly stored.
    pub appended: u64,
    /// Exact repeats of a series' newest sample, accepted without storing twice.
    pub duplicates: u64,
    /// Series created by this batch.
    pub series_created: u64,
    pub rejections: Vec<Rejection>,
}

/// A series found by `select`, with its samples inside the requested window.
#[derive(Debug, Clone)]
pub struct SelectedSeries {
    pub id: SeriesId,
    pub labels: Labels,
    samples: Vec<Sample>,
}

impl SelectedSeries {
    /// The samples in `[mint, maxt]`, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = Sample> + '_ {
        self.samples.iter().copied()
    }
}

/// Store figures for `/metrics` and benchmarks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub series: u64,
    pub samples: u64,
    pub bytes_on_disk: u64,
    pub bytes_per_sample: f64,
    pub rejected: Vec<(RejectReason, u64)>,
}

#[derive(Default)]
struct Inner {
    ids: HashMap<Labels, SeriesId>,
    series: Vec<(Labels, Vec<Sample>)>,
    rejected: HashMap<RejectReason, u64>,
}

/// The time-series store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Db {
    inner: RwLock<Inner>,
    #[allow(dead_code)]
    options: Options,
}

impl Db {
    /// Opens (or creates) the store in `options.data_dir`, recovering what is there.
    pub fn open(options: Options) -> Result<Db, Error> {
        std::fs::create_dir_all(&options.data_dir).map_err(|e| Error::io(&options.data_dir, e))?;
        Ok(Db { inner: RwLock::new(Inner::default()), options })
    }

    /// Returns the id of the series with these labels, creating it if needed.
    pub fn resolve(&self, labels: &[(&str, &str)]) -> Result<SeriesId, Error> {
        let labels = validate_labels(labels)?;
        let mut inner = self.inner.write();
        Ok(resolve_locked(&mut inner, labels).0)
    }

    /// Appends samples to series already resolved. Per-sample rejections are reported, not errors.
    pub fn append_ids(&self, entries: &[(SeriesId, Sample)]) -> Result<AppendReport, Error> {
        let mut inner = self.inner.write();
        let mut report = AppendReport::default();
        for (index, (id, sample)) in entries.iter().enumerate() {
            append_locked(&mut inner, *id, index, *sample, &mut report)?;
        }
        Ok(report)
    }

    /// Appends a batch of series with their samples. Invalid label sets fail the whole call before
    /// anything is stored; per-sample rejections are reported.
    pub fn append_batch(&self, batch: &[SeriesSamples<'_>]) -> Result<AppendReport, Error> {
        let validated: Vec<Labels> = batch.iter().map(|s| validate_labels(s.labels)).collect::<Result<_, _>>()?;
        let mut inner = self.inner.write();
        let mut report = AppendReport::default();
        for (index, (labels, entry)) in validated.into_iter().zip(batch).enumerate() {
            let (id, created) = resolve_locked(&mut inner, labels);
            report.series_created += u64::from(created);
            for sample in entry.samples {
                append_locked(&mut inner, id, index, *sample, &mut report)?;
            }
        }
        Ok(report)
    }

    /// Series matching all `matchers` with their samples in `[mint_ms, maxt_ms]`. Series without
    /// samples in the window are left out.
    pub fn select(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Result<Vec<SelectedSeries>, Error> {
        let inner = self.inner.read();
        let mut out = Vec::new();
        for (i, (labels, samples)) in inner.series.iter().enumerate() {
            if !matches_all(labels, matchers) {
                continue;
            }
            let window: Vec<Sample> =
                samples.iter().copied().filter(|s| s.ts_ms >= mint_ms && s.ts_ms <= maxt_ms).collect();
            if !window.is_empty() {
                out.push(SelectedSeries { id: SeriesId(i as u64), labels: labels.clone(), samples: window });
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Label sets of the series matching `matchers` with samples in `[mint_ms, maxt_ms]`.
    pub fn series(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Result<Vec<Labels>, Error> {
        Ok(self.select(matchers, mint_ms, maxt_ms)?.into_iter().map(|s| s.labels).collect())
    }

    /// Sorted label names of the series matching `matchers` (all series when empty).
    pub fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, Error> {
        let inner = self.inner.read();
        let mut names: Vec<String> = inner
            .series
            .iter()
            .filter(|(l, _)| matches_all(l, matchers))
            .flat_map(|(l, _)| l.iter().map(|l| l.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Sorted values of label `name` among the series matching `matchers` (all series when empty).
    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, Error> {
        let inner = self.inner.read();
        let mut values: Vec<String> = inner
            .series
            .iter()
            .filter(|(l, _)| matches_all(l, matchers))
            .filter_map(|(l, _)| l.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }

    /// Current store figures.
    pub fn stats(&self) -> Stats {
        let inner = self.inner.read();
        let samples: u64 = inner.series.iter().map(|(_, s)| s.len() as u64).sum();
        Stats {
            series: inner.series.len() as u64,
            samples,
            bytes_on_disk: 0,
            bytes_per_sample: 0.0,
            rejected: RejectReason::ALL.iter().map(|r| (*r, inner.rejected.get(r).copied().unwrap_or(0))).collect(),
        }
    }

    /// Flushes everything to disk (msync/fsync). Called periodically and on shutdown.
    pub fn flush(&self) -> Result<(), Error> {
        Ok(())
    }
}

fn matches_all(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
}

fn validate_labels(labels: &[(&str, &str)]) -> Result<Labels, Error> {
    if !labels.iter().any(|(n, v)| *n == METRIC_NAME && !v.is_empty()) {
        return Err(Error::InvalidLabels("missing __name__".into()));
    }
    let mut names: Vec<&str> = labels.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::InvalidLabels("duplicate label name".into()));
    }
    Ok(Labels::from_pairs(labels.iter().copied()))
}

fn resolve_locked(inner: &mut Inner, labels: Labels) -> (SeriesId, bool) {
    if let Some(id) = inner.ids.get(&labels) {
        return (*id, false);
    }
    let id = SeriesId(inner.series.len() as u64);
    inner.ids.insert(labels.clone(), id);
    inner.series.push((labels, Vec::new()));
    (id, true)
}

fn append_locked(
    inner: &mut Inner,
    id: SeriesId,
    index: usize,
    sample: Sample,
    report: &mut AppendReport,
) -> Result<(), Error> {
    let Some((_, samples)) = inner.series.get_mut(id.0 as usize) else {
        return Err(Error::InvalidLabels(format!("unknown series id {}", id.0)));
    };
    let reason = match samples.last() {
        Some(last) if last.ts_ms > sample.ts_ms => Some(RejectReason::OutOfOrder),
        Some(last) if last.ts_ms == sample.ts_ms && last.bit_eq(&sample) => {
            report.duplicates += 1;
            return Ok(());
        }
        Some(last) if last.ts_ms == sample.ts_ms => Some(RejectReason::DuplicateTimestamp),
        _ => None,
    };
    match reason {
        Some(reason) => {
            *inner.rejected.entry(reason).or_default() += 1;
            report.rejections.push(Rejection { index, ts_ms: sample.ts_ms, reason });
        }
        None => {
            samples.push(sample);
            report.appended += 1;
        }
    }
    Ok(())
}
