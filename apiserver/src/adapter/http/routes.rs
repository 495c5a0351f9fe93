//! The adapter's HTTP surface on the TLS listener: discovery (`/apis`, the groups and their
//! versions), the custom and external metrics paths in every form the Kubernetes clients use,
//! `/healthz`, `/livez`, `/readyz`, `/version`, and `/openapi/v2|v3` (404: the aggregator skips
//! them). This is the one place where errors become HTTP statuses and Kubernetes `Status` bodies.
//!
//! The metric paths are split by hand from the raw URI rather than by the router, so that
//! percent-encoded `*` (`%2A`) and `/` (`%2F`) are handled the way Kubernetes handles them.

use super::auth::{AuthDecision, Authenticator, ConnectionInfo};
use super::k8s_types::{
    go_duration, k8s_time, ApiGroup, ApiGroupList, ApiResourceList, ContainerMetrics, ExternalMetricValue,
    MetricValueList, MetricsObjectMeta, NodeMetrics, PodMetrics, Status, StatusDetails, Usage, VersionInfo,
    CUSTOM_GROUP, EXTERNAL_GROUP, RESOURCE_GROUP, RESOURCE_VERSION,
};
use super::value_list_json::{write_metric_value_list, CustomVersion};
use crate::adapter::provider::quantity::{cpu_usage, memory_usage};
use crate::adapter::provider::resources::GroupResource;
use crate::adapter::provider::{
    CustomMetricRequest, ExternalMetricRequest, FieldSelector, NodeUsage, ObjectSelection, PodUsage, Provider,
    ProviderError, ProviderErrorKind, ResourceMetricsRequest,
};
use crate::adapter::rules::selector::LabelSelector;
use crate::evaluation::{EvaluationSlots, SlotError};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// Versions of `custom.metrics.k8s.io`, most preferred first.
pub(crate) const CUSTOM_VERSIONS: [&str; 2] = ["v1beta2", "v1beta1"];
pub(crate) const EXTERNAL_VERSION: &str = "v1beta1";

/// State of the adapter routes.
#[derive(Clone)]
pub(crate) struct AdapterState {
    pub(crate) provider: Arc<Provider>,
    pub(crate) auth: Arc<dyn Authenticator>,
    /// Metric requests evaluated at once (a client opening connections, many HPAs at once: the
    /// burst queues).
    pub(crate) evaluations: EvaluationSlots,
}

impl AdapterState {
    pub(crate) fn new(provider: Arc<Provider>, auth: Arc<dyn Authenticator>) -> Self {
        AdapterState { provider, auth, evaluations: EvaluationSlots::default() }
    }
}

/// The adapter router (already bound to its state).
pub(crate) fn router(state: AdapterState) -> Router {
    Router::new()
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route("/version", get(version))
        .fallback(dispatch)
        .layer(axum::middleware::from_fn(crate::http::log_server_errors))
        .with_state(state)
}

async fn ok() -> &'static str {
    "ok"
}

async fn version() -> Response {
    json(StatusCode::OK, &VersionInfo::current())
}

fn json<T: serde::Serialize>(code: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (code, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding response failed: {e}")).into_response(),
    }
}

/// A Kubernetes `Status` error response.
pub(crate) fn status(code: u16, message: impl Into<String>) -> Response {
    let http_code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(http_code, &Status::failure(code, message))
}

fn provider_error(e: ProviderError, details: Option<StatusDetails>) -> Response {
    let code = match e.kind {
        ProviderErrorKind::NotFound => 404,
        ProviderErrorKind::BadRequest => 400,
        ProviderErrorKind::Unavailable => 503,
        ProviderErrorKind::Internal => 500,
    };
    let mut body = Status::failure(code, e.message);
    if code == 404 {
        body.details = details;
    }
    json(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &body)
}

/// Whether an `Accept` header admits the legacy discovery JSON. Clients asking for aggregated
/// discovery (`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`) list plain
/// JSON as a fallback; one that asks *only* for aggregated discovery gets 406.
fn accepts_plain_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return true };
    accept.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let is_json_like = matches!(media, "application/json" | "*/*" | "application/*" | "");
        is_json_like && !parts.any(|p| p.starts_with("g=") || p.starts_with("as="))
    })
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`); `None` for broken escapes or
/// invalid UTF-8.
fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Query parameters, decoded; `Err` names a malformed one.
fn query_params(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k, true).ok_or_else(|| format!("malformed query parameter {k:?}"))?;
        let value = percent_decode(v, true).ok_or_else(|| format!("malformed value of query parameter {key:?}"))?;
        out.push((key, value));
    }
    Ok(out)
}

/// A request refused before reaching the provider: HTTP code and message of its `Status`.
#[derive(Debug)]
struct Rejection(u16, String);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        status(self.0, self.1)
    }
}

fn param_selector(params: &[(String, String)], name: &str) -> Result<LabelSelector, Rejection> {
    let text = params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("");
    LabelSelector::parse(text).map_err(|e| Rejection(400, format!("{name}: {e}")))
}

/// Everything that is not a fixed route: discovery and the metrics paths.
async fn dispatch(State(state): State<AdapterState>, request: Request) -> Response {
    let (head, _body) = request.into_parts();
    if head.method != Method::GET && head.method != Method::HEAD {
        return status(
            405,
            format!("the server does not allow this method on the requested resource: {}", head.method),
        );
    }
    let path = head.uri.path().to_string();
    if path == "/openapi/v2" || path.starts_with("/openapi/") {
        return status(404, "the server could not find the requested resource (Ringtail serves no OpenAPI document)");
    }
    if !path.starts_with("/apis") {
        return status(404, "the server could not find the requested resource");
    }
    match state.auth.decide(&head, head.extensions.get::<ConnectionInfo>()).await {
        AuthDecision::Allow(_) => {}
        AuthDecision::Unauthorized(message) => return status(401, message),
        AuthDecision::Forbidden(message) => return status(403, message),
    }
    let mut segments = Vec::new();
    for raw in path.trim_start_matches('/').split('/') {
        match percent_decode(raw, false) {
            Some(segment) => segments.push(segment),
            None => return status(400, format!("malformed path segment {raw:?}")),
        }
    }
    if segments.last().is_some_and(String::is_empty) {
        segments.pop();
    }
    let params = match query_params(head.uri.query()) {
        Ok(p) => p,
        Err(message) => return status(400, message),
    };
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["apis"] => {
            if !accepts_plain_json(&head.headers) {
                return status(406, "only the legacy discovery document (application/json) is served");
            }
            let mut groups =
                vec![ApiGroup::new(CUSTOM_GROUP, &CUSTOM_VERSIONS), ApiGroup::new(EXTERNAL_GROUP, &[EXTERNAL_VERSION])];
            if state.provider.serves_resource_metrics() {
                groups.push(ApiGroup::new(RESOURCE_GROUP, &[RESOURCE_VERSION]));
            }
            json(StatusCode::OK, &ApiGroupList { kind: "APIGroupList".into(), api_version: "v1".into(), groups })
        }
        ["apis", RESOURCE_GROUP, ..] if !state.provider.serves_resource_metrics() => status(
            404,
            "the server could not find the requested resource (metrics.k8s.io is served only with resourceRules in the adapter config)",
        ),
        ["apis", RESOURCE_GROUP] => json(StatusCode::OK, &ApiGroup::new(RESOURCE_GROUP, &[RESOURCE_VERSION])),
        ["apis", RESOURCE_GROUP, RESOURCE_VERSION] => json(StatusCode::OK, &ApiResourceList::resource_metrics()),
        ["apis", RESOURCE_GROUP, RESOURCE_VERSION, rest @ ..] => match resource_request(rest, &params) {
            Ok((ResourceKind::Pods, request)) => pod_metrics(state, request).await,
            Ok((ResourceKind::Nodes, request)) => node_metrics(state, request).await,
            Err(rejection) => rejection.into_response(),
        },
        ["apis", CUSTOM_GROUP] => json(StatusCode::OK, &ApiGroup::new(CUSTOM_GROUP, &CUSTOM_VERSIONS)),
        ["apis", EXTERNAL_GROUP] => json(StatusCode::OK, &ApiGroup::new(EXTERNAL_GROUP, &[EXTERNAL_VERSION])),
        ["apis", CUSTOM_GROUP, version] if CUSTOM_VERSIONS.contains(version) => {
            let group_version = format!("{CUSTOM_GROUP}/{version}");
            blocking(state.provider.clone(), move |p| p.list_custom())
                .await
                .map(|entries| json(StatusCode::OK, &ApiResourceList::new(group_version, "MetricValueList", entries)))
                .unwrap_or_else(|e| provider_error(e, None))
        }
        ["apis", EXTERNAL_GROUP, EXTERNAL_VERSION] => {
            let group_version = format!("{EXTERNAL_GROUP}/{EXTERNAL_VERSION}");
            blocking(state.provider.clone(), |p| p.list_external())
                .await
                .map(|names| {
                    let entries = names.into_iter().map(|n| (n, true));
                    json(StatusCode::OK, &ApiResourceList::new(group_version, "ExternalMetricValueList", entries))
                })
                .unwrap_or_else(|e| provider_error(e, None))
        }
        ["apis", CUSTOM_GROUP, version, rest @ ..] if CUSTOM_VERSIONS.contains(version) => {
            let version = version.to_string();
            match custom_request(rest, &params) {
                Ok(request) => custom_metrics(state, request, version).await,
                Err(rejection) => rejection.into_response(),
            }
        }
        ["apis", EXTERNAL_GROUP, EXTERNAL_VERSION, "namespaces", namespace, metric] => {
            let selector = match param_selector(&params, "labelSelector") {
                Ok(s) => s,
                Err(rejection) => return rejection.into_response(),
            };
            if let Err(rejection) = check_name("namespace", namespace).and_then(|_| check_name("metric", metric)) {
                return rejection.into_response();
            }
            let request =
                ExternalMetricRequest { namespace: namespace.to_string(), metric: metric.to_string(), selector };
            external_metrics(state, request).await
        }
        _ => status(404, "the server could not find the requested resource"),
    }
}

/// Refuses names that cannot be Kubernetes object or metric names (a decoded `/`, empty).
fn check_name(what: &str, name: &str) -> Result<(), Rejection> {
    if name.is_empty() {
        return Err(Rejection(400, format!("{what} name must not be empty")));
    }
    if name.contains('/') {
        return Err(Rejection(400, format!("{what} name {name:?} must not contain '/'")));
    }
    Ok(())
}

/// Turns the path after `/apis/custom.metrics.k8s.io/<version>/` into a request.
fn custom_request(rest: &[&str], params: &[(String, String)]) -> Result<CustomMetricRequest, Rejection> {
    let (resource, namespace, name, metric) = match rest {
        // Metrics describing a namespace: the object is the namespace itself (`*` for all).
        ["namespaces", namespace, "metrics", metric] => (GroupResource::namespaces(), None, *namespace, *metric),
        ["namespaces", namespace, resource, name, metric] => {
            check_name("namespace", namespace)?;
            if *namespace == "*" {
                return Err(Rejection(
                    400,
                    "a namespace must be named (only `namespaces/*/metrics/<metric>` takes `*`)".into(),
                ));
            }
            (GroupResource::parse(resource), Some(namespace.to_string()), *name, *metric)
        }
        [resource, name, metric] => (GroupResource::parse(resource), None, *name, *metric),
        _ => return Err(Rejection(404, "the server could not find the requested resource".into())),
    };
    check_name("object", name)?;
    check_name("metric", metric)?;
    if resource.resource.is_empty() {
        return Err(Rejection(400, "the resource must not be empty".into()));
    }
    let selector = param_selector(params, "labelSelector")?;
    let metric_selector = param_selector(params, "metricLabelSelector")?;
    let objects =
        if name == "*" { ObjectSelection::Selector(selector) } else { ObjectSelection::Named(name.to_string()) };
    Ok(CustomMetricRequest { resource, namespace, objects, metric: metric.to_string(), metric_selector })
}

/// Which `metrics.k8s.io` resource a request reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResourceKind {
    Pods,
    Nodes,
}

/// Turns the path after `/apis/metrics.k8s.io/v1beta1/` into a request.
fn resource_request(
    rest: &[&str],
    params: &[(String, String)],
) -> Result<(ResourceKind, ResourceMetricsRequest), Rejection> {
    let (kind, namespace, name) = match rest {
        ["pods"] => (ResourceKind::Pods, None, None),
        ["namespaces", namespace, "pods"] => (ResourceKind::Pods, Some(*namespace), None),
        ["namespaces", namespace, "pods", name] => (ResourceKind::Pods, Some(*namespace), Some(*name)),
        ["nodes"] => (ResourceKind::Nodes, None, None),
        ["nodes", name] => (ResourceKind::Nodes, None, Some(*name)),
        _ => return Err(Rejection(404, "the server could not find the requested resource".into())),
    };
    if let Some(namespace) = namespace {
        check_name("namespace", namespace)?;
    }
    if let Some(name) = name {
        check_name("object", name)?;
    }
    if params.iter().any(|(k, v)| k == "watch" && (v == "true" || v == "1")) {
        return Err(Rejection(405, "watch is not supported on metrics.k8s.io".into()));
    }
    let labels = param_selector(params, "labelSelector")?;
    let fields_text = params.iter().rev().find(|(k, _)| k == "fieldSelector").map(|(_, v)| v.as_str()).unwrap_or("");
    let fields = FieldSelector::parse(fields_text).map_err(|e| Rejection(400, format!("fieldSelector: {e}")))?;
    let request = ResourceMetricsRequest {
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        labels,
        fields,
    };
    Ok((kind, request))
}

/// The object meta of a metrics answer (created now, as metrics-server stamps it).
fn metrics_meta(
    name: String,
    namespace: Option<String>,
    labels: std::collections::BTreeMap<String, String>,
) -> MetricsObjectMeta {
    MetricsObjectMeta { name, namespace, creation_timestamp: k8s_time(tsdb::now_ms()), labels }
}

/// A usage pair as quantities (the provider leaves NaN and ±Inf out, so "0" is never used).
fn usage(cpu_cores: f64, memory_bytes: f64) -> Usage {
    Usage {
        cpu: cpu_usage(cpu_cores).unwrap_or_else(|| "0".into()),
        memory: memory_usage(memory_bytes).unwrap_or_else(|| "0".into()),
    }
}

fn pod_metrics_object(pod: PodUsage) -> PodMetrics {
    PodMetrics {
        kind: "PodMetrics".into(),
        api_version: format!("{RESOURCE_GROUP}/{RESOURCE_VERSION}"),
        metadata: metrics_meta(pod.name, Some(pod.namespace), pod.labels),
        timestamp: k8s_time(pod.ts_ms),
        window: go_duration(pod.window),
        containers: pod
            .containers
            .iter()
            .map(|c| ContainerMetrics {
                name: c.name.clone(),
                usage: Usage { cpu: c.cpu_quantity.to_string(), memory: c.memory_quantity.to_string() },
            })
            .collect(),
    }
}

fn node_metrics_object(node: NodeUsage, single: bool) -> NodeMetrics {
    NodeMetrics {
        kind: if single { "NodeMetrics".into() } else { String::new() },
        api_version: if single { format!("{RESOURCE_GROUP}/{RESOURCE_VERSION}") } else { String::new() },
        metadata: metrics_meta(node.name, None, node.labels),
        timestamp: k8s_time(node.ts_ms),
        window: go_duration(node.window),
        usage: usage(node.cpu_cores, node.memory_bytes),
    }
}

async fn pod_metrics(state: AdapterState, request: ResourceMetricsRequest) -> Response {
    let details = StatusDetails {
        name: request.name.clone().unwrap_or_default(),
        group: RESOURCE_GROUP.into(),
        kind: "pods".into(),
    };
    let single = request.name.is_some();
    respond(&state, details, move |p| {
        let pods = p.pod_metrics(&request)?;
        if single {
            let pod = pods.into_iter().next().ok_or_else(|| ProviderError::not_found("no metrics for the pod"))?;
            return Ok(json(StatusCode::OK, &pod_metrics_object(pod)));
        }
        let bytes = super::pod_metrics_json::write_pod_metrics_list(&pods, tsdb::now_ms());
        Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], bytes).into_response())
    })
    .await
}

async fn node_metrics(state: AdapterState, request: ResourceMetricsRequest) -> Response {
    let details = StatusDetails {
        name: request.name.clone().unwrap_or_default(),
        group: RESOURCE_GROUP.into(),
        kind: "nodes".into(),
    };
    let single = request.name.is_some();
    respond(&state, details, move |p| {
        let nodes = p.node_metrics(&request)?;
        if single {
            let node = nodes.into_iter().next().ok_or_else(|| ProviderError::not_found("no metrics for the node"))?;
            return Ok(json(StatusCode::OK, &node_metrics_object(node, true)));
        }
        let items: Vec<NodeMetrics> = nodes.into_iter().map(|n| node_metrics_object(n, false)).collect();
        Ok(json(
            StatusCode::OK,
            &MetricValueList::new("NodeMetricsList", format!("{RESOURCE_GROUP}/{RESOURCE_VERSION}"), items),
        ))
    })
    .await
}

/// Runs a metric request's provider work off the async workers, once one of the evaluation
/// slots is free (waiting as long as it takes: the client's own timeout bounds the wait).
async fn evaluate<T: Send + 'static>(
    state: &AdapterState,
    work: impl FnOnce(&Provider) -> Result<T, ProviderError> + Send + 'static,
) -> Result<T, ProviderError> {
    let provider = state.provider.clone();
    match state.evaluations.run(None, move || work(&provider)).await {
        Ok(result) => result,
        Err(e @ (SlotError::Closed | SlotError::TimedOut)) => Err(ProviderError::unavailable(e.to_string())),
        Err(e @ SlotError::Task(_)) => Err(ProviderError::internal(e.to_string())),
    }
}

/// Runs a metric request's provider work and builds its response on an evaluation thread (see
/// [`evaluate`]): the answer is encoded, and what it allocated freed, on the thread that allocated
/// it, so only the response's bytes cross to the async worker. A provider error becomes its
/// Kubernetes `Status` with `details`.
async fn respond(
    state: &AdapterState,
    details: StatusDetails,
    work: impl FnOnce(&Provider) -> Result<Response, ProviderError> + Send + 'static,
) -> Response {
    match evaluate(state, work).await {
        Ok(response) => response,
        Err(e) => provider_error(e, Some(details)),
    }
}

/// Runs provider work off the async workers (it reads the store and runs a query). Discovery
/// calls it directly, without a permit: the aggregator's availability probe must answer fast
/// even while metric requests queue.
async fn blocking<T: Send + 'static>(
    provider: Arc<Provider>,
    work: impl FnOnce(&Provider) -> Result<T, ProviderError> + Send + 'static,
) -> Result<T, ProviderError> {
    tokio::task::spawn_blocking(move || work(&provider))
        .await
        .unwrap_or_else(|e| Err(ProviderError::internal(format!("request task failed: {e}"))))
}

async fn custom_metrics(state: AdapterState, request: CustomMetricRequest, version: String) -> Response {
    let details =
        StatusDetails { name: request.metric.clone(), group: CUSTOM_GROUP.into(), kind: request.resource.to_string() };
    let selector_json = (!request.metric_selector.is_empty()).then(|| request.metric_selector.to_k8s_json());
    let version = if version == "v1beta1" { CustomVersion::V1Beta1 } else { CustomVersion::V1Beta2 };
    respond(&state, details, move |p| {
        let values = p.custom_metric(&request)?;
        Ok(match write_metric_value_list(&values, version, selector_json.as_ref()) {
            Ok(bytes) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
            Err(e) => status(500, format!("encoding the MetricValueList failed: {e}")),
        })
    })
    .await
}

async fn external_metrics(state: AdapterState, request: ExternalMetricRequest) -> Response {
    let details = StatusDetails { name: request.metric.clone(), group: EXTERNAL_GROUP.into(), kind: String::new() };
    respond(&state, details, move |p| {
        let items: Vec<ExternalMetricValue> = p
            .external_metric(&request)?
            .into_iter()
            .map(|item| ExternalMetricValue {
                metric_name: item.metric,
                metric_labels: item.labels,
                timestamp: k8s_time(item.ts_ms),
                window_seconds: item.window_seconds,
                value: item.value,
            })
            .collect();
        Ok(json(
            StatusCode::OK,
            &MetricValueList::new("ExternalMetricValueList", format!("{EXTERNAL_GROUP}/{EXTERNAL_VERSION}"), items),
        ))
    })
    .await
}

/// A response for a plain-HTTP request that reached the TLS port (as Go's server answers it).
pub(crate) fn plain_http_rejection() -> Vec<u8> {
    let body = serde_json::to_string(&Status::failure(400, "Client sent an HTTP request to an HTTPS server."))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_only_gets_406() {
        let mut headers = HeaderMap::new();
        assert!(accepts_plain_json(&headers));
        headers.insert(
            header::ACCEPT,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList".parse().unwrap(),
        );
        assert!(!accepts_plain_json(&headers));
        headers.insert(
            header::ACCEPT,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json".parse().unwrap(),
        );
        assert!(accepts_plain_json(&headers));
        headers.insert(header::ACCEPT, "application/vnd.kubernetes.protobuf, */*".parse().unwrap());
        assert!(accepts_plain_json(&headers));
    }

    #[test]
    fn path_forms_become_requests() {
        let params = vec![("labelSelector".to_string(), "app=web".to_string())];
        let r = custom_request(&["namespaces", "default", "pods", "*", "m"], &params).unwrap();
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert!(matches!(r.objects, ObjectSelection::Selector(ref s) if !s.is_empty()));
        let r = custom_request(&["namespaces", "*", "metrics", "m"], &[]).unwrap();
        assert_eq!(r.resource, GroupResource::namespaces());
        assert!(r.namespace.is_none());
        let r = custom_request(&["nodes", "n1", "m"], &[]).unwrap();
        assert!(matches!(r.objects, ObjectSelection::Named(ref n) if n == "n1"));
        let r = custom_request(&["namespaces", "ns", "models.mlops.seldon.io", "irisa0", "infer_rps"], &[]).unwrap();
        assert_eq!(r.resource, GroupResource::new("mlops.seldon.io", "models"));
        assert!(custom_request(&["namespaces", "ns", "pods", "p", "a/b"], &[]).is_err());
        assert!(custom_request(&["pods", "p"], &[]).is_err());
        let bad = vec![("labelSelector".to_string(), "app in (".to_string())];
        assert!(custom_request(&["namespaces", "ns", "pods", "*", "m"], &bad).is_err());
    }

    #[test]
    fn query_strings_decode() {
        let params = query_params(Some("labelSelector=app%3Dweb%2Ctier+in+%28a%29&x")).unwrap();
        assert_eq!(params[0].1, "app=web,tier in (a)");
        assert!(query_params(Some("a=%zz")).is_err());
        assert_eq!(percent_decode("%2A", false).as_deref(), Some("*"));
    }
}
