//! `Discovery` is which custom and external metrics exist right now: every rule's `seriesQuery`
//! run against the store over the last `lookback` (prometheus-adapter's metrics max age), series
//! names passed through the rule's filters and naming, and label names turned into resources.
//!
//! There is no relist interval. A snapshot is reused only while the rules' generation and the
//! store's series count are unchanged and it is younger than `max_age` (so series ageing out of
//! the window disappear); a request for a metric the snapshot lacks rebuilds it at once, so a
//! series ingested now is answerable on the next request.

use super::naming::{CompiledRule, RuleKind};
use super::resources::{GroupResource, ObjectResolver, ResourceInfo};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The rules in force, compiled, with a generation bumped on every reload.
#[derive(Debug)]
pub struct RuleSet {
    pub generation: u64,
    /// Where the rules came from (a file path, or "embedded default").
    pub source: String,
    pub custom: Vec<CompiledRule>,
    pub external: Vec<CompiledRule>,
}

/// A custom metric for one resource.
#[derive(Debug, Clone)]
pub struct CustomEntry {
    /// Index into `RuleSet::custom`.
    pub rule: usize,
    pub series_name: String,
    pub metric_name: String,
    pub resource: ResourceInfo,
    /// The label naming objects of `resource` in the series.
    pub label: String,
    /// Requested under `/namespaces/{ns}/…` (true) or at the root (false).
    pub namespaced: bool,
}

/// An external metric.
#[derive(Debug, Clone)]
pub struct ExternalEntry {
    /// Index into `RuleSet::external`.
    pub rule: usize,
    pub series_name: String,
    pub metric_name: String,
}

/// What is served at one moment.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub series_count: u64,
    pub built_at: Instant,
    pub custom: Vec<CustomEntry>,
    pub external: Vec<ExternalEntry>,
    custom_index: HashMap<(GroupResource, String, bool), usize>,
}

impl Snapshot {
    /// The entry serving `metric` on `resource`, requested namespaced or not.
    pub fn find_custom(&self, resource: &GroupResource, metric: &str, namespaced: bool) -> Option<&CustomEntry> {
        self.custom_index.get(&(resource.clone(), metric.to_string(), namespaced)).map(|&i| &self.custom[i])
    }

    pub fn find_external(&self, metric: &str) -> Option<&ExternalEntry> {
        self.external.iter().find(|e| e.metric_name == metric)
    }

    /// Whether any rule serves `metric` for `resource` in either scope.
    pub fn has_custom_metric(&self, resource: &GroupResource, metric: &str) -> bool {
        self.find_custom(resource, metric, true).is_some() || self.find_custom(resource, metric, false).is_some()
    }
}

/// Builds a snapshot from the store.
pub fn discover(
    rules: &RuleSet,
    db: &tsdb::Db,
    resolver: &dyn ObjectResolver,
    lookback: Duration,
    now_ms: i64,
) -> Result<Snapshot, tsdb::Error> {
    let series_count = db.stats().series;
    let mint_ms = now_ms - lookback.as_millis() as i64;
    // Rules with the same seriesQuery share one store call, as in prometheus-adapter.
    let mut by_query: HashMap<String, BTreeMap<String, BTreeSet<String>>> = HashMap::new();
    let mut names_for = |rule: &CompiledRule| -> Result<BTreeMap<String, BTreeSet<String>>, tsdb::Error> {
        if let Some(found) = by_query.get(rule.series_query.as_str()) {
            return Ok(found.clone());
        }
        let mut label_names_by_series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for labels in db.series(&rule.series_matchers, mint_ms, now_ms)? {
            let Some(name) = labels.metric_name() else { continue };
            let entry = label_names_by_series.entry(name.to_string()).or_default();
            for label in labels.iter() {
                if label.name != tsdb::METRIC_NAME && !entry.contains(&label.name) {
                    entry.insert(label.name.clone());
                }
            }
        }
        by_query.insert(rule.series_query.clone(), label_names_by_series.clone());
        Ok(label_names_by_series)
    };

    let mut custom = Vec::new();
    let mut custom_index = HashMap::new();
    for (rule_index, rule) in rules.custom.iter().enumerate() {
        debug_assert_eq!(rule.kind, RuleKind::Custom, "BUG: external rule in the custom list");
        for (series_name, label_names) in names_for(rule)? {
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
                    series_name: series_name.clone(),
                    metric_name: metric_name.clone(),
                    resource: info,
                    label,
                    namespaced,
                });
            }
        }
    }
    let mut external: Vec<ExternalEntry> = Vec::new();
    for (rule_index, rule) in rules.external.iter().enumerate() {
        for series_name in names_for(rule)?.into_keys() {
            let Some(metric_name) = rule.metric_name(&series_name) else { continue };
            if external.iter().all(|e| e.metric_name != metric_name) {
                external.push(ExternalEntry { rule: rule_index, series_name, metric_name });
            }
        }
    }
    Ok(Snapshot {
        generation: rules.generation,
        series_count,
        built_at: Instant::now(),
        custom,
        external,
        custom_index,
    })
}

/// A cached snapshot, rebuilt when stale.
pub struct Discovery {
    cached: Mutex<Option<Arc<Snapshot>>>,
    /// Rebuild at least this often even when nothing seems to change.
    pub max_age: Duration,
    pub lookback: Duration,
}

impl Discovery {
    pub fn new(lookback: Duration, max_age: Duration) -> Self {
        Discovery { cached: Mutex::new(None), max_age, lookback }
    }

    /// The current snapshot; `force` rebuilds it regardless of the cache.
    pub fn snapshot(
        &self,
        rules: &RuleSet,
        db: &tsdb::Db,
        resolver: &dyn ObjectResolver,
        force: bool,
    ) -> Result<Arc<Snapshot>, tsdb::Error> {
        if !force {
            if let Some(snapshot) = self.cached.lock().as_ref() {
                let fresh = snapshot.generation == rules.generation
                    && snapshot.built_at.elapsed() < self.max_age
                    && snapshot.series_count == db.stats().series;
                if fresh {
                    return Ok(snapshot.clone());
                }
            }
        }
        let snapshot = Arc::new(discover(rules, db, resolver, self.lookback, super::now_ms())?);
        *self.cached.lock() = Some(snapshot.clone());
        Ok(snapshot)
    }
}
