//! The metrics adapter driven by the real `kubectl get --raw` over TLS, one test per scenario of
//! the adapter issue, each with its own data: responses are checked field by field against the
//! Kubernetes types (Quantity strings included), and the replica count the HPA controller would
//! derive from the served values is asserted.

mod adapter_support;

use adapter_support::*;
use tsdb::now_ms;

const NS: &str = "default";

fn gauge<'a>(labels: Vec<(&'a str, &'a str)>, value: f64) -> TestSeries<'a> {
    (labels, vec![(now_ms() - 1_000, value)])
}

/// A counter growing by `per_second` over the last two minutes, one sample every 10 s.
fn counter<'a>(labels: Vec<(&'a str, &'a str)>, per_second: f64) -> TestSeries<'a> {
    let now = now_ms();
    let samples = (0..=12).map(|i| (now - 120_000 + i * 10_000 - 500, 1000.0 + per_second * 10.0 * i as f64)).collect();
    (labels, samples)
}

fn items(list: &serde_json::Value) -> Vec<serde_json::Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn names(list: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> =
        items(list).iter().map(|i| i["describedObject"]["name"].as_str().unwrap_or("").to_string()).collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario1_ei_scale_ratio_pods_average_value_with_the_default_rules() {
    let h = Harness::start(None, None).await;
    h.append(&[
        gauge(vec![("__name__", "ei_scale_ratio"), ("namespace", NS), ("pod", "web-0"), ("app", "web")], 3.033),
        gauge(vec![("__name__", "ei_scale_ratio"), ("namespace", NS), ("pod", "web-1"), ("app", "web")], 2.5),
        gauge(vec![("__name__", "ei_scale_ratio"), ("namespace", NS), ("pod", "web-2"), ("app", "web")], 1.2),
        gauge(vec![("__name__", "ei_scale_ratio"), ("namespace", NS), ("pod", "other-0"), ("app", "other")], 9.0),
        gauge(vec![("__name__", "ei_scale_ratio"), ("namespace", "elsewhere"), ("pod", "web-9"), ("app", "web")], 9.0),
    ]);

    // Discovery, as kube-aggregator and the HPA read it.
    let apis = h.get("/apis").await;
    assert_eq!(apis["kind"], "APIGroupList");
    let group =
        apis["groups"].as_array().unwrap().iter().find(|g| g["name"] == "custom.metrics.k8s.io").cloned().unwrap();
    assert_eq!(group["preferredVersion"]["groupVersion"], "custom.metrics.k8s.io/v1beta2");
    let group = h.get("/apis/custom.metrics.k8s.io").await;
    assert_eq!(group["kind"], "APIGroup");
    for version in ["v1beta1", "v1beta2"] {
        let list = h.get(&format!("/apis/custom.metrics.k8s.io/{version}")).await;
        assert_eq!(list["kind"], "APIResourceList");
        assert_eq!(list["groupVersion"], format!("custom.metrics.k8s.io/{version}"));
        let entry = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/ei_scale_ratio")
            .cloned()
            .unwrap_or_else(|| panic!("pods/ei_scale_ratio not listed: {list}"));
        assert_eq!(entry["namespaced"], true);
        assert_eq!(entry["kind"], "MetricValueList");
        assert_eq!(entry["verbs"], serde_json::json!(["get"]));
        assert!(list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "namespaces/ei_scale_ratio" && r["namespaced"] == false));
    }

    // The HPA's request: every pod the selector picks, and only those.
    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/ei_scale_ratio?labelSelector=app%3Dweb";
    let list = h.get(path).await;
    assert_eq!(list["kind"], "MetricValueList");
    assert_eq!(list["apiVersion"], "custom.metrics.k8s.io/v1beta2");
    assert_eq!(names(&list), vec!["web-0", "web-1", "web-2"]);
    for item in items(&list) {
        assert_metric_value_shape(&item, "v1beta2", "ei_scale_ratio");
        assert_eq!(item["describedObject"]["kind"], "Pod");
        assert_eq!(item["describedObject"]["namespace"], NS);
        assert_eq!(item["describedObject"]["apiVersion"], "v1");
        assert!(item["metric"]["selector"].is_null());
        assert!(item.get("windowSeconds").is_none(), "a gauge has no window: {item}");
    }
    let by_name =
        |name: &str| items(&list).into_iter().find(|i| i["describedObject"]["name"] == name).unwrap()["value"].clone();
    assert_eq!(by_name("web-0"), "3033m");
    assert_eq!(by_name("web-1"), "2500m");
    assert_eq!(by_name("web-2"), "1200m");

    // HPA: AverageValue 1 on 3 replicas → mean 2.244 → ceil(2.244 × 3) = 7.
    let served: Vec<i64> = items(&list).iter().map(|i| milli(&i["value"])).collect();
    let from_data = hpa_pods_average_value(3, &[3033, 2500, 1200], 1000);
    assert_eq!(hpa_pods_average_value(3, &served, 1000), from_data);
    assert_eq!(from_data, 7);

    // v1beta1 shape of the same request, and the single-object form.
    let list = h.get(&path.replace("v1beta2", "v1beta1")).await;
    for item in items(&list) {
        assert_metric_value_shape(&item, "v1beta1", "ei_scale_ratio");
        assert!(item["selector"].is_null());
    }
    let one = h.get("/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/web-0/ei_scale_ratio").await;
    assert_eq!(items(&one).len(), 1);
    assert_eq!(items(&one)[0]["value"], "3033m");
    assert_eq!(items(&one)[0]["metricName"], "ei_scale_ratio");

    // Freshness: a pod that appears now is answered on the very next request (no relist).
    h.append(&[gauge(
        vec![("__name__", "ei_scale_ratio"), ("namespace", NS), ("pod", "web-3"), ("app", "web")],
        1500.0,
    )]);
    let list = h.get(path).await;
    assert_eq!(names(&list), vec!["web-0", "web-1", "web-2", "web-3"]);
    assert_eq!(items(&list).into_iter().find(|i| i["describedObject"]["name"] == "web-3").unwrap()["value"], "1500");
    h.stop().await;
}

/// The Seldon rule as Seldon documents it, verbatim.
const SELDON_RULES: &str = include_str!("fixtures/seldon-rules.yaml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario2_the_seldon_rule_verbatim() {
    let h = Harness::start(Some(SELDON_RULES), None).await;
    let base = |pod: &'static str, model: &'static str| {
        vec![
            ("__name__", "seldon_model_infer_total"),
            ("namespace", "seldon-mesh"),
            ("model", model),
            ("server", "mlserver"),
            ("pod", pod),
            ("code", "200"),
            ("method_type", "rest"),
        ]
    };
    h.append(&[
        counter(base("mlserver-0", "irisa0"), 7.0),
        counter(base("mlserver-1", "irisa0"), 3.0),
        counter(base("mlserver-0", "irisb0"), 1.0),
        counter(
            vec![
                ("__name__", "seldon_model_infer_seconds_total"),
                ("namespace", "seldon-mesh"),
                ("model", "irisa0"),
                ("pod", "mlserver-0"),
            ],
            2.0,
        ),
        counter(
            vec![
                ("__name__", "seldon_model_aggregate_infer_total"),
                ("namespace", "seldon-mesh"),
                ("pod", "mlserver-0"),
            ],
            2.0,
        ),
    ]);

    let list = h.get("/apis/custom.metrics.k8s.io/v1beta1").await;
    let listed: Vec<(String, bool)> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["namespaced"].as_bool().unwrap()))
        .collect();
    for expected in [
        ("models.mlops.seldon.io/infer_rps", true),
        ("servers.mlops.seldon.io/infer_rps", true),
        ("pods/infer_rps", true),
        ("namespaces/infer_rps", false),
    ] {
        assert!(listed.contains(&(expected.0.to_string(), expected.1)), "{expected:?} missing from {listed:?}");
    }
    assert!(listed.iter().all(|(n, _)| n.ends_with("/infer_rps")), "filters must drop the others: {listed:?}");

    let rate_of = |label: &str, value: &str| {
        let query = format!(
            "sum by ({label}) (rate(seldon_model_infer_total{{namespace=\"seldon-mesh\",{label}=\"{value}\"}}[2m]))"
        );
        h.engine_values(&query, label)[0].1
    };
    let cases = [
        (
            "namespaces/seldon-mesh/models.mlops.seldon.io/irisa0",
            "Model",
            "mlops.seldon.io/v1alpha1",
            "irisa0",
            rate_of("model", "irisa0"),
        ),
        (
            "namespaces/seldon-mesh/servers.mlops.seldon.io/mlserver",
            "Server",
            "mlops.seldon.io/v1alpha1",
            "mlserver",
            rate_of("server", "mlserver"),
        ),
        ("namespaces/seldon-mesh/pods/mlserver-0", "Pod", "v1", "mlserver-0", rate_of("pod", "mlserver-0")),
    ];
    for (object_path, kind, api_version, name, expected) in cases {
        for version in ["v1beta1", "v1beta2"] {
            let list = h.get(&format!("/apis/custom.metrics.k8s.io/{version}/{object_path}/infer_rps")).await;
            let all = items(&list);
            assert_eq!(all.len(), 1, "an Object request answers exactly one item: {list}");
            let item = &all[0];
            assert_metric_value_shape(item, version, "infer_rps");
            assert_eq!(item["describedObject"]["kind"], kind);
            assert_eq!(item["describedObject"]["apiVersion"], api_version);
            assert_eq!(item["describedObject"]["name"], name);
            assert_eq!(item["describedObject"]["namespace"], "seldon-mesh");
            let window_key = if version == "v1beta1" { "window" } else { "windowSeconds" };
            assert_eq!(item[window_key], 120, "{item}");
            let want = apiserver::adapter::provider::quantity::Quantity::from_f64(expected).unwrap().to_string();
            assert_eq!(item["value"], want.as_str(), "{object_path}");
        }
    }
    // irisa0 runs at about 10 rps; the Seldon HPA (AverageValue 3, 1 replica) asks for 4.
    let model = h
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/seldon-mesh/models.mlops.seldon.io/irisa0/infer_rps")
        .await;
    let usage = milli(&items(&model)[0]["value"]);
    assert!((9_000..=11_000).contains(&usage), "irisa0 at {usage}m rps");
    assert_eq!(hpa_per_pod_average_value(1, usage, 3000), 4);

    // The namespace aggregate, by name and in the `namespaces/*/metrics` form the Seldon docs use.
    let ns_rate = rate_of("namespace", "seldon-mesh");
    for path in [
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/seldon-mesh/metrics/infer_rps",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/*/metrics/infer_rps",
        "/apis/custom.metrics.k8s.io/v1beta1/namespaces/seldon-mesh/infer_rps",
    ] {
        let list = h.get(path).await;
        let all = items(&list);
        assert_eq!(all.len(), 1, "{path}: {list}");
        assert_eq!(all[0]["describedObject"]["kind"], "Namespace");
        assert_eq!(all[0]["describedObject"]["name"], "seldon-mesh");
        assert!(all[0]["describedObject"].get("namespace").is_none(), "a namespace has no namespace");
        let want = apiserver::adapter::provider::quantity::Quantity::from_f64(ns_rate).unwrap().to_string();
        assert_eq!(all[0]["value"], want.as_str());
    }
    h.stop().await;
}

const ISTIO_RULES: &str = r#"
rules:
- seriesQuery: 'istio_requests_total{namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  name:
    matches: "^istio_requests_total$"
    as: "requests_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario3_istio_requests_per_second_by_label_selector_and_metric_label_selector() {
    let h = Harness::start(Some(ISTIO_RULES), None).await;
    let series = |pod: &'static str, app: &'static str, code: &'static str| {
        vec![
            ("__name__", "istio_requests_total"),
            ("namespace", "shop"),
            ("pod", pod),
            ("app", app),
            ("response_code", code),
        ]
    };
    h.append(&[
        counter(series("reviews-0", "reviews", "200"), 4.0),
        counter(series("reviews-0", "reviews", "500"), 1.0),
        counter(series("reviews-1", "reviews", "200"), 6.0),
        counter(series("reviews-2", "reviews", "200"), 5.0),
        counter(series("ratings-0", "ratings", "200"), 50.0),
    ]);
    let base = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/%2A/requests_per_second";
    let list = h.get(&format!("{base}?labelSelector=app%3Dreviews")).await;
    assert_eq!(names(&list), vec!["reviews-0", "reviews-1", "reviews-2"]);
    let expected =
        h.engine_values("sum(rate(istio_requests_total{namespace=\"shop\",pod=~\"reviews-.*\"}[2m])) by (pod)", "pod");
    for (pod, value) in &expected {
        let item = items(&list).into_iter().find(|i| i["describedObject"]["name"] == pod.as_str()).unwrap();
        assert_metric_value_shape(&item, "v1beta2", "requests_per_second");
        assert_eq!(item["windowSeconds"], 120);
        let want = apiserver::adapter::provider::quantity::Quantity::from_f64(*value).unwrap().to_string();
        assert_eq!(item["value"], want.as_str(), "{pod}");
    }
    // HPA: AverageValue 2.5 rps on 3 replicas; mean ≈ 5.33 → 6.4 → 7 replicas. (A 2 rps target
    // lands exactly on 8.0, where a rate a hair above its exact value — the query runs a few
    // milliseconds after the samples, and the quantity rounds up to the next milli — makes 9.)
    let served: Vec<i64> = items(&list).iter().map(|i| milli(&i["value"])).collect();
    let raw: Vec<i64> = expected.iter().map(|(_, v)| (v * 1000.0).ceil() as i64).collect();
    assert_eq!(hpa_pods_average_value(3, &served, 2500), hpa_pods_average_value(3, &raw, 2500));
    assert_eq!(hpa_pods_average_value(3, &served, 2500), 7);

    // metricLabelSelector narrows the series; v1beta2 echoes it as metric.selector.
    let list = h.get(&format!("{base}?labelSelector=app%3Dreviews&metricLabelSelector=response_code%3D500")).await;
    assert_eq!(names(&list), vec!["reviews-0"]);
    let item = &items(&list)[0];
    assert_eq!(item["metric"]["selector"]["matchLabels"]["response_code"], "500");
    assert!(milli(&item["value"]) > 0 && milli(&item["value"]) < 2000);
    let v1 = h
        .get(&format!(
            "{}?labelSelector=app%3Dreviews&metricLabelSelector=response_code%3D500",
            base.replace("v1beta2", "v1beta1")
        ))
        .await;
    assert_eq!(items(&v1)[0]["selector"]["matchLabels"]["response_code"], "500");

    // A selector that picks nothing is an empty list, not an error.
    let list = h.get(&format!("{base}?labelSelector=app%3Dnothing")).await;
    assert!(items(&list).is_empty());
    h.stop().await;
}

const DCGM_RULES: &str = r#"
rules:
- seriesQuery: 'DCGM_FI_DEV_GPU_UTIL{namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
  metricsQuery: 'avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario4_dcgm_gpu_utilisation_per_pod() {
    let h = Harness::start(Some(DCGM_RULES), None).await;
    let gpu = |pod: &'static str, gpu: &'static str, value: f64| {
        gauge(
            vec![
                ("__name__", "DCGM_FI_DEV_GPU_UTIL"),
                ("namespace", "ml"),
                ("pod", pod),
                ("gpu", gpu),
                ("app", "trainer"),
                ("Hostname", "node-a"),
            ],
            value,
        )
    };
    h.append(&[gpu("trainer-0", "0", 80.0), gpu("trainer-0", "1", 90.0), gpu("trainer-1", "0", 55.0)]);
    let list = h.get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/%2A/DCGM_FI_DEV_GPU_UTIL?labelSelector=app%3Dtrainer").await;
    assert_eq!(names(&list), vec!["trainer-0", "trainer-1"]);
    let value =
        |pod: &str| items(&list).into_iter().find(|i| i["describedObject"]["name"] == pod).unwrap()["value"].clone();
    assert_eq!(value("trainer-0"), "85");
    assert_eq!(value("trainer-1"), "55");
    // AverageValue 60 on 2 replicas: mean 70 → ratio 1.17 > 1.1 → 3 replicas.
    let served: Vec<i64> = items(&list).iter().map(|i| milli(&i["value"])).collect();
    assert_eq!(hpa_pods_average_value(2, &served, 60_000), 3);
    // Within tolerance (target 66: ratio 1.06) the HPA keeps 2.
    assert_eq!(hpa_pods_average_value(2, &served, 66_000), 2);
    h.stop().await;
}

const OBJECT_RULES: &str = r#"
rules:
- seriesQuery: 'http_requests_total{namespace!="",service!=""}'
  resources:
    template: "<<.Resource>>"
  name:
    matches: "^(.*)_total$"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
- seriesQuery: 'cpu_capacity_remaining{node!=""}'
  resources:
    overrides:
      node: {resource: node}
  metricsQuery: 'min(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario5_object_metrics_on_a_service_and_a_node() {
    let h = Harness::start(Some(OBJECT_RULES), None).await;
    h.append(&[
        counter(
            vec![("__name__", "http_requests_total"), ("namespace", NS), ("service", "frontend"), ("method", "GET")],
            20.0,
        ),
        counter(
            vec![("__name__", "http_requests_total"), ("namespace", NS), ("service", "frontend"), ("method", "POST")],
            5.0,
        ),
        counter(
            vec![("__name__", "http_requests_total"), ("namespace", NS), ("service", "backend"), ("method", "GET")],
            1.0,
        ),
        gauge(vec![("__name__", "cpu_capacity_remaining"), ("node", "node-a"), ("core", "0")], 1.5),
        gauge(vec![("__name__", "cpu_capacity_remaining"), ("node", "node-a"), ("core", "1")], 0.25),
    ]);
    let list = h.get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/services/frontend/http_requests").await;
    let all = items(&list);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["describedObject"]["kind"], "Service");
    assert_eq!(all[0]["describedObject"]["namespace"], NS);
    let expected = h.engine_values(
        "sum(rate(http_requests_total{namespace=\"default\",service=\"frontend\"}[2m])) by (service)",
        "service",
    );
    let want = apiserver::adapter::provider::quantity::Quantity::from_f64(expected[0].1).unwrap().to_string();
    assert_eq!(all[0]["value"], want.as_str());
    // Object, Value target 10 rps, 2 replicas: ≈25 rps → 5 replicas.
    assert_eq!(hpa_object_value(2, milli(&all[0]["value"]), 10_000), 5);

    // A root-scoped object: a node, without namespace.
    let list = h.get("/apis/custom.metrics.k8s.io/v1beta2/nodes/node-a/cpu_capacity_remaining").await;
    let all = items(&list);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["describedObject"]["kind"], "Node");
    assert!(all[0]["describedObject"].get("namespace").is_none());
    assert_eq!(all[0]["value"], "250m");
    assert_eq!(hpa_object_value(4, milli(&all[0]["value"]), 500), 2);
    h.stop().await;
}

const EXTERNAL_RULES: &str = r#"
externalRules:
- seriesQuery: '{__name__="queue_length",queue!=""}'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario6_external_queue_length_with_a_metric_selector() {
    let h = Harness::start(Some(EXTERNAL_RULES), None).await;
    h.append(&[
        gauge(vec![("__name__", "queue_length"), ("namespace", NS), ("queue", "orders"), ("shard", "a")], 70.0),
        gauge(vec![("__name__", "queue_length"), ("namespace", NS), ("queue", "orders"), ("shard", "b")], 50.0),
        gauge(vec![("__name__", "queue_length"), ("namespace", NS), ("queue", "payments")], 30.0),
        gauge(vec![("__name__", "queue_length"), ("namespace", "other"), ("queue", "orders")], 1000.0),
    ]);
    let group = h.get("/apis/external.metrics.k8s.io").await;
    assert_eq!(group["preferredVersion"]["version"], "v1beta1");
    let list = h.get("/apis/external.metrics.k8s.io/v1beta1").await;
    let entry = list["resources"].as_array().unwrap().iter().find(|r| r["name"] == "queue_length").cloned().unwrap();
    assert_eq!(entry["kind"], "ExternalMetricValueList");
    assert_eq!(entry["namespaced"], true);

    let list = h
        .get("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_length?labelSelector=queue%3Dorders")
        .await;
    assert_eq!(list["kind"], "ExternalMetricValueList");
    assert_eq!(list["apiVersion"], "external.metrics.k8s.io/v1beta1");
    let all = items(&list);
    assert_eq!(all.len(), 1, "{list}");
    assert_eq!(all[0]["metricName"], "queue_length");
    assert_eq!(all[0]["metricLabels"], serde_json::json!({"queue": "orders"}));
    assert_eq!(all[0]["value"], "120");
    assert!(chrono::DateTime::parse_from_rfc3339(all[0]["timestamp"].as_str().unwrap()).is_ok());
    // External AverageValue 30 per replica, 1 replica: 120 → 4 replicas.
    assert_eq!(hpa_per_pod_average_value(1, milli(&all[0]["value"]), 30_000), 4);

    let list = h.get("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_length").await;
    assert_eq!(items(&list).len(), 2, "both queues of the namespace: {list}");
    h.stop().await;
}
