//! The Prometheus HTTP query API (`/api/v1/query`, `query_range`, `series`, `labels`, …).

use super::AppState;
use axum::Router;
use prometheus_client::registry::Registry;

/// Query API settings and counters.
#[derive(Debug, Default)]
pub struct QueryApiState {}

impl QueryApiState {
    pub fn new(registry: &mut Registry) -> Self {
        let _ = registry;
        QueryApiState {}
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
}
