//! Workload (a), Remote-Write ingest: the same pre-encoded Remote-Write 1.0 requests (pods of the
//! synthetic fleet, 10 series each, one sample per series per request as a live sender sends,
//! 2 000 samples per request) sent to a freshly started Ringtail, Prometheus and VictoriaMetrics
//! at growing numbers of active series. Each run measures throughput, receiver CPU per sample,
//! peak and settled RSS, RSS per active series and bytes on disk per sample.

use super::{repeats_text, send_batch};
use crate::suite::fleet::{encode_requests, write_series, Pod, DATA_STEP_MS};
use crate::suite::measure::{anon_rss_mib, cpu, disk_bytes, peak_mib, rss_mib};
use crate::suite::options::Scale;
use crate::suite::results::{charted, tabulated, WorkloadInfo};
use crate::suite::systems::{RunningSystem, SystemKind, SystemSetup};
use crate::suite::Suite;
use anyhow::Result;
use std::sync::Arc;

pub const KEY: &str = "remote-write";
const SERIES_PER_POD: usize = 10;
const SAMPLES_PER_REQUEST: usize = 2_000;

/// Samples per series so a run sends at least `scale.rw_samples` (and never fewer than 3 each).
fn rounds(scale: &Scale, series: usize) -> usize {
    scale.rw_samples.div_ceil(series.max(1)).max(3)
}

/// Wall-clock µs per sample and per new series of one run, fitted to the default run of 2026-12-01
/// on the 2-core machine (10k series: 6–8 s a run; 1M series: Ringtail 15 s, Prometheus 26 s,
/// VictoriaMetrics 34 s), for the estimate.
fn cost_guess(kind: SystemKind) -> (f64, f64) {
    match kind {
        SystemKind::Ringtail => (0.35, 8.0),
        SystemKind::Prometheus => (3.2, 11.0),
        SystemKind::VictoriaMetrics => (1.5, 22.0),
    }
}

fn run_estimate(scale: &Scale, kind: SystemKind, series: usize, samples: usize) -> f64 {
    let (per_sample, per_series) = cost_guess(kind);
    // Start-up and readiness, the load, then the settle period.
    1.0 + scale.settle.as_secs_f64() + (samples as f64 * per_sample + series as f64 * per_series) / 1e6
}

/// Encoding the requests, once per point (9 s for 1M series × 3 samples).
fn encode_estimate(series: usize, samples: usize) -> f64 {
    0.5 + samples as f64 * 0.3e-6 + series as f64 * 7.5e-6
}

pub fn estimate_seconds(scale: &Scale) -> f64 {
    let count = scale.rw_series.len();
    scale
        .rw_series
        .iter()
        .enumerate()
        .map(|(i, &series)| {
            let samples = series * rounds(scale, series);
            encode_estimate(series, samples)
                + scale.repeats_at(i, count) as f64
                    * SystemKind::ALL.iter().map(|&k| run_estimate(scale, k, series, samples)).sum::<f64>()
        })
        .sum()
}

pub fn info(scale: &Scale) -> WorkloadInfo {
    WorkloadInfo {
        key: KEY,
        title: "(a) Remote-Write ingest",
        description: format!(
            "Pods of the synthetic fleet ({SERIES_PER_POD} series each: process and container gauges, \
             `http_requests_total` by method and code; labels `namespace`, `pod`, `container`, `node`, `app`, \
             `job`, `instance`) are encoded once as Remote-Write 1.0 requests of {SAMPLES_PER_REQUEST} samples, \
             one sample per series per request as a live Prometheus queue sends, timestamps {}s apart. The \
             same bytes go to a freshly started system per run, {} lanes at once, each series in time order. \
             CPU is the receiver's user+system time from the first request to {}s after the last response. \
             With few samples per series (3 at the largest points) bytes on disk per sample mostly show \
             per-series cost (index, each series' first chunk or page), not compressed samples.",
            DATA_STEP_MS / 1000,
            super::SEND_CONCURRENCY,
            scale.settle.as_secs()
        ),
        parameters: vec![
            format!("active series: {:?}", scale.rw_series),
            format!("samples per run: at least {} (and ≥ 3 per series)", scale.rw_samples),
            repeats_text(scale),
        ],
        point_label: "active series",
        points: scale.rw_series.iter().map(|&s| s as f64).collect(),
        log_x: true,
        systems: SystemKind::ALL.to_vec(),
        figures: vec![
            charted("samples_per_s", "throughput", "samples/s", false),
            charted("cpu_s_per_million", "CPU per million samples", "CPU-s", true),
            tabulated("samples_per_cpu_s", "samples per CPU-second", "samples/CPU-s", false),
            charted("peak_rss_mib", "peak RSS", "MiB", true),
            tabulated("steady_rss_mib", "RSS after settling", "MiB", true),
            charted("rss_bytes_per_series", "RSS growth per active series", "bytes", true),
            charted("anon_bytes_per_series", "anonymous memory (heap) growth per active series", "bytes", true),
            charted("disk_bytes_per_sample", "bytes on disk per sample", "bytes", true),
            tabulated("failed_requests", "failed requests", "count", true),
        ],
        notes: vec![],
    }
}

pub async fn run(suite: &mut Suite) -> Result<()> {
    let scale = suite.scale.clone();
    suite.results.add_workload(info(&scale));
    let count = scale.rw_series.len();
    for (index, &series_count) in scale.rw_series.iter().enumerate() {
        let rounds = rounds(&scale, series_count);
        suite.status(format!("{KEY}: encoding {series_count} series × {rounds} samples"));
        let pods: Vec<Pod> = (0..series_count.div_ceil(SERIES_PER_POD)).map(|i| Pod::new(i, 0)).collect();
        let mut series = write_series(&pods, SERIES_PER_POD, "kubernetes-pods");
        series.truncate(series_count);
        let first_ms = super::now_ms() - (rounds as i64 + 2) * DATA_STEP_MS;
        let batch = Arc::new(encode_requests(&series, 0..rounds as i64, first_ms, 1, SAMPLES_PER_REQUEST));
        drop(series);
        suite.step_done(encode_estimate(series_count, batch.samples as usize));
        for repeat in 0..scale.repeats_at(index, count) {
            for kind in SystemKind::order_for_repeat(repeat) {
                suite.status(format!("{KEY}: {} at {series_count} series, repeat {}", kind.name(), repeat + 1));
                let point = series_count as f64;
                if let Err(e) = measure_run(suite, kind, &batch, point, repeat).await {
                    suite.note(KEY, format!("{} at {series_count} series failed: {e:#}", kind.name()));
                }
                suite.step_done(run_estimate(&scale, kind, series_count, batch.samples as usize));
            }
        }
    }
    Ok(())
}

async fn measure_run(
    suite: &mut Suite,
    kind: SystemKind,
    batch: &Arc<crate::suite::fleet::RequestBatch>,
    point: f64,
    repeat: usize,
) -> Result<()> {
    let system = RunningSystem::start(kind, &SystemSetup::default(), &suite.http).await?;
    let pid = system.pid();
    let cpu_before = cpu(pid)?;
    let outcome = send_batch(&suite.http, &system.write_url(), batch).await?;
    tokio::time::sleep(suite.scale.settle).await;
    let cpu_used = cpu(pid)? - cpu_before;
    let steady = rss_mib(pid);
    let anon = anon_rss_mib(pid);
    let peak = peak_mib(pid);
    let disk = disk_bytes(&system.data_dir())? as f64;
    let samples = batch.samples as f64;
    let record = |suite: &mut Suite, figure, value| suite.results.record(KEY, figure, kind, point, repeat, value);
    record(suite, "samples_per_s", samples / outcome.wall.as_secs_f64());
    record(suite, "cpu_s_per_million", cpu_used / samples * 1e6);
    record(suite, "samples_per_cpu_s", samples / cpu_used);
    record(suite, "peak_rss_mib", peak);
    record(suite, "steady_rss_mib", steady);
    record(suite, "rss_bytes_per_series", (steady - system.idle_rss_mib) * 1048576.0 / point);
    record(suite, "anon_bytes_per_series", (anon - system.idle_anon_mib) * 1048576.0 / point);
    record(suite, "disk_bytes_per_sample", disk / samples);
    record(suite, "failed_requests", outcome.failed_requests as f64);
    if outcome.failed_requests > 0 {
        suite.note(
            KEY,
            format!(
                "{} rejected {} requests at {point} series; its log ends: {}",
                kind.name(),
                outcome.failed_requests,
                system.log_tail()
            ),
        );
    }
    Ok(())
}
