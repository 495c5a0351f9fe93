//! What the benches crate's integration tests share: the `ringtail` binary they start, and the
//! rule for a test peer (Prometheus) that is not installed.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

/// The `ringtail` binary of this test's profile: `$RINGTAIL_BIN` when set, else built here.
/// Cargo gives a test `CARGO_BIN_EXE_*` only for its own package's binaries and cannot depend on
/// another package's binary on stable, so the test asks cargo to build `ringtail` into the same
/// target directory — a no-op when `cargo test --workspace` has built it already, and never a
/// stale binary when only this package's tests run.
pub fn ringtail_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RINGTAIL_BIN") {
        return PathBuf::from(path);
    }
    let test_exe = std::env::current_exe().expect("the test's own path");
    // <target>/<profile>/deps/<test>-<hash>
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

/// Whether `binary` (a Debian `package`'s program) is here. A missing one skips `test` with a
/// `SKIPPED:` line, or fails it when `RINGTAIL_REQUIRE_PEERS=1` (as `scripts/test-all` sets).
#[allow(dead_code)] // not every test file uses it
pub fn peer_installed(test: &str, binary: &str, package: &str) -> bool {
    if std::path::Path::new(binary).is_file() {
        return true;
    }
    let reason = format!("{binary} not found — install Debian's `{package}` package (scripts/test-all does)");
    if std::env::var("RINGTAIL_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
        panic!("{test}: {reason} (RINGTAIL_REQUIRE_PEERS=1 makes a missing peer a failure, not a skip)");
    }
    // Straight to stderr: libtest captures `eprintln!` of passing tests, and a skip must show.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {reason}");
    false
}
