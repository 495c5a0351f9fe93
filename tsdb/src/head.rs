//! `HeadFiles` holds open chunks in memory-mapped slots (regions of the storage seam, `storage`), so
//! an acknowledged sample is in shared file pages (and survives kill -9) before `append` returns.
//! Byte layout: `docs/format/head.md`.
//!
//! Slots are a pool: a series takes a free slot when its first sample of a new chunk arrives and
//! gives it back when the chunk is closed into the ring for good (idle, evicted, or the series
//! removed). Each slot's header names its owner, so recovery finds every open chunk by scanning
//! the slots. Files of `SLOTS_PER_FILE` slots are added up to the head budget and never remapped,
//! so a slot keeps an `Arc` to its file. An append writes the changed payload bytes, then
//! publishes the new sample count with a single store: a kill leaves either the old or the new
//! count, and the count never covers bytes that are not written.

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
/// Bytes of one head file.
pub const HEAD_FILE_BYTES: u64 = (HEAD_FILE_HEADER_BYTES + SLOT_BYTES * SLOTS_PER_FILE) as u64;

/// A slot: its number, its file and its byte offset in it.
#[derive(Debug, Clone)]
pub struct Slot {
    number: u32,
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
    /// The slot's number in the pool.
    pub fn number(&self) -> u32 {
        self.number
    }

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

/// The head files of a store and the pool of free slots.
#[derive(Debug)]
pub struct HeadFiles {
    dir: Arc<dyn Directory>,
    files: Mutex<Vec<Arc<Region>>>,
    free: Mutex<Vec<u32>>,
    /// Files the head budget allows (more may exist when the budget shrank: they are kept).
    max_files: usize,
    read_only: bool,
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
    /// Opens every head file in `dir` (a foreign or corrupt one is set aside and replaced by an
    /// empty one: the open chunks it held are lost, which is logged). Returns the files and every
    /// slot holding samples; the caller hands the unused slots to [`HeadFiles::set_free`].
    pub fn open(
        dir: Arc<dyn Directory>,
        max_files: usize,
        read_only: bool,
    ) -> Result<(HeadFiles, Vec<(Slot, SlotContents)>), Error> {
        let mut files = Vec::new();
        for index in 0.. {
            let name = head_name(index);
            if dir.file_len(&name).ok().flatten().is_none() {
                break;
            }
            let file = match dir.open_region(&name, HEAD_FILE_BYTES) {
                Ok(file) => {
                    let mut header = [0u8; 28];
                    file.read_into(0, &mut header);
                    if header == [0u8; 28] || header == encode_head_header(index as u32) {
                        Some(file)
                    } else {
                        drop(file);
                        if !read_only {
                            set_aside(dir.as_ref(), &name, "not a ringtail head file (bad header)");
                        }
                        None
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData && !read_only => {
                    set_aside(dir.as_ref(), &name, &e.to_string());
                    None
                }
                Err(e) => return Err(Error::io(dir.path(&name), e)),
            };
            let file = match file {
                Some(file) => file,
                None if read_only => break,
                None => {
                    tracing::warn!(path = %dir.path(&name).display(), "open chunks of this head file are lost");
                    dir.open_region(&name, HEAD_FILE_BYTES).map_err(|e| Error::io(dir.path(&name), e))?
                }
            };
            file.write(0, &encode_head_header(index as u32));
            files.push(Arc::new(file));
        }
        let mut occupied = Vec::new();
        for (index, file) in files.iter().enumerate() {
            for i in 0..SLOTS_PER_FILE {
                let slot = Slot {
                    number: (index * SLOTS_PER_FILE + i) as u32,
                    file: file.clone(),
                    offset: (HEAD_FILE_HEADER_BYTES + i * SLOT_BYTES) as u32,
                };
                let contents = slot.read();
                if contents.num_samples > 0 {
                    occupied.push((slot, contents));
                }
            }
        }
        let max_files = max_files.max(files.len()).max(1);
        let heads = HeadFiles { dir, files: Mutex::new(files), free: Mutex::new(Vec::new()), max_files, read_only };
        Ok((heads, occupied))
    }

    /// Hands every slot not in `used` (slot numbers) to the free pool. Lock order: files, then
    /// the pool.
    pub fn set_free(&self, used: &std::collections::HashSet<u32>) {
        let files = self.files.lock();
        let mut free = self.free.lock();
        free.clear();
        for number in (0..files.len() * SLOTS_PER_FILE).rev() {
            if !used.contains(&(number as u32)) {
                free.push(number as u32);
            }
        }
    }

    /// A free slot, claimed for `series`: from the pool, or from a new head file while the head
    /// budget allows one. `None` when every slot of the budget holds an open chunk (the caller
    /// closes the stalest ones and asks again).
    pub fn allocate(&self, series: u32) -> Result<Option<Slot>, Error> {
        if self.read_only {
            return Err(Error::ReadOnly("opened read-only".into()));
        }
        loop {
            let number = self.free.lock().pop();
            if let Some(number) = number {
                let slot = self.slot(number);
                slot.claim(series);
                return Ok(Some(slot));
            }
            let mut files = self.files.lock();
            // Another thread may have added a file (and its slots) while this one waited.
            if !self.free.lock().is_empty() {
                continue;
            }
            if files.len() >= self.max_files {
                return Ok(None);
            }
            let index = files.len();
            let name = head_name(index);
            // A leftover file of this name (its series log was truncated) is reused: every slot is
            // claimed (cleared) before use.
            let file = match self.dir.open_region(&name, HEAD_FILE_BYTES) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    set_aside(self.dir.as_ref(), &name, "unexpected head file");
                    self.dir.open_region(&name, HEAD_FILE_BYTES).map_err(|e| Error::io(self.dir.path(&name), e))?
                }
                Err(e) => return Err(Error::io(self.dir.path(&name), e)),
            };
            file.write(0, &encode_head_header(index as u32));
            files.push(Arc::new(file));
            // The new slots join the pool before the files lock is released, so a thread that
            // finds the budget's last file made never also finds the pool empty.
            let first = (index * SLOTS_PER_FILE) as u32;
            self.free.lock().extend((first..first + SLOTS_PER_FILE as u32).rev());
        }
    }

    /// Gives `slot` back to the pool (its count is cleared first, so recovery sees it free).
    pub fn release(&self, slot: Slot) {
        slot.publish_count(0);
        self.free.lock().push(slot.number);
    }

    /// The slot numbered `number` (which must lie in an open file).
    fn slot(&self, number: u32) -> Slot {
        let files = self.files.lock();
        let index = number as usize / SLOTS_PER_FILE;
        let offset = HEAD_FILE_HEADER_BYTES + (number as usize % SLOTS_PER_FILE) * SLOT_BYTES;
        Slot { number, file: files[index].clone(), offset: offset as u32 }
    }

    /// (slots in files, free slots).
    pub fn slot_counts(&self) -> (u64, u64) {
        let total = (self.files.lock().len() * SLOTS_PER_FILE) as u64;
        (total, self.free.lock().len() as u64)
    }

    /// Slots the head budget holds.
    pub fn capacity_slots(&self) -> usize {
        self.max_files * SLOTS_PER_FILE
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryDirectory;

    #[test]
    fn threads_racing_for_the_first_file_all_get_a_slot() {
        for _ in 0..50 {
            let dir: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
            let (heads, occupied) = HeadFiles::open(dir, 1, false).unwrap();
            assert!(occupied.is_empty());
            let heads = Arc::new(heads);
            let threads: Vec<_> = (0..8u32)
                .map(|series| {
                    let heads = heads.clone();
                    std::thread::spawn(move || heads.allocate(series).unwrap().is_some())
                })
                .collect();
            assert!(threads.into_iter().all(|t| t.join().unwrap()), "a thread found the pool empty");
            assert_eq!(heads.slot_counts(), (SLOTS_PER_FILE as u64, SLOTS_PER_FILE as u64 - 8));
        }
    }
}
