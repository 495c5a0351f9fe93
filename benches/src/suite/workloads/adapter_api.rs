//! Workload (d), custom metrics API load: `pods/*` with a label selector (`app=web`) over P pods
//! (and P `app=other` pods the selector must leave out), sent open-loop at a fixed rate; latency
//! from each request's scheduled send time, in an hdrhistogram. Ringtail answers through its
//! custom.metrics.k8s.io API over TLS; Prometheus and VictoriaMetrics get the query
//! prometheus-adapter renders for that request
//! (`sum(requests_in_flight{namespace="bench",pod=~"web-0|…"}) by (pod)`) on their HTTP query API —
//! without the adapter's own hop and Kubernetes lookups, which favours them.
//!
//! Two loads per point: the base rate (`--api-rate`, at `--api-pods`) and a high rate
//! (`--api-high-rate`, at `--api-high-rate-pods`, its own report section), on the same started
//! systems. Each run also reads the bench's own CPU over the load — the load generator's side,
//! TLS and response checks included — and reports it apart from the server's.

use super::repeats_text;
use crate::suite::fleet::{series_labels, Pod, SeriesKind, SeriesShape};
use crate::suite::measure::{cpu, ensure_open_files, open_loop, own_cpu, peak_mib, wait_idle, ResponseCheck};
use crate::suite::options::Scale;
use crate::suite::profile::ProfileSession;
use crate::suite::results::{charted, tabulated, FigureSpec, WorkloadInfo};
use crate::suite::systems::{remote_write, RunningSystem, SystemKind, SystemSetup};
use crate::suite::Suite;
use anyhow::{anyhow, Result};
use ingest::proto::v1;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const KEY: &str = "adapter-api";
/// The high-rate load's report section.
pub const HIGH_RATE_KEY: &str = "adapter-api-high-rate";
const NAMESPACE: &str = "bench";
const METRIC: &str = "requests_in_flight";

/// Load sent at the same rate before each measured run and not recorded: it opens the client's
/// connection pool (TLS handshakes) and warms the server, as an HPA's long-lived connections are.
const WARMUP: Duration = Duration::from_secs(2);

/// Builds one load request.
type RequestMaker = Box<dyn Fn() -> reqwest::RequestBuilder>;

/// The prometheus-adapter rules file Ringtail serves the metric with.
pub fn adapter_rules(metrics: &[&str]) -> String {
    let mut rules = String::from("rules:\n");
    for metric in metrics {
        rules.push_str(&format!(
            "- seriesQuery: '{metric}{{namespace!=\"\",pod!=\"\"}}'\n  resources:\n    overrides:\n      namespace: {{resource: namespace}}\n      pod: {{resource: pod}}\n  metricsQuery: 'sum(<<.Series>>{{<<.LabelMatchers>>}}) by (<<.GroupBy>>)'\n"
        ));
    }
    rules
}

/// Seconds of one system's run: the load and fresh samples, then, once Prometheus's and
/// VictoriaMetrics's requests pile up (at 500 req/s on 2 cores from about 1000 pods), the 10 s
/// timeout drain and the wait for the server to go idle. Fitted to the default run of 2026-12-01
/// on the 2-core machine: 5.6 s a run at 100 pods; at 3000 pods 10 s for Ringtail, 15–16 s for
/// the others.
fn run_estimate(scale: &Scale, kind: SystemKind, pods: usize, rate: u64) -> f64 {
    let base = scale.api_duration.as_secs_f64() + WARMUP.as_secs_f64() + 0.6;
    let overloaded = rate as f64 * pods as f64 >= 400_000.0;
    match kind {
        SystemKind::Ringtail => base + pods as f64 * 1.5e-3 * rate as f64 / 500.0,
        // The warm-up's backlog drains too; at 1000 req/s over 1000 pods on the busy 2-core
        // machine (2026-12-06) a run took 29 s (VictoriaMetrics) to 47 s (Prometheus).
        _ if overloaded => base + 20.0 + 10.0 * (rate as f64 / 500.0 - 1.0).clamp(0.0, 2.0),
        _ => base,
    }
}

/// One load of a point: its report section, rate and repeats.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Load {
    key: &'static str,
    rate: u64,
    repeats: usize,
}

/// Every point (pods), ascending, with the loads it runs: the base rate where `--api-pods` has
/// it, the high rate where `--api-high-rate-pods` has it (and the rate is not 0).
fn plan(scale: &Scale) -> Vec<(usize, Vec<Load>)> {
    let mut pods: Vec<usize> = scale.api_pods.clone();
    if scale.api_high_rate > 0 {
        pods.extend(&scale.api_high_rate_pods);
    }
    pods.sort_unstable();
    pods.dedup();
    let base_count = scale.api_pods.len();
    let high_count = scale.api_high_rate_pods.len();
    pods.into_iter()
        .map(|p| {
            let mut loads = Vec::new();
            if let Some(i) = scale.api_pods.iter().position(|&q| q == p) {
                loads.push(Load { key: KEY, rate: scale.api_rate, repeats: scale.repeats_at(i, base_count) });
            }
            if let Some(i) = scale.api_high_rate_pods.iter().position(|&q| q == p).filter(|_| scale.api_high_rate > 0) {
                let repeats = scale.repeats_at(i, high_count);
                loads.push(Load { key: HIGH_RATE_KEY, rate: scale.api_high_rate, repeats });
            }
            (p, loads)
        })
        .collect()
}

fn point_estimate(scale: &Scale, pods: usize, loads: &[Load]) -> f64 {
    let runs = |load: &Load| {
        load.repeats as f64 * SystemKind::ALL.iter().map(|&k| run_estimate(scale, k, pods, load.rate)).sum::<f64>()
    };
    2.0 + loads.iter().map(runs).sum::<f64>()
}

pub fn estimate_seconds(scale: &Scale) -> f64 {
    plan(scale).iter().map(|(pods, loads)| point_estimate(scale, *pods, loads)).sum()
}

/// Open files a load may hold in this process: up to rate × the request timeout in flight, one
/// connection each, plus room for everything else.
fn open_files_needed(rate: u64) -> u64 {
    rate * crate::suite::systems::REQUEST_TIMEOUT.as_secs() + 1024
}

fn figures() -> Vec<FigureSpec> {
    vec![
        charted("p50_ms", "API latency p50", "ms", true),
        charted("p99_ms", "API latency p99", "ms", true),
        tabulated("p999_ms", "API latency p99.9", "ms", true),
        tabulated("failed_requests", "failed or wrong responses", "count", true),
        charted("cpu_ms_per_request", "server CPU per request", "CPU-ms", true),
        tabulated(
            "loadgen_cpu_ms_per_request",
            "load generator's own CPU per request (not counted above)",
            "CPU-ms",
            true,
        ),
        tabulated("loadgen_cpu_share", "load generator's own CPU", "cores", true),
        tabulated("peak_rss_mib", "server peak RSS", "MiB", true),
    ]
}

/// The high-rate load's section: the same figures at `--api-high-rate`.
pub fn high_rate_info(scale: &Scale) -> WorkloadInfo {
    WorkloadInfo {
        key: HIGH_RATE_KEY,
        title: "(d) Custom metrics API under load, high rate",
        description: format!(
            "As (d) above, on the same started systems and data, open-loop at {} requests/s for {}s per system per \
             repeat (after {}s at the same rate that are not recorded). Up to {} requests are in flight at once \
             when a system falls behind (rate × the 10 s timeout), so `ulimit -n` must allow that many \
             connections.",
            scale.api_high_rate,
            scale.api_duration.as_secs(),
            WARMUP.as_secs(),
            scale.api_high_rate * crate::suite::systems::REQUEST_TIMEOUT.as_secs()
        ),
        parameters: vec![
            format!("pods selected: {:?}", scale.api_high_rate_pods),
            format!("rate {} requests/s, {}s per run", scale.api_high_rate, scale.api_duration.as_secs()),
            repeats_text(scale),
        ],
        point_label: "pods selected",
        points: scale.api_high_rate_pods.iter().map(|&n| n as f64).collect(),
        log_x: true,
        systems: SystemKind::ALL.to_vec(),
        figures: figures(),
        notes: vec![],
    }
}

pub fn info(scale: &Scale) -> WorkloadInfo {
    WorkloadInfo {
        key: KEY,
        title: "(d) Custom metrics API under load",
        description: format!(
            "`GET /apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods/*/{METRIC}?labelSelector=app=web` \
             over P `app=web` pods (plus P `app=other` pods in the same namespace the selector must exclude), \
             open-loop at {} requests/s for {}s per system per repeat, after {}s at the same rate that are not \
             recorded (they open the client's connection pool, as an HPA's connections stay open); each response \
             is checked to hold all P pods. Ringtail serves it over TLS from its own API; for Prometheus and VictoriaMetrics the query \
             prometheus-adapter renders for the same request is sent to `/api/v1/query` (no adapter hop, no \
             Kubernetes lookup: this favours them; VictoriaMetrics runs with `-search.maxQueryLen=1048576`, \
             as its 16 KiB default rejects the rendered query beyond ~2000 pods). All systems hold the same remote-written data and run at \
             once; the order rotates between repeats. A request not answered within 10 s counts as failed. \
             The load generator's own CPU (this process over the measured load: TLS, HTTP, response checks) \
             is reported apart from the server's; it shares the same cores.",
            scale.api_rate,
            scale.api_duration.as_secs(),
            WARMUP.as_secs()
        ),
        parameters: vec![
            format!("pods selected: {:?}", scale.api_pods),
            format!("rate {} requests/s, {}s per run", scale.api_rate, scale.api_duration.as_secs()),
            repeats_text(scale),
        ],
        point_label: "pods selected",
        points: scale.api_pods.iter().map(|&n| n as f64).collect(),
        log_x: true,
        systems: SystemKind::ALL.to_vec(),
        figures: figures(),
        notes: vec![],
    }
}

fn pods_request(pods: usize, ts_ms: i64) -> Vec<u8> {
    let shape = SeriesShape { name: METRIC, extra: vec![], kind: SeriesKind::Gauge };
    let mut timeseries = Vec::with_capacity(2 * pods);
    for (app, prefix) in [("web", "web"), ("other", "other")] {
        for i in 0..pods {
            let pod = Pod::named(NAMESPACE, app, format!("{prefix}-{i}"), i);
            timeseries.push(v1::TimeSeries {
                labels: series_labels(&pod, &shape, "kubernetes-pods"),
                samples: vec![v1::Sample { value: 1.0 + (i % 100) as f64, timestamp: ts_ms }],
                exemplars: vec![],
                histograms: vec![],
            });
        }
    }
    ingest::remote_write::encode_body(&v1::WriteRequest { timeseries, metadata: vec![] })
}

/// Items of a MetricValueList, counted by key (a full JSON parse per response would cost the
/// load generator more CPU than some servers spend answering).
fn items_count(body: &str) -> usize {
    body.matches("\"describedObject\"").count()
}

/// Series of a Prometheus query result, counted the same way.
fn series_count(body: &str) -> usize {
    body.matches("\"metric\":{").count()
}

pub async fn run(suite: &mut Suite) -> Result<()> {
    let scale = suite.scale.clone();
    suite.results.add_workload(info(&scale));
    if scale.api_high_rate > 0 && !scale.api_high_rate_pods.is_empty() {
        suite.results.add_workload(high_rate_info(&scale));
    }
    for (pods, loads) in plan(&scale) {
        if let Err(e) = run_point(suite, pods, &loads).await {
            for load in &loads {
                suite.note(load.key, format!("{pods} pods failed: {e:#}"));
            }
        }
        suite.step_done(point_estimate(&scale, pods, &loads));
    }
    Ok(())
}

async fn run_point(suite: &mut Suite, pods: usize, loads: &[Load]) -> Result<()> {
    let most = loads.iter().map(|l| l.rate).max().unwrap_or(0);
    ensure_open_files(open_files_needed(most), &format!("{most} requests/s"))?;
    suite.status(format!("{KEY}: starting systems for {pods} pods"));
    let setup = SystemSetup { adapter_rules: Some(adapter_rules(&[METRIC])), ..SystemSetup::default() };
    let mut systems = Vec::new();
    for kind in SystemKind::ALL {
        systems.push(RunningSystem::start(kind, &setup, &suite.http).await?);
    }
    let names: Vec<String> = (0..pods).map(|i| format!("web-{i}")).collect();
    let rendered = format!("sum({METRIC}{{namespace=\"{NAMESPACE}\",pod=~\"{}\"}}) by (pod)", names.join("|"));
    for load in loads {
        for repeat in 0..load.repeats {
            // Fresh samples before each repeat, so none goes stale (5 min lookback) during the load;
            // 60 s in the past, outside VictoriaMetrics' default 30 s query latency offset.
            let now = super::now_ms();
            for system in &systems {
                for ts_ms in [now - 75_000, now - 60_000] {
                    remote_write(&suite.http, &system.write_url(), pods_request(pods, ts_ms)).await?;
                }
            }
            for kind in SystemKind::order_for_repeat(repeat) {
                let Some(system) = systems.iter().find(|s| s.kind == kind) else { continue };
                measure_load(suite, system, *load, &rendered, pods, repeat).await?;
            }
        }
    }
    Ok(())
}

/// One measured load of `system`: a probe until it answers right, the unrecorded warm-up, the
/// measured open-loop run (server and load-generator CPU read around it), and the wait for the
/// server to go idle.
async fn measure_load(
    suite: &mut Suite,
    system: &RunningSystem,
    load: Load,
    rendered: &str,
    pods: usize,
    repeat: usize,
) -> Result<()> {
    let kind = system.kind;
    suite.status(format!("{}: {} at {pods} pods, {} req/s, repeat {}", load.key, kind.name(), load.rate, repeat + 1));
    let (make, check): (RequestMaker, ResponseCheck) = match kind {
        SystemKind::Ringtail => {
            let adapter = system.adapter()?;
            let url = format!(
                "{}/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods/%2A/{METRIC}?labelSelector=app%3Dweb",
                adapter.base_url
            );
            let client = adapter.client.clone();
            (Box::new(move || client.get(&url)), Arc::new(move |body: &str| items_count(body) == pods))
        }
        _ => {
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(crate::suite::systems::REQUEST_TIMEOUT)
                .pool_max_idle_per_host(512)
                .build()?;
            let url = format!("{}/query", system.api_url());
            let form = vec![("query", rendered.to_string())];
            (Box::new(move || client.post(&url).form(&form)), Arc::new(move |body: &str| series_count(body) == pods))
        }
    };
    // One untimed probe: the system must answer correctly before it is loaded (data may take a
    // moment to become searchable).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = match make().send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if check(&body) {
            break;
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "{} never answered with {pods} pods: {}",
                kind.name(),
                body.chars().take(300).collect::<String>()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let pid = system.pid();
    open_loop(load.rate, WARMUP, &make, check.clone()).await?;
    wait_idle(pid, Duration::from_secs(20)).await?;
    let profile = if kind == SystemKind::Ringtail { ProfileSession::start(suite, load.key, kind, pid) } else { None };
    let cpu_before = cpu(pid)?;
    let own_before = own_cpu()?;
    let started = Instant::now();
    let result = open_loop(load.rate, suite.scale.api_duration, &make, check).await?;
    let wall = started.elapsed().as_secs_f64();
    let cpu_used = cpu(pid)? - cpu_before;
    let own_used = own_cpu()? - own_before;
    if let Some(profile) = profile {
        profile.finish(suite).await;
    }
    // A system that fell behind may still work through abandoned requests: let it finish before
    // the next system is loaded on the same cores.
    wait_idle(pid, Duration::from_secs(20)).await?;
    let (key, point) = (load.key, pods as f64);
    let requests = result.requests.max(1) as f64;
    let record = |suite: &mut Suite, figure, value| suite.results.record(key, figure, kind, point, repeat, value);
    record(suite, "p50_ms", result.quantile_ms(0.5));
    record(suite, "p99_ms", result.quantile_ms(0.99));
    record(suite, "p999_ms", result.quantile_ms(0.999));
    record(suite, "failed_requests", result.failures as f64);
    record(suite, "cpu_ms_per_request", cpu_used * 1000.0 / requests);
    record(suite, "loadgen_cpu_ms_per_request", own_used * 1000.0 / requests);
    record(suite, "loadgen_cpu_share", own_used / wall);
    record(suite, "peak_rss_mib", peak_mib(pid));
    if result.failures > 0 {
        suite.note(
            key,
            format!(
                "{} at {pods} pods, repeat {}: {} of {} requests failed or timed out",
                kind.name(),
                repeat + 1,
                result.failures,
                result.requests
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::options::SuiteOptions;
    use clap::Parser;

    #[test]
    fn points_run_the_loads_their_lists_name() {
        let scale =
            SuiteOptions::parse_from(["ringtail-bench", "--api-pods", "100,1000", "--api-high-rate-pods", "1000,3000"])
                .scale();
        let plan = plan(&scale);
        let shape: Vec<(usize, Vec<(&str, u64)>)> =
            plan.iter().map(|(p, loads)| (*p, loads.iter().map(|l| (l.key, l.rate)).collect())).collect();
        assert_eq!(
            shape,
            vec![
                (100, vec![(KEY, 500)]),
                (1000, vec![(KEY, 500), (HIGH_RATE_KEY, 1000)]),
                (3000, vec![(HIGH_RATE_KEY, 1000)]),
            ]
        );
        let off = SuiteOptions::parse_from(["ringtail-bench", "--api-pods", "100", "--api-high-rate", "0"]).scale();
        assert_eq!(plan_keys(&off), vec![(100, vec![KEY])]);
        assert!(estimate_seconds(&scale) > estimate_seconds(&off));
    }

    fn plan_keys(scale: &Scale) -> Vec<(usize, Vec<&'static str>)> {
        plan(scale).into_iter().map(|(p, loads)| (p, loads.into_iter().map(|l| l.key).collect())).collect()
    }

    #[test]
    fn open_files_cover_the_requests_in_flight() {
        assert!(open_files_needed(1000) >= 10_000);
        assert!(open_files_needed(500) < open_files_needed(1000));
    }
}
