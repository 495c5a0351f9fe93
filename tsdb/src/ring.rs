//! `Ring` is the disk budget: a fixed number of equally sized segment files filled one after the
//! other; when all exist and the active one is full, the oldest (lowest sequence number) is
//! recycled. Closed chunks live here; open chunks live in the head (`head.rs`).
//!
//! Writers reserve a record under the allocation mutex (a few bytes of bookkeeping), then fill it
//! holding only the segment's shared lock. Readers copy one record under the same shared lock after
//! checking that the segment still has the sequence number their `ChunkRef` was made with, so a
//! reader either copies an intact record or skips a recycled one; it never sees half-overwritten
//! bytes. Recycling waits for those short copies (the exclusive lock).

use crate::segment::{decode_segment_header, ChunkHeader, Segment, CHUNK_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use crate::storage::{set_aside, Directory};
use crate::Error;
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
    next_seq: u64,
}

/// The ring of segment files.
#[derive(Debug)]
pub struct Ring {
    dir: Arc<dyn Directory>,
    segment_bytes: u64,
    max_segments: usize,
    segments: RwLock<Vec<Arc<Segment>>>,
    alloc: Mutex<Alloc>,
}

fn segment_name(index: usize) -> String {
    format!("seg-{index:04}.rt")
}

impl Ring {
    /// Opens the segments in `dir`, verifying every record. Returns the ring and the valid chunk
    /// records in write order (sequence number, then offset). Torn tails are truncated and bad
    /// records skipped, with a log line saying how much was dropped.
    pub fn open(
        dir: Arc<dyn Directory>,
        segment_bytes: u64,
        max_segments: usize,
    ) -> Result<(Ring, Vec<RecoveredChunk>), Error> {
        let mut found: Vec<(usize, Segment)> = Vec::new();
        let mut chunks = Vec::new();
        let names = dir.list().map_err(|e| Error::io(dir.location(), e))?;
        for name in names {
            let Some(index) =
                name.strip_prefix("seg-").and_then(|n| n.strip_suffix(".rt")).and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if index >= max_segments {
                let path = dir.path(&name);
                tracing::warn!(path = %path.display(), max_segments, "segment beyond the storage budget; removing");
                if let Err(e) = dir.remove(&name) {
                    return Err(Error::io(&path, e));
                }
                continue;
            }
            if let Some(segment) = Self::open_segment(dir.as_ref(), &name, index, segment_bytes, &mut chunks) {
                found.push((index, segment));
            }
        }
        chunks.sort_by_key(|c: &RecoveredChunk| c.position);
        // Keep file indices dense: a missing or set-aside file becomes an empty, oldest segment.
        found.sort_by_key(|(i, _)| *i);
        let count = found.last().map_or(0, |(i, _)| i + 1);
        let mut segments = Vec::with_capacity(count);
        let mut found = found.into_iter().peekable();
        for index in 0..count {
            if found.peek().is_some_and(|(i, _)| *i == index) {
                if let Some((_, segment)) = found.next() {
                    segments.push(Arc::new(segment));
                }
            } else {
                segments.push(Arc::new(Self::create_segment(dir.as_ref(), index, segment_bytes, 0)?));
            }
        }
        let newest = segments.iter().max_by_key(|s| s.seq()).cloned();
        let alloc = match newest {
            Some(s) => Alloc {
                active: Some(s.file_index as usize),
                offset: s.end.load(Ordering::Relaxed) as usize,
                next_seq: s.seq() + 1,
            },
            None => Alloc { active: None, offset: 0, next_seq: 1 },
        };
        let ring = Ring { dir, segment_bytes, max_segments, segments: RwLock::new(segments), alloc: Mutex::new(alloc) };
        Ok((ring, chunks))
    }

    /// Opens and scans one segment file; `None` when it was set aside.
    fn open_segment(
        dir: &dyn Directory,
        name: &str,
        index: usize,
        segment_bytes: u64,
        chunks: &mut Vec<RecoveredChunk>,
    ) -> Option<Segment> {
        let map = match dir.open_region(name, segment_bytes) {
            Ok(map) => map,
            Err(e) => {
                set_aside(dir, name, &e.to_string());
                return None;
            }
        };
        let path = dir.path(name);
        let mut head = [0u8; SEGMENT_HEADER_BYTES];
        map.read_into(0, &mut head);
        let header = match decode_segment_header(&head, segment_bytes) {
            Ok(h) => h,
            Err(e) => {
                drop(map);
                set_aside(dir, name, &e.to_string());
                return None;
            }
        };
        let segment = Segment::new(index as u16, map, header.seq, header.end);
        let end = (header.end as usize).clamp(SEGMENT_HEADER_BYTES, segment_bytes as usize);
        let mut offset = SEGMENT_HEADER_BYTES;
        // End of the last intact record: bad records after it are a torn tail and are cut off.
        let mut good_end = SEGMENT_HEADER_BYTES;
        let (mut dropped_records, mut samples) = (0u64, 0u64);
        let mut payload = Vec::new();
        while offset + CHUNK_HEADER_BYTES <= end {
            let mut raw = [0u8; CHUNK_HEADER_BYTES];
            segment.read_into(offset, &mut raw);
            let h = ChunkHeader::decode(&raw);
            let record_end = offset + CHUNK_HEADER_BYTES + h.payload_len as usize;
            if h.payload_len == 0 || record_end > end {
                break;
            }
            payload.resize(h.payload_len as usize, 0);
            segment.read_into(offset + CHUNK_HEADER_BYTES, &mut payload);
            if ChunkHeader::crc_ok(&raw, &payload) && h.num_samples > 0 && h.min_ts_ms <= h.max_ts_ms {
                samples += u64::from(h.num_samples);
                chunks.push(RecoveredChunk {
                    header: h,
                    chunk_ref: ChunkRef::new(header.seq, index as u16, offset as u32, h.max_ts_ms),
                    position: (header.seq << 32) | offset as u64,
                });
                good_end = record_end;
            } else {
                dropped_records += 1;
            }
            offset = record_end;
        }
        if dropped_records > 0 {
            tracing::warn!(path = %path.display(), dropped_records, "dropped chunk records with bad checksums");
        }
        if good_end != header.end as usize {
            tracing::warn!(
                path = %path.display(),
                recorded_end = header.end,
                kept_end = good_end,
                "truncated torn tail of segment"
            );
            segment.reserve_end(good_end);
        }
        segment.samples.store(samples, Ordering::Relaxed);
        Some(segment)
    }

    fn create_segment(dir: &dyn Directory, index: usize, segment_bytes: u64, seq: u64) -> Result<Segment, Error> {
        let name = segment_name(index);
        let map = dir.open_region(&name, segment_bytes).map_err(|e| Error::io(dir.path(&name), e))?;
        let segment = Segment::new(index as u16, map, seq, SEGMENT_HEADER_BYTES as u32);
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
        let needs_rotation = match alloc.active {
            None => true,
            Some(_) => alloc.offset + record_bytes > self.segment_bytes as usize,
        };
        if needs_rotation {
            self.rotate(&mut alloc)?;
        }
        let (active, offset) = match alloc.active {
            Some(active) => (active, alloc.offset),
            None => return Err(Error::Full("no active segment".into())),
        };
        let segment = self.segments.read()[active].clone();
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

    fn rotate(&self, alloc: &mut Alloc) -> Result<(), Error> {
        let seq = alloc.next_seq;
        let count = self.segments.read().len();
        let index = if count < self.max_segments {
            let segment = Self::create_segment(self.dir.as_ref(), count, self.segment_bytes, seq)?;
            self.segments.write().push(Arc::new(segment));
            count
        } else {
            let oldest = self.segments.read().iter().min_by_key(|s| s.seq()).cloned();
            let Some(oldest) = oldest else {
                return Err(Error::Full("ring has no segments".into()));
            };
            let _exclusive = oldest.lock.write();
            tracing::debug!(file_index = oldest.file_index, old_seq = oldest.seq(), seq, "recycling oldest segment");
            oldest.reset(seq);
            oldest.file_index as usize
        };
        alloc.next_seq += 1;
        alloc.active = Some(index);
        alloc.offset = SEGMENT_HEADER_BYTES;
        Ok(())
    }

    /// Whether the segment `r` points into still holds the contents `r` was made for.
    pub fn is_live(&self, r: &ChunkRef) -> bool {
        let segments = self.segments.read();
        segments.get(r.file_index()).is_some_and(|s| s.seq() & ((1 << SEQ_BITS) - 1) == r.seq_lo())
    }

    /// Copies the record `r` points at, appending its payload to `dst`. Returns the header, or
    /// `None` if the segment was recycled since (or the record does not belong to `series`).
    pub fn read_chunk(&self, r: &ChunkRef, series: u32, dst: &mut Vec<u8>) -> Option<ChunkHeader> {
        let segment = self.segments.read().get(r.file_index())?.clone();
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
        let segment = self.segments.read().get(r.file_index())?.clone();
        let _shared = segment.lock.read();
        let header = live_header(&segment, r, series)?;
        let payload_end = r.offset().checked_add(CHUNK_HEADER_BYTES + header.payload_len as usize)?;
        (payload_end <= segment.len_bytes()).then_some(header)
    }

    /// (samples, bytes used by records, bytes of segment files).
    pub fn usage(&self) -> (u64, u64, u64) {
        let segments = self.segments.read();
        let samples = segments.iter().map(|s| s.samples.load(Ordering::Relaxed)).sum();
        let used =
            segments.iter().map(|s| s.end.load(Ordering::Relaxed).saturating_sub(SEGMENT_HEADER_BYTES as u64)).sum();
        (samples, used, segments.len() as u64 * self.segment_bytes)
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.read().len()
    }

    /// msync of every segment written since the last flush.
    pub fn flush(&self) -> Result<(), Error> {
        let segments: Vec<Arc<Segment>> = self.segments.read().clone();
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
