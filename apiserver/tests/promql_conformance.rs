//! Prometheus's own PromQL test scripts through the real `ringtail promql-test` binary: at least
//! 95 % of the evals inside Ringtail's subset pass, and the runner never skips an eval the
//! conformance inventory (`shared/promql-conformance/inventory.py`) places inside the subset.
//!
//! The engine implements more than the inventory's subset (the rest of Prometheus 2.42's float
//! PromQL — `predict_linear`, `holt_winters`, the trigonometric functions, `atan2` — and a few
//! cheap newer ones such as `sort_by_label` and `mad_over_time`), so the runner also runs the
//! evals of those; every one of them must pass.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// `$RINGTAIL_SHARED_DIR/promql-conformance/upstream` (scripts/test-all sets it, finding the
/// shared test data beside the checkout or beside the repository it was cloned from), else the
/// `shared/` beside this checkout.
fn upstream_dir() -> PathBuf {
    let shared = std::env::var_os("RINGTAIL_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")));
    shared.join("promql-conformance/upstream")
}

fn test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(upstream_dir())
        .expect("shared/promql-conformance/upstream is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "expected the upstream .test files, found {files:?}");
    files
}

struct RunnerOutput {
    passed: usize,
    failed: usize,
    skipped: usize,
    skipped_ids: BTreeSet<String>,
    failures: Vec<String>,
    success: bool,
    /// The closing line, `N passed, M failed, K skipped`.
    summary: String,
}

fn run_runner() -> RunnerOutput {
    let output = Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .arg("promql-test")
        .arg("--show-skipped")
        .args(test_files())
        .output()
        .expect("ringtail promql-test runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let last = stdout.lines().last().unwrap_or_default().to_string();
    let numbers: Vec<usize> = last.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    assert_eq!(numbers.len(), 3, "closing line must be `N passed, M failed, K skipped`, got {last:?}");
    assert!(last.ends_with(" skipped") && last.contains(" passed, ") && last.contains(" failed, "), "{last:?}");
    let skipped_ids = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("SKIP "))
        .filter_map(|l| l.split(": ").next())
        .map(str::to_string)
        .collect();
    let failures = stdout.lines().filter(|l| l.starts_with("FAIL ")).map(str::to_string).collect();
    RunnerOutput {
        passed: numbers[0],
        failed: numbers[1],
        skipped: numbers[2],
        skipped_ids,
        failures,
        success: output.status.success(),
        summary: last,
    }
}

fn inventory_ids() -> BTreeSet<String> {
    let script = upstream_dir().join("../inventory.py");
    let output = Command::new("python3").arg(script).arg("--json").output().expect("python3 runs inventory.py");
    assert!(output.status.success(), "inventory.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let ids: Vec<String> = serde_json::from_slice(&output.stdout).expect("inventory --json is a JSON list");
    ids.into_iter().collect()
}

#[test]
fn at_least_95_percent_of_in_subset_evals_pass_and_none_is_skipped() {
    let run = run_runner();
    let in_subset = inventory_ids();
    println!("conformance: {} ({} evals inside the inventory's subset)", run.summary, in_subset.len());
    let wrongly_skipped: Vec<&String> = in_subset.iter().filter(|id| run.skipped_ids.contains(*id)).collect();
    assert!(wrongly_skipped.is_empty(), "in-subset evals skipped by the runner: {wrongly_skipped:?}");
    assert_eq!(run.skipped, run.skipped_ids.len(), "every skip is listed");
    assert!(
        run.passed + run.failed >= in_subset.len(),
        "the runner ran every eval the inventory places in the subset (and those of Ringtail's further functions)"
    );
    // Beyond the inventory's subset the runner only runs what Ringtail added on purpose: no
    // failure is tolerated there.
    let failed_beyond: Vec<&String> = run
        .failures
        .iter()
        .filter(|line| {
            let id = line.trim_start_matches("FAIL ").split(": ").next().unwrap_or_default();
            !in_subset.contains(id)
        })
        .collect();
    assert!(failed_beyond.is_empty(), "evals beyond the inventory's subset failed:\n{failed_beyond:#?}");
    let in_subset_failed = run.failures.len() - failed_beyond.len();
    let rate = (in_subset.len() - in_subset_failed) as f64 / in_subset.len() as f64;
    assert!(rate >= 0.95, "pass rate {:.1} % < 95 %; failures:\n{}", rate * 100.0, run.failures.join("\n"));
    assert_eq!(run.success, run.failed == 0, "exit code reflects failures");
}

#[test]
fn a_failing_eval_is_reported_and_sets_the_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("mine.test");
    std::fs::write(
        &script,
        "load 1m\n  m{a=\"1\"} 0+1x10\n\neval instant at 5m m\n  m{a=\"1\"} 5\n\neval instant at 5m m\n  m{a=\"1\"} 6\n\n\
         eval instant at 5m histogram_count(m)\n  {a=\"1\"} 6\n",
    )
    .expect("write script");
    let output = Command::new(env!("CARGO_BIN_EXE_ringtail")).arg("promql-test").arg(&script).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "a failed eval must give a non-zero exit code:\n{stdout}");
    assert!(stdout.contains("FAIL mine.test:7:"), "{stdout}");
    assert!(stdout.contains("function histogram_count ×1"), "{stdout}");
    assert_eq!(stdout.lines().last(), Some("1 passed, 1 failed, 1 skipped"), "{stdout}");
}
