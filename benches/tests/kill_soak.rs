//! The kill -9 soak, short: 10 SIGKILLs of the debug `ringtail` binary under writes and during
//! start-up, each restart checked for every acknowledged sample (the full 100-kill run is the
//! `kill_soak` program; its figures are under `benches/results/`).

use ringtail_benches::kill_soak::{self, KillSoakOptions};
use std::path::PathBuf;
use std::process::Command;

/// The `ringtail` binary of this test's profile: `$RINGTAIL_BIN` when set, else built here.
/// Cargo gives a test `CARGO_BIN_EXE_*` only for its own package's binaries and cannot depend on
/// another package's binary on stable, so the test asks cargo to build `ringtail` into the same
/// target directory — a no-op when `cargo test --workspace` has built it already, and never a
/// stale binary when only this package's tests run.
fn ringtail_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RINGTAIL_BIN") {
        return PathBuf::from(path);
    }
    let test_exe = std::env::current_exe().expect("the test's own path");
    // <target>/<profile>/deps/kill_soak-<hash>
    let profile_dir =
        test_exe.parent().and_then(|deps| deps.parent()).expect("the test runs from <target>/<profile>/deps");
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "--quiet", "-p", "ringtail-apiserver", "--bin", "ringtail"]);
    if profile_dir.file_name().is_some_and(|name| name == "release") {
        build.arg("--release");
    }
    let status = build.current_dir(env!("CARGO_MANIFEST_DIR")).status().expect("cargo runs");
    assert!(status.success(), "cargo build -p ringtail-apiserver failed: {status}");
    profile_dir.join("ringtail")
}

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
