//! `remote_write_compare` measures remote-write ingestion of Ringtail against Prometheus
//! (`--web.enable-remote-write-receiver`) and VictoriaMetrics single-node, all started by this
//! program on loopback with temp dirs, fed the same pre-encoded requests: 10k series with 6 labels
//! each, 2000 samples per request, samples in time order per series. It prints samples/s and the
//! receiver's CPU time per sample (utime + stime from `/proc/<pid>/stat`, including a settle
//! period after the last response so deferred work is counted).
//!
//! Build first: `cargo build --release -p ringtail-apiserver -p ringtail-benches`, then run
//! `target/release/remote_write_compare [--rounds N] [--concurrency N]`. The Ringtail binary is
//! taken from `$RINGTAIL_BIN` or next to this program.
#![forbid(unsafe_code)]

use ingest::proto::v1;
use ingest::remote_write::encode_body;
use ringtail_benches::{clock_ticks_per_second, cpu_seconds, free_port, parse_number_flags, ringtail_bin, Peer};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERIES: usize = 10_000;
const SAMPLES_PER_REQUEST: usize = 2_000;
const SCRAPE_STEP_MS: i64 = 15_000;
const SETTLE: Duration = Duration::from_secs(3);

struct Options {
    rounds: usize,
    concurrency: usize,
}

fn parse_options() -> Result<Options, String> {
    let values = parse_number_flags(&[("--rounds", 60), ("--concurrency", 4)])?;
    Ok(Options { rounds: values[0] as usize, concurrency: values[1] as usize })
}

fn spawn(
    name: &'static str,
    program: &Path,
    args: &[String],
    ready_path: &str,
    port: u16,
    dir: tempfile::TempDir,
) -> Result<Peer, String> {
    let mut peer = Peer::start(name, program, args, &[], port, dir, "log")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder().no_proxy().build().map_err(|e| e.to_string())?;
    let ready = format!("{}{ready_path}", peer.url);
    runtime.block_on(peer.wait_ready(&client, &ready, Duration::from_secs(60), Duration::from_millis(200)))?;
    Ok(peer)
}

/// The requests: round r carries one sample per series at `start + r * step`, cut into requests
/// of 2000 samples; so every series' samples arrive in time order.
fn build_requests(rounds: usize) -> Vec<Vec<u8>> {
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let start_ms = now_ms - rounds as i64 * SCRAPE_STEP_MS;
    let label_sets: Vec<Vec<v1::Label>> = (0..SERIES)
        .map(|s| {
            let mut labels = vec![
                ("__name__", format!("http_requests_total_{}", s % 20)),
                ("container", "app".to_string()),
                ("instance", format!("10.0.{}.{}:8080", s / 250, s % 250)),
                ("job", "bench".to_string()),
                ("namespace", format!("ns-{}", s % 7)),
                ("pod", format!("app-{s:05}")),
            ];
            labels.sort();
            labels.into_iter().map(|(n, v)| v1::Label { name: n.to_string(), value: v }).collect()
        })
        .collect();
    let mut requests = Vec::new();
    for round in 0..rounds {
        let ts = start_ms + round as i64 * SCRAPE_STEP_MS;
        for chunk in label_sets.chunks(SAMPLES_PER_REQUEST) {
            let timeseries = chunk
                .iter()
                .enumerate()
                .map(|(i, labels)| v1::TimeSeries {
                    labels: labels.clone(),
                    samples: vec![v1::Sample { value: (round * 10 + i % 10) as f64, timestamp: ts }],
                    exemplars: vec![],
                    histograms: vec![],
                })
                .collect();
            requests.push(encode_body(&v1::WriteRequest { timeseries, metadata: vec![] }));
        }
    }
    requests
}

struct Measurement {
    name: &'static str,
    samples: u64,
    failed_requests: u64,
    wall_seconds: f64,
    cpu_seconds: f64,
}

fn measure(
    peer: &Peer,
    write_path: &str,
    requests: &Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    ticks: f64,
) -> Result<Measurement, String> {
    let pid = peer.pid();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder().no_proxy().build().map_err(|e| e.to_string())?;
    let url = format!("{}{write_path}", peer.url);
    let cpu_before = cpu_seconds(pid, ticks)?;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, url, requests, next, failed) =
                (client.clone(), url.clone(), requests.clone(), next.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = requests.get(i) else { break };
                    // Retry 5xx like a sender would; count anything else that is not 2xx.
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        let result = ringtail_benches::remote_write_request(&client, &url, body.clone()).send().await;
                        match result {
                            Ok(r) if r.status().is_success() => break,
                            Ok(r) if r.status().is_server_error() && attempts < 10 => {
                                tokio::time::sleep(Duration::from_millis(100)).await
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
    let wall_seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(SETTLE);
    let cpu_seconds = cpu_seconds(pid, ticks)? - cpu_before;
    Ok(Measurement {
        name: peer.name,
        samples: (requests.len() * SAMPLES_PER_REQUEST) as u64,
        failed_requests: failed.load(Ordering::Relaxed),
        wall_seconds,
        cpu_seconds,
    })
}

fn run() -> Result<(), String> {
    let options = parse_options()?;
    let ticks = clock_ticks_per_second();
    eprintln!("encoding {} rounds x {SERIES} series ...", options.rounds);
    let requests = Arc::new(build_requests(options.rounds));
    let bytes: usize = requests.iter().map(Vec::len).sum();
    eprintln!("{} requests, {:.1} MiB compressed", requests.len(), bytes as f64 / (1 << 20) as f64);

    let mut results = Vec::new();
    {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port()?;
        let config = dir.path().join("ringtail.yaml");
        std::fs::write(&config, "scrape_configs: []\n").map_err(|e| e.to_string())?;
        let args = vec![
            "serve".to_string(),
            format!("--data-dir={}", dir.path().join("data").display()),
            format!("--listen=127.0.0.1:{port}"),
            format!("--config={}", config.display()),
            "--storage-size=4294967296".to_string(),
        ];
        let peer = spawn("ringtail", &ringtail_bin()?, &args, "/-/ready", port, dir)?;
        results.push(measure(&peer, "/api/v1/write", &requests, options.concurrency, ticks)?);
    }
    {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port()?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global: {}\n").map_err(|e| e.to_string())?;
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".to_string(),
        ];
        let peer = spawn("prometheus", Path::new("prometheus"), &args, "/-/ready", port, dir)?;
        results.push(measure(&peer, "/api/v1/write", &requests, options.concurrency, ticks)?);
    }
    {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port()?;
        let args = vec![
            format!("-storageDataPath={}", dir.path().join("data").display()),
            format!("-httpListenAddr=127.0.0.1:{port}"),
            "-retentionPeriod=10y".to_string(),
        ];
        let peer = spawn("victoria-metrics", Path::new("victoria-metrics"), &args, "/health", port, dir)?;
        results.push(measure(&peer, "/api/v1/write", &requests, options.concurrency, ticks)?);
    }

    println!(
        "{:<18} {:>10} {:>8} {:>12} {:>14} {:>16}",
        "receiver", "samples", "failed", "samples/s", "CPU-us/sample", "samples/CPU-s"
    );
    let per_cpu = |m: &Measurement| m.samples as f64 / m.cpu_seconds.max(1e-9);
    for m in &results {
        println!(
            "{:<18} {:>10} {:>8} {:>12.0} {:>14.3} {:>16.0}",
            m.name,
            m.samples,
            m.failed_requests,
            m.samples as f64 / m.wall_seconds,
            m.cpu_seconds * 1e6 / m.samples as f64,
            per_cpu(m)
        );
    }
    if let (Some(ringtail), Some(prometheus), Some(vm)) = (results.first(), results.get(1), results.get(2)) {
        println!(
            "ringtail / prometheus: {:.2}x samples/s, {:.2}x samples per CPU-second",
            (ringtail.samples as f64 / ringtail.wall_seconds) / (prometheus.samples as f64 / prometheus.wall_seconds),
            per_cpu(ringtail) / per_cpu(prometheus)
        );
        println!(
            "ringtail / victoria-metrics: {:.2}x samples/s, {:.2}x samples per CPU-second (target >= 2x)",
            (ringtail.samples as f64 / ringtail.wall_seconds) / (vm.samples as f64 / vm.wall_seconds),
            per_cpu(ringtail) / per_cpu(vm)
        );
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("remote_write_compare: {e}");
        std::process::exit(1);
    }
}
