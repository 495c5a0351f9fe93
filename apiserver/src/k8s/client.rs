//! `connect` builds the Kubernetes API client: from `--kubeconfig FILE` when given, else from the
//! in-cluster service-account environment.

use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::Path;

/// Why no Kubernetes client could be built. Each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("cannot read kubeconfig {path}: {message} (check --kubeconfig)")]
    Kubeconfig { path: String, message: String },
    #[error("not running in a cluster and no --kubeconfig given: {0}")]
    NoCluster(String),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),
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
    kube::Client::try_from(config).map_err(|e| K8sError::Client(e.to_string()))
}
