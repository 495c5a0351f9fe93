//! `SuiteOptions` are `ringtail-bench`'s command-line flags, and `Scale` the sizes they resolve
//! to: the default run (every point of every workload repeated 3 times, about 45 minutes on 2
//! cores), `--quick` (a smoke run of a few minutes), and per-workload scaling lists that override
//! either.

use clap::{Parser, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// A workload of the suite, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
pub enum WorkloadKey {
    /// (a) Remote-Write ingest at growing active series.
    RemoteWrite,
    /// (b) Scrape ingest of growing numbers of exporter pages.
    Scrape,
    /// (c) PromQL instant and range queries of the adapter's shapes.
    Promql,
    /// (c2) Selective PromQL: N of 10 N stored series, alone, on one core and under ingest.
    PromqlSelective,
    /// (d) Custom metrics API `pods/*` load at a fixed rate.
    AdapterApi,
    /// (e) Series churn: pods replaced every few minutes of data time.
    Churn,
    /// (f) Freshness: value change at the source → visible in the API.
    Freshness,
}

impl WorkloadKey {
    pub const ALL: [WorkloadKey; 7] = [
        WorkloadKey::RemoteWrite,
        WorkloadKey::Scrape,
        WorkloadKey::Promql,
        WorkloadKey::PromqlSelective,
        WorkloadKey::AdapterApi,
        WorkloadKey::Churn,
        WorkloadKey::Freshness,
    ];
}

/// Ringtail's benchmark suite: starts Ringtail, Prometheus 2.42 and VictoriaMetrics 1.79 on
/// loopback, feeds each the same generated workloads, and writes a report (Markdown, SVG charts,
/// JSON with every raw figure).
// The field docs are clap's help text: `<…>` and `[default: …]` there are meant literally.
#[allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]
#[derive(Parser, Debug, Clone, Serialize)]
#[command(name = "ringtail-bench", version)]
pub struct SuiteOptions {
    /// Report folder [default: benches/results/<UTC date and time>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Repeats of every scaling point of every workload, with the systems' order rotated between
    /// repeats [default: 3, 1 with --quick].
    #[arg(long, value_name = "N")]
    pub repeats: Option<usize>,
    /// Repeat only the smaller half of each workload's points; the larger half runs once (about
    /// two thirds of the default run's length).
    #[arg(long)]
    pub repeat_small_only: bool,
    /// Tiny sizes, two points per workload: a smoke run of every workload in a few minutes.
    #[arg(long)]
    pub quick: bool,
    /// Run only these workloads (comma-separated) [default: all].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub only: Vec<WorkloadKey>,
    /// (a) Active series per scaling point [default: 10000,100000,300000,1000000].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub rw_series: Vec<usize>,
    /// (a) Samples sent per run at least (each series gets ≥ 3 samples) [default: 600000].
    #[arg(long, value_name = "N")]
    pub rw_samples: Option<usize>,
    /// (a) Samples per series per request of the steady-state cells (one of 1, 2, 5, 10, 20, 50,
    /// 100, 200, 500, 1000) [default: 1,10,100; 1,10 with --quick].
    #[arg(long, value_delimiter = ',', value_name = "LIST",
          value_parser = crate::suite::workloads::remote_write::parse_samples_per_series)]
    pub rw_samples_per_series: Vec<usize>,
    /// (a) Samples sent per steady-state cell (fewer series than active when one round of every
    /// series would exceed it) [default: 1000000; 50000 with --quick].
    #[arg(long, value_name = "N")]
    pub rw_cell_samples: Option<usize>,
    /// (b) Scrape targets (100 series each) per scaling point [default: 50,100,200,400].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub scrape_targets: Vec<usize>,
    /// (b) Seconds of steady-state scraping measured per run [default: 5].
    #[arg(long, value_name = "SECONDS")]
    pub scrape_seconds: Option<u64>,
    /// (b) Scrape shapes, TARGETSxSERIES@INTERVAL, each measured over whole intervals; empty skips
    /// them [default: 100x1000@15s,1000x200@15s,200x1000@1s,400x1000@1s; 20x200@2s,10x1000@1s
    /// with --quick].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub scrape_shapes: Vec<crate::suite::workloads::scrape::ScrapeShape>,
    /// (b) Skip the scrape shapes (run only the --scrape-targets points).
    #[arg(long)]
    pub no_scrape_shapes: bool,
    /// (c) Series each query reads per scaling point [default: 1000,10000,30000,100000].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub query_series: Vec<usize>,
    /// (c) Runs per system of each query in the latency-distribution pass (p50/p99/p99.9): all of
    /// them for the instant queries at the smallest point, half for its range queries and for the
    /// instant queries at the second point; 0 skips the pass [default: 1000, 50 with --quick].
    #[arg(long, value_name = "N")]
    pub query_latency_runs: Option<usize>,
    /// (c2) Series each selective query reads per scaling point; the store holds 10× as many
    /// [default: 1000,10000,100000; 100,1000 with --quick].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub selective_series: Vec<usize>,
    /// (d) Pods selected by the label selector per scaling point [default: 100,300,1000,3000].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub api_pods: Vec<usize>,
    /// (d) Request rate of the open-loop load, per second [default: 500].
    #[arg(long, value_name = "N")]
    pub api_rate: Option<u64>,
    /// (d) Seconds of load per system per repeat [default: 5].
    #[arg(long, value_name = "SECONDS")]
    pub api_seconds: Option<u64>,
    /// (d) Request rate of the second, high-rate load, per second; 0 skips it [default: 1000; 200
    /// with --quick].
    #[arg(long, value_name = "N")]
    pub api_high_rate: Option<u64>,
    /// (d) Pods selected per point of the high-rate load [default: 1000,3000; 1000 with --quick].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub api_high_rate_pods: Vec<usize>,
    /// (e) Churn generations (5 min of data each, all pods replaced between) per scaling point
    /// [default: 1,3,10,20].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub churn_generations: Vec<usize>,
    /// (e) Pods alive at a time (10 series each) [default: 500].
    #[arg(long, value_name = "N")]
    pub churn_pods: Option<usize>,
    /// (f) Scrape intervals compared per scaling point, seconds [default: 2,5,10,15].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub freshness_intervals: Vec<u64>,
    /// (f) Value changes measured per scaling point [default: 30].
    #[arg(long, value_name = "N")]
    pub freshness_changes: Option<usize>,
    /// Print the plan and its estimated duration, then exit.
    #[arg(long)]
    pub plan: bool,
    /// Do not sample Ringtail's stacks with `perf` during measured windows (the report's "where
    /// the time goes" lines then say "not profiled") [default: profiled when perf works].
    #[arg(long)]
    pub no_profile: bool,
}

/// The resolved sizes of every workload.
#[derive(Clone, Debug, Serialize)]
pub struct Scale {
    pub repeats: usize,
    /// Only the smaller half of each workload's points is repeated.
    pub repeat_small_only: bool,
    /// Pause after a load before CPU, RSS and disk are read, so deferred work is counted.
    pub settle: Duration,
    pub rw_series: Vec<usize>,
    pub rw_samples: usize,
    /// Samples per series per request of remote-write's steady-state cells.
    pub rw_samples_per_series: Vec<usize>,
    /// Samples sent per steady-state cell.
    pub rw_cell_samples: usize,
    pub scrape_targets: Vec<usize>,
    pub scrape_series_per_target: usize,
    pub scrape_interval: Duration,
    pub scrape_window: Duration,
    /// Scrape shapes measured in their own table.
    pub scrape_shapes: Vec<crate::suite::workloads::scrape::ScrapeShape>,
    pub query_series: Vec<usize>,
    /// Timed runs of each query per system per repeat at the smallest point (fewer at large ones).
    pub query_runs: usize,
    /// Runs per system of each query in the latency-distribution pass at the smallest point.
    pub query_latency_runs: usize,
    /// Series each selective query reads per point (the store holds 10× as many).
    pub selective_series: Vec<usize>,
    /// Wall time a block of runs of one selective query aims at (the run count follows from it).
    pub selective_block: Duration,
    pub api_pods: Vec<usize>,
    pub api_rate: u64,
    pub api_duration: Duration,
    /// Rate of the high-rate load (0: none).
    pub api_high_rate: u64,
    pub api_high_rate_pods: Vec<usize>,
    pub churn_generations: Vec<usize>,
    pub churn_pods: usize,
    pub freshness_intervals: Vec<u64>,
    pub freshness_changes: usize,
    pub workloads: Vec<WorkloadKey>,
    /// Sample Ringtail's stacks during measured windows (`profile`); off with `--no-profile`.
    pub profile: bool,
}

fn list<T: Clone>(given: &[T], quick: bool, quick_default: &[T], default: &[T]) -> Vec<T> {
    if !given.is_empty() {
        given.to_vec()
    } else if quick {
        quick_default.to_vec()
    } else {
        default.to_vec()
    }
}

impl SuiteOptions {
    /// The sizes this run uses.
    pub fn scale(&self) -> Scale {
        let q = self.quick;
        Scale {
            repeats: self.repeats.unwrap_or(if q { 1 } else { 3 }).max(1),
            repeat_small_only: self.repeat_small_only,
            settle: Duration::from_secs(if q { 2 } else { 5 }),
            rw_series: list(&self.rw_series, q, &[1_000, 10_000], &[10_000, 100_000, 300_000, 1_000_000]),
            rw_samples: self.rw_samples.unwrap_or(if q { 100_000 } else { 600_000 }),
            rw_samples_per_series: list(&self.rw_samples_per_series, q, &[1, 10], &[1, 10, 100]),
            rw_cell_samples: self.rw_cell_samples.unwrap_or(if q { 50_000 } else { 1_000_000 }).max(1),
            scrape_targets: list(&self.scrape_targets, q, &[5, 20], &[50, 100, 200, 400]),
            scrape_series_per_target: 100,
            scrape_interval: Duration::from_secs(if q { 1 } else { 2 }),
            scrape_window: Duration::from_secs(self.scrape_seconds.unwrap_or(if q { 3 } else { 5 })),
            scrape_shapes: if self.no_scrape_shapes {
                Vec::new()
            } else {
                list(
                    &self.scrape_shapes,
                    q,
                    &crate::suite::workloads::scrape::QUICK_SHAPES,
                    &crate::suite::workloads::scrape::DEFAULT_SHAPES,
                )
            },
            query_series: list(&self.query_series, q, &[300, 1_000], &[1_000, 10_000, 30_000, 100_000]),
            query_runs: 3,
            query_latency_runs: self.query_latency_runs.unwrap_or(if q { 50 } else { 1_000 }),
            selective_series: list(&self.selective_series, q, &[100, 1_000], &[1_000, 10_000, 100_000]),
            selective_block: Duration::from_millis(if q { 200 } else { 500 }),
            api_pods: list(&self.api_pods, q, &[100, 1_000], &[100, 300, 1_000, 3_000]),
            api_rate: self.api_rate.unwrap_or(if q { 100 } else { 500 }).max(1),
            api_duration: Duration::from_secs(self.api_seconds.unwrap_or(if q { 2 } else { 5 }).max(1)),
            api_high_rate: self.api_high_rate.unwrap_or(if q { 200 } else { 1_000 }),
            api_high_rate_pods: list(&self.api_high_rate_pods, q, &[1_000], &[1_000, 3_000]),
            churn_generations: list(&self.churn_generations, q, &[1, 4], &[1, 3, 10, 20]),
            churn_pods: self.churn_pods.unwrap_or(if q { 100 } else { 500 }).max(1),
            freshness_intervals: list(&self.freshness_intervals, q, &[1], &[2, 5, 10, 15]),
            freshness_changes: self.freshness_changes.unwrap_or(if q { 8 } else { 30 }).max(1),
            workloads: if self.only.is_empty() { WorkloadKey::ALL.to_vec() } else { self.only.clone() },
            profile: !self.no_profile,
        }
    }
}

impl Scale {
    /// Repeats of the `index`-th of `count` scaling points (ascending): every point gets all of
    /// them, unless `--repeat-small-only` leaves the larger half of the points at one.
    pub fn repeats_at(&self, index: usize, count: usize) -> usize {
        if self.repeat_small_only && index >= count.div_ceil(2) {
            1
        } else {
            self.repeats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let options =
            SuiteOptions::parse_from(["ringtail-bench", "--rw-series", "5,6", "--only", "remote-write,churn"]);
        let scale = options.scale();
        assert_eq!(scale.rw_series, vec![5, 6]);
        assert_eq!(scale.workloads, vec![WorkloadKey::RemoteWrite, WorkloadKey::Churn]);
        assert_eq!(scale.repeats, 3);
        assert_eq!(scale.repeats_at(1, 4), 3);
        assert_eq!(scale.repeats_at(3, 4), 3);
        assert_eq!(scale.query_latency_runs, 1_000);
        let small_only = SuiteOptions::parse_from(["ringtail-bench", "--repeat-small-only"]).scale();
        assert_eq!(small_only.repeats_at(1, 4), 3);
        assert_eq!(small_only.repeats_at(2, 4), 1);
        assert_eq!(small_only.repeats_at(0, 1), 3);
        let quick = SuiteOptions::parse_from(["ringtail-bench", "--quick"]).scale();
        assert_eq!(quick.repeats, 1);
        assert_eq!(quick.query_latency_runs, 50);
        assert_eq!(quick.workloads.len(), WorkloadKey::ALL.len());
    }
}
