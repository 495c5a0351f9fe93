//! `SeriesLog` is the append-only file that persists series identities (id → label set) and their
//! removal, so ids and labels survive restarts. Byte layout: `docs/format/series_log.md`.
//!
//! A record is written with one `write` call before the new id is handed out, so it is in the
//! page cache (kill -9 safe) before any sample of the series can be acknowledged; `flush` fsyncs.
//! A removed series gets a tombstone record; `compact` rewrites the file with only the live
//! series (a new file renamed over the old one, so a kill at any moment leaves one whole log).

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
pub const SERIES_LOG_VERSION: u32 = 1;
const FILE_HEADER_BYTES: usize = 16;
const RECORD_HEADER_BYTES: usize = 8;
/// Fixed part of a record body: id, creation position, label count.
const RECORD_FIXED_BYTES: usize = 4 + 8 + 2;
/// Bound for one record (what `validate_labels` lets through always fits).
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// How far past a corrupt record recovery searches for the next whole one; a longer corrupt
/// stretch ends the log there (a torn tail), so a damaged file costs bounded time to open.
const MAX_RESYNC_SCAN_BYTES: usize = 16 << 20;
/// The creation position a tombstone carries (no real position is this large).
const TOMBSTONE_POSITION: u64 = u64::MAX;

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
    /// Bytes of the records of live series (what a compaction would keep).
    live_bytes: u64,
    buf: Vec<u8>,
}

fn file_header() -> [u8; FILE_HEADER_BYTES] {
    let mut out = [0u8; FILE_HEADER_BYTES];
    out[0..8].copy_from_slice(&SERIES_LOG_MAGIC);
    out[8..12].copy_from_slice(&SERIES_LOG_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&out[0..12]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Bytes the record of a series with these labels takes (header included).
pub fn record_bytes<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let labels: usize = labels.map(|(n, v)| 4 + n.len() + v.len()).sum();
    (RECORD_HEADER_BYTES + RECORD_FIXED_BYTES + labels) as u64
}

/// Appends the record for `record` to `dst` (header and body).
pub fn encode_record(dst: &mut Vec<u8>, record: &SeriesRecord) {
    let start = dst.len();
    dst.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    dst.extend_from_slice(&record.id.to_le_bytes());
    dst.extend_from_slice(&record.created_position.to_le_bytes());
    dst.extend_from_slice(&(record.labels.len() as u16).to_le_bytes());
    for label in record.labels.iter() {
        for s in [&label.name, &label.value] {
            dst.extend_from_slice(&(s.len() as u16).to_le_bytes());
            dst.extend_from_slice(s.as_bytes());
        }
    }
    let body_len = (dst.len() - start - RECORD_HEADER_BYTES) as u32;
    let crc = crc32c::crc32c(&dst[start + RECORD_HEADER_BYTES..]);
    dst[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    dst[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends the tombstone of series `id` to `dst`.
fn encode_tombstone(dst: &mut Vec<u8>, id: u32) {
    encode_record(dst, &SeriesRecord { id, created_position: TOMBSTONE_POSITION, labels: Labels::default() });
}

/// Parses a record body (after its CRC was checked).
fn decode_body(body: &[u8]) -> Option<SeriesRecord> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = body.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let id = u32::from_le_bytes(take(4)?.try_into().ok()?);
    let created_position = u64::from_le_bytes(take(8)?.try_into().ok()?);
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
    if at != body.len() || !labels.windows(2).all(|w| w[0].name < w[1].name) {
        return None;
    }
    Some(SeriesRecord { id, created_position, labels: Labels::from_sorted(labels) })
}

/// The record starting at `at`, when it is whole and its CRC holds: (record, its end).
fn record_at(data: &[u8], at: usize) -> Option<(SeriesRecord, usize)> {
    let body_len = u32_at(data.get(at..at + RECORD_HEADER_BYTES)?, 0) as usize;
    if !(RECORD_FIXED_BYTES..=MAX_RECORD_BYTES).contains(&body_len) {
        return None;
    }
    let crc = u32_at(data, at + 4);
    let body = data.get(at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + body_len)?;
    if crc32c::crc32c(body) != crc {
        return None;
    }
    Some((decode_body(body)?, at + RECORD_HEADER_BYTES + body_len))
}

/// Every record of `data` (a whole log file) replayed in order into the live set. A record that
/// is not whole is skipped by searching for the next one that is, so one bad record costs only
/// itself; what was skipped is logged with the ids on either side.
fn replay(data: &[u8], path: &std::path::Path) -> (BTreeMap<u32, SeriesRecord>, u32, usize, u64) {
    let mut live: BTreeMap<u32, SeriesRecord> = BTreeMap::new();
    let mut next_id = 0u32;
    let mut at = FILE_HEADER_BYTES.min(data.len());
    let mut good_end = at;
    let mut skipped_stretches = 0u64;
    let mut last_id: Option<u32> = None;
    while at + RECORD_HEADER_BYTES <= data.len() {
        let (record, end) = match record_at(data, at) {
            Some(found) => found,
            None => {
                let search_end = data.len().saturating_sub(RECORD_HEADER_BYTES - 1).min(at + MAX_RESYNC_SCAN_BYTES);
                let resume = (at + 1..search_end).find(|candidate| record_at(data, *candidate).is_some());
                let Some(resume) = resume else {
                    break;
                };
                skipped_stretches += 1;
                let next = record_at(data, resume).map(|(r, _)| r.id);
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
        next_id = next_id.max(record.id.saturating_add(1));
        last_id = Some(record.id);
        if record.created_position == TOMBSTONE_POSITION && record.labels.is_empty() {
            live.remove(&record.id);
        } else {
            live.insert(record.id, record);
        }
        at = end;
        good_end = end;
    }
    (live, next_id, good_end, skipped_stretches)
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
        if data.len() < FILE_HEADER_BYTES || data[..FILE_HEADER_BYTES] != file_header() {
            if !read_only && dir.file_len(name).ok().flatten().is_some() {
                set_aside(dir, name, "not a ringtail series log (bad header)");
            }
            data.clear();
        }
        let (live, next_id, good_end, skipped_stretches) = replay(&data, &path);
        if good_end < data.len() {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = data.len() - good_end,
                kept_series = live.len(),
                "truncated torn or corrupt tail of the series log"
            );
        }
        let records: Vec<SeriesRecord> = live.into_values().collect();
        let live_bytes =
            records.iter().map(|r| record_bytes(r.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))).sum();
        let file = dir.open_log(name).map_err(|e| Error::io(&path, e))?;
        let mut log = SeriesLog { path, file, len_bytes: good_end as u64, live_bytes, buf: Vec::new() };
        if read_only {
            return Ok((log, Recovered { records, next_id, skipped_stretches }));
        }
        if good_end < FILE_HEADER_BYTES {
            log.file.set_len(0).map_err(|e| Error::io(&log.path, e))?;
            log.write_at_end(&file_header())?;
            log.len_bytes = FILE_HEADER_BYTES as u64;
        } else if good_end < data.len() {
            log.file.set_len(good_end as u64).map_err(|e| Error::io(&log.path, e))?;
        }
        Ok((log, Recovered { records, next_id, skipped_stretches }))
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
    pub fn append(&mut self, record: &SeriesRecord) -> Result<(), Error> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        encode_record(&mut buf, record);
        let result = self.append_bytes(&buf);
        if result.is_ok() {
            self.live_bytes += buf.len() as u64;
        }
        self.buf = buf;
        result
    }

    /// Appends the tombstones of removed series, `removed_bytes` being the bytes their creation
    /// records took (they leave the file at the next compaction).
    pub fn append_removals(&mut self, ids: &[u32], removed_bytes: u64) -> Result<(), Error> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for id in ids {
            encode_tombstone(&mut buf, *id);
        }
        let result = self.append_bytes(&buf);
        self.buf = buf;
        self.live_bytes = self.live_bytes.saturating_sub(removed_bytes);
        result
    }

    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Bytes the live series' records take.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Rewrites the log with only the creation records of series for which `is_live` holds: a new
    /// file is written and fsynced, then renamed over the log, so a kill at any moment leaves
    /// either the old or the new log, each whole. The caller keeps series creation and removal
    /// out while this runs (it holds the log and the index).
    pub fn compact(&mut self, dir: &dyn Directory, name: &str, is_live: impl Fn(u32) -> bool) -> Result<(), Error> {
        let data = dir.read(name, self.len_bytes).map_err(|e| Error::io(&self.path, e))?.unwrap_or_default();
        let (live, _, _, _) = replay(&data, &self.path);
        let mut out = Vec::with_capacity(self.live_bytes as usize + FILE_HEADER_BYTES);
        out.extend_from_slice(&file_header());
        for record in live.values().filter(|r| is_live(r.id)) {
            encode_record(&mut out, record);
        }
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
        self.live_bytes = (out.len() - FILE_HEADER_BYTES) as u64;
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
        encode_record(&mut out, &record);
        let body: &[u8] = &[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, b'a', 1, 0, b'b'];
        assert_eq!(&out[0..4], &(body.len() as u32).to_le_bytes());
        assert_eq!(&out[4..8], &crc32c::crc32c(body).to_le_bytes());
        assert_eq!(&out[8..], body);
        assert_eq!(decode_body(body), Some(record));
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
        log.append_removals(&[1, 3], 2 * one).unwrap();
        let before = log.len_bytes();
        drop(log);
        let (mut log, recovered) = SeriesLog::open(&dir, SERIES_LOG_NAME, false).unwrap();
        let ids: Vec<u32> = recovered.records.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![0, 2, 4, 5]);
        assert_eq!(recovered.next_id, 6, "removed ids are never handed out again");
        assert_eq!(log.live_bytes(), 4 * one);
        log.compact(&dir, SERIES_LOG_NAME, |id| id != 5).unwrap();
        assert!(log.len_bytes() < before);
        assert_eq!(log.live_bytes(), 3 * one);
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
