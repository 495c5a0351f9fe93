//! `file_sd` is Prometheus's file-based service discovery for one `file_sd_configs` entry: it
//! expands the entry's patterns, reads each JSON or YAML file of `[{targets: [...], labels:
//! {...}}]` groups, and re-reads a file when its modification time or size changes (polled every
//! [`FILE_SD_POLL`]; inotify is not needed, which also keeps it working on network and ConfigMap
//! volumes) and every file at least every `refresh_interval`.
//!
//! As Prometheus 2.42: each group gets `__meta_filepath` (the path as matched), a file that cannot
//! be read or parsed keeps the groups it gave before (the error is logged once per change), and a
//! file no pattern matches any more takes its groups away.

use crate::scrape_config::{FileSdConfig, TargetGroup, DEFAULT_FILE_SD_REFRESH_INTERVAL};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// How often the files' modification times are looked at (Prometheus reacts to inotify events;
/// a couple of seconds of delay is the price of not depending on them).
pub(crate) const FILE_SD_POLL: Duration = Duration::from_secs(2);

/// Most files one `files` pattern may name; the first ones (sorted) are read and the rest are
/// left out with an error logged (a pattern such as `/etc/*.json` is a mistake, not a target set).
pub const MAX_FILE_SD_FILES_PER_PATTERN: usize = 1000;

/// Largest file read, in bytes; a bigger file is an error (its previous groups stay).
pub const MAX_FILE_SD_FILE_BYTES: u64 = 16 << 20;

/// Most targets one file may list; more is an error (its previous groups stay).
pub const MAX_FILE_SD_TARGETS_PER_FILE: usize = 100_000;

/// The label naming the file a group came from.
pub const FILE_SD_FILEPATH_LABEL: &str = "__meta_filepath";

/// What changes a file's contents show through, without reading it.
type Stamp = (Option<SystemTime>, u64);

#[derive(Debug)]
struct FileState {
    stamp: Stamp,
    groups: Vec<TargetGroup>,
}

/// One `file_sd_configs` entry's files and the groups they hold.
#[derive(Debug)]
pub(crate) struct FileSd {
    job: String,
    patterns: Vec<PathBuf>,
    refresh: Duration,
    last_full_read: Option<Instant>,
    files: BTreeMap<PathBuf, FileState>,
}

impl FileSd {
    /// `base_dir` is what relative patterns are relative to (the config file's directory).
    pub(crate) fn new(job: &str, config: &FileSdConfig, base_dir: &Path) -> FileSd {
        FileSd {
            job: job.to_string(),
            patterns: config.files.iter().map(|p| base_dir.join(p)).collect(),
            refresh: config.refresh_interval.unwrap_or(DEFAULT_FILE_SD_REFRESH_INTERVAL),
            last_full_read: None,
            files: BTreeMap::new(),
        }
    }

    /// Looks at the files: new and changed ones are read (every one when `refresh_interval` has
    /// passed), vanished ones are forgotten. `true` when the groups changed.
    pub(crate) fn poll(&mut self) -> bool {
        let full = self.last_full_read.is_none_or(|t| t.elapsed() >= self.refresh);
        if full {
            self.last_full_read = Some(Instant::now());
        }
        let mut matched = Vec::new();
        for pattern in &self.patterns {
            match expand(pattern) {
                Ok(files) => matched.extend(files),
                Err(error) => tracing::error!(job = %self.job, %error, "file_sd: listing files failed"),
            }
        }
        matched.sort();
        matched.dedup();
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|path, _| matched.contains(path));
        changed |= self.files.len() != before;
        for path in matched {
            let stamp = stamp(&path);
            let known = self.files.get(&path);
            if !full && known.is_some_and(|f| f.stamp == stamp) {
                continue;
            }
            match read_groups(&path) {
                Ok(groups) => {
                    changed |= known.is_none_or(|f| f.groups != groups);
                    self.files.insert(path, FileState { stamp, groups });
                }
                Err(error) => {
                    // As Prometheus: the previous targets of a bad file stay. The stamp is kept so
                    // the error is logged once per change, not at every poll.
                    if known.is_none_or(|f| f.stamp != stamp) || full {
                        tracing::error!(job = %self.job, file = %path.display(), %error, "file_sd: error reading file; its previous targets stay");
                    }
                    let groups = known.map(|f| f.groups.clone()).unwrap_or_default();
                    self.files.insert(path, FileState { stamp, groups });
                }
            }
        }
        changed
    }

    /// Every file's groups, in file order.
    pub(crate) fn groups(&self) -> Vec<TargetGroup> {
        self.files.values().flat_map(|f| f.groups.iter().cloned()).collect()
    }
}

fn stamp(path: &Path) -> Stamp {
    match std::fs::metadata(path) {
        Ok(meta) => (meta.modified().ok(), meta.len()),
        Err(_) => (None, 0),
    }
}

/// The files `pattern` names, sorted: `*` and `?` in the file name only (validated with the
/// config). A pattern matching nothing names nothing, as Go's `filepath.Glob`.
fn expand(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = glob_files(pattern)?;
    if files.len() > MAX_FILE_SD_FILES_PER_PATTERN {
        tracing::error!(
            pattern = %pattern.display(),
            files = files.len(),
            "file_sd: the pattern names more than {MAX_FILE_SD_FILES_PER_PATTERN} files; only the first are read"
        );
        files.truncate(MAX_FILE_SD_FILES_PER_PATTERN);
    }
    Ok(files)
}

/// The regular, not hidden, files `pattern` names, sorted, as Go's `filepath.Glob` with `*` (any
/// run) and `?` (one character) in the last path element only (callers refuse wildcards elsewhere): a pattern
/// without wildcards names its file if it exists; a missing directory names nothing. Shared by
/// `file_sd_configs` and the config file's own globs (`scrape_config_files`, `rule_files`);
/// callers bound how many files they take.
pub fn glob_files(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name().and_then(|n| n.to_str())) else {
        return Err(format!("{} names no file", pattern.display()));
    };
    if !name.contains(['*', '?']) {
        return Ok(if pattern.is_file() { vec![pattern.to_path_buf()] } else { Vec::new() });
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("listing {}: {e}", dir.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        // Hidden names (a mounted ConfigMap's `..data` links, editors' and atomic writers'
        // temporary files) are never configs, unlike in Go's `filepath.Glob`.
        .filter(|entry| entry.file_name().to_str().is_some_and(|n| !n.starts_with('.') && wildcard_match(name, n)))
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Whether `name` matches `pattern` (`*` any run, `?` one character), as Go's `filepath.Match`
/// without character classes.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Reads one file's groups (JSON is read by the YAML parser, of which it is a subset) and sets
/// `__meta_filepath` on each.
fn read_groups(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if size > MAX_FILE_SD_FILE_BYTES {
        return Err(format!("the file has {size} bytes, more than the limit of {MAX_FILE_SD_FILE_BYTES}"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    groups_from_text(&text, FILE_SD_FILEPATH_LABEL, &path.to_string_lossy())
}

/// The target groups of a discovery file or an HTTP discovery answer (JSON is read by the YAML
/// parser, of which it is a subset), checked (at most [`MAX_FILE_SD_TARGETS_PER_FILE`] targets,
/// valid label names), each with the label `source_label` set to `source` (`__meta_filepath`,
/// `__meta_url`).
pub(crate) fn groups_from_text(text: &str, source_label: &str, source: &str) -> Result<Vec<TargetGroup>, String> {
    let groups: Option<Vec<TargetGroup>> = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let mut groups = groups.unwrap_or_default();
    let targets: usize = groups.iter().map(|g| g.targets.len()).sum();
    if targets > MAX_FILE_SD_TARGETS_PER_FILE {
        return Err(format!("{targets} targets are listed, more than the limit of {MAX_FILE_SD_TARGETS_PER_FILE}"));
    }
    for group in &mut groups {
        for (name, value) in &group.labels {
            if !valid_label_name(name) {
                return Err(format!("invalid label name {name:?} (value {value:?})"));
            }
        }
        group.labels.insert(source_label.to_string(), source.to_string());
    }
    Ok(groups)
}

/// Prometheus's label name rule, `[a-zA-Z_][a-zA-Z0-9_]*`.
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(files: &[&str]) -> FileSdConfig {
        FileSdConfig { files: files.iter().map(|f| f.to_string()).collect(), refresh_interval: None }
    }

    fn addresses(sd: &FileSd) -> Vec<String> {
        sd.groups().into_iter().flat_map(|g| g.targets).collect()
    }

    #[test]
    fn json_and_yaml_files_are_read_relative_to_the_base_dir_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sd")).unwrap();
        std::fs::write(dir.path().join("sd/a.json"), r#"[{"targets": ["a:1", "a:2"], "labels": {"env": "prod"}}]"#)
            .unwrap();
        std::fs::write(dir.path().join("sd/b.yml"), "- targets: ['b:1']\n").unwrap();
        std::fs::write(dir.path().join("sd/c.txt"), "not a target file").unwrap();
        let mut sd = FileSd::new("j", &config(&["sd/*.json", "sd/*.yml"]), dir.path());
        assert!(sd.poll());
        assert_eq!(addresses(&sd), ["a:1", "a:2", "b:1"]);
        let groups = sd.groups();
        assert_eq!(groups[0].labels["env"], "prod");
        let path = dir.path().join("sd/a.json");
        assert_eq!(groups[0].labels[FILE_SD_FILEPATH_LABEL], path.to_string_lossy());
        assert!(!sd.poll(), "nothing changed");
    }

    #[test]
    fn a_bad_file_keeps_its_previous_targets_and_a_removed_one_loses_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.yaml");
        std::fs::write(&path, "- targets: ['x:1']\n").unwrap();
        let mut sd = FileSd::new("j", &config(&["*.yaml"]), dir.path());
        sd.poll();
        std::fs::write(&path, "- targets: ['x:1'\n  broken").unwrap();
        sd.poll();
        assert_eq!(addresses(&sd), ["x:1"]);
        std::fs::write(&path, "- targets: ['x:1', 'x:2']\n").unwrap();
        assert!(sd.poll());
        assert_eq!(addresses(&sd), ["x:1", "x:2"]);
        std::fs::remove_file(&path).unwrap();
        assert!(sd.poll());
        assert!(addresses(&sd).is_empty());
    }

    #[test]
    fn limits_refuse_a_file_with_too_many_targets_and_bad_label_names() {
        let dir = tempfile::tempdir().unwrap();
        let many: Vec<String> = (0..=MAX_FILE_SD_TARGETS_PER_FILE).map(|i| format!("\"h:{i}\"")).collect();
        let path = dir.path().join("many.json");
        std::fs::write(&path, format!("[{{\"targets\": [{}]}}]", many.join(","))).unwrap();
        assert!(read_groups(&path).unwrap_err().contains("more than the limit"));
        let path = dir.path().join("label.json");
        std::fs::write(&path, r#"[{"targets": ["h:1"], "labels": {"a-b": "x"}}]"#).unwrap();
        assert!(read_groups(&path).unwrap_err().contains("invalid label name"));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.json", "a.json"));
        assert!(wildcard_match("a?c*", "abcdef") && !wildcard_match("a?c", "ac"));
        assert!(wildcard_match("t?.yml", "t1.yml"));
        assert!(!wildcard_match("*.json", "a.yml"));
    }
}
