//! `run_scrape_discovery` is scrape target discovery in Prometheus's `kubernetes_sd_configs` shape: it watches
//! pods, services, endpoints and nodes (watch streams, no polling) and hands the scraper fresh target
//! groups whenever they change, so targets appear and disappear as pods do (the scraper writes
//! staleness markers for removed targets).

use super::scrape_targets::{endpoints_targets, node_targets, pod_targets, service_targets};
use ingest::{ScrapeManager, TargetGroup};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
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
    Node,
}

impl Role {
    /// Parses the `role:` value of a `kubernetes_sd_configs` entry.
    pub(crate) fn parse(text: &str) -> Option<Role> {
        match text {
            "pod" => Some(Role::Pod),
            "service" => Some(Role::Service),
            "endpoints" => Some(Role::Endpoints),
            "node" => Some(Role::Node),
            _ => None,
        }
    }
}

/// One `kubernetes_sd_configs` entry of one job.
#[derive(Debug, Clone)]
pub(crate) struct ScrapeDiscoverySpec {
    pub(crate) job_name: String,
    pub(crate) role: Role,
    /// Namespaces to watch; empty means all.
    pub(crate) namespaces: Vec<String>,
    /// Label and field selectors per watched kind (`pod`, `service`, `endpoints`, `node`).
    pub(crate) selectors: Vec<ingest::RoleSelector>,
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
        Self::watch(apis, config, changed, shutdown)
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
        Self::watch(vec![Api::all(client.clone())], config, changed, shutdown)
    }

    fn watch(
        apis: Vec<Api<K>>,
        config: watcher::Config,
        changed: &mpsc::Sender<()>,
        shutdown: &watch::Receiver<bool>,
    ) -> Self {
        let mut stores = Vec::with_capacity(apis.len());
        for api in apis {
            let (reader, writer) = reflector::store();
            let changed = changed.clone();
            let stream = reflector::reflector(writer, watcher(api, config.clone())).default_backoff();
            crate::shutdown::spawn_stream(stream, shutdown.clone(), move |event| match event {
                Ok(_) => {
                    let _ = changed.try_send(());
                }
                Err(e) => tracing::warn!(kind = %K::kind(&Default::default()), error = %e, "watch failed; retrying"),
            });
            stores.push(reader);
        }
        Cache { stores }
    }

    fn all(&self) -> Vec<Arc<K>> {
        self.stores.iter().flat_map(|s| s.state()).collect()
    }
}

/// Runs one discovery spec until `shutdown` flips, feeding `scraper.set_target_groups`.
pub(crate) async fn run_scrape_discovery(
    client: Client,
    spec: ScrapeDiscoverySpec,
    scraper: Arc<ScrapeManager>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (changed_tx, mut changed_rx) = mpsc::channel::<()>(1);
    let pods = matches!(spec.role, Role::Pod | Role::Endpoints)
        .then(|| Cache::<Pod>::start(&client, &spec.namespaces, spec.watch_config("pod"), &changed_tx, &shutdown));
    let services = matches!(spec.role, Role::Service | Role::Endpoints).then(|| {
        Cache::<Service>::start(&client, &spec.namespaces, spec.watch_config("service"), &changed_tx, &shutdown)
    });
    let endpoints = matches!(spec.role, Role::Endpoints).then(|| {
        Cache::<Endpoints>::start(&client, &spec.namespaces, spec.watch_config("endpoints"), &changed_tx, &shutdown)
    });
    let nodes = matches!(spec.role, Role::Node)
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
            nodes: nodes.as_ref(),
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
    nodes: Option<&'a Cache<Node>>,
}

fn build_groups(role: Role, caches: &Caches<'_>) -> Vec<TargetGroup> {
    let Caches { pods, services, endpoints, nodes } = *caches;
    match role {
        Role::Pod => pods.map(|c| c.all().iter().flat_map(|p| pod_targets(p)).collect()).unwrap_or_default(),
        Role::Service => {
            services.map(|c| c.all().iter().flat_map(|s| service_targets(s)).collect()).unwrap_or_default()
        }
        Role::Node => nodes.map(|c| c.all().iter().flat_map(|n| node_targets(n)).collect()).unwrap_or_default(),
        Role::Endpoints => {
            let all_pods = pods.map(Cache::all).unwrap_or_default();
            let all_services = services.map(Cache::all).unwrap_or_default();
            let find_pod = |ns: &str, name: &str| {
                all_pods
                    .iter()
                    .find(|p| p.metadata.namespace.as_deref() == Some(ns) && p.metadata.name.as_deref() == Some(name))
                    .map(|p| (**p).clone())
            };
            endpoints
                .map(|c| c.all())
                .unwrap_or_default()
                .iter()
                .flat_map(|ep| {
                    let service = all_services
                        .iter()
                        .find(|s| s.metadata.namespace == ep.metadata.namespace && s.metadata.name == ep.metadata.name);
                    endpoints_targets(ep, service.map(|s| &**s), &find_pod)
                })
                .collect()
        }
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
