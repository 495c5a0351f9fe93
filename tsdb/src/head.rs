//! `HeadFiles` holds every series' open chunk in memory-mapped slots (regions of the storage seam,
//! `storage`), so an acknowledged sample is in shared file pages (and survives kill -9) before
//! `append` returns. Byte layout: `docs/format/head.md`.
//!
//! Slot `i` belongs to series `i`; files of `SLOTS_PER_FILE` slots are added as series are created
//! and never remapped, so a series keeps an `Arc` to its file. An append writes the changed payload
//! bytes, then publishes the new sample count with a single store: a kill leaves either the old or
//! the new count, and the count never covers bytes that are not written.

use crate::segment::u32_at;
use crate::storage::{set_aside, Directory, Region};
use crate::Error;
use parking_lot::Mutex;
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
    file: Arc<Region>,
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
    dir: Arc<dyn Directory>,
    files: Mutex<Vec<Arc<Region>>>,
}

fn head_name(index: usize) -> String {
    format!("head-{index:04}.rt")
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
    pub fn open(dir: Arc<dyn Directory>, series_count: usize) -> Result<HeadFiles, Error> {
        let needed = series_count.div_ceil(SLOTS_PER_FILE);
        let mut files = Vec::with_capacity(needed);
        for index in 0..needed {
            let name = head_name(index);
            let existing = dir.file_len(&name).ok().flatten().is_some();
            let file = match dir.open_region(&name, HEAD_FILE_BYTES) {
                Ok(file) => {
                    let mut header = [0u8; 28];
                    file.read_into(0, &mut header);
                    if !existing || header == [0u8; 28] || header == encode_head_header(index as u32) {
                        Some(file)
                    } else {
                        drop(file);
                        set_aside(dir.as_ref(), &name, "not a ringtail head file (bad header)");
                        None
                    }
                }
                Err(e) => {
                    set_aside(dir.as_ref(), &name, &e.to_string());
                    None
                }
            };
            let file = match file {
                Some(file) => file,
                None => {
                    tracing::warn!(path = %dir.path(&name).display(), "open chunks of this head file are lost");
                    dir.open_region(&name, HEAD_FILE_BYTES).map_err(|e| Error::io(dir.path(&name), e))?
                }
            };
            file.write(0, &encode_head_header(index as u32));
            files.push(Arc::new(file));
        }
        // Files past the series count are reused by new series (every slot is claimed before
        // use), so only their identity is checked here.
        for index in needed.. {
            let name = head_name(index);
            let Ok(Some(len)) = dir.file_len(&name) else {
                break;
            };
            let start = dir.read(&name, 28);
            let header: [u8; 28] = match &start {
                Ok(Some(bytes)) => bytes.as_slice().try_into().unwrap_or([0u8; 28]),
                _ => [0u8; 28],
            };
            let readable = matches!(&start, Ok(Some(bytes)) if bytes.len() == 28);
            let fresh = header == [0u8; 28]; // created, killed before its header was written
            if len != HEAD_FILE_BYTES || !readable || !(fresh || header == encode_head_header(index as u32)) {
                set_aside(dir.as_ref(), &name, "not a ringtail head file (bad header or size)");
            }
        }
        Ok(HeadFiles { dir, files: Mutex::new(files) })
    }

    /// The slot of `series`, creating the head file that holds it if needed.
    pub fn slot(&self, series: u32) -> Result<Slot, Error> {
        let index = series as usize / SLOTS_PER_FILE;
        let mut files = self.files.lock();
        while files.len() <= index {
            let name = head_name(files.len());
            // A leftover file from a store whose series log was truncated is reused: every slot is
            // claimed (cleared) before use.
            let file = match self.dir.open_region(&name, HEAD_FILE_BYTES) {
                Ok(file) => file,
                Err(_) => {
                    set_aside(self.dir.as_ref(), &name, "unexpected head file");
                    self.dir.open_region(&name, HEAD_FILE_BYTES).map_err(|e| Error::io(self.dir.path(&name), e))?
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
        let files: Vec<Arc<Region>> = self.files.lock().clone();
        for (index, file) in files.iter().enumerate() {
            file.flush().map_err(|e| Error::io(self.dir.path(&head_name(index)), e))?;
        }
        Ok(())
    }
}
