//! Workload (f), freshness: the time from a value change at the source to the new value being
//! visible where an HPA reads it. The bench serves one exporter page of 256 gauges
//! (`queue_messages_ready{namespace="fresh",pod="worker-K"}`) and changes one gauge every 0.3 s at
//! a known instant; Ringtail, Prometheus and VictoriaMetrics all scrape the page at the same
//! interval, and each is polled every 10 ms where its value is read: Ringtail's custom metrics
//! API; Prometheus's and VictoriaMetrics's query API with the query prometheus-adapter renders.
//! VictoriaMetrics runs with its default `-search.latencyOffset=30s`, which hides the newest 30 s
//! from queries. Scaling points are scrape intervals. Once, at the first point, the same is done
//! with remote-write: a new value is written to each system and the time runs from its ack.
//! Repeats run back to back on the same running systems: each repeat is its own run of changes,
//! and every figure is recorded per repeat.

use super::adapter_api::adapter_rules;
use super::repeats_text;
use crate::suite::exporter::{Exporter, PageRenderer};
use crate::suite::fleet::{series_labels, Pod, SeriesKind, SeriesShape};
use crate::suite::measure::{quantile, sorted};
use crate::suite::options::Scale;
use crate::suite::profile::ProfileSession;
use crate::suite::results::{charted, tabulated, WorkloadInfo};
use crate::suite::systems::{remote_write, RunningSystem, ScrapeJob, SystemKind, SystemSetup};
use crate::suite::Suite;
use anyhow::{anyhow, Context, Result};
use ingest::proto::v1;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const KEY: &str = "freshness";
const METRIC: &str = "queue_messages_ready";
/// Gauges on the page; a gauge changes again only after SLOTS × CHANGE_PERIOD (77 s), longer than
/// any system takes to show a change (VictoriaMetrics: 30 s + up to two 15 s scrape intervals), so
/// no change is overwritten before it is seen.
const SLOTS: usize = 256;
const CHANGE_PERIOD: Duration = Duration::from_millis(300);
const RW_CHANGE_PERIOD: Duration = Duration::from_millis(250);
const POLL_PERIOD: Duration = Duration::from_millis(10);
/// VictoriaMetrics' default `-search.latencyOffset`.
const VM_LATENCY_OFFSET: Duration = Duration::from_secs(30);

fn drain_time(interval: Duration) -> Duration {
    VM_LATENCY_OFFSET + interval * 3 + Duration::from_secs(10)
}

fn point_estimate(scale: &Scale, index: usize, interval_s: u64) -> f64 {
    // Start-up and warm-up, every repeat's changes, then the slowest system (VictoriaMetrics)
    // catching up: fitted to the default run of 2026-12-01 on the 2-core machine (start-up and
    // warm-up 6 s at a 2 s interval, 21 s at 15 s; the changes and the catch-up 40–47 s).
    let interval = interval_s as f64;
    let changes = (scale.repeats_at(index, scale.freshness_intervals.len()) * scale.freshness_changes) as f64;
    let offset = VM_LATENCY_OFFSET.as_secs_f64();
    let scrape = 4.0 + 1.1 * interval + changes * CHANGE_PERIOD.as_secs_f64() + offset + 2.0 + 0.3 * interval;
    let rw = changes * RW_CHANGE_PERIOD.as_secs_f64() + offset;
    scrape + if index == 0 { rw } else { 0.0 }
}

pub fn estimate_seconds(scale: &Scale) -> f64 {
    scale.freshness_intervals.iter().enumerate().map(|(i, &s)| point_estimate(scale, i, s)).sum()
}

pub fn info(scale: &Scale) -> WorkloadInfo {
    WorkloadInfo {
        key: KEY,
        title: "(f) Freshness",
        description: format!(
            "The bench serves one page of {SLOTS} gauges `{METRIC}{{namespace=\"fresh\",pod=\"worker-K\"}}` and \
             changes one every {} ms at a recorded instant. All three systems scrape it at the same interval, \
             running at once; each is polled every {} ms where an HPA's value comes from — Ringtail's custom \
             metrics API (`pods/*`), Prometheus's and VictoriaMetrics's `/api/v1/query` with the query \
             prometheus-adapter renders — until it shows the new value. Freshness is the time from the change \
             to the poll response that shows it (±{} ms). VictoriaMetrics keeps its default \
             `-search.latencyOffset=30s`, so it cannot show a value younger than 30 s; that is what a default \
             deployment sees. prometheus-adapter's own relist and cache delays are not included for \
             Prometheus. Once (at the first point) the same is measured with remote-write: a new value is \
             written to each system and the time runs from its acknowledgement. A change not seen within 30 s \
             + 3 scrape intervals + 10 s after the point's last change counts as missed.",
            CHANGE_PERIOD.as_millis(),
            POLL_PERIOD.as_millis(),
            POLL_PERIOD.as_millis()
        ),
        parameters: vec![
            format!("scrape intervals (s): {:?}", scale.freshness_intervals),
            format!(
                "value changes per point per repeat: {} (p99 of that many is close to the slowest)",
                scale.freshness_changes
            ),
            repeats_text(scale),
            "the systems run side by side and are polled at once, so there are no turns to rotate: each point \
             starts them once, in an order rotated from point to point, and its repeats follow one another on \
             the running systems (every repeat its own changes, p50, p99 and count never seen); remote-written \
             changes go to the systems in an order rotated change by change"
                .into(),
        ],
        point_label: "scrape interval (s)",
        points: scale.freshness_intervals.iter().map(|&s| s as f64).collect(),
        log_x: false,
        systems: SystemKind::ALL.to_vec(),
        figures: vec![
            charted("scrape_p50_ms", "scrape freshness p50", "ms", true),
            charted("scrape_p99_ms", "scrape freshness p99", "ms", true),
            tabulated("scrape_missed", "changes never seen", "count", true),
            tabulated("rw_p50_ms", "remote-write ack → visible, p50 (first point only)", "ms", true),
            tabulated("rw_p99_ms", "remote-write ack → visible, p99 (first point only)", "ms", true),
            tabulated("rw_missed", "remote-write changes never seen", "count", true),
        ],
        notes: vec![],
    }
}

/// Where a system's value is read, and how.
#[derive(Clone)]
enum ReadPath {
    /// Ringtail's custom metrics API: `pods/*` of a namespace.
    CustomMetrics { client: reqwest::Client, url: String },
    /// A Prometheus-compatible query API with the rendered adapter query.
    Query { client: reqwest::Client, url: String, query: String },
}

impl ReadPath {
    fn for_system(system: &RunningSystem, http: &reqwest::Client, namespace: &str, prefix: &str) -> Result<ReadPath> {
        Ok(match system.kind {
            SystemKind::Ringtail => {
                let adapter = system.adapter()?;
                ReadPath::CustomMetrics {
                    client: adapter.client.clone(),
                    url: format!(
                        "{}/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/pods/%2A/{METRIC}",
                        adapter.base_url
                    ),
                }
            }
            _ => {
                let pods: Vec<String> = (0..SLOTS).map(|k| format!("{prefix}-{k}")).collect();
                ReadPath::Query {
                    client: http.clone(),
                    url: format!("{}/query", system.api_url()),
                    query: format!("sum({METRIC}{{namespace=\"{namespace}\",pod=~\"{}\"}}) by (pod)", pods.join("|")),
                }
            }
        })
    }

    /// Current value per pod name.
    async fn read(&self) -> Result<HashMap<String, f64>> {
        let mut values = HashMap::new();
        match self {
            ReadPath::CustomMetrics { client, url } => {
                let body: serde_json::Value = client.get(url).send().await?.json().await?;
                for item in body["items"].as_array().into_iter().flatten() {
                    let name = item["describedObject"]["name"].as_str().unwrap_or_default();
                    if let Some(value) = item["value"].as_str().and_then(parse_quantity) {
                        values.insert(name.to_string(), value);
                    }
                }
            }
            ReadPath::Query { client, url, query } => {
                let body: serde_json::Value = client.post(url).form(&[("query", query)]).send().await?.json().await?;
                for series in body["data"]["result"].as_array().into_iter().flatten() {
                    let name = series["metric"]["pod"].as_str().unwrap_or_default();
                    if let Some(value) = series["value"][1].as_str().and_then(|v| v.parse().ok()) {
                        values.insert(name.to_string(), value);
                    }
                }
            }
        }
        Ok(values)
    }
}

/// A Kubernetes quantity (`7`, `1500m`, `2k`) as a number.
fn parse_quantity(text: &str) -> Option<f64> {
    let (number, scale) = match text.char_indices().last()? {
        (i, 'm') => (&text[..i], 1e-3),
        (i, 'k') => (&text[..i], 1e3),
        (i, 'M') => (&text[..i], 1e6),
        (i, 'G') => (&text[..i], 1e9),
        _ => (text, 1.0),
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// One change a poller waits for: pod, new value, when it changed (or was acked), and the repeat
/// it belongs to.
struct PendingChange {
    pod: String,
    value: f64,
    at: Instant,
    repeat: usize,
}

type ChangeLog = Arc<Mutex<Vec<PendingChange>>>;

/// What a poller saw: per logged change, its repeat and its latency in ms (`None`: never seen).
type Seen = Vec<(usize, Option<f64>)>;

/// Polls `path` every [`POLL_PERIOD`] until every logged change is seen, or `finished` is set
/// and `drain` has passed since.
async fn poll_changes(path: ReadPath, log: ChangeLog, finished: Arc<AtomicBool>, drain: Duration) -> Seen {
    let mut latencies: Vec<Option<f64>> = Vec::new();
    let mut finished_at: Option<Instant> = None;
    loop {
        // Read before the log: once set, every change is in the log this round reads.
        let done = finished.load(Ordering::Acquire);
        let sent = Instant::now();
        let values = path.read().await.unwrap_or_default();
        let answered = Instant::now();
        let all_seen = {
            let Ok(log) = log.lock() else { break };
            latencies.resize(log.len(), None);
            for (change, latency) in log.iter().zip(latencies.iter_mut()) {
                if latency.is_none() && values.get(&change.pod) == Some(&change.value) && change.at <= sent {
                    *latency = Some(answered.duration_since(change.at).as_secs_f64() * 1000.0);
                }
            }
            latencies.iter().all(Option::is_some)
        };
        if done {
            let since = *finished_at.get_or_insert_with(Instant::now);
            if all_seen || since.elapsed() > drain {
                break;
            }
        }
        tokio::time::sleep_until((sent + POLL_PERIOD).into()).await;
    }
    let Ok(log) = log.lock() else { return Vec::new() };
    latencies.resize(log.len(), None);
    log.iter().zip(latencies).map(|(change, latency)| (change.repeat, latency)).collect()
}

pub async fn run(suite: &mut Suite) -> Result<()> {
    let scale = suite.scale.clone();
    suite.results.add_workload(info(&scale));
    for (index, &interval_s) in scale.freshness_intervals.iter().enumerate() {
        if let Err(e) = run_point(suite, index, interval_s).await {
            suite.note(KEY, format!("scrape interval {interval_s}s failed: {e:#}"));
        }
        suite.step_done(point_estimate(&scale, index, interval_s));
    }
    Ok(())
}

/// The `index`-th point: every repeat's scrape changes, then, at the first point, every repeat's
/// remote-written changes.
async fn run_point(suite: &mut Suite, index: usize, interval_s: u64) -> Result<()> {
    let repeats = suite.scale.repeats_at(index, suite.scale.freshness_intervals.len());
    let interval = Duration::from_secs(interval_s);
    let values: Arc<Vec<AtomicU64>> = Arc::new((0..SLOTS).map(|_| AtomicU64::new(3)).collect());
    let page_values = values.clone();
    let render: PageRenderer = Arc::new(move |_, page: &mut String| {
        page.clear();
        let _ = writeln!(page, "# TYPE {METRIC} gauge");
        for (k, value) in page_values.iter().enumerate() {
            let _ = writeln!(
                page,
                "{METRIC}{{namespace=\"fresh\",pod=\"worker-{k}\",app=\"worker\"}} {}",
                value.load(Ordering::Acquire)
            );
        }
    });
    let exporter = Exporter::start(1, render).await?;
    let setup = SystemSetup {
        scrape_jobs: vec![ScrapeJob { job: "freshness".into(), interval, targets: exporter.targets.clone() }],
        adapter_rules: Some(adapter_rules(&[METRIC])),
        ..SystemSetup::default()
    };
    suite.status(format!("{KEY}: starting systems scraping every {interval_s}s"));
    let mut systems = Vec::new();
    for kind in SystemKind::order_for_repeat(index) {
        systems.push(RunningSystem::start(kind, &setup, &suite.http).await?);
    }
    let paths: Vec<(SystemKind, ReadPath)> = systems
        .iter()
        .map(|s| ReadPath::for_system(s, &suite.http, "fresh", "worker").map(|p| (s.kind, p)))
        .collect::<Result<_>>()?;
    // Warm-up: Ringtail and Prometheus show every gauge (VictoriaMetrics would take 30 s more; its
    // first changes are seen after that anyway).
    let warm_up = Duration::from_secs(30) + interval * 3;
    let deadline = Instant::now() + warm_up;
    for (kind, path) in &paths {
        if *kind == SystemKind::VictoriaMetrics {
            continue;
        }
        while path.read().await.map(|v| v.len()).unwrap_or(0) < SLOTS {
            if Instant::now() > deadline {
                return Err(anyhow!("{} did not show the scraped gauges within {warm_up:?}", kind.name()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let point = interval_s as f64;
    let changes = suite.scale.freshness_changes;
    let logs: Vec<ChangeLog> = paths.iter().map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let finished = Arc::new(AtomicBool::new(false));
    let pollers = spawn_pollers(&paths, &logs, &finished, drain_time(interval));
    let ringtail = systems.iter().find(|s| s.kind == SystemKind::Ringtail).map(RunningSystem::pid);
    let session = ringtail.and_then(|pid| ProfileSession::start(suite, KEY, SystemKind::Ringtail, pid));
    for repeat in 0..repeats {
        suite.status(format!("{KEY}: {changes} value changes, scrape interval {interval_s}s, repeat {}", repeat + 1));
        for k in repeat * changes..(repeat + 1) * changes {
            tokio::time::sleep(CHANGE_PERIOD).await;
            let slot = k % SLOTS;
            // Values end in 3, so a Kubernetes quantity never abbreviates them (1000 → "1k").
            let value = (10 * (k + 1) + 3) as u64;
            values[slot].store(value, Ordering::Release);
            let at = Instant::now();
            for log in &logs {
                if let Ok(mut log) = log.lock() {
                    log.push(PendingChange { pod: format!("worker-{slot}"), value: value as f64, at, repeat });
                }
            }
        }
    }
    finished.store(true, Ordering::Release);
    let figures = ["scrape_p50_ms", "scrape_p99_ms", "scrape_missed"];
    record_pollers(suite, &paths, pollers, point, repeats, figures).await?;
    if let Some(session) = session {
        session.finish(suite).await;
    }
    if index == 0 {
        remote_write_freshness(suite, &systems, point, repeats).await?;
    }
    drop(exporter);
    Ok(())
}

fn gauge_request(pod: &str, value: f64, ts_ms: i64) -> Vec<u8> {
    let shape = SeriesShape { name: METRIC, extra: vec![], kind: SeriesKind::Gauge };
    let pod = Pod::named("fresh-rw", "worker", pod.to_string(), 0);
    ingest::remote_write::encode_body(&v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: series_labels(&pod, &shape, "remote-write"),
            samples: vec![v1::Sample { value, timestamp: ts_ms }],
            exemplars: vec![],
            histograms: vec![],
        }],
        metadata: vec![],
    })
}

async fn remote_write_freshness(
    suite: &mut Suite,
    systems: &[RunningSystem],
    point: f64,
    repeats: usize,
) -> Result<()> {
    let changes = suite.scale.freshness_changes;
    suite.status(format!("{KEY}: {repeats} × {changes} remote-written changes"));
    let paths: Vec<(SystemKind, ReadPath)> = systems
        .iter()
        .map(|s| ReadPath::for_system(s, &suite.http, "fresh-rw", "rw").map(|p| (s.kind, p)))
        .collect::<Result<_>>()?;
    let logs: Vec<ChangeLog> = paths.iter().map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let finished = Arc::new(AtomicBool::new(false));
    let pollers = spawn_pollers(&paths, &logs, &finished, drain_time(Duration::ZERO));
    let ringtail = systems.iter().find(|s| s.kind == SystemKind::Ringtail).map(RunningSystem::pid);
    let session = ringtail.and_then(|pid| ProfileSession::start(suite, KEY, SystemKind::Ringtail, pid));
    for k in 0..repeats * changes {
        tokio::time::sleep(RW_CHANGE_PERIOD).await;
        let pod = format!("rw-{}", k % SLOTS);
        let value = (10 * (k + 1) + 3) as f64;
        for kind in SystemKind::order_for_repeat(k) {
            let Some(index) = systems.iter().position(|s| s.kind == kind) else { continue };
            remote_write(&suite.http, &systems[index].write_url(), gauge_request(&pod, value, super::now_ms())).await?;
            let at = Instant::now();
            if let Ok(mut log) = logs[index].lock() {
                log.push(PendingChange { pod: pod.clone(), value, at, repeat: k / changes });
            }
        }
    }
    finished.store(true, Ordering::Release);
    let recorded =
        record_pollers(suite, &paths, pollers, point, repeats, ["rw_p50_ms", "rw_p99_ms", "rw_missed"]).await;
    if let Some(session) = session {
        session.finish(suite).await;
    }
    recorded
}

/// Starts one poller per system, each watching its read path for the changes in its log.
fn spawn_pollers(
    paths: &[(SystemKind, ReadPath)],
    logs: &[ChangeLog],
    finished: &Arc<AtomicBool>,
    drain: Duration,
) -> Vec<tokio::task::JoinHandle<Seen>> {
    paths
        .iter()
        .zip(logs)
        .map(|((_, path), log)| tokio::spawn(poll_changes(path.clone(), log.clone(), finished.clone(), drain)))
        .collect()
}

/// Waits for each system's poller and records, per repeat, its median and p99 latency and its
/// missed changes at `point` under the figure names `[p50, p99, missed]`.
async fn record_pollers(
    suite: &mut Suite,
    paths: &[(SystemKind, ReadPath)],
    pollers: Vec<tokio::task::JoinHandle<Seen>>,
    point: f64,
    repeats: usize,
    [p50, p99, missed_figure]: [&'static str; 3],
) -> Result<()> {
    for ((kind, _), poller) in paths.iter().zip(pollers) {
        let seen = poller.await.context("a freshness poller failed")?;
        for repeat in 0..repeats {
            let (latencies, missed) = of_repeat(&seen, repeat);
            suite.results.record(KEY, p50, *kind, point, repeat, quantile(&latencies, 0.5));
            suite.results.record(KEY, p99, *kind, point, repeat, quantile(&latencies, 0.99));
            suite.results.record(KEY, missed_figure, *kind, point, repeat, missed as f64);
        }
    }
    Ok(())
}

/// The sorted latencies (ms) of `repeat`'s changes that were seen, and how many were not.
fn of_repeat(seen: &Seen, repeat: usize) -> (Vec<f64>, usize) {
    let changes = seen.iter().filter(|(r, _)| *r == repeat);
    let latencies = sorted(changes.clone().filter_map(|(_, latency)| *latency).collect());
    (latencies, changes.filter(|(_, latency)| latency.is_none()).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("13"), Some(13.0));
        assert_eq!(parse_quantity("1500m"), Some(1.5));
        assert_eq!(parse_quantity("2k"), Some(2000.0));
        assert_eq!(parse_quantity(""), None);
    }

    #[test]
    fn changes_grouped_by_repeat() {
        let seen: Seen = vec![(0, Some(30.0)), (0, Some(10.0)), (1, None), (1, Some(20.0)), (0, None), (1, None)];
        assert_eq!(of_repeat(&seen, 0), (vec![10.0, 30.0], 1));
        assert_eq!(of_repeat(&seen, 1), (vec![20.0], 2));
        assert_eq!(of_repeat(&seen, 2), (vec![], 0));
    }

    #[test]
    fn estimate_counts_every_repeat() {
        use crate::suite::options::SuiteOptions;
        use clap::Parser;
        let once = SuiteOptions::parse_from(["ringtail-bench", "--repeats", "1"]).scale();
        let thrice = SuiteOptions::parse_from(["ringtail-bench"]).scale();
        // Two more rounds of 30 changes at 0.3 s per point, and of 30 remote-written ones at 0.25 s.
        let extra = estimate_seconds(&thrice) - estimate_seconds(&once);
        assert!((extra - (4.0 * 2.0 * 30.0 * 0.3 + 2.0 * 30.0 * 0.25)).abs() < 1e-6, "{extra}");
    }
}
