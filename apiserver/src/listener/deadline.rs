//! `ConnectionClock` is the one deadline a served connection lives under, and the two places that
//! enforce it: [`TimedStream`] (around the TCP stream, under TLS) and [`DeadlineBody`] (around a
//! request body).
//!
//! A connection is always in one of three phases:
//! - **head** — waiting for a request head (and, on TLS, the handshake): from the connection's
//!   start, or from the first byte read after a response, it has `--web.read-header-timeout`;
//!   more bytes do not extend it, so a slowloris client sending a byte at a time is closed too;
//! - **busy** — a request is being handled: no connection deadline (the body has
//!   `--web.read-timeout` through [`DeadlineBody`], a query its own timeout);
//! - **idle** — between requests: `--web.idle-timeout` from the last byte written, so a response
//!   still streaming to a slow reader keeps its connection while it moves.
//!
//! Why not hyper's own `header_read_timeout`: it also starts when a keep-alive connection turns
//! idle, so it would close every idle connection after the header timeout and leave no room for
//! a longer idle timeout; HTTP/2 has no header timeout at all. The clock serves both protocols.
//! HTTP/2 pings are left off on purpose: they would keep idle connections alive forever, while
//! here an idle one ends by the idle timeout and a busy one by its request's own bounds.
//!
//! A listener at its cap may also *evict* a connection that is not busy ([`ConnectionClock::evict`]):
//! the stream fails on its next poll and the task is woken for it.

use bytes::Bytes;
use futures::task::AtomicWaker;
use hyper::body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Why the clock ended a connection (the `reason` label of the closed-connections metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Expiry {
    /// No complete request head within the header timeout.
    Header,
    /// No next request within the idle timeout.
    Idle,
    /// Closed by its listener to make room at the cap.
    Evicted,
}

impl Expiry {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Expiry::Header => "header_timeout",
            Expiry::Idle => "idle_timeout",
            Expiry::Evicted => "evicted",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Head { deadline: Instant },
    Busy { requests: usize },
    Idle { deadline: Instant },
}

/// One connection's phase and deadline, shared by its stream, its requests and its listener.
#[derive(Debug)]
pub(crate) struct ConnectionClock {
    phase: Mutex<Phase>,
    header_timeout: Duration,
    idle_timeout: Duration,
    evicted: AtomicBool,
    ended: AtomicBool,
    slot_released: AtomicBool,
    expired: Mutex<Option<Expiry>>,
    /// The connection task, woken when the listener evicts it.
    task: AtomicWaker,
}

impl ConnectionClock {
    /// A clock for a connection accepted now: in the head phase.
    pub(crate) fn start(header_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(ConnectionClock {
            phase: Mutex::new(Phase::Head { deadline: Instant::now() + header_timeout }),
            header_timeout,
            idle_timeout,
            evicted: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            slot_released: AtomicBool::new(false),
            expired: Mutex::new(None),
            task: AtomicWaker::new(),
        })
    }

    /// Marks the start of a request (its head was read); the returned guard marks its end.
    pub(crate) fn request_started(self: &Arc<Self>) -> RequestInFlight {
        let mut phase = self.phase.lock();
        *phase = match *phase {
            Phase::Busy { requests } => Phase::Busy { requests: requests + 1 },
            Phase::Head { .. } | Phase::Idle { .. } => Phase::Busy { requests: 1 },
        };
        RequestInFlight(self.clone())
    }

    fn request_finished(&self) {
        let mut phase = self.phase.lock();
        if let Phase::Busy { requests } = *phase {
            *phase = if requests > 1 {
                Phase::Busy { requests: requests - 1 }
            } else {
                Phase::Idle { deadline: Instant::now() + self.idle_timeout }
            };
        }
    }

    fn bytes_read(&self) {
        let mut phase = self.phase.lock();
        if let Phase::Idle { deadline } = *phase {
            // Never earlier than the idle deadline: a ping or a stray byte must not shorten it.
            *phase = Phase::Head { deadline: deadline.max(Instant::now() + self.header_timeout) };
        }
    }

    fn bytes_written(&self) {
        let mut phase = self.phase.lock();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Idle { deadline: Instant::now() + self.idle_timeout };
        }
    }

    fn deadline(&self) -> Option<(Instant, Expiry)> {
        match *self.phase.lock() {
            Phase::Head { deadline } => Some((deadline, Expiry::Header)),
            Phase::Idle { deadline } => Some((deadline, Expiry::Idle)),
            Phase::Busy { .. } => None,
        }
    }

    /// True between requests (keep-alive), when closing the connection loses nothing.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(*self.phase.lock(), Phase::Idle { .. })
    }

    /// True while no request is being handled (waiting for a head, or idle).
    pub(crate) fn is_waiting(&self) -> bool {
        !matches!(*self.phase.lock(), Phase::Busy { .. })
    }

    /// Asks the connection to close at its next poll, and wakes it for that.
    pub(crate) fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.task.wake();
    }

    pub(crate) fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Marks the connection's task as finished (its slot is free).
    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }

    pub(crate) fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// True for the one caller that gives the connection's slot back: its eviction (the slot
    /// goes to the newcomer at once, however long the evicted connection takes to notice) or
    /// its end, whichever comes first.
    pub(crate) fn release_slot(&self) -> bool {
        !self.slot_released.swap(true, Ordering::AcqRel)
    }

    /// Why the clock ended the connection, if it did.
    pub(crate) fn expired(&self) -> Option<Expiry> {
        *self.expired.lock()
    }

    fn expire(&self, why: Expiry) -> io::Error {
        self.expired.lock().get_or_insert(why);
        let kind = if why == Expiry::Evicted { io::ErrorKind::ConnectionAborted } else { io::ErrorKind::TimedOut };
        io::Error::new(kind, why.reason())
    }
}

/// A request being handled; dropping it (the response is ready, or the request was abandoned)
/// lets the connection turn idle.
#[derive(Debug)]
pub(crate) struct RequestInFlight(Arc<ConnectionClock>);

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// An IO stream that fails with `TimedOut` once its clock's deadline passes (or `ConnectionAborted`
/// once evicted), and tells the clock about the bytes it moves.
pub(crate) struct TimedStream<I> {
    inner: I,
    clock: Arc<ConnectionClock>,
    sleep: Pin<Box<Sleep>>,
}

impl<I> TimedStream<I> {
    pub(crate) fn new(inner: I, clock: Arc<ConnectionClock>) -> Self {
        TimedStream { inner, clock, sleep: Box::pin(tokio::time::sleep_until(Instant::now())) }
    }

    /// `Err` once the connection must end; otherwise arranges a wake-up at its deadline.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.clock.task.register(cx.waker());
        if self.clock.is_evicted() {
            return Err(self.clock.expire(Expiry::Evicted));
        }
        let Some((deadline, why)) = self.clock.deadline() else { return Ok(()) };
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Err(self.clock.expire(why)),
            Poll::Pending => Ok(()),
        }
    }
}

impl TimedStream<tokio::net::TcpStream> {
    /// Peeks at the first bytes without consuming them, under the clock like a read.
    pub(crate) async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        std::future::poll_fn(|cx| {
            self.check(cx)?;
            self.inner.poll_peek(cx, &mut buf)
        })
        .await
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for TimedStream<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.bytes_read();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for TimedStream<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.clock.bytes_written();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.clock.bytes_written();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request body that did not arrive within `--web.read-timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} (--web.read-timeout)")]
pub(crate) struct BodyTimeout(pub(crate) Duration);

/// A request body that fails with [`BodyTimeout`] once its whole-body deadline passes (however
/// steadily bytes trickle in) and sets `expired`, so the answer can become 408.
pub(crate) struct DeadlineBody<B> {
    inner: B,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

impl<B> DeadlineBody<B> {
    pub(crate) fn new(inner: B, timeout: Duration, expired: Arc<AtomicBool>) -> Self {
        DeadlineBody { inner, timeout, sleep: Box::pin(tokio::time::sleep(timeout)), expired }
    }

    fn expire(&mut self) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        self.expired.store(true, Ordering::Release);
        Poll::Ready(Some(Err(BodyTimeout(self.timeout).into())))
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.sleep.is_elapsed() {
            return this.expire();
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => this.expire(),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SHORT: Duration = Duration::from_millis(50);
    const LONG: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn a_stream_that_never_sends_a_head_times_out() {
        let (client, server) = tokio::io::duplex(64);
        let clock = ConnectionClock::start(SHORT, LONG);
        let mut stream = TimedStream::new(server, clock.clone());
        let mut buf = [0u8; 8];
        let err = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(clock.expired(), Some(Expiry::Header));
        drop(client);
    }

    #[tokio::test]
    async fn bytes_do_not_extend_the_head_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let clock = ConnectionClock::start(SHORT, LONG);
        let mut stream = TimedStream::new(server, clock.clone());
        let trickle = tokio::spawn(async move {
            while client.write_all(b"G").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let mut buf = [0u8; 8];
        let mut bytes_read = 0;
        let err = loop {
            match stream.read(&mut buf).await {
                Err(e) => break e,
                Ok(n) => bytes_read += n,
            }
            assert!(bytes_read < 100_000, "a head trickling in was never cut off");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(clock.expired(), Some(Expiry::Header));
        drop(stream);
        trickle.await.unwrap();
    }

    #[tokio::test]
    async fn a_busy_connection_has_no_deadline_and_turns_idle_after_its_request() {
        let clock = ConnectionClock::start(SHORT, SHORT);
        let request = clock.request_started();
        assert!(clock.deadline().is_none() && !clock.is_waiting());
        let second = clock.request_started();
        drop(request);
        assert!(clock.deadline().is_none(), "one request still in flight");
        drop(second);
        assert!(clock.is_idle());
        assert_eq!(clock.deadline().map(|(_, why)| why), Some(Expiry::Idle));
        clock.bytes_read();
        assert_eq!(clock.deadline().map(|(_, why)| why), Some(Expiry::Header), "a new head is coming");
    }

    #[tokio::test]
    async fn an_idle_stream_times_out_and_an_evicted_one_fails_at_once() {
        let (_client, server) = tokio::io::duplex(64);
        let clock = ConnectionClock::start(SHORT, SHORT);
        drop(clock.request_started());
        let mut stream = TimedStream::new(server, clock.clone());
        let mut buf = [0u8; 8];
        assert_eq!(stream.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(clock.expired(), Some(Expiry::Idle));

        let (_client, server) = tokio::io::duplex(64);
        let clock = ConnectionClock::start(LONG, LONG);
        let mut stream = TimedStream::new(server, clock.clone());
        let reader = tokio::spawn(async move { stream.read(&mut [0u8; 8]).await });
        tokio::task::yield_now().await;
        clock.evict();
        assert_eq!(reader.await.unwrap().unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(clock.expired(), Some(Expiry::Evicted));
    }

    #[tokio::test]
    async fn a_slow_body_fails_with_body_timeout() {
        let (mut sender, body) = http_body_channel();
        sender.push(Bytes::from_static(b"x"));
        let expired = Arc::new(AtomicBool::new(false));
        let body = axum::body::Body::new(DeadlineBody::new(body, SHORT, expired.clone()));
        let err = axum::body::to_bytes(body, usize::MAX).await.unwrap_err();
        assert!(err.to_string().contains("web.read-timeout"), "{err}");
        assert!(expired.load(Ordering::Acquire));
        drop(sender);
    }

    /// A body that yields what was pushed, then waits forever while the sender lives.
    fn http_body_channel() -> (ChannelSender, ChannelBody) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (ChannelSender(tx), ChannelBody(rx))
    }

    struct ChannelSender(tokio::sync::mpsc::UnboundedSender<Bytes>);

    impl ChannelSender {
        fn push(&mut self, bytes: Bytes) {
            self.0.send(bytes).unwrap();
        }
    }

    struct ChannelBody(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

    impl Body for ChannelBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.get_mut().0.poll_recv(cx).map(|bytes| bytes.map(|b| Ok(Frame::data(b))))
        }
    }
}
