//! `GET /api/v1/targets`: the scraper's active targets (labels before and after relabeling,
//! health, last error, last scrape time and duration, interval and timeout) and the targets
//! relabeling dropped, in Prometheus's JSON shape, with its `state` (`active`, `dropped`,
//! `any`) and `scrapePool` filters — the answer to "is my pod being scraped, and why not?".

use super::prom_api::{finish, param, params, ApiError, UrlAndFormParams};
use super::AppState;
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::time::Instant;

pub(crate) async fn targets(State(state): State<AppState>, form: Result<UrlAndFormParams, ApiError>) -> Response {
    let started = Instant::now();
    let result = answer(&state, form);
    finish(&state, "targets", started, result)
}

fn answer(state: &AppState, form: Result<UrlAndFormParams, ApiError>) -> Result<String, ApiError> {
    let params = params(form)?;
    let wanted = param(&params, "state").unwrap_or("any").to_ascii_lowercase();
    let (active, dropped) = match wanted.as_str() {
        "" | "any" => (true, true),
        "active" => (true, false),
        "dropped" => (false, true),
        other => {
            return Err(ApiError::bad_data(format!("invalid parameter \"state\": {other:?} (active, dropped or any)")))
        }
    };
    let pool = param(&params, "scrapePool").filter(|p| !p.is_empty());
    let in_pool = |job: &str| pool.is_none_or(|p| p == job);
    let mut active_targets = Vec::new();
    let mut dropped_targets = Vec::new();
    if let Some(scraper) = state.scraper.get() {
        if active {
            active_targets = scraper.targets().into_iter().filter(|t| in_pool(&t.job)).map(active_json).collect();
        }
        if dropped {
            let (list, _total) = scraper.dropped_targets();
            dropped_targets = list
                .into_iter()
                .filter(|t| in_pool(&t.job))
                .map(|t| json!({"discoveredLabels": labels_json(&t.discovered_labels)}))
                .collect();
        }
    }
    let body = json!({
        "status": "success",
        "data": {"activeTargets": active_targets, "droppedTargets": dropped_targets},
    });
    Ok(body.to_string())
}

fn labels_json(labels: &tsdb::Labels) -> Value {
    Value::Object(labels.iter().map(|l| (l.name.clone(), Value::String(l.value.clone()))).collect::<Map<_, _>>())
}

fn active_json(target: ingest::TargetStatus) -> Value {
    let health = match target.health.up {
        Some(true) => "up",
        Some(false) => "down",
        None => "unknown",
    };
    let last_scrape = if target.health.scrapes == 0 {
        "0001-01-01T00:00:00Z".to_string()
    } else {
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(target.health.last_scrape_ts_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    json!({
        "discoveredLabels": labels_json(&target.discovered_labels),
        "labels": labels_json(&target.labels),
        "scrapePool": target.job,
        "scrapeUrl": target.url,
        "globalUrl": target.url,
        "lastError": target.health.last_error.unwrap_or_default(),
        "lastScrape": last_scrape,
        "lastScrapeDuration": target.health.last_duration_seconds,
        "health": health,
        "scrapeInterval": crate::adapter::rules::config::prom_duration(target.interval),
        "scrapeTimeout": crate::adapter::rules::config::prom_duration(target.timeout),
    })
}
