//! Kubeconfig client certificates against the real binary: an X.509 version 1 client
//! certificate (what `openssl x509 -req` makes without an extensions file) lets Ringtail start
//! and reach a Kubernetes API that requires a client certificate; a key that does not belong to
//! the certificate stops it at start with an error naming the fix. The API is a stand-in served
//! by the test over TLS (discovery and the front-proxy ConfigMap, enough to start), which
//! records the subject of every client certificate it is shown.
//!
//! Needs the `openssl` command; without it the test says so and passes.

mod ingest_common;

use ingest_common::*;
use parking_lot::Mutex;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use tokio_rustls::rustls::{self, pki_types, server::danger};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").current_dir(dir).args(args).output().expect("running openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Accepts any client certificate whose key signed the handshake, and records its subject; a
/// real API server checks the chain too, which is not what is tested here.
#[derive(Debug)]
struct RecordingVerifier {
    subjects: Arc<Mutex<Vec<String>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl danger::ClientCertVerifier for RecordingVerifier {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &pki_types::CertificateDer<'_>,
        _intermediates: &[pki_types::CertificateDer<'_>],
        _now: pki_types::UnixTime,
    ) -> Result<danger::ClientCertVerified, rustls::Error> {
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|e| rustls::Error::General(format!("not X.509: {e}")))?;
        self.subjects.lock().push(format!("{} v{}", cert.subject(), cert.version().0 + 1));
        Ok(danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("this server speaks TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let (_, parsed) =
            x509_parser::parse_x509_certificate(cert).map_err(|e| rustls::Error::General(format!("not X.509: {e}")))?;
        let spki = pki_types::SubjectPublicKeyInfoDer::from(parsed.tbs_certificate.subject_pki.raw);
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &spki,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Serves a stand-in Kubernetes API over TLS 1.3, requiring a client certificate; returns its
/// port and the subjects it was shown.
async fn fake_api_server(cert_pem: &str, key_pem: &str, front_proxy_ca: String) -> (u16, Arc<Mutex<Vec<String>>>) {
    use axum::routing::get;
    use axum::Json;
    let app = axum::Router::new()
        .route(
            "/api/v1",
            get(|| async {
                Json(serde_json::json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                    {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                     "verbs": ["list", "watch"]}]}))
            }),
        )
        .route("/apis", get(|| async { Json(serde_json::json!({"kind": "APIGroupList", "groups": []})) }))
        .route(
            "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication",
            get(move || {
                let ca = front_proxy_ca.clone();
                async move {
                    Json(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
                        "data": {"requestheader-client-ca-file": ca}}))
                }
            }),
        );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let subjects = Arc::new(Mutex::new(Vec::new()));
    let verifier = Arc::new(RecordingVerifier { subjects: subjects.clone(), provider: provider.clone() });
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes()).unwrap().unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    tower::ServiceExt::oneshot(app.clone(), request.map(axum::body::Body::new))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, subjects)
}

fn kubeconfig(dir: &Path, name: &str, port: u16, server_ca_pem: &str, cert: &str, key: &str) -> std::path::PathBuf {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(server_ca_pem);
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}', certificate-authority-data: {ca}}}}}]\n\
             users: [{{name: u, user: {{client-certificate: {cert}, client-key: {key}}}}}]\n\
             contexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_client_certificate_connects_and_a_foreign_key_names_the_fix() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: the openssl command is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
        ],
    );
    openssl(
        dir.path(),
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "user.key",
            "-out",
            "user.csr",
            "-subj",
            "/CN=v1-user/O=system:masters",
        ],
    );
    // As the setup guides do: no extensions file, so the certificate is X.509 version 1.
    openssl(
        dir.path(),
        &[
            "x509",
            "-req",
            "-in",
            "user.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "user.crt",
            "-days",
            "1",
        ],
    );
    openssl(dir.path(), &["genpkey", "-algorithm", "RSA", "-out", "other.key"]);

    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&server_key).unwrap();
    let ca_pem = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    let (port, subjects) = fake_api_server(&server_cert.pem(), &server_key.serialize_pem(), ca_pem).await;
    let cert = dir.path().join("user.crt");
    let key = dir.path().join("user.key");
    let good = kubeconfig(dir.path(), "good", port, &server_cert.pem(), cert.to_str().unwrap(), key.to_str().unwrap());

    let secure_listen = format!("127.0.0.1:{}", free_port());
    let ringtail = Ringtail::start(
        Some("scrape_configs: []\n"),
        &["--kubeconfig", good.to_str().unwrap(), "--secure-listen", &secure_listen],
    )
    .await;
    assert!(ringtail.log().contains("connected to the Kubernetes API"), "{}", ringtail.log());
    let seen = subjects.lock().clone();
    assert!(seen.iter().any(|s| s.contains("CN=v1-user") && s.ends_with(" v1")), "{seen:?}");
    drop(ringtail);

    let other_key = dir.path().join("other.key");
    let foreign = kubeconfig(
        dir.path(),
        "foreign",
        port,
        &server_cert.pem(),
        cert.to_str().unwrap(),
        other_key.to_str().unwrap(),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .args(["serve", "--data-dir", dir.path().join("data2").to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{}", free_port()), "--secure-listen", &secure_listen])
        .args(["--kubeconfig", foreign.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("client-key does not belong to client-certificate"), "{stderr}");
}
