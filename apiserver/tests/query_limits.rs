//! Query limits through the real `ringtail` binary: the memory cases that once took gigabytes
//! (`count_values` over a long range at a fine step, a `[1d:1ms]` subquery, `label_replace`
//! fan-out, every series at a 1 ms step) answered 422 like Prometheus's sample limit; a range of
//! more than 11 000 points per series answered 400; clients that disconnect mid-query cancel
//! their evaluations, so the server keeps answering `/-/ready` and later queries get their slot.

mod promql_support;

use promql_support::*;
use std::time::Duration;
use tsdb::now_ms;

/// Series written by [`load`].
const SERIES: usize = 40;

/// Writes `SERIES` gauges `limits_gauge{i="…"}`, a sample a second for 10 minutes ending a
/// minute ago, every value distinct; returns the last sample's time.
async fn load(url: &str) -> i64 {
    let end = now_ms() / 1000 * 1000 - 60_000;
    let start = end - 599_000;
    let series: Vec<SeriesData> = (0..SERIES)
        .map(|i| {
            let labels = vec![("__name__".into(), "limits_gauge".into()), ("i".into(), i.to_string())];
            let samples = (0..600).map(|k| (start + k * 1000, i as f64 * 1e6 + k as f64)).collect();
            (labels, samples)
        })
        .collect();
    remote_write(url, &series).await;
    end
}

/// What a refused query shows: a name, the endpoint, its parameters, the status, the
/// `errorType` and part of the message.
type Refusal = (&'static str, &'static str, Vec<(&'static str, String)>, u16, &'static str, &'static str);

fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limits_answer_422_and_resolution_400() {
    let server = start_ringtail(&["--query.max-samples", "100000"]).await;
    let end = load(&server.url).await;
    let start = end - 599_000;
    let fan_out = (0..8).fold("limits_gauge".to_string(), |inner, _| {
        format!(r#"label_replace({inner}, "i", "$1$1$1$1$1$1$1$1$1$1", "i", "(.*)")"#)
    });
    let cases: Vec<Refusal> = vec![
        (
            "count_values over 10 m at 1 s",
            "/api/v1/query_range",
            vec![
                ("query", r#"count_values("v", limits_gauge)"#.into()),
                ("start", seconds(start)),
                ("end", seconds(end)),
                ("step", "1s".into()),
            ],
            422,
            "execution",
            "query processing would load too many samples into memory in query execution",
        ),
        (
            "a [1d:1ms] subquery",
            "/api/v1/query",
            vec![("query", "max_over_time(limits_gauge[1d:1ms])".into()), ("time", seconds(end))],
            422,
            "execution",
            "subquery of 86400000 steps",
        ),
        (
            "count_values gathered by a subquery",
            "/api/v1/query",
            vec![
                ("query", r#"count(count_over_time(count_values("v", limits_gauge)[10m:1s]))"#.into()),
                ("time", seconds(end)),
            ],
            422,
            "execution",
            "too many samples",
        ),
        (
            "label_replace fan-out",
            "/api/v1/query",
            vec![("query", fan_out), ("time", seconds(end))],
            422,
            "execution",
            "too many samples",
        ),
        (
            "every series at a 1 ms step",
            "/api/v1/query_range",
            vec![
                ("query", "limits_gauge".into()),
                ("start", seconds(end - 10_000)),
                ("end", seconds(end)),
                ("step", "0.001".into()),
            ],
            422,
            "execution",
            "too many samples",
        ),
        (
            "more than 11 000 points per series",
            "/api/v1/query_range",
            vec![
                ("query", "limits_gauge".into()),
                ("start", seconds(start)),
                ("end", seconds(end)),
                ("step", "0.001".into()),
            ],
            400,
            "bad_data",
            "exceeded maximum resolution of 11,000 points per timeseries",
        ),
    ];
    for (what, path, params, status, error_type, text) in cases {
        let (got, body) = get_json(&server.url, path, &params).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["errorType"], error_type, "{what}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(text), "{what}: {message:?} lacks {text:?}");
    }
    // Within the limit the same data answers.
    let (got, body) = get_json(
        &server.url,
        "/api/v1/query_range",
        &[
            ("query", r#"count(count_values("v", limits_gauge))"#.into()),
            ("start", seconds(start)),
            ("end", seconds(end)),
            ("step", "1s".into()),
        ],
    )
    .await;
    assert_eq!(got, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_cancels_its_query() {
    let server = start_ringtail(&[]).await;
    let end = load(&server.url).await;
    // 10 800 steps of a 50 000-step subquery: minutes of work, within every memory limit.
    let slow = vec![
        ("query", "max_over_time(vector(1)[50s:1ms])".to_string()),
        ("start", seconds(end - 3 * 3_600_000)),
        ("end", seconds(end)),
        ("step", "1s".into()),
    ];
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().expect("client");
    // More abandoned queries than the server has evaluation slots (two per core).
    let abandoned = 2 * std::thread::available_parallelism().map_or(1, |n| n.get()) + 2;
    for _ in 0..abandoned {
        let sent = impatient.get(format!("{}/api/v1/query_range", server.url)).query(&slow).send().await;
        assert!(sent.is_err_and(|e| e.is_timeout()), "the slow query is still running when the client leaves");
    }
    let ready = client().get(format!("{}/-/ready", server.url)).send().await.expect("ready answers");
    assert!(ready.status().is_success(), "{}", ready.status());
    // Had the abandoned queries kept their slots, this one would time out in the queue.
    let (status, body) = get_json(
        &server.url,
        "/api/v1/query",
        &[("query", "count(limits_gauge)".into()), ("time", seconds(end)), ("timeout", "60s".into())],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], SERIES.to_string());
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
