//! `IngestMetrics` is ingestion's self-metrics: samples ingested and rejected (by source and
//! reason), series refused by a limit, and scrape outcomes, registered once into the server's `prometheus-client` registry and
//! shared (the handles are reference-counted) by the remote-write handler and the scraper.

use crate::limits::{Limit, LimitRefusals};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `source` label: where samples came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

/// `source` and `reason` labels of a rejection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RejectLabels {
    pub source: &'static str,
    pub reason: &'static str,
}

/// Per-job scrape outcome labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ScrapeLabels {
    pub job: String,
    pub result: &'static str,
}

/// Per-job labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct JobLabels {
    pub job: String,
}

/// Source label values.
pub const SOURCE_REMOTE_WRITE: &str = "remote_write";
pub const SOURCE_SCRAPE: &str = "scrape";

fn scrape_duration_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The shared handles; cloning is cheap and clones update the same series.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    pub samples_ingested: Family<SourceLabels, Counter>,
    pub samples_rejected: Family<RejectLabels, Counter>,
    pub scrapes: Family<ScrapeLabels, Counter>,
    pub scrape_duration_seconds: Family<JobLabels, Histogram, fn() -> Histogram>,
    pub scrape_targets: Gauge,
    /// Series refused by an ingestion limit, by source and limit.
    pub series_refused: Family<RejectLabels, Counter>,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        IngestMetrics {
            samples_ingested: Family::default(),
            samples_rejected: Family::default(),
            scrapes: Family::default(),
            scrape_duration_seconds: Family::new_with_constructor(scrape_duration_histogram),
            scrape_targets: Gauge::default(),
            series_refused: Family::default(),
        }
    }
}

impl IngestMetrics {
    /// Creates the metrics and registers them (once per registry).
    pub fn register(registry: &mut Registry) -> IngestMetrics {
        let metrics = IngestMetrics::default();
        registry.register(
            "ringtail_samples_ingested",
            "Samples stored, by source (remote_write, scrape)",
            metrics.samples_ingested.clone(),
        );
        registry.register(
            "ringtail_samples_rejected",
            "Samples received but not stored, by source and reason (out_of_order, duplicate_timestamp, too_old, too_far_in_future, invalid_request, sample_limit, or the --limits.* limit that refused their series)",
            metrics.samples_rejected.clone(),
        );
        registry.register(
            "ringtail_series_refused",
            "Series refused by an ingestion limit (--limits.*), by source and reason (the limit's name: \
             max_labels_per_series, max_label_name_length, max_label_value_length, max_series_per_request, \
             max_active_series, max_new_series_per_minute)",
            metrics.series_refused.clone(),
        );
        registry.register("ringtail_scrapes", "Scrapes by job and result (success, failure)", metrics.scrapes.clone());
        registry.register(
            "ringtail_scrape_duration_seconds",
            "Time one scrape took, fetch and store, by job",
            metrics.scrape_duration_seconds.clone(),
        );
        registry.register("ringtail_scrape_targets", "Targets the scraper is running", metrics.scrape_targets.clone());
        metrics
    }

    /// Counts `n` stored samples from `source`.
    pub fn ingested(&self, source: &'static str, n: u64) {
        if n > 0 {
            self.samples_ingested.get_or_create(&SourceLabels { source }).inc_by(n);
        }
    }

    /// Counts the series (in `ringtail_series_refused`) and their samples (in
    /// `ringtail_samples_rejected`) that `refusals` left out, by limit.
    pub fn refused_by_limits(&self, source: &'static str, refusals: &LimitRefusals) {
        for limit in Limit::ALL {
            let series = refusals.series(limit);
            if series > 0 {
                self.series_refused.get_or_create(&RejectLabels { source, reason: limit.as_str() }).inc_by(series);
            }
            self.rejected(source, limit.as_str(), refusals.samples(limit));
        }
    }

    /// Counts `n` samples from `source` refused for `reason`.
    pub fn rejected(&self, source: &'static str, reason: &'static str, n: u64) {
        if n > 0 {
            self.samples_rejected.get_or_create(&RejectLabels { source, reason }).inc_by(n);
        }
    }
}
