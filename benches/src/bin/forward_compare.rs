//! `forward_compare` measures what forwarding every stored sample to a remote-write destination
//! (issue 17) costs Ringtail in CPU, next to vmagent doing the same job, in one run on loopback.
//! Three phases run one after another, each fed the same paced live stream — by default 10k series
//! of the synthetic fleet, one sample per series every 100 ms (100k samples/s), sent as
//! remote-write 1.0 requests of 2500 samples (snappy), each series in time order:
//!
//! - (a) Ringtail with no `remote_write`: the baseline;
//! - (b) Ringtail with one `remote_write` destination, a VictoriaMetrics single node;
//! - (c) vmagent receiving the stream at `/api/v1/write` and forwarding it to the same
//!   VictoriaMetrics.
//!
//! Each phase warms up (10 s), then takes the receiver's CPU time (utime + stime of the whole
//! process, every thread, from `/proc/<pid>/stat`) over the measured window (60 s), then waits
//! until the backlog has drained and checks that the destination holds every sample: Ringtail's
//! `prometheus_remote_storage_samples_total` equals the samples it acknowledged and
//! `prometheus_remote_storage_samples_pending` reaches 0, and VictoriaMetrics counts every sample
//! of the phase (the series carry a `bench_phase` label, so (b)'s and (c)'s are told apart). The
//! stream is encoded before each phase starts, so the load generator only sends during the window;
//! its timestamps trail the wall clock by the encoding and start-up time, as a sender's would.
//!
//! The report (`report.md`), the raw figures (`results.json`) and the tails of the logs
//! (`logs/`) go to `--out`. CPU of every other process on the machine during each window is
//! recorded too, so a window shared with a compiler shows.
//!
//! Build, then run from the workspace root (about 5 minutes with the defaults):
//!
//! ```sh
//! cargo build --release -p ringtail-apiserver --bin ringtail
//! cargo build --release -p ringtail-benches --bin forward_compare
//! target/release/forward_compare [--seconds 60] [--warmup-seconds 10] [--series 10000] [--interval-ms 100]
//! ```
#![forbid(unsafe_code)]

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use ingest::proto::v1;
use ringtail_benches::suite::fleet::{encode_requests, write_series, Pod, WriteSeries, DATA_STEP_MS};
use ringtail_benches::suite::machine::{describe, MachineInfo};
use ringtail_benches::suite::measure::{cpu, disk_usage, peak_mib, rss_mib};
use ringtail_benches::suite::systems::remote_write;
use ringtail_benches::{clock_ticks_per_second, free_port, Peer};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The issue's target for what forwarding may add, in CPU-µs per sample at 100k samples/s.
const TARGET_ADDED_CPU_US_PER_SAMPLE: f64 = 0.5;
/// Series of one synthetic pod (process gauges and request counters, as the suite's ingest runs).
const SERIES_PER_POD: usize = 10;
/// The label telling the phases' series apart at the shared VictoriaMetrics.
const PHASE_LABEL: &str = "bench_phase";
/// How long a started system may take to answer its readiness URL.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the sampler reads the receiver's self-metrics, RSS and queue disk.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Settle after the baseline's last request, so work deferred past its response is counted.
const BASELINE_SETTLE: Duration = Duration::from_secs(2);
/// Other processes' load in a window above which the report warns that the figure may be skewed.
const BUSY_MACHINE_CORES: f64 = 0.25;
/// Log lines kept per process in `logs/`.
const LOG_TAIL_LINES: usize = 300;

/// The command line.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(about = "CPU cost of Ringtail's forwarding against vmagent, at a paced remote-write stream")]
struct Options {
    /// The Ringtail binary (build it with `cargo build --release -p ringtail-apiserver --bin ringtail`).
    #[arg(long, default_value = "target/release/ringtail")]
    ringtail_bin: PathBuf,
    /// The VictoriaMetrics single-node binary (the destination).
    #[arg(long, default_value = "/usr/bin/victoria-metrics")]
    victoria_metrics_bin: PathBuf,
    /// The vmagent binary (phase c).
    #[arg(long, default_value = "/usr/bin/vmagent")]
    vmagent_bin: PathBuf,
    /// Series in the stream (10 per synthetic pod).
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Every series gets one sample per this many milliseconds.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Samples per remote-write request.
    #[arg(long, default_value_t = 2_500)]
    samples_per_request: usize,
    /// Seconds of stream before the measured window of each phase.
    #[arg(long, default_value_t = 10)]
    warmup_seconds: u64,
    /// Seconds of the measured window of each phase.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seconds to wait, after the stream ends, for the destination to hold every sample.
    #[arg(long, default_value_t = 60)]
    drain_timeout_seconds: u64,
    /// Ringtail's `--storage-size` in phases a and b (the forwarding queue takes an eighth).
    #[arg(long, default_value = "4GiB")]
    storage_size: String,
    /// Phases to run, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "a,b,c")]
    phases: Vec<PhaseKey>,
    /// Runs of every phase; the order rotates between repeats (a b c, b c a, …) and the report
    /// takes the median.
    #[arg(long, default_value_t = 1)]
    repeats: usize,
    /// Report folder.
    #[arg(long, default_value = "benches/results/2026-12-05g-issue-17-forwarding")]
    out: PathBuf,
}

/// One phase of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum PhaseKey {
    /// Ringtail, nothing forwarded.
    A,
    /// Ringtail forwarding to VictoriaMetrics.
    B,
    /// vmagent forwarding to VictoriaMetrics.
    C,
}

impl PhaseKey {
    fn label(self) -> &'static str {
        match self {
            PhaseKey::A => "a",
            PhaseKey::B => "b",
            PhaseKey::C => "c",
        }
    }

    fn title(self) -> &'static str {
        match self {
            PhaseKey::A => "Ringtail, no remote_write",
            PhaseKey::B => "Ringtail forwarding to VictoriaMetrics",
            PhaseKey::C => "vmagent forwarding to VictoriaMetrics",
        }
    }

    fn forwards(self) -> bool {
        self != PhaseKey::A
    }
}

/// The pre-encoded stream of one phase: tick `t`'s request for lane `l` is `bodies[t * lanes + l]`.
struct Stream {
    bodies: Vec<Vec<u8>>,
    /// Samples in each lane's requests (the last lane may carry fewer).
    lane_samples: Vec<u64>,
    ticks: usize,
    first_ts_ms: i64,
}

impl Stream {
    fn lanes(&self) -> usize {
        self.lane_samples.len()
    }

    fn samples_per_tick(&self) -> u64 {
        self.lane_samples.iter().sum()
    }
}

/// Encodes `ticks` samples of every series of `series`, tick `t` at `first_ts_ms + t × interval`,
/// cut into requests of `per_request` samples; the ticks are split over the cores.
fn encode_stream(
    series: &[WriteSeries],
    ticks: usize,
    first_ts_ms: i64,
    interval_ms: i64,
    per_request: usize,
) -> Result<Stream> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, ticks.max(1));
    let per_thread = ticks.div_ceil(threads);
    let parts: Vec<std::thread::Result<Vec<Vec<u8>>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut bodies = Vec::new();
                    for tick in (t * per_thread) as i64..((t + 1) * per_thread).min(ticks) as i64 {
                        // `encode_requests` puts step `s` at `base + s × DATA_STEP_MS`; one step per
                        // call with the base moved back by as much lands tick `t` on its instant.
                        let base = first_ts_ms + tick * interval_ms - tick * DATA_STEP_MS;
                        bodies.extend(encode_requests(series, tick..tick + 1, base, 1, per_request).bodies);
                    }
                    bodies
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let mut bodies = Vec::with_capacity(ticks * series.len().div_ceil(per_request.max(1)));
    for part in parts {
        bodies.extend(part.map_err(|_| anyhow!("an encoding thread panicked"))?);
    }
    let lane_samples: Vec<u64> = series.chunks(per_request.max(1)).map(|c| c.len() as u64).collect();
    if bodies.len() != ticks * lane_samples.len() {
        bail!("BUG: encoded {} requests, expected {} ticks × {} lanes", bodies.len(), ticks, lane_samples.len());
    }
    Ok(Stream { bodies, lane_samples, ticks, first_ts_ms })
}

/// The value of [`PHASE_LABEL`] in run `repeat` (from 0) of `phase`: `b1`, `b2`, …
fn phase_value(phase: PhaseKey, repeat: usize) -> String {
    format!("{}{}", phase.label(), repeat + 1)
}

/// The run's series: the fleet's label sets with `bench_phase="<phase><repeat>"` added.
fn phase_series(base: &[WriteSeries], phase: PhaseKey, repeat: usize) -> Vec<WriteSeries> {
    base.iter()
        .map(|s| {
            let mut s = s.clone();
            s.labels.push(v1::Label { name: PHASE_LABEL.to_string(), value: phase_value(phase, repeat) });
            s.labels.sort_by(|a, b| a.name.cmp(&b.name));
            s
        })
        .collect()
}

/// What the sending lanes count while they run.
#[derive(Default)]
struct SendTotals {
    acked_samples: AtomicU64,
    acked_requests: AtomicU64,
    failed_requests: AtomicU64,
    max_lag_us: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Starts one task per lane: lane `l` sends its request of tick `t` at
/// `started + (t + l / lanes) × interval` (or at once when behind), so a series' samples go one
/// after another and the lanes' requests are spread over the tick.
fn spawn_lanes(
    http: &reqwest::Client,
    url: &str,
    stream: &Arc<Stream>,
    interval: Duration,
    started: Instant,
    totals: &Arc<SendTotals>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let lanes = stream.lanes();
    (0..lanes)
        .map(|lane| {
            let (http, url, stream, totals) = (http.clone(), url.to_string(), stream.clone(), totals.clone());
            tokio::spawn(async move {
                let samples = stream.lane_samples[lane];
                for tick in 0..stream.ticks {
                    let intended = started + interval.mul_f64(tick as f64 + lane as f64 / lanes as f64);
                    tokio::time::sleep_until(intended.into()).await;
                    let lag = intended.elapsed().as_micros() as u64;
                    totals.max_lag_us.fetch_max(lag, Ordering::Relaxed);
                    match remote_write(&http, &url, stream.bodies[tick * lanes + lane].clone()).await {
                        Ok(()) => {
                            totals.acked_samples.fetch_add(samples, Ordering::Relaxed);
                            totals.acked_requests.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            totals.failed_requests.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut slot) = totals.last_error.lock() {
                                *slot = Some(format!("{e:#}"));
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

/// Busy and total CPU seconds of the whole machine (the `cpu` line of `/proc/stat`).
fn machine_cpu_seconds(ticks_per_second: f64) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().filter(|l| l.starts_with("cpu ")).ok_or_else(|| anyhow!("no cpu line"))?;
    let fields: Vec<f64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
    let total = busy + field(3) + field(4);
    Ok((busy / ticks_per_second, total / ticks_per_second))
}

/// CPU readings taken at one instant.
#[derive(Clone, Copy)]
struct CpuSnapshot {
    at: Instant,
    receiver: f64,
    destination: Option<f64>,
    bench: f64,
    machine_busy: f64,
    acked_samples: u64,
}

fn snapshot(receiver: u32, destination: Option<u32>, totals: &SendTotals, ticks: f64) -> Result<CpuSnapshot> {
    Ok(CpuSnapshot {
        at: Instant::now(),
        receiver: cpu(receiver)?,
        destination: destination.map(cpu).transpose()?,
        bench: cpu(std::process::id())?,
        machine_busy: machine_cpu_seconds(ticks)?.0,
        acked_samples: totals.acked_samples.load(Ordering::Relaxed),
    })
}

/// The sum of every series of metric `name` in a Prometheus text page; `None` when it is absent.
fn metric_sum(page: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        if &line[..end] != name {
            continue;
        }
        if let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

async fn get_text(http: &reqwest::Client, url: &str) -> Result<String> {
    let response = http.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let text = response.text().await.with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        bail!("GET {url}: {status} {}", text.chars().take(300).collect::<String>());
    }
    Ok(text)
}

/// What the sampler saw over a phase.
#[derive(Debug, Default, Clone, Serialize)]
struct Sampled {
    /// Most samples (Ringtail) or bytes (vmagent) queued and not yet sent at one reading.
    max_pending: f64,
    /// Most bytes the forwarding queue's files took on disk (allocated blocks) at one reading.
    max_queue_disk_bytes: u64,
    max_rss_mib: f64,
    readings: u64,
}

/// Reads the receiver's pending figure, queue disk and RSS every [`SAMPLE_EVERY`] until `stop`.
fn spawn_sampler(
    http: &reqwest::Client,
    metrics_url: String,
    pending_metric: Option<&'static str>,
    queue_dir: Option<PathBuf>,
    pid: u32,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Sampled> {
    let http = http.clone();
    tokio::spawn(async move {
        let mut sampled = Sampled::default();
        while !stop.load(Ordering::Relaxed) {
            if let Some(metric) = pending_metric {
                if let Ok(page) = get_text(&http, &metrics_url).await {
                    if let Some(pending) = metric_sum(&page, metric) {
                        sampled.max_pending = sampled.max_pending.max(pending);
                    }
                }
            }
            if let Some(dir) = &queue_dir {
                if let Ok(usage) = disk_usage(dir) {
                    sampled.max_queue_disk_bytes = sampled.max_queue_disk_bytes.max(usage.allocated_bytes);
                }
            }
            sampled.max_rss_mib = sampled.max_rss_mib.max(rss_mib(pid));
            sampled.readings += 1;
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
        sampled
    })
}

/// Samples (and series) of phase `phase` that VictoriaMetrics at `vm_url` holds, after flushing
/// its in-memory buffers so the last seconds count.
async fn destination_count(http: &reqwest::Client, vm_url: &str, phase: PhaseKey, repeat: usize) -> Result<(u64, u64)> {
    get_text(http, &format!("{vm_url}/internal/force_flush")).await?;
    let selector = format!("{{{PHASE_LABEL}=\"{}\"}}", phase_value(phase, repeat));
    let samples = vm_scalar(http, vm_url, &format!("sum(count_over_time({selector}[1d]))")).await?;
    let series = vm_scalar(http, vm_url, &format!("count(last_over_time({selector}[1d]))")).await?;
    Ok((samples, series))
}

/// The single value of an instant query (0 when the result is empty); the rollup cache bypassed.
async fn vm_scalar(http: &reqwest::Client, vm_url: &str, query: &str) -> Result<u64> {
    let url = format!("{vm_url}/api/v1/query");
    let response = http
        .post(&url)
        .form(&[("query", query), ("nocache", "1")])
        .send()
        .await
        .with_context(|| format!("querying {query}"))?;
    let status = response.status();
    let json: serde_json::Value = response.json().await.with_context(|| format!("{url}: {status}, not JSON"))?;
    if json["status"] != "success" {
        bail!("{url} `{query}`: {status} {}", json.to_string().chars().take(300).collect::<String>());
    }
    let Some(first) = json["data"]["result"].as_array().and_then(|r| r.first()) else { return Ok(0) };
    let text = first["value"][1].as_str().ok_or_else(|| anyhow!("`{query}`: no value in {first}"))?;
    let value: f64 = text.parse().with_context(|| format!("`{query}`: value {text:?}"))?;
    Ok(value.round() as u64)
}

/// Starts `program` in a fresh temporary directory (its data under `dir/data`, log in `dir/log`)
/// and waits for `ready_path`.
async fn start(
    name: &'static str,
    program: &Path,
    args: impl FnOnce(&Path, u16) -> Result<Vec<String>>,
    http: &reqwest::Client,
    ready_path: &str,
) -> Result<Peer> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("forward-compare-{name}-"))
        .tempdir()
        .context("creating a temporary directory")?;
    let port = free_port().map_err(|e| anyhow!(e))?;
    let args = args(dir.path(), port)?;
    let mut peer = Peer::start(name, program, &args, &[], port, dir, "log").map_err(|e| anyhow!(e))?;
    let ready = format!("{}{ready_path}", peer.url);
    if let Err(e) = peer.wait_ready(http, &ready, READY_TIMEOUT, Duration::from_millis(100)).await {
        let tail = log_tail(&peer.dir().join("log"), 10).join(" / ");
        bail!("{name} did not start: {e}; its log ends: {tail}");
    }
    Ok(peer)
}

/// `text` without ANSI escape sequences (`ESC [ … letter`): Ringtail colours its log levels
/// even when writing to a file.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    out
}

/// The log at `path` without ANSI escapes ("" when it cannot be read).
fn read_log(path: &Path) -> String {
    strip_ansi(&std::fs::read_to_string(path).unwrap_or_default())
}

/// The last `lines` lines of the log at `path`.
fn log_tail(path: &Path, lines: usize) -> Vec<String> {
    let text = read_log(path);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].iter().map(|l| l.to_string()).collect()
}

/// Lines of the log at `path` that report a warning or an error (tracing's `WARN`/`ERROR`,
/// VictoriaMetrics's `warn`/`error` level field).
fn log_problems(path: &Path) -> (usize, Vec<String>) {
    let text = read_log(path);
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("\twarn\t") || l.contains("\terror\t"))
        .collect();
    (problems.len(), problems.iter().take(20).map(|l| l.to_string()).collect())
}

/// Copies the tail of `peer`'s log to `out/logs/<file>`.
fn keep_log(peer: &Peer, out: &Path, file: &str) -> Result<()> {
    let dir = out.join("logs");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut text = log_tail(&peer.dir().join("log"), LOG_TAIL_LINES).join("\n");
    text.push('\n');
    std::fs::write(dir.join(file), text).with_context(|| format!("writing logs/{file}"))
}

/// Everything measured in one phase.
#[derive(Debug, Clone, Serialize)]
struct PhaseResult {
    phase: PhaseKey,
    /// Which run of the phase (from 0).
    repeat: usize,
    title: &'static str,
    receiver: &'static str,
    encode_seconds: f64,
    /// How far the stream's timestamps trailed the wall clock when sending started.
    timestamp_lag_seconds: f64,
    samples_acked_total: u64,
    requests_acked: u64,
    failed_requests: u64,
    last_send_error: Option<String>,
    max_send_lag_ms: f64,
    window_seconds: f64,
    samples_in_window: u64,
    samples_per_second_in_window: f64,
    receiver_cpu_seconds_window: f64,
    receiver_cpu_us_per_sample: f64,
    /// The receiver's CPU from the first request until the destination held everything (or the
    /// baseline's settle), over every sample of the phase: includes catching up after the stream.
    receiver_cpu_seconds_phase: f64,
    receiver_cpu_us_per_sample_phase: f64,
    destination_cpu_seconds_window: Option<f64>,
    destination_cpu_us_per_sample: Option<f64>,
    /// CPU of everything else on the machine in the window (other users; not this program, the
    /// receiver or the destination).
    other_processes_cpu_seconds_window: f64,
    bench_cpu_seconds_window: f64,
    receiver_peak_rss_mib: f64,
    receiver_rss_end_mib: f64,
    sampled: Sampled,
    queue_disk_bytes_end: Option<u64>,
    drain_seconds: f64,
    /// Ringtail: `prometheus_remote_storage_samples_total` at the end.
    forwarded_samples_total: Option<f64>,
    /// Ringtail: samples; vmagent: `vmagent_remotewrite_pending_data_bytes`.
    pending_end: Option<f64>,
    failed_metric: Option<f64>,
    retried_metric: Option<f64>,
    dropped_metric: Option<f64>,
    destination_samples: Option<u64>,
    destination_series: Option<u64>,
    log_problem_lines: usize,
    log_problems: Vec<String>,
    /// Every check that did not hold, in words.
    problems: Vec<String>,
    /// What may have skewed the figures (another process busy during the window).
    notes: Vec<String>,
}

/// The systems shared by the phases.
struct Shared {
    http: reqwest::Client,
    ticks_per_second: f64,
    /// The destination, when a phase forwards.
    vm: Option<Peer>,
    base_series: Vec<WriteSeries>,
}

/// A started receiver of the stream: its process, the self-metric that says how much is waiting
/// to be forwarded, and the directory its forwarding queue lives in.
struct Receiver {
    peer: Peer,
    pending_metric: Option<&'static str>,
    queue_dir: Option<PathBuf>,
}

/// Starts phase `phase`'s receiver: Ringtail (forwarding to `vm_url` in phase b) or vmagent.
async fn start_receiver(
    options: &Options,
    http: &reqwest::Client,
    phase: PhaseKey,
    vm_url: Option<&str>,
) -> Result<Receiver> {
    match phase {
        PhaseKey::A | PhaseKey::B => {
            let remote_write = match (vm_url, phase) {
                (Some(vm), PhaseKey::B) => format!("remote_write:\n- url: {vm}/api/v1/write\n"),
                (None, PhaseKey::B) => bail!("BUG: phase b forwards but no VictoriaMetrics was started"),
                _ => String::new(),
            };
            let storage_size = options.storage_size.clone();
            let peer = start(
                "ringtail",
                &options.ringtail_bin,
                |dir, port| {
                    let config = dir.join("ringtail.yaml");
                    std::fs::write(&config, format!("scrape_configs: []\n{remote_write}"))
                        .with_context(|| format!("writing {}", config.display()))?;
                    let secure = free_port().map_err(|e| anyhow!(e))?;
                    Ok(vec![
                        "serve".into(),
                        "--standalone".into(),
                        format!("--config={}", config.display()),
                        format!("--data-dir={}", dir.join("data").display()),
                        format!("--listen=127.0.0.1:{port}"),
                        format!("--secure-listen=127.0.0.1:{secure}"),
                        format!("--storage-size={storage_size}"),
                    ])
                },
                http,
                "/-/ready",
            )
            .await?;
            let queue_dir = Some(peer.dir().join("data").join("forward"));
            Ok(Receiver { peer, pending_metric: Some("prometheus_remote_storage_samples_pending"), queue_dir })
        }
        PhaseKey::C => {
            let vm = vm_url.ok_or_else(|| anyhow!("BUG: phase c forwards but no VictoriaMetrics was started"))?;
            let peer = start(
                "vmagent",
                &options.vmagent_bin,
                |dir, port| {
                    Ok(vec![
                        format!("-httpListenAddr=127.0.0.1:{port}"),
                        format!("-remoteWrite.url={vm}/api/v1/write"),
                        format!("-remoteWrite.tmpDataPath={}", dir.join("data").display()),
                    ])
                },
                http,
                "/health",
            )
            .await?;
            let queue_dir = Some(peer.dir().join("data"));
            Ok(Receiver { peer, pending_metric: Some("vmagent_remotewrite_pending_data_bytes"), queue_dir })
        }
    }
}

/// What draining found: the forwarder's own counts (phase b) and the destination's.
#[derive(Default)]
struct Drained {
    forwarded_samples_total: Option<f64>,
    pending_end: Option<f64>,
    /// Samples and series of the run at VictoriaMetrics.
    destination: Option<(u64, u64)>,
}

/// Waits (at most until `deadline`) until Ringtail says nothing is pending and it sent `acked`
/// samples (phase b), then until VictoriaMetrics holds `acked` samples of the run (b and c); phase
/// a only settles.
async fn drain(
    http: &reqwest::Client,
    phase: PhaseKey,
    repeat: usize,
    metrics_url: &str,
    vm_url: Option<&str>,
    acked: u64,
    deadline: Instant,
) -> Result<Drained> {
    let mut drained = Drained::default();
    if phase == PhaseKey::A {
        tokio::time::sleep(BASELINE_SETTLE).await;
        return Ok(drained);
    }
    if phase == PhaseKey::B {
        loop {
            let page = get_text(http, metrics_url).await?;
            drained.forwarded_samples_total = metric_sum(&page, "prometheus_remote_storage_samples_total");
            drained.pending_end = metric_sum(&page, "prometheus_remote_storage_samples_pending");
            let sent_all = drained.forwarded_samples_total.is_some_and(|s| s >= acked as f64);
            if (drained.pending_end == Some(0.0) && sent_all) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let vm =
        vm_url.ok_or_else(|| anyhow!("BUG: phase {} forwards but no VictoriaMetrics was started", phase.label()))?;
    loop {
        let counted = destination_count(http, vm, phase, repeat).await?;
        drained.destination = Some(counted);
        if counted.0 >= acked || Instant::now() > deadline {
            return Ok(drained);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn run_phase(options: &Options, shared: &Shared, phase: PhaseKey, repeat: usize) -> Result<PhaseResult> {
    let http = &shared.http;
    let interval = Duration::from_millis(options.interval_ms.max(1));
    let ticks = ((options.warmup_seconds + options.seconds) * 1000 / interval.as_millis() as u64).max(1) as usize;
    eprintln!(
        "[{}] {}: encoding {} ticks × {} series",
        phase_value(phase, repeat),
        phase.title(),
        ticks,
        options.series
    );
    let encode_started = Instant::now();
    let series = phase_series(&shared.base_series, phase, repeat);
    let first_ts_ms = tsdb::now_ms();
    let per_request = options.samples_per_request.max(1);
    let interval_ms = interval.as_millis() as i64;
    let stream =
        tokio::task::spawn_blocking(move || encode_stream(&series, ticks, first_ts_ms, interval_ms, per_request))
            .await
            .context("the encoding task failed")??;
    let stream = Arc::new(stream);
    let encode_seconds = encode_started.elapsed().as_secs_f64();
    let vm_url = shared.vm.as_ref().map(|vm| vm.url.clone());
    let vm_pid = if phase.forwards() { shared.vm.as_ref().map(Peer::pid) } else { None };

    let Receiver { peer, pending_metric, queue_dir } = start_receiver(options, http, phase, vm_url.as_deref()).await?;
    let pid = peer.pid();
    let metrics_url = format!("{}/metrics", peer.url);
    // Let start-up work finish before the first reading.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(http, metrics_url.clone(), pending_metric, queue_dir.clone(), pid, stop.clone());
    let totals = Arc::new(SendTotals::default());
    let ticks_per_second = shared.ticks_per_second;
    let phase_start = snapshot(pid, vm_pid, &totals, ticks_per_second)?;
    let started = Instant::now();
    let timestamp_lag_seconds = (tsdb::now_ms() - stream.first_ts_ms) as f64 / 1000.0;
    eprintln!(
        "[{}] sending {} samples/s for {} s ({} s warm-up), {} requests per tick",
        phase_value(phase, repeat),
        stream.samples_per_tick() * 1000 / interval.as_millis() as u64,
        options.warmup_seconds + options.seconds,
        options.warmup_seconds,
        stream.lanes()
    );
    let lanes = spawn_lanes(http, &format!("{}/api/v1/write", peer.url), &stream, interval, started, &totals);
    tokio::time::sleep_until((started + Duration::from_secs(options.warmup_seconds)).into()).await;
    let window_start = snapshot(pid, vm_pid, &totals, ticks_per_second)?;
    tokio::time::sleep_until((started + Duration::from_secs(options.warmup_seconds + options.seconds)).into()).await;
    let window_end = snapshot(pid, vm_pid, &totals, ticks_per_second)?;
    for lane in lanes {
        lane.await.context("a sending lane panicked")?;
    }
    let samples_acked_total = totals.acked_samples.load(Ordering::Relaxed);
    let failed_requests = totals.failed_requests.load(Ordering::Relaxed);
    let mut problems = Vec::new();
    if failed_requests > 0 {
        problems.push(format!("{failed_requests} requests to the receiver failed"));
    }
    let max_send_lag_ms = totals.max_lag_us.load(Ordering::Relaxed) as f64 / 1000.0;
    if max_send_lag_ms > 1000.0 {
        problems
            .push(format!("the sender fell {max_send_lag_ms:.0} ms behind its schedule: the receiver did not keep up"));
    }

    // Drain: wait until the destination holds every acknowledged sample.
    eprintln!("[{}] stream done ({samples_acked_total} samples acknowledged); draining", phase_value(phase, repeat));
    let drain_started = Instant::now();
    let deadline = drain_started + Duration::from_secs(options.drain_timeout_seconds);
    let Drained { mut forwarded_samples_total, mut pending_end, destination } =
        drain(http, phase, repeat, &metrics_url, vm_url.as_deref(), samples_acked_total, deadline).await?;
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    let phase_end = snapshot(pid, vm_pid, &totals, ticks_per_second)?;
    stop.store(true, Ordering::Relaxed);
    let sampled = sampler.await.context("the sampler panicked")?;

    // Final readings, while the processes are still up.
    let page = get_text(http, &metrics_url).await.unwrap_or_default();
    let (failed_metric, retried_metric, dropped_metric) = match phase {
        PhaseKey::A => (None, None, None),
        PhaseKey::B => {
            forwarded_samples_total = metric_sum(&page, "prometheus_remote_storage_samples_total");
            pending_end = metric_sum(&page, "prometheus_remote_storage_samples_pending");
            (
                metric_sum(&page, "prometheus_remote_storage_samples_failed_total"),
                metric_sum(&page, "prometheus_remote_storage_samples_retried_total"),
                metric_sum(&page, "prometheus_remote_storage_samples_dropped_total"),
            )
        }
        PhaseKey::C => {
            pending_end = metric_sum(&page, "vmagent_remotewrite_pending_data_bytes");
            (
                metric_sum(&page, "vmagent_remotewrite_packets_dropped_total"),
                metric_sum(&page, "vmagent_remotewrite_retries_count_total"),
                metric_sum(&page, "vm_persistentqueue_bytes_dropped_total"),
            )
        }
    };
    let receiver_peak_rss_mib = peak_mib(pid);
    let receiver_rss_end_mib = rss_mib(pid);
    let queue_disk_bytes_end = match &queue_dir {
        Some(dir) if phase.forwards() => Some(disk_usage(dir)?.allocated_bytes),
        _ => None,
    };
    let (log_problem_lines, log_problems) = log_problems(&peer.dir().join("log"));
    keep_log(&peer, &options.out, &format!("{}-{}.log", phase_value(phase, repeat), peer.name))?;
    drop(peer);

    if phase == PhaseKey::B {
        match forwarded_samples_total {
            Some(sent) if sent == samples_acked_total as f64 => {}
            Some(sent) => problems.push(format!(
                "prometheus_remote_storage_samples_total is {sent}, the receiver acknowledged {samples_acked_total}"
            )),
            None => problems.push("no prometheus_remote_storage_samples_total in Ringtail's /metrics".into()),
        }
        if pending_end != Some(0.0) {
            problems.push(format!("prometheus_remote_storage_samples_pending ends at {pending_end:?}, not 0"));
        }
    }
    if let Some((samples, series)) = destination {
        if samples != samples_acked_total {
            problems.push(format!(
                "VictoriaMetrics holds {samples} samples of phase {}, {samples_acked_total} were acknowledged{}",
                phase_value(phase, repeat),
                if samples > samples_acked_total { " (duplicates?)" } else { "" }
            ));
        }
        if series != options.series as u64 {
            problems.push(format!(
                "VictoriaMetrics holds {series} series of phase {}, not {}",
                phase_value(phase, repeat),
                options.series
            ));
        }
    }
    if let Some(dropped) = dropped_metric.filter(|d| *d > 0.0) {
        problems.push(format!("the forwarder counted {dropped} dropped"));
    }
    if let Some(failed) = failed_metric.filter(|f| *f > 0.0) {
        problems.push(format!("the forwarder counted {failed} failed"));
    }

    let window_seconds = window_end.at.duration_since(window_start.at).as_secs_f64();
    let samples_in_window = window_end.acked_samples - window_start.acked_samples;
    let per_sample = |cpu_seconds: f64, samples: u64| cpu_seconds * 1e6 / (samples.max(1) as f64);
    let receiver_cpu_seconds_window = window_end.receiver - window_start.receiver;
    let destination_cpu_seconds_window = match (window_end.destination, window_start.destination) {
        (Some(end), Some(begin)) => Some(end - begin),
        _ => None,
    };
    let bench_cpu_seconds_window = window_end.bench - window_start.bench;
    let other_processes_cpu_seconds_window = (window_end.machine_busy - window_start.machine_busy)
        - receiver_cpu_seconds_window
        - destination_cpu_seconds_window.unwrap_or(0.0)
        - bench_cpu_seconds_window;
    let receiver_cpu_seconds_phase = phase_end.receiver - phase_start.receiver;
    let mut notes = Vec::new();
    let other_cores = other_processes_cpu_seconds_window / window_seconds.max(1e-9);
    if other_cores > BUSY_MACHINE_CORES {
        notes.push(format!(
            "other processes used {other_processes_cpu_seconds_window:.1} CPU-s ({other_cores:.2} cores) during the \
             window: the receiver shared the cores, its figure may be inflated"
        ));
    }
    let result = PhaseResult {
        phase,
        repeat,
        title: phase.title(),
        receiver: if phase == PhaseKey::C { "vmagent" } else { "ringtail" },
        encode_seconds,
        timestamp_lag_seconds,
        samples_acked_total,
        requests_acked: totals.acked_requests.load(Ordering::Relaxed),
        failed_requests,
        last_send_error: totals.last_error.lock().ok().and_then(|e| e.clone()),
        max_send_lag_ms,
        window_seconds,
        samples_in_window,
        samples_per_second_in_window: samples_in_window as f64 / window_seconds.max(1e-9),
        receiver_cpu_seconds_window,
        receiver_cpu_us_per_sample: per_sample(receiver_cpu_seconds_window, samples_in_window),
        receiver_cpu_seconds_phase,
        receiver_cpu_us_per_sample_phase: per_sample(receiver_cpu_seconds_phase, samples_acked_total),
        destination_cpu_seconds_window,
        destination_cpu_us_per_sample: destination_cpu_seconds_window.map(|c| per_sample(c, samples_in_window)),
        other_processes_cpu_seconds_window,
        bench_cpu_seconds_window,
        receiver_peak_rss_mib,
        receiver_rss_end_mib,
        sampled,
        queue_disk_bytes_end,
        drain_seconds,
        forwarded_samples_total,
        pending_end,
        failed_metric,
        retried_metric,
        dropped_metric,
        destination_samples: destination.map(|d| d.0),
        destination_series: destination.map(|d| d.1),
        log_problem_lines,
        log_problems,
        problems,
        notes,
    };
    eprintln!(
        "[{}] {:.3} CPU-µs/sample over {:.1} s ({:.0} samples/s); drained in {:.1} s; problems: {}",
        phase_value(phase, repeat),
        result.receiver_cpu_us_per_sample,
        window_seconds,
        result.samples_per_second_in_window,
        drain_seconds,
        if result.problems.is_empty() { "none".to_string() } else { result.problems.join("; ") }
    );
    Ok(result)
}

/// Figures derived from the phases together.
#[derive(Debug, Clone, Serialize)]
struct Derived {
    /// (b) − (a), CPU-µs per sample.
    added_cpu_us_per_sample: Option<f64>,
    /// ((b) − (a)) / (c).
    added_over_vmagent: Option<f64>,
    target_cpu_us_per_sample: f64,
    target_met: Option<bool>,
}

/// `results.json`.
#[derive(Debug, Serialize)]
struct Report {
    command: String,
    started_utc: String,
    machine: MachineInfo,
    load_average_at_end: String,
    options: Options,
    phases: Vec<PhaseResult>,
    failed_phases: Vec<String>,
    derived: Derived,
}

/// The median of the runs of `key` (the mean of the middle two for an even count).
fn median_cpu_us_per_sample(phases: &[PhaseResult], key: PhaseKey) -> Option<f64> {
    let mut values: Vec<f64> = phases.iter().filter(|p| p.phase == key).map(|p| p.receiver_cpu_us_per_sample).collect();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn derive(phases: &[PhaseResult]) -> Derived {
    let find = |key| median_cpu_us_per_sample(phases, key);
    let added = match (find(PhaseKey::A), find(PhaseKey::B)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Derived {
        added_cpu_us_per_sample: added,
        added_over_vmagent: added.zip(find(PhaseKey::C)).map(|(added, c)| added / c),
        target_cpu_us_per_sample: TARGET_ADDED_CPU_US_PER_SAMPLE,
        target_met: added.map(|a| a <= TARGET_ADDED_CPU_US_PER_SAMPLE),
    }
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.decimals$}"))
}

fn mib(bytes: Option<u64>) -> String {
    opt(bytes.map(|b| b as f64 / 1048576.0), 1)
}

fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let o = &report.options;
    let m = &report.machine;
    let rate = o.series as f64 * 1000.0 / o.interval_ms.max(1) as f64;
    let _ = writeln!(md, "# Issue 17: what forwarding costs Ringtail, against vmagent\n");
    let _ = writeln!(md, "`{}`, started {}.\n", report.command, report.started_utc);
    let _ = writeln!(
        md,
        "Machine: {} cores ({}), {:.1} GiB, kernel {}; load average at start {}, at end {}.  \n\
         Ringtail {} (git {}); VictoriaMetrics and vmagent {}.\n",
        m.cores,
        m.cpu_model,
        m.memory_gib,
        m.kernel,
        m.load_average_at_start,
        report.load_average_at_end,
        m.ringtail_version,
        m.git_commit,
        m.victoria_metrics_version
    );
    let _ = writeln!(
        md,
        "Stream: {} series (synthetic fleet, 10 per pod, plus `{PHASE_LABEL}`), one sample per series every {} ms \
         = {rate:.0} samples/s, remote-write 1.0 requests of {} samples (snappy), paced; {} s warm-up, then a {} s \
         measured window. CPU is utime + stime of the receiver's whole process over the window, divided by the \
         samples acknowledged in it. Phases run one after another on the same machine; VictoriaMetrics (the \
         destination of b and c) runs throughout.\n",
        o.series, o.interval_ms, o.samples_per_request, o.warmup_seconds, o.seconds
    );
    if o.repeats > 1 {
        let _ = writeln!(
            md,
            "Every phase ran {} times, the order rotated between repeats; a cell lists the runs in order (·), \
             the figures below use the median CPU-µs per sample.\n",
            o.repeats
        );
    }
    let _ = writeln!(md, "| | (a) Ringtail, no forwarding | (b) Ringtail forwarding | (c) vmagent |");
    let _ = writeln!(md, "|---|---|---|---|");
    // One value per run of the phase, in run order.
    let cell = |key: PhaseKey, f: &dyn Fn(&PhaseResult) -> String| {
        let values: Vec<String> = report.phases.iter().filter(|p| p.phase == key).map(f).collect();
        if values.is_empty() {
            "not run".to_string()
        } else {
            values.join(" · ")
        }
    };
    let row = |md: &mut String, name: &str, f: &dyn Fn(&PhaseResult) -> String| {
        let _ =
            writeln!(md, "| {name} | {} | {} | {} |", cell(PhaseKey::A, f), cell(PhaseKey::B, f), cell(PhaseKey::C, f));
    };
    if report.options.repeats > 1 {
        let median = |key| opt(median_cpu_us_per_sample(&report.phases, key), 3);
        let _ = writeln!(
            md,
            "| **median CPU-µs per sample** | **{}** | **{}** | **{}** |",
            median(PhaseKey::A),
            median(PhaseKey::B),
            median(PhaseKey::C)
        );
    }
    row(&mut md, "**CPU-µs per sample (window)**", &|p| format!("**{:.3}**", p.receiver_cpu_us_per_sample));
    row(&mut md, "CPU-s in the window", &|p| {
        format!("{:.2} over {:.1} s", p.receiver_cpu_seconds_window, p.window_seconds)
    });
    row(&mut md, "samples/s acknowledged in the window", &|p| format!("{:.0}", p.samples_per_second_in_window));
    row(&mut md, "CPU-µs per sample, whole phase incl. drain", &|p| {
        format!("{:.3}", p.receiver_cpu_us_per_sample_phase)
    });
    row(&mut md, "peak RSS (VmHWM)", &|p| format!("{:.1} MiB", p.receiver_peak_rss_mib));
    row(&mut md, "RSS at the end", &|p| format!("{:.1} MiB", p.receiver_rss_end_mib));
    row(&mut md, "forward queue on disk: peak / end", &|p| {
        if p.phase.forwards() {
            format!("{} / {} MiB", mib(Some(p.sampled.max_queue_disk_bytes)), mib(p.queue_disk_bytes_end))
        } else {
            "–".into()
        }
    });
    row(&mut md, "pending: peak / end", &|p| match p.phase {
        PhaseKey::A => "–".into(),
        PhaseKey::B => format!("{:.0} / {} samples", p.sampled.max_pending, opt(p.pending_end, 0)),
        PhaseKey::C => format!("{:.0} / {} bytes", p.sampled.max_pending, opt(p.pending_end, 0)),
    });
    row(&mut md, "samples acknowledged / at VictoriaMetrics", &|p| {
        format!("{} / {}", p.samples_acked_total, p.destination_samples.map_or("–".into(), |s| s.to_string()))
    });
    row(&mut md, "forwarded (`prometheus_remote_storage_samples_total`)", &|p| opt(p.forwarded_samples_total, 0));
    row(&mut md, "retried / failed / dropped (forwarder's metrics)", &|p| {
        format!("{} / {} / {}", opt(p.retried_metric, 0), opt(p.failed_metric, 0), opt(p.dropped_metric, 0))
    });
    row(&mut md, "drain after the stream", &|p| format!("{:.1} s", p.drain_seconds));
    row(&mut md, "VictoriaMetrics CPU-µs per sample (window)", &|p| opt(p.destination_cpu_us_per_sample, 3));
    row(&mut md, "other processes' CPU-s in the window", &|p| format!("{:.1}", p.other_processes_cpu_seconds_window));
    row(&mut md, "max send lag", &|p| format!("{:.0} ms", p.max_send_lag_ms));
    row(&mut md, "warning/error log lines", &|p| p.log_problem_lines.to_string());
    let d = &report.derived;
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "- **Forwarding's added cost (b − a): {} CPU-µs per sample** (target ≤ {TARGET_ADDED_CPU_US_PER_SAMPLE}: {}).",
        opt(d.added_cpu_us_per_sample, 3),
        match d.target_met {
            Some(true) => "*met*",
            Some(false) => "**missed**",
            None => "not measured",
        }
    );
    let _ = writeln!(
        md,
        "- Against vmagent's whole cost of receiving and forwarding (c): (b − a) / c = **{}**.",
        opt(d.added_over_vmagent, 2)
    );
    let _ = writeln!(md, "\n## Checks and log lines\n");
    if !report.failed_phases.is_empty() {
        for failure in &report.failed_phases {
            let _ = writeln!(md, "- **phase failed**: {failure}");
        }
    }
    for p in &report.phases {
        if p.problems.is_empty() {
            let _ = writeln!(md, "- ({}) every check held.", phase_value(p.phase, p.repeat));
        }
        for problem in &p.problems {
            let _ = writeln!(md, "- ({}) **{problem}**", phase_value(p.phase, p.repeat));
        }
        for note in &p.notes {
            let _ = writeln!(md, "- ({}) note: {note}", phase_value(p.phase, p.repeat));
        }
        if p.log_problem_lines > 0 {
            let _ = writeln!(
                md,
                "- ({}) {} warning/error lines in the {} log; the first:\n\n```text\n{}\n```",
                phase_value(p.phase, p.repeat),
                p.log_problem_lines,
                p.receiver,
                p.log_problems.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
            );
        }
    }
    let _ = writeln!(md, "\nRaw figures: `results.json`; log tails: `logs/`.");
    md
}

async fn run(options: Options) -> Result<()> {
    for (what, path, fix) in [
        (
            "Ringtail",
            &options.ringtail_bin,
            "cargo build --release -p ringtail-apiserver --bin ringtail, or pass --ringtail-bin",
        ),
        ("VictoriaMetrics", &options.victoria_metrics_bin, "apt-get install victoria-metrics"),
        ("vmagent", &options.vmagent_bin, "apt-get install victoria-metrics"),
    ] {
        if !path.exists() {
            bail!("{what} binary {} not found: {fix}", path.display());
        }
    }
    if options.phases.is_empty() {
        bail!("--phases is empty");
    }
    std::fs::create_dir_all(&options.out).with_context(|| format!("creating {}", options.out.display()))?;
    let started_utc = chrono::Utc::now().to_rfc3339();
    let mut machine = describe().await;
    machine.ringtail_version = version_line(&options.ringtail_bin);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(32)
        .build()
        .context("building the HTTP client")?;

    let pods: Vec<Pod> = (0..options.series.div_ceil(SERIES_PER_POD)).map(|i| Pod::new(i, 0)).collect();
    let mut base_series = write_series(&pods, SERIES_PER_POD, "forward-bench");
    base_series.truncate(options.series);

    let vm = if options.phases.iter().any(|p| p.forwards()) {
        let peer = start(
            "victoria-metrics",
            &options.victoria_metrics_bin,
            |dir, port| {
                Ok(vec![
                    format!("-storageDataPath={}", dir.join("data").display()),
                    format!("-httpListenAddr=127.0.0.1:{port}"),
                    "-retentionPeriod=1".into(),
                    "-loggerLevel=WARN".into(),
                    // Instant queries near now would otherwise skip the last 30 s.
                    "-search.latencyOffset=0s".into(),
                ])
            },
            &http,
            "/health",
        )
        .await?;
        Some(peer)
    } else {
        None
    };
    let shared = Shared { http, ticks_per_second: clock_ticks_per_second(), vm, base_series };

    let mut phases = Vec::new();
    let mut failed_phases = Vec::new();
    for repeat in 0..options.repeats.max(1) {
        let mut order = options.phases.clone();
        let shift = repeat % order.len();
        order.rotate_left(shift);
        for phase in order {
            match run_phase(&options, &shared, phase, repeat).await {
                Ok(result) => phases.push(result),
                Err(e) => {
                    let message = format!("({}) {}: {e:#}", phase_value(phase, repeat), phase.title());
                    eprintln!("{message}");
                    failed_phases.push(message);
                }
            }
        }
    }
    if let Some(vm) = &shared.vm {
        keep_log(vm, &options.out, "victoria-metrics.log")?;
    }
    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_utc,
        machine,
        load_average_at_end: std::fs::read_to_string("/proc/loadavg").map(|l| l.trim().to_string()).unwrap_or_default(),
        derived: derive(&phases),
        options: options.clone(),
        phases,
        failed_phases,
    };
    let json = serde_json::to_string_pretty(&report).context("encoding results.json")?;
    std::fs::write(options.out.join("results.json"), json).context("writing results.json")?;
    let md = markdown(&report);
    std::fs::write(options.out.join("report.md"), &md).context("writing report.md")?;
    println!("{md}");
    eprintln!("report: {}", options.out.join("report.md").display());
    let problems: usize = report.phases.iter().map(|p| p.problems.len()).sum();
    if problems > 0 || !report.failed_phases.is_empty() {
        bail!("{problems} check(s) did not hold and {} phase(s) failed; see the report", report.failed_phases.len());
    }
    Ok(())
}

/// The first line `program --version` prints, or "unknown".
fn version_line(program: &Path) -> String {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

fn main() {
    let options = Options::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("forward_compare: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(options)) {
        eprintln!("forward_compare: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_escapes_are_stripped() {
        assert_eq!(strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m x"), "2026  WARN x");
    }

    #[test]
    fn metric_sum_adds_every_series_of_the_name_only() {
        let page = "# HELP x y\n\
                    prometheus_remote_storage_samples_total{remote_name=\"a\",url=\"u\"} 10\n\
                    prometheus_remote_storage_samples_total{remote_name=\"b\",url=\"v\"} 5\n\
                    prometheus_remote_storage_samples_total_other 7\n\
                    prometheus_remote_storage_samples_pending 3\n";
        assert_eq!(metric_sum(page, "prometheus_remote_storage_samples_total"), Some(15.0));
        assert_eq!(metric_sum(page, "prometheus_remote_storage_samples_pending"), Some(3.0));
        assert_eq!(metric_sum(page, "absent"), None);
    }

    #[test]
    fn stream_ticks_are_interval_apart_and_cut_into_lanes() -> Result<()> {
        let pods: Vec<Pod> = (0..3).map(|i| Pod::new(i, 0)).collect();
        let series = phase_series(&write_series(&pods, SERIES_PER_POD, "j"), PhaseKey::B, 0);
        assert!(series.iter().all(|s| s.labels.windows(2).all(|w| w[0].name < w[1].name)));
        let stream = encode_stream(&series, 5, 1_000_000, 100, 12)?;
        assert_eq!((stream.ticks, stream.lanes(), stream.samples_per_tick()), (5, 3, 30));
        assert_eq!(stream.bodies.len(), 15);
        let mut raw = Vec::new();
        ingest::remote_write::decompress_snappy(&stream.bodies[3 * 3 + 1], 1 << 20, &mut raw)?;
        let decoded = <v1::WriteRequest as prost::Message>::decode(raw.as_slice())?;
        let ts: Vec<i64> = decoded.timeseries.iter().map(|s| s.samples[0].timestamp).collect();
        assert_eq!(ts, vec![1_000_300; 12]);
        Ok(())
    }
}
