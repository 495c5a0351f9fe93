//! `SeriesLog` is the append-only file that persists series identities (id → label set), so ids
//! and labels survive restarts. Byte layout: `docs/format/series_log.md`.
//!
//! A record is written with one `write` call before the new id is handed out, so it is in the
//! page cache (kill -9 safe) before any sample of the series can be acknowledged; `flush` fsyncs.

use crate::segment::u32_at;
use crate::storage::{set_aside, Directory, LogFile};
use crate::{Error, Label, Labels};
use std::path::PathBuf;

/// The log's file name in the store's directory.
pub const SERIES_LOG_NAME: &str = "series.log";
pub const SERIES_LOG_MAGIC: [u8; 8] = *b"RTSERS01";
pub const SERIES_LOG_VERSION: u32 = 1;
const FILE_HEADER_BYTES: usize = 16;
const RECORD_HEADER_BYTES: usize = 8;
/// Sanity bound for one record (a label set this large is refused at creation).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// One series as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRecord {
    pub id: u32,
    /// Ring position when the series was created: chunks written earlier belong to someone else.
    pub created_position: u64,
    pub labels: Labels,
}

/// The open log file.
#[derive(Debug)]
pub struct SeriesLog {
    path: PathBuf,
    file: LogFile,
    len_bytes: u64,
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

impl SeriesLog {
    /// Opens (or creates) the log and returns every intact record, in order with ids 0, 1, 2, …
    /// A torn or corrupt tail is truncated (logged); a foreign file is set aside.
    pub fn open(dir: &dyn Directory, name: &str) -> Result<(SeriesLog, Vec<SeriesRecord>), Error> {
        let path = dir.path(name);
        let mut data = dir.read(name, u64::MAX).map_err(|e| Error::io(&path, e))?.unwrap_or_default();
        if data.len() < FILE_HEADER_BYTES || data[..FILE_HEADER_BYTES] != file_header() {
            if dir.file_len(name).ok().flatten().is_some() {
                set_aside(dir, name, "not a ringtail series log (bad header)");
            }
            data.clear();
        }
        let mut records = Vec::new();
        let mut good_end = FILE_HEADER_BYTES.min(data.len());
        let mut at = good_end;
        while at + RECORD_HEADER_BYTES <= data.len() {
            let body_len = u32_at(&data, at) as usize;
            let crc = u32_at(&data, at + 4);
            let Some(body) = data.get(at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + body_len) else {
                break;
            };
            if body_len > MAX_RECORD_BYTES || crc32c::crc32c(body) != crc {
                break;
            }
            match decode_body(body) {
                Some(record) if record.id as usize == records.len() => records.push(record),
                _ => break,
            }
            at += RECORD_HEADER_BYTES + body_len;
            good_end = at;
        }
        if good_end < data.len() {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = data.len() - good_end,
                kept_series = records.len(),
                "truncated torn or corrupt tail of the series log"
            );
        }
        let file = dir.open_log(name).map_err(|e| Error::io(&path, e))?;
        let mut log = SeriesLog { path, file, len_bytes: good_end as u64, buf: Vec::new() };
        if good_end < FILE_HEADER_BYTES {
            log.file.set_len(0).map_err(|e| Error::io(&log.path, e))?;
            log.write_at_end(&file_header())?;
            log.len_bytes = FILE_HEADER_BYTES as u64;
        } else {
            log.file.set_len(good_end as u64).map_err(|e| Error::io(&log.path, e))?;
        }
        Ok((log, records))
    }

    fn write_at_end(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.file.write_at(self.len_bytes, bytes).map_err(|e| Error::io(&self.path, e))
    }

    /// Appends one series record.
    pub fn append(&mut self, record: &SeriesRecord) -> Result<(), Error> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        encode_record(&mut buf, record);
        let result = self.write_at_end(&buf);
        if result.is_ok() {
            self.len_bytes += buf.len() as u64;
        }
        self.buf = buf;
        result
    }

    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
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
        let (mut log, records) = SeriesLog::open(&dir, "series.log").unwrap();
        assert!(records.is_empty());
        for id in 0..3 {
            let labels = Labels::from_pairs([("__name__", format!("m{id}"))]);
            log.append(&SeriesRecord { id, created_position: 0, labels }).unwrap();
        }
        drop(log);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let (mut log, records) = SeriesLog::open(&dir, "series.log").unwrap();
        assert_eq!(records.len(), 2);
        log.append(&SeriesRecord { id: 2, created_position: 0, labels: Labels::from_pairs([("__name__", "x")]) })
            .unwrap();
        drop(log);
        let (_, records) = SeriesLog::open(&dir, "series.log").unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].labels.metric_name(), Some("x"));
    }

    #[test]
    fn foreign_file_is_set_aside() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("series.log"), b"hello, I am not a series log at all").unwrap();
        let (_, records) = SeriesLog::open(&MmapDirectory::new(tmp.path()), "series.log").unwrap();
        assert!(records.is_empty());
        assert!(tmp.path().join("series.log.corrupt").exists());
    }
}
