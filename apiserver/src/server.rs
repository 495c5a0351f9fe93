//! `Server` wires the parts together: opens the store, builds the query engine and HTTP router,
//! starts the listeners and background tasks, and stops them in reverse order on shutdown.

use crate::config::Config;
use crate::http::{self, prom_api::QueryApiState, remote_write::RemoteWriteState, AppState};
use axum::serve::ListenerExt;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store in {dir}: {source}")]
    Store {
        dir: std::path::PathBuf,
        #[source]
        source: tsdb::Error,
    },
    #[error("cannot listen on {addr}: {source} (is another process using it? pick another with --listen)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("{0} (fix scrape_configs/global in the --config file)")]
    Scrape(#[source] ingest::ConfigError),
    #[error("Kubernetes: {0}")]
    Kubernetes(#[source] crate::k8s::K8sError),
    #[error("metrics adapter: {0}")]
    Adapter(#[source] crate::adapter::serve::StartError),
    #[error("cannot read the remote-write bearer token file {path}: {source}")]
    BearerTokenFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Gauges refreshed from the store on every `/metrics` scrape.
struct StoreGauges {
    series: Gauge<i64, AtomicI64>,
    samples: Gauge<i64, AtomicI64>,
    bytes_on_disk: Gauge<i64, AtomicI64>,
}

static STORE_GAUGES: OnceLock<StoreGauges> = OnceLock::new();

fn register_store_gauges(registry: &mut Registry) {
    let gauges = STORE_GAUGES.get_or_init(|| StoreGauges {
        series: Gauge::default(),
        samples: Gauge::default(),
        bytes_on_disk: Gauge::default(),
    });
    registry.register("ringtail_tsdb_series", "Series in the store", gauges.series.clone());
    registry.register("ringtail_tsdb_samples", "Samples in the store", gauges.samples.clone());
    registry.register("ringtail_tsdb_disk_bytes", "Bytes the store uses on disk", gauges.bytes_on_disk.clone());
}

/// Copies the store's current figures into the self-metrics gauges.
pub fn refresh_store_gauges(state: &AppState) {
    if let Some(gauges) = STORE_GAUGES.get() {
        let stats = state.db.stats();
        gauges.series.set(stats.series as i64);
        gauges.samples.set(stats.samples as i64);
        gauges.bytes_on_disk.set(stats.bytes_on_disk as i64);
    }
}

/// Query engine settings from the `--query.*` flags (set once, before `Server::start`).
static QUERY_OPTIONS: OnceLock<query::EngineOptions> = OnceLock::new();

/// Sets the query engine's lookback, max-samples and timeout for servers started afterwards.
pub fn set_query_options(options: query::EngineOptions) {
    let _ = QUERY_OPTIONS.set(options);
}

/// A running server: the bound address and a handle to stop it.
pub struct Server {
    pub local_addr: SocketAddr,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    http_task: tokio::task::JoinHandle<Result<(), ServerError>>,
    /// The scraper; discovery replaces its target groups at runtime.
    pub scraper: Arc<ingest::ScrapeManager>,
    /// The metrics adapter's TLS listener (custom/external metrics APIs).
    pub adapter: crate::adapter::serve::AdapterHandle,
    flush_task: tokio::task::JoinHandle<()>,
    discovery_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Opens the store and starts every listener and background task.
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        let mut options = tsdb::Options::new(&config.data_dir);
        options.storage_size_bytes = config.storage_size_bytes;
        options.sync_interval = config.sync_interval;
        options.retention = config.retention;
        let db = tokio::task::spawn_blocking(move || tsdb::Db::open(options))
            .await
            .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?
            .map_err(|source| ServerError::Store { dir: config.data_dir.clone(), source })?;
        let db = Arc::new(db);
        let engine = Arc::new(query::Engine::new(db.clone(), QUERY_OPTIONS.get().cloned().unwrap_or_default()));

        let mut registry = Registry::default();
        register_store_gauges(&mut registry);
        let ingest_metrics = ingest::IngestMetrics::register(&mut registry);
        let remote_write =
            Arc::new(RemoteWriteState::new(&mut registry, remote_write_settings(&config)?, ingest_metrics.clone()));
        let query_api = Arc::new(QueryApiState::new(&mut registry));
        let state = AppState {
            db: db.clone(),
            engine,
            remote_write,
            query_api,
            registry: Arc::new(registry),
            ready: Arc::new(AtomicBool::new(false)),
        };

        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let local_addr = listener.local_addr().map_err(ServerError::Serve)?;
        let (shutdown, shutdown_rx) = watch::channel(false);

        let app = http::router(state.clone());
        let mut http_shutdown = shutdown_rx.clone();
        let http_task = tokio::spawn(async move {
            // TCP_NODELAY: no response waits for a delayed ACK (40 ms) behind Nagle's algorithm.
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "setting TCP_NODELAY failed");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = http_shutdown.wait_for(|stop| *stop).await;
                })
                .await
                .map_err(ServerError::Serve)
        });

        let cluster = crate::k8s::Cluster::connect(&config.cluster).await.map_err(ServerError::Kubernetes)?;
        let hooks = cluster.as_ref().map(|cluster| crate::adapter::serve::ClusterHooks {
            resolver: cluster.resolver.clone(),
            client_ca_pem: cluster.auth.as_ref().and_then(|auth| auth.client_ca_pem()),
            auth: cluster.auth.clone().map(|auth| auth as Arc<dyn crate::adapter::auth::Authenticator>),
        });
        let adapter = crate::adapter::serve::start(
            &config.adapter,
            &config.data_dir,
            db.clone(),
            state.engine.clone(),
            hooks,
            shutdown_rx.clone(),
        )
        .await
        .map_err(ServerError::Adapter)?;
        let scrape_configs = crate::scrape::effective_configs(&config, local_addr).map_err(ServerError::Scrape)?;
        let scraper = crate::scrape::start(&scrape_configs, db.clone(), ingest_metrics).map_err(ServerError::Scrape)?;
        let discovery_tasks = match &cluster {
            Some(cluster) => cluster.start_discovery(&scrape_configs, &scraper, &shutdown_rx),
            None => {
                if scrape_configs.scrape_configs.iter().any(|job| !job.kubernetes_sd_configs.is_empty()) {
                    tracing::warn!(
                        "scrape_configs use kubernetes_sd_configs but no cluster is configured \
                        (give --kubeconfig or run in a pod): those jobs have no targets"
                    );
                }
                Vec::new()
            }
        };
        let flush_task = tokio::spawn(periodic_flush(db, config.sync_interval, shutdown_rx));

        state.ready.store(true, Ordering::Release);
        tracing::info!(%local_addr, data_dir = %config.data_dir.display(), "Ringtail is serving");
        Ok(Server { local_addr, state, shutdown, http_task, scraper, adapter, flush_task, discovery_tasks })
    }

    /// Stops listeners first, then background tasks, then flushes the store.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.state.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        for task in self.discovery_tasks {
            let _ = task.await;
        }
        self.scraper.stop().await;
        let http_result = self.http_task.await.map_err(|e| ServerError::Serve(std::io::Error::other(e)))?;
        self.adapter.join().await;
        let _ = self.flush_task.await;
        let db = self.state.db.clone();
        match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(Ok(())) => tracing::info!("store flushed; bye"),
            Ok(Err(e)) => tracing::error!(error = %e, "final flush failed"),
            Err(e) => tracing::error!(error = %e, "final flush task failed"),
        }
        http_result
    }
}

/// Remote-write settings from the config (reads the bearer token file).
fn remote_write_settings(config: &Config) -> Result<crate::http::remote_write::RemoteWriteSettings, ServerError> {
    let bearer_token = match &config.remote_write_bearer_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|source| ServerError::BearerTokenFile { path: path.clone(), source })?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    Ok(crate::http::remote_write::RemoteWriteSettings {
        max_body_bytes: config.remote_write_max_body_bytes,
        bearer_token,
        max_inflight_bytes: config.remote_write_max_inflight_bytes,
        ..Default::default()
    })
}

async fn periodic_flush(db: Arc<tsdb::Db>, every: std::time::Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(every.max(std::time::Duration::from_millis(10)));
    loop {
        let stopped = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.changed() => true,
        };
        if stopped || *stop.borrow() {
            return;
        }
        let db = db.clone();
        match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "periodic flush failed"),
            Err(e) => tracing::warn!(error = %e, "periodic flush task failed"),
        }
    }
}
