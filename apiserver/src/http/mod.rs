//! The HTTP router on `--listen`: health and readiness, self-metrics (with the store's figures,
//! read on each scrape by `store_metrics`), and the routes each surface module contributes
//! (remote-write, export, the Prometheus query API and `tsdb_status`). Its state is built by the
//! server and owned by it.
//!
//! `/-/ready` answers 200 once every listener is up and as long as queries are answered, also
//! while the store refuses writes (a full volume, a read-only start): restarting or removing the
//! pod would not free space, and the queries the HPA needs still work. Its body then says
//! `writes refused: <reason>`.

pub mod export;
pub mod prom_api;
pub mod remote_write;
pub(crate) mod store_metrics;
pub(crate) mod tsdb_status;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
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
}

/// The full router for the plain HTTP listener.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/metrics", get(self_metrics))
        .merge(remote_write::routes())
        .merge(export::routes())
        .merge(prom_api::routes())
        .with_state(state)
}

async fn healthy() -> &'static str {
    "Ringtail is Healthy.\n"
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if !state.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n".to_string());
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
