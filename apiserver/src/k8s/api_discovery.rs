//! `discover_resources` is Kubernetes API discovery: which resources the cluster serves (core,
//! every group's preferred version, custom resources included), as a RESTMapper knows them. The
//! object resolver (`objects`) normalizes resource names with it and refreshes it periodically.

use crate::adapter::provider::resources::{GroupResource, ResourceInfo};
use kube::api::ApiResource;
use kube::Client;

/// Groups Ringtail serves itself through the aggregator.
const SELF_SERVED_GROUPS: [&str; 3] = ["custom.metrics.k8s.io", "external.metrics.k8s.io", "metrics.k8s.io"];

/// One resource the cluster serves.
pub(crate) struct KnownResource {
    pub(crate) info: ResourceInfo,
    pub(crate) api_resource: ApiResource,
}

/// Lists every group's preferred version (as a RESTMapper picks it). A group that fails to
/// answer — an aggregated API that is down — is skipped and logged, never fatal; the metrics
/// groups Ringtail serves itself are skipped (they hold no objects, and asking them would
/// loop through the aggregator back to Ringtail).
pub(crate) async fn discover_resources(client: &Client) -> Result<Vec<KnownResource>, super::K8sError> {
    let api_error = |e: kube::Error| super::K8sError::Api(format!("API discovery: {e}"));
    let mut lists = vec![client.list_core_api_resources("v1").await.map_err(api_error)?];
    let groups = client.list_api_groups().await.map_err(api_error)?;
    for group in groups.groups {
        if SELF_SERVED_GROUPS.contains(&group.name.as_str()) {
            continue;
        }
        let Some(version) = group.preferred_version.or_else(|| group.versions.into_iter().next()) else {
            continue;
        };
        match client.list_api_group_resources(&version.group_version).await {
            Ok(list) => lists.push(list),
            Err(e) => tracing::debug!(group_version = %version.group_version, error = %e,
                "API discovery skipped a group that did not answer"),
        }
    }
    let mut known = Vec::new();
    for list in lists {
        let (group, version) = match list.group_version.split_once('/') {
            Some((group, version)) => (group.to_string(), version.to_string()),
            None => (String::new(), list.group_version.clone()),
        };
        for resource in list.resources {
            if resource.name.contains('/') {
                continue; // subresources
            }
            let api_resource = ApiResource {
                group: group.clone(),
                version: version.clone(),
                api_version: list.group_version.clone(),
                kind: resource.kind.clone(),
                plural: resource.name.clone(),
            };
            let info = ResourceInfo {
                group_resource: GroupResource::new(group.clone(), resource.name.clone()),
                singular: match resource.singular_name.is_empty() {
                    true => resource.kind.to_ascii_lowercase(),
                    false => resource.singular_name.clone(),
                },
                kind: resource.kind.clone(),
                api_version: list.group_version.clone(),
                namespaced: resource.namespaced,
            };
            known.push(KnownResource { info, api_resource });
        }
    }
    Ok(known)
}
