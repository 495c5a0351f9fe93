//! `ScrapeManager` is the standalone scraper: it turns jobs and target groups into running
//! per-target loops, and replaces them when the configuration or a discovered target set changes.
//!
//! Each target loop (one tokio task) starts after a stable per-target offset inside the interval
//! (an FNV hash of the target, so restarts keep the spread), never overlaps itself (the next tick
//! waits for the scrape in progress; missed ticks are skipped), and after every scrape writes
//! Prometheus' report series (`up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
//! `scrape_samples_post_metric_relabeling`, `scrape_series_added`). Staleness follows Prometheus:
//! a series missing from a successful scrape, every series of a failed scrape, and every series of
//! a target that goes away get a staleness marker at that scrape's timestamp (series with explicit
//! timestamps are exempt).
//!
//! Targets come from each job's static groups, from `file_sd_configs` and `http_sd_configs`
//! (polled by tasks the manager starts, stops and keeps with the job's configuration; see
//! `file_sd` and `http_sd`) and from groups
//! handed over with [`ScrapeManager::set_target_groups`] (the binary's Kubernetes discovery); a
//! target whose labels do not change keeps running across every such change. Each loop also
//! keeps its page's metric metadata ([`ScrapeManager::target_metadata`]).
//!
//! Hot path: see `page` (one page → one `Db::append`, series known from earlier scrapes cost neither
//! label building, relabeling nor a store lookup). A small page of series the previous page
//! already had is parsed and appended on the async worker that fetched it; any other page (a
//! first one, a large one) on tokio's blocking pool (`TargetState::processes_inline`).

use crate::error::ConfigError;
use crate::exposition::{Format, SCRAPE_ACCEPT_HEADER};
use crate::file_sd::{FileSd, FILE_SD_POLL};
use crate::http_sd::HttpSd;
use crate::limits::IngestLimits;
use crate::metadata::MetricMetadata;
use crate::metrics::IngestMetrics;
pub use crate::scrape_config::TargetGroup;
use crate::scrape_config::{FileSdConfig, HttpSdConfig, Job, ScrapeConfigs};
use page::TargetState;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tsdb::now_ms;
use tsdb::{Db, Labels};

mod page;

/// Scraper-wide settings.
#[derive(Debug, Clone)]
pub struct ScrapeManagerOptions {
    /// `User-Agent` of scrape requests.
    pub user_agent: String,
    /// The label limits of `--limits.*` (labels per series, name and value length): a scraped
    /// series that breaks one is dropped alone, counted and logged, as the store's own label rule.
    pub limits: IngestLimits,
    /// What relative `file_sd_configs` paths are relative to: the config file's directory
    /// (`None`: the working directory).
    pub config_dir: Option<PathBuf>,
}

impl Default for ScrapeManagerOptions {
    fn default() -> Self {
        ScrapeManagerOptions {
            user_agent: format!("Ringtail/{}", env!("CARGO_PKG_VERSION")),
            limits: IngestLimits::default(),
            config_dir: None,
        }
    }
}

/// A target's last scrape, for status pages and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetHealth {
    /// `None` before the first scrape.
    pub up: Option<bool>,
    pub last_error: Option<String>,
    pub last_scrape_ts_ms: i64,
    pub last_duration_seconds: f64,
    pub scrapes: u64,
}

/// One running target as the manager sees it.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    pub job: String,
    /// `scheme://address/path`, with the query string of the `params` when there are any.
    pub url: String,
    /// The labels every series of the target carries (`job`, `instance`, group and relabel labels).
    pub labels: Labels,
    /// The labels before relabeling (`__address__`, `__meta_*`, …), as Prometheus's
    /// `discoveredLabels`.
    pub discovered_labels: Labels,
    pub interval: Duration,
    pub timeout: Duration,
    pub health: TargetHealth,
}

/// One running target's metric metadata (its last parsed page's `# TYPE`/`# HELP`/`# UNIT`).
#[derive(Debug, Clone)]
pub struct TargetMetadata {
    pub job: String,
    /// The target's labels, as [`TargetStatus::labels`].
    pub labels: Labels,
    /// Sorted by metric family name.
    pub metadata: Arc<Vec<MetricMetadata>>,
}

/// A target relabeling dropped: its labels before relabeling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedTarget {
    pub job: String,
    pub discovered_labels: Labels,
}

/// Most dropped targets remembered for the targets page (a discovery of every pod in a large
/// cluster, most dropped by a `keep` rule, must not grow without bound); the count of all is
/// kept.
pub const MAX_DROPPED_TARGETS: usize = 10_000;

/// A target resolved from a group: where to scrape and what labels to attach.
#[derive(Debug)]
struct Target {
    job: Arc<JobRuntime>,
    /// `scheme://address/path` without the query.
    url: String,
    /// `url` with the scrape's parameters as its query, as Prometheus writes it.
    scrape_url: String,
    /// `scrape_url` parsed once (URL parsing was 4 % of scraping 1000 small pages); `None` when it
    /// does not parse, and each request then says why.
    request_url: Option<reqwest::Url>,
    labels: Labels,
    discovered_labels: Labels,
    key: String,
    health: Mutex<TargetHealth>,
    /// The metric metadata of the last parsed page, sorted by metric.
    metadata: Mutex<Arc<Vec<MetricMetadata>>>,
    /// Set when the job has more targets than its `target_limit`: every scrape fails with it.
    forced_error: Option<String>,
}

#[derive(Debug)]
struct JobRuntime {
    job: Job,
    client: reqwest::Client,
    limits: IngestLimits,
}

struct RunningTarget {
    target: Arc<Target>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The file and HTTP discovery of one job: its `file_sd_configs` and `http_sd_configs`, and
/// the tasks polling them.
struct FileSdRun {
    configs: (Vec<FileSdConfig>, Vec<HttpSdConfig>),
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The discovery source of [`ScrapeManager::set_target_groups`] (the binary's Kubernetes
/// discovery); file discovery uses `file_sd/<index>`.
const EXTERNAL_SOURCE: &str = "";

#[derive(Default)]
struct ManagerState {
    jobs: Vec<Arc<JobRuntime>>,
    /// Target groups handed over by discovery, per job name and then per source (each source
    /// replacing its previous set).
    discovered: HashMap<String, BTreeMap<String, Vec<TargetGroup>>>,
    /// Running file and HTTP discovery, per job name.
    file_sd: HashMap<String, FileSdRun>,
    running: HashMap<String, RunningTarget>,
    /// Targets relabeling dropped at the last sync (at most [`MAX_DROPPED_TARGETS`]), and how
    /// many there were in all.
    dropped: Vec<DroppedTarget>,
    dropped_total: usize,
}

/// The scraper. All methods take `&self`; share it behind an `Arc`. `apply_config` and
/// `set_target_groups` must be called inside a tokio runtime (they spawn the target loops).
pub struct ScrapeManager {
    shared: Arc<Shared>,
}

/// What the manager and its file discovery tasks share.
struct Shared {
    db: Arc<Db>,
    metrics: IngestMetrics,
    options: ScrapeManagerOptions,
    state: Mutex<ManagerState>,
    /// Pages parsed and appended at once (see [`page_ingest_slots`]).
    page_slots: Arc<tokio::sync::Semaphore>,
}

/// How many scraped pages are parsed and appended at once: two per core. Every target of a job
/// comes due in the same interval, and without a bound a thousand targets on a 1 s interval put
/// a thousand pages on the blocking pool at once, which then keeps that many threads (each with
/// its own allocator heap: 1.5 GB at 200 targets × 1000 series every second) for as long as
/// scrapes keep coming. A page waits for a slot instead; its timestamp was taken at the scrape.
fn page_ingest_slots() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl ScrapeManager {
    pub fn new(db: Arc<Db>, metrics: IngestMetrics, options: ScrapeManagerOptions) -> ScrapeManager {
        let page_slots = Arc::new(tokio::sync::Semaphore::new(page_ingest_slots()));
        ScrapeManager {
            shared: Arc::new(Shared { db, metrics, options, state: Mutex::new(ManagerState::default()), page_slots }),
        }
    }

    /// Replaces the configuration: jobs are compiled first (an error changes nothing), then
    /// targets that disappeared or changed are stopped (with staleness markers) and new ones start.
    /// A job whose HTTP client cannot be built (a `ca_file` not readable yet, a broken key) is
    /// logged and left out, as Prometheus leaves out such a scrape pool: the other jobs run.
    pub fn apply_config(&self, configs: &ScrapeConfigs) -> Result<(), ConfigError> {
        let jobs = configs.resolve()?;
        let mut runtimes = Vec::with_capacity(jobs.len());
        for job in jobs {
            match build_client(&job, &self.shared.options) {
                Ok(client) => runtimes.push(Arc::new(JobRuntime { job, client, limits: self.shared.options.limits })),
                Err(e) => {
                    tracing::error!(job = %job.name, error = %e, "scrape job left out: its HTTP client cannot be built")
                }
            }
        }
        let mut state = self.shared.lock();
        state.jobs = runtimes;
        self.apply_file_sd(&mut state);
        self.shared.sync(&mut state);
        Ok(())
    }

    /// Replaces the discovered target groups of `job_name` (static and file-discovered groups of
    /// the job stay). Groups for a job not (yet) configured are kept and used once it is.
    pub fn set_target_groups(&self, job_name: &str, groups: Vec<TargetGroup>) {
        let mut state = self.shared.lock();
        state.discovered.entry(job_name.to_string()).or_default().insert(EXTERNAL_SOURCE.to_string(), groups);
        self.shared.sync(&mut state);
    }

    /// Starts, keeps or stops each job's file and HTTP discovery to match its `file_sd_configs`
    /// and `http_sd_configs`. A new file discovery reads its files now, so the targets are there
    /// when `apply_config` returns; an HTTP one asks its URL at once, in its task.
    fn apply_file_sd(&self, state: &mut ManagerState) {
        let wanted: HashMap<String, (Vec<FileSdConfig>, Vec<HttpSdConfig>)> = state
            .jobs
            .iter()
            .filter(|r| !r.job.file_sd.is_empty() || !r.job.http_sd.is_empty())
            .map(|r| (r.job.name.clone(), (r.job.file_sd.clone(), r.job.http_sd.clone())))
            .collect();
        let stale: Vec<String> = state
            .file_sd
            .iter()
            .filter(|(job, run)| wanted.get(*job) != Some(&run.configs))
            .map(|(j, _)| j.clone())
            .collect();
        for job in stale {
            if let Some(run) = state.file_sd.remove(&job) {
                let _ = run.stop.send(true);
            }
            if let Some(sources) = state.discovered.get_mut(&job) {
                sources.retain(|source, _| source == EXTERNAL_SOURCE);
            }
        }
        let base_dir = self.shared.options.config_dir.clone().unwrap_or_default();
        for (job, configs) in wanted {
            if state.file_sd.contains_key(&job) {
                continue;
            }
            let (stop, stop_rx) = watch::channel(false);
            let mut tasks = Vec::with_capacity(configs.0.len() + configs.1.len());
            for (index, config) in configs.0.iter().enumerate() {
                let mut sd = FileSd::new(&job, config, &base_dir);
                sd.poll();
                let source = format!("file_sd/{index}");
                state.discovered.entry(job.clone()).or_default().insert(source.clone(), sd.groups());
                let weak = Arc::downgrade(&self.shared);
                tasks.push(tokio::spawn(run_file_sd(weak, job.clone(), source, sd, stop_rx.clone())));
            }
            for (index, config) in configs.1.iter().enumerate() {
                match HttpSd::new(config, &self.shared.options.user_agent) {
                    Ok(sd) => {
                        let weak = Arc::downgrade(&self.shared);
                        let source = format!("http_sd/{index}");
                        tasks.push(tokio::spawn(run_http_sd(weak, job.clone(), source, sd, stop_rx.clone())));
                    }
                    Err(error) => {
                        tracing::error!(%job, url = %config.url, %error, "http_sd: its HTTP client cannot be built; this discovery is left out")
                    }
                }
            }
            state.file_sd.insert(job, FileSdRun { configs, stop, tasks });
        }
    }

    /// The running targets, sorted by job and URL.
    pub fn targets(&self) -> Vec<TargetStatus> {
        let state = self.shared.lock();
        let mut out: Vec<TargetStatus> = state
            .running
            .values()
            .map(|r| TargetStatus {
                job: r.target.job.job.name.clone(),
                url: r.target.scrape_url.clone(),
                labels: r.target.labels.clone(),
                discovered_labels: r.target.discovered_labels.clone(),
                interval: r.target.job.job.interval,
                timeout: r.target.job.job.timeout,
                health: r.target.health.lock().map(|h| h.clone()).unwrap_or_default(),
            })
            .collect();
        out.sort_by(|a, b| (&a.job, &a.url, &a.labels).cmp(&(&b.job, &b.url, &b.labels)));
        out
    }

    /// Every running target's metric metadata, sorted by job and labels.
    pub fn target_metadata(&self) -> Vec<TargetMetadata> {
        let state = self.shared.lock();
        let mut out: Vec<TargetMetadata> = state
            .running
            .values()
            .map(|r| TargetMetadata {
                job: r.target.job.job.name.clone(),
                labels: r.target.labels.clone(),
                metadata: r.target.metadata.lock().map(|m| m.clone()).unwrap_or_default(),
            })
            .collect();
        out.sort_by(|a, b| (&a.job, &a.labels).cmp(&(&b.job, &b.labels)));
        out
    }

    /// The targets relabeling dropped at the last change (at most [`MAX_DROPPED_TARGETS`]), and
    /// how many were dropped in all.
    pub fn dropped_targets(&self) -> (Vec<DroppedTarget>, usize) {
        let state = self.shared.lock();
        (state.dropped.clone(), state.dropped_total)
    }

    /// Stops every target (each writes its staleness markers) and waits for them.
    pub async fn stop(&self) {
        let file_sd: Vec<FileSdRun> = self.shared.lock().file_sd.drain().map(|(_, run)| run).collect();
        for run in file_sd {
            let _ = run.stop.send(true);
            for task in run.tasks {
                let _ = task.await;
            }
        }
        let running: Vec<RunningTarget> = {
            let mut state = self.shared.lock();
            state.jobs.clear();
            state.running.drain().map(|(_, r)| r).collect()
        };
        for target in &running {
            let _ = target.stop.send(true);
        }
        for target in running {
            let _ = target.task.await;
        }
        self.shared.metrics.scrape_targets.set(0);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ManagerState> {
        // A panic while holding this lock leaves consistent data (maps of handles), so poisoning
        // is not a reason to stop scraping.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sync(&self, state: &mut ManagerState) {
        let mut desired: HashMap<String, Target> = HashMap::new();
        let mut dropped = Vec::new();
        let mut dropped_total = 0;
        for runtime in &state.jobs {
            let discovered = state.discovered.get(&runtime.job.name).into_iter().flat_map(|s| s.values().flatten());
            let mut targets: HashMap<String, Target> = HashMap::new();
            for group in runtime.job.static_groups.iter().chain(discovered) {
                for address in &group.targets {
                    match resolve_target(runtime, group, address) {
                        Ok(target) => {
                            targets.entry(target.key.clone()).or_insert(target);
                        }
                        Err(discovered_labels) => {
                            dropped_total += 1;
                            if dropped.len() < MAX_DROPPED_TARGETS {
                                dropped.push(DroppedTarget { job: runtime.job.name.clone(), discovered_labels });
                            }
                        }
                    }
                }
            }
            let limit = runtime.job.target_limit;
            if limit > 0 && targets.len() as u64 > limit {
                // As Prometheus: past the limit every target of the job fails (`up` 0) until the
                // count is back under it. The key changes, so crossing the limit restarts them.
                let error = format!("target_limit exceeded (number of targets: {}, limit: {limit})", targets.len());
                tracing::warn!(job = %runtime.job.name, %error, "no target of this job is scraped");
                targets = targets
                    .into_values()
                    .map(|mut target| {
                        target.key.push_str("|over target_limit");
                        target.forced_error = Some(error.clone());
                        (target.key.clone(), target)
                    })
                    .collect();
            }
            for (key, target) in targets {
                desired.entry(key).or_insert(target);
            }
        }
        state.dropped = dropped;
        state.dropped_total = dropped_total;
        let gone: Vec<String> = state.running.keys().filter(|k| !desired.contains_key(*k)).cloned().collect();
        for key in gone {
            if let Some(running) = state.running.remove(&key) {
                // The loop writes its staleness markers and exits on its own.
                let _ = running.stop.send(true);
            }
        }
        for (key, target) in desired {
            if state.running.contains_key(&key) {
                continue;
            }
            let target = Arc::new(target);
            let (stop, stop_rx) = watch::channel(false);
            let ingest =
                PageIngest { db: self.db.clone(), metrics: self.metrics.clone(), slots: self.page_slots.clone() };
            let task = tokio::spawn(run_target(target.clone(), ingest, stop_rx));
            state.running.insert(key, RunningTarget { target, stop, task });
        }
        self.metrics.scrape_targets.set(state.running.len() as i64);
    }
}

/// Polls one `file_sd_configs` entry every [`FILE_SD_POLL`] until `stop` flips (or the manager
/// is gone), handing changed groups to the manager as source `source` of `job`.
async fn run_file_sd(
    shared: Weak<Shared>,
    job: String,
    source: String,
    mut sd: FileSd,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(FILE_SD_POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let (polled, changed) = match tokio::task::spawn_blocking(move || {
            let changed = sd.poll();
            (sd, changed)
        })
        .await
        {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(%job, error = %e, "BUG: file_sd poll panicked; this discovery stops");
                return;
            }
        };
        sd = polled;
        if !changed || *stop.borrow() {
            continue;
        }
        let Some(shared) = shared.upgrade() else { return };
        let mut state = shared.lock();
        // A stop sent while the files were read means this run was replaced: its groups must not
        // come back.
        if *stop.borrow() {
            return;
        }
        state.discovered.entry(job.clone()).or_default().insert(source.clone(), sd.groups());
        shared.sync(&mut state);
    }
}

/// Asks one `http_sd_configs` URL at once and then every refresh interval until `stop` flips
/// (or the manager is gone), handing changed groups to the manager as source `source` of `job`.
/// A failed answer keeps the groups of the last good one; its error is logged once per change.
async fn run_http_sd(shared: Weak<Shared>, job: String, source: String, sd: HttpSd, mut stop: watch::Receiver<bool>) {
    let mut last: Option<Vec<TargetGroup>> = None;
    let mut last_error: Option<String> = None;
    loop {
        let answer = tokio::select! {
            answer = sd.fetch() => answer,
            _ = stop.changed() => return,
        };
        match answer {
            Ok(groups) => {
                last_error = None;
                if last.as_ref() != Some(&groups) {
                    let Some(shared) = shared.upgrade() else { return };
                    let mut state = shared.lock();
                    // A stop sent while the URL was asked means this run was replaced.
                    if *stop.borrow() {
                        return;
                    }
                    state.discovered.entry(job.clone()).or_default().insert(source.clone(), groups.clone());
                    shared.sync(&mut state);
                    last = Some(groups);
                }
            }
            Err(error) => {
                if last_error.as_ref() != Some(&error) {
                    tracing::error!(%job, url = %sd.url(), %error, "http_sd: the answer is not used; the previous targets stay");
                }
                last_error = Some(error);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(sd.refresh_interval()) => {}
            _ = stop.changed() => return,
        }
    }
}

fn build_client(job: &Job, options: &ScrapeManagerOptions) -> Result<reqwest::Client, ConfigError> {
    let client_error = |message: String| ConfigError::Client { job: job.name.clone(), message };
    let builder = crate::scrape_config::client_builder(
        &options.user_agent,
        job.follow_redirects,
        job.proxy_url.as_deref(),
        &job.tls,
    )
    .map_err(client_error)?;
    builder.gzip(true).build().map_err(|e| client_error(e.to_string()))
}

/// Applies Prometheus' target label rules: group labels, then `__address__`, `__scheme__`,
/// `__metrics_path__`, `__param_*`, `job` where unset; `relabel_configs`; `instance` defaults to the
/// address; `__`-prefixed labels are dropped. `Err` (with the labels before relabeling) when
/// relabeling drops the target.
fn resolve_target(runtime: &Arc<JobRuntime>, group: &TargetGroup, address: &str) -> Result<Target, Labels> {
    let job = &runtime.job;
    let mut labels = Labels::from_pairs(group.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    labels.set("__address__", address);
    let defaults = [
        ("__scheme__", job.scheme.clone()),
        ("__metrics_path__", job.metrics_path.clone()),
        ("__scrape_interval__", humantime::format_duration(job.interval).to_string()),
        ("__scrape_timeout__", humantime::format_duration(job.timeout).to_string()),
        ("job", job.name.clone()),
    ];
    for (name, value) in defaults {
        if labels.get(name).is_none() {
            labels.set(name, &value);
        }
    }
    for (name, values) in &job.params {
        let label = format!("__param_{name}");
        if let (None, Some(first)) = (labels.get(&label), values.first()) {
            labels.set(&label, first);
        }
    }
    let discovered_labels = labels.clone();
    if !job.relabel.apply(&mut labels) {
        return Err(discovered_labels);
    }
    let Some(address) = labels.get("__address__").map(str::to_string) else {
        tracing::warn!(job = %job.name, "target dropped: relabeling removed __address__");
        return Err(discovered_labels);
    };
    if labels.get("instance").is_none() {
        labels.set("instance", &address);
    }
    let scheme = labels.get("__scheme__").unwrap_or("http").to_string();
    let path = escape_path(labels.get("__metrics_path__").unwrap_or("/metrics"));
    let params = scrape_params(&job.params, &labels);
    let public: Vec<(String, String)> =
        labels.iter().filter(|l| !l.name.starts_with("__")).map(|l| (l.name.clone(), l.value.clone())).collect();
    let labels = Labels::from_pairs(public);
    let url = format!("{scheme}://{address}{path}");
    let key = format!("{}|{url}|{params:?}|{labels}|{}", job.name, job.fingerprint);
    let scrape_url = url_with_params(&url, &params);
    let request_url = reqwest::Url::parse(&scrape_url).ok();
    Ok(Target {
        job: runtime.clone(),
        url,
        scrape_url,
        request_url,
        labels,
        discovered_labels,
        key,
        health: Mutex::new(TargetHealth::default()),
        metadata: Mutex::default(),
        forced_error: None,
    })
}

/// `path` as the path of a URL, escaped as Go's `url.URL` escapes one (and so Prometheus's scrape
/// URL): letters, digits, `-_.~` and `$&+,/:;=@` stay, every other byte is `%XX` (a `?` in
/// `metrics_path` is part of the path, not the start of a query).
fn escape_path(path: &str) -> String {
    const PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b',')
        .remove(b'/')
        .remove(b':')
        .remove(b';')
        .remove(b'=')
        .remove(b'@');
    percent_encoding::utf8_percent_encode(path, PATH).to_string()
}

/// The query parameters of a scrape, as Prometheus builds them: the job's `params`, where a
/// `__param_<name>` label (set from the first value, then relabeled) replaces the first value of
/// `<name>` or adds `<name>` (the blackbox exporter's `__param_target`); ordered by name, each
/// name's values in their order.
fn scrape_params(job_params: &BTreeMap<String, Vec<String>>, labels: &Labels) -> Vec<(String, String)> {
    let mut params = job_params.clone();
    for label in labels.iter() {
        let Some(name) = label.name.strip_prefix(PARAM_LABEL_PREFIX) else { continue };
        match params.get_mut(name).and_then(|values| values.first_mut()) {
            Some(first) => first.clone_from(&label.value),
            None => {
                params.insert(name.to_string(), vec![label.value.clone()]);
            }
        }
    }
    params.into_iter().flat_map(|(name, values)| values.into_iter().map(move |value| (name.clone(), value))).collect()
}

/// Labels whose value is a query parameter of the scrape (`__param_module`).
const PARAM_LABEL_PREFIX: &str = "__param_";

/// `url` with `params` as its query string, encoded as Prometheus encodes it (and shows it in
/// `/api/v1/targets`): a space as `+`, every byte but the unreserved ones of RFC 3986
/// percent-encoded. A query already in `url` (a `metrics_path` with `?`) is kept.
fn url_with_params(url: &str, params: &[(String, String)]) -> String {
    let mut out = url.to_string();
    for (i, (name, value)) in params.iter().enumerate() {
        out.push(if i == 0 && !url.contains('?') { '?' } else { '&' });
        push_query_escaped(&mut out, name);
        out.push('=');
        push_query_escaped(&mut out, value);
    }
    out
}

/// Appends `text` escaped for a query component as Go's `url.QueryEscape` does: every byte but
/// ASCII letters, digits and `-._~` percent-encoded, a space written `+` (a `%20` in the encoded
/// text can only come from a space: a `%` itself is encoded `%25`).
fn push_query_escaped(out: &mut String, text: &str) {
    const QUERY_ESCAPED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    let encoded = percent_encoding::utf8_percent_encode(text, QUERY_ESCAPED).to_string();
    out.push_str(&encoded.replace("%20", "+"));
}

/// FNV-1a: a stable hash (the std hasher may change between Rust releases) for scrape offsets.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Where a target's pages go: the store, the metrics, and the slots bounding how many pages are
/// processed at once.
struct PageIngest {
    db: Arc<Db>,
    metrics: IngestMetrics,
    slots: Arc<tokio::sync::Semaphore>,
}

async fn run_target(target: Arc<Target>, ingest: PageIngest, mut stop: watch::Receiver<bool>) {
    let PageIngest { db, metrics, slots } = ingest;
    let interval = target.job.job.interval;
    let interval_ms = interval.as_millis().max(1) as u64;
    let offset = Duration::from_millis(fnv1a(&target.key) % interval_ms);
    tokio::select! {
        _ = tokio::time::sleep(offset) => {}
        _ = stop.changed() => return,
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut state = TargetState::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let started = Instant::now();
        let scrape_ts_ms = now_ms();
        let fetched = match &target.forced_error {
            Some(error) => Err(error.clone()),
            None => tokio::select! {
                fetched = fetch(&target, state.page_size_hint()) => fetched,
                _ = stop.changed() => break,
            },
        };
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.ok(),
            _ = stop.changed() => break,
        };
        if state.processes_inline(&fetched) {
            let _slot = slot;
            let recorded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                state.record(&target, &db, &metrics, fetched, scrape_ts_ms, started)
            }));
            if recorded.is_err() {
                // As when the blocking pool's task panics: the loop goes on with a fresh state.
                state = TargetState::default();
                tracing::error!(target = %target.url, "BUG: scrape processing panicked");
            }
            continue;
        }
        let (t, d, m) = (target.clone(), db.clone(), metrics.clone());
        let mut moved = std::mem::take(&mut state);
        match tokio::task::spawn_blocking(move || {
            let _slot = slot;
            moved.record(&t, &d, &m, fetched, scrape_ts_ms, started);
            moved
        })
        .await
        {
            Ok(back) => state = back,
            Err(e) => tracing::error!(target = %target.url, error = %e, "BUG: scrape processing panicked"),
        }
    }
    let ts_ms = now_ms();
    let result = tokio::task::spawn_blocking(move || state.end_of_run(&db, ts_ms)).await;
    if let Err(e) = result {
        tracing::error!(target = %target.url, error = %e, "BUG: end-of-run staleness panicked");
    }
}

/// A fetched page body and the format its Content-Type announced.
struct Fetched {
    body: Vec<u8>,
    format: Format,
}

/// Fetches the target's page; `size_hint` (the previous page's size) sizes the buffer, with room
/// for the page to grow a little without copying it.
async fn fetch(target: &Target, size_hint: usize) -> Result<Fetched, String> {
    let job = &target.job.job;
    let client = &target.job.client;
    let request = match &target.request_url {
        Some(url) => client.get(url.clone()),
        None => client.get(&target.scrape_url),
    };
    // The whole exchange, body included, is under the one timeout below: no second timer in the
    // client.
    let request = request
        .header(reqwest::header::ACCEPT, SCRAPE_ACCEPT_HEADER)
        .header("X-Prometheus-Scrape-Timeout-Seconds", format!("{}", job.timeout.as_secs_f64()));
    let work = async {
        // Under the scrape's timeout: a token endpoint that hangs fails the scrape like a target.
        let request = job.auth.apply(request).await?;
        let mut response = request.send().await.map_err(describe_reqwest)?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("server returned HTTP status {status}"));
        }
        let content_type = response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let format = Format::from_content_type(content_type);
        let limit = job.body_size_limit_bytes;
        let capacity = size_hint.saturating_add(size_hint / 8);
        let capacity = if limit > 0 { capacity.min(usize::try_from(limit).unwrap_or(usize::MAX)) } else { capacity };
        let mut body = Vec::with_capacity(capacity);
        while let Some(chunk) = response.chunk().await.map_err(describe_reqwest)? {
            if limit > 0 && (body.len() + chunk.len()) as u64 > limit {
                return Err(format!("body size limit exceeded: more than {limit} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body, format })
    };
    match tokio::time::timeout(job.timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(format!("scrape timed out after {:?}", job.timeout)),
    }
}

fn describe_reqwest(error: reqwest::Error) -> String {
    crate::error::describe_reqwest(&error, "scrape timed out")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn runtime(yaml: &str) -> Arc<JobRuntime> {
        let job = ScrapeConfigs::from_yaml(yaml).unwrap().resolve().unwrap().remove(0);
        let client = build_client(&job, &ScrapeManagerOptions::default()).unwrap();
        Arc::new(JobRuntime { job, client, limits: IngestLimits::default() })
    }

    #[test]
    fn target_labels_follow_prometheus_rules() {
        let rt = runtime(
            "scrape_configs:\n- job_name: j\n  params: {module: [a, b]}\n  static_configs: [{targets: ['h:1'], labels: {env: prod, __meta_x: m}}]\n  relabel_configs:\n  - source_labels: [__meta_x]\n    target_label: meta\n",
        );
        let group = &rt.job.static_groups[0];
        let target = resolve_target(&rt, group, "h:1").unwrap();
        assert_eq!(target.url, "http://h:1/metrics");
        // Prometheus: `__param_module` is set from the first value and replaces it; the rest stay.
        assert_eq!(target.scrape_url, "http://h:1/metrics?module=a&module=b");
        assert_eq!(target.request_url.as_ref().map(|u| u.as_str()), Some(target.scrape_url.as_str()));
        let names: Vec<&str> = target.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, vec!["env", "instance", "job", "meta"]);
        assert_eq!(target.labels.get("instance"), Some("h:1"));
    }

    #[test]
    fn the_metrics_path_is_escaped_as_prometheus_escapes_it() {
        let rt = runtime(
            "scrape_configs:\n- job_name: j\n  metrics_path: '/a b/c?d=1&e%f!é'\n  params: {x: ['1']}\n  static_configs: [{targets: ['h:1']}]\n",
        );
        let target = resolve_target(&rt, &rt.job.static_groups[0], "h:1").unwrap();
        assert_eq!(target.url, "http://h:1/a%20b/c%3Fd=1&e%25f%21%C3%A9");
        assert_eq!(target.scrape_url, "http://h:1/a%20b/c%3Fd=1&e%25f%21%C3%A9?x=1");
        assert_eq!(target.request_url.as_ref().map(|u| u.as_str()), Some(target.scrape_url.as_str()));
        assert_eq!(target.discovered_labels.get("__metrics_path__"), Some("/a b/c?d=1&e%f!é"), "labels keep the path");
    }

    #[test]
    fn relabeling_can_drop_targets() {
        let rt = runtime(
            "scrape_configs:\n- job_name: j\n  static_configs: [{targets: ['keep:1', 'drop:1']}]\n  relabel_configs:\n  - source_labels: [__address__]\n    regex: 'drop:.*'\n    action: drop\n",
        );
        let group = &rt.job.static_groups[0];
        assert!(resolve_target(&rt, group, "keep:1").is_ok());
        let dropped = resolve_target(&rt, group, "drop:1").err().unwrap();
        assert_eq!(dropped.get("__address__"), Some("drop:1"));
        assert_eq!(dropped.get("job"), Some("j"));
    }

    #[tokio::test]
    async fn a_job_whose_client_cannot_be_built_is_left_out_and_the_others_run() {
        let db = Arc::new(Db::open(tsdb::Options::in_memory()).unwrap());
        let manager = ScrapeManager::new(db, IngestMetrics::default(), ScrapeManagerOptions::default());
        let configs = ScrapeConfigs::from_yaml(
            "scrape_configs:\n- job_name: broken\n  scheme: https\n  tls_config: {ca_file: /nonexistent/ca.crt}\n  static_configs: [{targets: ['127.0.0.1:1']}]\n- job_name: fine\n  static_configs: [{targets: ['127.0.0.1:2']}]\n",
        )
        .unwrap();
        manager.apply_config(&configs).unwrap();
        let jobs: Vec<String> = manager.targets().into_iter().map(|t| t.job).collect();
        assert_eq!(jobs, ["fine"]);
        manager.apply_config(&ScrapeConfigs::default()).unwrap();
    }

    #[tokio::test]
    async fn file_sd_targets_are_relative_to_the_config_dir_and_unchanged_ones_keep_running() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.yml"), "- targets: ['127.0.0.1:1']\n").unwrap();
        let db = Arc::new(Db::open(tsdb::Options::in_memory()).unwrap());
        let options = ScrapeManagerOptions { config_dir: Some(dir.path().to_path_buf()), ..Default::default() };
        let manager = ScrapeManager::new(db, IngestMetrics::default(), options);
        let configs = ScrapeConfigs::from_yaml(
            "scrape_configs:\n- job_name: f\n  static_configs: [{targets: ['127.0.0.1:3']}]\n  file_sd_configs: [{files: ['*.yml']}]\n",
        )
        .unwrap();
        manager.apply_config(&configs).unwrap();
        let before = manager.targets();
        assert_eq!(before.len(), 2, "static and file targets at once");
        let file_target = before.iter().find(|t| t.url.contains(":1/")).unwrap();
        assert!(file_target.discovered_labels.get("__meta_filepath").unwrap().ends_with("t.yml"));
        let running = |m: &ScrapeManager| -> Vec<Arc<Target>> {
            let mut v: Vec<Arc<Target>> = m.shared.lock().running.values().map(|r| r.target.clone()).collect();
            v.sort_by(|a, b| a.key.cmp(&b.key));
            v
        };
        let first = running(&manager);
        // The same config again keeps the discovery and every target.
        manager.apply_config(&configs).unwrap();
        let again = running(&manager);
        assert!(first.iter().zip(&again).all(|(a, b)| Arc::ptr_eq(a, b)));
        manager.stop().await;
    }

    #[test]
    fn offsets_are_stable() {
        assert_eq!(fnv1a("a|http://x/metrics"), fnv1a("a|http://x/metrics"));
        assert_ne!(fnv1a("a"), fnv1a("b"));
    }

    #[test]
    fn the_scrape_url_is_encoded_as_prometheus_encodes_it_and_requested_as_shown() {
        for (url, params, expected) in [
            ("http://h:1/metrics", vec![], "http://h:1/metrics"),
            (
                "https://h:1/probe",
                vec![("module", "http 2xx"), ("target", "https://x/?a=1&b=é*~")],
                "https://h:1/probe?module=http+2xx&target=https%3A%2F%2Fx%2F%3Fa%3D1%26b%3D%C3%A9%2A~",
            ),
            ("http://h:1/m?x=1", vec![("y", "2")], "http://h:1/m?x=1&y=2"),
        ] {
            let params: Vec<(String, String)> = params.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            let shown = url_with_params(url, &params);
            assert_eq!(shown, expected);
            let requested = reqwest::Url::parse(&shown).unwrap();
            assert_eq!(requested.as_str(), shown);
            let decoded: Vec<(String, String)> = requested
                .query_pairs()
                .filter(|(n, _)| n != "x")
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(decoded, params, "{url}");
        }
    }

    #[test]
    fn param_labels_from_relabeling_are_scrape_parameters() {
        // The blackbox exporter's configuration: the probed address becomes `target`.
        let rt = runtime(
            "scrape_configs:\n- job_name: blackbox\n  metrics_path: /probe\n  params: {module: [http_2xx], z: [1, 2]}\n  static_configs: [{targets: ['example.com:443']}]\n  relabel_configs:\n  - source_labels: [__address__]\n    target_label: __param_target\n  - source_labels: [__param_target]\n    target_label: instance\n  - target_label: __address__\n    replacement: 127.0.0.1:9115\n  - target_label: __param_z\n    replacement: 'a b'\n",
        );
        let group = &rt.job.static_groups[0];
        let target = resolve_target(&rt, group, "example.com:443").unwrap();
        assert_eq!(target.scrape_url, "http://127.0.0.1:9115/probe?module=http_2xx&target=example.com%3A443&z=a+b&z=2");
        assert_eq!(target.labels.get("instance"), Some("example.com:443"));
        assert!(target.labels.iter().all(|l| !l.name.starts_with("__")));
    }
}
