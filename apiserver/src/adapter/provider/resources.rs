//! `ObjectResolver` is the adapter's only view of Kubernetes objects: it normalizes a
//! group-resource as a RESTMapper would (`pod` → `pods`, `model` in `mlops.seldon.io` →
//! `models.mlops.seldon.io`, with kind and apiVersion), lists the names of the objects a label
//! selector picks, and finds an object's owner.
//!
//! `StandaloneResolver` is the implementation used without a cluster: a built-in table of the
//! usual resources (core, apps, batch, networking, Seldon), and label selectors matched against
//! the *series' own labels* — `pods/*?labelSelector=app=foo` answers for the pods whose series
//! carry `app="foo"` (a key such as `app.kubernetes.io/name` is looked up as
//! `app_kubernetes_io_name`, the name Prometheus' `labelmap` gives it). The Kubernetes
//! integration supplies another implementation backed by watched caches, so the provider is
//! unchanged when a cluster is configured.

use crate::adapter::rules::selector::LabelSelector;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A Kubernetes group-resource, normalized: `resource` is plural and lower case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: impl Into<String>, resource: impl Into<String>) -> Self {
        GroupResource { group: group.into(), resource: resource.into() }
    }

    /// `namespaces`, the resource metrics describing a whole namespace belong to.
    pub fn namespaces() -> Self {
        GroupResource::new("", "namespaces")
    }

    /// Parses the URL form `resource.group` (`models.mlops.seldon.io`) or `resource`.
    pub fn parse(text: &str) -> Self {
        match text.split_once('.') {
            Some((resource, group)) => GroupResource::new(group, resource),
            None => GroupResource::new("", text),
        }
    }
}

impl fmt::Display for GroupResource {
    /// `resource.group`, or just `resource` for the core group (the discovery and URL form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// What the API knows about a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    pub group_resource: GroupResource,
    pub singular: String,
    pub kind: String,
    /// `v1`, `apps/v1`, `mlops.seldon.io/v1alpha1`.
    pub api_version: String,
    /// Whether objects live in a namespace (false for nodes and namespaces).
    pub namespaced: bool,
}

/// An object a metric describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub api_version: String,
    pub namespace: Option<String>,
    pub name: String,
}

/// Hints for resolvers that answer from the metrics themselves (the standalone one); a
/// Kubernetes-backed resolver ignores them.
#[derive(Debug, Clone, Copy)]
pub struct SeriesHint<'a> {
    /// Metric name of the series the rule reads (`__name__`).
    pub series_name: &'a str,
    /// Label holding the object name.
    pub resource_label: &'a str,
    /// Label holding the namespace, when the rule maps one.
    pub namespace_label: Option<&'a str>,
}

/// A request for the names of the objects a selector picks.
#[derive(Debug, Clone, Copy)]
pub struct ObjectQuery<'a> {
    pub resource: &'a ResourceInfo,
    /// `None` for all namespaces (or a cluster-scoped resource).
    pub namespace: Option<&'a str>,
    pub selector: &'a LabelSelector,
    pub hint: SeriesHint<'a>,
}

/// Why objects could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("listing {resource}: {message}")]
    Unavailable { resource: String, message: String },
    #[error("listing {resource}: store error: {source}")]
    Store {
        resource: String,
        #[source]
        source: tsdb::Error,
    },
}

/// One object as a metrics answer shows it: where it is, its name, its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub namespace: Option<String>,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Resolves resources and objects. Implementations must be cheap to call on every request and
/// safe to share between threads; none of the methods blocks on the network (a Kubernetes-backed
/// implementation answers from caches its watches keep current).
pub trait ObjectResolver: Send + Sync {
    /// Normalizes `resource` (singular or plural, any case) in `group` (empty means "guess", as
    /// a RESTMapper does); `None` when no such resource is known.
    fn resource_info(&self, group: &str, resource: &str) -> Option<ResourceInfo>;

    /// Like [`ObjectResolver::resource_info`], but also accepts resources it does not know when
    /// a config names them explicitly (a custom resource in a standalone setup).
    fn resource_info_or_assume(&self, group: &str, resource: &str) -> ResourceInfo {
        self.resource_info(group, resource).unwrap_or_else(|| assumed_info(group, resource))
    }

    /// Names of the objects `query` selects, sorted and deduplicated.
    fn list_names(&self, query: &ObjectQuery<'_>) -> Result<Vec<String>, ResolveError>;

    /// Instead of listing names, a resolver that answers from the series themselves may return
    /// matchers that select the objects' series directly (the query then filters once, with no
    /// name list). `None` (the default) means "use [`ObjectResolver::list_names`]".
    fn selector_matchers(&self, query: &ObjectQuery<'_>) -> Option<Vec<tsdb::Matcher>> {
        let _ = query;
        None
    }

    /// The objects of `resource` in `namespace` (every namespace when `None`) that `selector`
    /// matches, with their labels; `None` when this resolver knows no object list (standalone:
    /// the answer then covers the objects the series name).
    fn list_objects(
        &self,
        resource: &GroupResource,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<Option<Vec<ObjectSummary>>, ResolveError> {
        let _ = (resource, namespace, selector);
        Ok(None)
    }

    /// Names of the pods in `namespace` whose controller chain leads to the object `name` of
    /// `owner` (used by rules with `ownerAggregation`), sorted. Only a cluster knows owners.
    fn pods_owned_by(&self, owner: &ResourceInfo, namespace: &str, name: &str) -> Result<Vec<String>, ResolveError> {
        let _ = (namespace, name);
        Err(ResolveError::Unavailable {
            resource: owner.group_resource.to_string(),
            message: "owner references need a Kubernetes cluster (--kubeconfig, or run in a pod)".into(),
        })
    }

    /// The controller owning an object (a pod's ReplicaSet, a ReplicaSet's Deployment), when known.
    fn owner_of(&self, resource: &GroupResource, namespace: &str, name: &str) -> Option<ObjectRef> {
        let _ = (resource, namespace, name);
        None
    }
}

/// (group, plural, singular, kind, version, namespaced) of the resources a standalone Ringtail
/// knows without asking a cluster.
const BUILTIN_RESOURCES: &[(&str, &str, &str, &str, &str, bool)] = &[
    ("", "pods", "pod", "Pod", "v1", true),
    ("", "services", "service", "Service", "v1", true),
    ("", "namespaces", "namespace", "Namespace", "v1", false),
    ("", "nodes", "node", "Node", "v1", false),
    ("", "endpoints", "endpoints", "Endpoints", "v1", true),
    ("", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", "v1", true),
    ("", "persistentvolumes", "persistentvolume", "PersistentVolume", "v1", false),
    ("", "replicationcontrollers", "replicationcontroller", "ReplicationController", "v1", true),
    ("apps", "deployments", "deployment", "Deployment", "v1", true),
    ("apps", "replicasets", "replicaset", "ReplicaSet", "v1", true),
    ("apps", "statefulsets", "statefulset", "StatefulSet", "v1", true),
    ("apps", "daemonsets", "daemonset", "DaemonSet", "v1", true),
    ("batch", "jobs", "job", "Job", "v1", true),
    ("batch", "cronjobs", "cronjob", "CronJob", "v1", true),
    ("networking.k8s.io", "ingresses", "ingress", "Ingress", "v1", true),
    ("mlops.seldon.io", "models", "model", "Model", "v1alpha1", true),
    ("mlops.seldon.io", "servers", "server", "Server", "v1alpha1", true),
    ("mlops.seldon.io", "pipelines", "pipeline", "Pipeline", "v1alpha1", true),
    ("mlops.seldon.io", "experiments", "experiment", "Experiment", "v1alpha1", true),
];

/// Looks `resource` (plural, singular or kind, any case) up in the built-in table.
pub(crate) fn builtin_resource_info(group: &str, resource: &str) -> Option<ResourceInfo> {
    let wanted = resource.to_ascii_lowercase();
    BUILTIN_RESOURCES
        .iter()
        .find(|(g, plural, singular, kind, _, _)| {
            (group.is_empty() || *g == group)
                && (*plural == wanted || *singular == wanted || kind.eq_ignore_ascii_case(&wanted))
        })
        .map(|(g, plural, singular, kind, version, namespaced)| ResourceInfo {
            group_resource: GroupResource::new(*g, *plural),
            singular: singular.to_string(),
            kind: kind.to_string(),
            api_version: if g.is_empty() { version.to_string() } else { format!("{g}/{version}") },
            namespaced: *namespaced,
        })
}

/// Info for a resource nobody described: English plural, capitalized singular as kind,
/// version `v1`, namespaced. Only used for resources a config names explicitly.
fn assumed_info(group: &str, resource: &str) -> ResourceInfo {
    let lower = resource.to_ascii_lowercase();
    let (singular, plural) = if let Some(stem) = lower.strip_suffix("ies") {
        (format!("{stem}y"), lower.clone())
    } else if lower.ends_with("ses") || lower.ends_with("xes") {
        (lower[..lower.len() - 2].to_string(), lower.clone())
    } else if let Some(stem) = lower.strip_suffix('s') {
        (stem.to_string(), lower.clone())
    } else if let Some(stem) = lower.strip_suffix('y') {
        (lower.clone(), format!("{stem}ies"))
    } else if lower.ends_with('x') || lower.ends_with("ss") {
        (lower.clone(), format!("{lower}es"))
    } else {
        (lower.clone(), format!("{lower}s"))
    };
    let mut kind = singular.clone();
    if let Some(first) = kind.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    ResourceInfo {
        group_resource: GroupResource::new(group, plural),
        singular,
        kind,
        api_version: if group.is_empty() { "v1".to_string() } else { format!("{group}/v1") },
        namespaced: true,
    }
}

/// A Kubernetes label key as a Prometheus label name (`app.kubernetes.io/name` →
/// `app_kubernetes_io_name`), as `labelmap` on `__meta_kubernetes_pod_label_*` produces it.
pub(crate) fn sanitize_label_key(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// Knows the built-in resources and no objects (for `adapter-config check` without a store).
pub(crate) struct BuiltinResolver;

impl ObjectResolver for BuiltinResolver {
    fn resource_info(&self, group: &str, resource: &str) -> Option<ResourceInfo> {
        builtin_resource_info(group, resource)
    }

    fn list_names(&self, _: &ObjectQuery<'_>) -> Result<Vec<String>, ResolveError> {
        Ok(Vec::new())
    }
}

/// The resolver used without a cluster: built-in resources, selectors matched on series labels.
pub(crate) struct StandaloneResolver {
    db: Arc<tsdb::Db>,
    /// How far back series count as current (prometheus-adapter's metrics max age).
    lookback: Duration,
}

impl StandaloneResolver {
    pub(crate) fn new(db: Arc<tsdb::Db>, lookback: Duration) -> Self {
        StandaloneResolver { db, lookback }
    }
}

impl ObjectResolver for StandaloneResolver {
    fn resource_info(&self, group: &str, resource: &str) -> Option<ResourceInfo> {
        builtin_resource_info(group, resource)
    }

    /// The selector as matchers on the series' labels; `None` for `>`/`<`, which PromQL matchers
    /// cannot express (those go through `list_names`).
    fn selector_matchers(&self, query: &ObjectQuery<'_>) -> Option<Vec<tsdb::Matcher>> {
        use crate::adapter::rules::selector::Operator;
        let mut out = Vec::with_capacity(query.selector.requirements.len());
        for r in &query.selector.requirements {
            let key = sanitize_label_key(&r.key);
            let alternation = || crate::adapter::rules::query::regex_alternation(&r.values);
            let matcher = match (r.operator, r.values.as_slice()) {
                (Operator::Equals, [v]) => tsdb::Matcher::equal(key, v.clone()),
                (Operator::In, _) => tsdb::Matcher::one_of(key, r.values.iter().cloned()),
                (Operator::NotEquals, [v]) => tsdb::Matcher::new(tsdb::MatchOp::NotEqual, key, v.clone()).ok()?,
                (Operator::NotIn, _) => tsdb::Matcher::new(tsdb::MatchOp::RegexNoMatch, key, alternation()).ok()?,
                (Operator::Exists, _) => tsdb::Matcher::new(tsdb::MatchOp::NotEqual, key, "").ok()?,
                (Operator::DoesNotExist, _) => tsdb::Matcher::equal(key, ""),
                _ => return None,
            };
            out.push(matcher);
        }
        Some(out)
    }

    fn list_names(&self, query: &ObjectQuery<'_>) -> Result<Vec<String>, ResolveError> {
        let hint = query.hint;
        let mut matchers = vec![
            tsdb::Matcher::equal(tsdb::METRIC_NAME, hint.series_name),
            tsdb::Matcher::new(tsdb::MatchOp::NotEqual, hint.resource_label, "").map_err(|source| {
                ResolveError::Store { resource: query.resource.group_resource.to_string(), source }
            })?,
        ];
        if let (Some(namespace), Some(label)) = (query.namespace, hint.namespace_label) {
            matchers.push(tsdb::Matcher::equal(label, namespace));
        }
        let now_ms = tsdb::now_ms();
        let mint_ms = now_ms - self.lookback.as_millis() as i64;
        let series = self
            .db
            .series(&matchers, mint_ms, now_ms)
            .map_err(|source| ResolveError::Store { resource: query.resource.group_resource.to_string(), source })?;
        let mut names: Vec<String> = series
            .iter()
            .filter(|labels| query.selector.matches(|key| labels.get(&sanitize_label_key(key))))
            .filter_map(|labels| labels.get(hint.resource_label).map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_a_rest_mapper() {
        let pod = builtin_resource_info("", "pod").unwrap();
        assert_eq!(pod.group_resource, GroupResource::new("", "pods"));
        assert_eq!((pod.kind.as_str(), pod.api_version.as_str()), ("Pod", "v1"));
        let deployment = builtin_resource_info("", "Deployment").unwrap();
        assert_eq!(deployment.group_resource.to_string(), "deployments.apps");
        let model = builtin_resource_info("mlops.seldon.io", "model").unwrap();
        assert_eq!(model.api_version, "mlops.seldon.io/v1alpha1");
        assert!(!builtin_resource_info("", "namespaces").unwrap().namespaced);
        assert!(builtin_resource_info("", "instance").is_none());
    }

    #[test]
    fn assumed_resources_get_english_plurals() {
        assert_eq!(assumed_info("x.io", "widget").group_resource.to_string(), "widgets.x.io");
        assert_eq!(assumed_info("x.io", "policy").group_resource.resource, "policies");
        assert_eq!(assumed_info("x.io", "policies").singular, "policy");
        assert_eq!(assumed_info("x.io", "box").group_resource.resource, "boxes");
        assert_eq!(assumed_info("x.io", "gadgets").kind, "Gadget");
    }

    #[test]
    fn group_resource_url_forms() {
        assert_eq!(GroupResource::parse("models.mlops.seldon.io"), GroupResource::new("mlops.seldon.io", "models"));
        assert_eq!(GroupResource::parse("pods").to_string(), "pods");
    }

    #[test]
    fn standalone_resolver_matches_selectors_on_series_labels() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(tsdb::Db::open(tsdb::Options::new(dir.path())).unwrap());
        let now = tsdb::now_ms();
        let sample = [tsdb::Sample::new(now, 1.0)];
        let mut batch = Vec::new();
        let sets: Vec<Vec<(&str, &str)>> = vec![
            vec![("__name__", "m"), ("namespace", "ns"), ("pod", "a-1"), ("app", "a")],
            vec![("__name__", "m"), ("namespace", "ns"), ("pod", "a-2"), ("app", "a")],
            vec![("__name__", "m"), ("namespace", "ns"), ("pod", "b-1"), ("app", "b")],
            vec![("__name__", "m"), ("namespace", "other"), ("pod", "a-9"), ("app", "a")],
        ];
        for labels in &sets {
            batch.push(tsdb::SeriesSamples::labels(labels, &sample));
        }
        db.append(&batch).unwrap();
        let resolver = StandaloneResolver::new(db, Duration::from_secs(600));
        let info = builtin_resource_info("", "pods").unwrap();
        let selector = LabelSelector::parse("app=a").unwrap();
        let query = ObjectQuery {
            resource: &info,
            namespace: Some("ns"),
            selector: &selector,
            hint: SeriesHint { series_name: "m", resource_label: "pod", namespace_label: Some("namespace") },
        };
        assert_eq!(resolver.list_names(&query).unwrap(), vec!["a-1", "a-2"]);
    }
}
