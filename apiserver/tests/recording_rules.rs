//! Recording rules (`rule_files`) through the real binary, against the real peers: promtool 2.42
//! accepts and refuses the same rule files Ringtail does; Ringtail and Prometheus 2.42 scraping
//! the same cadvisor-like target with the same rules (kube-prometheus's
//! `node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate` among them) record
//! the same series with the same values, end them when their source goes away, and list them
//! in `/api/v1/rules` with the same keys; a reload applies a changed rule file (a removed
//! group's series end with staleness markers) and refuses a broken one. The peer tests are
//! skipped (saying so) when Prometheus is not installed, unless `RINGTAIL_REQUIRE_PEERS=1`.

mod ingest_common;

use ingest_common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type LabelSet = BTreeMap<String, String>;

const PROMTOOL: peer::Peer = peer::Peer { binary: "/usr/bin/promtool", package: "prometheus" };
const SUM_IRATE: &str = "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate";
const SUM_RATE: &str = "namespace:container_cpu_usage_seconds_total:sum_rate";
const POD_COUNT: &str = "cluster:kube_pod_info:count";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules").join(name)
}

/// Pods of the target: namespace, pod, container, node and CPU seconds per second.
const PODS: [(&str, &str, &str, &str, f64); 3] = [
    ("default", "web-1", "nginx", "node-a", 0.25),
    ("default", "web-2", "nginx", "node-b", 0.5),
    ("kube-system", "dns-1", "coredns", "node-a", 1.5),
];

/// A cadvisor-and-kube-state-metrics-like target: `container_cpu_usage_seconds_total` counters
/// growing at each pod's rate with the wall clock (so two scrapers see the same rates), and
/// `kube_pod_info`. `hide_last` removes the last pod from the page.
struct CadvisorTarget {
    addr: std::net::SocketAddr,
    hide_last: Arc<AtomicBool>,
    _task: tokio::task::JoinHandle<()>,
}

impl CadvisorTarget {
    async fn start() -> CadvisorTarget {
        let hide_last = Arc::new(AtomicBool::new(false));
        let hidden = hide_last.clone();
        let started = Instant::now();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let hidden = hidden.load(Ordering::Relaxed);
                let seconds = 1000.0 + started.elapsed().as_secs_f64();
                async move {
                    let pods = if hidden { &PODS[..PODS.len() - 1] } else { &PODS[..] };
                    let mut page = String::from("# TYPE container_cpu_usage_seconds_total counter\n");
                    for (namespace, pod, container, _, rate) in pods {
                        page.push_str(&format!(
                            "container_cpu_usage_seconds_total{{namespace=\"{namespace}\",pod=\"{pod}\",\
                             container=\"{container}\",image=\"img\"}} {:.4}\n",
                            seconds * rate
                        ));
                        // The pod's own cgroup (no image), which the rules leave out.
                        page.push_str(&format!(
                            "container_cpu_usage_seconds_total{{namespace=\"{namespace}\",pod=\"{pod}\"}} {:.4}\n",
                            seconds * rate * 2.0
                        ));
                    }
                    page.push_str("# TYPE kube_pod_info gauge\n");
                    for (namespace, pod, _, node, _) in pods {
                        page.push_str(&format!(
                            "kube_pod_info{{namespace=\"{namespace}\",pod=\"{pod}\",node=\"{node}\"}} 1\n"
                        ));
                    }
                    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], page)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the target");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CadvisorTarget { addr, hide_last, _task: task }
    }
}

impl Drop for CadvisorTarget {
    fn drop(&mut self) {
        self._task.abort();
    }
}

/// The config both servers get: 1 s scrapes and evaluations, the given rule files.
fn config(target: std::net::SocketAddr, rule_files: &[PathBuf]) -> String {
    let files: Vec<String> = rule_files.iter().map(|f| format!("'{}'", f.display())).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: [{}]\n\
         scrape_configs:\n- job_name: kubelet\n  static_configs:\n  - targets: ['{target}']\n    \
         labels: {{metrics_path: /metrics/cadvisor}}\n",
        files.join(", ")
    )
}

async fn get_json(url: &str, query: &[(&str, String)]) -> serde_json::Value {
    client().get(url).query(query).send().await.expect("request").json().await.expect("JSON")
}

/// An instant query's series at `time` (Unix seconds): labels → value.
async fn instant(base: &str, query: &str, time: f64) -> BTreeMap<LabelSet, f64> {
    let body = get_json(&format!("{base}/api/v1/query"), &[("query", query.into()), ("time", time.to_string())]).await;
    assert_eq!(body["status"], "success", "{query}: {body}");
    body["data"]["result"]
        .as_array()
        .expect("a vector")
        .iter()
        .map(|s| {
            let labels: LabelSet = serde_json::from_value(s["metric"].clone()).expect("labels");
            (labels, parse_prometheus_float(s["value"][1].as_str().expect("value")))
        })
        .collect()
}

/// A range query's series: labels → values.
async fn range(base: &str, query: &str, start: f64, end: f64) -> BTreeMap<LabelSet, Vec<f64>> {
    let body = get_json(
        &format!("{base}/api/v1/query_range"),
        &[("query", query.into()), ("start", start.to_string()), ("end", end.to_string()), ("step", "1".into())],
    )
    .await;
    assert_eq!(body["status"], "success", "{query}: {body}");
    body["data"]["result"]
        .as_array()
        .expect("a matrix")
        .iter()
        .map(|s| {
            let labels: LabelSet = serde_json::from_value(s["metric"].clone()).expect("labels");
            let values = s["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|p| parse_prometheus_float(p[1].as_str().expect("value")))
                .collect();
            (labels, values)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.05 * a.abs().max(b.abs()).max(1e-9)
}

/// Waits until `base` has recorded every pod's `sum_irate` for 18 evaluations or more, so the
/// compared range and the demo rule's `rate` window (10 s) hold data from end to end.
async fn wait_recorded(what: &str, base: &str) {
    eventually(what, Duration::from_secs(90), || async {
        let now = tsdb::now_ms() as f64 / 1000.0;
        let counts = instant(base, &format!("count_over_time({SUM_IRATE}[20s])"), now).await;
        (counts.len() == PODS.len() && counts.values().all(|n| *n >= 18.0)).then_some(())
    })
    .await;
}

/// The keys of each group and each rule of a `/api/v1/rules` answer, by group and rule name.
fn shape(body: &serde_json::Value) -> BTreeMap<String, BTreeSet<String>> {
    let keys = |v: &serde_json::Value| v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    let mut shape = BTreeMap::new();
    for group in body["data"]["groups"].as_array().expect("groups") {
        let name = group["name"].as_str().expect("group name").to_string();
        shape.insert(format!("group {name}"), keys(group));
        for rule in group["rules"].as_array().expect("rules") {
            shape.insert(format!("rule {name}/{}", rule["name"].as_str().expect("rule name")), keys(rule));
        }
    }
    shape
}

/// Runs `ringtail serve` with `config_yaml` and waits for it to exit (it must, within a minute):
/// its exit status and log.
fn ringtail_start_fails(config_yaml: &str) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("ringtail.yaml");
    std::fs::write(&config_path, config_yaml).expect("config");
    let log = dir.path().join("ringtail.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringtail"));
    command
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()));
    let mut process = ChildGuard::spawn("ringtail", &mut command, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = process.child.try_wait().expect("try_wait") {
            return (status, std::fs::read_to_string(&log).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "ringtail kept running with a broken rule file");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn promtool_and_ringtail_accept_and_refuse_the_same_rule_files() {
    if !peer::peers_installed("promtool_and_ringtail_accept_and_refuse_the_same_rule_files", &[PROMTOOL]) {
        return;
    }
    let good = [fixture("kube-prometheus.yaml"), fixture("demo.yaml")];
    let checked = Command::new(PROMTOOL.binary).args(["check", "rules"]).args(&good).output().expect("promtool");
    assert!(checked.status.success(), "promtool refused the fixtures: {}", String::from_utf8_lossy(&checked.stdout));
    for name in
        ["broken-expr.yaml", "broken-unknown-key.yaml", "broken-duplicate-group.yaml", "broken-record-name.yaml"]
    {
        let path = fixture(name);
        let checked = Command::new(PROMTOOL.binary).args(["check", "rules"]).arg(&path).output().expect("promtool");
        assert!(!checked.status.success(), "promtool accepted {name}");
        let (status, log) = ringtail_start_fails(&format!("rule_files: ['{}']\n", path.display()));
        assert!(!status.success(), "{name}: {log}");
        assert!(log.contains(&path.display().to_string()) && log.contains("rule_files"), "{name}: {log}");
    }
    let (_, log) = ringtail_start_fails(&format!("rule_files: ['{}']\n", fixture("broken-expr.yaml").display()));
    assert!(log.contains("group \"broken\", rule 1 (\"job:up:sum\"): could not parse expression"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_series_match_prometheus_and_end_with_their_source() {
    if !peer::peers_installed("recorded_series_match_prometheus_and_end_with_their_source", &[peer::PROMETHEUS]) {
        return;
    }
    let target = CadvisorTarget::start().await;
    let yaml = config(target.addr, &[fixture("kube-prometheus.yaml"), fixture("demo.yaml")]);
    let ringtail = Ringtail::start(Some(&yaml), &[]).await;
    let prometheus = Prometheus::start(&yaml).await;
    wait_recorded("Ringtail to record sum_irate", &ringtail.url()).await;
    wait_recorded("Prometheus to record sum_irate", &prometheus.url()).await;

    // The same series and values, at one instant and over a range.
    let at = tsdb::now_ms() as f64 / 1000.0 - 2.0;
    for query in [SUM_IRATE, SUM_RATE, POD_COUNT] {
        let ours = instant(&ringtail.url(), query, at).await;
        let theirs = instant(&prometheus.url(), query, at).await;
        assert!(!ours.is_empty(), "{query}: nothing recorded");
        assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "{query}: label sets");
        for (labels, value) in &ours {
            assert!(
                close(*value, theirs[labels]),
                "{query} {labels:?}: Ringtail {value}, Prometheus {}",
                theirs[labels]
            );
        }
        let ours = range(&ringtail.url(), query, at - 4.0, at).await;
        let theirs = range(&prometheus.url(), query, at - 4.0, at).await;
        assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "{query}: range label sets");
        for (labels, values) in &ours {
            let expected = &theirs[labels];
            assert_eq!(values.len(), expected.len(), "{query} {labels:?}: {values:?} vs {expected:?}");
            assert!(
                values.iter().zip(expected).all(|(a, b)| close(*a, *b)),
                "{query} {labels:?}: {values:?} vs {expected:?}"
            );
        }
    }
    let irate = instant(&ringtail.url(), SUM_IRATE, at).await;
    for (namespace, pod, container, node, rate) in PODS {
        let labels: LabelSet =
            [("__name__", SUM_IRATE), ("namespace", namespace), ("pod", pod), ("container", container), ("node", node)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert!(irate.get(&labels).is_some_and(|v| close(*v, rate)), "{labels:?} in {irate:?}");
    }
    let with_labels = instant(&ringtail.url(), SUM_RATE, at).await;
    assert!(with_labels.keys().all(|l| l.get("source").map(String::as_str) == Some("recorded")), "{with_labels:?}");

    // /api/v1/rules: the same keys per group and rule, every rule healthy, alerting ones listed.
    let ours = get_json(&format!("{}/api/v1/rules", ringtail.url()), &[]).await;
    let theirs = get_json(&format!("{}/api/v1/rules", prometheus.url()), &[]).await;
    assert_eq!(shape(&ours), shape(&theirs), "Ringtail {ours}\nPrometheus {theirs}");
    let groups = ours["data"]["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2);
    for group in groups {
        assert_eq!(group["interval"].to_string(), "1", "{group}");
        assert!(group["lastEvaluation"].as_str().is_some_and(|t| t.starts_with("20")), "{group}");
        for rule in group["rules"].as_array().expect("rules") {
            assert_eq!(rule["health"], "ok", "{rule}");
        }
    }
    assert_eq!(groups[0]["limit"], 100, "demo.yaml sorts first: {ours}");
    assert!(ours["warnings"][0].as_str().is_some_and(|w| w.contains("no alert is sent")), "{ours}");
    let recording_only = get_json(&format!("{}/api/v1/rules", ringtail.url()), &[("type", "record".into())]).await;
    let theirs_recording = get_json(&format!("{}/api/v1/rules", prometheus.url()), &[("type", "record".into())]).await;
    assert_eq!(shape(&recording_only), shape(&theirs_recording));
    let bad = client().get(format!("{}/api/v1/rules?type=sometimes", ringtail.url())).send().await.expect("rules");
    let theirs_bad =
        client().get(format!("{}/api/v1/rules?type=sometimes", prometheus.url())).send().await.expect("rules");
    assert_eq!(bad.status(), theirs_bad.status());
    let (bad, theirs_bad): (serde_json::Value, serde_json::Value) =
        (bad.json().await.expect("JSON"), theirs_bad.json().await.expect("JSON"));
    assert_eq!((&bad["errorType"], &bad["error"]), (&theirs_bad["errorType"], &theirs_bad["error"]));

    // /api/v1/alerts: the pending alert (dns-1 uses 1.5 CPU) with the same keys and labels.
    let ours = get_json(&format!("{}/api/v1/alerts", ringtail.url()), &[]).await;
    let theirs = get_json(&format!("{}/api/v1/alerts", prometheus.url()), &[]).await;
    let alerts = |body: &serde_json::Value| -> Vec<(BTreeSet<String>, serde_json::Value, serde_json::Value)> {
        body["data"]["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| {
                let keys = a.as_object().expect("alert").keys().cloned().collect();
                (keys, a["labels"].clone(), a["state"].clone())
            })
            .collect()
    };
    assert_eq!(alerts(&ours), alerts(&theirs), "Ringtail {ours}\nPrometheus {theirs}");
    assert_eq!(alerts(&ours).len(), 1, "{ours}");

    // The last pod goes away: both end its recorded series at once (not after the lookback).
    target.hide_last.store(true, Ordering::Relaxed);
    let gone = |base: String| async move {
        let now = tsdb::now_ms() as f64 / 1000.0;
        let series = instant(&base, SUM_IRATE, now).await;
        (series.len() == PODS.len() - 1 && series.keys().all(|l| l["pod"] != PODS[2].1)).then_some(())
    };
    eventually("Prometheus to end dns-1's recorded series", Duration::from_secs(30), || gone(prometheus.url())).await;
    eventually("Ringtail to end dns-1's recorded series", Duration::from_secs(30), || gone(ringtail.url())).await;
    let exported = ringtail.export(&format!("{SUM_IRATE}{{pod=\"dns-1\"}}")).await;
    let values = exported.first().expect("dns-1 was recorded").floats();
    assert!(values.last().is_some_and(|v| tsdb::is_stale_nan(*v)), "ends with a staleness marker: {values:?}");
}

fn write_file(path: &Path, text: &str) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, text).expect("writing");
    std::fs::rename(&staged, path).expect("replacing");
}

async fn self_metric(base: &str, name: &str) -> Option<f64> {
    let text = client().get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_changed_rules_ends_removed_groups_and_refuses_broken_files() {
    let target = CadvisorTarget::start().await;
    let rules_dir = tempfile::tempdir().expect("temp dir");
    let rules = rules_dir.path().join("rules.yaml");
    let kept = "- name: kept\n  rules:\n  - record: pods:count\n    expr: count(kube_pod_info)\n";
    let removed = "- name: removed\n  rules:\n  - record: pods:sum\n    expr: sum(kube_pod_info)\n";
    write_file(&rules, &format!("groups:\n{kept}{removed}"));
    let ringtail = Ringtail::start(Some(&config(target.addr, std::slice::from_ref(&rules))), &[]).await;
    eventually("both groups to record", Duration::from_secs(60), || async {
        let count = ringtail.export("pods:count").await;
        let sum = ringtail.export("pods:sum").await;
        (count.first()?.timestamps.len() >= 3 && sum.first()?.timestamps.len() >= 3).then_some(())
    })
    .await;

    // Group `kept` gains a rule, `removed` goes: after SIGHUP the new rule runs, the removed
    // group's series ends with a staleness marker and the kept rule's series never does.
    let added = "  - record: pods:max\n    expr: max(kube_pod_info)\n";
    write_file(&rules, &format!("groups:\n{kept}{added}"));
    let status = Command::new("kill").args(["-HUP", &ringtail.process.pid().to_string()]).status().expect("kill");
    assert!(status.success());
    eventually("the new rule to record", Duration::from_secs(30), || async {
        (ringtail.export("pods:max").await.first()?.timestamps.len() >= 2).then_some(())
    })
    .await;
    eventually("pods:sum to end with a staleness marker", Duration::from_secs(30), || async {
        let sum = ringtail.export("pods:sum").await;
        sum.first()?.floats().last().is_some_and(|v| tsdb::is_stale_nan(*v)).then_some(())
    })
    .await;
    let count = ringtail.export("pods:count").await;
    assert!(count[0].floats().iter().all(|v| *v == PODS.len() as f64), "pods:count went on: {:?}", count[0].floats());
    let listed = get_json(&format!("{}/api/v1/rules", ringtail.url()), &[]).await;
    let names: Vec<&str> =
        listed["data"]["groups"].as_array().expect("groups").iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, ["kept"], "{listed}");
    assert_eq!(self_metric(&ringtail.url(), "ringtail_config_last_reload_successful").await, Some(1.0));

    // A broken rule file is refused by the config poll: the rules in force keep running.
    write_file(&rules, &format!("groups:\n{kept}  - record: pods:bad\n    expr: max(\n"));
    eventually("the poll to refuse the broken rule file", Duration::from_secs(30), || async {
        (self_metric(&ringtail.url(), "ringtail_config_last_reload_successful").await == Some(0.0)).then_some(())
    })
    .await;
    let before = ringtail.export("pods:max").await[0].timestamps.len();
    eventually("pods:max to go on being recorded", Duration::from_secs(30), || async {
        (ringtail.export("pods:max").await[0].timestamps.len() > before + 1).then_some(())
    })
    .await;
    let log = ringtail.log();
    assert!(log.contains("new configuration refused") && log.contains("could not parse expression"), "{log}");
    let metrics =
        client().get(format!("{}/metrics", ringtail.url())).send().await.expect("metrics").text().await.expect("text");
    let kept_key = format!("rule_group=\"{};kept\"", rules.display());
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ringtail_rule_group_rules{") && l.contains(&kept_key) && l.ends_with(" 2")),
        "{metrics}"
    );
    assert!(!metrics.contains(";removed\""), "the removed group's metrics are gone");
}
