//! Crash test: a child process (this test binary re-invoked) appends and prints an acknowledgement
//! after every `Ok`; the parent SIGKILLs it at random moments, reopens the store and checks that
//! every acknowledged sample is there, bit for bit. Every other step of the first test is written
//! late (after the step following it), so kills also land while a late sample is put into its
//! open chunk.

use crate::helpers::{append_pairs, small_options, Rng};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tsdb::{Db, Matcher, Options, Sample, SeriesSamples};

const CHILD_DIR_ENV: &str = "RINGTAIL_CRASH_CHILD_DIR";
const SERIES: usize = 40;
const STEP_MS: i64 = 15_000;

fn options(dir: &Path) -> Options {
    let mut options = small_options(dir, 256 << 20, 4 << 20);
    options.out_of_order_window = Duration::from_secs(3600);
    options
}

/// The value series `i` holds at `ts`: a mix of counters, decimals and staleness markers so every
/// value code is exercised.
fn value_of(series: usize, ts: i64) -> f64 {
    let step = ts / STEP_MS;
    match series % 4 {
        0 => (step * 3 + series as i64) as f64,
        1 => ((step * 37 + series as i64) % 10_000) as f64 / 1000.0,
        2 if step % 97 == 0 => tsdb::stale_nan(),
        2 => f64::from_bits(((step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 2) | 1),
        _ => 42.0,
    }
}

fn labels(series: usize) -> [(&'static str, String); 2] {
    [("__name__", "crash".to_string()), ("series", series.to_string())]
}

/// Child mode: append forever, acknowledging each successful call on stdout.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return; // Only meaningful when started by `acknowledged_samples_survive_sigkill`.
    };
    let db = Db::open(options(Path::new(&dir))).expect("child: open");
    let newest = db
        .select(&[Matcher::equal("__name__", "crash")], i64::MIN, i64::MAX)
        .expect("child: select")
        .iter()
        .filter_map(|s| s.samples().last())
        .map(|s| s.ts_ms)
        .max()
        .unwrap_or(0);
    let mut stdout = std::io::stdout().lock();
    let mut ts = newest + STEP_MS;
    let mut ids = Vec::new();
    loop {
        // New series are created through `append` by labels while running, the rest via ids.
        if ids.len() < SERIES {
            let i = ids.len();
            let owned = labels(i);
            let pairs: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let sample = [Sample::new(ts, value_of(i, ts))];
            db.append(&[SeriesSamples::labels(&pairs, &sample)]).expect("child: batch");
            writeln!(stdout, "ack {i} {ts}").expect("child: stdout");
            ids.push(db.resolve(&pairs).expect("child: resolve"));
            continue;
        }
        let step = |ts: i64| -> Vec<_> {
            ids.iter().enumerate().map(|(i, id)| (*id, Sample::new(ts, value_of(i, ts)))).collect()
        };
        // The next step first, then this one, late.
        let ahead = ts + STEP_MS;
        let report = append_pairs(&db, &step(ahead)).expect("child: append");
        assert!(report.rejections.is_empty(), "child: unexpected rejections {report:?}");
        writeln!(stdout, "ack all {ahead}").expect("child: stdout");
        stdout.flush().expect("child: flush");
        let report = append_pairs(&db, &step(ts)).expect("child: append late");
        // A late sample may be refused (its open chunk full); the rest are acknowledged.
        for i in 0..ids.len() {
            if !report.rejections.iter().any(|r| r.index == i) {
                writeln!(stdout, "late {i} {ts}").expect("child: stdout");
            }
        }
        stdout.flush().expect("child: flush");
        ts += 2 * STEP_MS;
    }
}

/// Kills the child when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this test binary as a child running only `test` (in child mode: `env` names `dir`), and
/// a thread collecting its stdout lines until it dies.
fn start_child(exe: &Path, test: &str, env: &str, dir: &Path) -> (KillOnDrop, std::thread::JoinHandle<Vec<String>>) {
    let mut child = KillOnDrop(
        Command::new(exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(env, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect());
    (child, reader)
}

#[test]
fn acknowledged_samples_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0x5eed);
    let mut acked: Vec<Vec<i64>> = vec![Vec::new(); SERIES];
    let mut late_acks = 0;
    let started = Instant::now();
    for round in 0..6 {
        let (mut child, reader) = start_child(&exe, "crash::crash_child", CHILD_DIR_ENV, dir.path());
        let kill_after = Duration::from_millis(100 + rng.below(400));
        // Wait for the first acknowledgement (opening may take a moment on a loaded machine), then
        // let it run a random while and kill it mid-append.
        std::thread::sleep(kill_after);
        let deadline = Instant::now() + Duration::from_secs(20);
        while dir.path().join("series.log").metadata().map_or(0, |m| m.len()) <= 16 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let lines = reader.join().unwrap();
        let mut acks_this_round = 0;
        for line in &lines {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["ack", "all", ts] => {
                    let ts: i64 = ts.parse().unwrap();
                    acked.iter_mut().for_each(|a| a.push(ts));
                    acks_this_round += 1;
                }
                ["ack", i, ts] => acked[i.parse::<usize>().unwrap()].push(ts.parse().unwrap()),
                ["late", i, ts] => {
                    acked[i.parse::<usize>().unwrap()].push(ts.parse().unwrap());
                    late_acks += 1;
                }
                _ => {} // test harness chatter ("running 1 test", a line cut by the kill)
            }
        }
        let db = Db::open(options(dir.path())).unwrap();
        for (i, want) in acked.iter_mut().enumerate() {
            want.sort_unstable();
            let owned = labels(i);
            let found = db.select(&[Matcher::equal("series", owned[1].1.as_str())], i64::MIN, i64::MAX).unwrap();
            let got: Vec<Sample> = found.first().map(|s| s.samples().collect()).unwrap_or_default();
            let mut at = 0;
            for ts in want.iter() {
                while at < got.len() && got[at].ts_ms < *ts {
                    at += 1;
                }
                let expected = Sample::new(*ts, value_of(i, *ts));
                assert!(
                    got.get(at).is_some_and(|s| s.bit_eq(&expected)),
                    "round {round}: acknowledged sample {expected:?} of series {i} missing after kill -9"
                );
            }
        }
        drop(db);
        eprintln!("round {round}: {acks_this_round} acknowledged batches verified ({late_acks} late samples so far)");
        assert!(started.elapsed() < Duration::from_secs(120), "crash test is taking too long");
    }
    assert!(acked[0].len() > 10, "the child never got going");
    assert!(late_acks > 10, "late samples were written and acknowledged: {late_acks}");
}

const CHURN_CHILD_DIR_ENV: &str = "RINGTAIL_CHURN_CHILD_DIR";
const CHURN_RETENTION_MS: u64 = 3_000;
const KEEPERS: usize = 8;

fn churn_options(dir: &Path) -> Options {
    let mut options = small_options(dir, 64 << 20, 1 << 20);
    options.retention = Some(Duration::from_millis(CHURN_RETENTION_MS));
    options.head_idle_close = Duration::from_millis(500);
    options
}

/// Child mode for the churn crash test: keeper series written at every step, a generation of
/// short-lived pods every step, and a maintenance pass (removals, compactions) every step.
#[test]
fn churn_crash_child() {
    let Some(dir) = std::env::var_os(CHURN_CHILD_DIR_ENV) else {
        return; // Only meaningful when started by `churn_survives_sigkill_during_removal_and_compaction`.
    };
    let db = Db::open(churn_options(Path::new(&dir))).expect("child: open");
    let mut stdout = std::io::stdout().lock();
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    for generation in 0usize.. {
        let ts = tsdb::now_ms();
        for keeper in 0..KEEPERS {
            let name = format!("k{keeper}");
            let pairs = [("__name__", "keeper"), ("keeper", name.as_str())];
            db.append(&[SeriesSamples::labels(&pairs, &[Sample::new(ts, keeper as f64)])]).expect("child: keeper");
        }
        writeln!(stdout, "ack {ts}").expect("child: stdout");
        stdout.flush().expect("child: flush");
        for pod in 0..50 {
            let name = format!("{start}-{generation}-{pod}");
            let pairs = [("__name__", "churn"), ("pod", name.as_str())];
            db.append(&[SeriesSamples::labels(&pairs, &[Sample::new(ts, 1.0)])]).expect("child: churn");
        }
        db.maintain().expect("child: maintain");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn churn_survives_sigkill_during_removal_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0xc4u64);
    let mut acked: Vec<i64> = Vec::new();
    let mut removals_seen = 0u64;
    for round in 0..8 {
        let (mut child, reader) = start_child(&exe, "crash::churn_crash_child", CHURN_CHILD_DIR_ENV, dir.path());
        std::thread::sleep(Duration::from_millis(1_500 + rng.below(2_000)));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        for line in reader.join().unwrap() {
            if let ["ack", ts] = line.split(' ').collect::<Vec<_>>().as_slice() {
                acked.push(ts.parse().unwrap());
            }
        }
        let db = Db::open(churn_options(dir.path())).unwrap();
        // Every acknowledged keeper sample still inside the retention is there (with a margin for
        // the time this check takes).
        let cutoff = tsdb::now_ms() - CHURN_RETENTION_MS as i64 + 1_000;
        for keeper in 0..KEEPERS {
            let name = format!("k{keeper}");
            let found = db.select(&[Matcher::equal("keeper", name.as_str())], i64::MIN, i64::MAX).unwrap();
            let got: Vec<i64> = found.first().map(|s| s.samples().map(|s| s.ts_ms).collect()).unwrap_or_default();
            for ts in acked.iter().filter(|ts| **ts >= cutoff) {
                assert!(got.binary_search(ts).is_ok(), "round {round}: acknowledged keeper sample at {ts} lost");
            }
        }
        // Series past the retention are gone after one pass, whatever the kill interrupted.
        removals_seen += db.maintain().unwrap().series_removed;
        let live_churn = db.select(&[Matcher::equal("__name__", "churn")], i64::MIN, i64::MAX).unwrap();
        let too_old = tsdb::now_ms() - CHURN_RETENTION_MS as i64 - 1_000;
        assert!(live_churn.iter().all(|s| s.samples().all(|s| s.ts_ms >= too_old)));
        assert!(db.stats().series <= (KEEPERS + 50 * 1_000) as u64);
        drop(db);
    }
    assert!(acked.len() > 20, "the child never got going");
    let log_bytes = std::fs::metadata(dir.path().join("series.log")).unwrap().len();
    assert!(log_bytes < 4 << 20, "the series log was never compacted: {log_bytes} bytes");
    assert!(removals_seen > 0, "no series died while the child was down");
}
