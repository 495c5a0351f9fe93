//! `kill_soak` runs the kill -9 soak: the real `ringtail` binary SIGKILLed at random moments while
//! a sender remote-writes, restarted, and checked after every restart for every acknowledged
//! sample. `--help` lists the flags; the result folder (`--out`) holds README.md with the figures.
#![forbid(unsafe_code)]

use clap::Parser;
use ringtail_benches::kill_soak::{self, KillSoakOptions};

fn main() -> anyhow::Result<()> {
    let options = KillSoakOptions::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(kill_soak::run(&options))?;
    eprintln!(
        "{} kills, {} restarts (p50 {:.1} ms, p99 {:.1} ms), {} acknowledged samples checked, {} lost",
        report.kills,
        report.restarts,
        report.restart_p50_ms,
        report.restart_p99_ms,
        report.samples_checked_total,
        report.lost
    );
    if let Some(out) = &options.out {
        eprintln!("report: {}", out.join("README.md").display());
    }
    Ok(())
}
