//! `overload` is the overload soak against a real sender: Ringtail, its CPU share cut down for
//! real (a cgroup CPU quota, or `taskset` to one core when no cgroup is writable) and its
//! remote-write in-flight budget small, receives the remote-write stream of a real Prometheus 2.42
//! scraping many large pages every second with a queue that pushes harder than Ringtail can take.
//! During the overload it counts Ringtail's answers by status (503 with `Retry-After` expected,
//! 429 never) and times `/-/ready`, a PromQL query and a custom-metrics API request; then it stops
//! the load, waits until Prometheus has drained its queue and checks that every sample
//! Prometheus holds in its own TSDB is in Ringtail (`/api/v1/export`) with the same value.

use crate::{free_port, peak_rss_mib, ringtail_bin, Peer};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Debian's Prometheus 2.42.
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";
/// The namespace the custom-metrics rule serves pods in.
pub const NAMESPACE: &str = "overload";
/// The custom metric the probe asks for.
pub const CUSTOM_METRIC: &str = "requests_per_second";
/// Pods of the custom metric (their series are on the first target's page).
const PODS: usize = 10;
/// The kernel's smallest CFS quota.
const MIN_CPU_QUOTA_US: u64 = 1000;

/// CFS `(quota, period)` in µs for `percent` of one CPU: `period_us`, or the longer period a
/// quota of at least the kernel's minimum needs.
pub fn cpu_quota_period_us(percent: u64, period_us: u64) -> (u64, u64) {
    let percent = percent.clamp(1, 100);
    let period_us = period_us.max(MIN_CPU_QUOTA_US * 100 / percent);
    ((period_us * percent / 100).max(MIN_CPU_QUOTA_US), period_us)
}

/// The soak's knobs (`overload_soak --help`).
#[derive(Debug, Clone, clap::Parser)]
#[command(about = "Overload Ringtail with a real Prometheus 2.42 remote-writing to it; prints a Markdown report")]
pub struct SoakOptions {
    /// Scrape targets Prometheus scrapes every second.
    #[arg(long, default_value_t = 20)]
    pub targets: usize,
    /// Series on each target's page.
    #[arg(long, default_value_t = 2000)]
    pub series_per_target: usize,
    /// Ringtail's CPU share, percent of one CPU.
    #[arg(long, default_value_t = 10)]
    pub cpu_percent: u64,
    /// CFS period of the quota, ms (Kubernetes sets CPU limits with the kernel's default, 100 ms).
    #[arg(long, default_value_t = 100)]
    pub cpu_period_ms: u64,
    /// Ringtail's `--remote-write-max-inflight-bytes`.
    #[arg(long, default_value_t = 2 << 20)]
    pub inflight_bytes: u64,
    /// Seconds of overload.
    #[arg(long, default_value_t = 120)]
    pub load_seconds: u64,
    /// Prometheus remote-write shards (min = max).
    #[arg(long, default_value_t = 8)]
    pub shards: u32,
    /// Prometheus `max_samples_per_send`.
    #[arg(long, default_value_t = 5000)]
    pub samples_per_send: u32,
    /// Longest wait for Prometheus to drain its queue and Ringtail to hold everything, seconds.
    #[arg(long, default_value_t = 900)]
    pub drain_seconds: u64,
    /// More arguments for `ringtail serve` (repeatable), e.g. `--ringtail-arg=--worker-nice=10`.
    #[arg(long = "ringtail-arg", allow_hyphen_values = true)]
    pub ringtail_args: Vec<String>,
}

/// How Ringtail's CPU share was cut; a cgroup is removed on drop (after Ringtail is gone).
#[derive(Debug)]
pub enum CpuConfinement {
    /// A cgroup v2 child with `cpu.max`.
    CgroupV2 { dir: PathBuf, quota_us: u64, period_us: u64 },
    /// A cgroup v1 `cpu` child with `cpu.cfs_quota_us`.
    CgroupV1 { dir: PathBuf, quota_us: u64, period_us: u64 },
    /// `taskset -a -p -c 0`: one core, no quota.
    Taskset,
}

impl CpuConfinement {
    /// Confines `pid` (every thread, and threads it starts later) to `percent` of one CPU:
    /// a cgroup v2 child, else a cgroup v1 `cpu` child, else only the pinning. Every thread is
    /// also pinned to core 0, so the quota is one CPU's share as a pod's CPU limit on a busy
    /// node is: the kernel hands a group's quota out per CPU in slices, and threads spread over
    /// two CPUs would take turns by CPU rather than by their scheduling weights.
    pub fn apply(pid: u32, percent: u64, period_ms: u64) -> Result<CpuConfinement, String> {
        let (quota_us, period_us) = cpu_quota_period_us(percent, period_ms.saturating_mul(1000));
        let v2_root = Path::new("/sys/fs/cgroup");
        let v2_controllers = std::fs::read_to_string(v2_root.join("cgroup.controllers")).unwrap_or_default();
        if v2_controllers.split_whitespace().any(|c| c == "cpu") {
            let dir = v2_root.join(format!("ringtail-overload-{pid}"));
            // The parent must hand the cpu controller down before a child can use it.
            let _ = std::fs::write(v2_root.join("cgroup.subtree_control"), "+cpu");
            let made = std::fs::create_dir(&dir)
                .and_then(|()| std::fs::write(dir.join("cpu.max"), format!("{quota_us} {period_us}")))
                .and_then(|()| std::fs::write(dir.join("cgroup.procs"), pid.to_string()));
            match made {
                Ok(()) => {
                    pin_to_one_core(pid)?;
                    return Ok(CpuConfinement::CgroupV2 { dir, quota_us, period_us });
                }
                Err(e) => {
                    eprintln!("cgroup v2 at {} not usable ({e}); trying cgroup v1", dir.display());
                    let _ = std::fs::remove_dir(&dir);
                }
            }
        }
        let v1_root = Path::new("/sys/fs/cgroup/cpu");
        if v1_root.join("cpu.cfs_quota_us").exists() {
            let dir = v1_root.join(format!("ringtail-overload-{pid}"));
            let made = std::fs::create_dir(&dir)
                .and_then(|()| std::fs::write(dir.join("cpu.cfs_period_us"), period_us.to_string()))
                .and_then(|()| std::fs::write(dir.join("cpu.cfs_quota_us"), quota_us.to_string()))
                .and_then(|()| std::fs::write(dir.join("cgroup.procs"), pid.to_string()));
            match made {
                Ok(()) => {
                    pin_to_one_core(pid)?;
                    return Ok(CpuConfinement::CgroupV1 { dir, quota_us, period_us });
                }
                Err(e) => {
                    eprintln!("cgroup v1 at {} not usable ({e}); pinning to one core", dir.display());
                    let _ = std::fs::remove_dir(&dir);
                }
            }
        }
        pin_to_one_core(pid).map_err(|e| format!("no writable cgroup, and {e}"))?;
        Ok(CpuConfinement::Taskset)
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        let share = |quota_us: &u64, period_us: &u64| *quota_us as f64 * 100.0 / *period_us as f64;
        match self {
            CpuConfinement::CgroupV2 { dir, quota_us, period_us } => format!(
                "cgroup v2 `{}`: cpu.max `{quota_us} {period_us}` ({:.0}% of one CPU), every thread on core 0",
                dir.display(),
                share(quota_us, period_us)
            ),
            CpuConfinement::CgroupV1 { dir, quota_us, period_us } => format!(
                "cgroup v1 `{}`: cpu.cfs_quota_us {quota_us} per cpu.cfs_period_us {period_us} ({:.0}% of one CPU), every thread on core 0",
                dir.display(),
                share(quota_us, period_us)
            ),
            CpuConfinement::Taskset => "taskset -c 0 (one core of two; no quota available)".to_string(),
        }
    }

    /// Gives Ringtail its whole CPU back (the load is over: the drain need not crawl).
    pub fn lift(&self, pid: u32) {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let _ = taskset(pid, &format!("0-{}", cores - 1));
        match self {
            CpuConfinement::CgroupV2 { dir, .. } => {
                let _ = std::fs::write(dir.join("cpu.max"), "max");
            }
            CpuConfinement::CgroupV1 { dir, .. } => {
                let _ = std::fs::write(dir.join("cpu.cfs_quota_us"), "-1");
            }
            CpuConfinement::Taskset => {}
        }
    }

    /// Throttled periods and throttled seconds so far, when the cgroup reports them.
    pub fn throttling(&self) -> Option<(u64, f64)> {
        let (dir, periods_key, time_key, time_scale) = match self {
            CpuConfinement::CgroupV2 { dir, .. } => (dir, "nr_throttled", "throttled_usec", 1e-6),
            CpuConfinement::CgroupV1 { dir, .. } => (dir, "nr_throttled", "throttled_time", 1e-9),
            CpuConfinement::Taskset => return None,
        };
        let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
        let field =
            |key: &str| stat.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse::<u64>().ok()));
        Some((field(&format!("{periods_key} "))?, field(&format!("{time_key} "))? as f64 * time_scale))
    }
}

impl Drop for CpuConfinement {
    fn drop(&mut self) {
        if let CpuConfinement::CgroupV2 { dir, .. } | CpuConfinement::CgroupV1 { dir, .. } = self {
            // On an error path Ringtail may still be inside: only an empty cgroup can be removed.
            let parent_procs = dir.parent().map(|p| p.join("cgroup.procs"));
            let left = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in left.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                if let Some(parent_procs) = &parent_procs {
                    let _ = std::fs::write(parent_procs, pid.to_string());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Pins every thread of `pid` (and the threads they start) to core 0.
fn pin_to_one_core(pid: u32) -> Result<(), String> {
    taskset(pid, "0")
}

fn taskset(pid: u32, cores: &str) -> Result<(), String> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cores, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("taskset failed: {e}"))?;
    match status.success() {
        true => Ok(()),
        false => Err(format!("taskset -c {cores} answered {status}")),
    }
}

/// The scrape targets: one loopback listener per target, each serving a page of
/// `series_per_target` series whose values change every scrape. Turned off, every page answers
/// 503 (Prometheus then records `up` 0 and staleness markers, and scrapes nothing more).
pub struct Targets {
    /// `127.0.0.1:<port>` of each target.
    pub addrs: Vec<SocketAddr>,
    serving: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Targets {
    /// Starts `count` targets; the first also serves the custom metric's pod series.
    pub async fn start(count: usize, series_per_target: usize) -> Result<Targets, String> {
        let serving = Arc::new(AtomicBool::new(true));
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for target in 0..count {
            let scrapes = Arc::new(AtomicU64::new(0));
            let serving_now = serving.clone();
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let scrape = scrapes.fetch_add(1, Ordering::Relaxed) + 1;
                    let on = serving_now.load(Ordering::Relaxed);
                    async move {
                        if !on {
                            return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
                        }
                        (axum::http::StatusCode::OK, page(target, series_per_target, scrape))
                    }
                }),
            );
            let listener =
                tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("binding a target: {e}"))?;
            addrs.push(listener.local_addr().map_err(|e| e.to_string())?);
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
        }
        Ok(Targets { addrs, serving, tasks })
    }

    /// Every page answers 503 from now on.
    pub fn stop_serving(&self) {
        self.serving.store(false, Ordering::Relaxed);
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The text-format page of `target` at its `scrape`-th scrape: values are exact in binary
/// (multiples of 1/1024), so a value that arrives altered is seen.
pub fn page(target: usize, series: usize, scrape: u64) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(series * 64);
    out.push_str("# TYPE overload_load gauge\n");
    for i in 0..series {
        let value = scrape as f64 + i as f64 / 1024.0;
        let _ = writeln!(out, "overload_load{{target=\"t{target}\",series=\"s{i}\"}} {value}");
    }
    if target == 0 {
        out.push_str("# TYPE overload_requests_total counter\n");
        for pod in 0..PODS {
            let _ = writeln!(
                out,
                "overload_requests_total{{namespace=\"{NAMESPACE}\",pod=\"pod-{pod}\"}} {}",
                scrape * (pod as u64 + 1)
            );
        }
    }
    out
}

/// The custom-metrics rule the probe's request goes through.
pub fn adapter_rules() -> String {
    format!(
        "rules:\n- seriesQuery: 'overload_requests_total{{namespace!=\"\",pod!=\"\"}}'\n  resources:\n    overrides:\n      \
         namespace: {{resource: namespace}}\n      pod: {{resource: pod}}\n  name:\n    matches: '^overload_requests_total$'\n    \
         as: '{CUSTOM_METRIC}'\n  metricsQuery: 'sum(rate(<<.Series>>{{<<.LabelMatchers>>}}[10m])) by (<<.GroupBy>>)'\n"
    )
}

/// The `queue_config` of Prometheus's remote write: fixed shards, big batches sent without
/// waiting, short backoff (2.42 retries 5xx and honours `Retry-After`).
pub fn queue_config(shards: u32, samples_per_send: u32) -> String {
    format!(
        "{{capacity: {}, min_shards: {shards}, max_shards: {shards}, max_samples_per_send: {samples_per_send}, \
         batch_send_deadline: 100ms, min_backoff: 30ms, max_backoff: 2s}}",
        samples_per_send * 4
    )
}

/// Prometheus's configuration: scrape every target each second, remote-write to `write_url`.
pub fn prometheus_config(targets: &[SocketAddr], write_url: &str, queue: &str) -> String {
    let list: Vec<String> = targets.iter().map(|a| format!("'{a}'")).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: overload\n    static_configs: [{{targets: [{}]}}]\n\
         remote_write:\n  - url: {write_url}\n    queue_config: {queue}\n    metadata_config: {{send: false}}\n",
        list.join(", ")
    )
}

/// Sums the values of the exposition lines of `text` whose series starts with `prefix` (a metric
/// name, optionally with the opening of its label set).
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(prefix)
                .is_some_and(|rest| prefix.ends_with(['{', ',', '"']) || rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Status codes of Ringtail's remote-write answers so far, from `/metrics`.
pub fn remote_write_codes(metrics: &str) -> BTreeMap<u16, f64> {
    let mut codes = BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with("ringtail_remote_write_requests_total{")) {
        let code = line.split("code=\"").nth(1).and_then(|r| r.split('"').next()).and_then(|c| c.parse().ok());
        let value = line.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok());
        if let (Some(code), Some(value)) = (code, value) {
            *codes.entry(code).or_insert(0.0) += value;
        }
    }
    codes
}

/// Latencies (ms) and failures of one probed request kind.
#[derive(Debug, Default, Clone)]
pub struct ProbeStats {
    pub latencies_ms: Vec<f64>,
    pub failures: Vec<String>,
}

impl ProbeStats {
    /// The `q` quantile (0..=1) of the latencies, NaN when none.
    pub fn quantile(&self, q: f64) -> f64 {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return f64::NAN;
        }
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    }
}

/// The three requests probed during the overload.
#[derive(Debug, Default, Clone)]
pub struct Probes {
    pub ready: ProbeStats,
    pub query: ProbeStats,
    pub custom_metrics: ProbeStats,
}

async fn timed(client: &reqwest::Client, url: &str, stats: &mut ProbeStats) {
    let started = Instant::now();
    match client.get(url).send().await {
        Ok(r) if r.status().is_success() => match r.bytes().await {
            Ok(_) => stats.latencies_ms.push(started.elapsed().as_secs_f64() * 1000.0),
            Err(e) => stats.failures.push(format!("{url}: body: {e}")),
        },
        Ok(r) => {
            let status = r.status();
            stats.failures.push(format!("{url}: {status}: {}", r.text().await.unwrap_or_default()))
        }
        Err(e) => stats.failures.push(format!("{url}: {e}")),
    }
}

/// Probes `/-/ready`, a PromQL query and the custom-metrics request every `every` until `stop`.
pub async fn probe_until(
    http: reqwest::Client,
    https: reqwest::Client,
    ringtail_url: String,
    custom_metrics_url: String,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Probes {
    let mut probes = Probes::default();
    let query_url = format!("{ringtail_url}/api/v1/query?query=sum%28rate%28overload_requests_total%5B10m%5D%29%29");
    while !stop.load(Ordering::Relaxed) {
        timed(&http, &format!("{ringtail_url}/-/ready"), &mut probes.ready).await;
        timed(&http, &query_url, &mut probes.query).await;
        timed(&https, &custom_metrics_url, &mut probes.custom_metrics).await;
        tokio::time::sleep(every).await;
    }
    probes
}

/// A series' labels and its `(timestamp ms, value)` samples.
pub type SeriesSamples = (BTreeMap<String, String>, Vec<(i64, f64)>);

fn labels_of(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default()
}

fn parse_float(text: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "StaleNaN" => f64::from_bits(0x7ff0_0000_0000_0002),
        other => other.parse().unwrap_or(f64::NAN),
    }
}

/// Every raw sample Prometheus holds for `selector` over the last `range`, through its own query
/// API (a range-vector selector returns stored samples unchanged, staleness markers left out).
pub async fn prometheus_samples(
    client: &reqwest::Client,
    prometheus_url: &str,
    selector: &str,
    range: &str,
) -> Result<Vec<SeriesSamples>, String> {
    let body: Value = client
        .get(format!("{prometheus_url}/api/v1/query"))
        .query(&[("query", format!("{selector}[{range}]"))])
        .send()
        .await
        .map_err(|e| format!("querying Prometheus: {e}"))?
        .json()
        .await
        .map_err(|e| format!("Prometheus's answer: {e}"))?;
    let results = body["data"]["result"].as_array().ok_or_else(|| format!("Prometheus answered {body}"))?;
    Ok(results
        .iter()
        .map(|series| {
            let samples = series["values"]
                .as_array()
                .map(|vs| {
                    vs.iter()
                        .map(|pair| {
                            let ts_ms = (pair[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
                            (ts_ms, parse_float(pair[1].as_str().unwrap_or("NaN")))
                        })
                        .collect()
                })
                .unwrap_or_default();
            (labels_of(&series["metric"]), samples)
        })
        .collect())
}

/// Everything Ringtail holds for `selector`, through `/api/v1/export`.
pub async fn ringtail_export(
    client: &reqwest::Client,
    ringtail_url: &str,
    selector: &str,
) -> Result<Vec<SeriesSamples>, String> {
    let response = client
        .get(format!("{ringtail_url}/api/v1/export"))
        .query(&[("match[]", selector), ("start", "0")])
        .send()
        .await
        .map_err(|e| format!("exporting from Ringtail: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("export answered {}", response.status()));
    }
    let text = response.text().await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for line in text.lines() {
        let row: Value = serde_json::from_str(line).map_err(|e| format!("export line: {e}"))?;
        let timestamps = row["timestamps"].as_array().cloned().unwrap_or_default();
        let values = row["values"].as_array().cloned().unwrap_or_default();
        let samples = timestamps
            .iter()
            .zip(&values)
            .map(|(t, v)| {
                let value = match v {
                    Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                    Value::String(s) => parse_float(s),
                    _ => f64::NAN,
                };
                (t.as_i64().unwrap_or(0), value)
            })
            .collect();
        out.push((labels_of(&row["metric"]), samples));
    }
    Ok(out)
}

/// How many samples of `expected` are not in `found` with the same timestamp and bit-identical
/// value (NaN as NaN), and the first one missing.
pub fn count_missing(expected: &[SeriesSamples], found: &[SeriesSamples]) -> (u64, Option<String>) {
    let by_labels: HashMap<&BTreeMap<String, String>, HashMap<i64, f64>> =
        found.iter().map(|(labels, samples)| (labels, samples.iter().copied().collect())).collect();
    let mut missing = 0u64;
    let mut first = None;
    for (labels, samples) in expected {
        let stored = by_labels.get(labels);
        for (ts, value) in samples {
            let same = stored
                .and_then(|s| s.get(ts))
                .is_some_and(|v| v.to_bits() == value.to_bits() || (v.is_nan() && value.is_nan()));
            if !same {
                missing += 1;
                first.get_or_insert_with(|| {
                    format!("{labels:?} at {ts}: expected {value}, found {:?}", stored.and_then(|s| s.get(ts)))
                });
            }
        }
    }
    (missing, first)
}

/// Prometheus's remote-write queue state: pending samples and how far (seconds) the newest
/// sent sample is behind the newest appended one.
pub fn queue_lag(prometheus_metrics: &str) -> (f64, f64) {
    let pending = metric_sum(prometheus_metrics, "prometheus_remote_storage_samples_pending");
    let highest = metric_sum(prometheus_metrics, "prometheus_remote_storage_highest_timestamp_in_seconds");
    let sent = metric_sum(prometheus_metrics, "prometheus_remote_storage_queue_highest_sent_timestamp_seconds");
    (pending, highest - sent)
}

async fn get_text(client: &reqwest::Client, url: &str) -> Result<String, String> {
    client.get(url).send().await.map_err(|e| format!("{url}: {e}"))?.text().await.map_err(|e| format!("{url}: {e}"))
}

/// What one soak measured.
#[derive(Debug)]
pub struct SoakReport {
    pub options: SoakOptions,
    pub confinement: String,
    pub throttling: Option<(u64, f64)>,
    pub queue_config: String,
    pub offered_samples_per_second: f64,
    pub accepted_samples_per_second: f64,
    pub codes_during_load: BTreeMap<u16, f64>,
    pub codes_total: BTreeMap<u16, f64>,
    pub prometheus_retried: f64,
    pub prometheus_failed: f64,
    pub prometheus_dropped: f64,
    pub probes: Probes,
    pub peak_rss_mib: f64,
    pub drain_seconds: f64,
    pub series_compared: u64,
    pub samples_compared: u64,
    pub samples_lost: u64,
    pub first_lost: Option<String>,
}

/// Runs the soak; the result holds the figures whatever they are (the caller judges them).
pub async fn run(options: SoakOptions) -> Result<SoakReport, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let http =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(120)).build().map_err(|e| e.to_string())?;

    // Ringtail: no scraping of its own, the custom-metrics rule, a small in-flight budget.
    let ringtail_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (port, secure_port) = (free_port()?, free_port()?);
    let config = ringtail_dir.path().join("ringtail.yaml");
    let rules = ringtail_dir.path().join("adapter.yaml");
    std::fs::write(&config, "scrape_configs: []\n").map_err(|e| e.to_string())?;
    std::fs::write(&rules, adapter_rules()).map_err(|e| e.to_string())?;
    let data = ringtail_dir.path().join("data");
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--secure-listen".into(),
        format!("127.0.0.1:{secure_port}"),
        "--config".into(),
        config.display().to_string(),
        "--adapter-config".into(),
        rules.display().to_string(),
        "--remote-write-max-inflight-bytes".into(),
        options.inflight_bytes.to_string(),
    ];
    args.extend(options.ringtail_args.iter().cloned());
    let mut ringtail = Peer::start("ringtail", &ringtail_bin()?, &args, &[], port, ringtail_dir, "ringtail.log")?;
    let ready = format!("{}/-/ready", ringtail.url);
    ringtail.wait_ready(&http, &ready, Duration::from_secs(120), Duration::from_millis(200)).await?;
    let ca = data.with_file_name("data-tls").join("ca.crt");
    let ca_pem = std::fs::read(&ca).map_err(|e| format!("reading the generated CA {}: {e}", ca.display()))?;
    let https = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).map_err(|e| e.to_string())?)
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let custom_metrics_url = format!(
        "https://localhost:{secure_port}/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods/%2A/{CUSTOM_METRIC}"
    );

    // The load: targets, and Prometheus scraping them and remote-writing to Ringtail.
    let targets = Targets::start(options.targets, options.series_per_target).await?;
    let queue = queue_config(options.shards, options.samples_per_send);
    let prometheus_port = free_port()?;
    let prometheus_dir = tempfile::tempdir_in(dir.path()).map_err(|e| e.to_string())?;
    let prometheus_yml = prometheus_dir.path().join("prometheus.yml");
    let write_url = format!("{}/api/v1/write", ringtail.url);
    std::fs::write(&prometheus_yml, prometheus_config(&targets.addrs, &write_url, &queue))
        .map_err(|e| e.to_string())?;
    let prometheus_args = vec![
        format!("--config.file={}", prometheus_yml.display()),
        format!("--storage.tsdb.path={}", prometheus_dir.path().join("data").display()),
        format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
    ];
    let mut prometheus = Peer::start(
        "prometheus",
        Path::new(PROMETHEUS_BIN),
        &prometheus_args,
        &[],
        prometheus_port,
        prometheus_dir,
        "prometheus.log",
    )?;
    let ready = format!("{}/-/ready", prometheus.url);
    prometheus.wait_ready(&http, &ready, Duration::from_secs(120), Duration::from_millis(200)).await?;

    // The custom metric is served once the pods have two samples within the rule's window (404
    // until then); its 10-minute window keeps them in it however far behind Ringtail falls.
    // Ringtail is confined only then: how soon a throttled Ringtail catches up with a queue
    // that starts full depends on the machine, and the probes need the metric from the start.
    let metric_deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let answer = match https.get(&custom_metrics_url).send().await {
            Ok(response) if response.status().is_success() => break,
            Ok(response) => format!("status {}", response.status()),
            Err(e) => e.to_string(),
        };
        if Instant::now() > metric_deadline {
            return Err(format!("the custom metric was never served (last answer: {answer})"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let confinement = CpuConfinement::apply(ringtail.pid(), options.cpu_percent, options.cpu_period_ms)?;
    eprintln!("ringtail pid {}: {}", ringtail.pid(), confinement.describe());

    // The overload: probes run while Prometheus pushes.
    let load_started = Instant::now();
    let ringtail_metrics = |http: reqwest::Client, url: String| async move { get_text(&http, &url).await };
    let ringtail_metrics_url = format!("{}/metrics", ringtail.url);
    let prometheus_metrics_url = format!("{}/metrics", prometheus.url);
    let before = ringtail_metrics(http.clone(), ringtail_metrics_url.clone()).await?;
    let prometheus_before = get_text(&http, &prometheus_metrics_url).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(probe_until(
        http.clone(),
        https,
        ringtail.url.clone(),
        custom_metrics_url,
        Duration::from_millis(100),
        stop.clone(),
    ));
    while load_started.elapsed() < Duration::from_secs(options.load_seconds) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let now = ringtail_metrics(http.clone(), ringtail_metrics_url.clone()).await.unwrap_or_default();
        let prometheus_now = get_text(&http, &prometheus_metrics_url).await.unwrap_or_default();
        let (pending, lag) = queue_lag(&prometheus_now);
        eprintln!(
            "{:>4}s codes {:?} pending {pending} lag {lag:.0}s rss {:.0} MiB",
            load_started.elapsed().as_secs(),
            remote_write_codes(&now),
            peak_rss_mib(ringtail.pid())
        );
    }
    stop.store(true, Ordering::Relaxed);
    let probes = probe.await.map_err(|e| e.to_string())?;
    let load_seconds = load_started.elapsed().as_secs_f64();
    let after = ringtail_metrics(http.clone(), ringtail_metrics_url.clone()).await?;
    let prometheus_after = get_text(&http, &prometheus_metrics_url).await?;
    let delta = |after: &str, before: &str, name: &str| metric_sum(after, name) - metric_sum(before, name);
    let offered = delta(&prometheus_after, &prometheus_before, "prometheus_tsdb_head_samples_appended_total");
    let accepted = delta(&after, &before, "ringtail_samples_ingested_total{source=\"remote_write\"");
    let before_codes = remote_write_codes(&before);
    let codes_during_load: BTreeMap<u16, f64> = remote_write_codes(&after)
        .into_iter()
        .map(|(code, n)| (code, n - before_codes.get(&code).copied().unwrap_or(0.0)))
        .collect();

    // The load drops: pages answer 503, Prometheus drains its queue.
    targets.stop_serving();
    let throttling = confinement.throttling();
    confinement.lift(ringtail.pid());
    let drain_started = Instant::now();
    let drain_deadline = drain_started + Duration::from_secs(options.drain_seconds);
    loop {
        let text = get_text(&http, &prometheus_metrics_url).await.unwrap_or_default();
        let (pending, lag) = queue_lag(&text);
        if pending == 0.0 && lag <= 2.0 {
            break;
        }
        if Instant::now() > drain_deadline {
            eprintln!("Prometheus did not drain: pending {pending}, lag {lag}s");
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let drain_seconds = drain_started.elapsed().as_secs_f64();

    // Every sample Prometheus holds must be in Ringtail: compared per target.
    let (mut series_compared, mut samples_compared, mut samples_lost, mut first_lost) = (0, 0, 0, None);
    for addr in &targets.addrs {
        let selector = format!("{{job=\"overload\",instance=\"{addr}\"}}");
        let expected = prometheus_samples(&http, &prometheus.url, &selector, "1h").await?;
        let mut lost;
        loop {
            let found = ringtail_export(&http, &ringtail.url, &selector).await?;
            let (missing, first) = count_missing(&expected, &found);
            lost = (missing, first);
            if lost.0 == 0 || Instant::now() > drain_deadline {
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        series_compared += expected.len() as u64;
        samples_compared += expected.iter().map(|(_, s)| s.len() as u64).sum::<u64>();
        samples_lost += lost.0;
        if first_lost.is_none() {
            first_lost = lost.1;
        }
    }
    let final_metrics = ringtail_metrics(http.clone(), ringtail_metrics_url).await?;
    let prometheus_final = get_text(&http, &prometheus_metrics_url).await?;
    let report = SoakReport {
        confinement: confinement.describe(),
        throttling,
        queue_config: queue,
        offered_samples_per_second: offered / load_seconds,
        accepted_samples_per_second: accepted / load_seconds,
        codes_during_load,
        codes_total: remote_write_codes(&final_metrics),
        prometheus_retried: metric_sum(&prometheus_final, "prometheus_remote_storage_samples_retried_total"),
        prometheus_failed: metric_sum(&prometheus_final, "prometheus_remote_storage_samples_failed_total"),
        prometheus_dropped: metric_sum(&prometheus_final, "prometheus_remote_storage_samples_dropped_total"),
        probes,
        peak_rss_mib: peak_rss_mib(ringtail.pid()),
        drain_seconds,
        series_compared,
        samples_compared,
        samples_lost,
        first_lost,
        options,
    };
    drop(prometheus);
    drop(ringtail);
    drop(confinement);
    drop(targets);
    Ok(report)
}

impl SoakReport {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        use std::fmt::Write;
        let o = &self.options;
        let mut out = String::new();
        let _ = writeln!(out, "| figure | value |\n|---|---|");
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "| {k} | {v} |");
        };
        row("Ringtail's CPU share", self.confinement.clone());
        if let Some((periods, seconds)) = self.throttling {
            row("CPU throttling during the overload", format!("{periods} throttled periods, {seconds:.1} s throttled"));
        }
        row(
            "load",
            format!(
                "{} targets × {} series, scraped every 1 s = {} samples/s; {} s of overload",
                o.targets,
                o.series_per_target,
                o.targets * o.series_per_target,
                o.load_seconds
            ),
        );
        row("Prometheus queue_config", format!("`{}`", self.queue_config));
        row(
            "Ringtail in-flight cap",
            format!("{} bytes ({:.1} MiB)", o.inflight_bytes, o.inflight_bytes as f64 / 1048576.0),
        );
        row("offered (Prometheus head appends)", format!("{:.0} samples/s", self.offered_samples_per_second));
        row("accepted by Ringtail during the overload", format!("{:.0} samples/s", self.accepted_samples_per_second));
        row("Ringtail's answers during the overload", format!("{:?}", self.codes_during_load));
        row("Ringtail's answers in all (with the drain)", format!("{:?}", self.codes_total));
        row("429 answers", format!("{}", self.codes_total.get(&429).copied().unwrap_or(0.0)));
        row(
            "Prometheus samples retried / failed / dropped",
            format!("{} / {} / {}", self.prometheus_retried, self.prometheus_failed, self.prometheus_dropped),
        );
        for (name, stats) in [
            ("`GET /-/ready`", &self.probes.ready),
            ("PromQL `sum(rate(overload_requests_total[10m]))`", &self.probes.query),
            ("custom metrics `pods/*/requests_per_second`", &self.probes.custom_metrics),
        ] {
            row(
                &format!("{name} during the overload"),
                format!(
                    "{} ok, {} failed; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    stats.latencies_ms.len(),
                    stats.failures.len(),
                    stats.quantile(0.5),
                    stats.quantile(0.99),
                    stats.quantile(1.0)
                ),
            );
        }
        row("Ringtail peak RSS (VmHWM)", format!("{:.0} MiB", self.peak_rss_mib));
        row("Prometheus queue drained after (CPU quota lifted)", format!("{:.0} s", self.drain_seconds));
        row(
            "compared (Prometheus TSDB → Ringtail export)",
            format!("{} series, {} samples", self.series_compared, self.samples_compared),
        );
        row("samples lost", format!("{}", self.samples_lost));
        if let Some(first) = &self.first_lost {
            row("first lost", format!("`{first}`"));
        }
        for (name, stats) in [
            ("ready", &self.probes.ready),
            ("query", &self.probes.query),
            ("custom metrics", &self.probes.custom_metrics),
        ] {
            for failure in stats.failures.iter().take(3) {
                let _ = writeln!(out, "\n{name} failure: `{failure}`");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quota_keeps_the_kernel_minimum() {
        assert_eq!(cpu_quota_period_us(10, 100_000), (10_000, 100_000));
        assert_eq!(cpu_quota_period_us(20, 10_000), (2000, 10_000));
        assert_eq!(cpu_quota_period_us(10, 10_000), (1000, 10_000));
        assert_eq!(cpu_quota_period_us(5, 10_000), (1000, 20_000));
        assert_eq!(cpu_quota_period_us(3, 10_000), (1000, 33_333));
    }

    #[test]
    fn metric_sum_matches_whole_names_and_label_prefixes() {
        let text = "# HELP x\nfoo_total{a=\"1\"} 2\nfoo_total{a=\"2\"} 3\nfoo_total_more 100\nfoo 7\n";
        assert_eq!(metric_sum(text, "foo_total"), 5.0);
        assert_eq!(metric_sum(text, "foo_total{a=\"2\""), 3.0);
        assert_eq!(metric_sum(text, "foo"), 7.0);
    }

    #[test]
    fn remote_write_codes_add_up_per_code() {
        let text = "ringtail_remote_write_requests_total{protocol=\"v1\",code=\"204\"} 10\n\
                    ringtail_remote_write_requests_total{protocol=\"v2\",code=\"204\"} 1\n\
                    ringtail_remote_write_requests_total{protocol=\"v1\",code=\"503\"} 4\n";
        assert_eq!(remote_write_codes(text), BTreeMap::from([(204, 11.0), (503, 4.0)]));
    }

    #[test]
    fn missing_samples_are_counted_by_timestamp_and_exact_value() {
        let labels = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let expected = vec![(labels.clone(), vec![(1, 1.5), (2, f64::NAN), (3, 3.0)])];
        let found = vec![(labels, vec![(1, 1.5), (2, f64::NAN), (3, 3.5)])];
        assert_eq!(count_missing(&expected, &found).0, 1);
        assert_eq!(count_missing(&expected, &[]).0, 3);
    }

    #[test]
    fn pages_have_every_series_once_with_exact_values() {
        let text = page(0, 3, 5);
        assert_eq!(text.lines().filter(|l| l.starts_with("overload_load{")).count(), 3);
        assert!(text.contains("overload_load{target=\"t0\",series=\"s2\"} 5.001953125"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("overload_requests_total{")).count(), PODS);
        assert!(!page(1, 3, 5).contains("overload_requests_total"));
    }
}
