//! `overload_soak` runs the overload soak ([`ringtail_benches::overload`]): Ringtail with a cut CPU
//! share and a small in-flight budget takes a real Prometheus 2.42's remote write at more than it
//! can handle; the program prints a Markdown report (statuses, probe latencies, peak RSS, samples
//! compared and lost) on stdout and fails when a sample was lost or a 429 was answered. Build with
//! `cargo build --release -p ringtail-apiserver -p ringtail-benches`; `--help` lists the flags.
#![forbid(unsafe_code)]

use clap::Parser;
use ringtail_benches::overload::{self, SoakOptions};

fn main() -> anyhow::Result<()> {
    let options = SoakOptions::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(overload::run(options)).map_err(anyhow::Error::msg)?;
    println!("{}", report.markdown());
    if report.samples_lost > 0 || report.codes_total.contains_key(&429) {
        anyhow::bail!("{} samples lost, answers {:?}", report.samples_lost, report.codes_total);
    }
    Ok(())
}
