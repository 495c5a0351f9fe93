//! Shared harness of the adapter tests: an in-process Ringtail server (real listeners, real TLS)
//! whose store the test fills directly, a kubeconfig trusting its generated CA, the real
//! `/usr/bin/kubectl`, and the HPA controller's replica formulas to check served values against.
#![allow(dead_code)]

use apiserver::adapter::provider::quantity::Quantity;
use apiserver::server::Server;
use apiserver::settings::Settings as Config;
use std::path::PathBuf;
use std::time::Duration;
use tsdb::now_ms;

pub const KUBECTL: &str = "/usr/bin/kubectl";
/// The HPA controller's default tolerance (`--horizontal-pod-autoscaler-tolerance`).
pub const HPA_TOLERANCE: f64 = 0.1;

/// A running in-process Ringtail with the adapter on a loopback TLS port.
pub struct Harness {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub secure_addr: std::net::SocketAddr,
    pub ca: PathBuf,
    pub adapter_config: Option<PathBuf>,
}

/// A series to append: labels and `(timestamp ms, value)` samples.
pub type TestSeries<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>);

impl Harness {
    /// Starts Ringtail with `rules` as `--adapter-config` (`None`: the embedded default) and,
    /// optionally, a tokens file body.
    pub async fn start(rules: Option<&str>, tokens: Option<&str>) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".parse().expect("addr"),
            scrape_configs: Some(serde_yaml::from_str("[]").expect("yaml")),
            ..Config::default()
        };
        config.adapter.secure_listen = "127.0.0.1:0".parse().expect("addr");
        config.adapter.secure_listen_explicit = true;
        let adapter_config = rules.map(|text| {
            let path = dir.path().join("adapter.yaml");
            std::fs::write(&path, text).expect("writing rules");
            path
        });
        config.adapter.config_file = adapter_config.clone();
        if let Some(tokens) = tokens {
            let path = dir.path().join("tokens.csv");
            std::fs::write(&path, tokens).expect("writing tokens");
            config.adapter.tokens_file = Some(path);
        }
        let server = Server::start(config).await.expect("server starts");
        let secure_addr = server.adapter.secure_addr.expect("adapter listening");
        let ca = server.adapter.generated_ca.clone().expect("generated CA");
        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, &secure_addr.to_string(), &ca, tokens.and_then(|t| t.split(',').next()));
        Harness { server: Some(server), dir, kubeconfig, secure_addr, ca, adapter_config }
    }

    pub fn db(&self) -> &tsdb::Db {
        &self.server.as_ref().expect("running").state.db
    }

    pub fn engine(&self) -> &query::Engine {
        &self.server.as_ref().expect("running").state.engine
    }

    /// Appends samples `(labels, [(ts_ms, value)])`.
    pub fn append(&self, series: &[TestSeries<'_>]) {
        let samples: Vec<Vec<tsdb::Sample>> =
            series.iter().map(|(_, s)| s.iter().map(|(t, v)| tsdb::Sample::new(*t, *v)).collect()).collect();
        let batch: Vec<tsdb::SeriesSamples<'_>> = series
            .iter()
            .zip(&samples)
            .map(|((labels, _), samples)| tsdb::SeriesSamples::labels(labels, samples))
            .collect();
        let report = self.db().append(&batch).expect("append");
        assert!(report.rejections.is_empty(), "rejected: {:?}", report.rejections);
    }

    /// The value the engine gives for `query` now, for comparing with what the API serves.
    pub fn engine_values(&self, query: &str, label: &str) -> Vec<(String, f64)> {
        match self.engine().instant(query, now_ms()).expect("query runs") {
            query::Value::Vector(samples) => {
                let mut out: Vec<(String, f64)> =
                    samples.into_iter().map(|s| (s.labels.get(label).unwrap_or("").to_string(), s.value)).collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                out
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// `kubectl get --raw PATH`: the parsed JSON, or kubectl's stderr on failure.
    pub async fn kubectl_raw(&self, path: &str) -> Result<serde_json::Value, String> {
        let output = tokio::process::Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["get", "--raw", path])
            .env("HOME", self.dir.path())
            .env("KUBECACHEDIR", self.dir.path().join("kube-cache"))
            .kill_on_drop(true)
            .output()
            .await
            .expect("running kubectl");
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("kubectl printed non-JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
    }

    /// Like `kubectl_raw` but panics with kubectl's error.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        match self.kubectl_raw(path).await {
            Ok(v) => v,
            Err(e) => panic!("kubectl get --raw {path} failed: {e}"),
        }
    }

    /// An HTTPS client trusting the generated CA (for status-code checks kubectl hides).
    pub fn https(&self) -> reqwest::Client {
        https_trusting(&self.ca)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.secure_addr.port())
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }
}

pub fn write_kubeconfig(path: &std::path::Path, server: &str, ca: &std::path::Path, token: Option<&str>) {
    // Without credentials kubectl prompts for a username; an unchecked token keeps it quiet.
    let user = format!("    token: {}\n", token.unwrap_or("no-token-configured"));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: ringtail\n  cluster:\n    server: https://{server}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n{user}contexts:\n- name: c\n  context:\n    cluster: ringtail\n    user: u\ncurrent-context: c\n",
        ca.display()
    );
    std::fs::write(path, text).expect("writing kubeconfig");
}

/// `MilliValue()` of a served quantity string.
/// An HTTPS client trusting only the CA in `ca` (a PEM file), with a 30 s timeout.
pub fn https_trusting(ca: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("CA file");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA pem"))
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

pub fn milli(value: &serde_json::Value) -> i64 {
    Quantity::parse(value.as_str().expect("quantity is a string")).expect("valid quantity").milli_value()
}

/// The HPA's Pods metric with an AverageValue target (`calcPlainMetricReplicas`, all pods ready):
/// usage is the integer mean of the served milli-values.
pub fn hpa_pods_average_value(current_replicas: i64, values_milli: &[i64], target_milli: i64) -> i64 {
    assert!(!values_milli.is_empty(), "the HPA gets no value: it would not scale");
    let usage = values_milli.iter().sum::<i64>() / values_milli.len() as i64;
    let ratio = usage as f64 / target_milli as f64;
    if (1.0 - ratio).abs() <= HPA_TOLERANCE {
        current_replicas
    } else {
        (ratio * values_milli.len() as f64).ceil() as i64
    }
}

/// The HPA's Object (or External) metric with an AverageValue target
/// (`GetObjectPerPodMetricReplicas` / `GetExternalPerPodMetricReplicas`).
pub fn hpa_per_pod_average_value(current_replicas: i64, usage_milli: i64, target_milli: i64) -> i64 {
    let ratio = usage_milli as f64 / (target_milli as f64 * current_replicas as f64);
    if (1.0 - ratio).abs() <= HPA_TOLERANCE {
        current_replicas
    } else {
        (usage_milli as f64 / target_milli as f64).ceil() as i64
    }
}

/// The HPA's Object metric with a Value target (`GetObjectMetricReplicas`, ready pods = current).
pub fn hpa_object_value(current_replicas: i64, usage_milli: i64, target_milli: i64) -> i64 {
    let ratio = usage_milli as f64 / target_milli as f64;
    if (1.0 - ratio).abs() <= HPA_TOLERANCE {
        current_replicas
    } else {
        (ratio * current_replicas as f64).ceil() as i64
    }
}

/// Checks the fields every custom `MetricValue` must have, per version.
pub fn assert_metric_value_shape(item: &serde_json::Value, version: &str, metric: &str) {
    let object = &item["describedObject"];
    assert!(object["kind"].is_string() && object["name"].is_string() && object["apiVersion"].is_string(), "{item}");
    let timestamp = item["timestamp"].as_str().expect("timestamp");
    assert!(
        chrono::DateTime::parse_from_rfc3339(timestamp).is_ok() && timestamp.ends_with('Z'),
        "timestamp {timestamp}"
    );
    assert!(item["value"].is_string(), "value must be a Quantity string: {item}");
    match version {
        "v1beta1" => {
            assert_eq!(item["metricName"], metric);
            assert!(item.as_object().expect("object").contains_key("selector"), "{item}");
        }
        _ => {
            assert_eq!(item["metric"]["name"], metric);
            assert!(item["metric"].as_object().expect("object").contains_key("selector"), "{item}");
        }
    }
}
