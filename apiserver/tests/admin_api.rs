//! `/api/v1/admin/tsdb/delete_series` and `clean_tombstones` through the real `ringtail` binary:
//! refused (503 "admin APIs disabled") without `--web.enable-admin-api`; with it, the matching
//! series are gone from queries, `/api/v1/series` and label values (tsdb/tests/churn.rs shows
//! they stay gone after a restart); a window that would cut a series is refused whole (400,
//! nothing deleted); no `match[]` is 400.
//! When the Debian `prometheus` peer is installed, Prometheus 2.42 given the same data and the
//! same calls answers with the same status codes and keeps the same series.

mod ingest_common;

use ingest::proto::v1;
use ingest::remote_write::encode_body;
use ingest_common::*;
use serde_json::Value;
use std::collections::BTreeSet;

const CT_V1: &str = "application/x-protobuf";

/// `jobs_total` for pods p0..p3 of two namespaces, two samples each, ten and five seconds ago.
fn request(now: i64) -> Vec<u8> {
    let timeseries = ["shop", "web"]
        .iter()
        .flat_map(|namespace| {
            (0..4).map(move |pod| {
                series(
                    &[("__name__", "jobs_total"), ("namespace", namespace), ("pod", &format!("p{pod}"))],
                    &[(now - 10_000, 1.0), (now - 5_000, 2.0)],
                )
            })
        })
        .collect();
    encode_body(&v1::WriteRequest { timeseries, metadata: vec![] })
}

async fn admin(base_url: &str, path: &str, query: &[(&str, String)]) -> (u16, String) {
    let response =
        client().post(format!("{base_url}/api/v1/admin/tsdb/{path}")).query(query).send().await.expect("admin request");
    let code = response.status().as_u16();
    (code, response.text().await.expect("body"))
}

/// The JSON answer to `GET base_url/path?query`.
async fn get_json(base_url: &str, path: &str, query: &[(&str, &str)]) -> Value {
    let response = client().get(format!("{base_url}{path}")).query(query).send().await.expect("GET request");
    response.json().await.expect("JSON body")
}

/// `namespace/pod` of every `jobs_total` series with samples in the last hour, through a query
/// (Prometheus 2.42 keeps listing deleted head series in `/api/v1/series` until its head is
/// compacted; queries honour deletions at once in both).
async fn pods(base_url: &str) -> BTreeSet<String> {
    let body = get_json(base_url, "/api/v1/query", &[("query", "last_over_time(jobs_total[1h])")]).await;
    body["data"]["result"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| &s["metric"])
        .map(|s| format!("{}/{}", s["namespace"].as_str().unwrap_or(""), s["pod"].as_str().unwrap_or("")))
        .collect()
}

/// The calls of the test, against `base_url` (Ringtail or Prometheus), with what each answered
/// and the series left after each.
async fn run_calls(base_url: &str, now: i64) -> Vec<(u16, BTreeSet<String>)> {
    let seconds = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    let calls: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("delete_series", vec![]),
        ("delete_series", vec![("match[]", "{pod=\"p0\"}".into())]),
        ("delete_series", vec![("match[]", "jobs_total{namespace=\"web\",pod=~\"p[12]\"}".into())]),
        // Both samples inside the window: the series goes whole.
        (
            "delete_series",
            vec![
                ("match[]", "{pod=\"p3\",namespace=\"shop\"}".into()),
                ("start", seconds(now - 60_000)),
                ("end", seconds(now)),
            ],
        ),
        // A window past every sample deletes nothing.
        ("delete_series", vec![("match[]", "jobs_total".into()), ("start", seconds(now + 60_000))]),
        ("clean_tombstones", vec![]),
    ];
    let mut out = Vec::new();
    for (path, query) in calls {
        let (code, body) = admin(base_url, path, &query).await;
        assert!(code == 204 || code == 400, "{path} {query:?}: {code} {body}");
        out.push((code, pods(base_url).await));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_are_off_by_default() {
    let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &[]).await;
    let now = tsdb::now_ms();
    assert_eq!(post_write(&ringtail.url(), CT_V1, request(now)).await.status(), 204);
    for path in ["delete_series", "clean_tombstones"] {
        let (code, body) = admin(&ringtail.url(), path, &[("match[]", "jobs_total".into())]).await;
        assert_eq!(code, 503, "{path}: {body}");
        let error: Value = serde_json::from_str(&body).expect("JSON error");
        assert_eq!(error["error"], "admin APIs disabled", "{body}");
    }
    assert_eq!(pods(&ringtail.url()).await.len(), 8, "nothing was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_series_removes_whole_series_as_prometheus_does() {
    let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &["--web.enable-admin-api"]).await;
    let now = tsdb::now_ms();
    assert_eq!(post_write(&ringtail.url(), CT_V1, request(now)).await.status(), 204);
    assert_eq!(pods(&ringtail.url()).await.len(), 8);

    // A window holding one sample of each series would cut them in two: refused, nothing gone.
    let cut = [("match[]", "jobs_total".to_string()), ("end", format!("{:.3}", (now - 7_000) as f64 / 1000.0))];
    let (code, body) = admin(&ringtail.url(), "delete_series", &cut).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("whole series only") && body.contains("8 matching series"), "{body}");
    assert_eq!(pods(&ringtail.url()).await.len(), 8, "a refused deletion deletes nothing");
    let (code, body) = admin(&ringtail.url(), "delete_series", &[("match[]", "{".into())]).await;
    assert_eq!(code, 400, "a bad selector: {body}");

    let ours = run_calls(&ringtail.url(), now).await;
    let expected_left: BTreeSet<String> = ["shop/p1", "shop/p2", "web/p3"].iter().map(|s| s.to_string()).collect();
    assert_eq!(ours.last().map(|(_, left)| left), Some(&expected_left), "{ours:?}");
    assert_eq!(ours[0].0, 400, "no match[] is a bad request");

    // Gone from queries, label values and the series list too.
    let body = get_json(&ringtail.url(), "/api/v1/query", &[("query", "count(jobs_total)")]).await;
    assert_eq!(body["data"]["result"][0]["value"][1], "3", "{body}");
    let body = get_json(&ringtail.url(), "/api/v1/label/pod/values", &[]).await;
    assert_eq!(body["data"], serde_json::json!(["p1", "p2", "p3"]), "{body}");
    let body = get_json(&ringtail.url(), "/api/v1/series", &[("match[]", "jobs_total")]).await;
    assert_eq!(body["data"].as_array().map(Vec::len), Some(3), "{body}");

    if !peer::peers_installed("delete_series_removes_whole_series_as_prometheus_does", &[peer::PROMETHEUS]) {
        return;
    }
    let prometheus =
        Prometheus::start_with("global: {}\n", &["--web.enable-remote-write-receiver", "--web.enable-admin-api"]).await;
    let response = post_write(&prometheus.url(), CT_V1, request(now)).await;
    assert!(response.status().is_success(), "Prometheus took the request: {}", response.status());
    let theirs = run_calls(&prometheus.url(), now).await;
    assert_eq!(ours, theirs, "same answers and same series left as Prometheus 2.42");
}
