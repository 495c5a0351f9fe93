//! `Cluster` is what `ringtail serve` gets from a Kubernetes API: the client, the watched object
//! resolver for the adapter, the aggregated-API authenticator, and scrape discovery for every
//! job with `kubernetes_sd_configs`. Whether a cluster is used at all is decided here
//! ([`ClusterMode`]): `--kubeconfig FILE`, or in-cluster when the service-account environment is
//! present, or none (`--standalone`).

use super::auth::KubeAuth;
use super::objects::KubeResolver;
use super::sd::{run_discovery, DiscoverySpec, Role};
use super::K8sError;
use ingest::{ScrapeConfigs, ScrapeManager};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// Where the service account's namespace is mounted in a pod.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// How Ringtail finds (or ignores) a Kubernetes API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClusterMode {
    /// In-cluster config when `KUBERNETES_SERVICE_HOST` is set, otherwise standalone.
    #[default]
    Auto,
    /// The cluster a kubeconfig file names.
    Kubeconfig(PathBuf),
    /// Never talk to a cluster.
    Standalone,
}

/// Kubernetes settings of `ringtail serve`.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub mode: ClusterMode,
    /// Front-proxy certificates, TokenReview and SubjectAccessReview on the metrics APIs (on by
    /// default with a cluster; off keeps the standalone rules, e.g. `--adapter-tokens-file`).
    pub authentication: bool,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings { mode: ClusterMode::Auto, authentication: true }
    }
}

/// A connected cluster's parts.
pub struct Cluster {
    pub client: kube::Client,
    pub resolver: Arc<KubeResolver>,
    /// `None` when authentication was turned off.
    pub auth: Option<Arc<KubeAuth>>,
}

impl Cluster {
    /// Connects as `settings` say; `Ok(None)` in standalone mode.
    pub async fn connect(settings: &ClusterSettings) -> Result<Option<Cluster>, K8sError> {
        let kubeconfig = match &settings.mode {
            ClusterMode::Standalone => return Ok(None),
            ClusterMode::Auto if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() => return Ok(None),
            ClusterMode::Auto => None,
            ClusterMode::Kubeconfig(path) => Some(path.as_path()),
        };
        let client = super::connect(kubeconfig).await?;
        let resolver = KubeResolver::start(client.clone()).await?;
        let auth = match settings.authentication {
            true => Some(KubeAuth::start(client.clone()).await?),
            false => None,
        };
        tracing::info!(
            kubeconfig = %kubeconfig.map(|p| p.display().to_string()).unwrap_or_else(|| "in-cluster".into()),
            authentication = settings.authentication,
            "connected to the Kubernetes API"
        );
        Ok(Some(Cluster { client, resolver, auth }))
    }

    /// Starts one discovery task per `kubernetes_sd_configs` entry of every job.
    pub fn start_discovery(
        &self,
        configs: &ScrapeConfigs,
        scraper: &Arc<ScrapeManager>,
        shutdown: &watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let own_namespace = || read_own_namespace(Path::new(SERVICE_ACCOUNT_NAMESPACE));
        discovery_specs(configs, own_namespace)
            .into_iter()
            .map(|spec| tokio::spawn(run_discovery(self.client.clone(), spec, scraper.clone(), shutdown.clone())))
            .collect()
    }
}

/// The discovery specs of `configs`. Several entries of one job would overwrite each other's
/// target groups, so a job's entries are merged when they share a role; entries of one job with
/// different roles are kept apart by role and logged (the later role wins the job's groups).
fn discovery_specs(configs: &ScrapeConfigs, own_namespace: impl Fn() -> Option<String>) -> Vec<DiscoverySpec> {
    let mut specs: Vec<DiscoverySpec> = Vec::new();
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
                None => specs.push(DiscoverySpec { job_name: job.job_name.clone(), role, namespaces }),
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
        let specs = discovery_specs(&configs, || Some("ringtail".into()));
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].job_name, "pods");
        assert_eq!(specs[0].role, Role::Pod);
        assert_eq!(specs[0].namespaces, vec!["ml", "ringtail", "web"]);
        assert_eq!(specs[1].role, Role::Endpoints);
        assert!(specs[1].namespaces.is_empty(), "no namespaces means all");
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
