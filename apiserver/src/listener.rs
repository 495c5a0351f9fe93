//! `run` is the accept loop every listener shares (the HTTP one on `--listen`, the adapter's TLS
//! one on `--secure-listen`), and [`serve_http`] serves one connection (HTTP/1.1 or HTTP/2) with
//! an axum router.
//!
//! Admission never waits: the loop accepts every connection at once, so the kernel's accept queue
//! is never where a health probe waits. Below the cap (`--max-connections`,
//! `--adapter-max-connections`) a connection is served in full; at the cap, an idle keep-alive
//! connection is closed to make room (nothing is lost: it had no request), as nginx does with its
//! reusable connections. Otherwise it takes one of the `--web.probe-connections` probe slots,
//! where only the health endpoints are answered (anything else: 503 with `Retry-After`), and
//! where a connection that has not sent a full request yet gives way to the next one — a real
//! probe sends its request at once, so connections that merely hold slots cannot starve it.
//! With every probe slot busy, the connection is closed at once.
//!
//! Every connection lives under a [`deadline::ConnectionClock`] (header, idle and body timeouts,
//! see there); shutdown stops accepting, then gives open connections
//! [`ConnectionLimits::shutdown_grace`] to finish their requests. Refused, evicted and timed-out
//! connections are counted in `ringtail_connections_closed_total`.

mod deadline;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use deadline::{ConnectionClock, DeadlineBody, TimedStream};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Longest open connections may take to finish after shutdown began.
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The health endpoints of the HTTP listener, answered on probe slots.
pub(crate) const HTTP_PROBE_PATHS: &[&str] = &["/-/ready", "/-/healthy"];

/// The stream a listener hands to its `serve` function: the TCP stream under the connection's clock.
pub(crate) type Stream = TimedStream<TcpStream>;

/// How a listener bounds its connections.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimits {
    /// Connections served in full at once.
    pub(crate) max_connections: usize,
    /// Connections taken past `max_connections` for `probe_paths` only.
    pub(crate) probe_connections: usize,
    /// Paths (GET or HEAD) answered on a probe slot.
    pub(crate) probe_paths: &'static [&'static str],
    pub(crate) read_header_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) http2_max_concurrent_streams: u32,
    /// Longest open connections may take to finish after shutdown began; then they are dropped.
    pub(crate) shutdown_grace: Duration,
}

impl ConnectionLimits {
    pub(crate) fn new(
        max_connections: usize,
        web: &crate::settings::WebSettings,
        probe_paths: &'static [&'static str],
    ) -> Self {
        ConnectionLimits {
            max_connections,
            probe_connections: web.probe_connections,
            probe_paths,
            read_header_timeout: web.read_header_timeout,
            read_timeout: web.read_timeout,
            idle_timeout: web.idle_timeout,
            http2_max_concurrent_streams: web.http2_max_concurrent_streams,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClosedLabels {
    listener: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpenLabels {
    listener: &'static str,
    slot: &'static str,
}

/// Self-metrics of the listeners' connections (one set shared by every listener of a server).
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionMetrics {
    closed: Family<ClosedLabels, Counter>,
    open: Family<OpenLabels, Gauge>,
}

impl ConnectionMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = ConnectionMetrics::default();
        registry.register(
            "ringtail_connections_closed",
            "Connections the server closed early, by listener and reason: refused (every slot \
             taken), evicted (idle, to make room at the cap), header_timeout, idle_timeout; and \
             requests answered 408 (body_timeout)",
            metrics.closed.clone(),
        );
        registry.register(
            "ringtail_connections_open",
            "Open connections by listener and slot (full; probe: health endpoints only, past the cap)",
            metrics.open.clone(),
        );
        metrics
    }

    fn closed(&self, listener: &'static str, reason: &'static str) {
        self.closed.get_or_create(&ClosedLabels { listener, reason }).inc();
    }
}

/// Which kind of slot a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Any request is served.
    Full,
    /// Past the cap: only the listener's probe paths are served.
    ProbesOnly,
}

impl Admission {
    fn label(self) -> &'static str {
        match self {
            Admission::Full => "full",
            Admission::ProbesOnly => "probe",
        }
    }
}

/// Connections holding one kind of slot, oldest first; a connection's slot is free once its
/// task ended.
struct SlotPool {
    capacity: usize,
    open: Arc<AtomicUsize>,
    members: VecDeque<Arc<ConnectionClock>>,
}

impl SlotPool {
    fn new(capacity: usize) -> Self {
        SlotPool { capacity, open: Arc::new(AtomicUsize::new(0)), members: VecDeque::new() }
    }

    /// Takes a slot for `clock`, evicting the oldest member `evictable` accepts when all are
    /// taken; `None` when none can be freed.
    fn admit(&mut self, clock: &Arc<ConnectionClock>, evictable: fn(&ConnectionClock) -> bool) -> Option<Slot> {
        if self.capacity == 0 {
            return None;
        }
        if self.open.load(Ordering::Acquire) >= self.capacity {
            self.members.retain(|member| !member.has_ended());
            let victim = self.members.iter().position(|member| evictable(member))?;
            if let Some(victim) = self.members.remove(victim) {
                victim.evict();
                if victim.release_slot() {
                    self.open.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        self.members.push_back(clock.clone());
        Some(Slot { open: self.open.clone(), clock: clock.clone() })
    }
}

/// A held slot, released when the connection's task ends.
struct Slot {
    open: Arc<AtomicUsize>,
    clock: Arc<ConnectionClock>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.clock.end();
        if self.clock.release_slot() {
            self.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What [`serve_http`] needs to know about its connection besides the bytes.
pub(crate) struct Session {
    watcher: Watcher,
    clock: Arc<ConnectionClock>,
    admission: Admission,
    limits: Arc<ConnectionLimits>,
    metrics: ConnectionMetrics,
    listener: &'static str,
}

/// Accepts connections on `listener` until `shutdown` turns true, handing each (under its clock)
/// to `serve` with the session [`serve_http`] needs, then lets open ones finish within the grace
/// period. `name` ("http", "tls") labels the log lines and metrics. A connection's own errors are
/// `serve`'s to log; none of them stops the listener.
pub(crate) async fn run<S, F>(
    listener: TcpListener,
    limits: ConnectionLimits,
    metrics: ConnectionMetrics,
    mut shutdown: watch::Receiver<bool>,
    name: &'static str,
    mut serve: S,
) where
    S: FnMut(Stream, SocketAddr, Session) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let limits = Arc::new(limits);
    let mut full = SlotPool::new(limits.max_connections.max(1));
    let mut probes = SlotPool::new(limits.probe_connections);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        };
        let clock = ConnectionClock::start(limits.read_header_timeout, limits.idle_timeout);
        let admitted = match full.admit(&clock, ConnectionClock::is_idle) {
            Some(slot) => Some((slot, Admission::Full)),
            None => probes.admit(&clock, ConnectionClock::is_waiting).map(|slot| (slot, Admission::ProbesOnly)),
        };
        let Some((slot, admission)) = admitted else {
            metrics.closed(name, "refused");
            tracing::debug!(listener = name, %remote_addr, "every connection slot taken; connection closed");
            continue;
        };
        // Without TCP_NODELAY a response's last segment can wait for the client's delayed ACK
        // (40 ms on Linux) behind Nagle's algorithm.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(listener = name, error = %e, "setting TCP_NODELAY failed");
        }
        let session = Session {
            watcher: graceful.watcher(),
            clock: clock.clone(),
            admission,
            limits: limits.clone(),
            metrics: metrics.clone(),
            listener: name,
        };
        let connection = serve(TimedStream::new(stream, clock.clone()), remote_addr, session);
        let open = metrics.open.get_or_create(&OpenLabels { listener: name, slot: admission.label() }).clone();
        let metrics = metrics.clone();
        open.inc();
        tokio::spawn(async move {
            connection.await;
            if let Some(expiry) = clock.expired() {
                metrics.closed(name, expiry.reason());
            }
            open.dec();
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(listener = name, grace = ?limits.shutdown_grace, "connections still open after the grace period; dropping them");
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection with `service` (an axum router, possibly wrapped)
/// until the client closes it, its clock ends it or graceful shutdown (through the session's
/// watcher) does. Each request body must arrive within `--web.read-timeout` (else 408); on a
/// probe slot only the probe paths reach `service`.
pub(crate) async fn serve_http<I, S>(
    io: I,
    service: S,
    session: Session,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<http::Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let Session { watcher, clock, admission, limits, metrics, listener } = session;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // The clock times heads out for both protocols (see `deadline`); a probe slot serves one
    // request per HTTP/1 connection.
    builder.http1().header_read_timeout(None).keep_alive(admission == Admission::Full);
    builder.http2().max_concurrent_streams(limits.http2_max_concurrent_streams);
    let handler = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let in_flight = clock.request_started();
        let http1 = request.version() < http::Version::HTTP_2;
        let allowed = admission == Admission::Full || is_probe(&request, limits.probe_paths);
        let body_expired = Arc::new(AtomicBool::new(false));
        let read_timeout = limits.read_timeout;
        let request = request.map(|body| Body::new(DeadlineBody::new(body, read_timeout, body_expired.clone())));
        let call = allowed.then(|| tower::ServiceExt::oneshot(service.clone(), request));
        let (metrics, probe_paths) = (metrics.clone(), limits.probe_paths);
        async move {
            let Some(call) = call else {
                return Ok::<_, Infallible>(at_capacity(http1, probe_paths));
            };
            let response = call.await?;
            drop(in_flight);
            if body_expired.load(Ordering::Acquire) {
                metrics.closed(listener, "body_timeout");
                return Ok(body_timed_out(http1, read_timeout));
            }
            Ok(response)
        }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), handler).into_owned();
    watcher.watch(connection).await
}

fn is_probe<B>(request: &http::Request<B>, probe_paths: &[&str]) -> bool {
    matches!(*request.method(), http::Method::GET | http::Method::HEAD) && probe_paths.contains(&request.uri().path())
}

/// `Connection: close` is an HTTP/1 header; HTTP/2 forbids it.
fn closing(http1: bool, mut response: Response) -> Response {
    if http1 {
        response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    response
}

fn at_capacity(http1: bool, probe_paths: &[&str]) -> Response {
    let message = format!(
        "the server is at its connection limit and answers only {} on this connection; retry later \
         (or raise the listener's max connections)\n",
        probe_paths.join(" and ")
    );
    let response = (http::StatusCode::SERVICE_UNAVAILABLE, [(http::header::RETRY_AFTER, "1")], message).into_response();
    closing(http1, response)
}

fn body_timed_out(http1: bool, read_timeout: Duration) -> Response {
    let message = format!(
        "the request body did not arrive within {} (--web.read-timeout)\n",
        humantime::format_duration(read_timeout)
    );
    closing(http1, (http::StatusCode::REQUEST_TIMEOUT, message).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LONG: Duration = Duration::from_secs(3600);

    fn limits(max_connections: usize, probe_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            probe_connections,
            probe_paths: &["/ready", "/hang"],
            read_header_timeout: LONG,
            read_timeout: LONG,
            idle_timeout: LONG,
            http2_max_concurrent_streams: 8,
            shutdown_grace: Duration::from_millis(200),
        }
    }

    struct Running {
        addr: SocketAddr,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
        metrics: ConnectionMetrics,
        /// Notified when a `/hang` request is being handled.
        hanging: Arc<tokio::sync::Notify>,
    }

    /// Starts a listener serving `/`, `/ready` and `/hang` (never answers).
    async fn start(limits: ConnectionLimits) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hanging = Arc::new(tokio::sync::Notify::new());
        let entered = hanging.clone();
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "ok" }).post(|body: axum::body::Bytes| async move { body }))
            .route("/ready", axum::routing::get(|| async { "ready" }))
            .route(
                "/hang",
                axum::routing::get(move || async move {
                    entered.notify_one();
                    std::future::pending::<&'static str>().await
                }),
            );
        let (stop, stop_rx) = watch::channel(false);
        let metrics = ConnectionMetrics::default();
        let task = tokio::spawn(run(listener, limits, metrics.clone(), stop_rx, "test", move |stream, _, session| {
            let app = app.clone();
            async move {
                let _ = serve_http(stream, app, session).await;
            }
        }));
        Running { addr, stop, task, metrics, hanging }
    }

    /// Sends `request` and returns what arrives before the answer's end (or the connection's).
    async fn send(stream: &mut TcpStream, request: &str) -> String {
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn get(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
    }

    /// True once the server closed `stream` (EOF, or a reset when it closed with unread bytes).
    async fn closed_by_server(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    }

    fn closed_count(metrics: &ConnectionMetrics, reason: &'static str) -> u64 {
        metrics.closed.get_or_create(&ClosedLabels { listener: "test", reason }).get()
    }

    #[tokio::test]
    async fn at_the_cap_idle_connections_make_room_probes_are_answered_and_the_rest_is_closed() {
        let Running { addr, stop, task, metrics, hanging: handling_hang } = start(limits(1, 1)).await;

        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert!(send(&mut idle, &get("/")).await.contains("200 OK"));
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(send(&mut second, &get("/")).await.contains("200 OK"), "the idle connection made room");
        assert!(closed_by_server(&mut idle).await, "the idle keep-alive connection was closed");

        // A head that never ends holds the full slot (`second`, idle, made room for it).
        let mut holder = TcpStream::connect(addr).await.unwrap();
        holder.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(closed_by_server(&mut second).await);
        let mut other = TcpStream::connect(addr).await.unwrap();
        let answer = send(&mut other, &get("/")).await;
        assert!(answer.contains("503") && answer.contains("retry-after: 1"), "{answer}");
        assert!(answer.contains("/ready and /hang"), "{answer}");
        assert!(closed_by_server(&mut other).await, "a probe slot serves one request");

        let mut probe = TcpStream::connect(addr).await.unwrap();
        assert!(send(&mut probe, &get("/ready")).await.contains("200 OK"));

        let mut hanging = TcpStream::connect(addr).await.unwrap();
        hanging.write_all(get("/hang").as_bytes()).await.unwrap();
        handling_hang.notified().await;
        // The only probe slot is busy with a request: the next connection is closed unanswered.
        let mut refused = TcpStream::connect(addr).await.unwrap();
        let _ = refused.write_all(get("/ready").as_bytes()).await;
        let mut buf = [0u8; 64];
        assert!(matches!(refused.read(&mut buf).await, Ok(0) | Err(_)), "closed without an answer");
        assert!(closed_count(&metrics, "refused") >= 1);
        assert!(closed_count(&metrics, "evicted") >= 1);

        drop((holder, hanging));
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_evicted_connection_gives_its_slot_up_before_it_notices() {
        let mut pool = SlotPool::new(1);
        let clock = || ConnectionClock::start(LONG, LONG);
        let (first, second, third) = (clock(), clock(), clock());
        let _first_slot = pool.admit(&first, ConnectionClock::is_waiting).unwrap();
        let _second_slot = pool.admit(&second, ConnectionClock::is_waiting).unwrap();
        assert!(first.is_evicted() && !first.has_ended(), "evicted, still open");
        let busy = third.request_started();
        let _third_slot = pool.admit(&third, ConnectionClock::is_waiting).expect("the lingering one does not count");
        assert!(second.is_evicted());
        assert!(pool.admit(&clock(), ConnectionClock::is_waiting).is_none(), "a busy connection is never evicted");
        drop(busy);
    }

    #[tokio::test]
    async fn silent_slow_and_idle_connections_are_closed_by_their_timeouts() {
        let mut short = limits(16, 1);
        short.read_header_timeout = Duration::from_millis(100);
        short.idle_timeout = Duration::from_millis(100);
        let Running { addr, stop, task, metrics, .. } = start(short).await;

        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(closed_by_server(&mut silent).await);
        let mut slowloris = TcpStream::connect(addr).await.unwrap();
        let mut sent = 0;
        for byte in get("/").bytes().cycle() {
            if slowloris.write_all(&[byte]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            if sent > 10_000 {
                panic!("a head sent a byte at a time was never cut off");
            }
        }
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert!(send(&mut idle, &get("/")).await.contains("200 OK"));
        assert!(closed_by_server(&mut idle).await);
        assert!(closed_count(&metrics, "header_timeout") >= 2);
        assert!(closed_count(&metrics, "idle_timeout") >= 1);

        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_body_slower_than_the_read_timeout_gets_408() {
        let mut short = limits(16, 1);
        short.read_timeout = Duration::from_millis(100);
        let Running { addr, stop, task, metrics, .. } = start(short).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let answer = send(&mut slow, "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nab").await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("--web.read-timeout") && answer.contains("connection: close"), "{answer}");
        assert_eq!(closed_count(&metrics, "body_timeout"), 1);

        let mut quick = TcpStream::connect(addr).await.unwrap();
        let answer = send(&mut quick, "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nab").await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ab"), "{answer}");
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }
}
