//! `ringtail promql-test FILE…` runs Prometheus's PromQL test scripts against Ringtail's engine
//! (see `query::promqltest`): one line per failing eval, the skip reasons counted by feature, and
//! the closing line `N passed, M failed, K skipped`. Exits non-zero when any eval failed.

use anyhow::Context;
use query::promqltest::{self, Outcome, RunOptions, Summary};
use std::path::PathBuf;

/// Flags of `ringtail promql-test`.
#[derive(clap::Args, Debug)]
pub struct PromqlTestArgs {
    /// Test scripts (`*.test`) in Prometheus's promqltest format.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Also list every skipped eval with its reasons.
    #[arg(long)]
    show_skipped: bool,
}

/// Runs the scripts; `Ok(true)` when every in-subset eval passed.
pub fn run(args: PromqlTestArgs) -> anyhow::Result<bool> {
    let options = RunOptions::default();
    let mut summary = Summary::default();
    for file in &args.files {
        let results = promqltest::run_file(file, &options).with_context(|| format!("running {}", file.display()))?;
        for r in &results {
            match &r.outcome {
                Outcome::Failed(why) => println!("FAIL {}: {}: {}", r.id, r.query, why),
                Outcome::Skipped(reasons) if args.show_skipped => {
                    println!("SKIP {}: {}: {}", r.id, r.query, reasons.join(", "))
                }
                _ => {}
            }
        }
        summary.add(&results);
    }
    if !summary.skip_reasons.is_empty() {
        let mut reasons: Vec<(&String, &usize)> = summary.skip_reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let text: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} ×{n}")).collect();
        println!("skip reasons (outside Ringtail's PromQL subset): {}", text.join(", "));
    }
    println!("{}", summary.line());
    Ok(summary.failed == 0)
}
