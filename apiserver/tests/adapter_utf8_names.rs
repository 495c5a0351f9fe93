//! The metrics adapter serving metrics whose series name is a UTF-8 name that is not a legacy
//! Prometheus metric name (`net.http.request.count`, as Prometheus 3 and OpenTelemetry send
//! them): the series arrives over remote-write 2.0 on the real HTTP listener and is read back
//! through the custom and external metrics APIs of the in-process server, with the ordinary
//! `<<.Series>>{<<.LabelMatchers>>}` rule; and a legacy series renamed to a dotted metric name by
//! `name.as`, in discovery and on the object path.

mod adapter_support;
mod ingest_common;

use adapter_support::*;
use ingest::remote_write::{encode_body, CONTENT_TYPE_V2};
use tsdb::now_ms;

const NS: &str = "default";
const DOTTED: &str = "net.http.request.count";

/// A counter growing by exactly `per_second` over the last two minutes, one sample every 10 s,
/// starting far from zero: `rate(…[1m])` extrapolates to both window ends (samples are closer
/// than 1.1 intervals to each) and so is exactly `per_second` whenever it is evaluated.
fn counter(per_second: f64) -> Vec<(i64, f64)> {
    let now = now_ms();
    (0..=12).map(|i| (now - 120_500 + i * 10_000, 1_000_000.0 + per_second * 10.0 * i as f64)).collect()
}

/// Asserts a served Quantity is `want` per second (to the milli-unit, for float rounding).
fn assert_rate(value: &serde_json::Value, want: f64) {
    let got = milli(value);
    assert!((got - (want * 1000.0) as i64).abs() <= 1, "served {value}, want {want}");
}

/// Writes `series` over remote-write 2.0 to the harness's HTTP listener.
async fn write_v2(h: &Harness, series: &[TestSeries<'_>]) {
    let addr = h.server.as_ref().expect("running").local_addr;
    let slices: Vec<ingest_common::V2Series<'_>> = series.iter().map(|(l, s)| (l.as_slice(), s.as_slice())).collect();
    let body = encode_body(&ingest_common::v2_request_of(&slices));
    let response = ingest_common::post_write(&format!("http://{addr}"), CONTENT_TYPE_V2, body).await;
    assert_eq!(response.status(), 204, "{:?}", response.text().await);
}

/// The custom metrics API's discovery lists `services/net.http.request.count`.
async fn assert_discovery_lists_the_dotted_metric(h: &Harness) {
    let (status, discovery) = get(h, "/apis/custom.metrics.k8s.io/v1beta1").await;
    assert_eq!(status, 200, "{discovery}");
    let resources: Vec<&str> =
        discovery["resources"].as_array().expect("resources").iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(resources.contains(&"services/net.http.request.count"), "{resources:?}");
}

/// `GET path` on the adapter: status and parsed body.
async fn get(h: &Harness, path: &str) -> (u16, serde_json::Value) {
    let response = h.https().get(h.url(path)).send().await.expect("adapter request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: non-JSON ({e}): {text}"));
    (status, body)
}

fn items(list: &serde_json::Value) -> Vec<serde_json::Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

const UTF8_RULES: &str = r#"
rules:
  - seriesQuery: '{__name__="net.http.request.count",namespace!="",service!=""}'
    resources: {overrides: {namespace: {resource: namespace}, service: {resource: service}}}
    metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
externalRules:
  - seriesQuery: '{__name__="net.http.request.count",namespace!=""}'
    resources: {overrides: {namespace: {resource: namespace}}}
    metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m]))'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_utf8_series_name_written_over_remote_write_2_is_served_as_an_object_metric() {
    let h = Harness::start(Some(UTF8_RULES), None).await;
    let frontend = counter(20.0);
    let backend = counter(2.0);
    write_v2(
        &h,
        &[
            (vec![("__name__", DOTTED), ("namespace", NS), ("service", "frontend"), ("code", "200")], frontend.clone()),
            (vec![("__name__", DOTTED), ("namespace", NS), ("service", "frontend"), ("code", "500")], frontend),
            (vec![("__name__", DOTTED), ("namespace", NS), ("service", "backend"), ("code", "200")], backend),
        ],
    )
    .await;
    // Discovery lists the series name as the metric.
    assert_discovery_lists_the_dotted_metric(&h).await;

    for version in ["v1beta1", "v1beta2"] {
        let path = format!("/apis/custom.metrics.k8s.io/{version}/namespaces/{NS}/services/frontend/{DOTTED}");
        let (status, list) = get(&h, &path).await;
        assert_eq!(status, 200, "{path}: {list}");
        let all = items(&list);
        assert_eq!(all.len(), 1, "{path}: {list}");
        assert_metric_value_shape(&all[0], version, DOTTED);
        assert_eq!(all[0]["describedObject"]["kind"], "Service");
        assert_eq!(all[0]["describedObject"]["name"], "frontend");
        assert_rate(&all[0]["value"], 2.0 * 20.0);
    }

    // Every service, then narrowed by a metric label selector.
    let path = format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NS}/services/*/{DOTTED}");
    let (status, list) = get(&h, &path).await;
    assert_eq!(status, 200, "{path}: {list}");
    let mut names: Vec<String> =
        items(&list).iter().filter_map(|i| i["describedObject"]["name"].as_str().map(str::to_string)).collect();
    names.sort();
    assert_eq!(names, ["backend", "frontend"], "{list}");
    let (status, list) = get(&h, &format!("{path}?metricLabelSelector=code%3D500")).await;
    assert_eq!(status, 200, "{list}");
    let all = items(&list);
    assert_eq!(all.len(), 1, "{list}");
    assert_eq!(all[0]["describedObject"]["name"], "frontend");
    assert_rate(&all[0]["value"], 20.0);

    // The external rule shares the query building.
    let path = format!("/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/{DOTTED}");
    let (status, list) = get(&h, &path).await;
    assert_eq!(status, 200, "{path}: {list}");
    let all = items(&list);
    assert_eq!(all.len(), 1, "{list}");
    assert_rate(&all[0]["value"], 2.0 * 20.0 + 2.0);
    h.stop().await;
}

const RENAME_RULES: &str = r#"
rules:
  - seriesQuery: 'net_http_request_count_total{namespace!="",service!=""}'
    resources: {overrides: {namespace: {resource: namespace}, service: {resource: service}}}
    name: {matches: "^net_http_request_count_total$", as: "net.http.request.count"}
    metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_series_renamed_to_a_dotted_metric_is_discovered_and_served() {
    let h = Harness::start(Some(RENAME_RULES), None).await;
    write_v2(
        &h,
        &[(
            vec![("__name__", "net_http_request_count_total"), ("namespace", NS), ("service", "frontend")],
            counter(4.0),
        )],
    )
    .await;
    assert_discovery_lists_the_dotted_metric(&h).await;
    let path = format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NS}/services/frontend/{DOTTED}");
    let (status, list) = get(&h, &path).await;
    assert_eq!(status, 200, "{path}: {list}");
    let all = items(&list);
    assert_eq!(all.len(), 1, "{list}");
    assert_metric_value_shape(&all[0], "v1beta2", DOTTED);
    assert_rate(&all[0]["value"], 4.0);
    h.stop().await;
}
