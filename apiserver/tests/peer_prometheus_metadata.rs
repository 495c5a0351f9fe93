//! Real peer: metric metadata. Ringtail and Prometheus 2.42 scrape the same exporter; their
//! `/api/v1/metadata` and `/api/v1/targets/metadata` answers (with each parameter) must be equal.
//! Then Prometheus remote-writes to Ringtail with metadata: Ringtail's `/api/v1/metadata` for the
//! sent families must equal Prometheus's own. Skipped (saying so) when Prometheus is not
//! installed, unless `RINGTAIL_REQUIRE_PEERS=1`.

mod ingest_common;

use ingest_common::*;
use std::time::Duration;

/// Status code and JSON body of `GET base + path_and_query`, with arrays inside `data` sorted
/// (Prometheus lists from Go maps, in no fixed order).
async fn get_sorted(base: &str, path_and_query: &str) -> (u16, serde_json::Value) {
    let response = client().get(format!("{base}{path_and_query}")).send().await.expect("request");
    let status = response.status().as_u16();
    let mut body: serde_json::Value = response.json().await.expect("json");
    sort_arrays(&mut body["data"]);
    (status, body)
}

fn sort_arrays(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(sort_arrays);
            items.sort_by_key(|v| v.to_string());
        }
        serde_json::Value::Object(map) => map.values_mut().for_each(sort_arrays),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_apis_as_prometheus_scraping_the_same_target() {
    if !peer::peers_installed("metadata_apis_as_prometheus_scraping_the_same_target", &[peer::PROMETHEUS]) {
        return;
    }
    let target = TestTarget::start().await;
    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n- job_name: demo\n  static_configs: [{{targets: ['{}'], labels: {{team: core}}}}]\n",
        target.addr
    );
    let ringtail = Ringtail::start(Some(&scrape), &[]).await;
    let prometheus = Prometheus::start(&scrape).await;
    for server in [ringtail.url(), prometheus.url()] {
        eventually("metadata after the first scrape", Duration::from_secs(60), || async {
            let (_, body) = get_sorted(&server, "/api/v1/metadata").await;
            body["data"].as_object().is_some_and(|d| d.len() >= 3).then_some(())
        })
        .await;
    }
    for query in [
        "/api/v1/metadata",
        "/api/v1/metadata?metric=demo_requests_total",
        "/api/v1/metadata?metric=absent_metric",
        "/api/v1/metadata?limit=-1",
        "/api/v1/metadata?limit=abc",
        "/api/v1/targets/metadata",
        "/api/v1/targets/metadata?metric=demo_latency_seconds",
        "/api/v1/targets/metadata?match_target=%7Bjob%3D%22demo%22%7D",
        "/api/v1/targets/metadata?match_target=%7Bjob%3D%22other%22%7D",
        "/api/v1/targets/metadata?match_target=%7Bteam%3D~%22co.*%22%7D&metric=demo_temperature_celsius",
        "/api/v1/targets/metadata?metric=absent_metric",
        "/api/v1/targets/metadata?limit=0",
        "/api/v1/targets/metadata?limit=x",
    ] {
        let ours = get_sorted(&ringtail.url(), query).await;
        let theirs = get_sorted(&prometheus.url(), query).await;
        if theirs.0 == 200 {
            assert_eq!(ours, theirs, "{query}");
        } else {
            // Error messages differ in wording; status and errorType must not.
            assert_eq!(
                (ours.0, &ours.1["errorType"]),
                (theirs.0, &theirs.1["errorType"]),
                "{query}: {ours:?} vs {theirs:?}"
            );
        }
    }
    // `limit` keeps that many metrics (which ones is Go map order in Prometheus).
    let (_, ours) = get_sorted(&ringtail.url(), "/api/v1/metadata?limit=2").await;
    let (_, theirs) = get_sorted(&prometheus.url(), "/api/v1/metadata?limit=2").await;
    assert_eq!(ours["data"].as_object().map(|d| d.len()), theirs["data"].as_object().map(|d| d.len()));
    let (_, body) = get_sorted(&ringtail.url(), "/api/v1/metadata?metric=demo_requests_total").await;
    assert_eq!(body["data"]["demo_requests_total"][0]["help"], "Requests served.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_metadata_from_prometheus_is_served() {
    if !peer::peers_installed("remote_write_metadata_from_prometheus_is_served", &[peer::PROMETHEUS]) {
        return;
    }
    let target = TestTarget::start().await;
    let ringtail = Ringtail::start(None, &[]).await;
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n- job_name: demo\n  static_configs: [{{targets: ['{}']}}]\n\
         remote_write:\n- url: {}/api/v1/write\n  metadata_config: {{send: true, send_interval: 1s}}\n",
        target.addr,
        ringtail.url()
    );
    let prometheus = Prometheus::start(&config).await;
    for metric in ["demo_requests_total", "demo_temperature_celsius", "demo_latency_seconds"] {
        let query = format!("/api/v1/metadata?metric={metric}");
        let theirs = eventually("Prometheus's own metadata", Duration::from_secs(60), || async {
            let (_, body) = get_sorted(&prometheus.url(), &query).await;
            body["data"].as_object().is_some_and(|d| !d.is_empty()).then_some(body)
        })
        .await;
        let ours = eventually("Ringtail to receive the metadata", Duration::from_secs(90), || async {
            let (_, body) = get_sorted(&ringtail.url(), &query).await;
            body["data"].as_object().is_some_and(|d| !d.is_empty()).then_some(body)
        })
        .await;
        assert_eq!(ours, theirs, "{metric}");
    }
}
