//! The scraper inside the real `ringtail` binary: the embedded default scrapes Ringtail's own
//! `/metrics`; a page with broken escaping fails its scrape (`up` 0, nothing of it stored) while
//! the server stays up and earlier samples stay intact; relabeling and report series.

mod ingest_common;

use ingest_common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_scrapes_own_metrics() {
    let ringtail = Ringtail::start(None, &[]).await;
    let up = eventually("the self-scrape's up series", Duration::from_secs(90), || async {
        let exported = ringtail.export("up{job=\"ringtail\"}").await;
        exported.into_iter().next()
    })
    .await;
    assert_eq!(up.metric.get("instance").map(String::as_str), Some(ringtail.addr.to_string().as_str()));
    assert_eq!(up.floats()[0], 1.0, "log:\n{}", ringtail.log());
    let own = ringtail.export("ringtail_tsdb_series{job=\"ringtail\"}").await;
    assert_eq!(own.len(), 1, "Ringtail's own metrics are stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_page_fails_the_scrape_and_keeps_earlier_data() {
    let broken = Arc::new(AtomicBool::new(false));
    let flag = broken.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let broken = flag.load(Ordering::Relaxed);
            async move {
                if broken {
                    "good_metric 2\nbad_metric{path=\"C:\\q\"} 1\n".to_string()
                } else {
                    "good_metric 1\ngo_dropped 5\n".to_string()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let config = format!(
        "scrape_configs:\n- job_name: page\n  scrape_interval: 1s\n  static_configs: [{{targets: ['{addr}'], labels: {{env: test}}}}]\n  \
         metric_relabel_configs:\n  - source_labels: [__name__]\n    regex: 'go_.*'\n    action: drop\n"
    );
    let ringtail = Ringtail::start(Some(&config), &[]).await;
    eventually("two good scrapes", Duration::from_secs(60), || async {
        let good = ringtail.export("good_metric").await;
        (good.first()?.timestamps.len() >= 2).then_some(())
    })
    .await;
    let report = ringtail.export("scrape_samples_post_metric_relabeling{job=\"page\"}").await;
    assert_eq!(report[0].floats().last(), Some(&1.0), "go_dropped is dropped by metric relabeling");
    assert!(ringtail.export("go_dropped").await.is_empty());
    assert_eq!(ringtail.export("scrape_samples_scraped").await[0].floats().last(), Some(&2.0));

    broken.store(true, Ordering::Relaxed);
    eventually("up to drop to 0 on the broken page", Duration::from_secs(60), || async {
        let up = ringtail.export("up{job=\"page\"}").await;
        (up.first()?.floats().last() == Some(&0.0)).then_some(())
    })
    .await;
    assert!(ringtail.is_healthy().await);
    assert!(ringtail.export("bad_metric").await.is_empty(), "nothing of a page that fails to parse is stored");
    let good = ringtail.export("good_metric{env=\"test\"}").await;
    let values = good[0].floats();
    assert!(values.iter().filter(|v| **v == 1.0).count() >= 2, "earlier samples intact: {values:?}");
    assert!(tsdb::is_stale_nan(*values.last().unwrap()), "a failed scrape marks the series stale");
    assert!(!values.contains(&2.0), "the good line of the broken page is not stored");
    server.abort();
}
