//! `SystemKind` names a system under test and `RunningSystem` is one started on loopback with a
//! fresh temporary data directory: Ringtail (`ringtail serve --standalone`, its metrics adapter on
//! TLS with the generated CA), Prometheus 2.42 (remote-write receiver enabled) and
//! VictoriaMetrics 1.79 single-node (scraping with its own `-promscrape.config`, and
//! `-search.maxQueryLen` raised to 1 MiB so the adapter's rendered query over thousands of pods is
//! accepted; its other flags, including `-search.latencyOffset`, stay at their defaults). Each gets the
//! same Prometheus-shaped scrape configuration when a workload needs scraping, and the same time
//! retention when one asks for it (VictoriaMetrics at its 1-day minimum). Adding a system
//! means adding a variant here with its command line, readiness URL and API paths.

use crate::{free_port, ringtail_bin, wait_ok, Peer};
use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum SystemKind {
    Ringtail,
    Prometheus,
    VictoriaMetrics,
}

impl SystemKind {
    /// Every system, in report order.
    pub const ALL: [SystemKind; 3] = [SystemKind::Ringtail, SystemKind::Prometheus, SystemKind::VictoriaMetrics];

    /// The short name used in reports and file names.
    pub fn name(self) -> &'static str {
        match self {
            SystemKind::Ringtail => "ringtail",
            SystemKind::Prometheus => "prometheus",
            SystemKind::VictoriaMetrics => "victoria-metrics",
        }
    }

    /// `ALL` rotated by `repeat`, so each system takes each position in turn across repeats and a
    /// slow drift of the machine (another build starting) does not fall on one system.
    pub fn order_for_repeat(repeat: usize) -> Vec<SystemKind> {
        let mut order = Self::ALL.to_vec();
        let shift = repeat % order.len();
        order.rotate_left(shift);
        order
    }
}

/// One static scrape job: every target scraped at `interval` (timeout = interval).
#[derive(Clone, Debug)]
pub struct ScrapeJob {
    pub job: String,
    pub interval: Duration,
    pub targets: Vec<String>,
}

/// What a workload asks of a system beyond remote-write and the query API.
#[derive(Clone, Debug, Default)]
pub struct SystemSetup {
    /// Scrape jobs, rendered as the same Prometheus `scrape_configs` for every system.
    pub scrape_jobs: Vec<ScrapeJob>,
    /// A prometheus-adapter rules file for Ringtail's metrics adapter (others ignore it).
    pub adapter_rules: Option<String>,
    /// Time retention: Ringtail's `--retention`, Prometheus's `--storage.tsdb.retention.time`, and
    /// VictoriaMetrics's `-retentionPeriod` raised to its 1-day minimum. `None` keeps everything
    /// (the other workloads' default).
    pub retention: Option<Duration>,
    /// Ringtail's `--storage-size` in bytes; `None` gives the 16 GiB the largest workload needs.
    pub ringtail_storage_size_bytes: Option<u64>,
}

/// The smallest retention VictoriaMetrics accepts: it drops data a day-partition at a time.
pub const VICTORIA_METRICS_MIN_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// VictoriaMetrics's `-retentionPeriod` value for `retention`: whole days, at least one.
pub fn victoria_metrics_retention_days(retention: Duration) -> u64 {
    retention.max(VICTORIA_METRICS_MIN_RETENTION).as_secs().div_ceil(24 * 3600)
}

/// The Prometheus-format configuration shared by all scrapers.
pub fn scrape_config_yaml(jobs: &[ScrapeJob]) -> String {
    if jobs.is_empty() {
        return "scrape_configs: []\n".to_string();
    }
    let mut yaml = String::from("scrape_configs:\n");
    for job in jobs {
        let secs = job.interval.as_secs_f64();
        yaml.push_str(&format!(
            "- job_name: {}\n  scrape_interval: {secs}s\n  scrape_timeout: {secs}s\n  static_configs:\n  - targets:\n",
            job.job
        ));
        for target in &job.targets {
            yaml.push_str(&format!("    - '{target}'\n"));
        }
    }
    yaml
}

/// Ringtail's metrics adapter endpoint: the TLS base URL and a client trusting its generated CA.
pub struct AdapterEndpoint {
    pub base_url: String,
    pub client: reqwest::Client,
}

/// A started system: its process (killed on drop), HTTP base URL and, for Ringtail, the adapter.
pub struct RunningSystem {
    pub kind: SystemKind,
    peer: Peer,
    pub adapter: Option<AdapterEndpoint>,
    /// Resident set right after readiness, before any workload data (MiB).
    pub idle_rss_mib: f64,
    /// Anonymous resident memory at the same moment (MiB).
    pub idle_anon_mib: f64,
}

const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Adapter load requests that take longer than this count as failed (and at this latency).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl RunningSystem {
    /// Starts `kind` with `setup` and waits until it answers its readiness URL.
    pub async fn start(kind: SystemKind, setup: &SystemSetup, http: &reqwest::Client) -> Result<RunningSystem> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ringtail-bench-{}-", kind.name()))
            .tempdir()
            .context("creating a temporary data directory")?;
        let port = free_port().map_err(|e| anyhow!(e))?;
        let data = dir.path().join("data");
        let scrape_file = dir.path().join("scrape.yml");
        std::fs::write(&scrape_file, scrape_config_yaml(&setup.scrape_jobs))
            .with_context(|| format!("writing {}", scrape_file.display()))?;
        let mut secure_port = None;
        let (program, args, ready_path, envs): (PathBuf, Vec<String>, &str, Vec<(&str, &str)>) = match kind {
            SystemKind::Ringtail => {
                let secure = free_port().map_err(|e| anyhow!(e))?;
                secure_port = Some(secure);
                let mut args = vec![
                    "serve".to_string(),
                    "--standalone".into(),
                    format!("--config={}", scrape_file.display()),
                    format!("--data-dir={}", data.display()),
                    format!("--listen=127.0.0.1:{port}"),
                    format!("--secure-listen=127.0.0.1:{secure}"),
                    // Room for the largest workload so the ring never overwrites what is measured.
                    format!("--storage-size={}", setup.ringtail_storage_size_bytes.unwrap_or(17_179_869_184)),
                ];
                if let Some(retention) = setup.retention {
                    args.push(format!("--retention={}ms", retention.as_millis()));
                }
                if let Some(rules) = &setup.adapter_rules {
                    let rules_file = dir.path().join("adapter.yaml");
                    std::fs::write(&rules_file, rules).with_context(|| format!("writing {}", rules_file.display()))?;
                    args.push(format!("--adapter-config={}", rules_file.display()));
                }
                let program = ringtail_bin().map_err(|e| anyhow!(e))?;
                (program, args, "/-/ready", vec![("RINGTAIL_LOG", "warn")])
            }
            SystemKind::Prometheus => {
                let config = dir.path().join("prometheus.yml");
                let global = "global:\n  scrape_interval: 1h\n  evaluation_interval: 1h\n";
                std::fs::write(&config, format!("{global}{}", scrape_config_yaml(&setup.scrape_jobs)))
                    .with_context(|| format!("writing {}", config.display()))?;
                let mut args = vec![
                    format!("--config.file={}", config.display()),
                    format!("--storage.tsdb.path={}", data.display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    "--web.enable-remote-write-receiver".into(),
                    "--log.level=warn".into(),
                ];
                if let Some(retention) = setup.retention {
                    args.push(format!("--storage.tsdb.retention.time={}ms", retention.as_millis().max(1)));
                }
                (PathBuf::from("/usr/bin/prometheus"), args, "/-/ready", vec![])
            }
            SystemKind::VictoriaMetrics => {
                let retention = match setup.retention {
                    Some(retention) => format!("{}d", victoria_metrics_retention_days(retention)),
                    None => "10y".to_string(),
                };
                let mut args = vec![
                    format!("-storageDataPath={}", data.display()),
                    format!("-httpListenAddr=127.0.0.1:{port}"),
                    format!("-retentionPeriod={retention}"),
                    "-loggerLevel=WARN".into(),
                    // The default 16 KiB rejects the query prometheus-adapter renders for ~2000+
                    // pods (`pod=~"a|b|…"`); a deployment serving that many pods must raise it too.
                    "-search.maxQueryLen=1048576".into(),
                ];
                if !setup.scrape_jobs.is_empty() {
                    args.push(format!("-promscrape.config={}", scrape_file.display()));
                }
                (PathBuf::from("/usr/bin/victoria-metrics"), args, "/health", vec![])
            }
        };
        let mut peer =
            Peer::start(kind.name(), &program, &args, &envs, port, dir, "server.log").map_err(|e| anyhow!(e))?;
        let ready = format!("{}{ready_path}", peer.url);
        if let Err(e) = peer.wait_ready(http, &ready, READY_TIMEOUT, Duration::from_millis(100)).await {
            // The temporary directory goes with the process: quote the log's end now.
            let tail = log_tail(&peer.dir().join("server.log"));
            return Err(anyhow!("{} did not start: {e}; its log ends: {tail}", kind.name()));
        }
        let adapter = match secure_port {
            Some(secure) => Some(adapter_endpoint(&peer, secure).await?),
            None => None,
        };
        // Let start-up work (WAL replay, cache warm-up) finish before taking the idle figure.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle_rss_mib = crate::suite::measure::rss_mib(peer.pid());
        let idle_anon_mib = crate::suite::measure::anon_rss_mib(peer.pid());
        Ok(RunningSystem { kind, peer, adapter, idle_rss_mib, idle_anon_mib })
    }

    pub fn pid(&self) -> u32 {
        self.peer.pid()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.peer.url
    }

    /// The data directory (measured with `du` for bytes on disk).
    pub fn data_dir(&self) -> PathBuf {
        self.peer.dir().join("data")
    }

    /// The last lines of the server log, quoted in notes (the log is removed with the system).
    pub fn log_tail(&self) -> String {
        log_tail(&self.peer.dir().join("server.log"))
    }

    /// The Remote-Write 1.0 endpoint (the same path on all three).
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.peer.url)
    }

    /// The Prometheus HTTP API base (`…/api/v1`).
    pub fn api_url(&self) -> String {
        format!("{}/api/v1", self.peer.url)
    }

    /// Extra query parameters: VictoriaMetrics caches range-query results, which would time the
    /// cache instead of the engine on repeated identical queries, so its cache is bypassed.
    pub fn query_extra_params(&self) -> &'static [(&'static str, &'static str)] {
        match self.kind {
            SystemKind::VictoriaMetrics => &[("nocache", "1")],
            _ => &[],
        }
    }

    /// The Ringtail adapter endpoint; an error for the others.
    pub fn adapter(&self) -> Result<&AdapterEndpoint> {
        self.adapter.as_ref().ok_or_else(|| anyhow!("{} has no custom metrics API", self.kind.name()))
    }
}

/// The last 5 lines of the log at `path`, joined with " / ".
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" / ")
}

async fn adapter_endpoint(peer: &Peer, secure_port: u16) -> Result<AdapterEndpoint> {
    let ca_path = Path::new(&format!("{}-tls", peer.dir().join("data").display())).join("ca.crt");
    let ca =
        std::fs::read(&ca_path).with_context(|| format!("reading Ringtail's generated CA {}", ca_path.display()))?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).context("parsing Ringtail's CA")?)
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(512)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the TLS client")?;
    let base_url = format!("https://localhost:{secure_port}");
    wait_ok(&client, &format!("{base_url}/healthz"), READY_TIMEOUT, Duration::from_millis(100))
        .await
        .map_err(|e| anyhow!("Ringtail's metrics adapter did not start: {e}"))?;
    Ok(AdapterEndpoint { base_url, client })
}

/// Sends one Remote-Write request; 5xx is retried like a sender's queue would (10 attempts).
pub async fn remote_write(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let response = crate::remote_write_request(client, url, body.clone())
            .send()
            .await
            .with_context(|| format!("remote-write to {url}"))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_server_error() && attempt < 10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let text = response.text().await.unwrap_or_default();
        return Err(anyhow!("remote-write to {url}: {status} {}", text.chars().take(300).collect::<String>()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_rotates() {
        assert_eq!(SystemKind::order_for_repeat(0), SystemKind::ALL.to_vec());
        assert_eq!(SystemKind::order_for_repeat(1)[0], SystemKind::Prometheus);
        assert_eq!(SystemKind::order_for_repeat(3), SystemKind::ALL.to_vec());
    }

    #[test]
    fn victoria_metrics_retention_is_whole_days_at_least_one() {
        assert_eq!(victoria_metrics_retention_days(Duration::from_secs(60)), 1);
        assert_eq!(victoria_metrics_retention_days(Duration::from_secs(36 * 3600)), 2);
    }

    #[test]
    fn scrape_yaml_lists_targets() {
        let yaml = scrape_config_yaml(&[ScrapeJob {
            job: "pods".into(),
            interval: Duration::from_secs(2),
            targets: vec!["127.1.0.1:9000".into()],
        }]);
        assert!(yaml.contains("scrape_interval: 2s"), "{yaml}");
        assert!(yaml.contains("- '127.1.0.1:9000'"), "{yaml}");
    }
}
