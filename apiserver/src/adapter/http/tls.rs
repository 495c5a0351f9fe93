//! The adapter's TLS listener: rustls with ALPN `h2` and `http/1.1`, served by hyper-util's
//! auto (HTTP/1.1 + HTTP/2) connection builder.
//!
//! Certificates come from `--tls-cert-file`/`--tls-private-key-file` (as a Secret mounts them)
//! and are re-read when a file's modification time changes — checked at most once a second on
//! a handshake, so rotation needs no restart and costs nothing per request. Without files, a CA
//! and a serving pair are generated with rcgen and kept in `<data dir>-tls/` (`ca.crt`,
//! `tls.crt`, `tls.key`) so clients can trust `ca.crt` across restarts.
//!
//! A connection that does not start with a TLS handshake record gets a plain `400` carrying a
//! Kubernetes `Status` ("Client sent an HTTP request to an HTTPS server.") and is closed; a
//! failed handshake is logged at debug level. Neither can panic or stop the listener. A client
//! that opens TCP and sends no handshake, or does not finish it, is dropped after
//! `--web.read-header-timeout`. Accepting, the connection cap (`--adapter-max-connections`) with
//! its probe slots (`/healthz`, `/livez`, `/readyz`), the timeouts and graceful shutdown are the
//! HTTP listener's too (`crate::listener`).

use super::auth::ConnectionInfo;
use crate::listener::{self, ConnectionLimits, ConnectionMetrics};
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("generating a self-signed certificate failed: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("give both --tls-cert-file and --tls-private-key-file, or neither (a pair is then generated)")]
    HalfPair,
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    pub(crate) cert_file: Option<PathBuf>,
    pub(crate) key_file: Option<PathBuf>,
    /// Directory for a generated pair and its CA when no files are given.
    pub(crate) generated_dir: PathBuf,
}

impl TlsSettings {
    /// Where the serving pair comes from: `cert_file`/`key_file` when given; else, with a
    /// `cert_dir` (prometheus-adapter's `--cert-dir`), its `apiserver.crt` and `apiserver.key`
    /// when both exist (the names Kubernetes API servers use there) or a pair generated into it;
    /// else a pair generated into `default_generated_dir`.
    pub(crate) fn choose(
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        cert_dir: Option<&Path>,
        default_generated_dir: PathBuf,
    ) -> TlsSettings {
        if cert_file.is_some() || key_file.is_some() {
            return TlsSettings { cert_file, key_file, generated_dir: default_generated_dir };
        }
        let Some(dir) = cert_dir else {
            return TlsSettings { cert_file: None, key_file: None, generated_dir: default_generated_dir };
        };
        let (cert, key) = (dir.join(CERT_DIR_CERT_FILE), dir.join(CERT_DIR_KEY_FILE));
        if cert.is_file() && key.is_file() {
            TlsSettings { cert_file: Some(cert), key_file: Some(key), generated_dir: dir.to_path_buf() }
        } else {
            TlsSettings { cert_file: None, key_file: None, generated_dir: dir.to_path_buf() }
        }
    }
}

/// The serving certificate and key a `--cert-dir` may hold.
const CERT_DIR_CERT_FILE: &str = "apiserver.crt";
const CERT_DIR_KEY_FILE: &str = "apiserver.key";

/// The adapter's health endpoints, answered on probe slots past the connection cap.
pub(crate) const PROBE_PATHS: &[&str] = &["/healthz", "/livez", "/readyz"];

/// How often certificate files' modification times are looked at.
const CERT_RECHECK: Duration = Duration::from_secs(1);

/// Loads a certificate chain and key from PEM files.
pub(crate) fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source });
    let pem_err = |path: &Path, message: String| TlsError::Pem { path: path.to_path_buf(), message };
    let cert_pem = read(cert_path)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err(cert_path, "no CERTIFICATE block found".into()));
    }
    let key_pem = read(key_path)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| pem_err(key_path, e.to_string()))?
        .ok_or_else(|| pem_err(key_path, "no PRIVATE KEY block found".into()))?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| pem_err(key_path, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified.keys_match().map_err(|e| pem_err(key_path, format!("key does not match the certificate: {e}")))?;
    Ok(certified)
}

struct LoadedPair {
    key: Arc<CertifiedKey>,
    cert_modified: Option<SystemTime>,
    key_modified: Option<SystemTime>,
    checked_at: Instant,
}

/// A certificate resolver that re-reads its files when they change; a broken new pair is logged
/// and the previous one kept.
pub(crate) struct ReloadingCertResolver {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: Mutex<LoadedPair>,
}

impl std::fmt::Debug for ReloadingCertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCertResolver").field("cert_path", &self.cert_path).finish()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ReloadingCertResolver {
    pub(crate) fn new(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let key = Arc::new(load_certified_key(cert_path, key_path)?);
        Ok(ReloadingCertResolver {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: Mutex::new(LoadedPair {
                key,
                cert_modified: modified(cert_path),
                key_modified: modified(key_path),
                checked_at: Instant::now(),
            }),
        })
    }

    /// The pair to serve, re-read first if the files changed.
    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        let mut pair = self.current.lock();
        if pair.checked_at.elapsed() >= CERT_RECHECK {
            pair.checked_at = Instant::now();
            let (cert_modified, key_modified) = (modified(&self.cert_path), modified(&self.key_path));
            if cert_modified != pair.cert_modified || key_modified != pair.key_modified {
                match load_certified_key(&self.cert_path, &self.key_path) {
                    Ok(key) => {
                        tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded");
                        pair.key = Arc::new(key);
                        pair.cert_modified = cert_modified;
                        pair.key_modified = key_modified;
                    }
                    // Half-written files during a rotation land here; the next check retries.
                    Err(e) => tracing::warn!(error = %e, "new serving certificate not usable yet; keeping the old one"),
                }
            }
        }
        pair.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Paths of a generated pair: `(ca.crt, tls.crt, tls.key)` in `dir`.
pub fn generated_paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key"))
}

/// Creates a CA and a serving pair for localhost, 127.0.0.1, ::1 and this host's name in `dir`,
/// unless a usable pair is already there. Returns the CA path.
pub fn ensure_generated_pair(dir: &Path) -> Result<PathBuf, TlsError> {
    let (ca_path, cert_path, key_path) = generated_paths(dir);
    if ca_path.exists() && load_certified_key(&cert_path, &key_path).is_ok() {
        return Ok(ca_path);
    }
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let ca_key = rcgen::KeyPair::generate().map_err(generate)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "ringtail-adapter-ca");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(generate)?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_string());
        }
    }
    let server_key = rcgen::KeyPair::generate().map_err(generate)?;
    let mut params = rcgen::CertificateParams::new(names).map_err(generate)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "ringtail-adapter");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&server_key, &ca_cert, &ca_key).map_err(generate)?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write { path: dir.to_path_buf(), source })?;
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|source| TlsError::Write { path: path.to_path_buf(), source })
    };
    write(&key_path, server_key.serialize_pem())?;
    restrict_permissions(&key_path)?;
    write(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem()))?;
    write(&ca_path, ca_cert.pem())?;
    Ok(ca_path)
}

fn restrict_permissions(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| TlsError::Write { path: path.to_path_buf(), source })
}

/// A ready TLS setup: the rustls config and, for a generated pair, the CA clients should trust.
pub(crate) struct TlsSetup {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) generated_ca: Option<PathBuf>,
}

/// Builds the server TLS config from `settings`. `client_verifier` lets the Kubernetes
/// integration ask for (optional) front-proxy client certificates.
pub(crate) fn server_config(
    settings: &TlsSettings,
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<TlsSetup, TlsError> {
    let (cert_path, key_path, generated_ca) = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone(), None),
        (None, None) => {
            let ca = ensure_generated_pair(&settings.generated_dir)?;
            let (_, cert, key) = generated_paths(&settings.generated_dir);
            (cert, key, Some(ca))
        }
        _ => return Err(TlsError::HalfPair),
    };
    let resolver = Arc::new(ReloadingCertResolver::new(&cert_path, &key_path)?);
    let builder = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsSetup { config: Arc::new(config), generated_ca })
}

/// The strict verifier of client certificates chaining to `ca_pem` (a PEM bundle read from
/// `source`, named in errors): chain, validity period and the clientAuth key usage. The
/// Kubernetes authenticator calls it per request, after the handshake.
pub(crate) fn client_chain_verifier(
    ca_pem: &str,
    source: &str,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let source = PathBuf::from(source);
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::Pem { path: source.clone(), message: e.to_string() })?;
        roots.add(cert).map_err(|e| TlsError::Pem { path: source.clone(), message: e.to_string() })?;
    }
    if roots.is_empty() {
        return Err(TlsError::Pem { path: source, message: "no CERTIFICATE block found".into() });
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| TlsError::Config(e.to_string()))
}

/// The TLS listener's client-certificate policy with the Kubernetes integration: Go's
/// `tls.RequestClientCert`, as kube-apiserver's delegated authentication serves. A certificate
/// is asked for (the front-proxy CA, `ca_pem`, is hinted) and the client must hold its key, but
/// its chain is left to the authenticator, so a certificate from another CA or an expired one is
/// answered 401 with the reason, not a failed handshake, and a token can still authenticate.
pub(crate) fn front_proxy_verifier(
    ca_pem: &str,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let hints = client_chain_verifier(ca_pem, "requestheader-client-ca-file")?;
    Ok(Arc::new(RequestClientCert { hints }))
}

/// Accepts any client certificate whose key signed the handshake (see [`front_proxy_verifier`]).
#[derive(Debug)]
struct RequestClientCert {
    /// Gives the CA hint and the handshake signature checks, never the chain decision.
    hints: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl rustls::server::danger::ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.hints.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.hints.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.hints.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.hints.supported_verify_schemes()
    }
}

/// The first byte of a TLS record carrying a handshake (RFC 8446 §5.1, content type 22).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Accepts connections until `shutdown` turns true, then lets open ones finish (bounded); the
/// accept loop, its connection cap and timeouts are the shared [`crate::listener::run`].
pub(crate) async fn run(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: axum::Router,
    limits: ConnectionLimits,
    metrics: ConnectionMetrics,
    shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handshake_timeout = limits.read_header_timeout;
    listener::run(listener, limits, metrics, shutdown, "tls", move |stream, remote_addr, session| {
        serve_connection(stream, remote_addr, acceptor.clone(), app.clone(), session, handshake_timeout)
    })
    .await;
}

/// Takes a connection through the TLS handshake within `timeout`: a connection whose first byte
/// is not a TLS handshake record gets `plain_http_answer` (a whole HTTP response) and is closed;
/// a failed or slow handshake is logged at debug level. `None` when the connection is over.
pub(crate) async fn handshake(
    mut stream: listener::Stream,
    remote_addr: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
    timeout: Duration,
    plain_http_answer: &[u8],
) -> Option<tokio_rustls::server::TlsStream<listener::Stream>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => {
            let _ = stream.write_all(plain_http_answer).await;
            let _ = stream.shutdown().await;
            tracing::debug!(%remote_addr, "plain-text request on a TLS port refused");
            return None;
        }
        _ => return None,
    }
    // The stream's clock bounds the handshake too; this timeout is the same bound, said plainly.
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => Some(tls_stream),
        Ok(Err(e)) => {
            tracing::debug!(%remote_addr, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%remote_addr, "TLS handshake timed out");
            None
        }
    }
}

async fn serve_connection(
    stream: listener::Stream,
    remote_addr: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    session: listener::Session,
    handshake_timeout: Duration,
) {
    let rejection = super::routes::plain_http_rejection();
    let Some(tls_stream) = handshake(stream, remote_addr, &acceptor, handshake_timeout, &rejection).await else {
        return;
    };
    let peer_certificates = tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|certs| Arc::new(certs.iter().map(|c| c.clone().into_owned()).collect()));
    let info = ConnectionInfo { remote_addr, peer_certificates };
    let app = tower::ServiceExt::map_request(app, move |mut request: http::Request<axum::body::Body>| {
        request.extensions_mut().insert(info.clone());
        request
    });
    if let Err(e) = listener::serve_http(tls_stream, app, session).await {
        tracing::debug!(%remote_addr, error = %e, "TLS connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cert_dir_serves_its_apiserver_pair_when_both_files_exist_and_else_generates_there() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_dir, default_dir) = (dir.path().join("certs"), dir.path().join("data-tls"));
        std::fs::create_dir_all(&cert_dir).unwrap();
        let generated = TlsSettings::choose(None, None, Some(&cert_dir), default_dir.clone());
        assert_eq!((generated.cert_file.as_deref(), generated.generated_dir.as_path()), (None, cert_dir.as_path()));
        std::fs::write(cert_dir.join("apiserver.crt"), "only the certificate").unwrap();
        let half = TlsSettings::choose(None, None, Some(&cert_dir), default_dir.clone());
        assert_eq!(half.cert_file, None, "a certificate without its key is not served");
        std::fs::write(cert_dir.join("apiserver.key"), "key").unwrap();
        let present = TlsSettings::choose(None, None, Some(&cert_dir), default_dir.clone());
        assert_eq!(present.cert_file, Some(cert_dir.join("apiserver.crt")));
        assert_eq!(present.key_file, Some(cert_dir.join("apiserver.key")));
        let explicit =
            TlsSettings::choose(Some("a.crt".into()), Some("a.key".into()), Some(&cert_dir), default_dir.clone());
        assert_eq!(explicit.cert_file, Some(PathBuf::from("a.crt")), "--tls-cert-file wins over --cert-dir");
        let default = TlsSettings::choose(None, None, None, default_dir.clone());
        assert_eq!((default.cert_file, default.generated_dir), (None, default_dir));
    }

    #[test]
    fn front_proxy_verifier_needs_a_ca_and_lets_certificateless_clients_through() {
        let dir = tempfile::tempdir().unwrap();
        let ca = std::fs::read_to_string(ensure_generated_pair(dir.path()).unwrap()).unwrap();
        let verifier = front_proxy_verifier(&ca).unwrap();
        assert!(!verifier.client_auth_mandatory(), "bearer-token clients send no certificate");
        assert!(verifier.offer_client_auth());
        assert!(!verifier.root_hint_subjects().is_empty(), "the CA is advertised to clients");
        for bad in ["", "not pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"] {
            assert!(front_proxy_verifier(bad).is_err(), "{bad:?} must be refused");
        }
    }

    /// Regression: a certificate from another CA failed the handshake, where kube-apiserver's
    /// delegated authentication answers 401 (the chain is the authenticator's to judge).
    #[test]
    fn front_proxy_verifier_leaves_the_chain_to_the_authenticator() {
        let dir = tempfile::tempdir().unwrap();
        let front_proxy_ca = std::fs::read_to_string(ensure_generated_pair(&dir.path().join("a")).unwrap()).unwrap();
        ensure_generated_pair(&dir.path().join("b")).unwrap();
        let (_, foreign_cert, _) = generated_paths(&dir.path().join("b"));
        let foreign =
            rustls_pemfile::certs(&mut std::fs::read(foreign_cert).unwrap().as_slice()).next().unwrap().unwrap();
        let now = rustls::pki_types::UnixTime::now();
        assert!(front_proxy_verifier(&front_proxy_ca).unwrap().verify_client_cert(&foreign, &[], now).is_ok());
        let strict = client_chain_verifier(&front_proxy_ca, "requestheader-client-ca-file").unwrap();
        assert!(strict.verify_client_cert(&foreign, &[], now).is_err(), "the strict verifier still refuses it");
    }

    #[test]
    fn generated_pair_is_reused_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = dir.path().join("data-tls");
        let ca = ensure_generated_pair(&tls_dir).unwrap();
        let first = std::fs::read(&ca).unwrap();
        let again = ensure_generated_pair(&tls_dir).unwrap();
        assert_eq!(std::fs::read(again).unwrap(), first, "an existing pair must be kept");
        let (_, cert, key) = generated_paths(&tls_dir);
        assert!(load_certified_key(&cert, &key).is_ok());
    }

    #[test]
    fn bad_pem_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem").unwrap();
        assert!(load_certified_key(&cert, &key).is_err());
        assert!(load_certified_key(&dir.path().join("missing"), &key).is_err());
    }

    #[test]
    fn resolver_reloads_changed_files_and_keeps_the_old_pair_on_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        ensure_generated_pair(&a).unwrap();
        ensure_generated_pair(&b).unwrap();
        let (_, cert_a, key_a) = generated_paths(&a);
        let (_, cert_b, key_b) = generated_paths(&b);
        let live_cert = dir.path().join("tls.crt");
        let live_key = dir.path().join("tls.key");
        std::fs::copy(&cert_a, &live_cert).unwrap();
        std::fs::copy(&key_a, &live_key).unwrap();
        let resolver = ReloadingCertResolver::new(&live_cert, &live_key).unwrap();
        let before = resolver.current().cert[0].clone();
        std::thread::sleep(CERT_RECHECK + Duration::from_millis(50));
        std::fs::write(&live_cert, "garbage").unwrap();
        assert_eq!(resolver.current().cert[0], before, "a broken file must not replace the pair");
        std::thread::sleep(CERT_RECHECK + Duration::from_millis(50));
        std::fs::copy(&cert_b, &live_cert).unwrap();
        std::fs::copy(&key_b, &live_key).unwrap();
        // Bump the modification time in case the copies landed in the same clock tick.
        let later = SystemTime::now() + Duration::from_secs(5);
        for path in [&live_cert, &live_key] {
            std::fs::File::options().write(true).open(path).unwrap().set_modified(later).unwrap();
        }
        assert_ne!(resolver.current().cert[0], before, "a new pair must be picked up");
    }
}
