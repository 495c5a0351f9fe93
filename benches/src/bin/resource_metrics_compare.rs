//! `resource_metrics_compare` measures `metrics.k8s.io` the way `kubectl top pod -A` uses it:
//! `GET /apis/metrics.k8s.io/v1beta1/pods` over TLS (with a bearer token) to a standalone Ringtail
//! whose adapter config is the prometheus-adapter Helm chart's default `resourceRules`, over a
//! cluster of cAdvisor-shaped series (`--pods` pods over `--namespaces` namespaces, 1–3 containers
//! each, plus the pod-level `container=""` series cAdvisor writes, with its `id`, `image`, `name`
//! and kubelet-job labels): `container_cpu_usage_seconds_total` counters and
//! `container_memory_working_set_bytes` gauges every 15 s.
//!
//! Side by side, Prometheus 2.42 (remote-write receiver) holds the same data and is sent what
//! prometheus-adapter 0.10 sends for that request: for each namespace, the rule's cpu and memory
//! `containerQuery` rendered with `LabelMatchers` = `namespace="NS",pod=~"p1|p2|…"` (the
//! namespace's pods) and `GroupBy` = `pod,container`, every query of the request at once (one
//! goroutine per namespace, two queries each) at one evaluation time; a request's latency is the
//! time until its last answer. The adapter's own hop (TLS, Go JSON decoding, its pod lister) is
//! not counted, so this favours Prometheus. A second, friendlier baseline sends Prometheus the
//! single query pair that answers the same (`sum by (namespace,pod,container) (…{container!="",
//! pod!=""}…)`, both at once).
//!
//! Both are fed by remote write: six minutes of history on the 15 s grid written at start (each
//! series in time order), then one sample per series at each further grid point as it comes due,
//! written between two measured requests (never during one) and its CPU time left out of the
//! server's CPU per request. The counters grow linearly and the gauges hold, so as long as the
//! newest sample is under 15 s old `rate(…[3m])` and `avg_over_time(…[3m])` are exact and the
//! answers do not depend on the moment they are asked: every pod's and container's cpu and memory
//! in Ringtail's answer is checked (before and after the measured runs) against Prometheus's and
//! against the values the data was built from — 1 nanocore, 1 byte — and the run fails if any
//! differs. Every measured answer is checked to hold every pod (Ringtail) or every container
//! (Prometheus).
//!
//! Build first: `cargo build --release -p ringtail-apiserver --bin ringtail` and
//! `cargo build --release -p ringtail-benches --bin resource_metrics_compare`, then run
//! `target/release/resource_metrics_compare [--pods N] [--namespaces N] [--requests N]
//! [--warmup N] [--concurrency N] [--out DIR]`: `--requests` sequential requests measured on each
//! after `--warmup` unmeasured ones; `--concurrency` is how many of a request's Prometheus queries
//! run at once (default: all of them, as prometheus-adapter does); `--out` writes `report.md` and
//! `raw.json` there. Ringtail is taken from `$RINGTAIL_BIN` or next to this program; Prometheus
//! from `/usr/bin/prometheus`.
#![forbid(unsafe_code)]

use ingest::proto::v1;
use ingest::remote_write::encode_body;
use ringtail_benches::{
    clock_ticks_per_second, cpu_seconds, free_port, parse_number_flags_from, peak_rss_mib, ringtail_bin, Peer,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsdb::now_ms;

/// The prometheus-adapter Helm chart's default `rules.resource` (values.yaml), verbatim (the
/// fixture apiserver/tests/resource_metrics.rs reads too).
const HELM_CHART_RESOURCE_RULES: &str = include_str!("../../../apiserver/tests/fixtures/helm-resource-rules.yaml");

/// The two `containerQuery` templates above, as prometheus-adapter renders them.
const CPU_TEMPLATE: &str =
    "sum by (<<.GroupBy>>) (\n  rate(container_cpu_usage_seconds_total{container!=\"\",<<.LabelMatchers>>}[3m])\n)\n";
const MEMORY_TEMPLATE: &str = "sum by (<<.GroupBy>>) (\n  avg_over_time(container_memory_working_set_bytes{container!=\"\",<<.LabelMatchers>>}[3m])\n)\n";

const TOKEN: &str = "bench-token";
const STEP_MS: i64 = 15_000;
/// Grid points written at start: six minutes (the 3m window plus margin).
const HISTORY_STEPS: i64 = 24;
/// Series per remote-write request of the initial history.
const BACKFILL_SERIES_PER_REQUEST: usize = 3_000;

struct Options {
    pods: usize,
    namespaces: usize,
    requests: usize,
    warmup: usize,
    concurrency: usize,
    out: Option<PathBuf>,
}

fn parse_options() -> Result<Options, String> {
    let mut numbers = Vec::new();
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--out" {
            out = Some(PathBuf::from(args.next().ok_or("--out needs a directory")?));
        } else {
            numbers.push(arg);
        }
    }
    let flags = [("--pods", 5_000), ("--namespaces", 50), ("--requests", 200), ("--warmup", 20), ("--concurrency", 0)];
    let v = parse_number_flags_from(numbers, &flags)?;
    let namespaces = v[1] as usize;
    // 0 (the default, raised to 1 only when given) means every query of a request at once.
    let concurrency = if std::env::args().any(|a| a == "--concurrency") { v[4] as usize } else { 2 * namespaces };
    Ok(Options { pods: v[0] as usize, namespaces, requests: v[2] as usize, warmup: v[3] as usize, concurrency, out })
}

/// A deterministic pseudo-random sequence (splitmix64).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn hex(&mut self, chars: usize) -> String {
        (0..chars).map(|_| char::from_digit(self.below(16) as u32, 16).unwrap_or('0')).collect()
    }
}

struct Container {
    name: String,
    /// Whole nanocores, so the expected answer is exact.
    nanocores: i64,
    /// Whole bytes.
    bytes: i64,
}

struct Pod {
    namespace: String,
    name: String,
    containers: Vec<Container>,
}

/// `pods` pods spread over `namespaces` namespaces (round robin), each from one of a few
/// deployments, with 1–3 containers.
fn cluster(pods: usize, namespaces: usize) -> Vec<Pod> {
    let mut random = Random(18);
    const APPS: [&str; 8] = ["api", "web", "worker", "cache", "ingest", "search", "billing", "auth"];
    const SIDECARS: [&str; 2] = ["istio-proxy", "log-shipper"];
    (0..pods)
        .map(|i| {
            let namespace = format!("team-{:02}", i % namespaces);
            let app = APPS[random.below(APPS.len() as u64) as usize];
            let name = format!("{app}-{}-{}", random.hex(10), random.hex(5));
            let count = 1 + random.below(3) as usize;
            let containers = (0..count)
                .map(|c| {
                    let name = if c == 0 { app.to_string() } else { SIDECARS[c - 1].to_string() };
                    let nanocores = 100_000 + random.below(1_500_000_000) as i64;
                    // The working set is mostly whole pages; every fourth container not, so plain
                    // byte counts are served and parsed too.
                    let pages = 1_024 + random.below(500_000) as i64;
                    let bytes = if random.below(4) == 0 {
                        pages * 4_096 + 1 + random.below(4_000) as i64
                    } else {
                        pages * 4_096
                    };
                    Container { name, nanocores, bytes }
                })
                .collect();
            Pod { namespace, name, containers }
        })
        .collect()
}

/// One series as cAdvisor (through the kubelet's `/metrics/cadvisor`, kube-prometheus's
/// `kubelet` job) writes it, and how its value moves.
struct Series {
    labels: Vec<v1::Label>,
    value: SeriesValue,
}

enum SeriesValue {
    /// A counter at `start` at the first grid point, growing by `per_second`.
    Counter {
        start: f64,
        per_second: f64,
    },
    Gauge(f64),
}

impl Series {
    fn at(&self, ts_ms: i64, base_ms: i64) -> f64 {
        match self.value {
            SeriesValue::Counter { start, per_second } => start + per_second * ((ts_ms - base_ms) as f64 / 1000.0),
            SeriesValue::Gauge(value) => value,
        }
    }
}

fn all_series(pods: &[Pod]) -> Vec<Series> {
    let mut random = Random(42);
    let mut out = Vec::with_capacity(pods.len() * 8);
    for (i, pod) in pods.iter().enumerate() {
        let node = format!("node-{:03}", i % 100);
        let instance = format!("10.0.{}.{}:10250", (i % 100) / 250, (i % 100) % 250 + 1);
        let uid = format!("{}_{}_{}_{}_{}", random.hex(8), random.hex(4), random.hex(4), random.hex(4), random.hex(12));
        let pod_cgroup = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice");
        let total_cores: i64 = pod.containers.iter().map(|c| c.nanocores).sum();
        let total_bytes: i64 = pod.containers.iter().map(|c| c.bytes).sum();
        let mut members: Vec<(String, String, String, String, f64, f64)> = pod
            .containers
            .iter()
            .map(|c| {
                let id = random.hex(64);
                (
                    c.name.clone(),
                    format!("{pod_cgroup}/cri-containerd-{id}.scope"),
                    format!("registry.example.com/{}:1.{}", c.name, random.below(30)),
                    id,
                    c.nanocores as f64 / 1e9,
                    c.bytes as f64,
                )
            })
            .collect();
        // The pod-level cgroup: no container, image or name; its usage a little over the sum.
        members.push((
            String::new(),
            pod_cgroup.clone(),
            String::new(),
            String::new(),
            total_cores as f64 / 1e9 + 0.001,
            total_bytes as f64 + 1_200_000.0,
        ));
        for (container, id, image, name, cores, bytes) in members {
            let common = |metric: &str, cpu: bool| {
                let mut labels: Vec<(&str, String)> = vec![
                    ("__name__", metric.to_string()),
                    ("container", container.clone()),
                    ("endpoint", "https-metrics".into()),
                    ("id", id.clone()),
                    ("image", image.clone()),
                    ("instance", instance.clone()),
                    ("job", "kubelet".into()),
                    ("metrics_path", "/metrics/cadvisor".into()),
                    ("name", name.clone()),
                    ("namespace", pod.namespace.clone()),
                    ("node", node.clone()),
                    ("pod", pod.name.clone()),
                    ("service", "kubelet".into()),
                ];
                if cpu {
                    labels.push(("cpu", "total".into()));
                }
                // Empty labels are no labels in remote write.
                labels.retain(|(_, v)| !v.is_empty());
                labels.sort();
                labels.into_iter().map(|(n, v)| v1::Label { name: n.to_string(), value: v }).collect()
            };
            let start = 1_000.0 + random.below(1_000_000) as f64 / 7.0;
            out.push(Series {
                labels: common("container_cpu_usage_seconds_total", true),
                value: SeriesValue::Counter { start, per_second: cores },
            });
            out.push(Series {
                labels: common("container_memory_working_set_bytes", false),
                value: SeriesValue::Gauge(bytes),
            });
        }
    }
    out
}

/// The remote-write feed of both servers.
struct Feed {
    series: Vec<Series>,
    /// The first grid point written.
    base_ms: i64,
    /// The next grid point to write.
    next_ms: i64,
    urls: Vec<String>,
}

impl Feed {
    fn new(series: Vec<Series>, urls: Vec<String>) -> Feed {
        let last = now_ms() / STEP_MS * STEP_MS;
        let base_ms = last - HISTORY_STEPS * STEP_MS;
        Feed { series, base_ms, next_ms: base_ms, urls }
    }

    fn body(&self, series: &[Series], times: &[i64]) -> Vec<u8> {
        let timeseries = series
            .iter()
            .map(|s| v1::TimeSeries {
                labels: s.labels.clone(),
                samples: times.iter().map(|&t| v1::Sample { value: s.at(t, self.base_ms), timestamp: t }).collect(),
                exemplars: vec![],
                histograms: vec![],
            })
            .collect();
        encode_body(&v1::WriteRequest { timeseries, metadata: vec![] })
    }

    /// The history up to now: every series' samples in time order, a few thousand series a
    /// request.
    async fn backfill(&mut self, client: &reqwest::Client) -> Result<usize, String> {
        let last = now_ms() / STEP_MS * STEP_MS;
        let times: Vec<i64> = (0..).map(|k| self.next_ms + k * STEP_MS).take_while(|t| *t <= last).collect();
        for chunk in self.series.chunks(BACKFILL_SERIES_PER_REQUEST) {
            let body = self.body(chunk, &times);
            for url in &self.urls {
                ringtail_benches::remote_write_once(client, url, body.clone()).await?;
            }
        }
        self.next_ms = times.last().copied().unwrap_or(self.next_ms) + STEP_MS;
        Ok(times.len() * self.series.len())
    }

    /// Writes every grid point that has come due (one request per point and server); whether it
    /// wrote anything.
    async fn catch_up(&mut self, client: &reqwest::Client) -> Result<bool, String> {
        let mut wrote = false;
        while self.next_ms <= now_ms() {
            let body = self.body(&self.series, &[self.next_ms]);
            for url in &self.urls {
                ringtail_benches::remote_write_once(client, url, body.clone()).await?;
            }
            self.next_ms += STEP_MS;
            wrote = true;
        }
        Ok(wrote)
    }
}

async fn wait_ok(client: &reqwest::Client, url: &str) -> Result<(), String> {
    ringtail_benches::wait_ok(client, url, Duration::from_secs(60), Duration::from_millis(100)).await
}

/// Ringtail, standalone, the Helm chart's resource rules, no scraping (so that, as for
/// Prometheus, only the benchmark's requests cost CPU): the process, its HTTP base URL, a TLS
/// client trusting its generated CA, and its metrics-API base URL.
async fn start_ringtail(plain: &reqwest::Client) -> Result<(Peer, String, reqwest::Client, String), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (http_port, secure_port) = (free_port()?, free_port()?);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).map(|_| path.display().to_string()).map_err(|e| e.to_string())
    };
    let rules = write("adapter.yaml", HELM_CHART_RESOURCE_RULES)?;
    let config = write("ringtail.yaml", "scrape_configs: []\n")?;
    let tokens = write("tokens.csv", &format!("{TOKEN},bench,1\n"))?;
    let args: Vec<String> = [
        "serve",
        "--standalone",
        "--config",
        &config,
        "--data-dir",
        &dir.path().join("data").display().to_string(),
        "--listen",
        &format!("127.0.0.1:{http_port}"),
        "--secure-listen",
        &format!("127.0.0.1:{secure_port}"),
        "--adapter-config",
        &rules,
        "--adapter-tokens-file",
        &tokens,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ringtail =
        Peer::start("ringtail", &ringtail_bin()?, &args, &[("RINGTAIL_LOG", "warn")], http_port, dir, "ringtail.log")?;
    let http = format!("http://127.0.0.1:{http_port}");
    wait_ok(plain, &format!("{http}/-/ready")).await?;
    let ca_path = ringtail.dir().join("data-tls").join("ca.crt");
    let ca = std::fs::read(&ca_path).map_err(|e| format!("reading {}: {e}", ca_path.display()))?;
    let tls = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).map_err(|e| e.to_string())?)
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let secure = format!("https://localhost:{secure_port}");
    wait_ok(&tls, &format!("{secure}/healthz")).await?;
    Ok((ringtail, http, tls, secure))
}

async fn start_prometheus(plain: &reqwest::Client) -> Result<Peer, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port()?;
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n").map_err(|e| e.to_string())?;
    let args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--web.enable-remote-write-receiver".to_string(),
    ];
    let mut prometheus =
        Peer::start("prometheus", Path::new("/usr/bin/prometheus"), &args, &[], port, dir, "prometheus.log")?;
    let ready = format!("{}/-/ready", prometheus.url);
    prometheus.wait_ready(plain, &ready, Duration::from_secs(60), Duration::from_millis(100)).await?;
    Ok(prometheus)
}

/// `(namespace, pod) → container → (nanocores, bytes)`.
type Usage = BTreeMap<(String, String), BTreeMap<String, (f64, f64)>>;

fn expected_usage(pods: &[Pod]) -> Usage {
    pods.iter()
        .map(|p| {
            let containers =
                p.containers.iter().map(|c| (c.name.clone(), (c.nanocores as f64, c.bytes as f64))).collect();
            ((p.namespace.clone(), p.name.clone()), containers)
        })
        .collect()
}

/// A Kubernetes quantity as metrics-server prints usage (`123456789n`, `250m`, `2`, `5678Ki`,
/// `1Mi`, `1500`, `1k`), in units of `10^-scale`: whole nanocores with `scale` 9, bytes with 0.
fn parse_quantity(text: &str, scale: u32) -> Result<i128, String> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '-').unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let mantissa: i128 = digits.parse().map_err(|_| format!("quantity {text:?}: not an integer mantissa"))?;
    let binary = |power: u32| mantissa * 1024i128.pow(power) * 10i128.pow(scale);
    let decimal = |exponent: i32| {
        let exponent = exponent + scale as i32;
        if exponent >= 0 {
            Ok(mantissa * 10i128.pow(exponent as u32))
        } else {
            Err(format!("quantity {text:?} is finer than the unit"))
        }
    };
    match suffix {
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "" => decimal(0),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "Ki" => Ok(binary(1)),
        "Mi" => Ok(binary(2)),
        "Gi" => Ok(binary(3)),
        "Ti" => Ok(binary(4)),
        other => Err(format!("quantity {text:?}: unexpected suffix {other:?}")),
    }
}

/// A PodMetricsList as `(namespace, pod) → container → (nanocores, bytes)`.
fn parse_pod_metrics(body: &str) -> Result<Usage, String> {
    let list: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("PodMetricsList: {e}"))?;
    if list["kind"] != "PodMetricsList" {
        return Err(format!("not a PodMetricsList: {body:.300}"));
    }
    let mut out = Usage::new();
    for item in list["items"].as_array().ok_or("PodMetricsList without items")? {
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string).ok_or(format!("not a string in {item}"));
        let key = (text(&item["metadata"]["namespace"])?, text(&item["metadata"]["name"])?);
        let mut containers = BTreeMap::new();
        for c in item["containers"].as_array().ok_or(format!("no containers in {item}"))? {
            let cpu = parse_quantity(&text(&c["usage"]["cpu"])?, 9)? as f64;
            let memory = parse_quantity(&text(&c["usage"]["memory"])?, 0)? as f64;
            containers.insert(text(&c["name"])?, (cpu, memory));
        }
        if out.insert(key.clone(), containers).is_some() {
            return Err(format!("{key:?} listed twice"));
        }
    }
    Ok(out)
}

/// Adds a Prometheus query answer (`namespace` from the series, or the one given) to `usage`:
/// cpu in nanocores when `cpu`, else bytes.
fn add_prometheus_answer(usage: &mut Usage, body: &str, namespace: Option<&str>, cpu: bool) -> Result<(), String> {
    let answer: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("Prometheus answer: {e}"))?;
    if answer["status"] != "success" {
        return Err(format!("Prometheus: {body:.300}"));
    }
    for sample in answer["data"]["result"].as_array().ok_or("no result")? {
        let label = |name: &str| sample["metric"][name].as_str().unwrap_or("").to_string();
        let ns = namespace.map(str::to_string).unwrap_or_else(|| label("namespace"));
        let value: f64 =
            sample["value"][1].as_str().and_then(|v| v.parse().ok()).ok_or(format!("no value in {sample}"))?;
        let entry =
            usage.entry((ns, label("pod"))).or_default().entry(label("container")).or_insert((f64::NAN, f64::NAN));
        if cpu {
            entry.0 = value * 1e9;
        } else {
            entry.1 = value;
        }
    }
    Ok(())
}

/// Every pod and container of `got` equals `want` within 1 nanocore and 1 byte; the differences
/// (the first few) otherwise.
fn compare(what: &str, got: &Usage, want: &Usage) -> Result<(usize, usize), String> {
    let mut problems = Vec::new();
    let mut containers = 0;
    for (key, want_containers) in want {
        let Some(got_containers) = got.get(key) else {
            problems.push(format!("{}/{} missing", key.0, key.1));
            continue;
        };
        if got_containers.keys().ne(want_containers.keys()) {
            problems.push(format!(
                "{}/{}: containers {:?}, want {:?}",
                key.0,
                key.1,
                got_containers.keys(),
                want_containers.keys()
            ));
            continue;
        }
        for (name, (want_cpu, want_memory)) in want_containers {
            let (cpu, memory) = got_containers[name];
            containers += 1;
            // 1 nanocore / 1 byte of rounding, plus float noise.
            if !((cpu - want_cpu).abs() <= 1.0 + 1e-9 * want_cpu.abs()
                && (memory - want_memory).abs() <= 1.0 + 1e-12 * want_memory.abs())
            {
                problems.push(format!(
                    "{}/{} {name}: cpu {cpu} n, memory {memory} B; want {want_cpu} n, {want_memory} B",
                    key.0, key.1
                ));
            }
        }
    }
    for key in got.keys().filter(|k| !want.contains_key(*k)) {
        problems.push(format!("{}/{} not expected", key.0, key.1));
    }
    if problems.is_empty() {
        Ok((want.len(), containers))
    } else {
        let count = problems.len();
        problems.truncate(10);
        Err(format!("{what}: {count} differences, first: {}", problems.join("; ")))
    }
}

/// What prometheus-adapter sends for `pods` of all namespaces: per namespace, the cpu and memory
/// containerQuery with that namespace's pods.
fn adapter_queries(pods: &[Pod]) -> Vec<(String, bool, String)> {
    let mut by_namespace: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for pod in pods {
        by_namespace.entry(&pod.namespace).or_default().push(&pod.name);
    }
    let mut out = Vec::new();
    for (namespace, names) in by_namespace {
        let matchers = format!("namespace=\"{namespace}\",pod=~\"{}\"", names.join("|"));
        for (cpu, template) in [(true, CPU_TEMPLATE), (false, MEMORY_TEMPLATE)] {
            let query = template.replace("<<.LabelMatchers>>", &matchers).replace("<<.GroupBy>>", "pod,container");
            out.push((namespace.to_string(), cpu, query));
        }
    }
    out
}

/// The one query pair that answers the same across namespaces.
fn simple_queries() -> [(bool, String); 2] {
    let matchers = "pod!=\"\"";
    let group_by = "namespace,pod,container";
    [(true, CPU_TEMPLATE), (false, MEMORY_TEMPLATE)]
        .map(|(cpu, t)| (cpu, t.replace("<<.LabelMatchers>>", matchers).replace("<<.GroupBy>>", group_by)))
}

/// Runs `queries` (`(namespace or "", cpu?, text)`) against Prometheus at one evaluation time, at
/// most `concurrency` at once; the answers' bodies in order.
async fn prometheus_request(
    client: &reqwest::Client,
    url: &str,
    queries: &Arc<Vec<(String, bool, String)>>,
    concurrency: usize,
) -> Result<Vec<String>, String> {
    let time = format!("{:.3}", now_ms() as f64 / 1000.0);
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(queries.len());
    for i in 0..queries.len() {
        let (client, url, queries, limit, time) =
            (client.clone(), url.to_string(), queries.clone(), limit.clone(), time.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire().await.map_err(|e| e.to_string())?;
            let query = queries[i].2.as_str();
            let response = client
                .get(&url)
                .query(&[("query", query), ("time", time.as_str())])
                .send()
                .await
                .map_err(|e| format!("Prometheus query: {e}"))?;
            let status = response.status();
            let body = response.text().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("Prometheus query: {status}: {body:.300}"));
            }
            Ok::<String, String>(body)
        }));
    }
    let mut bodies = Vec::with_capacity(tasks.len());
    for task in tasks {
        bodies.push(task.await.map_err(|e| e.to_string())??);
    }
    Ok(bodies)
}

fn prometheus_usage(queries: &[(String, bool, String)], bodies: &[String]) -> Result<Usage, String> {
    let mut usage = Usage::new();
    for ((namespace, cpu, _), body) in queries.iter().zip(bodies) {
        add_prometheus_answer(&mut usage, body, (!namespace.is_empty()).then_some(namespace.as_str()), *cpu)?;
    }
    Ok(usage)
}

async fn ringtail_request(tls: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = tls.get(url).bearer_auth(TOKEN).send().await.map_err(|e| format!("Ringtail: {e}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("Ringtail: {status}: {body:.300}"));
    }
    Ok(body)
}

/// One measured series of requests.
#[derive(serde::Serialize)]
struct Run {
    name: String,
    requests: usize,
    /// Each measured request's latency, in order.
    latencies_ms: Vec<f64>,
    /// The server's CPU time over the measured requests, the feed's writes left out.
    cpu_seconds: f64,
    /// The CPU time of the feed's writes during the run, left out of `cpu_seconds`.
    feed_cpu_seconds: f64,
    feed_writes: usize,
    peak_rss_mib: f64,
}

impl Run {
    fn percentile(&self, q: f64) -> f64 {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        // Nearest rank.
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    fn mean(&self) -> f64 {
        self.latencies_ms.iter().sum::<f64>() / self.latencies_ms.len().max(1) as f64
    }

    fn cpu_ms_per_request(&self) -> f64 {
        self.cpu_seconds * 1000.0 / self.requests.max(1) as f64
    }

    fn line(&self) -> String {
        format!(
            "{:<40} requests {:>4}  p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  server CPU {:>7.2} ms/request  peak RSS {:>6.0} MiB  (feed writes {}, {:.2} s CPU left out)",
            self.name,
            self.requests,
            self.percentile(0.5),
            self.percentile(0.9),
            self.percentile(0.99),
            self.percentile(1.0),
            self.cpu_ms_per_request(),
            self.peak_rss_mib,
            self.feed_writes,
            self.feed_cpu_seconds,
        )
    }
}

/// `warmup` then `requests` sequential calls of `request` (each checked by it), the feed kept
/// fresh between two calls; latency per call and the CPU time of `pid` over the measured calls,
/// minus that of the feed's writes.
async fn measure<F, Fut>(
    name: &str,
    pid: u32,
    options: &Options,
    feed: &mut Feed,
    plain: &reqwest::Client,
    mut request: F,
) -> Result<Run, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let ticks = clock_ticks_per_second();
    let (mut cpu_start, mut feed_cpu, mut feed_writes) = (0.0, 0.0, 0);
    let mut latencies = Vec::with_capacity(options.requests);
    for i in 0..options.warmup + options.requests {
        let measuring = i >= options.warmup;
        if i == options.warmup {
            cpu_start = cpu_seconds(pid, ticks)?;
        }
        let before = cpu_seconds(pid, ticks)?;
        if feed.catch_up(plain).await? && measuring {
            feed_cpu += cpu_seconds(pid, ticks)? - before;
            feed_writes += 1;
        }
        let started = Instant::now();
        request().await.map_err(|e| format!("{name}, request {i}: {e}"))?;
        if measuring {
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let cpu = cpu_seconds(pid, ticks)? - cpu_start - feed_cpu;
    let run = Run {
        name: name.to_string(),
        requests: options.requests,
        latencies_ms: latencies,
        cpu_seconds: cpu,
        feed_cpu_seconds: feed_cpu,
        feed_writes,
        peak_rss_mib: peak_rss_mib(pid),
    };
    println!("{}", run.line());
    Ok(run)
}

/// What a check asks: Ringtail's `pods` URL and its TLS client, Prometheus's query URL and a
/// plain client, and the two Prometheus query sets.
struct Targets<'a> {
    tls: &'a reqwest::Client,
    pods_url: &'a str,
    plain: &'a reqwest::Client,
    query_url: &'a str,
    adapter: &'a Arc<Vec<(String, bool, String)>>,
    simple: &'a Arc<Vec<(String, bool, String)>>,
}

/// Checks Ringtail's PodMetricsList, Prometheus's answers to the adapter's queries and to the
/// simple pair against the values the data was built from (and so against each other).
async fn verify(label: &str, want: &Usage, targets: &Targets<'_>) -> Result<String, String> {
    let Targets { tls, pods_url, plain, query_url, adapter, simple } = *targets;
    let ringtail = parse_pod_metrics(&ringtail_request(tls, pods_url).await?)?;
    let (pods, containers) = compare(&format!("{label}: Ringtail's PodMetricsList"), &ringtail, want)?;
    let bodies = prometheus_request(plain, query_url, adapter, adapter.len()).await?;
    compare(&format!("{label}: Prometheus, prometheus-adapter's queries"), &prometheus_usage(adapter, &bodies)?, want)?;
    let bodies = prometheus_request(plain, query_url, simple, simple.len()).await?;
    compare(&format!("{label}: Prometheus, the single query pair"), &prometheus_usage(simple, &bodies)?, want)?;
    // What `kubectl top pod -A` prints: per-pod sums.
    let sums = |usage: &Usage| -> Vec<(f64, f64)> {
        usage.values().map(|c| c.values().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y))).collect()
    };
    if sums(&ringtail).iter().zip(sums(want)).any(|(g, w)| (g.0 - w.0).abs() > 3.0 || (g.1 - w.1).abs() > 3.0) {
        return Err(format!("{label}: per-pod sums differ"));
    }
    let line = format!(
        "{label}: all {pods} pods and {containers} containers agree (Ringtail's quantities, Prometheus's answers to both query sets, and the values written: within 1 nanocore and 1 byte)"
    );
    println!("{line}");
    Ok(line)
}

async fn run(options: Options) -> Result<(), String> {
    let plain =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().map_err(|e| e.to_string())?;
    let pods = cluster(options.pods, options.namespaces);
    let want = expected_usage(&pods);
    let containers: usize = pods.iter().map(|p| p.containers.len()).sum();

    let (ringtail, ringtail_http, tls, secure) = start_ringtail(&plain).await?;
    let prometheus = start_prometheus(&plain).await?;
    let mut feed = Feed::new(
        all_series(&pods),
        vec![format!("{ringtail_http}/api/v1/write"), format!("{}/api/v1/write", prometheus.url)],
    );
    let started = Instant::now();
    let samples = feed.backfill(&plain).await?;
    println!(
        "fed {} series ({} pods in {} namespaces, {containers} containers, plus the pod-level series) × {} grid points = {samples} samples to each in {:.1} s",
        feed.series.len(),
        pods.len(),
        options.namespaces,
        HISTORY_STEPS + 1,
        started.elapsed().as_secs_f64()
    );
    feed.catch_up(&plain).await?;

    let pods_url = format!("{secure}/apis/metrics.k8s.io/v1beta1/pods");
    let query_url = format!("{}/api/v1/query", prometheus.url);
    let adapter = Arc::new(adapter_queries(&pods));
    let simple: Arc<Vec<(String, bool, String)>> =
        Arc::new(simple_queries().into_iter().map(|(cpu, q)| (String::new(), cpu, q)).collect());
    let targets = Targets {
        tls: &tls,
        pods_url: &pods_url,
        plain: &plain,
        query_url: &query_url,
        adapter: &adapter,
        simple: &simple,
    };
    let mut checks = vec![verify("before", &want, &targets).await?];

    // Prometheus's own account of one query of the simple pair (execution, not JSON or HTTP).
    let stats = plain
        .get(&query_url)
        .query(&[("query", simple[0].2.as_str()), ("stats", "all")])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let stats: serde_json::Value = serde_json::from_str(&stats).map_err(|e| e.to_string())?;
    let timings = format!(
        "Prometheus's timings of the simple pair's cpu query (stats=all): {}",
        stats["data"]["stats"]["timings"]
    );
    println!("{timings}");
    checks.push(timings);
    let load_before = load_average();

    let expect_pods = pods.len();
    let ringtail_run =
        measure("ringtail GET metrics.k8s.io pods (TLS)", ringtail.pid(), &options, &mut feed, &plain, || {
            let (tls, url) = (tls.clone(), pods_url.clone());
            async move {
                let body = ringtail_request(&tls, &url).await?;
                let items = body.matches("\"containers\"").count();
                if items != expect_pods {
                    return Err(format!("{items} pods in the answer, want {expect_pods}"));
                }
                Ok(())
            }
        })
        .await?;

    let series_count = |bodies: &[String]| bodies.iter().map(|b| b.matches("\"metric\":{").count()).sum::<usize>();
    let concurrency = options.concurrency;
    let adapter_run =
        measure("prometheus, prometheus-adapter's queries", prometheus.pid(), &options, &mut feed, &plain, || {
            let (plain, url, adapter) = (plain.clone(), query_url.clone(), adapter.clone());
            async move {
                let bodies = prometheus_request(&plain, &url, &adapter, concurrency).await?;
                let got = series_count(&bodies);
                if got != 2 * containers {
                    return Err(format!("{got} series in the answers, want {}", 2 * containers));
                }
                Ok(())
            }
        })
        .await?;
    let simple_run = measure("prometheus, one query pair", prometheus.pid(), &options, &mut feed, &plain, || {
        let (plain, url, simple) = (plain.clone(), query_url.clone(), simple.clone());
        async move {
            let bodies = prometheus_request(&plain, &url, &simple, 2).await?;
            let got = series_count(&bodies);
            if got != 2 * containers {
                return Err(format!("{got} series in the answers, want {}", 2 * containers));
            }
            Ok(())
        }
    })
    .await?;
    feed.catch_up(&plain).await?;
    checks.push(verify("after", &want, &targets).await?);

    checks
        .push(format!("load average (1/5/15 min) before the measured runs: {load_before}; after: {}", load_average()));
    let ratios = |base: &Run| {
        format!(
            "Ringtail / {}: CPU per request {:.3}, p50 {:.3}, p90 {:.3}, p99 {:.3}",
            base.name,
            ringtail_run.cpu_ms_per_request() / base.cpu_ms_per_request(),
            ringtail_run.percentile(0.5) / base.percentile(0.5),
            ringtail_run.percentile(0.9) / base.percentile(0.9),
            ringtail_run.percentile(0.99) / base.percentile(0.99),
        )
    };
    let ratio_lines = [ratios(&adapter_run), ratios(&simple_run)];
    for line in &ratio_lines {
        println!("{line}");
    }
    let acceptance = format!(
        "acceptance (p99 < 20 ms and less CPU per request than Prometheus with the adapter's queries): p99 {:.2} ms, CPU {:.2} vs {:.2} ms/request: {}",
        ringtail_run.percentile(0.99),
        ringtail_run.cpu_ms_per_request(),
        adapter_run.cpu_ms_per_request(),
        if ringtail_run.percentile(0.99) < 20.0 && ringtail_run.cpu_ms_per_request() < adapter_run.cpu_ms_per_request() {
            "met"
        } else {
            "NOT met"
        }
    );
    println!("{acceptance}");

    if let Some(out) = &options.out {
        let runs = [&ringtail_run, &adapter_run, &simple_run];
        write_results(out, &options, &pods, containers, feed.series.len(), &runs, &ratio_lines, &checks, &acceptance)?;
        println!("results in {}", out.display());
    }
    drop(ringtail);
    drop(prometheus);
    Ok(())
}

/// `/proc/loadavg`'s first three fields: the machine is shared, so the report says how busy it was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

#[allow(clippy::too_many_arguments)]
fn write_results(
    out: &Path,
    options: &Options,
    pods: &[Pod],
    containers: usize,
    series: usize,
    runs: &[&Run],
    ratio_lines: &[String],
    checks: &[String],
    acceptance: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut md = String::new();
    md.push_str("# metrics.k8s.io `pods` across all namespaces: Ringtail and Prometheus 2.42\n\n");
    md.push_str(&format!(
        "{} pods in {} namespaces, {containers} containers, {series} cAdvisor-shaped series; {} measured sequential requests after {} warm-up requests each; Prometheus queries of one request {} at once.\n\n",
        pods.len(), options.namespaces, options.requests, options.warmup, options.concurrency
    ));
    md.push_str("| run | p50 ms | p90 ms | p99 ms | max ms | mean ms | server CPU ms/request | peak RSS MiB |\n|---|---|---|---|---|---|---|---|\n");
    for run in runs {
        md.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |\n",
            run.name,
            run.percentile(0.5),
            run.percentile(0.9),
            run.percentile(0.99),
            run.percentile(1.0),
            run.mean(),
            run.cpu_ms_per_request(),
            run.peak_rss_mib
        ));
    }
    md.push('\n');
    for line in ratio_lines.iter().chain(checks).chain(std::iter::once(&acceptance.to_string())) {
        md.push_str(&format!("- {line}\n"));
    }
    std::fs::write(out.join("report.md"), md).map_err(|e| e.to_string())?;
    let raw = serde_json::json!({
        "pods": pods.len(),
        "namespaces": options.namespaces,
        "containers": containers,
        "series": series,
        "requests": options.requests,
        "warmup": options.warmup,
        "concurrency": options.concurrency,
        "runs": runs,
        "ratios": ratio_lines,
        "checks": checks,
    });
    let text = serde_json::to_string_pretty(&raw).map_err(|e| e.to_string())?;
    std::fs::write(out.join("raw.json"), text).map_err(|e| e.to_string())
}

fn main() {
    ringtail_benches::run_main("resource_metrics_compare", parse_options, run);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_metrics_server_prints_them() {
        assert_eq!(parse_quantity("123456789n", 9), Ok(123_456_789));
        assert_eq!(parse_quantity("250m", 9), Ok(250_000_000));
        assert_eq!(parse_quantity("2", 9), Ok(2_000_000_000));
        assert_eq!(parse_quantity("1u", 9), Ok(1_000));
        assert_eq!(parse_quantity("5678Ki", 0), Ok(5_814_272));
        assert_eq!(parse_quantity("1Mi", 0), Ok(1_048_576));
        assert_eq!(parse_quantity("1500", 0), Ok(1_500));
        assert_eq!(parse_quantity("1k", 0), Ok(1_000));
        assert!(parse_quantity("250m", 0).is_err(), "finer than a byte");
        assert!(parse_quantity("1.5", 9).is_err());
        assert!(parse_quantity("1Xi", 0).is_err());
    }

    #[test]
    fn compare_allows_rounding_only() {
        let usage = |cpu: f64, memory: f64| -> Usage {
            BTreeMap::from([(("ns".into(), "p".into()), BTreeMap::from([("c".to_string(), (cpu, memory))]))])
        };
        let want = usage(123_456_789.0, 4096.0);
        assert!(compare("t", &usage(123_456_789.4, 4096.0), &want).is_ok());
        assert!(compare("t", &usage(123_456_791.0, 4096.0), &want).is_err());
        assert!(compare("t", &usage(123_456_789.0, 4098.0), &want).is_err());
        assert!(compare("t", &usage(f64::NAN, 4096.0), &want).is_err());
        assert!(compare("t", &Usage::new(), &want).is_err());
    }

    #[test]
    fn the_adapter_queries_are_one_pair_per_namespace() {
        let pods = cluster(10, 2);
        let queries = adapter_queries(&pods);
        assert_eq!(queries.len(), 4);
        let (namespace, cpu, text) = &queries[0];
        assert!(*cpu);
        assert!(text.starts_with(
            "sum by (pod,container) (\n  rate(container_cpu_usage_seconds_total{container!=\"\",namespace=\""
        ));
        assert!(text.contains(&format!("namespace=\"{namespace}\",pod=~\"")), "{text}");
        assert_eq!(text.matches('|').count(), 4, "five pods per namespace: {text}");
    }
}
