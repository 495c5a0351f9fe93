//! `metrics.k8s.io` answers (PodMetrics, NodeMetrics) from `resourceRules`, as
//! prometheus-adapter gives them: the objects come from the cluster (label and field selectors
//! applied to the watched metadata), the values from the rules' `containerQuery` / `nodeQuery`
//! run now, in cores and bytes. An object is in the answer only when both its cpu and its memory
//! query answered for it (a pod's containers are the union of both, a missing one at 0); a named
//! object without values is `NotFound`, as from metrics-server.
//!
//! Without a cluster (a standalone server) the objects are those the queries answer for, with
//! no labels.

use super::resources::{GroupResource, ObjectSummary};
use super::{Provider, ProviderError};
use crate::adapter::rules::query::QueryForm;
use crate::adapter::rules::resource::{ResourceNames, ResourceQueries, ResourceQuery, ResourceQueryText};
use crate::adapter::rules::selector::LabelSelector;
use crate::adapter::rules::RuleError;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

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
    /// Parses `text`; unknown fields are refused as the API server refuses them.
    pub(crate) fn parse(text: &str) -> Result<FieldSelector, String> {
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

/// One container's usage: cores and bytes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ContainerUsage {
    pub(crate) name: String,
    pub(crate) cpu_cores: f64,
    pub(crate) memory_bytes: f64,
}

/// A PodMetrics answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PodUsage {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) ts_ms: i64,
    pub(crate) window: Duration,
    pub(crate) containers: Vec<ContainerUsage>,
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
        let now_ms = tsdb::now_ms();
        let (cpu, memory) = match &objects {
            Some(objects) if objects.is_empty() => return Ok(Vec::new()),
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
        let objects = objects.unwrap_or_else(|| {
            let from_values = cpu.keys().filter(|key| memory.contains_key(*key)).map(|(ns, name)| ObjectSummary {
                namespace: Some(ns.clone()),
                name: name.clone(),
                labels: BTreeMap::new(),
            });
            select(from_values.collect(), request)
        });
        let mut out = Vec::with_capacity(objects.len());
        for object in objects {
            let key = (object.namespace.clone().unwrap_or_default(), object.name);
            let (Some(cpu), Some(memory)) = (cpu.get(&key), memory.get(&key)) else { continue };
            let mut containers: BTreeMap<&str, ContainerUsage> = BTreeMap::new();
            for (container, cores) in cpu {
                containers.entry(container).or_insert_with(|| empty_container(container)).cpu_cores = *cores;
            }
            for (container, bytes) in memory {
                containers.entry(container).or_insert_with(|| empty_container(container)).memory_bytes = *bytes;
            }
            out.push(PodUsage {
                namespace: key.0,
                name: key.1,
                labels: object.labels,
                ts_ms: now_ms,
                window: resource.window,
                containers: containers.into_values().collect(),
            });
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
        let samples = self.run_resource_query(&query, now_ms)?;
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
        for sample in self.run_resource_query(&query, now_ms)? {
            if let (Some(node), true) = (sample.labels.get(&rule.labels.node), sample.value.is_finite()) {
                out.insert(node.to_string(), sample.value);
            }
        }
        Ok(out)
    }

    fn run_resource_query(
        &self,
        query: &ResourceQueryText,
        now_ms: i64,
    ) -> Result<Vec<query::InstantSample>, ProviderError> {
        let result = match &query.form {
            QueryForm::Parsed { expr, text } => self.engine().instant_expr(text, expr, now_ms, &[]).map(|o| o.value),
            QueryForm::Text(text) => self.engine().instant(text, now_ms),
        };
        match result.map_err(|e| super::lookup::query_error(&query.text, e))? {
            query::Value::Vector(samples) => Ok(samples),
            _ => Err(ProviderError::internal(format!(
                "the resource query {:?} did not return an instant vector",
                query.text
            ))),
        }
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
        .filter(|o| request.name.as_ref().is_none_or(|name| &o.name == name))
        .filter(|o| request.fields.matches(&o.name, o.namespace.as_deref()))
        .filter(|o| request.labels.matches(|key| o.labels.get(key).map(String::as_str)))
        .collect()
}

fn empty_container(name: &str) -> ContainerUsage {
    ContainerUsage { name: name.to_string(), cpu_cores: 0.0, memory_bytes: 0.0 }
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
    }
}
