//! A metric of pods' owners (Deployment, ReplicaSet, StatefulSet, Job, …) from a pods rule with
//! `ownerAggregation` (Ringtail's extension): the owners' pods are found through owner
//! references, their values queried as a pods request, and combined per owner.

use super::lookup::{CustomMetricRequest, MetricValueItem, MetricValues, ObjectSelection, Provider};
use super::quantity::Quantity;
use super::resources::{GroupResource, ObjectQuery, ResourceInfo, SeriesHint};
use super::series_discovery::Snapshot;
use super::ProviderError;
use crate::adapter::rules::config::OwnerAggregation;

/// A pods rule with `ownerAggregation` serving a request for owners of pods.
pub(super) struct OwnerRule {
    owner_info: ResourceInfo,
    namespace: String,
    aggregation: OwnerAggregation,
    /// The pods series, a hint for resolvers listing owners.
    pods_series_name: String,
}

impl Provider {
    /// The pods rule answering `request` for `owner` objects, if one applies.
    pub(super) fn owner_rule(
        &self,
        request: &CustomMetricRequest,
        owner: &GroupResource,
        snapshot: &Snapshot,
    ) -> Option<OwnerRule> {
        let pods = GroupResource::new("", "pods");
        let namespace = request.namespace.as_deref()?;
        if *owner == pods {
            return None;
        }
        let pod_entry = snapshot.find_custom(&pods, &request.metric, true)?;
        let aggregation = self.rules().custom.get(pod_entry.rule).and_then(|rule| rule.owner_aggregation)?;
        let owner_info = self.resolver().resource_info(&owner.group, &owner.resource)?;
        Some(OwnerRule {
            owner_info,
            namespace: namespace.to_string(),
            aggregation,
            pods_series_name: pod_entry.series_name.clone(),
        })
    }

    /// The values of `request` per owner, each combined from the values of the pods it owns.
    pub(super) fn owner_metric(
        &self,
        request: &CustomMetricRequest,
        owner_rule: &OwnerRule,
    ) -> Result<MetricValues, ProviderError> {
        let OwnerRule { owner_info, namespace, aggregation, pods_series_name } = owner_rule;
        let unavailable = |e: super::resources::ResolveError| ProviderError::unavailable(e.to_string());
        let owners = match &request.objects {
            ObjectSelection::Named(name) => vec![name.clone()],
            ObjectSelection::Names(names) => names.clone(),
            ObjectSelection::Selector(selector) => self
                .resolver()
                .list_names(&ObjectQuery {
                    resource: owner_info,
                    namespace: Some(namespace),
                    selector,
                    hint: SeriesHint { series_name: pods_series_name, resource_label: "", namespace_label: None },
                })
                .map_err(unavailable)?,
        };
        let mut answer = MetricValues {
            kind: owner_info.kind.clone(),
            api_version: owner_info.api_version.clone(),
            namespace: Some(namespace.clone()),
            metric: request.metric.clone(),
            window_seconds: None,
            items: Vec::new(),
        };
        for owner_name in owners {
            let owned = self.resolver().pods_owned_by(owner_info, namespace, &owner_name).map_err(unavailable)?;
            if owned.is_empty() {
                continue;
            }
            let pod_values = self.custom_metric(&CustomMetricRequest {
                resource: GroupResource::new("", "pods"),
                namespace: Some(namespace.clone()),
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
                return Err(ProviderError::not_found(format!(
                    "the server could not find the metric {} for {} {name} (no pod it owns has a value)",
                    request.metric, owner_info.group_resource
                )));
            }
        }
        Ok(answer)
    }
}
