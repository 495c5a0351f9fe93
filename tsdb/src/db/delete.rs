//! `Db::delete_series` removes whole series on request (Prometheus's
//! `/api/v1/admin/tsdb/delete_series`): the series matching the matchers whose every readable
//! sample lies inside the requested window leave the index, the series table and — by a tombstone
//! in the series log, written before anything changes in memory — the store for good. Their
//! closed chunks stay in the ring until it overwrites them, unreachable: ids are never handed out
//! again, and recovery drops chunks of removed ids.
//!
//! Closed chunks cannot be rewritten in place, so a window that would cut a series in two (samples
//! of it on both sides) is refused as a whole, before anything is removed, with the number of such
//! series and one of them named: the caller widens the window or leaves it out.
//!
//! Crash safety: the tombstones are appended to the series log while the index and the table are
//! locked for writing, then the series are dropped from memory; a kill after the tombstones leaves
//! the series removed at the next start, a kill before leaves them whole. A series that got a
//! sample past the window between the check and the locks is kept (and counted as such).

use super::append::BatchDelta;
use super::Db;
use crate::{Error, Matcher};

/// Series removed under one hold of the write locks; appends wait that long at most, so a large
/// deletion goes in batches.
const DELETE_BATCH_SERIES: usize = 4096;

/// What [`Db::delete_series`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteReport {
    /// Series removed.
    pub series_removed: u64,
    /// Matching series that got a sample after the window while the deletion ran, and were kept.
    pub series_kept: u64,
}

impl Db {
    /// Removes every series matching `matchers` whose readable samples all lie in
    /// `[mint_ms, maxt_ms]` (pass `i64::MIN`/`i64::MAX` for all time). Refuses with
    /// [`Error::PartialDeletion`], removing nothing, when a matching series has samples both
    /// inside and outside the window; series with no sample in the window are left alone.
    pub fn delete_series(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Result<DeleteReport, Error> {
        if self.options.read_only {
            return Err(Error::ReadOnly("opened read-only".into()));
        }
        if mint_ms > maxt_ms {
            return Ok(DeleteReport::default());
        }
        let floor = self.retention_cutoff_ms().unwrap_or(i64::MIN);
        let ids = self.sorted_ids(matchers);
        let mut doomed: Vec<u32> = Vec::new();
        let mut cut: Vec<u32> = Vec::new();
        for chunk in ids.chunks(DELETE_BATCH_SERIES) {
            let inside: Vec<u32> =
                self.select_ids(chunk, mint_ms.max(floor), maxt_ms, Some(&[])).iter().map(|s| s.id.0 as u32).collect();
            if inside.is_empty() {
                continue;
            }
            let mut outside: Vec<u32> = Vec::new();
            if mint_ms > floor {
                outside.extend(self.select_ids(&inside, floor, mint_ms - 1, Some(&[])).iter().map(|s| s.id.0 as u32));
            }
            if maxt_ms < i64::MAX {
                outside
                    .extend(self.select_ids(&inside, maxt_ms + 1, i64::MAX, Some(&[])).iter().map(|s| s.id.0 as u32));
            }
            outside.sort_unstable();
            outside.dedup();
            for id in inside {
                if outside.binary_search(&id).is_ok() {
                    cut.push(id);
                } else {
                    doomed.push(id);
                }
            }
        }
        if let Some(&example) = cut.first() {
            let example = self.series_labels(super::SeriesId(u64::from(example))).unwrap_or_default();
            return Err(Error::PartialDeletion { series: cut.len(), example: example.to_string() });
        }
        doomed.sort_unstable();
        let mut report = DeleteReport::default();
        for batch in doomed.chunks(DELETE_BATCH_SERIES) {
            let (removed, kept) = self.remove_requested(batch, maxt_ms)?;
            report.series_removed += removed;
            report.series_kept += kept;
        }
        if report.series_removed > 0 {
            tracing::info!(removed = report.series_removed, kept = report.series_kept, "series deleted on request");
        }
        Ok(report)
    }

    /// Removes the series `ids` (sorted) whose newest sample is still at or before `maxt_ms`;
    /// returns how many were removed and how many kept.
    fn remove_requested(&self, ids: &[u32], maxt_ms: i64) -> Result<(u64, u64), Error> {
        let mut delta = BatchDelta::default();
        let mut index = self.index.write();
        let mut table = self.table.write();
        let mut removed: Vec<u32> = Vec::with_capacity(ids.len());
        let mut removed_bytes = 0u64;
        let mut kept = 0u64;
        for &id in ids {
            let Some(cell) = table.get(id) else {
                continue;
            };
            let s = cell.lock();
            if s.has_samples() && s.newest_ts_ms() > maxt_ms {
                kept += 1;
                continue;
            }
            drop(s);
            removed_bytes += index.record_bytes(id);
            removed.push(id);
        }
        if removed.is_empty() {
            return Ok((0, kept));
        }
        // The tombstones first: if they cannot be written, nothing is removed.
        self.series_log.lock().append_removals(&removed, removed_bytes)?;
        for &id in &removed {
            if let Some(cell) = table.remove(id) {
                super::maintain::release_state(&self.heads, cell.into_inner(), &mut delta);
            }
        }
        index.remove(&removed);
        drop(table);
        drop(index);
        self.apply(delta);
        self.series_removed.fetch_add(removed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok((removed.len() as u64, kept))
    }
}
