//! The admin endpoints of the Prometheus API, served only with `--web.enable-admin-api` (as
//! Prometheus; without it they answer 503 `unavailable` "admin APIs disabled"):
//!
//! - `POST|PUT /api/v1/admin/tsdb/delete_series?match[]=…&start=…&end=…` removes the matching
//!   series for good and answers 204. The ring store deletes whole series: a window that holds
//!   only part of a matching series' samples is refused with 400, nothing deleted (see
//!   `tsdb::Db::delete_series`); without `start`/`end` every matching series goes.
//! - `POST|PUT /api/v1/admin/tsdb/clean_tombstones` answers 204: a deletion takes effect at once,
//!   there is nothing left to clean.
//!
//! `snapshot` is not offered (the ring store has no blocks to hard-link); it answers 404 as any
//! unknown path.

use super::prom_api::{finish, on_store_with, selectors, time_param, ApiError, UrlAndFormParams};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::time::Instant;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/tsdb/delete_series", post(delete_series).put(delete_series))
        .route("/api/v1/admin/tsdb/clean_tombstones", post(clean_tombstones).put(clean_tombstones))
}

fn disabled() -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        error_type: "unavailable",
        message: "admin APIs disabled".into(),
    }
}

async fn delete_series(State(state): State<AppState>, form: Result<UrlAndFormParams, ApiError>) -> Response {
    let started = Instant::now();
    let result = async {
        if !state.enable_admin_api {
            return Err(disabled());
        }
        let UrlAndFormParams(params) = form?;
        let sets = selectors(&params)?;
        if sets.is_empty() {
            return Err(ApiError::bad_data("no match[] parameter provided"));
        }
        let start = time_param(&params, "start", i64::MIN)?;
        let end = time_param(&params, "end", i64::MAX)?;
        let db = state.db.clone();
        let removed = on_store_with(
            move || {
                let mut removed = 0;
                for matchers in &sets {
                    removed += db.delete_series(matchers, start, end)?.series_removed;
                }
                Ok(removed)
            },
            |error| match error {
                e @ tsdb::Error::PartialDeletion { .. } => Some(ApiError::bad_data(e.to_string())),
                e @ tsdb::Error::ReadOnly(_) => Some(ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    error_type: "unavailable",
                    message: e.to_string(),
                }),
                _ => None,
            },
        )
        .await?;
        tracing::info!(removed, "delete_series: series removed on request");
        Ok(String::new())
    }
    .await;
    no_content(finish(&state, "admin_delete_series", started, result))
}

async fn clean_tombstones(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let result = if state.enable_admin_api { Ok(String::new()) } else { Err(disabled()) };
    no_content(finish(&state, "admin_clean_tombstones", started, result))
}

/// A success becomes 204 with no body, as Prometheus answers its admin calls.
fn no_content(response: Response) -> Response {
    if response.status() == StatusCode::OK {
        StatusCode::NO_CONTENT.into_response()
    } else {
        response
    }
}
