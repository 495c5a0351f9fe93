//! `Provider` answers the metrics APIs' questions — which metrics exist, and the values of a
//! metric for an object, a set of objects, or an external metric — from the store, the rules and
//! an [`ObjectResolver`]. It is pure logic: no HTTP and no Kubernetes types beyond plain
//! structs, so it is tested directly and the routes stay thin.
//!
//! A custom-metrics request is answered in four steps, each a function below: find the rule
//! (`find_custom_rule`) → resolve the objects (`resolve_objects`) → run the query
//! (`run_custom_query`) → shape the answer (`shape_custom_answer`).
//!
//! Value rules: an Object request answers exactly one item or `NotFound`; a Pods request
//! answers exactly the resolved objects that have a value (the HPA averages every item it gets);
//! a sample whose value is NaN or ±Inf is left out (and an Object request for it is `NotFound`
//! saying so), because no Quantity can carry it and a made-up number would steer the HPA.

use super::external::ExternalSourceError;
use super::owners::OwnerRule;
use super::quantity::Quantity;
use super::resources::{GroupResource, ObjectQuery, ObjectResolver, SeriesHint};
use super::series_discovery::{CustomEntry, SeriesDiscovery, SeriesSource, Snapshot};
use super::ProviderError;
use crate::adapter::rules::query::{BuiltQuery, ObjectNames, QueryForm, QueryInput};
use crate::adapter::rules::selector::LabelSelector;
use crate::adapter::rules::{CompiledRule, RuleError, RuleSet};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Which objects a custom-metrics request is about.
#[derive(Debug, Clone)]
pub(crate) enum ObjectSelection {
    /// One named object.
    Named(String),
    /// `*`: every object the label selector picks.
    Selector(LabelSelector),
    /// These objects, sorted and never empty (the pods of an owner, for `ownerAggregation`).
    Names(Vec<String>),
}

/// A custom-metrics request, independent of the API version.
#[derive(Debug, Clone)]
pub(crate) struct CustomMetricRequest {
    pub(crate) resource: GroupResource,
    /// The namespace of a namespaced request; `None` for root-scoped resources and namespaces.
    pub(crate) namespace: Option<String>,
    pub(crate) objects: ObjectSelection,
    pub(crate) metric: String,
    pub(crate) metric_selector: LabelSelector,
}

/// The values of a custom metric: what every item shares, stated once, and one entry per object
/// (a 1 000-pod answer then costs one small allocation per pod, not five).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MetricValues {
    /// Kind and apiVersion of the described objects.
    pub(crate) kind: String,
    pub(crate) api_version: String,
    /// Namespace of the described objects (`None` for cluster-scoped resources).
    pub(crate) namespace: Option<String>,
    pub(crate) metric: String,
    pub(crate) window_seconds: Option<i64>,
    /// Sorted by object name, one per name.
    pub(crate) items: Vec<MetricValueItem>,
}

/// One value of a custom metric.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MetricValueItem {
    /// The described object's name.
    pub(crate) name: String,
    pub(crate) ts_ms: i64,
    pub(crate) value: Quantity,
}

/// An external-metrics request.
#[derive(Debug, Clone)]
pub(crate) struct ExternalMetricRequest {
    pub(crate) namespace: String,
    pub(crate) metric: String,
    pub(crate) selector: LabelSelector,
}

/// One value of an external metric.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExternalValueItem {
    pub(crate) metric: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) ts_ms: i64,
    pub(crate) window_seconds: Option<i64>,
    pub(crate) value: Quantity,
}

/// Query results as (the object a sample describes, if labelled; time; value).
type ObjectSamples = Vec<(Option<String>, i64, f64)>;

/// The rule serving a custom-metrics request, and the series it reads.
struct CustomTarget {
    /// The rules `rule` indexes (a reload during the request does not change them under it).
    rules: Arc<RuleSet>,
    entry: CustomEntry,
}

impl CustomTarget {
    fn rule(&self) -> Result<&CompiledRule, ProviderError> {
        self.rules.custom.get(self.entry.rule).ok_or_else(rules_changed)
    }

    /// The answer with no items (a selector that picks no object).
    fn empty_answer(&self, request: &CustomMetricRequest, window_seconds: Option<i64>) -> MetricValues {
        let info = &self.entry.resource;
        MetricValues {
            kind: info.kind.clone(),
            api_version: info.api_version.clone(),
            namespace: if info.namespaced { request.namespace.clone() } else { None },
            metric: request.metric.clone(),
            window_seconds,
            items: Vec::new(),
        }
    }
}

/// What serves a custom-metrics request.
enum RuleMatch {
    /// A rule for the requested resource.
    Direct(CustomTarget),
    /// A pods rule with `ownerAggregation`, for an owner of pods.
    ViaOwnedPods(OwnerRule),
}

/// The objects of a request, resolved.
enum ResolvedNames<'r> {
    One(&'r str),
    /// Given by the request (an owner's pods), sorted.
    Given(&'r [String]),
    /// Listed by the resolver for a label selector, sorted, never empty.
    Listed(Vec<String>),
    /// Every object with the resource label (narrowed by `selector_matchers`, if any).
    All,
}

impl ResolvedNames<'_> {
    fn as_object_names(&self) -> ObjectNames<'_> {
        match self {
            ResolvedNames::One(name) => ObjectNames::One(name),
            ResolvedNames::Given(names) => ObjectNames::Set(names),
            ResolvedNames::Listed(names) => ObjectNames::Set(names),
            ResolvedNames::All => ObjectNames::All,
        }
    }
}

/// The objects of a request and the matchers that select them from the series' own labels.
struct ResolvedObjects<'r> {
    names: ResolvedNames<'r>,
    /// A label selector answered from the series' labels: added to every selector of the query.
    selector_matchers: Vec<tsdb::Matcher>,
}

/// The adapter's brain. Cheap to share; every method takes `&self` and may block briefly on the
/// store and the query engine (call it from `spawn_blocking`).
pub struct Provider {
    db: Arc<tsdb::Db>,
    engine: Arc<query::Engine>,
    resolver: Arc<dyn ObjectResolver>,
    rules: RwLock<Arc<RuleSet>>,
    discovery: SeriesDiscovery,
    /// The last evaluation of the resource rules for every pod (`metrics.k8s.io`).
    pub(super) resource_snapshots: Arc<super::resource_metrics::ResourceSnapshots>,
}

impl Provider {
    pub(crate) fn new(
        db: Arc<tsdb::Db>,
        engine: Arc<query::Engine>,
        resolver: Arc<dyn ObjectResolver>,
        rules: RuleSet,
        discovery: SeriesDiscovery,
    ) -> Self {
        Provider {
            db,
            engine,
            resolver,
            rules: RwLock::new(Arc::new(rules)),
            discovery,
            resource_snapshots: Arc::default(),
        }
    }

    pub(crate) fn resolver(&self) -> &Arc<dyn ObjectResolver> {
        &self.resolver
    }

    pub(super) fn engine(&self) -> &Arc<query::Engine> {
        &self.engine
    }

    /// The rules in force.
    pub(crate) fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().clone()
    }

    /// Replaces the rules (a reload); the next request sees them.
    pub(crate) fn replace_rules(&self, mut rules: RuleSet) {
        let mut current = self.rules.write();
        rules.generation = current.generation + 1;
        *current = Arc::new(rules);
    }

    /// Which metrics exist now; `force` asks for a fresh listing (rate-limited by discovery).
    pub(super) fn snapshot(&self, force: bool) -> Result<Arc<Snapshot>, ProviderError> {
        let rules = self.rules();
        self.discovery
            .snapshot(&rules, &self.db, self.resolver.as_ref(), force)
            .map_err(|e| ProviderError::internal(format!("listing series: {e}")))
    }

    /// `(resource/metric, namespaced)` for the custom-metrics `APIResourceList`, sorted.
    pub(crate) fn list_custom(&self) -> Result<Vec<(String, bool)>, ProviderError> {
        let snapshot = self.snapshot(false)?;
        let mut out: Vec<(String, bool)> = snapshot
            .custom
            .iter()
            .map(|e| (format!("{}/{}", e.resource.group_resource, e.metric_name), e.namespaced))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// External metric names, sorted.
    pub(crate) fn list_external(&self) -> Result<Vec<String>, ProviderError> {
        let snapshot = self.snapshot(false)?;
        let mut out: Vec<String> = snapshot.external.iter().map(|e| e.metric_name.clone()).collect();
        out.sort();
        Ok(out)
    }

    /// Values of a custom metric: find the rule → resolve the objects → run the query → shape
    /// the answer.
    pub(crate) fn custom_metric(&self, request: &CustomMetricRequest) -> Result<MetricValues, ProviderError> {
        let target = match self.find_custom_rule(request)? {
            RuleMatch::Direct(target) => target,
            RuleMatch::ViaOwnedPods(owner_rule) => return self.owner_metric(request, &owner_rule),
        };
        let Some(objects) = self.resolve_objects(request, &target)? else {
            return Ok(target.empty_answer(request, None));
        };
        let names = objects.names.as_object_names();
        let (samples, window_seconds) = self.run_custom_query(request, &target, names, objects.selector_matchers)?;
        shape_custom_answer(request, &target, names, window_seconds, samples)
    }

    /// Step 3: the query of `request` built from the rule and run now: each sample with the
    /// object it describes, and the query's window.
    fn run_custom_query(
        &self,
        request: &CustomMetricRequest,
        target: &CustomTarget,
        names: ObjectNames<'_>,
        selector_matchers: Vec<tsdb::Matcher>,
    ) -> Result<(ObjectSamples, Option<i64>), ProviderError> {
        let rule = target.rule()?;
        let mut query = rule
            .build_query(
                &QueryInput {
                    series: &target.entry.series_name,
                    resource: &target.entry.resource.group_resource,
                    namespace: request.namespace.as_deref(),
                    names,
                    metric_selector: &request.metric_selector,
                },
                self.resolver.as_ref(),
            )
            .map_err(rule_error)?;
        query.extra_matchers.extend(selector_matchers);
        let samples = match self.run_query(rule, &query, target.entry.source)? {
            query::Value::Vector(samples) => {
                samples.into_iter().map(|s| (take_label(s.labels, &query.resource_label), s.ts_ms, s.value)).collect()
            }
            query::Value::Scalar { ts_ms, value } => vec![(None, ts_ms, value)],
            other => return Err(not_a_vector(rule, &query, &other)),
        };
        Ok((samples, query.window_seconds))
    }

    /// Step 1: the rule serving `request` — looked up in the snapshot, then in a fresh one (a
    /// series may have arrived since), then as an owner of pods.
    fn find_custom_rule(&self, request: &CustomMetricRequest) -> Result<RuleMatch, ProviderError> {
        let namespaced = request.namespace.is_some();
        let lookup = |snapshot: &Snapshot, resource: &Option<GroupResource>| {
            resource.as_ref().and_then(|r| snapshot.find_custom(r, &request.metric, namespaced).cloned())
        };
        let mut snapshot = self.snapshot(false)?;
        let mut resource = self.normalize(&request.resource, &snapshot);
        let mut entry = lookup(&snapshot, &resource);
        if entry.is_none() {
            // No relist interval: look again now (discovery bounds how often).
            snapshot = self.snapshot(true)?;
            resource = self.normalize(&request.resource, &snapshot);
            entry = lookup(&snapshot, &resource);
        }
        if let Some(entry) = entry {
            return Ok(RuleMatch::Direct(CustomTarget { rules: self.rules(), entry }));
        }
        if let Some(r) = &resource {
            if let Some(owner_rule) = self.owner_rule(request, r, &snapshot) {
                return Ok(RuleMatch::ViaOwnedPods(owner_rule));
            }
            if snapshot.has_custom_metric(r, &request.metric) {
                let scope = if namespaced { "namespaced" } else { "root-scoped" };
                return Err(ProviderError::not_found(format!(
                    "the metric {} for {r} is not served as a {scope} metric",
                    request.metric
                )));
            }
        }
        if !snapshot.external_errors.is_empty() {
            return Err(unlisted_external(&request.metric, &snapshot));
        }
        Err(ProviderError::not_found(format!(
            "the server could not find the metric {} for {}",
            request.metric, request.resource
        )))
    }

    /// Normalizes a resource from a URL (`pods`, `models.mlops.seldon.io`, `pod`).
    pub(super) fn normalize(&self, resource: &GroupResource, snapshot: &Snapshot) -> Option<GroupResource> {
        if snapshot.custom.iter().any(|e| &e.resource.group_resource == resource) {
            return Some(resource.clone());
        }
        self.resolver.resource_info(&resource.group, &resource.resource).map(|info| info.group_resource)
    }

    /// Step 2: the objects `request` names; `None` when its label selector picks none.
    fn resolve_objects<'r>(
        &self,
        request: &'r CustomMetricRequest,
        target: &CustomTarget,
    ) -> Result<Option<ResolvedObjects<'r>>, ProviderError> {
        let rule = target.rule()?;
        let entry = &target.entry;
        let names = |names| Ok(Some(ResolvedObjects { names, selector_matchers: Vec::new() }));
        let selector = match &request.objects {
            ObjectSelection::Named(name) => return names(ResolvedNames::One(name)),
            ObjectSelection::Names(given) => return names(ResolvedNames::Given(given)),
            ObjectSelection::Selector(selector) if selector.is_empty() && !entry.resource.namespaced => {
                return names(ResolvedNames::All)
            }
            ObjectSelection::Selector(selector) => selector,
        };
        let namespace_label = rule.label_for_resource(&GroupResource::namespaces(), self.resolver.as_ref());
        let object_query = ObjectQuery {
            resource: &entry.resource,
            namespace: request.namespace.as_deref(),
            selector,
            hint: SeriesHint {
                series_name: &entry.series_name,
                resource_label: &entry.label,
                namespace_label: namespace_label.as_deref(),
            },
        };
        if let Some(selector_matchers) = self.resolver.selector_matchers(&object_query) {
            // Answered from the series' own labels: one filtered query, no name list.
            return Ok(Some(ResolvedObjects { names: ResolvedNames::All, selector_matchers }));
        }
        let listed = self.resolver.list_names(&object_query).map_err(|e| ProviderError::unavailable(e.to_string()))?;
        if listed.is_empty() {
            return Ok(None);
        }
        names(ResolvedNames::Listed(listed))
    }

    /// Evaluates `query` now, in the store or at the external source.
    fn run_query(
        &self,
        rule: &CompiledRule,
        query: &BuiltQuery<'_>,
        source: SeriesSource,
    ) -> Result<query::Value, ProviderError> {
        let now_ms = tsdb::now_ms();
        if source == SeriesSource::External {
            let external = self.discovery.external().ok_or_else(|| {
                ProviderError::internal("BUG: a metric of the external source with no source configured")
            })?;
            let text = query.external_text(rule).map_err(rule_error)?;
            let source = external.source();
            return source.instant_query(&text, now_ms).map_err(|e| {
                let message = format!("query {text:?} at the query source {}: {e}", source.describe());
                match e {
                    ExternalSourceError::Unavailable(_) => ProviderError::unavailable(message),
                    ExternalSourceError::Refused(_) => ProviderError::internal(message),
                }
            });
        }
        let result = match &query.form {
            QueryForm::Parsed { expr, text } => {
                self.engine.instant_expr(text, expr, now_ms, &query.extra_matchers).map(|output| output.value)
            }
            QueryForm::Text(text) => self.engine.instant_with_matchers(text, now_ms, &query.extra_matchers),
        };
        result.map_err(|e| query_error(&query_text(rule, query), e))
    }

    /// Values of an external metric: find the rule → run the query → shape the answer.
    pub(crate) fn external_metric(
        &self,
        request: &ExternalMetricRequest,
    ) -> Result<Vec<ExternalValueItem>, ProviderError> {
        let mut entry = self.snapshot(false)?.find_external(&request.metric).cloned();
        if entry.is_none() {
            let snapshot = self.snapshot(true)?;
            entry = snapshot.find_external(&request.metric).cloned();
            if entry.is_none() && !snapshot.external_errors.is_empty() {
                return Err(unlisted_external(&request.metric, &snapshot));
            }
        }
        let Some(entry) = entry else {
            return Err(ProviderError::not_found(format!(
                "the server could not find the external metric {}",
                request.metric
            )));
        };
        let rules = self.rules();
        let rule = rules.external.get(entry.rule).ok_or_else(rules_changed)?;
        let query = rule
            .build_external_query(&entry.series_name, &request.namespace, &request.selector, self.resolver.as_ref())
            .map_err(rule_error)?;
        let samples = match self.run_query(rule, &query, entry.source)? {
            query::Value::Vector(samples) => samples,
            query::Value::Scalar { ts_ms, value } => {
                vec![query::InstantSample { labels: tsdb::Labels::default(), ts_ms, value }]
            }
            other => return Err(not_a_vector(rule, &query, &other)),
        };
        Ok(shape_external_answer(request, query.window_seconds, samples))
    }
}

/// Step 4: the samples as the answer to `request`.
fn shape_custom_answer(
    request: &CustomMetricRequest,
    target: &CustomTarget,
    names: ObjectNames<'_>,
    window_seconds: Option<i64>,
    samples: ObjectSamples,
) -> Result<MetricValues, ProviderError> {
    let with_items =
        |items: Vec<MetricValueItem>| MetricValues { items, ..target.empty_answer(request, window_seconds) };
    match names {
        ObjectNames::One(name) => {
            let resource = &target.entry.resource.group_resource;
            let unlabeled_single = samples.len() == 1 && samples[0].0.is_none();
            let Some((_, ts_ms, value)) =
                samples.iter().find(|(label, _, _)| label.as_deref() == Some(name) || unlabeled_single)
            else {
                return Err(ProviderError::not_found(format!(
                    "the server could not find the metric {} for {resource} {name}",
                    request.metric
                )));
            };
            let quantity = Quantity::from_f64(*value).ok_or_else(|| {
                ProviderError::not_found(format!(
                    "the metric {} for {resource} {name} is {value}, which is not a number a Quantity can carry",
                    request.metric
                ))
            })?;
            Ok(with_items(vec![MetricValueItem { name: name.to_string(), ts_ms: *ts_ms, value: quantity }]))
        }
        ObjectNames::Set(wanted) => {
            Ok(with_items(collect_items(samples, |n| wanted.binary_search_by(|w| w.as_str().cmp(n)).is_ok())))
        }
        ObjectNames::All => Ok(with_items(collect_items(samples, |_| true))),
    }
}

/// The samples of an external metric as its values (NaN and ±Inf left out).
fn shape_external_answer(
    request: &ExternalMetricRequest,
    window_seconds: Option<i64>,
    samples: Vec<query::InstantSample>,
) -> Vec<ExternalValueItem> {
    samples
        .into_iter()
        .filter_map(|s| {
            let value = Quantity::from_f64(s.value)?;
            let labels = s
                .labels
                .iter()
                .filter(|l| l.name != tsdb::METRIC_NAME)
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            Some(ExternalValueItem { metric: request.metric.clone(), labels, ts_ms: s.ts_ms, window_seconds, value })
        })
        .collect()
}

/// A metric nobody lists while the external source could not be listed: it may exist there, so
/// the answer is "try again" (503), never "no such metric" and never a value.
fn unlisted_external(metric: &str, snapshot: &Snapshot) -> ProviderError {
    ProviderError::unavailable(format!(
        "the metric {metric} is not in the store and the external query source could not be listed: {}",
        snapshot.external_errors.join("; ")
    ))
}

fn rules_changed() -> ProviderError {
    ProviderError::unavailable("the rules changed during the request; retry")
}

/// The value of label `name`, moved out of `labels` (no copy).
fn take_label(labels: tsdb::Labels, name: &str) -> Option<String> {
    labels.into_vec().into_iter().find(|l| l.name == name).map(|l| l.value)
}

fn collect_items(samples: ObjectSamples, wanted: impl Fn(&str) -> bool) -> Vec<MetricValueItem> {
    let items: Vec<MetricValueItem> = samples
        .into_iter()
        .filter_map(|(name, ts_ms, value)| {
            let name = name.filter(|n| wanted(n))?;
            let value = Quantity::from_f64(value)?;
            Some(MetricValueItem { name, ts_ms, value })
        })
        .collect();
    let mut items = in_name_order(items, |item| &item.name);
    items.dedup_by(|a, b| a.name == b.name);
    items
}

/// `items` ordered by name as `str` orders them, those of equal names kept in their order.
///
/// The names of one owner's pods share all but their last few characters, so comparing whole
/// names costs a string comparison per step of the sort. Instead each item is keyed by the eight
/// bytes after the prefix every name shares (zero-padded: a name that ends first orders first),
/// and names are compared only where keys tie. Items already in order (series selected in label
/// order and grouped by the object's label alone) are returned as they are after one pass.
fn in_name_order<T>(items: Vec<T>, name: impl Fn(&T) -> &str) -> Vec<T> {
    if items.windows(2).all(|pair| name(&pair[0]) <= name(&pair[1])) {
        return items;
    }
    let shared = items.split_first().map_or(0, |(first, rest)| {
        let first = name(first).as_bytes();
        rest.iter().fold(first.len(), |shared, item| {
            first[..shared].iter().zip(name(item).as_bytes()).take_while(|(a, b)| a == b).count()
        })
    });
    fn after(name: &str, shared: usize) -> &[u8] {
        name.as_bytes().get(shared..).unwrap_or_default()
    }
    let mut order: Vec<(u64, usize)> = items
        .iter()
        .enumerate()
        .map(|(position, item)| {
            let mut key = [0u8; 8];
            for (slot, byte) in key.iter_mut().zip(after(name(item), shared)) {
                *slot = *byte;
            }
            (u64::from_be_bytes(key), position)
        })
        .collect();
    order.sort_unstable_by(|a, b| {
        let by_name = || after(name(&items[a.1]), shared).cmp(after(name(&items[b.1]), shared));
        a.0.cmp(&b.0).then_with(by_name).then(a.1.cmp(&b.1))
    });
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order.iter().filter_map(|&(_, position)| slots[position].take()).collect()
}

/// The query's text for messages (rendered only when a message needs it).
fn query_text(rule: &CompiledRule, query: &BuiltQuery<'_>) -> String {
    query.text(rule).unwrap_or_else(|e| e.to_string())
}

fn not_a_vector(rule: &CompiledRule, query: &BuiltQuery<'_>, value: &query::Value) -> ProviderError {
    let kind = match value {
        query::Value::Scalar { .. } => "scalar",
        query::Value::String { .. } => "string",
        query::Value::Vector(_) => "vector",
        query::Value::Matrix(_) => "matrix",
    };
    ProviderError::internal(format!("the query {:?} returned a {kind} instead of a vector", query_text(rule, query)))
}

fn rule_error(e: RuleError) -> ProviderError {
    match e {
        RuleError::BadRequest(message) => ProviderError::bad_request(message),
        other => ProviderError::internal(other.to_string()),
    }
}

pub(super) fn query_error(text: &str, e: query::QueryError) -> ProviderError {
    match e {
        query::QueryError::Timeout(_) | query::QueryError::TooManySamples(_) | query::QueryError::Cancelled(_) => {
            ProviderError::unavailable(format!("query {text:?}: {e}"))
        }
        other => ProviderError::internal(format!("query {text:?}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::provider::external::tests::MemorySource;
    use crate::adapter::provider::resources::{BuiltinResolver, ResolveError, ResourceInfo};
    use crate::adapter::provider::{ExternalCatalog, ProviderErrorKind};
    use crate::adapter::rules::config::AdapterConfig;
    use std::sync::atomic::Ordering;

    /// Builtin resources, plus a fixed owner table: Deployment `web` owns pods `web-a` and `web-b`.
    struct OwnersKnown;

    impl ObjectResolver for OwnersKnown {
        fn resource_info(&self, group: &str, resource: &str) -> Option<ResourceInfo> {
            BuiltinResolver.resource_info(group, resource)
        }

        fn list_names(&self, query: &ObjectQuery<'_>) -> Result<Vec<String>, ResolveError> {
            let all = match query.resource.group_resource.resource.as_str() {
                "deployments" => vec!["idle".to_string(), "web".to_string()],
                _ => vec!["other-x".to_string(), "web-a".to_string(), "web-b".to_string()],
            };
            Ok(all)
        }

        fn pods_owned_by(&self, owner: &ResourceInfo, _: &str, name: &str) -> Result<Vec<String>, ResolveError> {
            assert_eq!(owner.kind, "Deployment");
            Ok(match name {
                "web" => vec!["web-a".to_string(), "web-b".to_string()],
                _ => Vec::new(),
            })
        }
    }

    fn provider_with(rules_yaml: &str) -> (tempfile::TempDir, Provider) {
        provider_reading(rules_yaml, None)
    }

    /// A provider whose store holds `ei_scale_ratio` for pods web-a, web-b and other-x in `ml`,
    /// reading `external` too when given.
    fn provider_reading(
        rules_yaml: &str,
        external: Option<Arc<crate::adapter::provider::external::tests::MemorySource>>,
    ) -> (tempfile::TempDir, Provider) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(tsdb::Db::open(tsdb::Options::new(dir.path())).unwrap());
        let now = tsdb::now_ms();
        for (pod, value) in [("web-a", 2.0), ("web-b", 4.0), ("other-x", 100.0)] {
            let labels = [("__name__", "ei_scale_ratio"), ("namespace", "ml"), ("pod", pod)];
            let samples = [tsdb::Sample::new(now - 1_000, value)];
            db.append(&[tsdb::SeriesSamples::labels(&labels, &samples)]).unwrap();
        }
        let engine = Arc::new(query::Engine::new(db.clone(), query::EngineOptions::default()));
        let resolver: Arc<dyn ObjectResolver> = Arc::new(OwnersKnown);
        let config = AdapterConfig::parse(rules_yaml, std::path::Path::new("rules.yaml")).unwrap();
        let rules = crate::adapter::rules::compile_rules(&config, "test".into(), resolver.as_ref()).unwrap();
        let mut discovery =
            SeriesDiscovery::new(crate::adapter::DEFAULT_METRICS_MAX_AGE, crate::adapter::DEFAULT_DISCOVERY_MAX_AGE);
        if let Some(source) = external {
            discovery = discovery.with_external(ExternalCatalog::new(source, std::time::Duration::from_secs(60)));
        }
        (dir, Provider::new(db, engine, resolver, rules, discovery))
    }

    const RULES: &str = "rules:\n- seriesQuery: 'ei_scale_ratio{namespace!=\"\",pod!=\"\"}'\n  resources:\n    \
                         overrides: {namespace: {resource: namespace}, pod: {resource: pod}}\n    OWNER\n  \
                         metricsQuery: 'avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n";

    fn deployment_request(objects: ObjectSelection) -> CustomMetricRequest {
        CustomMetricRequest {
            resource: GroupResource::new("apps", "deployments"),
            namespace: Some("ml".into()),
            objects,
            metric: "ei_scale_ratio".into(),
            metric_selector: LabelSelector::default(),
        }
    }

    #[test]
    fn owner_aggregation_combines_the_owned_pods() {
        let (_dir, provider) = provider_with(&RULES.replace("OWNER", "ownerAggregation: avg"));
        let values = provider.custom_metric(&deployment_request(ObjectSelection::Named("web".into()))).unwrap();
        assert_eq!((values.kind.as_str(), values.api_version.as_str()), ("Deployment", "apps/v1"));
        assert_eq!(values.items.len(), 1);
        assert_eq!(values.items[0].name, "web");
        assert_eq!(values.items[0].value.as_f64(), 3.0, "avg of web-a (2) and web-b (4); other-x is not owned");

        let all = provider.custom_metric(&deployment_request(ObjectSelection::Selector(LabelSelector::default())));
        let names: Vec<String> = all.unwrap().items.into_iter().map(|i| i.name).collect();
        assert_eq!(names, vec!["web"], "a deployment without pods has no value");

        let idle = provider.custom_metric(&deployment_request(ObjectSelection::Named("idle".into())));
        assert!(matches!(idle, Err(ProviderError { kind: ProviderErrorKind::NotFound, .. })), "{idle:?}");
    }

    #[test]
    fn without_owner_aggregation_owners_are_not_served() {
        let (_dir, provider) = provider_with(&RULES.replace("OWNER", ""));
        let answer = provider.custom_metric(&deployment_request(ObjectSelection::Named("web".into())));
        assert!(matches!(answer, Err(ProviderError { kind: ProviderErrorKind::NotFound, .. })), "{answer:?}");
    }

    #[test]
    fn unknown_metrics_do_not_relist_the_index_on_every_request() {
        let rules = RULES.replace("OWNER", "").replace("'ei_scale_ratio{", "'{__name__=~\"ei_.*\",");
        let (_dir, provider) = provider_with(&rules);
        let request = |metric: &str| CustomMetricRequest {
            resource: GroupResource::new("", "pods"),
            namespace: Some("ml".into()),
            objects: ObjectSelection::Named("web-a".into()),
            metric: metric.into(),
            metric_selector: LabelSelector::default(),
        };
        for _ in 0..20 {
            let answer = provider.custom_metric(&request("ei_scale_ratio_unknown"));
            assert!(matches!(answer, Err(ProviderError { kind: ProviderErrorKind::NotFound, .. })), "{answer:?}");
        }
        assert_eq!(provider.discovery.rebuilds(), 1, "one listing serves the burst of unknown-metric requests");

        let labels = [("__name__", "ei_scale_ratio_unknown"), ("namespace", "ml"), ("pod", "web-a")];
        let samples = [tsdb::Sample::new(tsdb::now_ms() - 1_000, 7.0)];
        provider.db.append(&[tsdb::SeriesSamples::labels(&labels, &samples)]).unwrap();
        let values = provider.custom_metric(&request("ei_scale_ratio_unknown")).unwrap();
        assert_eq!(values.items[0].value.as_f64(), 7.0, "a series that arrives is served on the next request");
    }

    const GPU_RULES: &str =
        "rules:\n- seriesQuery: '{__name__=~\"gpu_util|ei_scale_ratio\",namespace!=\"\",pod!=\"\"}'\n  \
                             resources:\n    overrides: {namespace: {resource: namespace}, pod: {resource: pod}}\n    \
                             ownerAggregation: max\n  \
                             metricsQuery: 'max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n";

    /// The external source holds `gpu_util` for web-a (50) and web-b (70), and `ei_scale_ratio`
    /// (which the store has too) at 1000.
    fn gpu_source() -> Arc<MemorySource> {
        let series = ["web-a", "web-b"]
            .into_iter()
            .flat_map(|pod| {
                ["gpu_util", "ei_scale_ratio"]
                    .map(|name| tsdb::Labels::from_pairs([("__name__", name), ("namespace", "ml"), ("pod", pod)]))
            })
            .collect();
        Arc::new(MemorySource::new(series, |query: &str| {
            let value = if query.contains("ei_scale_ratio") { 1000.0 } else { 0.0 };
            let samples = [("web-a", 50.0), ("web-b", 70.0)]
                .into_iter()
                .filter(|(pod, _)| !query.contains("pod=\"") || query.contains(&format!("pod=\"{pod}\"")))
                .filter(|(pod, _)| !query.contains("pod=~") || query.contains(&pod.replace('-', "\\\\-")))
                .map(|(pod, gpu)| query::InstantSample {
                    labels: tsdb::Labels::from_pairs([("pod", pod)]),
                    ts_ms: 1_000,
                    value: value + gpu,
                })
                .collect();
            query::Value::Vector(samples)
        }))
    }

    fn pods_request(metric: &str, objects: ObjectSelection) -> CustomMetricRequest {
        CustomMetricRequest {
            resource: GroupResource::new("", "pods"),
            namespace: Some("ml".into()),
            objects,
            metric: metric.into(),
            metric_selector: LabelSelector::default(),
        }
    }

    #[test]
    fn series_only_the_external_source_has_are_queried_there() {
        let source = gpu_source();
        let (_dir, provider) = provider_reading(GPU_RULES, Some(source.clone()));
        let one = provider.custom_metric(&pods_request("gpu_util", ObjectSelection::Named("web-b".into()))).unwrap();
        assert_eq!((one.items.len(), one.items[0].value.as_f64()), (1, 70.0));
        let sent = source.queries.lock().last().cloned().unwrap();
        assert_eq!(sent, r#"max(gpu_util{namespace="ml",pod="web-b"}) by (pod)"#);

        // An owner's pods are a set: sent as a regex of escaped names, as prometheus-adapter does.
        let owner = provider.custom_metric(&deployment_request_for("gpu_util", "web")).unwrap();
        assert_eq!((owner.items[0].name.as_str(), owner.items[0].value.as_f64()), ("web", 70.0));
        let sent = source.queries.lock().last().cloned().unwrap();
        assert!(sent.contains(r#"pod=~"web\\-a|web\\-b""#), "{sent}");

        // The store has ei_scale_ratio: it is served from the store, never from the source.
        let queries_before = source.queries.lock().len();
        let local = provider.custom_metric(&pods_request("ei_scale_ratio", ObjectSelection::Named("web-a".into())));
        assert_eq!(local.unwrap().items[0].value.as_f64(), 2.0);
        assert_eq!(source.queries.lock().len(), queries_before, "a local series does not go to the source");
    }

    fn deployment_request_for(metric: &str, name: &str) -> CustomMetricRequest {
        CustomMetricRequest { metric: metric.into(), ..deployment_request(ObjectSelection::Named(name.into())) }
    }

    #[test]
    fn a_failing_external_source_fails_the_request_and_never_answers_a_value() {
        let source = gpu_source();
        let (_dir, provider) = provider_reading(GPU_RULES, Some(source.clone()));
        provider.custom_metric(&pods_request("gpu_util", ObjectSelection::Named("web-a".into()))).unwrap();
        source.down.store(true, Ordering::Relaxed);
        let all =
            provider.custom_metric(&pods_request("gpu_util", ObjectSelection::Selector(LabelSelector::default())));
        assert!(
            matches!(&all, Err(ProviderError { kind: ProviderErrorKind::Unavailable, message })
            if message.contains("connection refused")),
            "{all:?}"
        );

        // A source that never answered a listing: an unknown metric is "try again", not "no such metric".
        let down = gpu_source();
        down.down.store(true, Ordering::Relaxed);
        let (_dir, provider) = provider_reading(GPU_RULES, Some(down));
        let answer = provider.custom_metric(&pods_request("gpu_util", ObjectSelection::Named("web-a".into())));
        assert!(matches!(answer, Err(ProviderError { kind: ProviderErrorKind::Unavailable, .. })), "{answer:?}");
        let local = provider.custom_metric(&pods_request("ei_scale_ratio", ObjectSelection::Named("web-a".into())));
        assert_eq!(local.unwrap().items[0].value.as_f64(), 2.0, "local metrics are served while the source is down");
    }

    #[test]
    fn query_source_picks_the_store_or_the_source_per_rule() {
        let external_only = GPU_RULES.replace("  metricsQuery", "  querySource: external\n  metricsQuery");
        let (_dir, provider) = provider_reading(&external_only, Some(gpu_source()));
        let answer = provider.custom_metric(&pods_request("ei_scale_ratio", ObjectSelection::Named("web-a".into())));
        assert_eq!(answer.unwrap().items[0].value.as_f64(), 1050.0, "querySource: external ignores the store");

        let local_only = GPU_RULES.replace("  metricsQuery", "  querySource: local\n  metricsQuery");
        let (_dir, provider) = provider_reading(&local_only, Some(gpu_source()));
        let answer = provider.custom_metric(&pods_request("gpu_util", ObjectSelection::Named("web-a".into())));
        assert!(matches!(answer, Err(ProviderError { kind: ProviderErrorKind::NotFound, .. })), "{answer:?}");

        let (_dir, provider) = provider_reading(&external_only, None);
        let answer = provider.custom_metric(&pods_request("gpu_util", ObjectSelection::Named("web-a".into())));
        assert!(
            matches!(&answer, Err(ProviderError { kind: ProviderErrorKind::Unavailable, message })
            if message.contains("--prometheus-url")),
            "{answer:?}"
        );
    }

    proptest::proptest! {
        /// Names of one owner's pods, names that are prefixes of others, multi-byte characters,
        /// the empty name and repeats: the order and the order of repeats are a stable sort's.
        #[test]
        fn items_come_in_the_order_a_stable_sort_by_name_gives(
            names in proptest::collection::vec("(web-7d9f8c6b5-)?([a-z0-9]{0,10}|[\\x00é]{0,3}|)", 0..40)
        ) {
            let items: Vec<(String, usize)> = names.into_iter().enumerate().map(|(i, name)| (name, i)).collect();
            let mut expected = items.clone();
            expected.sort_by(|a, b| a.0.cmp(&b.0));
            proptest::prop_assert_eq!(in_name_order(items, |item| &item.0), expected.clone());
            // Already in order (repeats included): returned as given.
            proptest::prop_assert_eq!(in_name_order(expected.clone(), |item| &item.0), expected);
        }
    }
}
