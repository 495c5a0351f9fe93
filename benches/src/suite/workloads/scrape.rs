//! Workload (b), scrape ingest: the bench serves N exporter pages itself (one pod of the
//! synthetic fleet per target: gauges, request counters, latency histograms), pre-rendered once
//! and served from memory, and Ringtail, Prometheus and VictoriaMetrics (its own
//! `-promscrape.config`) each scrape the same N targets with the same static scrape
//! configuration, one system at a time. After every target has been scraped twice (series
//! created), CPU and pages served are read over a fixed window: CPU per sample counts only what
//! the scraper spent on samples the exporter actually served; the bench's own CPU (the exporter
//! side) is read over the same window and reported apart.
//!
//! Two tables: the scaling points (N targets × 100 series at a short interval, `--scrape-targets`)
//! and the shapes (`--scrape-shapes`, `TARGETSxSERIES@INTERVAL`: by default the Kubernetes shapes
//! 100 × 1000 and 1000 × 200 every 15 s, and 200 × 1000 and 400 × 1000 every 1 s, offering 200k
//! and 400k samples/s), each shape measured over whole scrape intervals, at least four.

use super::repeats_text;
use crate::suite::exporter::{Exporter, StaticPage, StaticPages, MAX_TARGETS};
use crate::suite::fleet::{pod_series, render_page, Pod};
use crate::suite::measure::{anon_rss_mib, cpu, own_cpu, peak_mib, rss_mib};
use crate::suite::options::Scale;
use crate::suite::profile::ProfileSession;
use crate::suite::results::{charted, tabulated, FigureSpec, WorkloadInfo};
use crate::suite::systems::{RunningSystem, ScrapeJob, SystemKind, SystemSetup};
use crate::suite::Suite;
use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const KEY: &str = "scrape";
/// The shapes' table, a report section of its own (its points are offered samples/s).
pub const SHAPES_KEY: &str = "scrape-shapes";

/// Versions of every page, served in turn (one per scrape), so values move between scrapes:
/// gauges wander and counters grow, restarting every `PAGE_VERSIONS`-th scrape (a counter reset,
/// which the scrapers handle like any other sample).
pub const PAGE_VERSIONS: usize = 3;
/// The most series one shape may expose in total: its pages are held in memory,
/// [`PAGE_VERSIONS`] times over (about 170 bytes a series plain, a tenth of that gzip), so 2M
/// series take about 1.1 GiB of the bench's memory, beside the systems' own.
pub const MAX_SHAPE_SERIES: usize = 2_000_000;
/// After the warm-up scrapes, a system keeps up when it is served at least this share of the
/// offered samples over one interval (at least 1 s).
const KEEP_UP_SHARE: f64 = 0.8;
/// The longest interval probed for keeping up; at longer ones, a scraper has had a whole interval
/// to absorb what it created and the second warm-up round already shows it keeping up.
const KEEP_UP_PROBE: Duration = Duration::from_secs(5);
/// The shortest scrape interval a shape may ask for.
pub const MIN_SHAPE_INTERVAL: Duration = Duration::from_millis(100);

/// One scrape shape: `targets` pages of `series_per_target` series each, scraped every
/// `interval`. Written `TARGETSxSERIES@INTERVAL`, e.g. `1000x200@15s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ScrapeShape {
    pub targets: usize,
    pub series_per_target: usize,
    pub interval: Duration,
}

const fn shape(targets: usize, series_per_target: usize, interval_s: u64) -> ScrapeShape {
    ScrapeShape { targets, series_per_target, interval: Duration::from_secs(interval_s) }
}

/// The default shapes: the two Kubernetes shapes of issue 20 at the common 15 s interval, then
/// 200k and 400k samples/s offered (200 and 400 targets × 1000 series every second) for the
/// largest rate; all three systems kept up with 400k on the 2-core machine (2026-12-06).
pub const DEFAULT_SHAPES: [ScrapeShape; 4] =
    [shape(100, 1000, 15), shape(1000, 200, 15), shape(200, 1000, 1), shape(400, 1000, 1)];
/// `--quick`'s shapes: small, short intervals.
pub const QUICK_SHAPES: [ScrapeShape; 2] = [shape(20, 200, 2), shape(10, 1000, 1)];

impl ScrapeShape {
    /// Samples per second the targets offer when every one is scraped once per interval.
    pub fn offered_samples_per_s(&self) -> f64 {
        (self.targets * self.series_per_target) as f64 / self.interval.as_secs_f64()
    }

    /// Series over all targets.
    pub fn active_series(&self) -> usize {
        self.targets * self.series_per_target
    }

    /// `100 targets × 1000 series every 15s`.
    pub fn describe(&self) -> String {
        format!(
            "{} targets × {} series every {}",
            self.targets,
            self.series_per_target,
            humantime::format_duration(self.interval)
        )
    }

    /// The measured window: whole scrape intervals, at least one and at least `at_least`, so
    /// every target is scraped the same number of times (± one at the edges) inside it.
    pub fn window(&self, at_least: Duration) -> Duration {
        let intervals = (at_least.as_secs_f64() / self.interval.as_secs_f64()).ceil().max(1.0);
        self.interval.mul_f64(intervals)
    }
}

impl std::str::FromStr for ScrapeShape {
    type Err = String;

    fn from_str(text: &str) -> Result<ScrapeShape, String> {
        let usage = || format!("scrape shape `{text}`: expected TARGETSxSERIES@INTERVAL, e.g. 1000x200@15s");
        let (sizes, interval) = text.split_once('@').ok_or_else(usage)?;
        let (targets, series) = sizes.split_once(['x', 'X']).ok_or_else(usage)?;
        let targets: usize = targets.trim().parse().map_err(|_| usage())?;
        let series_per_target: usize = series.trim().parse().map_err(|_| usage())?;
        let interval = humantime::parse_duration(interval.trim()).map_err(|e| format!("{}: {e}", usage()))?;
        if targets == 0 || series_per_target == 0 {
            return Err(format!("scrape shape `{text}`: targets and series must be at least 1"));
        }
        if targets > MAX_TARGETS {
            return Err(format!("scrape shape `{text}`: at most {MAX_TARGETS} targets (one loopback address each)"));
        }
        if targets.saturating_mul(series_per_target) > MAX_SHAPE_SERIES {
            return Err(format!(
                "scrape shape `{text}`: {} series in all; at most {MAX_SHAPE_SERIES} (the pages are held in memory)",
                targets.saturating_mul(series_per_target)
            ));
        }
        if interval < MIN_SHAPE_INTERVAL {
            return Err(format!("scrape shape `{text}`: the interval must be at least {MIN_SHAPE_INTERVAL:?}"));
        }
        Ok(ScrapeShape { targets, series_per_target, interval })
    }
}

/// Start, readiness and the creation of the shape's series (a few µs each), two warm-up scrapes
/// of every target (the scrapers spread targets over the interval: up to two intervals), a probe
/// that the system keeps up, the window, stop. The main points took 9–10 s for Ringtail and VictoriaMetrics and 13–14 s for
/// Prometheus in the default run of 2026-12-01 on the 2-core machine.
fn run_estimate(shape: &ScrapeShape, window: Duration) -> f64 {
    let probe = shape.interval.max(Duration::from_secs(1));
    let probe = if probe <= KEEP_UP_PROBE { probe.as_secs_f64() } else { 0.0 };
    1.5 + 2.0 * shape.interval.as_secs_f64() + probe + window.as_secs_f64() + shape.active_series() as f64 * 5e-6
}

/// Rendering and compressing the pages of a shape once (about 1 µs a series and version).
fn pages_estimate(shape: &ScrapeShape) -> f64 {
    0.5 + (shape.active_series() * PAGE_VERSIONS) as f64 * 1e-6
}

fn main_shape(scale: &Scale, targets: usize) -> ScrapeShape {
    ScrapeShape { targets, series_per_target: scale.scrape_series_per_target, interval: scale.scrape_interval }
}

/// Whole intervals here too, so a scraper on time is never read as having fallen behind.
fn main_window(scale: &Scale) -> Duration {
    main_shape(scale, 1).window(scale.scrape_window)
}

/// Scrape intervals a shape's window spans at least: one 15 s interval holds only 15–50 ticks of a
/// scraper's CPU, and two runs of the same shape read 0.50 and 0.71 of Prometheus's (2026-12-06).
const SHAPE_MIN_INTERVALS: u32 = 4;

fn shape_window(scale: &Scale, shape: &ScrapeShape) -> Duration {
    shape.window(scale.scrape_window.max(shape.interval * SHAPE_MIN_INTERVALS))
}

fn point_estimate(shape: &ScrapeShape, window: Duration, repeats: usize) -> f64 {
    pages_estimate(shape) + repeats as f64 * 3.0 * run_estimate(shape, window)
}

pub fn estimate_seconds(scale: &Scale) -> f64 {
    let count = scale.scrape_targets.len();
    let main: f64 = scale
        .scrape_targets
        .iter()
        .enumerate()
        .map(|(i, &targets)| {
            point_estimate(&main_shape(scale, targets), main_window(scale), scale.repeats_at(i, count))
        })
        .sum();
    let shapes = distinct_shapes(&scale.scrape_shapes);
    let count = shapes.len();
    let shaped: f64 = shapes
        .iter()
        .enumerate()
        .map(|(i, shape)| point_estimate(shape, shape_window(scale, shape), scale.repeats_at(i, count)))
        .sum();
    main + shaped
}

/// The shapes with distinct offered rates (a shape's rate is its point in the report), in order.
fn distinct_shapes(shapes: &[ScrapeShape]) -> Vec<ScrapeShape> {
    let mut out: Vec<ScrapeShape> = Vec::with_capacity(shapes.len());
    for shape in shapes {
        if !out.iter().any(|s| s.offered_samples_per_s() == shape.offered_samples_per_s()) {
            out.push(*shape);
        }
    }
    out
}

fn figures() -> Vec<FigureSpec> {
    vec![
        charted("samples_per_s", "samples ingested", "samples/s", false),
        charted("cpu_s_per_million", "CPU per million scraped samples", "CPU-s", true),
        charted("cpu_share", "CPU used", "cores", true),
        tabulated("bench_cpu_share", "the bench's own CPU (exporter side, not counted above)", "cores", true),
        tabulated("bench_cpu_s_per_million", "the bench's own CPU per million samples served", "CPU-s", true),
        charted("peak_rss_mib", "peak RSS", "MiB", true),
        tabulated("steady_rss_mib", "RSS at the end of the window", "MiB", true),
        charted("rss_bytes_per_series", "RSS growth per active series", "bytes", true),
        charted("anon_bytes_per_series", "anonymous memory (heap) growth per active series", "bytes", true),
    ]
}

fn serving_text() -> String {
    format!(
        "Every page is rendered once before the runs, {PAGE_VERSIONS} versions per target served in turn (values \
         move every scrape; counters start over every {PAGE_VERSIONS} scrapes), and served from memory, gzip-compressed \
         when the scraper asks (all three do), so the target side is cheap; the bench's own CPU over the window is \
         reported apart."
    )
}

pub fn info(scale: &Scale) -> WorkloadInfo {
    WorkloadInfo {
        key: KEY,
        title: "(b) Scrape ingest",
        description: format!(
            "The bench serves N `/metrics` pages on loopback (one listener per target on its own 127.1.x.y \
             address, so each target is a distinct `instance`), each a pod with {} series (labels `namespace`, \
             `pod`, `container`, `node`, `app` on the page; `job` and `instance` added by the scraper). {} Each \
             system scrapes all N targets every {}s with the same static scrape configuration (VictoriaMetrics \
             through its own `-promscrape.config`). After two scrapes of every target, and once the system is \
             served at least {:.0} % of the offered samples over an interval (checked at intervals up to {}s; a \
             system that never is within the warm-up limit is measured as it is, with a note), CPU and the pages served \
             are counted over a {}s window (whole intervals); samples = pages served × series per page (the scrapers' own `up`, \
             `scrape_*` series are not counted).",
            scale.scrape_series_per_target,
            serving_text(),
            scale.scrape_interval.as_secs_f64(),
            KEEP_UP_SHARE * 100.0,
            KEEP_UP_PROBE.as_secs(),
            main_window(scale).as_secs_f64()
        ),
        parameters: vec![
            format!("targets: {:?} × {} series", scale.scrape_targets, scale.scrape_series_per_target),
            format!(
                "scrape interval {}s, window {}s",
                scale.scrape_interval.as_secs_f64(),
                main_window(scale).as_secs_f64()
            ),
            repeats_text(scale),
        ],
        point_label: "scrape targets",
        points: scale.scrape_targets.iter().map(|&n| n as f64).collect(),
        log_x: true,
        systems: SystemKind::ALL.to_vec(),
        figures: figures(),
        notes: vec![],
    }
}

pub fn shapes_info(scale: &Scale) -> WorkloadInfo {
    let shapes = distinct_shapes(&scale.scrape_shapes);
    let mut parameters: Vec<String> = shapes
        .iter()
        .map(|shape| {
            format!(
                "{} samples/s offered: {}, measured over {}",
                crate::suite::report::format_value(shape.offered_samples_per_s()),
                shape.describe(),
                humantime::format_duration(shape_window(scale, shape))
            )
        })
        .collect();
    parameters.push(repeats_text(scale));
    WorkloadInfo {
        key: SHAPES_KEY,
        title: "(b) Scrape ingest at Kubernetes shapes and at the largest rate",
        description: format!(
            "As (b) above, at whole shapes (`--scrape-shapes TARGETSxSERIES@INTERVAL`): each point is one shape, \
             named by the samples per second its targets offer. {} After the same warm-up (two scrapes of \
             every target, then keeping up) the window runs over whole scrape intervals (at least {SHAPE_MIN_INTERVALS} and at least {}s), so each target is scraped the same \
             number of times in it; \"samples ingested\" below the offered rate means the scraper fell behind.",
            serving_text(),
            scale.scrape_window.as_secs_f64()
        ),
        parameters,
        point_label: "offered samples/s",
        points: shapes.iter().map(ScrapeShape::offered_samples_per_s).collect(),
        log_x: true,
        systems: SystemKind::ALL.to_vec(),
        figures: figures(),
        notes: vec![],
    }
}

/// Renders every target's [`PAGE_VERSIONS`] pages for `shape` and compresses them, on blocking
/// threads (one per core).
async fn static_pages(shape: ScrapeShape) -> Result<StaticPages> {
    tokio::task::spawn_blocking(move || -> Result<StaticPages> {
        let shapes = pod_series(shape.series_per_target);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(shape.targets).max(1);
        let per_thread = shape.targets.div_ceil(threads);
        let chunks: Vec<Result<Vec<Vec<StaticPage>>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let shapes = &shapes;
                    scope.spawn(move || {
                        let mut page = String::new();
                        let range = t * per_thread..((t + 1) * per_thread).min(shape.targets);
                        range
                            .map(|target| {
                                let pod = Pod::new(target, 0);
                                (0..PAGE_VERSIONS)
                                    .map(|version| {
                                        let seed = target * shape.series_per_target;
                                        render_page(&pod, shapes, seed, version as i64 + 1, &mut page);
                                        StaticPage::new(page.clone())
                                    })
                                    .collect::<Result<Vec<_>>>()
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a page-rendering thread panicked"))))
                .collect()
        });
        let mut pages = Vec::with_capacity(shape.targets);
        for chunk in chunks {
            pages.extend(chunk?);
        }
        Ok(Arc::new(pages))
    })
    .await
    .context("rendering the exporter pages")?
}

/// One measured table: which report section it records into and how its points are measured.
#[derive(Clone, Copy)]
struct Table {
    key: &'static str,
    shape: ScrapeShape,
    window: Duration,
    point: f64,
}

pub async fn run(suite: &mut Suite) -> Result<()> {
    let scale = suite.scale.clone();
    suite.results.add_workload(info(&scale));
    let shapes = distinct_shapes(&scale.scrape_shapes);
    if !shapes.is_empty() {
        suite.results.add_workload(shapes_info(&scale));
    }
    if shapes.len() < scale.scrape_shapes.len() {
        suite.note(SHAPES_KEY, "shapes offering the same samples/s as an earlier one were left out".into());
    }
    let count = scale.scrape_targets.len();
    let mut tables: Vec<(Table, usize)> = scale
        .scrape_targets
        .iter()
        .enumerate()
        .map(|(i, &targets)| {
            let shape = main_shape(&scale, targets);
            (Table { key: KEY, shape, window: main_window(&scale), point: targets as f64 }, scale.repeats_at(i, count))
        })
        .collect();
    let count = shapes.len();
    tables.extend(shapes.iter().enumerate().map(|(i, shape)| {
        let table = Table {
            key: SHAPES_KEY,
            shape: *shape,
            window: shape_window(&scale, shape),
            point: shape.offered_samples_per_s(),
        };
        (table, scale.repeats_at(i, count))
    }));
    for (table, repeats) in tables {
        if let Err(e) = run_point(suite, table, repeats).await {
            suite.note(table.key, format!("{} failed: {e:#}", table.shape.describe()));
        }
    }
    Ok(())
}

async fn run_point(suite: &mut Suite, table: Table, repeats: usize) -> Result<()> {
    let shape = table.shape;
    suite.status(format!("{}: rendering {} pages of {} series", table.key, shape.targets, shape.series_per_target));
    let pages = static_pages(shape).await;
    suite.step_done(pages_estimate(&shape));
    let exporter = Exporter::start_static(pages?).await?;
    for repeat in 0..repeats {
        for kind in SystemKind::order_for_repeat(repeat) {
            suite.status(format!(
                "{}: {} scraping {}, repeat {}",
                table.key,
                kind.name(),
                shape.describe(),
                repeat + 1
            ));
            if let Err(e) = measure_run(suite, table, kind, &exporter, repeat).await {
                suite.note(table.key, format!("{} at {} failed: {e:#}", kind.name(), shape.describe()));
            }
            suite.step_done(run_estimate(&shape, table.window));
        }
    }
    Ok(())
}

async fn measure_run(
    suite: &mut Suite,
    table: Table,
    kind: SystemKind,
    exporter: &Exporter,
    repeat: usize,
) -> Result<()> {
    let shape = table.shape;
    let setup = SystemSetup {
        scrape_jobs: vec![ScrapeJob {
            job: "kubernetes-pods".into(),
            interval: shape.interval,
            targets: exporter.targets.clone(),
        }],
        ..SystemSetup::default()
    };
    let min_at_start = exporter.min_hits();
    let system = RunningSystem::start(kind, &setup, &suite.http).await?;
    let pid = system.pid();
    // Warm-up: every target scraped twice, so all series exist before the window.
    let warm_up_started = Instant::now();
    let limit = Duration::from_secs(30) + shape.interval * 4;
    while exporter.min_hits() < min_at_start + 2 {
        if warm_up_started.elapsed() > limit {
            return Err(anyhow!(
                "{} did not scrape every target twice within {:?} (fewest pages served to one target: {})",
                kind.name(),
                limit,
                exporter.min_hits() - min_at_start
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then until it keeps up: a scraper still creating the series it has just seen (hundreds of
    // thousands at the largest shapes) skips or delays scrapes for a while, and the window is to
    // measure the steady state. One that never keeps up within the limit is measured as it is.
    // At intervals longer than the probe, the second warm-up round already showed it.
    let probe = shape.interval.max(Duration::from_secs(1));
    let mut keeping_up = probe > KEEP_UP_PROBE;
    while !keeping_up {
        let before = exporter.total_hits();
        tokio::time::sleep(probe).await;
        let served = ((exporter.total_hits() - before) * shape.series_per_target as u64) as f64;
        keeping_up = served >= KEEP_UP_SHARE * shape.offered_samples_per_s() * probe.as_secs_f64();
        if !keeping_up && warm_up_started.elapsed() > limit {
            suite.note(
                table.key,
                format!(
                    "{} at {} (repeat {}) never scraped {:.0} % of the offered samples in {:?} during the warm-up",
                    kind.name(),
                    shape.describe(),
                    repeat + 1,
                    KEEP_UP_SHARE * 100.0,
                    probe
                ),
            );
            break;
        }
    }
    let profile = if kind == SystemKind::Ringtail { ProfileSession::start(suite, table.key, kind, pid) } else { None };
    let cpu_before = cpu(pid)?;
    let bench_before = own_cpu()?;
    let hits_before = exporter.total_hits();
    let window_start = Instant::now();
    tokio::time::sleep(table.window).await;
    let cpu_used = cpu(pid)? - cpu_before;
    let bench_used = own_cpu()? - bench_before;
    let hits = exporter.total_hits() - hits_before;
    let window = window_start.elapsed().as_secs_f64();
    if let Some(profile) = profile {
        profile.finish(suite).await;
    }
    let steady = rss_mib(pid);
    let anon = anon_rss_mib(pid);
    let samples = (hits * shape.series_per_target as u64) as f64;
    let active_series = shape.active_series() as f64;
    let (key, point) = (table.key, table.point);
    let record = |suite: &mut Suite, figure, value| suite.results.record(key, figure, kind, point, repeat, value);
    record(suite, "samples_per_s", samples / window);
    record(suite, "cpu_s_per_million", cpu_used / samples * 1e6);
    record(suite, "cpu_share", cpu_used / window);
    record(suite, "bench_cpu_share", bench_used / window);
    record(suite, "bench_cpu_s_per_million", bench_used / samples * 1e6);
    record(suite, "peak_rss_mib", peak_mib(pid));
    record(suite, "steady_rss_mib", steady);
    record(suite, "rss_bytes_per_series", (steady - system.idle_rss_mib) * 1048576.0 / active_series);
    record(suite, "anon_bytes_per_series", (anon - system.idle_anon_mib) * 1048576.0 / active_series);
    let offered = shape.offered_samples_per_s() * window;
    if samples < 0.9 * offered {
        suite.note(
            key,
            format!(
                "{} at {} (repeat {}) ingested {:.0} % of the offered samples: it fell behind",
                kind.name(),
                shape.describe(),
                repeat + 1,
                100.0 * samples / offered
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_refuse_what_does_not_fit() {
        let shape: ScrapeShape = "1000x200@15s".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shape, ScrapeShape { targets: 1000, series_per_target: 200, interval: Duration::from_secs(15) });
        assert_eq!(shape.active_series(), 200_000);
        assert!((shape.offered_samples_per_s() - 13_333.33).abs() < 0.01);
        let fast: ScrapeShape = "200X1000@500ms".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fast.offered_samples_per_s(), 400_000.0);
        for bad in ["1000x200", "x200@15s", "0x10@1s", "10x0@1s", "10x10@5ms", "70000x1@1s", "2000x2000@1s", "1x1@soon"]
        {
            assert!(bad.parse::<ScrapeShape>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn windows_are_whole_intervals() {
        let shape = |secs| ScrapeShape { targets: 1, series_per_target: 1, interval: Duration::from_secs(secs) };
        assert_eq!(shape(15).window(Duration::from_secs(5)), Duration::from_secs(15));
        assert_eq!(shape(1).window(Duration::from_secs(5)), Duration::from_secs(5));
        assert_eq!(shape(2).window(Duration::from_secs(5)), Duration::from_secs(6));
        assert_eq!(shape(15).window(Duration::ZERO), Duration::from_secs(15));
    }

    #[test]
    fn shapes_with_one_rate_are_kept_once() {
        let shapes: Vec<ScrapeShape> =
            ["100x1000@15s", "1000x100@15s", "200x1000@1s"].iter().filter_map(|s| s.parse().ok()).collect();
        let distinct = distinct_shapes(&shapes);
        assert_eq!(distinct.len(), 2);
        assert_eq!(distinct[1].targets, 200);
    }

    #[tokio::test]
    async fn pages_hold_every_series_in_each_version() -> Result<()> {
        let shape = ScrapeShape { targets: 3, series_per_target: 25, interval: Duration::from_secs(1) };
        let pages = static_pages(shape).await?;
        assert_eq!(pages.len(), 3);
        assert!(pages.iter().all(|versions| versions.len() == PAGE_VERSIONS));
        let exporter = Exporter::start_static(pages).await?;
        let client = reqwest::Client::builder().no_proxy().build()?;
        let url = format!("http://{}/metrics", exporter.targets[1]);
        let first = client.get(&url).send().await?.text().await?;
        let second = client.get(&url).send().await?.text().await?;
        let lines = |page: &str| page.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!((lines(&first), lines(&second)), (25, 25));
        assert_ne!(first, second, "values move between scrapes");
        Ok(())
    }
}
