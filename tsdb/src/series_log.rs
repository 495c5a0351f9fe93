//! `SeriesLog` is the append-only file that persists series identities (id → label set) and their
//! removal, so ids and labels survive restarts. Byte layout: `docs/format/series_log.md`.
//!
//! The series a batch creates are written as blocks (each label set coded against the one before
//! it, then zstd-compressed together: series created together share most label names and values,
//! so an identity costs a few bytes on disk instead of a few hundred) with one `write` call before
//! their ids are handed out,
//! so they are in the page cache (kill -9 safe) before any sample of them can be acknowledged;
//! `flush` fsyncs. A removed series gets a tombstone; `compact` rewrites the file with only the
//! live series (a new file renamed over the old one, so a kill at any moment leaves one whole log).
//! Files of versions 1 (one uncompressed record per series) and 2 (blocks of whole label sets) are
//! read, and rewritten in the current version when opened writable.
//!
//! Budget accounting: callers count a series by its uncompressed record size ([`record_bytes`],
//! known from its labels alone); the log converts those to bytes on disk with the compression
//! ratio of what it wrote ([`SeriesLog::disk_bytes_of`]).

use crate::chunk::zigzag64;
use crate::segment::u32_at;
use crate::storage::{set_aside, Directory, LogFile};
use crate::{Error, Label, Labels};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The log's file name in the store's directory.
pub const SERIES_LOG_NAME: &str = "series.log";
/// The file a compaction writes before renaming it over the log (a leftover is removed at open).
const COMPACTING_NAME: &str = "series.log.compacting";
pub const SERIES_LOG_MAGIC: [u8; 8] = *b"RTSERS01";
pub const SERIES_LOG_VERSION: u32 = 3;
const FILE_HEADER_BYTES: usize = 16;
const RECORD_HEADER_BYTES: usize = 8;
/// Fixed part of an uncompressed series record: id, creation position, label count.
const RECORD_FIXED_BYTES: usize = 4 + 8 + 2;
/// Bound for one record body (what `validate_labels` lets through always fits).
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Label bytes (as [`label_bytes`] counts them, uncoded) gathered into one block before it is
/// compressed (a block keeps a corrupt block's loss small, and is what one remote-write request of
/// new series takes). Also what a block may decode to, so a corrupt block cannot claim more.
const BLOCK_PLAIN_BYTES: usize = 256 << 10;
/// zstd's level for blocks: its fastest regular level already finds the repeats that matter.
const BLOCK_ZSTD_LEVEL: i32 = 1;
/// A series whose encoded labels are larger gets a record of its own, uncompressed.
const LARGE_SERIES_BYTES: usize = 32 << 10;
/// How far past a corrupt record recovery searches for the next whole one; a longer corrupt
/// stretch ends the log there (a torn tail), so a damaged file costs bounded time to open.
const MAX_RESYNC_SCAN_BYTES: usize = 16 << 20;
/// The creation position a version 1 tombstone carries (no real position is this large).
const TOMBSTONE_POSITION: u64 = u64::MAX;

/// Version 2 record kinds (the first body byte).
const KIND_SERIES: u8 = 1;
const KIND_TOMBSTONES: u8 = 2;
/// Written by version 2 only (read still): a block of whole label sets.
const KIND_BLOCK: u8 = 3;
const KIND_DELTA_BLOCK: u8 = 4;

/// How a label of a delta block's series is coded against the label at the same index of the
/// series before it in the block.
const LABEL_SAME: u8 = 0;
const LABEL_NEW_VALUE: u8 = 1;
const LABEL_NEW: u8 = 2;

/// One series as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRecord {
    pub id: u32,
    /// Ring position when the series was created: chunks written earlier belong to someone else.
    pub created_position: u64,
    pub labels: Labels,
}

/// What opening the log found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The live series, in id order.
    pub records: Vec<SeriesRecord>,
    /// One more than the highest id ever recorded (live or removed): ids are never handed out twice.
    pub next_id: u32,
    /// Corrupt stretches skipped in the middle of the file (a compaction rewrites it).
    pub skipped_stretches: u64,
}

/// The open log file.
#[derive(Debug)]
pub struct SeriesLog {
    path: PathBuf,
    file: LogFile,
    len_bytes: u64,
    /// Uncompressed record bytes ([`record_bytes`]) of the live series.
    live_plain_bytes: u64,
    /// Creation records written (or found at open) since the last compaction: uncompressed bytes
    /// and bytes on disk, whose ratio converts the one into the other.
    created_plain_bytes: u64,
    created_disk_bytes: u64,
    buf: Vec<u8>,
}

fn file_header(version: u32) -> [u8; FILE_HEADER_BYTES] {
    let mut out = [0u8; FILE_HEADER_BYTES];
    out[0..8].copy_from_slice(&SERIES_LOG_MAGIC);
    out[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&out[0..12]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Bytes the uncompressed record of a series with these labels takes (header included): what
/// callers count a series as, converted to bytes on disk by [`SeriesLog::disk_bytes_of`].
pub fn record_bytes<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    (RECORD_HEADER_BYTES + RECORD_FIXED_BYTES + label_bytes(labels)) as u64
}

fn label_bytes<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> usize {
    labels.map(|(n, v)| 4 + n.len() + v.len()).sum()
}

/// Appends `labels` as (count u16, then u16 length and bytes of each name and value).
fn encode_labels(dst: &mut Vec<u8>, labels: &Labels) {
    dst.extend_from_slice(&(labels.len() as u16).to_le_bytes());
    for label in labels.iter() {
        for s in [&label.name, &label.value] {
            dst.extend_from_slice(&(s.len() as u16).to_le_bytes());
            dst.extend_from_slice(s.as_bytes());
        }
    }
}

/// Frames the body `dst[start + RECORD_HEADER_BYTES..]` (its header was reserved at `start`).
fn finish_record(dst: &mut [u8], start: usize) {
    let body_len = (dst.len() - start - RECORD_HEADER_BYTES) as u32;
    let crc = crc32c::crc32c(&dst[start + RECORD_HEADER_BYTES..]);
    dst[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    dst[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends an uncompressed record of one series to `dst` (header and body).
fn encode_series_record(dst: &mut Vec<u8>, record: &SeriesRecord) {
    let start = dst.len();
    dst.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    dst.push(KIND_SERIES);
    dst.extend_from_slice(&record.id.to_le_bytes());
    dst.extend_from_slice(&record.created_position.to_le_bytes());
    encode_labels(dst, &record.labels);
    finish_record(dst, start);
}

/// Appends the records of `records` to `dst`: blocks of compressed label sets (one per run of
/// series with the same creation position, at most `BLOCK_PLAIN_BYTES` each), and records of
/// their own for very large label sets and for runs that compression does not make smaller
/// (a lone series).
fn encode_records(dst: &mut Vec<u8>, records: &[SeriesRecord]) -> std::io::Result<()> {
    let mut encoder = zstd::bulk::Compressor::new(BLOCK_ZSTD_LEVEL)?;
    let mut plain: Vec<u8> = Vec::new();
    let mut run: &[SeriesRecord] = &[];
    let mut run_start = 0usize;
    let mut run_label_bytes = 0usize;
    for (i, record) in records.iter().enumerate() {
        let labels = label_bytes(record.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        let fits = run.first().is_some_and(|first| first.created_position == record.created_position)
            && run_label_bytes + labels <= BLOCK_PLAIN_BYTES;
        if !fits || labels > LARGE_SERIES_BYTES {
            encode_block(dst, run, &mut plain, &mut encoder)?;
            run_start = i;
            run_label_bytes = 0;
        }
        if labels > LARGE_SERIES_BYTES {
            encode_series_record(dst, record);
            run_start = i + 1;
            run = &records[run_start..run_start];
            continue;
        }
        let previous = (i > run_start).then(|| &records[i - 1]);
        encode_delta_series(&mut plain, record, previous);
        run_label_bytes += labels;
        run = &records[run_start..=i];
    }
    encode_block(dst, run, &mut plain, &mut encoder)
}

fn put_uvarint(dst: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        dst.push(v as u8 | 0x80);
        v >>= 7;
    }
    dst.push(v as u8);
}

fn uvarint_from(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

fn put_string(dst: &mut Vec<u8>, s: &str) {
    put_uvarint(dst, s.len() as u64);
    dst.extend_from_slice(s.as_bytes());
}

fn string_from(bytes: &[u8], at: &mut usize) -> Option<String> {
    let len = usize::try_from(uvarint_from(bytes, at)?).ok()?;
    let s = bytes.get(*at..at.checked_add(len)?)?;
    *at += len;
    Some(std::str::from_utf8(s).ok()?.to_string())
}

/// Appends `record` to a delta block's plain bytes, coded against `previous` (the series before it
/// in the block, if any): its id as the zigzag difference from the previous id plus one, its label
/// count, then per label a code saying whether it equals the previous series' label at the same
/// index, shares only its name, or is new (with what is new after the code).
fn encode_delta_series(plain: &mut Vec<u8>, record: &SeriesRecord, previous: Option<&SeriesRecord>) {
    let expected_id = previous.map_or(0, |p| i64::from(p.id) + 1);
    let id_delta = i64::from(record.id) - expected_id;
    put_uvarint(plain, zigzag64(id_delta));
    put_uvarint(plain, record.labels.len() as u64);
    let before = previous.map_or(&[][..], |p| p.labels.as_slice());
    for (i, label) in record.labels.iter().enumerate() {
        match before.get(i) {
            Some(b) if b.name == label.name && b.value == label.value => plain.push(LABEL_SAME),
            Some(b) if b.name == label.name => {
                plain.push(LABEL_NEW_VALUE);
                put_string(plain, &label.value);
            }
            _ => {
                plain.push(LABEL_NEW);
                put_string(plain, &label.name);
                put_string(plain, &label.value);
            }
        }
    }
}

/// Reads the series [`encode_delta_series`] wrote at `*at`, `previous` being the one before it.
fn decode_delta_series(
    plain: &[u8],
    at: &mut usize,
    created_position: u64,
    previous: Option<&SeriesRecord>,
) -> Option<SeriesRecord> {
    let zigzag = uvarint_from(plain, at)?;
    let id_delta = (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64);
    let expected_id = previous.map_or(0, |p| i64::from(p.id) + 1);
    let id = u32::try_from(expected_id.checked_add(id_delta)?).ok()?;
    let count = uvarint_from(plain, at)?;
    // Every label takes at least its code byte: a count past the bytes left is corrupt.
    if count > u64::from(u16::MAX) || count > (plain.len() - *at) as u64 {
        return None;
    }
    let before = previous.map_or(&[][..], |p| p.labels.as_slice());
    let mut labels = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let code = *plain.get(*at)?;
        *at += 1;
        let label = match code {
            LABEL_SAME => before.get(i)?.clone(),
            LABEL_NEW_VALUE => Label { name: before.get(i)?.name.clone(), value: string_from(plain, at)? },
            LABEL_NEW => {
                let name = string_from(plain, at)?;
                Label { name, value: string_from(plain, at)? }
            }
            _ => return None,
        };
        labels.push(label);
    }
    labels.windows(2).all(|w| w[0].name < w[1].name).then(|| SeriesRecord {
        id,
        created_position,
        labels: Labels::from_sorted(labels),
    })
}

/// Appends the block of `run` (series sharing a creation position, `plain` their encoded ids and
/// labels) to `dst`, or their records of their own when that is no larger; clears `plain`.
fn encode_block(
    dst: &mut Vec<u8>,
    run: &[SeriesRecord],
    plain: &mut Vec<u8>,
    encoder: &mut zstd::bulk::Compressor<'static>,
) -> std::io::Result<()> {
    let Some(first) = run.first() else {
        plain.clear();
        return Ok(());
    };
    let start = dst.len();
    dst.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    dst.push(KIND_DELTA_BLOCK);
    dst.extend_from_slice(&first.created_position.to_le_bytes());
    dst.extend_from_slice(&(run.len() as u32).to_le_bytes());
    let at = dst.len();
    dst.resize(at + zstd::zstd_safe::compress_bound(plain.len()), 0);
    let written = encoder.compress_to_buffer(plain, &mut dst[at..])?;
    dst.truncate(at + written);
    let own_records: usize = run
        .iter()
        .map(|r| {
            RECORD_HEADER_BYTES
                + 1
                + RECORD_FIXED_BYTES
                + label_bytes(r.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
        })
        .sum();
    if dst.len() - start >= own_records {
        dst.truncate(start);
        for record in run {
            encode_series_record(dst, record);
        }
    } else {
        finish_record(dst, start);
    }
    plain.clear();
    Ok(())
}

/// Appends the tombstones of `ids` to `dst` (records of at most `MAX_RECORD_BYTES`).
fn encode_tombstones(dst: &mut Vec<u8>, ids: &[u32]) {
    for ids in ids.chunks((MAX_RECORD_BYTES - 1) / 4) {
        let start = dst.len();
        dst.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
        dst.push(KIND_TOMBSTONES);
        for id in ids {
            dst.extend_from_slice(&id.to_le_bytes());
        }
        finish_record(dst, start);
    }
}

/// What a record says.
#[derive(Debug, PartialEq)]
enum Event {
    Created(SeriesRecord),
    Removed(u32),
}

/// Reads labels encoded by [`encode_labels`] at `*at`.
fn decode_labels(bytes: &[u8], at: &mut usize) -> Option<Labels> {
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = bytes.get(*at..*at + n)?;
        *at += n;
        Some(s)
    };
    let count = u16::from_le_bytes(take(2)?.try_into().ok()?);
    let mut labels = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let mut pair = [String::new(), String::new()];
        for s in &mut pair {
            let len = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
            *s = std::str::from_utf8(take(len)?).ok()?.to_string();
        }
        let [name, value] = pair;
        labels.push(Label { name, value });
    }
    labels.windows(2).all(|w| w[0].name < w[1].name).then(|| Labels::from_sorted(labels))
}

fn u32_from(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let v = u32::from_le_bytes(bytes.get(*at..*at + 4)?.try_into().ok()?);
    *at += 4;
    Some(v)
}

fn u64_from(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let v = u64::from_le_bytes(bytes.get(*at..*at + 8)?.try_into().ok()?);
    *at += 8;
    Some(v)
}

/// Parses a version 1 record body (after its CRC was checked).
fn decode_v1_body(body: &[u8], out: &mut Vec<Event>) -> Option<()> {
    let mut at = 0usize;
    let id = u32_from(body, &mut at)?;
    let created_position = u64_from(body, &mut at)?;
    let labels = decode_labels(body, &mut at)?;
    if at != body.len() {
        return None;
    }
    out.push(if created_position == TOMBSTONE_POSITION && labels.is_empty() {
        Event::Removed(id)
    } else {
        Event::Created(SeriesRecord { id, created_position, labels })
    });
    Some(())
}

/// Parses a version 2 or 3 record body (after its CRC was checked).
fn decode_v2_body(body: &[u8], out: &mut Vec<Event>, decoder: &mut zstd::bulk::Decompressor<'static>) -> Option<()> {
    let (&kind, rest) = body.split_first()?;
    let mut at = 0usize;
    match kind {
        KIND_SERIES => {
            let id = u32_from(rest, &mut at)?;
            let created_position = u64_from(rest, &mut at)?;
            let labels = decode_labels(rest, &mut at)?;
            (at == rest.len()).then_some(())?;
            out.push(Event::Created(SeriesRecord { id, created_position, labels }));
        }
        KIND_TOMBSTONES => {
            (rest.len() % 4 == 0).then_some(())?;
            out.extend(rest.chunks_exact(4).map(|id| Event::Removed(u32_at(id, 0))));
        }
        KIND_BLOCK => {
            let created_position = u64_from(rest, &mut at)?;
            let count = u32_from(rest, &mut at)?;
            // A block holds at most `BLOCK_PLAIN_BYTES` plus one series: a claim of more fails.
            let plain = decoder.decompress(&rest[at..], BLOCK_PLAIN_BYTES + LARGE_SERIES_BYTES + 64).ok()?;
            let mut at = 0usize;
            let first = out.len();
            for _ in 0..count {
                let id = u32_from(&plain, &mut at)?;
                let labels = decode_labels(&plain, &mut at)?;
                out.push(Event::Created(SeriesRecord { id, created_position, labels }));
            }
            if at != plain.len() {
                out.truncate(first);
                return None;
            }
        }
        KIND_DELTA_BLOCK => {
            let created_position = u64_from(rest, &mut at)?;
            let count = u32_from(rest, &mut at)?;
            let plain = decoder.decompress(&rest[at..], BLOCK_PLAIN_BYTES + LARGE_SERIES_BYTES + 64).ok()?;
            let mut at = 0usize;
            let mut previous: Option<SeriesRecord> = None;
            let mut decoded_label_bytes = 0usize;
            let first = out.len();
            for _ in 0..count {
                let Some(record) = decode_delta_series(&plain, &mut at, created_position, previous.as_ref()) else {
                    out.truncate(first);
                    return None;
                };
                // Labels copied from the series before cost no bytes in `plain`: a block decodes
                // to no more label bytes than a writer puts in one.
                decoded_label_bytes += label_bytes(record.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
                if decoded_label_bytes > BLOCK_PLAIN_BYTES + LARGE_SERIES_BYTES {
                    out.truncate(first);
                    return None;
                }
                if let Some(done) = previous.replace(record) {
                    out.push(Event::Created(done));
                }
            }
            out.extend(previous.map(Event::Created));
            if at != plain.len() {
                out.truncate(first);
                return None;
            }
        }
        _ => return None,
    }
    Some(())
}

/// The events of the record starting at `at`, when it is whole, its CRC holds and it parses:
/// appended to `out`, and the record's end returned.
fn record_at(
    data: &[u8],
    at: usize,
    version: u32,
    out: &mut Vec<Event>,
    decoder: &mut zstd::bulk::Decompressor<'static>,
) -> Option<usize> {
    let body_len = u32_at(data.get(at..at + RECORD_HEADER_BYTES)?, 0) as usize;
    if !(1..=MAX_RECORD_BYTES).contains(&body_len) {
        return None;
    }
    let crc = u32_at(data, at + 4);
    let body = data.get(at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + body_len)?;
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let first = out.len();
    let parsed = match version {
        1 => decode_v1_body(body, out),
        _ => decode_v2_body(body, out, decoder),
    };
    if parsed.is_none() {
        out.truncate(first);
        return None;
    }
    Some(at + RECORD_HEADER_BYTES + body_len)
}

/// What [`replay`] found.
struct Replayed {
    live: BTreeMap<u32, SeriesRecord>,
    next_id: u32,
    good_end: usize,
    skipped_stretches: u64,
    /// Uncompressed and on-disk bytes of the creation records read.
    created_plain_bytes: u64,
    created_disk_bytes: u64,
}

/// Every record of `data` (a whole log file of format `version`) replayed in order into the live
/// set. A record that is not whole is skipped by searching for the next one that is, so one bad
/// record costs only itself; what was skipped is logged with the ids on either side.
fn replay(
    data: &[u8],
    version: u32,
    path: &std::path::Path,
    decoder: &mut zstd::bulk::Decompressor<'static>,
) -> Replayed {
    let mut live: BTreeMap<u32, SeriesRecord> = BTreeMap::new();
    let mut next_id = 0u32;
    let mut at = FILE_HEADER_BYTES.min(data.len());
    let mut good_end = at;
    let mut skipped_stretches = 0u64;
    let (mut created_plain_bytes, mut created_disk_bytes) = (0u64, 0u64);
    let mut last_id: Option<u32> = None;
    let mut events = Vec::new();
    while at + RECORD_HEADER_BYTES <= data.len() {
        events.clear();
        let end = match record_at(data, at, version, &mut events, decoder) {
            Some(end) => end,
            None => {
                let search_end = data.len().saturating_sub(RECORD_HEADER_BYTES - 1).min(at + MAX_RESYNC_SCAN_BYTES);
                let mut found = Vec::new();
                let resume = (at + 1..search_end).find(|candidate| {
                    found.clear();
                    record_at(data, *candidate, version, &mut found, decoder).is_some()
                });
                let Some(resume) = resume else {
                    break;
                };
                skipped_stretches += 1;
                let next = found.first().map(|e| match e {
                    Event::Created(r) => r.id,
                    Event::Removed(id) => *id,
                });
                tracing::error!(
                    path = %path.display(),
                    offset = at,
                    skipped_bytes = resume - at,
                    last_good_id = ?last_id,
                    next_good_id = ?next,
                    "series log: skipped a corrupt stretch; series whose identity was recorded there \
                     (ids after the last good one and before the next) are lost with their samples"
                );
                at = resume;
                continue;
            }
        };
        let mut created_here = 0u64;
        for event in events.drain(..) {
            match event {
                Event::Created(record) => {
                    next_id = next_id.max(record.id.saturating_add(1));
                    last_id = Some(record.id);
                    created_here += record_bytes(record.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
                    live.insert(record.id, record);
                }
                Event::Removed(id) => {
                    next_id = next_id.max(id.saturating_add(1));
                    last_id = Some(id);
                    live.remove(&id);
                }
            }
        }
        if created_here > 0 {
            created_plain_bytes += created_here;
            created_disk_bytes += (end - at) as u64;
        }
        at = end;
        good_end = end;
    }
    Replayed { live, next_id, good_end, skipped_stretches, created_plain_bytes, created_disk_bytes }
}

/// The format version of a log file's header, `None` when it is not one.
fn header_version(data: &[u8]) -> Option<u32> {
    let header = data.get(..FILE_HEADER_BYTES)?;
    [1, 2, SERIES_LOG_VERSION].into_iter().find(|v| header == file_header(*v))
}

impl SeriesLog {
    /// Opens (or creates) the log and returns the live series it records. A torn tail is
    /// truncated and a corrupt stretch in the middle skipped (both logged, naming what was lost);
    /// a foreign file is set aside. With `read_only` the file is read and left as it is.
    pub fn open(dir: &dyn Directory, name: &str, read_only: bool) -> Result<(SeriesLog, Recovered), Error> {
        let path = dir.path(name);
        if !read_only && dir.file_len(COMPACTING_NAME).ok().flatten().is_some() {
            // A compaction was interrupted before its rename: the log itself is whole.
            if let Err(e) = dir.remove(COMPACTING_NAME) {
                tracing::warn!(error = %e, "could not remove an interrupted series-log compaction");
            }
        }
        let mut data = dir.read(name, u64::MAX).map_err(|e| Error::io(&path, e))?.unwrap_or_default();
        let version = match header_version(&data) {
            Some(version) => version,
            None => {
                if !read_only && dir.file_len(name).ok().flatten().is_some() {
                    set_aside(dir, name, "not a ringtail series log (bad header)");
                }
                data.clear();
                SERIES_LOG_VERSION
            }
        };
        let mut decoder = zstd::bulk::Decompressor::new().map_err(|e| Error::io(&path, e))?;
        let replayed = replay(&data, version, &path, &mut decoder);
        let good_end = replayed.good_end;
        if good_end < data.len() {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = data.len() - good_end,
                kept_series = replayed.live.len(),
                "truncated torn or corrupt tail of the series log"
            );
        }
        let records: Vec<SeriesRecord> = replayed.live.into_values().collect();
        let live_plain_bytes =
            records.iter().map(|r| record_bytes(r.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))).sum();
        let file = dir.open_log(name).map_err(|e| Error::io(&path, e))?;
        let mut log = SeriesLog {
            path,
            file,
            len_bytes: good_end as u64,
            live_plain_bytes,
            created_plain_bytes: replayed.created_plain_bytes,
            created_disk_bytes: replayed.created_disk_bytes,
            buf: Vec::new(),
        };
        let recovered = Recovered { records, next_id: replayed.next_id, skipped_stretches: replayed.skipped_stretches };
        if read_only {
            return Ok((log, recovered));
        }
        if good_end < FILE_HEADER_BYTES {
            log.file.set_len(0).map_err(|e| Error::io(&log.path, e))?;
            log.write_at_end(&file_header(SERIES_LOG_VERSION))?;
            log.len_bytes = FILE_HEADER_BYTES as u64;
        } else if good_end < data.len() {
            log.file.set_len(good_end as u64).map_err(|e| Error::io(&log.path, e))?;
        }
        if version != SERIES_LOG_VERSION {
            // Appends are in the current format only: the old file is rewritten first.
            let live: std::collections::HashSet<u32> = recovered.records.iter().map(|r| r.id).collect();
            log.compact(dir, name, |id| live.contains(&id))?;
            tracing::info!(path = %log.path.display(), from_version = version, "rewrote the series log in the current format");
        }
        Ok((log, recovered))
    }

    fn write_at_end(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.file.write_at(self.len_bytes, bytes).map_err(|e| Error::io(&self.path, e))
    }

    /// Writes `buf` at the end as one write and counts it.
    fn append_bytes(&mut self, buf: &[u8]) -> Result<(), Error> {
        self.write_at_end(buf)?;
        self.len_bytes += buf.len() as u64;
        Ok(())
    }

    /// Appends one series record.
    #[cfg(test)]
    pub fn append(&mut self, record: &SeriesRecord) -> Result<(), Error> {
        self.append_all(std::slice::from_ref(record))
    }

    /// Appends the records of series created together, with one write.
    pub fn append_all(&mut self, records: &[SeriesRecord]) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let result = match encode_records(&mut buf, records) {
            Ok(()) => self.append_bytes(&buf),
            Err(e) => Err(Error::io(&self.path, e)),
        };
        if result.is_ok() {
            let plain: u64 = records
                .iter()
                .map(|r| record_bytes(r.labels.iter().map(|l| (l.name.as_str(), l.value.as_str()))))
                .sum();
            self.live_plain_bytes += plain;
            self.created_plain_bytes += plain;
            self.created_disk_bytes += buf.len() as u64;
        }
        // A huge batch's buffer is not kept.
        if buf.capacity() <= 4 * BLOCK_PLAIN_BYTES {
            self.buf = buf;
        }
        result
    }

    /// Appends the tombstones of removed series, `removed_bytes` being their uncompressed record
    /// bytes ([`record_bytes`]; their records leave the file at the next compaction).
    pub fn append_removals(&mut self, ids: &[u32], removed_bytes: u64) -> Result<(), Error> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        encode_tombstones(&mut buf, ids);
        let result = self.append_bytes(&buf);
        self.buf = buf;
        self.live_plain_bytes = self.live_plain_bytes.saturating_sub(removed_bytes);
        result
    }

    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Bytes on disk that `plain_bytes` of uncompressed records ([`record_bytes`]) take, at the
    /// compression ratio of the creation records written so far (1 before any).
    pub fn disk_bytes_of(&self, plain_bytes: u64) -> u64 {
        if self.created_plain_bytes == 0 {
            return plain_bytes;
        }
        (plain_bytes as u128 * u128::from(self.created_disk_bytes) / u128::from(self.created_plain_bytes)) as u64
    }

    /// Uncompressed record bytes that `disk_bytes` on disk stand for (the inverse of
    /// [`SeriesLog::disk_bytes_of`]).
    pub fn plain_bytes_of(&self, disk_bytes: u64) -> u64 {
        if self.created_disk_bytes == 0 {
            return disk_bytes;
        }
        (disk_bytes as u128 * u128::from(self.created_plain_bytes) / u128::from(self.created_disk_bytes)) as u64
    }

    /// Bytes on disk the live series' records take (estimated with [`SeriesLog::disk_bytes_of`]).
    pub fn live_bytes(&self) -> u64 {
        self.disk_bytes_of(self.live_plain_bytes)
    }

    /// Rewrites the log with only the creation records of series for which `is_live` holds: a new
    /// file is written and fsynced, then renamed over the log, so a kill at any moment leaves
    /// either the old or the new log, each whole. The caller keeps series creation and removal
    /// out while this runs (it holds the log and the index).
    pub fn compact(&mut self, dir: &dyn Directory, name: &str, is_live: impl Fn(u32) -> bool) -> Result<(), Error> {
        let data = dir.read(name, self.len_bytes).map_err(|e| Error::io(&self.path, e))?.unwrap_or_default();
        let version = header_version(&data).unwrap_or(SERIES_LOG_VERSION);
        let mut decoder = zstd::bulk::Decompressor::new().map_err(|e| Error::io(&self.path, e))?;
        let replayed = replay(&data, version, &self.path, &mut decoder);
        let kept: Vec<SeriesRecord> = replayed.live.into_values().filter(|r| is_live(r.id)).collect();
        let mut out = Vec::with_capacity(FILE_HEADER_BYTES + self.live_bytes() as usize);
        out.extend_from_slice(&file_header(SERIES_LOG_VERSION));
        // Compressed in runs of a common creation position (blocks share one).
        encode_records(&mut out, &kept).map_err(|e| Error::io(&self.path, e))?;
        let compacting_path = dir.path(COMPACTING_NAME);
        let mut file = dir.open_log(COMPACTING_NAME).map_err(|e| Error::io(&compacting_path, e))?;
        let written = file
            .set_len(0)
            .and_then(|()| file.write_at(0, &out))
            .and_then(|()| file.sync())
            .map_err(|e| Error::io(&compacting_path, e));
        if let Err(e) = written {
            drop(file);
            let _ = dir.remove(COMPACTING_NAME);
            return Err(e);
        }
        drop(file);
        dir.rename(COMPACTING_NAME, name).map_err(|e| Error::io(&self.path, e))?;
        let before = self.len_bytes;
        self.file = dir.open_log(name).map_err(|e| Error::io(&self.path, e))?;
        self.len_bytes = out.len() as u64;
        self.live_plain_bytes =
            kept.iter().map(|r| record_bytes(r.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))).sum();
        self.created_plain_bytes = self.live_plain_bytes;
        self.created_disk_bytes = (out.len() - FILE_HEADER_BYTES) as u64;
        tracing::info!(path = %self.path.display(), before_bytes = before, after_bytes = self.len_bytes, "compacted the series log");
        Ok(())
    }

    /// fsync.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.file.sync().map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MmapDirectory;

    #[test]
    fn record_golden_bytes() {
        let record = SeriesRecord { id: 1, created_position: 2, labels: Labels::from_pairs([("a", "b")]) };
        let mut out = Vec::new();
        encode_series_record(&mut out, &record);
        let body: &[u8] = &[KIND_SERIES, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, b'a', 1, 0, b'b'];
        assert_eq!(&out[0..4], &(body.len() as u32).to_le_bytes());
        assert_eq!(&out[4..8], &crc32c::crc32c(body).to_le_bytes());
        assert_eq!(&out[8..], body);
        let mut events = Vec::new();
        assert_eq!(
            record_at(&out, 0, SERIES_LOG_VERSION, &mut events, &mut zstd::bulk::Decompressor::new().unwrap()),
            Some(out.len())
        );
        assert_eq!(events, vec![Event::Created(record)]);
        // A delta block: kind, creation position, count, then the zstd-compressed series, each
        // coded against the one before.
        let records = [
            SeriesRecord { id: 7, created_position: 9, labels: Labels::from_pairs([("a", "b"), ("x", "y")]) },
            SeriesRecord { id: 8, created_position: 9, labels: Labels::from_pairs([("a", "c"), ("x", "y")]) },
            SeriesRecord { id: 5, created_position: 9, labels: Labels::from_pairs([("b", "c")]) },
        ];
        let mut out = Vec::new();
        encode_records(&mut out, &records).unwrap();
        assert_eq!(out[8], KIND_DELTA_BLOCK);
        assert_eq!(&out[9..17], &9u64.to_le_bytes());
        assert_eq!(&out[17..21], &3u32.to_le_bytes());
        let plain = zstd::bulk::decompress(&out[21..], 1 << 20).unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            14, 2, LABEL_NEW, 1, b'a', 1, b'b', LABEL_NEW, 1, b'x', 1, b'y', // id 7 = 0 + zigzag(7)
            0, 2, LABEL_NEW_VALUE, 1, b'c', LABEL_SAME,                       // id 8 = 7 + 1
            7, 1, LABEL_NEW, 1, b'b', 1, b'c',                                // id 5 = 9 + zigzag(-4)
        ];
        assert_eq!(plain, expected);
        let mut events = Vec::new();
        record_at(&out, 0, SERIES_LOG_VERSION, &mut events, &mut zstd::bulk::Decompressor::new().unwrap()).unwrap();
        assert_eq!(events, records.into_iter().map(Event::Created).collect::<Vec<_>>());
    }

    #[test]
    fn a_version_1_log_is_read_and_rewritten_in_the_current_format() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MmapDirectory::new(tmp.path());
        // Version 1: one uncompressed record per series (id, position, labels), tombstones with
        // position 2^64-1 and no labels.
        let v1_record = |id: u32, position: u64, labels: &[(&str, &str)]| {
            let mut body = Vec::new();
            body.extend_from_slice(&id.to_le_bytes());
            body.extend_from_slice(&position.to_le_bytes());
            encode_labels(&mut body, &Labels::from_pairs(labels.iter().copied()));
            framed(&body)
        };
        let mut file = file_header(1).to_vec();
        file.extend(v1_record(0, 5, &[("__name__", "a")]));
        file.extend(v1_record(1, 6, &[("__name__", "b")]));
        file.extend(v1_record(1, TOMBSTONE_POSITION, &[]));
        file.extend(v1_record(2, 7, &[("__name__", "c")]));
        std::fs::write(tmp.path().join(SERIES_LOG_NAME), &file).unwrap();
        let (_, recovered) = SeriesLog::open(&dir, SERIES_LOG_NAME, true).unwrap();
        let ids: Vec<u32> = recovered.records.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![0, 2]);
        assert_eq!(std::fs::read(tmp.path().join(SERIES_LOG_NAME)).unwrap(), file, "read-only leaves it as it is");
        let (mut log, recovered) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        assert_eq!(recovered.next_id, 3);
        assert_eq!(
            recovered.records[1],
            SeriesRecord { id: 2, created_position: 7, labels: Labels::from_pairs([("__name__", "c")]) }
        );
        log.append(&series(3)).unwrap();
        drop(log);
        let data = std::fs::read(tmp.path().join(SERIES_LOG_NAME)).unwrap();
        assert_eq!(header_version(&data), Some(SERIES_LOG_VERSION));
        let (_, recovered) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        let ids: Vec<u32> = recovered.records.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![0, 2, 3]);
        assert_eq!(recovered.next_id, 4);
    }

    #[test]
    fn a_version_2_log_is_read_and_rewritten_in_the_current_format() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MmapDirectory::new(tmp.path());
        // Version 2: a block (kind 3) of whole (id, labels) entries, and a tombstone record.
        let mut plain = Vec::new();
        for (id, name) in [(0u32, "a"), (1, "b"), (2, "c")] {
            plain.extend_from_slice(&id.to_le_bytes());
            encode_labels(&mut plain, &Labels::from_pairs([("__name__", name), ("job", "j")]));
        }
        let mut block = vec![KIND_BLOCK];
        block.extend_from_slice(&4u64.to_le_bytes());
        block.extend_from_slice(&3u32.to_le_bytes());
        block.extend(zstd::bulk::compress(&plain, 1).unwrap());
        let mut file = file_header(2).to_vec();
        file.extend(framed(&block));
        let mut tombstone = vec![KIND_TOMBSTONES];
        tombstone.extend_from_slice(&1u32.to_le_bytes());
        file.extend(framed(&tombstone));
        std::fs::write(tmp.path().join(SERIES_LOG_NAME), &file).unwrap();
        let (mut log, recovered) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        assert_eq!(recovered.next_id, 3);
        assert_eq!(
            recovered.records,
            [(0, "a"), (2, "c")]
                .map(|(id, name)| SeriesRecord {
                    id,
                    created_position: 4,
                    labels: Labels::from_pairs([("__name__", name), ("job", "j")])
                })
                .to_vec()
        );
        log.append(&series(3)).unwrap();
        drop(log);
        let data = std::fs::read(tmp.path().join(SERIES_LOG_NAME)).unwrap();
        assert_eq!(header_version(&data), Some(SERIES_LOG_VERSION));
        let (_, recovered) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        let ids: Vec<u32> = recovered.records.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![0, 2, 3]);
    }

    #[test]
    fn a_delta_block_that_decodes_to_more_than_a_block_is_refused() {
        // One big label then many series copying it: few plain bytes, a huge decoded size.
        let big = "v".repeat(LARGE_SERIES_BYTES - 16);
        let mut plain = Vec::new();
        let count = 40u32;
        for i in 0..count {
            let first = i == 0;
            let records_before = SeriesRecord {
                id: i.wrapping_sub(1),
                created_position: 0,
                labels: Labels::from_pairs([("big", big.as_str())]),
            };
            let record =
                SeriesRecord { id: i, created_position: 0, labels: Labels::from_pairs([("big", big.as_str())]) };
            encode_delta_series(&mut plain, &record, (!first).then_some(&records_before));
        }
        let mut body = vec![KIND_DELTA_BLOCK];
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&count.to_le_bytes());
        body.extend(zstd::bulk::compress(&plain, 1).unwrap());
        let mut events = Vec::new();
        let mut decoder = zstd::bulk::Decompressor::new().unwrap();
        assert_eq!(decode_v2_body(&body, &mut events, &mut decoder), None);
        assert!(events.is_empty());
        // The same block cut to what a writer puts in one decodes.
        let mut body = vec![KIND_DELTA_BLOCK];
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&2u32.to_le_bytes());
        let two_series = plain.len() - (count as usize - 2) * 3; // id, count, code
        body.extend(zstd::bulk::compress(&plain[..two_series], 1).unwrap());
        assert_eq!(decode_v2_body(&body, &mut events, &mut decoder), Some(()));
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn a_corrupt_delta_block_is_refused_not_misread() {
        let records: Vec<SeriesRecord> = (0..50u32)
            .map(|id| SeriesRecord {
                id,
                created_position: 0,
                labels: Labels::from_pairs([("__name__", format!("m{}", id % 3)), ("pod", format!("p{}", id / 5))]),
            })
            .collect();
        let mut out = Vec::new();
        encode_records(&mut out, &records).unwrap();
        let body = &out[RECORD_HEADER_BYTES..];
        let plain = zstd::bulk::decompress(&body[13..], 1 << 20).unwrap();
        let mut decoder = zstd::bulk::Decompressor::new().unwrap();
        // Every single-byte change of the plain bytes either fails to parse or parses to
        // sorted, unique-named label sets (never a panic, never more series than claimed).
        for at in 0..plain.len() {
            for value in [0u8, 1, 2, 3, 0x7f, 0x80, 0xff] {
                let mut changed = plain.clone();
                changed[at] = value;
                let mut body = body[..13].to_vec();
                body.extend(zstd::bulk::compress(&changed, 1).unwrap());
                let mut events = Vec::new();
                if decode_v2_body(&body, &mut events, &mut decoder).is_some() {
                    assert_eq!(events.len(), records.len());
                    for event in events {
                        let Event::Created(record) = event else { panic!("a block creates series") };
                        assert!(record.labels.as_slice().windows(2).all(|w| w[0].name < w[1].name));
                    }
                }
            }
        }
    }

    #[test]
    fn series_created_together_cost_a_fraction_of_their_plain_records() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MmapDirectory::new(tmp.path());
        let (mut log, _) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        let records: Vec<SeriesRecord> = (0..2000u32)
            .map(|id| {
                let pod = format!("checkout-7d9f8b6c4-{:05}", id / 10);
                let labels = Labels::from_pairs([
                    ("__name__", if id % 2 == 0 { "http_requests_total" } else { "process_cpu_seconds_total" }),
                    ("namespace", "shop"),
                    ("pod", pod.as_str()),
                    ("job", "kubernetes-pods"),
                    ("instance", &format!("10.0.{}.{}:8080", id / 2560, (id / 10) % 256)),
                ]);
                SeriesRecord { id, created_position: 0, labels }
            })
            .collect();
        log.append_all(&records).unwrap();
        let plain: u64 =
            records.iter().map(|r| record_bytes(r.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))).sum();
        let on_disk = log.len_bytes() - FILE_HEADER_BYTES as u64;
        // Series of one target differ in a few values: each costs about what differs, here under
        // a byte against ~150 bytes uncoded.
        assert!(on_disk < records.len() as u64, "{on_disk} bytes on disk for {} series, {plain} plain", records.len());
        assert_eq!(log.live_bytes(), on_disk, "the live estimate is the bytes on disk");
        drop(log);
        let (_, recovered) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        assert_eq!(recovered.records, records);
    }

    #[test]
    fn torn_tail_is_truncated_and_appends_continue() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MmapDirectory::new(tmp.path());
        let path = tmp.path().join("series.log");
        let (mut log, recovered) = SeriesLog::open(&dir, "series.log", false).unwrap();
        assert!(recovered.records.is_empty());
        for id in 0..3 {
            let labels = Labels::from_pairs([("__name__", format!("m{id}"))]);
            log.append(&SeriesRecord { id, created_position: 0, labels }).unwrap();
        }
        drop(log);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let (mut log, recovered) = SeriesLog::open(&dir, "series.log", false).unwrap();
        assert_eq!(recovered.records.len(), 2);
        log.append(&SeriesRecord { id: 2, created_position: 0, labels: Labels::from_pairs([("__name__", "x")]) })
            .unwrap();
        drop(log);
        let (_, recovered) = SeriesLog::open(&dir, "series.log", false).unwrap();
        assert_eq!(recovered.records.len(), 3);
        assert_eq!(recovered.records[2].labels.metric_name(), Some("x"));
    }

    /// `body` as a whole record: length and CRC header (the same framing the log writes).
    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; RECORD_HEADER_BYTES];
        out.extend_from_slice(body);
        finish_record(&mut out, 0);
        out
    }

    fn series(id: u32) -> SeriesRecord {
        SeriesRecord {
            id,
            created_position: u64::from(id),
            labels: Labels::from_pairs([("__name__", format!("m{id}"))]),
        }
    }

    #[test]
    fn a_corrupt_record_in_the_middle_costs_only_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MmapDirectory::new(tmp.path());
        let (mut log, _) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        let mut offsets = Vec::new();
        for id in 0..5 {
            offsets.push(log.len_bytes());
            log.append(&series(id)).unwrap();
        }
        drop(log);
        let path = tmp.path().join(SERIES_LOG_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[offsets[2] as usize + 12] ^= 0xff; // inside record 2's body: its CRC fails
        std::fs::write(&path, &bytes).unwrap();
        let (mut log, recovered) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        let ids: Vec<u32> = recovered.records.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![0, 1, 3, 4], "the records after the bad one survive");
        assert_eq!(recovered.next_id, 5);
        assert_eq!(recovered.skipped_stretches, 1);
        log.append(&series(5)).unwrap();
        drop(log);
        let (_, recovered) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        assert_eq!(recovered.records.len(), 5);
    }

    #[test]
    fn tombstones_remove_and_compaction_keeps_only_the_living() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MmapDirectory::new(tmp.path());
        let (mut log, _) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        for id in 0..6 {
            log.append(&series(id)).unwrap();
        }
        let one = record_bytes([("__name__", "m1")].into_iter());
        let one_on_disk = (log.len_bytes() - FILE_HEADER_BYTES as u64) / 6;
        log.append_removals(&[1, 3], 2 * one).unwrap();
        let before = log.len_bytes();
        drop(log);
        let (mut log, recovered) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        let ids: Vec<u32> = recovered.records.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![0, 2, 4, 5]);
        assert_eq!(recovered.next_id, 6, "removed ids are never handed out again");
        assert_eq!(log.live_bytes(), 4 * one_on_disk);
        log.compact(&dir, SERIES_LOG_NAME, |id| id != 5).unwrap();
        assert!(log.len_bytes() < before);
        assert_eq!(log.len_bytes(), FILE_HEADER_BYTES as u64 + 3 * one_on_disk);
        assert_eq!(log.live_bytes(), 3 * one_on_disk);
        log.append(&series(6)).unwrap();
        drop(log);
        let (_, recovered) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        let ids: Vec<u32> = recovered.records.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![0, 2, 4, 6]);
        assert_eq!(recovered.records[1], series(2), "records are copied intact");
    }

    #[test]
    fn an_interrupted_compaction_leaves_the_old_log() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MmapDirectory::new(tmp.path());
        let (mut log, _) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        log.append(&series(0)).unwrap();
        drop(log);
        std::fs::write(tmp.path().join(COMPACTING_NAME), b"half written").unwrap();
        let (_, recovered) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        assert_eq!(recovered.records, vec![series(0)]);
        assert!(!tmp.path().join(COMPACTING_NAME).exists());
    }

    #[test]
    fn foreign_file_is_set_aside() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("series.log"), b"hello, I am not a series log at all").unwrap();
        let (_, recovered) = SeriesLog::open(&MmapDirectory::new(tmp.path()), "series.log", false).unwrap();
        assert!(recovered.records.is_empty());
        assert!(tmp.path().join("series.log.corrupt").exists());
    }
}
