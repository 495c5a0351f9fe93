//! `Segment` is one fixed-size file of the ring: a header, then closed chunk records appended one
//! after another. Byte layout: `docs/format/segments.md`. Each segment records its own size, so
//! segments of a size other than the configured one (a store reopened with another segment size)
//! are read as they are.
//!
//! A segment is append-only between recycles: a record's bytes never change once its CRC is
//! written, so readers copy published records under a shared lock while writers fill other
//! (reserved, unpublished) records. Recycling takes the lock exclusively and bumps `seq`, which
//! readers compare with the sequence number in their chunk reference.

use crate::options::{MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
use crate::storage::Region;
use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub const SEGMENT_MAGIC: [u8; 8] = *b"RTSEGM01";
pub const SEGMENT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Offset of the mutable `end` field (end of the last reserved record) in the segment header.
const END_OFFSET: usize = 28;
pub const CHUNK_HEADER_BYTES: usize = 28;

/// The fixed fields of a closed chunk record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub payload_len: u16,
    pub num_samples: u16,
    pub series: u32,
    pub min_ts_ms: i64,
    pub max_ts_ms: i64,
}

impl ChunkHeader {
    /// The 28 header bytes with the CRC (over header bytes 0..24 and the payload) filled in.
    pub fn encode(&self, payload: &[u8]) -> [u8; CHUNK_HEADER_BYTES] {
        let mut out = [0u8; CHUNK_HEADER_BYTES];
        out[0..2].copy_from_slice(&self.payload_len.to_le_bytes());
        out[2..4].copy_from_slice(&self.num_samples.to_le_bytes());
        out[4..8].copy_from_slice(&self.series.to_le_bytes());
        out[8..16].copy_from_slice(&self.min_ts_ms.to_le_bytes());
        out[16..24].copy_from_slice(&self.max_ts_ms.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out[0..24]), payload);
        out[24..28].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses the fixed fields (no CRC check).
    pub fn decode(bytes: &[u8; CHUNK_HEADER_BYTES]) -> ChunkHeader {
        ChunkHeader {
            payload_len: u16::from_le_bytes([bytes[0], bytes[1]]),
            num_samples: u16::from_le_bytes([bytes[2], bytes[3]]),
            series: u32_at(bytes, 4),
            min_ts_ms: i64_at(bytes, 8),
            max_ts_ms: i64_at(bytes, 16),
        }
    }

    /// Whether the CRC stored in `header` matches header and payload.
    pub fn crc_ok(header: &[u8; CHUNK_HEADER_BYTES], payload: &[u8]) -> bool {
        crc32c::crc32c_append(crc32c::crc32c(&header[0..24]), payload) == u32_at(header, 24)
    }
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

pub(crate) fn i64_at(bytes: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    i64::from_le_bytes(b)
}

/// What a segment header says, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment_bytes: u32,
    pub seq: u64,
    pub end: u32,
}

/// Why a segment header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    NotASegment,
    UnsupportedVersion(u32),
    BadChecksum,
    WrongSize { header_bytes: u32, file_bytes: u64 },
    SizeOutOfRange { header_bytes: u32 },
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::NotASegment => f.write_str("not a ringtail segment (bad magic)"),
            HeaderError::UnsupportedVersion(v) => write!(f, "unsupported segment version {v}"),
            HeaderError::BadChecksum => f.write_str("segment header checksum mismatch"),
            HeaderError::WrongSize { header_bytes, file_bytes } => {
                write!(f, "header says {header_bytes} bytes but the file has {file_bytes}")
            }
            HeaderError::SizeOutOfRange { header_bytes } => {
                write!(f, "header says {header_bytes} bytes, outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}")
            }
        }
    }
}

/// Encodes the immutable part of a header (bytes 0..28) for `seq`.
pub fn encode_segment_header(segment_bytes: u32, seq: u64) -> [u8; END_OFFSET] {
    let mut out = [0u8; END_OFFSET];
    out[0..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&segment_bytes.to_le_bytes());
    out[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&out[0..24]);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Checks a header read from a file of `file_bytes` bytes: the size it records must be a valid
/// segment size and the file's length (any valid size, not only the configured one).
pub fn decode_segment_header(
    bytes: &[u8; SEGMENT_HEADER_BYTES],
    file_bytes: u64,
) -> Result<SegmentHeader, HeaderError> {
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err(HeaderError::NotASegment);
    }
    let version = u32_at(bytes, 8);
    if version != SEGMENT_VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    if crc32c::crc32c(&bytes[0..24]) != u32_at(bytes, 24) {
        return Err(HeaderError::BadChecksum);
    }
    let segment_bytes = u32_at(bytes, 12);
    if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&u64::from(segment_bytes)) {
        return Err(HeaderError::SizeOutOfRange { header_bytes: segment_bytes });
    }
    if u64::from(segment_bytes) != file_bytes {
        return Err(HeaderError::WrongSize { header_bytes: segment_bytes, file_bytes });
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[16..24]);
    Ok(SegmentHeader { segment_bytes, seq: u64::from_le_bytes(seq), end: u32_at(bytes, END_OFFSET) })
}

/// A segment file is allocated on disk this far ahead of its write position.
pub const ALLOCATION_STEP_BYTES: u64 = 1 << 20;

/// One mapped segment file with its live bookkeeping.
#[derive(Debug)]
pub struct Segment {
    pub file_index: u16,
    map: Region,
    /// Sequence number of the current contents (bumped on recycle, under the exclusive lock).
    seq: AtomicU64,
    /// Shared: copying a published record, or filling a reserved one. Exclusive: recycling.
    pub lock: RwLock<()>,
    /// Samples in the records of the current contents.
    pub samples: AtomicU64,
    /// End of the last reserved record (mirrors the header field).
    pub end: AtomicU64,
    /// Bytes from the start known to be allocated on disk (writes stay below it).
    allocated: AtomicU64,
    pub dirty: AtomicBool,
}

impl Segment {
    /// A segment over `map` whose first `allocated` bytes are allocated on disk.
    pub fn new(file_index: u16, map: Region, seq: u64, end: u32, allocated: u64) -> Segment {
        Segment {
            file_index,
            allocated: AtomicU64::new(allocated.min(map.len() as u64)),
            map,
            seq: AtomicU64::new(seq),
            lock: RwLock::new(()),
            samples: AtomicU64::new(0),
            end: AtomicU64::new(u64::from(end)),
            dirty: AtomicBool::new(false),
        }
    }

    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Starts new contents: readers holding an old reference see the new `seq` and skip.
    /// Caller holds `lock` exclusively (or owns the segment alone).
    pub fn reset(&self, seq: u64) {
        // `end` first: a kill between the two writes leaves an empty segment, never old records
        // under a new sequence number.
        self.map.write(END_OFFSET, &(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
        self.map.write(0, &encode_segment_header(self.map.len() as u32, seq));
        self.seq.store(seq, Ordering::Release);
        self.samples.store(0, Ordering::Relaxed);
        self.end.store(SEGMENT_HEADER_BYTES as u64, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Makes sure `[0, end)` is allocated on disk, allocating ahead in steps of
    /// [`ALLOCATION_STEP_BYTES`] (so disk use follows the data), before anything is written
    /// there. Called under the ring's allocation mutex. ENOSPC when the volume is full.
    pub fn ensure_allocated(&self, end: usize) -> std::io::Result<()> {
        let allocated = self.allocated.load(Ordering::Relaxed);
        if end as u64 <= allocated {
            return Ok(());
        }
        let len = self.map.len() as u64;
        let target = (end as u64).div_ceil(ALLOCATION_STEP_BYTES).saturating_mul(ALLOCATION_STEP_BYTES).min(len);
        self.map.allocate(allocated, target - allocated)?;
        self.allocated.store(target, Ordering::Relaxed);
        Ok(())
    }

    /// Reserves `[offset, offset + record_bytes)` by writing the record's length and the header's
    /// `end`; recovery can then skip the record even if it is never completed.
    pub fn reserve(&self, offset: usize, payload_len: u16, record_bytes: usize) {
        self.map.write(offset, &payload_len.to_le_bytes());
        let end = (offset + record_bytes) as u32;
        self.map.write(END_OFFSET, &end.to_le_bytes());
        self.end.store(u64::from(end), Ordering::Relaxed);
    }

    /// Moves the header's `end` back to `offset` (recovery truncating a torn tail).
    pub fn reserve_end(&self, offset: usize) {
        self.map.write(END_OFFSET, &(offset as u32).to_le_bytes());
        self.end.store(offset as u64, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Fills a reserved record: payload and fixed fields first, the CRC last.
    pub fn fill(&self, offset: usize, header: &[u8; CHUNK_HEADER_BYTES], payload: &[u8]) {
        self.map.write(offset + CHUNK_HEADER_BYTES, payload);
        self.map.write(offset + 2, &header[2..24]);
        std::sync::atomic::fence(Ordering::Release);
        self.map.write(offset + 24, &header[24..28]);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Size of the segment file.
    pub fn len_bytes(&self) -> usize {
        self.map.len()
    }

    /// Copies bytes out (record reads and recovery scans).
    pub fn read_into(&self, offset: usize, dst: &mut [u8]) -> bool {
        self.map.read_into(offset, dst)
    }

    pub fn flush(&self) -> std::io::Result<()> {
        if self.dirty.swap(false, Ordering::Relaxed) {
            self.map.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_header_golden_bytes() {
        let header = ChunkHeader { payload_len: 3, num_samples: 2, series: 7, min_ts_ms: 1000, max_ts_ms: 16000 };
        let bytes = header.encode(&[0xaa, 0xbb, 0xcc]);
        assert_eq!(&bytes[..24], &[3, 0, 2, 0, 7, 0, 0, 0, 0xe8, 0x03, 0, 0, 0, 0, 0, 0, 0x80, 0x3e, 0, 0, 0, 0, 0, 0]);
        assert!(ChunkHeader::crc_ok(&bytes, &[0xaa, 0xbb, 0xcc]));
        assert!(!ChunkHeader::crc_ok(&bytes, &[0xaa, 0xbb, 0xcd]));
        assert_eq!(ChunkHeader::decode(&bytes), header);
    }

    #[test]
    fn segment_header_golden_bytes_and_checks() {
        let head = encode_segment_header(4096, 5);
        assert_eq!(&head[..24], b"RTSEGM01\x01\0\0\0\0\x10\0\0\x05\0\0\0\0\0\0\0");
        let mut full = [0u8; SEGMENT_HEADER_BYTES];
        full[..28].copy_from_slice(&head);
        full[28..32].copy_from_slice(&64u32.to_le_bytes());
        assert_eq!(decode_segment_header(&full, 4096), Ok(SegmentHeader { segment_bytes: 4096, seq: 5, end: 64 }));
        assert!(matches!(decode_segment_header(&full, 8192), Err(HeaderError::WrongSize { .. })));
        let mut small = full;
        small[..28].copy_from_slice(&encode_segment_header(2048, 5));
        assert_eq!(decode_segment_header(&small, 2048), Err(HeaderError::SizeOutOfRange { header_bytes: 2048 }));
        full[17] ^= 1;
        assert_eq!(decode_segment_header(&full, 4096), Err(HeaderError::BadChecksum));
        full[0] = b'X';
        assert_eq!(decode_segment_header(&full, 4096), Err(HeaderError::NotASegment));
    }
}
