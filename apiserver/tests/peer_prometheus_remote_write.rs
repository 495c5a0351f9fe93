//! Real peer: Prometheus 2.42 scrapes a test target and remote-writes to Ringtail. Every sample
//! Prometheus holds (read through its own HTTP API) must be in Ringtail (read through the export
//! endpoint) with the identical timestamp and value. Skipped (saying so) when Prometheus is not
//! installed, unless `RINGTAIL_REQUIRE_PEERS=1`.

mod ingest_common;

use ingest_common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_prometheus_sample_arrives_identical() {
    if !peer::peers_installed("every_prometheus_sample_arrives_identical", &[peer::PROMETHEUS]) {
        return;
    }
    let target = TestTarget::start().await;
    let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &[]).await;
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: demo\n    static_configs: [{{targets: ['{}']}}]\n\
         remote_write:\n  - url: {}/api/v1/write\n    queue_config: {{batch_send_deadline: 1s, max_samples_per_send: 100}}\n",
        target.addr,
        ringtail.url()
    );
    let prometheus = Prometheus::start(&config).await;

    // Let Prometheus scrape a few times, then compare what it holds with what Ringtail received.
    let expected = eventually("8 scrapes in Prometheus", Duration::from_secs(90), || async {
        let samples = prometheus.raw_samples("{job=\"demo\"}").await;
        let up = samples.iter().find(|(l, _)| l.get("__name__").map(String::as_str) == Some("up"))?;
        (up.1.len() >= 8).then_some(samples)
    })
    .await;
    assert!(expected.len() >= 12, "target series plus report series: {}", expected.len());
    wait_until_ringtail_holds(&ringtail, "{job=\"demo\"}", &expected).await;
    let escaped = ringtail.export("demo_temperature_celsius").await;
    assert_eq!(escaped[0].metric.get("room").map(String::as_str), Some("lab \"A\""));
}
