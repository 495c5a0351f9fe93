//! Real peer: Ringtail and Prometheus 2.42 scrape the same exporter endpoint side by side. Both
//! must see the same series set, and when the target stops both must report `up` 0 and mark the
//! target's series stale. Skipped (saying so) when Prometheus is not installed, unless
//! `RINGTAIL_REQUIRE_PEERS=1`.

mod ingest_common;

use ingest_common::*;
use std::collections::BTreeSet;
use std::time::Duration;

type LabelSet = std::collections::BTreeMap<String, String>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_series_up_and_staleness_as_prometheus() {
    if !peer::peers_installed("same_series_up_and_staleness_as_prometheus", &[peer::PROMETHEUS]) {
        return;
    }
    let mut target = TestTarget::start().await;
    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: demo\n    static_configs: [{{targets: ['{}'], labels: {{team: core}}}}]\n",
        target.addr
    );
    let ringtail = Ringtail::start(Some(&scrape), &[]).await;
    let prometheus = Prometheus::start(&scrape).await;

    let prometheus_series = eventually("Prometheus to scrape the target 3 times", Duration::from_secs(90), || async {
        let samples = prometheus.raw_samples("{job=\"demo\"}").await;
        let up = samples.iter().find(|(l, _)| l.get("__name__").map(String::as_str) == Some("up"))?;
        (up.1.len() >= 3).then(|| samples.into_iter().map(|(l, _)| l).collect::<BTreeSet<LabelSet>>())
    })
    .await;
    let ringtail_series = eventually("Ringtail to scrape the target 3 times", Duration::from_secs(90), || async {
        let exported = ringtail.export("{job=\"demo\"}").await;
        let up = exported.iter().find(|s| s.metric.get("__name__").map(String::as_str) == Some("up"))?;
        (up.timestamps.len() >= 3).then(|| exported.into_iter().map(|s| s.metric).collect::<BTreeSet<LabelSet>>())
    })
    .await;
    assert_eq!(ringtail_series, prometheus_series, "series sets differ");
    assert!(ringtail_series.iter().any(|l| l.get("team").map(String::as_str) == Some("core")));

    target.stop().await;

    // Prometheus: up drops to 0 and the target's series are stale (gone from instant queries).
    eventually("Prometheus to see the target down", Duration::from_secs(60), || async {
        let up = prometheus.instant("up{job=\"demo\"}").await;
        let gone = prometheus.instant("demo_requests_total").await.is_empty();
        (up.len() == 1 && up[0].1 == 0.0 && gone).then_some(())
    })
    .await;
    // Ringtail: the newest `up` is 0 and every target series ends with a staleness marker.
    eventually("Ringtail to see the target down", Duration::from_secs(60), || async {
        let exported = ringtail.export("{job=\"demo\"}").await;
        let up = exported.iter().find(|s| s.metric.get("__name__").map(String::as_str) == Some("up"))?;
        let up_is_zero = up.floats().last() == Some(&0.0);
        let all_stale = exported
            .iter()
            .filter(|s| s.metric.get("__name__").is_some_and(|n| n.starts_with("demo_")))
            .all(|s| s.floats().last().is_some_and(|v| tsdb::is_stale_nan(*v)));
        (up_is_zero && all_stale).then_some(())
    })
    .await;
}
