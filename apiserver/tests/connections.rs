//! Connections against the real binary: thousands of idle TCP connections, slowloris heads sent a
//! byte at a time, a slow body and silent TLS clients, on both listeners with a small cap and short
//! timeouts. Throughout, `/-/ready`, `/-/healthy` and the TLS `/healthz` answer 200; afterwards
//! every such connection has been closed by the server, a query answers, and the sample written
//! before the flood is still there.

mod ingest_common;

use ingest::proto::v1;
use ingest::remote_write::encode_body;
use ingest_common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_CONNECTIONS: &str = "32";
const PROBE_CONNECTIONS: &str = "4";
/// Most idle connections opened on the HTTP listener (fewer when the fd limit is low).
const HTTP_FLOOD: usize = 3000;
/// Idle connections opened on the TLS listener.
const TLS_FLOOD: usize = 200;
const SLOWLORIS: usize = 16;
/// A bound on waiting that only a hang reaches (not a speed check).
const HANG_GUARD: Duration = Duration::from_secs(180);

/// The soft limit on open files of this process (std only: read from /proc).
fn open_files_soft_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(1024)
}

/// Sends one request on a fresh connection and returns the whole answer (the server closes
/// probe-slot connections after one request; `Connection: close` asks the same elsewhere).
async fn request_once(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connecting");
    stream.write_all(request.as_bytes()).await.expect("sending a request");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: ringtail\r\nConnection: close\r\n\r\n")
}

/// Resolves once the server has closed `stream` (EOF, or a reset when it closed it with bytes
/// unread); returns whether anything was answered first.
async fn wait_closed(mut stream: TcpStream) -> usize {
    let mut buf = [0u8; 4096];
    let mut answered = 0;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return answered,
            Ok(n) => answered += n,
        }
    }
}

/// A slowloris client: sends a request head a byte at a time until the server closes it.
async fn slowloris(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.expect("connecting");
    for byte in
        "GET /api/v1/query?query=up HTTP/1.1\r\nHost: ringtail\r\nX-Slow: ".bytes().chain(std::iter::repeat(b'a'))
    {
        if stream.write_all(&[byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_closed(stream).await;
}

/// The value of one sample line of `/metrics` (0 when absent).
fn metric(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

fn https_client(ca: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("the generated CA");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA pem"))
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(0)
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// The server log's last lines, for failure messages.
fn log_tail(ringtail: &Ringtail) -> String {
    let log = ringtail.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Starts `ringtail serve` with `args` on a free loopback port, logging connection errors too.
async fn start_ringtail(args: &[&str]) -> Ringtail {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ringtail"));
    command.arg("serve").arg("--data-dir").arg(dir.path().join("data")).arg("--listen").arg(addr.to_string());
    command.args(args).env("RINGTAIL_LOG", "info,apiserver=debug,rustls=debug");
    let process = ChildGuard::spawn("ringtail", &mut command, &dir.path().join("ringtail.log"));
    let ringtail = Ringtail { process, addr, dir };
    wait_http_ok(&format!("{}/-/ready", ringtail.url()), START_TIMEOUT).await;
    ringtail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_neither_starve_the_probes_nor_stay_open() {
    let tls_port = free_port();
    let secure_listen = format!("127.0.0.1:{tls_port}");
    let ringtail = start_ringtail(&[
        "--standalone",
        "--max-connections",
        MAX_CONNECTIONS,
        "--web.probe-connections",
        PROBE_CONNECTIONS,
        "--web.read-header-timeout",
        "2s",
        "--web.idle-timeout",
        "2s",
        "--web.read-timeout",
        "2s",
        "--secure-listen",
        &secure_listen,
        "--adapter-max-connections",
        "4",
    ])
    .await;
    let addr = ringtail.addr;
    let tls_addr: SocketAddr = secure_listen.parse().expect("addr");
    let ca = ringtail.dir.path().join("data-tls").join("ca.crt");
    let https = https_client(&ca);

    let now = tsdb::now_ms();
    let before = series(&[("__name__", "conn_test"), ("phase", "before")], &[(now, 7.0)]);
    let body = encode_body(&v1::WriteRequest { timeseries: vec![before], metadata: vec![] });
    let written = post_write(&ringtail.url(), "application/x-protobuf", body).await;
    assert!(written.status().is_success(), "write before the flood: {}", written.status());

    // Leave room for the server (which inherits this limit), the client pools and the test itself.
    let budget = open_files_soft_limit().saturating_sub(400);
    let http_flood = HTTP_FLOOD.min(budget.saturating_sub(TLS_FLOOD + SLOWLORIS)).max(100);
    let slow_heads: Vec<_> = (0..SLOWLORIS).map(|_| tokio::spawn(slowloris(addr))).collect();
    let mut idle = Vec::with_capacity(http_flood + TLS_FLOOD);
    for _ in 0..http_flood {
        idle.push(TcpStream::connect(addr).await.expect("connecting an idle client"));
    }
    for _ in 0..TLS_FLOOD {
        idle.push(TcpStream::connect(tls_addr).await.expect("connecting a silent TLS client"));
    }
    eprintln!("holding {} idle connections ({http_flood} HTTP, {TLS_FLOOD} TLS), {SLOWLORIS} slowloris", idle.len());

    for round in 0..10 {
        let path = if round % 2 == 0 { "/-/ready" } else { "/-/healthy" };
        let answer = request_once(addr, &get(path)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path} during the flood: {answer:?}\n{}", log_tail(&ringtail));
        let healthz = https.get(format!("https://localhost:{tls_port}/healthz")).send().await;
        let status = healthz.map(|r| r.status().as_u16()).map_err(|e| format!("{e:?}"));
        assert_eq!(status, Ok(200), "TLS /healthz during the flood; log ends:\n{}", log_tail(&ringtail));
    }

    let closing = futures::future::join_all(idle.into_iter().map(|s| tokio::spawn(wait_closed(s))));
    let answered = tokio::time::timeout(HANG_GUARD, closing).await.expect("every idle connection is closed");
    assert!(answered.iter().all(|a| matches!(a, Ok(0))), "idle connections were closed without an answer");
    tokio::time::timeout(HANG_GUARD, futures::future::join_all(slow_heads))
        .await
        .expect("every slowloris connection is closed");

    // A keep-alive connection left idle after its answer is closed too.
    let mut kept = TcpStream::connect(addr).await.expect("connecting");
    kept.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: ringtail\r\n\r\n").await.expect("request");
    assert!(tokio::time::timeout(HANG_GUARD, wait_closed(kept)).await.expect("idle close") > 0);

    // A body that stops halfway is answered 408.
    let mut slow_body = TcpStream::connect(addr).await.expect("connecting");
    slow_body
        .write_all(b"POST /api/v1/write HTTP/1.1\r\nHost: ringtail\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nContent-Length: 1000\r\n\r\nabc")
        .await
        .expect("sending half a body");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(HANG_GUARD, slow_body.read_to_end(&mut answer)).await.expect("slow body answered");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let metrics = request_once(addr, &get("/metrics")).await;
    for series in [
        "ringtail_connections_closed_total{listener=\"http\",reason=\"header_timeout\"}",
        "ringtail_connections_closed_total{listener=\"http\",reason=\"idle_timeout\"}",
        "ringtail_connections_closed_total{listener=\"http\",reason=\"body_timeout\"}",
        "ringtail_connections_closed_total{listener=\"tls\",reason=\"header_timeout\"}",
    ] {
        assert!(metric(&metrics, series) >= 1.0, "{series} not counted:\n{metrics}");
    }
    let turned_away = ["refused", "evicted"]
        .iter()
        .map(|reason| {
            metric(&metrics, &format!("ringtail_connections_closed_total{{listener=\"http\",reason=\"{reason}\"}}"))
        })
        .sum::<f64>();
    assert!(turned_away >= 1.0, "the flood past the cap was neither refused nor evicted:\n{metrics}");
    eprintln!("{}", metrics.lines().filter(|l| l.starts_with("ringtail_connections_")).collect::<Vec<_>>().join("\n"));

    // Connections freed: queries and writes work, and nothing accepted was lost.
    let after = series(&[("__name__", "conn_test"), ("phase", "after")], &[(tsdb::now_ms(), 8.0)]);
    let body = encode_body(&v1::WriteRequest { timeseries: vec![after], metadata: vec![] });
    let written = post_write(&ringtail.url(), "application/x-protobuf", body).await;
    assert!(written.status().is_success(), "write after the flood: {}", written.status());
    let query = client()
        .get(format!("{}/api/v1/query", ringtail.url()))
        .query(&[("query", "conn_test")])
        .send()
        .await
        .expect("query");
    assert_eq!(query.status(), 200);
    let text = query.text().await.expect("query body");
    assert!(text.contains("\"before\"") && text.contains("\"after\""), "{text}");
    let exported = ringtail.export("conn_test").await;
    let mut values: Vec<f64> = exported.iter().flat_map(|s| s.floats()).collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, vec![7.0, 8.0], "{exported:?}");
}
