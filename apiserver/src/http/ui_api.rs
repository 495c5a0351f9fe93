//! `ui_api` is the small JSON the web UI reads beside the Prometheus API:
//! - `GET /api/ringtail/v1/store`: the store's figures (series, samples, ring fill, oldest and
//!   newest sample, disk use, whether writes are accepted).
//! - `GET /api/ringtail/v1/adapter`: the adapter rules in force explained against the store —
//!   the same [`Explanation`] `ringtail adapter-config check` prints — and, with
//!   `metric`, `resource`, `name` (and `namespace` for a namespaced object), the value that
//!   object gets or why it gets none.
//!
//! Both run on the blocking pool: they list the index and may run a query.

use super::prom_api::{blocking, finish, param, params, ApiError, Params, UrlAndFormParams};
use super::AppState;
use crate::adapter::check::{self, Explanation, ObjectExplanation};
use crate::adapter::provider::Provider;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest `metric`, `resource`, `namespace` or `name` parameter accepted, in bytes (a
/// Kubernetes name is at most 253; a metric name has no limit but a few hundred is plenty).
pub(crate) const MAX_PARAM_BYTES: usize = 512;

/// The adapter as the UI sees it: the provider holding the rules in force (reloads included),
/// how far back series count, and the file the rules come from (`None`: the embedded default).
#[derive(Clone)]
pub(crate) struct AdapterView {
    pub(crate) provider: Arc<Provider>,
    pub(crate) lookback: Duration,
    pub(crate) config_file: Option<PathBuf>,
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/ringtail/v1/store", get(store)).route("/api/ringtail/v1/adapter", get(adapter))
}

async fn store(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let db = state.db.clone();
    let result = blocking(move || store_json(&db)).await;
    finish(&state, "ringtail_store", started, result)
}

/// The store's figures; `ringFill` is the share of the ring's budget its data uses.
fn store_json(db: &tsdb::Db) -> String {
    let stats = db.stats();
    // The per-name lists are not shown; one entry each keeps the listing cheap.
    let cardinality = db.cardinality(1);
    let health = db.write_health();
    let ring_fill =
        if stats.ring_budget_bytes == 0 { 0.0 } else { stats.data_bytes as f64 / stats.ring_budget_bytes as f64 };
    json!({
        "status": "success",
        "data": {
            "series": stats.series,
            "samples": stats.samples,
            "headSamples": stats.head_samples,
            "segments": stats.segments,
            "dataBytes": stats.data_bytes,
            "bytesOnDisk": stats.bytes_on_disk,
            "bytesPerSample": stats.bytes_per_sample,
            "budgetBytes": stats.budget_bytes,
            "ringBudgetBytes": stats.ring_budget_bytes,
            "ringFill": ring_fill.min(1.0),
            "oldestSampleMs": cardinality.min_time_ms,
            "newestSampleMs": cardinality.max_time_ms,
            "seriesCreated": stats.series_created,
            "seriesRemoved": stats.series_removed,
            "writesAccepted": !health.read_only && health.no_space.is_none(),
            "writesRefusedReason": match (health.read_only, &health.no_space) {
                (true, _) => Some("the store is read-only".to_string()),
                (false, reason) => reason.clone(),
            },
        }
    })
    .to_string()
}

async fn adapter(State(state): State<AppState>, form: Result<UrlAndFormParams, ApiError>) -> Response {
    let started = Instant::now();
    let result = adapter_answer(&state, form).await;
    finish(&state, "ringtail_adapter", started, result)
}

/// One object named by the request's parameters.
struct ObjectAsk {
    metric: String,
    resource: String,
    namespace: Option<String>,
    name: String,
}

fn bounded<'p>(params: &'p Params, name: &str) -> Result<Option<&'p str>, ApiError> {
    match param(params, name).map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) if v.len() > MAX_PARAM_BYTES => Err(ApiError::bad_data(format!(
            "invalid parameter \"{name}\": {} bytes, longer than {MAX_PARAM_BYTES}",
            v.len()
        ))),
        other => Ok(other),
    }
}

fn object_ask(params: &Params) -> Result<Option<ObjectAsk>, ApiError> {
    let metric = bounded(params, "metric")?;
    let resource = bounded(params, "resource")?;
    let namespace = bounded(params, "namespace")?;
    let name = bounded(params, "name")?;
    match (metric, resource, name) {
        (None, None, None) if namespace.is_none() => Ok(None),
        (Some(metric), Some(resource), Some(name)) => Ok(Some(ObjectAsk {
            metric: metric.to_string(),
            resource: resource.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        })),
        _ => Err(ApiError::bad_data(
            "to ask about one object give \"metric\", \"resource\" and \"name\" (and \"namespace\" for a namespaced one)",
        )),
    }
}

async fn adapter_answer(state: &AppState, form: Result<UrlAndFormParams, ApiError>) -> Result<String, ApiError> {
    let ask = object_ask(&params(form)?)?;
    let Some(view) = state.adapter.get().cloned() else {
        return Ok(json!({
            "status": "success",
            "data": {"serving": false, "configured": false,
                     "message": "the metrics adapter is not running in this server"},
        })
        .to_string());
    };
    let configured = view.config_file.is_some();
    let db = state.db.clone();
    let (explanation, object) = blocking(move || explain(&view, &db, ask)).await?;
    let explanation = explanation.map_err(|e| ApiError {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        error_type: "internal",
        message: e.to_string(),
    })?;
    Ok(json!({
        "status": "success",
        "data": {
            "serving": true,
            "configured": configured,
            "message": if configured { "" } else { "no --adapter-config is loaded: the embedded default rules are in force" },
            "explanation": explanation,
            "object": object,
        }
    })
    .to_string())
}

type Explained = (Result<Explanation, crate::adapter::AdapterError>, Option<ObjectExplanation>);

fn explain(view: &AdapterView, db: &tsdb::Db, ask: Option<ObjectAsk>) -> Explained {
    let rules = view.provider.rules();
    let explanation =
        check::explanation(&rules, Some(db), view.provider.resolver().as_ref(), view.lookback, tsdb::now_ms());
    let object = match (&explanation, ask) {
        (Ok(explanation), Some(ask)) => Some(check::explain_object(
            &view.provider,
            explanation,
            &ask.metric,
            &ask.resource,
            ask.namespace.as_deref(),
            &ask.name,
        )),
        _ => None,
    };
    (explanation, object)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::adapter::provider::{SeriesDiscovery, StandaloneResolver};
    use axum::body::Body;
    use axum::http::StatusCode;
    use prometheus_client::registry::Registry;
    use serde_json::Value;
    use std::sync::atomic::AtomicBool;
    use tower::ServiceExt;

    const RULES: &str = "rules:\n\
        - seriesQuery: '{__name__=\"ei_scale_ratio\",pod!=\"\"}'\n  resources:\n    overrides:\n      \
          pod: {resource: pod}\n      namespace: {resource: namespace}\n  \
          metricsQuery: 'avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n\
        - seriesQuery: '{__name__=\"nothing_here\"}'\n  resources: {overrides: {pod: {resource: pod}}}\n  \
          metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n";

    /// A router over an in-memory store holding one `ei_scale_ratio` series, with the adapter
    /// view set when `rules` is given.
    fn app(rules: Option<&str>) -> axum::Router {
        let db = Arc::new(tsdb::Db::open(tsdb::Options::in_memory()).unwrap());
        let labels = [("__name__", "ei_scale_ratio"), ("namespace", "default"), ("pod", "web-0")];
        db.append(&[tsdb::SeriesSamples::labels(&labels, &[tsdb::Sample::new(tsdb::now_ms() - 1_000, 0.5)])]).unwrap();
        let engine = Arc::new(query::Engine::new(db.clone(), query::EngineOptions::default()));
        let adapter: Arc<std::sync::OnceLock<AdapterView>> = Arc::default();
        if let Some(rules) = rules {
            let lookback = Duration::from_secs(600);
            let resolver: Arc<dyn crate::adapter::provider::ObjectResolver> =
                Arc::new(StandaloneResolver::new(db.clone(), lookback));
            let config =
                crate::adapter::rules::config::AdapterConfig::parse(rules, std::path::Path::new("rules.yaml")).unwrap();
            let rules = crate::adapter::rules::compile_rules(&config, "rules.yaml".into(), resolver.as_ref()).unwrap();
            let discovery = SeriesDiscovery::new(lookback, Duration::ZERO);
            let provider = Arc::new(Provider::new(db.clone(), engine, resolver, rules, discovery));
            let _ = adapter.set(AdapterView { provider, lookback, config_file: Some("rules.yaml".into()) });
        }
        super::super::router(test_state(db, adapter))
    }

    /// The state of a test router over `db` (shared with `ui`'s tests).
    pub(in crate::http) fn test_state(db: Arc<tsdb::Db>, adapter: Arc<std::sync::OnceLock<AdapterView>>) -> AppState {
        let mut registry = Registry::default();
        let ingest_metrics = ingest::IngestMetrics::register(&mut registry);
        let remote_write = Arc::new(super::super::remote_write::RemoteWriteState::new(
            &mut registry,
            super::super::remote_write::RemoteWriteSettings::default(),
            ingest_metrics,
            db.clone(),
            Arc::new(crate::workers::Workers::start(1, 0, 0.0).unwrap()),
        ));
        let query_api = Arc::new(super::super::prom_api::QueryApiState::new(&mut registry));
        AppState {
            engine: Arc::new(query::Engine::new(db.clone(), query::EngineOptions::default())),
            db,
            remote_write,
            query_api,
            registry: Arc::new(registry),
            read_only_reason: None,
            ready: Arc::new(AtomicBool::new(true)),
            warm_up: Arc::default(),
            lifecycle: Arc::default(),
            enable_admin_api: false,
            scraper: Arc::default(),
            adapter,
            rules: Arc::default(),
        }
    }

    async fn get_json(app: &axum::Router, path: &str) -> (StatusCode, Value) {
        let response = app.clone().oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn store_figures_count_the_series_and_the_oldest_sample() {
        let (status, body) = get_json(&app(None), "/api/ringtail/v1/store").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let data = &body["data"];
        assert_eq!(data["series"], 1);
        assert_eq!(data["samples"], 1);
        assert_eq!(data["writesAccepted"], true);
        assert!(data["oldestSampleMs"].as_i64().is_some_and(|ms| ms <= tsdb::now_ms()), "{data}");
        assert!(data["ringFill"].as_f64().is_some_and(|f| (0.0..=1.0).contains(&f)), "{data}");
    }

    #[tokio::test]
    async fn the_adapter_view_explains_good_and_broken_rules() {
        let app = app(Some(RULES));
        let (status, body) = get_json(&app, "/api/ringtail/v1/adapter").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let data = &body["data"];
        assert_eq!(data["configured"], true);
        let rules = data["explanation"]["rules"].as_array().unwrap();
        let served: Vec<String> = rules[0]["served"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{}/{}", s["resource"], s["metric"]))
            .collect();
        assert_eq!(served, ["\"namespaces\"/\"ei_scale_ratio\"", "\"pods\"/\"ei_scale_ratio\""]);
        assert_eq!(rules[1]["problems"][0], check::NO_SERIES_MATCH);
        assert!(data["object"].is_null());
    }

    #[tokio::test]
    async fn one_object_gets_its_value_or_the_reason_it_has_none() {
        let app = app(Some(RULES));
        let base = "/api/ringtail/v1/adapter?metric=ei_scale_ratio&resource=pods&namespace=default";
        let (_, body) = get_json(&app, &format!("{base}&name=web-0")).await;
        assert_eq!(body["data"]["object"]["value"], 0.5, "{body}");
        let (_, body) = get_json(&app, &format!("{base}&name=web-9")).await;
        let reasons = body["data"]["object"]["reasons"].as_array().unwrap();
        assert!(reasons.iter().any(|r| r == check::QUERY_RETURNS_NOTHING), "{body}");
        let (_, body) = get_json(&app, "/api/ringtail/v1/adapter?metric=nothing_here&resource=pods&name=x").await;
        let reasons = body["data"]["object"]["reasons"].to_string();
        assert!(reasons.contains(check::NO_SERIES_MATCH), "{body}");
    }

    #[tokio::test]
    async fn bad_parameters_are_refused_with_400() {
        let app = app(Some(RULES));
        let (status, body) = get_json(&app, "/api/ringtail/v1/adapter?metric=ei_scale_ratio").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"].as_str().unwrap().contains("\"resource\""), "{body}");
        let long = "x".repeat(MAX_PARAM_BYTES + 1);
        let (status, body) =
            get_json(&app, &format!("/api/ringtail/v1/adapter?metric={long}&resource=pods&name=a")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"].as_str().unwrap().contains("longer than"), "{body}");
    }

    #[tokio::test]
    async fn without_an_adapter_the_view_says_so() {
        let (status, body) = get_json(&app(None), "/api/ringtail/v1/adapter").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"]["serving"], false);
        assert!(body["data"]["message"].as_str().unwrap().contains("not running"), "{body}");
    }
}
