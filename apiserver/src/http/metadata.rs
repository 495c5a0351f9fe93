//! `metadata` answers Prometheus's metadata endpoints: `GET /api/v1/metadata` (per metric family,
//! the distinct type/help/unit seen across the scraped targets and the remote-write senders) and
//! `GET /api/v1/targets/metadata` (per scraped target), in Prometheus 2.42's JSON shape and with
//! its parameters (`limit`, `metric`, `match_target`; plus `limit_per_metric`, which Prometheus
//! reads from 2.45 on). The metadata itself is kept by `ingest` (see `ingest::MetricMetadata`).

use super::prom_api::{finish, param, params, ApiError, Params, UrlAndFormParams};
use super::AppState;
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// `GET /api/v1/metadata`.
pub(crate) async fn metadata(State(state): State<AppState>, form: Result<UrlAndFormParams, ApiError>) -> Response {
    let started = Instant::now();
    let result = params(form).and_then(|p| metric_metadata(&state, &p));
    finish(&state, "metadata", started, result)
}

/// `GET /api/v1/targets/metadata`.
pub(crate) async fn targets_metadata(
    State(state): State<AppState>,
    form: Result<UrlAndFormParams, ApiError>,
) -> Response {
    let started = Instant::now();
    let result = params(form).and_then(|p| target_metadata(&state, &p));
    finish(&state, "targets_metadata", started, result)
}

/// A count parameter as Prometheus reads it: absent or empty is -1 (no limit), a negative number
/// too; anything but an integer is an error.
fn limit_param(params: &Params, name: &str) -> Result<i64, ApiError> {
    match param(params, name) {
        None | Some("") => Ok(-1),
        Some(text) => text.parse().map_err(|_| ApiError::bad_data(format!("{name} must be a number"))),
    }
}

fn within(limit: i64, count: usize) -> bool {
    limit < 0 || (count as i64) < limit
}

fn metric_metadata(state: &AppState, params: &Params) -> Result<String, ApiError> {
    let limit = limit_param(params, "limit")?;
    let limit_per_metric = limit_param(params, "limit_per_metric")?;
    let metric = param(params, "metric").filter(|m| !m.is_empty());
    let mut by_metric: BTreeMap<String, BTreeSet<(&'static str, String, String)>> = BTreeMap::new();
    let mut add = |m: &ingest::MetricMetadata| {
        if metric.is_none_or(|wanted| wanted == m.metric) {
            by_metric.entry(m.metric.clone()).or_default().insert((m.kind, m.help.clone(), m.unit.clone()));
        }
    };
    if let Some(scraper) = state.scraper.get() {
        for target in scraper.target_metadata() {
            target.metadata.iter().for_each(&mut add);
        }
    }
    for entry in state.remote_write.receiver().metadata().entries() {
        add(&entry);
    }
    let mut data = Map::new();
    for (name, set) in by_metric {
        if !within(limit, data.len()) {
            break;
        }
        let entries: Vec<Value> = set
            .into_iter()
            .enumerate()
            .take_while(|(i, _)| within(limit_per_metric, *i))
            .map(|(_, (kind, help, unit))| json!({"type": kind, "help": help, "unit": unit}))
            .collect();
        data.insert(name, Value::Array(entries));
    }
    Ok(json!({"status": "success", "data": data}).to_string())
}

fn target_metadata(state: &AppState, params: &Params) -> Result<String, ApiError> {
    let limit = limit_param(params, "limit")?;
    let matchers = match param(params, "match_target").filter(|t| !t.is_empty()) {
        None => Vec::new(),
        Some(text) => query::parse_selector(text).map_err(|e| {
            ApiError::bad_data(format!("invalid parameter \"match_target\": {text:?}: {}", describe(&e, text)))
        })?,
    };
    let metric = param(params, "metric").filter(|m| !m.is_empty());
    let mut out: Vec<Value> = Vec::new();
    let targets = state.scraper.get().map(|s| s.target_metadata()).unwrap_or_default();
    for target in targets {
        // As Prometheus: the limit is looked at per target, so the last target's entries all come.
        if !within(limit, out.len()) {
            break;
        }
        if !matchers.iter().all(|m| m.matches(target.labels.get(&m.name).unwrap_or(""))) {
            continue;
        }
        let labels: Map<String, Value> =
            target.labels.iter().map(|l| (l.name.clone(), Value::String(l.value.clone()))).collect();
        for m in target.metadata.iter() {
            match metric {
                None => out.push(json!({
                    "target": labels, "metric": m.metric, "type": m.kind, "help": m.help, "unit": m.unit,
                })),
                Some(wanted) if wanted == m.metric => {
                    out.push(json!({"target": labels, "type": m.kind, "help": m.help, "unit": m.unit}))
                }
                Some(_) => {}
            }
        }
    }
    Ok(json!({"status": "success", "data": out}).to_string())
}

fn describe(error: &query::SelectorError, text: &str) -> String {
    match error {
        query::SelectorError::Parse(e) => {
            let (line, col) = query::line_col(text, e.pos);
            format!("{line}:{col}: parse error: {}", e.message)
        }
        query::SelectorError::NotASelector => "not a series selector".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_prometheus() {
        let params: Params = vec![("limit".into(), "2".into()), ("limit_per_metric".into(), "x".into())];
        assert_eq!(limit_param(&params, "limit").unwrap(), 2);
        assert_eq!(limit_param(&params, "absent").unwrap(), -1);
        let error = limit_param(&params, "limit_per_metric").unwrap_err();
        assert_eq!(error.message, "limit_per_metric must be a number");
        assert!(within(-1, 1_000_000) && within(2, 1) && !within(2, 2) && !within(0, 0));
    }
}
