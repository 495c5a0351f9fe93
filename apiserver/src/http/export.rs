//! `GET /api/v1/export`: raw samples as JSON lines, streamed.

use super::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
}
