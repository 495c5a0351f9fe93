//! `MemoryDirectory` is the in-memory implementation of the storage seam: each file is a byte
//! vector behind a mutex, kept in a shared map, so a store reopened on a clone of the directory
//! finds the files as the previous store left them (a restart without a disk). For tests.

use super::{Directory, LogFile, Region};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Files held in memory. Clones share the files.
#[derive(Debug, Clone, Default)]
pub struct MemoryDirectory {
    files: Arc<Mutex<BTreeMap<String, Arc<MemoryFile>>>>,
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

    /// A copy of file `name`, or `None` when it does not exist (to inspect what the store wrote).
    pub fn read_file(&self, name: &str) -> Option<Vec<u8>> {
        self.files.lock().get(name).map(|file| file.bytes.lock().clone())
    }

    /// Replaces the contents of file `name` (creating it), as another program writing the file
    /// would: regions already open on it see the new bytes.
    pub fn write_file(&self, name: &str, contents: &[u8]) {
        let file = self.files.lock().entry(name.to_string()).or_default().clone();
        *file.bytes.lock() = contents.to_vec();
    }

    /// Names of the files present, sorted.
    pub fn file_names(&self) -> Vec<String> {
        self.files.lock().keys().cloned().collect()
    }

    fn file(&self, name: &str) -> Arc<MemoryFile> {
        self.files.lock().entry(name.to_string()).or_default().clone()
    }

    fn not_found(name: &str) -> io::Error {
        io::Error::new(io::ErrorKind::NotFound, format!("no file {name} in memory"))
    }
}

impl Directory for MemoryDirectory {
    fn location(&self) -> &Path {
        Path::new("<memory>")
    }

    fn open_region(&self, name: &str, len_bytes: u64) -> io::Result<Region> {
        let len = usize::try_from(len_bytes).map_err(|_| io::Error::other("file too large to map"))?;
        let file = self.file(name);
        let current = file.len();
        if current == 0 {
            file.resize(len);
        } else if current != len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file is {current} bytes, expected {len_bytes}"),
            ));
        }
        Ok(Region::Memory(file))
    }

    fn open_log(&self, name: &str) -> io::Result<LogFile> {
        Ok(LogFile::Memory(self.file(name)))
    }

    fn read(&self, name: &str, max_bytes: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(file) = self.files.lock().get(name).cloned() else {
            return Ok(None);
        };
        let bytes = file.bytes.lock();
        let len = usize::try_from(max_bytes).unwrap_or(usize::MAX).min(bytes.len());
        Ok(Some(bytes[..len].to_vec()))
    }

    fn file_len(&self, name: &str) -> io::Result<Option<u64>> {
        Ok(self.files.lock().get(name).map(|file| file.len() as u64))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.file_names())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.files.lock().remove(name).map(drop).ok_or_else(|| Self::not_found(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut files = self.files.lock();
        let file = files.remove(from).ok_or_else(|| Self::not_found(from))?;
        files.insert(to.to_string(), file);
        Ok(())
    }
}
