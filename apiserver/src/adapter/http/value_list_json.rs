//! Writes a custom-metrics `MetricValueList` (`v1beta1` or `v1beta2`) as JSON straight from the
//! provider's answer. It is the adapter's hottest response — every HPA reads a list of all its
//! pods every 15 s — so what every item shares (the described objects' kind, namespace and
//! apiVersion, the metric identifier, the window) is escaped once into byte templates, each
//! distinct timestamp is rendered once, and an item adds only its name and value. The bytes are
//! exactly what serde_json writes for `k8s_types::MetricValueList` of the same items (a test
//! below checks both versions, with names that need escaping).

use super::k8s_types::{k8s_time, CUSTOM_GROUP};
use crate::adapter::provider::MetricValues;
use std::collections::hash_map::{Entry, HashMap};

/// The `custom.metrics.k8s.io` version a list is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CustomVersion {
    /// `metricName`, `window`, `selector` on each item.
    V1Beta1,
    /// `metric{name,selector}`, `windowSeconds`.
    V1Beta2,
}

impl CustomVersion {
    pub(crate) fn name(self) -> &'static str {
        match self {
            CustomVersion::V1Beta1 => "v1beta1",
            CustomVersion::V1Beta2 => "v1beta2",
        }
    }
}

/// Bytes per item reserved up front (a 1 000-pod list is ~250 KB; growing a small buffer to that
/// copies it a dozen times).
const ITEM_BYTES_HINT: usize = 320;

/// `values` as a `MetricValueList` of `version`; `selector` is the metric label selector as
/// Kubernetes JSON (`null` when none was given).
pub(crate) fn write_metric_value_list(
    values: &MetricValues,
    version: CustomVersion,
    selector: Option<&serde_json::Value>,
) -> Result<Vec<u8>, serde_json::Error> {
    let selector = serde_json::to_vec(&selector)?;
    // `{"describedObject":{"kind":K,"namespace":NS,"name":`
    let mut head = br#"{"describedObject":{"kind":"#.to_vec();
    push_json_str(&mut head, &values.kind)?;
    if let Some(namespace) = &values.namespace {
        head.extend_from_slice(br#","namespace":"#);
        push_json_str(&mut head, namespace)?;
    }
    head.extend_from_slice(br#","name":"#);
    // `,"apiVersion":AV},` + the metric identifier + `,"timestamp":`
    let mut middle = br#","apiVersion":"#.to_vec();
    push_json_str(&mut middle, &values.api_version)?;
    middle.extend_from_slice(b"},");
    match version {
        CustomVersion::V1Beta1 => {
            middle.extend_from_slice(br#""metricName":"#);
            push_json_str(&mut middle, &values.metric)?;
        }
        CustomVersion::V1Beta2 => {
            middle.extend_from_slice(br#""metric":{"name":"#);
            push_json_str(&mut middle, &values.metric)?;
            middle.extend_from_slice(br#","selector":"#);
            middle.extend_from_slice(&selector);
            middle.push(b'}');
        }
    }
    middle.extend_from_slice(br#","timestamp":"#);
    // The optional window, then `,"value":"` (the quantity follows).
    let mut before_value = Vec::new();
    if let Some(window) = values.window_seconds {
        let key: &[u8] = match version {
            CustomVersion::V1Beta1 => br#","window":"#,
            CustomVersion::V1Beta2 => br#","windowSeconds":"#,
        };
        before_value.extend_from_slice(key);
        before_value.extend_from_slice(itoa::Buffer::new().format(window).as_bytes());
    }
    before_value.extend_from_slice(br#","value":""#);
    let mut end = b"\"".to_vec();
    if version == CustomVersion::V1Beta1 {
        end.extend_from_slice(br#","selector":"#);
        end.extend_from_slice(&selector);
    }
    end.push(b'}');

    // Items nearly always share one time; each distinct one is rendered once, and the last one
    // used is at hand without a lookup.
    let mut times: HashMap<i64, Vec<u8>> = HashMap::new();
    let mut last_time: Option<(i64, Vec<u8>)> = None;
    let mut out = Vec::with_capacity(256 + values.items.len() * ITEM_BYTES_HINT);
    out.extend_from_slice(br#"{"kind":"MetricValueList","apiVersion":""#);
    out.extend_from_slice(CUSTOM_GROUP.as_bytes());
    out.push(b'/');
    out.extend_from_slice(version.name().as_bytes());
    out.extend_from_slice(br#"","metadata":{},"items":["#);
    for (i, item) in values.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&head);
        push_json_str(&mut out, &item.name)?;
        out.extend_from_slice(&middle);
        let time = match last_time {
            Some((ts_ms, ref rendered)) if ts_ms == item.ts_ms => rendered,
            _ => {
                let rendered = match times.entry(item.ts_ms) {
                    Entry::Occupied(rendered) => rendered.into_mut(),
                    Entry::Vacant(slot) => slot.insert(serde_json::to_vec(&k8s_time(item.ts_ms))?),
                };
                &last_time.insert((item.ts_ms, rendered.clone())).1
            }
        };
        out.extend_from_slice(time);
        out.extend_from_slice(&before_value);
        item.value.push_to(&mut out);
        out.extend_from_slice(&end);
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// `text` as a JSON string: copied as is when nothing in it needs escaping (object names never
/// do), else escaped by serde_json.
fn push_json_str(out: &mut Vec<u8>, text: &str) -> Result<(), serde_json::Error> {
    if crate::json_text::is_verbatim(text) {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, text)
    }
}

#[cfg(test)]
mod tests {
    use super::super::k8s_types::{
        MetricIdentifier, MetricValueList, MetricValueV1Beta1, MetricValueV1Beta2, ObjectReference,
    };
    use super::*;
    use crate::adapter::provider::quantity::Quantity;
    use crate::adapter::provider::MetricValueItem;

    fn values(namespace: Option<&str>, window: Option<i64>, names: &[&str]) -> MetricValues {
        MetricValues {
            kind: "Pod".into(),
            api_version: "v1".into(),
            namespace: namespace.map(str::to_string),
            metric: "m\"q".into(),
            window_seconds: window,
            items: names
                .iter()
                .enumerate()
                .map(|(i, name)| MetricValueItem {
                    name: name.to_string(),
                    // Two times in runs (t0 t0 t1 t1 t0 t0): a repeat, a new time, a time seen before.
                    ts_ms: 1_700_000_000_123 + (i as i64 / 2 % 2) * 1_000,
                    value: Quantity::from_milli(1500 - 1600 * i as i64),
                })
                .collect(),
        }
    }

    /// The same list through the serde types, which mirror the Go types field by field.
    fn through_serde(values: &MetricValues, version: CustomVersion, selector: Option<&serde_json::Value>) -> Vec<u8> {
        let reference = |name: &str| ObjectReference {
            kind: values.kind.clone(),
            namespace: values.namespace.clone(),
            name: name.to_string(),
            api_version: values.api_version.clone(),
        };
        let api_version = format!("{CUSTOM_GROUP}/{}", version.name());
        let items = values.items.iter();
        match version {
            CustomVersion::V1Beta1 => serde_json::to_vec(&MetricValueList::new(
                "MetricValueList",
                api_version,
                items
                    .map(|item| MetricValueV1Beta1 {
                        described_object: reference(&item.name),
                        metric_name: values.metric.clone(),
                        timestamp: k8s_time(item.ts_ms),
                        window_seconds: values.window_seconds,
                        value: item.value,
                        selector: selector.cloned(),
                    })
                    .collect(),
            )),
            CustomVersion::V1Beta2 => serde_json::to_vec(&MetricValueList::new(
                "MetricValueList",
                api_version,
                items
                    .map(|item| MetricValueV1Beta2 {
                        described_object: reference(&item.name),
                        metric: MetricIdentifier { name: values.metric.clone(), selector: selector.cloned() },
                        timestamp: k8s_time(item.ts_ms),
                        window_seconds: values.window_seconds,
                        value: item.value,
                    })
                    .collect(),
            )),
        }
        .unwrap()
    }

    #[test]
    fn lists_are_byte_for_byte_what_the_k8s_types_serialize_to() {
        let selector = serde_json::json!({"matchLabels": {"a": "b\"c"}});
        let names = ["a", "web-0", "quote\"d", "back\\slash", "tab\tand\u{1}", "ünïcode-é"];
        for (namespace, window, selector, names) in [
            (Some("ns"), Some(60), Some(&selector), &names[..]),
            (None, None, None, &names[..2]),
            (Some("x\"y"), None, None, &names[..]),
            (Some("ns"), Some(120), None, &[][..]),
        ] {
            let values = values(namespace, window, names);
            for version in [CustomVersion::V1Beta1, CustomVersion::V1Beta2] {
                let written = write_metric_value_list(&values, version, selector).unwrap();
                let expected = through_serde(&values, version, selector);
                assert_eq!(
                    String::from_utf8(written).unwrap(),
                    String::from_utf8(expected).unwrap(),
                    "{version:?}, namespace {namespace:?}, window {window:?}"
                );
            }
        }
    }
}
