//! `Db` is the store's public face: append batches, select series by matchers, list labels, and
//! open/recover/flush the files behind them. This file holds the `Db` value itself, its series
//! table and the operations every part shares; the rest is split by concern:
//! - `recover`: opening the files and rebuilding the in-memory state from them;
//! - `append`: the write path (the one door for samples, and chunk closing);
//! - `read`: select, latest samples, series and label listing;
//! - `maintain`: the background work that keeps the store inside its budget: closing idle open
//!   chunks, removing series that have nothing left, compacting the series log;
//! - `stats` and `cardinality`: store figures.
//!
//! Concurrency (how a reader never blocks appends for longer than one chunk copy):
//! - The series table is a `RwLock` over pages of per-series `Mutex`es. Appenders and readers take
//!   the table lock shared; only series creation and removal take it exclusively, briefly.
//! - An append locks one series at a time (once per batch entry), encodes into a stack buffer and
//!   copies the changed bytes into that series' mapped head slot. No global lock on this path.
//! - A reader locks a series only to copy its open chunk (≤ 504 bytes) and its chunk references;
//!   it then copies closed chunks out of the ring under each segment's shared lock and decodes
//!   outside every lock (`SelectedSeries::samples`). `Db::series` copies only chunk references
//!   and open-chunk bounds, then reads closed chunks' 28-byte headers the same way.
//! - Closing a chunk takes the ring's allocation mutex for a few bytes of bookkeeping; recycling
//!   the oldest segment waits for the (short) copies in flight from it.
//! - Lock order: index → table → series → ring allocation → segment. Nothing waits on the index
//!   while holding a later lock.

mod append;
mod cardinality;
mod delete;
mod maintain;
mod read;
mod recover;
mod stats;

pub use append::{AcceptedSample, AppendObserver, AppendReport, Rejection, SeriesKey, SeriesSamples};
pub use cardinality::Cardinality;
pub use delete::DeleteReport;
pub use maintain::MaintenanceReport;
pub use read::{LatestSample, PlannedSelection};
pub use stats::{Stats, WriteHealth};

use crate::chunk::EncoderState;
use crate::head::{HeadFiles, Slot};
use crate::index::{Index, SelectionCache};
use crate::labels::validate_labels;
use crate::paged::Paged;
use crate::ring::{ChunkRef, Ring};
use crate::sample::now_ms;
use crate::series_log::{SeriesLog, SeriesRecord};
use crate::{Error, Labels, Options};
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

/// Stable identifier of a series for the life of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u64);

/// Every this many samples the open chunk's encoder state is kept as a checkpoint, so a query
/// for the newest samples decodes from a checkpoint instead of from the start of the chunk.
const CHECKPOINT_EVERY: u16 = 32;

/// Per-series in-memory state: the open chunk's encoder, ordering state, chunk references and the
/// head slot holding the open chunk (none between chunks). Labels live in the index, samples in
/// mapped files. Kept small (one per live series, 72 bytes, pinned by a test): the newest sample
/// is the encoder's last one, kept when a chunk closes.
#[derive(Debug)]
struct SeriesState {
    /// The open chunk's encoder; between chunks (`num_samples == 0`) only `last_ts_ms` and
    /// `last_value_bits` mean something: the series' newest sample, when it has samples.
    enc: EncoderState,
    /// Closed chunks and checkpoints, when the series has either.
    extra: Option<Box<Extra>>,
    head: HeadSlot,
}

/// What only some series need, behind one thin pointer in every series' state: most series of a
/// churning cluster never close a chunk nor reach `CHECKPOINT_EVERY` samples in one.
#[derive(Debug, Default)]
struct Extra {
    /// Closed chunks in the ring, oldest first. An exact-size slice, not a `Vec`: a list that only
    /// changes when a chunk closes (rarely) would otherwise keep up to half its capacity unused,
    /// 16 bytes a slot, for the series' life.
    chunks: Box<[ChunkRef]>,
    /// Encoder states of the open chunk at the two newest multiples of `CHECKPOINT_EVERY` samples,
    /// newest first (`num_samples == 0`: none). Two, so the older one is at least
    /// `CHECKPOINT_EVERY` samples behind the newest sample. Boxed apart from the chunks, so a
    /// series whose short chunks closed idle does not carry them. Kept (cleared) when a chunk
    /// closes, for the next chunk of a series this long.
    checkpoints: Option<Box<[EncoderState; 2]>>,
}

/// Whether a series has samples, and the head slot it holds. One 8-byte field: the slot's size
/// class has byte values to spare for the two slotless states, where a flag beside an
/// `Option<Slot>` would pad the series' state by 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadSlot {
    /// No sample yet.
    NoSamples,
    /// Samples, and no slot: no open chunk.
    NoSlot,
    /// Samples, and this slot, which holds the open chunk (or, right after a chunk closed, is
    /// kept for the next one).
    Held(Slot),
}

impl Default for SeriesState {
    fn default() -> Self {
        SeriesState::new()
    }
}

impl SeriesState {
    /// A series with no samples yet and no head slot.
    fn new() -> SeriesState {
        SeriesState { enc: EncoderState::default(), extra: None, head: HeadSlot::NoSamples }
    }

    /// Closed chunks in the ring, oldest first.
    #[inline]
    fn chunks(&self) -> &[ChunkRef] {
        self.extra.as_ref().map_or(&[], |extra| &extra.chunks)
    }

    /// The open chunk's checkpoints, newest first (none, or two of which either may be empty:
    /// `num_samples == 0`).
    #[inline]
    fn checkpoints(&self) -> &[EncoderState] {
        self.extra.as_ref().and_then(|extra| extra.checkpoints.as_deref()).map_or(&[], |c| c.as_slice())
    }

    /// Keeps `enc` as the newest checkpoint (the newest one so far becomes the older).
    fn push_checkpoint(&mut self, enc: EncoderState) {
        let extra = self.extra.get_or_insert_with(Box::default);
        let checkpoints = extra.checkpoints.get_or_insert_with(Box::default);
        **checkpoints = [enc, checkpoints[0]];
    }

    /// Sets the open chunk's checkpoints (recovery).
    fn set_checkpoints(&mut self, checkpoints: [EncoderState; 2]) {
        if checkpoints[0].num_samples > 0 {
            self.extra.get_or_insert_with(Box::default).checkpoints = Some(Box::new(checkpoints));
        }
    }

    /// Forgets the checkpoints of a chunk that closed (their box is kept for the next one).
    fn clear_checkpoints(&mut self) {
        if let Some(checkpoints) = self.extra.as_mut().and_then(|extra| extra.checkpoints.as_mut()) {
            **checkpoints = [EncoderState::default(); 2];
        }
    }

    /// Whether the series has a newest sample (`newest_ts_ms`, `newest_value_bits`).
    #[inline]
    fn has_samples(&self) -> bool {
        self.head != HeadSlot::NoSamples
    }

    /// Marks the series as having samples (its newest is the encoder's last one).
    fn set_has_samples(&mut self) {
        if self.head == HeadSlot::NoSamples {
            self.head = HeadSlot::NoSlot;
        }
    }

    /// The head slot the series holds.
    #[inline]
    fn slot(&self) -> Option<Slot> {
        match self.head {
            HeadSlot::Held(slot) => Some(slot),
            HeadSlot::NoSamples | HeadSlot::NoSlot => None,
        }
    }

    /// Gives the series `slot` (replacing any it held): only once the open chunk in it has samples.
    #[inline]
    fn set_slot(&mut self, slot: Slot) {
        self.head = HeadSlot::Held(slot);
    }

    /// Takes the head slot out of the series' state (the caller releases it).
    fn take_slot(&mut self) -> Option<Slot> {
        let slot = self.slot();
        if slot.is_some() {
            self.head = HeadSlot::NoSlot;
        }
        slot
    }

    /// Timestamp of the newest sample (meaningful when `has_samples`).
    #[inline]
    fn newest_ts_ms(&self) -> i64 {
        self.enc.last_ts_ms
    }

    /// Value bits of the newest sample (meaningful when `has_samples`).
    #[inline]
    fn newest_value_bits(&self) -> u64 {
        self.enc.last_value_bits
    }

    /// The state to encode the next sample from: the open chunk's, or a fresh one.
    #[inline]
    fn encoder(&self) -> EncoderState {
        if self.enc.num_samples == 0 {
            EncoderState::default()
        } else {
            self.enc
        }
    }

    /// Forgets the open chunk (closed or dropped), keeping the newest sample.
    fn clear_open_chunk(&mut self) {
        let (last_ts_ms, last_value_bits) = (self.enc.last_ts_ms, self.enc.last_value_bits);
        self.enc = EncoderState::default();
        self.enc.last_ts_ms = last_ts_ms;
        self.enc.last_value_bits = last_value_bits;
    }

    /// Drops the references of the first `n` closed chunks and appends `added`.
    fn replace_chunks(&mut self, n: usize, added: Option<ChunkRef>) {
        if n == 0 && added.is_none() {
            return;
        }
        let kept = self.chunks().get(n..).unwrap_or_default();
        let chunks: Box<[ChunkRef]> = kept.iter().copied().chain(added).collect();
        self.set_chunks(chunks);
    }

    /// Sets the closed chunks (and drops `extra` when nothing is left in it).
    fn set_chunks(&mut self, chunks: impl Into<Box<[ChunkRef]>>) {
        let chunks = chunks.into();
        match self.extra.as_mut() {
            Some(extra) if chunks.is_empty() && extra.checkpoints.is_none() => self.extra = None,
            Some(extra) => extra.chunks = chunks,
            None if chunks.is_empty() => {}
            None => self.extra = Some(Box::new(Extra { chunks, checkpoints: None })),
        }
    }

    /// Appends to `out` the references of the closed chunks a read of `[mint_ms, maxt_ms]` needs
    /// (oldest first, up to the first that reaches `maxt_ms`), and says whether the open chunk
    /// overlaps the window too.
    #[inline]
    fn window_chunks(&self, mint_ms: i64, maxt_ms: i64, out: &mut Vec<ChunkRef>) -> bool {
        let chunks = self.chunks();
        let first = chunks.partition_point(|c| c.max_ts_ms < mint_ms);
        for c in &chunks[first..] {
            out.push(*c);
            if c.max_ts_ms >= maxt_ms {
                break;
            }
        }
        let e = &self.enc;
        e.num_samples > 0 && e.first_ts_ms <= maxt_ms && e.last_ts_ms >= mint_ms
    }
}

/// The time-series store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Db {
    options: Options,
    dir: std::sync::Arc<dyn crate::storage::Directory>,
    index: RwLock<Index>,
    /// Sorted ids of recent selections (see `SelectionCache`).
    selections: SelectionCache,
    table: RwLock<Paged<Mutex<SeriesState>>>,
    heads: HeadFiles,
    ring: Ring,
    series_log: Mutex<SeriesLog>,
    head_samples: AtomicI64,
    head_bytes: AtomicI64,
    duplicates: AtomicU64,
    rejected: [AtomicU64; 3],
    /// Why the latest append failed for lack of space (see `Db::write_health`).
    no_space: Mutex<Option<String>>,
    /// Whether `no_space` is set (read on every append without taking its lock).
    refusing_writes: std::sync::atomic::AtomicBool,
    series_created: AtomicU64,
    series_removed: AtomicU64,
    /// `Index::next_id` at the previous maintenance pass: a series below it that never got a
    /// sample has had a whole pass to get one.
    maintained_below_id: AtomicU32,
    /// Told of every stored sample (forwarding); set at most once.
    observer: std::sync::OnceLock<std::sync::Arc<dyn AppendObserver>>,
    /// Whether a sample arrived late since the store opened: only then do chunk cuts keep their
    /// newest samples open for more (`Db::close_all_but_newest`), which costs a little.
    late_samples_seen: std::sync::atomic::AtomicBool,
    /// Samples stored late since open (`Stats::late_samples_stored`).
    late_samples_stored: AtomicU64,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("data_dir", &self.options.data_dir).finish_non_exhaustive()
    }
}

impl Db {
    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Installs the one [`AppendObserver`] (every later append tells it of the samples it
    /// stored). Returns the observer back when one is installed already.
    pub fn set_append_observer(
        &self,
        observer: std::sync::Arc<dyn AppendObserver>,
    ) -> Result<(), std::sync::Arc<dyn AppendObserver>> {
        self.observer.set(observer)
    }

    /// The label set of a live series, by id (`None` once it has been removed).
    pub fn series_labels(&self, id: SeriesId) -> Option<Labels> {
        let id = u32::try_from(id.0).ok()?;
        let index = self.index.read();
        index.contains(id).then(|| index.labels_projected(id, &index.projection(None)))
    }

    /// Returns the id of the series with these labels, creating it (without samples) if needed.
    /// Appends name their series inside the batch instead ([`SeriesKey::Labels`]); this is for
    /// callers that register a series before its first sample.
    pub fn resolve(&self, labels: &[(&str, &str)]) -> Result<SeriesId, Error> {
        if self.options.read_only {
            return Err(Error::ReadOnly("opened read-only".into()));
        }
        validate_labels(labels).map_err(|reason| Error::InvalidSeries { index: 0, reason })?;
        let labels = Labels::from_pairs(labels.iter().copied());
        Ok(SeriesId(u64::from(self.resolve_labels(&labels)?.0)))
    }

    /// The id of the live series with exactly these labels (in any order; empty values mean
    /// absent), without creating it.
    pub fn lookup(&self, labels: &[(&str, &str)]) -> Option<SeriesId> {
        let labels = Labels::from_pairs(labels.iter().copied());
        self.index.read().lookup(&labels).map(|id| SeriesId(u64::from(id)))
    }

    fn resolve_labels(&self, labels: &Labels) -> Result<(u32, bool), Error> {
        let resolved = self.resolve_all(std::slice::from_ref(labels))?;
        resolved.first().copied().ok_or_else(|| Error::Full("BUG: a label set resolved to nothing".into()))
    }

    /// The id of every label set (in order) and whether this call created it. The series that are
    /// new are created together: their ids handed out, their identities written to the series log
    /// in one write (compressed together) and only then made visible, so no other writer can
    /// store a sample under an id whose identity is not in the log yet. Either every missing
    /// series is created or none is.
    fn resolve_all(&self, all: &[Labels]) -> Result<Vec<(u32, bool)>, Error> {
        let mut resolved: Vec<Option<(u32, bool)>> = {
            let index = self.index.read();
            all.iter().map(|labels| index.lookup(labels).map(|id| (id, false))).collect()
        };
        if resolved.iter().all(Option::is_some) {
            return Ok(resolved.into_iter().flatten().collect());
        }
        let mut index = self.index.write();
        // Looked up again under the write lock; a label set named twice is created once.
        let mut new_ids: crate::index::KeyedMap<&Labels, u32> = crate::index::KeyedMap::default();
        let mut records: Vec<SeriesRecord> = Vec::new();
        let mut new_plain_bytes = 0u64;
        let created_position = self.ring.position();
        for (labels, slot) in all.iter().zip(resolved.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            if let Some(id) = index.lookup(labels) {
                *slot = Some((id, false));
                continue;
            }
            if let Some(id) = new_ids.get(labels) {
                *slot = Some((*id, false));
                continue;
            }
            let id = index.next_id().checked_add(records.len() as u32).filter(|id| *id != u32::MAX);
            let Some(id) = id else {
                return Err(Error::Full("series id space exhausted".into()));
            };
            new_ids.insert(labels, id);
            new_plain_bytes +=
                crate::series_log::record_bytes(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
            records.push(SeriesRecord { id, created_position, labels: labels.clone() });
            *slot = Some((id, true));
        }
        if !records.is_empty() {
            self.make_room_in_series_log(&mut index, new_plain_bytes)?;
            self.series_log.lock().append_all(&records)?;
            let mut table = self.table.write();
            for record in &records {
                index.insert_with_id(record.id, &record.labels);
                table.set(record.id, Mutex::new(SeriesState::new()));
            }
            self.series_created.fetch_add(records.len() as u64, Ordering::Relaxed);
        }
        Ok(resolved.into_iter().flatten().collect())
    }

    /// Makes room in the series log's share of the budget for `plain_bytes` of new records
    /// (uncompressed, [`crate::series_log::record_bytes`]): when the live identities fill the
    /// share, the series whose newest sample is the oldest go first (their samples with them), as
    /// the oldest chunks go in the ring.
    fn make_room_in_series_log(&self, index: &mut Index, plain_bytes: u64) -> Result<(), Error> {
        let budget = self.options.budget_split().series_log_bytes;
        let (needed, live, slack_plain) = {
            let log = self.series_log.lock();
            (log.disk_bytes_of(plain_bytes), log.live_bytes(), log.plain_bytes_of(budget / 16))
        };
        if live + needed <= budget {
            return Ok(());
        }
        self.evict_oldest_series(index, plain_bytes + slack_plain)?;
        let log = self.series_log.lock();
        if log.live_bytes() + log.disk_bytes_of(plain_bytes) > budget {
            return Err(Error::Full(format!(
                "{plain_bytes} bytes of new label sets do not fit the series log's {budget}-byte share of the storage \
                 budget; raise the budget"
            )));
        }
        Ok(())
    }

    fn retention_cutoff_ms(&self) -> Option<i64> {
        self.options.retention.map(|r| now_ms().saturating_sub(r.as_millis() as i64))
    }

    /// Flushes everything to disk (msync/fsync). Called periodically and on shutdown.
    pub fn flush(&self) -> Result<(), Error> {
        self.heads.flush()?;
        self.ring.flush()?;
        self.series_log.lock().flush()
    }

    /// Flushes and consumes the store (the files stay consistent without it; this bounds loss on
    /// power failure at shutdown).
    pub fn close(self) -> Result<(), Error> {
        self.flush()
        // Drop flushes again; with nothing dirty that is only a few cheap msyncs.
    }
}

impl Drop for Db {
    /// Best-effort flush: the files are consistent without it (see the crash test); it only bounds
    /// loss on a power failure right after shutdown.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "flush on close failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of these lives per series: a byte here is a megabyte at a million series.
    #[test]
    fn series_state_stays_small() {
        assert_eq!(std::mem::size_of::<Slot>(), 8);
        assert_eq!(std::mem::size_of::<HeadSlot>(), 8, "the slotless states fit the slot's niche");
        assert!(std::mem::size_of::<SeriesState>() <= 72, "{} bytes", std::mem::size_of::<SeriesState>());
        assert!(std::mem::size_of::<Mutex<SeriesState>>() <= 80);
    }
}
