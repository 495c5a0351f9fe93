//! The Kubernetes API objects the adapter speaks, as serde structs with the exact JSON field
//! names of the Go types: discovery (`APIGroupList`, `APIGroup`, `APIResourceList`), custom
//! metrics (`MetricValueList` in `v1beta1` with `metricName`/`window`/`selector`, and in
//! `v1beta2` with `metric{name,selector}`/`windowSeconds`), external metrics
//! (`ExternalMetricValueList`), `Status` errors and `/version`'s `version.Info`.

use super::quantity::Quantity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const CUSTOM_GROUP: &str = "custom.metrics.k8s.io";
pub const EXTERNAL_GROUP: &str = "external.metrics.k8s.io";

/// `metav1.ListMeta`, always empty here (no resourceVersion, no continue token).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ListMeta {}

/// `metav1.GroupVersionForDiscovery`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupVersionForDiscovery {
    pub group_version: String,
    pub version: String,
}

impl GroupVersionForDiscovery {
    pub fn new(group: &str, version: &str) -> Self {
        GroupVersionForDiscovery { group_version: format!("{group}/{version}"), version: version.to_string() }
    }
}

/// `metav1.APIGroup`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroup {
    pub kind: String,
    pub api_version: String,
    pub name: String,
    /// Most preferred first.
    pub versions: Vec<GroupVersionForDiscovery>,
    pub preferred_version: GroupVersionForDiscovery,
}

impl ApiGroup {
    /// A group serving `versions` (most preferred first; must not be empty).
    pub fn new(name: &str, versions: &[&str]) -> Self {
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
pub struct ApiGroupList {
    pub kind: String,
    pub api_version: String,
    pub groups: Vec<ApiGroup>,
}

/// `metav1.APIResource` (fields Ringtail's lists use).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiResource {
    pub name: String,
    pub singular_name: String,
    pub namespaced: bool,
    pub kind: String,
    pub verbs: Vec<String>,
}

/// `metav1.APIResourceList`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiResourceList {
    pub kind: String,
    pub api_version: String,
    pub group_version: String,
    pub resources: Vec<ApiResource>,
}

impl ApiResourceList {
    /// A list of read-only resources of `kind` (`MetricValueList`, `ExternalMetricValueList`).
    pub fn new(group_version: String, kind: &str, entries: impl IntoIterator<Item = (String, bool)>) -> Self {
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

/// `core/v1.ObjectReference` (the fields a described object carries).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub api_version: String,
}

/// `custom_metrics/v1beta1.MetricValue`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricValueV1Beta1 {
    pub described_object: ObjectReference,
    pub metric_name: String,
    pub timestamp: String,
    #[serde(rename = "window", default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    pub value: Quantity,
    /// `*metav1.LabelSelector` without `omitempty`: `null` when no metric selector was given.
    pub selector: Option<serde_json::Value>,
}

/// `custom_metrics/v1beta2.MetricIdentifier`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricIdentifier {
    pub name: String,
    pub selector: Option<serde_json::Value>,
}

/// `custom_metrics/v1beta2.MetricValue`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricValueV1Beta2 {
    pub described_object: ObjectReference,
    pub metric: MetricIdentifier,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    pub value: Quantity,
}

/// `MetricValueList` of either version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricValueList<T> {
    pub kind: String,
    pub api_version: String,
    pub metadata: ListMeta,
    pub items: Vec<T>,
}

impl<T> MetricValueList<T> {
    pub fn new(kind: &str, api_version: String, items: Vec<T>) -> Self {
        MetricValueList { kind: kind.into(), api_version, metadata: ListMeta {}, items }
    }
}

/// `external_metrics/v1beta1.ExternalMetricValue`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValue {
    pub metric_name: String,
    pub metric_labels: BTreeMap<String, String>,
    pub timestamp: String,
    #[serde(rename = "window", default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    pub value: Quantity,
}

/// `metav1.StatusDetails`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// `metav1.Status`, the body of every error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub kind: String,
    pub api_version: String,
    pub metadata: ListMeta,
    pub status: String,
    pub message: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    pub code: u16,
}

impl Status {
    /// A failure with HTTP `code` and the Kubernetes `reason` for it.
    pub fn failure(code: u16, message: impl Into<String>) -> Self {
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

    pub fn with_details(mut self, details: StatusDetails) -> Self {
        self.details = Some(details);
        self
    }
}

/// `version.Info` for `/version`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub major: String,
    pub minor: String,
    pub git_version: String,
    pub git_commit: String,
    pub git_tree_state: String,
    pub build_date: String,
    pub go_version: String,
    pub compiler: String,
    pub platform: String,
}

impl VersionInfo {
    pub fn current() -> Self {
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
pub fn k8s_time(ts_ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ts_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

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
