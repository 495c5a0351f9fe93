//! `HeadFiles` holds open chunks in memory-mapped slots (regions of the storage seam, `storage`), so
//! an acknowledged sample is in shared file pages (and survives kill -9) before `append` returns.
//! Byte layout: `docs/format/head.md`.
//!
//! Slots are a pool: a series takes a free slot when its first sample of a new chunk arrives and
//! gives it back when the chunk is closed into the ring for good (idle, evicted, or the series
//! removed). Slots come in sizes (`SLOT_CLASS_BYTES`): each 512-byte page of a head file is one
//! 512-byte slot or is split into slots of one smaller size (a slab allocator; a page none of
//! whose slots is in use can be split differently). A chunk starts in the smallest slot and moves
//! to the smallest larger one when a sample does not fit (the copy is published before the old
//! slot is cleared; recovery keeps the copy with more samples), so a short-lived series holds 24
//! bytes, not 512. Each slot's header names its owner, so recovery finds every open chunk by
//! scanning the slots. Files are added up to the head budget and never remapped or removed: a
//! slot is only its number and size (8 bytes in every series' state), and reaches its file through
//! a table of files that is filled once per file and read without a lock. An append writes the
//! changed payload bytes, then publishes the new sample count with a single store: a kill leaves
//! either the old or the new count, and the count never covers bytes that are not written.

use crate::segment::u32_at;
use crate::storage::{set_aside, Directory, Region};
use crate::Error;
use parking_lot::Mutex;
use std::sync::{Arc, OnceLock};

pub const HEAD_MAGIC: [u8; 8] = *b"RTHEAD01";
/// Version 2 splits pages into smaller slots (byte 2 of a slot header names its size; version 1
/// files have only 512-byte slots, whose byte 2 is zero, and are read as they are).
pub const HEAD_VERSION: u32 = 2;
pub const HEAD_FILE_HEADER_BYTES: usize = 64;
/// Slot sizes, smallest first (the last is a whole page). 24 bytes hold the first three samples
/// of a typical counter or integer gauge (16 payload bytes): a short-lived series costs that.
pub const SLOT_CLASS_BYTES: [usize; 6] = [24, 32, 64, 128, 256, 512];
const LARGEST_CLASS: usize = SLOT_CLASS_BYTES.len() - 1;
/// Bytes of a page (and of the largest slot).
pub const SLOT_BYTES: usize = 512;
pub const SLOT_HEADER_BYTES: usize = 8;
/// Payload capacity of the largest slot: an open chunk closes when the next sample would not fit.
pub const SLOT_PAYLOAD_BYTES: usize = SLOT_BYTES - SLOT_HEADER_BYTES;
pub const PAGES_PER_FILE: usize = 4096;
/// Bytes of one head file.
pub const HEAD_FILE_BYTES: u64 = (HEAD_FILE_HEADER_BYTES + SLOT_BYTES * PAGES_PER_FILE) as u64;
/// Slot numbers are `file << 17 | page << 5 | slot in page`.
const SLOT_BITS: u32 = 5;
const PAGE_BITS: u32 = 12;
const FILE_SHIFT: u32 = PAGE_BITS + SLOT_BITS;
/// Head files are allocated on disk in steps as their pages are first handed out (pages go out
/// lowest first), so a store with few open chunks takes little disk.
const ALLOCATION_STEP_BYTES: u64 = 64 << 10;
/// Head files a store can address with 32-bit slot numbers.
const MAX_HEAD_FILES: usize = 1 << (32 - PAGE_BITS - SLOT_BITS);

/// Slots of size `class` in a page.
fn slots_per_page(class: usize) -> usize {
    SLOT_BYTES / SLOT_CLASS_BYTES[class]
}

/// The size code a slot header stores in byte 2: 0 for a whole page (so a zero page and a version
/// 1 slot read as a free 512-byte slot), `class + 1` for the smaller sizes.
fn class_code(class: usize) -> u8 {
    if class == LARGEST_CLASS {
        0
    } else {
        class as u8 + 1
    }
}

fn class_of_code(code: u8) -> Option<usize> {
    match code {
        0 => Some(LARGEST_CLASS),
        c if (c as usize) <= LARGEST_CLASS => Some(c as usize - 1),
        _ => None,
    }
}

/// A slot size, an index into [`SLOT_CLASS_BYTES`]. An enum, not a `u8`: the byte values it never
/// takes let a series keep `Option<Slot>`-like states in the slot's 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum SlotClass {
    Bytes24,
    Bytes32,
    Bytes64,
    Bytes128,
    Bytes256,
    Bytes512,
}

impl SlotClass {
    const ALL: [SlotClass; SLOT_CLASS_BYTES.len()] = [
        SlotClass::Bytes24,
        SlotClass::Bytes32,
        SlotClass::Bytes64,
        SlotClass::Bytes128,
        SlotClass::Bytes256,
        SlotClass::Bytes512,
    ];

    /// The class of index `class` (the largest for an index past the end, which is a bug).
    fn of(class: usize) -> SlotClass {
        debug_assert!(class < SLOT_CLASS_BYTES.len(), "BUG: slot class {class}");
        SlotClass::ALL[class.min(LARGEST_CLASS)]
    }
}

/// A slot: its number (which names its file, page and place in the page) and its size class. 8
/// bytes, `Copy`: every series with an open chunk holds one, and its file is looked up in
/// [`HeadFiles`] when the slot is written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    number: u32,
    class: SlotClass,
}

/// What a slot held when the store was opened.
#[derive(Debug, Clone)]
pub struct SlotContents {
    pub num_samples: u16,
    pub series: u32,
    /// The payload, zero past the slot's capacity.
    pub payload: [u8; SLOT_PAYLOAD_BYTES],
}

impl Slot {
    fn new(number: u32, class: usize) -> Slot {
        Slot { number, class: SlotClass::of(class) }
    }

    /// The slot's number in the pool.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Index of the slot's head file.
    #[inline]
    fn file_index(&self) -> usize {
        (self.number >> FILE_SHIFT) as usize
    }

    /// Byte offset of the slot in its file.
    #[inline]
    fn offset(&self) -> usize {
        let page = (self.number >> SLOT_BITS) as usize & (PAGES_PER_FILE - 1);
        let in_page = (self.number as usize) & ((1 << SLOT_BITS) - 1);
        HEAD_FILE_HEADER_BYTES + page * SLOT_BYTES + in_page * SLOT_CLASS_BYTES[self.class()]
    }

    #[inline]
    fn class(&self) -> usize {
        self.class as usize
    }

    /// Payload bytes the slot holds.
    #[inline]
    pub fn payload_capacity(&self) -> usize {
        SLOT_CLASS_BYTES[self.class()] - SLOT_HEADER_BYTES
    }

    /// Bytes of the slot, header included.
    pub fn size_bytes(&self) -> usize {
        SLOT_CLASS_BYTES[self.class()]
    }

    /// Writes `bytes` at payload offset `at`; refused (nothing written) past the slot's payload,
    /// which would be the next slot's header.
    #[inline]
    pub fn write_payload(&self, heads: &HeadFiles, at: usize, bytes: &[u8]) -> Result<(), Error> {
        let fits = at + bytes.len() <= self.payload_capacity()
            && heads.file(self).is_some_and(|file| file.write(self.offset() + SLOT_HEADER_BYTES + at, bytes));
        debug_assert!(fits, "BUG: slot payload overflow");
        match fits {
            true => Ok(()),
            false => Err(Error::Internal(format!(
                "{} payload bytes at {at} do not fit a {}-byte slot",
                bytes.len(),
                self.size_bytes()
            ))),
        }
    }

    /// Publishes the sample count (after the payload bytes it covers).
    #[inline]
    pub fn publish_count(&self, heads: &HeadFiles, num_samples: u16) {
        let published = heads.file(self).is_some_and(|file| file.publish_u16(self.offset(), num_samples));
        debug_assert!(published || heads.read_only, "BUG: a count was not published");
    }

    /// Claims the slot for `series` with an empty chunk (clears whatever a previous owner left).
    fn claim(&self, heads: &HeadFiles, series: u32) {
        self.publish_count(heads, 0);
        let mut header = [0u8; SLOT_HEADER_BYTES];
        header[2] = class_code(self.class());
        header[4..8].copy_from_slice(&series.to_le_bytes());
        if let Some(file) = heads.file(self) {
            file.write(self.offset(), &header);
        }
    }

    /// Copies the first `dst.len()` payload bytes into `dst`.
    pub fn read_payload(&self, heads: &HeadFiles, dst: &mut [u8]) {
        self.read_payload_from(heads, 0, dst);
    }

    /// Copies payload bytes from offset `at` on into `dst`.
    pub fn read_payload_from(&self, heads: &HeadFiles, at: usize, dst: &mut [u8]) {
        let read = heads.file(self).is_some_and(|file| file.read_into(self.offset() + SLOT_HEADER_BYTES + at, dst));
        debug_assert!(read, "BUG: a slot's payload was not read");
    }

    /// What the slot holds now (tests compare it before and after a simulated kill).
    #[cfg(test)]
    pub fn read(&self, heads: &HeadFiles) -> SlotContents {
        let mut header = [0u8; SLOT_HEADER_BYTES];
        if let Some(file) = heads.file(self) {
            file.read_into(self.offset(), &mut header);
        }
        let mut payload = [0u8; SLOT_PAYLOAD_BYTES];
        self.read_payload(heads, &mut payload[..self.payload_capacity()]);
        SlotContents { num_samples: u16::from_le_bytes([header[0], header[1]]), series: u32_at(&header, 4), payload }
    }
}

/// What the slot of size `class` at byte `at` of a head file's contents `bytes` holds (`None` past
/// the end of a short read).
fn slot_contents(bytes: &[u8], at: usize, class: usize) -> Option<SlotContents> {
    let header = bytes.get(at..at + SLOT_HEADER_BYTES)?;
    let capacity = SLOT_CLASS_BYTES[class] - SLOT_HEADER_BYTES;
    let mut payload = [0u8; SLOT_PAYLOAD_BYTES];
    payload[..capacity].copy_from_slice(bytes.get(at + SLOT_HEADER_BYTES..at + SLOT_HEADER_BYTES + capacity)?);
    Some(SlotContents { num_samples: u16::from_le_bytes([header[0], header[1]]), series: u32_at(header, 4), payload })
}

/// A page's slot size and which of its slots are free.
#[derive(Debug, Clone, Copy)]
struct Page {
    class: u8,
    /// Bit `i` set: slot `i` of the page is free.
    free: u32,
    /// Whether the page is on its class's `with_free` list.
    listed_with_free: bool,
    /// Whether the page is on `empty_pages`.
    listed_empty: bool,
}

impl Page {
    fn all_free_mask(class: usize) -> u32 {
        ((1u64 << slots_per_page(class)) - 1) as u32
    }

    fn is_empty(&self) -> bool {
        self.free == Page::all_free_mask(self.class as usize)
    }
}

/// Which slots of the head files are free. One mutex: taking or giving back a slot is a few
/// instructions, and a new file is rare. The files themselves are in [`HeadFiles::files`].
#[derive(Debug, Default)]
struct Pool {
    /// Every page of every file, `file * PAGES_PER_FILE + page`.
    pages: Vec<Page>,
    /// Per size class, pages of that size with a free slot.
    with_free: [Vec<u32>; SLOT_CLASS_BYTES.len()],
    /// Pages none of whose slots is in use (they may be split into another size).
    empty_pages: Vec<u32>,
    /// Bytes of slots holding an open chunk.
    used_bytes: u64,
    /// Per file (one entry for each file in the pool), how many of its first bytes are allocated
    /// on disk.
    allocated_bytes: Vec<u64>,
}

/// A head file could not be allocated further (the volume is full).
struct AllocationFailed {
    file: usize,
    source: std::io::Error,
}

impl Pool {
    fn list(&mut self, page_index: u32) {
        let page = &mut self.pages[page_index as usize];
        if page.free != 0 && !page.listed_with_free {
            page.listed_with_free = true;
            self.with_free[page.class as usize].push(page_index);
        }
        if page.is_empty() && !page.listed_empty {
            page.listed_empty = true;
            self.empty_pages.push(page_index);
        }
    }

    /// Head files in the pool.
    fn file_count(&self) -> usize {
        self.allocated_bytes.len()
    }

    /// Allocates the disk space of page `page_index` (and of the pages after it, a step at a
    /// time) before anything is written there.
    fn ensure_allocated(&mut self, files: &FileTable, page_index: u32) -> Result<(), AllocationFailed> {
        let file = page_index as usize / PAGES_PER_FILE;
        let end = (HEAD_FILE_HEADER_BYTES + (page_index as usize % PAGES_PER_FILE + 1) * SLOT_BYTES) as u64;
        let allocated = self.allocated_bytes[file];
        if end <= allocated {
            return Ok(());
        }
        let target = end.div_ceil(ALLOCATION_STEP_BYTES).saturating_mul(ALLOCATION_STEP_BYTES).min(HEAD_FILE_BYTES);
        let Some(region) = files.get(file).and_then(OnceLock::get) else {
            return Err(AllocationFailed {
                file,
                source: std::io::Error::other("BUG: a pooled head file is not open"),
            });
        };
        region.allocate(allocated, target - allocated).map_err(|source| AllocationFailed { file, source })?;
        self.allocated_bytes[file] = target;
        Ok(())
    }

    /// A free slot of size `class`, taken out of the pool.
    fn pop(&mut self, files: &FileTable, class: usize) -> Result<Option<Slot>, AllocationFailed> {
        loop {
            let Some(&page_index) = self.with_free[class].last() else {
                return Ok(None);
            };
            let page = &mut self.pages[page_index as usize];
            if page.class as usize != class {
                // Split anew since it was listed: its flag belongs to its new size's list.
                self.with_free[class].pop();
                continue;
            }
            if page.free == 0 {
                page.listed_with_free = false;
                self.with_free[class].pop();
                continue;
            }
            self.ensure_allocated(files, page_index)?;
            let page = &mut self.pages[page_index as usize];
            let in_page = page.free.trailing_zeros();
            page.free &= !(1 << in_page);
            if page.free == 0 {
                page.listed_with_free = false;
                self.with_free[class].pop();
            }
            self.used_bytes += SLOT_CLASS_BYTES[class] as u64;
            return Ok(Some(Slot::new(page_index << SLOT_BITS | in_page, class)));
        }
    }

    /// Splits an empty page into slots of size `class`. False when there is none.
    fn split_empty_page(&mut self, files: &FileTable, class: usize) -> Result<bool, AllocationFailed> {
        while let Some(&page_index) = self.empty_pages.last() {
            let page = &self.pages[page_index as usize];
            if !page.is_empty() {
                self.pages[page_index as usize].listed_empty = false;
                self.empty_pages.pop();
                continue;
            }
            if page.class as usize != class {
                self.ensure_allocated(files, page_index)?;
            }
            self.empty_pages.pop();
            let page = &mut self.pages[page_index as usize];
            page.listed_empty = false;
            if page.class as usize != class {
                // Allocated just above, so the file is in the table.
                if let Some(file) = files.get(page_index as usize / PAGES_PER_FILE).and_then(OnceLock::get) {
                    format_page(file, page_index as usize % PAGES_PER_FILE, class);
                }
                page.class = class as u8;
                page.free = Page::all_free_mask(class);
                page.listed_with_free = false;
            }
            self.list(page_index);
            return Ok(true);
        }
        Ok(false)
    }

    /// Adds the next file (already in the file table) whose pages have the slot sizes `classes`
    /// (all free), of which the first `allocated_bytes` are allocated on disk.
    fn push_file(&mut self, classes: &[usize], allocated_bytes: u64) {
        let first = self.pages.len() as u32;
        self.allocated_bytes.push(allocated_bytes);
        self.pages.extend(classes.iter().map(|class| Page {
            class: *class as u8,
            free: Page::all_free_mask(*class),
            listed_with_free: false,
            listed_empty: false,
        }));
        // Lowest pages last, so they are handed out first (fewer memory pages touched).
        for page_index in (first..self.pages.len() as u32).rev() {
            self.list(page_index);
        }
    }

    /// Rebuilds the free lists from the pages (after recovery, and when stale entries pile up).
    fn relist(&mut self) {
        for list in self.with_free.iter_mut() {
            list.clear();
        }
        self.empty_pages.clear();
        for page in self.pages.iter_mut() {
            page.listed_with_free = false;
            page.listed_empty = false;
        }
        for page_index in (0..self.pages.len() as u32).rev() {
            self.list(page_index);
        }
    }
}

/// Zeroes page `page` of `file` and writes the size code of `class` into each of its slot headers
/// (zeroed first, so no count of the old split survives under the new one).
fn format_page(file: &Region, page: usize, class: usize) {
    let at = HEAD_FILE_HEADER_BYTES + page * SLOT_BYTES;
    file.write(at, &[0u8; SLOT_BYTES]);
    let code = class_code(class);
    if code != 0 {
        for slot in 0..slots_per_page(class) {
            file.write(at + slot * SLOT_CLASS_BYTES[class] + 2, &[code]);
        }
    }
}

/// Head files by index. An entry is set once, under the pool's mutex, before any slot of the file
/// is handed out, and never replaced: the write path reads it without a lock.
type FileTable = [OnceLock<Region>];

/// The head files of a store and the pool of free slots.
#[derive(Debug)]
pub struct HeadFiles {
    dir: Arc<dyn Directory>,
    /// One entry per file the budget allows (`max_files`); the first `Pool::file_count` are set.
    files: Box<FileTable>,
    pool: Mutex<Pool>,
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
    out[16..20].copy_from_slice(&(PAGES_PER_FILE as u32).to_le_bytes());
    out[20..24].copy_from_slice(&index.to_le_bytes());
    let crc = crc32c::crc32c(&out[0..24]);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Whether `header` is a head file header for file `index` (of this version or version 1), or
/// all zero (never written).
fn valid_head_header(header: &[u8; 28], index: u32) -> bool {
    let mut v1 = encode_head_header(index);
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32c::crc32c(&v1[0..24]);
    v1[24..28].copy_from_slice(&crc.to_le_bytes());
    header == &[0u8; 28] || header == &encode_head_header(index) || header == &v1
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
        let mut pool = Pool::default();
        let mut files: Vec<Region> = Vec::new();
        let mut occupied = Vec::new();
        let mut unreadable_pages = 0u64;
        for index in 0..MAX_HEAD_FILES {
            let name = head_name(index);
            if dir.file_len(&name).ok().flatten().is_none() {
                break;
            }
            let file = match dir.open_region_allocating(&name, HEAD_FILE_BYTES, ALLOCATION_STEP_BYTES) {
                Ok(file) => {
                    let mut header = [0u8; 28];
                    file.read_into(0, &mut header);
                    if valid_head_header(&header, index as u32) {
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
                    dir.open_region_allocating(&name, HEAD_FILE_BYTES, ALLOCATION_STEP_BYTES)
                        .map_err(|e| Error::io(dir.path(&name), e))?
                }
            };
            file.write(0, &encode_head_header(index as u32));
            // Scanned with a plain read, not through the mapping: pages never handed out are holes,
            // and a mapped read of a hole makes some file systems (tmpfs) allocate it — on a full
            // volume that is SIGBUS.
            let bytes =
                dir.read(&name, HEAD_FILE_BYTES).map_err(|e| Error::io(dir.path(&name), e))?.unwrap_or_default();
            let mut classes = Vec::with_capacity(PAGES_PER_FILE);
            for page in 0..PAGES_PER_FILE {
                let page_at = HEAD_FILE_HEADER_BYTES + page * SLOT_BYTES;
                let code = bytes.get(page_at + 2).copied().unwrap_or(0);
                let class = match class_of_code(code) {
                    Some(class) => class,
                    None => {
                        // Not a size this version writes: the page's open chunks are lost.
                        unreadable_pages += 1;
                        if !read_only {
                            // Written before, so allocated (a hole reads as a free page).
                            format_page(&file, page, LARGEST_CLASS);
                        }
                        LARGEST_CLASS
                    }
                };
                classes.push(class);
                for in_page in 0..slots_per_page(class) {
                    let at = page_at + in_page * SLOT_CLASS_BYTES[class];
                    let Some(contents) = slot_contents(&bytes, at, class) else { continue };
                    if contents.num_samples > 0 {
                        let number = (index * PAGES_PER_FILE + page) << SLOT_BITS | in_page;
                        occupied.push((Slot::new(number as u32, class), contents));
                    }
                }
            }
            files.push(file);
            pool.push_file(&classes, ALLOCATION_STEP_BYTES);
        }
        if unreadable_pages > 0 {
            tracing::warn!(unreadable_pages, "head pages with an unknown slot size were cleared");
        }
        let max_files = max_files.max(files.len()).clamp(1, MAX_HEAD_FILES);
        let table: Box<FileTable> = (0..max_files).map(|_| OnceLock::new()).collect();
        for (entry, file) in table.iter().zip(files) {
            let _ = entry.set(file);
        }
        let heads = HeadFiles { dir, files: table, pool: Mutex::new(pool), max_files, read_only };
        Ok((heads, occupied))
    }

    /// The file of `slot` (`None` only for a slot this pool never handed out).
    #[inline]
    fn file(&self, slot: &Slot) -> Option<&Region> {
        self.files.get(slot.file_index()).and_then(OnceLock::get)
    }

    /// Hands every slot not in `used` (slot numbers) to the free pool.
    pub fn set_free(&self, used: &std::collections::HashSet<u32>) {
        let mut pool = self.pool.lock();
        let mut used_bytes = 0u64;
        for (page_index, page) in pool.pages.iter_mut().enumerate() {
            let class = page.class as usize;
            page.free = Page::all_free_mask(class);
            for in_page in 0..slots_per_page(class) {
                if used.contains(&((page_index << SLOT_BITS | in_page) as u32)) {
                    page.free &= !(1 << in_page);
                    used_bytes += SLOT_CLASS_BYTES[class] as u64;
                }
            }
        }
        pool.used_bytes = used_bytes;
        pool.relist();
    }

    /// A free slot claimed for `series` whose payload holds at least `need` bytes, preferably of
    /// size class `class` (an index into [`SLOT_CLASS_BYTES`]): a free one of that size, an empty
    /// page split into that size, a page of a new head file while the head budget allows one,
    /// then a free slot of another size that is large enough. `None` when no slot is to be had
    /// (the caller closes open chunks and asks again).
    pub fn allocate(&self, series: u32, class: usize, need: usize) -> Result<Option<Slot>, Error> {
        if self.read_only {
            return Err(Error::ReadOnly("opened read-only".into()));
        }
        let mut pool = self.pool.lock();
        let files = &*self.files;
        let failed = |e: AllocationFailed| Error::io(self.dir.path(&head_name(e.file)), e.source);
        let mut slot = pool.pop(files, class).map_err(failed)?;
        if slot.is_none()
            && (pool.split_empty_page(files, class).map_err(failed)?
                || (self.add_file(&mut pool)? && pool.split_empty_page(files, class).map_err(failed)?))
        {
            slot = pool.pop(files, class).map_err(failed)?;
        }
        let larger = class + 1..SLOT_CLASS_BYTES.len();
        let smaller = (0..class).rev().filter(|c| SLOT_CLASS_BYTES[*c] - SLOT_HEADER_BYTES >= need);
        for other in larger.chain(smaller) {
            if slot.is_some() {
                break;
            }
            slot = pool.pop(files, other).map_err(failed)?;
        }
        drop(pool);
        if let Some(slot) = &slot {
            slot.claim(self, series);
        }
        Ok(slot)
    }

    /// Adds a new head file to the pool while the budget allows one. False when it does not.
    fn add_file(&self, pool: &mut Pool) -> Result<bool, Error> {
        let index = pool.file_count();
        let Some(entry) = self.files.get(index).filter(|_| index < self.max_files) else {
            return Ok(false);
        };
        let name = head_name(index);
        let existed = self.dir.file_len(&name).ok().flatten().is_some();
        // A leftover (its series log was truncated) is cleared whole, so it is allocated whole:
        // nothing it held may read as an open chunk.
        let allocate = if existed { HEAD_FILE_BYTES } else { ALLOCATION_STEP_BYTES };
        let open = || self.dir.open_region_allocating(&name, HEAD_FILE_BYTES, allocate);
        let file = match open() {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                set_aside(self.dir.as_ref(), &name, "unexpected head file");
                open().map_err(|e| Error::io(self.dir.path(&name), e))?
            }
            Err(e) => return Err(Error::io(self.dir.path(&name), e)),
        };
        if existed {
            for page in 0..PAGES_PER_FILE {
                format_page(&file, page, LARGEST_CLASS);
            }
        }
        file.write(0, &encode_head_header(index as u32));
        if entry.set(file).is_err() {
            return Err(Error::Internal(format!("BUG: head file {index} was opened twice")));
        }
        pool.push_file(&[LARGEST_CLASS; PAGES_PER_FILE], allocate);
        Ok(true)
    }

    /// Gives `slot` back to the pool (its count is cleared first, so recovery sees it free).
    pub fn release(&self, slot: Slot) {
        slot.publish_count(self, 0);
        let page_index = slot.number >> SLOT_BITS;
        let in_page = slot.number & ((1 << SLOT_BITS) - 1);
        let mut pool = self.pool.lock();
        let Some(page) = pool.pages.get_mut(page_index as usize) else {
            return;
        };
        if page.class as usize != slot.class() || page.free & (1 << in_page) != 0 {
            debug_assert!(false, "BUG: a slot was released twice or after its page was split anew");
            return;
        }
        page.free |= 1 << in_page;
        pool.used_bytes -= slot.size_bytes() as u64;
        pool.list(page_index);
        if pool.with_free.iter().map(Vec::len).sum::<usize>() > 2 * pool.pages.len() + 64 {
            pool.relist();
        }
    }

    /// Slot bytes (holding an open chunk, free) in the head files.
    pub fn slot_bytes(&self) -> (u64, u64) {
        let pool = self.pool.lock();
        let total = (pool.pages.len() * SLOT_BYTES) as u64;
        (pool.used_bytes, total - pool.used_bytes)
    }

    /// Bytes of head files the head budget allows.
    pub fn budget_bytes(&self) -> u64 {
        self.max_files as u64 * HEAD_FILE_BYTES
    }

    pub fn bytes_on_disk(&self) -> u64 {
        self.pool.lock().file_count() as u64 * HEAD_FILE_BYTES
    }

    /// msync of every head file.
    pub fn flush(&self) -> Result<(), Error> {
        for (index, file) in self.files.iter().map_while(OnceLock::get).enumerate() {
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
                    std::thread::spawn(move || heads.allocate(series, 0, 0).unwrap().is_some())
                })
                .collect();
            assert!(threads.into_iter().all(|t| t.join().unwrap()), "a thread found the pool empty");
            assert_eq!(heads.slot_bytes(), (8 * 24, HEAD_FILE_BYTES - HEAD_FILE_HEADER_BYTES as u64 - 8 * 24));
        }
    }

    #[test]
    fn a_head_file_is_allocated_as_its_pages_are_handed_out() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir: Arc<dyn Directory> = Arc::new(crate::storage::MmapDirectory::new(tmp.path()));
        let (heads, _) = HeadFiles::open(dir, 1, false).unwrap();
        let allocated = || std::fs::metadata(tmp.path().join(head_name(0))).unwrap().blocks() * 512;
        let mut slots = Vec::new();
        for series in 0..16 {
            slots.push(heads.allocate(series, LARGEST_CLASS, 0).unwrap().unwrap());
        }
        assert!(allocated() <= ALLOCATION_STEP_BYTES, "{} bytes allocated for 16 pages", allocated());
        // Every page handed out: the whole file is allocated, and every slot was writable.
        while let Some(slot) = heads.allocate(0, LARGEST_CLASS, 0).unwrap() {
            slot.write_payload(&heads, 0, &[0xab; SLOT_PAYLOAD_BYTES]).unwrap();
            slots.push(slot);
        }
        assert_eq!(slots.len(), PAGES_PER_FILE);
        assert!(allocated() >= HEAD_FILE_BYTES, "{} bytes allocated", allocated());
    }
}
