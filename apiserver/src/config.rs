//! `Config` is everything `ringtail serve` needs: built from the embedded defaults, then the YAML
//! file given with `--config`, then command-line flags (each later source wins).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default disk budget for the ring store: 1 GiB.
pub const DEFAULT_STORAGE_SIZE_BYTES: u64 = 1 << 30;
/// Default HTTP listen address (Prometheus API, remote-write, health, self-metrics).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9201";

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

/// The YAML file shape. Every key is optional; unknown keys are an error, never ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    /// Bytes, as a number.
    pub storage_size: Option<u64>,
    /// A duration like `15d`, `12h`.
    #[serde(default, with = "humantime_serde_opt")]
    pub retention: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub sync_interval: Option<Duration>,
    /// Prometheus-shaped `global` block (scrape_interval, scrape_timeout, external labels ignored).
    pub global: Option<serde_yaml::Value>,
    /// Prometheus-shaped scrape configs, handed to the scraper as they are.
    pub scrape_configs: Option<serde_yaml::Value>,
    /// The metrics adapter's settings (`secure_listen`, TLS files, rules file, tokens file, …).
    pub adapter: Option<crate::adapter::serve::AdapterFileConfig>,
    /// A kubeconfig file naming the cluster to use (in-cluster config is found without it).
    pub kubeconfig: Option<PathBuf>,
}

/// The effective serving configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub storage_size_bytes: u64,
    pub retention: Option<Duration>,
    pub sync_interval: Duration,
    /// `global` from the config file, if any (YAML as written).
    pub global: Option<serde_yaml::Value>,
    /// `scrape_configs` from the config file; `None` means the embedded default (scrape self).
    pub scrape_configs: Option<serde_yaml::Value>,
    /// Largest remote-write request body accepted, in bytes (compressed); larger gets 413.
    pub remote_write_max_body_bytes: usize,
    /// File holding the bearer token remote-write senders must present; `None` = no check.
    pub remote_write_bearer_token_file: Option<PathBuf>,
    /// Decompressed remote-write bytes decoded at once before senders get 503 + Retry-After.
    pub remote_write_max_inflight_bytes: usize,
    /// The metrics adapter (custom/external metrics APIs over TLS).
    pub adapter: crate::adapter::serve::AdapterServeConfig,
    /// Which Kubernetes API (if any) to use, and whether its authentication guards the adapter.
    pub cluster: crate::k8s::ClusterSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            listen: DEFAULT_LISTEN.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9201))),
            storage_size_bytes: DEFAULT_STORAGE_SIZE_BYTES,
            retention: None,
            sync_interval: Duration::from_secs(1),
            global: None,
            scrape_configs: None,
            remote_write_max_body_bytes: crate::http::remote_write::DEFAULT_MAX_BODY_BYTES,
            remote_write_bearer_token_file: None,
            remote_write_max_inflight_bytes: crate::http::remote_write::DEFAULT_MAX_INFLIGHT_BYTES,
            adapter: crate::adapter::serve::AdapterServeConfig::default(),
            cluster: crate::k8s::ClusterSettings::default(),
        }
    }
}

impl Config {
    /// Applies a YAML config file on top of `self`.
    pub fn merge_file(mut self, path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let file: FileConfig = serde_yaml::from_str(&text)
            .map_err(|e| ConfigError::Invalid { path: path.into(), message: e.to_string() })?;
        if let Some(dir) = file.data_dir {
            self.data_dir = dir;
        }
        if let Some(listen) = file.listen {
            self.listen = listen;
        }
        if let Some(size) = file.storage_size {
            self.storage_size_bytes = size;
        }
        if file.retention.is_some() {
            self.retention = file.retention;
        }
        if let Some(interval) = file.sync_interval {
            self.sync_interval = interval;
        }
        self.global = file.global.or(self.global);
        self.scrape_configs = file.scrape_configs.or(self.scrape_configs);
        if let Some(path) = file.kubeconfig {
            self.cluster.mode = crate::k8s::ClusterMode::Kubeconfig(path);
        }
        if let Some(adapter) = file.adapter {
            self.adapter = self
                .adapter
                .merge_file(adapter)
                .map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
        }
        Ok(self)
    }
}

/// Serde glue for `Option<Duration>` written as a humantime string (`1s`, `15d`).
mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "listen: 127.0.0.1:9999\nstorage_size: 1048576\nretention: 2h\n").unwrap();
        let config = Config::default().merge_file(&path).unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.storage_size_bytes, 1 << 20);
        assert_eq!(config.retention, Some(Duration::from_secs(7200)));

        std::fs::write(&path, "listne: 1\n").unwrap();
        let err = Config::default().merge_file(&path).unwrap_err().to_string();
        assert!(err.contains("listne"), "{err}");
    }
}
