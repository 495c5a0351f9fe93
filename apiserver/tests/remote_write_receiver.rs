//! The remote-write receiver end to end against the real `ringtail` binary: the cases of the
//! prometheus/compliance receiver suite (415s, corrupt bodies, exact Written headers, NaN/±Inf and
//! staleness values, missing `__name__`), bad input (truncated snappy, random bytes, invalid
//! labels, a 1 GiB body) with the server staying up and earlier data intact, out-of-order and
//! future samples, the bearer token, and the export endpoint reading it all back.

mod ingest_common;

use ingest::proto::{v1, v2};
use ingest::remote_write::{encode_body, CONTENT_TYPE_V2};
use ingest_common::*;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tsdb::now_ms;

const CT_V1: &str = "application/x-protobuf";

fn v1_request(series: Vec<v1::TimeSeries>) -> Vec<u8> {
    encode_body(&v1::WriteRequest { timeseries: series, metadata: vec![] })
}

fn written(response: &reqwest::Response, kind: &str) -> Option<u64> {
    response
        .headers()
        .get(format!("X-Prometheus-Remote-Write-{kind}-Written"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_values_round_trip_bit_exact_through_export() {
    let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &[]).await;
    let now = now_ms();
    let values = [
        ("one", 1.0),
        ("nan", f64::NAN),
        ("inf", f64::INFINITY),
        ("neginf", f64::NEG_INFINITY),
        ("stale", tsdb::stale_nan()),
    ];
    for (case, value) in values {
        let body = v1_request(vec![
            series(&[("__name__", "up"), ("case", case), ("job", "test\njob\n")], &[(now, value)]),
            series(
                &[("__name__", "resource cpu.usage"), ("case", case), ("instance name", "localhost:9090")],
                &[(now, value)],
            ),
        ]);
        let response = post_write(&ringtail.url(), CT_V1, body).await;
        assert_eq!(response.status(), 204, "{case}: {:?}", response.text().await);
        assert_eq!(written(&response, "Samples"), Some(2));
    }
    for (case, value) in values {
        let exported = ringtail.export(&format!("{{__name__=~\"up|resource cpu.usage\",case=\"{case}\"}}")).await;
        assert_eq!(exported.len(), 2, "{case}");
        for line in &exported {
            assert_eq!(line.timestamps, vec![now]);
            assert_eq!(line.floats()[0].to_bits(), value.to_bits(), "{case} {:?}", line.metric);
        }
    }
    let up = ringtail.export("{__name__=\"up\",case=\"one\"}").await;
    assert_eq!(up[0].metric.get("job").map(String::as_str), Some("test\njob\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_requests_answer_exact_written_headers() {
    let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &[]).await;
    let now = now_ms();
    let request = v2_request_of(&[
        (&[("__name__", "up"), ("job", "j"), ("instance", "a")], &[(now, 1.0)]),
        (&[("__name__", "up"), ("job", "j"), ("instance", "b")], &[(now, 0.0)]),
        (&[("__name__", "up"), ("job", "j"), ("instance", "c")], &[(now - 1000, 1.0), (now, f64::NAN)]),
    ]);
    let response = post_write(&ringtail.url(), CONTENT_TYPE_V2, encode_body(&request)).await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        (written(&response, "Samples"), written(&response, "Histograms"), written(&response, "Exemplars")),
        (Some(4), Some(0), Some(0))
    );
    let exported = ringtail.export("up{job=\"j\"}").await;
    assert_eq!(exported.len(), 3);
    assert_eq!(exported.iter().map(|s| s.timestamps.len()).sum::<usize>(), 4);

    // Per-series metadata is served by `/api/v1/metadata` under its family's name.
    let mut with_metadata = v2_request_of(&[
        (&[("__name__", "queue_seconds_bucket"), ("le", "+Inf")], &[(now, 2.0)]),
        (&[("__name__", "queue_seconds_count")], &[(now, 2.0)]),
    ]);
    with_metadata.symbols.extend(["Time in the queue.".to_string(), "seconds".to_string()]);
    let unit_ref = (with_metadata.symbols.len() - 1) as u32;
    for series in &mut with_metadata.timeseries {
        series.metadata = Some(v2::Metadata { r#type: 3, help_ref: unit_ref - 1, unit_ref });
    }
    let response = post_write(&ringtail.url(), CONTENT_TYPE_V2, encode_body(&with_metadata)).await;
    assert_eq!(response.status(), 204);
    let metadata: serde_json::Value = client()
        .get(format!("{}/api/v1/metadata?metric=queue_seconds", ringtail.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["data"],
        serde_json::json!({"queue_seconds": [{"type": "histogram", "help": "Time in the queue.", "unit": "seconds"}]})
    );

    // Histogram-only and exemplar-carrying series are accepted; nothing of them is written.
    let mut with_extras = v2_request_of(&[(&[("__name__", "h"), ("job", "j")], &[])]);
    with_extras.timeseries[0].histograms.push(vec![]);
    let response = post_write(&ringtail.url(), CONTENT_TYPE_V2, encode_body(&with_extras)).await;
    assert_eq!(response.status(), 200, "skipped histograms are reported in the body");
    assert_eq!(written(&response, "Samples"), Some(0));
    assert!(response.text().await.unwrap().contains("1 native histogram"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_content_types_and_encodings_get_415() {
    let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &[]).await;
    let body = v1_request(vec![series(&[("__name__", "up")], &[(now_ms(), 1.0)])]);
    for content_type in ["application/json", "image/png", "application/x-protobuf;proto=io.prometheus.write.v3.Request"]
    {
        let response = post_write(&ringtail.url(), content_type, body.clone()).await;
        assert_eq!(response.status(), 415, "{content_type}");
    }
    for encoding in ["gzip", "deflate"] {
        let response = client()
            .post(format!("{}/api/v1/write", ringtail.url()))
            .header("Content-Type", CT_V1)
            .header("Content-Encoding", encoding)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{encoding}");
    }
    assert!(ringtail.export("up").await.is_empty(), "nothing of a refused request is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_400_store_nothing_and_keep_earlier_data() {
    let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &[]).await;
    let now = now_ms();
    let accepted =
        v1_request(vec![series(&[("__name__", "kept"), ("job", "j")], &[(now - 2000, 1.0), (now - 1000, 2.0)])]);
    assert_eq!(post_write(&ringtail.url(), CT_V1, accepted.clone()).await.status(), 204);

    let mut corrupt_first_byte = accepted.clone();
    corrupt_first_byte[0] = b'0';
    let mut random = vec![0u8; 4096];
    rand::rngs::StdRng::seed_from_u64(7).fill(&mut random[..]);
    let raw_invalid_utf8 = {
        // A hand-built TimeSeries whose label name is not UTF-8: field 1 (Label) holding field 1
        // (name) = 0xff 0xfe.
        let label = [0x0a, 0x02, 0xff, 0xfe, 0x12, 0x01, b'x'];
        let mut ts = vec![0x0a, label.len() as u8];
        ts.extend_from_slice(&label);
        let mut request = vec![0x0a, ts.len() as u8];
        request.extend_from_slice(&ts);
        snap::raw::Encoder::new().compress_vec(&request).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated snappy", accepted[..accepted.len() / 2].to_vec(), "snappy"),
        ("corrupt first byte", corrupt_first_byte, ""),
        ("random bytes", random, ""),
        ("not snappy at all", b"hello, world".to_vec(), ""),
        ("invalid UTF-8 label name", raw_invalid_utf8, "UTF-8"),
        (
            "missing __name__ next to a valid series",
            v1_request(vec![
                series(&[("__name__", "half"), ("job", "j")], &[(now, 1.0)]),
                series(&[("job", "j"), ("instance", "x")], &[(now, 1.0)]),
            ]),
            "missing metric name",
        ),
        ("empty label set", v1_request(vec![series(&[], &[(now, 1.0)])]), "missing metric name"),
        (
            "empty label name",
            v1_request(vec![series(&[("__name__", "half"), ("", "v")], &[(now, 1.0)])]),
            "empty label name",
        ),
        (
            "unsorted labels",
            encode_body(&v1::WriteRequest {
                timeseries: vec![v1::TimeSeries {
                    labels: vec![
                        v1::Label { name: "__name__".into(), value: "half".into() },
                        v1::Label { name: "z".into(), value: "1".into() },
                        v1::Label { name: "a".into(), value: "2".into() },
                    ],
                    samples: vec![v1::Sample { value: 1.0, timestamp: now }],
                    exemplars: vec![],
                    histograms: vec![],
                }],
                metadata: vec![],
            }),
            "not sorted",
        ),
        (
            "duplicate labels",
            encode_body(&v1::WriteRequest {
                timeseries: vec![v1::TimeSeries {
                    labels: vec![
                        v1::Label { name: "__name__".into(), value: "half".into() },
                        v1::Label { name: "a".into(), value: "1".into() },
                        v1::Label { name: "a".into(), value: "2".into() },
                    ],
                    samples: vec![v1::Sample { value: 1.0, timestamp: now }],
                    exemplars: vec![],
                    histograms: vec![],
                }],
                metadata: vec![],
            }),
            "duplicate",
        ),
    ];
    for (name, body, expected) in cases {
        let response = post_write(&ringtail.url(), CT_V1, body).await;
        assert_eq!(response.status(), 400, "{name}");
        let message = response.text().await.unwrap();
        assert!(message.contains(expected), "{name}: {message}");
    }
    assert!(ringtail.is_healthy().await);
    assert!(ringtail.export("half").await.is_empty(), "the valid half of a refused request must not be stored");
    let kept = ringtail.export("kept").await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].timestamps, vec![now - 2000, now - 1000]);
    assert_eq!(kept[0].floats(), vec![1.0, 2.0]);
}

/// A late sample inside the out-of-order window (5 minutes by default) is stored in its place;
/// an older one, and one too far in the future, are skipped and reported. With the window at 0s
/// (Prometheus's default) every out-of-order sample is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_and_future_samples_are_skipped_and_reported() {
    let now = now_ms();
    let minute = 60 * 1000;
    for (flags, written_samples, skipped, stored, late) in [
        (&[][..], 2, "1 samples skipped (out of order)", vec![now - 20 * minute, now - 500, now, now + 1000], 1),
        (
            &["--out-of-order-window=0s"][..],
            1,
            "2 samples skipped (out of order)",
            vec![now - 20 * minute, now, now + 1000],
            0,
        ),
    ] {
        let ringtail = Ringtail::start(Some("scrape_configs: []\n"), flags).await;
        let first = v1_request(vec![series(&[("__name__", "ooo")], &[(now - 20 * minute, 1.0), (now, 2.0)])]);
        assert_eq!(post_write(&ringtail.url(), CT_V1, first).await.status(), 204);
        let mixed = v1_request(vec![series(
            &[("__name__", "ooo")],
            &[(now - 500, 9.0), (now - 6 * minute, 8.0), (now + 1000, 3.0), (now + 11 * minute, 4.0)],
        )]);
        let response = post_write(&ringtail.url(), CT_V1, mixed).await;
        assert_eq!(response.status(), 200, "{flags:?}");
        assert_eq!(written(&response, "Samples"), Some(written_samples), "{flags:?}");
        let message = response.text().await.unwrap();
        assert!(message.contains(skipped), "{flags:?}: {message}");
        assert!(message.contains("1 samples skipped (too far in future)"), "{message}");
        let exported = ringtail.export("ooo").await;
        assert_eq!(exported[0].timestamps, stored, "{flags:?}");
        let metrics = client().get(format!("{}/metrics", ringtail.url())).send().await.unwrap().text().await.unwrap();
        let line = format!("ringtail_tsdb_late_samples_stored_total {late}");
        assert!(metrics.lines().any(|l| l == line), "{flags:?}: no {line:?} in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_without_being_buffered() {
    let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &[]).await;
    let now = now_ms();
    assert_eq!(
        post_write(&ringtail.url(), CT_V1, v1_request(vec![series(&[("__name__", "before")], &[(now, 1.0)])]))
            .await
            .status(),
        204
    );

    // Declared 1 GiB: refused on the header alone.
    let response = client()
        .post(format!("{}/api/v1/write", ringtail.url()))
        .header("Content-Type", CT_V1)
        .header("Content-Length", (1u64 << 30).to_string())
        .body(vec![0u8; 1024])
        .send()
        .await;
    if let Ok(response) = response {
        assert_eq!(response.status(), 413);
    }

    // Streamed 1 GiB without a length: the server must answer 413 while we are still sending.
    let mut stream = tokio::net::TcpStream::connect(ringtail.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: {}\r\nContent-Type: {CT_V1}\r\nContent-Encoding: snappy\r\nTransfer-Encoding: chunked\r\n\r\n",
        ringtail.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        let chunk = vec![0x55u8; 1 << 20];
        let mut sent: u64 = 0;
        while sent < 1 << 30 {
            let framed = [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk.clone(), b"\r\n".to_vec()].concat();
            if writer.write_all(&framed).await.is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        sent
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let status_line = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
            if response.windows(2).any(|w| w == b"\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&response).lines().next().unwrap_or("").to_string()
    })
    .await
    .expect("no answer to a streamed 1 GiB body");
    sender.abort();
    assert!(status_line.contains("413"), "status line: {status_line:?}");
    assert!(ringtail.peak_rss_kib() < 512 * 1024, "server buffered the body: peak RSS {} KiB", ringtail.peak_rss_kib());
    assert!(ringtail.is_healthy().await);
    assert_eq!(ringtail.export("before").await[0].timestamps, vec![now]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let ringtail = Ringtail::start(
        Some("scrape_configs: []\n"),
        &["--remote-write-bearer-token-file", token_file.to_str().unwrap()],
    )
    .await;
    let body = v1_request(vec![series(&[("__name__", "authed")], &[(now_ms(), 1.0)])]);
    assert_eq!(post_write(&ringtail.url(), CT_V1, body.clone()).await.status(), 401);
    let response = client()
        .post(format!("{}/api/v1/write", ringtail.url()))
        .header("Content-Type", CT_V1)
        .header("Authorization", "Bearer wrong")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = client()
        .post(format!("{}/api/v1/write", ringtail.url()))
        .header("Content-Type", CT_V1)
        .header("Authorization", "Bearer s3cret")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_rejects_bad_parameters_and_filters_by_time() {
    let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &[]).await;
    let body = v1_request(vec![series(&[("__name__", "t"), ("k", "v")], &[(1_000, 1.0), (2_000, 2.0), (3_000, 3.0)])]);
    // Timestamps in 1970 are far in the past, not the future: accepted.
    assert_eq!(post_write(&ringtail.url(), CT_V1, body).await.status(), 204);
    let response = client()
        .get(format!("{}/api/v1/export", ringtail.url()))
        .query(&[("match[]", "t{k=\"v\"}"), ("start", "1.5"), ("end", "2.5")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let line: ExportedSeries = serde_json::from_str(text.trim()).unwrap();
    assert_eq!((line.timestamps.clone(), line.floats()), (vec![2_000], vec![2.0]));
    assert_eq!(line.metric.get("__name__").map(String::as_str), Some("t"));
    for query in
        [vec![], vec![("match[]", "t{")], vec![("match[]", "t"), ("start", "yesterday")], vec![("match[]", "sum(t)")]]
    {
        let response = client().get(format!("{}/api/v1/export", ringtail.url())).query(&query).send().await.unwrap();
        assert_eq!(response.status(), 400, "{query:?}");
    }
}
