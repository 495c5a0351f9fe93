//! The `--config` YAML file: [`read_file`] reads it into a [`SettingsLayer`] (the keys are the
//! flags' names, see `crate::settings`), plus Prometheus-style `global`, `scrape_configs` and
//! `scrape_config_files` (globs, relative to the file's directory, of files holding more
//! `scrape_configs`, appended in order as Prometheus 2.43+ does). Unknown keys are an error,
//! never ignored.

use crate::settings::SettingsLayer;
use std::path::{Path, PathBuf};

/// The settings type under its former name, for callers that still say `Config`.
pub use crate::settings::Settings as Config;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads and checks the file at `path`.
pub fn read_file(path: &Path) -> Result<SettingsLayer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    let mut layer: SettingsLayer =
        serde_yaml::from_str(&text).map_err(|e| ConfigError::Invalid { path: path.into(), message: e.to_string() })?;
    let patterns = std::mem::take(&mut layer.scrape_config_files);
    if !patterns.is_empty() {
        let base = path.parent().unwrap_or(Path::new("."));
        let mut jobs = match layer.scrape_configs.take() {
            Some(serde_yaml::Value::Sequence(jobs)) => jobs,
            Some(serde_yaml::Value::Null) | None => Vec::new(),
            Some(_) => {
                return Err(ConfigError::Invalid {
                    path: path.into(),
                    message: "scrape_configs: expected a list".into(),
                })
            }
        };
        for pattern in &patterns {
            for file in
                glob_files(base, pattern).map_err(|message| ConfigError::Invalid { path: path.into(), message })?
            {
                jobs.extend(read_scrape_config_file(&file)?);
            }
        }
        layer.scrape_configs = Some(serde_yaml::Value::Sequence(jobs));
    }
    Ok(layer)
}

/// Most files one `scrape_config_files` pattern may name (a pattern such as `/*` is a mistake).
const MAX_SCRAPE_CONFIG_FILES: usize = 1000;

/// The files `pattern` names, sorted: `*` and `?` in the last path element (a directory part
/// with wildcards is refused); a relative pattern is relative to `base`. A pattern matching no
/// file names none (not an error), as in Prometheus.
fn glob_files(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = base.join(pattern);
    let (dir, name_pattern) = match (full.parent(), full.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) => (dir.to_path_buf(), name.to_string()),
        _ => return Err(format!("scrape_config_files: {pattern:?} names no file")),
    };
    if dir.to_string_lossy().contains(['*', '?', '[']) {
        return Err(format!("scrape_config_files: {pattern:?}: wildcards only in the file name are supported"));
    }
    if !name_pattern.contains(['*', '?']) {
        return Ok(if full.is_file() { vec![full] } else { Vec::new() });
    }
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("scrape_config_files: listing {}: {e}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // A mounted ConfigMap's `..data` links and hidden files are not configs.
        if name.starts_with('.') || !wildcard_match(&name_pattern, name) || !entry.path().is_file() {
            continue;
        }
        files.push(entry.path());
        if files.len() > MAX_SCRAPE_CONFIG_FILES {
            return Err(format!("scrape_config_files: {pattern:?} names more than {MAX_SCRAPE_CONFIG_FILES} files"));
        }
    }
    files.sort();
    Ok(files)
}

/// Whether `name` matches `pattern` (`*` any run, `?` one character).
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

/// The `scrape_configs` list of one `scrape_config_files` file (its only key).
fn read_scrape_config_file(path: &Path) -> Result<Vec<serde_yaml::Value>, ConfigError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ScrapeConfigFile {
        #[serde(default)]
        scrape_configs: Option<Vec<serde_yaml::Value>>,
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    let file: Option<ScrapeConfigFile> =
        serde_yaml::from_str(&text).map_err(|e| ConfigError::Invalid { path: path.into(), message: e.to_string() })?;
    Ok(file.and_then(|f| f.scrape_configs).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_are_read_and_unknown_keys_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "listen: 127.0.0.1:9999\nstorage_size: 1048576\nretention: 2h\n").unwrap();
        let layer = read_file(&path).unwrap();
        assert_eq!(layer.listen.map(|a| a.port()), Some(9999));
        assert_eq!(layer.storage_size, Some(1 << 20));
        assert_eq!(layer.retention, Some(std::time::Duration::from_secs(7200)));

        std::fs::write(&path, "listne: 1\n").unwrap();
        let err = read_file(&path).unwrap_err().to_string();
        assert!(err.contains("listne"), "{err}");
        let err = read_file(&dir.path().join("missing.yaml")).unwrap_err().to_string();
        assert!(err.starts_with("cannot read config file"), "{err}");
    }

    #[test]
    fn scrape_config_files_append_their_jobs_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::create_dir(dir.path().join("scrape.d")).unwrap();
        std::fs::write(dir.path().join("scrape.d/b.yaml"), "scrape_configs: [{job_name: b}]\n").unwrap();
        std::fs::write(dir.path().join("scrape.d/a.yaml"), "scrape_configs: [{job_name: a1}, {job_name: a2}]\n")
            .unwrap();
        std::fs::write(dir.path().join("scrape.d/.hidden.yaml"), "not: read\n").unwrap();
        std::fs::write(dir.path().join("scrape.d/notes.txt"), "not read\n").unwrap();
        std::fs::write(
            &path,
            "scrape_configs: [{job_name: main}]\nscrape_config_files: [scrape.d/*.yaml, absent/*.yaml]\n",
        )
        .unwrap();
        let layer = read_file(&path).unwrap();
        let jobs: Vec<String> = layer
            .scrape_configs
            .unwrap()
            .as_sequence()
            .unwrap()
            .iter()
            .map(|job| job["job_name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(jobs, ["main", "a1", "a2", "b"]);

        std::fs::write(dir.path().join("scrape.d/b.yaml"), "global: {}\n").unwrap();
        let err = read_file(&path).unwrap_err().to_string();
        assert!(err.contains("b.yaml") && err.contains("global"), "{err}");
        std::fs::write(&path, "scrape_config_files: [\"*/x.yaml\"]\n").unwrap();
        assert!(read_file(&path).unwrap_err().to_string().contains("only in the file name"));
        assert!(wildcard_match("*.yaml", "kubelet.yaml") && !wildcard_match("*.yaml", "kubelet.yml"));
        assert!(wildcard_match("a?c*", "abcdef") && !wildcard_match("a?c", "ac"));
    }
}
