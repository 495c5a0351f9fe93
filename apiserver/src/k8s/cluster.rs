//! `Cluster` is what `ringtail serve` gets from a Kubernetes API: the client, the watched object
//! resolver for the adapter, the aggregated-API authenticator, and scrape target discovery for
//! every job with `kubernetes_sd_configs`. Whether a cluster is used at all is decided here
//! ([`ClusterMode`]): `--kubeconfig FILE`, or in-cluster when the service-account environment is
//! present, or none (`--standalone`). Every background task it starts ends on the server's
//! shutdown signal.

use super::auth::KubeAuth;
use super::objects::KubeResolver;
use super::scrape_discovery::{Role, ScrapeDiscoverySpec};
use super::K8sError;
use crate::settings::{ClusterMode, ClusterSettings};
use ingest::ScrapeConfigs;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the service account's namespace is mounted in a pod.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// A connected cluster's parts.
pub(crate) struct Cluster {
    pub(crate) client: kube::Client,
    pub(crate) resolver: Arc<KubeResolver>,
    /// `None` when authentication was turned off.
    pub(crate) auth: Option<Arc<KubeAuth>>,
    /// The refresh loops of the resolver and the authenticator (they end on shutdown).
    pub(crate) refresh_tasks: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// Connects as `settings` say; `Ok(None)` in standalone mode. Background refreshes run
    /// until `shutdown`.
    pub(crate) async fn connect(
        settings: &ClusterSettings,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Option<Cluster>, K8sError> {
        let kubeconfig = match &settings.mode {
            ClusterMode::Standalone => return Ok(None),
            ClusterMode::Auto if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() => return Ok(None),
            ClusterMode::Auto => None,
            ClusterMode::Kubeconfig(path) => Some(path.as_path()),
        };
        let client = super::client::connect(kubeconfig).await?;
        let (resolver, resolver_refresh) = KubeResolver::start(client.clone(), shutdown.clone()).await?;
        let mut refresh_tasks = vec![resolver_refresh];
        let auth = match settings.authentication {
            true => {
                let (auth, auth_refresh) = KubeAuth::start(client.clone(), shutdown.clone()).await?;
                refresh_tasks.push(auth_refresh);
                Some(auth)
            }
            false => None,
        };
        tracing::info!(
            kubeconfig = %kubeconfig.map(|p| p.display().to_string()).unwrap_or_else(|| "in-cluster".into()),
            authentication = settings.authentication,
            "connected to the Kubernetes API"
        );
        Ok(Some(Cluster { client, resolver, auth, refresh_tasks }))
    }
}

/// The scrape discovery specs of `configs`, with `own_namespace` read from the service account
/// mount.
pub(crate) fn scrape_discovery_specs_for(configs: &ScrapeConfigs) -> Vec<ScrapeDiscoverySpec> {
    scrape_discovery_specs(configs, || read_own_namespace(Path::new(SERVICE_ACCOUNT_NAMESPACE)))
}

/// The scrape discovery specs of `configs`. Several entries of one job would overwrite each other's
/// target groups, so a job's entries are merged when they share a role; entries of one job with
/// different roles are kept apart by role and logged (the later role wins the job's groups).
fn scrape_discovery_specs(
    configs: &ScrapeConfigs,
    own_namespace: impl Fn() -> Option<String>,
) -> Vec<ScrapeDiscoverySpec> {
    let mut specs: Vec<ScrapeDiscoverySpec> = Vec::new();
    for job in &configs.scrape_configs {
        for sd in &job.kubernetes_sd_configs {
            // The role was validated when the scrape config was resolved.
            let Some(role) = Role::parse(&sd.role) else { continue };
            let mut namespaces = sd.namespaces.as_ref().map(|n| n.names.clone()).unwrap_or_default();
            if sd.namespaces.as_ref().is_some_and(|n| n.own_namespace) {
                namespaces.extend(own_namespace());
            }
            match specs.iter_mut().find(|s| s.job_name == job.job_name) {
                Some(existing) if existing.role == role => {
                    if existing.selectors != sd.selectors {
                        tracing::warn!(job = %job.job_name,
                            "entries of one job with different selectors: the first entry's selectors apply to all");
                    }
                    // All namespaces (empty) absorbs any list.
                    if existing.namespaces.is_empty() || namespaces.is_empty() {
                        existing.namespaces.clear();
                    } else {
                        existing.namespaces.extend(namespaces);
                        existing.namespaces.sort();
                        existing.namespaces.dedup();
                    }
                }
                Some(existing) => {
                    tracing::warn!(job = %job.job_name, first = ?existing.role, second = ?role,
                        "one job with two Kubernetes discovery roles: only the first is used");
                }
                None => specs.push(ScrapeDiscoverySpec {
                    job_name: job.job_name.clone(),
                    role,
                    namespaces,
                    selectors: sd.selectors.clone(),
                    attach_node: sd.attach_metadata.node,
                }),
            }
        }
    }
    specs
}

fn read_own_namespace(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let namespace = text.trim();
    (!namespace.is_empty()).then(|| namespace.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_follow_the_scrape_configs() {
        let configs = ScrapeConfigs::from_yaml(
            "scrape_configs:\n\
             - job_name: pods\n  kubernetes_sd_configs:\n  - role: pod\n    namespaces: {names: [web]}\n  \
             - role: pod\n    namespaces: {names: [ml], own_namespace: true}\n\
             - job_name: static\n  static_configs: [{targets: ['a:1']}]\n\
             - job_name: eps\n  kubernetes_sd_configs: [{role: endpoints}]\n",
        )
        .unwrap();
        let specs = scrape_discovery_specs(&configs, || Some("ringtail".into()));
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].job_name, "pods");
        assert_eq!(specs[0].role, Role::Pod);
        assert_eq!(specs[0].namespaces, vec!["ml", "ringtail", "web"]);
        assert_eq!(specs[1].role, Role::Endpoints);
        assert!(specs[1].namespaces.is_empty(), "no namespaces means all");
    }

    /// A Kubernetes API answering just enough for `Cluster::connect`: API discovery, the
    /// front-proxy ConfigMap; everything else (the object watches) fails and is retried.
    async fn fake_api_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
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
                get(|| async {
                    Json(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
                        "data": {"requestheader-client-ca-file": "PEM"}}))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (addr, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
    }

    #[tokio::test]
    async fn refresh_loops_end_on_shutdown() {
        let (addr, api) = fake_api_server().await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://{addr}'}}}}]\n\
                 users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\n\
                 current-context: x\n"
            ),
        )
        .unwrap();
        let settings = ClusterSettings { mode: ClusterMode::Kubeconfig(kubeconfig), authentication: true };
        let (stop, stop_rx) = watch::channel(false);
        let mut cluster = Cluster::connect(&settings, &stop_rx).await.unwrap().expect("a cluster");
        assert_eq!(cluster.auth.as_ref().and_then(|auth| auth.client_ca_pem()).as_deref(), Some("PEM"));
        assert_eq!(cluster.refresh_tasks.len(), 2, "API discovery and front-proxy settings refreshes");
        stop.send(true).unwrap();
        for task in std::mem::take(&mut cluster.refresh_tasks) {
            tokio::time::timeout(std::time::Duration::from_secs(2), task).await.expect("ends on shutdown").unwrap();
        }
        api.abort();
    }

    #[test]
    fn own_namespace_is_read_from_the_service_account_mount() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("namespace");
        assert_eq!(read_own_namespace(&path), None);
        std::fs::write(&path, "ringtail\n").unwrap();
        assert_eq!(read_own_namespace(&path).as_deref(), Some("ringtail"));
    }
}
