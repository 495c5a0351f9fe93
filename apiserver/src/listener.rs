//! `run` is the accept loop every listener shares (the HTTP one on `--listen`, the adapter's TLS
//! one on `--secure-listen`): a semaphore bounds the connections served at once — past the bound
//! new connections wait in the kernel's accept queue — and shutdown stops accepting, then gives
//! open connections [`ConnectionLimits::shutdown_grace`] to finish their requests.
//! [`serve_http`] serves one connection (HTTP/1.1 or HTTP/2) with an axum router.

use axum::body::Body;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Longest open connections may take to finish after shutdown began.
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How a listener bounds its connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// Connections served at once; further ones wait in the accept queue.
    pub(crate) max_connections: usize,
    /// Longest open connections may take to finish after shutdown began; then they are dropped.
    pub(crate) shutdown_grace: Duration,
}

impl ConnectionLimits {
    pub(crate) fn new(max_connections: usize) -> Self {
        ConnectionLimits { max_connections, shutdown_grace: DEFAULT_SHUTDOWN_GRACE }
    }
}

/// Accepts connections on `listener` until `shutdown` turns true, handing each to `serve` (with
/// the watcher its HTTP connection must run under), then lets open ones finish within the grace
/// period. `name` ("HTTP", "TLS") labels the log lines. A connection's own errors are `serve`'s
/// to log; none of them stops the listener.
pub(crate) async fn run<S, F>(
    listener: TcpListener,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
    name: &'static str,
    mut serve: S,
) where
    S: FnMut(TcpStream, SocketAddr, Watcher) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        };
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
        // Without TCP_NODELAY a response's last segment can wait for the client's delayed ACK
        // (40 ms on Linux) behind Nagle's algorithm.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(listener = name, error = %e, "setting TCP_NODELAY failed");
        }
        let connection = serve(stream, remote_addr, graceful.watcher());
        tokio::spawn(async move {
            let _permit = permit;
            connection.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(listener = name, grace = ?limits.shutdown_grace, "connections still open after the grace period; dropping them");
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection with `service` (an axum router, possibly wrapped)
/// until the client closes it or graceful shutdown (through `watcher`) ends it.
pub(crate) async fn serve_http<I, S>(
    io: I,
    service: S,
    watcher: Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<http::Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let service = tower::ServiceExt::map_request(service, |request: http::Request<Incoming>| request.map(Body::new));
    let service = hyper_util::service::TowerToHyperService::new(service);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
    watcher.watch(connection).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(stream: &mut TcpStream) -> String {
        stream.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn connections_past_the_bound_wait_and_shutdown_ends_the_loop() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (stop, stop_rx) = watch::channel(false);
        let limits = ConnectionLimits { max_connections: 1, shutdown_grace: Duration::from_millis(200) };
        let task = tokio::spawn(run(listener, limits, stop_rx, "test", move |stream, _, watcher| {
            let app = app.clone();
            async move {
                let _ = serve_http(stream, app, watcher).await;
            }
        }));

        let mut first = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut first).await.contains("200 OK"));
        let mut second = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(300), get(&mut second)).await;
        assert!(waiting.is_err(), "a connection past the bound must wait");
        drop(first);
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf)).await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"), "served once a slot frees");

        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }
}
