//! `MemoryDirectory` is the in-memory implementation of the storage seam: each file is a byte
//! vector behind a mutex, kept in a shared map, so a store reopened on a clone of the directory
//! finds the files as the previous store left them (a restart without a disk). For tests.
//!
//! A capacity (the sum of all file lengths) simulates a small volume: creating a region or growing
//! the log beyond it fails with ENOSPC, as a full file system fails `fallocate`, so every store
//! test can fill a "disk" on both backends.

use super::{read_only_error, Directory, LogFile, Region};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Files held in memory. Clones share the files and the capacity.
#[derive(Debug, Clone, Default)]
pub struct MemoryDirectory {
    shared: Arc<Shared>,
    /// A read-only view (a store opened read-only) changes nothing.
    read_only: bool,
}

#[derive(Debug, Default)]
struct Shared {
    files: Mutex<BTreeMap<String, Arc<MemoryFile>>>,
    /// Most bytes all files together may hold; `None`: unbounded.
    capacity_bytes: Mutex<Option<u64>>,
}

/// ENOSPC, the error a full file system gives.
fn no_space() -> io::Error {
    const ENOSPC: i32 = 28;
    io::Error::from_raw_os_error(ENOSPC)
}

/// One in-memory file. The mutex makes every access whole; the store never needs more
/// parallelism than that in tests.
#[derive(Debug, Default)]
pub(crate) struct MemoryFile {
    bytes: Mutex<Vec<u8>>,
}

impl MemoryFile {
    pub fn len(&self) -> usize {
        self.bytes.lock().len()
    }

    pub fn read_into(&self, offset: usize, dst: &mut [u8]) -> bool {
        let bytes = self.bytes.lock();
        match offset.checked_add(dst.len()).and_then(|end| bytes.get(offset..end)) {
            Some(src) => {
                dst.copy_from_slice(src);
                true
            }
            None => false,
        }
    }

    pub fn write(&self, offset: usize, src: &[u8]) -> bool {
        let mut bytes = self.bytes.lock();
        match offset.checked_add(src.len()).and_then(|end| bytes.get_mut(offset..end)) {
            Some(dst) => {
                dst.copy_from_slice(src);
                true
            }
            None => false,
        }
    }

    /// Writes `src` at `offset`, zero-extending the file first when it is shorter.
    pub fn write_growing(&self, offset: usize, src: &[u8]) {
        let mut bytes = self.bytes.lock();
        let end = offset + src.len();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[offset..end].copy_from_slice(src);
    }

    pub fn resize(&self, len: usize) {
        self.bytes.lock().resize(len, 0);
    }
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> MemoryDirectory {
        MemoryDirectory::default()
    }

    /// An empty directory on a "volume" of `capacity_bytes` (see [`MemoryDirectory::set_capacity`]).
    pub fn with_capacity(capacity_bytes: u64) -> MemoryDirectory {
        let directory = MemoryDirectory::new();
        directory.set_capacity(Some(capacity_bytes));
        directory
    }

    /// Bounds the sum of all file lengths (`None`: unbounded), for every clone: creating a region
    /// or growing the log beyond it fails with ENOSPC (`io::ErrorKind::StorageFull`). Files already
    /// larger stay as they are; lowering the capacity below what is held only stops growth.
    pub fn set_capacity(&self, capacity_bytes: Option<u64>) {
        *self.shared.capacity_bytes.lock() = capacity_bytes;
    }

    /// The sum of all file lengths.
    pub fn used_bytes(&self) -> u64 {
        self.shared.files.lock().values().map(|file| file.len() as u64).sum()
    }

    /// A copy of file `name`, or `None` when it does not exist (to inspect what the store wrote).
    pub fn read_file(&self, name: &str) -> Option<Vec<u8>> {
        self.shared.files.lock().get(name).map(|file| file.bytes.lock().clone())
    }

    /// Replaces the contents of file `name` (creating it), as another program writing the file
    /// would: regions already open on it see the new bytes. Ignores the capacity.
    pub fn write_file(&self, name: &str, contents: &[u8]) {
        let file = self.file(name);
        *file.bytes.lock() = contents.to_vec();
    }

    /// Names of the files present, sorted.
    pub fn file_names(&self) -> Vec<String> {
        self.shared.files.lock().keys().cloned().collect()
    }

    /// A view of the same files that changes nothing (a store opened read-only).
    pub(crate) fn read_only_view(&self) -> MemoryDirectory {
        MemoryDirectory { shared: self.shared.clone(), read_only: true }
    }

    fn file(&self, name: &str) -> Arc<MemoryFile> {
        self.shared.files.lock().entry(name.to_string()).or_default().clone()
    }

    fn not_found(name: &str) -> io::Error {
        io::Error::new(io::ErrorKind::NotFound, format!("no file {name} in memory"))
    }

    /// ENOSPC unless every file but `file` together with `file` at `new_len` bytes fits the
    /// capacity. Takes the file locks one by one: the caller must hold none.
    fn check_room(&self, file: &Arc<MemoryFile>, new_len: usize) -> io::Result<()> {
        let Some(capacity) = *self.shared.capacity_bytes.lock() else {
            return Ok(());
        };
        let others: u64 = self
            .shared
            .files
            .lock()
            .values()
            .filter(|other| !Arc::ptr_eq(other, file))
            .map(|other| other.len() as u64)
            .sum();
        if others.saturating_add(new_len as u64) > capacity {
            return Err(no_space());
        }
        Ok(())
    }

    /// [`LogFile::write_at`] for a file of this directory. The room check and the write are two
    /// steps; the store writes its log under one lock, so nothing grows in between.
    pub(crate) fn write_log(&self, file: &Arc<MemoryFile>, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error("write the log"));
        }
        let offset = usize::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
        let end = offset.checked_add(bytes.len()).ok_or_else(|| io::Error::other("offset too large"))?;
        if end > file.len() {
            self.check_room(file, end)?;
        }
        file.write_growing(offset, bytes);
        Ok(())
    }

    /// [`LogFile::set_len`] for a file of this directory.
    pub(crate) fn resize_log(&self, file: &Arc<MemoryFile>, len_bytes: u64) -> io::Result<()> {
        let len = usize::try_from(len_bytes).map_err(|_| io::Error::other("length too large"))?;
        if self.read_only {
            return if file.len() == len { Ok(()) } else { Err(read_only_error("resize the log")) };
        }
        if len > file.len() {
            self.check_room(file, len)?;
        }
        file.resize(len);
        Ok(())
    }
}

impl Directory for MemoryDirectory {
    fn location(&self) -> &Path {
        Path::new("<memory>")
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn free_bytes(&self) -> Option<u64> {
        let capacity = (*self.shared.capacity_bytes.lock())?;
        Some(capacity.saturating_sub(self.used_bytes()))
    }

    fn open_region_allocating(&self, name: &str, len_bytes: u64, _allocate_bytes: u64) -> io::Result<Region> {
        let len = usize::try_from(len_bytes).map_err(|_| io::Error::other("file too large to map"))?;
        let existing = self.shared.files.lock().get(name).cloned();
        let wrong_length = |current: usize| {
            io::Error::new(io::ErrorKind::InvalidData, format!("file is {current} bytes, expected {len_bytes}"))
        };
        if self.read_only {
            let file = existing.ok_or_else(|| Self::not_found(name))?;
            return match file.len() {
                current if current == len => Ok(Region::ReadOnlyMemory(file)),
                current => Err(wrong_length(current)),
            };
        }
        match existing.as_ref().map_or(0, |file| file.len()) {
            0 => {
                let file = existing.unwrap_or_default();
                // As a file system that cannot allocate: the new file is not created.
                self.check_room(&file, len)?;
                let file = self.shared.files.lock().entry(name.to_string()).or_insert(file).clone();
                file.resize(len);
                Ok(Region::Memory(file))
            }
            current if current == len => Ok(Region::Memory(self.file(name))),
            current => Err(wrong_length(current)),
        }
    }

    fn open_log(&self, name: &str) -> io::Result<LogFile> {
        let file = if self.read_only {
            self.shared.files.lock().get(name).cloned().ok_or_else(|| Self::not_found(name))?
        } else {
            self.file(name)
        };
        Ok(LogFile::Memory { dir: self.clone(), file })
    }

    fn read(&self, name: &str, max_bytes: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(file) = self.shared.files.lock().get(name).cloned() else {
            return Ok(None);
        };
        let bytes = file.bytes.lock();
        let len = usize::try_from(max_bytes).unwrap_or(usize::MAX).min(bytes.len());
        Ok(Some(bytes[..len].to_vec()))
    }

    fn file_len(&self, name: &str) -> io::Result<Option<u64>> {
        Ok(self.shared.files.lock().get(name).map(|file| file.len() as u64))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.file_names())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error("remove a file"));
        }
        self.shared.files.lock().remove(name).map(drop).ok_or_else(|| Self::not_found(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error("rename a file"));
        }
        let mut files = self.shared.files.lock();
        let file = files.remove(from).ok_or_else(|| Self::not_found(from))?;
        files.insert(to.to_string(), file);
        Ok(())
    }
}
