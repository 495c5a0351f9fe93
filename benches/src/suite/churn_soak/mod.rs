//! The churn soak behind the `churn_soak` program: Ringtail, Prometheus 2.42 and VictoriaMetrics
//! 1.79 run side by side with the same time retention (VictoriaMetrics at its 1-day minimum) and
//! receive the same live Remote-Write stream — pods of the suite's synthetic fleet, every pod
//! renamed each generation as a rolling deploy does, one sample per series per scrape interval
//! timestamped with the send time — for many times the retention, while a prober reads each
//! system's RSS, data-directory bytes, CPU time and active series every few seconds.
//!
//! The question it answers is whether memory and disk plateau when series keep dying: Ringtail
//! should free dead series; Prometheus frees them only at head compaction (every 2 h) and
//! VictoriaMetrics per day, so over a short soak their curves are reported as they are.
//!
//! Modules: `options` (flags and the resolved plan), `stream` (the generations and sending),
//! `probe` (one reading of one system) and `report` (CSV, charts, the Markdown summary with the
//! plateau check). Nothing here asserts a speed or a size: it reports.

mod options;
mod probe;
mod report;
mod stream;

pub use options::{ChurnSoakOptions, SoakPlan};

use crate::suite::machine;
use crate::suite::systems::{RunningSystem, SystemKind, SystemSetup};
use anyhow::{anyhow, Context, Result};
use probe::{Probe, ProbeTarget};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs the soak and writes its result folder; returns the folder. Ctrl-C ends the stream early
/// and still writes what was measured.
pub async fn run(options: ChurnSoakOptions) -> Result<PathBuf> {
    let plan = options.plan().map_err(|e| anyhow!(e))?;
    let out = match &options.out {
        Some(dir) => dir.clone(),
        None => PathBuf::from(format!("benches/results/{}-churn-soak", chrono::Utc::now().format("%Y-%m-%d"))),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating the result folder {}", out.display()))?;
    eprintln!(
        "churn soak: {} pods × {} series, a generation every {:?}, a sample every {:?}, retention {:?}, \
         for {:?} ({:.1} retentions, {} generations, {} series created)",
        plan.pods,
        plan.series_per_pod,
        plan.generation_every,
        plan.scrape_interval,
        plan.retention,
        plan.duration,
        plan.retentions_spanned(),
        plan.generations(),
        plan.generations() * plan.active_series() as u64,
    );
    let machine = machine::describe().await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build()
        .context("building the HTTP client")?;
    let setup = SystemSetup {
        retention: Some(plan.retention),
        ringtail_storage_size_bytes: Some(plan.ringtail_storage_size_bytes),
        ..SystemSetup::default()
    };
    let mut systems = Vec::new();
    for kind in SystemKind::ALL {
        eprintln!("starting {}", kind.name());
        systems.push(RunningSystem::start(kind, &setup, &http).await?);
    }
    let started_utc = chrono::Utc::now();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let write_urls: Vec<(SystemKind, String)> = systems.iter().map(|s| (s.kind, s.write_url())).collect();
    let sender = tokio::spawn(stream::send(plan.clone(), write_urls, http.clone(), started, stop.clone()));
    let targets: Vec<ProbeTarget> = systems.iter().map(ProbeTarget::of).collect();
    let prober = tokio::spawn(probe_until_stopped(plan.clone(), targets, http.clone(), started, stop.clone()));
    let interrupted = tokio::select! {
        _ = tokio::time::sleep(plan.duration) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    stop.store(true, Ordering::Relaxed);
    let stats = sender.await.context("the sending task failed")?;
    let probes = prober.await.context("the probing task failed")?;
    let elapsed = started.elapsed();
    let log_tails: Vec<(SystemKind, String)> = systems.iter().map(|s| (s.kind, s.log_tail())).collect();
    // Dropping each system kills and reaps exactly the process it started.
    drop(systems);
    let run = report::RunInfo {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_utc: started_utc.to_rfc3339(),
        elapsed,
        interrupted,
        log_tails,
    };
    report::write(&out, &plan, &run, &machine, &stats, &probes)?;
    Ok(out)
}

/// Probes every system each `plan.probe_every` until `stop`, then once more.
async fn probe_until_stopped(
    plan: SoakPlan,
    targets: Vec<ProbeTarget>,
    http: reqwest::Client,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Probe> {
    let mut probes = Vec::new();
    let mut ticker = tokio::time::interval(plan.probe_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let last = stop.load(Ordering::Relaxed);
        let elapsed = started.elapsed();
        let generation = plan.generation_at(elapsed.min(plan.duration));
        let created = (generation + 1) * plan.active_series() as u64;
        for target in &targets {
            probes.push(probe::probe(&http, target, elapsed, generation, created).await);
        }
        if last {
            return probes;
        }
    }
}
