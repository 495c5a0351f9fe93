//! Forwarding (`remote_write` destinations in the config file) end to end: the real `ringtail`
//! binary sends what it stores to a real VictoriaMetrics 1.79 and a real Prometheus 2.42
//! (`--web.enable-remote-write-receiver`), through a destination outage, a `kill -9` of Ringtail
//! itself and a real 400, and two replicas deduplicate in VictoriaMetrics. A stub server stands in
//! only for the answers no engine gives on demand (429 with Retry-After, 500).

mod ingest_common;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use ingest::proto::v1;
use ingest::remote_write::encode_body;
use ingest_common::peer::{peers_installed, PROMETHEUS, VICTORIA_METRICS};
use ingest_common::*;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Samples = BTreeMap<BTreeMap<String, String>, Vec<(i64, u64)>>;

fn start_victoria_metrics(dir: &Path, port: u16, extra: &[&str]) -> ChildGuard {
    let mut command = Command::new(VICTORIA_METRICS.binary);
    command
        .arg(format!("-storageDataPath={}", dir.join("vm").display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=10y")
        .arg("-search.disableCache")
        .arg("-search.latencyOffset=0s")
        .args(extra);
    ChildGuard::spawn("victoria-metrics", &mut command, &dir.join("vm.log"))
}

/// A Prometheus that only receives remote-write, on a fixed port and data directory (so it can be
/// stopped and started again with what it had).
async fn start_prometheus_receiver(dir: &Path, port: u16) -> ChildGuard {
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global: {}\n").expect("prometheus config");
    let mut command = Command::new(PROMETHEUS.binary);
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver");
    let guard = ChildGuard::spawn("prometheus", &mut command, &dir.join("prometheus.log"));
    wait_http_ok(&format!("http://127.0.0.1:{port}/-/ready"), START_TIMEOUT).await;
    guard
}

/// Starts `ringtail serve` on `port` with data in `dir/data` and `config` as its file; waits
/// until it is ready.
async fn start_ringtail(dir: &Path, port: u16, config: &str, log_name: &str) -> ChildGuard {
    let path = dir.join("ringtail.yaml");
    std::fs::write(&path, config).expect("writing config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringtail"));
    command
        .arg("serve")
        .arg("--standalone")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(&path)
        .env("RINGTAIL_LOG", "info");
    let guard = ChildGuard::spawn("ringtail", &mut command, &dir.join(log_name));
    wait_http_ok(&format!("http://127.0.0.1:{port}/-/ready"), START_TIMEOUT).await;
    guard
}

/// The metric names of a remote-write 1.0 request body, in order (none when it does not decode).
fn metric_names(body: &[u8]) -> Vec<String> {
    let decoded = snap::raw::Decoder::new().decompress_vec(body).unwrap_or_default();
    let request: v1::WriteRequest = prost::Message::decode(decoded.as_slice()).unwrap_or_default();
    request
        .timeseries
        .iter()
        .flat_map(|s| s.labels.iter().filter(|l| l.name == "__name__").map(|l| l.value.clone()))
        .collect()
}

/// A self-metric of Ringtail's `/metrics`, summed over the series whose labels contain all of
/// `matching` (as `name="value"` text).
async fn self_metric(base_url: &str, name: &str, matching: &[&str]) -> f64 {
    let text = client().get(format!("{base_url}/metrics")).send().await.expect("metrics").text().await.expect("text");
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter(|line| matching.iter().all(|m| line.contains(m)))
        .filter_map(|line| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn by_series(exported: &[ExportedSeries], add: &[(&str, &str)]) -> Samples {
    let mut out = Samples::new();
    for series in exported {
        let mut labels = series.metric.clone();
        for (name, value) in add {
            labels.insert(name.to_string(), value.to_string());
        }
        let entry = out.entry(labels).or_default();
        entry.extend(series.timestamps.iter().copied().zip(series.floats().iter().map(|v| v.to_bits())));
        entry.sort_unstable();
    }
    out
}

async fn prometheus_samples(base_url: &str, selector: &str) -> Samples {
    let body: serde_json::Value = client()
        .get(format!("{base_url}/api/v1/query"))
        .query(&[("query", format!("{selector}[2h]"))])
        .send()
        .await
        .expect("prometheus query")
        .json()
        .await
        .expect("prometheus JSON");
    let mut out = Samples::new();
    for series in body["data"]["result"].as_array().cloned().unwrap_or_default() {
        let labels: BTreeMap<String, String> = series["metric"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        let values: Vec<(i64, u64)> = series["values"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|pair| {
                let ts_ms = (pair[0].as_f64().unwrap_or_default() * 1000.0).round() as i64;
                (ts_ms, parse_prometheus_float(pair[1].as_str().unwrap_or("NaN")).to_bits())
            })
            .collect();
        out.insert(labels, values);
    }
    out
}

/// Posts one remote-write 1.0 request; true when it was acknowledged (2xx).
async fn write(base_url: &str, series: Vec<v1::TimeSeries>) -> bool {
    let body = encode_body(&v1::WriteRequest { timeseries: series, metadata: vec![] });
    match client()
        .post(format!("{base_url}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .timeout(Duration::from_secs(10))
        .body(body)
        .send()
        .await
    {
        Ok(response) => response.status().is_success(),
        Err(_) => false,
    }
}

/// Writes one sample per series of `fw_stream{pod="p0".."p{series-1}"}` every 100 ms, with
/// timestamps 100 ms apart, until `stop`; returns what was acknowledged.
fn stream_writes(
    url: String,
    series: usize,
    first_ts: i64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Samples> {
    tokio::spawn(async move {
        let mut acked = Samples::new();
        let mut ts = first_ts;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let value = (ts - first_ts) as f64 / 100.0;
            let batch: Vec<v1::TimeSeries> = (0..series)
                .map(|s| {
                    let pod = format!("p{s}");
                    ingest_common::series(&[("__name__", "fw_stream"), ("pod", &pod)], &[(ts, value + s as f64)])
                })
                .collect();
            if write(&url, batch).await {
                for s in 0..series {
                    let labels: BTreeMap<String, String> =
                        [("__name__".to_string(), "fw_stream".to_string()), ("pod".to_string(), format!("p{s}"))]
                            .into();
                    acked.entry(labels).or_default().push((ts, (value + s as f64).to_bits()));
                }
            }
            ts += 100;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        acked
    })
}

/// `expected` with `extra` labels added to every series.
fn with_labels(expected: &Samples, extra: &[(&str, &str)]) -> Samples {
    expected
        .iter()
        .map(|(labels, samples)| {
            let mut labels = labels.clone();
            for (n, v) in extra {
                labels.insert(n.to_string(), v.to_string());
            }
            (labels, samples.clone())
        })
        .collect()
}

/// Where `got` differs from `expected`: a series missing or extra, a timestamp missing or extra, or
/// a value further than `relative` (of its size) from the expected one (the first few).
fn differences(expected: &Samples, got: &Samples, relative: f64) -> Vec<String> {
    let mut out = Vec::new();
    for labels in got.keys().filter(|l| !expected.contains_key(*l)) {
        out.push(format!("unexpected series {labels:?}"));
    }
    for (labels, want) in expected {
        let Some(have) = got.get(labels) else {
            out.push(format!("{labels:?} missing"));
            continue;
        };
        if have.len() != want.len() {
            out.push(format!("{labels:?}: {} samples, expected {}", have.len(), want.len()));
            continue;
        }
        for ((wt, wv), (ht, hv)) in want.iter().zip(have) {
            let (w, h) = (f64::from_bits(*wv), f64::from_bits(*hv));
            if wt != ht || (w - h).abs() > relative * w.abs().max(h.abs()) {
                out.push(format!("{labels:?} at {wt}: expected {w:e}, got {h:e} at {ht}"));
                break;
            }
        }
    }
    out.truncate(5);
    out
}

/// Series of `expected` that `got` lacks samples of (the first few).
fn missing(expected: &Samples, got: &Samples) -> Vec<String> {
    let mut out = Vec::new();
    for (labels, samples) in expected {
        let have: std::collections::HashSet<&(i64, u64)> =
            got.get(labels).map(|s| s.iter().collect()).unwrap_or_default();
        let lacking = samples.iter().filter(|s| !have.contains(s)).count();
        if lacking > 0 {
            out.push(format!("{labels:?}: {lacking} of {} missing", samples.len()));
        }
    }
    out.truncate(5);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_sample_reaches_victoria_metrics_and_prometheus_identically_and_a_400_is_not_retried() {
    if !peers_installed("forwarding_to_vm_and_prometheus", &[VICTORIA_METRICS, PROMETHEUS]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (vm_port, prom_port, port) = (free_port(), free_port(), free_port());
    let _vm = start_victoria_metrics(dir.path(), vm_port, &[]);
    let _prometheus = start_prometheus_receiver(dir.path(), prom_port).await;
    let (vm_url, prom_url) = (format!("http://127.0.0.1:{vm_port}"), format!("http://127.0.0.1:{prom_port}"));
    wait_http_ok(&format!("{vm_url}/health"), START_TIMEOUT).await;
    let config = format!(
        "global:\n  external_labels: {{replica: a}}\nscrape_configs: []\nremote_write:\n\
         - url: {vm_url}/api/v1/write\n  name: vm\n\
         - url: {prom_url}/api/v1/write\n  name: prom\n  queue_config: {{max_samples_per_send: 100}}\n"
    );
    let _ringtail = start_ringtail(dir.path(), port, &config, "ringtail.log").await;
    let url = format!("http://127.0.0.1:{port}");

    // 20 series × 60 samples over the last half hour, in three requests; awkward values too (within
    // one series' range of magnitudes VictoriaMetrics keeps: it stores a block of values as
    // decimals with one exponent, so 1e300 beside 0.1 would turn the 0.1 into 0 there).
    let base = (tsdb::now_ms() - 30 * 60_000) / 1000 * 1000;
    for part in 0..3i64 {
        let batch: Vec<v1::TimeSeries> = (0..20)
            .map(|s| {
                let pod = format!("p{s}");
                let samples: Vec<(i64, f64)> = (part * 20..part * 20 + 20)
                    .map(|i| {
                        let value = match i % 4 {
                            0 => s as f64 * 1000.0 + i as f64,
                            1 => 0.1 * i as f64,
                            2 => -(i as f64) / 3.0,
                            _ => 1.5e6 + i as f64 * 0.25,
                        };
                        (base + i * 30_000, value)
                    })
                    .collect();
                ingest_common::series(&[("__name__", "fw_metric"), ("pod", &pod), ("job", "fw")], &samples)
            })
            .collect();
        assert!(write(&url, batch).await, "Ringtail refused a valid request");
    }
    let stored = by_series(&export_from(&url, "fw_metric").await, &[]);
    assert_eq!(stored.values().map(Vec::len).sum::<usize>(), 1200);
    let expected = with_labels(&stored, &[("replica", "a")]);
    // VictoriaMetrics keeps a value as a decimal (an integer mantissa and a power of ten), so a
    // float with 17 significant digits comes back within 1e-12 of itself, not bit for bit.
    let in_vm = eventually("VictoriaMetrics to hold every forwarded sample", Duration::from_secs(60), || async {
        let got = by_series(&export_from(&vm_url, "fw_metric").await, &[]);
        let differences = differences(&expected, &got, 1e-12);
        if !differences.is_empty() {
            eprintln!("not yet: {differences:?}");
        }
        differences.is_empty().then_some(got)
    })
    .await;
    assert_eq!(in_vm.len(), expected.len());
    let in_prometheus = eventually("Prometheus to hold every forwarded sample", Duration::from_secs(60), || async {
        let got = prometheus_samples(&prom_url, "fw_metric").await;
        (got == expected).then_some(got)
    })
    .await;
    assert_eq!(in_prometheus, expected);

    // A real 400: Prometheus already has a newer sample of fw_late, so the one Ringtail forwards
    // is out of order there. It is refused once, counted, never retried, and the sender moves on.
    let now = tsdb::now_ms();
    let late = |ts: i64, extra: &[(&'static str, &'static str)]| {
        let mut labels = vec![("__name__", "fw_late"), ("pod", "x")];
        labels.extend_from_slice(extra);
        vec![ingest_common::series(&labels, &[(ts, 1.0)])]
    };
    assert!(write(&prom_url, late(now, &[("replica", "a")])).await, "Prometheus took the newer sample");
    assert!(write(&url, late(now - 60_000, &[])).await);
    eventually("the 400 to be counted", Duration::from_secs(30), || async {
        (self_metric(&url, "prometheus_remote_storage_samples_failed_total", &["remote_name=\"prom\""]).await >= 1.0)
            .then_some(())
    })
    .await;
    assert!(write(&url, vec![ingest_common::series(&[("__name__", "fw_after")], &[(now, 2.0)])]).await);
    eventually("a later sample to reach Prometheus after the refused one", Duration::from_secs(30), || async {
        (!prometheus_samples(&prom_url, "fw_after").await.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failed = self_metric(&url, "prometheus_remote_storage_samples_failed_total", &["remote_name=\"prom\""]).await;
    let retried = self_metric(&url, "prometheus_remote_storage_samples_retried_total", &["remote_name=\"prom\""]).await;
    assert_eq!((failed, retried), (1.0, 0.0), "a 400 is counted once and never retried");
    // VictoriaMetrics takes out-of-order samples: it got fw_late.
    eventually("VictoriaMetrics to get fw_late", Duration::from_secs(30), || async {
        (!export_from(&vm_url, "fw_late").await.is_empty()).then_some(())
    })
    .await;
    let pending = self_metric(&url, "prometheus_remote_storage_samples_pending", &[]).await;
    assert_eq!(pending, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_down_for_30_seconds_gets_every_sample_in_order_afterwards() {
    if !peers_installed("forwarding_through_an_outage", &[PROMETHEUS]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (prom_port, port) = (free_port(), free_port());
    let prometheus = start_prometheus_receiver(dir.path(), prom_port).await;
    let prom_url = format!("http://127.0.0.1:{prom_port}");
    let config = format!(
        "scrape_configs: []\nremote_write:\n- url: {prom_url}/api/v1/write\n  name: prom\n  \
         queue_config: {{max_samples_per_send: 200, min_backoff: 50ms, max_backoff: 1s}}\n"
    );
    let _ringtail = start_ringtail(dir.path(), port, &config, "ringtail.log").await;
    let url = format!("http://127.0.0.1:{port}");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = stream_writes(url.clone(), 10, tsdb::now_ms(), stop.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Prometheus goes away (its data stays) while ingest goes on.
    drop(prometheus);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let pending = self_metric(&url, "prometheus_remote_storage_samples_pending", &[]).await;
    assert!(pending >= 2000.0, "30 s of 100 samples/s queue up while the destination is down: {pending}");
    let _prometheus = start_prometheus_receiver(dir.path(), prom_port).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.await.expect("writer task");
    assert!(acked.values().map(Vec::len).sum::<usize>() >= 3000);
    eventually("Prometheus to hold every acknowledged sample", Duration::from_secs(60), || async {
        let got = prometheus_samples(&prom_url, "fw_stream").await;
        let lacking = missing(&acked, &got);
        if !lacking.is_empty() {
            eprintln!("not yet: {lacking:?}");
        }
        lacking.is_empty().then_some(())
    })
    .await;
    // In order: Prometheus refuses an out-of-order sample with a 400, and none was refused.
    let failed = self_metric(&url, "prometheus_remote_storage_samples_failed_total", &[]).await;
    let retried = self_metric(&url, "prometheus_remote_storage_samples_retried_total", &[]).await;
    let dropped = self_metric(&url, "prometheus_remote_storage_samples_dropped_total", &[]).await;
    assert_eq!((failed, dropped), (0.0, 0.0));
    assert!(retried > 0.0, "the outage was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_ringtail_while_forwarding_loses_nothing_acknowledged_and_repeats_at_most_one_batch() {
    if !peers_installed("forwarding_across_kill_9", &[VICTORIA_METRICS]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (vm_port, port) = (free_port(), free_port());
    let _vm = start_victoria_metrics(dir.path(), vm_port, &[]);
    let vm_url = format!("http://127.0.0.1:{vm_port}");
    wait_http_ok(&format!("{vm_url}/health"), START_TIMEOUT).await;
    let max_batch = 50;
    let config = format!(
        "scrape_configs: []\nremote_write:\n- url: {vm_url}/api/v1/write\n  \
         queue_config: {{max_samples_per_send: {max_batch}}}\n"
    );
    let url = format!("http://127.0.0.1:{port}");
    let ringtail = start_ringtail(dir.path(), port, &config, "ringtail-1.log").await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = stream_writes(url.clone(), 20, tsdb::now_ms(), stop.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(ringtail); // SIGKILL, mid-stream
    let _ringtail = start_ringtail(dir.path(), port, &config, "ringtail-2.log").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.await.expect("writer task");
    let acked_count: usize = acked.values().map(Vec::len).sum();
    assert!(acked_count >= 1000, "{acked_count}");
    let got = eventually("VictoriaMetrics to hold every acknowledged sample", Duration::from_secs(60), || async {
        let got = by_series(&export_from(&vm_url, "fw_stream").await, &[]);
        let lacking = missing(&acked, &got);
        if !lacking.is_empty() {
            eprintln!("not yet: {lacking:?}");
        }
        lacking.is_empty().then_some(got)
    })
    .await;
    // Without deduplication VictoriaMetrics keeps a sample sent twice twice: count the repeats.
    let mut repeated = 0usize;
    for samples in got.values() {
        repeated += samples.windows(2).filter(|w| w[0].0 == w[1].0).count();
    }
    assert!(
        repeated <= max_batch,
        "{repeated} samples were sent twice; at most one unconfirmed batch ({max_batch}) may be"
    );
    eprintln!("kill -9: {acked_count} samples acknowledged, all forwarded, {repeated} sent twice");
}

/// What the stub answers, in order; past the end it answers 200.
#[derive(Default)]
struct Script {
    answers: Vec<(StatusCode, Option<&'static str>)>,
    arrivals: Vec<(Instant, StatusCode, Vec<String>)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_and_backoff_on_500_are_honoured_and_other_4xx_are_not_retried() {
    let script = Arc::new(Mutex::new(Script {
        answers: vec![
            (StatusCode::TOO_MANY_REQUESTS, Some("2")),
            (StatusCode::INTERNAL_SERVER_ERROR, None),
            (StatusCode::SERVICE_UNAVAILABLE, None),
            (StatusCode::OK, None),
            (StatusCode::UNPROCESSABLE_ENTITY, None),
        ],
        arrivals: Vec::new(),
    }));
    let app = axum::Router::new().route(
        "/write",
        axum::routing::post({
            let script = script.clone();
            move |body: axum::body::Bytes| {
                let script = script.clone();
                async move {
                    let names = metric_names(&body);
                    let mut script = script.lock();
                    let index = script.arrivals.len();
                    let (status, retry_after) = script.answers.get(index).copied().unwrap_or((StatusCode::OK, None));
                    script.arrivals.push((Instant::now(), status, names));
                    match retry_after {
                        Some(seconds) => (status, [("Retry-After", seconds)], "slow down").into_response(),
                        None => (status, "scripted answer").into_response(),
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
    let stub: SocketAddr = listener.local_addr().expect("stub addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = format!(
        "scrape_configs: []\nremote_write:\n- url: http://{stub}/write\n  name: stub\n  \
         queue_config: {{min_backoff: 100ms, max_backoff: 400ms}}\n"
    );
    let _ringtail = start_ringtail(dir.path(), port, &config, "ringtail.log").await;
    let url = format!("http://127.0.0.1:{port}");
    let now = tsdb::now_ms();
    let three =
        |name: &str| vec![ingest_common::series(&[("__name__", name)], &[(now, 1.0), (now + 1, 2.0), (now + 2, 3.0)])];
    assert!(write(&url, three("first")).await);
    eventually("the first batch to be taken", Duration::from_secs(30), || async {
        (script.lock().arrivals.len() >= 4).then_some(())
    })
    .await;
    assert!(write(&url, three("refused")).await);
    eventually("the 422 to be counted", Duration::from_secs(30), || async {
        (self_metric(&url, "prometheus_remote_storage_samples_failed_total", &[]).await >= 3.0).then_some(())
    })
    .await;
    assert!(write(&url, three("after")).await);
    eventually("the batch after the refused one to arrive", Duration::from_secs(30), || async {
        (script.lock().arrivals.len() >= 6).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let times: Vec<Instant> = script.lock().arrivals.iter().map(|(at, _, _)| *at).collect();
    let arrivals: Vec<(StatusCode, String)> =
        script.lock().arrivals.iter().map(|(_, status, names)| (*status, names.join(","))).collect();
    assert_eq!(
        arrivals,
        vec![
            (StatusCode::TOO_MANY_REQUESTS, "first".to_string()),
            (StatusCode::INTERNAL_SERVER_ERROR, "first".to_string()),
            (StatusCode::SERVICE_UNAVAILABLE, "first".to_string()),
            (StatusCode::OK, "first".to_string()),
            (StatusCode::UNPROCESSABLE_ENTITY, "refused".to_string()),
            (StatusCode::OK, "after".to_string()),
        ],
        "the refused batch is sent once; the others until taken"
    );
    let after_429 = times[1] - times[0];
    assert!(after_429 >= Duration::from_millis(1900), "Retry-After: 2 was not honoured: {after_429:?}");
    let after_500 = times[2] - times[1];
    assert!(after_500 >= Duration::from_millis(90), "no backoff after a 500: {after_500:?}");
    let retried = self_metric(&url, "prometheus_remote_storage_samples_retried_total", &[]).await;
    let failed = self_metric(&url, "prometheus_remote_storage_samples_failed_total", &[]).await;
    let sent = self_metric(&url, "prometheus_remote_storage_samples_total", &[]).await;
    assert_eq!((retried, failed, sent), (9.0, 3.0, 6.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_forwarding_to_one_deduplicating_victoria_metrics_yield_one_sample_per_scrape_interval() {
    if !peers_installed("forwarding_two_replicas_dedup", &[VICTORIA_METRICS]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let vm_port = free_port();
    let _vm = start_victoria_metrics(dir.path(), vm_port, &["-dedup.minScrapeInterval=2s"]);
    let vm_url = format!("http://127.0.0.1:{vm_port}");
    wait_http_ok(&format!("{vm_url}/health"), START_TIMEOUT).await;
    let target = TestTarget::start().await;
    // Both replicas scrape the same target every 2 s; the replica label names each in Ringtail's
    // own view and is dropped on the way to VictoriaMetrics, whose dedup then sees one series.
    let replica = |name: &str| {
        format!(
            "global: {{scrape_interval: 2s, external_labels: {{replica: {name}}}}}\nscrape_configs:\n\
             - job_name: demo\n  static_configs: [{{targets: ['{}']}}]\nremote_write:\n- url: {vm_url}/api/v1/write\n  \
             write_relabel_configs: [{{action: labeldrop, regex: replica}}]\n",
            target.addr
        )
    };
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&dir_a).expect("dir a");
    std::fs::create_dir_all(&dir_b).expect("dir b");
    let (port_a, port_b) = (free_port(), free_port());
    let _a = start_ringtail(&dir_a, port_a, &replica("a"), "ringtail.log").await;
    let _b = start_ringtail(&dir_b, port_b, &replica("b"), "ringtail.log").await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let count = |base: String| async move {
        let body: serde_json::Value = client()
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", "count_over_time(demo_temperature_celsius[20s])")])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("JSON");
        body["data"]["result"]
            .as_array()
            .map(|r| r.iter().filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok()).sum::<f64>())
            .unwrap_or_default()
    };
    let (in_a, in_b) =
        (count(format!("http://127.0.0.1:{port_a}")).await, count(format!("http://127.0.0.1:{port_b}")).await);
    assert!(in_a >= 9.0 && in_b >= 9.0, "each replica scrapes every 2 s: {in_a}, {in_b}");
    let sent_a =
        self_metric(&format!("http://127.0.0.1:{port_a}"), "prometheus_remote_storage_samples_total", &[]).await;
    let sent_b =
        self_metric(&format!("http://127.0.0.1:{port_b}"), "prometheus_remote_storage_samples_total", &[]).await;
    assert!(sent_a > 0.0 && sent_b > 0.0, "both replicas forward: {sent_a}, {sent_b}");
    let series = eventually("VictoriaMetrics to have the series", Duration::from_secs(30), || async {
        let exported = export_from(&vm_url, "demo_temperature_celsius").await;
        (!exported.is_empty()).then_some(exported)
    })
    .await;
    assert_eq!(
        series.len(),
        1,
        "the replicas' samples are one series there: {:?}",
        series.iter().map(|s| &s.metric).collect::<Vec<_>>()
    );
    let in_vm = count(vm_url.clone()).await;
    assert!(
        (9.0..=11.0).contains(&in_vm),
        "one sample per 2 s interval after dedup, not {in_vm} (replicas: {in_a} + {in_b})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_2_0_forwarding_reaches_a_2_0_receiver_unchanged() {
    // Neither Prometheus 2.42 nor VictoriaMetrics 1.79 receives 2.0: a second Ringtail does.
    let dir = tempfile::tempdir().expect("temp dir");
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&dir_a).expect("dir a");
    std::fs::create_dir_all(&dir_b).expect("dir b");
    let (port_a, port_b) = (free_port(), free_port());
    let _b = start_ringtail(&dir_b, port_b, "scrape_configs: []\n", "ringtail.log").await;
    let config = format!(
        "global: {{external_labels: {{cluster: eu}}}}\nscrape_configs: []\nremote_write:\n\
         - url: http://127.0.0.1:{port_b}/api/v1/write\n  protobuf_message: io.prometheus.write.v2.Request\n  \
         write_relabel_configs: [{{source_labels: [pod], regex: skip, action: drop}}]\n"
    );
    let _a = start_ringtail(&dir_a, port_a, &config, "ringtail.log").await;
    let (url_a, url_b) = (format!("http://127.0.0.1:{port_a}"), format!("http://127.0.0.1:{port_b}"));
    let now = tsdb::now_ms();
    let batch: Vec<v1::TimeSeries> = ["a", "b", "skip"]
        .iter()
        .map(|pod| {
            ingest_common::series(
                &[("__name__", "fw_v2"), ("pod", pod)],
                &[(now - 2000, 1.5), (now - 1000, f64::NAN), (now, -0.25)],
            )
        })
        .collect();
    assert!(write(&url_a, batch).await);
    let stored = by_series(&export_from(&url_a, "fw_v2").await, &[("cluster", "eu")]);
    let expected: Samples =
        stored.into_iter().filter(|(labels, _)| labels.get("pod").map(String::as_str) != Some("skip")).collect();
    assert_eq!(expected.len(), 2);
    let got = eventually("the 2.0 receiver to hold the forwarded samples", Duration::from_secs(30), || async {
        let got = by_series(&export_from(&url_b, "fw_v2").await, &[]);
        (got.len() == 2 && got.values().all(|s| s.len() == 3)).then_some(got)
    })
    .await;
    assert_eq!(got, expected, "bit for bit, NaN included");
    let dropped = self_metric(&url_a, "prometheus_remote_storage_samples_dropped_total", &["reason=\"relabel\""]).await;
    assert_eq!(dropped, 3.0, "the relabeled-away series is counted");
}

/// A destination behind OAuth 2.0 (`oauth2` of a `remote_write` entry): Ringtail asks the token
/// endpoint with its client credentials and sends every batch with the token; a batch sent while
/// the endpoint refuses the client is kept and sent once a token is had again. (No engine here
/// both receives remote-write and checks OAuth tokens, so a stub stands in for the pair.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_behind_oauth2_gets_every_batch_with_a_token() {
    #[derive(Default)]
    struct Endpoint {
        refuse: bool,
        issued: Vec<String>,
        asked: Vec<(String, String)>,
        arrivals: Vec<(String, Vec<String>)>,
    }
    let state = Arc::new(Mutex::new(Endpoint { refuse: false, ..Endpoint::default() }));
    let token_state = state.clone();
    let write_state = state.clone();
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let state = token_state.clone();
                async move {
                    let authorization =
                        headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    let mut state = state.lock();
                    state.asked.push((authorization, body));
                    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
                    if state.refuse {
                        return (StatusCode::UNAUTHORIZED, json, "{\"error\":\"invalid_client\"}".to_string());
                    }
                    let token = format!("tok-{}", state.issued.len());
                    state.issued.push(token.clone());
                    (StatusCode::OK, json, format!("{{\"access_token\":\"{token}\",\"expires_in\":3600}}"))
                }
            }),
        )
        .route(
            "/write",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let state = write_state.clone();
                async move {
                    let authorization =
                        headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    let names = metric_names(&body);
                    let mut state = state.lock();
                    let known =
                        authorization.strip_prefix("Bearer ").is_some_and(|t| state.issued.iter().any(|i| i == t));
                    state.arrivals.push((authorization, names));
                    if known {
                        StatusCode::OK
                    } else {
                        StatusCode::UNAUTHORIZED
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
    let stub: SocketAddr = listener.local_addr().expect("stub addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "s3cret\n").expect("secret");
    let port = free_port();
    let config = format!(
        "scrape_configs: []\nremote_write:\n- url: http://{stub}/write\n  name: stub\n  \
         oauth2: {{client_id: ringtail, client_secret_file: {}, token_url: 'http://{stub}/token', scopes: [write]}}\n  \
         queue_config: {{min_backoff: 100ms, max_backoff: 400ms}}\n",
        secret_file.display()
    );
    let _ringtail = start_ringtail(dir.path(), port, &config, "ringtail.log").await;
    let url = format!("http://127.0.0.1:{port}");
    let now = tsdb::now_ms();
    let one = |name: &str, at: i64| vec![ingest_common::series(&[("__name__", name)], &[(at, 1.0)])];
    assert!(write(&url, one("first", now)).await);
    eventually("the first batch to arrive", Duration::from_secs(30), || async {
        (!state.lock().arrivals.is_empty()).then_some(())
    })
    .await;
    // The client is refused from now on, and the secret rotates: the kept token is no longer used.
    state.lock().refuse = true;
    std::fs::write(&secret_file, "rotated\n").expect("secret");
    assert!(write(&url, one("second", now + 1)).await);
    eventually("Ringtail to ask for a token with the rotated secret", Duration::from_secs(30), || async {
        (state.lock().asked.len() >= 3).then_some(())
    })
    .await;
    state.lock().refuse = false;
    eventually("the second batch to arrive with a new token", Duration::from_secs(30), || async {
        let state = state.lock();
        state
            .arrivals
            .iter()
            .any(|(a, names)| a == "Bearer tok-1" && names.contains(&"second".to_string()))
            .then_some(())
    })
    .await;
    let state = state.lock();
    assert_eq!(state.arrivals[0], ("Bearer tok-0".to_string(), vec!["first".to_string()]));
    assert!(
        state.arrivals.iter().all(|(a, _)| a.starts_with("Bearer tok-")),
        "no batch without a token: {:?}",
        state.arrivals
    );
    // "ringtail:s3cret" in a Basic header, then the rotated secret.
    assert_eq!(state.asked[0].0, "Basic cmluZ3RhaWw6czNjcmV0");
    assert_eq!(state.asked[0].1, "grant_type=client_credentials&scope=write");
    assert!(state.asked.iter().any(|(a, _)| a == "Basic cmluZ3RhaWw6cm90YXRlZA=="), "{:?}", state.asked);
    assert!(
        state.asked.iter().any(|(_, form)| form.contains("client_secret=rotated")),
        "after the Basic header is refused the secret goes in the form: {:?}",
        state.asked
    );
}
