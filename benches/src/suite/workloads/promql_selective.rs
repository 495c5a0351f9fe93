//! Workload `promql-selective` is selective PromQL under three conditions: each query reads N
//! series of one namespace out of a store holding 10 N (the same metrics in nine other
//! namespaces), timed and CPU-costed per query on every system alone, on every system limited to
//! one core (`taskset`, the same for all three), and on every system while a remote-write stream
//! of other series runs at half of that system's measured ingest capacity.
//!
//! The queries are the adapter's counter shape `sum by (pod) (rate(…[2m]))`, its histogram shape
//! `histogram_quantile(0.99, sum by (le) (rate(…[5m])))` and a gauge average
//! `avg by (pod) (…)`, each instant and as a range query. Per-query CPU is the server's user +
//! system time (`/proc/<pid>/stat`) over a block of back-to-back runs of one query on one system,
//! divided by the runs; under ingest the stream's own CPU, measured over an equally long window
//! without queries (at most 30 s), is subtracted in proportion to each block's wall time.

use super::{repeats_text, send_batch};
use crate::suite::fleet::{
    encode_requests, pod_series, series_labels, value_at, write_series, Pod, SeriesKind, SeriesShape, WriteSeries,
    DATA_STEP_MS,
};
use crate::suite::measure::{cpu, quantile, sorted, time_query, wait_idle, PromQuery};
use crate::suite::options::Scale;
use crate::suite::profile::ProfileSession;
use crate::suite::results::{charted, tabulated, FigureSpec, WorkloadInfo};
use crate::suite::systems::{remote_write, RunningSystem, SystemKind, SystemSetup};
use crate::suite::Suite;
use anyhow::{anyhow, bail, Context, Result};
use ingest::proto::v1;
use ingest::remote_write::encode_body;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const KEY: &str = "promql-selective";

/// The namespace every query selects (a macro so the query texts can be `concat!`ed constants).
macro_rules! selected_namespace {
    () => {
        "bench-selected"
    };
}
const SELECTED_NAMESPACE: &str = selected_namespace!();
/// Namespaces holding the unselected rest of the store (`bench-other-1` …).
const OTHER_NAMESPACES: usize = 9;
/// Series of each queried metric per pod: 10 request counters (method × code), 10 buckets of one
/// handler's latency histogram, 10 in-flight gauges (one per handler).
const SERIES_PER_POD_PER_METRIC: usize = 10;
const SERIES_PER_POD: usize = 3 * SERIES_PER_POD_PER_METRIC;
/// Stored series per series a query selects.
const STORE_FACTOR: usize = 10;
/// The data span at small points: 65 min at 15 s (both ends sampled), so a 1 h range has its
/// 5 min lookback.
const MAX_SPAN_STEPS: i64 = 65 * 60 / 15 + 1;
/// The shortest data span (20 min at 15 s), reached at 100k selected series (1M stored).
const MIN_SPAN_STEPS: i64 = 20 * 60 / 15 + 1;
/// Samples loaded into each system above which the span shortens (towards [`MIN_SPAN_STEPS`]):
/// 65 min of 100k stored series. The 100k point (1M stored series, 20 min) then loads 81M samples
/// per system, within Prometheus's ~3.5 GiB per million head series and a load of about 2 minutes.
const LOAD_SAMPLE_BUDGET: usize = 26_100_000;
/// Consecutive samples of a series per load request (a backfill shape, as workload (c) loads).
const LOAD_STEPS_PER_REQUEST: i64 = 20;
const LOAD_SAMPLES_PER_REQUEST: usize = 40_000;
/// The longest range query, and its step.
const MAX_RANGE: Duration = Duration::from_secs(3600);
const RANGE_STEP: Duration = Duration::from_secs(15);
/// The longest lookback a query uses (`[5m]`): a range query starts this far after the data.
const LONGEST_WINDOW: Duration = Duration::from_secs(300);
/// Timed runs of one query on one system per block: at least this many (so a p99 exists) …
const MIN_RUNS: usize = 3;
/// … and at most this many (the small queries, whose block would otherwise be too short for the
/// 10 ms resolution of `/proc/<pid>/stat` CPU time).
const MAX_RUNS: usize = 200;
/// Series the background remote-write stream writes (namespace `bench-ingest`, 10 per pod).
const INGEST_SERIES: usize = 32_000;
/// Requests of the stream in flight at once, each lane sending its own chunks of series one
/// request after another (so every series stays in time order), as Prometheus's remote-write
/// shards do: enough that a burst is limited by the system, not by the round trips of a few lanes.
const INGEST_LANES: usize = 8;
/// Samples per stream request: one per series, as a live Prometheus queue sends.
const INGEST_SAMPLES_PER_REQUEST: usize = 2_000;
/// The saturating burst that measures a system's ingest capacity.
const INGEST_BURST: Duration = Duration::from_secs(4);
/// Worker threads of the stream's own runtime (the machine has 2 cores).
const STREAM_THREADS: usize = 2;
/// Share of the measured capacity the stream sends during the queries.
const INGEST_SHARE: f64 = 0.5;
/// Stream time before the first timed query, so the stream is steady.
const STREAM_SETTLE: Duration = Duration::from_secs(1);
/// Bounds of the stream-only window whose CPU is subtracted: as long as the query blocks
/// together, within these bounds (longer blocks are corrected by the stream's CPU rate).
const MIN_STREAM_WINDOW: Duration = Duration::from_secs(1);
const MAX_STREAM_WINDOW: Duration = Duration::from_secs(30);
/// The longest wait for a system to go idle (after loading, after a condition) before measuring.
const IDLE_WAIT: Duration = Duration::from_secs(20);

/// How the systems run while a block of queries is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Condition {
    /// Every system with all cores, no other load.
    Alone,
    /// Every thread of the measured system pinned to core 0 (`taskset -a -p -c 0`).
    OneCore,
    /// A remote-write stream at half of the system's capacity runs against it.
    UnderIngest,
}

impl Condition {
    const ALL: [Condition; 3] = [Condition::Alone, Condition::OneCore, Condition::UnderIngest];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Condition::Alone => "alone",
            Condition::OneCore => "one core",
            Condition::UnderIngest => "under ingest",
        }
    }

    /// The report table of the condition's figures (`None`: the workload's main table).
    fn table(self) -> Option<&'static str> {
        match self {
            Condition::Alone => None,
            Condition::OneCore => Some("Limited to one core: every thread of the measured system on core 0"),
            Condition::UnderIngest => Some("Under remote-write ingest at half of each system's capacity"),
        }
    }

    /// Wall time of a query under this condition relative to alone, for the estimate: the
    /// averages over the three systems in a 30k-series run of 2026-12-06 on the shared 2-core
    /// machine (queries under ingest waited far longer than they computed).
    fn slowdown(self) -> f64 {
        match self {
            Condition::Alone => 1.0,
            Condition::OneCore => 1.3,
            Condition::UnderIngest => 2.5,
        }
    }
}

/// Figure keys of a shape: `[condition][median, p99, CPU per query]`.
type ShapeKeys = [[&'static str; 3]; 3];

macro_rules! shape_keys {
    ($shape:literal) => {
        [
            [concat!($shape, "_alone_p50_ms"), concat!($shape, "_alone_p99_ms"), concat!($shape, "_alone_cpu_ms")],
            [
                concat!($shape, "_one_core_p50_ms"),
                concat!($shape, "_one_core_p99_ms"),
                concat!($shape, "_one_core_cpu_ms"),
            ],
            [
                concat!($shape, "_under_ingest_p50_ms"),
                concat!($shape, "_under_ingest_p99_ms"),
                concat!($shape, "_under_ingest_cpu_ms"),
            ],
        ]
    };
}

/// A query of the workload.
struct Shape {
    keys: ShapeKeys,
    title: &'static str,
    expr: &'static str,
    range: bool,
    /// One result series per selected pod (`by (pod)`); otherwise a single series.
    per_pod: bool,
}

const SUM_RATE: &str =
    concat!("sum by (pod) (rate(http_requests_total{namespace=\"", selected_namespace!(), "\"}[2m]))");
const HISTOGRAM: &str = concat!(
    "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{namespace=\"",
    selected_namespace!(),
    "\"}[5m])))"
);
const AVG_GAUGE: &str = concat!("avg by (pod) (http_requests_in_flight{namespace=\"", selected_namespace!(), "\"})");

const SHAPES: [Shape; 6] = [
    Shape {
        keys: shape_keys!("sum_rate_instant"),
        title: "sum by (pod) (rate(…[2m])), instant",
        expr: SUM_RATE,
        range: false,
        per_pod: true,
    },
    Shape {
        keys: shape_keys!("sum_rate_range"),
        title: "sum by (pod) (rate(…[2m])), range",
        expr: SUM_RATE,
        range: true,
        per_pod: true,
    },
    Shape {
        keys: shape_keys!("histogram_instant"),
        title: "histogram_quantile(0.99, sum by (le) (rate(…[5m]))), instant",
        expr: HISTOGRAM,
        range: false,
        per_pod: false,
    },
    Shape {
        keys: shape_keys!("histogram_range"),
        title: "histogram_quantile(0.99, sum by (le) (rate(…[5m]))), range",
        expr: HISTOGRAM,
        range: true,
        per_pod: false,
    },
    Shape {
        keys: shape_keys!("avg_gauge_instant"),
        title: "avg by (pod) (gauge), instant",
        expr: AVG_GAUGE,
        range: false,
        per_pod: true,
    },
    Shape {
        keys: shape_keys!("avg_gauge_range"),
        title: "avg by (pod) (gauge), range",
        expr: AVG_GAUGE,
        range: true,
        per_pod: true,
    },
];

const STAT_P50: usize = 0;
const STAT_P99: usize = 1;
const STAT_CPU: usize = 2;

/// Pods whose series a query selects.
fn selected_pods(selected: usize) -> usize {
    selected.div_ceil(SERIES_PER_POD_PER_METRIC).max(1)
}

/// All pods of the store: the selected ones first, then enough in the other namespaces that the
/// store holds [`STORE_FACTOR`] times the selected series (at least one pod per namespace).
fn store_pods(selected: usize) -> Vec<Pod> {
    let chosen = selected_pods(selected);
    let total = (selected * STORE_FACTOR).div_ceil(SERIES_PER_POD).max(chosen + OTHER_NAMESPACES);
    (0..total)
        .map(|i| {
            let mut pod = Pod::new(i, 0);
            pod.namespace = if i < chosen {
                SELECTED_NAMESPACE.to_string()
            } else {
                format!("bench-other-{}", (i - chosen) % OTHER_NAMESPACES + 1)
            };
            pod
        })
        .collect()
}

/// The [`SERIES_PER_POD`] series shapes of a store pod: request counters, one handler's buckets,
/// and an in-flight gauge per handler.
fn store_shapes() -> Vec<SeriesShape> {
    let mut shapes: Vec<SeriesShape> = pod_series(25)
        .into_iter()
        .filter(|s| s.name == "http_requests_total" || s.name == "http_request_duration_seconds_bucket")
        .collect();
    for handler in 0..SERIES_PER_POD_PER_METRIC {
        shapes.push(SeriesShape {
            name: "http_requests_in_flight",
            extra: vec![("handler", format!("/api/v1/resource{handler}"))],
            kind: SeriesKind::Gauge,
        });
    }
    shapes
}

fn store_series(pods: &[Pod]) -> Vec<WriteSeries> {
    let shapes = store_shapes();
    let mut out = Vec::with_capacity(pods.len() * shapes.len());
    for pod in pods {
        for shape in &shapes {
            let seed = out.len();
            out.push(WriteSeries { labels: series_labels(pod, shape, "kubernetes-pods"), kind: shape.kind, seed });
        }
    }
    out
}

/// Steps (15 s apart) of data loaded at `selected` series: 65 min while the store stays within
/// [`LOAD_SAMPLE_BUDGET`] samples per system, shorter above, never under 20 min.
fn span_steps(selected: usize) -> i64 {
    let stored = (selected * STORE_FACTOR).max(1);
    ((LOAD_SAMPLE_BUDGET / stored) as i64).clamp(MIN_SPAN_STEPS, MAX_SPAN_STEPS)
}

/// The range of the range queries: 1 h, or the data's span less the longest lookback.
fn range_of(selected: usize) -> Duration {
    let data = Duration::from_millis(((span_steps(selected) - 1) * DATA_STEP_MS) as u64);
    let range = data.saturating_sub(LONGEST_WINDOW).min(MAX_RANGE);
    let step = RANGE_STEP.as_secs();
    Duration::from_secs(range.as_secs() / step * step)
}

fn range_steps(selected: usize) -> u64 {
    range_of(selected).as_secs() / RANGE_STEP.as_secs() + 1
}

/// Result series `shape` returns at `selected` series.
fn expected_series(shape: &Shape, selected: usize) -> usize {
    if shape.per_pod {
        selected_pods(selected)
    } else {
        1
    }
}

/// Seconds one run of `shape` takes on one system (the mean of the three), alone: fitted to
/// workload (c)'s default run of 2026-12-01 on the 2-core machine (an instant query 0.65 ms +
/// 7.2 µs per series; a 1 h range at 15 s 4.4 ms + 48 µs per series), ranges interpolated in
/// their steps.
fn query_seconds(shape: &Shape, selected: usize) -> f64 {
    let n = selected as f64;
    let instant = 0.000_65 + 7.2e-6 * n;
    if !shape.range {
        return instant;
    }
    let full_range = 0.0044 + 4.8e-5 * n;
    instant + (full_range - instant) * (range_steps(selected) as f64 - 1.0) / 240.0
}

/// Timed runs of `shape` per block: enough to fill `selective_block`, [`MIN_RUNS`]..=[`MAX_RUNS`].
/// The same count on every system and condition, so their p99s mean the same.
fn runs_for(scale: &Scale, shape: &Shape, selected: usize) -> usize {
    let runs = (scale.selective_block.as_secs_f64() / query_seconds(shape, selected)).round();
    (runs as usize).clamp(MIN_RUNS, MAX_RUNS)
}

/// Seconds of the query blocks of one system under `condition` (without the stream-only window).
fn blocks_estimate(scale: &Scale, condition: Condition, selected: usize) -> f64 {
    let alone: f64 = SHAPES.iter().map(|s| runs_for(scale, s, selected) as f64 * query_seconds(s, selected)).sum();
    alone * condition.slowdown()
}

/// Seconds of one system under `condition` at one repeat.
fn condition_estimate(scale: &Scale, condition: Condition, selected: usize) -> f64 {
    let blocks = blocks_estimate(scale, condition, selected);
    match condition {
        // The idle wait takes at least 0.5 s.
        Condition::Alone | Condition::OneCore => 0.6 + blocks,
        Condition::UnderIngest => {
            let window = blocks.clamp(MIN_STREAM_WINDOW.as_secs_f64(), MAX_STREAM_WINDOW.as_secs_f64());
            // Creating the stream's series (one pass), the burst, the settle, then the windows.
            1.0 + INGEST_BURST.as_secs_f64() + STREAM_SETTLE.as_secs_f64() + blocks + window
        }
    }
}

/// Seconds to start the three systems and load the store into each (and wait for it to be
/// searchable): about 1.1 µs per sample per system, as workload (c) measures, plus start-up.
fn load_estimate(selected: usize) -> f64 {
    let samples = (selected * STORE_FACTOR) as f64 * span_steps(selected) as f64;
    samples * 1.1e-6 + 10.0
}

fn repeat_estimate(scale: &Scale, selected: usize) -> f64 {
    Condition::ALL.iter().map(|&c| condition_estimate(scale, c, selected)).sum::<f64>() * SystemKind::ALL.len() as f64
}

fn point_estimate(scale: &Scale, index: usize, selected: usize) -> f64 {
    let repeats = scale.repeats_at(index, scale.selective_series.len());
    load_estimate(selected) + repeats as f64 * repeat_estimate(scale, selected)
}

pub fn estimate_seconds(scale: &Scale) -> f64 {
    scale.selective_series.iter().enumerate().map(|(i, &n)| point_estimate(scale, i, n)).sum()
}

fn condition_figures(condition: Condition) -> Vec<FigureSpec> {
    let c = condition.index();
    let mut figures = Vec::new();
    for shape in &SHAPES {
        let title = shape.title;
        let median = if condition == Condition::Alone {
            charted(shape.keys[c][STAT_P50], title, "median ms", true)
        } else {
            tabulated(shape.keys[c][STAT_P50], title, "median ms", true)
        };
        figures.push(median);
    }
    for shape in &SHAPES {
        figures.push(tabulated(shape.keys[c][STAT_P99], shape.title, "p99 ms", true));
    }
    for shape in &SHAPES {
        let cpu = if condition == Condition::Alone {
            charted(shape.keys[c][STAT_CPU], shape.title, "CPU-ms per query", true)
        } else {
            tabulated(shape.keys[c][STAT_CPU], shape.title, "CPU-ms per query", true)
        };
        figures.push(cpu);
    }
    match condition.table() {
        Some(table) => figures.into_iter().map(|f| f.in_table(table)).collect(),
        None => figures,
    }
}

pub fn info(scale: &Scale) -> WorkloadInfo {
    let mut figures = Vec::new();
    for condition in Condition::ALL {
        figures.extend(condition_figures(condition));
    }
    let ingest_table = Condition::UnderIngest.table().unwrap_or_default();
    figures.push(
        tabulated("ingest_capacity_samples_per_s", "ingest capacity (saturating burst)", "samples/s", false)
            .in_table(ingest_table),
    );
    figures.push(
        tabulated("ingest_burst_cores", "the system's CPU during the burst", "cores", true).in_table(ingest_table),
    );
    figures.push(
        tabulated("ingest_loadgen_cores", "the load generator's own CPU during the burst", "cores", true)
            .in_table(ingest_table),
    );
    figures.push(
        tabulated("ingest_achieved_samples_per_s", "ingest rate achieved during the queries", "samples/s", false)
            .in_table(ingest_table),
    );
    figures.push(
        tabulated("ingest_cpu_cores", "the stream's own CPU (window without queries)", "cores", true)
            .in_table(ingest_table),
    );
    figures.push(tabulated("load_samples_per_s", "loading the store", "samples/s", false));
    let ranges: Vec<String> = scale
        .selective_series
        .iter()
        .map(|&n| {
            format!(
                "{n}: {} stored series, {} min of data, range {} min",
                store_pods(n).len() * SERIES_PER_POD,
                (span_steps(n) * DATA_STEP_MS) / 60_000,
                range_of(n).as_secs() / 60
            )
        })
        .collect();
    let runs: Vec<String> = scale
        .selective_series
        .iter()
        .map(|&n| {
            let per_shape: Vec<String> = SHAPES.iter().map(|s| runs_for(scale, s, n).to_string()).collect();
            format!("{n}: {}", per_shape.join("/"))
        })
        .collect();
    WorkloadInfo {
        key: KEY,
        title: "(c2) Selective PromQL: alone, on one core, under ingest",
        description: format!(
            "Each query selects N series of namespace `{SELECTED_NAMESPACE}` out of a store holding {STORE_FACTOR} N: \
             pods of {SERIES_PER_POD} series ({SERIES_PER_POD_PER_METRIC} `http_requests_total` by method and code, \
             the {SERIES_PER_POD_PER_METRIC} `http_request_duration_seconds_bucket` of one handler, \
             {SERIES_PER_POD_PER_METRIC} `http_requests_in_flight` gauges, one per handler), N/{SERIES_PER_POD_PER_METRIC} \
             pods in the selected namespace and the rest of the store in {OTHER_NAMESPACES} other namespaces, \
             15 s apart, remote-written identically into Ringtail, Prometheus and VictoriaMetrics (all three running \
             at once, measured one at a time). Queries: `{SUM_RATE}`, `{HISTOGRAM}` and `{AVG_GAUGE}`, instant at \
             the end of the data and as a range at 15 s step (1 h, or the span less 5 min where the data is shorter), \
             POSTed to the Prometheus HTTP API; every answer is checked to hold the expected number of series; \
             VictoriaMetrics gets `nocache=1`. A block is one query run back to back on one system; its CPU is the \
             server's user + system time (`/proc/<pid>/stat`, all threads) over the block divided by its runs. \
             Three conditions, each its own table: **alone** (the other systems idle); **one core** (every thread \
             of the measured system pinned to core 0 with `taskset -a -p -c 0` after loading and the bench's own \
             threads to the other cores, the other systems idle and unpinned, the full masks restored afterwards; thread pools sized at start-up keep their size, as under \
             a CPU limit applied to a running server); **under ingest** (first the system's ingest \
             capacity: a {}-s saturating burst of Remote-Write requests of {INGEST_SAMPLES_PER_REQUEST} now-stamped \
             samples, one per series, over {INGEST_SERIES} other series in namespace `bench-ingest`, \
             {INGEST_LANES} lanes each keeping its series in time order; then a stream of the same shape at \
             {}% of that capacity, paced per lane, runs while the blocks are timed; the stream's own CPU is measured \
             over a window without queries as long as the blocks together ({}–{} s) and subtracted in proportion to \
             each block's wall time). The stream is encoded live on a thread and runtime of its own, so it never \
             holds up the tasks timing the queries; it still shares the machine's cores, and its CPU during the \
             burst is reported (near {STREAM_THREADS} cores the capacity is the load generator's, not the \
             system's). Systems take turns block by block in an order rotated between repeats. Ringtail's stacks \
             are sampled over its alone and one-core blocks for the profile line.",
            INGEST_BURST.as_secs(),
            (INGEST_SHARE * 100.0).round(),
            MIN_STREAM_WINDOW.as_secs(),
            MAX_STREAM_WINDOW.as_secs(),
        ),
        parameters: vec![
            format!("selected series per query: {:?}", scale.selective_series),
            format!("store and span per point: {}", ranges.join("; ")),
            format!(
                "timed runs per block (sum-rate instant/range, histogram instant/range, avg instant/range): {} — \
                 enough to fill {} ms by the estimator, {MIN_RUNS} to {MAX_RUNS}; the median and p99 are over one \
                 block's runs (p99 of fewer than 100 runs is the slowest), then min/median/max over the repeats",
                runs.join("; "),
                scale.selective_block.as_millis()
            ),
            repeats_text(scale),
        ],
        point_label: "selected series per query",
        points: scale.selective_series.iter().map(|&n| n as f64).collect(),
        log_x: true,
        systems: SystemKind::ALL.to_vec(),
        figures,
        notes: vec![],
    }
}

pub async fn run(suite: &mut Suite) -> Result<()> {
    let scale = suite.scale.clone();
    suite.results.add_workload(info(&scale));
    for (index, &selected) in scale.selective_series.iter().enumerate() {
        let repeats = scale.repeats_at(index, scale.selective_series.len());
        let mut progress = Progress::default();
        if let Err(e) = run_point(suite, selected, repeats, &mut progress).await {
            suite.note(KEY, format!("{selected} selected series failed: {e:#}"));
        }
        // Whatever the point did not reach still advances the bar by its estimate.
        suite.step_done((point_estimate(&scale, index, selected) - progress.done).max(0.0));
    }
    Ok(())
}

/// Estimated seconds a point has already advanced the progress bar by.
#[derive(Default)]
struct Progress {
    done: f64,
}

impl Progress {
    fn step(&mut self, suite: &Suite, seconds: f64) {
        let seconds = seconds.round().max(1.0);
        self.done += seconds;
        suite.step_done(seconds);
    }
}

async fn run_point(suite: &mut Suite, selected: usize, repeats: usize, progress: &mut Progress) -> Result<()> {
    let pods = store_pods(selected);
    let series = store_series(&pods);
    drop(pods);
    let steps = span_steps(selected);
    let end_step_ms = (super::now_ms() - 120_000) / 60_000 * 60_000;
    let first_ms = end_step_ms - (steps - 1) * DATA_STEP_MS;
    let mut systems = Vec::new();
    for kind in SystemKind::ALL {
        suite.status(format!("{KEY}: starting {}", kind.name()));
        systems.push(RunningSystem::start(kind, &SystemSetup::default(), &suite.http).await?);
    }
    // Loaded slice by slice (each to every system) so only one slice's requests are in memory.
    let mut load_walls = [Duration::ZERO; SystemKind::ALL.len()];
    let mut samples = 0u64;
    let mut from = 0;
    while from < steps {
        let to = (from + LOAD_STEPS_PER_REQUEST).min(steps);
        suite.status(format!("{KEY}: loading {} series, steps {from}..{to} of {steps}", series.len()));
        let batch = Arc::new(encode_requests(&series, from..to, first_ms, to - from, LOAD_SAMPLES_PER_REQUEST));
        samples += batch.samples;
        for (system, wall) in systems.iter().zip(load_walls.iter_mut()) {
            let outcome = send_batch(&suite.http, &system.write_url(), &batch).await?;
            *wall += outcome.wall;
            if outcome.failed_requests > 0 {
                bail!("{} rejected {} load requests", system.kind.name(), outcome.failed_requests);
            }
        }
        from = to;
    }
    drop(series);
    for (system, wall) in systems.iter().zip(load_walls) {
        let rate = samples as f64 / wall.as_secs_f64();
        suite.results.record(KEY, "load_samples_per_s", system.kind, selected as f64, 0, rate);
    }
    let time_s = end_step_ms as f64 / 1000.0;
    let queries: Vec<PromQuery> = SHAPES
        .iter()
        .map(|s| PromQuery {
            expr: s.expr.to_string(),
            time_s,
            range: s.range.then_some((range_of(selected), RANGE_STEP)),
        })
        .collect();
    // Every system must answer the instant queries in full before anything is timed
    // (VictoriaMetrics makes fresh data searchable within a few seconds, so it is polled).
    for system in &systems {
        suite.status(format!("{KEY}: waiting until {} answers in full", system.kind.name()));
        for (shape, query) in SHAPES.iter().zip(&queries).filter(|(s, _)| !s.range) {
            wait_for_answer(&suite.http, system, shape, query, selected).await?;
        }
    }
    progress.step(suite, load_estimate(selected));
    let point = selected as f64;
    let ctx = PointContext { selected, point, queries: &queries };
    for repeat in 0..repeats {
        let order = SystemKind::order_for_repeat(repeat);
        for condition in Condition::ALL {
            for kind in &order {
                let Some(system) = systems.iter().find(|s| s.kind == *kind) else { continue };
                suite.status(format!(
                    "{KEY}: {selected} series, {} {}, repeat {}",
                    kind.name(),
                    condition.name(),
                    repeat + 1
                ));
                let outcome = match condition {
                    Condition::Alone => run_alone(suite, system, &ctx, repeat).await,
                    Condition::OneCore => run_one_core(suite, system, &ctx, repeat).await,
                    Condition::UnderIngest => run_under_ingest(suite, system, &ctx, repeat).await,
                };
                if let Err(e) = outcome {
                    suite.note(
                        KEY,
                        format!(
                            "{} {} at {selected} series (repeat {}) failed: {e:#}",
                            kind.name(),
                            condition.name(),
                            repeat + 1
                        ),
                    );
                }
                progress.step(suite, condition_estimate(&suite.scale, condition, selected));
            }
        }
    }
    Ok(())
}

/// What every block of a point shares.
struct PointContext<'a> {
    selected: usize,
    point: f64,
    queries: &'a [PromQuery],
}

/// Polls `query` on `system` until it holds the expected series (60 s at most).
async fn wait_for_answer(
    http: &reqwest::Client,
    system: &RunningSystem,
    shape: &Shape,
    query: &PromQuery,
    selected: usize,
) -> Result<()> {
    let expected = expected_series(shape, selected);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let result = time_query(http, &system.api_url(), query, system.query_extra_params()).await;
        match result {
            Ok((_, n)) if n == expected => return Ok(()),
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
            Ok((_, n)) => {
                bail!("{} answered `{}` with {n} series, expected {expected}", system.kind.name(), shape.title)
            }
            Err(e) => return Err(e),
        }
    }
}

/// One block: `runs` runs of one query on one system, back to back, every answer checked.
struct Block {
    latencies_ms: Vec<f64>,
    cpu_s: f64,
    wall: Duration,
    runs: usize,
}

async fn run_block(
    http: &reqwest::Client,
    system: &RunningSystem,
    shape: &Shape,
    query: &PromQuery,
    selected: usize,
    runs: usize,
) -> Result<Block> {
    let expected = expected_series(shape, selected);
    let pid = system.pid();
    let mut latencies_ms = Vec::with_capacity(runs);
    let cpu_before = cpu(pid)?;
    let started = Instant::now();
    for _ in 0..runs {
        let (elapsed, n) = time_query(http, &system.api_url(), query, system.query_extra_params()).await?;
        if n != expected {
            bail!("{} answered `{}` with {n} series, expected {expected}", system.kind.name(), shape.title);
        }
        latencies_ms.push(elapsed.as_secs_f64() * 1000.0);
    }
    let wall = started.elapsed();
    let cpu_s = cpu(pid)? - cpu_before;
    Ok(Block { latencies_ms, cpu_s, wall, runs })
}

/// Where a block's figures go: condition, system, point and repeat.
struct Cell {
    condition: Condition,
    kind: SystemKind,
    point: f64,
    repeat: usize,
}

/// Records a block's median, p99 and CPU per query (`cpu_s` already corrected where needed).
fn record_block(suite: &mut Suite, cell: &Cell, shape: &Shape, block: &Block, cpu_s: f64) {
    let keys = shape.keys[cell.condition.index()];
    let latencies = sorted(block.latencies_ms.clone());
    let (kind, point, repeat) = (cell.kind, cell.point, cell.repeat);
    suite.results.record(KEY, keys[STAT_P50], kind, point, repeat, quantile(&latencies, 0.5));
    suite.results.record(KEY, keys[STAT_P99], kind, point, repeat, quantile(&latencies, 0.99));
    suite.results.record(KEY, keys[STAT_CPU], kind, point, repeat, cpu_s * 1000.0 / block.runs as f64);
}

/// One block of every shape on `system`, in [`SHAPES`] order.
async fn timed_blocks(suite: &Suite, system: &RunningSystem, ctx: &PointContext<'_>) -> Result<Vec<Block>> {
    let mut blocks = Vec::with_capacity(SHAPES.len());
    for (shape, query) in SHAPES.iter().zip(ctx.queries) {
        let runs = runs_for(&suite.scale, shape, ctx.selected);
        blocks.push(run_block(&suite.http, system, shape, query, ctx.selected, runs).await?);
    }
    Ok(blocks)
}

/// The alone and one-core conditions: once `system` is idle, every shape's block, recorded. Ringtail
/// is profiled over the blocks together (one window per condition, system and repeat); the
/// under-ingest blocks are not profiled, as the stream's work would blur where a query's time goes.
async fn run_blocks(
    suite: &mut Suite,
    system: &RunningSystem,
    ctx: &PointContext<'_>,
    condition: Condition,
    repeat: usize,
) -> Result<()> {
    wait_idle(system.pid(), IDLE_WAIT).await?;
    let session = match system.kind {
        SystemKind::Ringtail => ProfileSession::start(suite, KEY, system.kind, system.pid()),
        _ => None,
    };
    let blocks = timed_blocks(suite, system, ctx).await;
    if let Some(session) = session {
        session.finish(suite).await;
    }
    let cell = Cell { condition, kind: system.kind, point: ctx.point, repeat };
    for (shape, block) in SHAPES.iter().zip(blocks?) {
        record_block(suite, &cell, shape, &block, block.cpu_s);
    }
    Ok(())
}

async fn run_alone(suite: &mut Suite, system: &RunningSystem, ctx: &PointContext<'_>, repeat: usize) -> Result<()> {
    run_blocks(suite, system, ctx, Condition::Alone, repeat).await
}

/// The one-core condition: the system's threads on core 0 and, where there are other cores, the
/// bench's own threads (query client, profiler) off it, so the system has its core to itself
/// apart from other processes of the machine.
async fn run_one_core(suite: &mut Suite, system: &RunningSystem, ctx: &PointContext<'_>, repeat: usize) -> Result<()> {
    let pid = system.pid();
    let own = std::process::id();
    let original = affinity_list(pid).await?;
    let own_original = affinity_list(own).await?;
    let own_elsewhere = cpus_except_first(&own_original);
    set_affinity(pid, "0").await?;
    if let Some(list) = &own_elsewhere {
        set_affinity(own, list).await?;
    }
    let pinned = match threads_allowed_only(pid, "0") {
        Ok(true) => run_blocks(suite, system, ctx, Condition::OneCore, repeat).await,
        Ok(false) => Err(anyhow!("a thread of process {pid} is still allowed on other cores after taskset")),
        Err(e) => Err(e),
    };
    // Restored whatever happened, so the next condition has every core again.
    let restored = set_affinity(pid, &original).await;
    let own_restored = match own_elsewhere {
        Some(_) => set_affinity(own, &own_original).await,
        None => Ok(()),
    };
    pinned?;
    restored?;
    own_restored
}

async fn run_under_ingest(
    suite: &mut Suite,
    system: &RunningSystem,
    ctx: &PointContext<'_>,
    repeat: usize,
) -> Result<()> {
    let pid = system.pid();
    let kind = system.kind;
    wait_idle(pid, IDLE_WAIT).await?;
    let url = system.write_url();
    let mut lanes = ingest_lanes();
    // One untimed pass creates the stream's series, so the burst times appends to existing ones.
    lanes = drive_apart(&url, lanes, Pace::OnePass).await?.lanes;
    let (loadgen_before, server_before) = (cpu(std::process::id())?, cpu(pid)?);
    let burst = drive_apart(&url, lanes, Pace::Saturate { for_: INGEST_BURST }).await?;
    let loadgen_cores = (cpu(std::process::id())? - loadgen_before) / burst.wall.as_secs_f64();
    let server_cores = (cpu(pid)? - server_before) / burst.wall.as_secs_f64();
    lanes = burst.lanes;
    let capacity = burst.acked_samples as f64 / burst.wall.as_secs_f64();
    suite.results.record(KEY, "ingest_capacity_samples_per_s", kind, ctx.point, repeat, capacity);
    suite.results.record(KEY, "ingest_burst_cores", kind, ctx.point, repeat, server_cores);
    suite.results.record(KEY, "ingest_loadgen_cores", kind, ctx.point, repeat, loadgen_cores);
    if !(capacity.is_finite() && capacity > 0.0) {
        bail!("no sample of the ingest burst was accepted");
    }
    let target = capacity * INGEST_SHARE;
    let stop = Arc::new(AtomicBool::new(false));
    let stream = {
        let (url, stop) = (url.clone(), stop.clone());
        tokio::spawn(async move { drive_apart(&url, lanes, Pace::Rate { samples_per_s: target, stop }).await })
    };
    let measured = measure_under_stream(suite, system, ctx, repeat).await;
    stop.store(true, Ordering::Relaxed);
    let stream = stream.await.map_err(|e| anyhow!("the ingest stream task failed: {e}"))??;
    let achieved = stream.acked_samples as f64 / stream.wall.as_secs_f64();
    suite.results.record(KEY, "ingest_achieved_samples_per_s", kind, ctx.point, repeat, achieved);
    if stream.failed_requests > 0 {
        suite.note(
            KEY,
            format!("{} rejected {} stream requests at {} series", kind.name(), stream.failed_requests, ctx.selected),
        );
    }
    if achieved < 0.9 * target {
        suite.note(
            KEY,
            format!(
                "{} took {achieved:.0} samples/s of the {target:.0} sent at {} series (repeat {}): it fell behind \
                 the stream while queried",
                kind.name(),
                ctx.selected,
                repeat + 1
            ),
        );
    }
    measured
}

/// The blocks under the running stream, then the stream alone over as long a window; each block's
/// CPU less the stream's CPU rate times the block's wall time.
async fn measure_under_stream(
    suite: &mut Suite,
    system: &RunningSystem,
    ctx: &PointContext<'_>,
    repeat: usize,
) -> Result<()> {
    let pid = system.pid();
    tokio::time::sleep(STREAM_SETTLE).await;
    let blocks = timed_blocks(suite, system, ctx).await?;
    let queried: Duration = blocks.iter().map(|b| b.wall).sum();
    let window = queried.clamp(MIN_STREAM_WINDOW, MAX_STREAM_WINDOW);
    let cpu_before = cpu(pid)?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let stream_cores = (cpu(pid)? - cpu_before) / started.elapsed().as_secs_f64();
    suite.results.record(KEY, "ingest_cpu_cores", system.kind, ctx.point, repeat, stream_cores);
    let mut clamped = 0;
    let cell = Cell { condition: Condition::UnderIngest, kind: system.kind, point: ctx.point, repeat };
    for (shape, block) in SHAPES.iter().zip(&blocks) {
        let corrected = block.cpu_s - stream_cores * block.wall.as_secs_f64();
        if corrected < 0.0 {
            clamped += 1;
        }
        record_block(suite, &cell, shape, block, corrected.max(0.0));
    }
    if clamped > 0 {
        suite.note(
            KEY,
            format!(
                "{} at {} series (repeat {}): {clamped} block(s) used less CPU than the stream alone over the same \
                 time; their CPU per query under ingest is recorded as 0 (the query cost is within the stream's noise)",
                system.kind.name(),
                ctx.selected,
                repeat + 1
            ),
        );
    }
    Ok(())
}

/// The stream's series, cut into requests: one pre-built request per chunk of series whose
/// samples get a fresh timestamp and value on every send.
struct IngestChunk {
    request: v1::WriteRequest,
    kinds: Vec<(SeriesKind, usize)>,
    last_ts_ms: i64,
}

impl IngestChunk {
    /// Stamps every sample now (strictly after the chunk's previous send) and encodes the request.
    fn next_body(&mut self) -> Vec<u8> {
        let ts = super::now_ms().max(self.last_ts_ms + 1);
        self.last_ts_ms = ts;
        let step = ts / 1000;
        for (series, (kind, seed)) in self.request.timeseries.iter_mut().zip(&self.kinds) {
            for sample in &mut series.samples {
                sample.timestamp = ts;
                sample.value = value_at(*kind, *seed, step);
            }
        }
        encode_body(&self.request)
    }

    fn samples(&self) -> u64 {
        self.request.timeseries.len() as u64
    }
}

/// The chunks of one sending lane; a chunk only ever goes through its lane, so each series is
/// written in time order.
type IngestLane = Vec<IngestChunk>;

/// [`INGEST_SERIES`] series of namespace `bench-ingest` in [`INGEST_LANES`] lanes, the same
/// series at every repeat (their timestamps keep rising: they are stamped when sent).
fn ingest_lanes() -> Vec<IngestLane> {
    let pods: Vec<Pod> = (0..INGEST_SERIES.div_ceil(10))
        .map(|i| {
            let mut pod = Pod::new(i, 1);
            pod.namespace = "bench-ingest".to_string();
            pod
        })
        .collect();
    let mut series = write_series(&pods, 10, "kubernetes-pods");
    series.truncate(INGEST_SERIES);
    let mut lanes: Vec<IngestLane> = (0..INGEST_LANES).map(|_| Vec::new()).collect();
    for (i, chunk) in series.chunks(INGEST_SAMPLES_PER_REQUEST).enumerate() {
        let timeseries = chunk
            .iter()
            .map(|s| v1::TimeSeries {
                labels: s.labels.clone(),
                samples: vec![v1::Sample { value: 0.0, timestamp: 0 }],
                exemplars: vec![],
                histograms: vec![],
            })
            .collect();
        let kinds = chunk.iter().map(|s| (s.kind, s.seed)).collect();
        lanes[i % INGEST_LANES].push(IngestChunk {
            request: v1::WriteRequest { timeseries, metadata: vec![] },
            kinds,
            last_ts_ms: 0,
        });
    }
    lanes.retain(|lane| !lane.is_empty());
    lanes
}

/// How the lanes send.
#[derive(Clone)]
enum Pace {
    /// Every chunk once, as fast as answered.
    OnePass,
    /// As fast as answered, for this long.
    Saturate { for_: Duration },
    /// `samples_per_s` over all lanes, each lane on its own schedule (catching up back to back
    /// when late), until `stop` is set.
    Rate { samples_per_s: f64, stop: Arc<AtomicBool> },
}

/// What a drive sent; the lanes come back for the next drive.
struct Driven {
    lanes: Vec<IngestLane>,
    acked_samples: u64,
    failed_requests: u64,
    wall: Duration,
}

/// [`drive`] on a thread of its own, with its own runtime and HTTP client: encoding the stream's
/// requests then never holds up the suite runtime's tasks that time the queries (the two still
/// share the machine's cores, as any load generator on it does).
async fn drive_apart(url: &str, lanes: Vec<IngestLane>, pace: Pace) -> Result<Driven> {
    let url = url.to_string();
    let thread = std::thread::Builder::new()
        .name("ingest-stream".into())
        .spawn(move || -> Result<Driven> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(STREAM_THREADS)
                .enable_all()
                .build()
                .context("building the ingest stream's runtime")?;
            runtime.block_on(async move {
                let http = reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .context("building the ingest stream's HTTP client")?;
                drive(&http, &url, lanes, pace).await
            })
        })
        .context("starting the ingest stream's thread")?;
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(|e| anyhow!("waiting for the ingest stream's thread: {e}"))?
        .map_err(|_| anyhow!("the ingest stream's thread panicked"))?
}

/// Sends the lanes' chunks to `url` at `pace`, one task per lane. A drive where every request
/// failed is an error (the system is down or refuses the stream).
async fn drive(http: &reqwest::Client, url: &str, lanes: Vec<IngestLane>, pace: Pace) -> Result<Driven> {
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let last_error = Arc::new(Mutex::new(None::<String>));
    let lane_count = lanes.len().max(1);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(lanes.len());
    for mut lane in lanes {
        let (http, url, pace) = (http.clone(), url.to_string(), pace.clone());
        let (acked, failed, last_error) = (acked.clone(), failed.clone(), last_error.clone());
        tasks.push(tokio::spawn(async move {
            let per_request = lane.first().map_or(1, IngestChunk::samples).max(1) as f64;
            for sent in 0u64.. {
                let due = match &pace {
                    Pace::OnePass if sent as usize >= lane.len() => break,
                    Pace::OnePass => None,
                    Pace::Saturate { for_ } if started.elapsed() >= *for_ => break,
                    Pace::Saturate { .. } => None,
                    Pace::Rate { stop, .. } if stop.load(Ordering::Relaxed) => break,
                    Pace::Rate { samples_per_s, .. } => {
                        let lane_rate = samples_per_s / lane_count as f64;
                        Some(started + Duration::from_secs_f64(sent as f64 * per_request / lane_rate))
                    }
                };
                if let Some(due) = due {
                    tokio::time::sleep_until(due.into()).await;
                }
                let index = sent as usize % lane.len();
                let samples = lane[index].samples();
                let body = lane[index].next_body();
                match remote_write(&http, &url, body).await {
                    Ok(()) => {
                        acked.fetch_add(samples, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut slot) = last_error.lock() {
                            *slot = Some(format!("{e:#}"));
                        }
                    }
                }
            }
            lane
        }));
    }
    let mut lanes = Vec::with_capacity(tasks.len());
    for task in tasks {
        lanes.push(task.await.map_err(|e| anyhow!("an ingest lane failed: {e}"))?);
    }
    let wall = started.elapsed();
    let (acked_samples, failed_requests) = (acked.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    if acked_samples == 0 && failed_requests > 0 {
        let error = last_error.lock().ok().and_then(|e| e.clone()).unwrap_or_default();
        bail!("every ingest request to {url} failed; the last: {error}");
    }
    Ok(Driven { lanes, acked_samples, failed_requests, wall })
}

/// The CPUs `pid` may run on, as `taskset -c -p` lists them (`0,1`, `0-1`).
async fn affinity_list(pid: u32) -> Result<String> {
    let output = taskset(&["-c", "-p", &pid.to_string()]).await?;
    parse_affinity_list(&output).ok_or_else(|| anyhow!("unexpected `taskset -c -p {pid}` output: {output}"))
}

/// Pins every thread of `pid` to the CPUs `list`.
async fn set_affinity(pid: u32, list: &str) -> Result<()> {
    taskset(&["-a", "-p", "-c", list, &pid.to_string()]).await.map(drop)
}

async fn taskset(args: &[&str]) -> Result<String> {
    let output = tokio::process::Command::new("taskset")
        .args(args)
        .output()
        .await
        .context("running taskset (util-linux) for the one-core condition")?;
    if !output.status.success() {
        bail!("taskset {}: {} {}", args.join(" "), output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The list after the last `: ` of `pid 12's current affinity list: 0,1`.
fn parse_affinity_list(output: &str) -> Option<String> {
    let line = output.lines().rev().find(|l| !l.trim().is_empty())?;
    let (_, list) = line.rsplit_once(": ")?;
    let list = list.trim();
    (!list.is_empty() && list.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '-')).then(|| list.to_string())
}

/// `list` (a `taskset`/`Cpus_allowed_list` CPU list such as `0-3,6`) without CPU 0, as a comma
/// list; `None` when nothing is left or the list does not parse.
fn cpus_except_first(list: &str) -> Option<String> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (low, high) = part.split_once('-').unwrap_or((part, part));
        let (low, high): (u32, u32) = (low.parse().ok()?, high.parse().ok()?);
        cpus.extend((low..=high).filter(|&cpu| cpu != 0));
    }
    let rest: Vec<String> = cpus.iter().map(u32::to_string).collect();
    (!rest.is_empty()).then(|| rest.join(","))
}

/// Whether every thread of `pid` is allowed exactly on `list` (`Cpus_allowed_list` in
/// `/proc/<pid>/task/*/status`).
fn threads_allowed_only(pid: u32, list: &str) -> Result<bool> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("listing threads of {pid}"))?;
    for task in tasks.flatten() {
        // A thread that ended since the listing has no status; it runs nowhere.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else { continue };
        let allowed = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(str::trim);
        if allowed != Some(list) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::options::{SuiteOptions, WorkloadKey};
    use clap::Parser;

    #[test]
    fn store_holds_ten_times_the_selected_series() {
        for selected in [100, 1_000, 10_000] {
            let pods = store_pods(selected);
            let series = store_series(&pods);
            assert_eq!(series.len(), pods.len() * SERIES_PER_POD);
            let ratio = series.len() as f64 / selected as f64;
            assert!((STORE_FACTOR as f64..STORE_FACTOR as f64 * 1.05).contains(&ratio), "{selected}: {ratio}");
            let in_selected = |name: &str| {
                series
                    .iter()
                    .filter(|s| {
                        s.labels.iter().any(|l| l.name == "namespace" && l.value == SELECTED_NAMESPACE)
                            && s.labels.iter().any(|l| l.name == "__name__" && l.value == name)
                    })
                    .count()
            };
            for metric in ["http_requests_total", "http_request_duration_seconds_bucket", "http_requests_in_flight"] {
                assert_eq!(in_selected(metric), selected, "{metric} at {selected}");
            }
            let namespaces: std::collections::BTreeSet<&str> = pods.iter().map(|p| p.namespace.as_str()).collect();
            assert_eq!(namespaces.len(), 1 + OTHER_NAMESPACES);
        }
    }

    #[test]
    fn store_series_are_distinct() {
        let series = store_series(&store_pods(1_000));
        let distinct: std::collections::HashSet<Vec<(String, String)>> =
            series.iter().map(|s| s.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect()).collect();
        assert_eq!(distinct.len(), series.len());
    }

    #[test]
    fn span_shortens_with_the_store_and_ranges_fit_it() {
        assert_eq!(span_steps(1_000), MAX_SPAN_STEPS);
        assert_eq!(span_steps(10_000), MAX_SPAN_STEPS);
        assert_eq!(span_steps(100_000), MIN_SPAN_STEPS);
        assert_eq!(range_of(1_000), MAX_RANGE);
        let short = range_of(100_000);
        assert!(short >= Duration::from_secs(600) && short < Duration::from_secs(20 * 60), "{short:?}");
        assert_eq!(short.as_secs() % RANGE_STEP.as_secs(), 0);
        assert_eq!(range_steps(1_000), 241);
    }

    #[test]
    fn queries_select_the_namespace_and_expect_their_series() {
        for shape in &SHAPES {
            assert!(shape.expr.contains(&format!("namespace=\"{SELECTED_NAMESPACE}\"")), "{}", shape.expr);
        }
        assert_eq!(expected_series(&SHAPES[0], 1_000), 100);
        assert_eq!(expected_series(&SHAPES[2], 1_000), 1);
        assert_eq!(expected_series(&SHAPES[4], 1_005), 101);
    }

    #[test]
    fn figure_keys_are_unique_and_grouped_by_condition() {
        let scale = SuiteOptions::parse_from(["ringtail-bench"]).scale();
        let info = info(&scale);
        let keys: std::collections::HashSet<&str> = info.figures.iter().map(|f| f.key).collect();
        assert_eq!(keys.len(), info.figures.len());
        assert_eq!(info.figures.iter().filter(|f| f.key.contains("_one_core_")).count(), 18);
        assert!(info.figures.iter().filter(|f| f.key.contains("_alone_")).all(|f| f.table.is_none()));
        assert!(info.figures.iter().filter(|f| f.key.contains("_under_ingest_")).all(|f| f.table.is_some()));
    }

    #[test]
    fn runs_fill_the_block_within_bounds() {
        let scale = SuiteOptions::parse_from(["ringtail-bench"]).scale();
        for &selected in &scale.selective_series {
            for shape in &SHAPES {
                let runs = runs_for(&scale, shape, selected);
                assert!((MIN_RUNS..=MAX_RUNS).contains(&runs), "{selected} {}: {runs}", shape.title);
            }
        }
        assert!(runs_for(&scale, &SHAPES[0], 1_000) > runs_for(&scale, &SHAPES[0], 100_000));
        assert!(estimate_seconds(&scale) > 0.0);
    }

    #[test]
    fn points_default_quick_and_given() {
        let points = |args: &[&str]| SuiteOptions::parse_from(args).scale().selective_series;
        assert_eq!(points(&["ringtail-bench"]), vec![1_000, 10_000, 100_000]);
        assert_eq!(points(&["ringtail-bench", "--quick"]), vec![100, 1_000]);
        assert_eq!(points(&["ringtail-bench", "--selective-series", "5,6"]), vec![5, 6]);
        let only = SuiteOptions::parse_from(["ringtail-bench", "--only", "promql-selective"]).scale();
        assert_eq!(only.workloads, vec![WorkloadKey::PromqlSelective]);
    }

    #[test]
    fn taskset_output_is_parsed() {
        assert_eq!(parse_affinity_list("pid 4242's current affinity list: 0,1\n").as_deref(), Some("0,1"));
        assert_eq!(parse_affinity_list("pid 7's current affinity list: 0-3").as_deref(), Some("0-3"));
        assert_eq!(parse_affinity_list("taskset: failed"), None);
        assert_eq!(parse_affinity_list(""), None);
    }

    #[test]
    fn cpu_lists_lose_cpu_zero() {
        assert_eq!(cpus_except_first("0-1").as_deref(), Some("1"));
        assert_eq!(cpus_except_first("0,2-4").as_deref(), Some("2,3,4"));
        assert_eq!(cpus_except_first("1,3").as_deref(), Some("1,3"));
        assert_eq!(cpus_except_first("0"), None);
        assert_eq!(cpus_except_first("x-1"), None);
    }

    #[test]
    fn own_threads_report_their_affinity() -> Result<()> {
        let list = std::fs::read_to_string("/proc/self/status")?
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:").map(|v| v.trim().to_string()))
            .ok_or_else(|| anyhow!("no Cpus_allowed_list"))?;
        assert!(threads_allowed_only(std::process::id(), &list)?);
        assert!(!threads_allowed_only(std::process::id(), "999")?);
        Ok(())
    }

    #[test]
    fn ingest_chunks_stamp_in_order() {
        let mut lanes = ingest_lanes();
        let total: u64 = lanes.iter().flatten().map(IngestChunk::samples).sum();
        assert_eq!(total, INGEST_SERIES as u64);
        let chunk = &mut lanes[0][0];
        let _ = chunk.next_body();
        let first = chunk.last_ts_ms;
        let body = chunk.next_body();
        assert!(chunk.last_ts_ms > first);
        assert!(!body.is_empty());
        assert!(chunk.request.timeseries.iter().all(|s| s.samples[0].timestamp == chunk.last_ts_ms));
    }
}
