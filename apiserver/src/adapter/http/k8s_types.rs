//! The Kubernetes API objects the adapter speaks, as serde structs with the exact JSON field
//! names of the Go types: discovery (`APIGroupList`, `APIGroup`, `APIResourceList`), custom
//! metrics (`MetricValueList` in `v1beta1` with `metricName`/`window`/`selector`, and in
//! `v1beta2` with `metric{name,selector}`/`windowSeconds`), external metrics
//! (`ExternalMetricValueList`), `Status` errors and `/version`'s `version.Info`.

use crate::adapter::provider::quantity::Quantity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(crate) const CUSTOM_GROUP: &str = "custom.metrics.k8s.io";
pub(crate) const EXTERNAL_GROUP: &str = "external.metrics.k8s.io";
pub(crate) const RESOURCE_GROUP: &str = "metrics.k8s.io";
pub(crate) const RESOURCE_VERSION: &str = "v1beta1";

/// `metav1.ListMeta`, always empty here (no resourceVersion, no continue token).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct ListMeta {}

/// `metav1.GroupVersionForDiscovery`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupVersionForDiscovery {
    pub(crate) group_version: String,
    pub(crate) version: String,
}

impl GroupVersionForDiscovery {
    pub(crate) fn new(group: &str, version: &str) -> Self {
        GroupVersionForDiscovery { group_version: format!("{group}/{version}"), version: version.to_string() }
    }
}

/// `metav1.APIGroup`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiGroup {
    pub(crate) kind: String,
    pub(crate) api_version: String,
    pub(crate) name: String,
    /// Most preferred first.
    pub(crate) versions: Vec<GroupVersionForDiscovery>,
    pub(crate) preferred_version: GroupVersionForDiscovery,
}

impl ApiGroup {
    /// A group serving `versions` (most preferred first; must not be empty).
    pub(crate) fn new(name: &str, versions: &[&str]) -> Self {
        let versions: Vec<GroupVersionForDiscovery> =
            versions.iter().map(|v| GroupVersionForDiscovery::new(name, v)).collect();
        let preferred_version =
            versions.first().cloned().unwrap_or_else(|| GroupVersionForDiscovery::new(name, "v1beta1"));
        ApiGroup { kind: "APIGroup".into(), api_version: "v1".into(), name: name.into(), versions, preferred_version }
    }
}

/// `metav1.APIGroupList`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiGroupList {
    pub(crate) kind: String,
    pub(crate) api_version: String,
    pub(crate) groups: Vec<ApiGroup>,
}

/// `metav1.APIResource` (fields Ringtail's lists use).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiResource {
    pub(crate) name: String,
    pub(crate) singular_name: String,
    pub(crate) namespaced: bool,
    pub(crate) kind: String,
    pub(crate) verbs: Vec<String>,
}

/// `metav1.APIResourceList`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiResourceList {
    pub(crate) kind: String,
    pub(crate) api_version: String,
    pub(crate) group_version: String,
    pub(crate) resources: Vec<ApiResource>,
}

impl ApiResourceList {
    /// A list of read-only resources of `kind` (`MetricValueList`, `ExternalMetricValueList`).
    pub(crate) fn new(group_version: String, kind: &str, entries: impl IntoIterator<Item = (String, bool)>) -> Self {
        ApiResourceList {
            kind: "APIResourceList".into(),
            api_version: "v1".into(),
            group_version,
            resources: entries
                .into_iter()
                .map(|(name, namespaced)| ApiResource {
                    name,
                    singular_name: String::new(),
                    namespaced,
                    kind: kind.to_string(),
                    verbs: vec!["get".into()],
                })
                .collect(),
        }
    }
}

impl ApiResourceList {
    /// `metrics.k8s.io/v1beta1`'s list, as metrics-server serves it.
    pub(crate) fn resource_metrics() -> Self {
        let resource = |name: &str, namespaced: bool, kind: &str| ApiResource {
            name: name.into(),
            singular_name: String::new(),
            namespaced,
            kind: kind.into(),
            verbs: vec!["get".into(), "list".into()],
        };
        ApiResourceList {
            kind: "APIResourceList".into(),
            api_version: "v1".into(),
            group_version: format!("{RESOURCE_GROUP}/{RESOURCE_VERSION}"),
            resources: vec![resource("nodes", false, "NodeMetrics"), resource("pods", true, "PodMetrics")],
        }
    }
}

/// `metav1.ObjectMeta` as a metrics object carries it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MetricsObjectMeta {
    pub(crate) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) namespace: Option<String>,
    pub(crate) creation_timestamp: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) labels: BTreeMap<String, String>,
}

/// `v1.ResourceList` of a usage: cpu and memory quantities.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Usage {
    pub(crate) cpu: String,
    pub(crate) memory: String,
}

/// `metrics/v1beta1.ContainerMetrics`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ContainerMetrics {
    pub(crate) name: String,
    pub(crate) usage: Usage,
}

/// `metrics/v1beta1.PodMetrics`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodMetrics {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) api_version: String,
    pub(crate) metadata: MetricsObjectMeta,
    pub(crate) timestamp: String,
    pub(crate) window: String,
    pub(crate) containers: Vec<ContainerMetrics>,
}

/// `metrics/v1beta1.NodeMetrics`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NodeMetrics {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) api_version: String,
    pub(crate) metadata: MetricsObjectMeta,
    pub(crate) timestamp: String,
    pub(crate) window: String,
    pub(crate) usage: Usage,
}

/// `metav1.Duration` as Go's `time.Duration.String()` prints it: `5m0s`, `1h0m0s`, `30s`,
/// `1.5s`, `0s`.
pub(crate) fn go_duration(duration: std::time::Duration) -> String {
    let total_ms = duration.as_millis();
    if total_ms == 0 {
        return "0s".into();
    }
    let (hours, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    let seconds = if millis == 0 {
        format!("{seconds}s")
    } else {
        format!("{seconds}.{}s", format!("{millis:03}").trim_end_matches('0'))
    };
    if total_ms < 1000 {
        return format!("{}ms", total_ms);
    }
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

/// `core/v1.ObjectReference` (the fields a described object carries). This and the typed metric
/// values below are what `value_list_json` writes by hand; tests check it against them.
#[cfg(test)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectReference {
    pub(crate) kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
    pub(crate) api_version: String,
}

/// `custom_metrics/v1beta1.MetricValue`.
#[cfg(test)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MetricValueV1Beta1 {
    pub(crate) described_object: ObjectReference,
    pub(crate) metric_name: String,
    pub(crate) timestamp: String,
    #[serde(rename = "window", default, skip_serializing_if = "Option::is_none")]
    pub(crate) window_seconds: Option<i64>,
    pub(crate) value: Quantity,
    /// `*metav1.LabelSelector` without `omitempty`: `null` when no metric selector was given.
    pub(crate) selector: Option<serde_json::Value>,
}

/// `custom_metrics/v1beta2.MetricIdentifier`.
#[cfg(test)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct MetricIdentifier {
    pub(crate) name: String,
    pub(crate) selector: Option<serde_json::Value>,
}

/// `custom_metrics/v1beta2.MetricValue`.
#[cfg(test)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MetricValueV1Beta2 {
    pub(crate) described_object: ObjectReference,
    pub(crate) metric: MetricIdentifier,
    pub(crate) timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) window_seconds: Option<i64>,
    pub(crate) value: Quantity,
}

/// `MetricValueList` of either version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MetricValueList<T> {
    pub(crate) kind: String,
    pub(crate) api_version: String,
    pub(crate) metadata: ListMeta,
    pub(crate) items: Vec<T>,
}

impl<T> MetricValueList<T> {
    pub(crate) fn new(kind: &str, api_version: String, items: Vec<T>) -> Self {
        MetricValueList { kind: kind.into(), api_version, metadata: ListMeta {}, items }
    }
}

/// `external_metrics/v1beta1.ExternalMetricValue`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExternalMetricValue {
    pub(crate) metric_name: String,
    pub(crate) metric_labels: BTreeMap<String, String>,
    pub(crate) timestamp: String,
    #[serde(rename = "window", default, skip_serializing_if = "Option::is_none")]
    pub(crate) window_seconds: Option<i64>,
    pub(crate) value: Quantity,
}

/// `metav1.StatusDetails`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusDetails {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) kind: String,
}

/// `metav1.Status`, the body of every error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Status {
    pub(crate) kind: String,
    pub(crate) api_version: String,
    pub(crate) metadata: ListMeta,
    pub(crate) status: String,
    pub(crate) message: String,
    pub(crate) reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) details: Option<StatusDetails>,
    pub(crate) code: u16,
}

impl Status {
    /// A failure with HTTP `code` and the Kubernetes `reason` for it.
    pub(crate) fn failure(code: u16, message: impl Into<String>) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            406 => "NotAcceptable",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        Status {
            kind: "Status".into(),
            api_version: "v1".into(),
            metadata: ListMeta {},
            status: "Failure".into(),
            message: message.into(),
            reason: reason.into(),
            details: None,
            code,
        }
    }
}

/// `version.Info` for `/version`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VersionInfo {
    pub(crate) major: String,
    pub(crate) minor: String,
    pub(crate) git_version: String,
    pub(crate) git_commit: String,
    pub(crate) git_tree_state: String,
    pub(crate) build_date: String,
    pub(crate) go_version: String,
    pub(crate) compiler: String,
    pub(crate) platform: String,
}

impl VersionInfo {
    pub(crate) fn current() -> Self {
        let version = env!("CARGO_PKG_VERSION");
        let mut parts = version.split('.');
        VersionInfo {
            major: parts.next().unwrap_or("0").to_string(),
            minor: parts.next().unwrap_or("0").to_string(),
            git_version: format!("v{version}"),
            git_commit: String::new(),
            git_tree_state: String::new(),
            build_date: String::new(),
            go_version: String::new(),
            compiler: "rustc".into(),
            platform: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

/// A millisecond timestamp as `metav1.Time` writes it: RFC 3339, whole seconds, UTC.
pub(crate) fn k8s_time(ts_ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ts_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        use std::time::Duration;
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn metric_value_json_field_names_match_the_go_types() {
        let object = ObjectReference {
            kind: "Pod".into(),
            namespace: Some("default".into()),
            name: "web-1".into(),
            api_version: "v1".into(),
        };
        let v1 = MetricValueV1Beta1 {
            described_object: object.clone(),
            metric_name: "m".into(),
            timestamp: k8s_time(1_700_000_000_123),
            window_seconds: Some(120),
            value: Quantity::from_milli(3033),
            selector: None,
        };
        let json = serde_json::to_value(&v1).unwrap();
        assert_eq!(json["metricName"], "m");
        assert_eq!(json["window"], 120);
        assert_eq!(json["value"], "3033m");
        assert_eq!(json["timestamp"], "2023-11-14T22:13:20Z");
        assert!(json["selector"].is_null() && json.as_object().unwrap().contains_key("selector"));
        assert_eq!(json["describedObject"]["apiVersion"], "v1");
        let v2 = MetricValueV1Beta2 {
            described_object: object,
            metric: MetricIdentifier { name: "m".into(), selector: None },
            timestamp: k8s_time(0),
            window_seconds: None,
            value: Quantity::from_milli(55_000),
        };
        let json = serde_json::to_value(&v2).unwrap();
        assert_eq!(json["metric"]["name"], "m");
        assert!(!json.as_object().unwrap().contains_key("windowSeconds"));
        assert_eq!(json["value"], "55");
    }

    #[test]
    fn status_has_reason_and_code() {
        let json = serde_json::to_value(Status::failure(404, "nope")).unwrap();
        assert_eq!(json["kind"], "Status");
        assert_eq!(json["reason"], "NotFound");
        assert_eq!(json["code"], 404);
        assert_eq!(json["status"], "Failure");
    }

    #[test]
    fn group_prefers_the_first_version() {
        let group = ApiGroup::new(CUSTOM_GROUP, &["v1beta2", "v1beta1"]);
        assert_eq!(group.preferred_version.group_version, "custom.metrics.k8s.io/v1beta2");
        let json = serde_json::to_value(group).unwrap();
        assert_eq!(json["preferredVersion"]["version"], "v1beta2");
    }
}
