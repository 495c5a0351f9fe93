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
    let text = read_text(path)?;
    add_scrape_config_files(path, parse_text(path, &text)?)
}

/// The text of the config file at `path`.
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })
}

/// The settings in `text`, the config file at `path`, with its `scrape_config_files` not read yet
/// (see [`add_scrape_config_files`]).
pub(crate) fn parse_text(path: &Path, text: &str) -> Result<SettingsLayer, ConfigError> {
    serde_yaml::from_str(text).map_err(|e| ConfigError::Invalid { path: path.into(), message: e.to_string() })
}

/// `layer` of the config file at `path` with the jobs of the files its `scrape_config_files` name
/// appended to its `scrape_configs` (and that key emptied).
pub(crate) fn add_scrape_config_files(path: &Path, mut layer: SettingsLayer) -> Result<SettingsLayer, ConfigError> {
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

/// Most files one `scrape_config_files` or `rule_files` pattern may name (a pattern such as `/*`
/// is a mistake).
const MAX_SCRAPE_CONFIG_FILES: usize = 1000;

/// The files `pattern` names, sorted: `*` and `?` in the last path element (a directory part
/// with wildcards is refused); a relative pattern is relative to `base`. A pattern matching no
/// file names none (not an error), as in Prometheus.
fn glob_files(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    glob_files_for("scrape_config_files", base, pattern)
}

/// [`glob_files`] for the config key `key` (named in its errors): `scrape_config_files`,
/// `rule_files`.
pub(crate) fn glob_files_for(key: &str, base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = base.join(pattern);
    let Some(dir) = full.parent().filter(|_| full.file_name().is_some()) else {
        return Err(format!("{key}: {pattern:?} names no file"));
    };
    if dir.to_string_lossy().contains(['*', '?', '[']) {
        return Err(format!("{key}: {pattern:?}: wildcards only in the file name are supported"));
    }
    let files = ingest::glob_files(&full).map_err(|e| format!("{key}: {e}"))?;
    if files.len() > MAX_SCRAPE_CONFIG_FILES {
        return Err(format!("{key}: {pattern:?} names more than {MAX_SCRAPE_CONFIG_FILES} files"));
    }
    Ok(files)
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
    }
}
