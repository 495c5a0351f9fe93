//! Real peer under overload: Prometheus 2.42 scrapes many large pages every second and
//! remote-writes them, with a queue that pushes hard, to a Ringtail whose CPU share is cut for real
//! (a cgroup CPU quota; `taskset` to one core when no cgroup is writable) and whose in-flight
//! budget is small. Ringtail must answer 503 (never 429, which 2.42 does not retry), keep
//! `/-/ready`, a PromQL query and a custom-metrics request answering meanwhile, and once the load
//! stops and Prometheus has drained its queue, hold every sample Prometheus holds. No latency is
//! asserted here (`overload_soak` in benches/ measures them). Skipped (saying so) when Prometheus
//! is not installed, unless `RINGTAIL_REQUIRE_PEERS=1`.

mod ingest_common;

use ingest_common::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TARGETS: usize = 20;
const SERIES_PER_TARGET: usize = 500;
const LOAD: Duration = Duration::from_secs(40);
/// Ringtail's share of one CPU, percent.
const CPU_PERCENT: u64 = 2;
/// Ringtail's `--remote-write-max-inflight-bytes`: less than one of Prometheus's requests, so
/// each runs alone and the 32 shards queue behind it past the 5 s saturation wait.
const INFLIGHT_BYTES: usize = 64 << 10;
/// The CFS period: the shortest whose 2 % is the kernel's minimum quota (1 ms).
const CPU_PERIOD_US: u64 = 50_000;
const RULES: &str = "rules:\n- seriesQuery: 'overload_requests_total{namespace!=\"\",pod!=\"\"}'\n  resources:\n    \
                     overrides:\n      namespace: {resource: namespace}\n      pod: {resource: pod}\n  name:\n    \
                     matches: '^overload_requests_total$'\n    as: 'requests_per_second'\n  \
                     metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[10m])) by (<<.GroupBy>>)'\n";

/// Ringtail's CPU share, cut: a cgroup (v2 `cpu.max`, else v1 `cpu.cfs_quota_us`) removed on
/// drop, or `taskset` to core 0.
struct CpuLimit {
    cgroup: Option<PathBuf>,
    how: String,
}

impl CpuLimit {
    fn apply(pid: u32) -> CpuLimit {
        let quota_us = (CPU_PERIOD_US * CPU_PERCENT / 100).max(1000);
        let v2 = Path::new("/sys/fs/cgroup");
        if std::fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"))
        {
            let dir = v2.join(format!("ringtail-overload-test-{pid}"));
            let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+cpu");
            let made = std::fs::create_dir(&dir)
                .and_then(|()| std::fs::write(dir.join("cpu.max"), format!("{quota_us} {CPU_PERIOD_US}")))
                .and_then(|()| std::fs::write(dir.join("cgroup.procs"), pid.to_string()));
            if made.is_ok() {
                return CpuLimit { how: format!("cgroup v2 cpu.max {quota_us} {CPU_PERIOD_US}"), cgroup: Some(dir) };
            }
            let _ = std::fs::remove_dir(&dir);
        }
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(format!("ringtail-overload-test-{pid}"));
            let made = std::fs::create_dir(&dir)
                .and_then(|()| std::fs::write(dir.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string()))
                .and_then(|()| std::fs::write(dir.join("cpu.cfs_quota_us"), quota_us.to_string()))
                .and_then(|()| std::fs::write(dir.join("cgroup.procs"), pid.to_string()));
            if made.is_ok() {
                return CpuLimit {
                    how: format!("cgroup v1 cfs quota {quota_us}/{CPU_PERIOD_US} µs"),
                    cgroup: Some(dir),
                };
            }
            let _ = std::fs::remove_dir(&dir);
        }
        let pinned = std::process::Command::new("taskset").args(["-a", "-p", "-c", "0", &pid.to_string()]).output();
        assert!(pinned.is_ok_and(|o| o.status.success()), "no writable cgroup and taskset failed");
        CpuLimit { cgroup: None, how: "taskset -c 0".to_string() }
    }

    /// Gives Ringtail its full CPU back (the load is over; the drain need not crawl).
    fn lift(&self) {
        if let Some(dir) = &self.cgroup {
            let _ = std::fs::write(dir.join("cpu.max"), "max");
            let _ = std::fs::write(dir.join("cpu.cfs_quota_us"), "-1");
        }
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        if let Some(dir) = &self.cgroup {
            // A failed test drops this before Ringtail: move what is left to the parent first,
            // since only an empty cgroup can be removed.
            let parent_procs = dir.parent().map(|p| p.join("cgroup.procs"));
            let left = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in left.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                if let Some(parent_procs) = &parent_procs {
                    let _ = std::fs::write(parent_procs, pid.to_string());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// One loopback listener per target, each serving `SERIES_PER_TARGET` series whose values change
/// every scrape (the first also the custom metric's pods); answers 503 once `serving` is off.
async fn start_targets(serving: Arc<AtomicBool>) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for target in 0..TARGETS {
        let scrapes = Arc::new(AtomicU64::new(0));
        let serving = serving.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let scrape = scrapes.fetch_add(1, Ordering::Relaxed) + 1;
                let on = serving.load(Ordering::Relaxed);
                async move {
                    if !on {
                        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
                    }
                    let mut page = String::from("# TYPE overload_load gauge\n");
                    for i in 0..SERIES_PER_TARGET {
                        let value = scrape as f64 + i as f64 / 1024.0;
                        page.push_str(&format!("overload_load{{target=\"t{target}\",series=\"s{i}\"}} {value}\n"));
                    }
                    if target == 0 {
                        for pod in 0..5u64 {
                            page.push_str(&format!(
                                "overload_requests_total{{namespace=\"overload\",pod=\"pod-{pod}\"}} {}\n",
                                scrape * (pod + 1)
                            ));
                        }
                    }
                    (axum::http::StatusCode::OK, page)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding a target");
        addrs.push(listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    addrs
}

/// Sum of the exposition lines of `text` starting with `prefix`.
fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Ringtail's remote-write answers with `code`, from its own `/metrics`.
async fn answered(ringtail: &Ringtail, code: u16) -> f64 {
    let metrics = client().get(format!("{}/metrics", ringtail.url())).send().await.unwrap().text().await.unwrap();
    metric_sum(&metrics, &format!("ringtail_remote_write_requests_total{{protocol=\"v1\",code=\"{code}\"}}"))
}

/// Requests that must keep answering 2xx during the overload; the failures seen.
async fn probe_until(urls: Vec<(reqwest::Client, String)>, stop: Arc<AtomicBool>) -> (u64, Vec<String>) {
    let (mut ok, mut failures) = (0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        for (client, url) in &urls {
            match client.get(url).send().await {
                Ok(r) if r.status().is_success() => ok += 1,
                Ok(r) => failures.push(format!("{url}: {} {}", r.status(), r.text().await.unwrap_or_default())),
                Err(e) => failures.push(format!("{url}: {e}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (ok, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_pushing_past_a_throttled_ringtail_gets_503_and_loses_nothing() {
    if !peers_installed_here() {
        return;
    }
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_dir.path().join("adapter.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let secure_port = free_port();
    let secure_listen = format!("127.0.0.1:{secure_port}");
    let inflight = INFLIGHT_BYTES.to_string();
    let ringtail = Ringtail::start(
        Some("scrape_configs: []\n"),
        &[
            "--secure-listen",
            &secure_listen,
            "--adapter-config",
            rules.to_str().unwrap(),
            "--remote-write-max-inflight-bytes",
            &inflight,
        ],
    )
    .await;
    let cpu = CpuLimit::apply(ringtail.process.pid());
    let ca = std::fs::read(ringtail.dir.path().join("data-tls").join("ca.crt")).expect("the generated CA");
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    let serving = Arc::new(AtomicBool::new(true));
    let targets = start_targets(serving.clone()).await;
    let list: Vec<String> = targets.iter().map(|a| format!("'{a}'")).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: overload\n    static_configs: [{{targets: [{}]}}]\n\
         remote_write:\n  - url: {}/api/v1/write\n    metadata_config: {{send: false}}\n    \
         queue_config: {{capacity: 8000, min_shards: 32, max_shards: 32, max_samples_per_send: 2000, \
         batch_send_deadline: 100ms, min_backoff: 30ms, max_backoff: 1s}}\n",
        list.join(", "),
        ringtail.url()
    );
    let prometheus = Prometheus::start(&config).await;

    // The overload: probes run while Prometheus pushes past what the throttled Ringtail takes.
    let stop = Arc::new(AtomicBool::new(false));
    let custom_metrics = format!(
        "https://localhost:{secure_port}/apis/custom.metrics.k8s.io/v1beta1/namespaces/overload/pods/%2A/requests_per_second"
    );
    // The metric is served once the pods have two samples within the rule's window (404 until
    // then, rightly); a 10-minute window keeps them in it however far behind the overload leaves
    // Ringtail.
    eventually("the custom metric to be served", Duration::from_secs(120), || async {
        let response = https.get(&custom_metrics).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    let probes = tokio::spawn(probe_until(
        vec![
            (client(), format!("{}/-/ready", ringtail.url())),
            (
                client(),
                format!("{}/api/v1/query?query=sum%28rate%28overload_requests_total%5B10m%5D%29%29", ringtail.url()),
            ),
            (https, custom_metrics),
        ],
        stop.clone(),
    ));
    tokio::time::sleep(LOAD).await;
    stop.store(true, Ordering::Relaxed);
    let (probes_ok, failures) = probes.await.unwrap();
    let refused = answered(&ringtail, 503).await;
    let rss_mib = ringtail.peak_rss_kib() / 1024;
    eprintln!(
        "overload ({}): {refused} answered 503, {} stored, {probes_ok} probes ok, peak RSS {rss_mib} MiB",
        cpu.how,
        answered(&ringtail, 204).await
    );
    assert!(failures.is_empty(), "requests failed during the overload: {failures:?}");
    assert!(refused > 0.0, "Ringtail was never overloaded ({}): no 503", cpu.how);

    // The load stops; Prometheus drains its queue into Ringtail.
    serving.store(false, Ordering::Relaxed);
    cpu.lift();
    let metrics_url = format!("{}/metrics", prometheus.url());
    eventually("Prometheus to drain its remote-write queue", Duration::from_secs(300), || async {
        let text = client().get(&metrics_url).send().await.ok()?.text().await.ok()?;
        let pending = metric_sum(&text, "prometheus_remote_storage_samples_pending");
        let lag = metric_sum(&text, "prometheus_remote_storage_highest_timestamp_in_seconds")
            - metric_sum(&text, "prometheus_remote_storage_queue_highest_sent_timestamp_seconds");
        (pending == 0.0 && lag <= 2.0).then_some(())
    })
    .await;
    let prometheus_metrics = client().get(&metrics_url).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric_sum(&prometheus_metrics, "prometheus_remote_storage_samples_failed_total"), 0.0);
    assert_eq!(metric_sum(&prometheus_metrics, "prometheus_remote_storage_samples_dropped_total"), 0.0);

    // Every sample Prometheus holds is in Ringtail; nothing was ever answered 429.
    let expected = prometheus.raw_samples("{job=\"overload\"}").await;
    let held: usize = expected.iter().map(|(_, s)| s.len()).sum();
    assert!(expected.len() > TARGETS * SERIES_PER_TARGET, "{} series", expected.len());
    wait_until_ringtail_holds(&ringtail, "{job=\"overload\"}", &expected).await;
    assert_eq!(answered(&ringtail, 429).await, 0.0);
    eprintln!("overload: {held} samples of {} series compared, 0 lost", expected.len());
    drop(prometheus);
    drop(ringtail);
    drop(cpu);
}

fn peers_installed_here() -> bool {
    peer::peers_installed(
        "prometheus_pushing_past_a_throttled_ringtail_gets_503_and_loses_nothing",
        &[peer::PROMETHEUS],
    )
}
