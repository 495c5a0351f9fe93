//! `oauth2:` of a scrape job or a `remote_write` destination: OAuth 2.0 client credentials as
//! Prometheus sends them. A token is asked of `token_url` (`grant_type=client_credentials`, the
//! client's id and secret in a Basic header, `scope` and `endpoint_params` in the form), kept
//! until 10 s before it expires, and asked for again when the secret file changes. A token
//! endpoint that fails fails the request it was for (the scrape's `up` is 0), never the process.

use crate::scrape_config::TlsConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long before its expiry a token is replaced (golang.org/x/oauth2's `expiryDelta`).
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Longest token response read; a longer one is refused.
const MAX_TOKEN_RESPONSE_BYTES: usize = 1 << 20;
/// Longest a token request may take (the scrape's own timeout also bounds it).
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The `oauth2` block, with Prometheus's field names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Read at every token request, so a rotated secret is used (and a new token asked for).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub token_url: String,
    /// Extra form fields of the token request (`audience`, `resource`, …).
    #[serde(default)]
    pub endpoint_params: BTreeMap<String, String>,
    /// TLS towards the token endpoint.
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    /// An `http://` or `https://` proxy the token request goes through.
    #[serde(default)]
    pub proxy_url: Option<String>,
}

/// Where a job's or destination's tokens come from, and the current one.
#[derive(Debug)]
pub struct TokenSource {
    config: OAuth2Config,
    client: reqwest::Client,
    current: tokio::sync::Mutex<Option<Token>>,
}

/// A token and what it was asked with.
struct Token {
    /// `Authorization` header value: `<type> <access token>`.
    header: String,
    /// `None`: the endpoint gave no `expires_in`; kept until the secret changes.
    expires: Option<Instant>,
    /// The client secret it was asked with.
    secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("expires", &self.expires).finish_non_exhaustive()
    }
}

impl PartialEq for TokenSource {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config
    }
}

/// The token endpoint's answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: String,
    /// Seconds; some servers write it as a string.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl TokenSource {
    /// Checks `config` as Prometheus does and builds the client for its token endpoint.
    pub fn new(config: &OAuth2Config) -> Result<TokenSource, String> {
        if config.client_id.is_empty() {
            return Err("oauth2 client_id must be configured".into());
        }
        if config.client_secret.is_some() && config.client_secret_file.is_some() {
            return Err("at most one of oauth2 client_secret & client_secret_file must be configured".into());
        }
        if config.token_url.is_empty() {
            return Err("oauth2 token_url must be configured".into());
        }
        match reqwest::Url::parse(&config.token_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => return Err(format!("oauth2 token_url {:?} is not an http:// or https:// URL", config.token_url)),
        }
        let tls = config.tls_config.clone().unwrap_or_default();
        let user_agent = concat!("Ringtail/", env!("CARGO_PKG_VERSION"));
        let builder = crate::scrape_config::client_builder(user_agent, true, config.proxy_url.as_deref(), &tls)
            .map_err(|e| format!("oauth2 {e}"))?;
        let client = builder.timeout(TOKEN_REQUEST_TIMEOUT).build().map_err(|e| format!("oauth2: {e}"))?;
        Ok(TokenSource { config: config.clone(), client, current: tokio::sync::Mutex::new(None) })
    }

    /// The `Authorization` header value to send now: the kept token, or a new one.
    pub async fn authorization(&self) -> Result<String, String> {
        let secret = match &self.config.client_secret_file {
            Some(path) => {
                crate::scrape_config::read_secret(path).map_err(|e| format!("oauth2 client_secret_file: {e}"))?
            }
            None => self.config.client_secret.clone().unwrap_or_default(),
        };
        // One request at a time asks for a token; the others wait for it.
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref() {
            let fresh = token.expires.is_none_or(|expires| Instant::now() + EXPIRY_MARGIN < expires);
            if fresh && token.secret == secret {
                return Ok(token.header.clone());
            }
        }
        let token = self.ask(secret).await.map_err(|e| format!("oauth2 token from {}: {e}", self.config.token_url))?;
        let header = token.header.clone();
        *current = Some(token);
        Ok(header)
    }

    /// One token request: the credentials in a Basic header, and if the endpoint answers that
    /// with an error status, in the form instead, as golang.org/x/oauth2 tries them.
    async fn ask(&self, secret: String) -> Result<Token, String> {
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        let scope = self.config.scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        for (name, value) in &self.config.endpoint_params {
            form.push((name, value));
        }
        let encode = |text: &str| percent_encoding::utf8_percent_encode(text, QUERY_ESCAPE).to_string();
        let asked = Instant::now();
        let in_header = self
            .client
            .post(&self.config.token_url)
            .basic_auth(encode(&self.config.client_id), Some(encode(&secret)))
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form_body(&form));
        let mut response = send_form(in_header).await?;
        if !response.status().is_success() {
            let mut with_credentials = form.clone();
            with_credentials.push(("client_id", &self.config.client_id));
            if !secret.is_empty() {
                with_credentials.push(("client_secret", &secret));
            }
            let in_form = self
                .client
                .post(&self.config.token_url)
                .header(reqwest::header::ACCEPT, "application/json")
                .body(form_body(&with_credentials));
            response = send_form(in_form).await?;
        }
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        let body = crate::http_body::read_limited(response, MAX_TOKEN_RESPONSE_BYTES).await?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned();
            return Err(format!("server returned HTTP status {status}: {text}"));
        }
        let parsed = parse_token_response(content_type.as_deref(), &body)?;
        if parsed.access_token.is_empty() {
            return Err("the token response holds no access_token".into());
        }
        let expires = expires_in_seconds(parsed.expires_in.as_ref())?.and_then(|seconds| asked.checked_add(seconds));
        Ok(Token { header: format!("{} {}", token_type(&parsed.token_type), parsed.access_token), expires, secret })
    }
}

/// Characters Go's `url.QueryEscape` leaves as they are: letters, digits, `-_.~`.
const QUERY_ESCAPE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A token response: form-encoded when its type says `application/x-www-form-urlencoded` or
/// `text/plain`, JSON otherwise (as golang.org/x/oauth2 reads it).
fn parse_token_response(content_type: Option<&str>, body: &[u8]) -> Result<TokenResponse, String> {
    if !matches!(content_type, Some("application/x-www-form-urlencoded" | "text/plain")) {
        return serde_json::from_slice(body).map_err(|e| format!("the token response is not the JSON expected: {e}"));
    }
    let text = std::str::from_utf8(body).map_err(|_| "the token response is not UTF-8".to_string())?;
    let decode =
        |part: &str| percent_encoding::percent_decode_str(&part.replace('+', " ")).decode_utf8_lossy().into_owned();
    let mut response = TokenResponse { access_token: String::new(), token_type: String::new(), expires_in: None };
    for pair in text.trim().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match decode(name).as_str() {
            "access_token" => response.access_token = decode(value),
            "token_type" => response.token_type = decode(value),
            "expires_in" => response.expires_in = Some(serde_json::Value::String(decode(value))),
            _ => {}
        }
    }
    Ok(response)
}

/// `application/x-www-form-urlencoded` body of `pairs`, in their order.
fn form_body(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| percent_encoding::utf8_percent_encode(text, QUERY_ESCAPE).to_string().replace("%20", "+");
    pairs.iter().map(|(name, value)| format!("{}={}", encode(name), encode(value))).collect::<Vec<_>>().join("&")
}

async fn send_form(request: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
    request
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .send()
        .await
        .map_err(|e| e.to_string())
}

/// `expires_in` as a duration: a number or a string of one; absent or 0 is no expiry.
fn expires_in_seconds(value: Option<&serde_json::Value>) -> Result<Option<Duration>, String> {
    let seconds = match value {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match seconds {
        Some(0.0) => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s.min(1e9)))),
        _ => Err(format!("expires_in {value:?} is not a number of seconds")),
    }
}

/// The token type as the `Authorization` scheme: `Bearer` for an empty or any-case `bearer`,
/// `MAC` and `Basic` likewise, anything else as given (golang.org/x/oauth2's `Token.Type`).
fn token_type(given: &str) -> String {
    match given.to_ascii_lowercase().as_str() {
        "" | "bearer" => "Bearer".into(),
        "mac" => "MAC".into(),
        "basic" => "Basic".into(),
        _ => given.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> OAuth2Config {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn settings_prometheus_refuses_are_refused_with_its_words() {
        for (yaml, expected) in [
            ("{token_url: 'http://a/t'}", "client_id must be configured"),
            ("{client_id: a}", "token_url must be configured"),
            ("{client_id: a, client_secret: b, client_secret_file: /c, token_url: 'http://a/t'}", "at most one"),
            ("{client_id: a, token_url: 'ftp://a/t'}", "not an http:// or https:// URL"),
            ("{client_id: a, token_url: 'http://a/t', proxy_url: 'not a url'}", "proxy_url"),
        ] {
            let error = TokenSource::new(&config(yaml)).unwrap_err();
            assert!(error.contains(expected), "{yaml}: {error}");
        }
        assert!(TokenSource::new(&config("{client_id: a, token_url: 'https://a/t', scopes: [x]}")).is_ok());
        assert!(serde_yaml::from_str::<OAuth2Config>("{client_id: a, token_uri: x}").is_err(), "unknown keys");
    }

    #[test]
    fn token_types_and_expiries_read_as_golang_oauth2_reads_them() {
        assert_eq!(token_type(""), "Bearer");
        assert_eq!(token_type("bearer"), "Bearer");
        assert_eq!(token_type("MAC"), "MAC");
        assert_eq!(token_type("DPoP"), "DPoP");
        let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        assert_eq!(expires_in_seconds(None), Ok(None));
        assert_eq!(expires_in_seconds(Some(&json("3600"))), Ok(Some(Duration::from_secs(3600))));
        assert_eq!(expires_in_seconds(Some(&json("\"60\""))), Ok(Some(Duration::from_secs(60))));
        assert_eq!(expires_in_seconds(Some(&json("0"))), Ok(None));
        assert!(expires_in_seconds(Some(&json("-5"))).is_err());
        assert!(expires_in_seconds(Some(&json("\"soon\""))).is_err());
        assert!(expires_in_seconds(Some(&json("1e300"))).is_ok(), "a huge expiry is capped, never a panic");
    }

    #[test]
    fn token_responses_are_read_by_their_type() {
        let json = parse_token_response(Some("application/json"), br#"{"access_token":"a","expires_in":"5"}"#).unwrap();
        assert_eq!((json.access_token.as_str(), json.token_type.as_str()), ("a", ""));
        let form =
            parse_token_response(Some("text/plain"), b"access_token=x%2By+z&token_type=bearer&expires_in=60").unwrap();
        assert_eq!((form.access_token.as_str(), form.token_type.as_str()), ("x+y z", "bearer"));
        assert_eq!(expires_in_seconds(form.expires_in.as_ref()), Ok(Some(Duration::from_secs(60))));
        assert!(parse_token_response(None, b"<html>").is_err());
        assert!(parse_token_response(Some("text/plain"), &[0xff, 0xfe]).is_err());
    }

    #[test]
    fn the_form_is_encoded_as_go_encodes_it() {
        assert_eq!(
            form_body(&[("grant_type", "client_credentials"), ("scope", "read write"), ("aud", "a/b&c=d")]),
            "grant_type=client_credentials&scope=read+write&aud=a%2Fb%26c%3Dd"
        );
    }
}
