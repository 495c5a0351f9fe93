//! `run_scrape_discovery` is scrape target discovery in Prometheus's `kubernetes_sd_configs` shape: it watches
//! pods, services, endpoints, endpoint slices, nodes and ingresses (watch streams, no polling)
//! and hands the scraper fresh target groups whenever they change, so targets appear and
//! disappear as pods do (the scraper writes staleness markers for removed targets).
//!
//! EndpointSlices are watched as dynamic objects at the version the server serves
//! (`discovery.k8s.io/v1`, or `v1beta1` before Kubernetes 1.21), both read into one shape.

use super::scrape_targets::{
    add_node_metadata, endpoints_targets, endpointslice_targets, ingress_targets, node_targets, pod_targets,
    service_targets, EndpointSliceShape, NodeLookup, SliceContext, SERVICE_NAME_LABEL,
};
use ingest::{ScrapeManager, TargetGroup};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Which objects a discovery config turns into targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
    Node,
    Ingress,
}

impl Role {
    /// Parses the `role:` value of a `kubernetes_sd_configs` entry.
    pub(crate) fn parse(text: &str) -> Option<Role> {
        match text {
            "pod" => Some(Role::Pod),
            "service" => Some(Role::Service),
            "endpoints" => Some(Role::Endpoints),
            "endpointslice" => Some(Role::EndpointSlice),
            "node" => Some(Role::Node),
            "ingress" => Some(Role::Ingress),
            _ => None,
        }
    }
}

/// One `kubernetes_sd_configs` entry of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScrapeDiscoverySpec {
    pub(crate) job_name: String,
    pub(crate) role: Role,
    /// Namespaces to watch; empty means all.
    pub(crate) namespaces: Vec<String>,
    /// Label and field selectors per watched kind (`pod`, `service`, `endpoints`, `node`, …).
    pub(crate) selectors: Vec<ingest::RoleSelector>,
    /// `attach_metadata: {node: true}` (roles pod, endpoints, endpointslice).
    pub(crate) attach_node: bool,
}

impl ScrapeDiscoverySpec {
    /// The watch configuration for kind `kind`: its selectors, if any.
    fn watch_config(&self, kind: &str) -> watcher::Config {
        let mut config = watcher::Config::default();
        if let Some(selector) = self.selectors.iter().find(|s| s.role == kind) {
            if let Some(label) = &selector.label {
                config = config.labels(label);
            }
            if let Some(field) = &selector.field {
                config = config.fields(field);
            }
        }
        config
    }
}

/// Changes are coalesced for this long before the target groups are recomputed, so a rollout of
/// many pods causes one update, not hundreds.
const COALESCE: Duration = Duration::from_millis(200);

/// A set of reflector caches (one per watched namespace) of one kind.
struct Cache<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    stores: Vec<Store<K>>,
}

impl<K> Cache<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    /// Starts the watches, which end on `shutdown`; every change pings `changed`.
    fn start(
        client: &Client,
        namespaces: &[String],
        config: watcher::Config,
        changed: &mpsc::Sender<()>,
        shutdown: &watch::Receiver<bool>,
    ) -> Self
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        let apis: Vec<Api<K>> = if namespaces.is_empty() {
            vec![Api::all(client.clone())]
        } else {
            namespaces.iter().map(|ns| Api::namespaced(client.clone(), ns)).collect()
        };
        Self::watch(apis, Default::default(), config, changed, shutdown)
    }

    /// Starts the watch of a cluster-scoped kind (nodes).
    fn start_cluster(
        client: &Client,
        config: watcher::Config,
        changed: &mpsc::Sender<()>,
        shutdown: &watch::Receiver<bool>,
    ) -> Self
    where
        K: Resource<Scope = k8s_openapi::ClusterResourceScope>,
    {
        Self::watch(vec![Api::all(client.clone())], Default::default(), config, changed, shutdown)
    }
}

impl<K> Cache<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    fn watch(
        apis: Vec<Api<K>>,
        dynamic_type: K::DynamicType,
        config: watcher::Config,
        changed: &mpsc::Sender<()>,
        shutdown: &watch::Receiver<bool>,
    ) -> Self {
        let mut stores = Vec::with_capacity(apis.len());
        let kind = K::kind(&dynamic_type).to_string();
        for api in apis {
            let writer = reflector::store::Writer::new(dynamic_type.clone());
            let reader = writer.as_reader();
            let changed = changed.clone();
            let stream = reflector::reflector(writer, watcher(api, config.clone())).default_backoff();
            let kind = kind.clone();
            crate::shutdown::spawn_stream(stream, shutdown.clone(), move |event| match event {
                Ok(_) => {
                    let _ = changed.try_send(());
                }
                Err(e) => tracing::warn!(kind = %kind, error = %e, "watch failed; retrying"),
            });
            stores.push(reader);
        }
        Cache { stores }
    }

    fn all(&self) -> Vec<Arc<K>> {
        self.stores.iter().flat_map(|s| s.state()).collect()
    }
}

impl Cache<DynamicObject> {
    /// Starts the watches of a namespaced kind known only at run time (EndpointSlices).
    fn start_dynamic(
        client: &Client,
        namespaces: &[String],
        resource: &ApiResource,
        config: watcher::Config,
        changed: &mpsc::Sender<()>,
        shutdown: &watch::Receiver<bool>,
    ) -> Self {
        let apis: Vec<Api<DynamicObject>> = if namespaces.is_empty() {
            vec![Api::all_with(client.clone(), resource)]
        } else {
            namespaces.iter().map(|ns| Api::namespaced_with(client.clone(), ns, resource)).collect()
        };
        Self::watch(apis, resource.clone(), config, changed, shutdown)
    }
}

/// The EndpointSlice version the server serves: `discovery.k8s.io/v1` (Kubernetes 1.21+), else
/// `v1beta1`, as Prometheus chooses.
async fn endpointslice_resource(client: &Client) -> ApiResource {
    let version = match client.list_api_group_resources("discovery.k8s.io/v1").await {
        Ok(list) if list.resources.iter().any(|r| r.name == "endpointslices") => "v1",
        _ => "v1beta1",
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("discovery.k8s.io", version, "EndpointSlice"),
        "endpointslices",
    )
}

/// Runs one discovery spec until `shutdown` flips, feeding `scraper.set_target_groups`.
pub(crate) async fn run_scrape_discovery(
    client: Client,
    spec: ScrapeDiscoverySpec,
    scraper: Arc<ScrapeManager>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (changed_tx, mut changed_rx) = mpsc::channel::<()>(1);
    let pods = matches!(spec.role, Role::Pod | Role::Endpoints | Role::EndpointSlice)
        .then(|| Cache::<Pod>::start(&client, &spec.namespaces, spec.watch_config("pod"), &changed_tx, &shutdown));
    let services = matches!(spec.role, Role::Service | Role::Endpoints | Role::EndpointSlice).then(|| {
        Cache::<Service>::start(&client, &spec.namespaces, spec.watch_config("service"), &changed_tx, &shutdown)
    });
    let endpoints = matches!(spec.role, Role::Endpoints).then(|| {
        Cache::<Endpoints>::start(&client, &spec.namespaces, spec.watch_config("endpoints"), &changed_tx, &shutdown)
    });
    let endpoint_slices = if spec.role == Role::EndpointSlice {
        let resource = endpointslice_resource(&client).await;
        tracing::info!(job = %spec.job_name, version = %resource.api_version, "watching EndpointSlices");
        let config = spec.watch_config("endpointslice");
        Some(Cache::start_dynamic(&client, &spec.namespaces, &resource, config, &changed_tx, &shutdown))
    } else {
        None
    };
    let ingresses = (spec.role == Role::Ingress).then(|| {
        Cache::<Ingress>::start(&client, &spec.namespaces, spec.watch_config("ingress"), &changed_tx, &shutdown)
    });
    let attach_node = spec.attach_node && matches!(spec.role, Role::Pod | Role::Endpoints | Role::EndpointSlice);
    let nodes = (spec.role == Role::Node || attach_node)
        .then(|| Cache::<Node>::start_cluster(&client, spec.watch_config("node"), &changed_tx, &shutdown));
    drop(changed_tx);
    tracing::info!(job = %spec.job_name, role = ?spec.role, namespaces = ?spec.namespaces, selectors = ?spec.selectors, "Kubernetes discovery started");
    loop {
        tokio::select! {
            ping = changed_rx.recv() => {
                if ping.is_none() {
                    return;
                }
            }
            _ = crate::shutdown::stopped(&mut shutdown) => return,
        }
        tokio::time::sleep(COALESCE).await;
        while changed_rx.try_recv().is_ok() {}
        let caches = Caches {
            pods: pods.as_ref(),
            services: services.as_ref(),
            endpoints: endpoints.as_ref(),
            endpoint_slices: endpoint_slices.as_ref(),
            ingresses: ingresses.as_ref(),
            nodes: nodes.as_ref(),
            attach_node,
        };
        let groups = build_groups(spec.role, &caches);
        tracing::debug!(job = %spec.job_name, groups = groups.len(), "discovered targets changed");
        scraper.set_target_groups(&spec.job_name, groups);
    }
}

/// The caches one role watches (the others are `None`).
struct Caches<'a> {
    pods: Option<&'a Cache<Pod>>,
    services: Option<&'a Cache<Service>>,
    endpoints: Option<&'a Cache<Endpoints>>,
    endpoint_slices: Option<&'a Cache<DynamicObject>>,
    ingresses: Option<&'a Cache<Ingress>>,
    nodes: Option<&'a Cache<Node>>,
    /// Whether targets get their node's metadata (`attach_metadata: {node: true}`).
    attach_node: bool,
}

/// `(namespace, name)` → object, for the lookups target building makes per address.
fn by_namespaced_name<K: Resource>(objects: &[Arc<K>]) -> HashMap<(&str, &str), &K> {
    objects
        .iter()
        .filter_map(|o| {
            let meta = o.meta();
            Some(((meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref()?), &**o))
        })
        .collect()
}

fn build_groups(role: Role, caches: &Caches<'_>) -> Vec<TargetGroup> {
    let Caches { pods, services, endpoints, endpoint_slices, ingresses, nodes, attach_node } = *caches;
    let all_pods = pods.map(Cache::all).unwrap_or_default();
    let all_services = services.map(Cache::all).unwrap_or_default();
    let all_nodes = nodes.map(Cache::all).unwrap_or_default();
    let pods_by_name = by_namespaced_name(&all_pods);
    let services_by_name = by_namespaced_name(&all_services);
    let nodes_by_name: HashMap<&str, &Node> =
        all_nodes.iter().filter_map(|n| Some((n.metadata.name.as_deref()?, &**n))).collect();
    let find_pod = |ns: &str, name: &str| pods_by_name.get(&(ns, name)).map(|p| (*p).clone());
    let find_node = |name: &str| nodes_by_name.get(name).map(|n| (*n).clone());
    let node_lookup: Option<NodeLookup<'_>> = attach_node.then_some(&find_node);
    match role {
        Role::Pod => all_pods
            .iter()
            .flat_map(|pod| {
                let mut groups = pod_targets(pod);
                if let Some(nodes) = node_lookup {
                    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
                    for group in &mut groups {
                        add_node_metadata(&mut group.labels, node_name, nodes);
                    }
                }
                groups
            })
            .collect(),
        Role::Service => all_services.iter().flat_map(|s| service_targets(s)).collect(),
        Role::Node => all_nodes.iter().flat_map(|n| node_targets(n)).collect(),
        Role::Ingress => {
            ingresses.map(|c| c.all().iter().flat_map(|i| ingress_targets(i)).collect()).unwrap_or_default()
        }
        Role::Endpoints => endpoints
            .map(|c| c.all())
            .unwrap_or_default()
            .iter()
            .flat_map(|ep| {
                let key = (ep.metadata.namespace.as_deref().unwrap_or(""), ep.metadata.name.as_deref().unwrap_or(""));
                let mut groups = endpoints_targets(ep, services_by_name.get(&key).copied(), &find_pod);
                if let Some(nodes) = node_lookup {
                    for group in &mut groups {
                        let node = group.labels.get("__meta_kubernetes_endpoint_node_name").cloned();
                        add_node_metadata(&mut group.labels, node.as_deref(), nodes);
                    }
                }
                groups
            })
            .collect(),
        Role::EndpointSlice => endpoint_slices
            .map(|c| c.all())
            .unwrap_or_default()
            .iter()
            .flat_map(|object| {
                let shape: EndpointSliceShape = match serde_json::from_value(object.data.clone()) {
                    Ok(shape) => shape,
                    Err(e) => {
                        tracing::warn!(slice = ?object.metadata.name, error = %e, "an EndpointSlice of an unknown shape; skipped");
                        return Vec::new();
                    }
                };
                let namespace = object.metadata.namespace.as_deref().unwrap_or("");
                let service = object
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .and_then(|name| services_by_name.get(&(namespace, name.as_str())).copied());
                let context =
                    SliceContext { metadata: &object.metadata, service, pod_by_name: &find_pod, node_by_name: node_lookup };
                endpointslice_targets(&shape, &context)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_watched_kind_gets_its_own_selectors() {
        let spec = ScrapeDiscoverySpec {
            job_name: "j".into(),
            role: Role::Endpoints,
            namespaces: vec![],
            selectors: vec![
                ingest::RoleSelector { role: "pod".into(), label: None, field: Some("status.phase=Running".into()) },
                ingest::RoleSelector { role: "service".into(), label: Some("app=web".into()), field: None },
            ],
            attach_node: false,
        };
        let pod = spec.watch_config("pod");
        assert_eq!(
            (pod.label_selector.as_deref(), pod.field_selector.as_deref()),
            (None, Some("status.phase=Running"))
        );
        let service = spec.watch_config("service");
        assert_eq!(service.label_selector.as_deref(), Some("app=web"));
        let endpoints = spec.watch_config("endpoints");
        assert_eq!((endpoints.label_selector, endpoints.field_selector), (None, None));
    }
}
