//! `queue` is forwarding's on-disk queue: every sample the store accepts is appended, in the order
//! the store accepted it, to numbered segment files under `<data dir>/forward/`, one record per
//! append batch, and each destination reads it from a durable position of its own.
//!
//! Format: a segment `{seq:016}.seg` is a run of records, each `[body length u32][samples u32]
//! [CRC-32C of the body u32][body]` (little-endian), the body snappy-compressed. Uncompressed, a
//! body is `[declarations u32]` declarations, then the samples, 20 bytes each: `[series id u32]
//! [timestamp ms i64][value bits u64]`. A declaration, `[series id u32][labels u16]` then per
//! label `[length u16][name][length u16][value]`, gives a series' labels the first time a segment
//! names it, so every segment reads on its own (a dropped segment takes nothing of the others
//! with it). A destination's position is `{name hash}.position` (see `PositionFile`): segment,
//! offset and the samples of that record already sent, written in place after every batch the
//! destination acknowledged.
//!
//! Durability: a record is written with one `write` before the store's append returns, so before
//! the sample is acknowledged to whoever sent it; it is in the page cache then and survives
//! `kill -9` (power loss is bounded by the store's own sync). A torn tail (a crash inside a
//! `write`) fails its CRC and is cut off at open. The queue keeps at most its share of the
//! storage budget: past it the oldest segment is dropped and the samples any destination had not
//! sent from it are counted as dropped, never silently lost; segments every destination has sent
//! are deleted at once.

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tsdb::{AcceptedSample, Db, Labels};

/// Bytes of a record's header.
const RECORD_HEADER_BYTES: u64 = 12;
/// Bytes of one sample in a body.
const SAMPLE_BYTES: usize = 20;
/// Smallest queue (a smaller share is raised to this).
pub const MIN_QUEUE_BYTES: u64 = 8 << 20;
/// Largest segment file.
const MAX_SEGMENT_BYTES: u64 = 64 << 20;
/// Largest record body accepted when reading (larger is corruption).
const MAX_BODY_BYTES: u64 = 1 << 30;

/// A set of series ids as a bitmap (ids are dense: a million series take 128 KiB).
#[derive(Debug, Default)]
struct IdSet {
    words: Vec<u64>,
}

impl IdSet {
    fn contains(&self, id: u32) -> bool {
        self.words.get(id as usize / 64).is_some_and(|w| w & (1 << (id % 64)) != 0)
    }
    fn insert(&mut self, id: u32) {
        let word = id as usize / 64;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (id % 64);
    }
    fn clear(&mut self) {
        self.words.clear();
    }
}

/// Where a destination is in the queue: the record at `offset` of segment `seq`, of which the
/// first `skip` samples are behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub seq: u64,
    pub offset: u64,
    pub skip: u32,
}

/// One sample read back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueuedSample {
    pub series: u32,
    pub ts_ms: i64,
    pub value: f64,
}

/// What one read gave: the series declared in it (labels by id), its samples, and the position
/// after it. A batch never spans two segments; `segment` says which it is from.
#[derive(Debug, Default)]
pub struct ReadBatch {
    pub segment: u64,
    pub declarations: Vec<(u32, Labels)>,
    pub samples: Vec<QueuedSample>,
    pub end: Position,
}

/// The per-destination figures the queue keeps up to date.
#[derive(Debug, Clone, Default)]
pub struct ReaderMetrics {
    /// Samples written and not yet sent (or dropped).
    pub pending: Gauge,
    /// Samples dropped before they were sent: the queue's budget overwrote them.
    pub dropped_overwritten: Counter,
    /// Samples dropped before they were sent: the queue could not write them.
    pub dropped_write_failed: Counter,
}

struct Segment {
    seq: u64,
    bytes: u64,
    samples: u64,
}

struct ReaderSlot {
    name: String,
    position: PositionFile,
    acked: Position,
    /// Bumped whenever the writer moves `acked` past dropped data.
    moved: u64,
    metrics: ReaderMetrics,
}

struct State {
    /// Oldest first; the last is the one being written.
    segments: VecDeque<Segment>,
    /// The last segment, open for appending; `None` means the next write starts a new segment.
    file: Option<File>,
    /// Series declared in the segment being written.
    declared: IdSet,
    readers: Vec<ReaderSlot>,
    next_seq: u64,
    total_bytes: u64,
    body: Vec<u8>,
    record: Vec<u8>,
    last_error_logged: Option<std::time::Instant>,
}

/// The queue: one writer (the store's append observer) and one reader per destination.
pub struct Queue {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    state: Mutex<State>,
    written: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("dir", &self.dir).field("max_bytes", &self.max_bytes).finish_non_exhaustive()
    }
}

/// The position file of destination `name`.
fn position_file_name(name: &str) -> String {
    use md5::{Digest, Md5};
    let hash: String = Md5::digest(name.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{hash}.position")
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.seg"))
}

impl Queue {
    /// Opens (or creates) the queue in `dir` for the destinations `readers` (name and figures),
    /// keeping at most `max_bytes` (at least [`MIN_QUEUE_BYTES`]). Torn tails are cut off,
    /// positions of destinations no longer configured are removed, and a destination without a
    /// position starts at the end (it is sent what is ingested from now on).
    pub fn open(dir: &Path, max_bytes: u64, readers: Vec<(String, ReaderMetrics)>) -> std::io::Result<Arc<Queue>> {
        std::fs::create_dir_all(dir)?;
        let max_bytes = max_bytes.max(MIN_QUEUE_BYTES);
        let segment_bytes = (max_bytes / 8).clamp(1 << 20, MAX_SEGMENT_BYTES);
        let mut seqs: Vec<u64> = Vec::new();
        let mut position_files: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if let Some(seq) = name.strip_suffix(".seg").and_then(|s| s.parse::<u64>().ok()) {
                seqs.push(seq);
            } else if name.ends_with(".position") {
                position_files.push(path);
            }
        }
        seqs.sort_unstable();
        let mut segments = VecDeque::with_capacity(seqs.len());
        for seq in seqs {
            let path = segment_path(dir, seq);
            let (bytes, samples) = recover_segment(&path)?;
            if bytes == 0 {
                std::fs::remove_file(&path)?;
            } else {
                segments.push_back(Segment { seq, bytes, samples });
            }
        }
        let next_seq = segments.back().map_or(1, |s| s.seq + 1);
        let mut slots = Vec::with_capacity(readers.len());
        for (name, metrics) in readers {
            let (mut position, saved) = PositionFile::open(&dir.join(position_file_name(&name)))?;
            let acked = match saved {
                Ok(Some(saved)) => saved,
                Ok(None) => {
                    // Saved at once: samples queued for it from now on survive a crash before
                    // its first acknowledgement.
                    let start = Position { seq: next_seq, offset: 0, skip: 0 };
                    position.save(start)?;
                    start
                }
                Err(reason) => {
                    let oldest = segments.front().map_or(next_seq, |s| s.seq);
                    tracing::warn!(destination = %name, %reason, "forwarding position unreadable: sending the whole queue again");
                    Position { seq: oldest, offset: 0, skip: 0 }
                }
            };
            let acked = settle_position(acked, &segments, next_seq, &name);
            slots.push(ReaderSlot { name, position, acked, moved: 0, metrics });
        }
        for path in position_files {
            if !slots.iter().any(|slot| slot.position.path == path) {
                let _ = std::fs::remove_file(&path);
            }
        }
        let total_bytes = segments.iter().map(|s| s.bytes).sum();
        let (written, _) = tokio::sync::watch::channel(0u64);
        let queue = Queue {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes,
            state: Mutex::new(State {
                segments,
                file: None,
                declared: IdSet::default(),
                readers: slots,
                next_seq,
                total_bytes,
                body: Vec::new(),
                record: Vec::new(),
                last_error_logged: None,
            }),
            written,
        };
        {
            let mut state = queue.state.lock();
            for slot in 0..state.readers.len() {
                let pending = queue.samples_after(&state, state.readers[slot].acked);
                state.readers[slot].metrics.pending.set(pending as i64);
            }
            queue.delete_sent_segments(&mut state);
            while state.total_bytes > queue.max_bytes && !state.segments.is_empty() {
                queue.drop_oldest(&mut state);
            }
        }
        Ok(Arc::new(queue))
    }

    /// The share of the budget the queue keeps.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes the queue's segments hold now.
    pub fn bytes(&self) -> u64 {
        self.state.lock().total_bytes
    }

    /// A reader for destination number `slot` (in the order given to [`Queue::open`]), starting at
    /// its saved position.
    pub fn reader(self: &Arc<Self>, slot: usize) -> QueueReader {
        let state = self.state.lock();
        let (cursor, moved) = state.readers.get(slot).map_or((Position::default(), 0), |r| (r.acked, r.moved));
        QueueReader {
            queue: self.clone(),
            slot,
            cursor,
            moved_seen: moved,
            declared_up_to: None,
            file: None,
            written: self.written.subscribe(),
            compressed: Vec::new(),
            body: Vec::new(),
            position_error_logged: None,
        }
    }

    /// Appends what the store accepted as one record (the writer side; called by the store's
    /// append observer). Never fails: what cannot be written is counted as dropped for every
    /// destination, and logged.
    pub fn append(&self, db: &Db, accepted: &[AcceptedSample]) {
        if accepted.is_empty() {
            return;
        }
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if let Err(e) = self.ensure_segment(state) {
            self.lose(state, accepted.len() as u64, &format!("cannot start a queue segment: {e}"));
            return;
        }
        // Body: the declarations of series this segment has not named yet, then the samples.
        let mut body = std::mem::take(&mut state.body);
        body.clear();
        body.extend_from_slice(&0u32.to_le_bytes());
        let mut declarations = 0u32;
        let mut unknown: Vec<u32> = Vec::new();
        let mut previous = None;
        for sample in accepted {
            let Ok(id) = u32::try_from(sample.series.0) else {
                continue;
            };
            // A series' samples come together: one lookup per run.
            if previous == Some(id) || state.declared.contains(id) || unknown.contains(&id) {
                previous = Some(id);
                continue;
            }
            previous = Some(id);
            match db.series_labels(sample.series) {
                Some(labels) => {
                    encode_declaration(&mut body, id, &labels);
                    state.declared.insert(id);
                    declarations += 1;
                }
                // Removed right after its samples were stored: nothing can name it any more.
                None => unknown.push(id),
            }
        }
        body[..4].copy_from_slice(&declarations.to_le_bytes());
        let mut samples = 0u32;
        for sample in accepted {
            let Ok(id) = u32::try_from(sample.series.0) else {
                continue;
            };
            if unknown.contains(&id) {
                continue;
            }
            body.extend_from_slice(&id.to_le_bytes());
            body.extend_from_slice(&sample.sample.ts_ms.to_le_bytes());
            body.extend_from_slice(&sample.sample.value.to_bits().to_le_bytes());
            samples += 1;
        }
        let skipped = accepted.len() as u64 - u64::from(samples);
        if skipped > 0 {
            self.lose(state, skipped, "series removed before its samples could be queued");
        }
        let mut record = std::mem::take(&mut state.record);
        record.clear();
        record.resize(RECORD_HEADER_BYTES as usize + snap::raw::max_compress_len(body.len()), 0);
        let compressed = snap::raw::Encoder::new().compress(&body, &mut record[RECORD_HEADER_BYTES as usize..]);
        state.body = body;
        let compressed_len = match compressed {
            Ok(n) => n,
            Err(e) => {
                state.record = record;
                self.forget_segment_declarations(state);
                self.lose(state, u64::from(samples), &format!("cannot compress a queue record: {e}"));
                return;
            }
        };
        record.truncate(RECORD_HEADER_BYTES as usize + compressed_len);
        let crc = crc32c::crc32c(&record[RECORD_HEADER_BYTES as usize..]);
        record[0..4].copy_from_slice(&(compressed_len as u32).to_le_bytes());
        record[4..8].copy_from_slice(&samples.to_le_bytes());
        record[8..12].copy_from_slice(&crc.to_le_bytes());
        let record_bytes = record.len() as u64;
        if record_bytes > self.max_bytes / 2 {
            state.record = record;
            self.forget_segment_declarations(state);
            self.lose(state, u64::from(samples), "one append is larger than half the forwarding queue; raise its size");
            return;
        }
        while state.total_bytes + record_bytes > self.max_bytes && state.segments.len() > 1 {
            self.drop_oldest(state);
        }
        let written = match (state.file.as_mut(), state.segments.back()) {
            (Some(file), Some(segment)) => match file.write_all(&record) {
                Ok(()) => Ok(()),
                Err(e) => {
                    // Cut the torn part off so the segment stays readable.
                    let _ = file.set_len(segment.bytes);
                    Err(e)
                }
            },
            _ => Err(std::io::Error::other("no segment open")),
        };
        state.record = record;
        if let Err(e) = written {
            self.forget_segment_declarations(state);
            self.lose(state, u64::from(samples), &format!("cannot write the forwarding queue: {e}"));
            return;
        }
        if let Some(segment) = state.segments.back_mut() {
            segment.bytes += record_bytes;
            segment.samples += u64::from(samples);
        }
        state.total_bytes += record_bytes;
        for reader in &state.readers {
            reader.metrics.pending.inc_by(i64::from(samples));
        }
        drop(guard);
        self.written.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Starts a new segment when none is open or the open one is full.
    fn ensure_segment(&self, state: &mut State) -> std::io::Result<()> {
        let full = state.segments.back().is_none_or(|s| s.bytes >= self.segment_bytes);
        if state.file.is_some() && !full {
            return Ok(());
        }
        state.declared.clear();
        if let Some(empty) = state.segments.back().filter(|s| s.bytes == 0) {
            // A segment nothing could be written to yet (a full volume): used again rather than
            // leaving one empty file per failed append.
            let file = std::fs::OpenOptions::new().append(true).open(segment_path(&self.dir, empty.seq))?;
            state.file = Some(file);
            return Ok(());
        }
        let seq = state.next_seq;
        let file = std::fs::OpenOptions::new().create_new(true).append(true).open(segment_path(&self.dir, seq))?;
        state.next_seq += 1;
        state.segments.push_back(Segment { seq, bytes: 0, samples: 0 });
        state.file = Some(file);
        Ok(())
    }

    /// After a failed write the segment's declarations are not all on disk: the next append
    /// starts a new segment, which declares everything again.
    fn forget_segment_declarations(&self, state: &mut State) {
        state.file = None;
        state.declared.clear();
    }

    /// Counts `samples` as dropped for every destination and logs why (at most every 10 s).
    fn lose(&self, state: &mut State, samples: u64, reason: &str) {
        for reader in &state.readers {
            reader.metrics.dropped_write_failed.inc_by(samples);
        }
        let now = std::time::Instant::now();
        if state.last_error_logged.is_none_or(|at| now.duration_since(at) >= std::time::Duration::from_secs(10)) {
            state.last_error_logged = Some(now);
            tracing::error!(samples, reason, "forwarding: samples dropped before they were queued");
        }
    }

    /// Drops the oldest segment to keep the budget; destinations that had not sent all of it
    /// count what they had not sent as dropped and move to the next segment.
    fn drop_oldest(&self, state: &mut State) {
        let Some(oldest) = state.segments.pop_front() else {
            return;
        };
        let next = Position { seq: state.segments.front().map_or(state.next_seq, |s| s.seq), offset: 0, skip: 0 };
        let path = segment_path(&self.dir, oldest.seq);
        for reader in &mut state.readers {
            if reader.acked.seq > oldest.seq {
                continue;
            }
            let unsent = if reader.acked.seq == oldest.seq {
                count_samples_from(&path, reader.acked, oldest.bytes).unwrap_or(oldest.samples)
            } else {
                oldest.samples
            };
            reader.metrics.dropped_overwritten.inc_by(unsent);
            reader.metrics.pending.dec_by(unsent as i64);
            reader.acked = next;
            reader.moved += 1;
            tracing::warn!(
                destination = %reader.name,
                samples = unsent,
                "forwarding queue full: dropped samples the destination had not been sent yet (is it down? raise \
                 --forward-queue-size)"
            );
        }
        if state.segments.is_empty() {
            state.file = None;
            state.declared.clear();
        }
        state.total_bytes = state.total_bytes.saturating_sub(oldest.bytes);
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a forwarding queue segment");
        }
    }

    /// Deletes the segments every destination has moved past (never the one being written).
    fn delete_sent_segments(&self, state: &mut State) {
        let Some(min_seq) = state.readers.iter().map(|r| r.acked.seq).min() else {
            return;
        };
        while state.segments.len() > 1 && state.segments.front().is_some_and(|s| s.seq < min_seq) {
            if let Some(segment) = state.segments.pop_front() {
                state.total_bytes = state.total_bytes.saturating_sub(segment.bytes);
                let path = segment_path(&self.dir, segment.seq);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a sent forwarding queue segment");
                }
            }
        }
    }

    /// Samples in the queue at or after `position`.
    fn samples_after(&self, state: &State, position: Position) -> u64 {
        state
            .segments
            .iter()
            .filter(|s| s.seq >= position.seq)
            .map(|s| {
                if s.seq == position.seq && position != (Position { seq: s.seq, offset: 0, skip: 0 }) {
                    count_samples_from(&segment_path(&self.dir, s.seq), position, s.bytes).unwrap_or(s.samples)
                } else {
                    s.samples
                }
            })
            .sum()
    }
}

/// A position that lies in the queue as it is: one inside a dropped segment moves to the oldest
/// kept (what was between is lost, and said so), one past a cut-off tail to the next segment.
fn settle_position(position: Position, segments: &VecDeque<Segment>, next_seq: u64, name: &str) -> Position {
    let start_of = |seq: u64| Position { seq, offset: 0, skip: 0 };
    if let Some(oldest) = segments.front() {
        if position.seq < oldest.seq {
            tracing::warn!(destination = %name, "forwarding: part of the queue this destination had not been sent is gone");
            return start_of(oldest.seq);
        }
    }
    match segments.iter().find(|s| s.seq == position.seq) {
        Some(segment) if position.offset > segment.bytes => {
            segments.iter().find(|s| s.seq > position.seq).map_or(start_of(next_seq), |s| start_of(s.seq))
        }
        Some(_) => position,
        None => segments.iter().find(|s| s.seq > position.seq).map_or(start_of(next_seq), |s| start_of(s.seq)),
    }
}

/// Bytes of one slot of a position file.
const POSITION_SLOT_BYTES: usize = 32;

/// A destination's durable position: two 32-byte slots, `[write count u64][seq u64][offset u64]
/// [skip u32][CRC-32C of the 28 bytes before u32]`, written in turn in place (one `pwrite` per
/// acknowledged batch, no rename: it survives `kill -9` as any write does). The valid slot with
/// the higher count is the position; a slot torn by a power loss fails its CRC and the other one,
/// one batch older, is used.
struct PositionFile {
    path: PathBuf,
    file: File,
    writes: u64,
}

impl PositionFile {
    /// Opens (creating) the file; the saved position, `None` for a new file, or why it is
    /// unreadable.
    fn open(path: &Path) -> std::io::Result<(PositionFile, Result<Option<Position>, String>)> {
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let mut bytes = Vec::new();
        // Two slots are all a position file holds; more is not read.
        std::io::Read::read_to_end(&mut std::io::Read::take(&file, 2 * POSITION_SLOT_BYTES as u64), &mut bytes)?;
        let slots: Vec<(u64, Position)> =
            bytes.chunks_exact(POSITION_SLOT_BYTES).filter_map(parse_position_slot).collect();
        let newest = slots.iter().max_by_key(|(writes, _)| *writes).copied();
        let saved = match (newest, bytes.is_empty()) {
            (Some((_, position)), _) => Ok(Some(position)),
            (None, true) => Ok(None),
            (None, false) => Err(format!("{} holds no valid position", path.display())),
        };
        let writes = newest.map_or(0, |(writes, _)| writes);
        Ok((PositionFile { path: path.to_path_buf(), file, writes }, saved))
    }

    fn save(&mut self, position: Position) -> std::io::Result<()> {
        let writes = self.writes + 1;
        let mut slot = [0u8; POSITION_SLOT_BYTES];
        slot[0..8].copy_from_slice(&writes.to_le_bytes());
        slot[8..16].copy_from_slice(&position.seq.to_le_bytes());
        slot[16..24].copy_from_slice(&position.offset.to_le_bytes());
        slot[24..28].copy_from_slice(&position.skip.to_le_bytes());
        let crc = crc32c::crc32c(&slot[..28]);
        slot[28..32].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all_at(&slot, (writes % 2) * POSITION_SLOT_BYTES as u64)?;
        self.writes = writes;
        Ok(())
    }
}

fn parse_position_slot(slot: &[u8]) -> Option<(u64, Position)> {
    let u64_at = |i: usize| slot.get(i..i + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    let u32_at = |i: usize| slot.get(i..i + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    if u64_at(0)? == 0 || crc32c::crc32c(slot.get(..28)?) != u32_at(28)? {
        return None;
    }
    Some((u64_at(0)?, Position { seq: u64_at(8)?, offset: u64_at(16)?, skip: u32_at(24)? }))
}

/// Reads a segment's records, keeps the valid run from the start and cuts off the rest (a torn
/// tail); returns its length and sample count.
fn recover_segment(path: &Path) -> std::io::Result<(u64, u64)> {
    let data = std::fs::read(path)?;
    let mut offset = 0usize;
    let mut samples = 0u64;
    while let Some((header, body)) = record_at(&data, offset) {
        if crc32c::crc32c(body) != header.crc {
            break;
        }
        samples += u64::from(header.samples);
        offset += RECORD_HEADER_BYTES as usize + body.len();
    }
    if offset < data.len() {
        tracing::warn!(
            path = %path.display(),
            kept = offset,
            cut = data.len() - offset,
            "forwarding queue segment has a torn or damaged tail: cut off"
        );
        std::fs::OpenOptions::new().write(true).open(path)?.set_len(offset as u64)?;
    }
    Ok((offset as u64, samples))
}

#[derive(Debug, Clone, Copy)]
struct RecordHeader {
    body_len: u32,
    samples: u32,
    crc: u32,
}

fn parse_header(bytes: &[u8]) -> Option<RecordHeader> {
    let word = |i: usize| bytes.get(i..i + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    Some(RecordHeader { body_len: word(0)?, samples: word(4)?, crc: word(8)? })
}

/// The record starting at `offset` of `data`, if whole.
fn record_at(data: &[u8], offset: usize) -> Option<(RecordHeader, &[u8])> {
    let header = parse_header(data.get(offset..offset + RECORD_HEADER_BYTES as usize)?)?;
    let start = offset + RECORD_HEADER_BYTES as usize;
    let body = data.get(start..start.checked_add(header.body_len as usize)?)?;
    Some((header, body))
}

/// Samples of a segment from `position` to `end`, by walking the record headers.
fn count_samples_from(path: &Path, position: Position, end: u64) -> std::io::Result<u64> {
    let file = File::open(path)?;
    let mut offset = position.offset;
    let mut count = 0u64;
    let mut header = [0u8; RECORD_HEADER_BYTES as usize];
    let mut first = true;
    while offset + RECORD_HEADER_BYTES <= end {
        file.read_exact_at(&mut header, offset)?;
        let Some(h) = parse_header(&header) else {
            break;
        };
        let skip = if first { u64::from(position.skip) } else { 0 };
        count += u64::from(h.samples).saturating_sub(skip);
        first = false;
        offset += RECORD_HEADER_BYTES + u64::from(h.body_len);
    }
    Ok(count)
}

fn encode_declaration(body: &mut Vec<u8>, id: u32, labels: &Labels) {
    body.extend_from_slice(&id.to_le_bytes());
    body.extend_from_slice(&(labels.len() as u16).to_le_bytes());
    for label in labels.iter() {
        // The store's limits keep names and values under 64 KiB and at most 65535 labels.
        body.extend_from_slice(&(label.name.len() as u16).to_le_bytes());
        body.extend_from_slice(label.name.as_bytes());
        body.extend_from_slice(&(label.value.len() as u16).to_le_bytes());
        body.extend_from_slice(label.value.as_bytes());
    }
}

/// A reading cursor over a body.
struct BodyReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> BodyReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).and_then(|b| b.try_into().ok()).map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    }
    fn text(&mut self) -> Option<&'a str> {
        let len = self.u16()? as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }
}

/// Reads the declarations of a body into `out` and returns the reader at its first sample.
fn read_declarations<'a>(body: &'a [u8], out: &mut Vec<(u32, Labels)>) -> Option<BodyReader<'a>> {
    let mut reader = BodyReader { bytes: body, at: 0 };
    let count = reader.u32()?;
    for _ in 0..count {
        let id = reader.u32()?;
        let labels = reader.u16()?;
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(labels as usize);
        for _ in 0..labels {
            pairs.push((reader.text()?, reader.text()?));
        }
        out.push((id, Labels::from_pairs(pairs)));
    }
    Some(reader)
}

/// One destination's way through the queue.
pub struct QueueReader {
    queue: Arc<Queue>,
    slot: usize,
    cursor: Position,
    moved_seen: u64,
    /// The segment whose declarations before the cursor have been handed out.
    declared_up_to: Option<u64>,
    file: Option<(u64, File)>,
    written: tokio::sync::watch::Receiver<u64>,
    compressed: Vec<u8>,
    body: Vec<u8>,
    position_error_logged: Option<std::time::Instant>,
}

impl std::fmt::Debug for QueueReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueReader").field("slot", &self.slot).field("cursor", &self.cursor).finish_non_exhaustive()
    }
}

/// Where the cursor's segment ends and whether it is still being written.
enum Extent {
    Readable {
        end: u64,
    },
    /// Past the end of everything written.
    CaughtUp,
}

impl QueueReader {
    /// Waits until the queue has had something written since the last call (or `stop` fires).
    pub async fn wait_for_more(&mut self) {
        let _ = self.written.changed().await;
    }

    /// Reads up to about `max_samples` samples from the cursor (whole records, split only when
    /// one record alone holds more). Empty when the destination has been sent everything.
    pub fn read(&mut self, max_samples: usize) -> std::io::Result<ReadBatch> {
        loop {
            let extent = self.locate();
            let end = match extent {
                Extent::CaughtUp => {
                    return Ok(ReadBatch { segment: self.cursor.seq, end: self.cursor, ..ReadBatch::default() })
                }
                Extent::Readable { end } => end,
            };
            let mut batch = ReadBatch { segment: self.cursor.seq, ..ReadBatch::default() };
            if self.declared_up_to != Some(self.cursor.seq) {
                // Entering a segment part-way (after a restart): its earlier declarations first.
                self.read_prelude(&mut batch.declarations)?;
                self.declared_up_to = Some(self.cursor.seq);
            }
            match self.read_records(end, max_samples, &mut batch) {
                Ok(()) => {
                    batch.end = self.cursor;
                    return Ok(batch);
                }
                Err(reason) => {
                    // A damaged record (the disk changed under us): the rest of the segment is
                    // skipped and counted as dropped.
                    let (seq, offset) = (self.cursor.seq, self.cursor.offset);
                    tracing::error!(segment = seq, offset, %reason, "forwarding queue record unreadable: skipping the rest of its segment");
                    let path = segment_path(&self.queue.dir, seq);
                    let lost = count_samples_from(&path, self.cursor, end).unwrap_or(0);
                    let state = self.queue.state.lock();
                    if let Some(reader) = state.readers.get(self.slot) {
                        reader.metrics.dropped_write_failed.inc_by(lost);
                        reader.metrics.pending.dec_by(lost as i64);
                    }
                    self.cursor = Position { seq: seq + 1, offset: 0, skip: 0 };
                    if !batch.samples.is_empty() {
                        batch.end = Position { seq, offset: end, skip: 0 };
                        return Ok(batch);
                    }
                }
            }
        }
    }

    /// Finds the cursor's segment (moving to the next one past an end, or where the writer moved
    /// this destination after a drop) and how far it can be read.
    fn locate(&mut self) -> Extent {
        let state = self.queue.state.lock();
        let Some(slot) = state.readers.get(self.slot) else {
            return Extent::CaughtUp;
        };
        if slot.moved != self.moved_seen {
            self.moved_seen = slot.moved;
            self.cursor = slot.acked;
            self.file = None;
            self.declared_up_to = None;
        }
        loop {
            match state.segments.iter().position(|s| s.seq >= self.cursor.seq) {
                None => return Extent::CaughtUp,
                Some(i) => {
                    let segment = &state.segments[i];
                    if segment.seq > self.cursor.seq {
                        self.cursor = Position { seq: segment.seq, offset: 0, skip: 0 };
                    }
                    if self.cursor.offset < segment.bytes {
                        return Extent::Readable { end: segment.bytes };
                    }
                    if i + 1 == state.segments.len() {
                        return Extent::CaughtUp;
                    }
                    self.cursor = Position { seq: segment.seq + 1, offset: 0, skip: 0 };
                }
            }
        }
    }

    fn open_segment(&mut self) -> std::io::Result<&File> {
        let seq = self.cursor.seq;
        if self.file.as_ref().is_none_or(|(open, _)| *open != seq) {
            self.file = Some((seq, File::open(segment_path(&self.queue.dir, seq))?));
        }
        match &self.file {
            Some((_, file)) => Ok(file),
            None => Err(std::io::Error::other("segment not open")),
        }
    }

    /// Reads the record at `offset` of the open segment into `self.body` (decompressed).
    fn load_record(&mut self, offset: u64, end: u64) -> Result<RecordHeader, String> {
        let file = self.open_segment().map_err(|e| e.to_string())?;
        let mut header_bytes = [0u8; RECORD_HEADER_BYTES as usize];
        file.read_exact_at(&mut header_bytes, offset).map_err(|e| e.to_string())?;
        let header = parse_header(&header_bytes).ok_or("short header")?;
        let body_end = offset + RECORD_HEADER_BYTES + u64::from(header.body_len);
        if u64::from(header.body_len) > MAX_BODY_BYTES || body_end > end {
            return Err(format!("record of {} bytes runs past the segment's end", header.body_len));
        }
        let mut compressed = std::mem::take(&mut self.compressed);
        compressed.resize(header.body_len as usize, 0);
        let read = self.open_segment().and_then(|f| f.read_exact_at(&mut compressed, offset + RECORD_HEADER_BYTES));
        let result = read.map_err(|e| e.to_string()).and_then(|()| {
            if crc32c::crc32c(&compressed) != header.crc {
                return Err("checksum mismatch".to_string());
            }
            let len = snap::raw::decompress_len(&compressed).map_err(|e| e.to_string())?;
            if len as u64 > MAX_BODY_BYTES {
                return Err(format!("body of {len} bytes"));
            }
            self.body.resize(len, 0);
            snap::raw::Decoder::new().decompress(&compressed, &mut self.body).map_err(|e| e.to_string())?;
            Ok(header)
        });
        self.compressed = compressed;
        result
    }

    /// Hands out the declarations of the cursor's segment before the cursor.
    fn read_prelude(&mut self, out: &mut Vec<(u32, Labels)>) -> std::io::Result<()> {
        let mut offset = 0;
        while offset < self.cursor.offset {
            let header = self.load_record(offset, self.cursor.offset).map_err(std::io::Error::other)?;
            read_declarations(&self.body, out).ok_or_else(|| std::io::Error::other("malformed declarations"))?;
            offset += RECORD_HEADER_BYTES + u64::from(header.body_len);
        }
        Ok(())
    }

    fn read_records(&mut self, end: u64, max_samples: usize, batch: &mut ReadBatch) -> Result<(), String> {
        while self.cursor.offset < end && batch.samples.len() < max_samples {
            let header = self.load_record(self.cursor.offset, end)?;
            let mut reader = read_declarations(&self.body, &mut batch.declarations).ok_or("malformed declarations")?;
            let total = header.samples as usize;
            if reader.bytes.len() - reader.at != total * SAMPLE_BYTES {
                return Err(format!(
                    "record says {total} samples but holds {} bytes of them",
                    reader.bytes.len() - reader.at
                ));
            }
            let skip = self.cursor.skip as usize;
            let room = max_samples - batch.samples.len();
            let take = (total.saturating_sub(skip)).min(room);
            reader.at += skip * SAMPLE_BYTES;
            for _ in 0..take {
                let (Some(series), Some(ts), Some(bits)) = (reader.u32(), reader.u64(), reader.u64()) else {
                    return Err("short sample".into());
                };
                batch.samples.push(QueuedSample { series, ts_ms: ts as i64, value: f64::from_bits(bits) });
            }
            if skip + take < total {
                self.cursor.skip = (skip + take) as u32;
            } else {
                self.cursor = Position {
                    seq: self.cursor.seq,
                    offset: self.cursor.offset + RECORD_HEADER_BYTES + u64::from(header.body_len),
                    skip: 0,
                };
            }
        }
        Ok(())
    }

    /// Records that everything before `position` has been dealt with (sent, or refused for good)
    /// and saves it; segments every destination is past are deleted. `samples` is how many
    /// samples that was, for the pending figure.
    pub fn acknowledge(&mut self, position: Position, samples: u64) {
        let mut state = self.queue.state.lock();
        let Some(slot) = state.readers.get_mut(self.slot) else {
            return;
        };
        if slot.moved != self.moved_seen {
            // The writer dropped data under us and moved this destination already.
            return;
        }
        slot.acked = position;
        slot.metrics.pending.dec_by(samples as i64);
        let saved = slot.position.save(position);
        if let Err(e) = saved {
            let path = slot.position.path.display().to_string();
            let now = std::time::Instant::now();
            if self.position_error_logged.is_none_or(|at| now.duration_since(at) >= std::time::Duration::from_secs(10))
            {
                self.position_error_logged = Some(now);
                tracing::warn!(
                    path,
                    error = %e,
                    "cannot save the forwarding position (a restart now would send again what was sent since the \
                     last saved one)"
                );
            }
        }
        self.queue.delete_sent_segments(&mut state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsdb::{Sample, SeriesSamples};

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
        db: Db,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(tsdb::Options::in_memory()).unwrap();
        Fixture { path: dir.path().join("forward"), _dir: dir, db }
    }

    fn metrics() -> ReaderMetrics {
        ReaderMetrics::default()
    }

    /// Appends `count` samples of series `pod` to the store and returns what the store accepted.
    fn accepted(db: &Db, pod: &str, first_ts: i64, count: usize) -> Vec<AcceptedSample> {
        let labels = [("__name__", "m"), ("pod", pod)];
        let samples: Vec<Sample> = (0..count).map(|i| Sample::new(first_ts + i as i64, i as f64)).collect();
        let report = db.append(&[SeriesSamples::labels(&labels, &samples)]).unwrap();
        samples.iter().map(|s| AcceptedSample { series: report.ids[0], sample: *s }).collect()
    }

    fn read_all(reader: &mut QueueReader, max: usize) -> Vec<(String, i64)> {
        let mut names = std::collections::HashMap::new();
        let mut out = Vec::new();
        loop {
            let batch = reader.read(max).unwrap();
            for (id, labels) in &batch.declarations {
                names.insert(*id, labels.get("pod").unwrap_or_default().to_string());
            }
            if batch.samples.is_empty() {
                return out;
            }
            for s in &batch.samples {
                out.push((names[&s.series].clone(), s.ts_ms));
            }
            reader.acknowledge(batch.end, batch.samples.len() as u64);
        }
    }

    #[test]
    fn samples_come_back_in_order_with_their_labels_and_positions_survive_reopening() {
        let f = fixture();
        let now = tsdb::now_ms();
        let queue = Queue::open(&f.path, 0, vec![("a".into(), metrics())]).unwrap();
        queue.append(&f.db, &accepted(&f.db, "x", now, 5));
        queue.append(&f.db, &accepted(&f.db, "y", now, 3));
        let mut reader = queue.reader(0);
        // Two samples at a time: the first record is split, its position has a skip.
        let batch = reader.read(2).unwrap();
        assert_eq!(batch.samples.len(), 2);
        assert_eq!(batch.end.skip, 2);
        reader.acknowledge(batch.end, 2);
        drop(reader);
        drop(queue);

        let queue = Queue::open(&f.path, 0, vec![("a".into(), metrics())]).unwrap();
        let mut reader = queue.reader(0);
        let got = read_all(&mut reader, 1000);
        let expected: Vec<(String, i64)> =
            (2..5).map(|i| ("x".to_string(), now + i)).chain((0..3).map(|i| ("y".to_string(), now + i))).collect();
        assert_eq!(got, expected);
        // Everything sent: only the segment being written is kept.
        assert_eq!(queue.state.lock().segments.len(), 1);
    }

    #[test]
    fn a_position_slot_torn_by_a_power_loss_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.position");
        let (mut file, saved) = PositionFile::open(&path).unwrap();
        assert_eq!(saved, Ok(None));
        let (first, second) = (Position { seq: 1, offset: 40, skip: 0 }, Position { seq: 1, offset: 90, skip: 3 });
        file.save(first).unwrap();
        file.save(second).unwrap();
        assert_eq!(PositionFile::open(&path).unwrap().1, Ok(Some(second)));
        // The newer slot (write 2, slot 0) torn: the older one is used.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (mut reopened, saved) = PositionFile::open(&path).unwrap();
        assert_eq!(saved, Ok(Some(first)));
        // Writing goes on after the newest valid write.
        reopened.save(second).unwrap();
        assert_eq!(PositionFile::open(&path).unwrap().1, Ok(Some(second)));
        std::fs::write(&path, [1u8; 64]).unwrap();
        assert!(PositionFile::open(&path).unwrap().1.is_err(), "garbage is unreadable, not a position");
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_a_new_destination_starts_at_the_end() {
        let f = fixture();
        let now = tsdb::now_ms();
        let queue = Queue::open(&f.path, 0, vec![("a".into(), metrics())]).unwrap();
        queue.append(&f.db, &accepted(&f.db, "x", now, 4));
        drop(queue);
        let segment = segment_path(&f.path, 1);
        let whole = std::fs::metadata(&segment).unwrap().len();
        // Half a record at the end, as a crash inside a write leaves.
        let mut file = std::fs::OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(&[7, 0, 0, 0, 1, 0, 0, 0, 9]).unwrap();
        drop(file);
        let queue = Queue::open(&f.path, 0, vec![("a".into(), metrics()), ("b".into(), metrics())]).unwrap();
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), whole);
        queue.append(&f.db, &accepted(&f.db, "y", now, 2));
        let got_a = read_all(&mut queue.reader(0), 1000);
        let got_b = read_all(&mut queue.reader(1), 1000);
        assert_eq!(got_a.len(), 6);
        assert_eq!(got_b, vec![("y".to_string(), now), ("y".to_string(), now + 1)]);
    }

    #[test]
    fn a_write_that_fails_is_counted_as_dropped_and_the_next_one_goes_through() {
        let f = fixture();
        let now = tsdb::now_ms();
        let reader_metrics = metrics();
        let queue = Queue::open(&f.path, 0, vec![("a".into(), reader_metrics.clone())]).unwrap();
        // Something else holds the name of the next segment: it cannot be created.
        let blocker = segment_path(&f.path, 1);
        std::fs::create_dir(&blocker).unwrap();
        queue.append(&f.db, &accepted(&f.db, "x", now, 4));
        assert_eq!(reader_metrics.dropped_write_failed.get(), 4);
        assert_eq!(reader_metrics.pending.get(), 0);
        std::fs::remove_dir(&blocker).unwrap();
        queue.append(&f.db, &accepted(&f.db, "x", now + 10, 2));
        assert_eq!(
            read_all(&mut queue.reader(0), 1000),
            vec![("x".to_string(), now + 10), ("x".to_string(), now + 11)]
        );
    }

    #[test]
    fn past_its_budget_the_oldest_segment_goes_and_its_unsent_samples_are_counted() {
        let f = fixture();
        let now = tsdb::now_ms();
        let reader_metrics = metrics();
        let queue = Queue::open(&f.path, MIN_QUEUE_BYTES, vec![("slow".into(), reader_metrics.clone())]).unwrap();
        let mut written = 0u64;
        let mut ts = now;
        // Incompressible values so the records take room.
        while written < 600_000 {
            let labels = [("__name__", "m"), ("pod", "x")];
            let samples: Vec<Sample> = (0..5000)
                .map(|i| {
                    ts += 1;
                    Sample::new(
                        ts,
                        f64::from_bits(0x4000_0000_0000_0000 ^ (ts as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15 + i)),
                    )
                })
                .collect();
            let report = f.db.append(&[SeriesSamples::labels(&labels, &samples)]).unwrap();
            let accepted: Vec<AcceptedSample> =
                samples.iter().map(|s| AcceptedSample { series: report.ids[0], sample: *s }).collect();
            queue.append(&f.db, &accepted);
            written += 5000;
        }
        assert!(queue.bytes() <= queue.max_bytes(), "{} > {}", queue.bytes(), queue.max_bytes());
        let dropped = reader_metrics.dropped_overwritten.get();
        assert!(dropped > 0, "nothing dropped");
        let got = read_all(&mut queue.reader(0), 10_000);
        assert_eq!(got.len() as u64 + dropped, written);
        assert_eq!(reader_metrics.pending.get(), 0);
        // What is left is the newest, in order.
        assert!(got.windows(2).all(|w| w[0].1 < w[1].1));
        assert_eq!(got.last().map(|g| g.1), Some(ts));
    }
}
