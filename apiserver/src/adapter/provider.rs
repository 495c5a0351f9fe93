//! `Provider` answers the metrics APIs' questions — which metrics exist, and the values of a
//! metric for an object, a set of objects, or an external metric — from the store, the rules and
//! an [`ObjectResolver`]. It is pure logic: no HTTP and no Kubernetes types beyond plain
//! structs, so it is tested directly and the routes stay thin.
//!
//! Value rules: an Object request answers exactly one item or `NotFound`; a Pods request
//! answers exactly the resolved objects that have a value (the HPA averages every item it gets);
//! a sample whose value is NaN or ±Inf is left out (and an Object request for it is `NotFound`
//! saying so), because no Quantity can carry it and a made-up number would steer the HPA.

use super::discovery::{Discovery, RuleSet, Snapshot};
use super::naming::{NamingError, ObjectNames, QueryInput};
use super::quantity::Quantity;
use super::resources::{GroupResource, ObjectQuery, ObjectRef, ObjectResolver, ResourceInfo, SeriesHint};
use super::selector::LabelSelector;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a request could not be answered; `routes` maps each to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// Which objects a custom-metrics request is about.
#[derive(Debug, Clone)]
pub enum ObjectSelection {
    /// One named object.
    Named(String),
    /// `*`: every object the label selector picks.
    Selector(LabelSelector),
}

/// A custom-metrics request, independent of the API version.
#[derive(Debug, Clone)]
pub struct CustomMetricRequest {
    pub resource: GroupResource,
    /// The namespace of a namespaced request; `None` for root-scoped resources and namespaces.
    pub namespace: Option<String>,
    pub objects: ObjectSelection,
    pub metric: String,
    pub metric_selector: LabelSelector,
}

/// One value of a custom metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValueItem {
    pub object: ObjectRef,
    pub metric: String,
    pub ts_ms: i64,
    pub window_seconds: Option<i64>,
    pub value: Quantity,
}

/// An external-metrics request.
#[derive(Debug, Clone)]
pub struct ExternalMetricRequest {
    pub namespace: String,
    pub metric: String,
    pub selector: LabelSelector,
}

/// One value of an external metric.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalValueItem {
    pub metric: String,
    pub labels: BTreeMap<String, String>,
    pub ts_ms: i64,
    pub window_seconds: Option<i64>,
    pub value: Quantity,
}

/// The adapter's brain. Cheap to share; every method takes `&self` and may block briefly on the
/// store and the query engine (call it from `spawn_blocking`).
pub struct Provider {
    db: Arc<tsdb::Db>,
    engine: Arc<query::Engine>,
    resolver: Arc<dyn ObjectResolver>,
    rules: RwLock<Arc<RuleSet>>,
    discovery: Discovery,
}

impl Provider {
    pub fn new(
        db: Arc<tsdb::Db>,
        engine: Arc<query::Engine>,
        resolver: Arc<dyn ObjectResolver>,
        rules: RuleSet,
        discovery: Discovery,
    ) -> Self {
        Provider { db, engine, resolver, rules: RwLock::new(Arc::new(rules)), discovery }
    }

    pub fn resolver(&self) -> &Arc<dyn ObjectResolver> {
        &self.resolver
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().clone()
    }

    /// Replaces the rules (a reload); the next request sees them.
    pub fn replace_rules(&self, mut rules: RuleSet) {
        let mut current = self.rules.write();
        rules.generation = current.generation + 1;
        *current = Arc::new(rules);
    }

    fn snapshot(&self, force: bool) -> Result<Arc<Snapshot>, ProviderError> {
        let rules = self.rules();
        self.discovery
            .snapshot(&rules, &self.db, self.resolver.as_ref(), force)
            .map_err(|e| ProviderError::Internal(format!("listing series: {e}")))
    }

    /// `(resource/metric, namespaced)` for the custom-metrics `APIResourceList`, sorted.
    pub fn list_custom(&self) -> Result<Vec<(String, bool)>, ProviderError> {
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
    pub fn list_external(&self) -> Result<Vec<String>, ProviderError> {
        let snapshot = self.snapshot(false)?;
        let mut out: Vec<String> = snapshot.external.iter().map(|e| e.metric_name.clone()).collect();
        out.sort();
        Ok(out)
    }

    /// Normalizes a resource from a URL (`pods`, `models.mlops.seldon.io`, `pod`).
    fn normalize(&self, resource: &GroupResource, snapshot: &Snapshot) -> Option<GroupResource> {
        if snapshot.custom.iter().any(|e| &e.resource.group_resource == resource) {
            return Some(resource.clone());
        }
        self.resolver.resource_info(&resource.group, &resource.resource).map(|info| info.group_resource)
    }

    /// Values of a custom metric.
    pub fn custom_metric(&self, request: &CustomMetricRequest) -> Result<Vec<MetricValueItem>, ProviderError> {
        let namespaced = request.namespace.is_some();
        let not_found = || {
            ProviderError::NotFound(format!(
                "the server could not find the metric {} for {}",
                request.metric, request.resource
            ))
        };
        let mut snapshot = self.snapshot(false)?;
        let mut resource = self.normalize(&request.resource, &snapshot);
        let lookup = |snapshot: &Snapshot, resource: &Option<GroupResource>| {
            resource.as_ref().and_then(|r| snapshot.find_custom(r, &request.metric, namespaced).cloned())
        };
        let mut entry = lookup(&snapshot, &resource);
        if entry.is_none() {
            // A series may have arrived since the snapshot: no relist interval, look again now.
            snapshot = self.snapshot(true)?;
            resource = self.normalize(&request.resource, &snapshot);
            entry = lookup(&snapshot, &resource);
        }
        let Some(entry) = entry else {
            if let Some(r) = &resource {
                if snapshot.has_custom_metric(r, &request.metric) {
                    let scope = if namespaced { "namespaced" } else { "root-scoped" };
                    return Err(ProviderError::NotFound(format!(
                        "the metric {} for {r} is not served as a {scope} metric",
                        request.metric
                    )));
                }
            }
            return Err(not_found());
        };
        let rules = self.rules();
        let Some(rule) = rules.custom.get(entry.rule) else {
            return Err(ProviderError::Unavailable("the rules changed during the request; retry".into()));
        };
        let namespace_label = rule.label_for_resource(&GroupResource::namespaces(), self.resolver.as_ref());
        let resolved: Vec<String>;
        let mut selector_matchers = Vec::new();
        let names = match &request.objects {
            ObjectSelection::Named(name) => ObjectNames::One(name),
            ObjectSelection::Selector(selector) if selector.is_empty() && !entry.resource.namespaced => {
                ObjectNames::All
            }
            ObjectSelection::Selector(selector) => {
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
                if let Some(matchers) = self.resolver.selector_matchers(&object_query) {
                    // Answered from the series' own labels: one filtered query, no name list.
                    selector_matchers = matchers;
                    ObjectNames::All
                } else {
                    resolved = self
                        .resolver
                        .list_names(&object_query)
                        .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
                    if resolved.is_empty() {
                        return Ok(Vec::new());
                    }
                    ObjectNames::Set(&resolved)
                }
            }
        };
        let mut query = rule
            .build_query(
                &QueryInput {
                    series: &entry.series_name,
                    resource: &entry.resource.group_resource,
                    namespace: request.namespace.as_deref(),
                    names,
                    metric_selector: &request.metric_selector,
                },
                self.resolver.as_ref(),
            )
            .map_err(naming_error)?;
        query.extra_matchers.extend(selector_matchers);
        let now_ms = super::now_ms();
        let value = self
            .engine
            .instant_with_matchers(&query.text, now_ms, &query.extra_matchers)
            .map_err(|e| query_error(&query.text, e))?;
        let samples: Vec<(Option<String>, i64, f64)> = match value {
            query::Value::Vector(samples) => samples
                .into_iter()
                .map(|s| (s.labels.get(&query.resource_label).map(str::to_string), s.ts_ms, s.value))
                .collect(),
            query::Value::Scalar { ts_ms, value } => vec![(None, ts_ms, value)],
            other => {
                return Err(ProviderError::Internal(format!(
                    "the query {:?} returned a {} instead of a vector",
                    query.text,
                    value_kind(&other)
                )))
            }
        };
        let make_item = |name: String, ts_ms: i64, value: Quantity| MetricValueItem {
            object: object_ref(&entry.resource, request.namespace.as_deref(), name),
            metric: request.metric.clone(),
            ts_ms,
            window_seconds: query.window_seconds,
            value,
        };
        match names {
            ObjectNames::One(name) => {
                let unlabeled_single = samples.len() == 1 && samples[0].0.is_none();
                let Some((_, ts_ms, value)) =
                    samples.iter().find(|(label, _, _)| label.as_deref() == Some(name) || unlabeled_single)
                else {
                    return Err(ProviderError::NotFound(format!(
                        "the server could not find the metric {} for {} {name}",
                        request.metric, entry.resource.group_resource
                    )));
                };
                let quantity = Quantity::from_f64(*value).ok_or_else(|| {
                    ProviderError::NotFound(format!(
                        "the metric {} for {} {name} is {value}, which is not a number a Quantity can carry",
                        request.metric, entry.resource.group_resource
                    ))
                })?;
                Ok(vec![make_item(name.to_string(), *ts_ms, quantity)])
            }
            ObjectNames::Set(wanted) => {
                Ok(collect_items(samples, |n| wanted.binary_search_by(|w| w.as_str().cmp(n)).is_ok(), make_item))
            }
            ObjectNames::All => Ok(collect_items(samples, |_| true, make_item)),
        }
    }

    /// Values of an external metric.
    pub fn external_metric(&self, request: &ExternalMetricRequest) -> Result<Vec<ExternalValueItem>, ProviderError> {
        let mut entry = self.snapshot(false)?.find_external(&request.metric).cloned();
        if entry.is_none() {
            entry = self.snapshot(true)?.find_external(&request.metric).cloned();
        }
        let Some(entry) = entry else {
            return Err(ProviderError::NotFound(format!(
                "the server could not find the external metric {}",
                request.metric
            )));
        };
        let rules = self.rules();
        let Some(rule) = rules.external.get(entry.rule) else {
            return Err(ProviderError::Unavailable("the rules changed during the request; retry".into()));
        };
        let query = rule
            .build_external_query(&entry.series_name, &request.namespace, &request.selector, self.resolver.as_ref())
            .map_err(naming_error)?;
        let value = self
            .engine
            .instant_with_matchers(&query.text, super::now_ms(), &[])
            .map_err(|e| query_error(&query.text, e))?;
        let samples = match value {
            query::Value::Vector(samples) => samples,
            query::Value::Scalar { ts_ms, value } => {
                vec![query::InstantSample { labels: tsdb::Labels::default(), ts_ms, value }]
            }
            other => {
                return Err(ProviderError::Internal(format!(
                    "the query {:?} returned a {} instead of a vector",
                    query.text,
                    value_kind(&other)
                )))
            }
        };
        Ok(samples
            .into_iter()
            .filter_map(|s| {
                let value = Quantity::from_f64(s.value)?;
                let labels = s
                    .labels
                    .iter()
                    .filter(|l| l.name != tsdb::METRIC_NAME)
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                Some(ExternalValueItem {
                    metric: request.metric.clone(),
                    labels,
                    ts_ms: s.ts_ms,
                    window_seconds: query.window_seconds,
                    value,
                })
            })
            .collect())
    }
}

fn collect_items(
    samples: Vec<(Option<String>, i64, f64)>,
    wanted: impl Fn(&str) -> bool,
    make_item: impl Fn(String, i64, Quantity) -> MetricValueItem,
) -> Vec<MetricValueItem> {
    let mut items: Vec<MetricValueItem> = samples
        .into_iter()
        .filter_map(|(name, ts_ms, value)| {
            let name = name.filter(|n| wanted(n))?;
            let quantity = Quantity::from_f64(value)?;
            Some(make_item(name, ts_ms, quantity))
        })
        .collect();
    items.sort_by(|a, b| a.object.name.cmp(&b.object.name));
    items.dedup_by(|a, b| a.object.name == b.object.name);
    items
}

fn object_ref(info: &ResourceInfo, namespace: Option<&str>, name: String) -> ObjectRef {
    ObjectRef {
        kind: info.kind.clone(),
        api_version: info.api_version.clone(),
        namespace: if info.namespaced { namespace.map(str::to_string) } else { None },
        name,
    }
}

fn value_kind(value: &query::Value) -> &'static str {
    match value {
        query::Value::Scalar { .. } => "scalar",
        query::Value::String { .. } => "string",
        query::Value::Vector(_) => "vector",
        query::Value::Matrix(_) => "matrix",
    }
}

fn naming_error(e: NamingError) -> ProviderError {
    match e {
        NamingError::BadRequest(message) => ProviderError::BadRequest(message),
        other => ProviderError::Internal(other.to_string()),
    }
}

fn query_error(text: &str, e: query::QueryError) -> ProviderError {
    match e {
        query::QueryError::Timeout(_) | query::QueryError::TooManySamples(_) => {
            ProviderError::Unavailable(format!("query {text:?}: {e}"))
        }
        other => ProviderError::Internal(format!("query {text:?}: {other}")),
    }
}
