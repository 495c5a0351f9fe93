//! `Db` is the store's public face: append batches, select series by matchers, list labels, and
//! open/recover/flush the files behind them.
//!
//! Concurrency (how a reader never blocks appends for longer than one chunk copy):
//! - The series table is a `RwLock` over blocks of per-series `Mutex`es. Appenders and readers take
//!   the table lock shared; only series creation takes it exclusively, briefly.
//! - An append locks one series at a time (once per batch entry), encodes into a stack buffer and
//!   copies the changed bytes into that series' mapped head slot. No global lock on this path.
//! - A reader locks a series only to copy its open chunk (≤ 504 bytes) and its chunk references;
//!   it then copies closed chunks out of the ring under each segment's shared lock and decodes
//!   outside every lock (`SelectedSeries::samples`).
//! - Closing a chunk takes the ring's allocation mutex for a few bytes of bookkeeping; recycling
//!   the oldest segment waits for the (short) copies in flight from it.
//! - Lock order: index → table → series → ring allocation → segment. Nothing waits on the index
//!   while holding a later lock.

use crate::chunk::{encode_next, ChunkDecoder, EncoderState};
use crate::head::{HeadFiles, Slot, SLOT_PAYLOAD_BYTES};
use crate::index::{Index, SelectionCache};
use crate::labels::validate_labels;
use crate::ring::{ChunkRef, Ring, MAX_SEGMENT_FILES};
use crate::segment::ChunkHeader;
use crate::select::{ChunkSpan, SelectedSeries, READ_PADDING_BYTES};
use crate::series_log::{SeriesLog, SeriesRecord};
use crate::{Error, Labels, Matcher, RejectReason, Sample};
use parking_lot::{Mutex, RwLock};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Stable identifier of a series for the life of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u64);

/// Smallest segment accepted: a header and a few full chunks.
pub const MIN_SEGMENT_BYTES: u64 = 4096;
/// Largest segment (offsets in chunk references are 32-bit).
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// Default segment size bounds: budget / 16, clamped to this range.
const DEFAULT_SEGMENT_MIN_BYTES: u64 = 1 << 20;
const DEFAULT_SEGMENT_MAX_BYTES: u64 = 256 << 20;

/// How to open a store.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding the segment files.
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
        }
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

/// Which series an append entry is for: one already known by id, or a label set that is looked
/// up and created when missing (Prometheus's `Appender.Append(ref, labels, …)` in one type).
#[derive(Debug, Clone, Copy)]
pub enum SeriesKey<'a> {
    /// A series returned earlier by [`Db::append`] or [`Db::resolve`].
    Id(SeriesId),
    /// Labels in any order (the store sorts them); checked by [`validate_labels`].
    Labels(&'a [(&'a str, &'a str)]),
}

impl<'a> SeriesKey<'a> {
    /// The label set, for an entry named by its labels.
    pub fn labels(&self) -> Option<&'a [(&'a str, &'a str)]> {
        match self {
            SeriesKey::Labels(labels) => Some(labels),
            SeriesKey::Id(_) => None,
        }
    }
}

/// One entry of an append batch: a series and its samples, oldest first.
#[derive(Debug, Clone, Copy)]
pub struct SeriesSamples<'a> {
    pub series: SeriesKey<'a>,
    pub samples: &'a [Sample],
}

impl<'a> SeriesSamples<'a> {
    /// An entry for a series known by its id.
    pub fn id(id: SeriesId, samples: &'a [Sample]) -> Self {
        SeriesSamples { series: SeriesKey::Id(id), samples }
    }

    /// An entry for a series named by its labels.
    pub fn labels(labels: &'a [(&'a str, &'a str)], samples: &'a [Sample]) -> Self {
        SeriesSamples { series: SeriesKey::Labels(labels), samples }
    }
}

/// One refused sample of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Index of the entry in the batch.
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
    /// The series id of every batch entry, in batch order (so callers can cache them).
    pub ids: Vec<SeriesId>,
}

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
    /// Compressed bytes holding the samples: chunk records (with headers) and open chunk payloads.
    pub data_bytes: u64,
    /// Samples in open (head) chunks.
    pub head_samples: u64,
    /// Segment files in the ring.
    pub segments: u64,
}

const BLOCK_SERIES: usize = 1024;

/// Every this many samples the open chunk's encoder state is kept as a checkpoint, so a query
/// for the newest samples decodes from a checkpoint instead of from the start of the chunk.
const CHECKPOINT_EVERY: u16 = 32;

/// Per-series in-memory state: the open chunk's encoder, ordering state and chunk references.
/// Labels live in the index, samples in mapped files.
#[derive(Debug)]
struct SeriesState {
    enc: EncoderState,
    /// Encoder states of the open chunk at the two newest multiples of `CHECKPOINT_EVERY` samples,
    /// newest first (`num_samples == 0`: none). Two, so the older one is at least
    /// `CHECKPOINT_EVERY` samples behind the newest sample.
    checkpoints: [EncoderState; 2],
    newest_ts_ms: i64,
    newest_value_bits: u64,
    has_samples: bool,
    chunks: Vec<ChunkRef>,
    slot: Slot,
}

/// One series' newest sample in a window (see [`Db::select_latest`]).
#[derive(Debug, Clone)]
pub struct LatestSample {
    pub id: SeriesId,
    pub labels: Labels,
    pub sample: Sample,
}

/// What happened to one sample.
enum Outcome {
    Appended,
    Duplicate,
    Rejected(RejectReason),
}

/// Counter changes gathered during one batch and applied once (keeps shared cache lines out of the
/// per-sample path).
#[derive(Default)]
struct BatchDelta {
    head_samples: i64,
    head_bytes: i64,
}

/// The time-series store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Db {
    options: Options,
    index: RwLock<Index>,
    /// Sorted ids of recent selections (see `SelectionCache`).
    selections: SelectionCache,
    table: RwLock<Vec<Vec<Mutex<SeriesState>>>>,
    heads: HeadFiles,
    ring: Ring,
    series_log: Mutex<SeriesLog>,
    head_samples: AtomicI64,
    head_bytes: AtomicI64,
    duplicates: AtomicU64,
    rejected: [AtomicU64; 3],
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("data_dir", &self.options.data_dir).finish_non_exhaustive()
    }
}

fn reason_slot(reason: RejectReason) -> usize {
    match reason {
        RejectReason::OutOfOrder => 0,
        RejectReason::DuplicateTimestamp => 1,
        RejectReason::TooOld => 2,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Db {
    /// Opens (or creates) the store in `options.data_dir`, recovering what is there: checksums are
    /// verified, torn tails truncated, unusable files set aside as `*.corrupt`, and what was
    /// dropped is logged.
    pub fn open(options: Options) -> Result<Db, Error> {
        let (segment_bytes, max_segments) = options.ring_geometry()?;
        let dir = options.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let (series_log, records) = SeriesLog::open(&dir.join("series.log"))?;
        let (ring, chunks) = Ring::open(&dir, segment_bytes, max_segments)?;
        let heads = HeadFiles::open(&dir, records.len())?;

        let mut index = Index::new();
        let mut states: Vec<SeriesState> = Vec::with_capacity(records.len());
        for record in &records {
            index.insert(&record.labels);
            states.push(SeriesState {
                enc: EncoderState::default(),
                checkpoints: [EncoderState::default(); 2],
                newest_ts_ms: 0,
                newest_value_bits: 0,
                has_samples: false,
                chunks: Vec::new(),
                slot: heads.slot(record.id)?,
            });
        }
        let mut orphan_chunks = 0u64;
        for chunk in &chunks {
            let series = chunk.header.series as usize;
            match (states.get_mut(series), records.get(series)) {
                (Some(state), Some(record)) if chunk.position >= record.created_position => {
                    state.chunks.push(chunk.chunk_ref);
                }
                _ => orphan_chunks += 1,
            }
        }
        if orphan_chunks > 0 {
            tracing::warn!(orphan_chunks, "dropped chunks of series missing from the series log");
        }
        let (mut head_samples, mut head_bytes, mut dropped_heads, mut closed_twice) = (0i64, 0i64, 0u64, 0u64);
        for (id, state) in states.iter_mut().enumerate() {
            let id = id as u32;
            let contents = state.slot.read();
            let last_closed_max = state.chunks.last().map(|c| c.max_ts_ms);
            let mut recovered = None;
            if contents.series == id && contents.num_samples > 0 {
                let mut decoder = ChunkDecoder::new(&contents.payload, contents.num_samples);
                let mut checkpoints = [EncoderState::default(); 2];
                let mut decoded = 0u16;
                let mut intact = true;
                while let Some(sample) = decoder.next() {
                    if sample.is_err() {
                        intact = false;
                        break;
                    }
                    decoded += 1;
                    if decoded % CHECKPOINT_EVERY == 0 {
                        checkpoints = [decoder.encoder_state(&contents.payload), checkpoints[0]];
                    }
                }
                if intact {
                    recovered = Some(decoder.encoder_state(&contents.payload));
                    state.checkpoints = checkpoints;
                } else {
                    dropped_heads += 1;
                }
            }
            match recovered {
                // The chunk was written to the ring but the slot not yet cleared when the process
                // stopped: the ring copy wins.
                Some(enc) if last_closed_max.is_some_and(|max| max >= enc.first_ts_ms) => {
                    closed_twice += 1;
                    state.checkpoints = [EncoderState::default(); 2];
                    state.slot.claim(id);
                }
                Some(enc) => {
                    state.enc = enc;
                    state.has_samples = true;
                    state.newest_ts_ms = enc.last_ts_ms;
                    state.newest_value_bits = enc.last_value_bits;
                    head_samples += i64::from(enc.num_samples);
                    head_bytes += i64::from(enc.bit_len.div_ceil(8));
                }
                None => state.slot.claim(id),
            }
            if !state.has_samples {
                if let Some((ts, bits)) = last_closed_sample(&ring, id, &state.chunks) {
                    state.has_samples = true;
                    state.newest_ts_ms = ts;
                    state.newest_value_bits = bits;
                }
            }
        }
        if dropped_heads > 0 {
            tracing::warn!(dropped_heads, "dropped open chunks that did not decode");
        }
        let (ring_samples, _, _) = ring.usage();
        tracing::info!(
            dir = %dir.display(),
            series = records.len(),
            chunks = chunks.len(),
            ring_samples,
            head_samples,
            already_closed_heads = closed_twice,
            segments = ring.segment_count(),
            "opened store"
        );
        let mut blocks: Vec<Vec<Mutex<SeriesState>>> = Vec::new();
        for state in states {
            push_series(&mut blocks, state);
        }
        Ok(Db {
            options,
            index: RwLock::new(index),
            selections: SelectionCache::default(),
            table: RwLock::new(blocks),
            heads,
            ring,
            series_log: Mutex::new(series_log),
            head_samples: AtomicI64::new(head_samples),
            head_bytes: AtomicI64::new(head_bytes),
            duplicates: AtomicU64::new(0),
            rejected: Default::default(),
        })
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Returns the id of the series with these labels, creating it (without samples) if needed.
    /// Appends name their series inside the batch instead ([`SeriesKey::Labels`]); this is for
    /// callers that register a series before its first sample.
    pub fn resolve(&self, labels: &[(&str, &str)]) -> Result<SeriesId, Error> {
        validate_labels(labels).map_err(|reason| Error::InvalidSeries { index: 0, reason })?;
        let labels = Labels::from_pairs(labels.iter().copied());
        Ok(SeriesId(u64::from(self.resolve_labels(&labels)?.0)))
    }

    fn resolve_labels(&self, labels: &Labels) -> Result<(u32, bool), Error> {
        if let Some(id) = self.index.read().lookup(labels) {
            return Ok((id, false));
        }
        let mut index = self.index.write();
        if let Some(id) = index.lookup(labels) {
            return Ok((id, false));
        }
        let id = u32::try_from(index.len())
            .ok()
            .filter(|id| *id < u32::MAX)
            .ok_or_else(|| Error::Full("series id space exhausted".into()))?;
        let slot = self.heads.slot(id)?;
        slot.claim(id);
        let record = SeriesRecord { id, created_position: self.ring.position(), labels: labels.clone() };
        self.series_log.lock().append(&record)?;
        index.insert(labels);
        let state = SeriesState {
            enc: EncoderState::default(),
            checkpoints: [EncoderState::default(); 2],
            newest_ts_ms: 0,
            newest_value_bits: 0,
            has_samples: false,
            chunks: Vec::new(),
            slot,
        };
        push_series(&mut self.table.write(), state);
        Ok((id, true))
    }

    fn retention_cutoff_ms(&self) -> Option<i64> {
        self.options.retention.map(|r| now_ms().saturating_sub(r.as_millis() as i64))
    }

    /// The one way samples enter the store. Each entry is one series (by id or by labels) and its
    /// samples, oldest first; each series is locked once for its whole run.
    ///
    /// Every label set is checked ([`validate_labels`]) and every id looked up before the first
    /// series is created or sample stored, so an invalid entry fails the whole call
    /// ([`Error::InvalidSeries`] names it) with no side effect. Per-sample refusals (out of order,
    /// duplicate timestamp, too old) are reported with their entry's index, not errors.
    pub fn append(&self, batch: &[SeriesSamples<'_>]) -> Result<AppendReport, Error> {
        let mut created = 0u64;
        let ids = self.series_ids(batch, &mut created)?;
        let cutoff = self.retention_cutoff_ms();
        let table = self.table.read();
        let mut report = AppendReport { series_created: created, ..AppendReport::default() };
        let mut delta = BatchDelta::default();
        let mut result = Ok(());
        'entries: for (index, (id, entry)) in ids.iter().zip(batch).enumerate() {
            let id = id.0 as u32;
            let mut state = table[id as usize / BLOCK_SERIES][id as usize % BLOCK_SERIES].lock();
            for sample in entry.samples.iter() {
                match self.append_one(&mut state, id, *sample, cutoff, &mut delta) {
                    Ok(outcome) => self.account(outcome, index, sample.ts_ms, &mut report),
                    Err(e) => {
                        result = Err(e);
                        break 'entries;
                    }
                }
            }
        }
        drop(table);
        self.apply(delta);
        report.ids = ids;
        result.map(|()| report)
    }

    /// The id of every batch entry: known ids checked, label sets validated (all of them before the
    /// first series is created), then looked up or created.
    fn series_ids(&self, batch: &[SeriesSamples<'_>], created: &mut u64) -> Result<Vec<SeriesId>, Error> {
        let known = series_count(&self.table.read()) as u64;
        let mut sorted: Vec<Option<Labels>> = Vec::with_capacity(batch.len());
        for (index, entry) in batch.iter().enumerate() {
            match entry.series {
                SeriesKey::Id(id) if id.0 >= known => {
                    return Err(Error::InvalidSeries { index, reason: format!("unknown series id {}", id.0) })
                }
                SeriesKey::Id(_) => sorted.push(None),
                SeriesKey::Labels(labels) => {
                    validate_labels(labels).map_err(|reason| Error::InvalidSeries { index, reason })?;
                    sorted.push(Some(Labels::from_pairs(labels.iter().copied())));
                }
            }
        }
        let mut ids = Vec::with_capacity(batch.len());
        for (entry, labels) in batch.iter().zip(&sorted) {
            match (entry.series, labels) {
                (SeriesKey::Id(id), _) => ids.push(id),
                (SeriesKey::Labels(_), Some(labels)) => {
                    let (id, new) = self.resolve_labels(labels)?;
                    *created += u64::from(new);
                    ids.push(SeriesId(u64::from(id)));
                }
                (SeriesKey::Labels(_), None) => {
                    return Err(Error::InvalidLabels("BUG: label set without its sorted copy".into()))
                }
            }
        }
        Ok(ids)
    }

    #[inline]
    fn account(&self, outcome: Outcome, index: usize, ts_ms: i64, report: &mut AppendReport) {
        match outcome {
            Outcome::Appended => report.appended += 1,
            Outcome::Duplicate => {
                report.duplicates += 1;
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Rejected(reason) => {
                self.rejected[reason_slot(reason)].fetch_add(1, Ordering::Relaxed);
                report.rejections.push(Rejection { index, ts_ms, reason });
            }
        }
    }

    fn apply(&self, delta: BatchDelta) {
        if delta.head_samples != 0 {
            self.head_samples.fetch_add(delta.head_samples, Ordering::Relaxed);
        }
        if delta.head_bytes != 0 {
            self.head_bytes.fetch_add(delta.head_bytes, Ordering::Relaxed);
        }
    }

    /// The per-sample path: ordering checks, encode into a stack buffer, copy the changed bytes into
    /// the mapped slot, publish the count.
    #[inline]
    fn append_one(
        &self,
        s: &mut SeriesState,
        id: u32,
        sample: Sample,
        cutoff_ms: Option<i64>,
        delta: &mut BatchDelta,
    ) -> Result<Outcome, Error> {
        let bits = sample.value.to_bits();
        if s.has_samples {
            if sample.ts_ms < s.newest_ts_ms {
                return Ok(Outcome::Rejected(RejectReason::OutOfOrder));
            }
            if sample.ts_ms == s.newest_ts_ms {
                return Ok(if bits == s.newest_value_bits {
                    Outcome::Duplicate
                } else {
                    Outcome::Rejected(RejectReason::DuplicateTimestamp)
                });
            }
        }
        if cutoff_ms.is_some_and(|cutoff| sample.ts_ms < cutoff) {
            return Ok(Outcome::Rejected(RejectReason::TooOld));
        }
        let mut enc = s.enc;
        let (mut start, mut writer) = encode_next(&mut enc, sample.ts_ms, sample.value);
        if start + writer.bytes().len() > SLOT_PAYLOAD_BYTES || enc.num_samples == u16::MAX {
            self.close_chunk(s, id, delta)?;
            enc = s.enc;
            (start, writer) = encode_next(&mut enc, sample.ts_ms, sample.value);
        }
        let bytes = writer.bytes();
        s.slot.write_payload(start, bytes);
        s.slot.publish_count(enc.num_samples);
        delta.head_samples += 1;
        delta.head_bytes += (start + bytes.len()) as i64 - s.enc.bit_len.div_ceil(8) as i64;
        s.enc = enc;
        if enc.num_samples % CHECKPOINT_EVERY == 0 {
            s.checkpoints = [enc, s.checkpoints[0]];
        }
        s.newest_ts_ms = sample.ts_ms;
        s.newest_value_bits = bits;
        s.has_samples = true;
        Ok(Outcome::Appended)
    }

    /// Moves the open chunk into the ring, then clears the slot (in that order: a kill in between
    /// leaves the samples in both places, and recovery keeps the ring copy).
    fn close_chunk(&self, s: &mut SeriesState, id: u32, delta: &mut BatchDelta) -> Result<(), Error> {
        let n = s.enc.num_samples;
        if n == 0 {
            return Ok(());
        }
        let len = s.enc.bit_len.div_ceil(8) as usize;
        let mut payload = [0u8; SLOT_PAYLOAD_BYTES];
        s.slot.read_payload(&mut payload[..len]);
        let header = ChunkHeader {
            payload_len: len as u16,
            num_samples: n,
            series: id,
            min_ts_ms: s.enc.first_ts_ms,
            max_ts_ms: s.enc.last_ts_ms,
        };
        let chunk_ref = self.ring.write_chunk(&header, &payload[..len])?;
        let stale = s.chunks.iter().take_while(|c| !self.ring.is_live(c)).count();
        s.chunks.drain(..stale);
        s.chunks.push(chunk_ref);
        s.slot.publish_count(0);
        delta.head_samples -= i64::from(n);
        delta.head_bytes -= len as i64;
        s.enc = EncoderState::default();
        s.checkpoints = [EncoderState::default(); 2];
        Ok(())
    }

    /// Series matching all `matchers` with their samples in `[mint_ms, maxt_ms]`, sorted by labels.
    /// Series without samples in the window are left out.
    pub fn select(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Result<Vec<SelectedSeries>, Error> {
        self.select_projected(matchers, mint_ms, maxt_ms, None)
    }

    /// [`Db::select`] returning only the labels named in `keep` (all when `None`); the order is
    /// still that of the full label sets. For readers that look at a few labels only.
    pub fn select_projected(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
        keep: Option<&[String]>,
    ) -> Result<Vec<SelectedSeries>, Error> {
        let mint_ms = self.retention_cutoff_ms().map_or(mint_ms, |cutoff| mint_ms.max(cutoff));
        if mint_ms > maxt_ms {
            return Ok(Vec::new());
        }
        let ids = self.sorted_ids(matchers);
        Ok(self.select_ids(&ids, mint_ms, maxt_ms, keep))
    }

    /// The newest sample in `[mint_ms, maxt_ms]` of each series matching `matchers`, sorted by
    /// labels: what an instant vector selector reads at one time. When the window reaches the
    /// series' newest sample and that sample is in the open chunk, it is read from memory without
    /// decoding anything; otherwise the window is decoded as [`Db::select`] does.
    pub fn select_latest(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
        keep: Option<&[String]>,
    ) -> Result<Vec<LatestSample>, Error> {
        let mint_ms = self.retention_cutoff_ms().map_or(mint_ms, |cutoff| mint_ms.max(cutoff));
        if mint_ms > maxt_ms {
            return Ok(Vec::new());
        }
        let ids = self.sorted_ids(matchers);
        let mut found: Vec<Option<(u32, Sample)>> = Vec::with_capacity(ids.len().min(1 << 16));
        let mut needs_decoding: Vec<u32> = Vec::new();
        {
            let table = self.table.read();
            for &id in ids.iter() {
                let Some(cell) = table.get(id as usize / BLOCK_SERIES).and_then(|b| b.get(id as usize % BLOCK_SERIES))
                else {
                    continue;
                };
                let s = cell.lock();
                if s.enc.num_samples > 0 && s.newest_ts_ms <= maxt_ms {
                    if s.newest_ts_ms >= mint_ms {
                        found.push(Some((id, Sample::new(s.newest_ts_ms, f64::from_bits(s.newest_value_bits)))));
                    }
                } else if s.has_samples {
                    found.push(None);
                    needs_decoding.push(id);
                }
            }
        }
        let mut decoded = self
            .select_ids(&needs_decoding, mint_ms, maxt_ms, Some(&[]))
            .into_iter()
            .filter_map(|series| series.samples().last().map(|sample| (series.id.0 as u32, sample)))
            .peekable();
        // `None` slots stand for `needs_decoding`, in order; `decoded` holds those with a sample.
        let mut pending = needs_decoding.iter();
        let index = self.index.read();
        let projection = index.projection(keep);
        let mut out = Vec::with_capacity(found.len());
        for slot in found {
            let entry = match slot {
                Some(entry) => Some(entry),
                None => {
                    let id = pending.next().copied();
                    match decoded.peek() {
                        Some((decoded_id, _)) if Some(*decoded_id) == id => decoded.next(),
                        _ => None,
                    }
                }
            };
            if let Some((id, sample)) = entry {
                out.push(LatestSample {
                    id: SeriesId(u64::from(id)),
                    labels: index.labels_projected(id, &projection),
                    sample,
                });
            }
        }
        Ok(out)
    }

    /// Ids of the series matching `matchers`, ordered by their label sets.
    fn sorted_ids(&self, matchers: &[Matcher]) -> Arc<[u32]> {
        self.selections.sorted_ids(&self.index.read(), matchers)
    }

    /// [`Db::select`] of the series `ids` (in that order), the window already clamped.
    fn select_ids(&self, ids: &[u32], mint_ms: i64, maxt_ms: i64, keep: Option<&[String]>) -> Vec<SelectedSeries> {
        let mut out = Vec::with_capacity(ids.len().min(1 << 16));
        {
            let table = self.table.read();
            let mut refs: Vec<ChunkRef> = Vec::new();
            let mut head = [0u8; SLOT_PAYLOAD_BYTES];
            for &id in ids {
                let Some(cell) = table.get(id as usize / BLOCK_SERIES).and_then(|b| b.get(id as usize % BLOCK_SERIES))
                else {
                    continue;
                };
                refs.clear();
                let (head_len, head_samples, head_last_ts, head_resume) = {
                    let s = cell.lock();
                    let first = s.chunks.partition_point(|c| c.max_ts_ms < mint_ms);
                    for c in &s.chunks[first..] {
                        refs.push(*c);
                        if c.max_ts_ms >= maxt_ms {
                            break;
                        }
                    }
                    let e = &s.enc;
                    if e.num_samples > 0 && e.first_ts_ms <= maxt_ms && e.last_ts_ms >= mint_ms {
                        // The newest checkpoint before the window: decoding resumes there, so
                        // only the bytes from its position on are copied.
                        let mut resume =
                            s.checkpoints.iter().find(|c| c.num_samples > 0 && c.last_ts_ms < mint_ms).copied();
                        let skip = resume.map_or(0, |c| (c.bit_len / 8) as usize);
                        if let Some(c) = resume.as_mut() {
                            c.bit_len -= skip as u32 * 8;
                        }
                        let len = e.bit_len.div_ceil(8) as usize - skip;
                        s.slot.read_payload_from(skip, &mut head[..len]);
                        (len, e.num_samples, e.last_ts_ms, resume)
                    } else {
                        (0, 0, i64::MIN, None)
                    }
                };
                let mut series = SelectedSeries {
                    id: SeriesId(u64::from(id)),
                    labels: Labels::default(),
                    mint_ms,
                    maxt_ms,
                    chunks: Vec::with_capacity(refs.len() + 1),
                    bytes: Vec::new(),
                    head_resume: None,
                };
                // A chunk whose newest sample is inside the window proves the series has samples
                // there without decoding anything; otherwise look for one.
                let in_window = |ts: i64| ts >= mint_ms && ts <= maxt_ms;
                let mut known_non_empty = head_samples > 0 && in_window(head_last_ts);
                for r in &refs {
                    let start = series.bytes.len();
                    if let Some(h) = self.ring.read_chunk(r, id, &mut series.bytes) {
                        known_non_empty |= in_window(r.max_ts_ms);
                        series.chunks.push(ChunkSpan {
                            start: start as u32,
                            len: h.payload_len,
                            num_samples: h.num_samples,
                        });
                    }
                }
                if head_samples > 0 {
                    let start = series.bytes.len();
                    series.bytes.extend_from_slice(&head[..head_len]);
                    series.chunks.push(ChunkSpan {
                        start: start as u32,
                        len: head_len as u16,
                        num_samples: head_samples,
                    });
                    series.head_resume = head_resume;
                }
                series.bytes.extend_from_slice(&[0; READ_PADDING_BYTES]);
                if known_non_empty || series.samples().next().is_some() {
                    out.push(series);
                }
            }
        }
        let index = self.index.read();
        let projection = index.projection(keep);
        for series in &mut out {
            series.labels = index.labels_projected(series.id.0 as u32, &projection);
        }
        drop(index);
        out
    }

    /// Label sets of the series matching `matchers` with samples in `[mint_ms, maxt_ms]`.
    pub fn series(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Result<Vec<Labels>, Error> {
        Ok(self.select(matchers, mint_ms, maxt_ms)?.into_iter().map(|s| s.labels).collect())
    }

    /// Sorted label names of the series matching `matchers` (all series when empty).
    pub fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, Error> {
        let index = self.index.read();
        if matchers.is_empty() {
            return Ok(index.label_names(None));
        }
        let ids = index.select(matchers);
        Ok(index.label_names(Some(&ids)))
    }

    /// Sorted values of label `name` among the series matching `matchers` (all series when empty).
    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, Error> {
        let index = self.index.read();
        if matchers.is_empty() {
            return Ok(index.label_values(name, None));
        }
        let ids = index.select(matchers);
        Ok(index.label_values(name, Some(&ids)))
    }

    /// Current store figures.
    pub fn stats(&self) -> Stats {
        let series = self.index.read().len() as u64;
        let (ring_samples, ring_bytes, segment_file_bytes) = self.ring.usage();
        let head_samples = self.head_samples.load(Ordering::Relaxed).max(0) as u64;
        let head_bytes = self.head_bytes.load(Ordering::Relaxed).max(0) as u64;
        let samples = ring_samples + head_samples;
        let data_bytes = ring_bytes + head_bytes;
        Stats {
            series,
            samples,
            bytes_on_disk: segment_file_bytes + self.heads.bytes_on_disk() + self.series_log.lock().len_bytes(),
            bytes_per_sample: if samples == 0 { 0.0 } else { data_bytes as f64 / samples as f64 },
            rejected: RejectReason::ALL
                .iter()
                .map(|r| (*r, self.rejected[reason_slot(*r)].load(Ordering::Relaxed)))
                .collect(),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            data_bytes,
            head_samples,
            segments: self.ring.segment_count() as u64,
        }
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

/// Timestamp and value bits of the newest sample in the ring for a series (used on open when
/// its open chunk is empty).
fn last_closed_sample(ring: &Ring, id: u32, chunks: &[ChunkRef]) -> Option<(i64, u64)> {
    let last = chunks.last()?;
    let mut payload = Vec::new();
    let header = ring.read_chunk(last, id, &mut payload)?;
    let sample = ChunkDecoder::new(&payload, header.num_samples).map_while(Result::ok).last()?;
    Some((sample.ts_ms, sample.value.to_bits()))
}

fn series_count(blocks: &[Vec<Mutex<SeriesState>>]) -> usize {
    blocks.last().map_or(0, |last| (blocks.len() - 1) * BLOCK_SERIES + last.len())
}

fn push_series(blocks: &mut Vec<Vec<Mutex<SeriesState>>>, state: SeriesState) {
    if blocks.last().map_or(true, |b| b.len() == BLOCK_SERIES) {
        blocks.push(Vec::with_capacity(BLOCK_SERIES));
    }
    if let Some(block) = blocks.last_mut() {
        block.push(Mutex::new(state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot_of(db: &Db, id: SeriesId) -> Slot {
        db.table.read()[0][id.0 as usize].lock().slot.clone()
    }

    /// Regression guard for the close protocol: a kill after the chunk reached the ring but before
    /// the slot was cleared must not duplicate samples.
    #[test]
    fn chunk_in_ring_and_uncleared_slot_is_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(Options::new(dir.path())).unwrap();
        let id = db.resolve(&[("__name__", "m")]).unwrap();
        let mut written = Vec::new();
        let mut before_close = None;
        for i in 0..10_000i64 {
            let sample = Sample::new(i * 1000, (i * 13 % 97) as f64);
            let contents = slot_of(&db, id).read();
            db.append(&[SeriesSamples::id(id, &[sample])]).unwrap();
            written.push(sample);
            if db.stats().head_samples == 1 && i > 0 {
                before_close = Some(contents);
                break;
            }
        }
        let contents = before_close.expect("a chunk closed");
        // Put the slot back as it was just before it was cleared (the new sample is lost with
        // it: it was never acknowledged in this simulated kill).
        written.pop();
        let slot = slot_of(&db, id);
        slot.write_payload(0, &contents.payload);
        slot.publish_count(contents.num_samples);
        std::mem::forget(db);
        let db = Db::open(Options::new(dir.path())).unwrap();
        let got: Vec<Sample> = db.select(&[], i64::MIN, i64::MAX).unwrap()[0].samples().collect();
        assert_eq!(got, written);
    }
}
