//! Workload (a), Remote-Write ingest: the same pre-encoded Remote-Write 1.0 requests (pods of the
//! synthetic fleet, 10 series each, one sample per series per request as a live sender sends,
//! 2 000 samples per request) sent to a freshly started Ringtail, Prometheus and VictoriaMetrics
//! at growing numbers of active series. Each run measures throughput, receiver CPU per sample,
//! peak and settled RSS, RSS per active series and bytes on disk per sample.
//!
//! The same run then measures the steady-state cells: with every series created, requests
//! carrying 1, 10 or 100 consecutive samples per series (`--rw-samples-per-series`), each cell a
//! bounded number of samples (`--rw-cell-samples`), CPU-µs per sample and samples/s per (active
//! series, samples per series) cell. [`cell_plan`] says how a cell covers the series.

use super::{repeats_text, send_batch};
use crate::suite::fleet::{encode_requests, write_series, Pod, RequestBatch, DATA_STEP_MS};
use crate::suite::measure::{anon_rss_mib, cpu, disk_bytes, peak_mib, rss_mib};
use crate::suite::options::Scale;
use crate::suite::profile::ProfileSession;
use crate::suite::results::{charted, tabulated, FigureSpec, WorkloadInfo};
use crate::suite::systems::{RunningSystem, SystemKind, SystemSetup};
use crate::suite::Suite;
use anyhow::{anyhow, Result};
use std::sync::Arc;
use std::time::Duration;

pub const KEY: &str = "remote-write";
const SERIES_PER_POD: usize = 10;
const SAMPLES_PER_REQUEST: usize = 2_000;
/// The pause after each steady-state cell before its CPU is read (at most the run's settle):
/// VictoriaMetrics flushes buffered rows every second and the others append in the request, so
/// this counts the cell's deferred work; what comes later (a WAL fsync, a merge) lands in the
/// next cell's figure.
const CELL_SETTLE: Duration = Duration::from_secs(3);
/// The table the steady-state cells are listed in.
const CELLS_TABLE: &str = "Steady state by samples per series per request (every series created before)";

/// The report keys and titles of one samples-per-series value of the steady-state cells.
struct CellFigures {
    samples_per_series: usize,
    cpu_key: &'static str,
    cpu_title: &'static str,
    rate_key: &'static str,
    rate_title: &'static str,
}

macro_rules! cell_figures {
    ($($n:literal),*) => {
        [$(CellFigures {
            samples_per_series: $n,
            cpu_key: concat!("cell_cpu_us_per_sample_", $n),
            cpu_title: concat!("CPU per sample, ", $n, " sample(s) per series per request"),
            rate_key: concat!("cell_samples_per_s_", $n),
            rate_title: concat!("throughput, ", $n, " sample(s) per series per request"),
        }),*]
    };
}

/// The samples-per-series values a cell may use (each needs its own report keys).
const CELLS: [CellFigures; 10] = cell_figures!(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000);

fn cell_figures(samples_per_series: usize) -> Option<&'static CellFigures> {
    CELLS.iter().find(|c| c.samples_per_series == samples_per_series)
}

/// Parses one `--rw-samples-per-series` value: one of the values `CELLS` has keys for.
pub fn parse_samples_per_series(text: &str) -> Result<usize, String> {
    let value: usize = text.trim().parse().map_err(|_| format!("`{text}` is not a number of samples"))?;
    match cell_figures(value) {
        Some(_) => Ok(value),
        None => Err(format!(
            "{value} samples per series per request is not offered; one of {:?}",
            CELLS.iter().map(|c| c.samples_per_series).collect::<Vec<_>>()
        )),
    }
}

/// How one steady-state cell sends its samples: `rounds` rounds, each giving every one of the
/// first `series` series `samples_per_series` consecutive samples, cut into requests of
/// `SAMPLES_PER_REQUEST` (so 100 samples per series means 20 series per request). All active
/// series are covered when a round fits the cell's budget; otherwise one round over as many
/// series as fit (the rest stay active, created by the main run, and get nothing in this cell).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellPlan {
    pub series: usize,
    pub rounds: usize,
    pub samples_per_series: usize,
}

impl CellPlan {
    pub fn samples(&self) -> usize {
        self.series * self.rounds * self.samples_per_series
    }

    /// Data steps (timestamps per series) the cell spans.
    pub fn steps(&self) -> usize {
        self.rounds * self.samples_per_series
    }
}

/// The plan of a cell of `active` series at `samples_per_series`, sending about `budget` samples.
pub fn cell_plan(active: usize, samples_per_series: usize, budget: usize) -> CellPlan {
    let (active, samples_per_series) = (active.max(1), samples_per_series.max(1));
    let per_round = active.saturating_mul(samples_per_series);
    if per_round <= budget {
        CellPlan { series: active, rounds: (budget / per_round).max(1), samples_per_series }
    } else {
        CellPlan { series: (budget / samples_per_series).clamp(1, active), rounds: 1, samples_per_series }
    }
}

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

/// Encoding the requests, once per point (9 s for 1M series × 3 samples); `entries` is the
/// per-request series entries (labels encoded once each).
fn encode_estimate(entries: usize, samples: usize) -> f64 {
    0.5 + samples as f64 * 0.3e-6 + entries as f64 * 7.5e-6
}

/// One steady-state cell on one system: the load and the cell's settle. Per sample, a cell of
/// one sample per series costs about what the main run does, and more samples per series less,
/// roughly as their square root (a 100k-series point on the 2-core machine, 2026-12-06:
/// Prometheus 1 : 0.19 : 0.09 at 1, 10, 100 per series, VictoriaMetrics 1 : 0.23 : 0.18).
fn cell_estimate(scale: &Scale, kind: SystemKind, plan: &CellPlan) -> f64 {
    let per_sample = cost_guess(kind).0 / (plan.samples_per_series as f64).sqrt();
    CELL_SETTLE.min(scale.settle).as_secs_f64() + plan.samples() as f64 * per_sample / 1e6
}

fn cell_plans(scale: &Scale, series: usize) -> Vec<CellPlan> {
    scale.rw_samples_per_series.iter().map(|&n| cell_plan(series, n, scale.rw_cell_samples)).collect()
}

fn cells_encode_estimate(scale: &Scale, series: usize) -> f64 {
    cell_plans(scale, series).iter().map(|p| encode_estimate(p.series * p.rounds, p.samples()) - 0.5).sum()
}

pub fn estimate_seconds(scale: &Scale) -> f64 {
    let count = scale.rw_series.len();
    scale
        .rw_series
        .iter()
        .enumerate()
        .map(|(i, &series)| {
            let samples = series * rounds(scale, series);
            let plans = cell_plans(scale, series);
            let per_system = |k: SystemKind| {
                run_estimate(scale, k, series, samples) + plans.iter().map(|p| cell_estimate(scale, k, p)).sum::<f64>()
            };
            encode_estimate(series, samples)
                + cells_encode_estimate(scale, series)
                + scale.repeats_at(i, count) as f64 * SystemKind::ALL.iter().map(|&k| per_system(k)).sum::<f64>()
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
             per-series cost (index, each series' first chunk or page), not compressed samples. \
             Then, on the same system with every series created, the steady-state cells: for each number of \
             samples per series per request, about {} samples in requests of {SAMPLES_PER_REQUEST} samples \
             carrying that many consecutive samples of each series (100 per series: 20 series a request), \
             rounds over every active series in time order; where one round of every series exceeds the \
             cell's samples, one round over as many series as fit (the other series stay active, receiving \
             nothing in that cell). Each cell's CPU is read {}s after its last response; its figures are \
             CPU-µs per sample and samples/s, series creation excluded.",
            DATA_STEP_MS / 1000,
            super::SEND_CONCURRENCY,
            scale.settle.as_secs(),
            scale.rw_cell_samples,
            CELL_SETTLE.min(scale.settle).as_secs_f64()
        ),
        parameters: vec![
            format!("active series: {:?}", scale.rw_series),
            format!("samples per run: at least {} (and ≥ 3 per series)", scale.rw_samples),
            format!(
                "steady-state cells: {:?} samples per series per request, about {} samples each",
                scale.rw_samples_per_series, scale.rw_cell_samples
            ),
            repeats_text(scale),
        ],
        point_label: "active series",
        points: scale.rw_series.iter().map(|&s| s as f64).collect(),
        log_x: true,
        systems: SystemKind::ALL.to_vec(),
        figures: [
            charted("samples_per_s", "throughput", "samples/s", false),
            charted("cpu_s_per_million", "CPU per million samples", "CPU-s", true),
            tabulated("samples_per_cpu_s", "samples per CPU-second", "samples/CPU-s", false),
            charted("peak_rss_mib", "peak RSS", "MiB", true),
            tabulated("steady_rss_mib", "RSS after settling", "MiB", true),
            charted("rss_bytes_per_series", "RSS growth per active series", "bytes", true),
            charted("anon_bytes_per_series", "anonymous memory (heap) growth per active series", "bytes", true),
            charted("disk_bytes_per_sample", "bytes on disk per sample", "bytes", true),
            tabulated("failed_requests", "failed requests", "count", true),
        ]
        .into_iter()
        .chain(cell_figure_specs(scale))
        .collect(),
        notes: vec![],
    }
}

/// The steady-state cells' figures, CPU per sample charted, in their own table.
fn cell_figure_specs(scale: &Scale) -> Vec<FigureSpec> {
    let cells = scale.rw_samples_per_series.iter().filter_map(|&n| cell_figures(n));
    let cpu = cells.clone().map(|c| charted(c.cpu_key, c.cpu_title, "CPU-µs", true).in_table(CELLS_TABLE));
    let rate = cells.map(|c| tabulated(c.rate_key, c.rate_title, "samples/s", false).in_table(CELLS_TABLE));
    cpu.chain(rate).collect()
}

/// One steady-state cell, encoded once per point and sent to every system.
struct Cell {
    figures: &'static CellFigures,
    plan: CellPlan,
    batch: Arc<RequestBatch>,
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
        let plans = cell_plans(&scale, series_count);
        // Every timestamp in the past (VictoriaMetrics and Prometheus refuse far-future samples):
        // the main run's steps, then each cell's after it.
        let total_steps = rounds + plans.iter().map(CellPlan::steps).sum::<usize>();
        let first_ms = super::now_ms() - (total_steps as i64 + 2) * DATA_STEP_MS;
        let batch = Arc::new(encode_requests(&series, 0..rounds as i64, first_ms, 1, SAMPLES_PER_REQUEST));
        suite.step_done(encode_estimate(series_count, batch.samples as usize));
        suite.status(format!("{KEY}: encoding the steady-state cells of {series_count} series"));
        let mut cells = Vec::with_capacity(plans.len());
        let mut next_step = rounds as i64;
        for (&samples_per_series, plan) in scale.rw_samples_per_series.iter().zip(plans) {
            let figures = cell_figures(samples_per_series)
                .ok_or_else(|| anyhow!("BUG: {samples_per_series} samples per series passed the option's check"))?;
            let steps = next_step..next_step + plan.steps() as i64;
            next_step = steps.end;
            let cell_series = &series[..plan.series.min(series.len())];
            let batch = encode_requests(cell_series, steps, first_ms, samples_per_series as i64, SAMPLES_PER_REQUEST);
            cells.push(Cell { figures, plan, batch: Arc::new(batch) });
        }
        drop(series);
        suite.step_done(cells_encode_estimate(&scale, series_count));
        for repeat in 0..scale.repeats_at(index, count) {
            for kind in SystemKind::order_for_repeat(repeat) {
                suite.status(format!("{KEY}: {} at {series_count} series, repeat {}", kind.name(), repeat + 1));
                let point = series_count as f64;
                if let Err(e) = measure_run(suite, kind, &batch, &cells, point, repeat).await {
                    suite.note(KEY, format!("{} at {series_count} series failed: {e:#}", kind.name()));
                }
                let cells_estimate: f64 = cells.iter().map(|c| cell_estimate(&scale, kind, &c.plan)).sum();
                suite.step_done(run_estimate(&scale, kind, series_count, batch.samples as usize) + cells_estimate);
            }
        }
    }
    Ok(())
}

async fn measure_run(
    suite: &mut Suite,
    kind: SystemKind,
    batch: &Arc<RequestBatch>,
    cells: &[Cell],
    point: f64,
    repeat: usize,
) -> Result<()> {
    let system = RunningSystem::start(kind, &SystemSetup::default(), &suite.http).await?;
    let pid = system.pid();
    let profile = if kind == SystemKind::Ringtail { ProfileSession::start(suite, KEY, kind, pid) } else { None };
    let cpu_before = cpu(pid)?;
    let outcome = send_batch(&suite.http, &system.write_url(), batch).await?;
    tokio::time::sleep(suite.scale.settle).await;
    let cpu_used = cpu(pid)? - cpu_before;
    if let Some(profile) = profile {
        profile.finish(suite).await;
    }
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
    for cell in cells {
        measure_cell(suite, &system, cell, point, repeat).await?;
    }
    Ok(())
}

/// Sends one steady-state cell to `system` (every series already created) and records its CPU
/// per sample and throughput.
async fn measure_cell(suite: &mut Suite, system: &RunningSystem, cell: &Cell, point: f64, repeat: usize) -> Result<()> {
    let (kind, pid) = (system.kind, system.pid());
    suite.status(format!(
        "{KEY}: {} at {point} series, {} samples per series per request, repeat {}",
        kind.name(),
        cell.plan.samples_per_series,
        repeat + 1
    ));
    let profile = if kind == SystemKind::Ringtail { ProfileSession::start(suite, KEY, kind, pid) } else { None };
    let cpu_before = cpu(pid)?;
    let outcome = send_batch(&suite.http, &system.write_url(), &cell.batch).await?;
    tokio::time::sleep(CELL_SETTLE.min(suite.scale.settle)).await;
    let cpu_used = cpu(pid)? - cpu_before;
    if let Some(profile) = profile {
        profile.finish(suite).await;
    }
    let samples = cell.batch.samples as f64;
    let record = |suite: &mut Suite, figure, value| suite.results.record(KEY, figure, kind, point, repeat, value);
    record(suite, cell.figures.cpu_key, cpu_used / samples * 1e6);
    record(suite, cell.figures.rate_key, samples / outcome.wall.as_secs_f64());
    if outcome.failed_requests > 0 {
        suite.note(
            KEY,
            format!(
                "{} rejected {} of {} requests of the {}-samples-per-series cell at {point} series; its log ends: {}",
                kind.name(),
                outcome.failed_requests,
                cell.batch.bodies.len(),
                cell.plan.samples_per_series,
                system.log_tail()
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cover_every_series_when_a_round_fits() {
        let plan = cell_plan(10_000, 10, 1_000_000);
        assert_eq!(plan, CellPlan { series: 10_000, rounds: 10, samples_per_series: 10 });
        assert_eq!((plan.samples(), plan.steps()), (1_000_000, 100));
        // A round larger than the budget: one round over the series that fit.
        let large = cell_plan(1_000_000, 100, 1_000_000);
        assert_eq!(large, CellPlan { series: 10_000, rounds: 1, samples_per_series: 100 });
        assert_eq!(cell_plan(1_000_000, 1, 1_000_000).series, 1_000_000);
        // Never less than one series or one round.
        assert_eq!(cell_plan(5, 1000, 10), CellPlan { series: 1, rounds: 1, samples_per_series: 1000 });
        assert_eq!(cell_plan(3, 1, 10).rounds, 3);
    }

    #[test]
    fn samples_per_series_values_have_keys() {
        assert_eq!(parse_samples_per_series("100"), Ok(100));
        assert!(parse_samples_per_series("7").is_err_and(|e| e.contains("one of")));
        assert!(parse_samples_per_series("ten").is_err());
        let figures = cell_figures(10).map(|c| (c.cpu_key, c.rate_key));
        assert_eq!(figures, Some(("cell_cpu_us_per_sample_10", "cell_samples_per_s_10")));
        let keys: std::collections::HashSet<_> = CELLS.iter().flat_map(|c| [c.cpu_key, c.rate_key]).collect();
        assert_eq!(keys.len(), 2 * CELLS.len());
    }

    #[test]
    fn cell_requests_hold_the_planned_samples() {
        let pods: Vec<Pod> = (0..10).map(|i| Pod::new(i, 0)).collect();
        let series = write_series(&pods, SERIES_PER_POD, "j");
        let plan = cell_plan(series.len(), 100, 5_000);
        let batch = encode_requests(&series[..plan.series], 0..plan.steps() as i64, 0, 100, SAMPLES_PER_REQUEST);
        assert_eq!(batch.samples as usize, plan.samples());
        // 100 samples per series, 2000 per request: 20 series a request.
        assert_eq!(batch.bodies.len(), plan.series.div_ceil(20) * plan.rounds);
    }
}
