//! Workload (e), series churn: a fleet of pods whose every pod is replaced (new name, new
//! address, as a Deployment rollout does) every 5 minutes of data time, remote-written live-shaped
//! (one sample per series per request, 15 s apart) as fast as each system takes it. At G
//! generations the set of active series has rotated G times: ingest CPU, RSS growth and bytes on
//! disk show what dead series cost, and the adapter's query over the last hour shows what they cost
//! reads.

use super::{repeats_text, send_batch};
use crate::suite::fleet::{encode_requests, write_series, Pod, RequestBatch, DATA_STEP_MS};
use crate::suite::measure::{cpu, disk_bytes, peak_mib, quantile, rss_mib, sorted, time_query, PromQuery};
use crate::suite::options::Scale;
use crate::suite::profile::ProfileSession;
use crate::suite::results::{charted, tabulated, WorkloadInfo};
use crate::suite::systems::{RunningSystem, SystemKind, SystemSetup};
use crate::suite::Suite;
use anyhow::Result;
use std::sync::Arc;
use std::time::Duration;

pub const KEY: &str = "churn";
const SERIES_PER_POD: usize = 10;
/// Samples per series in one generation: 5 minutes at 15 s.
const STEPS_PER_GENERATION: i64 = 20;
const QUERY_RUNS: usize = 5;
const QUERY: &str = "sum by (pod) (rate(http_requests_total[2m]))";

fn run_estimate(scale: &Scale, kind: SystemKind, series_alive: usize, series_created: usize, samples: usize) -> f64 {
    // Wall-clock µs per sample and per new series, and seconds per series a 1 h range query
    // reads, fitted to the default run of 2026-12-01 on the 2-core machine (6 s a run at 1
    // generation; at 20: Ringtail 10 s, Prometheus 24 s, VictoriaMetrics 13 s).
    let (per_sample, per_series, per_queried_series) = match kind {
        SystemKind::Ringtail => (0.8, 12.0, 2.4e-6),
        SystemKind::Prometheus => (5.3, 60.0, 5e-6),
        SystemKind::VictoriaMetrics => (1.2, 45.0, 2.8e-6),
    };
    let queried_series = series_created.min(series_alive * 12) as f64;
    let queries = (QUERY_RUNS + 1) as f64 * queried_series * per_queried_series;
    1.0 + scale.settle.as_secs_f64()
        + (samples as f64 * per_sample + series_created as f64 * per_series) / 1e6
        + queries
}

fn point_estimate(scale: &Scale, generations: usize, repeats: usize) -> f64 {
    let series = scale.churn_pods * SERIES_PER_POD;
    let samples = series * generations * STEPS_PER_GENERATION as usize;
    // Encoding, then the runs.
    0.5 + samples as f64 * 1.2e-6
        + repeats as f64
            * SystemKind::ALL
                .iter()
                .map(|&k| run_estimate(scale, k, series, series * generations, samples))
                .sum::<f64>()
}

pub fn estimate_seconds(scale: &Scale) -> f64 {
    let count = scale.churn_generations.len();
    scale.churn_generations.iter().enumerate().map(|(i, &g)| point_estimate(scale, g, scale.repeats_at(i, count))).sum()
}

pub fn info(scale: &Scale) -> WorkloadInfo {
    let active = scale.churn_pods * SERIES_PER_POD;
    WorkloadInfo {
        key: KEY,
        title: "(e) Series churn",
        description: format!(
            "{} pods × {SERIES_PER_POD} series ({active} active series at any time); every 5 minutes of data \
             time ({STEPS_PER_GENERATION} samples at 15 s) all pods are replaced by new ones (new pod name and \
             address), so after G generations {active}×G series have existed. Data is remote-written in time \
             order, one sample per series per request, ending 1 minute ago, as fast as each freshly started \
             system takes it; CPU, RSS and disk are read {}s after the last response. Then \
             `{QUERY}` runs {QUERY_RUNS} times as an instant query at the end of the data and as a 1 h range at \
             15 s step (which spans up to 12 generations of pods).",
            scale.churn_pods,
            scale.settle.as_secs()
        ),
        parameters: vec![
            format!("generations: {:?}", scale.churn_generations),
            format!("pods alive at a time: {}", scale.churn_pods),
            repeats_text(scale),
        ],
        point_label: "churn generations",
        points: scale.churn_generations.iter().map(|&g| g as f64).collect(),
        log_x: true,
        systems: SystemKind::ALL.to_vec(),
        figures: vec![
            charted("cpu_s_per_million", "ingest CPU per million samples", "CPU-s", true),
            tabulated("samples_per_s", "ingest throughput", "samples/s", false),
            charted("steady_rss_mib", "RSS after ingest and settling", "MiB", true),
            tabulated("peak_rss_mib", "peak RSS", "MiB", true),
            charted("disk_bytes_per_sample", "bytes on disk per sample", "bytes", true),
            charted("instant_query_p50_ms", "query after churn, instant (median)", "ms", true),
            charted("range_query_p50_ms", "query after churn, 1 h range (median)", "ms", true),
            tabulated("failed_requests", "failed requests", "count", true),
        ],
        notes: vec![],
    }
}

pub async fn run(suite: &mut Suite) -> Result<()> {
    let scale = suite.scale.clone();
    suite.results.add_workload(info(&scale));
    let count = scale.churn_generations.len();
    for (index, &generations) in scale.churn_generations.iter().enumerate() {
        let repeats = scale.repeats_at(index, count);
        suite.status(format!("{KEY}: encoding {generations} generations"));
        let total_steps = generations as i64 * STEPS_PER_GENERATION;
        let end_ms = super::now_ms() - 60_000;
        let first_ms = end_ms - (total_steps - 1) * DATA_STEP_MS;
        let mut batch = RequestBatch { bodies: vec![], per_slice: 1, samples: 0 };
        for generation in 0..generations {
            let pods: Vec<Pod> = (0..scale.churn_pods).map(|i| Pod::new(i, generation)).collect();
            let series = write_series(&pods, SERIES_PER_POD, "kubernetes-pods");
            let steps = generation as i64 * STEPS_PER_GENERATION..(generation as i64 + 1) * STEPS_PER_GENERATION;
            batch.extend(encode_requests(&series, steps, first_ms, 1, 2_000));
        }
        let batch = Arc::new(batch);
        for repeat in 0..repeats {
            for kind in SystemKind::order_for_repeat(repeat) {
                suite.status(format!("{KEY}: {} at {generations} generations, repeat {}", kind.name(), repeat + 1));
                if let Err(e) = measure_run(suite, kind, &batch, generations, end_ms, repeat).await {
                    suite.note(KEY, format!("{} at {generations} generations failed: {e:#}", kind.name()));
                }
            }
        }
        suite.step_done(point_estimate(&scale, generations, repeats));
    }
    Ok(())
}

async fn measure_run(
    suite: &mut Suite,
    kind: SystemKind,
    batch: &Arc<RequestBatch>,
    generations: usize,
    end_ms: i64,
    repeat: usize,
) -> Result<()> {
    let system = RunningSystem::start(kind, &SystemSetup::default(), &suite.http).await?;
    let pid = system.pid();
    let session = (kind == SystemKind::Ringtail).then(|| ProfileSession::start(suite, KEY, kind, pid)).flatten();
    let cpu_before = cpu(pid)?;
    let outcome = send_batch(&suite.http, &system.write_url(), batch).await?;
    tokio::time::sleep(suite.scale.settle).await;
    let cpu_used = cpu(pid)? - cpu_before;
    if let Some(session) = session {
        session.finish(suite).await;
    }
    let samples = batch.samples as f64;
    let point = generations as f64;
    let record = |suite: &mut Suite, figure, value| suite.results.record(KEY, figure, kind, point, repeat, value);
    record(suite, "cpu_s_per_million", cpu_used / samples * 1e6);
    record(suite, "samples_per_s", samples / outcome.wall.as_secs_f64());
    record(suite, "steady_rss_mib", rss_mib(pid));
    record(suite, "peak_rss_mib", peak_mib(pid));
    record(suite, "disk_bytes_per_sample", disk_bytes(&system.data_dir())? as f64 / samples);
    record(suite, "failed_requests", outcome.failed_requests as f64);
    let time_s = end_ms as f64 / 1000.0;
    for (figure, range) in [
        ("instant_query_p50_ms", None),
        ("range_query_p50_ms", Some((Duration::from_secs(3600), Duration::from_secs(15)))),
    ] {
        let query = PromQuery { expr: QUERY.to_string(), time_s, range };
        let mut latencies = Vec::with_capacity(QUERY_RUNS);
        // One untimed warm-up, then the timed runs.
        time_query(&suite.http, &system.api_url(), &query, system.query_extra_params()).await?;
        for _ in 0..QUERY_RUNS {
            let (elapsed, _) = time_query(&suite.http, &system.api_url(), &query, system.query_extra_params()).await?;
            latencies.push(elapsed.as_secs_f64() * 1000.0);
        }
        record(suite, figure, quantile(&sorted(latencies), 0.5));
    }
    Ok(())
}
