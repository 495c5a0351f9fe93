//! `/federate` against real Prometheus 2.42: a Prometheus scraping Ringtail's `/federate` with
//! `honor_labels: true` gets exactly the series and values Ringtail holds (with the external
//! labels added), and Ringtail's `/federate` body has the same families and series lines as the
//! `/federate` of a Prometheus scraping the same exporter with the same external labels. Skipped
//! (saying so) when Prometheus is not installed, unless `RINGTAIL_REQUIRE_PEERS=1`.

mod ingest_common;

use ingest_common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const MATCH_DEMO: &str = "/federate?match[]=%7Bjob%3D%22demo%22%7D";

async fn get_text(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.expect("request");
    (response.status().as_u16(), response.text().await.expect("body"))
}

/// The `# TYPE` lines and the `name{labels}` part of each sample line.
fn shape(body: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let types = body.lines().filter(|l| l.starts_with("# TYPE")).map(str::to_string).collect();
    let series = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplitn(3, ' ').nth(2).map(str::to_string))
        .collect();
    (types, series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_as_prometheus() {
    if !peer::peers_installed("federation_as_prometheus", &[peer::PROMETHEUS]) {
        return;
    }
    let target = TestTarget::start().await;
    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  external_labels: {{region: eu}}\n\
         scrape_configs:\n- job_name: demo\n  static_configs: [{{targets: ['{}']}}]\n",
        target.addr
    );
    let ringtail = Ringtail::start(Some(&scrape), &[]).await;
    let direct = Prometheus::start(&scrape).await;
    let federating = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n- job_name: federate\n  honor_labels: true\n  metrics_path: /federate\n\
         \x20 params: {{'match[]': ['{{job=\"demo\"}}']}}\n  static_configs: [{{targets: ['{}']}}]\n",
        ringtail.addr
    ))
    .await;

    // Bad requests.
    assert_eq!(get_text(&format!("{}/federate", ringtail.url())).await.0, 400, "match[] is required");
    let (status, body) = get_text(&format!("{}/federate?match[]=up%7B", ringtail.url())).await;
    assert_eq!(status, 400, "{body}");

    // The same families and series lines as Prometheus's own /federate over the same exporter.
    let ours = eventually("Ringtail to federate the exporter's series", Duration::from_secs(60), || async {
        let (status, body) = get_text(&format!("{}{MATCH_DEMO}", ringtail.url())).await;
        (status == 200 && body.contains("demo_latency_seconds_count")).then_some(body)
    })
    .await;
    let theirs = eventually("Prometheus to federate the exporter's series", Duration::from_secs(60), || async {
        let (status, body) = get_text(&format!("{}{MATCH_DEMO}", direct.url())).await;
        (status == 200 && body.contains("demo_latency_seconds_count")).then_some(body)
    })
    .await;
    assert_eq!(shape(&ours), shape(&theirs), "Ringtail:\n{ours}\nPrometheus:\n{theirs}");
    assert!(ours.contains("region=\"eu\""), "{ours}");

    // The federating Prometheus holds exactly Ringtail's series (plus region), with Ringtail's
    // samples: each value it got at a timestamp is the one Ringtail stored at that timestamp.
    let federated =
        eventually("the federating Prometheus to scrape Ringtail 3 times", Duration::from_secs(90), || async {
            let samples = federating.raw_samples("{job=\"demo\"}").await;
            let up = samples.iter().find(|(l, _)| l.get("__name__").map(String::as_str) == Some("up"))?;
            (up.1.len() >= 3).then_some(samples)
        })
        .await;
    let exported = ringtail.export("{job=\"demo\"}").await;
    let held: BTreeMap<BTreeMap<String, String>, BTreeMap<i64, f64>> = exported
        .iter()
        .map(|s| {
            let mut labels = s.metric.clone();
            labels.insert("region".into(), "eu".into());
            (labels, s.timestamps.iter().copied().zip(s.floats()).collect())
        })
        .collect();
    let federated_series: BTreeSet<&BTreeMap<String, String>> = federated.iter().map(|(l, _)| l).collect();
    let held_series: BTreeSet<&BTreeMap<String, String>> = held.keys().collect();
    assert_eq!(federated_series, held_series, "federated series differ from Ringtail's");
    for (labels, samples) in &federated {
        let stored = &held[labels];
        for (ts, value) in samples {
            assert_eq!(stored.get(ts), Some(value), "{labels:?} at {ts}");
        }
    }
}
