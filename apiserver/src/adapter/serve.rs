//! `start` brings the adapter up inside `ringtail serve`: rules (file or embedded default), the
//! standalone resolver, the external query source (if any), the authenticator, the TLS listener on `--secure-listen`, and the
//! config reloader — all stopped by the server's shutdown channel. Its settings are
//! [`AdapterSettings`] (`crate::settings`, the `adapter:` block and the adapter's flags).
//!
//! Binding policy: the default `--secure-listen` (0.0.0.0:6443) is a convenience, so if that
//! address is taken the adapter is skipped with a warning and the rest of Ringtail serves on;
//! an address given explicitly (flag or config file) that cannot be bound is a start-up error.

use super::http::auth::{AllowAll, Authenticator, StaticTokens};
use super::http::routes::{self, AdapterState};
use super::http::tls::{self, TlsSettings};
use super::provider::{ExternalCatalog, SeriesDiscovery};
use super::provider::{ObjectResolver, Provider, StandaloneResolver};
use super::query_source::HttpQuerySource;
use super::AdapterError;
use crate::listener::{ConnectionLimits, ConnectionMetrics};
use crate::settings::{AdapterSettings, WebSettings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How often `--adapter-config` is looked at for changes.
const CONFIG_POLL: Duration = Duration::from_secs(1);

/// A running adapter.
pub struct AdapterHandle {
    /// The bound TLS address, or `None` when the default address was taken and the adapter skipped.
    pub secure_addr: Option<SocketAddr>,
    /// The CA of a generated serving pair, for clients to trust.
    pub generated_ca: Option<PathBuf>,
    pub provider: Option<Arc<Provider>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl AdapterHandle {
    /// Waits for the adapter's tasks after the shutdown channel fired.
    pub(crate) async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Why the adapter did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    #[error("cannot listen on {addr} for the metrics APIs: {source} (pick another with --secure-listen)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Where a generated TLS pair lives: beside the data directory (`./data` → `./data-tls/`).
pub(crate) fn generated_tls_dir(data_dir: &std::path::Path) -> PathBuf {
    let name = data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "data".into());
    data_dir.with_file_name(format!("{name}-tls"))
}

/// What a Kubernetes cluster contributes to the adapter (built by `crate::k8s`).
pub(crate) struct ClusterHooks {
    /// Resolves label selectors and resources against the cluster's objects.
    pub(crate) resolver: Arc<dyn ObjectResolver>,
    /// The cluster's authentication and authorization; `None` keeps the standalone rules.
    pub(crate) auth: Option<Arc<dyn Authenticator>>,
    /// PEM bundle the front proxy's client certificates must chain to.
    pub(crate) client_ca_pem: Option<String>,
}

/// Starts the adapter; `cluster` is `None` in standalone mode. Its TLS listener applies `web`'s
/// timeouts and probe slots and counts into `connection_metrics`.
#[allow(clippy::too_many_arguments)] // one call site, in the server's wiring
pub(crate) async fn start(
    settings: &AdapterSettings,
    web: &WebSettings,
    connection_metrics: ConnectionMetrics,
    data_dir: &std::path::Path,
    db: Arc<tsdb::Db>,
    engine: Arc<query::Engine>,
    cluster: Option<ClusterHooks>,
    shutdown: watch::Receiver<bool>,
) -> Result<AdapterHandle, StartError> {
    let listener = match TcpListener::bind(settings.secure_listen).await {
        Ok(l) => l,
        Err(source) if !settings.secure_listen_explicit => {
            tracing::warn!(addr = %settings.secure_listen, error = %source,
                "default metrics-API address unavailable; the adapter is not served (set --secure-listen)");
            return Ok(AdapterHandle { secure_addr: None, generated_ca: None, provider: None, tasks: Vec::new() });
        }
        Err(source) => return Err(StartError::Bind { addr: settings.secure_listen, source }),
    };
    let secure_addr =
        listener.local_addr().map_err(|source| StartError::Bind { addr: settings.secure_listen, source })?;
    let (resolver, cluster_auth, client_ca_pem) = match cluster {
        Some(hooks) => (hooks.resolver, hooks.auth, hooks.client_ca_pem),
        None => {
            let standalone: Arc<dyn ObjectResolver> =
                Arc::new(StandaloneResolver::new(db.clone(), settings.metrics_max_age));
            (standalone, None, None)
        }
    };
    let (rules, warnings) =
        super::rules::load_rules(settings.config_file.as_deref(), settings.rate_window, resolver.as_ref())?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!(source = %rules.source, custom_rules = rules.custom.len(), external_rules = rules.external.len(),
        "adapter rules loaded");
    let mut discovery = SeriesDiscovery::new(settings.metrics_max_age, super::DEFAULT_DISCOVERY_MAX_AGE);
    if let Some(external) = &settings.external_source {
        let source =
            HttpQuerySource::new(external.clone(), tokio::runtime::Handle::current()).map_err(AdapterError::from)?;
        tracing::info!(url = %external.url, relist_interval = ?external.relist_interval,
            "adapter rules also read the external query source (series not in the store are listed and queried there)");
        discovery = discovery.with_external(ExternalCatalog::new(Arc::new(source), external.relist_interval));
    }
    let provider = Arc::new(Provider::new(db, engine, resolver, rules, discovery));
    let auth: Arc<dyn Authenticator> = match (cluster_auth, &settings.tokens_file) {
        (Some(cluster), _) => cluster,
        (None, Some(path)) => Arc::new(StaticTokens::load(path).map_err(AdapterError::from)?),
        (None, None) => Arc::new(AllowAll),
    };
    let client_verifier =
        client_ca_pem.as_deref().map(tls::front_proxy_verifier).transpose().map_err(AdapterError::from)?;
    let tls_settings = TlsSettings::choose(
        settings.tls_cert_file.clone(),
        settings.tls_private_key_file.clone(),
        settings.cert_dir.as_deref(),
        generated_tls_dir(data_dir),
    );
    let tls_dir = tls_settings.generated_dir.clone();
    let setup = tokio::task::spawn_blocking(move || tls::server_config(&tls_settings, client_verifier))
        .await
        .map_err(|e| AdapterError::Tls(tls::TlsError::Generate(e.to_string())))?
        .map_err(AdapterError::from)?;
    let app = routes::router(AdapterState::new(provider.clone(), auth));
    let limits = ConnectionLimits::new(settings.max_connections, web, tls::PROBE_PATHS);
    let mut tasks =
        vec![tokio::spawn(tls::run(listener, setup.config, app, limits, connection_metrics, shutdown.clone()))];
    if let Some(path) = &settings.config_file {
        tasks.push(tokio::spawn(super::rules::reload::run(
            path.clone(),
            provider.clone(),
            settings.rate_window,
            CONFIG_POLL,
            shutdown,
        )));
    }
    match &setup.generated_ca {
        Some(ca) => tracing::info!(%secure_addr, ca = %ca.display(), tls_dir = %tls_dir.display(),
            "metrics APIs serving over TLS with a generated certificate; clients should trust the CA file"),
        None => tracing::info!(%secure_addr, "metrics APIs serving over TLS"),
    }
    Ok(AdapterHandle {
        secure_addr: Some(secure_addr),
        generated_ca: setup.generated_ca,
        provider: Some(provider),
        tasks,
    })
}
