//! `GET /api/v1/status/tsdb` is the store's cardinality as Prometheus 2.42 reports its head: the
//! series, label pairs, chunks and time span, and the top metric names, label names (by value
//! count and by bytes of values) and label pairs, in Prometheus's JSON shape, so Grafana's and
//! Prometheus's own "TSDB status" pages read it.
//!
//! Prometheus 2.42 always lists the top 10; later versions take `limit`, which is accepted here
//! too (1 ..= [`MAX_LIMIT`]). An empty store reports `minTime` `i64::MAX` and `maxTime`
//! `i64::MIN`, as Prometheus's empty head does.

use super::prom_api::{blocking, finish, param, params, ApiError, Params, UrlAndFormParams};
use super::AppState;
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};
use std::time::Instant;

/// Entries per list when no `limit` is given (Prometheus's fixed count).
pub(crate) const DEFAULT_LIMIT: usize = 10;
/// Largest `limit` accepted: the lists are built from the whole index on each request.
pub(crate) const MAX_LIMIT: usize = 10_000;

pub(crate) async fn tsdb_status(State(state): State<AppState>, form: Result<UrlAndFormParams, ApiError>) -> Response {
    let started = Instant::now();
    let result = answer(&state, form).await;
    finish(&state, "status_tsdb", started, result)
}

async fn answer(state: &AppState, form: Result<UrlAndFormParams, ApiError>) -> Result<String, ApiError> {
    let limit = limit(&params(form)?)?;
    let db = state.db.clone();
    let figures = blocking(move || db.cardinality(limit)).await?;
    Ok(render(&figures).to_string())
}

/// The `limit` parameter: a whole number in 1 ..= [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
fn limit(params: &Params) -> Result<usize, ApiError> {
    let Some(text) = param(params, "limit").filter(|t| !t.is_empty()) else { return Ok(DEFAULT_LIMIT) };
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_data(format!(
            "invalid parameter \"limit\": {text:?} is not a whole number in 1..={MAX_LIMIT}"
        ))),
    }
}

/// Prometheus's `TSDBStatus` JSON for `figures`.
fn render(figures: &tsdb::Cardinality) -> Value {
    let stats = |list: &[(String, u64)]| -> Value {
        list.iter().map(|(name, value)| json!({"name": name, "value": value})).collect()
    };
    json!({
        "status": "success",
        "data": {
            "headStats": {
                "numSeries": figures.num_series,
                "numLabelPairs": figures.num_label_pairs,
                "chunkCount": figures.chunk_count,
                "minTime": figures.min_time_ms.unwrap_or(i64::MAX),
                "maxTime": figures.max_time_ms.unwrap_or(i64::MIN),
            },
            "seriesCountByMetricName": stats(&figures.series_count_by_metric_name),
            "labelValueCountByLabelName": stats(&figures.label_value_count_by_label_name),
            "memoryInBytesByLabelName": stats(&figures.memory_in_bytes_by_label_name),
            "seriesCountByLabelValuePair": stats(&figures.series_count_by_label_value_pair),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit_of(text: &str) -> Result<usize, ApiError> {
        limit(&vec![("limit".to_string(), text.to_string())])
    }

    #[test]
    fn limit_defaults_to_prometheus_count_and_is_bounded() {
        assert_eq!(limit(&Vec::new()).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit_of("").unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit_of("3").unwrap(), 3);
        assert_eq!(limit_of("10000").unwrap(), MAX_LIMIT);
        for bad in ["0", "-1", "10001", "ten", "1.5", "99999999999999999999999"] {
            let err = limit_of(bad).unwrap_err();
            assert_eq!((err.status.as_u16(), err.error_type), (400, "bad_data"), "{bad}");
            assert!(err.message.contains("\"limit\""), "{}", err.message);
        }
    }

    #[test]
    fn renders_prometheus_shape_from_the_store() {
        let db = tsdb::Db::open(tsdb::Options::in_memory()).unwrap();
        let samples = [tsdb::Sample::new(1_000, 1.0), tsdb::Sample::new(2_000, 2.0)];
        for pod in ["a", "b", "c"] {
            let labels = [("__name__", "http_requests_total"), ("pod", pod)];
            db.append(&[tsdb::SeriesSamples::labels(&labels, &samples)]).unwrap();
        }
        db.append(&[tsdb::SeriesSamples::labels(&[("__name__", "up")], &[tsdb::Sample::new(5_000, 1.0)])]).unwrap();
        let body = render(&db.cardinality(DEFAULT_LIMIT));
        let head = &body["data"]["headStats"];
        assert_eq!(body["status"], "success");
        assert_eq!(head["numSeries"], 4);
        assert_eq!(head["numLabelPairs"], 5, "__name__ twice, pod three times");
        assert_eq!(head["minTime"], 1_000);
        assert_eq!(head["maxTime"], 5_000);
        assert_eq!(
            body["data"]["seriesCountByMetricName"],
            json!([{"name": "http_requests_total", "value": 3}, {"name": "up", "value": 1}])
        );
        assert_eq!(body["data"]["labelValueCountByLabelName"][0], json!({"name": "pod", "value": 3}));
        assert_eq!(body["data"]["seriesCountByLabelValuePair"][0]["value"], 3);
        assert!(body["data"]["memoryInBytesByLabelName"].is_array());
    }

    #[test]
    fn an_empty_store_reports_prometheus_empty_head_times() {
        let db = tsdb::Db::open(tsdb::Options::in_memory()).unwrap();
        let body = render(&db.cardinality(DEFAULT_LIMIT));
        assert_eq!(body["data"]["headStats"]["numSeries"], 0);
        assert_eq!(body["data"]["headStats"]["minTime"], i64::MAX);
        assert_eq!(body["data"]["headStats"]["maxTime"], i64::MIN);
        assert_eq!(body["data"]["seriesCountByMetricName"], json!([]));
    }
}
