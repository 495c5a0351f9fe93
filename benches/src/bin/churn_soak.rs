//! `churn_soak` runs the churn soak of the benchmark suite: Ringtail, Prometheus 2.42 and
//! VictoriaMetrics 1.79 side by side receive the same live Remote-Write stream of pods renamed
//! every generation, for many times the retention, and the program writes each system's RSS,
//! data-directory bytes and active series over time (`probes.csv`, `charts/*.svg`,
//! `summary.md` with the plateau check). `--help` lists the flags; `benches/README.md` explains
//! the run.
#![forbid(unsafe_code)]

use clap::Parser;
use ringtail_benches::suite::churn_soak::{self, ChurnSoakOptions};

fn main() -> anyhow::Result<()> {
    let options = ChurnSoakOptions::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let out = runtime.block_on(churn_soak::run(options))?;
    eprintln!("summary: {}", out.join("summary.md").display());
    Ok(())
}
