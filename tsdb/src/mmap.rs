//! `MappedFile` is the only place the store touches memory-mapped bytes: a fixed-size file mapped
//! shared and read-write, accessed by copying bytes in and out at offsets.
//!
//! The contract, stated plainly (as ripgrep's `searcher/mmap.rs` does):
//! - Only Ringtail writes these files, and only through this type. Another process truncating a
//!   mapped file makes the next access fault (SIGBUS); we accept that, as every mmap store does.
//! - The map is never handed out: callers get copies (`read_into`) or write copies (`write`), so
//!   no Rust reference to mapped memory outlives a call.
//! - Callers never access the same bytes concurrently from two threads when one of them writes:
//!   the store's locks (series lock for head slots, segment lock plus append-only reservation for
//!   segments) guarantee disjointness. `write` and `read_into` of *disjoint* ranges may run in
//!   parallel.
//! - Stores into the shared mapping land in the page cache as they execute, so they survive the
//!   process being killed (kill -9) without msync; `flush` (msync) is only for power loss.
#![allow(unsafe_code)]

use memmap2::MmapRaw;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// A file of fixed length mapped shared read-write.
#[derive(Debug)]
pub struct MappedFile {
    map: MmapRaw,
    // Kept open so the mapping's file stays the one we sized.
    _file: File,
    len: usize,
}

impl MappedFile {
    /// Opens `path` (creating it zero-filled when missing) with exactly `len_bytes` bytes and maps
    /// it. An existing file of another length is an error (the caller decides what it means).
    pub fn open(path: &Path, len_bytes: u64) -> io::Result<MappedFile> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let current = file.metadata()?.len();
        if current == 0 {
            file.set_len(len_bytes)?;
        } else if current != len_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file is {current} bytes, expected {len_bytes}"),
            ));
        }
        let len = usize::try_from(len_bytes).map_err(|_| io::Error::other("file too large to map"))?;
        let map = MmapRaw::map_raw(&file)?;
        if map.len() != len {
            return Err(io::Error::other("mapping length differs from file length"));
        }
        Ok(MappedFile { map, _file: file, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether `[offset, offset + len)` lies inside the file.
    #[inline]
    fn in_bounds(&self, offset: usize, len: usize) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
    }

    /// Copies `dst.len()` bytes from `offset` into `dst`. Returns false (copying nothing) when the
    /// range is outside the file.
    #[inline]
    pub fn read_into(&self, offset: usize, dst: &mut [u8]) -> bool {
        if !self.in_bounds(offset, dst.len()) {
            return false;
        }
        // SAFETY: the range is inside the live mapping (checked above; the mapping lives as long
        // as `self`), `dst` is a distinct Rust allocation so the ranges cannot overlap, and by the
        // module contract no other thread writes these bytes concurrently.
        unsafe { std::ptr::copy_nonoverlapping(self.map.as_ptr().add(offset), dst.as_mut_ptr(), dst.len()) };
        true
    }

    /// Copies `src` into the file at `offset`. Returns false (writing nothing) when the range is
    /// outside the file.
    #[inline]
    pub fn write(&self, offset: usize, src: &[u8]) -> bool {
        if !self.in_bounds(offset, src.len()) {
            return false;
        }
        // SAFETY: the range is inside the live, writable (shared read-write) mapping, `src` is
        // ordinary memory that cannot alias the mapping (we never hand out references into it),
        // and by the module contract no other thread reads or writes these bytes concurrently.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.map.as_mut_ptr().add(offset), src.len()) };
        true
    }

    /// Writes the little-endian `value` at `offset`; a single store, so a kill leaves either the
    /// old or the new value. Ordered after every earlier write of this thread (release fence), so
    /// a counter published this way never covers bytes that are not there yet.
    #[inline]
    pub fn publish_u16(&self, offset: usize, value: u16) -> bool {
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        self.write(offset, &value.to_le_bytes())
    }

    /// msync: waits until the mapped pages are on disk.
    pub fn flush(&self) -> io::Result<()> {
        self.map.flush()
    }
}
