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
//! - A region's whole length is allocated before it is handed out: a full file system (or a
//!   [`MemoryDirectory`] at its capacity) is an error from `open_region` or from growing the log
//!   (`ErrorKind::StorageFull`, which [`Error::io`] turns into [`Error::NoSpace`]), never a fault on
//!   a later write.
//! - A directory opened read-only changes nothing: `open_region` maps existing files read-only (a
//!   missing file is `NotFound`), region writes return false without touching memory, and log
//!   writes, a log `set_len` that would change its length, `rename` and `remove` fail with an
//!   error saying the store is read-only.
//! - A writable `MmapDirectory` holds the data directory's lock (`lock.rs`) as long as it lives.
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
    /// The directory the store's files live in. Writable: `data_dir` is created when missing and
    /// its lock taken ([`Error::Locked`] when another process holds it) for as long as the
    /// directory lives. `read_only`: nothing is created or locked and nothing will be changed.
    pub(crate) fn open_directory(&self, data_dir: &Path, read_only: bool) -> Result<Arc<dyn Directory>, Error> {
        match self {
            Storage::Mmap => Ok(Arc::new(MmapDirectory::open(data_dir, read_only)?)),
            Storage::Memory(memory) if read_only => Ok(Arc::new(memory.read_only_view())),
            Storage::Memory(memory) => Ok(Arc::new(memory.clone())),
        }
    }
}

/// The error every change to a read-only directory gets.
pub(crate) fn read_only_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, format!("cannot {what}: store opened read-only"))
}

/// The file operations the store needs. Names are plain file names (no separators).
pub(crate) trait Directory: fmt::Debug + Send + Sync {
    /// Where the files live, for messages.
    fn location(&self) -> &Path;

    /// Whether the directory was opened read-only (see the module contract): callers skip repairs
    /// they could not make.
    fn is_read_only(&self) -> bool;

    /// Opens `name` as a region of exactly `len_bytes` bytes, all of it allocated (see the module
    /// contract).
    #[cfg(test)]
    fn open_region(&self, name: &str, len_bytes: u64) -> io::Result<Region> {
        self.open_region_allocating(name, len_bytes, len_bytes)
    }

    /// Opens `name` as a region of exactly `len_bytes` bytes with its first `allocate_bytes`
    /// allocated; the caller allocates further ranges ([`Region::allocate`]) before writing
    /// there (append-only files grow their allocation with their data).
    fn open_region_allocating(&self, name: &str, len_bytes: u64, allocate_bytes: u64) -> io::Result<Region>;

    /// Opens `name` for writing at given offsets and resizing, creating it empty when missing.
    fn open_log(&self, name: &str) -> io::Result<LogFile>;

    /// Bytes the volume still has for new data (`None`: unknown or unbounded).
    fn free_bytes(&self) -> Option<u64>;

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
    if dir.is_read_only() {
        tracing::warn!(path = %path.display(), reason, "not using unusable file (store opened read-only, left as is)");
        return;
    }
    match dir.rename(name, &format!("{name}.corrupt")) {
        Ok(()) => tracing::warn!(path = %path.display(), reason, "set aside unusable file as *.corrupt"),
        Err(e) => tracing::error!(path = %path.display(), reason, error = %e, "could not set aside unusable file"),
    }
}

/// A fixed-size file accessed by copying bytes in and out at offsets (never by reference).
#[derive(Debug)]
pub(crate) enum Region {
    /// Mapped read-write, or read-only in a read-only directory (`MappedFile` refuses the writes).
    Mapped(MappedFile),
    Memory(Arc<MemoryFile>),
    /// A file of a read-only view of a [`MemoryDirectory`]: writes return false.
    ReadOnlyMemory(Arc<MemoryFile>),
}

impl Region {
    pub fn len(&self) -> usize {
        match self {
            Region::Mapped(file) => file.len(),
            Region::Memory(file) | Region::ReadOnlyMemory(file) => file.len(),
        }
    }

    /// Allocates `[offset, offset + len)` so writes there cannot fault (a full file system is an
    /// error here, ENOSPC). Memory regions are allocated whole when created.
    pub fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        match self {
            Region::Mapped(file) => file.allocate(offset, len),
            Region::Memory(_) => Ok(()),
            Region::ReadOnlyMemory(_) => Err(io::Error::new(io::ErrorKind::PermissionDenied, "read-only")),
        }
    }

    /// Copies `dst.len()` bytes from `offset` into `dst`. Returns false (copying nothing) when the
    /// range is outside the file.
    #[inline]
    pub fn read_into(&self, offset: usize, dst: &mut [u8]) -> bool {
        match self {
            Region::Mapped(file) => file.read_into(offset, dst),
            Region::Memory(file) | Region::ReadOnlyMemory(file) => file.read_into(offset, dst),
        }
    }

    /// Copies `src` into the file at `offset`. Returns false (writing nothing) when the range is
    /// outside the file or the region is read-only.
    #[inline]
    pub fn write(&self, offset: usize, src: &[u8]) -> bool {
        match self {
            Region::Mapped(file) => file.write(offset, src),
            Region::Memory(file) => file.write(offset, src),
            Region::ReadOnlyMemory(_) => false,
        }
    }

    /// Writes the little-endian `value` at `offset` as a single store, ordered after every earlier
    /// write of this thread, so a count published this way never covers bytes not written yet.
    #[inline]
    pub fn publish_u16(&self, offset: usize, value: u16) -> bool {
        match self {
            Region::Mapped(file) => file.publish_u16(offset, value),
            Region::Memory(file) => file.write(offset, &value.to_le_bytes()),
            Region::ReadOnlyMemory(_) => false,
        }
    }

    /// Waits until the bytes are durable (msync for mapped files; nothing to do in memory).
    pub fn flush(&self) -> io::Result<()> {
        match self {
            Region::Mapped(file) => file.flush(),
            Region::Memory(_) | Region::ReadOnlyMemory(_) => Ok(()),
        }
    }
}

/// A file written by explicit writes at offsets (the series log).
#[derive(Debug)]
pub(crate) enum LogFile {
    /// A file on disk; `writable` is false in a read-only directory (the file is opened read-only).
    Disk { file: std::fs::File, writable: bool },
    /// A file of `dir`, which checks its capacity and read-only mode.
    Memory { dir: MemoryDirectory, file: Arc<MemoryFile> },
}

impl LogFile {
    /// Writes all of `bytes` at `offset`, growing the file when needed. Growing may fail for lack
    /// of space (`StorageFull`); nothing is written then.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        match self {
            LogFile::Disk { writable: false, .. } => Err(read_only_error("write the log")),
            LogFile::Disk { file, .. } => {
                use std::os::unix::fs::FileExt;
                file.write_all_at(bytes, offset)
            }
            LogFile::Memory { dir, file } => dir.write_log(file, offset, bytes),
        }
    }

    /// Truncates or zero-extends the file to `len_bytes`. In a read-only directory only a call that
    /// changes nothing (the length it already has) succeeds.
    pub fn set_len(&mut self, len_bytes: u64) -> io::Result<()> {
        match self {
            LogFile::Disk { file, writable: false } if file.metadata()?.len() == len_bytes => Ok(()),
            LogFile::Disk { writable: false, .. } => Err(read_only_error("resize the log")),
            LogFile::Disk { file, .. } => file.set_len(len_bytes),
            LogFile::Memory { dir, file } => dir.resize_log(file, len_bytes),
        }
    }

    /// fsync (nothing to do in memory or read-only).
    pub fn sync(&mut self) -> io::Result<()> {
        match self {
            LogFile::Disk { file, writable: true } => file.sync_data(),
            LogFile::Disk { writable: false, .. } | LogFile::Memory { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The directory contract, run against both implementations.

    use super::*;

    /// Runs `check` against a fresh mmap directory and a fresh memory directory; `open(read_only)`
    /// gives a new handle on the same files (a restart). A writable mmap handle holds the lock, so
    /// a check drops one before opening the next writable one.
    fn each_directory(check: impl Fn(&dyn Fn(bool) -> Arc<dyn Directory>)) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().to_path_buf();
        check(&|read_only| Storage::Mmap.open_directory(&path, read_only).unwrap());
        let memory = MemoryDirectory::new();
        check(&|read_only| Storage::Memory(memory.clone()).open_directory(&path, read_only).unwrap());
    }

    #[test]
    fn regions_are_created_zeroed_and_keep_their_length() {
        each_directory(|open| {
            let dir = open(false);
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
            let dir = open(false);
            let first = dir.open_region("b.rt", 4096).unwrap();
            assert!(first.write(100, b"hello"));
            assert!(first.publish_u16(0, 0xbeef));
            let second = dir.open_region("b.rt", 4096).unwrap();
            let mut buf = [0u8; 5];
            assert!(second.read_into(100, &mut buf));
            assert_eq!(&buf, b"hello");
            drop((first, second, dir));
            let dir = open(false);
            let data = dir.read("b.rt", 2).unwrap().unwrap();
            assert_eq!(data, 0xbeefu16.to_le_bytes());
        });
    }

    #[test]
    fn list_rename_and_remove() {
        each_directory(|open| {
            let dir = open(false);
            dir.open_region("c.rt", 4096).unwrap();
            dir.open_region("d.rt", 4096).unwrap();
            set_aside(dir.as_ref(), "c.rt", "test");
            dir.remove("d.rt").unwrap();
            let mut names = dir.list().unwrap();
            names.retain(|name| name != crate::lock::LOCK_FILE_NAME);
            names.sort();
            assert_eq!(names, vec!["c.rt.corrupt".to_string()]);
            assert!(dir.remove("d.rt").is_err());
        });
    }

    #[test]
    fn logs_write_at_offsets_and_resize() {
        each_directory(|open| {
            let dir = open(false);
            let mut log = dir.open_log("series.log").unwrap();
            log.write_at(0, b"abcdef").unwrap();
            log.write_at(6, b"gh").unwrap();
            log.set_len(4).unwrap();
            log.write_at(4, b"XY").unwrap();
            log.sync().unwrap();
            drop((log, dir));
            assert_eq!(open(false).read("series.log", u64::MAX).unwrap().unwrap(), b"abcdXY");
            assert_eq!(open(false).read("series.log", 3).unwrap().unwrap(), b"abc");
        });
    }

    #[test]
    fn read_only_directories_change_nothing() {
        each_directory(|open| {
            let dir = open(false);
            let region = dir.open_region("e.rt", 4096).unwrap();
            assert!(region.write(8, b"data"));
            dir.open_log("series.log").unwrap().write_at(0, b"log").unwrap();
            drop((region, dir));
            let listed = |dir: &dyn Directory| {
                let mut names = dir.list().unwrap();
                names.sort();
                names
            };
            let before = listed(open(true).as_ref());
            let dir = open(true);
            assert!(dir.is_read_only());
            let region = dir.open_region("e.rt", 4096).unwrap();
            assert!(!region.write(8, b"XXXX"), "a read-only region refuses writes");
            assert!(!region.publish_u16(0, 1));
            let mut buf = [0u8; 4];
            assert!(region.read_into(8, &mut buf));
            assert_eq!(&buf, b"data");
            assert_eq!(dir.open_region("missing.rt", 4096).unwrap_err().kind(), io::ErrorKind::NotFound);
            assert_eq!(dir.open_log("missing.log").unwrap_err().kind(), io::ErrorKind::NotFound);
            let mut log = dir.open_log("series.log").unwrap();
            assert!(log.write_at(3, b"more").unwrap_err().to_string().contains("read-only"));
            assert!(log.set_len(1).unwrap_err().to_string().contains("read-only"));
            log.set_len(3).unwrap(); // changes nothing
            log.sync().unwrap();
            assert!(dir.rename("e.rt", "f.rt").unwrap_err().to_string().contains("read-only"));
            assert!(dir.remove("e.rt").unwrap_err().to_string().contains("read-only"));
            set_aside(dir.as_ref(), "e.rt", "test");
            assert_eq!(listed(dir.as_ref()), before, "nothing created, renamed or removed");
            assert_eq!(dir.read("series.log", 10).unwrap().unwrap(), b"log");
        });
    }

    #[test]
    fn writable_and_read_only_mmap_directories_both_hold_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let first = Storage::Mmap.open_directory(tmp.path(), false).unwrap();
        for read_only in [false, true] {
            match Storage::Mmap.open_directory(tmp.path(), read_only) {
                Err(Error::Locked { holder, .. }) => assert_eq!(holder, format!("pid {}", std::process::id())),
                other => panic!("expected Locked (read-only {read_only}), got {other:?}"),
            }
        }
        drop(first);
        let read_only = Storage::Mmap.open_directory(tmp.path(), true).unwrap();
        assert!(matches!(Storage::Mmap.open_directory(tmp.path(), false), Err(Error::Locked { .. })));
        drop(read_only);
        drop(Storage::Mmap.open_directory(tmp.path(), false).unwrap());
        let missing = tmp.path().join("missing");
        assert!(Storage::Mmap.open_directory(&missing, true).is_err());
        assert!(!missing.exists(), "read-only creates nothing");
    }

    #[test]
    fn a_memory_directory_at_capacity_refuses_to_grow_with_enospc() {
        let memory = MemoryDirectory::with_capacity(10_000);
        let dir = Storage::Memory(memory.clone()).open_directory(Path::new("unused"), false).unwrap();
        dir.open_region("a.rt", 8192).unwrap();
        let err = dir.open_region("b.rt", 4096).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(err.raw_os_error(), Some(28));
        assert!(Error::io("b.rt", err).is_no_space());
        assert_eq!(dir.file_len("b.rt").unwrap(), None, "a region that does not fit is not created");
        let mut log = dir.open_log("series.log").unwrap();
        log.write_at(0, &[1; 1800]).unwrap();
        assert_eq!(log.write_at(1800, &[2; 9]).unwrap_err().kind(), io::ErrorKind::StorageFull);
        assert_eq!(log.set_len(1809).unwrap_err().kind(), io::ErrorKind::StorageFull);
        log.write_at(0, &[3; 100]).unwrap(); // rewriting within the file needs no room
        assert_eq!(memory.used_bytes(), 9992);
        memory.set_capacity(None);
        log.write_at(1800, &[2; 9]).unwrap();
        dir.open_region("b.rt", 4096).unwrap();
    }
}
