//! Shared pieces of the PromQL end-to-end tests: start the real `ringtail` binary (and the real
//! Prometheus 2.42) on free loopback ports with kill-on-drop guards, write samples through
//! remote-write, and read query results back as comparable values.
#![allow(dead_code)]

#[path = "../ingest_common/peer.rs"]
pub mod peer;
#[path = "../ingest_common/ports.rs"]
pub mod ports;

pub use ports::free_port;

use peer::PROMETHEUS;

use ingest::proto::v1;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to become ready on a loaded 2-core machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("HTTP client")
}

/// A child process killed when dropped.
pub struct ChildGuard(Child);

impl ChildGuard {
    pub fn spawn(command: &mut Command, log: &Path) -> ChildGuard {
        let file = std::fs::File::create(log).expect("log file");
        let err = file.try_clone().expect("log file clone");
        let child = command.stdout(Stdio::from(file)).stderr(Stdio::from(err)).spawn().expect("spawn server");
        ChildGuard(child)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running server (Ringtail or Prometheus).
pub struct Server {
    pub url: String,
    pub dir: tempfile::TempDir,
    _process: ChildGuard,
    log: std::path::PathBuf,
}

impl Server {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

async fn wait_ready(url: &str, log: &Path) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(r) = client().get(format!("{url}/-/ready")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready in time; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `ringtail serve` without scraping anything, with extra flags.
/// When another server took the port first (its data dir is not ours), it starts again on
/// another port.
pub async fn start_ringtail(extra_args: &[&str]) -> Server {
    for _ in 0..3 {
        let server = start_ringtail_once(extra_args).await;
        if ports::serves_data_dir(&server.url, &server.dir.path().join("data")).await {
            return server;
        }
    }
    panic!("another server took the port each of 3 times");
}

async fn start_ringtail_once(extra_args: &[&str]) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = dir.path().join("ringtail.yaml");
    std::fs::write(&config, "scrape_configs: []\n").expect("config");
    let log = dir.path().join("ringtail.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringtail"));
    command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--secure-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(extra_args);
    let process = ChildGuard::spawn(&mut command, &log);
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url, &log).await;
    Server { url, dir, _process: process, log }
}

/// Starts Prometheus 2.42 with the remote-write receiver and negative offsets enabled.
pub async fn start_prometheus() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\nscrape_configs: []\n").expect("config");
    let log = dir.path().join("prometheus.log");
    let mut command = Command::new(PROMETHEUS.binary);
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .arg("--enable-feature=promql-negative-offset")
        .arg("--query.lookback-delta=5m");
    let process = ChildGuard::spawn(&mut command, &log);
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url, &log).await;
    Server { url, dir, _process: process, log }
}

/// One series to write: labels (with `__name__`) and `(ts_ms, value)` samples, oldest first.
pub type SeriesData = (Vec<(String, String)>, Vec<(i64, f64)>);

/// Sends `series` through remote-write 1.0.
pub async fn remote_write(url: &str, series: &[SeriesData]) {
    let timeseries = series
        .iter()
        .map(|(labels, samples)| {
            let mut labels = labels.clone();
            labels.sort();
            v1::TimeSeries {
                labels: labels.into_iter().map(|(name, value)| v1::Label { name, value }).collect(),
                samples: samples.iter().map(|(t, v)| v1::Sample { value: *v, timestamp: *t }).collect(),
                ..Default::default()
            }
        })
        .collect();
    let body = ingest::remote_write::encode_body(&v1::WriteRequest { timeseries, metadata: vec![] });
    let response = client()
        .post(format!("{url}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("remote write");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "remote write to {url} answered {status}: {text}");
}

/// GET `path` with `params`; returns the status code and the JSON body.
pub async fn get_json(url: &str, path: &str, params: &[(&str, String)]) -> (u16, serde_json::Value) {
    let response = client().get(format!("{url}{path}")).query(params).send().await.expect("HTTP GET");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} answered non-JSON ({e}): {text}"));
    (status, json)
}

/// A query result reduced to comparable values: label set → points.
#[derive(Debug, Clone, PartialEq)]
pub enum Result_ {
    Scalar(f64),
    String(String),
    Series(BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>>),
}

pub fn parse_value(text: &str) -> f64 {
    match text {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        other => other.parse().unwrap_or_else(|_| panic!("bad sample value {other:?}")),
    }
}

fn point(p: &serde_json::Value) -> (i64, f64) {
    let ts = (p[0].as_f64().expect("timestamp") * 1000.0).round() as i64;
    (ts, parse_value(p[1].as_str().expect("value string")))
}

/// Reads `data` of a successful query response.
pub fn result_of(body: &serde_json::Value) -> Result_ {
    let data = &body["data"];
    let metric = |m: &serde_json::Value| -> BTreeMap<String, String> {
        m.as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default()
    };
    match data["resultType"].as_str().unwrap_or_default() {
        "scalar" => Result_::Scalar(point(&data["result"]).1),
        "string" => Result_::String(data["result"][1].as_str().unwrap_or_default().to_string()),
        "vector" => Result_::Series(
            data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| (metric(&s["metric"]), vec![point(&s["value"])]))
                .collect(),
        ),
        "matrix" => Result_::Series(
            data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| (metric(&s["metric"]), s["values"].as_array().into_iter().flatten().map(point).collect()))
                .collect(),
        ),
        other => panic!("unknown resultType {other:?} in {body}"),
    }
}

/// Equal within `rel` relative difference (NaN equals NaN, infinities must match exactly).
pub fn close(a: f64, b: f64, rel: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    (a - b).abs() <= rel * a.abs().max(b.abs())
}

/// Explains the first difference between two results, or `None` when they agree.
pub fn difference(want: &Result_, got: &Result_, rel: f64) -> Option<String> {
    match (want, got) {
        (Result_::Scalar(a), Result_::Scalar(b)) => (!close(*a, *b, rel)).then(|| format!("scalar {a} vs {b}")),
        (Result_::String(a), Result_::String(b)) => (a != b).then(|| format!("string {a:?} vs {b:?}")),
        (Result_::Series(a), Result_::Series(b)) => {
            let ka: Vec<_> = a.keys().collect();
            let kb: Vec<_> = b.keys().collect();
            if ka != kb {
                return Some(format!("series sets differ:\n  want {ka:?}\n  got  {kb:?}"));
            }
            for (labels, pa) in a {
                let pb = &b[labels];
                if pa.len() != pb.len() {
                    return Some(format!("{labels:?}: {} points vs {}: {pa:?} vs {pb:?}", pa.len(), pb.len()));
                }
                for (x, y) in pa.iter().zip(pb) {
                    if x.0 != y.0 || !close(x.1, y.1, rel) {
                        return Some(format!("{labels:?}: point {x:?} vs {y:?}"));
                    }
                }
            }
            None
        }
        _ => Some(format!("result types differ: {want:?} vs {got:?}")),
    }
}
