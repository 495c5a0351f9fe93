//! `HeadFiles` holds every series' open chunk in memory-mapped slots, so an acknowledged sample is
//! in shared file pages (and survives kill -9) before `append` returns. Byte layout:
//! `docs/format/head.md`.
//!
//! Slot `i` belongs to series `i`; files of `SLOTS_PER_FILE` slots are added as series are created
//! and never remapped, so a series keeps an `Arc` to its file. An append writes the changed payload
//! bytes, then publishes the new sample count with a single store: a kill leaves either the old or
//! the new count, and the count never covers bytes that are not written.

use crate::mmap::MappedFile;
use crate::ring::set_aside;
use crate::segment::u32_at;
use crate::Error;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const HEAD_MAGIC: [u8; 8] = *b"RTHEAD01";
pub const HEAD_VERSION: u32 = 1;
pub const HEAD_FILE_HEADER_BYTES: usize = 64;
pub const SLOT_BYTES: usize = 512;
pub const SLOT_HEADER_BYTES: usize = 8;
/// Payload capacity of an open chunk; a chunk closes when the next sample would not fit.
pub const SLOT_PAYLOAD_BYTES: usize = SLOT_BYTES - SLOT_HEADER_BYTES;
pub const SLOTS_PER_FILE: usize = 4096;
const HEAD_FILE_BYTES: u64 = (HEAD_FILE_HEADER_BYTES + SLOT_BYTES * SLOTS_PER_FILE) as u64;

/// A series' slot: its file and the slot's byte offset in it.
#[derive(Debug, Clone)]
pub struct Slot {
    file: Arc<MappedFile>,
    offset: u32,
}

/// What a slot held when the store was opened.
#[derive(Debug, Clone)]
pub struct SlotContents {
    pub num_samples: u16,
    pub series: u32,
    pub payload: [u8; SLOT_PAYLOAD_BYTES],
}

impl Slot {
    /// Writes `bytes` at payload offset `at`.
    #[inline]
    pub fn write_payload(&self, at: usize, bytes: &[u8]) {
        let ok = self.file.write(self.offset as usize + SLOT_HEADER_BYTES + at, bytes);
        debug_assert!(ok && at + bytes.len() <= SLOT_PAYLOAD_BYTES, "BUG: slot payload overflow");
    }

    /// Publishes the sample count (after the payload bytes it covers).
    #[inline]
    pub fn publish_count(&self, num_samples: u16) {
        self.file.publish_u16(self.offset as usize, num_samples);
    }

    /// Claims the slot for `series` with an empty chunk (clears whatever a previous owner left).
    pub fn claim(&self, series: u32) {
        self.publish_count(0);
        let mut header = [0u8; SLOT_HEADER_BYTES];
        header[4..8].copy_from_slice(&series.to_le_bytes());
        self.file.write(self.offset as usize, &header);
    }

    /// Copies the first `len` payload bytes into `dst`.
    pub fn read_payload(&self, dst: &mut [u8]) {
        self.read_payload_from(0, dst);
    }

    /// Copies payload bytes from offset `at` on into `dst`.
    pub fn read_payload_from(&self, at: usize, dst: &mut [u8]) {
        self.file.read_into(self.offset as usize + SLOT_HEADER_BYTES + at, dst);
    }

    pub fn read(&self) -> SlotContents {
        let mut raw = [0u8; SLOT_BYTES];
        self.file.read_into(self.offset as usize, &mut raw);
        let mut payload = [0u8; SLOT_PAYLOAD_BYTES];
        payload.copy_from_slice(&raw[SLOT_HEADER_BYTES..]);
        SlotContents { num_samples: u16::from_le_bytes([raw[0], raw[1]]), series: u32_at(&raw, 4), payload }
    }
}

/// The head files of a store.
#[derive(Debug)]
pub struct HeadFiles {
    dir: PathBuf,
    files: Mutex<Vec<Arc<MappedFile>>>,
}

fn head_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("head-{index:04}.rt"))
}

fn encode_head_header(index: u32) -> [u8; 28] {
    let mut out = [0u8; 28];
    out[0..8].copy_from_slice(&HEAD_MAGIC);
    out[8..12].copy_from_slice(&HEAD_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(SLOT_BYTES as u32).to_le_bytes());
    out[16..20].copy_from_slice(&(SLOTS_PER_FILE as u32).to_le_bytes());
    out[20..24].copy_from_slice(&index.to_le_bytes());
    let crc = crc32c::crc32c(&out[0..24]);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

impl HeadFiles {
    /// Opens the head files for `series_count` series. A missing, foreign or corrupt file is set
    /// aside and replaced by an empty one (its series lose only their open chunks, which is logged).
    pub fn open(dir: &Path, series_count: usize) -> Result<HeadFiles, Error> {
        let heads = HeadFiles { dir: dir.to_path_buf(), files: Mutex::new(Vec::new()) };
        let needed = series_count.div_ceil(SLOTS_PER_FILE);
        let mut files = heads.files.lock();
        for index in 0..needed {
            let path = head_path(dir, index);
            let existing = path.exists();
            let file = match MappedFile::open(&path, HEAD_FILE_BYTES) {
                Ok(file) => {
                    let mut header = [0u8; 28];
                    file.read_into(0, &mut header);
                    if !existing || header == [0u8; 28] || header == encode_head_header(index as u32) {
                        Some(file)
                    } else {
                        drop(file);
                        set_aside(&path, "not a ringtail head file (bad header)");
                        None
                    }
                }
                Err(e) => {
                    set_aside(&path, &e.to_string());
                    None
                }
            };
            let file = match file {
                Some(file) => file,
                None => {
                    tracing::warn!(path = %path.display(), "open chunks of this head file are lost");
                    MappedFile::open(&path, HEAD_FILE_BYTES).map_err(|e| Error::io(&path, e))?
                }
            };
            file.write(0, &encode_head_header(index as u32));
            files.push(Arc::new(file));
        }
        drop(files);
        // Files past the series count are reused by new series (every slot is claimed before
        // use), so only their identity is checked here.
        for index in needed.. {
            let path = head_path(dir, index);
            let Ok(meta) = std::fs::metadata(&path) else {
                break;
            };
            let mut header = [0u8; 28];
            let readable = std::fs::File::open(&path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header));
            let fresh = header == [0u8; 28]; // created, killed before its header was written
            if meta.len() != HEAD_FILE_BYTES
                || readable.is_err()
                || !(fresh || header == encode_head_header(index as u32))
            {
                set_aside(&path, "not a ringtail head file (bad header or size)");
            }
        }
        Ok(heads)
    }

    /// The slot of `series`, creating the head file that holds it if needed.
    pub fn slot(&self, series: u32) -> Result<Slot, Error> {
        let index = series as usize / SLOTS_PER_FILE;
        let mut files = self.files.lock();
        while files.len() <= index {
            let path = head_path(&self.dir, files.len());
            // A leftover file from a store whose series log was truncated is reused: every slot is
            // claimed (cleared) before use.
            let file = match MappedFile::open(&path, HEAD_FILE_BYTES) {
                Ok(file) => file,
                Err(_) => {
                    set_aside(&path, "unexpected head file");
                    MappedFile::open(&path, HEAD_FILE_BYTES).map_err(|e| Error::io(&path, e))?
                }
            };
            file.write(0, &encode_head_header(files.len() as u32));
            files.push(Arc::new(file));
        }
        let offset = HEAD_FILE_HEADER_BYTES + (series as usize % SLOTS_PER_FILE) * SLOT_BYTES;
        Ok(Slot { file: files[index].clone(), offset: offset as u32 })
    }

    pub fn bytes_on_disk(&self) -> u64 {
        self.files.lock().len() as u64 * HEAD_FILE_BYTES
    }

    /// msync of every head file.
    pub fn flush(&self) -> Result<(), Error> {
        let files: Vec<Arc<MappedFile>> = self.files.lock().clone();
        for (index, file) in files.iter().enumerate() {
            file.flush().map_err(|e| Error::io(head_path(&self.dir, index), e))?;
        }
        Ok(())
    }
}
