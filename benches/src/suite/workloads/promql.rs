//! Workload (c), PromQL: the two query shapes the metrics adapter runs —
//! `sum by (pod) (rate(http_requests_total[2m]))` (prometheus-adapter's
//! `sum by (<<.GroupBy>>) (rate(...[2m]))`) and
//! `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))` — as
//! instant queries and as 1 h range queries at 15 s step, over N counter series and N bucket
//! series (N/10 pods × 10 each), 65 minutes at 15 s, loaded identically into all three systems.
//! Every system runs at once; query runs alternate between them.

use super::repeats_text;
use super::send_batch;
use crate::suite::fleet::{encode_requests, write_series, Pod, DATA_STEP_MS};
use crate::suite::measure::{quantile, sorted, time_query, PromQuery};
use crate::suite::options::Scale;
use crate::suite::results::{charted, tabulated, WorkloadInfo};
use crate::suite::systems::{RunningSystem, SystemKind, SystemSetup};
use crate::suite::Suite;
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const KEY: &str = "promql";
const SPAN_STEPS: i64 = 65 * 60 / 15;
const SERIES_PER_POD: usize = 10;

/// A query of the workload: figure-key prefix, title, expression, range or instant.
struct QueryShape {
    p50_key: &'static str,
    p99_key: &'static str,
    title: &'static str,
    expr: &'static str,
    range: bool,
}

const QUERIES: [QueryShape; 4] = [
    QueryShape {
        p50_key: "sum_rate_instant_p50_ms",
        p99_key: "sum_rate_instant_p99_ms",
        title: "sum by (pod) (rate(…[2m])), instant",
        expr: "sum by (pod) (rate(http_requests_total[2m]))",
        range: false,
    },
    QueryShape {
        p50_key: "sum_rate_range_p50_ms",
        p99_key: "sum_rate_range_p99_ms",
        title: "sum by (pod) (rate(…[2m])), 1 h range @ 15 s",
        expr: "sum by (pod) (rate(http_requests_total[2m]))",
        range: true,
    },
    QueryShape {
        p50_key: "histogram_instant_p50_ms",
        p99_key: "histogram_instant_p99_ms",
        title: "histogram_quantile(0.99, sum by (le) (rate(…[5m]))), instant",
        expr: "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        range: false,
    },
    QueryShape {
        p50_key: "histogram_range_p50_ms",
        p99_key: "histogram_range_p99_ms",
        title: "histogram_quantile(0.99, sum by (le) (rate(…[5m]))), 1 h range @ 15 s",
        expr: "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        range: true,
    },
];

/// Timed runs per query per system per repeat: all of `query_runs` up to 10k series, then fewer
/// (2 at 30k, 1 at 100k with the default 3) so the largest points stay within the time budget.
fn runs_at(scale: &Scale, series: usize) -> usize {
    if series <= 10_000 {
        scale.query_runs
    } else {
        (scale.query_runs * 20_000 / series).clamp(1, scale.query_runs)
    }
}

fn load_estimate(series: usize) -> f64 {
    // 2N series × 260 samples into each of the three, backfill-shaped: 2.6–6.6 s per million
    // samples for all three together on the 2-core machine (quiet – busy), plus start-up.
    let samples = 2.0 * series as f64 * SPAN_STEPS as f64;
    samples * 4e-6 + 10.0
}

fn queries_estimate(scale: &Scale, series: usize, repeats: usize) -> f64 {
    // One round (4 queries on 3 systems) took 15 s at 30k series and 100 s at 100k on the 2-core
    // machine (quiet – busy), mostly range queries; it grows about linearly with series. The
    // warm-up round runs the instant queries only (about a third of a round).
    let per_round = 0.05 + series as f64 * 7e-4;
    (0.3 + (repeats * runs_at(scale, series)) as f64) * per_round
}

/// Result series of `shape` over `series_count` series: one per pod, or the one quantile.
fn expected_series(shape: &QueryShape, series_count: usize) -> usize {
    if shape.expr.starts_with("sum by (pod)") {
        series_count.div_ceil(SERIES_PER_POD)
    } else {
        1
    }
}

pub fn estimate_seconds(scale: &Scale) -> f64 {
    let count = scale.query_series.len();
    scale
        .query_series
        .iter()
        .enumerate()
        .map(|(i, &n)| load_estimate(n) + queries_estimate(scale, n, scale.repeats_at(i, count)))
        .sum()
}

pub fn info(scale: &Scale) -> WorkloadInfo {
    let mut figures = Vec::new();
    for query in &QUERIES {
        figures.push(charted(query.p50_key, query.title, "median ms", true));
    }
    for query in &QUERIES {
        figures.push(tabulated(query.p99_key, query.title, "p99 ms", true));
    }
    figures.push(tabulated(
        "load_samples_per_s",
        "loading the data (65 samples per series per request)",
        "samples/s",
        false,
    ));
    WorkloadInfo {
        key: KEY,
        title: "(c) PromQL queries of the adapter's shapes",
        description: format!(
            "N `http_requests_total` series (N/{SERIES_PER_POD} pods × method × code) and N \
             `http_request_duration_seconds_bucket` series (N/{SERIES_PER_POD} pods × 10 buckets), 65 min at 15 s, \
             remote-written identically into Ringtail, Prometheus and VictoriaMetrics, all running at once. \
             Each query is sent through the Prometheus HTTP API (POST, form-encoded), instant at the end \
             of the data and as a 1 h range at 15 s step; latency is to the complete response body. Within \
             a repeat each system runs each query a few times in turn (order rotated between repeats), \
             after one untimed warm-up of the instant queries; every answer is checked to hold the \
             expected number of series. VictoriaMetrics gets `nocache=1` so its rollup result cache does not answer repeated \
             identical queries."
        ),
        parameters: vec![
            format!("series per query: {:?}", scale.query_series),
            format!("timed runs per query per system per repeat: {} (fewer above 10k series: 2 at 30k, 1 at 100k)", scale.query_runs),
            repeats_text(scale),
            "p99 over the runs of one repeat is close to the slowest run; p999 is not meaningful at these counts"
                .into(),
        ],
        point_label: "series per query",
        points: scale.query_series.iter().map(|&n| n as f64).collect(),
        log_x: true,
        systems: SystemKind::ALL.to_vec(),
        figures,
        notes: vec![],
    }
}

pub async fn run(suite: &mut Suite) -> Result<()> {
    let scale = suite.scale.clone();
    suite.results.add_workload(info(&scale));
    let count = scale.query_series.len();
    for (index, &series_count) in scale.query_series.iter().enumerate() {
        let repeats = scale.repeats_at(index, count);
        if let Err(e) = run_point(suite, series_count, repeats).await {
            suite.note(KEY, format!("{series_count} series failed: {e:#}"));
        }
        suite.step_done(load_estimate(series_count) + queries_estimate(&scale, series_count, repeats));
    }
    Ok(())
}

async fn run_point(suite: &mut Suite, series_count: usize, repeats: usize) -> Result<()> {
    suite.status(format!("{KEY}: loading {series_count} + {series_count} series into every system"));
    let pods: Vec<Pod> = (0..series_count.div_ceil(SERIES_PER_POD)).map(|i| Pod::new(i, 0)).collect();
    // 5 gauges, 10 request counters, then the first handler's 10 buckets: keep counters and buckets.
    let series: Vec<_> = write_series(&pods, 25, "kubernetes-pods")
        .into_iter()
        .filter(|s| {
            s.labels.iter().any(|l| {
                l.name == "__name__"
                    && (l.value == "http_requests_total" || l.value == "http_request_duration_seconds_bucket")
            })
        })
        .collect();
    let end_step_ms = (super::now_ms() - 120_000) / 60_000 * 60_000;
    let first_ms = end_step_ms - (SPAN_STEPS - 1) * DATA_STEP_MS;
    let batch = Arc::new(encode_requests(&series, 0..SPAN_STEPS, first_ms, 65, 65_000));
    drop(series);
    let mut systems = Vec::new();
    for kind in SystemKind::ALL {
        suite.status(format!("{KEY}: loading {} samples into {}", batch.samples, kind.name()));
        let system = RunningSystem::start(kind, &SystemSetup::default(), &suite.http).await?;
        let outcome = send_batch(&suite.http, &system.write_url(), &batch).await?;
        let load_rate = batch.samples as f64 / outcome.wall.as_secs_f64();
        suite.results.record(KEY, "load_samples_per_s", kind, series_count as f64, 0, load_rate);
        if outcome.failed_requests > 0 {
            suite.note(
                KEY,
                format!("{} rejected {} load requests at {series_count} series", kind.name(), outcome.failed_requests),
            );
        }
        systems.push(system);
    }
    drop(batch);
    let time_s = end_step_ms as f64 / 1000.0;
    let queries: Vec<PromQuery> = QUERIES
        .iter()
        .map(|q| PromQuery {
            expr: q.expr.to_string(),
            time_s,
            range: q.range.then_some((Duration::from_secs(3600), Duration::from_secs(15))),
        })
        .collect();
    // Warm-up and agreement on the instant queries: every system returns the expected number of
    // series (VictoriaMetrics makes fresh data searchable within a few seconds, so it is polled).
    // Range queries are checked on their timed runs, which keeps the largest points affordable.
    for (shape, query) in QUERIES.iter().zip(&queries).filter(|(shape, _)| !shape.range) {
        let expected = expected_series(shape, series_count);
        for system in &systems {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let result = time_query(&suite.http, &system.api_url(), query, system.query_extra_params()).await;
                match result {
                    Ok((_, n)) if n == expected => break,
                    _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
                    Ok((_, n)) => {
                        return Err(anyhow!(
                            "{} answered `{}` with {n} series, expected {expected}",
                            system.kind.name(),
                            shape.title
                        ))
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    let runs = runs_at(&suite.scale, series_count);
    let point = series_count as f64;
    for repeat in 0..repeats {
        suite.status(format!("{KEY}: {series_count} series, {runs} runs per query, repeat {}", repeat + 1));
        let order = SystemKind::order_for_repeat(repeat);
        for (shape, query) in QUERIES.iter().zip(&queries) {
            let mut latencies: BTreeMap<SystemKind, Vec<f64>> = BTreeMap::new();
            for _ in 0..runs {
                for kind in &order {
                    let Some(system) = systems.iter().find(|s| s.kind == *kind) else { continue };
                    let (elapsed, series) =
                        time_query(&suite.http, &system.api_url(), query, system.query_extra_params()).await?;
                    let expected = expected_series(shape, series_count);
                    if series != expected {
                        return Err(anyhow!(
                            "{} answered `{}` with {series} series, expected {expected}",
                            kind.name(),
                            shape.title
                        ));
                    }
                    latencies.entry(*kind).or_default().push(elapsed.as_secs_f64() * 1000.0);
                }
            }
            for (kind, values) in latencies {
                let values = sorted(values);
                suite.results.record(KEY, shape.p50_key, kind, point, repeat, quantile(&values, 0.5));
                suite.results.record(KEY, shape.p99_key, kind, point, repeat, quantile(&values, 0.99));
            }
        }
    }
    Ok(())
}
