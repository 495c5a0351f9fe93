//! `KillSoakReport` is what a kill soak measured: kills and restarts, restart time (spawn →
//! `/-/ready` 200) overall and by the data directory's size at the kill, samples checked, lost and
//! stored without acknowledgement, and what the sender saw. Written as `README.md`,
//! `restarts.csv` (one row per start) and `summary.json`.

use super::ledger::CheckOutcome;
use super::sender::SenderStats;
use super::KillSoakOptions;
use anyhow::{Context, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Groups of restarts, by store size, in the restart-time table.
const SIZE_GROUPS: usize = 4;

/// What happened before a start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum KillKind {
    /// The first start, over an empty directory.
    None,
    /// SIGKILL while writes poured in.
    Running,
    /// SIGKILL under writes, then one or more SIGKILLs of the restart during start-up.
    RunningThenStartup,
}

/// One start that got ready, and its check.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RestartRecord {
    pub(crate) after: KillKind,
    /// How long the killed process ran (spawn → SIGKILL).
    pub(crate) uptime_ms: f64,
    /// The data directory at the SIGKILL under writes.
    pub(crate) store_allocated_bytes: u64,
    pub(crate) store_apparent_bytes: u64,
    /// Spawn → `/-/ready` 200.
    pub(crate) restart_ms: f64,
    pub(crate) check_ms: f64,
    pub(crate) series: usize,
    /// Samples sent and acknowledged since the soak began.
    pub(crate) sent: u64,
    pub(crate) acknowledged: u64,
    /// Spawn → SIGKILL of each start killed during start-up before this one.
    pub(crate) startup_kill_delays_ms: Vec<f64>,
    #[serde(skip)]
    pub(crate) check: CheckOutcome,
}

impl RestartRecord {
    /// One line for the terminal.
    pub(crate) fn progress_line(&self, index: usize) -> String {
        format!(
            "start {index}: ready in {:.1} ms (store {:.1} MiB, {} start-up kills before), checked {} acknowledged \
             samples in {:.0} ms: {} lost, {} unacknowledged present",
            self.restart_ms,
            mib(self.store_allocated_bytes),
            self.startup_kill_delays_ms.len(),
            self.check.checked,
            self.check_ms,
            self.check.lost,
            self.check.unacknowledged_present,
        )
    }
}

/// Restart times of the restarts in one range of store sizes.
#[derive(Clone, Debug, Serialize)]
pub struct SizeGroup {
    pub min_store_bytes: u64,
    pub max_store_bytes: u64,
    pub restarts: usize,
    pub restart_p50_ms: f64,
    pub restart_p99_ms: f64,
    pub restart_max_ms: f64,
}

/// The figures of one soak.
#[derive(Clone, Debug, Serialize)]
pub struct KillSoakReport {
    /// SIGKILLs sent in all.
    pub kills: usize,
    /// SIGKILLs while writes poured in.
    pub kills_under_writes: usize,
    /// SIGKILLs during start-up and recovery.
    pub kills_during_startup: usize,
    /// Processes started, and how many of them got ready (the rest were killed during start-up).
    pub starts: usize,
    pub starts_ready: usize,
    /// Restarts after a kill that got ready (the first start excluded).
    pub restarts: usize,
    pub restart_p50_ms: f64,
    pub restart_p99_ms: f64,
    pub restart_max_ms: f64,
    pub by_store_size: Vec<SizeGroup>,
    /// Checks run (one after every start that got ready) and acknowledged samples looked for,
    /// summed over checks and in the last one.
    pub checks: usize,
    pub samples_checked_total: u64,
    pub samples_checked_last: u64,
    /// Acknowledged samples missing, summed over checks (must be 0).
    pub lost: u64,
    pub lost_examples: Vec<String>,
    /// Exported samples that were never sent (must be 0).
    pub foreign_samples: u64,
    pub foreign_examples: Vec<String>,
    /// Samples sent and acknowledged in all, and series written.
    pub samples_sent: u64,
    pub samples_acknowledged: u64,
    pub series: usize,
    /// Samples sent without acknowledgement that the last check found stored.
    pub unacknowledged_present_last: u64,
    /// Acknowledged samples per second of writing (lane-seconds divided by lanes).
    pub acknowledged_per_second: f64,
    pub requests_acknowledged: u64,
    pub requests_refused_by_status: std::collections::BTreeMap<u16, u64>,
    pub requests_failed: u64,
    pub partial_acknowledgements: u64,
    pub first_partial_body: Option<String>,
    pub elapsed_seconds: f64,
    pub options: KillSoakOptions,
    #[serde(skip)]
    records: Vec<RestartRecord>,
}

impl KillSoakReport {
    pub(crate) fn new(
        options: &KillSoakOptions,
        records: &[RestartRecord],
        sender: &SenderStats,
        starts: usize,
        elapsed: Duration,
    ) -> KillSoakReport {
        let restarts: Vec<&RestartRecord> = records.iter().filter(|r| r.after != KillKind::None).collect();
        let kills_during_startup: usize = records.iter().map(|r| r.startup_kill_delays_ms.len()).sum();
        let mut times: Vec<f64> = restarts.iter().map(|r| r.restart_ms).collect();
        times.sort_by(f64::total_cmp);
        let last = records.last();
        let mut lost_examples = Vec::new();
        let mut foreign_examples = Vec::new();
        for (index, record) in records.iter().enumerate() {
            for lost in &record.check.lost_examples {
                lost_examples.push(format!(
                    "check {index}: lane {} series {} samples {}..{}",
                    lost.lane, lost.series, lost.k.start, lost.k.end
                ));
            }
            foreign_examples.extend(record.check.foreign_examples.iter().map(|e| format!("check {index}: {e}")));
        }
        lost_examples.truncate(40);
        foreign_examples.truncate(40);
        let lanes = options.lanes.max(1) as f64;
        KillSoakReport {
            kills: restarts.len() + kills_during_startup,
            kills_under_writes: restarts.len(),
            kills_during_startup,
            starts,
            starts_ready: records.len(),
            restarts: restarts.len(),
            restart_p50_ms: percentile(&times, 50.0),
            restart_p99_ms: percentile(&times, 99.0),
            restart_max_ms: times.last().copied().unwrap_or(f64::NAN),
            by_store_size: size_groups(&restarts),
            checks: records.len(),
            samples_checked_total: records.iter().map(|r| r.check.checked).sum(),
            samples_checked_last: last.map_or(0, |r| r.check.checked),
            lost: records.iter().map(|r| r.check.lost).sum(),
            lost_examples,
            foreign_samples: records.iter().map(|r| r.check.foreign_samples + r.check.foreign_series).sum(),
            foreign_examples,
            samples_sent: last.map_or(0, |r| r.sent),
            samples_acknowledged: last.map_or(0, |r| r.acknowledged),
            series: last.map_or(0, |r| r.series),
            unacknowledged_present_last: last.map_or(0, |r| r.check.unacknowledged_present),
            acknowledged_per_second: last.map_or(0, |r| r.acknowledged) as f64 / (sender.writing_seconds / lanes),
            requests_acknowledged: sender.requests_acknowledged,
            requests_refused_by_status: sender.refused_by_status.clone(),
            requests_failed: sender.failed,
            partial_acknowledgements: sender.partial_acknowledgements,
            first_partial_body: sender.first_partial_body.clone(),
            elapsed_seconds: elapsed.as_secs_f64(),
            options: options.clone(),
            records: records.to_vec(),
        }
    }

    /// Writes `README.md`, `restarts.csv` and `summary.json` into `out` (created if missing).
    pub fn write(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let files = [
            ("README.md", self.markdown()),
            ("restarts.csv", self.csv()),
            ("summary.json", serde_json::to_string_pretty(self).context("encoding the summary")? + "\n"),
        ];
        for (name, text) in files {
            let path = out.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    fn csv(&self) -> String {
        let mut csv = String::from(
            "start,after,uptime_ms,store_allocated_bytes,store_apparent_bytes,startup_kills,restart_ms,check_ms,\
             series,sent,acknowledged,checked,lost,unacknowledged_present,foreign\n",
        );
        for (index, r) in self.records.iter().enumerate() {
            let _ = writeln!(
                csv,
                "{index},{:?},{:.1},{},{},{},{:.2},{:.1},{},{},{},{},{},{},{}",
                r.after,
                r.uptime_ms,
                r.store_allocated_bytes,
                r.store_apparent_bytes,
                r.startup_kill_delays_ms.len(),
                r.restart_ms,
                r.check_ms,
                r.series,
                r.sent,
                r.acknowledged,
                r.check.checked,
                r.check.lost,
                r.check.unacknowledged_present,
                r.check.foreign_samples + r.check.foreign_series,
            );
        }
        csv
    }

    fn markdown(&self) -> String {
        let o = &self.options;
        let mut md = String::new();
        let _ = writeln!(md, "# Kill -9 soak\n");
        let _ = writeln!(
            md,
            "The real `ringtail serve` binary (`{}`) over a data directory of its own, {} sender lanes \
             remote-writing (1.0) as fast as Ringtail answers — every lane posts its next request of \
             {} series × {} samples as soon as the previous one is answered — and SIGKILL (through the \
             process's own handle) after a uniform random {}–{} ms of writes; {} % of the restarts were \
             killed again during start-up and recovery, at a uniform random moment before the median \
             restart time seen so far. After every start that got ready, every sample ever acknowledged \
             (request answered 2xx) was read back through `/api/v1/export` and compared with its exact \
             timestamp and value bits. Each lane added {} series after every restart, so series were \
             created under kills too. Seed {}, `--storage-size {}`. Produced by `cargo run --release -p \
             ringtail-benches --bin kill_soak -- --kills {} --out <dir>`; {:.0} s in all.\n\n\
             Small requests rather than volume: every check reads the whole store back, so its cost \
             grows with everything ever written (a soak at a million samples a second would spend its \
             time checking), and small requests put more acknowledgement boundaries — append done, \
             answer not yet sent — under each kill.\n",
            o.ringtail.display(),
            o.lanes,
            o.series_per_lane,
            o.samples_per_series,
            o.min_uptime_ms,
            o.max_uptime_ms,
            o.startup_kill_percent,
            o.new_series_per_restart,
            o.seed,
            o.storage_size,
            o.kills,
            self.elapsed_seconds,
        );
        let verdict = if self.lost == 0 && self.foreign_samples == 0 { "**0 lost**" } else { "**LOSS**" };
        let _ = writeln!(md, "## Result: {verdict}\n");
        let _ = writeln!(md, "| figure | value |\n|---|---|");
        let rows: [(&str, String); 14] = [
            ("kills (SIGKILL)", self.kills.to_string()),
            ("… under writes", self.kills_under_writes.to_string()),
            ("… during start-up and recovery", self.kills_during_startup.to_string()),
            ("processes started / got ready", format!("{} / {}", self.starts, self.starts_ready)),
            ("restarts after a kill, all ready", self.restarts.to_string()),
            (
                "restart time (spawn → `/-/ready` 200) p50 / p99 / max",
                format!("{:.1} / {:.1} / {:.1} ms", self.restart_p50_ms, self.restart_p99_ms, self.restart_max_ms),
            ),
            ("checks (one per ready start)", self.checks.to_string()),
            ("acknowledged samples checked, summed over checks", self.samples_checked_total.to_string()),
            ("acknowledged samples checked in the last check", self.samples_checked_last.to_string()),
            ("**acknowledged samples lost**", format!("**{}**", self.lost)),
            ("stored samples never sent (wrong timestamp or value)", self.foreign_samples.to_string()),
            ("samples sent / acknowledged", format!("{} / {}", self.samples_sent, self.samples_acknowledged)),
            ("unacknowledged samples found stored (allowed)", self.unacknowledged_present_last.to_string()),
            ("series written", self.series.to_string()),
        ];
        for (name, value) in rows {
            let _ = writeln!(md, "| {name} | {value} |");
        }
        let _ = writeln!(md, "\n## Restart time against store size\n");
        let _ = writeln!(
            md,
            "Store size is the data directory's allocated bytes (as `du` counts; the store's files are \
             sparse until written) at the SIGKILL under writes; restarts sorted by it and cut into {SIZE_GROUPS} \
             groups.\n"
        );
        let _ = writeln!(md, "| store size | restarts | p50 | p99 | max |\n|---|---|---|---|---|");
        for group in &self.by_store_size {
            let _ = writeln!(
                md,
                "| {:.1}–{:.1} MiB | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
                mib(group.min_store_bytes),
                mib(group.max_store_bytes),
                group.restarts,
                group.restart_p50_ms,
                group.restart_p99_ms,
                group.restart_max_ms,
            );
        }
        let _ = writeln!(md, "\n## Sender\n");
        let _ = writeln!(
            md,
            "| figure | value |\n|---|---|\n| acknowledged samples per second of writing | {:.0} |\n\
             | requests acknowledged | {} |\n| requests answered otherwise, by status | {:?} |\n\
             | requests without an answer (the kill) | {} |\n| 200 answers with skipped samples | {} |",
            self.acknowledged_per_second,
            self.requests_acknowledged,
            self.requests_refused_by_status,
            self.requests_failed,
            self.partial_acknowledgements,
        );
        if let Some(body) = &self.first_partial_body {
            let _ = writeln!(md, "\nFirst 200 answer with skipped samples: `{}`", body.trim());
        }
        if !self.lost_examples.is_empty() || !self.foreign_examples.is_empty() {
            let _ = writeln!(md, "\n## Lost and foreign samples (first ones)\n");
            for line in self.lost_examples.iter().chain(&self.foreign_examples) {
                let _ = writeln!(md, "- {line}");
            }
        }
        let _ = writeln!(md, "\nEvery start is a row of `restarts.csv`; `summary.json` holds these figures.");
        md
    }
}

/// Nearest-rank percentile of ascending `sorted`; NaN when empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn size_groups(restarts: &[&RestartRecord]) -> Vec<SizeGroup> {
    let mut by_size: Vec<&RestartRecord> = restarts.to_vec();
    by_size.sort_by_key(|r| r.store_allocated_bytes);
    let per_group = by_size.len().div_ceil(SIZE_GROUPS).max(1);
    by_size
        .chunks(per_group)
        .map(|group| {
            let mut times: Vec<f64> = group.iter().map(|r| r.restart_ms).collect();
            times.sort_by(f64::total_cmp);
            SizeGroup {
                min_store_bytes: group.first().map_or(0, |r| r.store_allocated_bytes),
                max_store_bytes: group.last().map_or(0, |r| r.store_allocated_bytes),
                restarts: group.len(),
                restart_p50_ms: percentile(&times, 50.0),
                restart_p99_ms: percentile(&times, 99.0),
                restart_max_ms: times.last().copied().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!((percentile(&sorted, 50.0), percentile(&sorted, 99.0)), (50.0, 99.0));
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
