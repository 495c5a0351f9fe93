//! Workload (b), scrape ingest: the bench serves N exporter pages itself (one pod of the
//! synthetic fleet per target, 100 series each: gauges, request counters, a latency histogram),
//! and Ringtail, Prometheus and VictoriaMetrics (its own `-promscrape.config`) each scrape the same
//! N targets with the same static scrape configuration, one system at a time. After every target
//! has been scraped twice (series created), CPU and pages served are read over a fixed window:
//! CPU per sample counts only what the scraper spent on samples the exporter actually served.

use super::repeats_text;
use crate::suite::exporter::{Exporter, PageRenderer};
use crate::suite::fleet::{pod_series, render_page, Pod};
use crate::suite::measure::{anon_rss_mib, cpu, peak_mib, rss_mib};
use crate::suite::options::Scale;
use crate::suite::results::{charted, tabulated, WorkloadInfo};
use crate::suite::systems::{RunningSystem, ScrapeJob, SystemKind, SystemSetup};
use crate::suite::Suite;
use anyhow::{anyhow, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const KEY: &str = "scrape";

fn run_estimate(scale: &Scale) -> f64 {
    // Start, two warm-up scrapes, the window, stop: 9–10 s for Ringtail and VictoriaMetrics and
    // 13–14 s for Prometheus in the default run of 2026-12-01 on the 2-core machine.
    0.7 + 2.5 * scale.scrape_interval.as_secs_f64() + scale.scrape_window.as_secs_f64()
}

pub fn estimate_seconds(scale: &Scale) -> f64 {
    let count = scale.scrape_targets.len();
    (0..count).map(|i| 1.0 + scale.repeats_at(i, count) as f64 * 3.0 * run_estimate(scale)).sum()
}

pub fn info(scale: &Scale) -> WorkloadInfo {
    WorkloadInfo {
        key: KEY,
        title: "(b) Scrape ingest",
        description: format!(
            "The bench serves N `/metrics` pages on loopback (one listener per target on its own 127.1.x.y \
             address, so each target is a distinct `instance`), each a pod with {} series (labels `namespace`, \
             `pod`, `container`, `node`, `app` on the page; `job` and `instance` added by the scraper). Each system \
             scrapes all N targets every {}s with the same static scrape configuration (VictoriaMetrics through \
             its own `-promscrape.config`). After two scrapes of every target, CPU and the pages served are \
             counted over a {}s window; samples = pages served × series per page (the scrapers' own `up`, \
             `scrape_*` series are not counted).",
            scale.scrape_series_per_target,
            scale.scrape_interval.as_secs_f64(),
            scale.scrape_window.as_secs_f64()
        ),
        parameters: vec![
            format!("targets: {:?} × {} series", scale.scrape_targets, scale.scrape_series_per_target),
            format!(
                "scrape interval {}s, window {}s",
                scale.scrape_interval.as_secs_f64(),
                scale.scrape_window.as_secs_f64()
            ),
            repeats_text(scale),
        ],
        point_label: "scrape targets",
        points: scale.scrape_targets.iter().map(|&n| n as f64).collect(),
        log_x: true,
        systems: SystemKind::ALL.to_vec(),
        figures: vec![
            charted("samples_per_s", "samples ingested", "samples/s", false),
            charted("cpu_s_per_million", "CPU per million scraped samples", "CPU-s", true),
            charted("cpu_share", "CPU used", "cores", true),
            charted("peak_rss_mib", "peak RSS", "MiB", true),
            tabulated("steady_rss_mib", "RSS at the end of the window", "MiB", true),
            charted("rss_bytes_per_series", "RSS growth per active series", "bytes", true),
            charted("anon_bytes_per_series", "anonymous memory (heap) growth per active series", "bytes", true),
        ],
        notes: vec![],
    }
}

pub async fn run(suite: &mut Suite) -> Result<()> {
    let scale = suite.scale.clone();
    suite.results.add_workload(info(&scale));
    let count = scale.scrape_targets.len();
    for (index, &targets) in scale.scrape_targets.iter().enumerate() {
        let pods: Arc<Vec<Pod>> = Arc::new((0..targets).map(|i| Pod::new(i, 0)).collect());
        let shapes = Arc::new(pod_series(scale.scrape_series_per_target));
        let started = Instant::now();
        let per_target = scale.scrape_series_per_target;
        let render: PageRenderer = Arc::new(move |target, page: &mut String| {
            // Values move once a second, so every scrape sees new counter values.
            let step = started.elapsed().as_secs() as i64;
            render_page(&pods[target], &shapes, target * per_target, step, page);
        });
        let exporter = Exporter::start(targets, render).await?;
        suite.step_done(1.0);
        for repeat in 0..scale.repeats_at(index, count) {
            for kind in SystemKind::order_for_repeat(repeat) {
                suite.status(format!("{KEY}: {} scraping {targets} targets, repeat {}", kind.name(), repeat + 1));
                if let Err(e) = measure_run(suite, kind, &exporter, targets, repeat).await {
                    suite.note(KEY, format!("{} at {targets} targets failed: {e:#}", kind.name()));
                }
                suite.step_done(run_estimate(&scale));
            }
        }
    }
    Ok(())
}

async fn measure_run(
    suite: &mut Suite,
    kind: SystemKind,
    exporter: &Exporter,
    targets: usize,
    repeat: usize,
) -> Result<()> {
    let scale = suite.scale.clone();
    let setup = SystemSetup {
        scrape_jobs: vec![ScrapeJob {
            job: "kubernetes-pods".into(),
            interval: scale.scrape_interval,
            targets: exporter.targets.clone(),
        }],
        ..SystemSetup::default()
    };
    let min_at_start = exporter.min_hits();
    let system = RunningSystem::start(kind, &setup, &suite.http).await?;
    let pid = system.pid();
    // Warm-up: every target scraped twice, so all series exist before the window.
    let deadline = Instant::now() + Duration::from_secs(30) + scale.scrape_interval * 4;
    while exporter.min_hits() < min_at_start + 2 {
        if Instant::now() > deadline {
            return Err(anyhow!(
                "{} did not scrape every target twice within {:?} (fewest pages served to one target: {})",
                kind.name(),
                deadline.elapsed(),
                exporter.min_hits() - min_at_start
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu_before = cpu(pid)?;
    let hits_before = exporter.total_hits();
    let window_start = Instant::now();
    tokio::time::sleep(scale.scrape_window).await;
    let cpu_used = cpu(pid)? - cpu_before;
    let hits = exporter.total_hits() - hits_before;
    let window = window_start.elapsed().as_secs_f64();
    let steady = rss_mib(pid);
    let anon = anon_rss_mib(pid);
    let samples = (hits * scale.scrape_series_per_target as u64) as f64;
    let active_series = (targets * scale.scrape_series_per_target) as f64;
    let point = targets as f64;
    let record = |suite: &mut Suite, figure, value| suite.results.record(KEY, figure, kind, point, repeat, value);
    record(suite, "samples_per_s", samples / window);
    record(suite, "cpu_s_per_million", cpu_used / samples * 1e6);
    record(suite, "cpu_share", cpu_used / window);
    record(suite, "peak_rss_mib", peak_mib(pid));
    record(suite, "steady_rss_mib", steady);
    record(suite, "rss_bytes_per_series", (steady - system.idle_rss_mib) * 1048576.0 / active_series);
    record(suite, "anon_bytes_per_series", (anon - system.idle_anon_mib) * 1048576.0 / active_series);
    Ok(())
}
