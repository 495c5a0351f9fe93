//! The external query source as the provider sees it: [`ExternalSource`], the one trait between
//! the provider and a Prometheus-compatible query API (what prometheus-adapter's
//! `--prometheus-url` points at: Prometheus, VictoriaMetrics, Mimir, Thanos), and
//! [`ExternalCatalog`], its series listings per `seriesQuery`, cached and refreshed.
//!
//! The HTTP implementation of the trait lives in `adapter::query_source`; the provider stays
//! free of HTTP and is tested here against an in-memory source.

use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the external source gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalSourceError {
    /// The source could not be reached, timed out, answered 5xx/429, or answered too much: the
    /// request fails with 503 and the HPA keeps its scale.
    #[error("{0}")]
    Unavailable(String),
    /// The source refused the query itself (400/422 `bad_data`): a rule that does not fit the
    /// source (500).
    #[error("{0}")]
    Refused(String),
}

/// A Prometheus-compatible query API. Calls block (the provider runs on blocking threads).
pub trait ExternalSource: Send + Sync {
    /// Where the source is, for messages and logs.
    fn describe(&self) -> &str;

    /// The label sets of the series `selector` matches between `start_ms` and `end_ms`
    /// (`/api/v1/series`).
    fn series(&self, selector: &str, start_ms: i64, end_ms: i64) -> Result<Vec<tsdb::Labels>, ExternalSourceError>;

    /// `query` evaluated at `ts_ms` (`/api/v1/query`).
    fn instant_query(&self, query: &str, ts_ms: i64) -> Result<query::Value, ExternalSourceError>;
}

/// Label names seen per series name (what discovery needs from a listing).
pub(crate) type LabelNamesBySeries = BTreeMap<String, BTreeSet<String>>;

/// The label names per series name of `series`.
pub(crate) fn label_names_by_series<'l>(series: impl IntoIterator<Item = &'l tsdb::Labels>) -> LabelNamesBySeries {
    let mut out: LabelNamesBySeries = BTreeMap::new();
    for labels in series {
        let Some(name) = labels.metric_name() else { continue };
        let entry = out.entry(name.to_string()).or_default();
        for label in labels.iter() {
            if label.name != tsdb::METRIC_NAME && !entry.contains(&label.name) {
                entry.insert(label.name.clone());
            }
        }
    }
    out
}

/// One `seriesQuery`'s listing from the source.
#[derive(Default)]
struct Listing {
    fetched_at: Option<Instant>,
    /// The last listing that succeeded.
    names: Option<Arc<LabelNamesBySeries>>,
    /// Why the last attempt failed, if it did.
    last_error: Option<String>,
}

/// A listing and the right to refresh it (held for the whole call to the source, while the
/// listing itself stays readable).
#[derive(Default)]
struct ListingSlot {
    listing: Mutex<Listing>,
    refreshing: Mutex<()>,
}

/// The external source and its series listings, one per `seriesQuery`, each refreshed at most
/// every `refresh` (prometheus-adapter's relist interval) — sooner, but at most once per
/// `forced_min_interval`, when a request names a metric nobody has listed yet. One request
/// refreshes a listing; the others meanwhile get the previous listing at once (they wait only
/// when there is none yet), so a slow source never holds up API discovery. A failed refresh
/// keeps serving the last listing that succeeded (the values themselves are always queried
/// live).
pub(crate) struct ExternalCatalog {
    source: Arc<dyn ExternalSource>,
    refresh: Duration,
    forced_min_interval: Duration,
    listings: Mutex<HashMap<String, Arc<ListingSlot>>>,
}

/// Shortest time between two listings of one `seriesQuery` forced by requests for an unknown
/// metric: a client polling a metric that does not exist costs the source one series call per
/// rule per this interval.
pub(crate) const EXTERNAL_FORCED_RELIST_MIN_INTERVAL: Duration = Duration::from_secs(10);

impl ExternalCatalog {
    pub(crate) fn new(source: Arc<dyn ExternalSource>, refresh: Duration) -> Self {
        ExternalCatalog {
            source,
            refresh,
            forced_min_interval: EXTERNAL_FORCED_RELIST_MIN_INTERVAL.min(refresh),
            listings: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn source(&self) -> &Arc<dyn ExternalSource> {
        &self.source
    }

    /// The label names per series name that `series_query` matches at the source over
    /// `[start_ms, end_ms]`, from the cache while it is fresh. `Err` only when no listing has
    /// ever succeeded.
    pub(crate) fn listing(
        &self,
        series_query: &str,
        start_ms: i64,
        end_ms: i64,
        force: bool,
    ) -> Result<Arc<LabelNamesBySeries>, String> {
        let slot = self.listings.lock().entry(series_query.to_string()).or_default().clone();
        if let Some(answer) = self.fresh_answer(&slot, force) {
            return answer;
        }
        let _refreshing = match slot.refreshing.try_lock() {
            Some(guard) => guard,
            None => {
                // Another request is refreshing it: serve the previous listing, if there is one.
                if let Some(names) = slot.listing.lock().names.clone() {
                    return Ok(names);
                }
                let guard = slot.refreshing.lock();
                if let Some(answer) = self.fresh_answer(&slot, force) {
                    return answer;
                }
                guard
            }
        };
        if let Some(answer) = self.fresh_answer(&slot, force) {
            return answer; // refreshed between the first look and taking the right to refresh
        }
        let fetched = self.source.series(series_query, start_ms, end_ms);
        let mut listing = slot.listing.lock();
        listing.fetched_at = Some(Instant::now());
        match fetched {
            Ok(series) => {
                listing.names = Some(Arc::new(label_names_by_series(&series)));
                listing.last_error = None;
            }
            Err(e) => {
                let message = format!("listing {series_query:?} at the query source {}: {e}", self.source.describe());
                tracing::warn!(kept_earlier_listing = listing.names.is_some(), "{message}");
                listing.last_error = Some(message);
            }
        }
        Self::answer(&listing, series_query)
    }

    /// The cached answer while it is fresh enough for this request.
    fn fresh_answer(&self, slot: &ListingSlot, force: bool) -> Option<Result<Arc<LabelNamesBySeries>, String>> {
        let listing = slot.listing.lock();
        let age = listing.fetched_at.map(|at| at.elapsed())?;
        let fresh = age < self.refresh && (!force || age < self.forced_min_interval);
        fresh.then(|| Self::answer(&listing, ""))
    }

    /// The last good listing, else why there is none.
    fn answer(listing: &Listing, series_query: &str) -> Result<Arc<LabelNamesBySeries>, String> {
        match (&listing.names, &listing.last_error) {
            (Some(names), _) => Ok(names.clone()),
            (None, Some(error)) => Err(error.clone()),
            (None, None) => Err(format!("listing {series_query:?} at the query source: no answer yet")),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// An in-memory source: fixed series, a query answered by a closure, calls counted, and
    /// an outage switch.
    pub(crate) struct MemorySource {
        pub(crate) series: Vec<tsdb::Labels>,
        #[allow(clippy::type_complexity)]
        pub(crate) answer: Box<dyn Fn(&str) -> query::Value + Send + Sync>,
        pub(crate) down: AtomicBool,
        pub(crate) series_calls: AtomicU64,
        pub(crate) queries: Mutex<Vec<String>>,
        /// How long a series listing takes.
        pub(crate) series_delay: Mutex<Duration>,
    }

    impl MemorySource {
        pub(crate) fn new(
            series: Vec<tsdb::Labels>,
            answer: impl Fn(&str) -> query::Value + Send + Sync + 'static,
        ) -> Self {
            MemorySource {
                series,
                answer: Box::new(answer),
                down: AtomicBool::new(false),
                series_calls: AtomicU64::new(0),
                queries: Mutex::new(Vec::new()),
                series_delay: Mutex::new(Duration::ZERO),
            }
        }
    }

    impl ExternalSource for MemorySource {
        fn describe(&self) -> &str {
            "memory"
        }

        fn series(&self, _: &str, _: i64, _: i64) -> Result<Vec<tsdb::Labels>, ExternalSourceError> {
            self.series_calls.fetch_add(1, Ordering::Relaxed);
            let delay = *self.series_delay.lock();
            std::thread::sleep(delay);
            if self.down.load(Ordering::Relaxed) {
                return Err(ExternalSourceError::Unavailable("connection refused".into()));
            }
            Ok(self.series.clone())
        }

        fn instant_query(&self, query: &str, _: i64) -> Result<query::Value, ExternalSourceError> {
            self.queries.lock().push(query.to_string());
            if self.down.load(Ordering::Relaxed) {
                return Err(ExternalSourceError::Unavailable("connection refused".into()));
            }
            Ok((self.answer)(query))
        }
    }

    fn source() -> Arc<MemorySource> {
        let series = vec![tsdb::Labels::from_pairs([("__name__", "gpu_util"), ("namespace", "ml"), ("pod", "a")])];
        Arc::new(MemorySource::new(series, |_| query::Value::Vector(Vec::new())))
    }

    #[test]
    fn listings_are_cached_refreshed_and_survive_an_outage() {
        let memory = source();
        let mut catalog = ExternalCatalog::new(memory.clone(), Duration::from_millis(200));
        catalog.forced_min_interval = Duration::from_millis(100);
        let first = catalog.listing("{__name__=~\"gpu.*\"}", 0, 1, false).unwrap();
        assert_eq!(first.get("gpu_util").map(|l| l.len()), Some(2), "namespace and pod");
        for _ in 0..10 {
            catalog.listing("{__name__=~\"gpu.*\"}", 0, 1, true).unwrap();
        }
        assert_eq!(memory.series_calls.load(Ordering::Relaxed), 1, "forced listings within the interval share one");

        memory.down.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(250));
        let kept = catalog.listing("{__name__=~\"gpu.*\"}", 0, 1, false).unwrap();
        assert!(kept.contains_key("gpu_util"), "a failed refresh keeps the last good listing");
        assert_eq!(memory.series_calls.load(Ordering::Relaxed), 2);

        let never = catalog.listing("other", 0, 1, false).unwrap_err();
        assert!(never.contains("connection refused"), "{never}");
    }

    #[test]
    fn a_slow_refresh_does_not_hold_up_other_requests() {
        let memory = source();
        let catalog = Arc::new(ExternalCatalog::new(memory.clone(), Duration::from_millis(100)));
        catalog.listing("q", 0, 1, false).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        *memory.series_delay.lock() = Duration::from_millis(800);
        let refreshing = {
            let catalog = catalog.clone();
            std::thread::spawn(move || catalog.listing("q", 0, 1, false).map(|names| names.len()))
        };
        std::thread::sleep(Duration::from_millis(100));
        let asked = std::time::Instant::now();
        let served = catalog.listing("q", 0, 1, false).unwrap();
        assert!(asked.elapsed() < Duration::from_millis(400), "served the earlier listing at once");
        assert!(served.contains_key("gpu_util"));
        assert_eq!(refreshing.join().unwrap(), Ok(1));
        assert_eq!(memory.series_calls.load(Ordering::Relaxed), 2, "one refresh, not two");

        // With no listing yet, a second request waits for the first one's answer instead.
        let fresh = source();
        *fresh.series_delay.lock() = Duration::from_millis(300);
        let catalog = Arc::new(ExternalCatalog::new(fresh.clone(), Duration::from_secs(60)));
        let first = {
            let catalog = catalog.clone();
            std::thread::spawn(move || catalog.listing("q", 0, 1, false).is_ok())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(catalog.listing("q", 0, 1, false).is_ok(), "waited for the first listing");
        assert!(first.join().unwrap());
        assert_eq!(fresh.series_calls.load(Ordering::Relaxed), 1);
    }
}
