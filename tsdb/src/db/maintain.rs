//! `Db::maintain` is the background work that keeps the store inside its budget whatever the
//! churn: open chunks idle for `Options::head_idle_close` are closed into the ring and their head
//! slots given back; series with nothing left (no sample inside the retention, or every chunk
//! overwritten by the ring) are removed from the index, the series table and — by a tombstone,
//! then a compaction — the series log.
//!
//! Crash safety: a removal changes memory first and writes its tombstones after; a kill in between
//! brings the series back at the next start with nothing in it, and the next pass removes it
//! again. A compaction writes a new log and renames it over the old one (see `series_log`).

use super::append::BatchDelta;
use super::{Db, SeriesState};
use crate::head::HeadFiles;
use crate::index::Index;
use crate::sample::now_ms;
use crate::series_log::SERIES_LOG_NAME;
use crate::Error;
use std::sync::atomic::Ordering;

/// A series log smaller than this is not worth compacting.
const MIN_COMPACTION_BYTES: u64 = 64 << 10;

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaintenanceReport {
    /// Open chunks closed into the ring because their series went quiet.
    pub idle_chunks_closed: u64,
    /// Series removed.
    pub series_removed: u64,
    /// Whether the series log was compacted.
    pub series_log_compacted: bool,
}

impl Db {
    /// One maintenance pass (the binary runs one every few seconds; cheap when there is nothing
    /// to do: one lock per series).
    pub fn maintain(&self) -> Result<MaintenanceReport, Error> {
        if self.options.read_only {
            return Ok(MaintenanceReport::default());
        }
        let mut report = MaintenanceReport::default();
        let now = now_ms();
        let idle_before = now.saturating_sub(self.options.head_idle_close.as_millis() as i64);
        let cutoff = self.retention_cutoff_ms();
        let quiet_below = self.maintained_below_id.swap(self.index.read().next_id(), Ordering::Relaxed);
        let mut dead: Vec<u32> = Vec::new();
        let mut delta = BatchDelta::default();
        let mut result = Ok(());
        {
            let table = self.table.read();
            for (id, cell) in table.iter() {
                let mut s = cell.lock();
                if s.enc.num_samples > 0 && s.newest_ts_ms() < idle_before {
                    if let Err(e) = self.close_chunk(&mut s, id, &mut delta) {
                        result = Err(e);
                        break;
                    }
                    if let Some(slot) = s.take_slot() {
                        self.heads.release(slot);
                    }
                    report.idle_chunks_closed += 1;
                }
                if self.is_dead(&mut s, id, cutoff, quiet_below) {
                    dead.push(id);
                }
            }
        }
        self.apply(delta);
        result?;
        if !dead.is_empty() {
            report.series_removed = self.remove_series(&dead, cutoff, quiet_below)?;
        }
        report.series_log_compacted = self.compact_series_log_if_worthwhile()?;
        Ok(report)
    }

    /// Whether series `id` has nothing left: every sample older than the retention cutoff, or no
    /// open chunk and every closed chunk overwritten by the ring. A series that never got a
    /// sample is dead once a whole pass went by (`quiet_below`: ids older than the last pass).
    fn is_dead(&self, s: &mut SeriesState, id: u32, cutoff_ms: Option<i64>, quiet_below: u32) -> bool {
        if !s.has_samples() {
            return id < quiet_below;
        }
        if cutoff_ms.is_some_and(|cutoff| s.newest_ts_ms() < cutoff) {
            return true;
        }
        if s.enc.num_samples > 0 {
            return false;
        }
        let overwritten = s.chunks().iter().take_while(|c| !self.ring.is_live(c)).count();
        s.replace_chunks(overwritten, None);
        s.chunks().is_empty()
    }

    /// Removes the series `ids` (sorted) that are still dead under the exclusive locks; returns how
    /// many were removed.
    fn remove_series(&self, ids: &[u32], cutoff_ms: Option<i64>, quiet_below: u32) -> Result<u64, Error> {
        let mut removed: Vec<u32> = Vec::with_capacity(ids.len());
        let mut removed_bytes = 0u64;
        let mut delta = BatchDelta::default();
        {
            let mut index = self.index.write();
            let mut table = self.table.write();
            for &id in ids {
                let still_dead = match table.get(id) {
                    Some(cell) => self.is_dead(&mut cell.lock(), id, cutoff_ms, quiet_below),
                    None => false,
                };
                if !still_dead {
                    continue;
                }
                if let Some(cell) = table.remove(id) {
                    release_state(&self.heads, cell.into_inner(), &mut delta);
                }
                removed_bytes += index.record_bytes(id);
                removed.push(id);
            }
            index.remove(&removed);
        }
        self.apply(delta);
        self.series_removed.fetch_add(removed.len() as u64, Ordering::Relaxed);
        if !removed.is_empty() {
            tracing::debug!(removed = removed.len(), "removed series with nothing left");
        }
        self.series_log.lock().append_removals(&removed, removed_bytes)?;
        Ok(removed.len() as u64)
    }

    /// Removes series, oldest newest sample first, until their identities free `bytes_wanted` of
    /// the series log (called when the live identities fill the log's share of the budget). The
    /// caller holds the index; appends wait on the table for the short while this takes.
    pub(super) fn evict_oldest_series(&self, index: &mut Index, bytes_wanted: u64) -> Result<(), Error> {
        let mut removed: Vec<u32> = Vec::new();
        let mut freed = 0u64;
        let mut delta = BatchDelta::default();
        {
            let mut table = self.table.write();
            let mut by_age: Vec<(i64, u32)> = table
                .iter()
                .map(|(id, cell)| {
                    let s = cell.lock();
                    (if s.has_samples() { s.newest_ts_ms() } else { i64::MIN }, id)
                })
                .collect();
            by_age.sort_unstable();
            for (_, id) in by_age {
                if freed >= bytes_wanted {
                    break;
                }
                if let Some(cell) = table.remove(id) {
                    release_state(&self.heads, cell.into_inner(), &mut delta);
                }
                freed += index.record_bytes(id);
                removed.push(id);
            }
        }
        removed.sort_unstable();
        index.remove(&removed);
        self.apply(delta);
        self.series_removed.fetch_add(removed.len() as u64, Ordering::Relaxed);
        tracing::warn!(
            evicted_series = removed.len(),
            freed_bytes = freed,
            "the series log's share of the storage budget is full: removed the series with the oldest samples"
        );
        let mut log = self.series_log.lock();
        log.append_removals(&removed, freed)?;
        let budget = self.options.budget_split().series_log_bytes;
        if log.len_bytes() > budget + budget / 2 {
            // Tombstones and dead records would push the file past its share before the next
            // maintenance pass: compact now.
            drop(log);
            self.compact_series_log_with(index)?;
        }
        Ok(())
    }

    /// Compacts the series log when removed series take more than half of it (and it is over
    /// [`MIN_COMPACTION_BYTES`], so tiny logs are left alone), or when it outgrew its share.
    fn compact_series_log_if_worthwhile(&self) -> Result<bool, Error> {
        let budget = self.options.budget_split().series_log_bytes;
        let (len, live) = {
            let log = self.series_log.lock();
            (log.len_bytes(), log.live_bytes())
        };
        let mostly_dead = len > MIN_COMPACTION_BYTES && len > 2 * live;
        let over_share = len > budget && len > live + budget / 64;
        if !mostly_dead && !over_share {
            return Ok(false);
        }
        self.compact_series_log()?;
        Ok(true)
    }

    /// Rewrites the series log with only the live series.
    pub(super) fn compact_series_log(&self) -> Result<(), Error> {
        self.compact_series_log_with(&self.index.read())
    }

    /// [`Db::compact_series_log`] for a caller that holds the index.
    pub(super) fn compact_series_log_with(&self, index: &Index) -> Result<(), Error> {
        self.series_log.lock().compact(self.dir.as_ref(), SERIES_LOG_NAME, |id| index.contains(id))
    }
}

/// Gives back what a removed series held: its head slot, and its open chunk's share of the head
/// figures.
pub(super) fn release_state(heads: &HeadFiles, s: SeriesState, delta: &mut BatchDelta) {
    delta.head_samples -= i64::from(s.enc.num_samples);
    delta.head_bytes -= i64::from(s.enc.bit_len.div_ceil(8));
    if let Some(slot) = s.slot() {
        heads.release(slot);
    }
}
