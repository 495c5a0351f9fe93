//! The HTTP router on `--listen`: health and readiness, self-metrics (with the store's gauges,
//! refreshed on each scrape), and the routes each surface module contributes (remote-write,
//! export, the Prometheus query API). Its state is built by the server and owned by it.

pub mod export;
pub mod prom_api;
pub mod remote_write;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
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
    /// The store's figures in the registry, refreshed on every `/metrics` scrape.
    pub(crate) store_gauges: StoreGauges,
    /// Set once every listener is up; `/-/ready` answers 503 before.
    pub(crate) ready: Arc<AtomicBool>,
}

/// Gauges of the store's size, registered once per server.
#[derive(Clone, Default)]
pub(crate) struct StoreGauges {
    series: Gauge<i64, AtomicI64>,
    samples: Gauge<i64, AtomicI64>,
    bytes_on_disk: Gauge<i64, AtomicI64>,
}

impl StoreGauges {
    /// Creates the gauges and registers them in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> StoreGauges {
        let gauges = StoreGauges::default();
        registry.register("ringtail_tsdb_series", "Series in the store", gauges.series.clone());
        registry.register("ringtail_tsdb_samples", "Samples in the store", gauges.samples.clone());
        registry.register("ringtail_tsdb_disk_bytes", "Bytes the store uses on disk", gauges.bytes_on_disk.clone());
        gauges
    }

    /// Copies the store's current figures into the gauges.
    fn refresh(&self, db: &tsdb::Db) {
        let stats = db.stats();
        self.series.set(stats.series as i64);
        self.samples.set(stats.samples as i64);
        self.bytes_on_disk.set(stats.bytes_on_disk as i64);
    }
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
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "Ringtail is Ready.\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n")
    }
}

async fn self_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    state.store_gauges.refresh(&state.db);
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
