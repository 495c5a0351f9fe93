//! `connect` builds the Kubernetes API client: from `--kubeconfig FILE` when given, else from the
//! in-cluster service-account environment.
//!
//! A client certificate in X.509 version 1 (what `openssl x509 -req` makes without an
//! extensions file, as many setup guides do) is refused by kube's rustls setup: rustls checks
//! that the key matches the certificate by parsing it with webpki, which takes only version 3.
//! kube-apiserver (Go) accepts version 1, and a certificate we send needs no local validation,
//! so such an identity is checked here with x509-parser instead and given to rustls directly
//! ([`client_with_v1_identity`]); every other identity takes kube's own path.

use kube::client::ConfigExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::ExposeSecret;
use std::path::Path;
use std::sync::Arc;

/// Why no Kubernetes client could be built. Each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("cannot read kubeconfig {path}: {message} (check --kubeconfig)")]
    Kubeconfig { path: String, message: String },
    #[error("not running in a cluster and no --kubeconfig given: {0}")]
    NoCluster(String),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),
    #[error("the kubeconfig's client certificate cannot be used: {0}")]
    ClientCertificate(String),
    #[error("Kubernetes API request failed: {0}")]
    Api(String),
}

/// Connects to the cluster named by `kubeconfig`, or to the one this pod runs in.
pub(crate) async fn connect(kubeconfig: Option<&Path>) -> Result<kube::Client, K8sError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| K8sError::Kubeconfig { path: path.display().to_string(), message: e.to_string() })?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| K8sError::Kubeconfig { path: path.display().to_string(), message: e.to_string() })?
        }
        None => kube::Config::incluster().map_err(|e| K8sError::NoCluster(e.to_string()))?,
    };
    match client_identity(&config)? {
        Some(identity) if identity.version_1 => client_with_v1_identity(config, identity),
        _ => kube::Client::try_from(config).map_err(|e| K8sError::Client(e.to_string())),
    }
}

/// The client certificate chain and key a kubeconfig names.
struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The end-entity certificate is X.509 version 1.
    version_1: bool,
}

fn certificate_error(message: impl std::fmt::Display) -> K8sError {
    K8sError::ClientCertificate(message.to_string())
}

/// Reads the identity of `config` (`client-certificate[-data]`, `client-key[-data]`); `None`
/// without a client certificate.
fn client_identity(config: &kube::Config) -> Result<Option<ClientIdentity>, K8sError> {
    let auth = &config.auth_info;
    let read = |data: Option<&str>, file: Option<&String>, what: &str| -> Result<Option<Vec<u8>>, K8sError> {
        use base64::Engine;
        match (data, file) {
            (Some(data), _) => base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map(Some)
                .map_err(|e| certificate_error(format!("{what}-data is not base64: {e}"))),
            (None, Some(path)) => {
                std::fs::read(path).map(Some).map_err(|e| certificate_error(format!("cannot read {what} {path}: {e}")))
            }
            (None, None) => Ok(None),
        }
    };
    let Some(cert_pem) =
        read(auth.client_certificate_data.as_deref(), auth.client_certificate.as_ref(), "client-certificate")?
    else {
        return Ok(None);
    };
    let key_data = auth.client_key_data.as_ref().map(|secret| secret.expose_secret().to_string());
    let Some(key_pem) = read(key_data.as_deref(), auth.client_key.as_ref(), "client-key")? else {
        return Err(certificate_error("client-certificate is set but client-key is not: give both"));
    };
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| certificate_error(format!("client-certificate is not PEM: {e}")))?;
    let Some(first) = chain.first() else {
        return Err(certificate_error("client-certificate holds no CERTIFICATE block"));
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(first).map_err(|e| {
        certificate_error(format!("client-certificate is not an X.509 certificate ({e}); issue a new one"))
    })?;
    let version_1 = parsed.version() == x509_parser::x509::X509Version::V1;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| certificate_error(format!("client-key is not PEM: {e}")))?
        .ok_or_else(|| certificate_error("client-key holds no PRIVATE KEY block (PKCS#8, RSA or EC PRIVATE KEY)"))?;
    Ok(Some(ClientIdentity { chain, key, version_1 }))
}

/// Builds the client as kube does (base URI, authentication headers, extra headers) over a
/// rustls config that presents `identity` without parsing it with webpki.
fn client_with_v1_identity(mut config: kube::Config, identity: ClientIdentity) -> Result<kube::Client, K8sError> {
    let ClientIdentity { chain, key, .. } = identity;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        certificate_error(format!("client-key is not a usable RSA, ECDSA or Ed25519 key ({e}); re-export it as PKCS#8"))
    })?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| certificate_error(format!("client-certificate: {e}")))?;
    let key_spki = signing_key.public_key();
    if key_spki.as_ref().is_some_and(|spki| spki.as_ref() != parsed.tbs_certificate.subject_pki.raw) {
        return Err(certificate_error(
            "client-key does not belong to client-certificate: give the key the certificate was issued for",
        ));
    }
    tracing::info!(
        subject = %parsed.subject(),
        "the kubeconfig's client certificate is X.509 version 1; presenting it as it is"
    );
    let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, signing_key));

    // kube builds the rest of the TLS setup (roots, insecure-skip-tls-verify) from the config
    // without the identity, which is then put in.
    config.auth_info.client_certificate = None;
    config.auth_info.client_certificate_data = None;
    config.auth_info.client_key = None;
    config.auth_info.client_key_data = None;
    let mut tls = config.rustls_client_config().map_err(|e| K8sError::Client(e.to_string()))?;
    tls.client_auth_cert_resolver = Arc::new(rustls::sign::SingleCertAndKey::from(certified));

    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
    let builder = match &config.tls_server_name {
        Some(name) => {
            let name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|e| K8sError::Client(format!("tls-server-name {name:?}: {e}")))?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    let connector = builder.enable_http1().wrap_connector(http);
    let https = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let auth_layer = config.auth_layer().map_err(|e| K8sError::Client(e.to_string()))?;
    let extra_headers = config.extra_headers_layer().map_err(|e| K8sError::Client(e.to_string()))?;
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(auth_layer)
        .layer(extra_headers)
        .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
        .service(https);
    Ok(kube::Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(cert_pem: &str, key_pem: &str) -> kube::Config {
        use base64::Engine;
        let mut config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        config.auth_info.client_certificate_data = Some(encode(cert_pem));
        config.auth_info.client_key_data = Some(encode(key_pem).into());
        config
    }

    #[test]
    fn a_version_3_identity_takes_kubes_path_and_broken_ones_name_the_fix() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["user".to_string()]).unwrap().self_signed(&key).unwrap();
        let identity = client_identity(&config_with(&cert.pem(), &key.serialize_pem())).unwrap().unwrap();
        assert!(!identity.version_1);
        assert!(client_identity(&kube::Config::new("https://127.0.0.1:1".parse().unwrap())).unwrap().is_none());

        let other_key = rcgen::KeyPair::generate().unwrap();
        let mismatched = ClientIdentity { version_1: true, ..identity };
        let mismatched =
            ClientIdentity { key: PrivateKeyDer::try_from(other_key.serialize_der()).unwrap(), ..mismatched };
        let error = client_with_v1_identity(kube::Config::new("https://127.0.0.1:1".parse().unwrap()), mismatched)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("does not belong to client-certificate"), "{error}");
        for (cert, key, expected) in [
            ("garbage", key.serialize_pem(), "no CERTIFICATE block"),
            (cert.pem().as_str(), "garbage".to_string(), "no PRIVATE KEY block"),
        ] {
            let error = client_identity(&config_with(cert, &key)).err().unwrap().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
