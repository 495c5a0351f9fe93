//! `PodMetricsList` written as JSON bytes directly: `kubectl top pod -A` over thousands of pods
//! is one of these, so the parts every item shares (creation time, timestamp, window) are
//! formatted once per list, and nothing is built per item but the bytes.

use super::k8s_types::{go_duration, k8s_time, RESOURCE_GROUP, RESOURCE_VERSION};
use crate::adapter::provider::PodUsage;

/// Appends `text` as a JSON string.
fn push_str(out: &mut Vec<u8>, text: &str) {
    // Writing a `&str` to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// The list's JSON, items in the order given; `created` is every item's `creationTimestamp`.
pub(crate) fn write_pod_metrics_list(pods: &[PodUsage], created_ms: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + pods.len() * 256);
    out.extend_from_slice(b"{\"kind\":\"PodMetricsList\",\"apiVersion\":\"");
    out.extend_from_slice(format!("{RESOURCE_GROUP}/{RESOURCE_VERSION}").as_bytes());
    out.extend_from_slice(b"\",\"metadata\":{},\"items\":[");
    let created = k8s_time(created_ms);
    let mut last_timestamp: Option<(i64, String)> = None;
    let mut last_window: Option<(std::time::Duration, String)> = None;
    for (i, pod) in pods.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"metadata\":{\"name\":");
        push_str(&mut out, &pod.name);
        out.extend_from_slice(b",\"namespace\":");
        push_str(&mut out, &pod.namespace);
        out.extend_from_slice(b",\"creationTimestamp\":\"");
        out.extend_from_slice(created.as_bytes());
        out.push(b'"');
        if !pod.labels.is_empty() {
            out.extend_from_slice(b",\"labels\":{");
            for (j, (key, value)) in pod.labels.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                push_str(&mut out, key);
                out.push(b':');
                push_str(&mut out, value);
            }
            out.push(b'}');
        }
        if last_timestamp.as_ref().is_none_or(|(ts, _)| *ts != pod.ts_ms) {
            last_timestamp = Some((pod.ts_ms, k8s_time(pod.ts_ms)));
        }
        if last_window.as_ref().is_none_or(|(window, _)| *window != pod.window) {
            last_window = Some((pod.window, go_duration(pod.window)));
        }
        out.extend_from_slice(b"},\"timestamp\":\"");
        out.extend_from_slice(last_timestamp.as_ref().map_or("", |(_, text)| text.as_str()).as_bytes());
        out.extend_from_slice(b"\",\"window\":\"");
        out.extend_from_slice(last_window.as_ref().map_or("", |(_, text)| text.as_str()).as_bytes());
        out.extend_from_slice(b"\",\"containers\":[");
        for (j, container) in pod.containers.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"name\":");
            push_str(&mut out, &container.name);
            out.extend_from_slice(b",\"usage\":{\"cpu\":\"");
            out.extend_from_slice(container.cpu_quantity.as_bytes());
            out.extend_from_slice(b"\",\"memory\":\"");
            out.extend_from_slice(container.memory_quantity.as_bytes());
            out.extend_from_slice(b"\"}}");
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::http::k8s_types::{MetricValueList, PodMetrics};
    use crate::adapter::provider::ContainerUsage;
    use std::collections::BTreeMap;

    #[test]
    fn the_list_parses_as_the_typed_objects() {
        let containers: std::sync::Arc<[ContainerUsage]> = vec![
            ContainerUsage::new("app".into(), 0.25, 52_428_800.0),
            ContainerUsage::new("side\"car".into(), 0.05, 1500.0),
        ]
        .into();
        let pod = |name: &str, labels: BTreeMap<String, String>| PodUsage {
            namespace: "web".into(),
            name: name.into(),
            labels,
            ts_ms: 1_700_000_000_000,
            window: std::time::Duration::from_secs(300),
            containers: containers.clone(),
        };
        let pods =
            vec![pod("a", BTreeMap::from([("app".to_string(), "w\u{e9}b".to_string())])), pod("b", BTreeMap::new())];
        let bytes = write_pod_metrics_list(&pods, 1_700_000_001_000);
        let list: MetricValueList<PodMetrics> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(list.kind, "PodMetricsList");
        assert_eq!(list.api_version, "metrics.k8s.io/v1beta1");
        assert_eq!(list.items.len(), 2);
        let first = &list.items[0];
        assert_eq!(first.metadata.name, "a");
        assert_eq!(first.metadata.namespace.as_deref(), Some("web"));
        assert_eq!(first.metadata.labels["app"], "w\u{e9}b");
        assert_eq!(first.metadata.creation_timestamp, "2023-11-14T22:13:21Z");
        assert_eq!(first.timestamp, "2023-11-14T22:13:20Z");
        assert_eq!(first.window, "5m0s");
        assert_eq!(first.containers[0].usage.cpu, "250m");
        assert_eq!(first.containers[0].usage.memory, "50Mi");
        assert_eq!(first.containers[1].name, "side\"car");
        assert_eq!(first.containers[1].usage.memory, "1500");
        assert!(list.items[1].metadata.labels.is_empty());
        let empty: MetricValueList<PodMetrics> = serde_json::from_slice(&write_pod_metrics_list(&[], 0)).unwrap();
        assert!(empty.items.is_empty());
    }
}
