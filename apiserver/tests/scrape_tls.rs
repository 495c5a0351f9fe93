//! Scraping over HTTPS the way the kubelet must be scraped, through the real `ringtail` binary:
//! the test serves a cAdvisor page (the metric names and labels kubelet 1.20+ exposes at
//! `/metrics/cadvisor`) over TLS with a certificate that names the node, not the address
//! scraped; it asks for a client certificate from its own CA and a bearer token. Ringtail's
//! `tls_config` (`ca_file`, `cert_file`/`key_file`, `server_name`, `min_version`) and
//! `authorization.credentials_file` must get through; without `server_name`, with a TLS version
//! the server does not speak, without the client certificate or with the wrong token, the scrape
//! fails (`up` 0).

mod ingest_common;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use ingest_common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "service-account-token-of-ringtail";

const CADVISOR_PAGE: &str = "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.\n\
# TYPE container_cpu_usage_seconds_total counter\n\
container_cpu_usage_seconds_total{container=\"app\",cpu=\"total\",id=\"/kubepods/burstable/pod1/abc\",image=\"registry/app:1\",name=\"abc\",namespace=\"shop\",pod=\"web-1\"} 12.5\n\
# HELP container_memory_working_set_bytes Current working set in bytes.\n\
# TYPE container_memory_working_set_bytes gauge\n\
container_memory_working_set_bytes{container=\"app\",id=\"/kubepods/burstable/pod1/abc\",image=\"registry/app:1\",name=\"abc\",namespace=\"shop\",pod=\"web-1\"} 5.24288e+07\n";

struct Pki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    client_ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

fn ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    (params.self_signed(&key).expect("CA"), key)
}

fn pki() -> Pki {
    let (server_ca, server_ca_key) = ca("kubelet CA");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    // Names the node only: the address scraped (127.0.0.1) is not in it, as with a kubelet.
    let server = rcgen::CertificateParams::new(vec!["worker-1.kubelet.example".to_string()])
        .expect("server params")
        .signed_by(&server_key, &server_ca, &server_ca_key)
        .expect("server cert");
    let (client_ca, client_ca_key) = ca("cluster client CA");
    let client_key = rcgen::KeyPair::generate().expect("client key");
    let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("client params");
    client_params.distinguished_name.push(rcgen::DnType::CommonName, "system:serviceaccount:ringtail:ringtail");
    let client = client_params.signed_by(&client_key, &client_ca, &client_ca_key).expect("client cert");
    Pki {
        ca_pem: server_ca.pem(),
        server_cert_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_ca_pem: client_ca.pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

/// Serves the cAdvisor page at `/metrics/cadvisor` over TLS 1.2 only, requiring a client
/// certificate from the client CA and the bearer token. Returns the port.
async fn start_kubelet(pki: &Pki) -> u16 {
    let app = axum::Router::new().route(
        "/metrics/cadvisor",
        axum::routing::get(|headers: HeaderMap| async move {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
                return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
            }
            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], CADVISOR_PAGE).into_response()
        }),
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client_roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pki.client_ca_pem.as_bytes()) {
        client_roots.add(cert.expect("client CA pem")).expect("client CA");
    }
    let client_verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), provider.clone())
            .build()
            .expect("client verifier");
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut pki.server_cert_pem.as_bytes()).collect::<Result<_, _>>().expect("server pem");
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut pki.server_key_pem.as_bytes()).expect("key pem").expect("a key");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(certs, key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
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
    port
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a test file");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_is_scraped_over_tls_with_a_client_certificate_a_token_and_its_node_name() {
    let pki = pki();
    let port = start_kubelet(&pki).await;
    let files = tempfile::tempdir().expect("temp dir");
    let ca = write(files.path(), "ca.crt", &pki.ca_pem);
    let cert = write(files.path(), "client.crt", &pki.client_cert_pem);
    let key = write(files.path(), "client.key", &pki.client_key_pem);
    let token = write(files.path(), "token", &format!("{TOKEN}\n"));
    let wrong_token = write(files.path(), "wrong-token", "someone-else\n");
    let job = |name: &str, tls: &str, token: &str| {
        format!(
            "- job_name: {name}\n  scheme: https\n  metrics_path: /metrics/cadvisor\n  scrape_interval: 1s\n  \
             scrape_timeout: 1s\n  authorization: {{credentials_file: {token}}}\n  tls_config: {tls}\n  \
             static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        )
    };
    let full = format!("{{ca_file: {ca}, cert_file: {cert}, key_file: {key}, server_name: worker-1.kubelet.example, min_version: TLS12}}");
    let config = format!(
        "scrape_configs:\n{}{}{}{}{}",
        job("kubelet", &full, &token),
        job("no_server_name", &format!("{{ca_file: {ca}, cert_file: {cert}, key_file: {key}}}"), &token),
        job(
            "tls13_only",
            &format!("{{ca_file: {ca}, cert_file: {cert}, key_file: {key}, server_name: worker-1.kubelet.example, min_version: TLS13}}"),
            &token
        ),
        job("no_client_cert", &format!("{{ca_file: {ca}, server_name: worker-1.kubelet.example}}"), &token),
        job("wrong_token", &full, &wrong_token),
    );
    let ringtail = Ringtail::start(Some(&config), &["--standalone"]).await;
    let up = |job: &'static str| {
        let ringtail = &ringtail;
        async move {
            let exported = ringtail.export(&format!("up{{job=\"{job}\"}}")).await;
            exported.first().and_then(|s| s.floats().last().copied())
        }
    };
    eventually("every job to have been scraped", Duration::from_secs(60), || async {
        let mut all = true;
        for job in ["kubelet", "no_server_name", "tls13_only", "no_client_cert", "wrong_token"] {
            all &= up(job).await.is_some();
        }
        all.then_some(())
    })
    .await;
    assert_eq!(up("kubelet").await, Some(1.0), "log:\n{}", ringtail.log());
    for job in ["no_server_name", "tls13_only", "no_client_cert", "wrong_token"] {
        assert_eq!(up(job).await, Some(0.0), "{job} must fail");
    }
    let cpu = ringtail.export("container_cpu_usage_seconds_total{job=\"kubelet\"}").await;
    assert_eq!(cpu.len(), 1);
    assert_eq!(cpu[0].metric.get("pod").map(String::as_str), Some("web-1"));
    assert_eq!(cpu[0].floats().last(), Some(&12.5));
    let memory = ringtail.export("container_memory_working_set_bytes{job=\"kubelet\"}").await;
    assert_eq!(memory[0].floats().last(), Some(&52_428_800.0));
}
