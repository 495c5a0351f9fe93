//! `ringtail-bench` runs Ringtail's whole benchmark suite in one command: it starts Ringtail,
//! Prometheus 2.42 and VictoriaMetrics 1.79 on loopback, runs the seven workloads (remote-write
//! and scrape ingest, PromQL, selective PromQL, custom metrics API load, series churn, freshness)
//! with the systems alternating between repeats, and writes a report folder (`report.md`,
//! `charts/*.svg`, `results.json`). `--help` lists the options; `benches/README.md` explains
//! every figure.
#![forbid(unsafe_code)]

use clap::Parser;
use ringtail_benches::suite::{self, SuiteOptions};

fn main() -> anyhow::Result<()> {
    let options = SuiteOptions::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let out = runtime.block_on(suite::run(options))?;
    if !out.as_os_str().is_empty() {
        eprintln!("report: {}", out.join("report.md").display());
    }
    Ok(())
}
