//! The benchmark suite behind `ringtail-bench`: it starts every system under test itself on
//! loopback (Ringtail, Prometheus 2.42, VictoriaMetrics 1.79), feeds each the same generated
//! workloads, measures them in the same run with the systems' order rotated between repeats, and
//! writes a report folder (`report.md`, `charts/*.svg`, `results.json`).
//!
//! Modules: `options` (flags and sizes), `fleet` (the synthetic Kubernetes label sets, encoded
//! once as Remote-Write requests or rendered as exposition pages), `systems` (starting each system
//! under test), `exporter` (the scrape targets the bench serves), `measure` (CPU, RSS, disk,
//! latency), `results` (raw figures), `workloads` (one file per workload), `machine` (the machine
//! description) and `report` (Markdown, charts, JSON, target checks). `churn_soak` is a separate
//! long run on the same parts (the `churn_soak` program): the three systems side by side under a
//! live stream of renamed pods for many retentions, RSS and disk recorded over time.

pub mod churn_soak;
pub mod exporter;
pub mod fleet;
pub mod machine;
pub mod measure;
pub mod options;
pub mod profile;
pub mod report;
pub mod results;
pub mod systems;
pub mod workloads;

pub use options::{Scale, SuiteOptions, WorkloadKey};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use results::Results;
use std::time::{Duration, Instant};

/// What every workload shares while it runs: the sizes, the raw results, the progress bar (whose
/// length is the estimated duration in seconds) and an HTTP client without proxies.
pub struct Suite {
    pub scale: Scale,
    pub results: Results,
    pub progress: ProgressBar,
    pub http: reqwest::Client,
}

impl Suite {
    /// Advances the progress bar by a finished step's estimated seconds.
    pub fn step_done(&self, estimated_seconds: f64) {
        self.progress.inc(estimated_seconds.round().max(1.0) as u64);
    }

    /// Shows what is running now (a line on stderr when stderr is not a terminal).
    pub fn status(&self, message: String) {
        if self.progress.is_hidden() {
            eprintln!("[{}] {message}", format_duration(self.progress.elapsed().as_secs_f64()));
        }
        self.progress.set_message(message);
    }

    /// Records a note in `workload`'s report section and prints it.
    pub fn note(&mut self, workload: &str, text: String) {
        self.log(format!("{workload}: {text}"));
        self.results.note(workload, text);
    }

    /// Prints a line above the progress bar (or on stderr when it is hidden).
    pub fn log(&self, message: String) {
        if self.progress.is_hidden() {
            eprintln!("{message}");
        } else {
            self.progress.println(message);
        }
    }
}

/// Estimated seconds of each workload selected by `scale`.
pub fn plan(scale: &Scale) -> Vec<(WorkloadKey, f64)> {
    scale.workloads.iter().map(|&key| (key, workloads::estimate_seconds(key, scale))).collect()
}

/// Runs the suite and writes the report; returns the report folder.
pub async fn run(options: SuiteOptions) -> Result<std::path::PathBuf> {
    let scale = options.scale();
    let plan = plan(&scale);
    let estimated: f64 = plan.iter().map(|(_, s)| s).sum();
    for (key, seconds) in &plan {
        eprintln!("  {:<16} ~{}", format!("{key:?}"), format_duration(*seconds));
    }
    eprintln!("estimated duration: {}", format_duration(estimated));
    if options.plan {
        return Ok(std::path::PathBuf::new());
    }
    let out = match &options.out {
        Some(dir) => dir.clone(),
        None => std::path::PathBuf::from(format!("benches/results/{}", chrono::Utc::now().format("%Y-%m-%d-%H%M"))),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating the report folder {}", out.display()))?;
    let machine = machine::describe().await;
    let progress = ProgressBar::new(estimated.round().max(1.0) as u64);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% ~{eta} left  {wide_msg}")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    progress.enable_steady_tick(Duration::from_secs(1));
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(600))
        .pool_max_idle_per_host(512)
        .build()
        .context("building the HTTP client")?;
    let mut suite = Suite { scale: scale.clone(), results: Results::default(), progress, http };
    let started_at = chrono::Utc::now();
    let started = Instant::now();
    let mut failures = Vec::new();
    for (key, _) in &plan {
        if let Err(e) = workloads::run(*key, &mut suite).await {
            let message = format!("workload {key:?} failed: {e:#}");
            suite.log(message.clone());
            failures.push(message);
        }
    }
    suite.progress.finish_and_clear();
    let actual = started.elapsed().as_secs_f64();
    let run_info = report::RunInfo {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        options,
        scale,
        started_utc: started_at.to_rfc3339(),
        estimated_seconds: estimated,
        actual_seconds: actual,
        failures,
    };
    report::write(&out, &run_info, &machine, &suite.results)?;
    eprintln!("estimated {}, took {}", format_duration(estimated), format_duration(actual));
    if !run_info.failures.is_empty() {
        eprintln!("{} workload(s) failed; see the report", run_info.failures.len());
    }
    Ok(out)
}

/// `1h 02m 03s` style.
pub fn format_duration(seconds: f64) -> String {
    let total = seconds.round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(5.4), "5s");
        assert_eq!(format_duration(125.0), "2m 05s");
        assert_eq!(format_duration(3725.0), "1h 02m 05s");
    }
}
