//! `promtool query instant|range|series|labels` (Debian's `prometheus` package, 2.42) against the
//! real `ringtail` binary: each command succeeds and prints what the same command prints against
//! Prometheus 2.42 holding the same remote-written samples (in promtool's own text format and in
//! its JSON format).

mod ingest_common;

use ingest::proto::v1;
use ingest::remote_write::encode_body;
use ingest_common::*;
use std::process::Command;

const CT_V1: &str = "application/x-protobuf";

/// `requests_total` (counters) and `queue_depth` (gauges) for three pods of two namespaces, one
/// sample every 15 s over the ten minutes before `end` (a whole second).
fn request(end: i64) -> Vec<u8> {
    let mut timeseries = Vec::new();
    for (namespace, pod) in [("shop", "api-0"), ("shop", "api-1"), ("web", "front-0")] {
        let offset = pod.len() as f64;
        let counter: Vec<(i64, f64)> =
            (0..=40).map(|i| (end - 600_000 + i * 15_000, offset * 10.0 + (i * i) as f64)).collect();
        let gauge: Vec<(i64, f64)> = (0..=40).map(|i| (end - 600_000 + i * 15_000, (i % 7) as f64 + offset)).collect();
        timeseries.push(series(
            &[("__name__", "requests_total"), ("namespace", namespace), ("pod", pod), ("job", "app")],
            &counter,
        ));
        timeseries.push(series(&[("__name__", "queue_depth"), ("namespace", namespace), ("pod", pod)], &gauge));
    }
    encode_body(&v1::WriteRequest { timeseries, metadata: vec![] })
}

/// Runs promtool with `args`; returns its standard output, failing the test if it failed.
fn promtool(args: &[String]) -> String {
    let output = Command::new(peer::PROMTOOL.binary).args(args).output().expect("running promtool");
    assert!(
        output.status.success(),
        "promtool {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Output lines sorted: servers may order series differently, promtool prints them as received.
fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// A JSON output parsed, with result lists sorted by their text, for the same reason.
fn normalized_json(text: &str) -> serde_json::Value {
    let mut value: serde_json::Value = serde_json::from_str(text).expect("promtool printed JSON");
    if let serde_json::Value::Array(items) = &mut value {
        items.sort_by_key(|item| item.to_string());
    }
    value
}

/// Every command of the test against `url`: (what it is, its output).
fn commands(url: &str, end_s: i64) -> Vec<(String, String)> {
    // No window edge falls on a sample (they lie on a 15 s grid from `end_s`): Ringtail's windows
    // are left-open as Prometheus 3's, 2.42's are closed; only a sample exactly on an edge tells.
    let at = (end_s - 23).to_string();
    let start = (end_s - 293).to_string();
    let end = (end_s - 53).to_string();
    let runs: Vec<Vec<String>> = vec![
        vec!["instant", "--time", &at, url, "requests_total"],
        vec!["instant", "--time", &at, url, "sum by (namespace) (rate(requests_total[2m]))"],
        vec!["instant", "--time", &at, url, "max(queue_depth) / 2"],
        vec!["instant", "--time", &at, url, "-o", "json", "queue_depth{namespace=\"shop\"}"],
        vec!["range", "--start", &start, "--end", &end, "--step", "30s", url, "increase(requests_total[1m])"],
        vec![
            "range",
            "--start",
            &start,
            "--end",
            &end,
            "--step",
            "1m",
            url,
            "-o",
            "json",
            "avg_over_time(queue_depth[2m])",
        ],
        vec!["series", "--match", "requests_total", url],
        vec!["series", "--match", "{namespace=\"web\"}", "--match", "queue_depth{pod=\"api-0\"}", url],
        vec!["labels", url, "pod"],
        vec!["labels", "--match", "queue_depth{namespace=\"shop\"}", url, "pod"],
        vec!["labels", url, "__name__"],
    ]
    .into_iter()
    .map(|args| args.into_iter().map(str::to_string).collect())
    .collect();
    runs.into_iter()
        .map(|args| {
            let mut full = vec!["query".to_string()];
            full.extend(args.iter().cloned());
            (args.join(" ").replace(url, "URL"), promtool(&full))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_queries_answer_as_against_prometheus() {
    if !peer::peers_installed("promtool_queries_answer_as_against_prometheus", &[peer::PROMETHEUS, peer::PROMTOOL]) {
        return;
    }
    let end_s = tsdb::now_ms() / 1000 - 5;
    let body = request(end_s * 1000);
    let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &[]).await;
    assert_eq!(post_write(&ringtail.url(), CT_V1, body.clone()).await.status(), 204);
    let prometheus = Prometheus::start_with("global: {}\n", &["--web.enable-remote-write-receiver"]).await;
    let response = post_write(&prometheus.url(), CT_V1, body).await;
    assert!(response.status().is_success(), "Prometheus took the request: {}", response.status());

    let (ringtail_url, prometheus_url) = (ringtail.url(), prometheus.url());
    let (ours, theirs) =
        tokio::task::spawn_blocking(move || (commands(&ringtail_url, end_s), commands(&prometheus_url, end_s)))
            .await
            .expect("promtool runs");
    for ((what, our_output), (_, their_output)) in ours.iter().zip(&theirs) {
        assert!(!our_output.trim().is_empty(), "promtool {what} printed nothing against Ringtail");
        if what.contains("-o json") {
            assert_eq!(normalized_json(our_output), normalized_json(their_output), "promtool {what}");
        } else {
            assert_eq!(sorted_lines(our_output), sorted_lines(their_output), "promtool {what}");
        }
    }
}
