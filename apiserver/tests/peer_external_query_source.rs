//! Real peers: the adapter rules of the seed scenarios (an inference service's `ei_scale_ratio`
//! per pod, Seldon's `infer_rps` on models, servers, pods and namespaces, Istio's
//! `requests_per_second`, DCGM GPU utilisation, Object metrics on a Service, an external metric)
//! evaluated through an external query source — a real VictoriaMetrics, a real Prometheus 2.42,
//! and vmauth routing by bearer token in front of VictoriaMetrics — by Ringtail processes whose
//! own stores are empty, must answer exactly what a Ringtail holding the same data answers
//! locally. A stub source (for what no real engine does on demand) checks that tenancy headers,
//! the bearer token and POST reach the source, and that a failing, refusing or slow source fails
//! the request (503/500) and never yields a value.

mod adapter_support;
mod ingest_common;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use ingest::proto::v1;
use ingest_common::*;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The seed scenarios' rules, in prometheus-adapter's format.
const RULES: &str = r#"
rules:
- seriesQuery: 'ei_scale_ratio{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: 'avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
- seriesQuery: 'DCGM_FI_DEV_GPU_UTIL{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^DCGM_FI_DEV_GPU_UTIL$", as: "gpu_utilization"}
  metricsQuery: 'avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
- seriesQuery: '{__name__=~"^seldon_model.*_total",namespace!=""}'
  seriesFilters: [{isNot: "^seldon_.*_seconds_total"}]
  resources:
    overrides:
      model: {group: "mlops.seldon.io", resource: "model"}
      server: {group: "mlops.seldon.io", resource: "server"}
      pod: {resource: "pod"}
      namespace: {resource: "namespace"}
  name: {matches: "^seldon_model_(.*)_total", as: "${1}_rps"}
  metricsQuery: 'sum by (<<.GroupBy>>) (rate(<<.Series>>{<<.LabelMatchers>>}[2m]))'
- seriesQuery: 'istio_requests_total{destination_service_namespace!="",destination_service_name!=""}'
  resources:
    overrides:
      destination_service_namespace: {resource: namespace}
      destination_service_name: {resource: service}
  name: {matches: "^istio_requests_total$", as: "requests_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
- seriesQuery: '{__name__=~"^(http_requests|cpu_capacity_remaining)$",namespace!="",service!=""}'
  resources: {overrides: {namespace: {resource: namespace}, service: {resource: service}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: 'queue_depth{namespace!=""}'
  resources: {overrides: {namespace: {resource: namespace}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)'
"#;

/// The requests an HPA (and `kubectl get --raw`) makes for the seed scenarios.
const PATHS: &[&str] = &[
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/*/ei_scale_ratio",
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/*/ei_scale_ratio?labelSelector=pod%20in%20(infer-0,infer-2)",
    "/apis/custom.metrics.k8s.io/v1beta1/namespaces/ml/pods/infer-1/gpu_utilization",
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/*/gpu_utilization?labelSelector=gpu%3D0",
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/seldon/models.mlops.seldon.io/*/infer_rps",
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/seldon/servers.mlops.seldon.io/mlserver/infer_rps",
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/seldon/pods/*/infer_rps",
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/seldon/metrics/infer_rps",
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/*/requests_per_second",
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/frontend/http_requests",
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/frontend/cpu_capacity_remaining",
    "/apis/external.metrics.k8s.io/v1beta1/namespaces/ml/queue_depth",
];

/// Items every path must serve (so an empty answer everywhere cannot pass).
const EXPECTED_ITEMS: &[usize] = &[3, 2, 1, 3, 2, 1, 2, 1, 2, 1, 1, 2];

const STEP_MS: i64 = 5_000;

/// One series of the scenarios: labels, and the value at a time (counters grow linearly, so
/// every engine's `rate` is the slope exactly).
struct ScenarioSeries {
    labels: Vec<(&'static str, &'static str)>,
    value_at: Box<dyn Fn(i64) -> f64 + Send + Sync>,
}

fn scenario() -> Vec<ScenarioSeries> {
    let gauge = |value: f64| -> Box<dyn Fn(i64) -> f64 + Send + Sync> { Box::new(move |_| value) };
    // A counter far from zero (no extrapolation towards zero) rising `per_second`.
    let counter = |per_second: f64| -> Box<dyn Fn(i64) -> f64 + Send + Sync> {
        Box::new(move |ts_ms| 1.0e6 + per_second * (ts_ms as f64 / 1000.0 - 1.7e9))
    };
    let mut out = Vec::new();
    for (pod, ratio, gpu) in [("infer-0", 0.5, 40.0), ("infer-1", 1.25, 61.5), ("infer-2", 2.0, 85.0)] {
        out.push(ScenarioSeries {
            labels: vec![("__name__", "ei_scale_ratio"), ("namespace", "ml"), ("pod", pod)],
            value_at: gauge(ratio),
        });
        out.push(ScenarioSeries {
            labels: vec![("__name__", "DCGM_FI_DEV_GPU_UTIL"), ("namespace", "ml"), ("pod", pod), ("gpu", "0")],
            value_at: gauge(gpu),
        });
    }
    for (model, pod, rps) in [("iris", "mlserver-0", 2.0), ("iris", "mlserver-1", 3.5), ("wine", "mlserver-1", 0.25)] {
        out.push(ScenarioSeries {
            labels: vec![
                ("__name__", "seldon_model_infer_total"),
                ("namespace", "seldon"),
                ("model", model),
                ("server", "mlserver"),
                ("pod", pod),
            ],
            value_at: counter(rps),
        });
    }
    for (service, code, rps) in [("cart", "200", 12.0), ("cart", "500", 0.5), ("checkout", "200", 4.0)] {
        out.push(ScenarioSeries {
            labels: vec![
                ("__name__", "istio_requests_total"),
                ("destination_service_namespace", "shop"),
                ("destination_service_name", service),
                ("response_code", code),
            ],
            value_at: counter(rps),
        });
    }
    for (name, value) in [("http_requests", 42.0), ("cpu_capacity_remaining", 0.3)] {
        out.push(ScenarioSeries {
            labels: vec![("__name__", name), ("namespace", "shop"), ("service", "frontend")],
            value_at: gauge(value),
        });
    }
    for (queue, depth) in [("jobs", 17.0), ("retries", 3.0)] {
        out.push(ScenarioSeries {
            labels: vec![("__name__", "queue_depth"), ("namespace", "ml"), ("queue", queue)],
            value_at: gauge(depth),
        });
    }
    out
}

/// The scenarios' samples at `timestamps`, as one remote-write body.
fn write_body(series: &[ScenarioSeries], timestamps: &[i64]) -> Vec<u8> {
    let timeseries = series
        .iter()
        .map(|s| {
            let samples: Vec<(i64, f64)> = timestamps.iter().map(|&t| (t, (s.value_at)(t))).collect();
            ingest_common::series(&s.labels, &samples)
        })
        .collect();
    ingest::remote_write::encode_body(&v1::WriteRequest { timeseries, metadata: vec![] })
}

async fn write_everywhere(urls: &[String], body: Vec<u8>) {
    for url in urls {
        let response = post_write(url, "application/x-protobuf", body.clone()).await;
        let status = response.status();
        assert!(status.is_success(), "remote write to {url}: {status} {}", response.text().await.unwrap_or_default());
    }
}

/// A `ringtail serve` with the adapter on a loopback TLS port.
struct AdapterNode {
    ringtail: Ringtail,
    secure_port: u16,
}

impl AdapterNode {
    async fn start(rules: &str, extra_args: &[&str]) -> AdapterNode {
        let rules_dir = tempfile::tempdir().expect("temp dir");
        let rules_path = rules_dir.path().join("adapter.yaml");
        std::fs::write(&rules_path, rules).expect("writing rules");
        let secure_port = free_port();
        let mut args = vec![
            "--secure-listen".to_string(),
            format!("127.0.0.1:{secure_port}"),
            "--adapter-config".to_string(),
            rules_path.display().to_string(),
        ];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &args).await;
        // The rules file is read at start and watched; keep it with the node's directory.
        let kept = ringtail.dir.path().join("adapter.yaml");
        std::fs::copy(&rules_path, kept).expect("keeping the rules");
        AdapterNode { ringtail, secure_port }
    }

    fn https(&self) -> reqwest::Client {
        adapter_support::https_trusting(&self.ringtail.dir.path().join("data-tls").join("ca.crt"))
    }

    /// GET `path` on the metrics APIs: status and body.
    async fn get(&self, path: &str) -> (u16, String) {
        let url = format!("https://localhost:{}{path}", self.secure_port);
        match self.https().get(url).send().await {
            Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    /// The answer to `path` as object (or external metric labels) → milli-value.
    async fn values(&self, path: &str) -> Result<BTreeMap<String, i64>, String> {
        let (status, body) = self.get(path).await;
        if status != 200 {
            return Err(format!("{path}: {status} {body}"));
        }
        let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{path}: {e}: {body}"))?;
        let items = json["items"].as_array().ok_or_else(|| format!("{path}: no items: {body}"))?;
        let mut out = BTreeMap::new();
        for item in items {
            let key = match item.get("describedObject") {
                Some(object) => object["name"].as_str().unwrap_or_default().to_string(),
                None => item["metricLabels"].to_string(),
            };
            out.insert(key, adapter_support::milli(&item["value"]));
        }
        Ok(out)
    }

    /// Series of the scenarios in the node's own store (none for a node reading a source).
    async fn stored_scenario_series(&self) -> usize {
        let url = format!("{}/api/v1/series", self.ringtail.url());
        let selector = "{__name__=~\"ei_scale_ratio|DCGM_FI_DEV_GPU_UTIL|seldon_model_infer_total|istio_requests_total|http_requests|cpu_capacity_remaining|queue_depth\"}";
        let json: serde_json::Value = client()
            .get(url)
            .query(&[("match[]", selector)])
            .send()
            .await
            .expect("series")
            .json()
            .await
            .expect("series JSON");
        json["data"].as_array().map(Vec::len).unwrap_or(usize::MAX)
    }
}

/// Every path answered alike by `node` and `reference`; the first difference otherwise.
async fn difference(reference: &AdapterNode, node: &AdapterNode) -> Option<String> {
    for (path, expected_items) in PATHS.iter().zip(EXPECTED_ITEMS) {
        let want = match reference.values(path).await {
            Ok(values) => values,
            Err(e) => return Some(format!("local: {e}")),
        };
        if want.len() != *expected_items {
            return Some(format!("local {path}: {} items, want {expected_items}: {want:?}", want.len()));
        }
        let got = match node.values(path).await {
            Ok(values) => values,
            Err(e) => return Some(e),
        };
        let same = want.len() == got.len()
            && want.iter().zip(&got).all(|((wk, wv), (gk, gv))| wk == gk && (wv - gv).abs() <= 1 + wv.abs() / 100_000);
        if !same {
            return Some(format!("{path}: local {want:?}, through the source {got:?}"));
        }
    }
    None
}

/// The custom metrics `node` lists, sorted.
async fn custom_metric_names(node: &AdapterNode) -> Vec<String> {
    let (status, body) = node.get("/apis/custom.metrics.k8s.io/v1beta2").await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("resource list");
    let mut names: Vec<String> = json["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

fn start_victoria_metrics(dir: &Path) -> (ChildGuard, String) {
    let port = free_port();
    let mut command = Command::new(peer::VICTORIA_METRICS.binary);
    command
        .arg(format!("-storageDataPath={}", dir.join("vm").display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=10y")
        .arg("-search.disableCache")
        // Answer instant queries at the requested time, not 30 s before it.
        .arg("-search.latencyOffset=0s");
    let guard = ChildGuard::spawn("victoria-metrics", &mut command, &dir.join("vm.log"));
    (guard, format!("http://127.0.0.1:{port}"))
}

fn start_vmauth(dir: &Path, token: &str, backend: &str) -> (ChildGuard, String) {
    let port = free_port();
    let config = dir.join("vmauth.yml");
    std::fs::write(&config, format!("users:\n- bearer_token: \"{token}\"\n  url_prefix: \"{backend}\"\n"))
        .expect("vmauth config");
    let mut command = Command::new(peer::VMAUTH.binary);
    command.arg(format!("-auth.config={}", config.display())).arg(format!("-httpListenAddr=127.0.0.1:{port}"));
    let guard = ChildGuard::spawn("vmauth", &mut command, &dir.join("vmauth.log"));
    (guard, format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenarios_answer_through_victoria_metrics_prometheus_and_vmauth_as_locally() {
    if !peer::peers_installed(
        "seed_scenarios_answer_through_victoria_metrics_prometheus_and_vmauth_as_locally",
        &[peer::PROMETHEUS, peer::VICTORIA_METRICS, peer::VMAUTH],
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (vm, vm_url) = start_victoria_metrics(dir.path());
    wait_http_ok(&format!("{vm_url}/health"), START_TIMEOUT).await;
    let prometheus = Prometheus::start_with(
        "global: {scrape_interval: 1h}\nscrape_configs: []\n",
        &["--web.enable-remote-write-receiver"],
    )
    .await;
    let local = AdapterNode::start(RULES, &[]).await;

    // Five minutes of history every 5 s, then a sample every 5 s while the test runs, to the
    // local Ringtail and both engines alike.
    let sinks = vec![local.ringtail.url(), vm_url.clone(), prometheus.url()];
    let series = Arc::new(scenario());
    let now = tsdb::now_ms() / STEP_MS * STEP_MS;
    let history: Vec<i64> = (0..60).map(|i| now - (60 - i) * STEP_MS).collect();
    write_everywhere(&sinks, write_body(&series, &history)).await;
    let writer = {
        let (sinks, series) = (sinks.clone(), series.clone());
        tokio::spawn(async move {
            let mut next = now;
            loop {
                let wait = next - tsdb::now_ms();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                }
                write_everywhere(&sinks, write_body(&series, &[next])).await;
                next += STEP_MS;
            }
        })
    };

    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "tenant-a-secret\n").expect("token file");
    let (_vmauth, vmauth_url) = start_vmauth(dir.path(), "tenant-a-secret", &vm_url);
    wait_http_ok(&format!("{vmauth_url}/health"), START_TIMEOUT).await;
    let through_vm = AdapterNode::start(RULES, &["--prometheus-url", &vm_url]).await;
    let prometheus_url = prometheus.url();
    let through_prometheus =
        AdapterNode::start(RULES, &["--prometheus-url", &prometheus_url, "--prometheus-verb", "POST"]).await;
    let token_arg = token_file.display().to_string();
    let through_vmauth =
        AdapterNode::start(RULES, &["--prometheus-url", &vmauth_url, "--prometheus-token-file", &token_arg]).await;

    for (name, node) in
        [("VictoriaMetrics", &through_vm), ("Prometheus", &through_prometheus), ("vmauth", &through_vmauth)]
    {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let Some(diff) = difference(&local, node).await else { break };
            assert!(
                Instant::now() < deadline,
                "through {name}: {diff}\nlog:\n{}",
                node.ringtail.log().lines().rev().take(20).collect::<Vec<_>>().join("\n")
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(node.stored_scenario_series().await, 0, "{name}: the node's own store stays empty");
    }
    // Discovery lists the same metrics through the source as locally.
    let local_names = custom_metric_names(&local).await;
    assert!(local_names.contains(&"models.mlops.seldon.io/infer_rps".to_string()), "{local_names:?}");
    assert_eq!(custom_metric_names(&through_vm).await, local_names);
    assert_eq!(custom_metric_names(&through_prometheus).await, local_names);

    // vmauth routes by bearer token: a token it does not know fails the request — no value.
    std::fs::write(&token_file, "someone-else\n").expect("token file");
    let (status, body) = through_vmauth.get(PATHS[0]).await;
    assert_eq!(status, 503, "a refused token is 'unavailable', never a value: {body}");
    assert!(body.contains("auth token"), "vmauth's reason is passed on: {body}");
    // And VictoriaMetrics gone: requests fail, they do not answer 0.
    writer.abort();
    drop(vm);
    let (status, body) = through_vm.get(PATHS[2]).await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = local.get(PATHS[2]).await;
    assert_eq!(status, 200, "the local node never needed the source");
}

/// What the stub source saw: method, path, headers, and the query (URL or form body).
#[derive(Debug, Clone)]
struct SeenCall {
    method: Method,
    path: String,
    headers: HeaderMap,
    params: String,
}

/// How the stub answers queries.
const STUB_OK: u8 = 0;
const STUB_FAIL: u8 = 1;
const STUB_REFUSE: u8 = 2;
const STUB_SLOW: u8 = 3;
const STUB_HUGE: u8 = 4;

#[derive(Clone)]
struct Stub {
    seen: Arc<Mutex<Vec<SeenCall>>>,
    mode: Arc<AtomicU8>,
}

async fn stub_handler(
    State(stub): State<Stub>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let params = if method == Method::POST { body } else { uri.query().unwrap_or_default().to_string() };
    stub.seen.lock().push(SeenCall { method, path: uri.path().to_string(), headers, params });
    if uri.path().ends_with("/api/v1/series") {
        let series = r#"{"status":"success","data":[{"__name__":"tenant_jobs","namespace":"ml","pod":"worker-0"}]}"#;
        return series.into_response();
    }
    match stub.mode.load(Ordering::Relaxed) {
        STUB_FAIL => (StatusCode::INTERNAL_SERVER_ERROR, "store gateway exploded").into_response(),
        STUB_REFUSE => (
            StatusCode::BAD_REQUEST,
            r#"{"status":"error","errorType":"bad_data","error":"1:1: parse error: unexpected character"}"#,
        )
            .into_response(),
        STUB_SLOW => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "too late".into_response()
        }
        STUB_HUGE => {
            let mut body = String::from(r#"{"status":"success","data":{"resultType":"vector","result":["#);
            body.push_str(&"x".repeat(65 << 20));
            body.into_response()
        }
        _ => {
            let ts = tsdb::now_ms() as f64 / 1000.0;
            format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"pod":"worker-0"}},"value":[{ts},"7.5"]}}]}}}}"#
            )
            .into_response()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenancy_headers_and_token_reach_the_source_and_its_failures_fail_the_request() {
    let stub = Stub { seen: Arc::new(Mutex::new(Vec::new())), mode: Arc::new(AtomicU8::new(STUB_OK)) };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("stub listens");
    let stub_url = format!("http://{}/prometheus", listener.local_addr().expect("addr"));
    let app = axum::Router::new().fallback(stub_handler).with_state(stub.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("temp dir");
    let token_file: PathBuf = dir.path().join("token");
    std::fs::write(&token_file, "tenant-token\n").expect("token file");
    let rules = "rules:\n- seriesQuery: 'tenant_jobs{namespace!=\"\",pod!=\"\"}'\n  \
                 resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}\n  \
                 querySource: external\n  \
                 metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n";
    let token_arg = token_file.display().to_string();
    let node = AdapterNode::start(
        rules,
        &[
            "--prometheus-url",
            &stub_url,
            "--prometheus-header",
            "X-Scope-OrgID=tenant-a",
            "--prometheus-header",
            "THANOS-TENANT=tenant-a",
            "--prometheus-token-file",
            &token_arg,
            "--prometheus-verb",
            "POST",
            "--prometheus-timeout",
            "1s",
        ],
    )
    .await;
    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/worker-0/tenant_jobs";
    let values = node.values(path).await.expect("served through the stub");
    assert_eq!(values, BTreeMap::from([("worker-0".to_string(), 7500)]));
    let seen = stub.seen.lock().clone();
    for path in ["/prometheus/api/v1/series", "/prometheus/api/v1/query"] {
        let call = seen.iter().find(|c| c.path == path).unwrap_or_else(|| panic!("no call to {path}: {seen:?}"));
        assert_eq!(call.headers.get("x-scope-orgid").and_then(|v| v.to_str().ok()), Some("tenant-a"));
        assert_eq!(call.headers.get("thanos-tenant").and_then(|v| v.to_str().ok()), Some("tenant-a"));
        assert_eq!(
            call.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some("Bearer tenant-token"),
            "the token file's content, trimmed"
        );
        assert_eq!(call.method, Method::POST);
    }
    let query = seen.iter().rev().find(|c| c.path.ends_with("/query")).expect("a query call");
    let form: BTreeMap<String, String> = reqwest::Url::parse(&format!("http://form/?{}", query.params))
        .expect("a form body")
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(
        form.get("query").map(String::as_str),
        Some(r#"sum(tenant_jobs{namespace="ml",pod="worker-0"}) by (pod)"#)
    );
    assert!(form.contains_key("time"), "{form:?}");

    for (mode, want_status, want_text) in [
        (STUB_FAIL, 503, "store gateway exploded"),
        (STUB_REFUSE, 500, "parse error"),
        (STUB_SLOW, 503, "timed out"),
        (STUB_HUGE, 503, "larger than 64 MiB"),
    ] {
        stub.mode.store(mode, Ordering::Relaxed);
        let (status, body) = node.get(path).await;
        assert_eq!(status, want_status, "mode {mode}: {body}");
        assert!(body.contains(want_text), "mode {mode}: {body}");
    }
    stub.mode.store(STUB_OK, Ordering::Relaxed);
    assert!(node.values(path).await.is_ok(), "the node recovers with the source");
    server.abort();
}
