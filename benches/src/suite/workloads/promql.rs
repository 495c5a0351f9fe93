//! Workload (c), PromQL: the two query shapes the metrics adapter runs —
//! `sum by (pod) (rate(http_requests_total[2m]))` (prometheus-adapter's
//! `sum by (<<.GroupBy>>) (rate(...[2m]))`) and
//! `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))` — as
//! instant queries and as 1 h range queries at 15 s step, over N counter series and N bucket
//! series (N/10 pods × 10 each), 65 minutes at 15 s, loaded identically into all three systems.
//! Every system runs at once; query runs alternate between them. After the repeats, a
//! latency-distribution pass runs each query at the smallest point, and each instant query at the
//! second, hundreds to a thousand times per system, systems interleaved run by run, for
//! p50/p99/p99.9 from an hdrhistogram.

use super::repeats_text;
use super::send_batch;
use crate::suite::fleet::{encode_requests, write_series, Pod, DATA_STEP_MS};
use crate::suite::measure::{
    histogram_quantile_ms, latency_histogram, quantile, record_latency, sorted, time_query, PromQuery,
};
use crate::suite::options::Scale;
use crate::suite::profile::ProfileSession;
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

/// A query of the workload: its figures' keys (median and p99 over the runs of a repeat; p50, p99
/// and p99.9 of the latency-distribution pass), title, expression, range or instant.
struct QueryShape {
    p50_key: &'static str,
    p99_key: &'static str,
    dist_p50_key: &'static str,
    dist_p99_key: &'static str,
    dist_p999_key: &'static str,
    title: &'static str,
    expr: &'static str,
    range: bool,
}

const QUERIES: [QueryShape; 4] = [
    QueryShape {
        p50_key: "sum_rate_instant_p50_ms",
        p99_key: "sum_rate_instant_p99_ms",
        dist_p50_key: "sum_rate_instant_dist_p50_ms",
        dist_p99_key: "sum_rate_instant_dist_p99_ms",
        dist_p999_key: "sum_rate_instant_dist_p999_ms",
        title: "sum by (pod) (rate(…[2m])), instant",
        expr: "sum by (pod) (rate(http_requests_total[2m]))",
        range: false,
    },
    QueryShape {
        p50_key: "sum_rate_range_p50_ms",
        p99_key: "sum_rate_range_p99_ms",
        dist_p50_key: "sum_rate_range_dist_p50_ms",
        dist_p99_key: "sum_rate_range_dist_p99_ms",
        dist_p999_key: "sum_rate_range_dist_p999_ms",
        title: "sum by (pod) (rate(…[2m])), 1 h range @ 15 s",
        expr: "sum by (pod) (rate(http_requests_total[2m]))",
        range: true,
    },
    QueryShape {
        p50_key: "histogram_instant_p50_ms",
        p99_key: "histogram_instant_p99_ms",
        dist_p50_key: "histogram_instant_dist_p50_ms",
        dist_p99_key: "histogram_instant_dist_p99_ms",
        dist_p999_key: "histogram_instant_dist_p999_ms",
        title: "histogram_quantile(0.99, sum by (le) (rate(…[5m]))), instant",
        expr: "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        range: false,
    },
    QueryShape {
        p50_key: "histogram_range_p50_ms",
        p99_key: "histogram_range_p99_ms",
        dist_p50_key: "histogram_range_dist_p50_ms",
        dist_p99_key: "histogram_range_dist_p99_ms",
        dist_p999_key: "histogram_range_dist_p999_ms",
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

/// Runs per system of `shape` in the latency-distribution pass at the `index`-th point (0: not run
/// there): `query_latency_runs` of each instant query at the smallest point; half as many of its
/// range queries and of the instant queries at the second point, where one round of the three
/// systems takes 0.1–0.25 s on 2 cores, so the pass stays within about 7 minutes; none elsewhere.
fn distribution_runs(scale: &Scale, index: usize, shape: &QueryShape) -> usize {
    let runs = scale.query_latency_runs;
    match (index, shape.range) {
        (0, false) => runs,
        (0, true) | (1, false) => runs.div_ceil(2),
        _ => 0,
    }
}

fn load_estimate(series: usize) -> f64 {
    // 2N series × 260 samples into each of the three, backfill-shaped, plus start-up and the
    // wait until VictoriaMetrics answers: 12 s at 1k series, 16 s at 10k, 22 s at 30k and 69 s at
    // 100k in the default run of 2026-12-01 on the 2-core machine.
    let samples = 2.0 * series as f64 * SPAN_STEPS as f64;
    samples * 1.1e-6 + 10.0
}

/// Seconds of one round (the four queries once on each of the three systems): 0.36 s at 1k
/// series, 3.3 s at 10k, 11 s at 30k and 32 s at 100k in the same run, about linear in series.
fn round_seconds(series: usize) -> f64 {
    0.03 + series as f64 * 3.3e-4
}

/// Seconds of `shape` once on each system: a range query takes about 0.435 of a round, an instant
/// one 0.065.
fn query_round_seconds(shape: &QueryShape, series: usize) -> f64 {
    round_seconds(series) * if shape.range { 0.435 } else { 0.065 }
}

fn queries_estimate(scale: &Scale, series: usize, repeats: usize) -> f64 {
    // The warm-up round runs the instant queries only (about a third of a round).
    (0.3 + (repeats * runs_at(scale, series)) as f64) * round_seconds(series)
}

fn distribution_estimate(scale: &Scale, index: usize, series: usize) -> f64 {
    QUERIES.iter().map(|q| distribution_runs(scale, index, q) as f64 * query_round_seconds(q, series)).sum()
}

fn point_estimate(scale: &Scale, index: usize, series: usize) -> f64 {
    let repeats = scale.repeats_at(index, scale.query_series.len());
    load_estimate(series) + queries_estimate(scale, series, repeats) + distribution_estimate(scale, index, series)
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
    scale.query_series.iter().enumerate().map(|(i, &n)| point_estimate(scale, i, n)).sum()
}

/// The report's line about the latency-distribution pass.
fn distribution_text(scale: &Scale) -> String {
    let runs = scale.query_latency_runs;
    let (Some(first), true) = (scale.query_series.first(), runs > 0) else {
        return "latency distribution: not run (--query-latency-runs 0)".into();
    };
    let half = runs.div_ceil(2);
    let second = match scale.query_series.get(1) {
        Some(n) => format!("; at {n} series {half} runs of each instant query"),
        None => String::new(),
    };
    let estimate: f64 = scale.query_series.iter().enumerate().map(|(i, &n)| distribution_estimate(scale, i, n)).sum();
    format!(
        "latency distribution (second table): at {first} series {runs} runs per system of each instant query and \
         {half} of each range query{second}. The slower cases (a round of the three systems taking 0.1–0.25 s \
         at the default sizes) get half the runs, so the pass takes about {} on 2 cores; p99.9 is the slowest \
         run when there are fewer than 1000. Other points and queries have too few runs for a p99.9",
        crate::suite::format_duration(estimate)
    )
}

pub fn info(scale: &Scale) -> WorkloadInfo {
    let mut figures = Vec::new();
    for query in &QUERIES {
        figures.push(charted(query.p50_key, query.title, "median ms", true));
    }
    for query in &QUERIES {
        figures.push(tabulated(query.p99_key, query.title, "p99 ms", true));
    }
    let table = "Latency distribution: p50, p99 and p99.9 over the runs of the distribution pass";
    for query in &QUERIES {
        figures.push(tabulated(query.dist_p50_key, query.title, "p50 ms", true).in_table(table));
        figures.push(tabulated(query.dist_p99_key, query.title, "p99 ms", true).in_table(table));
        figures.push(
            tabulated(query.dist_p999_key, query.title, "p99.9 ms", true)
                .in_table(table)
                .when_missing("— (too few runs)"),
        );
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
             expected number of series. After the repeats, a latency-distribution pass runs each query at \
             the smallest point, and each instant query at the second, many times per system, the systems \
             taking turns run by run (the order rotated every run, so noise hits all alike), every answer \
             checked, and reports p50, p99 and p99.9 from an hdrhistogram per system. VictoriaMetrics gets \
             `nocache=1` so its rollup result cache does not answer repeated identical queries."
        ),
        parameters: vec![
            format!("series per query: {:?}", scale.query_series),
            format!(
                "timed runs per query per system per repeat: {} (fewer above 10k series: 2 at 30k, 1 at 100k)",
                scale.query_runs
            ),
            repeats_text(scale),
            "median and p99 in the first table are over the runs of one repeat (p99 of so few runs is the slowest \
             run), then min/median/max over the repeats"
                .into(),
            distribution_text(scale),
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
    for (index, &series_count) in scale.query_series.iter().enumerate() {
        let repeats = scale.repeats_at(index, scale.query_series.len());
        let estimate = load_estimate(series_count) + queries_estimate(&scale, series_count, repeats);
        // The distribution passes advance the progress bar themselves; they run unless the point
        // failed before them.
        if let Err(e) = run_point(suite, index, series_count).await {
            suite.note(KEY, format!("{series_count} series failed: {e:#}"));
            suite.step_done(distribution_estimate(&scale, index, series_count));
        }
        suite.step_done(estimate);
    }
    Ok(())
}

async fn run_point(suite: &mut Suite, index: usize, series_count: usize) -> Result<()> {
    let repeats = suite.scale.repeats_at(index, suite.scale.query_series.len());
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
        let ringtail = systems.iter().find(|s| s.kind == SystemKind::Ringtail).map(RunningSystem::pid);
        let session = ringtail.and_then(|pid| ProfileSession::start(suite, KEY, SystemKind::Ringtail, pid));
        for (shape, query) in QUERIES.iter().zip(&queries) {
            let mut latencies: BTreeMap<SystemKind, Vec<f64>> = BTreeMap::new();
            for _ in 0..runs {
                for kind in &order {
                    let Some(system) = systems.iter().find(|s| s.kind == *kind) else { continue };
                    let elapsed = checked_query(&suite.http, system, shape, query, series_count).await?;
                    latencies.entry(*kind).or_default().push(elapsed.as_secs_f64() * 1000.0);
                }
            }
            for (kind, values) in latencies {
                let values = sorted(values);
                suite.results.record(KEY, shape.p50_key, kind, point, repeat, quantile(&values, 0.5));
                suite.results.record(KEY, shape.p99_key, kind, point, repeat, quantile(&values, 0.99));
            }
        }
        if let Some(session) = session {
            session.finish(suite).await;
        }
    }
    for (shape, query) in QUERIES.iter().zip(&queries) {
        let runs = distribution_runs(&suite.scale, index, shape);
        if runs == 0 {
            continue;
        }
        suite.status(format!("{KEY}: latency distribution at {series_count} series, {runs} runs of `{}`", shape.title));
        if let Err(e) = latency_distribution(suite, &systems, shape, query, series_count, runs).await {
            suite.note(
                KEY,
                format!("the latency distribution of `{}` at {series_count} series failed: {e:#}", shape.title),
            );
        }
        suite.step_done(runs as f64 * query_round_seconds(shape, series_count));
    }
    Ok(())
}

/// Runs `query` once on `system`; its latency, after checking the answer holds the expected number
/// of series.
async fn checked_query(
    http: &reqwest::Client,
    system: &RunningSystem,
    shape: &QueryShape,
    query: &PromQuery,
    series_count: usize,
) -> Result<Duration> {
    let (elapsed, series) = time_query(http, &system.api_url(), query, system.query_extra_params()).await?;
    let expected = expected_series(shape, series_count);
    if series != expected {
        return Err(anyhow!(
            "{} answered `{}` with {series} series, expected {expected}",
            system.kind.name(),
            shape.title
        ));
    }
    Ok(elapsed)
}

/// The latency-distribution pass of one query at one point: `runs` rounds, each system once per
/// round in an order rotated round by round, every answer checked; p50, p99 and p99.9 per system
/// from an hdrhistogram.
async fn latency_distribution(
    suite: &mut Suite,
    systems: &[RunningSystem],
    shape: &QueryShape,
    query: &PromQuery,
    series_count: usize,
    runs: usize,
) -> Result<()> {
    let mut histograms = Vec::with_capacity(systems.len());
    for system in systems {
        histograms.push((system.kind, latency_histogram()?));
    }
    let ringtail = systems.iter().find(|s| s.kind == SystemKind::Ringtail).map(RunningSystem::pid);
    let session = ringtail.and_then(|pid| ProfileSession::start(suite, KEY, SystemKind::Ringtail, pid));
    for run in 0..runs {
        for kind in SystemKind::order_for_repeat(run) {
            let Some(index) = systems.iter().position(|s| s.kind == kind) else { continue };
            let elapsed = checked_query(&suite.http, &systems[index], shape, query, series_count).await?;
            record_latency(&mut histograms[index].1, elapsed);
        }
    }
    if let Some(session) = session {
        session.finish(suite).await;
    }
    let point = series_count as f64;
    for (kind, histogram) in &histograms {
        for (figure, q) in [(shape.dist_p50_key, 0.5), (shape.dist_p99_key, 0.99), (shape.dist_p999_key, 0.999)] {
            suite.results.record(KEY, figure, *kind, point, 0, histogram_quantile_ms(histogram, q));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::options::SuiteOptions;
    use clap::Parser;

    #[test]
    fn distribution_runs_where_affordable() {
        let scale = SuiteOptions::parse_from(["ringtail-bench"]).scale();
        let [sum_instant, sum_range, histogram_instant, histogram_range] = &QUERIES;
        assert_eq!(distribution_runs(&scale, 0, sum_instant), 1_000);
        assert_eq!(distribution_runs(&scale, 0, histogram_instant), 1_000);
        assert_eq!(distribution_runs(&scale, 0, sum_range), 500);
        assert_eq!(distribution_runs(&scale, 1, histogram_instant), 500);
        assert_eq!(distribution_runs(&scale, 1, histogram_range), 0);
        assert_eq!(distribution_runs(&scale, 2, sum_instant), 0);
        let skipped = SuiteOptions::parse_from(["ringtail-bench", "--query-latency-runs", "0"]).scale();
        assert_eq!(distribution_runs(&skipped, 0, sum_instant), 0);
        assert!(distribution_text(&skipped).contains("not run"));
    }

    #[test]
    fn distribution_pass_fits_its_budget() {
        // The pass may add at most about 8 minutes to the default run on 2 cores.
        let scale = SuiteOptions::parse_from(["ringtail-bench"]).scale();
        let pass: f64 = scale.query_series.iter().enumerate().map(|(i, &n)| distribution_estimate(&scale, i, n)).sum();
        assert!(pass > 300.0 && pass <= 480.0, "{pass}");
    }
}
