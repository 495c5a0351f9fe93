//! `POST /api/v1/write` is the Prometheus remote-write receiver's HTTP face: authentication, the
//! Content-Type/Content-Encoding headers → `Protocol`, the body limit, back-pressure (the in-flight
//! bytes budget: compressed bodies and their decompressed form, reserved before a body is read so
//! an overloaded receiver answers 503 without buffering anything), the mapping of outcomes to the statuses senders expect, response headers and
//! request metrics. Decompression, decoding, validation, the series cache and the append are the
//! [`ingest::Receiver`]'s; they run on the [`Workers`], below the priority of queries and probes.
//!
//! Statuses: 204 stored (200 with a text body when some samples were skipped, saying which);
//! 400 malformed (nothing of the request stored); 400 when series broke an ingestion limit
//! (`--limits.*`: the body names the limit and the first few series; everything else in the
//! request was stored, as Prometheus senders do not retry a 400); 401 bad bearer token; 413 body
//! over the limit (checked on Content-Length and while streaming, so an oversized body is never
//! buffered); 415 unknown content type or encoding; 503 with `Retry-After` when the in-flight
//! budget is exhausted (Prometheus retries 5xx, not 429 by default); 507 Insufficient Storage when the
//! store's volume is full and 503 when the store is read-only (both with the store's reason in
//! the body and `Retry-After`: nothing of the request was acknowledged, and senders keep the data
//! and retry); 500 when the store fails otherwise.

use super::AppState;
use crate::workers::Workers;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use ingest::remote_write::{self, DecodeLimits, Protocol, WriteOutcome};
use ingest::{IngestLimits, IngestMetrics, Receiver, RemoteWriteError, SOURCE_REMOTE_WRITE};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Default body limit: 32 MiB, as Prometheus' receiver.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 << 20;
/// Default budget of request bytes in flight at once, compressed bodies and their decompressed
/// form together: 256 MiB.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 256 << 20;
/// Default time a request waits for in-flight budget before it gets a 503.
pub const DEFAULT_SATURATION_WAIT: Duration = Duration::from_secs(5);

/// Semaphore permits count KiB so a 32-bit permit count covers terabytes.
const PERMIT_BYTES: usize = 1024;

/// Receiver settings (each has a `ringtail serve` flag).
#[derive(Debug, Clone)]
pub struct RemoteWriteSettings {
    /// Largest compressed body accepted; more is answered 413.
    pub max_body_bytes: usize,
    /// When set, requests must carry `Authorization: Bearer <token>` (the file's token, re-read
    /// when it changes).
    pub bearer_token: Option<Arc<super::reloading::Reloading<String>>>,
    /// Request bytes (compressed bodies being read or decoded, plus their decompressed form) that
    /// may be in flight at once; beyond it requests wait, then get 503.
    pub max_inflight_bytes: usize,
    /// How long a request waits for in-flight budget before the 503.
    pub saturation_wait: Duration,
    /// Samples later than now + this are skipped.
    pub max_future: Duration,
    /// Labels, series per request, live series and new series per minute.
    pub limits: IngestLimits,
}

impl Default for RemoteWriteSettings {
    fn default() -> Self {
        RemoteWriteSettings {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            bearer_token: None,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
            saturation_wait: DEFAULT_SATURATION_WAIT,
            max_future: Duration::from_millis(remote_write::DEFAULT_MAX_FUTURE_MS as u64),
            limits: IngestLimits::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    protocol: &'static str,
    code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: &'static str,
}

fn duration_histogram() -> Histogram {
    // 100 µs .. ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// Remote-write settings, back-pressure, counters, and the receiver that stores requests.
#[derive(Debug)]
pub struct RemoteWriteState {
    settings: RemoteWriteSettings,
    inflight: Arc<Semaphore>,
    inflight_permits: u32,
    ingest_metrics: IngestMetrics,
    requests: Family<RequestLabels, Counter>,
    durations: Family<ProtocolLabels, Histogram, fn() -> Histogram>,
    receiver: Arc<Receiver>,
    workers: Arc<Workers>,
    /// Set while the store refuses writes, so the change is logged once each way, not per request.
    store_refusing: AtomicBool,
}

impl RemoteWriteState {
    /// The receiver (for the remote-write metadata it keeps).
    pub(crate) fn receiver(&self) -> &Arc<Receiver> {
        &self.receiver
    }

    /// Builds the state with a receiver storing into `db` and registers the receiver's metrics;
    /// sample counters go to the shared `ingest_metrics` (registered once by the server); requests
    /// are decoded and stored on `workers`.
    pub fn new(
        registry: &mut Registry,
        settings: RemoteWriteSettings,
        ingest_metrics: IngestMetrics,
        db: Arc<tsdb::Db>,
        workers: Arc<Workers>,
    ) -> Self {
        let inflight_permits = u32::try_from((settings.max_inflight_bytes / PERMIT_BYTES).max(1)).unwrap_or(u32::MAX);
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: Family<ProtocolLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            "ringtail_remote_write_requests",
            "Remote-write requests by protocol (v1, v2, unknown) and HTTP status code",
            requests.clone(),
        );
        registry.register(
            "ringtail_remote_write_request_duration_seconds",
            "Time from request start to response for remote-write requests, by protocol",
            durations.clone(),
        );
        // A body may decompress to the in-flight budget (or to the body limit, when that is larger).
        let limits = DecodeLimits {
            max_decompressed_bytes: settings.max_inflight_bytes.max(settings.max_body_bytes),
            max_future_ms: i64::try_from(settings.max_future.as_millis()).unwrap_or(i64::MAX),
        };
        RemoteWriteState {
            receiver: Arc::new(Receiver::new(db, limits).with_limits(settings.limits)),
            workers,
            inflight: Arc::new(Semaphore::new(inflight_permits as usize)),
            inflight_permits,
            settings,
            ingest_metrics,
            requests,
            durations,
            store_refusing: AtomicBool::new(false),
        }
    }

    /// Logs the first refusal of a run of store refusals (the reason stays in `/-/ready` and
    /// `/metrics` until writes pass again).
    fn note_store_refuses(&self, reason: &str) {
        if !self.store_refusing.swap(true, Ordering::Relaxed) {
            tracing::error!(%reason, "the store refuses writes: remote-write answers 507/503 until it accepts them again");
        }
    }

    fn note_store_accepts(&self) {
        if self.store_refusing.swap(false, Ordering::Relaxed) {
            tracing::info!("the store accepts writes again");
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/write", post(write))
}

/// Seconds a sender is asked to wait after the in-flight budget was exhausted.
const RETRY_AFTER_SATURATED: &str = "1";
/// Seconds a sender is asked to wait while the store refuses writes (full volume, read-only):
/// space is freed by a person or a retention pass, not within a second.
const RETRY_AFTER_STORE_REFUSED: &str = "10";

/// A refusal: status, message, and whether the sender should retry later.
struct Refusal {
    status: StatusCode,
    message: String,
    /// `Retry-After` seconds, for refusals that pass.
    retry_after: Option<&'static str>,
    /// The store refused the write as a whole (no space, read-only), not this request.
    store_refused: bool,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal { status, message: message.into(), retry_after: None, store_refused: false }
    }

    fn retry_after(mut self, seconds: &'static str) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl From<RemoteWriteError> for Refusal {
    fn from(error: RemoteWriteError) -> Self {
        let status = match &error {
            RemoteWriteError::UnsupportedContentType(_) | RemoteWriteError::UnsupportedContentEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            RemoteWriteError::Store(e) if e.is_no_space() => StatusCode::INSUFFICIENT_STORAGE,
            RemoteWriteError::Store(tsdb::Error::ReadOnly(_) | tsdb::Error::Closed) => StatusCode::SERVICE_UNAVAILABLE,
            // The store refused a series the request named: the request's fault, like a decode error.
            RemoteWriteError::Store(tsdb::Error::InvalidSeries { .. } | tsdb::Error::InvalidLabels(_)) => {
                StatusCode::BAD_REQUEST
            }
            RemoteWriteError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let store_refused = matches!(&error, RemoteWriteError::Store(e) if e.is_no_space())
            || matches!(error, RemoteWriteError::Store(tsdb::Error::ReadOnly(_)));
        let refusal = Refusal { status, message: error.to_string(), retry_after: None, store_refused };
        match error {
            _ if store_refused => refusal.retry_after(RETRY_AFTER_STORE_REFUSED),
            RemoteWriteError::Store(tsdb::Error::Closed) => refusal.retry_after(RETRY_AFTER_SATURATED),
            _ => refusal,
        }
    }
}

async fn write(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let rw = state.remote_write.clone();
    let protocol = Protocol::negotiate(header_str(&headers, header::CONTENT_TYPE)).ok();
    let response = match handle(&rw, &headers, body).await {
        Ok(outcome) => {
            rw.note_store_accepts();
            success_response(&rw, &outcome)
        }
        Err(refusal) => {
            if refusal.status.is_client_error() {
                rw.ingest_metrics.rejected(SOURCE_REMOTE_WRITE, "invalid_request", 1);
                tracing::debug!(status = %refusal.status, message = %refusal.message, "remote-write request refused");
            }
            if refusal.store_refused {
                rw.note_store_refuses(&refusal.message);
            }
            let mut response = (refusal.status, format!("{}\n", refusal.message)).into_response();
            if let Some(seconds) = refusal.retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
            }
            response
        }
    };
    let protocol_label = protocol.map_or("unknown", Protocol::as_str);
    rw.requests.get_or_create(&RequestLabels { protocol: protocol_label, code: response.status().as_u16() }).inc();
    rw.durations.get_or_create(&ProtocolLabels { protocol: protocol_label }).observe(started.elapsed().as_secs_f64());
    response
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(rw: &Arc<RemoteWriteState>, headers: &HeaderMap, body: Body) -> Result<WriteOutcome, Refusal> {
    let settings = &rw.settings;
    if let Some(token_file) = &settings.bearer_token {
        let expected = token_file.current();
        let presented = header_str(headers, header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| bool::from(p.trim().as_bytes().ct_eq(expected.as_bytes()))) {
            return Err(Refusal::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"));
        }
    }
    let protocol = Protocol::negotiate(header_str(headers, header::CONTENT_TYPE))?;
    remote_write::check_content_encoding(header_str(headers, header::CONTENT_ENCODING))?;
    if let Some(length) = header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok()) {
        if length > settings.max_body_bytes as u64 {
            return Err(too_large(settings.max_body_bytes));
        }
    }
    // The compressed bytes are reserved before the body is read: past the budget the sender
    // waits with its body unread, then gets 503.
    let announced = header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
    let mut budget = InflightBudget::new(rw);
    if let Some(length) = announced {
        budget.hold_bytes(length).await?;
    }
    let body = read_limited(body, announced, settings.max_body_bytes, &mut budget).await?;

    // Refuses a body announcing more than the receiver decodes before it waits for budget.
    let decompressed_bytes = rw.receiver.decompressed_len(&body)?;
    budget.hold_bytes(body.len().saturating_add(decompressed_bytes)).await?;
    let permit = budget.into_permit();

    let receiver = rw.receiver.clone();
    let outcome = rw
        .workers
        .run(move || {
            let _permit = permit;
            receiver.remote_write(protocol, &body, tsdb::now_ms())
        })
        .await
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(outcome)
}

fn too_large(max_bytes: usize) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {max_bytes} bytes (raise --remote-write-max-body-bytes)"),
    )
}

/// Reads the body, refusing as soon as it grows past `max_bytes` (without reading the rest); a
/// body longer than `budget` holds (sent without Content-Length) takes budget as it arrives. The
/// buffer is sized for the `announced` length (budget already held for it), so the body is copied
/// once.
async fn read_limited(
    body: Body,
    announced: Option<usize>,
    max_bytes: usize,
    budget: &mut InflightBudget<'_>,
) -> Result<Vec<u8>, Refusal> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::with_capacity(announced.unwrap_or(0).min(max_bytes));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format!("reading the request body failed: {e}")))?;
        if buf.len() + chunk.len() > max_bytes {
            return Err(too_large(max_bytes));
        }
        budget.hold_bytes(buf.len() + chunk.len()).await?;
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The in-flight budget one request holds, grown as it learns its size: the permits come back
/// when it is dropped (after the request is stored, or when it is refused).
struct InflightBudget<'a> {
    rw: &'a RemoteWriteState,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<'a> InflightBudget<'a> {
    fn new(rw: &'a RemoteWriteState) -> Self {
        InflightBudget { rw, permit: None }
    }

    fn held_permits(&self) -> u32 {
        self.permit.as_ref().map_or(0, |p| u32::try_from(p.num_permits()).unwrap_or(u32::MAX))
    }

    /// Holds budget for `bytes` in all (a request larger than the whole budget holds all of it,
    /// so it runs alone rather than never); waits for it at most the saturation wait, then 503.
    async fn hold_bytes(&mut self, bytes: usize) -> Result<(), Refusal> {
        let wanted =
            u32::try_from(bytes.div_ceil(PERMIT_BYTES).max(1)).unwrap_or(u32::MAX).min(self.rw.inflight_permits);
        let more = wanted.saturating_sub(self.held_permits());
        if more == 0 {
            return Ok(());
        }
        if let Some(held) = &mut self.permit {
            if let Ok(taken) = self.rw.inflight.clone().try_acquire_many_owned(more) {
                held.merge(taken);
                return Ok(());
            }
        }
        // Never wait while holding budget: requests that each held their compressed bytes while
        // waiting for their decompressed bytes took the whole budget between them and none could
        // go on until the saturation wait refused them all (Prometheus with 32 shards against a
        // 1 MiB budget: ~0.3 requests/s stored, the CPU idle). A waiting request holds nothing;
        // the body it has read waits outside the budget.
        self.permit = None;
        let acquire = self.rw.inflight.clone().acquire_many_owned(wanted);
        let taken = match tokio::time::timeout(self.rw.settings.saturation_wait, acquire).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => {
                return Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "receiver is shutting down")
                    .retry_after(RETRY_AFTER_SATURATED))
            }
            Err(_) => {
                return Err(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "receiver saturated: the {} bytes of requests in flight are taken \
                         (--remote-write-max-inflight-bytes); retry later",
                        self.rw.settings.max_inflight_bytes
                    ),
                )
                .retry_after(RETRY_AFTER_SATURATED))
            }
        };
        match &mut self.permit {
            Some(held) => held.merge(taken),
            None => self.permit = Some(taken),
        }
        Ok(())
    }

    fn into_permit(self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permit
    }
}

fn success_response(rw: &RemoteWriteState, outcome: &WriteOutcome) -> Response {
    rw.ingest_metrics.ingested(SOURCE_REMOTE_WRITE, outcome.samples_written);
    for (reason, n) in outcome.rejections() {
        rw.ingest_metrics.rejected(SOURCE_REMOTE_WRITE, reason, n);
    }
    rw.ingest_metrics.refused_by_limits(SOURCE_REMOTE_WRITE, &outcome.refused);
    let summary = outcome.skipped_summary();
    let mut response = if !outcome.refused.is_empty() {
        let message = outcome.refused.message(rw.receiver.limits());
        tracing::debug!(%message, "remote-write series refused by limits");
        let skipped = if summary.is_empty() { String::new() } else { format!("; {summary}") };
        let body = format!("{message}; {} samples written{skipped}\n", outcome.samples_written);
        (StatusCode::BAD_REQUEST, body).into_response()
    } else if summary.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::OK, format!("{} samples written; {summary}\n", outcome.samples_written)).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(remote_write::HEADER_SAMPLES_WRITTEN, HeaderValue::from(outcome.samples_written));
    // Histograms and exemplars are accepted but not stored, so none are written.
    headers.insert(remote_write::HEADER_HISTOGRAMS_WRITTEN, HeaderValue::from(0u64));
    headers.insert(remote_write::HEADER_EXEMPLARS_WRITTEN, HeaderValue::from(0u64));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by `overload_prometheus`): two requests each holding part of the budget
    /// and waiting to grow used to wait on each other until the saturation wait refused both.
    #[tokio::test]
    async fn requests_growing_their_budget_do_not_wait_on_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(tsdb::Db::open(tsdb::Options::new(dir.path())).unwrap());
        let settings = RemoteWriteSettings {
            max_inflight_bytes: 8 * PERMIT_BYTES,
            saturation_wait: Duration::from_secs(2),
            ..RemoteWriteSettings::default()
        };
        let workers = Arc::new(Workers::start(1, 0, 0.0).unwrap());
        let rw = RemoteWriteState::new(&mut Registry::default(), settings, IngestMetrics::default(), db, workers);
        let (mut first, mut second) = (InflightBudget::new(&rw), InflightBudget::new(&rw));
        assert!(first.hold_bytes(4 * PERMIT_BYTES).await.is_ok());
        assert!(second.hold_bytes(4 * PERMIT_BYTES).await.is_ok());
        let (grown_first, grown_second) = tokio::join!(
            async {
                let grown = first.hold_bytes(6 * PERMIT_BYTES).await;
                drop(first);
                grown
            },
            async {
                let grown = second.hold_bytes(6 * PERMIT_BYTES).await;
                drop(second);
                grown
            }
        );
        assert!(grown_first.is_ok() && grown_second.is_ok());
    }

    fn refusal_of(error: tsdb::Error) -> Refusal {
        Refusal::from(RemoteWriteError::Store(error))
    }

    #[test]
    fn a_full_volume_is_507_and_a_read_only_store_503_each_with_the_reason() {
        let no_space = refusal_of(tsdb::Error::NoSpace {
            path: "data/head-0001".into(),
            source: std::io::Error::from_raw_os_error(28),
        });
        assert_eq!(no_space.status, StatusCode::INSUFFICIENT_STORAGE);
        assert!(no_space.message.contains("no space left for data/head-0001"), "{}", no_space.message);
        assert_eq!(no_space.retry_after, Some(RETRY_AFTER_STORE_REFUSED));
        assert!(no_space.store_refused);

        let read_only = refusal_of(tsdb::Error::ReadOnly("opened read-only".into()));
        assert_eq!(read_only.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(read_only.message.contains("store is read-only: opened read-only"), "{}", read_only.message);
        assert_eq!(read_only.retry_after, Some(RETRY_AFTER_STORE_REFUSED));
        assert!(read_only.store_refused);
    }

    #[test]
    fn other_store_errors_keep_their_statuses() {
        let invalid = refusal_of(tsdb::Error::InvalidSeries { index: 3, reason: "too many labels".into() });
        assert_eq!(
            (invalid.status, invalid.retry_after, invalid.store_refused),
            (StatusCode::BAD_REQUEST, None, false)
        );
        let closed = refusal_of(tsdb::Error::Closed);
        assert_eq!(closed.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(closed.retry_after, Some(RETRY_AFTER_SATURATED));
        let io = refusal_of(tsdb::Error::Io { path: "x".into(), source: std::io::Error::other("boom") });
        assert_eq!((io.status, io.store_refused), (StatusCode::INTERNAL_SERVER_ERROR, false));
    }
}
