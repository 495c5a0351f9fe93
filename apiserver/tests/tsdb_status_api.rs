//! `GET /api/v1/status/tsdb` through the real `ringtail` binary: the head figures and the top
//! lists match what was written, `limit` cuts the lists, a bad `limit` is 400; and, when the
//! Debian `prometheus` peer is installed, Prometheus 2.42 fed the same remote-write request
//! answers with the same keys and the same figures.

mod ingest_common;

use ingest::proto::v1;
use ingest::remote_write::encode_body;
use ingest_common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::Command;

const CT_V1: &str = "application/x-protobuf";

/// Nine series: `m_a` on pods p0..p4, `m_b` on p0..p2, `m_c` on p0; zones z0 and z1. That is ten
/// label pairs, so every top-10 list is complete and its order among ties does not matter.
fn request(now: i64) -> Vec<u8> {
    let placements: [(&str, &[(&str, &str)]); 3] = [
        ("m_a", &[("p0", "z0"), ("p1", "z0"), ("p2", "z0"), ("p3", "z1"), ("p4", "z1")]),
        ("m_b", &[("p0", "z0"), ("p1", "z0"), ("p2", "z0")]),
        ("m_c", &[("p0", "z1")]),
    ];
    let timeseries = placements
        .iter()
        .flat_map(|(name, pods)| {
            pods.iter().map(move |(pod, zone)| {
                series(&[("__name__", name), ("pod", pod), ("zone", zone)], &[(now - 10_000, 1.0), (now - 5_000, 2.0)])
            })
        })
        .collect();
    encode_body(&v1::WriteRequest { timeseries, metadata: vec![] })
}

/// A `[{name, value}]` list as a set, for comparing lists whose ties may come in any order.
fn entries(list: &Value) -> BTreeSet<(String, u64)> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|e| (e["name"].as_str().expect("name").to_string(), e["value"].as_u64().expect("value")))
        .collect()
}

fn set(items: &[(&str, u64)]) -> BTreeSet<(String, u64)> {
    items.iter().map(|(n, v)| (n.to_string(), *v)).collect()
}

/// Every key path of a JSON value (array elements merged), to compare shapes.
fn key_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let path = format!("{prefix}.{key}");
                out.insert(path.clone());
                key_paths(inner, &path, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| key_paths(item, &format!("{prefix}[]"), out)),
        _ => {}
    }
}

async fn status(base_url: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let response =
        client().get(format!("{base_url}/api/v1/status/tsdb")).query(query).send().await.expect("status request");
    let code = response.status().as_u16();
    (code, response.json().await.expect("JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsdb_status_reports_what_was_written_in_prometheus_shape() {
    let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &[]).await;
    let now = tsdb::now_ms();
    assert_eq!(post_write(&ringtail.url(), CT_V1, request(now)).await.status(), 204);

    let (code, body) = status(&ringtail.url(), &[]).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "success");
    let data = &body["data"];
    assert_eq!(
        data["headStats"],
        json!({"numSeries": 9, "numLabelPairs": 10, "chunkCount": 9, "minTime": now - 10_000, "maxTime": now - 5_000})
    );
    assert_eq!(entries(&data["seriesCountByMetricName"]), set(&[("m_a", 5), ("m_b", 3), ("m_c", 1)]));
    assert_eq!(entries(&data["labelValueCountByLabelName"]), set(&[("pod", 5), ("__name__", 3), ("zone", 2)]));
    assert_eq!(entries(&data["memoryInBytesByLabelName"]), set(&[("pod", 10), ("__name__", 9), ("zone", 4)]));
    assert_eq!(
        entries(&data["seriesCountByLabelValuePair"]),
        set(&[
            ("zone=z0", 6),
            ("zone=z1", 3),
            ("__name__=m_a", 5),
            ("__name__=m_b", 3),
            ("__name__=m_c", 1),
            ("pod=p0", 3),
            ("pod=p1", 2),
            ("pod=p2", 2),
            ("pod=p3", 1),
            ("pod=p4", 1),
        ])
    );
    assert_eq!(data["seriesCountByMetricName"][0], json!({"name": "m_a", "value": 5}), "largest first");

    let (code, limited) = status(&ringtail.url(), &[("limit", "2")]).await;
    assert_eq!(code, 200);
    assert_eq!(
        limited["data"]["seriesCountByMetricName"],
        json!([{"name": "m_a", "value": 5}, {"name": "m_b", "value": 3}])
    );
    assert_eq!(limited["data"]["seriesCountByLabelValuePair"].as_array().map(Vec::len), Some(2));
    for bad in ["0", "x", "100001"] {
        let (code, error) = status(&ringtail.url(), &[("limit", bad)]).await;
        assert_eq!((code, error["errorType"].as_str()), (400, Some("bad_data")), "limit={bad}: {error}");
    }

    if !peer::peers_installed("tsdb_status_reports_what_was_written_in_prometheus_shape", &[peer::PROMETHEUS]) {
        return;
    }
    let prometheus = start_prometheus_receiver().await;
    let response = post_write(&prometheus.url, CT_V1, request(now)).await;
    assert!(response.status().is_success(), "Prometheus took the request: {}", response.status());
    let (code, theirs) = status(&prometheus.url, &[]).await;
    assert_eq!(code, 200, "{theirs}");
    let (mut ours_keys, mut their_keys) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&body, "", &mut ours_keys);
    key_paths(&theirs, "", &mut their_keys);
    assert_eq!(ours_keys, their_keys, "same JSON keys as Prometheus 2.42");
    assert_eq!(data["headStats"], theirs["data"]["headStats"], "same head figures as Prometheus 2.42");
    for list in [
        "seriesCountByMetricName",
        "labelValueCountByLabelName",
        "memoryInBytesByLabelName",
        "seriesCountByLabelValuePair",
    ] {
        assert_eq!(entries(&data[list]), entries(&theirs["data"][list]), "{list} as Prometheus 2.42 counts it");
    }
}

struct PrometheusReceiver {
    _process: ChildGuard,
    _dir: tempfile::TempDir,
    url: String,
}

/// Prometheus 2.42 with its remote-write receiver on and nothing to scrape.
async fn start_prometheus_receiver() -> PrometheusReceiver {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global: {}\nscrape_configs: []\n").expect("writing prometheus.yml");
    let mut command = Command::new(peer::PROMETHEUS.binary);
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver");
    let process = ChildGuard::spawn("prometheus", &mut command, &dir.path().join("prometheus.log"));
    let url = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{url}/-/ready"), START_TIMEOUT).await;
    PrometheusReceiver { _process: process, _dir: dir, url }
}
