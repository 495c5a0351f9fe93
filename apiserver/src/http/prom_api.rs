//! The Prometheus HTTP query API: `/api/v1/query`, `query_range`, `series`, `labels`,
//! `label/{name}/values` and `status/buildinfo`, GET or POST (parameters in the URL, a
//! form-encoded body or both, as Prometheus reads them: [`UrlAndFormParams`]), `status/tsdb`
//! (answered by `super::tsdb_status`), and `query_exemplars` and `alertmanagers`, always empty
//! (no exemplar is stored, no alert sent) so clients that ask get Prometheus's answer for none.
//!
//! Responses have Prometheus's exact JSON shape (`status`, `data.resultType`, string-encoded
//! sample values, `errorType`/`error`), so Grafana, promtool and curl users see no difference.
//! Errors map in one place ([`error_response`]): bad parameters and parse errors 400 `bad_data`,
//! evaluation errors and the max-samples limit 422 `execution`, timeouts 503 `timeout`, a query
//! cancelled because its client went away 499 `canceled`, storage 500.
//! Evaluation runs in `spawn_blocking`; it is CPU-bound and reads mapped pages. Each query holds
//! a `query::CancelOnDrop` across its evaluation: when the client disconnects, axum drops the
//! request future, the guard fires, and the evaluation stops at its next check instead of running
//! on to its timeout.

use super::AppState;
use crate::evaluation::{EvaluationSlots, SlotError};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use query::{CancelHandle, Engine, QueryError, QueryOutput, SelectorError, Value};
use std::time::{Duration, Instant};
use tsdb::{Labels, Matcher};

/// Most points a range query may return per series (Prometheus's limit).
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    endpoint: &'static str,
    error_type: &'static str,
}

/// Query API self-metrics.
#[derive(Debug)]
pub struct QueryApiState {
    durations: Family<EndpointLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
    /// Queries evaluated at once; the rest queue (see `evaluate`).
    evaluations: EvaluationSlots,
}

impl QueryApiState {
    pub fn new(registry: &mut Registry) -> Self {
        let durations = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 4.0, 10))
        });
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "ringtail_query_duration_seconds",
            "Time spent answering Prometheus API queries, by endpoint",
            durations.clone(),
        );
        registry.register(
            "ringtail_query_errors",
            "Prometheus API requests that failed, by error type",
            errors.clone(),
        );
        QueryApiState { durations, errors, evaluations: EvaluationSlots::default() }
    }

    fn observe(&self, endpoint: &'static str, started: Instant) {
        self.durations.get_or_create(&EndpointLabels { endpoint }).observe(started.elapsed().as_secs_f64());
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/query", get(instant_query).post(instant_query))
        .route("/api/v1/query_range", get(range_query).post(range_query))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/tsdb", get(super::tsdb_status::tsdb_status))
        .route("/api/v1/query_exemplars", get(query_exemplars).post(query_exemplars))
        .route("/api/v1/alertmanagers", get(alertmanagers))
}

/// An API failure: HTTP status, Prometheus `errorType`, message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: String,
}

impl ApiError {
    pub(super) fn bad_data(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, error_type: "bad_data", message: message.into() }
    }
}

/// Maps a query error to its HTTP status and `errorType` (the one place this happens).
pub fn error_response(query_text: &str, e: QueryError) -> ApiError {
    match e {
        QueryError::Parse { position, message } => {
            let (line, col) = query::line_col(query_text, position);
            ApiError::bad_data(format!("invalid parameter \"query\": {line}:{col}: parse error: {message}"))
        }
        QueryError::Execution(m) => {
            ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, error_type: "execution", message: m }
        }
        e @ QueryError::Timeout(_) => {
            ApiError { status: StatusCode::SERVICE_UNAVAILABLE, error_type: "timeout", message: e.to_string() }
        }
        // Prometheus's API answers its sample limit as any other execution error: 422.
        e @ QueryError::TooManySamples(_) => {
            ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, error_type: "execution", message: e.to_string() }
        }
        // Prometheus answers 499 (client closed request); the client is usually gone to see it.
        e @ QueryError::Cancelled(_) => ApiError {
            status: StatusCode::from_u16(499).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            error_type: "canceled",
            message: e.to_string(),
        },
        e @ QueryError::Storage(_) => {
            ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, error_type: "internal", message: e.to_string() }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"status": "error", "errorType": self.error_type, "error": self.message});
        (self.status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

pub(super) type Params = Vec<(String, String)>;

/// The parameters of a request as Prometheus reads them (Go's `ParseForm`): the URL's query
/// string, then, for a body of type `application/x-www-form-urlencoded`, the body's. Unlike
/// axum's `Form`, a POST that carries its parameters in the URL only (`curl -X POST
/// '…?match[]=up'`) is read too. The body is limited as every extracted body is (axum's default).
pub(crate) struct UrlAndFormParams(pub(crate) Params);

impl<S: Send + Sync> axum::extract::FromRequest<S> for UrlAndFormParams {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bad = |e: &dyn std::fmt::Display| ApiError::bad_data(format!("invalid form parameters: {e}"));
        let mut params: Params = match request.uri().query() {
            Some(query) => serde_urlencoded::from_str(query).map_err(|e| bad(&e))?,
            None => Vec::new(),
        };
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            let body = axum::body::Bytes::from_request(request, state).await.map_err(|e| bad(&e))?;
            params.extend(serde_urlencoded::from_bytes::<Params>(&body).map_err(|e| bad(&e))?);
        }
        Ok(UrlAndFormParams(params))
    }
}

pub(super) fn params(form: Result<UrlAndFormParams, ApiError>) -> Result<Params, ApiError> {
    form.map(|UrlAndFormParams(p)| p)
}

pub(super) fn param<'p>(params: &'p Params, name: &str) -> Option<&'p str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub(super) fn time_param(params: &Params, name: &str, default_ms: i64) -> Result<i64, ApiError> {
    match param(params, name) {
        None | Some("") => Ok(default_ms),
        Some(t) => {
            query::parse_time_ms(t).map_err(|e| ApiError::bad_data(format!("invalid parameter \"{name}\": {e}")))
        }
    }
}

/// The engine for one request: its timeout the smaller of the server's and the request's
/// `timeout`, its queries stopped when `cancel` fires.
fn engine_for(state: &AppState, params: &Params, cancel: &CancelHandle) -> Result<Engine, ApiError> {
    let mut options = state.engine.options().clone();
    if let Some(text) = param(params, "timeout").filter(|t| !t.is_empty()) {
        let ms = query::parse_duration_param_ms(text)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"timeout\": {e}")))?;
        if ms <= 0 {
            return Err(ApiError::bad_data("invalid parameter \"timeout\": must be positive"));
        }
        options.timeout = options.timeout.min(Duration::from_millis(ms as u64));
    }
    Ok(Engine::new(state.engine.db().clone(), options).with_cancel(cancel.clone()))
}

async fn instant_query(State(state): State<AppState>, form: Result<UrlAndFormParams, ApiError>) -> Response {
    let started = Instant::now();
    let result = instant_query_inner(&state, form).await;
    finish(&state, "query", started, result)
}

async fn instant_query_inner(state: &AppState, form: Result<UrlAndFormParams, ApiError>) -> Result<String, ApiError> {
    let params = params(form)?;
    let text = param(&params, "query").unwrap_or("").to_string();
    let at_ms = time_param(&params, "time", tsdb::now_ms())?;
    let cancel = CancelHandle::new();
    let engine = engine_for(state, &params, &cancel)?;
    let q = text.clone();
    let _cancel_if_dropped = cancel.cancel_on_drop();
    // Rendered on the evaluation's thread, so the result is freed where it was allocated.
    evaluate(&state.query_api.evaluations, engine.options().timeout, move || {
        engine.instant_query(&q, at_ms, &[]).map(|output| render_success(&output))
    })
    .await?
    .map_err(|e| error_response(&text, e))
}

async fn range_query(State(state): State<AppState>, form: Result<UrlAndFormParams, ApiError>) -> Response {
    let started = Instant::now();
    let result = range_query_inner(&state, form).await;
    finish(&state, "query_range", started, result)
}

async fn range_query_inner(state: &AppState, form: Result<UrlAndFormParams, ApiError>) -> Result<String, ApiError> {
    let params = params(form)?;
    let text = param(&params, "query").unwrap_or("").to_string();
    let required = |name: &str| {
        param(&params, name).filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::bad_data(format!("invalid parameter \"{name}\": cannot parse \"\" to a valid timestamp"))
        })
    };
    let start = query::parse_time_ms(required("start")?)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"start\": {e}")))?;
    let end = query::parse_time_ms(required("end")?)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"end\": {e}")))?;
    if end < start {
        return Err(ApiError::bad_data("invalid parameter \"end\": end timestamp must not be before start time"));
    }
    let step_text = param(&params, "step").unwrap_or("");
    let step = query::parse_duration_param_ms(step_text)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"step\": {e}")))?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS_PER_SERIES {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let cancel = CancelHandle::new();
    let engine = engine_for(state, &params, &cancel)?;
    let q = text.clone();
    let _cancel_if_dropped = cancel.cancel_on_drop();
    evaluate(&state.query_api.evaluations, engine.options().timeout, move || {
        engine.range_query(&q, start, end, step, &[]).map(|output| render_success(&output))
    })
    .await?
    .map_err(|e| error_response(&text, e))
}

/// The matchers of every `match[]` selector.
pub(super) fn selectors(params: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut out = Vec::new();
    for (_, text) in params.iter().filter(|(k, _)| k == "match[]") {
        let matchers = query::parse_selector(text).map_err(|e| match e {
            SelectorError::Parse(e) => {
                let (line, col) = query::line_col(text, e.pos);
                ApiError::bad_data(format!("invalid parameter \"match[]\": {line}:{col}: parse error: {}", e.message))
            }
            SelectorError::NotASelector => {
                ApiError::bad_data(format!("invalid parameter \"match[]\": {text:?} is not a series selector"))
            }
        })?;
        out.push(matchers);
    }
    Ok(out)
}

async fn series(State(state): State<AppState>, form: Result<UrlAndFormParams, ApiError>) -> Response {
    let started = Instant::now();
    let result = async {
        let params = params(form)?;
        let sets = selectors(&params)?;
        if sets.is_empty() {
            return Err(ApiError::bad_data("no match[] parameter provided"));
        }
        let start = time_param(&params, "start", i64::MIN / 2)?;
        let end = time_param(&params, "end", i64::MAX / 2)?;
        let db = state.db.clone();
        let found = on_store(move || {
            let mut all: Vec<Labels> = Vec::new();
            for matchers in &sets {
                all.extend(db.series(matchers, start, end)?);
            }
            all.sort();
            all.dedup();
            Ok(all)
        })
        .await?;
        let mut body = String::from("{\"status\":\"success\",\"data\":");
        write_list(&mut body, &found, write_labels);
        body.push('}');
        Ok(body)
    }
    .await;
    finish(&state, "series", started, result)
}

async fn labels(State(state): State<AppState>, form: Result<UrlAndFormParams, ApiError>) -> Response {
    let started = Instant::now();
    let result = list_strings(&state, form, |db, matchers| db.label_names(matchers)).await;
    finish(&state, "labels", started, result)
}

async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    form: Result<UrlAndFormParams, ApiError>,
) -> Response {
    let started = Instant::now();
    let result = list_strings(&state, form, move |db, matchers| db.label_values(&name, matchers)).await;
    finish(&state, "label_values", started, result)
}

/// Answers a listing endpoint: the sorted union of `list` over every `match[]` selector (or
/// over all series when there is none), as `{"status":"success","data":[…]}`.
async fn list_strings(
    state: &AppState,
    form: Result<UrlAndFormParams, ApiError>,
    list: impl Fn(&tsdb::Db, &[Matcher]) -> Result<Vec<String>, tsdb::Error> + Send + 'static,
) -> Result<String, ApiError> {
    let params = params(form)?;
    let sets = selectors(&params)?;
    let db = state.db.clone();
    let values = on_store(move || {
        if sets.is_empty() {
            return list(&db, &[]);
        }
        let mut all = Vec::new();
        for matchers in &sets {
            all.extend(list(&db, matchers)?);
        }
        all.sort();
        all.dedup();
        Ok(all)
    })
    .await?;
    Ok(serde_json::json!({"status": "success", "data": values}).to_string())
}

/// Runs store work on the blocking pool (it may fault in mapped pages) and maps its failures.
async fn on_store<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, tsdb::Error> + Send + 'static,
) -> Result<T, ApiError> {
    blocking(work).await?.map_err(|e| error_response("", QueryError::Storage(e)))
}

/// [`on_store`] with some store errors answered otherwise: `special` maps those it knows.
pub(super) async fn on_store_with<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, tsdb::Error> + Send + 'static,
    special: impl FnOnce(&tsdb::Error) -> Option<ApiError>,
) -> Result<T, ApiError> {
    blocking(work).await?.map_err(|e| special(&e).unwrap_or_else(|| error_response("", QueryError::Storage(e))))
}

/// Runs a query evaluation once one of the query slots is free. Waiting for a slot counts
/// against the query timeout: past it the answer is 503 `timeout`, as Prometheus answers a query
/// that timed out in its queue.
async fn evaluate<T: Send + 'static>(
    slots: &EvaluationSlots,
    timeout: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    slots.run(Some(timeout), work).await.map_err(|e| {
        let (status, error_type) = match e {
            SlotError::TimedOut => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            SlotError::Closed => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            SlotError::Task(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let message = match e {
            SlotError::Task(task) => task.to_string(),
            other => other.to_string(),
        };
        ApiError { status, error_type, message }
    })
}

/// Runs CPU-bound work (evaluation, reading mapped pages) on the blocking pool; a panicked or
/// cancelled task becomes a 500.
pub(super) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error_type: "internal",
        message: e.to_string(),
    })
}

/// `/api/v1/query_exemplars`: Ringtail stores no exemplars, so a valid request (a query that
/// parses, valid times) gets an empty list, as Prometheus answers when it holds none; Grafana
/// asks this next to its range queries.
async fn query_exemplars(State(state): State<AppState>, form: Result<UrlAndFormParams, ApiError>) -> Response {
    let started = Instant::now();
    let result = (|| {
        let params = params(form)?;
        let text = param(&params, "query").unwrap_or_default();
        query::parse(text)
            .map_err(|e| error_response(text, QueryError::Parse { position: e.pos, message: e.message }))?;
        let start = time_param(&params, "start", i64::MIN / 2)?;
        let end = time_param(&params, "end", i64::MAX / 2)?;
        if end < start {
            return Err(ApiError::bad_data("end timestamp must not be before start timestamp"));
        }
        Ok("{\"status\":\"success\",\"data\":[]}".to_string())
    })();
    finish(&state, "query_exemplars", started, result)
}

/// `/api/v1/alertmanagers`: Ringtail sends no alerts (alerting rules are listed only), so it
/// knows no Alertmanager.
async fn alertmanagers() -> Response {
    let body = r#"{"status":"success","data":{"activeAlertmanagers":[],"droppedAlertmanagers":[]}}"#;
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn buildinfo() -> Response {
    let body = serde_json::json!({
        "status": "success",
        "data": {
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "unknown",
            "branch": "unknown",
            "buildUser": "ringtail",
            "buildDate": "unknown",
            "goVersion": "none (Rust)",
        }
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

pub(super) fn finish(
    state: &AppState,
    endpoint: &'static str,
    started: Instant,
    result: Result<String, ApiError>,
) -> Response {
    state.query_api.observe(endpoint, started);
    match result {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            state.query_api.errors.get_or_create(&ErrorLabels { endpoint, error_type: e.error_type }).inc();
            e.into_response()
        }
    }
}

/// A timestamp as Prometheus writes it: Unix seconds with up to millisecond decimals.
fn write_ts(out: &mut String, ts_ms: i64) {
    if ts_ms < 0 {
        out.push('-');
    }
    let magnitude = ts_ms.unsigned_abs();
    let (secs, millis) = (magnitude / 1000, (magnitude % 1000) as u32);
    out.push_str(itoa::Buffer::new().format(secs));
    if millis != 0 {
        out.push('.');
        let digits = [millis / 100, millis / 10 % 10, millis % 10];
        let kept = if digits[2] != 0 {
            3
        } else if digits[1] != 0 {
            2
        } else {
            1
        };
        out.extend(digits[..kept].iter().filter_map(|d| char::from_digit(*d, 10)));
    }
}

/// A JSON string as serde_json writes it; strings with nothing to escape (nearly every label)
/// are copied as they are.
fn write_json_string(out: &mut String, s: &str) {
    if crate::json_text::is_verbatim(s) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::String(s.to_string()).to_string());
    }
}

/// About how many bytes `value` takes as JSON (a point is `[1700000000.123,"12.345678"]`).
fn estimated_json_bytes(value: &Value) -> usize {
    const POINT_BYTES: usize = 32;
    const SERIES_OVERHEAD_BYTES: usize = 24;
    let labels_bytes = |labels: &Labels| labels.iter().map(|l| l.name.len() + l.value.len() + 6).sum::<usize>();
    match value {
        Value::Scalar { .. } => POINT_BYTES,
        Value::String { value, .. } => POINT_BYTES + value.len(),
        Value::Vector(samples) => {
            samples.iter().map(|s| SERIES_OVERHEAD_BYTES + labels_bytes(&s.labels) + POINT_BYTES).sum()
        }
        Value::Matrix(series) => {
            series.iter().map(|s| SERIES_OVERHEAD_BYTES + labels_bytes(&s.labels) + s.points.len() * POINT_BYTES).sum()
        }
    }
}

fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, &l.name);
        out.push(':');
        write_json_string(out, &l.value);
    }
    out.push('}');
}

/// Writes `[item,item,…]`.
fn write_list<'i, T: 'i>(
    out: &mut String,
    items: impl IntoIterator<Item = &'i T>,
    mut write: impl FnMut(&mut String, &'i T),
) {
    out.push('[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(out, item);
    }
    out.push(']');
}

fn write_point(out: &mut String, ts_ms: i64, v: f64) {
    write_point_with(out, ts_ms, |out| query::write_value(out, v));
}

/// A point `[ts,"value"]`, its value's text written by `value`.
fn write_point_with(out: &mut String, ts_ms: i64, value: impl FnOnce(&mut String)) {
    out.push('[');
    write_ts(out, ts_ms);
    out.push_str(",\"");
    value(out);
    out.push_str("\"]");
}

/// A range series' points, as [`write_point`] writes each. A value with the bits of the point
/// before it (a flat gauge, a steady rate) copies that point's text instead of formatting it
/// again: formatting shortest round-trip digits was most of rendering a large matrix.
fn write_points(out: &mut String, points: &[(i64, f64)]) {
    out.push('[');
    let mut previous: Option<(u64, std::ops::Range<usize>)> = None;
    for (i, &(ts_ms, v)) in points.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_point_with(out, ts_ms, |out| {
            let start = out.len();
            match previous.take() {
                Some((bits, text)) if bits == v.to_bits() => out.extend_from_within(text),
                _ => query::write_value(out, v),
            }
            previous = Some((v.to_bits(), start..out.len()));
        });
    }
    out.push(']');
}

/// Renders a successful query result as Prometheus's JSON.
pub fn render_success(output: &QueryOutput) -> String {
    // Sized for the whole answer up front: a large matrix grown by doubling copies itself over
    // and over (and touches fresh pages each time).
    let mut out = String::with_capacity(256usize.saturating_add(estimated_json_bytes(&output.value)));
    out.push_str("{\"status\":\"success\",\"data\":{\"resultType\":");
    match &output.value {
        Value::Scalar { ts_ms, value } => {
            out.push_str("\"scalar\",\"result\":");
            write_point(&mut out, *ts_ms, *value);
        }
        Value::String { ts_ms, value } => {
            out.push_str("\"string\",\"result\":[");
            write_ts(&mut out, *ts_ms);
            out.push(',');
            write_json_string(&mut out, value);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push_str("\"vector\",\"result\":");
            write_list(&mut out, samples, |out, s| {
                out.push_str("{\"metric\":");
                write_labels(out, &s.labels);
                out.push_str(",\"value\":");
                write_point(out, s.ts_ms, s.value);
                out.push('}');
            });
        }
        Value::Matrix(series) => {
            out.push_str("\"matrix\",\"result\":");
            write_list(&mut out, series, |out, s| {
                out.push_str("{\"metric\":");
                write_labels(out, &s.labels);
                out.push_str(",\"values\":");
                write_points(out, &s.points);
                out.push('}');
            });
        }
    }
    out.push('}');
    for (key, list) in [("warnings", &output.annotations.warnings), ("infos", &output.annotations.infos)] {
        if !list.is_empty() {
            out.push_str(",\"");
            out.push_str(key);
            out.push_str("\":");
            out.push_str(&serde_json::Value::from(list.clone()).to_string());
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_are_worded_like_prometheus() {
        let params: Params = vec![
            ("time".into(), "yesterday".into()),
            ("match[]".into(), "rate(up[5m])".into()),
            ("match[]".into(), "{a=".into()),
        ];
        let e = time_param(&params, "time", 0).expect_err("bad time");
        assert_eq!(e.message, "invalid parameter \"time\": cannot parse \"yesterday\" to a valid timestamp");
        assert_eq!(time_param(&vec![("time".into(), "1.5".into())], "time", 0).ok(), Some(1_500));
        let e = selectors(&params[1..2].to_vec()).expect_err("not a selector");
        assert_eq!(e.message, "invalid parameter \"match[]\": \"rate(up[5m])\" is not a series selector");
        let e = selectors(&params[2..].to_vec()).expect_err("syntax error");
        assert!(e.message.starts_with("invalid parameter \"match[]\": 1:4: parse error: "), "{}", e.message);
        assert_eq!(
            selectors(&vec![("match[]".into(), "up".into())]).ok(),
            Some(vec![vec![Matcher::equal("__name__", "up")]])
        );
    }

    #[test]
    fn timestamps_are_seconds_with_trimmed_millis() {
        for (ts_ms, text) in [
            (1_500, "1.5"),
            (1_000, "1"),
            (1_001, "1.001"),
            (1_010, "1.01"),
            (-1_500, "-1.5"),
            (-500, "-0.5"),
            (0, "0"),
            (i64::MIN, "-9223372036854775.808"),
        ] {
            let mut out = String::new();
            write_ts(&mut out, ts_ms);
            assert_eq!(out, text);
        }
    }

    proptest::proptest! {
        #[test]
        fn json_strings_are_written_as_serde_json_writes_them(s in "\\PC*|[a-z\"\\\\\n\t\u{1}\u{7f}]*") {
            let mut out = String::new();
            write_json_string(&mut out, &s);
            proptest::prop_assert_eq!(out, serde_json::to_string(&s).unwrap_or_default());
        }
    }

    proptest::proptest! {
        /// A series' values written once and copied where they repeat read exactly as each
        /// point written on its own: runs of equal bits (NaN payloads, ±0, ±Inf among them)
        /// and changes between them.
        #[test]
        fn repeated_values_render_as_each_point_alone(
            runs in proptest::collection::vec(
                (proptest::prop_oneof![
                    proptest::num::f64::ANY,
                    proptest::sample::select(vec![0.0, -0.0, f64::NAN, -f64::NAN, f64::INFINITY, 1.5, 1e21, 1.25e-7]),
                ], 1usize..4),
                0..20,
            ),
        ) {
            let points: Vec<(i64, f64)> = runs
                .iter()
                .flat_map(|&(v, n)| std::iter::repeat_n(v, n))
                .enumerate()
                .map(|(i, v)| (i as i64 * 15_001, v))
                .collect();
            let mut copied = String::new();
            write_points(&mut copied, &points);
            let mut alone = String::new();
            write_list(&mut alone, &points, |out, (t, v)| write_point(out, *t, *v));
            proptest::prop_assert_eq!(copied, alone);
        }
    }

    #[test]
    fn renders_like_prometheus() {
        let output = QueryOutput {
            value: Value::Vector(vec![query::InstantSample {
                labels: Labels::from_pairs([("__name__", "up"), ("job", "a")]),
                ts_ms: 1_500,
                value: f64::INFINITY,
            }]),
            annotations: Default::default(),
        };
        assert_eq!(
            render_success(&output),
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1.5,"+Inf"]}]}}"#
        );
        let scalar = QueryOutput { value: Value::Scalar { ts_ms: 2000, value: 0.25 }, annotations: Default::default() };
        assert_eq!(
            render_success(&scalar),
            r#"{"status":"success","data":{"resultType":"scalar","result":[2,"0.25"]}}"#
        );
    }

    #[tokio::test]
    async fn a_query_waits_for_a_slot_and_times_out_in_the_queue() {
        let slots = EvaluationSlots::with_slots(1);
        let (release, held) = crate::evaluation::test_support::occupy_one(&slots);
        let queued = loop {
            match evaluate(&slots, Duration::from_millis(20), || 1).await {
                Ok(_) => tokio::task::yield_now().await,
                Err(e) => break e,
            }
        };
        assert_eq!((queued.status, queued.error_type), (StatusCode::SERVICE_UNAVAILABLE, "timeout"));
        assert_eq!(queued.message, "query timed out in query queue");
        release.send(()).expect("the holder waits for this");
        assert!(matches!(held.await.expect("holder task"), Ok(true)));
        assert_eq!(evaluate(&slots, Duration::from_millis(20), || 2).await.ok(), Some(2));
        slots.close();
        let closed = evaluate(&slots, Duration::from_secs(1), || 3).await.expect_err("closed");
        assert_eq!((closed.status, closed.error_type), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
    }

    #[test]
    fn limits_map_like_prometheus() {
        let status = |e: QueryError| {
            let e = error_response("q", e);
            (e.status.as_u16(), e.error_type)
        };
        assert_eq!(status(QueryError::TooManySamples("query execution")), (422, "execution"));
        assert_eq!(status(QueryError::Timeout("query execution")), (503, "timeout"));
        assert_eq!(status(QueryError::Cancelled("query execution")), (499, "canceled"));
    }

    #[test]
    fn parse_errors_are_bad_data_with_line_and_column() {
        let e = error_response("sum(", QueryError::Parse { position: 4, message: "unexpected end of input".into() });
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.message, "invalid parameter \"query\": 1:5: parse error: unexpected end of input");
    }
}
