//! `MmapDirectory` is the product's implementation of the storage seam: plain files in one
//! directory, regions memory-mapped shared (`mmap.rs` holds the mapping, its allocation and all its
//! `unsafe`), the series log written with ordinary `write` calls. A writable directory holds the
//! data directory's lock (`lock.rs`) for as long as it lives; a read-only one takes no lock and
//! changes nothing.

use super::{read_only_error, Directory, LogFile, Region};
use crate::lock::DirLock;
use crate::mmap::MappedFile;
use crate::Error;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The files of a store in `dir`.
#[derive(Debug)]
pub(crate) struct MmapDirectory {
    dir: PathBuf,
    read_only: bool,
    /// Held while the directory lives (`None` for a read-only store where no lock file can be
    /// created, or in unit tests built with `new`).
    _lock: Option<DirLock>,
}

impl MmapDirectory {
    /// Opens the store directory `dir` and takes its lock ([`Error::Locked`] at once when another
    /// process holds it). Writable: creates the directory when missing. Read-only: `dir` must
    /// exist, and nothing but the lock file is created (see `DirLock::acquire_read_only`).
    pub fn open(dir: &Path, read_only: bool) -> Result<MmapDirectory, Error> {
        let lock = if read_only {
            std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
            DirLock::acquire_read_only(dir)?
        } else {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            Some(DirLock::acquire(dir)?)
        };
        Ok(MmapDirectory { dir: dir.to_path_buf(), read_only, _lock: lock })
    }

    /// A writable directory without the lock, for unit tests of the files on top of it.
    #[cfg(test)]
    pub fn new(dir: &Path) -> MmapDirectory {
        MmapDirectory { dir: dir.to_path_buf(), read_only: false, _lock: None }
    }
}

/// `Ok(None)` for a missing file, the error otherwise.
fn missing_as_none<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Directory for MmapDirectory {
    fn location(&self) -> &Path {
        &self.dir
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn open_region_allocating(&self, name: &str, len_bytes: u64, allocate_bytes: u64) -> io::Result<Region> {
        let path = self.dir.join(name);
        let file = if self.read_only {
            MappedFile::open_read_only(&path, len_bytes)
        } else {
            MappedFile::open(&path, len_bytes, allocate_bytes)
        };
        file.map(Region::Mapped)
    }

    fn free_bytes(&self) -> Option<u64> {
        let stats = rustix::fs::statvfs(&self.dir).ok()?;
        Some(stats.f_bavail.saturating_mul(stats.f_frsize))
    }

    fn open_log(&self, name: &str) -> io::Result<LogFile> {
        let path = self.dir.join(name);
        if self.read_only {
            return Ok(LogFile::Disk { file: File::open(path)?, writable: false });
        }
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        Ok(LogFile::Disk { file, writable: true })
    }

    fn read(&self, name: &str, max_bytes: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(file) = missing_as_none(File::open(self.dir.join(name)))? else {
            return Ok(None);
        };
        let mut data = Vec::new();
        file.take(max_bytes).read_to_end(&mut data)?;
        Ok(Some(data))
    }

    fn file_len(&self, name: &str) -> io::Result<Option<u64>> {
        Ok(missing_as_none(std::fs::metadata(self.dir.join(name)))?.map(|meta| meta.len()))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            // Names that are not UTF-8 are none of the store's files.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error("remove a file"));
        }
        std::fs::remove_file(self.dir.join(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error("rename a file"));
        }
        std::fs::rename(self.dir.join(from), self.dir.join(to))
    }
}
