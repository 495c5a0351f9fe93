//! `scrape` starts Ringtail's scraper inside the server: it turns the config file's `global` and
//! `scrape_configs` into an [`ingest::ScrapeManager`], or, when the file has no `scrape_configs`,
//! the embedded default that scrapes Ringtail's own `/metrics` every 15 s so a newcomer sees data
//! at once. The manager stays reachable as `Server::scraper`, so discovery can replace a job's
//! target groups at runtime with `ScrapeManager::set_target_groups`.

use ingest::{ConfigError, IngestMetrics, ScrapeConfigs, ScrapeManager, ScrapeManagerOptions};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Job name of the embedded self-scrape.
pub const SELF_SCRAPE_JOB: &str = "ringtail";
/// Interval of the embedded self-scrape.
pub const SELF_SCRAPE_INTERVAL: Duration = Duration::from_secs(15);

/// The embedded default: scrape this server's `/metrics` at `listen` (a wildcard address is
/// scraped through loopback).
pub fn embedded_default(listen: SocketAddr) -> Result<ScrapeConfigs, ConfigError> {
    ScrapeConfigs::from_yaml(&embedded_default_yaml(listen))
}

/// The embedded default as the YAML text of a config file (what `/api/v1/status/config` shows).
pub fn embedded_default_yaml(listen: SocketAddr) -> String {
    let mut address = listen;
    if address.ip().is_unspecified() {
        address.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    format!(
        "scrape_configs:\n- job_name: {SELF_SCRAPE_JOB}\n  scrape_interval: {}s\n  static_configs:\n  - targets: ['{address}']\n",
        SELF_SCRAPE_INTERVAL.as_secs()
    )
}

/// The scrape configuration the server runs: the file's `global` and `scrape_configs`, or the
/// embedded default when it has none.
pub fn effective_configs(
    global: Option<&serde_yaml::Value>,
    scrape_configs: Option<&serde_yaml::Value>,
    local_addr: SocketAddr,
) -> Result<ScrapeConfigs, ConfigError> {
    match scrape_configs {
        None => {
            let mut configs = embedded_default(local_addr)?;
            if let Some(global) = global {
                configs.global = ScrapeConfigs::from_values(Some(global), None)?.global;
            }
            Ok(configs)
        }
        Some(scrape_configs) => ScrapeConfigs::from_values(global, Some(scrape_configs)),
    }
}

/// Builds the manager and starts the configured targets; scraped series meet the label limits of
/// `limits` (`--limits.*`); relative `file_sd_configs` paths are relative to the directory of
/// `config_file`. Must run inside the tokio runtime.
pub fn start(
    configs: &ScrapeConfigs,
    db: Arc<tsdb::Db>,
    metrics: IngestMetrics,
    limits: ingest::IngestLimits,
    config_file: Option<&std::path::Path>,
) -> Result<Arc<ScrapeManager>, ConfigError> {
    let config_dir = config_file.and_then(std::path::Path::parent).map(std::path::Path::to_path_buf);
    let options = ScrapeManagerOptions { limits, config_dir, ..ScrapeManagerOptions::default() };
    let manager = Arc::new(ScrapeManager::new(db, metrics, options));
    manager.apply_config(configs)?;
    tracing::info!(jobs = configs.scrape_configs.len(), "scraper started");
    Ok(manager)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn default_scrapes_self_through_loopback() {
        let configs = embedded_default("0.0.0.0:9201".parse().unwrap()).unwrap();
        let jobs = configs.resolve().unwrap();
        assert_eq!(jobs[0].name, SELF_SCRAPE_JOB);
        assert_eq!(jobs[0].interval, SELF_SCRAPE_INTERVAL);
        assert_eq!(jobs[0].static_groups[0].targets, vec!["127.0.0.1:9201".to_string()]);
    }

    #[test]
    fn file_configs_replace_the_default() {
        let config = Config {
            scrape_configs: Some(
                serde_yaml::from_str("[{job_name: other, static_configs: [{targets: ['127.0.0.1:1']}]}]").unwrap(),
            ),
            global: Some(serde_yaml::from_str("{scrape_interval: 5s}").unwrap()),
            ..Config::default()
        };
        let jobs =
            effective_configs(config.global.as_ref(), config.scrape_configs.as_ref(), "127.0.0.1:9".parse().unwrap())
                .unwrap()
                .resolve()
                .unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].name, "other");
        assert_eq!(jobs[0].interval, Duration::from_secs(5));
    }
}
