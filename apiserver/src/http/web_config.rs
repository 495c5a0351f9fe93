//! `WebConfig` is the HTTP port's (`--listen`) TLS and basic authentication, read from
//! `--web.config.file` in Prometheus's web configuration format, and [`HttpAccess`] applies it:
//! a TLS handshake per connection ([`serve_connection`]) and a basic-auth check per request
//! ([`require_basic_auth`]).
//!
//! The file (relative paths in it are relative to its directory, as in Prometheus):
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt            # PEM chain, and its key
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # or VerifyClientCertIfGiven, NoClientCert (default)
//!   client_ca_file: clients-ca.crt
//!   min_version: TLS12               # TLS12 (default) or TLS13; max_version likewise
//! basic_auth_users:
//!   alice: $2y$10$…                  # bcrypt hash (htpasswd -nBC 10 alice)
//! ```
//!
//! As in Prometheus, the users guard every path of the port, the health endpoints too (a kubelet
//! probe sends the header: `httpGet.httpHeaders: [{name: Authorization, value: Basic …}]`, and
//! `scheme: HTTPS` with TLS — the kubelet does not verify the certificate). One exception keeps
//! remote-write senders working, which can send only one `Authorization` header: with
//! `--remote-write-bearer-token-file`, a `POST /api/v1/write` carrying a bearer token is let
//! through to the receiver, which checks the token (and, with a token file, wants it even from a
//! user). `client_auth_type` values that accept a
//! certificate without checking it (`RequestClientCert`, `RequireAnyClientCert`) and Go's
//! cipher-suite knobs have no rustls counterpart: the former are refused, the latter ignored
//! with a warning.
//!
//! The file and every file it names are re-read when they change (see [`super::reloading`]);
//! a broken version keeps the previous one. Switching TLS on or off applies to new connections.
//! bcrypt costs ~50–100 ms of CPU per check, so checks run on the blocking pool, a few at a
//! time, and a user's successful (user, hash, password) is remembered as a keyed 64-bit hash —
//! never the password — so a client's next requests cost a hash lookup.

use super::reloading::{Loaded, ReloadMetrics, Reloading};
use crate::adapter::http::tls;
use crate::listener;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_rustls::rustls::{self, ServerConfig};

/// The remote-write path, where a bearer token may stand in for basic auth.
const REMOTE_WRITE_PATH: &str = "/api/v1/write";

/// Successful checks remembered at most; the set is emptied when full (a few bcrypt checks).
const MAX_REMEMBERED: usize = 4096;

/// Checked against for an unknown user, so a wrong name costs as long as a wrong password and
/// names cannot be told apart by timing (bcrypt cost 10, as `htpasswd -B` makes).
const UNKNOWN_USER_HASH: &str = "$2b$10$A8L8y4Jp1sPi8YQrurSsBOx2W/ZrExxtoxYDkbhGaY9ODBC5f.SuO";

/// What Go's `net/http` answers a plain-text request on a TLS port, as Prometheus does.
const PLAIN_HTTP_ON_TLS: &[u8] = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfigFile>,
    #[serde(default)]
    http_server_config: Option<serde_yaml::Value>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfigFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<serde_yaml::Value>,
    curve_preferences: Option<serde_yaml::Value>,
    prefer_server_cipher_suites: Option<serde_yaml::Value>,
}

/// One version of the web config, ready to use.
#[derive(Debug, Default)]
pub(crate) struct WebConfig {
    /// `None`: the port speaks plain HTTP.
    tls: Option<Arc<ServerConfig>>,
    /// User name → bcrypt hash; empty: no authentication.
    users: HashMap<String, String>,
}

/// Reads and checks the web config at `path`: the value and every file it depends on.
fn load(path: &Path) -> Result<Loaded<WebConfig>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: WebConfigFile =
        serde_yaml::from_str(&text).map_err(|e| format!("invalid web config file {}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut files = vec![path.to_path_buf()];
    if file.http_server_config.is_some() {
        tracing::warn!("web config: http_server_config is ignored (HTTP/2 is always offered)");
    }
    let tls = match file.tls_server_config {
        Some(tls) => {
            Some(tls_config(tls, dir, &mut files).map_err(|e| format!("{}: tls_server_config: {e}", path.display()))?)
        }
        None => None,
    };
    let users: HashMap<String, String> = file.basic_auth_users.unwrap_or_default().into_iter().collect();
    for (user, hash) in &users {
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(format!(
                "{}: basic_auth_users: the password of {user:?} is not a bcrypt hash (make one with `htpasswd -nBC 10 {user}`)",
                path.display()
            ));
        }
    }
    Ok(Loaded { value: WebConfig { tls, users }, files })
}

fn tls_version(name: &str) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match name {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(format!("{name} is not offered (TLS 1.0 and 1.1 are broken): use TLS12 or TLS13")),
        other => Err(format!("unknown TLS version {other:?}: use TLS12 or TLS13")),
    }
}

fn tls_config(tls: TlsServerConfigFile, dir: &Path, files: &mut Vec<PathBuf>) -> Result<Arc<ServerConfig>, String> {
    let (Some(cert_file), Some(key_file)) = (tls.cert_file, tls.key_file) else {
        return Err("give both cert_file and key_file".into());
    };
    for (key, given) in [
        ("cipher_suites", tls.cipher_suites.is_some()),
        ("curve_preferences", tls.curve_preferences.is_some()),
        ("prefer_server_cipher_suites", tls.prefer_server_cipher_suites.is_some()),
    ] {
        if given {
            tracing::warn!("web config: tls_server_config.{key} is ignored (rustls offers only its safe defaults)");
        }
    }
    let (cert_file, key_file) = (dir.join(cert_file), dir.join(key_file));
    let key = tls::load_certified_key(&cert_file, &key_file).map_err(|e| e.to_string())?;
    files.extend([cert_file, key_file]);

    let min = tls_version(tls.min_version.as_deref().unwrap_or("TLS12"))?;
    let max = tls_version(tls.max_version.as_deref().unwrap_or("TLS13"))?;
    let versions: Vec<_> = rustls::ALL_VERSIONS
        .iter()
        .copied()
        .filter(|v| {
            let rank = |v: &rustls::SupportedProtocolVersion| u16::from(v.version);
            rank(v) >= rank(min) && rank(v) <= rank(max)
        })
        .collect();
    if versions.is_empty() {
        return Err("min_version is above max_version".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?;

    let client_ca = match &tls.client_ca_file {
        Some(ca) => {
            let ca = dir.join(ca);
            let roots = client_roots(&ca)?;
            files.push(ca);
            Some(Arc::new(roots))
        }
        None => None,
    };
    let builder = match (tls.client_auth_type.as_deref().unwrap_or("NoClientCert"), client_ca) {
        ("NoClientCert" | "", None) => builder.with_no_client_auth(),
        ("NoClientCert" | "", Some(_)) => {
            return Err("client_ca_file is set but client_auth_type is NoClientCert: set \
                        client_auth_type: RequireAndVerifyClientCert (or remove client_ca_file)"
                .into())
        }
        (kind @ ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven"), Some(roots)) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = match kind {
                "VerifyClientCertIfGiven" => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
        ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven", None) => {
            return Err("client_auth_type verifies client certificates: give client_ca_file".into())
        }
        (kind @ ("RequestClientCert" | "RequireAnyClientCert"), _) => {
            return Err(format!(
                "client_auth_type {kind} accepts certificates without checking them and is not supported: \
                 use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file"
            ))
        }
        (other, _) => {
            return Err(format!(
                "unknown client_auth_type {other:?}: use NoClientCert, VerifyClientCertIfGiven or \
                 RequireAndVerifyClientCert"
            ))
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(FixedCert(Arc::new(key))));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CERTIFICATE block found", path.display()));
    }
    Ok(roots)
}

/// One serving pair; a new pair comes with a new [`WebConfig`].
#[derive(Debug)]
struct FixedCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Who may use the HTTP port, and how it is spoken to: the web config (if any) and the
/// remembered basic-auth checks. One per server.
pub(crate) struct HttpAccess {
    web: Option<Reloading<WebConfig>>,
    /// Set when the remote-write receiver checks a bearer token itself.
    remote_write_bearer: bool,
    remembered: Mutex<HashSet<u64>>,
    remember_key: std::collections::hash_map::RandomState,
    /// bcrypt checks running at once.
    checks: Semaphore,
}

impl std::fmt::Debug for HttpAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAccess").field("web", &self.web).finish_non_exhaustive()
    }
}

impl HttpAccess {
    /// Reads `web_config_file` (an error names the file and the fix); `None` leaves the port
    /// open, in plain HTTP. `remote_write_bearer`: see the module doc.
    pub(crate) fn new(
        web_config_file: Option<&Path>,
        remote_write_bearer: bool,
        metrics: ReloadMetrics,
    ) -> Result<Self, String> {
        let web = match web_config_file {
            Some(path) => {
                let path = path.to_path_buf();
                Some(Reloading::new("web_config", metrics, move || load(&path))?)
            }
            None => None,
        };
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(HttpAccess {
            web,
            remote_write_bearer,
            remembered: Mutex::new(HashSet::new()),
            remember_key: Default::default(),
            checks: Semaphore::new((parallelism / 2).max(1)),
        })
    }

    fn current(&self) -> Arc<WebConfig> {
        match &self.web {
            Some(web) => web.current(),
            None => Arc::new(WebConfig::default()),
        }
    }

    /// Whether `header` (an `Authorization` value) names a user of `config` with the right
    /// password.
    async fn authenticated(&self, config: &WebConfig, header: Option<&str>) -> bool {
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return false;
        };
        let (known, hash) = match config.users.get(&user) {
            Some(hash) => (true, hash.clone()),
            None => (false, UNKNOWN_USER_HASH.to_string()),
        };
        let key = self.remember_key.hash_one((&user, &hash, &password));
        if known && self.remembered.lock().contains(&key) {
            return true;
        }
        let Ok(_permit) = self.checks.acquire().await else {
            return false;
        };
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if known && verified {
            let mut remembered = self.remembered.lock();
            if remembered.len() >= MAX_REMEMBERED {
                remembered.clear();
            }
            remembered.insert(key);
        }
        known && verified
    }
}

/// `(user, password)` of a `Basic` authorization value.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Axum middleware: with `basic_auth_users` set, a request without the right credentials gets
/// 401 with `WWW-Authenticate: Basic`.
pub(crate) async fn require_basic_auth(
    State(access): State<Arc<HttpAccess>>,
    request: Request,
    next: Next,
) -> Response {
    let config = access.current();
    if config.users.is_empty() {
        return next.run(request).await;
    }
    let header = request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let bearer = header.is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    let remote_write_with_token = access.remote_write_bearer && bearer && request.uri().path() == REMOTE_WRITE_PATH;
    if remote_write_with_token || access.authenticated(&config, header).await {
        return next.run(request).await;
    }
    (
        http::StatusCode::UNAUTHORIZED,
        [(http::header::WWW_AUTHENTICATE, "Basic")],
        "Unauthorized: give a user of basic_auth_users (--web.config.file)\n",
    )
        .into_response()
}

/// Serves one connection of the HTTP port: through a TLS handshake first (under `handshake_timeout`)
/// when the web config in force asks for TLS.
pub(crate) async fn serve_connection(
    stream: listener::Stream,
    remote_addr: SocketAddr,
    app: axum::Router,
    session: listener::Session,
    access: Arc<HttpAccess>,
    handshake_timeout: Duration,
) {
    let served = match access.current().tls.clone() {
        None => listener::serve_http(stream, app, session).await,
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let Some(tls_stream) =
                tls::handshake(stream, remote_addr, &acceptor, handshake_timeout, PLAIN_HTTP_ON_TLS).await
            else {
                return;
            };
            listener::serve_http(tls_stream, app, session).await
        }
    };
    if let Err(e) = served {
        tracing::debug!(%remote_addr, error = %e, "HTTP connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn pair(dir: &Path) {
        tls::ensure_generated_pair(dir).unwrap();
    }

    #[test]
    fn a_prometheus_web_config_loads_with_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        pair(dir.path());
        let hash = bcrypt::hash("pw", 4).unwrap();
        let path = write(
            dir.path(),
            "web.yml",
            &format!(
                "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  client_auth_type: \
                 RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS13\n\
                 basic_auth_users:\n  alice: {hash}\n"
            ),
        );
        let Loaded { value, files } = load(&path).unwrap();
        assert!(value.tls.is_some());
        assert_eq!(value.users.len(), 1);
        assert_eq!(files.len(), 4, "the config, the pair and the client CA are watched: {files:?}");
    }

    #[test]
    fn bad_web_configs_name_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        pair(dir.path());
        for (yaml, expected) in [
            ("tls_server_config: {cert_file: tls.crt}\n", "give both cert_file and key_file"),
            ("tls_server_config: {cert_file: nope, key_file: tls.key}\n", "cannot read"),
            ("basic_auth_users: {bob: plain}\n", "htpasswd -nBC 10 bob"),
            ("tls_server_config: {cert_file: tls.crt, key_file: tls.key, min_version: TLS10}\n", "use TLS12"),
            (
                "tls_server_config: {cert_file: tls.crt, key_file: tls.key, client_auth_type: RequireAnyClientCert}\n",
                "use RequireAndVerifyClientCert",
            ),
            (
                "tls_server_config: {cert_file: tls.crt, key_file: tls.key, client_auth_type: RequireAndVerifyClientCert}\n",
                "give client_ca_file",
            ),
            ("tls_server_config: {cert_file: tls.crt, key_file: tls.key, client_ca_file: ca.crt}\n", "client_auth_type"),
            ("basic_auth_user: {}\n", "unknown field"),
        ] {
            let path = write(dir.path(), "web.yml", yaml);
            let error = load(&path).err().unwrap_or_else(|| panic!("{yaml} must be refused"));
            assert!(error.contains(expected), "{yaml}: {error}");
        }
        assert!(load(&write(dir.path(), "web.yml", "")).unwrap().value.tls.is_none(), "an empty file is valid");
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:pa:ss");
        assert_eq!(basic_credentials(&format!("Basic {encoded}")), Some(("alice".into(), "pa:ss".into())));
        assert_eq!(basic_credentials(&format!("Bearer {encoded}")), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[test]
    fn the_unknown_user_hash_is_a_bcrypt_hash() {
        assert!(!bcrypt::verify("", UNKNOWN_USER_HASH).unwrap());
    }

    #[tokio::test]
    async fn a_right_password_is_remembered_and_a_wrong_one_or_unknown_user_refused() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let path = write(dir.path(), "web.yml", &format!("basic_auth_users:\n  alice: {hash}\n"));
        let access = HttpAccess::new(Some(&path), false, ReloadMetrics::default()).unwrap();
        let config = access.current();
        let basic =
            |credentials: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials));
        assert!(access.authenticated(&config, Some(&basic("alice:pw"))).await);
        assert_eq!(access.remembered.lock().len(), 1);
        assert!(access.authenticated(&config, Some(&basic("alice:pw"))).await);
        assert!(!access.authenticated(&config, Some(&basic("alice:wrong"))).await);
        assert!(!access.authenticated(&config, Some(&basic("mallory:pw"))).await);
        assert!(!access.authenticated(&config, None).await);
        assert_eq!(access.remembered.lock().len(), 1, "failures are not remembered");
    }
}
