//! The kill -9 soak, short: 10 SIGKILLs of the debug `ringtail` binary under writes and during
//! start-up, each restart checked for every acknowledged sample (the full 100-kill run is the
//! `kill_soak` program; its figures are under `benches/results/`).

mod support;

use ringtail_benches::kill_soak::{self, KillSoakOptions};
use support::ringtail_binary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_kills_lose_no_acknowledged_sample() {
    let mut options = KillSoakOptions::new(10, ringtail_binary());
    // Two lanes, so requests are in flight side by side when a kill lands.
    options.lanes = 2;
    let report = kill_soak::run(&options).await.unwrap_or_else(|e| panic!("kill soak failed: {e:#}"));
    assert_eq!(report.kills, 10);
    assert_eq!(report.lost, 0, "lost: {:?}", report.lost_examples);
    assert_eq!(report.foreign_samples, 0, "foreign: {:?}", report.foreign_examples);
    assert_eq!(
        report.starts,
        report.starts_ready + report.kills_during_startup,
        "a start neither got ready nor was killed"
    );
    assert_eq!(report.checks, report.restarts + 1);
    assert!(report.samples_checked_last > 0 && report.samples_checked_last == report.samples_acknowledged);
}
