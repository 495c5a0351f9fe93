//! The kill -9 soak behind the `kill_soak` program and the `kill_soak` integration test: the real
//! `ringtail serve` binary over a data directory of its own, a sender that remote-writes as fast as
//! it can, and SIGKILL at random moments — while writes pour in and, now and then, while Ringtail
//! is starting up and recovering. After every restart the soak measures the time from spawn to
//! `/-/ready` 200 and checks, through `/api/v1/export`, that every sample ever acknowledged (its
//! request answered 2xx) is stored with its exact timestamp and value bits.
//!
//! Modules: `ledger` (what was sent and acknowledged, and the check of an export against it),
//! `process` (one Ringtail run, SIGKILL by its own handle, the data directory's size), `sender`
//! (the writing lanes) and `report` (README.md, restarts.csv and summary.json). Nothing here
//! asserts a speed: it reports; a lost sample is an error of the run.
//!
//! The defaults favour many small requests (one lane, ten series, one sample each) over volume:
//! every check reads the whole store back, so its cost grows with everything ever written and a
//! soak of 100 kills at a million samples a second would spend its time checking; small requests
//! put more acknowledgement boundaries (append done, answer not yet sent) under each kill.

mod ledger;
mod process;
mod report;
mod sender;

pub use report::KillSoakReport;

use crate::suite::measure::disk_usage;
use anyhow::{anyhow, Context, Result};
use clap::Parser;
use ledger::Ledger;
use process::RingtailProcess;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use report::{KillKind, RestartRecord};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Kill Ringtail with SIGKILL at random moments while a sender writes, restart it, and check after
/// every restart that every acknowledged sample is still there.
#[derive(Parser, Debug, Clone, serde::Serialize)]
#[command(name = "kill_soak", version)]
pub struct KillSoakOptions {
    /// SIGKILLs in all, during writes and during start-up [default: 100 kills].
    #[arg(long, value_name = "COUNT", default_value_t = 100)]
    pub kills: usize,
    /// The `ringtail` binary [default: target/release/ringtail, relative to the current
    /// directory: run from the workspace root].
    #[arg(long, value_name = "PATH", default_value = "target/release/ringtail")]
    pub ringtail: PathBuf,
    /// Folder for README.md, restarts.csv and summary.json; nothing is written without it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seed of the kill schedule [default: 1].
    #[arg(long, value_name = "SEED", default_value_t = 1)]
    pub seed: u64,
    /// Shortest time Ringtail runs under writes before a kill, in milliseconds [default: 200 ms].
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub min_uptime_ms: u64,
    /// Longest time Ringtail runs under writes before a kill, in milliseconds [default: 1000 ms].
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub max_uptime_ms: u64,
    /// Percent of restarts that are themselves killed during start-up and recovery, at a uniform
    /// random moment before the restart time seen so far [default: 20 %].
    #[arg(long, value_name = "PERCENT", default_value_t = 20)]
    pub startup_kill_percent: u32,
    /// Sender tasks, each writing its own series in order over its own connection [default: 1].
    #[arg(long, value_name = "COUNT", default_value_t = 1)]
    pub lanes: usize,
    /// Series each lane starts with [default: 10 series].
    #[arg(long, value_name = "COUNT", default_value_t = 10)]
    pub series_per_lane: usize,
    /// Series each lane adds after every restart, so series are created under kills too
    /// [default: 1 series].
    #[arg(long, value_name = "COUNT", default_value_t = 1)]
    pub new_series_per_restart: usize,
    /// Samples per series in one request (a request carries every series of its lane)
    /// [default: 1 sample].
    #[arg(long, value_name = "COUNT", default_value_t = 1)]
    pub samples_per_series: u64,
    /// Ringtail's `--storage-size`; large enough that nothing written is overwritten
    /// [default: 1GiB].
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    pub storage_size: String,
    /// Longest wait for `/-/ready` after a start, in seconds [default: 60 s].
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub ready_timeout_s: u64,
}

impl KillSoakOptions {
    /// The defaults with `kills` kills of `ringtail`.
    pub fn new(kills: usize, ringtail: PathBuf) -> KillSoakOptions {
        let mut options = KillSoakOptions::parse_from(["kill_soak"]);
        options.kills = kills;
        options.ringtail = ringtail;
        options
    }

    fn validate(&self) -> Result<()> {
        let positive = [
            ("--kills", self.kills as u64),
            ("--lanes", self.lanes as u64),
            ("--series-per-lane", self.series_per_lane as u64),
            ("--samples-per-series", self.samples_per_series),
            ("--max-uptime-ms", self.max_uptime_ms),
            ("--ready-timeout-s", self.ready_timeout_s),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(anyhow!("{flag} must be at least 1"));
        }
        if self.min_uptime_ms > self.max_uptime_ms {
            return Err(anyhow!(
                "--min-uptime-ms ({}) is above --max-uptime-ms ({})",
                self.min_uptime_ms,
                self.max_uptime_ms
            ));
        }
        if self.startup_kill_percent > 100 {
            return Err(anyhow!("--startup-kill-percent is {}, at most 100", self.startup_kill_percent));
        }
        if !self.ringtail.is_file() {
            return Err(anyhow!(
                "{} not found: build it with cargo build --release -p ringtail-apiserver or pass --ringtail",
                self.ringtail.display()
            ));
        }
        Ok(())
    }
}

/// Runs the soak. An error when Ringtail does not get ready after a start, when the sender or the
/// check cannot talk to it, or when a check finds an acknowledged sample lost or a sample that was
/// never sent (the report, written to `--out` first, says which); the data directory is then kept
/// and named in the error.
pub async fn run(options: &KillSoakOptions) -> Result<KillSoakReport> {
    options.validate()?;
    let workdir = tempfile::Builder::new().prefix("ringtail-kill-soak-").tempdir().context("creating a temp dir")?;
    let mut soak = Soak::new(options, workdir.path().to_path_buf())?;
    let outcome = soak.run_kills().await;
    let report = soak.report();
    if let Some(out) = &options.out {
        report.write(out)?;
    }
    let failed = match outcome {
        Err(e) => Some(e),
        Ok(()) if report.lost > 0 || report.foreign_samples > 0 => {
            Some(anyhow!("{} acknowledged samples lost, {} foreign samples", report.lost, report.foreign_samples))
        }
        Ok(()) => None,
    };
    match failed {
        None => Ok(report),
        Some(e) => {
            let kept = workdir.keep();
            Err(e.context(format!("the data directory and ringtail.log are kept in {}", kept.display())))
        }
    }
}

/// The state of one soak.
struct Soak<'a> {
    options: &'a KillSoakOptions,
    data_dir: PathBuf,
    log: PathBuf,
    client: reqwest::Client,
    rng: StdRng,
    ledger: Option<Ledger>,
    records: Vec<RestartRecord>,
    sender: sender::SenderStats,
    started: Instant,
    spawns: usize,
    kills: usize,
}

impl<'a> Soak<'a> {
    fn new(options: &'a KillSoakOptions, workdir: PathBuf) -> Result<Soak<'a>> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .context("building the HTTP client")?;
        // An hour behind the clock, one millisecond per sample number: far from the receiver's
        // future limit for any rate a lane reaches.
        let base_ts_ms = chrono::Utc::now().timestamp_millis() - 3_600_000;
        Ok(Soak {
            options,
            data_dir: workdir.join("data"),
            log: workdir.join("ringtail.log"),
            client,
            rng: StdRng::seed_from_u64(options.seed),
            ledger: Some(Ledger::new(options.lanes, options.series_per_lane, base_ts_ms)),
            records: Vec::new(),
            sender: sender::SenderStats::default(),
            started: Instant::now(),
            spawns: 0,
            kills: 0,
        })
    }

    fn spawn(&mut self, label: &str) -> Result<RingtailProcess> {
        self.spawns += 1;
        let extra = ["--storage-size".to_string(), self.options.storage_size.clone()];
        RingtailProcess::spawn(&self.options.ringtail, &self.data_dir, &self.log, label, &extra)
    }

    /// Starts Ringtail, waits for ready, checks the ledger and records the restart.
    async fn restart(
        &mut self,
        after: KillKind,
        store_bytes: (u64, u64),
        uptime: Duration,
        startup_kill_delays_ms: Vec<f64>,
    ) -> Result<RingtailProcess> {
        let label = format!("start {}", self.spawns + 1);
        let mut process = self.spawn(&label)?;
        let ready = self.options.ready_timeout_s;
        let restart_time = match process.wait_ready(&self.client, Duration::from_secs(ready)).await {
            Ok(time) => time,
            Err(e) => return Err(e.context(format!("after {} kills; log tail:\n{}", self.kills, self.log_tail()))),
        };
        let ledger = self.ledger.as_ref().ok_or_else(|| anyhow!("BUG: the ledger is with the sender"))?;
        let check_started = Instant::now();
        let check = ledger.check(&self.client, &process.url).await?;
        let (sent, acknowledged) = ledger.sent_and_acknowledged();
        let record = RestartRecord {
            after,
            uptime_ms: uptime.as_secs_f64() * 1e3,
            store_allocated_bytes: store_bytes.0,
            store_apparent_bytes: store_bytes.1,
            restart_ms: restart_time.as_secs_f64() * 1e3,
            check_ms: check_started.elapsed().as_secs_f64() * 1e3,
            series: ledger.series(),
            sent,
            acknowledged,
            startup_kill_delays_ms,
            check,
        };
        eprintln!("{}", record.progress_line(self.records.len()));
        let clean = record.check.is_clean();
        self.records.push(record);
        if !clean {
            return Err(anyhow!("the check after restart {} failed (see the report)", self.records.len() - 1));
        }
        Ok(process)
    }

    async fn run_kills(&mut self) -> Result<()> {
        let mut process = self.restart(KillKind::None, (0, 0), Duration::ZERO, Vec::new()).await?;
        while self.kills < self.options.kills {
            // Writes for a random time, then SIGKILL.
            let uptime_ms = self.rng.gen_range(self.options.min_uptime_ms..=self.options.max_uptime_ms);
            let mut ledger = self.ledger.take().ok_or_else(|| anyhow!("BUG: the ledger is with the sender"))?;
            let stop = Arc::new(AtomicBool::new(false));
            let lanes = sender::start(&mut ledger, &self.client, &process.url, self.options.samples_per_series, &stop);
            tokio::time::sleep(Duration::from_millis(uptime_ms)).await;
            let uptime = process.age();
            process.kill()?;
            self.kills += 1;
            let usage = disk_usage(&self.data_dir)?;
            let store_bytes = (usage.allocated_bytes, usage.apparent_bytes);
            stop.store(true, Ordering::Release);
            let stats = sender::join(lanes, &mut ledger).await?;
            self.sender.add(stats);
            self.ledger = Some(ledger);
            // Now and then the restart is killed too, during start-up and recovery.
            let mut kind = KillKind::Running;
            let mut startup_kills = Vec::new();
            while self.kills < self.options.kills && self.rng.gen_range(0..100) < self.options.startup_kill_percent {
                let window_ms = self.startup_window_ms();
                let delay_ms = self.rng.gen_range(0.0..window_ms);
                let label = format!("start {} (killed during start-up)", self.spawns + 1);
                let starting = self.spawn(&label)?;
                tokio::time::sleep(Duration::from_secs_f64(delay_ms / 1e3)).await;
                if !starting.kill()? {
                    return Err(anyhow!("ringtail exited by itself during start-up; log tail:\n{}", self.log_tail()));
                }
                self.kills += 1;
                startup_kills.push(delay_ms);
                kind = KillKind::RunningThenStartup;
            }
            if let Some(ledger) = self.ledger.as_mut() {
                for lane in &mut ledger.lanes {
                    lane.add_series(self.options.new_series_per_restart);
                }
            }
            process = self.restart(kind, store_bytes, uptime, startup_kills).await?;
        }
        drop(process);
        Ok(())
    }

    /// Start-up kills land uniformly before the median restart time seen so far (at least 20 ms,
    /// so the process is past exec).
    fn startup_window_ms(&self) -> f64 {
        let mut times: Vec<f64> = self.records.iter().map(|r| r.restart_ms).collect();
        times.sort_by(f64::total_cmp);
        times.get(times.len() / 2).copied().unwrap_or(0.0).max(20.0)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn report(&self) -> KillSoakReport {
        KillSoakReport::new(self.options, &self.records, &self.sender, self.spawns, self.started.elapsed())
    }
}
