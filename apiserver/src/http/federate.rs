//! `GET /federate` is Prometheus's federation endpoint: for the series the `match[]` selectors
//! pick, the newest sample within the lookback window (`--query.lookback-delta`), written in the
//! text exposition format 0.0.4 as Prometheus 2.42 writes it — one `# TYPE <name> untyped` per
//! metric name, families in name order, every sample with its timestamp, staleness markers left
//! out, and the `global.external_labels` (plus `instance=""`) added to series that lack them, so
//! a federating Prometheus with `honor_labels: true` keeps the original `job` and `instance`.
//!
//! Unlike Prometheus 2.42, which answers an empty 200, a request without `match[]` is a 400: a
//! federation job without a selector is a mistake. The answer is bounded by
//! [`MAX_FEDERATE_SERIES`].

use super::prom_api::{params, selectors, ApiError, UrlAndFormParams};
use super::status::StatusState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Most series one `/federate` answer may hold; more is a 422 asking for narrower `match[]`
/// selectors (the whole answer is built in memory before it is sent).
pub const MAX_FEDERATE_SERIES: usize = 200_000;

/// What `/federate` reads.
pub(crate) struct FederateState {
    pub(crate) db: Arc<tsdb::Db>,
    /// `--query.lookback-delta`: how old the newest sample of a series may be.
    pub(crate) lookback: Duration,
    /// For the external labels of the configuration in force.
    pub(crate) status: Arc<StatusState>,
}

pub(crate) fn routes(state: Arc<FederateState>) -> Router {
    Router::new().route("/federate", get(federate).post(federate)).with_state(state)
}

async fn federate(State(state): State<Arc<FederateState>>, form: Result<UrlAndFormParams, ApiError>) -> Response {
    match answer(&state, form).await {
        Ok(body) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response(),
        Err((status, message)) => (status, format!("{message}\n")).into_response(),
    }
}

async fn answer(
    state: &FederateState,
    form: Result<UrlAndFormParams, ApiError>,
) -> Result<String, (StatusCode, String)> {
    let bad = |e: ApiError| (e.status, e.message);
    let params = params(form).map_err(bad)?;
    let sets = selectors(&params).map_err(bad)?;
    if sets.is_empty() {
        return Err((StatusCode::BAD_REQUEST, "no match[] parameter provided".into()));
    }
    let db = state.db.clone();
    let maxt_ms = tsdb::now_ms();
    let mint_ms = maxt_ms - i64::try_from(state.lookback.as_millis()).unwrap_or(i64::MAX / 2);
    let found = tokio::task::spawn_blocking(move || -> Result<BTreeMap<tsdb::Labels, (i64, f64)>, tsdb::Error> {
        let mut found = BTreeMap::new();
        for matchers in &sets {
            for latest in db.select_latest(matchers, mint_ms, maxt_ms, None)? {
                // The exposition formats have no staleness marker: a stale series is left out.
                if !tsdb::is_stale_nan(latest.sample.value) {
                    found.insert(latest.labels, (latest.sample.ts_ms, latest.sample.value));
                }
            }
            if found.len() > MAX_FEDERATE_SERIES {
                break;
            }
        }
        Ok(found)
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("federation failed: {e}")))?
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("reading the store failed: {e}")))?;
    if found.len() > MAX_FEDERATE_SERIES {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the match[] selectors pick more than {MAX_FEDERATE_SERIES} series; federate with narrower ones"),
        ));
    }
    Ok(render(found, &external_labels(&state.status)))
}

/// `global.external_labels` of the configuration in force, with `instance` (empty) added when
/// absent, sorted by name, as Prometheus attaches them.
fn external_labels(status: &StatusState) -> Vec<(String, String)> {
    let mut labels: BTreeMap<String, String> = status
        .reloader
        .get()
        .map(|r| r.status().0)
        .and_then(|config| config.get("global")?.get("external_labels").cloned())
        .and_then(|v| serde_yaml::from_value(v).ok())
        .unwrap_or_default();
    labels.entry("instance".into()).or_default();
    labels.into_iter().collect()
}

/// The exposition text of `series` (sorted by metric name, then labels).
fn render(series: BTreeMap<tsdb::Labels, (i64, f64)>, external: &[(String, String)]) -> String {
    let mut by_name: Vec<(&str, &tsdb::Labels, (i64, f64))> = series
        .iter()
        .filter_map(|(labels, sample)| {
            labels.get(tsdb::METRIC_NAME).filter(|n| !n.is_empty()).map(|n| (n, labels, *sample))
        })
        .collect();
    by_name.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut out = String::new();
    let mut last_name = None;
    for (name, labels, (ts_ms, value)) in by_name {
        if last_name != Some(name) {
            let _ = writeln!(out, "# TYPE {name} untyped");
            last_name = Some(name);
        }
        out.push_str(name);
        let mut pairs: Vec<(&str, &str)> = labels
            .iter()
            .filter(|l| l.name != tsdb::METRIC_NAME && !l.value.is_empty())
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        for (name, value) in external {
            if labels.get(name).is_none_or(str::is_empty) {
                pairs.push((name, value));
            }
        }
        if !pairs.is_empty() {
            out.push('{');
            for (i, (name, value)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{name}=\"{}\"", escape_label_value(value));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {} {ts_ms}", go_float(value));
    }
    out
}

fn escape_label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n").replace('"', "\\\"")
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it (what Prometheus's text
/// encoder uses): shortest digits, an exponent (`1e+06`, `1.5e-07`) when the decimal exponent is
/// below -4 or at least the larger of 6 and the digit count (1 with `+Inf`, `-Inf`, `NaN`).
fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let scientific = format!("{:e}", v.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits = mantissa.replace('.', "");
    let (nd, dp) = (digits.len() as i32, exponent + 1);
    let mut eprec = 6;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    let sign = if v.is_sign_negative() && v != 0.0 { "-" } else { "" };
    if exponent < -4 || exponent >= eprec {
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
    } else {
        format!("{sign}{}", v.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_g_format() {
        for (v, text) in [
            (0.0, "0"),
            (1.0, "1"),
            (-2.5, "-2.5"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e21, "1e+21"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(go_float(v), text, "{v}");
        }
    }

    #[test]
    fn families_sorted_with_external_labels_where_missing() {
        let mut series = BTreeMap::new();
        series.insert(tsdb::Labels::from_pairs([("__name__", "b"), ("job", "j"), ("path", "a\"b")]), (7, 1e6));
        series.insert(tsdb::Labels::from_pairs([("__name__", "a"), ("instance", "h:1")]), (5, 0.5));
        series.insert(tsdb::Labels::from_pairs([("__name__", "b"), ("job", "i")]), (7, 2.0));
        let external = vec![("instance".to_string(), String::new()), ("region".to_string(), "eu".to_string())];
        let text = render(series, &external);
        assert_eq!(
            text,
            "# TYPE a untyped\na{instance=\"h:1\",region=\"eu\"} 0.5 5\n\
             # TYPE b untyped\nb{job=\"i\",instance=\"\",region=\"eu\"} 2 7\n\
             b{job=\"j\",path=\"a\\\"b\",instance=\"\",region=\"eu\"} 1e+06 7\n"
        );
    }
}
