//! `KubeResolver` is the adapter's [`ObjectResolver`] backed by the cluster: resources are
//! normalized through API discovery (`api_discovery`) (custom resources such as `models.mlops.seldon.io` included),
//! and label selectors are resolved against watched metadata caches (reflectors), as
//! prometheus-adapter does — but without its relist interval: a watch event updates the cache at
//! once. Nothing here blocks on the network on the request path; a resource seen for the first
//! time starts its watch and answers "unavailable" until the cache has synced (the HPA retries).

use super::api_discovery::{discover_resources, KnownResource};
use crate::adapter::provider::resources::{
    GroupResource, ObjectQuery, ObjectRef, ObjectResolver, ObjectSummary, ResolveError, ResourceInfo,
};
use crate::adapter::rules::selector::LabelSelector;
use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::DynamicObject;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often API discovery is refreshed (new CRDs become resolvable within this period).
const API_DISCOVERY_REFRESH: Duration = Duration::from_secs(60);

type MetaStore = Store<PartialObjectMeta<DynamicObject>>;

struct WatchedResource {
    store: MetaStore,
}

/// Cluster-backed resolver. Create with [`KubeResolver::start`]; share behind an `Arc`.
pub(crate) struct KubeResolver {
    client: Client,
    resources: RwLock<Vec<KnownResource>>,
    watched: RwLock<HashMap<GroupResource, WatchedResource>>,
    /// Ends the object watches.
    shutdown: watch::Receiver<bool>,
}

impl KubeResolver {
    /// Runs API discovery once, starts the pod watch, and refreshes API discovery in the
    /// background until `shutdown` (the returned task), which also ends every object watch.
    pub(crate) async fn start(
        client: Client,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<KubeResolver>, JoinHandle<()>), super::K8sError> {
        let resolver = Arc::new(KubeResolver {
            client: client.clone(),
            resources: RwLock::new(Vec::new()),
            watched: RwLock::new(HashMap::new()),
            shutdown: shutdown.clone(),
        });
        resolver.refresh_api_discovery().await?;
        resolver.ensure_watched(&GroupResource::new("", "pods"));
        // Nodes too, so that the first `kubectl top node` finds a synced cache.
        resolver.ensure_watched(&GroupResource::new("", "nodes"));
        let refresh =
            crate::shutdown::spawn_periodic(&resolver, API_DISCOVERY_REFRESH, shutdown, |resolver| async move {
                if let Err(e) = resolver.refresh_api_discovery().await {
                    tracing::warn!(error = %e, "API discovery refresh failed; keeping the previous resources");
                }
            });
        Ok((resolver, refresh))
    }

    /// Replaces the known resources with a fresh API discovery's.
    async fn refresh_api_discovery(&self) -> Result<(), super::K8sError> {
        let known = discover_resources(&self.client).await?;
        tracing::debug!(resources = known.len(), "API discovery refreshed");
        *self.resources.write() = known;
        Ok(())
    }

    fn api_resource(&self, resource: &GroupResource) -> Option<(kube::api::ApiResource, bool)> {
        self.resources
            .read()
            .iter()
            .find(|k| k.info.group_resource == *resource)
            .map(|k| (k.api_resource.clone(), k.info.namespaced))
    }

    /// Starts a metadata watch for `resource` unless one runs; `false` when the cluster does not
    /// serve that resource.
    pub(crate) fn ensure_watched(&self, resource: &GroupResource) -> bool {
        if self.watched.read().contains_key(resource) {
            return true;
        }
        let Some((api_resource, _)) = self.api_resource(resource) else {
            return false;
        };
        let mut watched = self.watched.write();
        if watched.contains_key(resource) {
            return true;
        }
        // `Api<PartialObjectMeta<_>>` makes metadata-only list/watch requests: labels and owners
        // are all resolution needs, and they keep the cache small.
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(self.client.clone(), &api_resource);
        let writer = reflector::store::Writer::new(api_resource.clone());
        let reader = writer.as_reader();
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
        let name = resource.to_string();
        crate::shutdown::spawn_stream(stream, self.shutdown.clone(), move |event| {
            if let Err(e) = event {
                tracing::warn!(resource = %name, error = %e, "watch failed; retrying");
            }
        });
        tracing::info!(resource = %resource, "watching objects for label-selector resolution");
        watched.insert(resource.clone(), WatchedResource { store: reader });
        true
    }

    /// Names of the pods in `namespace` whose controller chain leads to the object `name` of
    /// `owner` (a Deployment, ReplicaSet, StatefulSet, Job, …), sorted.
    pub(crate) fn pods_owned_by(
        &self,
        owner: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<String>, ResolveError> {
        let pods_resource = GroupResource::new("", "pods");
        let pods = self.synced_store(&pods_resource)?;
        let target = OwnerKey { group: &owner.group_resource.group, kind: &owner.kind, name };
        let mut names: Vec<String> = Vec::new();
        for pod in pods.state() {
            if pod.metadata.namespace.as_deref() != Some(namespace) {
                continue;
            }
            if self.chain_reaches(&pod.metadata, namespace, &target, MAX_OWNER_DEPTH)? {
                names.extend(pod.metadata.name.clone());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Like `store`, but "unavailable" until the watch has delivered its first list.
    fn synced_store(&self, resource: &GroupResource) -> Result<MetaStore, ResolveError> {
        let store = self.store(resource)?;
        if !store_has_synced(&store) {
            return Err(ResolveError::Unavailable {
                resource: resource.to_string(),
                message: "the object cache is still syncing; retry shortly".into(),
            });
        }
        Ok(store)
    }

    /// Whether following controller references up from `meta` (at most `depth` steps: a Pod's
    /// ReplicaSet, then its Deployment) reaches `target`.
    fn chain_reaches(
        &self,
        meta: &ObjectMeta,
        namespace: &str,
        target: &OwnerKey<'_>,
        depth: usize,
    ) -> Result<bool, ResolveError> {
        let Some(controller) = controller_of(meta) else { return Ok(false) };
        let group = controller.api_version.split_once('/').map(|(group, _)| group).unwrap_or("");
        if controller.kind == target.kind && group == target.group && controller.name == target.name {
            return Ok(true);
        }
        if depth <= 1 {
            return Ok(false);
        }
        let Some(info) = self.resource_by_kind(group, &controller.kind) else { return Ok(false) };
        let store = self.synced_store(&info.group_resource)?;
        match find_object(&store, namespace, &controller.name) {
            Some(parent) => self.chain_reaches(&parent.metadata, namespace, target, depth - 1),
            None => Ok(false),
        }
    }

    fn resource_by_kind(&self, group: &str, kind: &str) -> Option<ResourceInfo> {
        self.resources
            .read()
            .iter()
            .find(|k| k.info.group_resource.group == group && k.info.kind == kind)
            .map(|k| k.info.clone())
    }

    fn store(&self, resource: &GroupResource) -> Result<MetaStore, ResolveError> {
        if !self.ensure_watched(resource) {
            return Err(ResolveError::Unavailable {
                resource: resource.to_string(),
                message: "the cluster does not serve this resource".into(),
            });
        }
        let watched = self.watched.read();
        let Some(entry) = watched.get(resource) else {
            return Err(ResolveError::Unavailable { resource: resource.to_string(), message: "not watched".into() });
        };
        Ok(entry.store.clone())
    }
}

impl ObjectResolver for KubeResolver {
    fn resource_info(&self, group: &str, resource: &str) -> Option<ResourceInfo> {
        let wanted = resource.to_ascii_lowercase();
        let resources = self.resources.read();
        let candidates = resources.iter().filter(|k| {
            let gr = &k.info.group_resource;
            (group.is_empty() || gr.group == group)
                && (gr.resource == wanted || k.info.singular == wanted || k.info.kind.eq_ignore_ascii_case(&wanted))
        });
        // With no group given, prefer the core group, then the shortest group (as kubectl does).
        candidates
            .min_by_key(|k| (!k.info.group_resource.group.is_empty(), k.info.group_resource.group.len()))
            .map(|k| k.info.clone())
    }

    fn list_names(&self, query: &ObjectQuery<'_>) -> Result<Vec<String>, ResolveError> {
        let resource = &query.resource.group_resource;
        let store = self.store(resource)?;
        if store.is_empty() && !store_has_synced(&store) {
            return Err(ResolveError::Unavailable {
                resource: resource.to_string(),
                message: "the object cache is still syncing; retry shortly".into(),
            });
        }
        let mut names: Vec<String> = store
            .state()
            .iter()
            .filter(|object| match query.namespace {
                Some(ns) => object.metadata.namespace.as_deref() == Some(ns),
                None => true,
            })
            .filter(|object| {
                let labels = object.metadata.labels.as_ref();
                query.selector.matches(|key| labels.and_then(|l| l.get(key)).map(String::as_str))
            })
            .filter_map(|object| object.metadata.name.clone())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn list_objects(
        &self,
        resource: &GroupResource,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<Option<Vec<ObjectSummary>>, ResolveError> {
        let store = self.synced_store(resource)?;
        let objects = store
            .state()
            .iter()
            .filter(|object| namespace.is_none_or(|ns| object.metadata.namespace.as_deref() == Some(ns)))
            .filter(|object| {
                let labels = object.metadata.labels.as_ref();
                selector.matches(|key| labels.and_then(|l| l.get(key)).map(String::as_str))
            })
            .filter_map(|object| {
                Some(ObjectSummary {
                    namespace: object.metadata.namespace.clone(),
                    name: object.metadata.name.clone()?,
                    labels: object.metadata.labels.clone().unwrap_or_default(),
                })
            })
            .collect();
        Ok(Some(objects))
    }

    fn pods_owned_by(&self, owner: &ResourceInfo, namespace: &str, name: &str) -> Result<Vec<String>, ResolveError> {
        KubeResolver::pods_owned_by(self, owner, namespace, name)
    }

    fn owner_of(&self, resource: &GroupResource, namespace: &str, name: &str) -> Option<ObjectRef> {
        let store = self.store(resource).ok()?;
        let object = find_object(&store, namespace, name)?;
        let owner = controller_of(&object.metadata)?;
        Some(ObjectRef {
            kind: owner.kind.clone(),
            api_version: owner.api_version.clone(),
            namespace: Some(namespace.to_string()),
            name: owner.name.clone(),
        })
    }
}

/// How many controller references are followed up from a pod (Pod → ReplicaSet → Deployment,
/// Pod → Job → CronJob).
const MAX_OWNER_DEPTH: usize = 3;

/// The controller an owner chain must reach.
struct OwnerKey<'a> {
    group: &'a str,
    kind: &'a str,
    name: &'a str,
}

fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|o| o.controller == Some(true))
}

fn find_object(store: &MetaStore, namespace: &str, name: &str) -> Option<Arc<PartialObjectMeta<DynamicObject>>> {
    store
        .state()
        .into_iter()
        .find(|o| o.metadata.name.as_deref() == Some(name) && o.metadata.namespace.as_deref() == Some(namespace))
}

/// Whether the reflector has delivered its initial list (a synced empty cache is a real "none").
fn store_has_synced(store: &MetaStore) -> bool {
    store.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok())
}
