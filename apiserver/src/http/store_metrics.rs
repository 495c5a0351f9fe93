//! `StoreCollector` is the store's figures in `/metrics` (`ringtail_tsdb_*`): size, series churn,
//! head slots, the series log, the budget and its split, and whether writes are accepted. It reads
//! [`tsdb::Db::stats`] and [`tsdb::Db::write_health`] on each scrape, so the figures are never
//! stale and no copy of them is kept.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::Arc;

/// The collector registered once per server over its store.
pub(crate) struct StoreCollector {
    db: Arc<tsdb::Db>,
}

impl StoreCollector {
    pub(crate) fn new(db: Arc<tsdb::Db>) -> Self {
        StoreCollector { db }
    }
}

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCollector")
    }
}

/// Writes one unlabelled gauge.
fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Writes one counter (the encoder adds `_total`).
fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Writes one gauge family with one label whose values are bounded (each series given here).
fn labelled_gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    series: &[(&str, u64)],
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, figure) in series {
        let labels = [(label, *value)];
        ConstGauge::new(i64::try_from(*figure).unwrap_or(i64::MAX)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.db.stats();
        let health = self.db.write_health();
        let e = &mut encoder;
        gauge(e, "ringtail_tsdb_series", "Active series: live in the head and the index", stats.series)?;
        gauge(e, "ringtail_tsdb_samples", "Samples in the store", stats.samples)?;
        gauge(e, "ringtail_tsdb_disk_bytes", "Bytes the store uses on disk", stats.bytes_on_disk)?;
        counter(e, "ringtail_tsdb_series_created", "Series created since the store was opened", stats.series_created)?;
        counter(
            e,
            "ringtail_tsdb_late_samples_stored",
            "Samples stored late (older than their series' newest, inside --out-of-order-window) since the store was opened",
            stats.late_samples_stored,
        )?;
        counter(
            e,
            "ringtail_tsdb_series_removed",
            "Series removed since the store was opened (no sample left inside the retention or the ring)",
            stats.series_removed,
        )?;
        labelled_gauges(
            e,
            "ringtail_tsdb_head_slot_bytes",
            "Bytes of allocated head slots, holding an open chunk (used) or free for reuse (free)",
            "state",
            &[("used", stats.head_slot_bytes_used), ("free", stats.head_slot_bytes_free)],
        )?;
        gauge(
            e,
            "ringtail_tsdb_series_log_bytes",
            "Bytes of the series log (live identities and removals not yet compacted away)",
            stats.series_log_bytes,
        )?;
        labelled_gauges(
            e,
            "ringtail_tsdb_budget_bytes",
            "The disk budget (--storage-size) as a whole (total) and its split into ring, head slots and series log",
            "part",
            &[
                ("total", stats.budget_bytes),
                ("ring", stats.ring_budget_bytes),
                ("head", stats.head_budget_bytes),
                ("series_log", stats.series_log_budget_bytes),
            ],
        )?;
        let read_only = u64::from(health.read_only);
        let no_space = u64::from(health.no_space.is_some());
        gauge(
            e,
            "ringtail_tsdb_writes_accepted",
            "1 while the store accepts writes, 0 while it refuses them (see ringtail_tsdb_writes_refused)",
            u64::from(read_only == 0 && no_space == 0),
        )?;
        labelled_gauges(
            e,
            "ringtail_tsdb_writes_refused",
            "1 while the store refuses writes for this reason: opened read-only, or its volume is full",
            "reason",
            &[("read_only", read_only), ("no_space", no_space)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn scrape(db: Arc<tsdb::Db>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(StoreCollector::new(db)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn every_figure_is_exposed_with_bounded_labels() {
        let db = Arc::new(tsdb::Db::open(tsdb::Options::in_memory()).unwrap());
        let labels = [("__name__", "up"), ("job", "a")];
        db.append(&[tsdb::SeriesSamples::labels(&labels, &[tsdb::Sample::new(1_000, 1.0)])]).unwrap();
        let text = scrape(db.clone());
        let stats = db.stats();
        for line in [
            "ringtail_tsdb_series 1".to_string(),
            "ringtail_tsdb_samples 1".to_string(),
            format!("ringtail_tsdb_series_created_total {}", stats.series_created),
            "ringtail_tsdb_late_samples_stored_total 0".to_string(),
            format!("ringtail_tsdb_series_removed_total {}", stats.series_removed),
            format!("ringtail_tsdb_head_slot_bytes{{state=\"used\"}} {}", stats.head_slot_bytes_used),
            format!("ringtail_tsdb_head_slot_bytes{{state=\"free\"}} {}", stats.head_slot_bytes_free),
            format!("ringtail_tsdb_series_log_bytes {}", stats.series_log_bytes),
            format!("ringtail_tsdb_budget_bytes{{part=\"total\"}} {}", stats.budget_bytes),
            format!("ringtail_tsdb_budget_bytes{{part=\"ring\"}} {}", stats.ring_budget_bytes),
            format!("ringtail_tsdb_budget_bytes{{part=\"head\"}} {}", stats.head_budget_bytes),
            format!("ringtail_tsdb_budget_bytes{{part=\"series_log\"}} {}", stats.series_log_budget_bytes),
            "ringtail_tsdb_writes_accepted 1".to_string(),
            "ringtail_tsdb_writes_refused{reason=\"read_only\"} 0".to_string(),
            "ringtail_tsdb_writes_refused{reason=\"no_space\"} 0".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains("# TYPE ringtail_tsdb_series_created counter"), "{text}");
    }

    #[test]
    fn a_read_only_store_shows_writes_refused() {
        let options = tsdb::Options::in_memory();
        drop(tsdb::Db::open(options.clone()).unwrap());
        let db = Arc::new(tsdb::Db::open(tsdb::Options { read_only: true, ..options }).unwrap());
        let text = scrape(db);
        assert!(text.lines().any(|l| l == "ringtail_tsdb_writes_accepted 0"), "{text}");
        assert!(text.lines().any(|l| l == "ringtail_tsdb_writes_refused{reason=\"read_only\"} 1"), "{text}");
    }
}
