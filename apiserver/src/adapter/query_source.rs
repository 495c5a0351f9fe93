//! `HttpQuerySource` is the external query source over HTTP: a Prometheus-compatible query API
//! (Prometheus, VictoriaMetrics `…/select/0/prometheus`, Mimir `…/prometheus`, Thanos Query)
//! that adapter rules are evaluated against, as prometheus-adapter's `--prometheus-url` is —
//! `/api/v1/series` for series discovery and `/api/v1/query` for values, with the configured
//! headers (tenancy: `X-Scope-OrgID`, `THANOS-TENANT`), a bearer token file read at every request
//! (rotated tokens keep working), a CA file, a client certificate and a timeout.
//!
//! Every failure is an error the request passes on (503 for an unreachable or failing source, a
//! timeout or an answer over [`MAX_ANSWER_BYTES`]); nothing here ever turns into a value.

use super::provider::{ExternalSource, ExternalSourceError};
use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

/// Largest answer read from the source (a series listing or a query result); a larger one is
/// refused with 503 instead of growing memory without bound.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Default timeout of one call to the source.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default refresh interval of the source's series listings (prometheus-adapter's
/// `--metrics-relist-interval`; a metric nobody has listed yet is looked up at once).
pub const DEFAULT_RELIST_INTERVAL: Duration = Duration::from_secs(60);
/// The service account token and CA a pod reads (`--prometheus-auth-incluster`).
pub const IN_CLUSTER_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
pub const IN_CLUSTER_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// How queries are sent (`--prometheus-verb`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HttpVerb {
    #[default]
    Get,
    /// Form-encoded body: long queries (many object names) do not hit URL length limits.
    Post,
}

/// Where the external query source is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalSourceSettings {
    /// Base URL; `/api/v1/query` and `/api/v1/series` are appended.
    pub url: String,
    /// Sent with every call, in order.
    pub headers: Vec<(String, String)>,
    /// Read at every call; its trimmed content is sent as `Authorization: Bearer …`.
    pub bearer_token_file: Option<PathBuf>,
    /// PEM bundle the source's certificate must chain to (instead of the system roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for sources that require one.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub timeout: Duration,
    pub verb: HttpVerb,
    /// How often a rule's series are listed again at the source.
    pub relist_interval: Duration,
}

impl ExternalSourceSettings {
    pub fn new(url: impl Into<String>) -> Self {
        ExternalSourceSettings {
            url: url.into(),
            headers: Vec::new(),
            bearer_token_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            timeout: DEFAULT_TIMEOUT,
            verb: HttpVerb::Get,
            relist_interval: DEFAULT_RELIST_INTERVAL,
        }
    }
}

/// Why the source's client could not be built (at start: the settings are wrong).
#[derive(Debug, thiserror::Error)]
pub enum QuerySourceError {
    #[error("--prometheus-url {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("reading {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path}: {message}")]
    Pem { what: &'static str, path: String, message: String },
    #[error("header {name:?}: {message}")]
    Header { name: String, message: String },
    #[error("--prometheus-client-tls-cert-file and --prometheus-client-tls-key-file go together")]
    HalfClientPair,
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// The external query source over HTTP. Calls block the calling thread (a blocking-pool
/// thread) while the request runs on the server's runtime.
pub struct HttpQuerySource {
    client: reqwest::Client,
    base: String,
    settings: ExternalSourceSettings,
    runtime: tokio::runtime::Handle,
}

impl HttpQuerySource {
    /// Builds the client (reads the CA and client certificate now: a wrong path fails the start).
    pub fn new(settings: ExternalSourceSettings, runtime: tokio::runtime::Handle) -> Result<Self, QuerySourceError> {
        let url_error = |message: &str| QuerySourceError::Url { url: settings.url.clone(), message: message.into() };
        let parsed = reqwest::Url::parse(&settings.url).map_err(|e| url_error(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(url_error("the scheme must be http or https"));
        }
        let mut builder = reqwest::Client::builder().timeout(settings.timeout).pool_max_idle_per_host(8);
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &settings.headers {
            let header_error = |message: String| QuerySourceError::Header { name: name.clone(), message };
            let header_name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| header_error(format!("not a header name: {e}")))?;
            let header_value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| header_error(format!("not a header value: {e}")))?;
            headers.append(header_name, header_value);
        }
        builder = builder.default_headers(headers);
        if let Some(path) = &settings.ca_file {
            let pem = read_file("CA file", path)?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| QuerySourceError::Pem {
                what: "CA file",
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            if certificates.is_empty() {
                return Err(QuerySourceError::Pem {
                    what: "CA file",
                    path: path.display().to_string(),
                    message: "holds no certificate".into(),
                });
            }
            builder = builder.tls_built_in_root_certs(false);
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        match (&settings.client_cert_file, &settings.client_key_file) {
            (Some(cert), Some(key)) => {
                let mut pem = read_file("client certificate", cert)?;
                pem.push(b'\n');
                pem.extend(read_file("client key", key)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| QuerySourceError::Pem {
                    what: "client certificate and key",
                    path: format!("{} + {}", cert.display(), key.display()),
                    message: e.to_string(),
                })?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => return Err(QuerySourceError::HalfClientPair),
        }
        let client = builder.build().map_err(|e| QuerySourceError::Client(e.to_string()))?;
        let base = settings.url.trim_end_matches('/').to_string();
        Ok(HttpQuerySource { client, base, settings, runtime })
    }

    /// Sends one call (`path` with `params`) and returns its status and body.
    fn call(&self, path: &str, params: Vec<(&'static str, String)>) -> Result<(u16, Vec<u8>), ExternalSourceError> {
        let mut request = match self.settings.verb {
            HttpVerb::Get => self.client.get(format!("{}{path}", self.base)).query(&params),
            HttpVerb::Post => self.client.post(format!("{}{path}", self.base)).form(&params),
        };
        if let Some(path) = &self.settings.bearer_token_file {
            let token = std::fs::read_to_string(path).map_err(|e| {
                ExternalSourceError::Unavailable(format!("reading the bearer token file {}: {e}", path.display()))
            })?;
            request = request.bearer_auth(token.trim());
        }
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        // The call runs on the server's runtime; this (blocking) thread waits for it. A channel
        // rather than `block_on`, so a caller on a runtime thread blocks instead of panicking.
        self.runtime.spawn(async move {
            let _ = sender.send(read_answer(request).await);
        });
        receiver
            .recv_timeout(self.settings.timeout + Duration::from_secs(1))
            .map_err(|_| ExternalSourceError::Unavailable(format!("no answer within {:?}", self.settings.timeout)))?
    }
}

fn read_file(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, QuerySourceError> {
    std::fs::read(path).map_err(|source| QuerySourceError::Read { what, path: path.display().to_string(), source })
}

/// Sends `request` and reads its body, at most [`MAX_ANSWER_BYTES`].
async fn read_answer(request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), ExternalSourceError> {
    let unavailable = |e: reqwest::Error| ExternalSourceError::Unavailable(describe_reqwest_error(&e));
    let mut response = request.send().await.map_err(unavailable)?;
    let status = response.status().as_u16();
    if response.content_length().is_some_and(|length| length > MAX_ANSWER_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

fn too_large() -> ExternalSourceError {
    ExternalSourceError::Unavailable(format!("the answer is larger than {} MiB", MAX_ANSWER_BYTES >> 20))
}

/// The error with its causes (reqwest's own message hides the one that says what happened).
fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The envelope of a Prometheus API answer, its `data` typed by the call. Strings borrow from
/// the body where they hold no escapes (a 1000-pod answer is parsed without building a tree).
#[derive(serde::Deserialize)]
#[serde(bound(deserialize = "T: serde::Deserialize<'de>"))]
struct Answer<'a, T> {
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(default = "Option::default")]
    data: Option<T>,
    #[serde(default, rename = "errorType", borrow)]
    error_type: Cow<'a, str>,
    #[serde(default, borrow)]
    error: Cow<'a, str>,
}

/// The `data` of a Prometheus API answer, or why there is none: the API's own error for the
/// query (400 `bad_data`, 422 execution) is `Refused`; everything else — 5xx, 429, a proxy's or
/// an authenticating gateway's refusal (vmauth answers an unknown token with 400 and text),
/// anything that is not the API's JSON — is `Unavailable`.
fn parse_answer<'a, T: serde::Deserialize<'a>>(status: u16, body: &'a [u8]) -> Result<T, ExternalSourceError> {
    let parsed: Result<Answer<'a, T>, _> = serde_json::from_slice(body);
    let excerpt = || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    match parsed {
        Ok(answer) if (200..300).contains(&status) && answer.status == "success" => answer
            .data
            .ok_or_else(|| ExternalSourceError::Unavailable(format!("HTTP {status}: a success without data"))),
        Ok(answer) => {
            let message = format!("HTTP {status}: {} {}", answer.error_type, answer.error).trim_end().to_string();
            Err(classify(status, message))
        }
        Err(e) if (200..300).contains(&status) => Err(ExternalSourceError::Unavailable(format!(
            "HTTP {status} with an answer that is not the API's JSON ({e}): {}",
            excerpt()
        ))),
        Err(_) => Err(ExternalSourceError::Unavailable(format!("HTTP {status}: {}", excerpt()))),
    }
}

fn classify(status: u16, message: String) -> ExternalSourceError {
    match status {
        400 | 422 => ExternalSourceError::Refused(message),
        _ => ExternalSourceError::Unavailable(message),
    }
}

/// A sample value as the API writes it (`"1.5"`, `"NaN"`, `"+Inf"`).
fn parse_sample_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// `[1712345678.123, "1.5"]`.
type Point<'a> = (f64, Cow<'a, str>);

/// A point as `(ms, value)`.
fn parse_point((ts, value): &Point<'_>) -> Option<(i64, f64)> {
    let ts_ms = (ts * 1000.0).round();
    if !ts_ms.is_finite() {
        return None;
    }
    Some((ts_ms as i64, parse_sample_value(value)?))
}

/// A JSON object of strings, as label pairs in the order written.
struct LabelPairs<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for LabelPairs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = LabelPairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of label names and string values")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((name, value)) = map.next_entry::<Borrowed<'a>, Borrowed<'a>>()? {
                    pairs.push((name.0, value.0));
                }
                Ok(LabelPairs(pairs))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// A string borrowed from the body when it can be.
struct Borrowed<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Borrowed<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Inner<'a>(#[serde(borrow)] Cow<'a, str>);
        Inner::deserialize(deserializer).map(|inner| Borrowed(inner.0))
    }
}

impl LabelPairs<'_> {
    fn labels(&self) -> tsdb::Labels {
        tsdb::Labels::from_pairs(self.0.iter().map(|(n, v)| (n.as_ref(), v.as_ref())))
    }
}

/// One element of a vector (or a matrix, whose `values` are not read).
#[derive(serde::Deserialize)]
struct ResultItem<'a> {
    #[serde(borrow)]
    metric: LabelPairs<'a>,
    #[serde(default, borrow)]
    value: Option<Point<'a>>,
}

/// An instant query's `data`: `result` is read by the `resultType` written before it (as every
/// Prometheus-compatible API writes them); written the other way round it is read as JSON first.
enum QueryData<'a> {
    Vector(Vec<ResultItem<'a>>),
    Scalar(Point<'a>),
    Other(String),
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for QueryData<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = QueryData<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a query answer's data: resultType and result")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                use serde::de::Error;
                let mut result_type: Option<Borrowed<'a>> = None;
                let mut early_result: Option<serde_json::Value> = None;
                let mut data: Option<QueryData<'a>> = None;
                while let Some(key) = map.next_key::<Borrowed<'a>>()? {
                    match (key.0.as_ref(), result_type.as_ref().map(|t| t.0.as_ref())) {
                        ("resultType", _) => result_type = Some(map.next_value()?),
                        ("result", Some("vector")) => data = Some(QueryData::Vector(map.next_value()?)),
                        ("result", Some("scalar")) => data = Some(QueryData::Scalar(map.next_value()?)),
                        ("result", Some(other)) => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            data = Some(QueryData::Other(other.to_string()));
                        }
                        ("result", None) => early_result = Some(map.next_value()?),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                if let Some(data) = data {
                    return Ok(data);
                }
                let result_type = result_type.ok_or_else(|| M::Error::custom("no resultType"))?.0;
                let result = early_result.ok_or_else(|| M::Error::custom("no result"))?;
                let owned = |e: serde_json::Error| M::Error::custom(e.to_string());
                Ok(match result_type.as_ref() {
                    "vector" => {
                        let items: Vec<ResultItem<'static>> =
                            <Vec<OwnedItem> as serde::Deserialize>::deserialize(result)
                                .map_err(owned)?
                                .into_iter()
                                .map(OwnedItem::into_item)
                                .collect();
                        QueryData::Vector(items)
                    }
                    "scalar" => {
                        let (ts, value): (f64, String) = serde::Deserialize::deserialize(result).map_err(owned)?;
                        QueryData::Scalar((ts, Cow::Owned(value)))
                    }
                    other => QueryData::Other(other.to_string()),
                })
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// A vector element read from an already parsed JSON value (a `result` written before its
/// `resultType`).
#[derive(serde::Deserialize)]
struct OwnedItem {
    metric: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

impl OwnedItem {
    fn into_item(self) -> ResultItem<'static> {
        ResultItem {
            metric: LabelPairs(self.metric.into_iter().map(|(n, v)| (Cow::Owned(n), Cow::Owned(v))).collect()),
            value: self.value.map(|(ts, v)| (ts, Cow::Owned(v))),
        }
    }
}

/// An instant query's `data` as a value (a vector or a scalar; anything else is an error).
fn query_value(data: QueryData<'_>) -> Result<query::Value, ExternalSourceError> {
    let malformed = |what: &str| ExternalSourceError::Unavailable(format!("malformed query answer: {what}"));
    match data {
        QueryData::Vector(items) => {
            let mut samples = Vec::with_capacity(items.len());
            for item in &items {
                let (ts_ms, value) =
                    item.value.as_ref().and_then(parse_point).ok_or_else(|| malformed("a sample without a value"))?;
                samples.push(query::InstantSample { labels: item.metric.labels(), ts_ms, value });
            }
            Ok(query::Value::Vector(samples))
        }
        QueryData::Scalar(point) => {
            let (ts_ms, value) = parse_point(&point).ok_or_else(|| malformed("a scalar without a value"))?;
            Ok(query::Value::Scalar { ts_ms, value })
        }
        QueryData::Other(other) => Err(ExternalSourceError::Refused(format!(
            "the query returned a {other}; a metric needs a vector or a scalar"
        ))),
    }
}

/// Milliseconds as the API's seconds (`1712345678.123`).
fn api_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

impl ExternalSource for HttpQuerySource {
    fn describe(&self) -> &str {
        &self.base
    }

    fn series(&self, selector: &str, start_ms: i64, end_ms: i64) -> Result<Vec<tsdb::Labels>, ExternalSourceError> {
        let params = vec![("match[]", selector.to_string()), ("start", api_time(start_ms)), ("end", api_time(end_ms))];
        let (status, body) = self.call("/api/v1/series", params)?;
        let items: Vec<LabelPairs<'_>> = parse_answer(status, &body)?;
        Ok(items.iter().map(LabelPairs::labels).collect())
    }

    fn instant_query(&self, query: &str, ts_ms: i64) -> Result<query::Value, ExternalSourceError> {
        let (status, body) =
            self.call("/api/v1/query", vec![("query", query.to_string()), ("time", api_time(ts_ms))])?;
        query_value(parse_answer(status, &body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_into_values() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"pod":"a","namespace":"ml"},"value":[1712345678.123,"1.5"]},
            {"metric":{"pod":"b"},"value":[1712345678,"NaN"]},
            {"metric":{},"value":[1712345678,"+Inf"]}]}}"#;
        let data: QueryData = parse_answer(200, body).unwrap();
        let query::Value::Vector(samples) = query_value(data).unwrap() else { panic!("not a vector") };
        assert_eq!(samples.len(), 3);
        assert_eq!((samples[0].labels.get("pod"), samples[0].ts_ms, samples[0].value), (Some("a"), 1712345678123, 1.5));
        assert!(samples[1].value.is_nan());
        assert_eq!(samples[2].value, f64::INFINITY);

        let scalar = parse_answer(200, br#"{"status":"success","data":{"resultType":"scalar","result":[10,"2"]}}"#);
        assert_eq!(query_value(scalar.unwrap()).unwrap(), query::Value::Scalar { ts_ms: 10_000, value: 2.0 });

        // Escaped strings, and `result` written before `resultType`, read the same.
        let reordered = br#"{"status":"success","data":{"result":[{"metric":{"pod":"a\"b","x":"\u00e9"},
            "value":[1,"3"]}],"resultType":"vector"}}"#;
        let query::Value::Vector(samples) = query_value(parse_answer(200, reordered).unwrap()).unwrap() else {
            panic!("not a vector")
        };
        assert_eq!((samples[0].labels.get("pod"), samples[0].labels.get("x")), (Some("a\"b"), Some("é")));
        let series: Vec<LabelPairs> =
            parse_answer(200, br#"{"status":"success","data":[{"__name__":"up","job":"a\\b"},{}]}"#).unwrap();
        assert_eq!(
            series.iter().map(|s| s.labels().get("job").map(str::to_string)).collect::<Vec<_>>(),
            [Some("a\\b".to_string()), None]
        );
    }

    #[test]
    fn failures_are_errors_never_values() {
        let query = |status: u16, body: &[u8]| parse_answer::<QueryData>(status, body).and_then(query_value);
        let bad_data = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert!(matches!(query(400, bad_data), Err(ExternalSourceError::Refused(m)) if m.contains("char 3")));
        let overloaded = br#"{"status":"error","errorType":"timeout","error":"query timed out"}"#;
        assert!(matches!(query(503, overloaded), Err(ExternalSourceError::Unavailable(_))));
        assert!(matches!(query(502, b"<html>bad gateway</html>"), Err(ExternalSourceError::Unavailable(_))));
        assert!(matches!(query(429, b"slow down"), Err(ExternalSourceError::Unavailable(_))));
        let gateway = b"cannot find the provided auth token";
        assert!(matches!(query(400, gateway), Err(ExternalSourceError::Unavailable(_))), "not the API's error");
        assert!(matches!(query(200, b"not json"), Err(ExternalSourceError::Unavailable(_))));
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[]}]}}"#;
        assert!(matches!(query(200, matrix), Err(ExternalSourceError::Refused(_))));
        let no_value = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}"#;
        assert!(query(200, no_value).is_err());
        let bad_number = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"lots"]}}"#;
        assert!(query(200, bad_number).is_err());
        let not_strings =
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":1},"value":[1,"1"]}]}}"#;
        assert!(matches!(query(200, not_strings), Err(ExternalSourceError::Unavailable(_))));
        assert!(matches!(query(200, br#"{"status":"success"}"#), Err(ExternalSourceError::Unavailable(_))));
    }

    #[test]
    fn times_are_seconds_with_milliseconds() {
        assert_eq!(api_time(1_712_345_678_123), "1712345678.123");
        assert_eq!(api_time(5), "0.005");
        assert_eq!(api_time(-1), "-1.999");
    }

    #[test]
    fn settings_that_cannot_work_are_refused_at_start() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let with = |edit: &dyn Fn(&mut ExternalSourceSettings)| {
            let mut settings = ExternalSourceSettings::new("http://127.0.0.1:9090");
            edit(&mut settings);
            HttpQuerySource::new(settings, runtime.handle().clone()).map(|_| ())
        };
        assert!(with(&|_| {}).is_ok());
        assert!(matches!(with(&|s| s.url = "ftp://x".into()), Err(QuerySourceError::Url { .. })));
        assert!(matches!(with(&|s| s.url = "not a url".into()), Err(QuerySourceError::Url { .. })));
        let bad_header = with(&|s| s.headers = vec![("X Scope".into(), "a".into())]);
        assert!(matches!(bad_header, Err(QuerySourceError::Header { .. })));
        let missing_ca = with(&|s| s.ca_file = Some("/nonexistent/ca.pem".into()));
        assert!(matches!(missing_ca, Err(QuerySourceError::Read { .. })));
        let half_pair = with(&|s| s.client_cert_file = Some("/nonexistent/cert.pem".into()));
        assert!(matches!(half_pair, Err(QuerySourceError::HalfClientPair)));
    }
}
