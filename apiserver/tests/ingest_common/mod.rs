//! `ingest_common` is the harness the ingest integration tests share: start the real `ringtail`
//! binary (or a peer such as Prometheus) on a free loopback port with a temp dir, wait until it
//! answers, and kill it on drop; plus remote-write request builders and export reading. Tests that
//! need a peer ask [`peer::peers_installed`] first.
#![allow(dead_code)]

pub mod peer;
pub mod ports;

pub use ports::free_port;

use peer::PROMETHEUS;

use ingest::proto::{v1, v2};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a process gets to come up on a loaded 2-core machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How many ports a harness tries before giving up when others take them first.
pub const PORT_ATTEMPTS: usize = 3;

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard {
    pub child: Child,
    pub name: String,
}

impl ChildGuard {
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> ChildGuard {
        let log_file = std::fs::File::create(log).expect("creating a log file");
        let err_file = log_file.try_clone().expect("cloning the log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(err_file))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        ChildGuard { child, name: name.to_string() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `ringtail serve`.
pub struct Ringtail {
    pub process: ChildGuard,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Ringtail {
    /// Starts Ringtail with an optional config file body and extra flags; waits for `/-/ready`.
    /// When another server took the port first (its data dir is not ours), it starts again on
    /// another port.
    pub async fn start(config_yaml: Option<&str>, extra_args: &[&str]) -> Ringtail {
        for _ in 0..PORT_ATTEMPTS {
            let dir = tempfile::tempdir().expect("temp dir");
            let data_dir = dir.path().join("data");
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let mut command = Command::new(env!("CARGO_BIN_EXE_ringtail"));
            command.arg("serve").arg("--data-dir").arg(&data_dir).arg("--listen").arg(addr.to_string());
            if let Some(yaml) = config_yaml {
                let path = dir.path().join("ringtail.yaml");
                std::fs::write(&path, yaml).expect("writing config");
                command.arg("--config").arg(path);
            }
            command.args(extra_args).env("RINGTAIL_LOG", "info");
            let process = ChildGuard::spawn("ringtail", &mut command, &dir.path().join("ringtail.log"));
            let ringtail = Ringtail { process, addr, dir };
            wait_http_ok(&format!("{}/-/ready", ringtail.url()), START_TIMEOUT).await;
            if ports::serves_data_dir(&ringtail.url(), &data_dir).await {
                return ringtail;
            }
        }
        panic!("another server took the port each of {PORT_ATTEMPTS} times");
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ringtail.log")).unwrap_or_default()
    }

    /// Still answering `/-/healthy`?
    pub async fn is_healthy(&self) -> bool {
        matches!(client().get(format!("{}/-/healthy", self.url())).send().await, Ok(r) if r.status().is_success())
    }

    /// Export lines for one selector over all time.
    pub async fn export(&self, selector: &str) -> Vec<ExportedSeries> {
        export_from(&self.url(), selector).await
    }

    /// Resident memory high-water mark of the server, in KiB (Linux `VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// One export line.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ExportedSeries {
    pub metric: std::collections::BTreeMap<String, String>,
    pub values: Vec<serde_json::Value>,
    pub timestamps: Vec<i64>,
}

impl ExportedSeries {
    /// Values as floats (string forms `NaN`, `+Inf`, `-Inf`, `StaleNaN` decoded).
    pub fn floats(&self) -> Vec<f64> {
        self.values
            .iter()
            .map(|v| match v {
                serde_json::Value::Number(n) => n.as_f64().expect("finite number"),
                serde_json::Value::String(s) => match s.as_str() {
                    "NaN" => f64::NAN,
                    "StaleNaN" => tsdb::stale_nan(),
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    other => panic!("unexpected value {other}"),
                },
                other => panic!("unexpected value {other}"),
            })
            .collect()
    }
}

/// Export lines for one selector over all time from the Ringtail at `base_url`.
pub async fn export_from(base_url: &str, selector: &str) -> Vec<ExportedSeries> {
    let response = client()
        .get(format!("{base_url}/api/v1/export"))
        .query(&[("match[]", selector), ("start", "0")])
        .send()
        .await
        .expect("export request");
    assert!(response.status().is_success(), "export answered {}", response.status());
    let text = response.text().await.expect("export body");
    text.lines().map(|line| serde_json::from_str(line).expect("export line is JSON")).collect()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(120)).build().expect("client")
}

/// Polls `url` until it answers 2xx or `timeout` passes (then panics).
pub async fn wait_http_ok(url: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let client = client();
    loop {
        if let Ok(response) = client.get(url).send().await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} did not become ready within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes (then panics with `what`).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A 1.0 series from label pairs (sorted here) and `(ts_ms, value)` samples.
pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> v1::TimeSeries {
    let mut labels: Vec<v1::Label> =
        labels.iter().map(|(n, v)| v1::Label { name: n.to_string(), value: v.to_string() }).collect();
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    v1::TimeSeries {
        labels,
        samples: samples.iter().map(|(t, v)| v1::Sample { value: *v, timestamp: *t }).collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

/// POSTs a body to `/api/v1/write` with the given Content-Type.
pub async fn post_write(base_url: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(format!("{base_url}/api/v1/write"))
        .header("Content-Type", content_type)
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("remote-write request")
}

/// A scratch directory path helper for peers.
pub fn path_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// A tiny exporter in the test process serving text format 0.0.4: a counter that grows on every
/// scrape, a gauge, a histogram and a label value with escapes. Stops on `stop()` or drop.
pub struct TestTarget {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestTarget {
    pub async fn start() -> TestTarget {
        use std::sync::atomic::{AtomicU64, Ordering};
        let scrapes = std::sync::Arc::new(AtomicU64::new(0));
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let n = scrapes.fetch_add(1, Ordering::Relaxed) + 1;
                async move {
                    let page = format!(
                        "# HELP demo_requests_total Requests served.\n# TYPE demo_requests_total counter\n\
                         demo_requests_total{{code=\"200\",path=\"/a\"}} {}\n\
                         demo_requests_total{{code=\"500\",path=\"/a\"}} {}\n\
                         # TYPE demo_temperature_celsius gauge\n\
                         demo_temperature_celsius{{room=\"lab \\\"A\\\"\"}} {}\n\
                         # TYPE demo_latency_seconds histogram\n\
                         demo_latency_seconds_bucket{{le=\"0.1\"}} {n}\n\
                         demo_latency_seconds_bucket{{le=\"+Inf\"}} {}\n\
                         demo_latency_seconds_sum {}\n\
                         demo_latency_seconds_count {}\n",
                        n * 3,
                        n / 2,
                        20.0 + (n % 7) as f64 * 0.25,
                        n * 2,
                        n as f64 * 0.0625,
                        n * 2
                    );
                    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], page)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the test target");
        let addr = listener.local_addr().expect("addr");
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await;
        });
        TestTarget { addr, stop: Some(stop), task: Some(task) }
    }

    /// Stops serving (the port then refuses connections).
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestTarget {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A running Prometheus 2.42 with a config, on a free port and a temp dir.
pub struct Prometheus {
    pub process: ChildGuard,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Prometheus {
    pub async fn start(config_yaml: &str) -> Prometheus {
        Prometheus::start_with(config_yaml, &[]).await
    }

    /// Like [`Prometheus::start`], with extra flags (`--web.enable-remote-write-receiver`).
    pub async fn start_with(config_yaml: &str, extra_args: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml).expect("writing prometheus.yml");
        let mut command = Command::new(PROMETHEUS.binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra_args);
        let process = ChildGuard::spawn("prometheus", &mut command, &dir.path().join("prometheus.log"));
        let prometheus = Prometheus { process, port, dir };
        wait_http_ok(&format!("{}/-/ready", prometheus.url()), START_TIMEOUT).await;
        prometheus
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Raw samples of every series matching `selector` over the last hour, through Prometheus'
    /// own query API (a range-vector selector returns stored samples unchanged).
    pub async fn raw_samples(
        &self,
        selector: &str,
    ) -> Vec<(std::collections::BTreeMap<String, String>, Vec<(i64, f64)>)> {
        let body: serde_json::Value = client()
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", format!("{selector}[1h]"))])
            .send()
            .await
            .expect("prometheus query")
            .json()
            .await
            .expect("prometheus JSON");
        let results = body["data"]["result"].as_array().cloned().unwrap_or_default();
        results
            .iter()
            .map(|series| {
                let metric = series["metric"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
                    .unwrap_or_default();
                let values = series["values"]
                    .as_array()
                    .map(|vs| {
                        vs.iter()
                            .map(|pair| {
                                let ts_ms = (pair[0].as_f64().expect("timestamp") * 1000.0).round() as i64;
                                (ts_ms, parse_prometheus_float(pair[1].as_str().expect("value string")))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (metric, values)
            })
            .collect()
    }

    /// The value of an instant query, per series.
    pub async fn instant(&self, query: &str) -> Vec<(std::collections::BTreeMap<String, String>, f64)> {
        let body: serde_json::Value = client()
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", query)])
            .send()
            .await
            .expect("prometheus query")
            .json()
            .await
            .expect("prometheus JSON");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let metric = s["metric"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
                    .unwrap_or_default();
                (metric, parse_prometheus_float(s["value"][1].as_str().unwrap_or("NaN")))
            })
            .collect()
    }
}

pub fn parse_prometheus_float(text: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().unwrap_or(f64::NAN),
    }
}

/// A series' labels and its `(timestamp ms, value)` samples.
pub type SeriesSamples = (std::collections::BTreeMap<String, String>, Vec<(i64, f64)>);

/// Checks every `(labels, samples)` of `expected` is in `exported` with identical timestamps and
/// bit-identical values (NaN compared as NaN). Returns a description of the first mismatch.
pub fn missing_samples(expected: &[SeriesSamples], exported: &[ExportedSeries]) -> Option<String> {
    for (labels, samples) in expected {
        let Some(found) = exported.iter().find(|e| &e.metric == labels) else {
            return Some(format!("series {labels:?} missing"));
        };
        let stored: std::collections::HashMap<i64, f64> =
            found.timestamps.iter().copied().zip(found.floats()).collect();
        for (ts, value) in samples {
            match stored.get(ts) {
                Some(v) if v.to_bits() == value.to_bits() || (v.is_nan() && value.is_nan()) => {}
                other => return Some(format!("{labels:?} at {ts}: expected {value}, found {other:?}")),
            }
        }
    }
    None
}

/// Waits (up to 90 s) until Ringtail's export of `selector` holds every sample of `expected`.
pub async fn wait_until_ringtail_holds(ringtail: &Ringtail, selector: &str, expected: &[SeriesSamples]) {
    eventually("Ringtail to hold every sample the sender had", Duration::from_secs(90), || async {
        let exported = ringtail.export(selector).await;
        match missing_samples(expected, &exported) {
            None => Some(()),
            Some(missing) => {
                eprintln!("not yet: {missing}");
                None
            }
        }
    })
    .await;
}

/// A series of a 2.0 test request: its labels and `(timestamp ms, value)` samples.
pub type V2Series<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

/// A remote-write 2.0 request of `series`, every series' labels interned into one symbol table.
pub fn v2_request_of(series: &[V2Series<'_>]) -> v2::Request {
    let mut symbols: Vec<String> = vec![String::new()];
    let mut intern = |s: &str| -> u32 {
        match symbols.iter().position(|x| x == s) {
            Some(i) => i as u32,
            None => {
                symbols.push(s.to_string());
                (symbols.len() - 1) as u32
            }
        }
    };
    let timeseries = series
        .iter()
        .map(|(labels, samples)| {
            let mut sorted = labels.to_vec();
            sorted.sort();
            v2::TimeSeries {
                labels_refs: sorted.iter().flat_map(|(n, v)| [intern(n), intern(v)]).collect(),
                samples: samples.iter().map(|(t, v)| v2::Sample { value: *v, timestamp: *t }).collect(),
                ..Default::default()
            }
        })
        .collect();
    v2::Request { symbols, timeseries }
}
