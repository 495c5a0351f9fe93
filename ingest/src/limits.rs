//! `IngestLimits` is what one sender may make the store hold: labels per series, label name and
//! value length, series per request, live series and new series per minute (cardinality). A
//! series that breaks one is refused alone — the rest of its request is stored — and named in a
//! [`LimitRefusals`], which the receiver turns into a 400 and the self-metrics count by
//! [`Limit::as_str`]. [`SeriesAdmission`] is the live-series cap and the new-series token bucket,
//! shared by every request of one receiver.
//!
//! The defaults are sized so a real cluster never meets them and a hostile sender does, on a
//! 2-core node with a few GiB of memory: each is explained on its constant.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Default most labels one series may have, `__name__` included. Prometheus and Mimir tenants
/// default to 30–40; kube-state-metrics series carrying a pod's Kubernetes labels reach about
/// that, so 64 leaves room for them and still refuses a series built to bloat the index.
pub const DEFAULT_MAX_LABELS_PER_SERIES: usize = 64;
/// Default longest label name, in bytes (Mimir's default).
pub const DEFAULT_MAX_LABEL_NAME_BYTES: usize = 1024;
/// Default longest label value, in bytes: twice Mimir's 2048, as URLs and image references in
/// label values run long, while a value that is a pasted document is refused.
pub const DEFAULT_MAX_LABEL_VALUE_BYTES: usize = 4096;
/// Default most series one remote-write request may carry. Prometheus sends at most
/// `max_samples_per_send` (2000) samples per request and vmagent about 10k rows, so 100k is far
/// beyond any real sender and keeps one request from creating a million series (4.9 MiB did).
pub const DEFAULT_MAX_SERIES_PER_REQUEST: usize = 100_000;
/// Default most live series in the store. The store holds about 0.5 KiB of memory per live
/// series, so 2 million is about 1 GiB — what a 2-core node with 4 GiB can spare next to queries.
pub const DEFAULT_MAX_ACTIVE_SERIES: usize = 2_000_000;
/// Default most series created per minute (a token bucket that holds one minute's worth, full at
/// start). Rollouts churn thousands of series a minute, and a Prometheus that starts writing to an
/// empty (or restarted) Ringtail sends every series it has within a minute: one minute may bring
/// as many new series as the store may hold (`DEFAULT_MAX_ACTIVE_SERIES`); past that a sender
/// that invents series without end is held to that pace (the suite's 1M-series remote-write run
/// was refused with 500k).
pub const DEFAULT_MAX_NEW_SERIES_PER_MINUTE: u64 = DEFAULT_MAX_ACTIVE_SERIES as u64;

/// How many refused series a refusal names (their labels truncated), so the answer stays short.
const MAX_EXAMPLES: usize = 3;
/// Bytes of a refused series' labels quoted in an example.
const MAX_EXAMPLE_BYTES: usize = 200;

/// Ingestion limits; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    pub max_labels_per_series: usize,
    pub max_label_name_bytes: usize,
    pub max_label_value_bytes: usize,
    pub max_series_per_request: usize,
    pub max_active_series: usize,
    pub max_new_series_per_minute: u64,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_labels_per_series: DEFAULT_MAX_LABELS_PER_SERIES,
            max_label_name_bytes: DEFAULT_MAX_LABEL_NAME_BYTES,
            max_label_value_bytes: DEFAULT_MAX_LABEL_VALUE_BYTES,
            max_series_per_request: DEFAULT_MAX_SERIES_PER_REQUEST,
            max_active_series: DEFAULT_MAX_ACTIVE_SERIES,
            max_new_series_per_minute: DEFAULT_MAX_NEW_SERIES_PER_MINUTE,
        }
    }
}

impl IngestLimits {
    /// Every limit turned off (what benchmarks and the fuzz target decode with).
    pub const UNLIMITED: IngestLimits = IngestLimits {
        max_labels_per_series: 0,
        max_label_name_bytes: 0,
        max_label_value_bytes: 0,
        max_series_per_request: 0,
        max_active_series: 0,
        max_new_series_per_minute: 0,
    };

    /// Which label limit `labels` breaks (the first found) and how, or `None`.
    pub fn check_labels(&self, labels: &[(&str, &str)]) -> Option<(Limit, String)> {
        if self.max_labels_per_series > 0 && labels.len() > self.max_labels_per_series {
            return Some((Limit::LabelsPerSeries, format!("{} labels", labels.len())));
        }
        for (name, value) in labels {
            if self.max_label_name_bytes > 0 && name.len() > self.max_label_name_bytes {
                return Some((Limit::LabelNameLength, format!("a label name of {} bytes", name.len())));
            }
            if self.max_label_value_bytes > 0 && value.len() > self.max_label_value_bytes {
                return Some((
                    Limit::LabelValueLength,
                    format!("label {:?} has a value of {} bytes", truncate(name, 64), value.len()),
                ));
            }
        }
        None
    }

    /// The configured value of `limit`, as its flag takes it.
    pub fn value_of(&self, limit: Limit) -> u64 {
        match limit {
            Limit::LabelsPerSeries => self.max_labels_per_series as u64,
            Limit::LabelNameLength => self.max_label_name_bytes as u64,
            Limit::LabelValueLength => self.max_label_value_bytes as u64,
            Limit::SeriesPerRequest => self.max_series_per_request as u64,
            Limit::ActiveSeries => self.max_active_series as u64,
            Limit::NewSeriesPerMinute => self.max_new_series_per_minute,
        }
    }
}

/// One ingestion limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    LabelsPerSeries,
    LabelNameLength,
    LabelValueLength,
    SeriesPerRequest,
    ActiveSeries,
    NewSeriesPerMinute,
}

impl Limit {
    pub const ALL: [Limit; 6] = [
        Limit::LabelsPerSeries,
        Limit::LabelNameLength,
        Limit::LabelValueLength,
        Limit::SeriesPerRequest,
        Limit::ActiveSeries,
        Limit::NewSeriesPerMinute,
    ];

    /// The limit's name: the `reason` label of the refusal counters and the flag's suffix
    /// (`--limits.max-labels-per-series`) with `_` for `-`.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::LabelsPerSeries => "max_labels_per_series",
            Limit::LabelNameLength => "max_label_name_length",
            Limit::LabelValueLength => "max_label_value_length",
            Limit::SeriesPerRequest => "max_series_per_request",
            Limit::ActiveSeries => "max_active_series",
            Limit::NewSeriesPerMinute => "max_new_series_per_minute",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// The series of one request (or page) refused by limits: counts per limit and the first few
/// refused series, named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitRefusals {
    series: [u64; 6],
    samples: [u64; 6],
    examples: Vec<String>,
}

impl LimitRefusals {
    /// Records one refused series: its index in the request, its labels (when decoded) and how
    /// it broke the limit.
    pub(crate) fn refuse(
        &mut self,
        limit: Limit,
        series_index: usize,
        labels: Option<&[(&str, &str)]>,
        samples: usize,
        how: &str,
    ) {
        self.series[limit.slot()] += 1;
        self.samples[limit.slot()] += samples as u64;
        if self.examples.len() < MAX_EXAMPLES {
            let named = labels.map_or(String::new(), |labels| format!(" {}", describe_labels(labels)));
            let how = if how.is_empty() { String::new() } else { format!(" ({how})") };
            self.examples.push(format!("series {series_index}{named}{how}"));
        }
    }

    /// No series was refused.
    pub fn is_empty(&self) -> bool {
        self.series.iter().all(|n| *n == 0)
    }

    /// Series refused by `limit`.
    pub fn series(&self, limit: Limit) -> u64 {
        self.series[limit.slot()]
    }

    /// Samples of the series refused by `limit`.
    pub fn samples(&self, limit: Limit) -> u64 {
        self.samples[limit.slot()]
    }

    /// Series refused in all.
    pub fn series_total(&self) -> u64 {
        self.series.iter().sum()
    }

    /// What a sender is told: each limit broken with its value and flag, the count, and the first
    /// few series named.
    pub fn message(&self, limits: &IngestLimits) -> String {
        let broken: Vec<String> = Limit::ALL
            .iter()
            .filter(|limit| self.series(**limit) > 0)
            .map(|limit| {
                format!(
                    "{} series over {}={} (--limits.{})",
                    self.series(*limit),
                    limit.as_str(),
                    limits.value_of(*limit),
                    limit.as_str().replace('_', "-")
                )
            })
            .collect();
        format!(
            "{} series refused by limits, the rest of the request was stored: {}; e.g. {}",
            self.series_total(),
            broken.join(", "),
            self.examples.join("; ")
        )
    }
}

/// `{name="value", …}`, cut at [`MAX_EXAMPLE_BYTES`].
fn describe_labels(labels: &[(&str, &str)]) -> String {
    let mut text = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if text.len() > MAX_EXAMPLE_BYTES {
            text.push_str(&format!(", … {} more labels", labels.len() - i));
            break;
        }
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str(&format!("{}={:?}", truncate(name, 64), truncate(value, 64)));
    }
    text.push('}');
    text
}

/// `text` cut to at most `max_bytes` on a character boundary, with `…` when cut.
fn truncate(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The live-series cap and the new-series rate of one store, shared by the requests writing to
/// it. A request reserves room for the series it may create before it appends and gives back
/// what it did not use after, so concurrent requests cannot overshoot the cap between them.
#[derive(Debug)]
pub struct SeriesAdmission {
    max_active_series: usize,
    max_new_series_per_minute: u64,
    state: Mutex<AdmissionState>,
}

#[derive(Debug)]
struct AdmissionState {
    /// New-series tokens; refilled at `max_new_series_per_minute / 60` per second up to one
    /// minute's worth.
    tokens: f64,
    refilled_at: Instant,
    /// Series reserved by requests that have not appended yet.
    reserved: usize,
}

/// Room reserved for new series; give it back with [`SeriesAdmission::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub granted: usize,
    /// The limit that granted less than was asked, if any.
    pub limited_by: Option<Limit>,
}

impl SeriesAdmission {
    pub fn new(limits: &IngestLimits) -> SeriesAdmission {
        SeriesAdmission {
            max_active_series: limits.max_active_series,
            max_new_series_per_minute: limits.max_new_series_per_minute,
            state: Mutex::new(AdmissionState {
                tokens: limits.max_new_series_per_minute as f64,
                refilled_at: Instant::now(),
                reserved: 0,
            }),
        }
    }

    /// Neither limit is set: nothing to reserve.
    pub fn is_unlimited(&self) -> bool {
        self.max_active_series == 0 && self.max_new_series_per_minute == 0
    }

    /// Reserves room for up to `wanted` new series with `live_series` live now.
    pub fn reserve(&self, wanted: usize, live_series: usize) -> Reservation {
        self.reserve_at(wanted, live_series, Instant::now())
    }

    fn reserve_at(&self, wanted: usize, live_series: usize, now: Instant) -> Reservation {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut granted = wanted;
        let mut limited_by = None;
        if self.max_active_series > 0 {
            let room = self.max_active_series.saturating_sub(live_series.saturating_add(state.reserved));
            if room < granted {
                granted = room;
                limited_by = Some(Limit::ActiveSeries);
            }
        }
        if self.max_new_series_per_minute > 0 {
            let per_minute = self.max_new_series_per_minute as f64;
            let elapsed = now.saturating_duration_since(state.refilled_at).as_secs_f64();
            state.tokens = (state.tokens + elapsed * per_minute / 60.0).min(per_minute);
            state.refilled_at = now;
            let tokens = state.tokens as usize;
            if tokens < granted {
                granted = tokens;
                limited_by = Some(Limit::NewSeriesPerMinute);
            }
            state.tokens -= granted as f64;
        }
        state.reserved += granted;
        Reservation { granted, limited_by }
    }

    /// Ends `reservation` once the append made `created` series: the unused tokens come back.
    pub fn settle(&self, reservation: Reservation, created: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.reserved = state.reserved.saturating_sub(reservation.granted);
        if self.max_new_series_per_minute > 0 {
            let unused = reservation.granted.saturating_sub(created);
            state.tokens = (state.tokens + unused as f64).min(self.max_new_series_per_minute as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn label_limits_name_the_first_broken_one() {
        let limits = IngestLimits {
            max_labels_per_series: 2,
            max_label_name_bytes: 4,
            max_label_value_bytes: 3,
            ..IngestLimits::UNLIMITED
        };
        assert_eq!(limits.check_labels(&[("__n", "up")]), None);
        assert_eq!(limits.check_labels(&[("a", "1"), ("b", "2"), ("c", "3")]).unwrap().0, Limit::LabelsPerSeries);
        assert_eq!(limits.check_labels(&[("abcde", "1")]).unwrap().0, Limit::LabelNameLength);
        let (limit, how) = limits.check_labels(&[("pod", "abcd")]).unwrap();
        assert_eq!((limit, how.as_str()), (Limit::LabelValueLength, "label \"pod\" has a value of 4 bytes"));
        assert_eq!(IngestLimits::UNLIMITED.check_labels(&[("x".repeat(99_999).as_str(), "1")]), None);
    }

    #[test]
    fn the_message_names_limit_flag_count_and_truncated_series() {
        let mut refusals = LimitRefusals::default();
        let long = "v".repeat(5000);
        for i in 0..5 {
            refusals.refuse(Limit::LabelValueLength, i, Some(&[("__name__", "m"), ("pod", &long)]), 2, "pod too long");
        }
        refusals.refuse(Limit::ActiveSeries, 9, Some(&[("__name__", "n")]), 1, "");
        assert_eq!((refusals.series_total(), refusals.samples(Limit::LabelValueLength)), (6, 10));
        let message = refusals.message(&IngestLimits::default());
        assert!(message.starts_with("6 series refused by limits, the rest of the request was stored: "), "{message}");
        assert!(message.contains("5 series over max_label_value_length=4096 (--limits.max-label-value-length)"));
        assert!(message.contains("1 series over max_active_series=2000000"), "{message}");
        assert!(message.contains("series 0 {__name__=\"m\", pod=\"vvvv"), "{message}");
        assert_eq!(message.matches("series ").count() - 3, 3, "three examples: {message}");
        assert!(message.len() < 1200, "{} bytes", message.len());
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("ééé", 3), "é…");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn the_active_cap_counts_live_and_reserved_series() {
        let admission = SeriesAdmission::new(&IngestLimits { max_active_series: 10, ..IngestLimits::UNLIMITED });
        let first = admission.reserve(6, 2);
        assert_eq!(first, Reservation { granted: 6, limited_by: None });
        let second = admission.reserve(6, 2);
        assert_eq!(second, Reservation { granted: 2, limited_by: Some(Limit::ActiveSeries) });
        admission.settle(first, 1);
        admission.settle(second, 2);
        assert_eq!(admission.reserve(100, 5).granted, 5);
    }

    #[test]
    fn the_rate_bucket_refills_and_gets_unused_tokens_back() {
        let admission =
            SeriesAdmission::new(&IngestLimits { max_new_series_per_minute: 600, ..IngestLimits::UNLIMITED });
        let start = Instant::now();
        let all = admission.reserve_at(1000, 0, start);
        assert_eq!(all, Reservation { granted: 600, limited_by: Some(Limit::NewSeriesPerMinute) });
        admission.settle(all, 500);
        // 100 unused tokens came back; 1 s later 10 more have accrued.
        let later = admission.reserve_at(1000, 0, start + Duration::from_secs(1));
        assert_eq!(later.granted, 110);
        admission.settle(later, 110);
        let full = admission.reserve_at(1000, 0, start + Duration::from_secs(3600));
        assert_eq!(full.granted, 600, "the bucket holds one minute's worth");
        assert!(SeriesAdmission::new(&IngestLimits::UNLIMITED).is_unlimited());
        assert_eq!(SeriesAdmission::new(&IngestLimits::UNLIMITED).reserve(7, 1 << 40).granted, 7);
    }
}
