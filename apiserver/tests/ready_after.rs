//! `--ready-after`: a replica behind a Service reports not ready until it has run for one rule
//! window (or a given duration) since start, so a restarted replica is not asked while its
//! `rate` windows hold only part of the data; the real binary, over HTTP, like a kubelet probe.

mod ingest_common;

use ingest_common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// Starts `ringtail serve` with `args`; returns the guard, the base URL and when it started.
fn start(dir: &std::path::Path, args: &[&str]) -> (ChildGuard, String, Instant) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringtail"));
    command
        .arg("serve")
        .arg("--standalone")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--secure-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(args);
    let started = Instant::now();
    let guard = ChildGuard::spawn("ringtail", &mut command, &dir.join("ringtail.log"));
    (guard, format!("http://127.0.0.1:{port}"), started)
}

/// Polls `/-/ready` until 200; returns every non-200 body seen and when 200 came.
async fn until_ready(url: &str) -> (Vec<(u16, String)>, Instant) {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut refusals = Vec::new();
    loop {
        if let Ok(response) = client().get(format!("{url}/-/ready")).send().await {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            if status == 200 {
                return (refusals, Instant::now());
            }
            refusals.push((status, body));
        }
        assert!(Instant::now() < deadline, "never ready: {refusals:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_after_the_longest_rule_window_since_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("adapter.yaml");
    std::fs::write(
        &rules,
        "rules:\n- seriesQuery: 'a{namespace!=\"\",pod!=\"\"}'\n  \
         metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[3s])) by (<<.GroupBy>>)'\n\
         - seriesQuery: 'b{namespace!=\"\",pod!=\"\"}'\n  \
         metricsQuery: 'avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n",
    )
    .expect("rules");
    let rules_arg = rules.display().to_string();
    let (_guard, url, started) = start(dir.path(), &["--adapter-config", &rules_arg, "--ready-after", "rule-window"]);
    let (refusals, ready_at) = until_ready(&url).await;
    assert!(ready_at - started >= Duration::from_secs(3), "ready after {:?}", ready_at - started);
    let told = refusals.iter().find(|(status, _)| *status == 503).expect("503 while the window fills");
    assert!(told.1.contains("waits 3s after start") && told.1.contains("to go"), "{told:?}");
    // Queries are answered meanwhile: only the probe waits.
    let status = client().get(format!("{url}/api/v1/query?query=1")).send().await.expect("query").status();
    assert_eq!(status.as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_a_duration_and_at_once_by_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_guard, url, started) = start(dir.path(), &["--ready-after", "2s"]);
    let (refusals, ready_at) = until_ready(&url).await;
    assert!(ready_at - started >= Duration::from_secs(2), "ready after {:?}", ready_at - started);
    assert!(refusals.iter().any(|(status, body)| *status == 503 && body.contains("waits 2s")), "{refusals:?}");

    let dir = tempfile::tempdir().expect("temp dir");
    let (_guard, url, _) = start(dir.path(), &[]);
    let (refusals, _) = until_ready(&url).await;
    assert!(refusals.iter().all(|(_, body)| !body.contains("--ready-after")), "no wait by default: {refusals:?}");

    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .args(["serve", "--ready-after", "soon", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("neither `rule-window` nor a duration"));
}
