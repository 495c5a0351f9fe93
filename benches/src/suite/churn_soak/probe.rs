//! `Probe` is one reading of one system during the soak: resident memory of its process tree,
//! the bytes its data directory takes (allocated and apparent), its CPU time, and the active
//! series it reports about itself on `/metrics` (each system names that figure differently).
//! Anything unreadable is NaN, written as an empty CSV cell.

use crate::suite::measure::{cpu, disk_usage, tree_memory_bytes};
use crate::suite::systems::{RunningSystem, SystemKind};
use std::path::PathBuf;
use std::time::Duration;

/// One reading.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Seconds since the stream started.
    pub elapsed_s: f64,
    pub system: SystemKind,
    /// The generation being sent when the reading was taken.
    pub generation: u64,
    /// Series the stream has created so far (every generation's pods × series per pod).
    pub series_created: u64,
    /// `VmRSS` summed over the process tree.
    pub rss_bytes: f64,
    /// `RssAnon` summed over the process tree (heap, no mapped files).
    pub anon_bytes: f64,
    /// Allocated blocks under the data directory (`du`).
    pub disk_allocated_bytes: f64,
    /// File lengths under the data directory (`du --apparent-size`).
    pub disk_apparent_bytes: f64,
    /// The system's own count of active series (see [`active_series_metric`]).
    pub active_series: f64,
    pub cpu_seconds: f64,
}

impl Probe {
    /// The CSV header matching [`Probe::csv_row`].
    pub const CSV_HEADER: &'static str = "elapsed_s,system,generation,series_created,rss_bytes,anon_bytes,\
                                          disk_allocated_bytes,disk_apparent_bytes,active_series,cpu_seconds";

    /// One CSV line (no newline); NaN is an empty cell.
    pub fn csv_row(&self) -> String {
        let cell = |v: f64| if v.is_nan() { String::new() } else { format!("{v:.0}") };
        format!(
            "{:.1},{},{},{},{},{},{},{},{},{}",
            self.elapsed_s,
            self.system.name(),
            self.generation,
            self.series_created,
            cell(self.rss_bytes),
            cell(self.anon_bytes),
            cell(self.disk_allocated_bytes),
            cell(self.disk_apparent_bytes),
            cell(self.active_series),
            if self.cpu_seconds.is_nan() { String::new() } else { format!("{:.2}", self.cpu_seconds) },
        )
    }
}

/// What the prober needs of a running system (cloned into the probing task).
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    pub kind: SystemKind,
    pub pid: u32,
    pub metrics_url: String,
    pub data_dir: PathBuf,
}

impl ProbeTarget {
    pub fn of(system: &RunningSystem) -> ProbeTarget {
        ProbeTarget {
            kind: system.kind,
            pid: system.pid(),
            metrics_url: format!("{}/metrics", system.url()),
            data_dir: system.data_dir(),
        }
    }
}

/// The self-metric read as active series, first match wins: Ringtail's live-series gauge where
/// the build has one, else its series count; Prometheus's head series; VictoriaMetrics's series
/// seen in the current hour (it keeps no "live now" count; this is the cheapest close figure).
pub fn active_series_metric(kind: SystemKind) -> &'static [&'static str] {
    match kind {
        SystemKind::Ringtail => &["ringtail_tsdb_series_active", "ringtail_tsdb_active_series", "ringtail_tsdb_series"],
        SystemKind::Prometheus => &["prometheus_tsdb_head_series"],
        SystemKind::VictoriaMetrics => &["vm_cache_entries{type=\"storage/hour_metric_ids\"}"],
    }
}

/// The value of the first of `series` (a name, or a name with its exact label set as exposed)
/// found in the exposition `text`.
pub fn exposition_value(text: &str, series: &[&str]) -> Option<f64> {
    series.iter().find_map(|wanted| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(wanted)?;
            let value = rest.strip_prefix(' ')?.split_whitespace().next()?;
            value.parse().ok()
        })
    })
}

/// Reads `target` now.
pub async fn probe(
    http: &reqwest::Client,
    target: &ProbeTarget,
    elapsed: Duration,
    generation: u64,
    series_created: u64,
) -> Probe {
    let (rss, anon) = tree_memory_bytes(target.pid).map_or((f64::NAN, f64::NAN), |(r, a)| (r as f64, a as f64));
    let dir = target.data_dir.clone();
    // Walking Prometheus's block and WAL tree is file-system work; keep it off the sender's workers.
    let usage = tokio::task::spawn_blocking(move || disk_usage(&dir)).await.ok().and_then(Result::ok);
    let active_series = match http.get(&target.metrics_url).timeout(Duration::from_secs(5)).send().await {
        Ok(response) if response.status().is_success() => {
            response.text().await.ok().and_then(|text| exposition_value(&text, active_series_metric(target.kind)))
        }
        _ => None,
    };
    Probe {
        elapsed_s: elapsed.as_secs_f64(),
        system: target.kind,
        generation,
        series_created,
        rss_bytes: rss,
        anon_bytes: anon,
        disk_allocated_bytes: usage.map_or(f64::NAN, |u| u.allocated_bytes as f64),
        disk_apparent_bytes: usage.map_or(f64::NAN, |u| u.apparent_bytes as f64),
        active_series: active_series.unwrap_or(f64::NAN),
        cpu_seconds: cpu(target.pid).unwrap_or(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_values_by_name_and_label_set() {
        let text = "# HELP x\nprometheus_tsdb_head_series_created_total 9\nprometheus_tsdb_head_series 1234\n\
                    vm_cache_entries{type=\"storage/tsid\"} 5\nvm_cache_entries{type=\"storage/hour_metric_ids\"} 77\n";
        assert_eq!(exposition_value(text, active_series_metric(SystemKind::Prometheus)), Some(1234.0));
        assert_eq!(exposition_value(text, active_series_metric(SystemKind::VictoriaMetrics)), Some(77.0));
        assert_eq!(exposition_value("ringtail_tsdb_series 3\n", active_series_metric(SystemKind::Ringtail)), Some(3.0));
        assert_eq!(exposition_value(text, &["absent"]), None);
    }

    #[test]
    fn csv_rows_match_the_header_and_leave_nan_empty() {
        let probe = Probe {
            elapsed_s: 1.5,
            system: SystemKind::Ringtail,
            generation: 2,
            series_created: 600,
            rss_bytes: 1e6,
            anon_bytes: f64::NAN,
            disk_allocated_bytes: 4096.0,
            disk_apparent_bytes: 8192.0,
            active_series: 200.0,
            cpu_seconds: 0.5,
        };
        let row = probe.csv_row();
        assert_eq!(row, "1.5,ringtail,2,600,1000000,,4096,8192,200,0.50");
        assert_eq!(row.split(',').count(), Probe::CSV_HEADER.split(',').count());
    }
}
