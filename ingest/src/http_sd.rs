//! `http_sd` is Prometheus's HTTP service discovery for one `http_sd_configs` entry: the URL is
//! asked every `refresh_interval` for a JSON list of `{targets: [...], labels: {...}}` groups.
//!
//! As Prometheus 2.42: the request carries `X-Prometheus-Refresh-Interval-Seconds`; only a 200
//! with a JSON content type is an answer; each group gets `__meta_url` (the URL); an answer that
//! fails (status, type, JSON, label names) keeps the groups of the last good one (the error is
//! logged once per change). Answers are bounded like discovery files (16 MiB, 100 000 targets).

use crate::file_sd::{groups_from_text, MAX_FILE_SD_FILE_BYTES};
use crate::scrape_config::{client_builder, Auth, HttpSdConfig, TargetGroup, DEFAULT_HTTP_SD_REFRESH_INTERVAL};
use std::time::Duration;

/// The label naming the URL a group came from.
pub const HTTP_SD_URL_LABEL: &str = "__meta_url";

/// One `http_sd_configs` entry, ready to ask.
#[derive(Debug)]
pub(crate) struct HttpSd {
    url: String,
    refresh: Duration,
    client: reqwest::Client,
    auth: Auth,
}

impl HttpSd {
    /// The entry's client (its TLS, proxy and redirect settings; `user_agent` as scrapes send it).
    pub(crate) fn new(config: &HttpSdConfig, user_agent: &str) -> Result<HttpSd, String> {
        let refresh = config.refresh_interval.unwrap_or(DEFAULT_HTTP_SD_REFRESH_INTERVAL);
        let tls = config.tls_config.clone().unwrap_or_default();
        let builder = client_builder(user_agent, config.follow_redirects, config.proxy_url.as_deref(), &tls)?;
        // An answer slower than the interval is late for the next one anyway.
        let client = builder.timeout(refresh).build().map_err(|e| e.to_string())?;
        Ok(HttpSd { url: config.url.clone(), refresh, client, auth: config.auth()? })
    }

    pub(crate) fn refresh_interval(&self) -> Duration {
        self.refresh
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Asks the URL once: its groups, each with `__meta_url`, or why the answer is not used.
    pub(crate) async fn fetch(&self) -> Result<Vec<TargetGroup>, String> {
        let request = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header("X-Prometheus-Refresh-Interval-Seconds", format!("{}", self.refresh.as_secs_f64()));
        let request = self.auth.apply(request).await?;
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(format!("server returned HTTP status {status}"));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_string();
        if !is_json(&content_type) {
            return Err(format!("unsupported content type {content_type:?}"));
        }
        let limit = usize::try_from(MAX_FILE_SD_FILE_BYTES).unwrap_or(usize::MAX);
        let body = crate::http_body::read_limited(response, limit).await?;
        let text = std::str::from_utf8(&body).map_err(|_| "the answer is not UTF-8".to_string())?;
        if !text.trim_start().starts_with('[') {
            return Err("the answer is not a JSON list of target groups".into());
        }
        groups_from_text(text, HTTP_SD_URL_LABEL, &self.url)
    }
}

/// Prometheus's accepted type: `application/json`, optionally with `charset=utf-8` (any case).
fn is_json(content_type: &str) -> bool {
    let lower = content_type.to_ascii_lowercase();
    let mut parts = lower.splitn(2, ';');
    if parts.next().map(str::trim) != Some("application/json") {
        return false;
    }
    match parts.next().map(str::trim) {
        None => true,
        Some(parameter) => matches!(parameter.replace(' ', "").as_str(), "charset=utf-8" | "charset=\"utf-8\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_as_prometheus_accepts_them() {
        for accepted in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(is_json(accepted), "{accepted}");
        }
        for refused in ["", "text/plain", "application/json; charset=latin1", "application/jsonl"] {
            assert!(!is_json(refused), "{refused}");
        }
    }

    #[test]
    fn groups_get_the_url_and_bad_names_are_refused() {
        let groups = groups_from_text(
            r#"[{"targets": ["a:1", "b:2"], "labels": {"env": "prod"}}, {"targets": ["c:3"]}]"#,
            HTTP_SD_URL_LABEL,
            "http://sd/targets",
        )
        .unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1].labels.get(HTTP_SD_URL_LABEL).map(String::as_str), Some("http://sd/targets"));
        assert!(groups_from_text(r#"[{"targets": ["a:1"], "labels": {"1x": "y"}}]"#, HTTP_SD_URL_LABEL, "u").is_err());
        assert!(groups_from_text(r#"[{"targets": ["a:1"], "extra": 1}]"#, HTTP_SD_URL_LABEL, "u").is_err());
    }

    #[test]
    fn entries_prometheus_refuses_are_refused() {
        let config = |yaml: &str| serde_yaml::from_str::<HttpSdConfig>(yaml).unwrap();
        for (yaml, expected) in [
            ("{url: 'ftp://sd/x'}", "URL scheme must be 'http' or 'https'"),
            ("{url: 'not a url'}", "url"),
            ("{url: 'http://sd/x', refresh_interval: 0s}", "refresh_interval must be > 0"),
            ("{url: 'http://sd/x', bearer_token: a, basic_auth: {username: u}}", "at most one"),
        ] {
            let error = config(yaml).validate().unwrap_err();
            assert!(error.contains(expected), "{yaml}: {error}");
        }
        assert!(config("{url: 'https://sd/x', refresh_interval: 5s}").validate().is_ok());
    }
}
