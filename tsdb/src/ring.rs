//! `Ring` is the disk budget: segment files filled one after the other; when the budget holds no
//! further segment and the active one is full, the oldest (lowest sequence number) is recycled.
//! Closed chunks live here; open chunks live in the head (`head.rs`).
//!
//! Writers reserve a record under the allocation mutex (a few bytes of bookkeeping), then fill it
//! holding only the segment's shared lock. Readers copy one record under the same shared lock after
//! checking that the segment still has the sequence number their `ChunkRef` was made with, so a
//! reader either copies an intact record or skips a recycled one; it never sees half-overwritten
//! bytes. Recycling waits for those short copies (the exclusive lock).
//!
//! The budget is `segment_bytes × max_segments`, not a file count: a store reopened with another
//! budget or segment size keeps every segment at its own size as long as they fit (grow: keep
//! everything; shrink: the oldest go first, before any chunk reference exists), renumbers the
//! files so their indices are dense again, and replaces a segment of another size by one of the
//! configured size when the ring recycles it. A full volume caps the ring at the segments it has
//! (at least two): the ring recycles instead of growing, so writes keep flowing.

use crate::error::Error;
use crate::options::{MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
use crate::segment::{
    decode_segment_header, ChunkHeader, Segment, SegmentHeader, ALLOCATION_STEP_BYTES, CHUNK_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
};
use crate::storage::{set_aside, Directory, Region};
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Upper bound on segment files (the file index has 12 bits in a `ChunkRef`).
pub const MAX_SEGMENT_FILES: usize = 4096;
const SEQ_BITS: u32 = 20;

/// Where a closed chunk lives: low bits of the segment sequence number, file index and offset,
/// plus the chunk's newest timestamp (chunks of a series are time-ordered, so `max_ts_ms` alone
/// bounds both ends of each chunk). 16 bytes per chunk kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub max_ts_ms: i64,
    loc: u64,
}

impl ChunkRef {
    fn new(seq: u64, file_index: u16, offset: u32, max_ts_ms: i64) -> ChunkRef {
        let seq_lo = seq & ((1 << SEQ_BITS) - 1);
        ChunkRef { max_ts_ms, loc: (seq_lo << 44) | (u64::from(file_index) << 32) | u64::from(offset) }
    }

    fn seq_lo(&self) -> u64 {
        self.loc >> 44
    }

    fn file_index(&self) -> usize {
        ((self.loc >> 32) & 0xfff) as usize
    }

    fn offset(&self) -> usize {
        (self.loc & 0xffff_ffff) as usize
    }
}

/// A valid chunk record found while opening the ring.
#[derive(Debug, Clone, Copy)]
pub struct RecoveredChunk {
    pub header: ChunkHeader,
    pub chunk_ref: ChunkRef,
    /// Ring position `(seq << 32) | offset`, comparable with [`Ring::position`].
    pub position: u64,
}

#[derive(Debug)]
struct Alloc {
    active: Option<usize>,
    offset: usize,
    /// Length of the active segment (a segment of another size is used as it is until recycled).
    active_len: usize,
    next_seq: u64,
    /// The segment count at which the volume refused a new segment: the ring stops growing there.
    capped_at: Option<usize>,
}

/// The ring of segment files.
#[derive(Debug)]
pub struct Ring {
    dir: Arc<dyn Directory>,
    segment_bytes: u64,
    budget_bytes: u64,
    /// Indexed by file index; `None` where a segment was removed (to make room for a larger one)
    /// until a new segment takes the index.
    segments: RwLock<Vec<Option<Arc<Segment>>>>,
    alloc: Mutex<Alloc>,
}

fn segment_name(index: usize) -> String {
    format!("seg-{index:04}.rt")
}

/// A segment file found on open, checked and scanned, not yet given its final file index.
struct FoundSegment {
    index: usize,
    map: Region,
    header: SegmentHeader,
    /// Offsets and headers of the intact records, in file order.
    records: Vec<(usize, ChunkHeader)>,
    /// End of the last intact record.
    good_end: usize,
    samples: u64,
}

impl FoundSegment {
    fn len_bytes(&self) -> u64 {
        self.map.len() as u64
    }
}

/// Segments, chunks and samples, for the log lines that say what was kept and dropped.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    segments: usize,
    chunks: usize,
    samples: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, found: &FoundSegment) {
        self.segments += 1;
        self.chunks += found.records.len();
        self.samples += found.samples;
        self.bytes += found.len_bytes();
    }
}

impl Ring {
    /// Opens the segments in `dir`, verifying every record, with a budget of `segment_bytes ×
    /// max_segments` bytes. Returns the ring and the valid chunk records in write order (sequence
    /// number, then offset). Torn tails are truncated and bad records skipped, segments of other
    /// sizes kept, the oldest segments removed while they exceed the budget and the rest renumbered
    /// densely, each with a log line saying what was kept and dropped. A read-only directory is
    /// served as it is (nothing removed, renamed or repaired).
    pub fn open(
        dir: Arc<dyn Directory>,
        segment_bytes: u64,
        max_segments: usize,
    ) -> Result<(Ring, Vec<RecoveredChunk>), Error> {
        let budget_bytes = segment_bytes.saturating_mul(max_segments as u64);
        let writable = !dir.is_read_only();
        let names = dir.list().map_err(|e| Error::io(dir.location(), e))?;
        let mut found: Vec<FoundSegment> = Vec::new();
        for name in names {
            let Some(index) =
                name.strip_prefix("seg-").and_then(|n| n.strip_suffix(".rt")).and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if index >= MAX_SEGMENT_FILES {
                set_aside(dir.as_ref(), &name, "segment file index beyond what a chunk reference can address");
                continue;
            }
            if let Some(segment) = Self::open_segment(dir.as_ref(), &name, index) {
                found.push(segment);
            }
        }
        if writable {
            Self::fit_budget(dir.as_ref(), &mut found, budget_bytes)?;
            Self::renumber(dir.as_ref(), &mut found)?;
        }
        let other_sizes = found.iter().filter(|f| f.len_bytes() != segment_bytes).count();
        if other_sizes > 0 {
            tracing::info!(
                segments_of_other_size = other_sizes,
                segment_bytes,
                "kept segments of another size; each is replaced by one of the configured size when the ring \
                 recycles it"
            );
        }

        let count = found.iter().map(|f| f.index + 1).max().unwrap_or(0);
        let mut segments: Vec<Option<Arc<Segment>>> = vec![None; count];
        let mut chunks = Vec::new();
        for f in found {
            let seq = f.header.seq;
            // Recovery knows only the header page is allocated (files of older versions are sparse);
            // the first write allocates from the start up (cheap where blocks already are).
            let segment = Segment::new(f.index as u16, f.map, seq, f.header.end, SEGMENT_HEADER_BYTES as u64);
            if f.good_end != f.header.end as usize {
                tracing::warn!(
                    path = %dir.path(&segment_name(f.index)).display(),
                    recorded_end = f.header.end,
                    kept_end = f.good_end,
                    "truncated torn tail of segment"
                );
                segment.reserve_end(f.good_end);
            }
            segment.samples.store(f.samples, Ordering::Relaxed);
            for (offset, header) in f.records {
                chunks.push(RecoveredChunk {
                    header,
                    chunk_ref: ChunkRef::new(seq, f.index as u16, offset as u32, header.max_ts_ms),
                    position: (seq << 32) | offset as u64,
                });
            }
            segments[f.index] = Some(Arc::new(segment));
        }
        chunks.sort_by_key(|c: &RecoveredChunk| c.position);
        let newest = segments.iter().flatten().max_by_key(|s| s.seq()).cloned();
        let alloc = match newest {
            Some(s) => Alloc {
                active: Some(s.file_index as usize),
                offset: s.end.load(Ordering::Relaxed) as usize,
                active_len: s.len_bytes(),
                next_seq: s.seq() + 1,
                capped_at: None,
            },
            None => Alloc { active: None, offset: 0, active_len: 0, next_seq: 1, capped_at: None },
        };
        let ring = Ring { dir, segment_bytes, budget_bytes, segments: RwLock::new(segments), alloc: Mutex::new(alloc) };
        Ok((ring, chunks))
    }

    /// Opens one segment file at its own length and scans its records; `None` when it was set
    /// aside.
    fn open_segment(dir: &dyn Directory, name: &str, index: usize) -> Option<FoundSegment> {
        let opened = dir.file_len(name).and_then(|len| {
            let len = len.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "segment vanished"))?;
            if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&len) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("file is {len} bytes, not a segment size"),
                ));
            }
            dir.open_region_allocating(name, len, SEGMENT_HEADER_BYTES as u64)
        });
        let map = match opened {
            Ok(map) => map,
            Err(e) => {
                set_aside(dir, name, &e.to_string());
                return None;
            }
        };
        let mut head = [0u8; SEGMENT_HEADER_BYTES];
        map.read_into(0, &mut head);
        let header = match decode_segment_header(&head, map.len() as u64) {
            Ok(h) => h,
            Err(e) => {
                drop(map);
                set_aside(dir, name, &e.to_string());
                return None;
            }
        };
        let end = (header.end as usize).clamp(SEGMENT_HEADER_BYTES, map.len());
        let mut offset = SEGMENT_HEADER_BYTES;
        // End of the last intact record: bad records after it are a torn tail and are cut off.
        let mut good_end = SEGMENT_HEADER_BYTES;
        let (mut dropped_records, mut samples) = (0u64, 0u64);
        let mut records = Vec::new();
        let mut payload = Vec::new();
        while offset + CHUNK_HEADER_BYTES <= end {
            let mut raw = [0u8; CHUNK_HEADER_BYTES];
            map.read_into(offset, &mut raw);
            let h = ChunkHeader::decode(&raw);
            let record_end = offset + CHUNK_HEADER_BYTES + h.payload_len as usize;
            if h.payload_len == 0 || record_end > end {
                break;
            }
            payload.resize(h.payload_len as usize, 0);
            map.read_into(offset + CHUNK_HEADER_BYTES, &mut payload);
            if ChunkHeader::crc_ok(&raw, &payload) && h.num_samples > 0 && h.min_ts_ms <= h.max_ts_ms {
                samples += u64::from(h.num_samples);
                records.push((offset, h));
                good_end = record_end;
            } else {
                dropped_records += 1;
            }
            offset = record_end;
        }
        if dropped_records > 0 {
            tracing::warn!(path = %dir.path(name).display(), dropped_records, "dropped chunk records with bad checksums");
        }
        Some(FoundSegment { index, map, header, records, good_end, samples })
    }

    /// Removes the oldest segments while the segments found exceed the budget (a store reopened
    /// with a smaller budget), saying what was kept and dropped.
    fn fit_budget(dir: &dyn Directory, found: &mut Vec<FoundSegment>, budget_bytes: u64) -> Result<(), Error> {
        found.sort_by_key(|f| f.header.seq);
        let mut kept = Tally::default();
        found.iter().for_each(|f| kept.add(f));
        let mut dropped = Tally::default();
        while kept.bytes > budget_bytes && !found.is_empty() {
            let oldest = found.remove(0);
            let name = segment_name(oldest.index);
            dir.remove(&name).map_err(|e| Error::io(dir.path(&name), e))?;
            kept.segments -= 1;
            kept.chunks -= oldest.records.len();
            kept.samples -= oldest.samples;
            kept.bytes -= oldest.len_bytes();
            dropped.add(&oldest);
        }
        if dropped.segments > 0 {
            tracing::warn!(
                budget_bytes,
                kept_segments = kept.segments,
                kept_chunks = kept.chunks,
                kept_samples = kept.samples,
                kept_bytes = kept.bytes,
                dropped_segments = dropped.segments,
                dropped_chunks = dropped.chunks,
                dropped_samples = dropped.samples,
                "the ring's segments exceed the storage budget: removed the oldest"
            );
        }
        Ok(())
    }
    /// Renames the segments found to file indices 0..n in their current order, so indices stay
    /// dense after segments were set aside, removed or lost. Each rename is atomic and a target is
    /// always free (every lower index was renamed or freed before), so a kill between two renames
    /// leaves segments that the next open renumbers the same way.
    fn renumber(dir: &dyn Directory, found: &mut [FoundSegment]) -> Result<(), Error> {
        found.sort_by_key(|f| f.index);
        let mut renamed = 0usize;
        for (target, f) in found.iter_mut().enumerate() {
            if f.index != target {
                let (from, to) = (segment_name(f.index), segment_name(target));
                dir.rename(&from, &to).map_err(|e| Error::io(dir.path(&from), e))?;
                f.index = target;
                renamed += 1;
            }
        }
        if renamed > 0 {
            tracing::info!(renamed, segments = found.len(), "renumbered segment files to dense indices");
        }
        Ok(())
    }

    fn create_segment(&self, index: usize, seq: u64) -> Result<Segment, Error> {
        let name = segment_name(index);
        let map = self
            .dir
            .open_region_allocating(&name, self.segment_bytes, ALLOCATION_STEP_BYTES)
            .map_err(|e| Error::io(self.dir.path(&name), e))?;
        let segment = Segment::new(index as u16, map, seq, SEGMENT_HEADER_BYTES as u32, ALLOCATION_STEP_BYTES);
        segment.reset(seq);
        Ok(segment)
    }

    /// The position new records will be written at: `(seq << 32) | offset`, increasing forever.
    pub fn position(&self) -> u64 {
        let alloc = self.alloc.lock();
        match alloc.active {
            Some(_) => ((alloc.next_seq - 1) << 32) | alloc.offset as u64,
            None => alloc.next_seq << 32,
        }
    }

    /// Writes a closed chunk and returns its reference.
    pub fn write_chunk(&self, header: &ChunkHeader, payload: &[u8]) -> Result<ChunkRef, Error> {
        debug_assert_eq!(header.payload_len as usize, payload.len(), "BUG: payload length mismatch");
        let record_bytes = CHUNK_HEADER_BYTES + payload.len();
        let mut alloc = self.alloc.lock();
        let mut attempts = 0usize;
        let (segment, offset) = loop {
            let needs_rotation = match alloc.active {
                None => true,
                Some(_) => alloc.offset + record_bytes > alloc.active_len,
            };
            if needs_rotation {
                self.rotate(&mut alloc)?;
            }
            let segment = match alloc.active {
                Some(active) => self.segments.read().get(active).cloned().flatten(),
                None => None,
            };
            let Some(segment) = segment else {
                return Err(Error::Full("no active segment".into()));
            };
            let offset = alloc.offset;
            if offset + record_bytes > segment.len_bytes() {
                return Err(Error::Full(format!("a {record_bytes}-byte chunk record does not fit a segment")));
            }
            match segment.ensure_allocated(offset + record_bytes) {
                Ok(()) => break (segment, offset),
                Err(e) => {
                    let error = Error::io(self.dir.path(&segment_name(segment.file_index as usize)), e);
                    let live = self.segments.read().iter().flatten().count();
                    attempts += 1;
                    if !error.is_no_space() || live < 2 || attempts > live {
                        return Err(error);
                    }
                    // The volume is full: this segment ends here and the ring stops growing; the
                    // oldest segment (allocated when it was written) is reused next.
                    if alloc.capped_at.is_none() {
                        self.cap(&mut alloc, live, &error);
                    }
                    alloc.active_len = alloc.offset;
                }
            }
        };
        segment.reserve(offset, header.payload_len, record_bytes);
        alloc.offset += record_bytes;
        // Taken before the allocation mutex is released so the segment cannot be recycled under
        // the writer (recycling needs the exclusive lock and the allocation mutex).
        let guard = segment.lock.read();
        drop(alloc);
        segment.fill(offset, &header.encode(payload), payload);
        segment.samples.fetch_add(u64::from(header.num_samples), Ordering::Relaxed);
        let seq = segment.seq();
        drop(guard);
        Ok(ChunkRef::new(seq, segment.file_index, offset as u32, header.max_ts_ms))
    }

    /// Makes a fresh segment active: a new file while the budget has room for one more, else the
    /// oldest recycled (replaced by one of the configured size when its size differs).
    fn rotate(&self, alloc: &mut Alloc) -> Result<(), Error> {
        let seq = alloc.next_seq;
        let (live, total_bytes, free_index) = {
            let segments = self.segments.read();
            let live = segments.iter().flatten().count();
            let total: u64 = segments.iter().flatten().map(|s| s.len_bytes() as u64).sum();
            (live, total, segments.iter().position(Option::is_none).unwrap_or(segments.len()))
        };
        let room_for_one_more = total_bytes + self.segment_bytes <= self.budget_bytes;
        if room_for_one_more && alloc.capped_at.is_none() && free_index < MAX_SEGMENT_FILES {
            match self.add_segment(free_index, seq) {
                Ok(()) => {
                    self.activate(alloc, free_index);
                    return Ok(());
                }
                Err(e) if e.is_no_space() && live >= 2 => self.cap(alloc, live, &e),
                Err(e) => return Err(e),
            }
        }
        let Some(oldest) = self.oldest() else {
            return Err(Error::Full("ring has no segments".into()));
        };
        if oldest.len_bytes() as u64 == self.segment_bytes || alloc.capped_at.is_some() {
            let _exclusive = oldest.lock.write();
            tracing::debug!(file_index = oldest.file_index, old_seq = oldest.seq(), seq, "recycling oldest segment");
            oldest.reset(seq);
            drop(_exclusive);
            self.activate(alloc, oldest.file_index as usize);
            return Ok(());
        }
        self.replace_oldest(alloc, seq)
    }

    /// Recycling when the oldest segment has another size than the configured one (the store was
    /// reopened with another segment size): removes the oldest segments until one of the configured
    /// size fits the budget, and creates it at the first freed index.
    fn replace_oldest(&self, alloc: &mut Alloc, seq: u64) -> Result<(), Error> {
        // The active segment may be among those removed; nothing is written until a new one is.
        alloc.active = None;
        loop {
            let Some(oldest) = self.oldest() else { break };
            let index = oldest.file_index as usize;
            let name = segment_name(index);
            let exclusive = oldest.lock.write();
            self.dir.remove(&name).map_err(|e| Error::io(self.dir.path(&name), e))?;
            if let Some(slot) = self.segments.write().get_mut(index) {
                *slot = None;
            }
            drop(exclusive);
            tracing::info!(
                path = %self.dir.path(&name).display(),
                old_bytes = oldest.len_bytes(),
                segment_bytes = self.segment_bytes,
                dropped_samples = oldest.samples.load(Ordering::Relaxed),
                "removed the oldest segment to replace it by one of the configured size"
            );
            let total: u64 = self.segments.read().iter().flatten().map(|s| s.len_bytes() as u64).sum();
            if total + self.segment_bytes <= self.budget_bytes {
                break;
            }
        }
        let (live, free_index) = {
            let segments = self.segments.read();
            (segments.iter().flatten().count(), segments.iter().position(Option::is_none).unwrap_or(segments.len()))
        };
        match self.add_segment(free_index, seq) {
            Ok(()) => {
                self.activate(alloc, free_index);
                Ok(())
            }
            Err(e) if e.is_no_space() && live >= 2 => {
                self.cap(alloc, live, &e);
                self.rotate(alloc)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates segment `index` with sequence number `seq` and puts it in the ring.
    fn add_segment(&self, index: usize, seq: u64) -> Result<(), Error> {
        let segment = Arc::new(self.create_segment(index, seq)?);
        let mut segments = self.segments.write();
        if index < segments.len() {
            segments[index] = Some(segment);
        } else {
            segments.push(Some(segment));
        }
        Ok(())
    }

    /// The volume refused a new segment: from now on the ring recycles the `live` segments it has.
    fn cap(&self, alloc: &mut Alloc, live: usize, error: &Error) {
        alloc.capped_at = Some(live);
        tracing::warn!(
            segments = live,
            budget_bytes = self.budget_bytes,
            error = %error,
            "volume full: ring capped at {live} segments"
        );
    }

    fn activate(&self, alloc: &mut Alloc, index: usize) {
        alloc.active_len = self.segments.read().get(index).cloned().flatten().map_or(0, |s| s.len_bytes());
        alloc.next_seq += 1;
        alloc.active = Some(index);
        alloc.offset = SEGMENT_HEADER_BYTES;
    }

    /// The segment with the lowest sequence number.
    fn oldest(&self) -> Option<Arc<Segment>> {
        self.segments.read().iter().flatten().min_by_key(|s| s.seq()).cloned()
    }

    /// The segment at `r`'s file index, if any.
    fn segment_of(&self, r: &ChunkRef) -> Option<Arc<Segment>> {
        self.segments.read().get(r.file_index()).cloned().flatten()
    }

    /// Whether the segment `r` points into still holds the contents `r` was made for.
    pub fn is_live(&self, r: &ChunkRef) -> bool {
        let segments = self.segments.read();
        segments
            .get(r.file_index())
            .and_then(Option::as_ref)
            .is_some_and(|s| s.seq() & ((1 << SEQ_BITS) - 1) == r.seq_lo())
    }

    /// Copies the record `r` points at, appending its payload to `dst`. Returns the header, or
    /// `None` if the segment was recycled since (or the record does not belong to `series`).
    pub fn read_chunk(&self, r: &ChunkRef, series: u32, dst: &mut Vec<u8>) -> Option<ChunkHeader> {
        let segment = self.segment_of(r)?;
        let _shared = segment.lock.read();
        let header = live_header(&segment, r, series)?;
        let start = dst.len();
        dst.resize(start + header.payload_len as usize, 0);
        if !segment.read_into(r.offset() + CHUNK_HEADER_BYTES, &mut dst[start..]) {
            dst.truncate(start);
            return None;
        }
        Some(header)
    }

    /// The header of the record `r` points at when [`Ring::read_chunk`] would copy it (same
    /// checks), without copying the payload: for questions its time bounds answer.
    pub fn chunk_header(&self, r: &ChunkRef, series: u32) -> Option<ChunkHeader> {
        let segment = self.segment_of(r)?;
        let _shared = segment.lock.read();
        let header = live_header(&segment, r, series)?;
        let payload_end = r.offset().checked_add(CHUNK_HEADER_BYTES + header.payload_len as usize)?;
        (payload_end <= segment.len_bytes()).then_some(header)
    }

    /// (samples, bytes used by records, bytes of segment files).
    pub fn usage(&self) -> (u64, u64, u64) {
        let segments = self.segments.read();
        let live = || segments.iter().flatten();
        let samples = live().map(|s| s.samples.load(Ordering::Relaxed)).sum();
        let used = live().map(|s| s.end.load(Ordering::Relaxed).saturating_sub(SEGMENT_HEADER_BYTES as u64)).sum();
        (samples, used, live().map(|s| s.len_bytes() as u64).sum())
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.read().iter().flatten().count()
    }

    /// msync of every segment written since the last flush.
    pub fn flush(&self) -> Result<(), Error> {
        let segments: Vec<Arc<Segment>> = self.segments.read().iter().flatten().cloned().collect();
        for segment in segments {
            segment.flush().map_err(|e| Error::io(self.dir.path(&segment_name(segment.file_index as usize)), e))?;
        }
        Ok(())
    }
}

/// The header of the record `r` points at, when `segment` is still the generation `r` was written
/// in and the record belongs to `series` (a recycled segment holds someone else's bytes there).
/// The caller holds the segment's lock across this check and any copy it makes after.
fn live_header(segment: &Segment, r: &ChunkRef, series: u32) -> Option<ChunkHeader> {
    if segment.seq() & ((1 << SEQ_BITS) - 1) != r.seq_lo() {
        return None;
    }
    let mut raw = [0u8; CHUNK_HEADER_BYTES];
    if !segment.read_into(r.offset(), &mut raw) {
        return None;
    }
    let header = ChunkHeader::decode(&raw);
    (header.series == series && header.max_ts_ms == r.max_ts_ms).then_some(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemoryDirectory, Storage};
    use std::path::Path;

    const SEGMENT_BYTES: u64 = 4096;

    fn open_dir(memory: &MemoryDirectory, read_only: bool) -> Arc<dyn Directory> {
        Storage::Memory(memory.clone()).open_directory(Path::new("unused"), read_only).unwrap()
    }

    /// Writes `count` chunk records of 128 bytes (31 fill a 4 KiB segment), chunk `i` at time `i`.
    fn write_chunks(ring: &Ring, from: i64, count: i64) {
        for i in from..from + count {
            let payload = [i as u8; 100];
            let header = ChunkHeader { payload_len: 100, num_samples: 1, series: 0, min_ts_ms: i, max_ts_ms: i };
            ring.write_chunk(&header, &payload).unwrap();
        }
    }

    fn segment_names(memory: &MemoryDirectory) -> Vec<String> {
        memory.file_names().into_iter().filter(|name| name.starts_with("seg-")).collect()
    }

    #[test]
    fn holes_left_by_a_kill_between_renames_are_closed_on_open() {
        let memory = MemoryDirectory::new();
        let (ring, _) = Ring::open(open_dir(&memory, false), SEGMENT_BYTES, 8).unwrap();
        write_chunks(&ring, 0, 100);
        assert_eq!(ring.segment_count(), 4);
        drop(ring);
        // As a renumbering killed half-way would leave them: a hole at 1, a file far above.
        let dir = open_dir(&memory, false);
        dir.rename("seg-0001.rt", "seg-0006.rt").unwrap();
        let (ring, chunks) = Ring::open(dir, SEGMENT_BYTES, 8).unwrap();
        assert_eq!(chunks.len(), 100);
        assert!(chunks.windows(2).all(|w| w[0].header.max_ts_ms + 1 == w[1].header.max_ts_ms));
        assert_eq!(segment_names(&memory), ["seg-0000.rt", "seg-0001.rt", "seg-0002.rt", "seg-0003.rt"]);
        let mut payload = Vec::new();
        for chunk in &chunks {
            payload.clear();
            assert!(ring.read_chunk(&chunk.chunk_ref, 0, &mut payload).is_some());
            assert_eq!(payload, [chunk.header.max_ts_ms as u8; 100]);
        }
        write_chunks(&ring, 100, 200);
        assert_eq!(ring.segment_count(), 8);
    }

    #[test]
    fn a_smaller_budget_drops_the_oldest_segments_and_read_only_changes_nothing() {
        let memory = MemoryDirectory::new();
        let (ring, _) = Ring::open(open_dir(&memory, false), SEGMENT_BYTES, 8).unwrap();
        write_chunks(&ring, 0, 200);
        drop(ring);
        let names = segment_names(&memory);
        assert_eq!(names.len(), 7);
        // Read-only: served as it is, over the budget, nothing removed or renamed.
        let (_, chunks) = Ring::open(open_dir(&memory, true), SEGMENT_BYTES, 2).unwrap();
        assert_eq!(chunks.len(), 200);
        assert_eq!(segment_names(&memory), names);
        // Writable: the two newest segments are kept, renumbered 0 and 1.
        let (ring, chunks) = Ring::open(open_dir(&memory, false), SEGMENT_BYTES, 2).unwrap();
        assert_eq!(segment_names(&memory), ["seg-0000.rt", "seg-0001.rt"]);
        assert_eq!(chunks.last().map(|c| c.header.max_ts_ms), Some(199));
        assert_eq!(chunks.len(), 200 - 5 * 31);
        assert!(chunks.windows(2).all(|w| w[0].header.max_ts_ms + 1 == w[1].header.max_ts_ms));
        assert_eq!(ring.usage().2, 2 * SEGMENT_BYTES);
    }

    #[test]
    fn larger_segments_replace_smaller_ones_within_the_budget() {
        let memory = MemoryDirectory::new();
        let (ring, _) = Ring::open(open_dir(&memory, false), SEGMENT_BYTES, 8).unwrap();
        write_chunks(&ring, 0, 248);
        assert_eq!(ring.segment_count(), 8);
        drop(ring);
        // Same 32 KiB budget in two 16 KiB segments: the 4 KiB ones are kept, then replaced.
        let (ring, chunks) = Ring::open(open_dir(&memory, false), 4 * SEGMENT_BYTES, 2).unwrap();
        assert_eq!(chunks.len(), 248);
        write_chunks(&ring, 248, 1000);
        assert!(ring.usage().2 <= 8 * SEGMENT_BYTES);
        let sizes: Vec<usize> =
            segment_names(&memory).iter().map(|name| memory.read_file(name).map_or(0, |f| f.len())).collect();
        assert_eq!(sizes, [16384, 16384]);
    }

    #[test]
    fn a_full_volume_caps_the_ring_at_two_segments_or_more() {
        let memory = MemoryDirectory::with_capacity(SEGMENT_BYTES);
        let (ring, _) = Ring::open(open_dir(&memory, false), SEGMENT_BYTES, 8).unwrap();
        write_chunks(&ring, 0, 31);
        let header = ChunkHeader { payload_len: 100, num_samples: 1, series: 0, min_ts_ms: 31, max_ts_ms: 31 };
        let error = ring.write_chunk(&header, &[0; 100]).unwrap_err();
        assert!(error.is_no_space(), "one segment is too few to recycle: {error}");
        memory.set_capacity(Some(2 * SEGMENT_BYTES));
        write_chunks(&ring, 31, 500);
        assert_eq!(ring.segment_count(), 2);
    }
}
