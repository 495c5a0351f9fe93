//! `Reloading<T>` is a value read from files (the web config with the certificates it names, the
//! remote-write bearer token) that is read again when one of those files changes, without a
//! restart.
//!
//! The files' modification times are looked at, at most once per [`RECHECK`], by the caller that
//! asks for the value (a connection or a request): a `stat` per file, no watcher thread. A new
//! version that cannot be used (a half-written certificate during a rotation, a YAML typo) is
//! logged once, counted in `ringtail_config_reload_failures_total{file}`, and the previous value
//! stays in force; the next change is tried again.

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often the files' modification times are looked at.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FileLabels {
    file: &'static str,
}

/// Counts reloads that failed, by which file (shared by every reloading value of a server).
#[derive(Debug, Clone, Default)]
pub(crate) struct ReloadMetrics {
    failures: Family<FileLabels, Counter>,
}

impl ReloadMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = ReloadMetrics::default();
        registry.register(
            "ringtail_config_reload_failures",
            "Changed files that could not be used, by file (web_config, remote_write_bearer_token); \
             the previous version stays in force",
            metrics.failures.clone(),
        );
        metrics
    }

    #[cfg(test)]
    pub(crate) fn failures(&self, file: &'static str) -> u64 {
        self.failures.get_or_create(&FileLabels { file }).get()
    }
}

/// What a load read: the value and every file it depends on.
pub(crate) struct Loaded<T> {
    pub(crate) value: T,
    pub(crate) files: Vec<PathBuf>,
}

type Loader<T> = Box<dyn Fn() -> Result<Loaded<T>, String> + Send + Sync>;

/// Modification times of a set of files (`None`: missing or unreadable).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamps(Vec<(PathBuf, Option<SystemTime>)>);

impl Stamps {
    fn of(files: &[PathBuf]) -> Stamps {
        Stamps(files.iter().map(|path| (path.clone(), modified(path))).collect())
    }

    fn now(&self) -> Stamps {
        Stamps(self.0.iter().map(|(path, _)| (path.clone(), modified(path))).collect())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

struct Current<T> {
    value: Arc<T>,
    stamps: Stamps,
    /// The files as they were when a load last failed, so one broken version is logged once.
    failed: Option<Stamps>,
    checked_at: Instant,
}

/// A value kept in step with its files; see the module doc.
pub(crate) struct Reloading<T> {
    /// Names the file in logs and metrics (`web_config`, `remote_write_bearer_token`).
    name: &'static str,
    load: Loader<T>,
    current: Mutex<Current<T>>,
    metrics: ReloadMetrics,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<T> Reloading<T> {
    /// Loads the value once (an error here is the caller's start-up error) and keeps `load` to
    /// load it again when its files change.
    pub(crate) fn new(
        name: &'static str,
        metrics: ReloadMetrics,
        load: impl Fn() -> Result<Loaded<T>, String> + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let Loaded { value, files } = load()?;
        Ok(Reloading {
            name,
            load: Box::new(load),
            current: Mutex::new(Current {
                value: Arc::new(value),
                stamps: Stamps::of(&files),
                failed: None,
                checked_at: Instant::now(),
            }),
            metrics,
        })
    }

    /// The value in force, loaded again first when a file changed since the last look.
    pub(crate) fn current(&self) -> Arc<T> {
        let mut current = self.current.lock();
        if current.checked_at.elapsed() < RECHECK {
            return current.value.clone();
        }
        current.checked_at = Instant::now();
        let now = current.stamps.now();
        if now == current.stamps || current.failed.as_ref() == Some(&now) {
            return current.value.clone();
        }
        match (self.load)() {
            Ok(Loaded { value, files }) => {
                tracing::info!(file = self.name, "reloaded");
                current.value = Arc::new(value);
                current.stamps = Stamps::of(&files);
                current.failed = None;
            }
            Err(error) => {
                tracing::error!(file = self.name, %error, "changed file not usable; keeping the previous version");
                self.metrics.failures.get_or_create(&FileLabels { file: self.name }).inc();
                current.failed = Some(now);
            }
        }
        current.value.clone()
    }
}

/// A secret read from a file (trimmed), e.g. the remote-write bearer token.
pub(crate) fn secret_file(
    name: &'static str,
    path: &Path,
    metrics: ReloadMetrics,
) -> Result<Reloading<String>, String> {
    let path = path.to_path_buf();
    Reloading::new(name, metrics, move || {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        Ok(Loaded { value: secret.to_string(), files: vec![path.clone()] })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets a file's modification time ahead, so a rewrite within one clock tick still counts.
    pub(crate) fn touch_later(path: &Path, seconds: u64) {
        let later = SystemTime::now() + Duration::from_secs(seconds);
        std::fs::File::options().write(true).open(path).unwrap().set_modified(later).unwrap();
    }

    #[test]
    fn a_changed_secret_is_picked_up_and_a_broken_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let metrics = ReloadMetrics::default();
        let token = secret_file("token", &path, metrics.clone()).unwrap();
        assert_eq!(*token.current(), "first");

        std::fs::write(&path, "  \n").unwrap();
        touch_later(&path, 5);
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(*token.current(), "first", "an empty token is refused");
        assert_eq!(metrics.failures("token"), 1);
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(*token.current(), "first");
        assert_eq!(metrics.failures("token"), 1, "one broken version is counted once");

        std::fs::write(&path, "second").unwrap();
        touch_later(&path, 10);
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(*token.current(), "second");

        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(*token.current(), "second", "a removed file keeps the last token");
        assert!(secret_file("token", &dir.path().join("missing"), metrics).is_err());
    }
}
