//! `MappedFile` is the only place the store touches memory-mapped bytes: a fixed-size file mapped
//! shared (read-write, or read-only for a store opened read-only), accessed by copying bytes in and
//! out at offsets.
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
//! - Every byte is allocated (`fallocate`) before it is written through the mapping, so a full
//!   file system shows up as an error from [`MappedFile::open`] or [`MappedFile::allocate`], never
//!   as SIGBUS on a store into a hole of a sparse file. Files written whole (head files) are
//!   allocated whole when opened; append-only files (ring segments) are allocated ahead of their
//!   write position in steps, so a store's disk use follows its data.
//! - A file mapped read-only ([`MappedFile::open_read_only`]) refuses every write before touching
//!   memory: a store into a read-only mapping would be SIGSEGV.
#![allow(unsafe_code)]

use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::FallocateFlags;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Block size of the allocation fallback (ordinary writes where `fallocate` is unsupported).
const FALLBACK_BLOCK_BYTES: usize = 1 << 20;

/// A file of fixed length mapped shared, read-write or read-only.
#[derive(Debug)]
pub struct MappedFile {
    map: MmapRaw,
    // Kept open so the mapping's file stays the one we sized.
    _file: File,
    len: usize,
    writable: bool,
}

impl MappedFile {
    /// Opens `path` (creating it zero-filled when missing or empty) with exactly `len_bytes` bytes,
    /// allocates its first `allocate_bytes` bytes (all of it when larger) and maps it read-write;
    /// the caller allocates the rest ([`MappedFile::allocate`]) before writing there. An existing
    /// file of another length is an `InvalidData` error (the caller decides what it means). When
    /// allocation fails (ENOSPC stays ENOSPC) a file this call created is removed again and
    /// nothing is mapped.
    pub fn open(path: &Path, len_bytes: u64, allocate_bytes: u64) -> io::Result<MappedFile> {
        let len = usize::try_from(len_bytes).map_err(|_| io::Error::other("file too large to map"))?;
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let current = file.metadata()?.len();
        let fresh = current == 0;
        if !fresh && current != len_bytes {
            return Err(wrong_length(current, len_bytes));
        }
        if fresh {
            file.set_len(len_bytes)?;
        }
        if let Err(e) = allocate(&file, 0, allocate_bytes.min(len_bytes), fresh) {
            if fresh {
                drop(file);
                // The file held nothing; leaving it would be a sparse file for the next open.
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        let map = MmapRaw::map_raw(&file)?;
        if map.len() != len {
            return Err(io::Error::other("mapping length differs from file length"));
        }
        Ok(MappedFile { map, _file: file, len, writable: true })
    }

    /// Maps the existing file `path` of exactly `len_bytes` bytes read-only: nothing is created,
    /// sized or allocated (a missing file is `NotFound`), and every write through it returns false.
    pub fn open_read_only(path: &Path, len_bytes: u64) -> io::Result<MappedFile> {
        let len = usize::try_from(len_bytes).map_err(|_| io::Error::other("file too large to map"))?;
        let file = File::open(path)?;
        let current = file.metadata()?.len();
        if current != len_bytes {
            return Err(wrong_length(current, len_bytes));
        }
        let map = MmapOptions::new().map_raw_read_only(&file)?;
        if map.len() != len {
            return Err(io::Error::other("mapping length differs from file length"));
        }
        Ok(MappedFile { map, _file: file, len, writable: false })
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
    /// outside the file or the file is mapped read-only.
    #[inline]
    pub fn write(&self, offset: usize, src: &[u8]) -> bool {
        if !self.writable || !self.in_bounds(offset, src.len()) {
            return false;
        }
        // SAFETY: the range is inside the live mapping, which is writable (shared read-write:
        // checked above, a read-only one never reaches this line), `src` is
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

    /// Allocates the bytes `[offset, offset + len)` (clamped to the file) so writes there cannot
    /// fault; bytes already there are kept. ENOSPC when the file system is full.
    pub fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "read-only mapping"));
        }
        let end = offset.saturating_add(len).min(self.len as u64);
        if offset >= end {
            return Ok(());
        }
        allocate(&self._file, offset, end - offset, false)
    }

    /// msync: waits until the mapped pages are on disk.
    pub fn flush(&self) -> io::Result<()> {
        self.map.flush()
    }
}

fn wrong_length(current: u64, expected: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("file is {current} bytes, expected {expected}"))
}

/// Allocates every block of `file`'s first `len_bytes` bytes, so stores into its mapping never
/// need a block the file system may not have. Over blocks already allocated this costs nothing and
/// needs no space (files of older versions were sparse). Where `fallocate` is unsupported each
/// block is written instead: zeros into a `fresh` file, its own bytes back into an existing one.
fn allocate(file: &File, start: u64, len_bytes: u64, fresh: bool) -> io::Result<()> {
    if len_bytes == 0 {
        return Ok(());
    }
    match rustix::fs::fallocate(file, FallocateFlags::empty(), start, len_bytes) {
        Ok(()) => return Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP) => {}
        Err(e) => return Err(e.into()),
    }
    let mut block = vec![0u8; FALLBACK_BLOCK_BYTES];
    let mut offset = start;
    let end = start + len_bytes;
    while offset < end {
        let n = usize::try_from(end - offset).unwrap_or(usize::MAX).min(FALLBACK_BLOCK_BYTES);
        if !fresh {
            file.read_exact_at(&mut block[..n], offset)?;
        }
        file.write_all_at(&block[..n], offset)?;
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Bytes the file system allocated to `path` (st_blocks counts 512-byte units).
    fn allocated_bytes(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    #[test]
    fn a_growing_file_is_allocated_as_asked_and_keeps_its_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("growing.rt");
        let file = MappedFile::open(&path, 8 << 20, 4096).unwrap();
        assert!(allocated_bytes(&path) < 1 << 20, "only the first page is allocated");
        assert!(file.write(100, b"head"));
        file.allocate(4096, 2 << 20).unwrap();
        assert!(allocated_bytes(&path) >= 2 << 20);
        assert!(file.write((2 << 20) - 8, b"tail"));
        file.allocate(0, 64 << 20).unwrap(); // clamped to the file
        assert!(allocated_bytes(&path) >= 8 << 20);
        let mut buf = [0u8; 4];
        assert!(file.read_into(100, &mut buf));
        assert_eq!(&buf, b"head");
    }

    #[test]
    fn new_and_sparse_files_are_fully_allocated_before_mapping() {
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join("fresh.rt");
        let file = MappedFile::open(&fresh, 1 << 20, 1 << 20).unwrap();
        assert!(allocated_bytes(&fresh) >= 1 << 20);
        drop(file);
        // A sparse file as older versions left them: allocated on open, contents kept.
        let sparse = tmp.path().join("sparse.rt");
        let f = File::create(&sparse).unwrap();
        f.set_len(1 << 20).unwrap();
        f.write_all_at(b"kept", 4096).unwrap();
        drop(f);
        let file = MappedFile::open(&sparse, 1 << 20, 1 << 20).unwrap();
        assert!(allocated_bytes(&sparse) >= 1 << 20);
        let mut buf = [0u8; 4];
        assert!(file.read_into(4096, &mut buf));
        assert_eq!(&buf, b"kept");
    }

    #[test]
    fn the_fallback_keeps_existing_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f.rt");
        let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).unwrap();
        f.set_len(3 << 20).unwrap();
        f.write_all_at(b"middle", (3 << 19) + 7).unwrap();
        allocate(&f, 0, 3 << 20, false).unwrap();
        let mut buf = [0u8; 6];
        f.read_exact_at(&mut buf, (3 << 19) + 7).unwrap();
        assert_eq!(&buf, b"middle");
    }

    #[test]
    fn read_only_maps_refuse_writes_and_missing_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.rt");
        assert_eq!(MappedFile::open_read_only(&path, 4096).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(!path.exists(), "nothing created");
        MappedFile::open(&path, 4096, 4096).unwrap().write(10, b"x");
        let file = MappedFile::open_read_only(&path, 4096).unwrap();
        assert!(!file.write(0, b"y"));
        assert!(!file.publish_u16(0, 7));
        let mut buf = [0u8; 1];
        assert!(file.read_into(10, &mut buf));
        assert_eq!(&buf, b"x");
        assert_eq!(MappedFile::open_read_only(&path, 8192).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
