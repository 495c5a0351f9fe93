//! `Directory` is the storage seam: the few file operations the store needs (fixed-size regions
//! read and written in place, one append-only log, list/rename/remove), with two
//! implementations chosen by [`Storage`] in the options: memory-mapped files in a directory
//! (`MmapDirectory`, the product) and files held in memory ([`MemoryDirectory`], for tests).
//!
//! The contract every implementation keeps (the store's recovery relies on it):
//! - `open_region(name, len)` gives a region of exactly `len` bytes: a missing (or empty) file is
//!   created zero-filled, a file of another length is an `InvalidData` error and is left as is.
//! - A region's `write` is visible to every later `read_into` of the same file, through any
//!   region opened on it, and survives the store being dropped without `flush` (kill -9 for mmap,
//!   a forgotten `Db` for memory); `flush` only adds durability against power loss.
//! - `write` and `read_into` of disjoint ranges may run concurrently from several threads; the
//!   store's locks keep overlapping accesses apart (see `mmap.rs`).
//! - `rename` and `remove` do not invalidate regions already open on the file.
//!
//! The directory is reached through `dyn Directory` only when files are opened, listed or
//! renamed; the per-sample path goes through [`Region`], an enum of the two file kinds, so each
//! access is a predictable branch and an inlined copy rather than a virtual call.

mod memory;
mod mmap_dir;

pub use memory::MemoryDirectory;
pub(crate) use memory::MemoryFile;
pub(crate) use mmap_dir::MmapDirectory;

use crate::mmap::MappedFile;
use crate::Error;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a store keeps its files (see [`crate::Options::storage`]).
#[derive(Debug, Clone, Default)]
pub enum Storage {
    /// Memory-mapped files in [`crate::Options::data_dir`]: what the product runs on.
    #[default]
    Mmap,
    /// Files held in memory, shared by every clone of the `MemoryDirectory`: reopening a store
    /// with a clone of the same options finds the files the previous one left, as after a
    /// restart. For tests; `data_dir` is not touched.
    Memory(MemoryDirectory),
}

impl Storage {
    /// The directory the store's files live in.
    pub(crate) fn open_directory(&self, data_dir: &Path) -> Result<Arc<dyn Directory>, Error> {
        match self {
            Storage::Mmap => {
                std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
                Ok(Arc::new(MmapDirectory::new(data_dir)))
            }
            Storage::Memory(memory) => Ok(Arc::new(memory.clone())),
        }
    }
}

/// The file operations the store needs. Names are plain file names (no separators).
pub(crate) trait Directory: fmt::Debug + Send + Sync {
    /// Where the files live, for messages.
    fn location(&self) -> &Path;

    /// Opens `name` as a region of exactly `len_bytes` bytes (see the module contract).
    fn open_region(&self, name: &str, len_bytes: u64) -> io::Result<Region>;

    /// Opens `name` for writing at given offsets and resizing, creating it empty when missing.
    fn open_log(&self, name: &str) -> io::Result<LogFile>;

    /// The first `max_bytes` bytes of `name` (all of it when shorter); `None` when it is missing.
    fn read(&self, name: &str, max_bytes: u64) -> io::Result<Option<Vec<u8>>>;

    /// The length of `name`; `None` when it is missing.
    fn file_len(&self, name: &str) -> io::Result<Option<u64>>;

    /// Names of the files present, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;

    fn remove(&self, name: &str) -> io::Result<()>;

    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;

    /// The path of `name`, for errors and logs.
    fn path(&self, name: &str) -> PathBuf {
        self.location().join(name)
    }
}

/// Renames a file we cannot use to `<name>.corrupt` so it is kept for inspection but never read
/// again.
pub(crate) fn set_aside(dir: &dyn Directory, name: &str, reason: &str) {
    let path = dir.path(name);
    match dir.rename(name, &format!("{name}.corrupt")) {
        Ok(()) => tracing::warn!(path = %path.display(), reason, "set aside unusable file as *.corrupt"),
        Err(e) => tracing::error!(path = %path.display(), reason, error = %e, "could not set aside unusable file"),
    }
}

/// A fixed-size file accessed by copying bytes in and out at offsets (never by reference).
#[derive(Debug)]
pub(crate) enum Region {
    Mapped(MappedFile),
    Memory(Arc<MemoryFile>),
}

impl Region {
    pub fn len(&self) -> usize {
        match self {
            Region::Mapped(file) => file.len(),
            Region::Memory(file) => file.len(),
        }
    }

    /// Copies `dst.len()` bytes from `offset` into `dst`. Returns false (copying nothing) when the
    /// range is outside the file.
    #[inline]
    pub fn read_into(&self, offset: usize, dst: &mut [u8]) -> bool {
        match self {
            Region::Mapped(file) => file.read_into(offset, dst),
            Region::Memory(file) => file.read_into(offset, dst),
        }
    }

    /// Copies `src` into the file at `offset`. Returns false (writing nothing) when the range is
    /// outside the file.
    #[inline]
    pub fn write(&self, offset: usize, src: &[u8]) -> bool {
        match self {
            Region::Mapped(file) => file.write(offset, src),
            Region::Memory(file) => file.write(offset, src),
        }
    }

    /// Writes the little-endian `value` at `offset` as a single store, ordered after every earlier
    /// write of this thread, so a count published this way never covers bytes not written yet.
    #[inline]
    pub fn publish_u16(&self, offset: usize, value: u16) -> bool {
        match self {
            Region::Mapped(file) => file.publish_u16(offset, value),
            Region::Memory(file) => file.write(offset, &value.to_le_bytes()),
        }
    }

    /// Waits until the bytes are durable (msync for mapped files; nothing to do in memory).
    pub fn flush(&self) -> io::Result<()> {
        match self {
            Region::Mapped(file) => file.flush(),
            Region::Memory(_) => Ok(()),
        }
    }
}

/// A file written by explicit writes at offsets (the series log).
#[derive(Debug)]
pub(crate) enum LogFile {
    Disk(std::fs::File),
    Memory(Arc<MemoryFile>),
}

impl LogFile {
    /// Writes all of `bytes` at `offset`, growing the file when needed.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        match self {
            LogFile::Disk(file) => {
                use std::io::{Seek, SeekFrom, Write};
                file.seek(SeekFrom::Start(offset))?;
                file.write_all(bytes)
            }
            LogFile::Memory(file) => {
                let offset = usize::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
                file.write_growing(offset, bytes);
                Ok(())
            }
        }
    }

    /// Truncates or zero-extends the file to `len_bytes`.
    pub fn set_len(&mut self, len_bytes: u64) -> io::Result<()> {
        match self {
            LogFile::Disk(file) => file.set_len(len_bytes),
            LogFile::Memory(file) => {
                let len = usize::try_from(len_bytes).map_err(|_| io::Error::other("length too large"))?;
                file.resize(len);
                Ok(())
            }
        }
    }

    /// fsync (nothing to do in memory).
    pub fn sync(&mut self) -> io::Result<()> {
        match self {
            LogFile::Disk(file) => file.sync_data(),
            LogFile::Memory(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The directory contract, run against both implementations.

    use super::*;

    /// Runs `check` against a fresh mmap directory and a fresh memory directory; `reopen` gives a
    /// second handle on the same files (a restart).
    fn each_directory(check: impl Fn(&dyn Fn() -> Arc<dyn Directory>)) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().to_path_buf();
        check(&|| Storage::Mmap.open_directory(&path).unwrap());
        let memory = MemoryDirectory::new();
        check(&|| Storage::Memory(memory.clone()).open_directory(&path).unwrap());
    }

    #[test]
    fn regions_are_created_zeroed_and_keep_their_length() {
        each_directory(|open| {
            let dir = open();
            let region = dir.open_region("a.rt", 4096).unwrap();
            assert_eq!(region.len(), 4096);
            let mut buf = [0xffu8; 16];
            assert!(region.read_into(4080, &mut buf));
            assert_eq!(buf, [0; 16]);
            assert!(!region.read_into(4081, &mut buf), "out of bounds reads nothing");
            assert!(!region.write(4090, &[1; 7]), "out of bounds writes nothing");
            let err = dir.open_region("a.rt", 8192).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert_eq!(dir.file_len("a.rt").unwrap(), Some(4096));
            assert_eq!(dir.file_len("missing").unwrap(), None);
            assert!(dir.read("missing", 10).unwrap().is_none());
        });
    }

    #[test]
    fn writes_are_seen_by_other_regions_and_after_a_restart_without_flush() {
        each_directory(|open| {
            let dir = open();
            let first = dir.open_region("b.rt", 4096).unwrap();
            assert!(first.write(100, b"hello"));
            assert!(first.publish_u16(0, 0xbeef));
            let second = dir.open_region("b.rt", 4096).unwrap();
            let mut buf = [0u8; 5];
            assert!(second.read_into(100, &mut buf));
            assert_eq!(&buf, b"hello");
            drop((first, second, dir));
            let dir = open();
            let data = dir.read("b.rt", 2).unwrap().unwrap();
            assert_eq!(data, 0xbeefu16.to_le_bytes());
        });
    }

    #[test]
    fn list_rename_and_remove() {
        each_directory(|open| {
            let dir = open();
            dir.open_region("c.rt", 4096).unwrap();
            dir.open_region("d.rt", 4096).unwrap();
            set_aside(dir.as_ref(), "c.rt", "test");
            dir.remove("d.rt").unwrap();
            let mut names = dir.list().unwrap();
            names.sort();
            assert_eq!(names, vec!["c.rt.corrupt".to_string()]);
            assert!(dir.remove("d.rt").is_err());
        });
    }

    #[test]
    fn logs_write_at_offsets_and_resize() {
        each_directory(|open| {
            let dir = open();
            let mut log = dir.open_log("series.log").unwrap();
            log.write_at(0, b"abcdef").unwrap();
            log.write_at(6, b"gh").unwrap();
            log.set_len(4).unwrap();
            log.write_at(4, b"XY").unwrap();
            log.sync().unwrap();
            drop(log);
            assert_eq!(open().read("series.log", u64::MAX).unwrap().unwrap(), b"abcdXY");
            assert_eq!(open().read("series.log", 3).unwrap().unwrap(), b"abc");
        });
    }
}
