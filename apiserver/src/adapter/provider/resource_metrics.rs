//! `metrics.k8s.io` answers (PodMetrics, NodeMetrics) from `resourceRules`, as
//! prometheus-adapter gives them: the objects come from the cluster (label and field selectors
//! applied to the watched metadata), the values from the rules' `containerQuery` / `nodeQuery`
//! run now, in cores and bytes. An object is in the answer only when both its cpu and its memory
//! query answered for it (a pod's containers are the union of both, a missing one at 0); a named
//! object without values is `NotFound`, as from metrics-server.
//!
//! Without a cluster (a standalone server) the objects are those the queries answer for, with
//! no labels.
//!
//! Pods are answered from a snapshot, as metrics-server answers from its last collection: the
//! rules' `containerQuery` evaluated for every pod at once (grouped by namespace, pod and
//! container), shared by every request — `kubectl top pod -A`, each HPA's namespace and label
//! selector — for at most [`SNAPSHOT_MAX_AGE`]. A request finding it older than
//! [`SNAPSHOT_REFRESH_AFTER`] is answered from it and starts one evaluation in the background,
//! so a steady stream of requests never waits for one; past the maximum age a request evaluates
//! itself. The answers' `timestamp` is the snapshot's evaluation time. A template whose answers
//! lack the namespace label cannot be shared this way and is evaluated per request and per
//! namespace, as prometheus-adapter does.

use super::resources::{GroupResource, ObjectSummary};
use super::{Provider, ProviderError};
use crate::adapter::rules::query::QueryForm;
use crate::adapter::rules::resource::{ResourceNames, ResourceQueries, ResourceQuery, ResourceQueryText};
use crate::adapter::rules::selector::LabelSelector;
use crate::adapter::rules::RuleError;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a pods snapshot is served: past it, a request evaluates the rules itself (within a
/// third of the HPA's 15 s sync period, and fresher than metrics-server's 15 s collection).
pub(crate) const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(5);
/// Age past which a request served from the snapshot starts a fresh evaluation in the background.
pub(crate) const SNAPSHOT_REFRESH_AFTER: Duration = Duration::from_secs(1);

/// The resource rules evaluated for every pod, shared by requests.
#[derive(Default)]
pub(crate) struct ResourceSnapshots {
    pods: Mutex<Option<Arc<PodSnapshot>>>,
    refreshing: AtomicBool,
}

/// One evaluation of both `containerQuery`s for every pod.
struct PodSnapshot {
    /// The rules' generation it was taken with (a reload makes it stale at once).
    generation: u64,
    taken: Instant,
    eval_ms: i64,
    /// `None`: the template's answers carry no namespace label, so no shared snapshot.
    pods: Option<Arc<PodTable>>,
}

/// A `fieldSelector` over the fields a metrics object has: `metadata.name` and
/// `metadata.namespace` (`=`, `==`, `!=`, comma-separated), as metrics-server filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldRequirement {
    field: MetadataField,
    equal: bool,
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetadataField {
    Name,
    Namespace,
}

impl FieldSelector {
    /// Parses `text`; unknown fields are refused as the API server refuses them, and a text
    /// longer than a label selector may be (`MAX_SELECTOR_BYTES`) too.
    pub(crate) fn parse(text: &str) -> Result<FieldSelector, String> {
        let max = crate::adapter::rules::selector::MAX_SELECTOR_BYTES;
        if text.len() > max {
            return Err(format!("field selector of {} bytes is longer than the {max} bytes allowed", text.len()));
        }
        let mut requirements = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid field selector term {term:?}: expected field=value or field!=value"));
            };
            let field = match field.trim() {
                "metadata.name" => MetadataField::Name,
                "metadata.namespace" => MetadataField::Namespace,
                other => return Err(format!("field label not supported: {other}")),
            };
            requirements.push(FieldRequirement { field, equal, value: value.trim().to_string() });
        }
        Ok(FieldSelector { requirements })
    }

    fn matches(&self, name: &str, namespace: Option<&str>) -> bool {
        self.requirements.iter().all(|r| {
            let actual = match r.field {
                MetadataField::Name => name,
                MetadataField::Namespace => namespace.unwrap_or(""),
            };
            (actual == r.value) == r.equal
        })
    }
}

/// Which pods or nodes a `metrics.k8s.io` request is about.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResourceMetricsRequest {
    /// The namespace of a pods request; `None` for all namespaces (and for nodes).
    pub(crate) namespace: Option<String>,
    /// One object by name (`pods/{name}`, `nodes/{name}`).
    pub(crate) name: Option<String>,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

/// One container's usage: cores and bytes, and both as the Quantity strings metrics-server
/// serves (formatted once, when the values are read, not per request).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ContainerUsage {
    pub(crate) name: String,
    pub(crate) cpu_cores: f64,
    pub(crate) memory_bytes: f64,
    pub(crate) cpu_quantity: Box<str>,
    pub(crate) memory_quantity: Box<str>,
}

impl ContainerUsage {
    pub(crate) fn new(name: String, cpu_cores: f64, memory_bytes: f64) -> Self {
        // The provider keeps NaN and ±Inf out, so every value has a quantity.
        let cpu_quantity = super::quantity::cpu_usage(cpu_cores).unwrap_or_else(|| "0".into()).into();
        let memory_quantity = super::quantity::memory_usage(memory_bytes).unwrap_or_else(|| "0".into()).into();
        ContainerUsage { name, cpu_cores, memory_bytes, cpu_quantity, memory_quantity }
    }
}

/// A PodMetrics answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PodUsage {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) ts_ms: i64,
    pub(crate) window: Duration,
    /// Shared with the snapshot (answers for thousands of pods copy no container list).
    pub(crate) containers: Arc<[ContainerUsage]>,
}

/// A NodeMetrics answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeUsage {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) ts_ms: i64,
    pub(crate) window: Duration,
    pub(crate) cpu_cores: f64,
    pub(crate) memory_bytes: f64,
}

/// Query results keyed by object: (namespace, name) → container → value.
type PodValues = HashMap<(String, String), BTreeMap<String, f64>>;

/// Pods with both a cpu and a memory answer, sorted by (namespace, name), with their containers
/// (the union of both answers, a missing value at 0).
type PodTable = BTreeMap<(String, String), Arc<[ContainerUsage]>>;

/// The pods both rules answered for, their containers merged.
fn merge_pod_values(cpu: PodValues, mut memory: PodValues) -> PodTable {
    let mut table = PodTable::new();
    for (key, cpu) in cpu {
        let Some(memory) = memory.remove(&key) else { continue };
        // Container → (cores, bytes); one only the other query answered for is at 0 there.
        let mut containers: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for (container, cores) in cpu {
            containers.entry(container).or_default().0 = cores;
        }
        for (container, bytes) in memory {
            containers.entry(container).or_default().1 = bytes;
        }
        let containers: Arc<[ContainerUsage]> =
            containers.into_iter().map(|(name, (cores, bytes))| ContainerUsage::new(name, cores, bytes)).collect();
        table.insert(key, containers);
    }
    table
}

impl Provider {
    /// Whether the rules in force serve `metrics.k8s.io` (they have `resourceRules`).
    pub(crate) fn serves_resource_metrics(&self) -> bool {
        self.rules().resource.is_some()
    }

    /// PodMetrics for the pods `request` selects, sorted by namespace and name.
    pub(crate) fn pod_metrics(&self, request: &ResourceMetricsRequest) -> Result<Vec<PodUsage>, ProviderError> {
        let rules = self.rules();
        let resource = served(rules.resource.as_ref())?;
        let pods = GroupResource::new("", "pods");
        let namespace = request.namespace.as_deref();
        let listed = self
            .resolver()
            .list_objects(&pods, namespace, &request.labels)
            .map_err(|e| ProviderError::unavailable(e.to_string()))?;
        let objects = listed.map(|objects| select(objects, request));
        if let (Some(objects), Some(name)) = (&objects, &request.name) {
            if objects.is_empty() {
                return Err(ProviderError::not_found(format!("pods \"{name}\" not found")));
            }
        }
        if objects.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let snapshot = self.pod_snapshot(&rules)?;
        let (table, now_ms) = match snapshot.as_ref().and_then(|s| s.pods.clone().map(|pods| (pods, s.eval_ms))) {
            Some(shared) => shared,
            None => {
                let now_ms = tsdb::now_ms();
                let (cpu, memory) = match &objects {
                    Some(objects) => {
                        let mut names: Vec<String> = objects.iter().map(|o| o.name.clone()).collect();
                        names.sort();
                        names.dedup();
                        let names = ResourceNames::Set(&names);
                        self.pod_values_both(resource, namespace, names, now_ms, objects)?
                    }
                    None => {
                        let names = request.name.as_ref().map(std::slice::from_ref);
                        let names = names.map(ResourceNames::Set).unwrap_or(ResourceNames::All);
                        self.pod_values_both(resource, namespace, names, now_ms, &[])?
                    }
                };
                (Arc::new(merge_pod_values(cpu, memory)), now_ms)
            }
        };
        let usage = |namespace: String, name: String, labels, containers: &Arc<[ContainerUsage]>| PodUsage {
            namespace,
            name,
            labels,
            ts_ms: now_ms,
            window: resource.window,
            containers: containers.clone(),
        };
        let mut out = Vec::new();
        match objects {
            Some(objects) => {
                for object in objects {
                    let key = (object.namespace.unwrap_or_default(), object.name);
                    if let Some(containers) = table.get(&key) {
                        out.push(usage(key.0, key.1, object.labels, containers));
                    }
                }
            }
            None => {
                for ((pod_namespace, name), containers) in table.iter() {
                    let selected = namespace.is_none_or(|ns| ns == pod_namespace)
                        && request.name.as_ref().is_none_or(|wanted| wanted == name)
                        && request.fields.matches(name, Some(pod_namespace))
                        && request.labels.matches(|_| None);
                    if selected {
                        out.push(usage(pod_namespace.clone(), name.clone(), BTreeMap::new(), containers));
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        if let (Some(name), true) = (&request.name, out.is_empty()) {
            let namespace = namespace.unwrap_or_default();
            return Err(ProviderError::not_found(format!(
                "podmetrics.metrics.k8s.io \"{namespace}/{name}\" not found"
            )));
        }
        Ok(out)
    }

    /// NodeMetrics for the nodes `request` selects, sorted by name.
    pub(crate) fn node_metrics(&self, request: &ResourceMetricsRequest) -> Result<Vec<NodeUsage>, ProviderError> {
        let rules = self.rules();
        let resource = served(rules.resource.as_ref())?;
        let nodes = GroupResource::new("", "nodes");
        let listed = self
            .resolver()
            .list_objects(&nodes, None, &request.labels)
            .map_err(|e| ProviderError::unavailable(e.to_string()))?;
        let objects = listed.map(|objects| select(objects, request));
        if let (Some(objects), Some(name)) = (&objects, &request.name) {
            if objects.is_empty() {
                return Err(ProviderError::not_found(format!("nodes \"{name}\" not found")));
            }
        }
        let mut names: Vec<String> = match &objects {
            Some(objects) => objects.iter().map(|o| o.name.clone()).collect(),
            None => request.name.iter().cloned().collect(),
        };
        names.sort();
        names.dedup();
        if objects.is_some() && names.is_empty() {
            return Ok(Vec::new());
        }
        let names = if names.is_empty() { ResourceNames::All } else { ResourceNames::Set(&names) };
        let now_ms = tsdb::now_ms();
        let (cpu, memory) = std::thread::scope(|scope| {
            let cpu = scope.spawn(|| self.node_values(&resource.cpu, names, now_ms));
            let memory = self.node_values(&resource.memory, names, now_ms);
            (join(cpu), memory)
        });
        let (cpu, memory) = (cpu?, memory?);
        let objects = objects.unwrap_or_else(|| {
            let from_values = cpu.keys().filter(|name| memory.contains_key(*name)).map(|name| ObjectSummary {
                namespace: None,
                name: name.clone(),
                labels: BTreeMap::new(),
            });
            select(from_values.collect(), request)
        });
        let mut out: Vec<NodeUsage> = objects
            .into_iter()
            .filter_map(|object| {
                let cpu_cores = *cpu.get(&object.name)?;
                let memory_bytes = *memory.get(&object.name)?;
                Some(NodeUsage {
                    name: object.name,
                    labels: object.labels,
                    ts_ms: now_ms,
                    window: resource.window,
                    cpu_cores,
                    memory_bytes,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        if let (Some(name), true) = (&request.name, out.is_empty()) {
            return Err(ProviderError::not_found(format!("nodemetrics.metrics.k8s.io \"{name}\" not found")));
        }
        Ok(out)
    }

    /// The pods snapshot for `rules` (see the module doc); `None` when the rules have no
    /// resource rules.
    fn pod_snapshot(
        &self,
        rules: &Arc<crate::adapter::rules::RuleSet>,
    ) -> Result<Option<Arc<PodSnapshot>>, ProviderError> {
        let cache = &self.resource_snapshots;
        let current = cache.pods.lock().clone();
        if let Some(snapshot) = current.filter(|s| s.generation == rules.generation) {
            let age = snapshot.taken.elapsed();
            if age <= SNAPSHOT_MAX_AGE {
                if age > SNAPSHOT_REFRESH_AFTER && !cache.refreshing.swap(true, Ordering::AcqRel) {
                    self.refresh_in_background(rules.clone());
                }
                return Ok(Some(snapshot));
            }
        }
        let Some(snapshot) = take_pod_snapshot(self.engine(), rules)? else { return Ok(None) };
        let snapshot = Arc::new(snapshot);
        *cache.pods.lock() = Some(snapshot.clone());
        Ok(Some(snapshot))
    }

    /// Takes a new pods snapshot on a thread of its own; a failure keeps the old one (logged).
    fn refresh_in_background(&self, rules: Arc<crate::adapter::rules::RuleSet>) {
        let cache = self.resource_snapshots.clone();
        let engine = self.engine().clone();
        let spawned = std::thread::Builder::new().name("resource-snapshot".into()).spawn(move || {
            // Below the requests' priority (as the workers): a request waiting for the CPU
            // matters more than a snapshot a second fresher.
            if let Err(e) = crate::workers::lower_own_priority(crate::workers::DEFAULT_NICE) {
                tracing::debug!(error = %e, "cannot lower the resource snapshot thread's priority");
            }
            match take_pod_snapshot(&engine, &rules) {
                Ok(Some(snapshot)) => *cache.pods.lock() = Some(Arc::new(snapshot)),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "refreshing the resource metrics snapshot failed; serving the previous one"),
            }
            cache.refreshing.store(false, Ordering::Release);
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the resource metrics refresh thread");
            self.resource_snapshots.refreshing.store(false, Ordering::Release);
        }
    }

    /// The cpu and memory values of pods, the two queries run side by side.
    fn pod_values_both(
        &self,
        resource: &ResourceQueries,
        namespace: Option<&str>,
        names: ResourceNames<'_>,
        now_ms: i64,
        objects: &[ObjectSummary],
    ) -> Result<(PodValues, PodValues), ProviderError> {
        let (cpu, memory) = std::thread::scope(|scope| {
            let cpu = scope.spawn(|| self.pod_values(&resource.cpu, namespace, names, now_ms, objects));
            let memory = self.pod_values(&resource.memory, namespace, names, now_ms, objects);
            (join(cpu), memory)
        });
        Ok((cpu?, memory?))
    }

    /// One rule's `containerQuery` for pods, keyed by (namespace, pod) and container. Across
    /// namespaces it is one query grouped by namespace too; if its answers do not carry the
    /// namespace label (a template that drops it), one query per namespace, as
    /// prometheus-adapter runs them.
    fn pod_values(
        &self,
        rule: &ResourceQuery,
        namespace: Option<&str>,
        names: ResourceNames<'_>,
        now_ms: i64,
        objects: &[ObjectSummary],
    ) -> Result<PodValues, ProviderError> {
        let labels = &rule.labels;
        let query = rule.pods_query(namespace, names).map_err(rule_error)?;
        let samples = run_resource_query(self.engine(), &query, now_ms)?;
        let mut out = PodValues::new();
        let mut lacks_namespace = false;
        for sample in samples {
            let Some(pod) = sample.labels.get(&labels.pod) else { continue };
            let sample_namespace = match namespace {
                Some(ns) => ns,
                None => match sample.labels.get(&labels.namespace) {
                    Some(ns) => ns,
                    None => {
                        lacks_namespace = true;
                        continue;
                    }
                },
            };
            let container = sample.labels.get(&labels.container).unwrap_or("");
            if sample.value.is_finite() {
                out.entry((sample_namespace.to_string(), pod.to_string()))
                    .or_default()
                    .insert(container.to_string(), sample.value);
            }
        }
        if namespace.is_none() && lacks_namespace && !objects.is_empty() {
            let mut by_namespace: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for object in objects {
                by_namespace.entry(object.namespace.as_deref().unwrap_or("")).or_default().push(object.name.clone());
            }
            let mut out = PodValues::new();
            for (ns, mut names) in by_namespace {
                names.sort();
                names.dedup();
                out.extend(self.pod_values(rule, Some(ns), ResourceNames::Set(&names), now_ms, &[])?);
            }
            return Ok(out);
        }
        Ok(out)
    }

    /// One rule's `nodeQuery`, keyed by node.
    fn node_values(
        &self,
        rule: &ResourceQuery,
        names: ResourceNames<'_>,
        now_ms: i64,
    ) -> Result<HashMap<String, f64>, ProviderError> {
        let query = rule.nodes_query(names).map_err(rule_error)?;
        let mut out = HashMap::new();
        for sample in run_resource_query(self.engine(), &query, now_ms)? {
            if let (Some(node), true) = (sample.labels.get(&rule.labels.node), sample.value.is_finite()) {
                out.insert(node.to_string(), sample.value);
            }
        }
        Ok(out)
    }
}

/// Both `containerQuery`s for every pod now, side by side; `None` without resource rules.
fn take_pod_snapshot(
    engine: &query::Engine,
    rules: &crate::adapter::rules::RuleSet,
) -> Result<Option<PodSnapshot>, ProviderError> {
    let Some(resource) = rules.resource.as_ref() else { return Ok(None) };
    let taken = Instant::now();
    let eval_ms = tsdb::now_ms();
    let (cpu, memory) = std::thread::scope(|scope| {
        let cpu = scope.spawn(|| all_pod_values(engine, &resource.cpu, eval_ms));
        let memory = all_pod_values(engine, &resource.memory, eval_ms);
        (join(cpu), memory)
    });
    let pods = match (cpu?, memory?) {
        (Some(cpu), Some(memory)) => Some(Arc::new(merge_pod_values(cpu, memory))),
        _ => None,
    };
    Ok(Some(PodSnapshot { generation: rules.generation, taken, eval_ms, pods }))
}

/// One rule's `containerQuery` for every pod, keyed by (namespace, pod) and container; `None`
/// when an answer lacks the namespace label.
fn all_pod_values(
    engine: &query::Engine,
    rule: &ResourceQuery,
    now_ms: i64,
) -> Result<Option<PodValues>, ProviderError> {
    let labels = &rule.labels;
    let query = rule.pods_query(None, ResourceNames::All).map_err(rule_error)?;
    let mut out = PodValues::new();
    for sample in run_resource_query(engine, &query, now_ms)? {
        let Some(pod) = sample.labels.get(&labels.pod) else { continue };
        let Some(namespace) = sample.labels.get(&labels.namespace) else { return Ok(None) };
        if sample.value.is_finite() {
            let container = sample.labels.get(&labels.container).unwrap_or("");
            out.entry((namespace.to_string(), pod.to_string()))
                .or_default()
                .insert(container.to_string(), sample.value);
        }
    }
    Ok(Some(out))
}

fn run_resource_query(
    engine: &query::Engine,
    query: &ResourceQueryText,
    now_ms: i64,
) -> Result<Vec<query::InstantSample>, ProviderError> {
    let result = match &query.form {
        QueryForm::Parsed { expr, text } => engine.instant_expr(text, expr, now_ms, &[]).map(|o| o.value),
        QueryForm::Text(text) => engine.instant(text, now_ms),
    };
    match result.map_err(|e| super::lookup::query_error(&query.text, e))? {
        query::Value::Vector(samples) => Ok(samples),
        _ => Err(ProviderError::internal(format!(
            "the resource query {:?} did not return an instant vector",
            query.text
        ))),
    }
}

fn served(resource: Option<&ResourceQueries>) -> Result<&ResourceQueries, ProviderError> {
    resource.ok_or_else(|| {
        ProviderError::not_found("metrics.k8s.io is not served: the adapter config has no resourceRules")
    })
}

/// The objects `request` names and its field selector keeps.
fn select(objects: Vec<ObjectSummary>, request: &ResourceMetricsRequest) -> Vec<ObjectSummary> {
    objects
        .into_iter()
        .filter(|o| request.namespace.as_ref().is_none_or(|ns| o.namespace.as_ref() == Some(ns)))
        .filter(|o| request.name.as_ref().is_none_or(|name| &o.name == name))
        .filter(|o| request.fields.matches(&o.name, o.namespace.as_deref()))
        .filter(|o| request.labels.matches(|key| o.labels.get(key).map(String::as_str)))
        .collect()
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T, ProviderError>>) -> Result<T, ProviderError> {
    handle.join().unwrap_or_else(|_| Err(ProviderError::internal("a resource query thread panicked")))
}

fn rule_error(e: RuleError) -> ProviderError {
    ProviderError::internal(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selectors_filter_on_metadata() {
        let selector = FieldSelector::parse("metadata.namespace=web,metadata.name!=b").unwrap();
        assert!(selector.matches("a", Some("web")));
        assert!(!selector.matches("b", Some("web")));
        assert!(!selector.matches("a", Some("ml")));
        assert!(FieldSelector::parse("metadata.name==a").unwrap().matches("a", None));
        assert_eq!(FieldSelector::parse("spec.nodeName=n1").unwrap_err(), "field label not supported: spec.nodeName");
        assert!(FieldSelector::parse("metadata.name").is_err());
        assert_eq!(FieldSelector::parse("").unwrap(), FieldSelector::default());
        let huge = "metadata.name=a,".repeat(2000);
        assert!(FieldSelector::parse(&huge).unwrap_err().contains("longer than"));
    }
}
