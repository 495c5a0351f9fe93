//! The HTTP router on `--listen`: health and readiness, self-metrics, and the routes each surface
//! module contributes (remote-write, export, the Prometheus query API).

pub mod export;
pub mod prom_api;
pub mod remote_write;

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
    pub remote_write: Arc<remote_write::RemoteWriteState>,
    pub query_api: Arc<prom_api::QueryApiState>,
    /// Self-metrics registry; modules register their metrics at start.
    pub registry: Arc<Registry>,
    /// Set once every listener is up; `/-/ready` answers 503 before.
    pub ready: Arc<AtomicBool>,
}

/// The full router for the plain HTTP listener.
pub fn router(state: AppState) -> Router {
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
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "Ringtail is Ready.\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n")
    }
}

async fn self_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    crate::server::refresh_store_gauges(&state);
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
