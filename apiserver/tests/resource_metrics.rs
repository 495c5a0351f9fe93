//! `metrics.k8s.io/v1beta1` (PodMetrics, NodeMetrics) from prometheus-adapter's `resourceRules`,
//! through real TLS and the real `kubectl` (`get --raw`, `top pod`): the prometheus-adapter Helm
//! chart's default resource rules and kube-prometheus's, verbatim, over cAdvisor-shaped series.
//! Standalone (no cluster), so the objects are the ones the series name; the cluster's object
//! lists are covered end to end in deploy/e2e.

mod adapter_support;

use adapter_support::*;
use tsdb::now_ms;

/// The prometheus-adapter Helm chart's default `rules.resource` (values.yaml), verbatim.
const HELM_CHART_RESOURCE_RULES: &str = include_str!("fixtures/helm-resource-rules.yaml");

/// kube-prometheus's prometheus-adapter configuration (manifests/prometheusAdapter-configMap.yaml),
/// verbatim: its nodeQuery joins a recording rule's output.
const KUBE_PROMETHEUS_RESOURCE_RULES: &str = r#"
"resourceRules":
  "cpu":
    "containerLabel": "container"
    "containerQuery": |
      sum by (<<.GroupBy>>) (
        irate (
            container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!="",pod!=""}[120s]
        )
      )
    "nodeQuery": |
      sum by (<<.GroupBy>>) (
        1 - irate(
          node_cpu_seconds_total{mode="idle"}[60s]
        )
        * on(namespace, pod) group_left(node) (
          node_namespace_pod:kube_pod_info:{<<.LabelMatchers>>}
        )
      )
      or sum by (<<.GroupBy>>) (
        1 - irate(
          windows_cpu_time_total{mode="idle", job="windows-exporter",<<.LabelMatchers>>}[4m]
        )
      )
    "resources":
      "overrides":
        "namespace":
          "resource": "namespace"
        "node":
          "resource": "node"
        "pod":
          "resource": "pod"
  "memory":
    "containerLabel": "container"
    "containerQuery": |
      sum by (<<.GroupBy>>) (
        container_memory_working_set_bytes{<<.LabelMatchers>>,container!="",pod!=""}
      )
    "nodeQuery": |
      sum by (<<.GroupBy>>) (
        node_memory_MemTotal_bytes{job="node-exporter",<<.LabelMatchers>>}
        -
        node_memory_MemAvailable_bytes{job="node-exporter",<<.LabelMatchers>>}
      )
      or sum by (<<.GroupBy>>) (
        windows_cs_physical_memory_bytes{job="windows-exporter",<<.LabelMatchers>>}
        -
        windows_memory_available_bytes{job="windows-exporter",<<.LabelMatchers>>}
      )
    "resources":
      "overrides":
        "instance":
          "resource": "node"
        "namespace":
          "resource": "namespace"
        "pod":
          "resource": "pod"
  "window": "5m"
"#;

const MIB: f64 = 1024.0 * 1024.0;

/// A counter growing by `per_second`, one sample every 15 s over the last six minutes (so a
/// `[3m]` rate sees whole intervals at both ends and is exact).
fn counter(labels: Vec<(&'static str, &'static str)>, per_second: f64) -> TestSeries<'static> {
    let now = now_ms();
    let samples = (0..=24).map(|i| (now - 360_000 + i * 15_000 - 500, 100.0 + per_second * 15.0 * i as f64)).collect();
    (labels, samples)
}

/// A gauge holding `value` over the last six minutes.
fn gauge(labels: Vec<(&'static str, &'static str)>, value: f64) -> TestSeries<'static> {
    let now = now_ms();
    (labels, (0..=24).map(|i| (now - 360_000 + i * 15_000 - 500, value)).collect())
}

fn cadvisor_cpu(
    namespace: &'static str,
    pod: &'static str,
    container: &'static str,
    cores: f64,
) -> TestSeries<'static> {
    counter(
        vec![
            ("__name__", "container_cpu_usage_seconds_total"),
            ("namespace", namespace),
            ("pod", pod),
            ("container", container),
            ("cpu", "total"),
            ("id", "/kubepods/x"),
        ],
        cores,
    )
}

fn cadvisor_memory(
    namespace: &'static str,
    pod: &'static str,
    container: &'static str,
    bytes: f64,
) -> TestSeries<'static> {
    gauge(
        vec![
            ("__name__", "container_memory_working_set_bytes"),
            ("namespace", namespace),
            ("pod", pod),
            ("container", container),
            ("id", "/kubepods/x"),
        ],
        bytes,
    )
}

/// Two namespaces with a pod named `web-0` each, a sidecar, the pod-level (`container=""`)
/// series cAdvisor also writes, a pod with cpu but no memory, and one node.
fn cluster_data() -> Vec<TestSeries<'static>> {
    vec![
        cadvisor_cpu("web", "web-0", "app", 0.25),
        cadvisor_cpu("web", "web-0", "sidecar", 0.05),
        cadvisor_cpu("web", "web-0", "", 0.30),
        cadvisor_cpu("web", "web-1", "app", 0.5),
        cadvisor_cpu("ml", "web-0", "model", 1.2),
        cadvisor_cpu("web", "cpu-only", "app", 0.1),
        cadvisor_memory("web", "web-0", "app", 50.0 * MIB),
        cadvisor_memory("web", "web-0", "sidecar", 10.0 * MIB),
        cadvisor_memory("web", "web-0", "", 60.0 * MIB),
        cadvisor_memory("web", "web-1", "app", 100.0 * MIB),
        cadvisor_memory("ml", "web-0", "model", 2048.0 * MIB),
        counter(vec![("__name__", "node_cpu_seconds_total"), ("node", "n1"), ("cpu", "0"), ("mode", "user")], 0.2),
        counter(vec![("__name__", "node_cpu_seconds_total"), ("node", "n1"), ("cpu", "0"), ("mode", "system")], 0.1),
        counter(vec![("__name__", "node_cpu_seconds_total"), ("node", "n1"), ("cpu", "0"), ("mode", "idle")], 0.7),
        gauge(vec![("__name__", "node_memory_MemTotal_bytes"), ("node", "n1")], 8192.0 * MIB),
        gauge(vec![("__name__", "node_memory_MemAvailable_bytes"), ("node", "n1")], 6144.0 * MIB),
    ]
}

/// `(container, cpu, memory)` as served.
type ContainerRow = (String, String, String);

/// `(namespace/name, containers)` of a PodMetricsList.
fn pods(list: &serde_json::Value) -> Vec<(String, Vec<ContainerRow>)> {
    assert_eq!(list["kind"], "PodMetricsList");
    assert_eq!(list["apiVersion"], "metrics.k8s.io/v1beta1");
    list["items"].as_array().expect("items").iter().map(pod).collect()
}

fn pod(item: &serde_json::Value) -> (String, Vec<ContainerRow>) {
    let meta = &item["metadata"];
    assert!(item["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{item}");
    assert!(meta["creationTimestamp"].as_str().is_some(), "{item}");
    let containers = item["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| {
            let text = |v: &serde_json::Value| v.as_str().expect("a quantity string").to_string();
            (text(&c["name"]), text(&c["usage"]["cpu"]), text(&c["usage"]["memory"]))
        })
        .collect();
    (format!("{}/{}", meta["namespace"].as_str().unwrap_or("?"), meta["name"].as_str().unwrap_or("?")), containers)
}

fn c(name: &str, cpu: &str, memory: &str) -> ContainerRow {
    (name.to_string(), cpu.to_string(), memory.to_string())
}

async fn status_of(h: &Harness, path: &str) -> (u16, serde_json::Value) {
    let response = h.https().get(h.url(path)).bearer_auth("x").send().await.expect("request");
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helm_charts_resource_rules_serve_pods_and_nodes() {
    let h = Harness::start(Some(HELM_CHART_RESOURCE_RULES), None).await;
    h.append(&cluster_data());

    let groups = h.get("/apis").await;
    assert!(groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "metrics.k8s.io"), "{groups}");
    let resources = h.get("/apis/metrics.k8s.io/v1beta1").await;
    let listed: Vec<(&str, &str, bool)> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["kind"].as_str().unwrap(), r["namespaced"].as_bool().unwrap()))
        .collect();
    assert_eq!(listed, [("nodes", "NodeMetrics", false), ("pods", "PodMetrics", true)]);

    let web = h.get("/apis/metrics.k8s.io/v1beta1/namespaces/web/pods").await;
    assert_eq!(web["items"][0]["window"], "3m0s");
    assert_eq!(
        pods(&web),
        [
            ("web/web-0".to_string(), vec![c("app", "250m", "50Mi"), c("sidecar", "50m", "10Mi")]),
            ("web/web-1".to_string(), vec![c("app", "500m", "100Mi")]),
        ],
        "the pod-level series (container=\"\") is left out, cpu-only has no memory so no PodMetrics"
    );
    let all = h.get("/apis/metrics.k8s.io/v1beta1/pods").await;
    let names: Vec<String> = pods(&all).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["ml/web-0", "web/web-0", "web/web-1"], "one web-0 per namespace");
    assert_eq!(pods(&all)[0].1, [c("model", "1200m", "2Gi")]);

    let one = h.get("/apis/metrics.k8s.io/v1beta1/namespaces/ml/pods/web-0").await;
    assert_eq!(
        (one["kind"].as_str(), one["apiVersion"].as_str()),
        (Some("PodMetrics"), Some("metrics.k8s.io/v1beta1"))
    );
    assert_eq!(pod(&one), ("ml/web-0".to_string(), vec![c("model", "1200m", "2Gi")]));

    let only_web_1 =
        h.get("/apis/metrics.k8s.io/v1beta1/namespaces/web/pods?fieldSelector=metadata.name%3Dweb-1").await;
    assert_eq!(pods(&only_web_1).len(), 1);
    assert_eq!(pods(&only_web_1)[0].0, "web/web-1");
    let not_web_0 = h.get("/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=metadata.name!%3Dweb-0").await;
    assert_eq!(pods(&not_web_0).len(), 1);
    let labelled = h.get("/apis/metrics.k8s.io/v1beta1/namespaces/web/pods?labelSelector=app%3Dweb").await;
    assert!(pods(&labelled).is_empty(), "without a cluster no pod has labels, so `app=web` selects none");

    for (path, code, message) in [
        ("/apis/metrics.k8s.io/v1beta1/namespaces/web/pods/cpu-only", 404, "\"web/cpu-only\" not found"),
        ("/apis/metrics.k8s.io/v1beta1/namespaces/web/pods/nope", 404, "not found"),
        ("/apis/metrics.k8s.io/v1beta1/nodes/n2", 404, "not found"),
        (
            "/apis/metrics.k8s.io/v1beta1/namespaces/web/pods?fieldSelector=spec.nodeName%3Dn1",
            400,
            "field label not supported: spec.nodeName",
        ),
        ("/apis/metrics.k8s.io/v1beta1/namespaces/web/pods?labelSelector=a+in+(", 400, "labelSelector"),
        ("/apis/metrics.k8s.io/v1beta1/namespaces/web/deployments", 404, "could not find"),
        ("/apis/metrics.k8s.io/v1beta1/pods?watch=true", 405, "watch"),
    ] {
        let (got, body) = status_of(&h, path).await;
        assert_eq!(got, code, "{path}: {body}");
        assert_eq!(body["kind"], "Status", "{path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| m.contains(message)), "{path}: {body}");
    }

    let nodes = h.get("/apis/metrics.k8s.io/v1beta1/nodes").await;
    assert_eq!(nodes["kind"], "NodeMetricsList");
    let node = &nodes["items"][0];
    assert_eq!(node["metadata"]["name"], "n1");
    assert_eq!((node["usage"]["cpu"].as_str(), node["usage"]["memory"].as_str()), (Some("300m"), Some("2Gi")));
    let n1 = h.get("/apis/metrics.k8s.io/v1beta1/nodes/n1").await;
    assert_eq!((n1["kind"].as_str(), n1["usage"]["cpu"].as_str()), (Some("NodeMetrics"), Some("300m")));

    // The real kubectl's `top pod`: per-pod sums of the containers, as metrics-server gives them.
    let output = std::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&h.kubeconfig)
        .args(["top", "pod", "-n", "web", "--containers"])
        .env("HOME", h.dir.path())
        .env("KUBECACHEDIR", h.dir.path().join("kube-cache"))
        .output()
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let rows: Vec<Vec<&str>> = stdout.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [
            vec!["web-0", "app", "250m", "50Mi"],
            vec!["web-0", "sidecar", "50m", "10Mi"],
            vec!["web-1", "app", "500m", "100Mi"]
        ],
        "{stdout}"
    );
    let output = std::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&h.kubeconfig)
        .args(["top", "pod", "-A"])
        .env("HOME", h.dir.path())
        .env("KUBECACHEDIR", h.dir.path().join("kube-cache"))
        .output()
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<Vec<&str>> = stdout.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [
            vec!["ml", "web-0", "1200m", "2048Mi"],
            vec!["web", "web-0", "300m", "60Mi"],
            vec!["web", "web-1", "500m", "100Mi"]
        ],
        "{stdout}"
    );

    // Answers come from a shared snapshot at most a few seconds old: new data shows up within
    // SNAPSHOT_MAX_AGE (5 s) without a restart or a relist.
    h.append(&[(
        vec![
            ("__name__", "container_memory_working_set_bytes"),
            ("namespace", "web"),
            ("pod", "web-1"),
            ("container", "app"),
            ("id", "/kubepods/x"),
        ],
        vec![(now_ms() - 100, 300.0 * MIB)],
    )]);
    let started = std::time::Instant::now();
    loop {
        let one = h.get("/apis/metrics.k8s.io/v1beta1/namespaces/web/pods/web-1").await;
        let (_, containers) = pod(&one);
        if containers[0].2 != "100Mi" {
            // avg_over_time over 3m: the samples at 100Mi and the new one at 300Mi.
            let text = &containers[0].2;
            let bytes = match (text.strip_suffix("Mi"), text.strip_suffix("Ki")) {
                (Some(mi), _) => mi.parse::<f64>().unwrap_or(0.0) * MIB,
                (_, Some(ki)) => ki.parse::<f64>().unwrap_or(0.0) * 1024.0,
                _ => text.parse::<f64>().unwrap_or(0.0),
            };
            assert!(bytes > 100.0 * MIB && bytes < 300.0 * MIB, "{containers:?}");
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(8), "the new sample never showed up");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_prometheus_resource_rules_serve_pods_verbatim() {
    let h = Harness::start(Some(KUBE_PROMETHEUS_RESOURCE_RULES), None).await;
    h.append(&cluster_data());
    let web = h.get("/apis/metrics.k8s.io/v1beta1/namespaces/web/pods").await;
    assert_eq!(web["items"][0]["window"], "5m0s");
    assert_eq!(
        pods(&web),
        [
            ("web/web-0".to_string(), vec![c("app", "250m", "50Mi"), c("sidecar", "50m", "10Mi")]),
            ("web/web-1".to_string(), vec![c("app", "500m", "100Mi")]),
        ]
    );
    // The node query joins `node_namespace_pod:kube_pod_info:`, a recording rule nobody wrote
    // here: no node has both values, so the list is empty (not an error).
    let nodes = h.get("/apis/metrics.k8s.io/v1beta1/nodes").await;
    assert_eq!(nodes["items"].as_array().map(Vec::len), Some(0), "{nodes}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_resource_rules_metrics_k8s_io_is_not_served() {
    let h = Harness::start(None, None).await;
    let groups = h.get("/apis").await;
    assert!(!groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "metrics.k8s.io"), "{groups}");
    let (code, body) = status_of(&h, "/apis/metrics.k8s.io/v1beta1/pods").await;
    assert_eq!(code, 404, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("resourceRules")), "{body}");
    h.stop().await;
}

#[test]
fn adapter_config_check_names_recording_rules_and_shows_the_queries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("adapter.yaml");
    std::fs::write(&path, KUBE_PROMETHEUS_RESOURCE_RULES).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .args(["adapter-config", "check"])
        .arg(&path)
        .output()
        .expect("ringtail runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains("warning: resourceRules.cpu.nodeQuery reads node_namespace_pod:kube_pod_info:"),
        "{stdout}"
    );
    assert!(!stdout.contains("resourceRules.cpu.containerQuery reads"), "{stdout}");
    assert!(stdout.contains("resourceRules: cpu and memory served as metrics.k8s.io/v1beta1 (window 5m)"), "{stdout}");
    assert!(
        stdout.contains(r#"container_cpu_usage_seconds_total{namespace="default",pod!="",container!="",pod!=""}"#),
        "{stdout}"
    );

    // A rule missing its window is refused with the key named.
    std::fs::write(&path, HELM_CHART_RESOURCE_RULES.replace("  window: 3m\n", "")).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .args(["adapter-config", "check"])
        .arg(&path)
        .output()
        .expect("ringtail runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("resourceRules.window"));
}
