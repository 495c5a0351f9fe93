//! `SeriesDiscovery` is which custom and external metrics exist right now (series discovery,
//! not Kubernetes API discovery): every rule's `seriesQuery` run against the store's series index
//! (`Db::series`, labels only, no samples) over the last `lookback` (prometheus-adapter's metrics
//! max age), series names passed through the rule's filters and naming, and label names turned
//! into resources.
//!
//! With an external query source ([`ExternalCatalog`], prometheus-adapter's `--prometheus-url`),
//! a rule's `seriesQuery` is also listed at the source (`/api/v1/series`, cached per query): by
//! default (`querySource: auto`) a series in the store is served from the store and a series only
//! the source has is served from the source; `querySource: local` / `external` pick one.
//!
//! There is no relist interval for the store. A snapshot is reused only while the rules' generation and the
//! store's series count are unchanged and it is younger than `max_age` (so series ageing out of
//! the window disappear). A request for a metric the snapshot lacks rebuilds it at once — but at
//! most once per [`FORCED_REDISCOVERY_MIN_INTERVAL`], so a client asking again and again for a
//! metric that does not exist cannot make every request list the whole index.

use super::external::{label_names_by_series, ExternalCatalog, LabelNamesBySeries};
use super::resources::{GroupResource, ObjectResolver, ResourceInfo};
use crate::adapter::rules::config::RuleQuerySource;
use crate::adapter::rules::{CompiledRule, RuleKind, RuleSet};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shortest time between two rebuilds forced by requests for a metric the snapshot lacks. A
/// series that arrives changes the store's series count, which rebuilds the snapshot on the next
/// request anyway; this bounds the rest (a client polling an unknown metric) to one index scan
/// per second, and a new series shows up at most this late in the case the count does not catch.
pub(crate) const FORCED_REDISCOVERY_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Where a metric's series are and its queries run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeriesSource {
    /// Ringtail's store (the query engine, in-process).
    Local,
    /// The external query source.
    External,
}

/// A custom metric for one resource.
#[derive(Debug, Clone)]
pub(crate) struct CustomEntry {
    /// Index into `RuleSet::custom`.
    pub(crate) rule: usize,
    pub(crate) source: SeriesSource,
    pub(crate) series_name: String,
    pub(crate) metric_name: String,
    pub(crate) resource: ResourceInfo,
    /// The label naming objects of `resource` in the series.
    pub(crate) label: String,
    /// Requested under `/namespaces/{ns}/…` (true) or at the root (false).
    pub(crate) namespaced: bool,
}

/// An external metric.
#[derive(Debug, Clone)]
pub(crate) struct ExternalEntry {
    /// Index into `RuleSet::external`.
    pub(crate) rule: usize,
    pub(crate) source: SeriesSource,
    pub(crate) series_name: String,
    pub(crate) metric_name: String,
}

/// What is served at one moment.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) generation: u64,
    pub(crate) series_count: u64,
    pub(crate) built_at: Instant,
    pub(crate) custom: Vec<CustomEntry>,
    pub(crate) external: Vec<ExternalEntry>,
    custom_index: HashMap<(GroupResource, String, bool), usize>,
    /// Rules whose external series could not be listed (the source never answered, or none is
    /// configured): a request for a metric the snapshot lacks is then 503 with these, not 404.
    pub(crate) external_errors: Vec<String>,
}

impl Snapshot {
    /// The entry serving `metric` on `resource`, requested namespaced or not.
    pub(crate) fn find_custom(&self, resource: &GroupResource, metric: &str, namespaced: bool) -> Option<&CustomEntry> {
        self.custom_index.get(&(resource.clone(), metric.to_string(), namespaced)).map(|&i| &self.custom[i])
    }

    pub(crate) fn find_external(&self, metric: &str) -> Option<&ExternalEntry> {
        self.external.iter().find(|e| e.metric_name == metric)
    }

    /// Whether any rule serves `metric` for `resource` in either scope.
    pub(crate) fn has_custom_metric(&self, resource: &GroupResource, metric: &str) -> bool {
        self.find_custom(resource, metric, true).is_some() || self.find_custom(resource, metric, false).is_some()
    }
}

/// Builds a snapshot from the store and, for rules that read it, the external source.
pub(crate) fn discover(
    rules: &RuleSet,
    db: &tsdb::Db,
    external: Option<&ExternalCatalog>,
    resolver: &dyn ObjectResolver,
    lookback: Duration,
    now_ms: i64,
    force: bool,
) -> Result<Snapshot, tsdb::Error> {
    let series_count = db.stats().series;
    let mint_ms = now_ms - lookback.as_millis() as i64;
    // Rules with the same seriesQuery share one store call (and one source listing), as in
    // prometheus-adapter.
    let mut local_by_query: HashMap<String, Arc<LabelNamesBySeries>> = HashMap::new();
    let mut external_errors = Vec::new();
    let mut names_for = |rule: &CompiledRule| -> Result<Vec<(String, BTreeSet<String>, SeriesSource)>, tsdb::Error> {
        let mode = match (rule.query_source, external) {
            (Some(mode), _) => mode,
            (None, Some(_)) => RuleQuerySource::Auto,
            (None, None) => RuleQuerySource::Local,
        };
        let mut out = Vec::new();
        let mut local = None;
        if mode != RuleQuerySource::External {
            let found = match local_by_query.get(rule.series_query.as_str()) {
                Some(found) => found.clone(),
                None => {
                    let series = db.series(&rule.series_matchers, mint_ms, now_ms)?;
                    let found = Arc::new(label_names_by_series(&series));
                    local_by_query.insert(rule.series_query.clone(), found.clone());
                    found
                }
            };
            out.extend(found.iter().map(|(name, labels)| (name.clone(), labels.clone(), SeriesSource::Local)));
            local = Some(found);
        }
        if mode == RuleQuerySource::Local {
            return Ok(out);
        }
        let Some(catalog) = external else {
            if mode == RuleQuerySource::External {
                external_errors.push(format!(
                    "{} has querySource: external but no external query source is configured (--prometheus-url)",
                    rule.at
                ));
            }
            return Ok(out);
        };
        match catalog.listing(&rule.series_query, mint_ms, now_ms, force) {
            Ok(listed) => {
                // A series the store has is served from the store.
                let in_store = |name: &String| local.as_ref().is_some_and(|local| local.contains_key(name));
                for (name, labels) in listed.iter().filter(|(name, _)| !in_store(name)) {
                    out.push((name.clone(), labels.clone(), SeriesSource::External));
                }
            }
            Err(e) => external_errors.push(format!("{}: {e}", rule.at)),
        }
        Ok(out)
    };

    let mut custom = Vec::new();
    let mut custom_index = HashMap::new();
    for (rule_index, rule) in rules.custom.iter().enumerate() {
        debug_assert_eq!(rule.kind, RuleKind::Custom, "BUG: external rule in the custom list");
        for (series_name, label_names, source) in names_for(rule)? {
            let Some(metric_name) = rule.metric_name(&series_name) else { continue };
            let resources = rule.resources_for_labels(label_names.iter().map(String::as_str), resolver);
            let has_namespace = resources.iter().any(|(info, _)| info.group_resource == GroupResource::namespaces());
            for (info, label) in resources {
                let is_namespaces = info.group_resource == GroupResource::namespaces();
                let namespaced = has_namespace && info.namespaced && !is_namespaces;
                let key = (info.group_resource.clone(), metric_name.clone(), namespaced);
                if custom_index.contains_key(&key) {
                    continue; // the first rule producing a metric wins
                }
                custom_index.insert(key, custom.len());
                custom.push(CustomEntry {
                    rule: rule_index,
                    source,
                    series_name: series_name.clone(),
                    metric_name: metric_name.clone(),
                    resource: info,
                    label,
                    namespaced,
                });
            }
        }
    }
    let mut external_entries: Vec<ExternalEntry> = Vec::new();
    for (rule_index, rule) in rules.external.iter().enumerate() {
        for (series_name, _, source) in names_for(rule)? {
            let Some(metric_name) = rule.metric_name(&series_name) else { continue };
            if external_entries.iter().all(|e: &ExternalEntry| e.metric_name != metric_name) {
                external_entries.push(ExternalEntry { rule: rule_index, source, series_name, metric_name });
            }
        }
    }
    Ok(Snapshot {
        generation: rules.generation,
        series_count,
        built_at: Instant::now(),
        custom,
        external: external_entries,
        custom_index,
        external_errors,
    })
}

/// A cached snapshot, rebuilt when stale.
pub(crate) struct SeriesDiscovery {
    cached: Mutex<Option<Arc<Snapshot>>>,
    /// Rebuild at least this often even when nothing seems to change.
    max_age: Duration,
    lookback: Duration,
    /// Shortest time between rebuilds forced by a request ([`FORCED_REDISCOVERY_MIN_INTERVAL`]).
    forced_min_interval: Duration,
    /// Snapshots built so far.
    rebuilds: AtomicU64,
    /// The external query source, when one is configured.
    external: Option<ExternalCatalog>,
}

impl SeriesDiscovery {
    pub(crate) fn new(lookback: Duration, max_age: Duration) -> Self {
        SeriesDiscovery {
            cached: Mutex::new(None),
            max_age,
            lookback,
            forced_min_interval: FORCED_REDISCOVERY_MIN_INTERVAL,
            rebuilds: AtomicU64::new(0),
            external: None,
        }
    }

    /// Lists series at `external` too, for the rules that read it.
    pub(crate) fn with_external(mut self, external: ExternalCatalog) -> Self {
        self.external = Some(external);
        self
    }

    /// The external query source, when one is configured.
    pub(crate) fn external(&self) -> Option<&ExternalCatalog> {
        self.external.as_ref()
    }

    /// Snapshots built so far (every rebuild lists the store's series index).
    #[cfg(test)]
    pub(crate) fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::Relaxed)
    }

    /// The current snapshot. `force` (the request's metric is missing from it) rebuilds it
    /// regardless of the cache, unless the cached one is younger than the forced-rebuild interval.
    pub(crate) fn snapshot(
        &self,
        rules: &RuleSet,
        db: &tsdb::Db,
        resolver: &dyn ObjectResolver,
        force: bool,
    ) -> Result<Arc<Snapshot>, tsdb::Error> {
        if let Some(snapshot) = self.cached.lock().as_ref() {
            let current = snapshot.generation == rules.generation;
            let fresh =
                current && snapshot.built_at.elapsed() < self.max_age && snapshot.series_count == db.stats().series;
            let recently_built = snapshot.built_at.elapsed() < self.forced_min_interval;
            if fresh && (!force || recently_built) {
                return Ok(snapshot.clone());
            }
        }
        let snapshot =
            Arc::new(discover(rules, db, self.external.as_ref(), resolver, self.lookback, tsdb::now_ms(), force)?);
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        *self.cached.lock() = Some(snapshot.clone());
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::provider::resources::BuiltinResolver;
    use crate::adapter::rules::config::AdapterConfig;

    fn append(db: &tsdb::Db, name: &str, pod: &str) {
        let labels = [("__name__", name), ("namespace", "ml"), ("pod", pod)];
        let samples = [tsdb::Sample::new(tsdb::now_ms() - 1_000, 1.0)];
        db.append(&[tsdb::SeriesSamples::labels(&labels, &samples)]).unwrap();
    }

    #[test]
    fn forced_rediscovery_is_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let db = tsdb::Db::open(tsdb::Options::new(dir.path())).unwrap();
        append(&db, "known", "a");
        let config = AdapterConfig::embedded_default(Duration::from_secs(300));
        let rules = crate::adapter::rules::compile_rules(&config, "test".into(), &BuiltinResolver).unwrap();
        let mut discovery = SeriesDiscovery::new(Duration::from_secs(600), Duration::from_secs(60));
        discovery.forced_min_interval = Duration::from_millis(300);
        discovery.snapshot(&rules, &db, &BuiltinResolver, false).unwrap();
        for _ in 0..20 {
            let snapshot = discovery.snapshot(&rules, &db, &BuiltinResolver, true).unwrap();
            assert!(snapshot.find_custom(&GroupResource::new("", "pods"), "unknown", true).is_none());
        }
        assert_eq!(discovery.rebuilds(), 1, "requests for an unknown metric within the interval share one listing");

        std::thread::sleep(Duration::from_millis(350));
        discovery.snapshot(&rules, &db, &BuiltinResolver, true).unwrap();
        assert_eq!(discovery.rebuilds(), 2, "after the interval a forced request lists the index again");

        append(&db, "arrived", "a");
        let snapshot = discovery.snapshot(&rules, &db, &BuiltinResolver, true).unwrap();
        assert!(
            snapshot.find_custom(&GroupResource::new("", "pods"), "arrived", true).is_some(),
            "a new series changes the series count and is found at once, interval or not"
        );
        assert_eq!(discovery.rebuilds(), 3);
    }
}
