//! `adapter_compare` measures the custom metrics API the way an HPA uses it: `pods/*` with a
//! label selector over 1 000 pods (`pods/%2A/bench_ratio?labelSelector=app=web`), sent open-loop
//! at 500 requests/s over TLS, latency recorded with hdrhistogram, the server's peak RSS (`VmHWM`)
//! and its CPU time per request (`/proc/<pid>/stat`). The comparison runs the same scenario the
//! prometheus-adapter way: Prometheus (remote-write receiver) fed the same data, and the query
//! prometheus-adapter renders for that request —
//! `sum(bench_ratio{namespace="bench",pod=~"pod-0|…|pod-999"}) by (pod)` — sent to its HTTP API at
//! the same rate (the adapter's own hop and Kubernetes lookup are not counted, so the comparison
//! favours Prometheus).
//!
//! It also measures freshness: the time from a remote-write ack of a new pod's sample to its value
//! answering in the custom metrics API (polled every millisecond), 20 times.
//!
//! And the external query source (`--prometheus-url`): a second Ringtail with an empty store
//! answers the same `pods/*` request by querying that Prometheus, measured at the same rate next to
//! the query it sends (`sum(bench_ratio{namespace="bench",pod!="",app="web"}) by (pod)`) sent to
//! Prometheus directly: the difference is what the external-source path adds to the source's own
//! latency.
//!
//! Build first: `cargo build --release -p ringtail-apiserver -p ringtail-benches`, then run
//! `target/release/adapter_compare [--seconds N] [--rate N] [--warmup N]` (N seconds of
//! unrecorded load at the same rate before each measured run, 3 by default). Ringtail is taken from
//! `$RINGTAIL_BIN` or next to this program; Prometheus from `/usr/bin/prometheus`.
#![forbid(unsafe_code)]

use hdrhistogram::Histogram;
use ingest::proto::v1;
use ingest::remote_write::encode_body;
use ringtail_benches::{
    clock_ticks_per_second, cpu_seconds, free_port, parse_number_flags, peak_rss_mib, ringtail_bin, Peer,
};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PODS: usize = 1_000;
const NAMESPACE: &str = "bench";
const METRIC: &str = "bench_ratio";

struct Options {
    seconds: u64,
    rate: u64,
    /// Seconds of load at the same rate before each measured run, not recorded: they open the
    /// client's connection pool (TLS handshakes), as an HPA's long-lived connections are open.
    warmup: u64,
}

fn parse_options() -> Result<Options, String> {
    let values = parse_number_flags(&[("--seconds", 20), ("--rate", 500), ("--warmup", 3)])?;
    Ok(Options { seconds: values[0], rate: values[1], warmup: values[2] })
}

use tsdb::now_ms;

/// One remote-write request: every pod's series (1 000 `app=web` pods and 1 000 others), one
/// sample each at `ts_ms`.
fn pods_request(ts_ms: i64, round: usize) -> Vec<u8> {
    let mut timeseries = Vec::with_capacity(2 * PODS);
    for (app, prefix) in [("web", "pod"), ("other", "other")] {
        for i in 0..PODS {
            let mut labels = vec![
                ("__name__", METRIC.to_string()),
                ("app", app.to_string()),
                ("namespace", NAMESPACE.to_string()),
                ("pod", format!("{prefix}-{i}")),
            ];
            labels.sort();
            timeseries.push(v1::TimeSeries {
                labels: labels.into_iter().map(|(n, v)| v1::Label { name: n.to_string(), value: v }).collect(),
                samples: vec![v1::Sample { value: 1.0 + ((i + round) % 100) as f64 / 100.0, timestamp: ts_ms }],
                exemplars: vec![],
                histograms: vec![],
            });
        }
    }
    encode_body(&v1::WriteRequest { timeseries, metadata: vec![] })
}

fn single_request(pod: &str, value: f64, ts_ms: i64) -> Vec<u8> {
    let labels = [("__name__", METRIC), ("app", "fresh"), ("namespace", NAMESPACE), ("pod", pod)];
    encode_body(&v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: labels.iter().map(|(n, v)| v1::Label { name: n.to_string(), value: v.to_string() }).collect(),
            samples: vec![v1::Sample { value, timestamp: ts_ms }],
            exemplars: vec![],
            histograms: vec![],
        }],
        metadata: vec![],
    })
}

async fn wait_ok(client: &reqwest::Client, url: &str) -> Result<(), String> {
    ringtail_benches::wait_ok(client, url, Duration::from_secs(60), Duration::from_millis(100)).await
}

/// Sends `make()` at `rate`/s for `seconds`, open loop; returns the latency histogram (µs) and
/// the count of failed or wrong answers. `check` validates each response body.
async fn load(
    rate: u64,
    seconds: u64,
    make: impl Fn() -> reqwest::RequestBuilder,
    check: fn(&str) -> bool,
) -> (Histogram<u64>, u64) {
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram")));
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for _ in 0..rate * seconds {
        ticker.tick().await;
        let request = make();
        let histogram = histogram.clone();
        let failures = failures.clone();
        // Latency counts from the intended send time (no coordinated omission).
        let intended = Instant::now();
        tasks.push(tokio::spawn(async move {
            let ok = match request.send().await {
                Ok(r) if r.status().is_success() => r.text().await.map(|body| check(&body)).unwrap_or(false),
                _ => false,
            };
            let micros = intended.elapsed().as_micros() as u64;
            if let Ok(mut h) = histogram.lock() {
                let _ = h.record(micros.max(1));
            }
            if !ok {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let histogram = histogram.lock().map(|h| h.clone()).unwrap_or_else(|_| Histogram::new(3).expect("histogram"));
    (histogram, failures.load(std::sync::atomic::Ordering::Relaxed))
}

/// Prints one result line; `cpu_seconds` is the server's CPU time (user + system) during the load,
/// reported per request: the figure that decides the latency once a shared machine saturates.
fn report(name: &str, histogram: &Histogram<u64>, failures: u64, rss_mib: f64, cpu_seconds: f64) {
    println!(
        "{name:<34} requests {:>6}  failed {failures:>4}  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  peak RSS {rss_mib:>7.1} MiB  server CPU {:>6.3} ms/request",
        histogram.len(),
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0,
        cpu_seconds * 1000.0 / histogram.len().max(1) as f64,
    );
}

/// Items of a MetricValueList, counted by their keys (a full JSON parse per response would cost
/// the load generator more CPU than the server under test).
fn items_count(body: &str) -> usize {
    body.matches("\"describedObject\"").count()
}

/// Series of a Prometheus query result, counted the same way.
fn series_count(body: &str) -> usize {
    body.matches("\"metric\":{").count()
}

async fn run(options: Options) -> Result<(), String> {
    // A request not answered within 10 s counts as failed (as in the suite), so a peer that
    // falls behind cannot hang the run.
    let plain =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;

    // --- Ringtail ---
    let (ringtail, http, tls, secure) = start_ringtail(&plain, &[], "ringtail.log").await?;
    let write_url = format!("{http}/api/v1/write");
    let start_ms = now_ms() - 60_000;
    for round in 0..4 {
        ringtail_benches::remote_write_once(&plain, &write_url, pods_request(start_ms + round as i64 * 15_000, round))
            .await?;
    }

    // Freshness: remote-write ack → value served.
    let mut freshness_ms = Vec::new();
    for i in 0..20 {
        let pod = format!("fresh-{i}");
        let value = 7.0 + i as f64;
        ringtail_benches::remote_write_once(&plain, &write_url, single_request(&pod, value, now_ms())).await?;
        let acked = Instant::now();
        let url = format!("{secure}/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods/{pod}/{METRIC}");
        loop {
            if let Ok(r) = tls.get(&url).send().await {
                if r.status().is_success()
                    && r.text().await.map(|b| b.contains(&format!("\"{}\"", value))).unwrap_or(false)
                {
                    break;
                }
            }
            if acked.elapsed() > Duration::from_secs(30) {
                return Err(format!("{pod} never showed up in the custom metrics API"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        freshness_ms.push(acked.elapsed().as_secs_f64() * 1000.0);
    }
    freshness_ms.sort_by(f64::total_cmp);
    println!(
        "freshness (remote-write ack → custom metrics API): p50 {:.1} ms, max {:.1} ms over {} pods",
        freshness_ms[freshness_ms.len() / 2],
        freshness_ms[freshness_ms.len() - 1],
        freshness_ms.len()
    );

    measure_selector_requests(&options, &ringtail, &tls, &secure, "ringtail pods/* labelSelector").await?;
    drop(ringtail);

    // --- Prometheus + the query prometheus-adapter renders ---
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
    let prometheus =
        Peer::start("prometheus", Path::new("/usr/bin/prometheus"), &args, &[], port, dir, "prometheus.log")?;
    let prometheus_pid = prometheus.pid();
    let prom = format!("http://127.0.0.1:{port}");
    wait_ok(&plain, &format!("{prom}/-/ready")).await?;
    let start_ms = now_ms() - 60_000;
    for round in 0..4 {
        ringtail_benches::remote_write_once(
            &plain,
            &format!("{prom}/api/v1/write"),
            pods_request(start_ms + round as i64 * 15_000, round),
        )
        .await?;
    }
    let names: Vec<String> = (0..PODS).map(|i| format!("pod-{i}")).collect();
    let query = format!("sum({METRIC}{{namespace=\"{NAMESPACE}\",pod=~\"{}\"}}) by (pod)", names.join("|"));
    let query_url = format!("{prom}/api/v1/query");
    let probe = plain
        .post(&query_url)
        .form(&[("query", query.as_str())])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    if series_count(&probe) != PODS {
        return Err(format!("Prometheus: expected {PODS} series, got {}: {probe:.200}", series_count(&probe)));
    }
    if options.warmup > 0 {
        let plain_for_warmup = plain.clone();
        let (url, query) = (query_url.clone(), query.clone());
        load(
            options.rate,
            options.warmup,
            move || plain_for_warmup.post(&url).form(&[("query", query.as_str())]),
            |body| series_count(body) == PODS,
        )
        .await;
    }
    let ticks = clock_ticks_per_second();
    let cpu_before = cpu_seconds(prometheus_pid, ticks)?;
    let plain_for_load = plain.clone();
    let (histogram, failures) = load(
        options.rate,
        options.seconds,
        move || plain_for_load.post(&query_url).form(&[("query", query.as_str())]),
        |body| series_count(body) == PODS,
    )
    .await;
    let cpu = cpu_seconds(prometheus_pid, ticks)? - cpu_before;
    report("prometheus rendered query (HTTP)", &histogram, failures, peak_rss_mib(prometheus_pid), cpu);
    measure_external_source(&options, &plain, &prom).await?;
    drop(prometheus);
    Ok(())
}

/// Starts a Ringtail serving [`rules_text`] with `extra_args`: the process, its HTTP base URL, a
/// client trusting its generated CA, and its metrics-API base URL.
async fn start_ringtail(
    plain: &reqwest::Client,
    extra_args: &[String],
    log_name: &str,
) -> Result<(Peer, String, reqwest::Client, String), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (http_port, secure_port) = (free_port()?, free_port()?);
    let rules = dir.path().join("adapter.yaml");
    std::fs::write(&rules, rules_text()).map_err(|e| e.to_string())?;
    let mut args = vec![
        "serve".to_string(),
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{http_port}"),
        "--secure-listen".into(),
        format!("127.0.0.1:{secure_port}"),
        "--adapter-config".into(),
        rules.display().to_string(),
    ];
    args.extend(extra_args.iter().cloned());
    let envs = [("RINGTAIL_LOG", "warn")];
    let ringtail = Peer::start("ringtail", &ringtail_bin()?, &args, &envs, http_port, dir, log_name)?;
    let http = format!("http://127.0.0.1:{http_port}");
    wait_ok(plain, &format!("{http}/-/ready")).await?;
    let ca_path = ringtail.dir().join("data-tls").join("ca.crt");
    let ca = std::fs::read(&ca_path).map_err(|e| format!("reading {}: {e}", ca_path.display()))?;
    let tls = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).map_err(|e| e.to_string())?)
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let secure = format!("https://localhost:{secure_port}");
    wait_ok(&tls, &format!("{secure}/healthz")).await?;
    Ok((ringtail, http, tls, secure))
}

/// The HPA's `pods/*` request (label selector `app=web`) at `options.rate` for `options.seconds`
/// after the warm-up, checked to answer every pod; reported as `name`, its histogram returned.
async fn measure_selector_requests(
    options: &Options,
    ringtail: &Peer,
    tls: &reqwest::Client,
    secure: &str,
    name: &str,
) -> Result<Histogram<u64>, String> {
    let selector_url = format!(
        "{secure}/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods/%2A/{METRIC}?labelSelector=app%3Dweb"
    );
    let probe =
        tls.get(&selector_url).send().await.map_err(|e| e.to_string())?.text().await.map_err(|e| e.to_string())?;
    if items_count(&probe) != PODS {
        let log = std::fs::read_dir(ringtail.dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect::<Vec<_>>()
            .join("\n");
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        return Err(format!(
            "{name}: expected {PODS} items, got {}: {probe:.300}\nlog (newest first):\n{}",
            items_count(&probe),
            tail.join("\n")
        ));
    }
    let ticks = clock_ticks_per_second();
    if options.warmup > 0 {
        let tls_for_warmup = tls.clone();
        let url = selector_url.clone();
        load(options.rate, options.warmup, move || tls_for_warmup.get(&url), |body| items_count(body) == PODS).await;
    }
    let pid = ringtail.pid();
    let cpu_before = cpu_seconds(pid, ticks)?;
    let tls_for_load = tls.clone();
    let (histogram, failures) =
        load(options.rate, options.seconds, move || tls_for_load.get(&selector_url), |body| items_count(body) == PODS)
            .await;
    let cpu = cpu_seconds(pid, ticks)? - cpu_before;
    report(name, &histogram, failures, peak_rss_mib(pid), cpu);
    Ok(histogram)
}

/// The one rule both Ringtails serve.
fn rules_text() -> String {
    format!(
        "rules:\n- seriesQuery: '{METRIC}{{namespace!=\"\",pod!=\"\"}}'\n  resources:\n    overrides:\n      namespace: {{resource: namespace}}\n      pod: {{resource: pod}}\n  metricsQuery: 'sum(<<.Series>>{{<<.LabelMatchers>>}}) by (<<.GroupBy>>)'\n"
    )
}

/// A Ringtail with an empty store and `--prometheus-url` at `prom`: the `pods/*` request through it,
/// then the query it sends for that request straight to Prometheus, both at the same rate.
async fn measure_external_source(options: &Options, plain: &reqwest::Client, prom: &str) -> Result<(), String> {
    // Prometheus may still be working off the queries of the run before (it falls behind at high
    // rates, and a query the client gave up on still runs): wait until it answers at once.
    let query = format!("sum({METRIC}{{namespace=\"{NAMESPACE}\",pod!=\"\",app=\"web\"}}) by (pod)");
    let query_url = format!("{prom}/api/v1/query");
    let settled = Instant::now();
    loop {
        let asked = Instant::now();
        let answered = plain.get(&query_url).query(&[("query", query.as_str())]).send().await.is_ok();
        if answered && asked.elapsed() < Duration::from_millis(100) {
            break;
        }
        if settled.elapsed() > Duration::from_secs(120) {
            return Err("Prometheus did not settle within 120 s after the previous run".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (ringtail, _, tls, secure) =
        start_ringtail(plain, &["--prometheus-url".to_string(), prom.to_string()], "ringtail-external.log").await?;
    let through = measure_selector_requests(options, &ringtail, &tls, &secure, "ringtail via --prometheus-url").await?;
    drop(ringtail);

    // The query Ringtail sent for that request, straight to Prometheus.
    let plain_for_load = plain.clone();
    let (direct, failures) = load(
        options.rate,
        options.seconds,
        move || plain_for_load.get(&query_url).query(&[("query", query.as_str())]),
        |body| series_count(body) == PODS,
    )
    .await;
    report("prometheus, the query Ringtail sends", &direct, failures, 0.0, 0.0);
    let added = |q: f64| (through.value_at_quantile(q) as f64 - direct.value_at_quantile(q) as f64) / 1000.0;
    println!(
        "external source path adds: p50 {:+.2} ms, p99 {:+.2} ms over the source's own latency (TLS, JSON parse, answer)",
        added(0.5),
        added(0.99)
    );
    Ok(())
}

fn main() {
    ringtail_benches::run_main("adapter_compare", parse_options, run);
}
