//! `store` puts a [`DecodedRequest`] into the store: one `Db::append` of the whole request (series
//! named by id when the series cache knew them, by labels otherwise), then the newly named series
//! join the cache, and the store's report becomes a [`WriteOutcome`].
//!
//! A series the cache named by id may have been removed by the store since (it had no sample left
//! inside the retention); the store reports those entries instead of storing them, and the
//! receiver decodes the request again without the cache and stores just those entries by labels.
//!
//! The store checks every label set and id before it creates a series or stores a sample, so a
//! request refused there stores nothing either. Per-sample problems (out of order, duplicate
//! timestamp, too old, too far in the future) skip that sample only and are counted.

use super::decode::DecodedRequest;
use crate::error::RemoteWriteError;
use crate::limits::LimitRefusals;
use crate::series_cache::SeriesCache;
use tsdb::{Db, RejectReason};

/// What storing one request did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Samples stored, plus exact repeats of a stored sample (accepted idempotently, as senders
    /// retry).
    pub samples_written: u64,
    pub series_created: u64,
    /// Received but not stored (Ringtail keeps float samples only).
    pub histograms_skipped: u64,
    pub exemplars_skipped: u64,
    pub out_of_order: u64,
    pub duplicate_timestamp: u64,
    pub too_old: u64,
    pub too_far_in_future: u64,
    /// Series left out for breaking a limit (the rest of the request was stored).
    pub refused: LimitRefusals,
}

impl WriteOutcome {
    /// Samples received but not stored, for any reason.
    pub fn samples_rejected(&self) -> u64 {
        self.out_of_order + self.duplicate_timestamp + self.too_old + self.too_far_in_future
    }

    /// Counts per rejection reason, with the reason's metric label value.
    pub fn rejections(&self) -> [(&'static str, u64); 4] {
        [
            (RejectReason::OutOfOrder.as_str(), self.out_of_order),
            (RejectReason::DuplicateTimestamp.as_str(), self.duplicate_timestamp),
            (RejectReason::TooOld.as_str(), self.too_old),
            ("too_far_in_future", self.too_far_in_future),
        ]
    }

    /// A one-line human summary of what was skipped (empty when nothing was).
    pub fn skipped_summary(&self) -> String {
        let mut parts: Vec<String> = self
            .rejections()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(reason, n)| format!("{n} samples skipped ({})", reason.replace('_', " ")))
            .collect();
        if self.histograms_skipped > 0 {
            parts.push(format!("{} native histogram samples ignored", self.histograms_skipped));
        }
        if self.exemplars_skipped > 0 {
            parts.push(format!("{} exemplars ignored", self.exemplars_skipped));
        }
        parts.join("; ")
    }
}

/// Appends a decoded request in one batch and adds the series it named to `cache`. `only`, when
/// given, restricts the batch to those entries (by their index in the request's batch). Returns
/// the outcome and the entries (by their index in the request's batch) the store reported as named
/// by the id of a removed series.
pub(crate) fn store(
    db: &Db,
    cache: Option<&SeriesCache>,
    decoded: &DecodedRequest<'_>,
    only: Option<&[usize]>,
) -> Result<(WriteOutcome, Vec<usize>), RemoteWriteError> {
    let mut outcome = WriteOutcome {
        histograms_skipped: decoded.histograms,
        exemplars_skipped: decoded.exemplars,
        too_far_in_future: decoded.too_far_in_future,
        ..WriteOutcome::default()
    };
    if decoded.series_count() == 0 {
        return Ok((outcome, Vec::new()));
    }
    let batch = decoded.batch();
    let report = match only {
        None => db.append(&batch)?,
        Some(only) => {
            let subset: Vec<_> = only.iter().filter_map(|i| batch.get(*i).copied()).collect();
            let mut report = db.append(&subset)?;
            for removed in &mut report.removed {
                *removed = only.get(*removed).copied().unwrap_or(usize::MAX);
            }
            let mut ids = vec![tsdb::SeriesId(u64::MAX); batch.len()];
            for (i, id) in only.iter().zip(&report.ids) {
                if let Some(slot) = ids.get_mut(*i) {
                    *slot = *id;
                }
            }
            report.ids = ids;
            report
        }
    };
    if let Some(cache) = cache {
        let mut entries = decoded.cache_entries(&report.ids).filter(|(_, _, id)| id.0 != u64::MAX).peekable();
        if entries.peek().is_some() {
            cache.insert_all(entries, db.live_series());
        }
    }
    outcome.samples_written = report.appended + report.duplicates;
    outcome.series_created = report.series_created;
    for rejection in &report.rejections {
        match rejection.reason {
            RejectReason::OutOfOrder => outcome.out_of_order += 1,
            RejectReason::DuplicateTimestamp => outcome.duplicate_timestamp += 1,
            RejectReason::TooOld => outcome.too_old += 1,
        }
    }
    Ok((outcome, report.removed))
}

impl WriteOutcome {
    /// Adds the stored figures of a second pass over part of the same request.
    pub(crate) fn add_stored(&mut self, other: &WriteOutcome) {
        self.samples_written += other.samples_written;
        self.series_created += other.series_created;
        self.out_of_order += other.out_of_order;
        self.duplicate_timestamp += other.duplicate_timestamp;
        self.too_old += other.too_old;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_every_skipped_kind() {
        let outcome = WriteOutcome {
            out_of_order: 2,
            too_far_in_future: 1,
            histograms_skipped: 3,
            exemplars_skipped: 4,
            ..WriteOutcome::default()
        };
        assert_eq!(outcome.samples_rejected(), 3);
        assert_eq!(
            outcome.skipped_summary(),
            "2 samples skipped (out of order); 1 samples skipped (too far in future); \
             3 native histogram samples ignored; 4 exemplars ignored"
        );
        assert_eq!(WriteOutcome::default().skipped_summary(), "");
    }
}
