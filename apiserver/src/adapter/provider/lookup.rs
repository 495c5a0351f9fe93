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
use super::resources::{GroupResource, ObjectQuery, ObjectResolver, SeriesHint};
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
    /// These objects, sorted and never empty (the pods of an owner, for `ownerAggregation`).
    Names(Vec<String>),
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

/// The values of a custom metric: what every item shares, stated once, and one entry per object
/// (a 1 000-pod answer then costs one small allocation per pod, not five).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValues {
    /// Kind and apiVersion of the described objects.
    pub kind: String,
    pub api_version: String,
    /// Namespace of the described objects (`None` for cluster-scoped resources).
    pub namespace: Option<String>,
    pub metric: String,
    pub window_seconds: Option<i64>,
    /// Sorted by object name, one per name.
    pub items: Vec<MetricValueItem>,
}

/// One value of a custom metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValueItem {
    /// The described object's name.
    pub name: String,
    pub ts_ms: i64,
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

    /// A metric of pods' owners (Deployment, ReplicaSet, StatefulSet, Job, …) from a pods rule
    /// with `ownerAggregation`: the owners' pods are found through owner references, their values
    /// queried as a pods request, and combined per owner. `None` when no such rule applies.
    fn owner_metric(
        &self,
        request: &CustomMetricRequest,
        owner: &GroupResource,
        snapshot: &Snapshot,
    ) -> Result<Option<MetricValues>, ProviderError> {
        let pods = GroupResource::new("", "pods");
        let Some(namespace) = request.namespace.as_deref() else { return Ok(None) };
        if *owner == pods {
            return Ok(None);
        }
        let Some(pod_entry) = snapshot.find_custom(&pods, &request.metric, true) else { return Ok(None) };
        let Some(aggregation) = self.rules().custom.get(pod_entry.rule).and_then(|rule| rule.owner_aggregation) else {
            return Ok(None);
        };
        let Some(owner_info) = self.resolver.resource_info(&owner.group, &owner.resource) else { return Ok(None) };
        let unavailable = |e: super::resources::ResolveError| ProviderError::Unavailable(e.to_string());
        let owners = match &request.objects {
            ObjectSelection::Named(name) => vec![name.clone()],
            ObjectSelection::Names(names) => names.clone(),
            ObjectSelection::Selector(selector) => self
                .resolver
                .list_names(&ObjectQuery {
                    resource: &owner_info,
                    namespace: Some(namespace),
                    selector,
                    hint: SeriesHint { series_name: &pod_entry.series_name, resource_label: "", namespace_label: None },
                })
                .map_err(unavailable)?,
        };
        let mut answer = MetricValues {
            kind: owner_info.kind.clone(),
            api_version: owner_info.api_version.clone(),
            namespace: Some(namespace.to_string()),
            metric: request.metric.clone(),
            window_seconds: None,
            items: Vec::new(),
        };
        for owner_name in owners {
            let owned = self.resolver.pods_owned_by(&owner_info, namespace, &owner_name).map_err(unavailable)?;
            if owned.is_empty() {
                continue;
            }
            let pod_values = self.custom_metric(&CustomMetricRequest {
                resource: pods.clone(),
                namespace: Some(namespace.to_string()),
                objects: ObjectSelection::Names(owned),
                metric: request.metric.clone(),
                metric_selector: request.metric_selector.clone(),
            })?;
            let values: Vec<f64> = pod_values.items.iter().map(|item| item.value.as_f64()).collect();
            let (Some(combined), Some(ts_ms)) =
                (aggregation.combine(&values), pod_values.items.iter().map(|item| item.ts_ms).max())
            else {
                continue;
            };
            let Some(value) = Quantity::from_f64(combined) else { continue };
            answer.window_seconds = pod_values.window_seconds;
            answer.items.push(MetricValueItem { name: owner_name, ts_ms, value });
        }
        if let ObjectSelection::Named(name) = &request.objects {
            if answer.items.is_empty() {
                return Err(ProviderError::NotFound(format!(
                    "the server could not find the metric {} for {} {name} (no pod it owns has a value)",
                    request.metric, owner_info.group_resource
                )));
            }
        }
        Ok(Some(answer))
    }

    /// Values of a custom metric.
    pub fn custom_metric(&self, request: &CustomMetricRequest) -> Result<MetricValues, ProviderError> {
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
                if let Some(values) = self.owner_metric(request, r, &snapshot)? {
                    return Ok(values);
                }
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
            ObjectSelection::Names(names) => ObjectNames::Set(names),
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
                        return Ok(MetricValues {
                            kind: entry.resource.kind.clone(),
                            api_version: entry.resource.api_version.clone(),
                            namespace: if entry.resource.namespaced { request.namespace.clone() } else { None },
                            metric: request.metric.clone(),
                            window_seconds: None,
                            items: Vec::new(),
                        });
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
            query::Value::Vector(samples) => {
                samples.into_iter().map(|s| (take_label(s.labels, &query.resource_label), s.ts_ms, s.value)).collect()
            }
            query::Value::Scalar { ts_ms, value } => vec![(None, ts_ms, value)],
            other => {
                return Err(ProviderError::Internal(format!(
                    "the query {:?} returned a {} instead of a vector",
                    query.text,
                    value_kind(&other)
                )))
            }
        };
        let info = &entry.resource;
        let values = |items: Vec<MetricValueItem>| MetricValues {
            kind: info.kind.clone(),
            api_version: info.api_version.clone(),
            namespace: if info.namespaced { request.namespace.clone() } else { None },
            metric: request.metric.clone(),
            window_seconds: query.window_seconds,
            items,
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
                Ok(values(vec![MetricValueItem { name: name.to_string(), ts_ms: *ts_ms, value: quantity }]))
            }
            ObjectNames::Set(wanted) => {
                Ok(values(collect_items(samples, |n| wanted.binary_search_by(|w| w.as_str().cmp(n)).is_ok())))
            }
            ObjectNames::All => Ok(values(collect_items(samples, |_| true))),
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

/// The value of label `name`, moved out of `labels` (no copy).
fn take_label(labels: tsdb::Labels, name: &str) -> Option<String> {
    labels.into_vec().into_iter().find(|l| l.name == name).map(|l| l.value)
}

fn collect_items(samples: Vec<(Option<String>, i64, f64)>, wanted: impl Fn(&str) -> bool) -> Vec<MetricValueItem> {
    let mut items: Vec<MetricValueItem> = samples
        .into_iter()
        .filter_map(|(name, ts_ms, value)| {
            let name = name.filter(|n| wanted(n))?;
            let value = Quantity::from_f64(value)?;
            Some(MetricValueItem { name, ts_ms, value })
        })
        .collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    items.dedup_by(|a, b| a.name == b.name);
    items
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::config::AdapterConfig;
    use crate::adapter::resources::{BuiltinResolver, ResolveError, ResourceInfo};

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
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(tsdb::Db::open(tsdb::Options::new(dir.path())).unwrap());
        let now = super::super::now_ms();
        for (pod, value) in [("web-a", 2.0), ("web-b", 4.0), ("other-x", 100.0)] {
            let labels = [("__name__", "ei_scale_ratio"), ("namespace", "ml"), ("pod", pod)];
            let samples = [tsdb::Sample::new(now - 1_000, value)];
            db.append_batch(&[tsdb::SeriesSamples { labels: &labels, samples: &samples }]).unwrap();
        }
        let engine = Arc::new(query::Engine::new(db.clone(), query::EngineOptions::default()));
        let resolver: Arc<dyn ObjectResolver> = Arc::new(OwnersKnown);
        let config = AdapterConfig::parse(rules_yaml, std::path::Path::new("rules.yaml")).unwrap();
        let rules = crate::adapter::compile_rules(&config, "test".into(), resolver.as_ref()).unwrap();
        let discovery = Discovery::new(super::super::DEFAULT_METRICS_MAX_AGE, super::super::DEFAULT_DISCOVERY_MAX_AGE);
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
        assert!(matches!(idle, Err(ProviderError::NotFound(_))), "{idle:?}");
    }

    #[test]
    fn without_owner_aggregation_owners_are_not_served() {
        let (_dir, provider) = provider_with(&RULES.replace("OWNER", ""));
        let answer = provider.custom_metric(&deployment_request(ObjectSelection::Named("web".into())));
        assert!(matches!(answer, Err(ProviderError::NotFound(_))), "{answer:?}");
    }
}
