//! `Server` wires the parts together from [`Settings`]: opens the store, builds the query engine
//! and HTTP router, starts the listeners and background tasks, and stops them in reverse order on
//! shutdown. Everything a server uses is built here and owned by it — no process-wide state — so
//! two servers can run in one process.

use crate::http::reloading::{self, ReloadMetrics};
use crate::http::web_config::{self, HttpAccess};
use crate::http::{
    self, prom_api::QueryApiState, remote_write::RemoteWriteState, store_metrics::StoreCollector, AppState,
};
use crate::listener::{self, ConnectionLimits, ConnectionMetrics};
use crate::settings::{ReadyAfter, Settings};
use crate::workers::Workers;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store in {dir}: {source}")]
    Store {
        dir: std::path::PathBuf,
        #[source]
        source: tsdb::Error,
    },
    /// Another process holds the data directory: no retry, the binary exits at once.
    #[error("{0} (stop that process, or give this one another --data-dir)")]
    Locked(#[source] tsdb::Error),
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
    #[error("{0} (fix rule_files in the --config file or the rule file it names)")]
    Rules(String),
    #[error("Kubernetes: {0}")]
    Kubernetes(#[source] crate::k8s::K8sError),
    #[error("metrics adapter: {0}")]
    Adapter(#[source] crate::adapter::serve::StartError),
    #[error("remote-write bearer token: {0} (check --remote-write-bearer-token-file)")]
    BearerTokenFile(String),
    #[error("{0} (check --web.config.file)")]
    WebConfig(String),
    #[error("cannot start the worker threads: {0}")]
    Workers(#[source] std::io::Error),
    #[error("forwarding: {0} (fix remote_write/global.external_labels in the --config file)")]
    Forward(String),
}

/// A running server: the bound address and a handle to stop it.
pub struct Server {
    pub local_addr: SocketAddr,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    http_task: JoinHandle<()>,
    /// The scraper; discovery replaces its target groups at runtime.
    pub(crate) scraper: Arc<ingest::ScrapeManager>,
    /// Applies a changed config file (and owns the Kubernetes discovery tasks).
    reloader: Arc<crate::reload::ConfigReloader>,
    /// Evaluates the recording and alerting rules of `rule_files`.
    rules: Arc<crate::rules::RuleManager>,
    /// The metrics adapter's TLS listener (custom/external metrics APIs).
    pub adapter: crate::adapter::serve::AdapterHandle,
    flush_task: JoinHandle<()>,
    /// Kubernetes scrape discovery and the cluster's refresh loops.
    cluster_tasks: Vec<JoinHandle<()>>,
    /// One sender per `remote_write` destination.
    forward_tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Opens the store and starts every listener and background task.
    pub async fn start(settings: Settings) -> Result<Server, ServerError> {
        let started = std::time::Instant::now();
        for unused in &settings.unused_prometheus_blocks {
            tracing::warn!(file = ?settings.config_file, "{unused}");
        }
        let forward_plan = ForwardPlan::from_settings(&settings)?;
        let rule_groups = match &settings.config_file {
            Some(path) => crate::rules::load(path, &settings.rule_files, settings.global.as_ref())
                .map_err(|e| ServerError::Rules(e.to_string()))?,
            None => Vec::new(),
        };
        let store_bytes = settings.storage_size_bytes - forward_plan.as_ref().map_or(0, |plan| plan.queue_bytes);
        let (db, read_only_reason) = open_store(&settings, store_bytes).await?;
        let db = Arc::new(db);
        let engine = Arc::new(query::Engine::new(db.clone(), settings.query.clone()));

        let mut registry = Registry::default();
        let forwarder = match forward_plan {
            Some(plan) => Some(plan.open(&settings.data_dir, &db, &mut registry)?),
            None => None,
        };
        registry.register_collector(Box::new(StoreCollector::new(db.clone())));
        let ingest_metrics = ingest::IngestMetrics::register(&mut registry);
        let reload_metrics = ReloadMetrics::register(&mut registry);
        let workers = Arc::new(
            Workers::for_available_cpus(settings.worker_nice, settings.cpu_limit_headroom)
                .map_err(ServerError::Workers)?,
        );
        registry.register_collector(Box::new(crate::workers::WorkersCollector(workers.clone())));
        let remote_write = Arc::new(RemoteWriteState::new(
            &mut registry,
            remote_write_settings(&settings, &reload_metrics)?,
            ingest_metrics.clone(),
            db.clone(),
            workers.clone(),
        ));
        let query_api = Arc::new(QueryApiState::new(&mut registry));
        let connection_metrics = ConnectionMetrics::register(&mut registry);
        let reload_gauges = crate::reload::ConfigReloadGauges::register(&mut registry);
        let rules = Arc::new(crate::rules::RuleManager::new(engine.clone(), workers.clone(), &mut registry));
        let state = AppState {
            db: db.clone(),
            engine,
            remote_write,
            query_api,
            registry: Arc::new(registry),
            read_only_reason,
            ready: Arc::new(AtomicBool::new(false)),
            warm_up: Arc::default(),
            lifecycle: Arc::default(),
            enable_admin_api: settings.web.enable_admin_api,
            scraper: Arc::default(),
            adapter: Arc::default(),
            rules: Arc::default(),
        };

        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: settings.listen, source })?;
        let local_addr = listener.local_addr().map_err(ServerError::Serve)?;
        let (shutdown, shutdown_rx) = watch::channel(false);

        let access = Arc::new(
            HttpAccess::new(
                settings.web.config_file.as_deref(),
                settings.remote_write_bearer_token_file.is_some(),
                reload_metrics,
            )
            .map_err(ServerError::WebConfig)?,
        );
        let status = Arc::new(http::status::StatusState::new(&settings));
        let app = http::router(state.clone())
            .merge(http::status::routes(status.clone()))
            .merge(http::federate::routes(Arc::new(http::federate::FederateState {
                db: db.clone(),
                lookback: settings.query.lookback,
                status: status.clone(),
            })))
            .layer(axum::middleware::from_fn_with_state(access.clone(), web_config::require_basic_auth));
        let handshake_timeout = settings.web.read_header_timeout;
        let http_task = tokio::spawn(listener::run(
            listener,
            ConnectionLimits::new(settings.max_connections, &settings.web, listener::HTTP_PROBE_PATHS),
            connection_metrics.clone(),
            shutdown_rx.clone(),
            "http",
            move |stream, remote_addr, session| {
                web_config::serve_connection(
                    stream,
                    remote_addr,
                    app.clone(),
                    session,
                    access.clone(),
                    handshake_timeout,
                )
            },
        ));

        let mut cluster =
            crate::k8s::Cluster::connect(&settings.cluster, &shutdown_rx).await.map_err(ServerError::Kubernetes)?;
        let hooks = cluster.as_ref().map(|cluster| crate::adapter::serve::ClusterHooks {
            resolver: cluster.resolver.clone(),
            client_ca_pem: cluster.auth.as_ref().and_then(|auth| auth.client_ca_pem()),
            auth: cluster.auth.clone().map(|auth| auth as Arc<dyn crate::adapter::http::auth::Authenticator>),
        });
        let mut adapter_settings = settings.adapter.clone();
        adapter_settings.secure_listen = adapter_settings.effective_secure_listen(cluster.is_some(), local_addr);
        let adapter = crate::adapter::serve::start(
            &adapter_settings,
            &settings.web,
            connection_metrics,
            &settings.data_dir,
            db.clone(),
            state.engine.clone(),
            hooks,
            shutdown_rx.clone(),
        )
        .await
        .map_err(ServerError::Adapter)?;
        if let Some(provider) = &adapter.provider {
            let _ = state.adapter.set(crate::http::ui_api::AdapterView {
                provider: provider.clone(),
                lookback: adapter_settings.metrics_max_age,
                config_file: adapter_settings.config_file.clone(),
            });
        }
        let scrape_configs =
            crate::scrape::effective_configs(settings.global.as_ref(), settings.scrape_configs.as_ref(), local_addr)
                .map_err(ServerError::Scrape)?;
        let scraper = crate::scrape::start(
            &scrape_configs,
            db.clone(),
            ingest_metrics,
            settings.limits,
            settings.config_file.as_deref(),
        )
        .map_err(ServerError::Scrape)?;
        let _ = state.scraper.set(scraper.clone());
        let mut cluster_tasks = Vec::new();
        let discovery = match &mut cluster {
            Some(cluster) => {
                cluster_tasks.append(&mut cluster.refresh_tasks);
                Some(crate::reload::ClusterDiscovery::new(cluster.client.clone()))
            }
            None => {
                if scrape_configs.scrape_configs.iter().any(|job| !job.kubernetes_sd_configs.is_empty()) {
                    tracing::warn!(
                        "scrape_configs use kubernetes_sd_configs but no cluster is configured \
                        (give --kubeconfig or run in a pod): those jobs have no targets"
                    );
                }
                None
            }
        };
        let reloader = Arc::new(crate::reload::ConfigReloader::start(
            settings.config_file.clone(),
            local_addr,
            (settings.global.clone(), settings.scrape_configs.clone()),
            &scrape_configs,
            scraper.clone(),
            discovery,
            reload_gauges,
            rules.clone(),
        ));
        rules.apply(rule_groups);
        let _ = state.rules.set(rules.clone());
        if settings.web.enable_lifecycle {
            let _ = state.lifecycle.set(reloader.clone());
        }
        let _ = status.reloader.set(reloader.clone());
        cluster_tasks.push(tokio::spawn(crate::reload::run_triggers(reloader.clone(), shutdown_rx.clone())));
        let forward_tasks = forwarder.map(|f| f.start(shutdown_rx.clone())).unwrap_or_default();
        let flush_task = tokio::spawn(store_upkeep(db, workers, settings.sync_interval, shutdown_rx));

        let wait = match settings.ready_after {
            ReadyAfter::Duration(wait) => wait,
            ReadyAfter::RuleWindow => adapter.provider.as_ref().map(|p| p.rules().longest_window()).unwrap_or_default(),
        };
        if !wait.is_zero() {
            tracing::info!(wait = %humantime::format_duration(wait), "/-/ready answers 503 until this long after start");
            let _ = state.warm_up.set(crate::http::WarmUp { started, wait });
        }
        state.ready.store(true, Ordering::Release);
        tracing::info!(%local_addr, data_dir = %settings.data_dir.display(), "Ringtail is serving");
        Ok(Server {
            local_addr,
            state,
            shutdown,
            http_task,
            scraper,
            reloader,
            rules,
            adapter,
            flush_task,
            cluster_tasks,
            forward_tasks,
        })
    }

    /// Stops listeners first, then background tasks, then flushes the store.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.state.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        for task in self.cluster_tasks {
            let _ = task.await;
        }
        self.reloader.stop().await;
        self.rules.stop().await;
        self.scraper.stop().await;
        let http_result = self.http_task.await.map_err(|e| ServerError::Serve(std::io::Error::other(e)));
        self.adapter.join().await;
        for task in self.forward_tasks {
            let _ = task.await;
        }
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

/// Opens the store the settings describe. A volume too full to open it for writing does not stop
/// the server: the store is opened read-only instead (queries, the metrics APIs and exports work;
/// writes get 503), and the reason is returned for `/-/ready`. A data directory locked by another
/// process is [`ServerError::Locked`]; any other failure is [`ServerError::Store`].
async fn open_store(settings: &Settings, store_bytes: u64) -> Result<(tsdb::Db, Option<Arc<str>>), ServerError> {
    let mut options = tsdb::Options::new(&settings.data_dir);
    options.storage_size_bytes = store_bytes;
    options.sync_interval = settings.sync_interval;
    options.retention = settings.retention;
    options.out_of_order_window = settings.out_of_order_window;
    let store_error = |source: tsdb::Error| match source {
        source @ tsdb::Error::Locked { .. } => ServerError::Locked(source),
        source => ServerError::Store { dir: settings.data_dir.clone(), source },
    };
    match open_blocking(options.clone()).await? {
        Ok(db) => Ok((db, None)),
        Err(error) if error.is_no_space() => {
            tracing::error!(
                data_dir = %settings.data_dir.display(),
                %error,
                "no space left to open the store for writing: opening it read-only (queries work, writes get 503); \
                 free space on the volume and restart"
            );
            options.read_only = true;
            let db = open_blocking(options).await?.map_err(store_error)?;
            let reason = format!("no space left at start ({error}); free space on the volume and restart");
            Ok((db, Some(reason.into())))
        }
        Err(source) => Err(store_error(source)),
    }
}

/// Forwarding as the settings ask for it: the `remote_write` destinations, `global.external_labels`
/// (environment variables expanded) and the queue's share of the storage budget.
struct ForwardPlan {
    destinations: Vec<ingest::forward::Destination>,
    external_labels: Vec<(String, String)>,
    queue_bytes: u64,
}

impl ForwardPlan {
    /// `None` when no destination is configured.
    fn from_settings(settings: &Settings) -> Result<Option<ForwardPlan>, ServerError> {
        let Some(list) = &settings.remote_write_destinations else {
            return Ok(None);
        };
        let destinations =
            ingest::forward::Destination::resolve_all(list).map_err(|e| ServerError::Forward(e.to_string()))?;
        if destinations.is_empty() {
            return Ok(None);
        }
        let global: ingest::GlobalConfig = match &settings.global {
            Some(value) => {
                serde_yaml::from_value(value.clone()).map_err(|e| ServerError::Forward(format!("global: {e}")))?
            }
            None => ingest::GlobalConfig::default(),
        };
        let external_labels =
            ingest::forward::expand_external_labels(&global.external_labels, |name| std::env::var(name).ok())
                .map_err(|e| ServerError::Forward(e.to_string()))?;
        let queue_bytes = settings
            .forward_queue_size_bytes
            .unwrap_or(settings.storage_size_bytes / 8)
            .max(ingest::forward::MIN_QUEUE_BYTES);
        if queue_bytes > settings.storage_size_bytes / 2 {
            return Err(ServerError::Forward(format!(
                "the forwarding queue ({queue_bytes} bytes) may take at most half of --storage-size ({} bytes): raise \
                 --storage-size or lower --forward-queue-size",
                settings.storage_size_bytes
            )));
        }
        Ok(Some(ForwardPlan { destinations, external_labels, queue_bytes }))
    }

    /// Opens the queue in `<data dir>/forward` and makes the store tell it of every append.
    fn open(
        self,
        data_dir: &std::path::Path,
        db: &Arc<tsdb::Db>,
        registry: &mut Registry,
    ) -> Result<Arc<ingest::forward::Forwarder>, ServerError> {
        let names: Vec<String> = self.destinations.iter().map(|d| format!("{} ({})", d.name, d.url)).collect();
        let forwarder = ingest::forward::Forwarder::open(
            &data_dir.join("forward"),
            self.destinations,
            self.external_labels,
            self.queue_bytes,
            registry,
        )
        .map_err(|e| ServerError::Forward(e.to_string()))?;
        if db.set_append_observer(forwarder.clone()).is_err() {
            return Err(ServerError::Forward("the store already has an append observer".into()));
        }
        tracing::info!(destinations = ?names, queue_bytes = self.queue_bytes, "forwarding every stored sample");
        Ok(forwarder)
    }
}

/// Opens a store on the blocking pool (opening reads and maps every file).
async fn open_blocking(options: tsdb::Options) -> Result<Result<tsdb::Db, tsdb::Error>, ServerError> {
    tokio::task::spawn_blocking(move || tsdb::Db::open(options))
        .await
        .map_err(|e| ServerError::Serve(std::io::Error::other(e)))
}

/// Remote-write settings from the server settings (reads the bearer token file, and again
/// whenever it changes).
fn remote_write_settings(
    settings: &Settings,
    reload_metrics: &ReloadMetrics,
) -> Result<crate::http::remote_write::RemoteWriteSettings, ServerError> {
    let bearer_token = match &settings.remote_write_bearer_token_file {
        Some(path) => Some(Arc::new(
            reloading::secret_file("remote_write_bearer_token", path, reload_metrics.clone())
                .map_err(ServerError::BearerTokenFile)?,
        )),
        None => None,
    };
    Ok(crate::http::remote_write::RemoteWriteSettings {
        max_body_bytes: settings.remote_write_max_body_bytes,
        bearer_token,
        max_inflight_bytes: settings.remote_write_max_inflight_bytes,
        limits: settings.limits,
        ..Default::default()
    })
}

/// How often the store's maintenance pass runs (idle open chunks closed, dead series removed,
/// the series log compacted): one lock per series, so cheap enough to run often, and often
/// enough that churn never piles up for long.
const MAINTAIN_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The store's background upkeep on the `workers` (below queries' priority): a flush every
/// `every`, and a maintenance pass every [`MAINTAIN_EVERY`].
async fn store_upkeep(
    db: Arc<tsdb::Db>,
    workers: Arc<Workers>,
    every: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every.max(std::time::Duration::from_millis(10)));
    let mut last_maintained = std::time::Instant::now();
    loop {
        let stopped = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.changed() => true,
        };
        if stopped || *stop.borrow() {
            return;
        }
        let store = db.clone();
        match workers.run(move || store.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "periodic flush failed"),
            Err(e) => tracing::warn!(error = %e, "periodic flush task failed"),
        }
        if last_maintained.elapsed() >= MAINTAIN_EVERY {
            last_maintained = std::time::Instant::now();
            let store = db.clone();
            match workers.run(move || store.maintain()).await {
                Ok(Ok(report)) if report != tsdb::MaintenanceReport::default() => {
                    tracing::debug!(?report, "store maintenance")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "store maintenance failed"),
                Err(e) => tracing::warn!(error = %e, "store maintenance task failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ClusterMode;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(dir: &std::path::Path, adjust: impl FnOnce(&mut Settings)) -> Server {
        let mut settings = Settings {
            data_dir: dir.join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            scrape_configs: Some(serde_yaml::from_str("[]").unwrap()),
            ..Settings::default()
        };
        settings.adapter.secure_listen = "127.0.0.1:0".parse().unwrap();
        settings.adapter.secure_listen_explicit = true;
        settings.cluster.mode = ClusterMode::Standalone;
        adjust(&mut settings);
        Server::start(settings).await.unwrap()
    }

    /// Sends a GET on `stream` (kept open) and returns the start of the answer.
    async fn get(stream: &mut TcpStream, path: &str) -> String {
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn two_servers_in_one_process_share_nothing() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = start(dir_a.path(), |s| s.query.timeout = Duration::from_secs(7)).await;
        let b = start(dir_b.path(), |_| {}).await;
        assert_eq!(a.state.engine.options().timeout, Duration::from_secs(7));
        assert_eq!(b.state.engine.options().timeout, query::EngineOptions::default().timeout);

        a.state.db.resolve(&[("__name__", "only_in_a")]).unwrap();
        let metrics_a = get(&mut TcpStream::connect(a.local_addr).await.unwrap(), "/metrics").await;
        let metrics_b = get(&mut TcpStream::connect(b.local_addr).await.unwrap(), "/metrics").await;
        assert!(metrics_a.contains("ringtail_tsdb_series 1"), "{metrics_a}");
        assert!(metrics_b.contains("ringtail_tsdb_series 0"), "{metrics_b}");

        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn past_max_connections_the_health_endpoints_still_answer() {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), |s| {
            s.max_connections = 1;
            s.web.probe_connections = 1;
        })
        .await;
        // A head that never ends holds the only full slot.
        let mut holder = TcpStream::connect(server.local_addr).await.unwrap();
        holder.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        for path in ["/-/healthy", "/-/ready"] {
            let answer = get(&mut TcpStream::connect(server.local_addr).await.unwrap(), path).await;
            assert!(answer.contains("200 OK"), "{path}: {answer}");
        }
        let answer = get(&mut TcpStream::connect(server.local_addr).await.unwrap(), "/metrics").await;
        assert!(answer.contains("503 Service Unavailable") && answer.contains("retry-after"), "{answer}");
        drop(holder);
        tokio::time::timeout(Duration::from_secs(15), server.shutdown()).await.unwrap().unwrap();
    }
}
