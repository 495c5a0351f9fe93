//! `DirLock` is the data directory's lock: an exclusive advisory lock (`flock`) on the file
//! `<data_dir>/lock`, which holds the pid of the process that has it, as Prometheus's `lock` file
//! does. Two processes writing one store would silently corrupt each other's files; the second one
//! fails at once instead, naming the holder.
//!
//! The lock belongs to the open file: the kernel releases it when the file is closed, so a killed
//! process never leaves a stale lock behind (the pid left in the file is then only a hint).
//!
//! A store opened read-only (a full volume at start) takes the lock too: a writer started beside
//! it would change files it has mapped. Where the lock file cannot even be created (the volume is
//! full and has none, or the file system is read-only) no other process can hold it either, and
//! the read-only store goes on without it.
//!
//! One wrinkle: a child this process forks (any `Command::spawn`) shares the open file until it
//! execs, so for that instant it holds our lock too. A store reopened in the same process right
//! then would see the lock taken by "itself"; when the file names our own pid we therefore retry
//! for a short while before reporting [`Error::Locked`]. Another process's lock fails at once.

use crate::Error;
use rustix::fs::FlockOperation;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Name of the lock file in the data directory.
pub(crate) const LOCK_FILE_NAME: &str = "lock";

/// How long a lock held under our own pid is retried (see the module doc): far longer than a
/// fork-to-exec window, short enough for a genuine double open in one process to fail promptly.
const OWN_PID_RETRIES: u32 = 100;
const OWN_PID_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// The held lock; dropping it releases the lock (the file stays, as Prometheus leaves it).
#[derive(Debug)]
pub(crate) struct DirLock {
    // The lock lives as long as this open file.
    _file: File,
}

impl DirLock {
    /// Takes the lock of `data_dir` without waiting and writes our pid into the lock file.
    /// [`Error::Locked`] when another process (or another store in this one) holds it.
    pub fn acquire(data_dir: &Path) -> Result<DirLock, Error> {
        let path = data_dir.join(LOCK_FILE_NAME);
        let file = open_lock_file(&path).map_err(|e| Error::io(&path, e))?;
        let lock = Self::lock(data_dir, file)?;
        Ok(lock)
    }

    /// The lock for a store opened read-only: as [`DirLock::acquire`], but `None` where the lock
    /// file cannot be created for lack of space or on a read-only file system (see the module
    /// doc), and our pid is written only if it fits.
    pub fn acquire_read_only(data_dir: &Path) -> Result<Option<DirLock>, Error> {
        let path = data_dir.join(LOCK_FILE_NAME);
        let file = match open_lock_file(&path) {
            Ok(file) => file,
            Err(e) if matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::ReadOnlyFilesystem) => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        Self::lock(data_dir, file).map(Some)
    }

    /// Locks the open lock `file` of `data_dir` and writes our pid into it (a pid that cannot be
    /// written for lack of space leaves the previous contents).
    fn lock(data_dir: &Path, mut file: File) -> Result<DirLock, Error> {
        let path = data_dir.join(LOCK_FILE_NAME);
        let own_pid = std::process::id();
        let mut retries = 0;
        loop {
            // `flock` directly (what std's `File::try_lock` does on Linux), so the "would block"
            // case is told apart from real errors without matching error kinds.
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    let holder_pid = holder_pid(&mut file);
                    if holder_pid == Some(own_pid) && retries < OWN_PID_RETRIES {
                        retries += 1;
                        std::thread::sleep(OWN_PID_RETRY_PAUSE);
                        continue;
                    }
                    let holder = match holder_pid {
                        Some(pid) => format!("pid {pid}"),
                        None => "unknown pid: the lock file names none".to_string(),
                    };
                    return Err(Error::Locked { path: data_dir.to_path_buf(), holder });
                }
                Err(e) => return Err(Error::io(&path, e.into())),
            }
        }
        match write_pid(&mut file) {
            Ok(()) => {}
            // The lock is held either way; the pid is only a hint for the next process.
            Err(e) if e.kind() == ErrorKind::StorageFull => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        Ok(DirLock { _file: file })
    }
}

/// Opens (creating if missing) the lock file at `path`.
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

/// Writes our pid over the file's contents: written first, then cut to its length, so a full
/// volume (where a pid no longer than the previous one still fits in place) keeps a whole pid.
fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let line = format!("{}\n", std::process::id());
    file.write_all(line.as_bytes())?;
    file.set_len(line.len() as u64)?;
    file.sync_data()
}

/// The pid the lock file names (its holder's, when the holder finished writing it).
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut contents = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    Read::take(&*file, 64).read_to_string(&mut contents).ok()?;
    contents.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_at_once_naming_our_pid_and_works_after_release() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(tmp.path()).unwrap();
        let contents = std::fs::read_to_string(tmp.path().join(LOCK_FILE_NAME)).unwrap();
        assert_eq!(contents.trim(), std::process::id().to_string());
        match DirLock::acquire(tmp.path()) {
            Err(Error::Locked { path, holder }) => {
                assert_eq!(path, tmp.path());
                assert_eq!(holder, format!("pid {}", std::process::id()));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        DirLock::acquire(tmp.path()).unwrap();
    }

    #[test]
    fn a_read_only_store_holds_the_lock_against_writers_and_is_refused_beside_one() {
        let tmp = tempfile::tempdir().unwrap();
        let read_only = DirLock::acquire_read_only(tmp.path()).unwrap().expect("the lock file can be created");
        assert!(matches!(DirLock::acquire(tmp.path()), Err(Error::Locked { .. })));
        drop(read_only);
        let writer = DirLock::acquire(tmp.path()).unwrap();
        assert!(matches!(DirLock::acquire_read_only(tmp.path()), Err(Error::Locked { .. })));
        drop(writer);
    }

    #[test]
    fn a_longer_pid_left_in_the_file_is_replaced_whole() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(LOCK_FILE_NAME), "99999999999999\n").unwrap();
        let _lock = DirLock::acquire(tmp.path()).unwrap();
        let contents = std::fs::read_to_string(tmp.path().join(LOCK_FILE_NAME)).unwrap();
        assert_eq!(contents, format!("{}\n", std::process::id()));
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(LOCK_FILE_NAME), "999999999\n").unwrap();
        let _lock = DirLock::acquire(tmp.path()).unwrap();
        let contents = std::fs::read_to_string(tmp.path().join(LOCK_FILE_NAME)).unwrap();
        assert_eq!(contents.trim(), std::process::id().to_string());
    }
}
