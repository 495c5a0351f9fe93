//! The ingestion limits (`--limits.*`) against the real `ringtail` binary: for each limit a
//! remote-write request (1.0 and 2.0) with one series over it is answered 400 naming the limit,
//! its flag and the series, every other series of the request is stored (read back through the
//! export API), and `/metrics` counts the refusal by reason.

mod ingest_common;

use ingest::proto::{v1, v2};
use ingest::remote_write::{encode_body, CONTENT_TYPE_V2};
use ingest_common::*;
use tsdb::now_ms;

const CT_V1: &str = "application/x-protobuf";

fn v1_request(series: Vec<v1::TimeSeries>) -> Vec<u8> {
    encode_body(&v1::WriteRequest { timeseries: series, metadata: vec![] })
}

/// A 2.0 request of these label sets (names sorted), one sample each at `ts`.
fn v2_request(label_sets: &[Vec<(String, String)>], ts: i64) -> Vec<u8> {
    let mut symbols: Vec<String> = vec![String::new()];
    let mut intern = |s: &str| -> u32 {
        if let Some(i) = symbols.iter().position(|x| x == s) {
            return i as u32;
        }
        symbols.push(s.to_string());
        (symbols.len() - 1) as u32
    };
    let timeseries = label_sets
        .iter()
        .map(|labels| v2::TimeSeries {
            labels_refs: labels.iter().flat_map(|(n, v)| [intern(n), intern(v)]).collect(),
            samples: vec![v2::Sample { value: 1.0, timestamp: ts }],
            ..Default::default()
        })
        .collect();
    encode_body(&v2::Request { symbols, timeseries })
}

async fn metrics(ringtail: &Ringtail) -> String {
    client().get(format!("{}/metrics", ringtail.url())).send().await.unwrap().text().await.unwrap()
}

fn counter(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start).map(|v| v.trim().parse::<f64>().unwrap_or(0.0) as u64))
        .unwrap_or(0)
}

async fn names_stored(ringtail: &Ringtail, job: &str) -> Vec<String> {
    let mut names: Vec<String> = ringtail
        .export(&format!("{{job=\"{job}\"}}"))
        .await
        .iter()
        .filter_map(|s| s.metric.get("__name__").cloned())
        .collect();
    names.sort();
    names
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_label_limit_refuses_its_series_alone_with_400_and_counts_it() {
    let ringtail = Ringtail::start(
        Some("scrape_configs: []\n"),
        &[
            "--limits.max-labels-per-series",
            "4",
            "--limits.max-label-name-length",
            "16",
            "--limits.max-label-value-length",
            "32",
            "--limits.max-series-per-request",
            "5",
        ],
    )
    .await;
    let now = now_ms();
    let long_value = "v".repeat(33);
    let long_name = "n".repeat(17);
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        ("max_labels_per_series", labels(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")])),
        ("max_label_name_length", labels(&[(long_name.as_str(), "1")])),
        ("max_label_value_length", labels(&[("pod", long_value.as_str())])),
    ];
    for (protocol, content_type) in [("v1", CT_V1), ("v2", CONTENT_TYPE_V2)] {
        for (limit, extra) in &cases {
            let job = format!("{protocol}-{limit}");
            let with = |name: &str, extra: &[(String, String)]| {
                let mut set = vec![("__name__".to_string(), name.to_string()), ("job".to_string(), job.clone())];
                set.extend(extra.iter().cloned());
                set.sort();
                set
            };
            let sets = vec![with("ok_a", &[]), with("bad", extra), with("ok_b", &[])];
            let body = match protocol {
                "v1" => v1_request(
                    sets.iter()
                        .map(|set| {
                            let pairs: Vec<(&str, &str)> = set.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                            series(&pairs, &[(now, 1.0)])
                        })
                        .collect(),
                ),
                _ => v2_request(&sets, now),
            };
            let response = post_write(&ringtail.url(), content_type, body).await;
            assert_eq!(response.status(), 400, "{job}");
            let text = response.text().await.unwrap();
            let flag = format!("(--limits.{})", limit.replace('_', "-"));
            assert!(text.contains(limit) && text.contains(&flag), "{job}: {text}");
            assert!(text.contains("series 1 {") && text.contains("__name__=\"bad\""), "{job}: {text}");
            assert!(text.contains("2 samples written"), "{job}: {text}");
            assert_eq!(names_stored(&ringtail, &job).await, vec!["ok_a", "ok_b"], "{job}: the rest is stored");
        }
    }
    // Series past the per-request limit: the first five are stored, the rest named by position.
    let many: Vec<v1::TimeSeries> =
        (0..8).map(|i| series(&[("__name__", &format!("m{i}")), ("job", "per-request")], &[(now, 1.0)])).collect();
    let response = post_write(&ringtail.url(), CT_V1, v1_request(many)).await;
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.contains("3 series over max_series_per_request=5"), "{text}");
    assert_eq!(names_stored(&ringtail, "per-request").await, vec!["m0", "m1", "m2", "m3", "m4"]);

    let text = metrics(&ringtail).await;
    for (limit, _) in &cases {
        let line = format!("ringtail_series_refused_total{{source=\"remote_write\",reason=\"{limit}\"}}");
        assert_eq!(counter(&text, &line), 2, "{line} in\n{text}");
    }
    let line = "ringtail_series_refused_total{source=\"remote_write\",reason=\"max_series_per_request\"}";
    assert_eq!(counter(&text, line), 3, "{text}");
    let rejected = "ringtail_samples_rejected_total{source=\"remote_write\",reason=\"max_label_value_length\"}";
    assert_eq!(counter(&text, rejected), 2, "{text}");
    assert!(ringtail.is_healthy().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_live_series_cap_new_series_are_refused_and_known_ones_still_written() {
    let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &["--limits.max-active-series", "3"]).await;
    let now = now_ms();
    let request = |names: &[&str], ts: i64| {
        v1_request(names.iter().map(|n| series(&[("__name__", n), ("job", "cap")], &[(ts, 1.0)])).collect())
    };
    assert_eq!(post_write(&ringtail.url(), CT_V1, request(&["a", "b"], now)).await.status(), 204);
    let response = post_write(&ringtail.url(), CT_V1, request(&["a", "c", "d", "b"], now + 1)).await;
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.contains("1 series over max_active_series=3 (--limits.max-active-series)"), "{text}");
    assert!(text.contains("series 2 {__name__=\"d\", job=\"cap\"}"), "{text}");
    assert_eq!(names_stored(&ringtail, "cap").await, vec!["a", "b", "c"]);
    let stored_b = ringtail.export("b").await;
    assert_eq!(stored_b[0].timestamps, vec![now, now + 1], "the known series kept getting samples");
    let text = metrics(&ringtail).await;
    let line = "ringtail_series_refused_total{source=\"remote_write\",reason=\"max_active_series\"}";
    assert_eq!(counter(&text, line), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_series_past_the_rate_are_refused_and_counted() {
    let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &["--limits.max-new-series-per-minute", "2"]).await;
    let now = now_ms();
    let body =
        v1_request((0..4).map(|i| series(&[("__name__", &format!("r{i}")), ("job", "rate")], &[(now, 1.0)])).collect());
    let response = post_write(&ringtail.url(), CT_V1, body).await;
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.contains("2 series over max_new_series_per_minute=2"), "{text}");
    assert_eq!(names_stored(&ringtail, "rate").await, vec!["r0", "r1"]);
    let text = metrics(&ringtail).await;
    let line = "ringtail_series_refused_total{source=\"remote_write\",reason=\"max_new_series_per_minute\"}";
    assert_eq!(counter(&text, line), 2, "{text}");
}
