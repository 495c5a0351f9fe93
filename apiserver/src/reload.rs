//! `ConfigReloader` applies a changed `--config` file without a restart: the scrape
//! configuration (`global`, `scrape_configs`, `scrape_config_files`) and, with a cluster, the
//! Kubernetes discovery it asks for, and the rule files `rule_files` names (re-read and
//! re-globbed every time; unchanged groups keep running, see `crate::rules`). It runs on SIGHUP,
//! on `POST /-/reload` (with `--web.enable-lifecycle`, as Prometheus) and when the file's
//! contents change (polled, which also follows a ConfigMap's symlink swap; the rule files are
//! read on every poll). The adapter rules (`--adapter-config`) reload on their own
//! (`adapter::rules::reload`).
//!
//! A new file that does not parse or whose jobs do not compile is refused: the error is logged
//! and `ringtail_config_last_reload_successful` drops to 0, and what runs stays as it was. It is
//! 1 again after the next accepted read, including a file put back as the one in force.
//! Targets whose job and labels are unchanged keep running (no gap, no staleness marker);
//! removed ones write staleness markers (`ingest::ScrapeManager::apply_config`). Settings that
//! need a restart (listen addresses, storage, limits) are read at start only; a reload that finds
//! one of them changed in the file logs a warning naming its keys (once per change).

use crate::k8s::ScrapeDiscoverySpec;
use ingest::{ScrapeConfigs, ScrapeManager};
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the config file is looked at for changes.
pub(crate) const CONFIG_POLL: Duration = Duration::from_secs(3);

/// `ringtail_config_last_reload_successful` and `_success_timestamp_seconds`, as Prometheus's
/// `prometheus_config_last_reload_*`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigReloadGauges {
    successful: Gauge,
    success_timestamp: Gauge<f64, AtomicU64>,
}

impl ConfigReloadGauges {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let gauges = ConfigReloadGauges::default();
        registry.register(
            "ringtail_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful",
            gauges.successful.clone(),
        );
        registry.register(
            "ringtail_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload",
            gauges.success_timestamp.clone(),
        );
        gauges.succeeded();
        gauges
    }

    fn succeeded(&self) {
        self.successful.set(1);
        self.success_timestamp.set(tsdb::now_ms() as f64 / 1000.0);
    }

    fn failed(&self) {
        self.successful.set(0);
    }

    /// Whether the last attempt succeeded, and when the last success was (Unix seconds).
    pub(crate) fn last(&self) -> (bool, f64) {
        (self.successful.get() == 1, self.success_timestamp.get())
    }
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReloadOutcome {
    /// The file's scrape configuration is what runs already.
    Unchanged,
    Applied {
        jobs: usize,
    },
}

/// The Kubernetes discovery of the scrape configuration in force: its specs and tasks, stopped
/// and started again when a reload changes the specs.
struct DiscoveryGeneration {
    specs: Vec<ScrapeDiscoverySpec>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The cluster side of a reload.
pub(crate) struct ClusterDiscovery {
    pub(crate) client: kube::Client,
    current: Mutex<Option<DiscoveryGeneration>>,
    /// Tasks of generations already told to stop, joined at shutdown.
    retired: Mutex<Vec<JoinHandle<()>>>,
}

impl ClusterDiscovery {
    pub(crate) fn new(client: kube::Client) -> Self {
        ClusterDiscovery { client, current: Mutex::new(None), retired: Mutex::new(Vec::new()) }
    }

    /// Starts discovery for `configs` unless the same specs already run.
    fn apply(&self, configs: &ScrapeConfigs, scraper: &Arc<ScrapeManager>) {
        let specs = crate::k8s::scrape_discovery_specs_for(configs);
        let mut current = self.current.lock();
        if current.as_ref().is_some_and(|generation| generation.specs == specs) {
            return;
        }
        if let Some(old) = current.take() {
            let _ = old.stop.send(true);
            self.retired.lock().extend(old.tasks);
        }
        let (stop, stop_rx) = watch::channel(false);
        let tasks = specs
            .iter()
            .cloned()
            .map(|spec| {
                tokio::spawn(crate::k8s::run_scrape_discovery(
                    self.client.clone(),
                    spec,
                    scraper.clone(),
                    stop_rx.clone(),
                ))
            })
            .collect();
        *current = Some(DiscoveryGeneration { specs, stop, tasks });
    }

    /// Stops every discovery task and waits for them.
    pub(crate) async fn stop(&self) {
        let mut tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.retired.lock());
        if let Some(generation) = self.current.lock().take() {
            let _ = generation.stop.send(true);
            tasks.extend(generation.tasks);
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Re-reads and applies the config file. Cheap to share; `reload` takes `&self`.
pub struct ConfigReloader {
    config_file: Option<PathBuf>,
    local_addr: SocketAddr,
    scraper: Arc<ScrapeManager>,
    discovery: Option<ClusterDiscovery>,
    gauges: ConfigReloadGauges,
    /// Runs the rule groups of `rule_files`.
    rules: Arc<crate::rules::RuleManager>,
    /// The `(global, scrape_configs)` in force, as read (what a poll compares against).
    applied: Mutex<(Option<serde_yaml::Value>, Option<serde_yaml::Value>)>,
    /// The last refusal, so a poll logs a bad file once, not every few seconds.
    last_error: Mutex<Option<String>>,
    /// The file's settings read at start only, as they were at start (see [`RestartOnly`]).
    restart_only: RestartOnly,
    /// The file as the last reload that finished read it, when its scrape configuration is all
    /// in the file itself (no `scrape_config_files`): a poll that finds the same text only reads
    /// the rule files again, without parsing the file (a few milliseconds for a file of a
    /// thousand static targets, every [`CONFIG_POLL`]).
    last_read: Mutex<Option<SameFile>>,
}

/// What a reload takes from a config file whose text has not changed since the last reload.
struct SameFile {
    text: String,
    rule_files: Vec<String>,
    global: Option<serde_yaml::Value>,
}

/// The keys of the config file that are read at start only (listen addresses, storage, limits,
/// `query`, `remote_write`, `web`, `adapter`, …): their values at start, and the changed keys a
/// reload last warned about, so a changed value is named once (at the reload that finds it), not
/// on every poll, and a file whose values went back is quiet again.
#[derive(Debug, Default)]
struct RestartOnly {
    at_start: Option<serde_yaml::Mapping>,
    warned: Mutex<Vec<String>>,
}

/// Top-level keys a reload applies; every other key of the file is read at start only.
const RELOADED_KEYS: [&str; 4] = ["global", "scrape_configs", "scrape_config_files", "rule_files"];

impl RestartOnly {
    /// The restart-only part of the file at `path` (`None` when it cannot be read as a mapping).
    fn read(path: &std::path::Path) -> Option<serde_yaml::Mapping> {
        Self::parse(&std::fs::read_to_string(path).ok()?)
    }

    /// The restart-only part of a config file's `text` (`None` when it is not a mapping).
    fn parse(text: &str) -> Option<serde_yaml::Mapping> {
        let serde_yaml::Value::Mapping(mut mapping) = serde_yaml::from_str(text).ok()? else {
            return None;
        };
        for key in RELOADED_KEYS {
            mapping.remove(key);
        }
        Some(mapping)
    }

    /// Logs, once per change, the restart-only keys whose values in the file at `path` (with
    /// `text`) differ from those at start; returns them.
    fn check(&self, path: &std::path::Path, text: &str) -> Vec<String> {
        let (Some(at_start), Some(now)) = (&self.at_start, Self::parse(text)) else {
            return Vec::new();
        };
        let mut changed: Vec<String> = at_start
            .iter()
            .chain(now.iter())
            .filter(|(key, _)| at_start.get(*key) != now.get(*key))
            .filter_map(|(key, _)| key.as_str().map(str::to_string))
            .collect();
        changed.sort();
        changed.dedup();
        let mut warned = self.warned.lock();
        if *warned != changed && !changed.is_empty() {
            tracing::warn!(
                file = %path.display(),
                keys = %changed.join(", "),
                "these settings changed in the config file and take effect at the next restart; \
                 global, scrape_configs, scrape_config_files and rule_files were reloaded"
            );
        }
        *warned = changed.clone();
        changed
    }
}

impl ConfigReloader {
    /// A reloader for what `start` applied: `global`/`scrape_configs` as read from the file,
    /// `configs` as running (discovery is started here).
    // Each argument is a separate part the server built; a struct of them would only rename this.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        config_file: Option<PathBuf>,
        local_addr: SocketAddr,
        applied: (Option<serde_yaml::Value>, Option<serde_yaml::Value>),
        configs: &ScrapeConfigs,
        scraper: Arc<ScrapeManager>,
        discovery: Option<ClusterDiscovery>,
        gauges: ConfigReloadGauges,
        rules: Arc<crate::rules::RuleManager>,
    ) -> ConfigReloader {
        if let Some(discovery) = &discovery {
            discovery.apply(configs, &scraper);
        }
        ConfigReloader {
            local_addr,
            scraper,
            discovery,
            gauges,
            rules,
            restart_only: RestartOnly {
                at_start: config_file.as_deref().and_then(RestartOnly::read),
                warned: Mutex::new(Vec::new()),
            },
            config_file,
            applied: Mutex::new(applied),
            last_error: Mutex::new(None),
            last_read: Mutex::new(None),
        }
    }

    /// Re-reads the file and applies its scrape configuration if it changed (or always, with
    /// `force`). Must run inside the tokio runtime (targets start tasks). `Err` is the reason the
    /// file was refused; nothing changed then.
    pub(crate) fn reload(&self, force: bool) -> Result<ReloadOutcome, String> {
        let result = self.try_reload(force);
        match &result {
            Ok(ReloadOutcome::Unchanged) if !force => {
                // A refused file put back as the configuration in force: nothing to change, but
                // the last attempt succeeded.
                if self.last_error.lock().take().is_some() {
                    self.gauges.succeeded();
                    tracing::info!(file = ?self.config_file, "configuration readable again; the one in force is unchanged");
                }
            }
            Ok(outcome) => {
                self.gauges.succeeded();
                *self.last_error.lock() = None;
                if let ReloadOutcome::Applied { jobs } = outcome {
                    tracing::info!(jobs, file = ?self.config_file, "configuration reloaded");
                }
            }
            Err(error) => {
                self.gauges.failed();
                let mut last = self.last_error.lock();
                if force || last.as_deref() != Some(error.as_str()) {
                    tracing::error!(%error, "new configuration refused; the previous one stays in force");
                }
                *last = Some(error.clone());
            }
        }
        result
    }

    fn try_reload(&self, force: bool) -> Result<ReloadOutcome, String> {
        let Some(path) = &self.config_file else {
            return Ok(ReloadOutcome::Unchanged);
        };
        let text = crate::config::read_text(path).map_err(|e| e.to_string())?;
        if !force {
            if let Some(same) = self.last_read.lock().as_ref().filter(|same| same.text == text) {
                let rule_groups =
                    crate::rules::load(path, &same.rule_files, same.global.as_ref()).map_err(|e| e.to_string())?;
                return Ok(self.apply_rules_only(rule_groups));
            }
        }
        *self.last_read.lock() = None;
        let layer = crate::config::parse_text(path, &text).map_err(|e| e.to_string())?;
        self.restart_only.check(path, &text);
        let same = layer.scrape_config_files.is_empty().then(|| SameFile {
            text,
            rule_files: layer.rule_files.clone().unwrap_or_default(),
            global: layer.global.clone(),
        });
        let layer = crate::config::add_scrape_config_files(path, layer).map_err(|e| e.to_string())?;
        // Rule files are checked before anything is applied, so a bad one changes nothing.
        let rule_groups =
            crate::rules::load(path, layer.rule_files.as_deref().unwrap_or_default(), layer.global.as_ref())
                .map_err(|e| e.to_string())?;
        let read = (layer.global, layer.scrape_configs);
        if !force && *self.applied.lock() == read {
            *self.last_read.lock() = same;
            return Ok(self.apply_rules_only(rule_groups));
        }
        let configs = crate::scrape::effective_configs(read.0.as_ref(), read.1.as_ref(), self.local_addr)
            .map_err(|e| e.to_string())?;
        self.scraper.apply_config(&configs).map_err(|e| e.to_string())?;
        if let Some(discovery) = &self.discovery {
            discovery.apply(&configs, &self.scraper);
        }
        self.rules.apply(rule_groups);
        *self.applied.lock() = read;
        *self.last_read.lock() = same;
        Ok(ReloadOutcome::Applied { jobs: configs.scrape_configs.len() })
    }

    /// Applies `rule_groups` when the scrape configuration in force is that of the file.
    fn apply_rules_only(&self, rule_groups: Vec<crate::rules::GroupSpec>) -> ReloadOutcome {
        match self.rules.apply(rule_groups) {
            // Only rules changed; the jobs are as before (`None`: the embedded self-scrape).
            true => ReloadOutcome::Applied {
                jobs: self.applied.lock().1.as_ref().and_then(|v| v.as_sequence()).map_or(1, Vec::len),
            },
            false => ReloadOutcome::Unchanged,
        }
    }

    /// The scrape configuration in force as a config file's YAML (`global` and `scrape_configs`
    /// as read, or the embedded default), and the last reload's outcome and success time.
    pub(crate) fn status(&self) -> (serde_yaml::Value, (bool, f64)) {
        let (global, scrape_configs) = self.applied.lock().clone();
        let scrape_configs = scrape_configs.unwrap_or_else(|| {
            serde_yaml::from_str::<serde_yaml::Value>(&crate::scrape::embedded_default_yaml(self.local_addr))
                .ok()
                .and_then(|v| v.get("scrape_configs").cloned())
                .unwrap_or_default()
        });
        let mut config = serde_yaml::Mapping::new();
        if let Some(global) = global {
            config.insert("global".into(), global);
        }
        config.insert("scrape_configs".into(), scrape_configs);
        (serde_yaml::Value::Mapping(config), self.gauges.last())
    }

    /// Stops the Kubernetes discovery tasks (at shutdown).
    pub(crate) async fn stop(&self) {
        if let Some(discovery) = &self.discovery {
            discovery.stop().await;
        }
    }
}

/// Reloads on SIGHUP (forced) and when the file changes, every [`CONFIG_POLL`], until `shutdown`.
pub(crate) async fn run_triggers(reloader: Arc<ConfigReloader>, mut shutdown: watch::Receiver<bool>) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; the config file is still reloaded when it changes");
            None
        }
    };
    let mut ticker = tokio::time::interval(CONFIG_POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        let force = tokio::select! {
            _ = ticker.tick() => false,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let _ = reloader.reload(force);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reloader of the config file at `path` as a server starts it.
    fn start_reloader(path: &std::path::Path) -> ConfigReloader {
        let local_addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let layer = crate::config::read_file(path).unwrap();
        let configs =
            crate::scrape::effective_configs(layer.global.as_ref(), layer.scrape_configs.as_ref(), local_addr).unwrap();
        let db = Arc::new(tsdb::Db::open(tsdb::Options::in_memory()).unwrap());
        let scraper =
            crate::scrape::start(&configs, db.clone(), Default::default(), Default::default(), Some(path)).unwrap();
        let engine = Arc::new(query::Engine::new(db, query::EngineOptions::default()));
        let workers = Arc::new(crate::workers::Workers::start(1, 0, 0.0).unwrap());
        let rules = Arc::new(crate::rules::RuleManager::new(engine, workers, &mut Registry::default()));
        let reloader = ConfigReloader::start(
            Some(path.to_path_buf()),
            local_addr,
            (layer.global, layer.scrape_configs),
            &configs,
            scraper,
            None,
            ConfigReloadGauges::default(),
            rules.clone(),
        );
        let rule_files = layer.rule_files.unwrap_or_default();
        rules.apply(crate::rules::load(path, &rule_files, None).unwrap());
        reloader
    }

    fn jobs(reloader: &ConfigReloader) -> Vec<String> {
        let mut jobs: Vec<String> = reloader.scraper.targets().into_iter().map(|t| t.job).collect();
        jobs.sort();
        jobs
    }

    #[tokio::test]
    async fn polls_of_an_unchanged_file_still_follow_its_rule_files_and_scrape_config_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringtail.yaml");
        let job = |name: &str| format!("- job_name: {name}\n  static_configs: [{{targets: ['127.0.0.1:1']}}]\n");
        let rule = |name: &str| format!("groups:\n- name: g\n  rules: [{{record: {name}, expr: '1'}}]\n");
        std::fs::write(dir.path().join("r.yaml"), rule("first")).unwrap();
        std::fs::write(&path, format!("rule_files: [r.yaml]\nscrape_configs:\n{}", job("a"))).unwrap();
        let reloader = start_reloader(&path);
        assert!(matches!(reloader.reload(false), Ok(ReloadOutcome::Unchanged)));
        assert!(matches!(reloader.reload(false), Ok(ReloadOutcome::Unchanged)), "a second poll of the same text");
        // The rule file changes, the config file does not.
        std::fs::write(dir.path().join("r.yaml"), rule("second")).unwrap();
        assert!(matches!(reloader.reload(false), Ok(ReloadOutcome::Applied { jobs: 1 })));
        let rules = reloader.rules.groups();
        assert_eq!(rules.iter().map(|g| g.spec.rules.len()).sum::<usize>(), 1);
        assert!(format!("{:?}", rules[0].spec.rules[0]).contains("second"), "{:?}", rules[0].spec.rules);
        std::fs::write(dir.path().join("r.yaml"), "groups: [").unwrap();
        assert!(reloader.reload(false).is_err(), "a broken rule file under the same config file");
        assert!(!reloader.gauges.last().0, "the failed attempt is reported");
        std::fs::write(dir.path().join("r.yaml"), rule("second")).unwrap();
        assert!(matches!(reloader.reload(false), Ok(ReloadOutcome::Unchanged)));
        assert!(reloader.gauges.last().0, "the file as in force again is a successful attempt");
        // The config file changes.
        std::fs::write(&path, format!("rule_files: [r.yaml]\nscrape_configs:\n{}{}", job("a"), job("b"))).unwrap();
        assert!(matches!(reloader.reload(false), Ok(ReloadOutcome::Applied { jobs: 2 })));
        assert_eq!(jobs(&reloader), ["a", "b"]);
        assert!(matches!(reloader.reload(false), Ok(ReloadOutcome::Unchanged)));
        // Jobs from scrape_config_files: the file that names them stays the same, they change.
        std::fs::write(dir.path().join("more.yaml"), format!("scrape_configs:\n{}", job("c"))).unwrap();
        std::fs::write(&path, format!("scrape_config_files: [more.yaml]\nscrape_configs:\n{}", job("a"))).unwrap();
        assert!(matches!(reloader.reload(false), Ok(ReloadOutcome::Applied { jobs: 2 })));
        assert_eq!(jobs(&reloader), ["a", "c"]);
        assert!(matches!(reloader.reload(false), Ok(ReloadOutcome::Unchanged)));
        std::fs::write(dir.path().join("more.yaml"), format!("scrape_configs:\n{}{}", job("c"), job("d"))).unwrap();
        assert!(matches!(reloader.reload(false), Ok(ReloadOutcome::Applied { jobs: 3 })));
        assert_eq!(jobs(&reloader), ["a", "c", "d"]);
        reloader.scraper.apply_config(&ScrapeConfigs::default()).unwrap();
    }

    #[test]
    fn changed_restart_only_keys_are_named_and_reloaded_keys_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringtail.yaml");
        std::fs::write(&path, "listen: 127.0.0.1:9201\nlimits: {max_active_series: 10}\nscrape_configs: []\n").unwrap();
        let restart_only = RestartOnly { at_start: RestartOnly::read(&path), warned: Mutex::new(Vec::new()) };
        let check = |path: &std::path::Path| restart_only.check(path, &std::fs::read_to_string(path).unwrap());
        assert!(check(&path).is_empty(), "nothing changed");
        std::fs::write(&path, "listen: 127.0.0.1:9201\nlimits: {max_active_series: 10}\nscrape_configs: [{job_name: a}]\nrule_files: [r.yaml]\n").unwrap();
        assert!(check(&path).is_empty(), "scrape configs and rule files reload");
        std::fs::write(&path, "listen: 127.0.0.1:9301\nlimits: {max_active_series: 20}\nretention: 1h\n").unwrap();
        assert_eq!(check(&path), ["limits", "listen", "retention"]);
        std::fs::write(&path, "listen: 127.0.0.1:9201\nlimits: {max_active_series: 10}\n").unwrap();
        assert!(check(&path).is_empty(), "back as at start");
    }
}
