//! Bad input to the metrics adapter — malformed selectors, unknown resources, metric names with
//! slashes, huge selectors, plain HTTP on the TLS port, missing or wrong tokens, aggregated
//! discovery, other methods — each answered with a Kubernetes `Status` (read back through the
//! real `kubectl` where it can express the request), never a panic; plus config reload keeping
//! the old rules when the new file is bad.

mod adapter_support;

use adapter_support::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tsdb::now_ms;

const RULES: &str = r#"
rules:
- seriesQuery: 'ei_scale_ratio{namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
"#;

async fn status_of(h: &Harness, request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let _ = h;
    let response = request.send().await.expect("request");
    let code = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("Status JSON body");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["code"], code);
    (code, body)
}

fn seed(h: &Harness) {
    let now = now_ms();
    h.append(&[(
        vec![("__name__", "ei_scale_ratio"), ("namespace", "default"), ("pod", "web-0"), ("app", "web")],
        vec![(now, 2.0)],
    )]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_kubernetes_status_errors() {
    let h = Harness::start(Some(RULES), None).await;
    seed(&h);
    let base = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default";

    // Through kubectl: it parses the Status and prints its reason.
    let cases = [
        (format!("{base}/pods/%2A/ei_scale_ratio?labelSelector=app%20in%20%28web"), "BadRequest"),
        (format!("{base}/pods/%2A/ei_scale_ratio?labelSelector=-bad%3Dx"), "BadRequest"),
        (format!("{base}/widgets/w/ei_scale_ratio"), "NotFound"),
        (format!("{base}/pods/web-0/no_such_metric"), "NotFound"),
        (format!("{base}/pods/web-9/ei_scale_ratio"), "NotFound"),
        // kubectl decodes %2F into a path separator: an unknown path.
        (format!("{base}/pods/web-0/ei%2Fscale"), "NotFound"),
        (format!("{base}/pods/web-0/ei/scale/ratio"), "NotFound"),
        (format!("{base}/pods/%2A/ei_scale_ratio?metricLabelSelector=x%3E3"), "BadRequest"),
        ("/apis/custom.metrics.k8s.io/v1alpha1".to_string(), "NotFound"),
        ("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/nothing".to_string(), "NotFound"),
    ];
    for (path, reason) in cases {
        let err = h.kubectl_raw(&path).await.expect_err(&path);
        assert!(err.contains(&format!("({reason})")), "{path}: expected {reason}, kubectl said: {err}");
    }

    // Huge selector: refused with 400, and the server keeps serving.
    let huge = format!("app%20in%20%28{}%29", (0..3000).map(|i| format!("v{i}")).collect::<Vec<_>>().join("%2C"));
    let client = h.https();
    let (code, body) =
        status_of(&h, client.get(h.url(&format!("{base}/pods/%2A/ei_scale_ratio?labelSelector={huge}")))).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("bytes"), "{body}");

    // Exact codes and reasons where kubectl hides them.
    let (code, body) = status_of(&h, client.get(h.url(&format!("{base}/widgets/w/ei_scale_ratio")))).await;
    assert_eq!((code, body["reason"].as_str().unwrap()), (404, "NotFound"));
    let (code, body) = status_of(&h, client.get(h.url(&format!("{base}/pods/web-0/ei%2Fscale")))).await;
    assert_eq!(code, 400, "a metric name with a slash: {body}");
    let (code, _) = status_of(&h, client.post(h.url("/apis/custom.metrics.k8s.io/v1beta2"))).await;
    assert_eq!(code, 405);
    let (code, _) = status_of(&h, client.get(h.url("/openapi/v2"))).await;
    assert_eq!(code, 404);
    let (code, _) = status_of(&h, client.get(h.url("/openapi/v3"))).await;
    assert_eq!(code, 404);
    let aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    let (code, body) = status_of(&h, client.get(h.url("/apis")).header("accept", aggregated)).await;
    assert_eq!((code, body["reason"].as_str().unwrap()), (406, "NotAcceptable"));
    let ok =
        client.get(h.url("/apis")).header("accept", format!("{aggregated},application/json")).send().await.unwrap();
    assert_eq!(ok.status(), 200, "with a JSON fallback the legacy document is served");
    for path in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(client.get(h.url(path)).send().await.unwrap().text().await.unwrap(), "ok");
    }
    let version: serde_json::Value = client.get(h.url("/version")).send().await.unwrap().json().await.unwrap();
    assert!(version["gitVersion"].as_str().unwrap().starts_with('v'));

    // Plain HTTP on the TLS port: a 400 Status, then the connection closes.
    let mut stream = tokio::net::TcpStream::connect(h.secure_addr).await.unwrap();
    stream.write_all(b"GET /apis HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await.unwrap().unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("\"kind\":\"Status\"") && reply.contains("HTTPS server"), "{reply}");
    // Garbage that is neither TLS nor HTTP, and a connection that closes at once.
    let mut stream = tokio::net::TcpStream::connect(h.secure_addr).await.unwrap();
    stream.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3]).await.unwrap();
    drop(stream);
    drop(tokio::net::TcpStream::connect(h.secure_addr).await.unwrap());

    // Still serving after all that.
    let list = h.get(&format!("{base}/pods/web-0/ei_scale_ratio")).await;
    assert_eq!(list["items"][0]["value"], "2");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_file_gates_the_metrics_apis() {
    let h = Harness::start(Some(RULES), Some("s3cret,hpa,1,\"system:masters\"\n")).await;
    seed(&h);
    // kubectl with the right token (its kubeconfig carries it).
    let list = h.get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-0/ei_scale_ratio").await;
    assert_eq!(list["items"][0]["value"], "2");
    let client = h.https();
    let url = h.url("/apis/custom.metrics.k8s.io/v1beta2");
    let (code, body) = status_of(&h, client.get(&url)).await;
    assert_eq!((code, body["reason"].as_str().unwrap()), (403, "Forbidden"));
    let (code, body) = status_of(&h, client.get(&url).bearer_auth("wrong")).await;
    assert_eq!((code, body["reason"].as_str().unwrap()), (401, "Unauthorized"));
    // Health stays open, as on kube-apiserver.
    assert_eq!(client.get(h.url("/healthz")).send().await.unwrap().status(), 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_applies_good_files_and_keeps_rules_on_bad_ones() {
    let h = Harness::start(Some(RULES), None).await;
    seed(&h);
    let now = now_ms();
    h.append(&[(vec![("__name__", "queue_length"), ("namespace", "default"), ("queue", "q")], vec![(now, 5.0)])]);
    let path = h.adapter_config.clone().unwrap();
    let listed = |list: serde_json::Value| -> Vec<String> {
        list["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
    };
    assert!(listed(h.get("/apis/custom.metrics.k8s.io/v1beta2").await).contains(&"pods/ei_scale_ratio".to_string()));

    // A broken file: the error is logged, the old rules keep serving.
    std::fs::write(&path, "rules:\n- seriesQuery: 'up'\n  metricsQuery: '<<.Nope>>'\n").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(listed(h.get("/apis/custom.metrics.k8s.io/v1beta2").await).contains(&"pods/ei_scale_ratio".to_string()));

    // A good file with an external rule: picked up without a restart.
    std::fs::write(
        &path,
        format!("{RULES}externalRules:\n- seriesQuery: 'queue_length{{queue!=\"\"}}'\n  metricsQuery: 'sum(<<.Series>>{{<<.LabelMatchers>>}}) by (queue)'\n"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let names = listed(h.get("/apis/external.metrics.k8s.io/v1beta1").await);
        if names.contains(&"queue_length".to_string()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "reload not applied: {names:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let list = h.get("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_length").await;
    assert_eq!(list["items"][0]["value"], "5");
    h.stop().await;
}
