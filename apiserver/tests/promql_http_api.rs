//! The Prometheus query API of the real `ringtail` binary: response shapes of every endpoint,
//! GET and form POST, RFC 3339 and Unix times, the error mapping (400 bad_data, 422 execution and
//! the sample limit, as Prometheus), hostile input (unbalanced parentheses, 10 000-deep nesting, 3000-term operator chains, huge
//! ranges, regex bombs) answered with a clear 400 while the server stays up, and `ringtail query`.

mod promql_support;

use promql_support::*;
use std::process::Command;
use tsdb::now_ms;

/// An endpoint, its parameters and a fragment of the expected error message.
type BadRequest = (&'static str, Vec<(&'static str, String)>, &'static str);

/// Writes two counters and a gauge, 10 minutes at 15 s, ending one minute ago.
async fn load(url: &str) -> i64 {
    let end = now_ms() / 1000 * 1000 - 60_000;
    let start = end - 600_000;
    let mut series = Vec::new();
    for (instance, slope) in [("a", 1.0), ("b", 3.0)] {
        let samples = (0..=40).map(|k| (start + k * 15_000, 1000.0 + slope * k as f64 * 15.0)).collect();
        series.push((
            vec![("__name__".into(), "api_requests_total".into()), ("instance".into(), instance.into())],
            samples,
        ));
    }
    let samples = (0..=40).map(|k| (start + k * 15_000, 20.0 + (k % 5) as f64)).collect();
    series.push((vec![("__name__".into(), "api_temperature".into()), ("room".into(), "x".into())], samples));
    remote_write(url, &series).await;
    end
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_in_prometheus_shape() {
    let server = start_ringtail(&[]).await;
    let end = load(&server.url).await;
    let end_s = (end / 1000).to_string();

    let (status, body) = get_json(
        &server.url,
        "/api/v1/query",
        &[("query", "sum(rate(api_requests_total[5m]))".into()), ("time", end_s.clone())],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"]["resultType"], "vector");
    let value = &body["data"]["result"][0]["value"];
    assert_eq!(value[0].as_f64(), Some(end as f64 / 1000.0));
    let rate: f64 = value[1].as_str().expect("values are strings").parse().expect("number");
    assert!((rate - 4.0).abs() < 1e-9, "sum of rates 1/s + 3/s, got {rate}");

    let (status, body) =
        get_json(&server.url, "/api/v1/query", &[("query", "1 + 1".into()), ("time", end_s.clone())]).await;
    assert_eq!((status, body["data"]["resultType"].as_str()), (200, Some("scalar")), "{body}");
    assert_eq!(body["data"]["result"][1], "2");

    // Form-encoded POST with RFC 3339 times.
    let rfc = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("time").to_rfc3339();
    let response = client()
        .post(format!("{}/api/v1/query_range", server.url))
        .form(&[
            ("query", "api_temperature".to_string()),
            ("start", rfc(end - 120_000)),
            ("end", rfc(end)),
            ("step", "60s".to_string()),
        ])
        .send()
        .await
        .expect("POST query_range");
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["data"]["resultType"], "matrix");
    let series = &body["data"]["result"][0];
    assert_eq!(series["metric"]["__name__"], "api_temperature");
    assert_eq!(series["values"].as_array().map(Vec::len), Some(3), "{body}");

    // Exemplars: none stored, so a valid request gets an empty list and a bad query a 400;
    // no Alertmanager is known (no alert is sent).
    let (status, body) =
        get_json(&server.url, "/api/v1/query_exemplars", &[("query", "api_temperature".into()), ("start", "0".into())])
            .await;
    assert_eq!((status, &body["data"]), (200, &serde_json::json!([])), "{body}");
    let (status, body) = get_json(&server.url, "/api/v1/query_exemplars", &[("query", "sum(".into())]).await;
    assert_eq!((status, body["errorType"].as_str()), (400, Some("bad_data")), "{body}");
    let (status, body) = get_json(&server.url, "/api/v1/alertmanagers", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], serde_json::json!({"activeAlertmanagers": [], "droppedAlertmanagers": []}));

    // A POST with its parameters in the URL (as `curl -X POST '…?query=…'` sends), and one with
    // some in the URL and some in the body: Prometheus reads both (Go's ParseForm).
    let response = client()
        .post(format!("{}/api/v1/query", server.url))
        .query(&[("query", "api_temperature"), ("time", end_s.as_str())])
        .send()
        .await
        .expect("POST query with URL parameters");
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["data"]["result"][0]["metric"]["__name__"], "api_temperature", "{body}");
    let response = client()
        .post(format!("{}/api/v1/query", server.url))
        .query(&[("time", end_s.as_str())])
        .form(&[("query", "count(api_temperature)")])
        .send()
        .await
        .expect("POST query with URL and body parameters");
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["data"]["result"][0]["value"][0].as_f64(), Some(end as f64 / 1000.0), "{body}");

    let (status, body) =
        get_json(&server.url, "/api/v1/series", &[("match[]", "api_requests_total".into()), ("start", "0".into())])
            .await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> =
        body["data"].as_array().expect("list").iter().filter_map(|s| s["instance"].as_str()).collect();
    assert_eq!(names, vec!["a", "b"]);

    let (status, body) = get_json(&server.url, "/api/v1/labels", &[]).await;
    assert_eq!(status, 200);
    let labels: Vec<&str> = body["data"].as_array().expect("list").iter().filter_map(|v| v.as_str()).collect();
    for want in ["__name__", "instance", "room"] {
        assert!(labels.contains(&want), "{want} missing from {labels:?}");
    }

    let (status, body) = get_json(&server.url, "/api/v1/label/__name__/values", &[]).await;
    assert_eq!(status, 200);
    let values: Vec<&str> = body["data"].as_array().expect("list").iter().filter_map(|v| v.as_str()).collect();
    assert!(values.contains(&"api_requests_total") && values.contains(&"api_temperature"), "{values:?}");

    let (status, body) = get_json(&server.url, "/api/v1/status/buildinfo", &[]).await;
    assert_eq!(status, 200);
    assert!(body["data"]["version"].is_string());
    let (status, body) = get_json(&server.url, "/api/v1/metadata", &[]).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("success")));

    // The CLI against the same server.
    let output = Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .args(["query", "sum by (instance) (api_requests_total)", "--server", &server.url, "--time", &end_s])
        .output()
        .expect("ringtail query");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("{instance=\"a\"} => 1600 @"), "{stdout}");
    assert!(stdout.contains("{instance=\"b\"} => 2800 @"), "{stdout}");
    let start_s = ((end - 60_000) / 1000).to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .args(["query", "api_temperature", "--server", &server.url, "--range", &start_s, &end_s, "30s"])
        .output()
        .expect("ringtail query --range");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("api_temperature{room=\"x\"}\n"), "{stdout}");
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    let output = Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .args(["query", "sum(", "--server", &server.url])
        .output()
        .expect("ringtail query with bad input");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad_data"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_the_server_stays_up() {
    let server = start_ringtail(&["--query.max-samples", "50"]).await;
    let end = load(&server.url).await;
    let end_s = (end / 1000).to_string();
    let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
    let cases: Vec<(String, u16, &str, &str)> = vec![
        ("sum(rate(api_requests_total[5m])".into(), 400, "bad_data", "parse error"),
        ("sum(rate(api_requests_total[5m])))".into(), 400, "bad_data", "parse error"),
        (deep, 400, "bad_data", "nested too deeply"),
        ("-".repeat(10_000) + "1", 400, "bad_data", "nested too deeply"),
        // A flat chain: 3000 terms of `+` (6 KB) used to abort the process in evaluation.
        (vec!["1"; 3000].join("+"), 400, "bad_data", "nested too deeply"),
        (vec!["api_temperature"; 3000].join(" or "), 400, "bad_data", "nested too deeply"),
        ("nonexistent_function(api_temperature)".into(), 400, "bad_data", "unknown function with name"),
        ("rate(api_temperature)".into(), 400, "bad_data", "expected type range vector"),
        ("api_temperature{room=~\"((a{1000}){1000}){1000}\"}".into(), 400, "bad_data", "parse error"),
        ("api_temperature{room=~\"(\"}".into(), 400, "bad_data", "parse error"),
        (
            "label_replace(api_requests_total, \"instance\", \"same\", \"\", \"\")".into(),
            422,
            "execution",
            "same labelset",
        ),
        ("api_requests_total[10m]".into(), 422, "execution", "too many samples"),
        ("count_over_time(api_temperature[100000000y])".into(), 200, "", ""),
    ];
    for (query, status, error_type, text) in &cases {
        let (got_status, body) =
            get_json(&server.url, "/api/v1/query", &[("query", query.clone()), ("time", end_s.clone())]).await;
        let shown: String = query.chars().take(60).collect();
        assert_eq!(got_status, *status, "{shown}: {body}");
        if *status != 200 {
            assert_eq!(body["status"], "error", "{shown}");
            assert_eq!(body["errorType"], *error_type, "{shown}: {body}");
            let message = body["error"].as_str().unwrap_or_default();
            assert!(message.contains(text), "{shown}: {message:?} lacks {text:?}");
        }
    }
    let bad_params: Vec<BadRequest> = vec![
        ("/api/v1/query", vec![("query", "1".into()), ("time", "yesterday".into())], "invalid parameter \"time\""),
        ("/api/v1/query", vec![("query", "1".into()), ("timeout", "soon".into())], "invalid parameter \"timeout\""),
        (
            "/api/v1/query_range",
            vec![("query", "1".into()), ("start", "100".into()), ("end", "50".into()), ("step", "1".into())],
            "end timestamp must not be before start time",
        ),
        (
            "/api/v1/query_range",
            vec![("query", "1".into()), ("start", "0".into()), ("end", "1000000".into()), ("step", "1".into())],
            "exceeded maximum resolution of 11,000 points",
        ),
        (
            "/api/v1/query_range",
            vec![("query", "1".into()), ("start", "0".into()), ("end", "10".into()), ("step", "0".into())],
            "zero or negative query resolution step",
        ),
        ("/api/v1/series", vec![], "no match[] parameter provided"),
        ("/api/v1/series", vec![("match[]", "rate(x[5m])".into())], "is not a series selector"),
    ];
    for (path, params, text) in bad_params {
        let (status, body) = get_json(&server.url, path, &params).await;
        assert_eq!(status, 400, "{path} {params:?}: {body}");
        assert_eq!(body["errorType"], "bad_data");
        assert!(body["error"].as_str().unwrap_or_default().contains(text), "{path}: {body}");
    }
    let (status, _) = get_json(&server.url, "/api/v1/query", &[("query", "vector(1)".into())]).await;
    assert_eq!(status, 200, "server still answers after hostile input");
}
