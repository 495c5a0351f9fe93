//! `POST /api/v1/write`: the Prometheus remote-write receiver's HTTP face (decoding lives in
//! `ingest`).

use super::AppState;
use axum::Router;
use prometheus_client::registry::Registry;

/// Remote-write settings and counters.
#[derive(Debug, Default)]
pub struct RemoteWriteState {}

impl RemoteWriteState {
    pub fn new(registry: &mut Registry) -> Self {
        let _ = registry;
        RemoteWriteState {}
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
}
