//! Overload against the real `ringtail` binary with a tiny in-flight budget
//! (`--remote-write-max-inflight-bytes`): a request that finds the budget taken is answered 503
//! with `Retry-After` without its body being read (it never gets `100 Continue`), `/-/ready` and
//! the query API answer meanwhile, and under concurrent senders every sample acknowledged with a
//! 2xx is in the store afterwards (read back through the export API).

mod ingest_common;

use ingest::proto::v1;
use ingest::remote_write::encode_body;
use ingest_common::*;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tsdb::now_ms;

const CT_V1: &str = "application/x-protobuf";
/// The in-flight budget the server runs with: 64 KiB.
const INFLIGHT_BYTES: usize = 64 << 10;

/// A request of `samples` random (incompressible) samples of one series.
fn random_request(name: &str, first_ts: i64, samples: usize, seed: u64) -> (Vec<u8>, Vec<(i64, f64)>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let points: Vec<(i64, f64)> = (0..samples).map(|i| (first_ts + i as i64, rng.gen::<f64>())).collect();
    let body = encode_body(&v1::WriteRequest {
        timeseries: vec![series(&[("__name__", name), ("job", "overload")], &points)],
        metadata: vec![],
    });
    (body, points)
}

/// Sends a request head announcing `content_length` bytes with `Expect: 100-continue`.
async fn send_head(stream: &mut TcpStream, content_length: usize) {
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: ringtail\r\nContent-Type: {CT_V1}\r\nContent-Encoding: snappy\r\n\
         X-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: {content_length}\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
}

/// Reads from `stream` until the text read so far contains `needle` (or the stream ends).
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.contains(needle) {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_inflight_budget_gets_503_with_retry_after_unread() {
    let inflight = INFLIGHT_BYTES.to_string();
    let ringtail =
        Ringtail::start(Some("scrape_configs: []\n"), &["--remote-write-max-inflight-bytes", &inflight]).await;
    let now = now_ms();
    let (holder_body, holder_points) = random_request("holder", now - 10_000, 4000, 1);
    let (late_body, late_points) = random_request("late", now - 10_000, 2000, 2);
    let sizes = (holder_body.len(), late_body.len());
    assert!(sizes.0 < INFLIGHT_BYTES && sizes.0 + sizes.1 > INFLIGHT_BYTES, "{sizes:?}");

    // The holder's head is in, its budget taken (it is asked for its body), its body not sent.
    let mut holder = TcpStream::connect(ringtail.addr).await.unwrap();
    send_head(&mut holder, holder_body.len()).await;
    let continued = read_until(&mut holder, "\r\n\r\n").await;
    assert!(continued.starts_with("HTTP/1.1 100 Continue"), "{continued}");

    // The next request waits for budget, then gets 503 + Retry-After, never asked for its body.
    let mut late = TcpStream::connect(ringtail.addr).await.unwrap();
    send_head(&mut late, late_body.len()).await;
    let answer = read_until(&mut late, "\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");

    // Health and queries take other paths and answer while the budget is taken.
    let ready = client().get(format!("{}/-/ready", ringtail.url())).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let query = client().get(format!("{}/api/v1/query", ringtail.url())).query(&[("query", "1+1")]).send();
    assert_eq!(query.await.unwrap().status(), 200);

    // The holder finishes and is stored; the late request, sent again, is stored too.
    holder.write_all(&holder_body).await.unwrap();
    let stored = read_until(&mut holder, "\r\n\r\n").await;
    assert!(stored.starts_with("HTTP/1.1 204"), "{stored}");
    assert_eq!(post_write(&ringtail.url(), CT_V1, late_body).await.status(), 204);
    for (name, points) in [("holder", holder_points), ("late", late_points)] {
        let exported = ringtail.export(name).await;
        let timestamps: Vec<i64> = points.iter().map(|(t, _)| *t).collect();
        let values: Vec<f64> = points.iter().map(|(_, v)| *v).collect();
        assert_eq!((exported[0].timestamps.clone(), exported[0].floats()), (timestamps, values), "{name}");
    }
    let metrics = client().get(format!("{}/metrics", ringtail.url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ringtail_remote_write_requests_total{protocol=\"v1\",code=\"503\"} 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_concurrent_senders_every_acknowledged_sample_is_stored() {
    let inflight = INFLIGHT_BYTES.to_string();
    let ringtail =
        Ringtail::start(Some("scrape_configs: []\n"), &["--remote-write-max-inflight-bytes", &inflight]).await;
    let now = now_ms();
    const SENDERS: u64 = 8;
    const REQUESTS: u64 = 10;
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let url = ringtail.url();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged: Vec<(String, Vec<(i64, f64)>)> = Vec::new();
            let mut refused = 0u64;
            for request in 0..REQUESTS {
                let name = format!("s{sender}_r{request}");
                let (body, points) = random_request(&name, now - 60_000, 1200, sender * 1000 + request);
                let response = post_write(&url, CT_V1, body).await;
                match response.status().as_u16() {
                    200 | 204 => acknowledged.push((name, points)),
                    503 => {
                        assert!(response.headers().contains_key("retry-after"), "503 without Retry-After");
                        refused += 1;
                    }
                    other => panic!("unexpected status {other}: {:?}", response.text().await),
                }
            }
            (acknowledged, refused)
        }));
    }
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let (mine, mine_refused) = task.await.unwrap();
        acknowledged.extend(mine);
        refused += mine_refused;
    }
    assert!(!acknowledged.is_empty(), "nothing was acknowledged ({refused} refused)");
    assert!(ringtail.is_healthy().await);
    for (name, points) in &acknowledged {
        let exported = ringtail.export(name).await;
        assert_eq!(exported.len(), 1, "{name} acknowledged but not stored");
        assert_eq!(exported[0].timestamps.len(), points.len(), "{name}");
        assert_eq!(exported[0].floats(), points.iter().map(|(_, v)| *v).collect::<Vec<_>>(), "{name}");
    }
    eprintln!(
        "overload: {} requests acknowledged, {refused} answered 503, 0 acknowledged samples lost",
        acknowledged.len()
    );
}
