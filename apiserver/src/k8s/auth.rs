//! `KubeAuth` secures the aggregated metrics APIs as kube-apiserver expects of an extension API
//! server:
//! - **front-proxy**: a request that arrives with a client certificate chaining to the
//!   `requestheader-client-ca-file` of `kube-system/extension-apiserver-authentication` (checked
//!   here per request, against the CA as last read: the TLS listener only asks for the
//!   certificate) and whose CN is in `requestheader-allowed-names` carries the real user in the
//!   configured headers (`X-Remote-User`, `X-Remote-Group`, `X-Remote-Extra-*`);
//! - **client certificates** chaining to the same ConfigMap's `client-ca-file` (the cluster's
//!   client CA) are the user of their CN, in the groups of their O;
//! - **bearer tokens** are checked with a TokenReview;
//! - every request is then **authorized** with a SubjectAccessReview.
//!
//! As in k8s.io/apiserver's delegated authentication (a union of these authenticators, then
//! anonymous): a certificate that fails (another CA, expired, a CN not allowed) is 401 unless a
//! bearer token authenticates the request; no credentials at all is `system:anonymous`, whom the
//! SubjectAccessReview then refuses (403).
//!
//! Review answers are cached briefly (`REVIEW_TTL`) so the HPA's steady polling costs no API
//! calls; everything else gets 401/403 as a Kubernetes `Status`.

use crate::adapter::http::auth::{AuthDecision, Authenticator, ConnectionInfo, Identity, PendingDecision};
use crate::adapter::http::tls;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, Client};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::UnixTime;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;

/// How long a TokenReview or SubjectAccessReview answer is reused.
pub(crate) const REVIEW_TTL: Duration = Duration::from_secs(10);
/// How often the front-proxy settings ConfigMap is re-read (the CA can rotate).
const REQUESTHEADER_REFRESH: Duration = Duration::from_secs(60);
/// Most cached review answers; the cache is cleared when it grows past this.
const MAX_CACHED_REVIEWS: usize = 10_000;

/// The front-proxy settings kube-apiserver publishes for extension API servers.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RequestHeaderConfig {
    /// PEM of the CA that signs the aggregator's client certificate.
    pub(crate) client_ca_pem: String,
    /// CNs allowed to act as front proxy; empty means any certificate from the CA.
    pub(crate) allowed_names: Vec<String>,
    pub(crate) username_headers: Vec<String>,
    pub(crate) group_headers: Vec<String>,
    pub(crate) extra_headers_prefixes: Vec<String>,
}

impl RequestHeaderConfig {
    /// Reads the `extension-apiserver-authentication` ConfigMap's data (JSON arrays as strings).
    pub(crate) fn from_configmap_data(data: &BTreeMap<String, String>) -> Option<RequestHeaderConfig> {
        let list = |key: &str| -> Vec<String> {
            data.get(key).and_then(|v| serde_json::from_str::<Vec<String>>(v).ok()).unwrap_or_default()
        };
        let client_ca_pem = data.get("requestheader-client-ca-file")?.clone();
        Some(RequestHeaderConfig {
            client_ca_pem,
            allowed_names: list("requestheader-allowed-names"),
            username_headers: list("requestheader-username-headers"),
            group_headers: list("requestheader-group-headers"),
            extra_headers_prefixes: list("requestheader-extra-headers-prefix"),
        })
    }
}

/// What a request asks to do, as kube-apiserver's RequestInfo would describe it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum RequestAttributes {
    Resource {
        /// `get` for a named object, `list` without a name, as kube-apiserver derives a GET's verb
        /// (the HPA's role grants `list` on `metrics.k8s.io` pods, and external metrics are
        /// always lists).
        verb: &'static str,
        group: String,
        version: String,
        namespace: String,
        resource: String,
        name: String,
        subresource: String,
    },
    NonResource {
        path: String,
    },
}

impl RequestAttributes {
    /// Parses `/apis/<group>/<version>/[namespaces/<ns>/]<resource>[/<name>[/<subresource>]]`;
    /// anything else is a non-resource path. These APIs are read-only: the verb is `get` with a
    /// name and `list` without one.
    pub(crate) fn from_path(path: &str) -> RequestAttributes {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let [prefix, group, version, rest @ ..] = parts.as_slice() else {
            return RequestAttributes::NonResource { path: path.to_string() };
        };
        if *prefix != "apis" || rest.is_empty() {
            return RequestAttributes::NonResource { path: path.to_string() };
        }
        let (namespace, rest) = match rest {
            ["namespaces", ns, tail @ ..] if !tail.is_empty() => (ns.to_string(), tail),
            _ => (String::new(), rest),
        };
        let get = |i: usize| rest.get(i).map(|s| s.to_string()).unwrap_or_default();
        let name = get(1);
        RequestAttributes::Resource {
            verb: if name.is_empty() { "list" } else { "get" },
            group: group.to_string(),
            version: version.to_string(),
            namespace,
            resource: get(0),
            name,
            subresource: rest.get(2..).map(|tail| tail.join("/")).unwrap_or_default(),
        }
    }
}

/// The front-proxy settings with the verifier of their CA (or why the CA cannot be used).
struct FrontProxy {
    config: RequestHeaderConfig,
    verifier: Result<Arc<dyn ClientCertVerifier>, String>,
}

impl FrontProxy {
    fn new(config: RequestHeaderConfig) -> FrontProxy {
        let verifier = tls::client_chain_verifier(&config.client_ca_pem, "requestheader-client-ca-file")
            .map_err(|e| format!("the cluster's front-proxy CA is unusable: {e}"));
        if let Err(e) = &verifier {
            tracing::warn!("{e}: front-proxy requests will be refused");
        }
        FrontProxy { config, verifier }
    }
}

struct Cached<T> {
    at: Instant,
    value: T,
}

/// Cluster-backed authentication and authorization for the TLS listener.
pub(crate) struct KubeAuth {
    client: Client,
    requestheader: RwLock<Option<FrontProxy>>,
    /// The cluster's `client-ca-file` (PEM) and its verifier, when it publishes a usable one.
    client_ca: RwLock<Option<(String, Arc<dyn ClientCertVerifier>)>>,
    tokens: Mutex<HashMap<u64, Cached<Option<Identity>>>>,
    reviews: Mutex<HashMap<u64, Cached<Result<(), String>>>>,
}

impl KubeAuth {
    /// Loads the front-proxy settings and keeps them current in the background until
    /// `shutdown`; the returned task is that refresh loop.
    pub(crate) async fn start(
        client: Client,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<KubeAuth>, JoinHandle<()>), super::K8sError> {
        let auth = Arc::new(KubeAuth {
            client,
            requestheader: RwLock::new(None),
            client_ca: RwLock::new(None),
            tokens: Mutex::new(HashMap::new()),
            reviews: Mutex::new(HashMap::new()),
        });
        auth.refresh_requestheader().await?;
        let refresh = crate::shutdown::spawn_periodic(&auth, REQUESTHEADER_REFRESH, shutdown, |auth| async move {
            if let Err(e) = auth.refresh_requestheader().await {
                tracing::warn!(error = %e, "re-reading extension-apiserver-authentication failed");
            }
        });
        Ok((auth, refresh))
    }

    async fn refresh_requestheader(&self) -> Result<(), super::K8sError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), "kube-system");
        let map = api.get("extension-apiserver-authentication").await.map_err(|e| {
            super::K8sError::Api(format!(
                "reading kube-system/extension-apiserver-authentication: {e} (grant the \
                 extension-apiserver-authentication-reader Role, see deploy/rbac.yaml)"
            ))
        })?;
        let config = map.data.as_ref().and_then(RequestHeaderConfig::from_configmap_data);
        if config.is_none() {
            tracing::warn!(
                "the cluster publishes no requestheader-client-ca-file: front-proxy requests will be refused"
            );
        }
        *self.requestheader.write() = config.map(FrontProxy::new);
        let client_ca = map.data.as_ref().and_then(|data| data.get("client-ca-file"));
        *self.client_ca.write() = client_ca.and_then(|pem| match tls::client_chain_verifier(pem, "client-ca-file") {
            Ok(verifier) => Some((pem.clone(), verifier)),
            Err(e) => {
                tracing::warn!(error = %e, "the cluster's client CA is unusable: client certificates of users are refused");
                None
            }
        });
        Ok(())
    }

    /// The CA bundle (PEM) the TLS listener names to clients as the issuers it accepts: the
    /// front-proxy CA, then the cluster's client CA (a Go client sends no certificate whose
    /// issuer is not named, as kube-apiserver's delegated serving names both).
    pub(crate) fn client_ca_pem(&self) -> Option<String> {
        let front_proxy = self.requestheader.read().as_ref().map(|f| f.config.client_ca_pem.clone())?;
        match self.client_ca.read().as_ref() {
            Some((users_ca, _)) => Some(format!("{}\n{users_ca}", front_proxy.trim_end())),
            None => Some(front_proxy),
        }
    }

    /// Authenticates, then authorizes, one request.
    pub(crate) async fn check(&self, head: &http::request::Parts, connection: Option<&ConnectionInfo>) -> AuthDecision {
        let identity = match self.authenticate(head, connection).await {
            Ok(identity) => identity,
            Err(decision) => return decision,
        };
        let attributes = RequestAttributes::from_path(head.uri.path());
        match self.authorize(&identity, &attributes).await {
            Ok(()) => AuthDecision::Allow(identity),
            Err(reason) => AuthDecision::Forbidden(reason),
        }
    }

    async fn authenticate(
        &self,
        head: &http::request::Parts,
        connection: Option<&ConnectionInfo>,
    ) -> Result<Identity, AuthDecision> {
        let now = UnixTime::now();
        let certificate_refused = match self.front_proxy_identity(head, connection, now) {
            Ok(Some(identity)) => return Ok(identity),
            Ok(None) => None,
            Err(front_proxy_refused) => match self.client_certificate_identity(connection, now) {
                Ok(identity) => return Ok(identity),
                Err(reason) => Some(format!("{front_proxy_refused}; as a user's certificate: {reason}")),
            },
        };
        if let Some(token) = bearer_token(head) {
            return match self.review_token(token).await {
                Some(identity) => Ok(identity),
                None => Err(AuthDecision::Unauthorized("invalid bearer token".into())),
            };
        }
        match certificate_refused {
            Some(reason) => Err(AuthDecision::Unauthorized(reason)),
            None => Ok(Identity { user: "system:anonymous".into(), groups: vec!["system:unauthenticated".into()] }),
        }
    }

    /// `Ok(None)` when the request carries no client certificate; `Err` says why the one it
    /// carries does not authenticate it.
    fn front_proxy_identity(
        &self,
        head: &http::request::Parts,
        connection: Option<&ConnectionInfo>,
        now: UnixTime,
    ) -> Result<Option<Identity>, String> {
        let Some(chain) = connection.and_then(|c| c.peer_certificates.as_ref()) else {
            return Ok(None);
        };
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Ok(None);
        };
        let guard = self.requestheader.read();
        let Some(front_proxy) = guard.as_ref() else {
            return Err("no front-proxy CA is configured in the cluster".into());
        };
        let cn = common_name(leaf.as_ref()).unwrap_or_default();
        let verifier = front_proxy.verifier.as_ref().map_err(Clone::clone)?;
        verifier
            .verify_client_cert(leaf, intermediates, now)
            .map_err(|e| format!("verifying client certificate CN {cn:?} failed: {e}"))?;
        let config = &front_proxy.config;
        if cn.is_empty() {
            return Err("client certificate has no common name".into());
        }
        if !config.allowed_names.is_empty() && !config.allowed_names.contains(&cn) {
            return Err(format!("client certificate CN {cn:?} is not in requestheader-allowed-names"));
        }
        let header_values = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .flat_map(|name| head.headers.get_all(name.as_str()).iter())
                .filter_map(|v| v.to_str().ok())
                .map(str::to_string)
                .collect()
        };
        let Some(user) = header_values(&config.username_headers).into_iter().find(|u| !u.is_empty()) else {
            return Err("front-proxy request without a user header".into());
        };
        Ok(Some(Identity { user, groups: header_values(&config.group_headers) }))
    }

    /// The user a client certificate from the cluster's client CA names (kube-apiserver's x509
    /// authenticator: CN is the user, each O a group).
    fn client_certificate_identity(
        &self,
        connection: Option<&ConnectionInfo>,
        now: UnixTime,
    ) -> Result<Identity, String> {
        let chain = connection.and_then(|c| c.peer_certificates.as_ref()).map(|c| c.as_slice()).unwrap_or_default();
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err("no client certificate".into());
        };
        let guard = self.client_ca.read();
        let (_, verifier) = guard.as_ref().ok_or("the cluster publishes no usable client-ca-file")?;
        verifier.verify_client_cert(leaf, intermediates, now).map_err(|e| format!("verifying it failed: {e}"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| format!("not X.509: {e}"))?;
        let user = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default();
        if user.is_empty() {
            return Err("the certificate has no common name".into());
        }
        let mut groups: Vec<String> =
            cert.subject().iter_organization().filter_map(|o| o.as_str().ok()).map(str::to_string).collect();
        // kube-apiserver adds it to every authenticated user; TokenReview answers carry it already.
        groups.push("system:authenticated".into());
        Ok(Identity { user: user.to_string(), groups })
    }

    async fn review_token(&self, token: &str) -> Option<Identity> {
        let key = hash_of(&token);
        if let Some(hit) = self.tokens.lock().get(&key).filter(|c| c.at.elapsed() < REVIEW_TTL) {
            return hit.value.clone();
        }
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_string()), ..Default::default() },
            ..Default::default()
        };
        let identity = match api.create(&PostParams::default(), &review).await {
            Ok(answer) => answer
                .status
                .filter(|s| s.authenticated == Some(true))
                .and_then(|s| s.user)
                .map(|u| Identity { user: u.username.unwrap_or_default(), groups: u.groups.unwrap_or_default() }),
            Err(e) => {
                tracing::warn!(error = %e, "TokenReview failed");
                return None; // not cached: a transient failure must not stick
            }
        };
        remember(&self.tokens, key, identity.clone());
        identity
    }

    async fn authorize(&self, identity: &Identity, attributes: &RequestAttributes) -> Result<(), String> {
        let key = hash_of(&(identity.user.as_str(), &identity.groups, attributes));
        if let Some(hit) = self.reviews.lock().get(&key).filter(|c| c.at.elapsed() < REVIEW_TTL) {
            return hit.value.clone();
        }
        let mut spec = SubjectAccessReviewSpec {
            user: Some(identity.user.clone()),
            groups: Some(identity.groups.clone()),
            ..Default::default()
        };
        let described = match attributes {
            RequestAttributes::Resource { verb, group, version, namespace, resource, name, subresource } => {
                spec.resource_attributes = Some(ResourceAttributes {
                    verb: Some(verb.to_string()),
                    group: Some(group.clone()),
                    version: Some(version.clone()),
                    namespace: Some(namespace.clone()),
                    resource: Some(resource.clone()),
                    name: Some(name.clone()),
                    subresource: Some(subresource.clone()),
                    ..Default::default()
                });
                format!("{verb} {resource}{} in {group}", if subresource.is_empty() { "" } else { "/…" })
            }
            RequestAttributes::NonResource { path } => {
                spec.non_resource_attributes =
                    Some(NonResourceAttributes { path: Some(path.clone()), verb: Some("get".into()) });
                format!("get path {path}")
            }
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let review = SubjectAccessReview { spec, ..Default::default() };
        let outcome = match api.create(&PostParams::default(), &review).await {
            Ok(answer) => match answer.status {
                Some(status) if status.allowed => Ok(()),
                status => Err(format!(
                    "user {:?} cannot {described}{}",
                    identity.user,
                    status.and_then(|s| s.reason).map(|r| format!(": {r}")).unwrap_or_default()
                )),
            },
            Err(e) => {
                tracing::warn!(error = %e, "SubjectAccessReview failed");
                return Err(format!("authorization check failed: {e}"));
            }
        };
        remember(&self.reviews, key, outcome.clone());
        outcome
    }
}

impl Authenticator for KubeAuth {
    fn decide<'a>(
        &'a self,
        head: &'a http::request::Parts,
        connection: Option<&'a ConnectionInfo>,
    ) -> PendingDecision<'a> {
        Box::pin(self.check(head, connection))
    }
}

fn remember<T>(cache: &Mutex<HashMap<u64, Cached<T>>>, key: u64, value: T) {
    let mut cache = cache.lock();
    if cache.len() >= MAX_CACHED_REVIEWS {
        cache.clear();
    }
    cache.insert(key, Cached { at: Instant::now(), value });
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

fn bearer_token(head: &http::request::Parts) -> Option<&str> {
    let value = head.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?.trim();
    (!token.is_empty()).then_some(token)
}

/// The subject CN of a DER certificate.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_rustls::rustls::pki_types::CertificateDer;

    #[test]
    fn custom_metrics_paths_become_resource_attributes() {
        let attrs = RequestAttributes::from_path(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/ei_scale_ratio",
        );
        assert_eq!(
            attrs,
            RequestAttributes::Resource {
                verb: "get",
                group: "custom.metrics.k8s.io".into(),
                version: "v1beta2".into(),
                namespace: "default".into(),
                resource: "pods".into(),
                name: "*".into(),
                subresource: "ei_scale_ratio".into(),
            }
        );
        let attrs = RequestAttributes::from_path("/apis/custom.metrics.k8s.io/v1beta1/namespaces/web");
        assert!(matches!(attrs, RequestAttributes::Resource { ref resource, ref name, .. }
            if resource == "namespaces" && name == "web"));
        let list = RequestAttributes::from_path("/apis/metrics.k8s.io/v1beta1/namespaces/web/pods");
        assert!(matches!(list, RequestAttributes::Resource { verb: "list", ref resource, ref namespace, .. }
            if resource == "pods" && namespace == "web"));
        let external = RequestAttributes::from_path("/apis/external.metrics.k8s.io/v1beta1/namespaces/web/queue_depth");
        assert!(
            matches!(external, RequestAttributes::Resource { verb: "list", ref resource, .. } if resource == "queue_depth")
        );
        let one = RequestAttributes::from_path("/apis/metrics.k8s.io/v1beta1/nodes/n1");
        assert!(matches!(one, RequestAttributes::Resource { verb: "get", ref name, .. } if name == "n1"));
        assert_eq!(
            RequestAttributes::from_path("/apis/custom.metrics.k8s.io/v1beta2"),
            RequestAttributes::NonResource { path: "/apis/custom.metrics.k8s.io/v1beta2".into() }
        );
        assert_eq!(
            RequestAttributes::from_path("/healthz"),
            RequestAttributes::NonResource { path: "/healthz".into() }
        );
    }

    #[test]
    fn requestheader_config_reads_json_lists() {
        let data = BTreeMap::from([
            ("requestheader-client-ca-file".to_string(), "PEM".to_string()),
            ("requestheader-allowed-names".to_string(), "[\"front-proxy-client\"]".to_string()),
            ("requestheader-username-headers".to_string(), "[\"X-Remote-User\"]".to_string()),
            ("requestheader-group-headers".to_string(), "[\"X-Remote-Group\"]".to_string()),
            ("requestheader-extra-headers-prefix".to_string(), "[\"X-Remote-Extra-\"]".to_string()),
        ]);
        let config = RequestHeaderConfig::from_configmap_data(&data).unwrap();
        assert_eq!(config.allowed_names, vec!["front-proxy-client"]);
        assert_eq!(config.username_headers, vec!["X-Remote-User"]);
        assert!(RequestHeaderConfig::from_configmap_data(&BTreeMap::new()).is_none());
    }

    /// A CA and what it signs for the front-proxy tests.
    struct TestCa {
        cert: rcgen::Certificate,
        key: rcgen::KeyPair,
    }

    impl TestCa {
        fn new(name: &str) -> TestCa {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.distinguished_name.push(rcgen::DnType::CommonName, name);
            params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
            let key = rcgen::KeyPair::generate().unwrap();
            TestCa { cert: params.self_signed(&key).unwrap(), key }
        }

        /// A client certificate for `cn`, expired when `expired`.
        fn client(&self, cn: &str, expired: bool) -> CertificateDer<'static> {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            if expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2020, 1, 2);
            }
            let key = rcgen::KeyPair::generate().unwrap();
            params.signed_by(&key, &self.cert, &self.key).unwrap().der().clone()
        }
    }

    /// A `KubeAuth` whose API server is never reached: the front proxy is set, tokens are cached.
    fn offline_auth(front_proxy_ca: &TestCa, cluster_ca: &TestCa) -> KubeAuth {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let auth = KubeAuth {
            client: Client::try_from(config).unwrap(),
            requestheader: RwLock::new(None),
            client_ca: RwLock::new(None),
            tokens: Mutex::new(HashMap::new()),
            reviews: Mutex::new(HashMap::new()),
        };
        *auth.requestheader.write() = Some(FrontProxy::new(RequestHeaderConfig {
            client_ca_pem: front_proxy_ca.cert.pem(),
            allowed_names: vec!["front-proxy-client".into()],
            username_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
            extra_headers_prefixes: vec![],
        }));
        let users_ca = cluster_ca.cert.pem();
        *auth.client_ca.write() =
            Some((users_ca.clone(), tls::client_chain_verifier(&users_ca, "client-ca-file").unwrap()));
        remember(&auth.tokens, hash_of(&"good-token"), Some(Identity { user: "alice".into(), groups: vec![] }));
        auth
    }

    fn request(token: Option<&str>) -> http::request::Parts {
        let mut builder =
            http::Request::builder().uri("/apis/custom.metrics.k8s.io/v1beta2").header("X-Remote-User", "hpa");
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn over_tls(certificate: Option<CertificateDer<'static>>) -> ConnectionInfo {
        ConnectionInfo {
            remote_addr: "127.0.0.1:1".parse().unwrap(),
            peer_certificates: certificate.map(|c| Arc::new(vec![c])),
        }
    }

    /// Regression: the TLS handshake judged the chain, so another CA's or an expired certificate
    /// failed the handshake where kube-apiserver's delegated authentication answers 401.
    #[tokio::test]
    async fn front_proxy_certificates_are_judged_as_kube_apiserver_does() {
        let front_proxy_ca = TestCa::new("front-proxy-ca");
        let cluster_ca = TestCa::new("cluster-ca");
        let auth = offline_auth(&front_proxy_ca, &cluster_ca);
        let unauthorized = |outcome: Result<Identity, AuthDecision>, why: &str| match outcome {
            Err(AuthDecision::Unauthorized(reason)) => assert!(reason.contains(why), "{reason:?} should say {why:?}"),
            other => panic!("expected 401 ({why}), got {other:?}"),
        };
        let good = over_tls(Some(front_proxy_ca.client("front-proxy-client", false)));
        assert_eq!(auth.authenticate(&request(None), Some(&good)).await.unwrap().user, "hpa");
        let hinted = auth.client_ca_pem().unwrap();
        assert!(tls::front_proxy_verifier(&hinted).unwrap().root_hint_subjects().len() == 2, "both CAs are named");

        let foreign = over_tls(Some(TestCa::new("other-ca").client("front-proxy-client", false)));
        unauthorized(auth.authenticate(&request(None), Some(&foreign)).await, "UnknownIssuer");
        let expired = over_tls(Some(front_proxy_ca.client("front-proxy-client", true)));
        unauthorized(auth.authenticate(&request(None), Some(&expired)).await, "certificate expired");
        let intruder = over_tls(Some(front_proxy_ca.client("intruder", false)));
        unauthorized(auth.authenticate(&request(None), Some(&intruder)).await, "requestheader-allowed-names");

        // A user's certificate from the cluster's client CA: CN the user, O the groups.
        let admin = over_tls(Some(cluster_ca.client("e2e-admin", false)));
        let identity = auth.authenticate(&request(None), Some(&admin)).await.unwrap();
        assert_eq!((identity.user.as_str(), identity.groups), ("e2e-admin", vec!["system:authenticated".to_string()]));
        let expired_user = over_tls(Some(cluster_ca.client("e2e-admin", true)));
        unauthorized(auth.authenticate(&request(None), Some(&expired_user)).await, "certificate expired");

        // A refused certificate does not stop a token that authenticates (a union, as in Go).
        assert_eq!(auth.authenticate(&request(Some("good-token")), Some(&expired)).await.unwrap().user, "alice");
        let anonymous = auth.authenticate(&request(None), Some(&over_tls(None))).await.unwrap();
        assert_eq!(anonymous.user, "system:anonymous", "no credentials is anonymous, for the SubjectAccessReview");
    }

    #[test]
    fn common_name_is_read_from_the_certificate() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "front-proxy-client");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some("front-proxy-client"));
    }
}
