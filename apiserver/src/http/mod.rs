//! The HTTP router on `--listen`: health and readiness, self-metrics (with the store's figures,
//! read on each scrape by `store_metrics`), and the routes each surface module contributes
//! (remote-write, export, the Prometheus query API, `tsdb_status` and `targets`), and
//! `POST /-/reload` (with `--web.enable-lifecycle`), and the web UI at `/` (`ui`, reading
//! `ui_api`'s JSON). Its state is built by the server and owned by it.
//!
//! `/-/ready` answers 200 once every listener is up and as long as queries are answered, also
//! while the store refuses writes (a full volume, a read-only start): restarting or removing the
//! pod would not free space, and the queries the HPA needs still work. Its body then says
//! `writes refused: <reason>`.

pub(crate) mod admin;
pub mod export;
pub(crate) mod federate;
pub(crate) mod metadata;
pub mod prom_api;
pub(crate) mod reloading;
pub mod remote_write;
pub(crate) mod rules_api;
pub(crate) mod status;
pub(crate) mod store_metrics;
pub(crate) mod targets;
pub(crate) mod tsdb_status;
pub(crate) mod ui;
pub(crate) mod ui_api;
pub(crate) mod web_config;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared state of every HTTP handler.
#[derive(Clone)]
pub struct AppState {
    pub db: Arc<tsdb::Db>,
    pub engine: Arc<query::Engine>,
    pub(crate) remote_write: Arc<remote_write::RemoteWriteState>,
    pub(crate) query_api: Arc<prom_api::QueryApiState>,
    /// Self-metrics registry; modules register their metrics at start.
    pub(crate) registry: Arc<Registry>,
    /// Why the server opened the store read-only, when it did (shown while writes are refused).
    pub(crate) read_only_reason: Option<Arc<str>>,
    /// Set once every listener is up; `/-/ready` answers 503 before.
    pub(crate) ready: Arc<AtomicBool>,
    /// `/-/ready` answers 503 until this time (`--ready-after`), set at start.
    pub(crate) warm_up: Arc<std::sync::OnceLock<WarmUp>>,
    /// What `POST /-/reload` runs, when `--web.enable-lifecycle` is given (set once the scraper
    /// runs).
    pub(crate) lifecycle: Arc<std::sync::OnceLock<Arc<crate::reload::ConfigReloader>>>,
    /// Whether the admin endpoints are served (`--web.enable-admin-api`).
    pub(crate) enable_admin_api: bool,
    /// The scraper, for `/api/v1/targets` (set once it runs).
    pub(crate) scraper: Arc<std::sync::OnceLock<Arc<ingest::ScrapeManager>>>,
    /// The metrics adapter's rules in force, for the web UI (set once the adapter runs).
    pub(crate) adapter: Arc<std::sync::OnceLock<ui_api::AdapterView>>,
    /// The recording/alerting rule groups, for `/api/v1/rules` (set once they run).
    pub(crate) rules: Arc<std::sync::OnceLock<Arc<crate::rules::RuleManager>>>,
}

/// The wait after start before `/-/ready` answers 200 (`--ready-after`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WarmUp {
    pub(crate) started: std::time::Instant,
    pub(crate) wait: std::time::Duration,
}

/// The full router for the plain HTTP listener.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", axum::routing::post(reload).put(reload))
        .route("/api/v1/targets", get(targets::targets))
        .route("/api/v1/metadata", get(metadata::metadata))
        .route("/api/v1/targets/metadata", get(metadata::targets_metadata))
        .route("/api/v1/rules", get(rules_api::rules))
        .route("/api/v1/alerts", get(rules_api::alerts))
        .route("/metrics", get(self_metrics))
        .merge(remote_write::routes())
        .merge(admin::routes())
        .merge(export::routes())
        .merge(prom_api::routes())
        .merge(ui::routes())
        .merge(ui_api::routes())
        .layer(axum::middleware::from_fn(log_server_errors))
        .with_state(state)
}

/// Largest error body read back to log its cause (error bodies are a line or a small JSON).
const LOGGED_ERROR_BODY_BYTES: u64 = 4096;

/// Logs every 5xx answer once, with its method, path and cause (the response body, when it is
/// small and its size known); the client gets the response unchanged.
pub(crate) async fn log_server_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    if !status.is_server_error() {
        return response;
    }
    let size = axum::body::HttpBody::size_hint(response.body()).exact();
    if size.is_none_or(|n| n > LOGGED_ERROR_BODY_BYTES) {
        tracing::warn!(%method, %path, status = status.as_u16(), "request failed");
        return response;
    }
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, LOGGED_ERROR_BODY_BYTES as usize).await {
        Ok(bytes) => {
            let cause = String::from_utf8_lossy(&bytes);
            tracing::warn!(%method, %path, status = status.as_u16(), cause = %cause.trim(), "request failed");
            Response::from_parts(parts, axum::body::Body::from(bytes))
        }
        Err(e) => {
            tracing::warn!(%method, %path, status = status.as_u16(), error = %e, "request failed (its body could not be read)");
            Response::from_parts(parts, axum::body::Body::empty())
        }
    }
}

/// `POST /-/reload`: re-reads the config file, as SIGHUP does; 403 without
/// `--web.enable-lifecycle`, 500 with the reason when the new file is refused (as Prometheus).
async fn reload(State(state): State<AppState>) -> (StatusCode, String) {
    let Some(reloader) = state.lifecycle.get() else {
        return (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.\n".into());
    };
    match reloader.reload(true) {
        Ok(_) => (StatusCode::OK, String::new()),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("failed to reload config: {error}\n")),
    }
}

async fn healthy() -> &'static str {
    "Ringtail is Healthy.\n"
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if !state.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n".to_string());
    }
    if let Some(warm_up) = state.warm_up.get() {
        let elapsed = warm_up.started.elapsed();
        if elapsed < warm_up.wait {
            let to_go = std::time::Duration::from_secs((warm_up.wait - elapsed).as_secs() + 1);
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "Ringtail is not ready: it waits {} after start (--ready-after) so that a rule's window \
                     holds only data received since; {} to go.\n",
                    humantime::format_duration(warm_up.wait),
                    humantime::format_duration(to_go)
                ),
            );
        }
    }
    match writes_refused_reason(&state) {
        None => (StatusCode::OK, "Ringtail is Ready.\n".to_string()),
        Some(reason) => (StatusCode::OK, format!("Ringtail is Ready; writes refused: {reason}\n")),
    }
}

/// Why the store refuses writes now, or `None` while it accepts them.
pub(crate) fn writes_refused_reason(state: &AppState) -> Option<String> {
    let health = state.db.write_health();
    if health.read_only {
        return Some(match &state.read_only_reason {
            Some(reason) => format!("the store is read-only: {reason}"),
            None => "the store is read-only".to_string(),
        });
    }
    health.no_space
}

async fn self_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics failed: {e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use ingest::proto::v1;
    use tower::ServiceExt;

    /// The router over a store reopened read-only, as the server opens one on a full volume.
    fn read_only_app() -> Router {
        let options = tsdb::Options::in_memory();
        let db = tsdb::Db::open(options.clone()).unwrap();
        db.append(&[tsdb::SeriesSamples::labels(&[("__name__", "up")], &[tsdb::Sample::new(tsdb::now_ms(), 1.0)])])
            .unwrap();
        drop(db);
        let db = Arc::new(tsdb::Db::open(tsdb::Options { read_only: true, ..options }).unwrap());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(store_metrics::StoreCollector::new(db.clone())));
        let ingest_metrics = ingest::IngestMetrics::register(&mut registry);
        let remote_write = Arc::new(remote_write::RemoteWriteState::new(
            &mut registry,
            remote_write::RemoteWriteSettings::default(),
            ingest_metrics,
            db.clone(),
            Arc::new(crate::workers::Workers::start(1, 0, 0.0).unwrap()),
        ));
        let query_api = Arc::new(prom_api::QueryApiState::new(&mut registry));
        router(AppState {
            engine: Arc::new(query::Engine::new(db.clone(), query::EngineOptions::default())),
            db,
            remote_write,
            query_api,
            registry: Arc::new(registry),
            read_only_reason: Some("no space left at start".into()),
            ready: Arc::new(AtomicBool::new(true)),
            warm_up: Arc::default(),
            lifecycle: Arc::default(),
            enable_admin_api: false,
            scraper: Arc::default(),
            adapter: Arc::default(),
            rules: Arc::default(),
        })
    }

    async fn call(app: &Router, request: http::Request<Body>) -> (StatusCode, http::HeaderMap, String) {
        let response = app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn get(path: &str) -> http::Request<Body> {
        http::Request::get(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn a_read_only_store_stays_ready_answers_queries_and_refuses_writes_with_503() {
        let app = read_only_app();
        let (status, _, body) = call(&app, get("/-/ready")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "Ringtail is Ready; writes refused: the store is read-only: no space left at start\n");

        let series = v1::TimeSeries {
            labels: vec![v1::Label { name: "__name__".into(), value: "new".into() }],
            samples: vec![v1::Sample { value: 1.0, timestamp: tsdb::now_ms() }],
            ..Default::default()
        };
        let write = http::Request::post("/api/v1/write")
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(header::CONTENT_ENCODING, "snappy")
            .body(Body::from(ingest::remote_write::encode_body(&v1::WriteRequest {
                timeseries: vec![series],
                metadata: vec![],
            })))
            .unwrap();
        let (status, headers, body) = call(&app, write).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("store is read-only"), "{body}");
        assert!(headers.contains_key(header::RETRY_AFTER));

        let (status, _, body) = call(&app, get("/api/v1/query?query=up")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("\"__name__\":\"up\""), "{body}");
        let (_, _, metrics) = call(&app, get("/metrics")).await;
        assert!(metrics.lines().any(|l| l == "ringtail_tsdb_writes_accepted 0"), "{metrics}");
        assert!(metrics.lines().any(|l| l == "ringtail_remote_write_requests_total{protocol=\"v1\",code=\"503\"} 1"));
    }
}
