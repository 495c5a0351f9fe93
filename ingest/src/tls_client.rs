//! `tls_client` builds the rustls client configuration for the `tls_config` settings reqwest's
//! builder cannot express: `server_name` (verify the server's certificate for that name rather
//! than the address scraped — a kubelet's certificate names the node, the target is its IP) and
//! `min_version` / `max_version`. Everything else of `tls_config` (CA, client certificate,
//! `insecure_skip_verify`) is honoured here as well, so one configuration carries all of it.

use crate::scrape_config::TlsConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use std::sync::Arc;

/// A TLS version as Prometheus names it (`TLS10` … `TLS13`); rustls speaks 1.2 and 1.3 only, so
/// `TLS10` and `TLS11` as a minimum mean 1.2, and as a maximum are refused.
fn version(name: &str) -> Result<u8, String> {
    match name {
        "TLS10" => Ok(10),
        "TLS11" => Ok(11),
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        other => Err(format!("unknown TLS version {other:?} (TLS10, TLS11, TLS12 or TLS13)")),
    }
}

/// The protocol versions `min_version`..=`max_version` allow.
fn versions(tls: &TlsConfig) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let min = tls.min_version.as_deref().map(version).transpose()?.unwrap_or(12);
    let max = tls.max_version.as_deref().map(version).transpose()?.unwrap_or(13);
    let allowed: Vec<&'static SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, version)| version)
            .collect();
    if allowed.is_empty() {
        return Err(format!(
            "tls_config: no TLS version this client speaks (1.2, 1.3) lies between min_version {:?} and max_version {:?}",
            tls.min_version, tls.max_version
        ));
    }
    Ok(allowed)
}

/// Whether `tls` needs [`client_config`] (reqwest's builder handles the rest alone).
pub(crate) fn needs_custom(tls: &TlsConfig) -> bool {
    tls.server_name.is_some() || tls.min_version.is_some() || tls.max_version.is_some()
}

/// The rustls configuration for `tls`: the CA file's certificates (else the public roots reqwest
/// uses), the client certificate, the versions, and verification for `server_name`.
pub(crate) fn client_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let read =
        |path: &std::path::PathBuf| std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(ca_file) => {
            for cert in rustls_pemfile::certs(&mut read(ca_file)?.as_slice()) {
                let cert = cert.map_err(|e| format!("ca_file {}: {e}", ca_file.display()))?;
                roots.add(cert).map_err(|e| format!("ca_file {}: {e}", ca_file.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("ca_file {} holds no certificate", ca_file.display()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(AcceptAnyCertificate(provider.clone()))
    } else {
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("tls_config: {e}"))?;
        match &tls.server_name {
            Some(name) => {
                let name =
                    ServerName::try_from(name.clone()).map_err(|e| format!("tls_config: server_name {name:?}: {e}"))?;
                Arc::new(VerifyAs { inner: webpki, name })
            }
            None => webpki,
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions(tls)?)
        .map_err(|e| format!("tls_config: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&tls.cert_file, &tls.key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert_file), Some(key_file)) => {
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut read(cert_file)?.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("cert_file {}: {e}", cert_file.display()))?;
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut read(key_file)?.as_slice())
                .map_err(|e| format!("key_file {}: {e}", key_file.display()))?
                .ok_or_else(|| format!("key_file {} holds no private key", key_file.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("cert_file {} / key_file {}: {e}", cert_file.display(), key_file.display()))
        }
        _ => Err("tls_config needs both cert_file and key_file, or neither".into()),
    }
}

/// Verifies the server's certificate for a configured name instead of the one connected to.
#[derive(Debug)]
struct VerifyAs {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for VerifyAs {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate is accepted (its signatures on the handshake are
/// still checked, so the peer holds the key of the certificate it shows).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(min: Option<&str>, max: Option<&str>) -> TlsConfig {
        TlsConfig { min_version: min.map(str::to_string), max_version: max.map(str::to_string), ..TlsConfig::default() }
    }

    #[test]
    fn versions_follow_min_and_max() {
        let names =
            |t: &TlsConfig| versions(t).map(|v| v.iter().map(|v| format!("{:?}", v.version)).collect::<Vec<_>>());
        assert_eq!(names(&tls(None, None)).unwrap(), ["TLSv1_2", "TLSv1_3"]);
        assert_eq!(names(&tls(Some("TLS13"), None)).unwrap(), ["TLSv1_3"]);
        assert_eq!(names(&tls(Some("TLS10"), Some("TLS12"))).unwrap(), ["TLSv1_2"]);
        assert!(names(&tls(None, Some("TLS11"))).is_err(), "nothing this client speaks");
        assert!(names(&tls(Some("SSL3"), None)).is_err());
    }

    #[test]
    fn bad_files_and_names_are_errors() {
        let missing = TlsConfig { ca_file: Some("/nonexistent/ca.pem".into()), ..TlsConfig::default() };
        assert!(client_config(&missing).unwrap_err().contains("/nonexistent/ca.pem"));
        let half =
            TlsConfig { cert_file: Some("/x.pem".into()), server_name: Some("a".into()), ..TlsConfig::default() };
        assert!(client_config(&half).is_err());
        let ok = TlsConfig { server_name: Some("kubelet.example".into()), ..TlsConfig::default() };
        assert!(client_config(&ok).is_ok());
    }
}
