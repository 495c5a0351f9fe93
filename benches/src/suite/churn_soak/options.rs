//! `ChurnSoakOptions` are the `churn_soak` program's flags and `SoakPlan` the parameters they
//! resolve to: the default soak (about 10 minutes: 60 s retention, a generation every 15 s, 1000
//! pods × 20 series) or `--quick` (a one-minute smoke run), with any flag overriding either.

use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// A churn soak: Ringtail, Prometheus 2.42 and VictoriaMetrics 1.79 receive the same live
/// Remote-Write stream of pods that are all renamed every generation (a rolling deploy), for many
/// times the retention; RSS, data-directory bytes and active series are recorded over time and
/// written as a CSV, SVG charts and a Markdown summary.
// The field docs are clap's help text: `<…>` and `[default: …]` there are meant literally.
#[allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]
#[derive(Parser, Debug, Clone, Serialize)]
#[command(name = "churn_soak", version)]
pub struct ChurnSoakOptions {
    /// Result folder [default: benches/results/<UTC date>-churn-soak, relative to the current
    /// directory: run from the workspace root].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// A smoke run of about a minute (6 s retention, a generation every 5 s, 200 pods × 10
    /// series, samples every second); other flags still override.
    #[arg(long)]
    pub quick: bool,
    /// How long the stream runs (e.g. 10m) [default: 10m; 60s with --quick].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(with = "optional_seconds")]
    pub duration: Option<Duration>,
    /// Time retention given to Ringtail (`--retention`) and Prometheus
    /// (`--storage.tsdb.retention.time`); VictoriaMetrics gets its 1-day minimum
    /// [default: 60s; 6s with --quick].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(with = "optional_seconds")]
    pub retention: Option<Duration>,
    /// Every pod is renamed this often (a new generation) [default: 15s; 5s with --quick].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(with = "optional_seconds")]
    pub generation_every: Option<Duration>,
    /// One sample per series this often, timestamped with the send time [default: 5s; 1s with
    /// --quick].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(with = "optional_seconds")]
    pub scrape_interval: Option<Duration>,
    /// Pods alive at a time [default: 1000 pods; 200 with --quick].
    #[arg(long, value_name = "COUNT")]
    pub pods: Option<usize>,
    /// Series per pod: gauges, request counters, then histogram buckets [default: 20; 10 with
    /// --quick].
    #[arg(long, value_name = "COUNT")]
    pub series_per_pod: Option<usize>,
    /// RSS, disk and active series are read this often [default: 5s; 2s with --quick].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(with = "optional_seconds")]
    pub probe_every: Option<Duration>,
    /// Ringtail's `--storage-size` in bytes [default: 268435456 = 256 MiB].
    #[arg(long, value_name = "BYTES")]
    pub ringtail_storage_size: Option<u64>,
}

/// The resolved parameters of one soak.
#[derive(Clone, Debug, Serialize)]
pub struct SoakPlan {
    #[serde(with = "seconds")]
    pub duration: Duration,
    #[serde(with = "seconds")]
    pub retention: Duration,
    #[serde(with = "seconds")]
    pub generation_every: Duration,
    #[serde(with = "seconds")]
    pub scrape_interval: Duration,
    pub pods: usize,
    pub series_per_pod: usize,
    #[serde(with = "seconds")]
    pub probe_every: Duration,
    pub ringtail_storage_size_bytes: u64,
}

impl ChurnSoakOptions {
    /// The plan these flags ask for; zero durations and counts are refused with the flag's name.
    pub fn plan(&self) -> Result<SoakPlan, String> {
        let pick = |given: Option<Duration>, quick: u64, default: u64| {
            given.unwrap_or(Duration::from_secs(if self.quick { quick } else { default }))
        };
        let plan = SoakPlan {
            duration: pick(self.duration, 60, 600),
            retention: pick(self.retention, 6, 60),
            generation_every: pick(self.generation_every, 5, 15),
            scrape_interval: pick(self.scrape_interval, 1, 5),
            pods: self.pods.unwrap_or(if self.quick { 200 } else { 1000 }),
            series_per_pod: self.series_per_pod.unwrap_or(if self.quick { 10 } else { 20 }),
            probe_every: pick(self.probe_every, 2, 5),
            ringtail_storage_size_bytes: self.ringtail_storage_size.unwrap_or(256 << 20),
        };
        for (flag, zero) in [
            ("--duration", plan.duration.is_zero()),
            ("--retention", plan.retention.is_zero()),
            ("--generation-every", plan.generation_every.is_zero()),
            ("--scrape-interval", plan.scrape_interval.is_zero()),
            ("--pods", plan.pods == 0),
            ("--series-per-pod", plan.series_per_pod == 0),
            ("--probe-every", plan.probe_every.is_zero()),
            ("--ringtail-storage-size", plan.ringtail_storage_size_bytes == 0),
        ] {
            if zero {
                return Err(format!("{flag} must be more than zero"));
            }
        }
        Ok(plan)
    }
}

impl SoakPlan {
    /// Series alive at a time.
    pub fn active_series(&self) -> usize {
        self.pods * self.series_per_pod
    }

    /// Generations the run goes through (the last may be cut short).
    pub fn generations(&self) -> u64 {
        self.duration.as_millis().div_ceil(self.generation_every.as_millis()) as u64
    }

    /// How many retentions the run spans (the issue asks for at least 10).
    pub fn retentions_spanned(&self) -> f64 {
        self.duration.as_secs_f64() / self.retention.as_secs_f64()
    }

    /// The generation live at `elapsed` since the stream started.
    pub fn generation_at(&self, elapsed: Duration) -> u64 {
        (elapsed.as_millis() / self.generation_every.as_millis()) as u64
    }
}

mod seconds {
    pub fn serialize<S: serde::Serializer>(value: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(value.as_secs_f64())
    }
}

mod optional_seconds {
    pub fn serialize<S: serde::Serializer>(value: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => s.serialize_some(&value.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<SoakPlan, String> {
        ChurnSoakOptions::parse_from(std::iter::once("churn_soak").chain(args.iter().copied())).plan()
    }

    #[test]
    fn default_soak_spans_ten_retentions() {
        let plan = plan(&[]).unwrap();
        assert_eq!(plan.active_series(), 20_000);
        assert_eq!(plan.generations(), 40);
        assert!(plan.retentions_spanned() >= 10.0);
    }

    #[test]
    fn quick_is_overridden_by_flags() {
        let plan = plan(&["--quick", "--pods", "50", "--duration", "2m"]).unwrap();
        assert_eq!((plan.pods, plan.series_per_pod), (50, 10));
        assert_eq!(plan.duration, Duration::from_secs(120));
        assert_eq!(plan.retention, Duration::from_secs(6));
        assert!(plan.retentions_spanned() >= 10.0);
    }

    #[test]
    fn zero_is_refused_by_name() {
        assert_eq!(plan(&["--pods", "0"]).unwrap_err(), "--pods must be more than zero");
        assert_eq!(plan(&["--retention", "0s"]).unwrap_err(), "--retention must be more than zero");
    }

    #[test]
    fn generations_follow_elapsed_time() {
        let plan = plan(&[]).unwrap();
        assert_eq!(plan.generation_at(Duration::from_millis(14_999)), 0);
        assert_eq!(plan.generation_at(Duration::from_secs(15)), 1);
    }
}
