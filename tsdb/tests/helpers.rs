//! Helpers shared by the integration tests: a store on either storage backend with access to its
//! files, the `both_backends!` test macro, sample generators.

use std::path::Path;
use tsdb::{AppendReport, Db, Matcher, MemoryDirectory, Options, Sample, SeriesId, SeriesSamples, Storage};

/// The storage backends every store test runs against.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Mmap,
    Memory,
}

/// Where a test store keeps its files, and access to them as another program would have.
pub struct TestStore {
    dir: tempfile::TempDir,
    memory: Option<MemoryDirectory>,
}

impl TestStore {
    pub fn new(backend: Backend) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let memory = match backend {
            Backend::Mmap => None,
            Backend::Memory => Some(MemoryDirectory::new()),
        };
        TestStore { dir, memory }
    }

    /// Whether stores on this backend lock their directory (on disk they do; in memory there is
    /// no other process to keep out).
    pub fn locks_its_directory(&self) -> bool {
        self.memory.is_none()
    }

    /// Default options on this backend (clones share the files: reopening is a restart).
    pub fn options(&self) -> Options {
        let mut options = Options::new(self.dir.path());
        if let Some(memory) = &self.memory {
            options.storage = Storage::Memory(memory.clone());
        }
        options
    }

    /// Options for a small store on this backend.
    pub fn small_options(&self, storage_bytes: u64, segment_bytes: u64) -> Options {
        let mut options = self.options();
        options.storage_size_bytes = storage_bytes;
        options.segment_size_bytes = Some(segment_bytes);
        options
    }

    /// The contents of file `name` (which must exist).
    pub fn read(&self, name: &str) -> Vec<u8> {
        match &self.memory {
            Some(memory) => memory.read_file(name).unwrap_or_else(|| panic!("no file {name}")),
            None => std::fs::read(self.dir.path().join(name)).unwrap(),
        }
    }

    /// Replaces (or creates) file `name`.
    pub fn write(&self, name: &str, contents: &[u8]) {
        match &self.memory {
            Some(memory) => memory.write_file(name, contents),
            None => std::fs::write(self.dir.path().join(name), contents).unwrap(),
        }
    }

    /// Overwrites `bytes.len()` bytes of file `name` at `offset`.
    pub fn patch(&self, name: &str, offset: usize, bytes: &[u8]) {
        let mut contents = self.read(name);
        contents[offset..offset + bytes.len()].copy_from_slice(bytes);
        self.write(name, &contents);
    }

    /// The little-endian `u32` at `offset` of file `name`.
    pub fn read_u32(&self, name: &str, offset: usize) -> u32 {
        u32::from_le_bytes(self.read(name)[offset..offset + 4].try_into().unwrap())
    }

    pub fn exists(&self, name: &str) -> bool {
        self.file_sizes().iter().any(|(file, _)| file == name)
    }

    /// Every file of the store with its size.
    pub fn file_sizes(&self) -> Vec<(String, u64)> {
        match &self.memory {
            Some(memory) => memory
                .file_names()
                .into_iter()
                .map(|name| {
                    let len = memory.read_file(&name).map_or(0, |c| c.len() as u64);
                    (name, len)
                })
                .collect(),
            None => std::fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| e.unwrap())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
                .collect(),
        }
    }
}

impl Drop for TestStore {
    /// A store in memory must not have touched its `data_dir`.
    fn drop(&mut self) {
        if self.memory.is_some() && !std::thread::panicking() {
            let on_disk = std::fs::read_dir(self.dir.path()).map_or(0, |entries| entries.count());
            assert_eq!(on_disk, 0, "the in-memory backend wrote files to its data_dir");
        }
    }
}

/// Defines a test module `name` whose body runs once per backend, as the tests `name::mmap` and
/// `name::memory`; the body gets `store: &TestStore`.
macro_rules! both_backends {
    ($(#[$meta:meta])* fn $name:ident($store:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($store: &crate::helpers::TestStore) $body

            #[test]
            fn mmap() {
                body(&crate::helpers::TestStore::new(crate::helpers::Backend::Mmap))
            }

            #[test]
            fn memory() {
                body(&crate::helpers::TestStore::new(crate::helpers::Backend::Memory))
            }
        }
    };
}
pub(crate) use both_backends;

/// Options for a small store in `dir`.
pub fn small_options(dir: &Path, storage_bytes: u64, segment_bytes: u64) -> Options {
    let mut options = Options::new(dir);
    options.storage_size_bytes = storage_bytes;
    options.segment_size_bytes = Some(segment_bytes);
    options
}

/// Appends `(series, sample)` pairs, one batch entry each (so a rejection's index is the pair's).
pub fn append_pairs(db: &Db, pairs: &[(SeriesId, Sample)]) -> Result<AppendReport, tsdb::Error> {
    let batch: Vec<SeriesSamples<'_>> =
        pairs.iter().map(|(id, sample)| SeriesSamples::id(*id, std::slice::from_ref(sample))).collect();
    db.append(&batch)
}

/// All samples of the series `__name__=name` in the whole time range.
pub fn all_samples(db: &Db, name: &str) -> Vec<Sample> {
    let found = db.select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX).unwrap();
    assert!(found.len() <= 1, "expected at most one series named {name}");
    found.first().map(|s| s.samples().collect()).unwrap_or_default()
}

/// A deterministic xorshift generator (fixed seeds, no dependency on `rand` versions).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
