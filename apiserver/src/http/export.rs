//! `GET /api/v1/export?match[]=<selector>&start=&end=` is the raw-sample export: one JSON object
//! per line and per series, shaped like VictoriaMetrics' export
//! (`{"metric":{…},"values":[…],"timestamps":[…]}`), for tests, backups and migration.
//!
//! Lines are streamed to the client one series at a time. Values that JSON cannot carry as numbers
//! are strings: `"NaN"`, `"+Inf"`, `"-Inf"`, and `"StaleNaN"` for Prometheus' staleness marker
//! (kept, unlike the query API, because an export must round-trip what was stored). `start`/`end`
//! are Unix seconds (fractions allowed) or RFC 3339; by default everything stored is exported
//! (samples up to 10 minutes ahead of the clock included).

use super::AppState;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::BTreeSet;
use tsdb::{is_stale_nan, Matcher, SelectedSeries};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/export", get(export))
}

async fn export(State(state): State<AppState>, Query(params): Query<Vec<(String, String)>>) -> Response {
    let request = match ExportRequest::from_params(&params) {
        Ok(r) => r,
        Err(message) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    };
    let db = state.db.clone();
    let selected = tokio::task::spawn_blocking(move || {
        let mut seen = BTreeSet::new();
        let mut out: Vec<SelectedSeries> = Vec::new();
        for matchers in &request.selectors {
            for series in db.select(matchers, request.start_ms, request.end_ms)? {
                if seen.insert(series.id) {
                    out.push(series);
                }
            }
        }
        Ok::<_, tsdb::Error>(out)
    })
    .await;
    let series = match selected {
        Ok(Ok(series)) => series,
        Ok(Err(e)) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("reading the store failed: {e}\n")).into_response()
        }
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("BUG: export task failed: {e}\n")).into_response()
        }
    };
    let lines = futures::stream::iter(series.into_iter().map(|s| Ok::<_, std::convert::Infallible>(series_line(&s))));
    ([(header::CONTENT_TYPE, "application/stream+json")], Body::from_stream(lines)).into_response()
}

/// The parsed query string.
struct ExportRequest {
    selectors: Vec<Vec<Matcher>>,
    start_ms: i64,
    end_ms: i64,
}

impl ExportRequest {
    fn from_params(params: &[(String, String)]) -> Result<ExportRequest, String> {
        let mut selectors = Vec::new();
        let mut start_ms = i64::MIN;
        let mut end_ms = i64::MAX;
        for (key, value) in params {
            match key.as_str() {
                "match[]" => selectors.push(parse_match(value)?),
                "start" => start_ms = parse_time(value)?,
                "end" => end_ms = parse_time(value)?,
                _ => {}
            }
        }
        if selectors.is_empty() {
            return Err("missing match[] parameter: give at least one series selector, e.g. match[]={job=\"x\"}".into());
        }
        if start_ms > end_ms {
            return Err(format!("start ({start_ms} ms) is after end ({end_ms} ms)"));
        }
        Ok(ExportRequest { selectors, start_ms, end_ms })
    }
}

/// A `match[]` series selector, in this endpoint's wording.
fn parse_match(text: &str) -> Result<Vec<Matcher>, String> {
    let matchers = query::parse_selector(text).map_err(|e| match e {
        query::SelectorError::Parse(e) => format!("invalid match[] {text:?}: {e}"),
        query::SelectorError::NotASelector => format!("match[] {text:?} is not a series selector"),
    })?;
    if matchers.iter().all(Matcher::matches_empty) {
        return Err(format!("match[] {text:?} must contain at least one matcher that does not match the empty string"));
    }
    Ok(matchers)
}

/// A `start`/`end` time (Unix seconds or RFC 3339), in this endpoint's wording.
fn parse_time(text: &str) -> Result<i64, String> {
    query::parse_time_ms(text).map_err(|_| format!("invalid time {text:?}: use Unix seconds or RFC 3339"))
}

/// One JSON line for a series.
fn series_line(series: &SelectedSeries) -> Vec<u8> {
    let metric: serde_json::Map<String, serde_json::Value> =
        series.labels.iter().map(|l| (l.name.clone(), serde_json::Value::String(l.value.clone()))).collect();
    let mut values = Vec::new();
    let mut timestamps = Vec::new();
    for sample in series.samples() {
        timestamps.push(serde_json::Value::from(sample.ts_ms));
        values.push(json_value(sample.value));
    }
    let line = serde_json::json!({ "metric": metric, "values": values, "timestamps": timestamps });
    let mut bytes = line.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

fn json_value(value: f64) -> serde_json::Value {
    if value.is_finite() {
        return serde_json::Value::from(value);
    }
    let text = if is_stale_nan(value) {
        "StaleNaN"
    } else if value.is_nan() {
        "NaN"
    } else if value > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    };
    serde_json::Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_selectors() {
        assert_eq!(parse_time("1.5").unwrap(), 1500);
        assert_eq!(parse_time("1970-01-01T00:00:02Z").unwrap(), 2000);
        assert_eq!(parse_time("soon"), Err("invalid time \"soon\": use Unix seconds or RFC 3339".into()));
        assert_eq!(parse_match("up{job=\"a\"}").unwrap().len(), 2);
        assert!(parse_match("{job=~\".*\"}").is_err());
        assert_eq!(parse_match("rate(up[5m])"), Err("match[] \"rate(up[5m])\" is not a series selector".into()));
        assert_eq!(
            parse_match("{a=\"x\""),
            Err("invalid match[] \"{a=\\\"x\\\"\": unexpected end of input in label matching, expected \",\" or \"}\""
                .into())
        );
    }

    #[test]
    fn special_values_are_strings() {
        assert_eq!(json_value(1.5), serde_json::json!(1.5));
        assert_eq!(json_value(f64::NAN), serde_json::json!("NaN"));
        assert_eq!(json_value(tsdb::stale_nan()), serde_json::json!("StaleNaN"));
        assert_eq!(json_value(f64::NEG_INFINITY), serde_json::json!("-Inf"));
    }
}
