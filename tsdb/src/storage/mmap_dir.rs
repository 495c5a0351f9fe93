//! `MmapDirectory` is the product's implementation of the storage seam: plain files in one
//! directory, regions memory-mapped shared read-write (`mmap.rs` holds the mapping and all its
//! `unsafe`), the series log written with ordinary `write` calls.

use super::{Directory, LogFile, Region};
use crate::mmap::MappedFile;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The files of a store in `dir`.
#[derive(Debug)]
pub(crate) struct MmapDirectory {
    dir: PathBuf,
}

impl MmapDirectory {
    pub fn new(dir: &Path) -> MmapDirectory {
        MmapDirectory { dir: dir.to_path_buf() }
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

    fn open_region(&self, name: &str, len_bytes: u64) -> io::Result<Region> {
        MappedFile::open(&self.dir.join(name), len_bytes).map(Region::Mapped)
    }

    fn open_log(&self, name: &str) -> io::Result<LogFile> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(self.dir.join(name))?;
        Ok(LogFile::Disk(file))
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
        std::fs::remove_file(self.dir.join(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.dir.join(from), self.dir.join(to))
    }
}
