//! `query_compare` times the two PromQL workloads on Ringtail and on Prometheus 2.42 with
//! the same data in the same run: 10 000 `http_requests_total` series (100 pods) and 10 000
//! `x_bucket` series (1 000 histograms × 10 buckets), 65 minutes at 15 s, remote-written to both.
//! Each query runs as an instant query and as a 1 h range query at 15 s step through both HTTP
//! APIs; the median of the timed runs is reported with the ratio (target: Ringtail ≤ 1/3).
//!
//! Build first: `cargo build --release -p ringtail-apiserver -p ringtail-benches`, then run
//! `target/release/query_compare [--runs N]`. The `ringtail` binary is taken from `$RINGTAIL_BIN`
//! or next to this program.

use ingest::proto::v1;
use ringtail_benches::{free_port, ringtail_bin, Peer};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SERIES_PER_SET: usize = 10_000;
const SCRAPE_MS: i64 = 15_000;
const SPAN_MS: i64 = 65 * 60_000;

type Error = Box<dyn std::error::Error>;

async fn spawn(
    name: &'static str,
    program: &Path,
    args: &[String],
    port: u16,
    dir: tempfile::TempDir,
) -> Result<Peer, Error> {
    let mut peer = Peer::start(name, program, args, &[], port, dir, "server.log")?;
    let ready = format!("{}/-/ready", peer.url);
    peer.wait_ready(&reqwest::Client::new(), &ready, Duration::from_secs(120), Duration::from_millis(100)).await?;
    Ok(peer)
}

async fn start_ringtail() -> Result<Peer, Error> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("ringtail.yaml");
    std::fs::write(&config, "scrape_configs: []\n")?;
    let args = vec![
        "serve".to_string(),
        "--config".into(),
        config.display().to_string(),
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--secure-listen".into(),
        format!("127.0.0.1:{}", free_port()?),
    ];
    spawn("ringtail", &ringtail_bin()?, &args, port, dir).await
}

async fn start_prometheus() -> Result<Peer, Error> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\nscrape_configs: []\n")?;
    let args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--web.enable-remote-write-receiver".into(),
    ];
    spawn("prometheus", Path::new("/usr/bin/prometheus"), &args, port, dir).await
}

/// The two data sets, as (labels, value at step k) generators, written in 5-minute slices.
fn slice(base_ms: i64, from_step: i64, to_step: i64) -> Vec<v1::TimeSeries> {
    let mut out = Vec::with_capacity(2 * SERIES_PER_SET);
    let label = |name: &str, value: String| v1::Label { name: name.to_string(), value };
    for i in 0..SERIES_PER_SET {
        let samples = (from_step..to_step)
            .map(|k| v1::Sample { value: (k as f64) * (1.0 + (i % 7) as f64), timestamp: base_ms + k * SCRAPE_MS })
            .collect();
        out.push(v1::TimeSeries {
            labels: vec![
                label("__name__", "http_requests_total".into()),
                label("instance", format!("i-{i}")),
                label("pod", format!("pod-{}", i % 100)),
            ],
            samples,
            ..Default::default()
        });
    }
    let bounds = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
    for h in 0..SERIES_PER_SET / bounds.len() {
        for (b, le) in bounds.iter().enumerate() {
            let samples = (from_step..to_step)
                .map(|k| v1::Sample {
                    value: (k as f64) * (1.0 + b as f64 + (h % 3) as f64),
                    timestamp: base_ms + k * SCRAPE_MS,
                })
                .collect();
            out.push(v1::TimeSeries {
                labels: vec![
                    label("__name__", "x_bucket".into()),
                    label("instance", format!("h-{h}")),
                    label("le", le.to_string()),
                ],
                samples,
                ..Default::default()
            });
        }
    }
    out
}

async fn write(client: &reqwest::Client, url: &str, series: Vec<v1::TimeSeries>) -> Result<(), Error> {
    let body = ingest::remote_write::encode_body(&v1::WriteRequest { timeseries: series, metadata: vec![] });
    let response = ringtail_benches::remote_write_request(client, &format!("{url}/api/v1/write"), body).send().await?;
    if !response.status().is_success() {
        return Err(format!("write to {url}: {} {}", response.status(), response.text().await?).into());
    }
    Ok(())
}

/// Times one query `runs` times (after one warm-up); returns sorted durations and result size.
async fn time_query(
    client: &reqwest::Client,
    url: &str,
    path: &str,
    params: &[(&str, String)],
    runs: usize,
) -> Result<(Vec<Duration>, usize), Error> {
    let mut times = Vec::with_capacity(runs);
    let mut size = 0;
    for run in 0..=runs {
        let started = Instant::now();
        let response = client.post(format!("{url}{path}")).form(params).send().await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        let elapsed = started.elapsed();
        if !status.is_success() || body["status"] != "success" {
            return Err(format!("{url}{path} failed: {status} {body}").into());
        }
        size = body["data"]["result"].as_array().map_or(0, Vec::len);
        if size == 0 {
            return Err(format!("{url}{path} returned no series: {body}").into());
        }
        if run > 0 {
            times.push(elapsed);
        }
    }
    times.sort();
    Ok((times, size))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut runs = 7usize;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--runs") {
        runs = args.get(i + 1).and_then(|v| v.parse().ok()).ok_or("--runs needs a number")?;
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let base_ms = (now_ms - SPAN_MS - 60_000) / 60_000 * 60_000;
    let end_ms = base_ms + SPAN_MS - SCRAPE_MS;
    let ringtail = start_ringtail().await?;
    let prometheus = start_prometheus().await?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let steps = SPAN_MS / SCRAPE_MS;
    let per_slice = 20;
    let load_started = Instant::now();
    let mut from = 0;
    while from < steps {
        let to = (from + per_slice).min(steps);
        for peer in [&ringtail, &prometheus] {
            write(&client, &peer.url, slice(base_ms, from, to)).await?;
        }
        from = to;
    }
    println!(
        "loaded {} series x {} samples into both in {:.1}s",
        2 * SERIES_PER_SET,
        steps,
        load_started.elapsed().as_secs_f64()
    );
    let end_s = format!("{}", end_ms as f64 / 1000.0);
    let start_s = format!("{}", (end_ms - 3_600_000) as f64 / 1000.0);
    let workloads = [
        ("sum by (pod) (rate(http_requests_total[2m]))", false),
        ("sum by (pod) (rate(http_requests_total[2m]))", true),
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))", false),
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))", true),
    ];
    println!("{:<62} {:>6} {:>12} {:>12} {:>8}", "query", "kind", "ringtail ms", "prom ms", "ratio");
    let mut worst_ratio: f64 = 0.0;
    for (query, range) in workloads {
        let (path, params): (&str, Vec<(&str, String)>) = if range {
            (
                "/api/v1/query_range",
                vec![
                    ("query", query.to_string()),
                    ("start", start_s.clone()),
                    ("end", end_s.clone()),
                    ("step", "15".into()),
                ],
            )
        } else {
            ("/api/v1/query", vec![("query", query.to_string()), ("time", end_s.clone())])
        };
        let (ringtail_times, ringtail_size) = time_query(&client, &ringtail.url, path, &params, runs).await?;
        let (prometheus_times, prometheus_size) = time_query(&client, &prometheus.url, path, &params, runs).await?;
        if ringtail_size != prometheus_size {
            return Err(
                format!("{query}: {ringtail_size} series from Ringtail, {prometheus_size} from Prometheus").into()
            );
        }
        let median = |t: &[Duration]| t[t.len() / 2].as_secs_f64() * 1000.0;
        let (r, p) = (median(&ringtail_times), median(&prometheus_times));
        worst_ratio = worst_ratio.max(r / p);
        println!("{:<62} {:>6} {:>12.2} {:>12.2} {:>8.3}", query, if range { "range" } else { "inst" }, r, p, r / p);
    }
    println!("worst ringtail/prometheus median ratio: {worst_ratio:.3} (target <= 0.333)");
    Ok(())
}
