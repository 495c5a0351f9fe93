//! The `--config` YAML file: [`read_file`] reads it into a [`SettingsLayer`] (the keys are the
//! flags' names, see `crate::settings`), plus Prometheus-style `global` and `scrape_configs`.
//! Unknown keys are an error, never ignored.

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
    serde_yaml::from_str(&text).map_err(|e| ConfigError::Invalid { path: path.into(), message: e.to_string() })
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
}
