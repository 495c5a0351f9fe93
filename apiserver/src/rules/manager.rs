//! `RuleManager` runs the loaded rule groups, each on its own ticker at its interval, and
//! replaces them when a reload brings new specs: an unchanged group keeps running with its state;
//! a changed one is replaced, its successor taking over the series and status of the rules with
//! the same name and labels (what is not taken over ends with staleness markers); a removed one
//! stops and its series end with staleness markers.
//!
//! Evaluation times are aligned as Prometheus aligns them: a group runs at `k * interval +
//! offset`, the offset a stable hash of its file and name, and that aligned time is the
//! timestamp of what it writes. Evaluation is CPU work and runs on the niced worker pool
//! (`crate::workers`), never on the async workers.

use super::file::GroupSpec;
use super::group::Group;
use super::metrics::{GroupLabel, RuleMetrics};
use crate::workers::Workers;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A group and the task evaluating it.
struct Running {
    group: Arc<Group>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// See the module documentation.
pub struct RuleManager {
    engine: Arc<query::Engine>,
    workers: Arc<Workers>,
    metrics: RuleMetrics,
    running: Mutex<Vec<Running>>,
    /// Tasks of replaced or removed groups (and their staleness writers), joined at stop.
    retired: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for RuleManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleManager").field("groups", &self.running.lock().len()).finish()
    }
}

impl RuleManager {
    /// A manager with no groups; its metrics are registered in `registry`.
    pub(crate) fn new(engine: Arc<query::Engine>, workers: Arc<Workers>, registry: &mut Registry) -> RuleManager {
        RuleManager {
            engine,
            workers,
            metrics: RuleMetrics::register(registry),
            running: Mutex::new(Vec::new()),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// The groups loaded, sorted by file and name (as Prometheus lists them).
    pub fn groups(&self) -> Vec<Arc<Group>> {
        let mut groups: Vec<Arc<Group>> = self.running.lock().iter().map(|r| r.group.clone()).collect();
        groups.sort_by(|a, b| (&a.spec.file, &a.spec.name).cmp(&(&b.spec.file, &b.spec.name)));
        groups
    }

    /// Runs `specs` from now on; returns whether anything changed. Must run inside the tokio
    /// runtime.
    pub(crate) fn apply(&self, specs: Vec<GroupSpec>) -> bool {
        let mut running = self.running.lock();
        let mut old: HashMap<(String, String), Running> =
            running.drain(..).map(|r| ((r.group.spec.file.clone(), r.group.spec.name.clone()), r)).collect();
        let mut changed = false;
        for spec in specs {
            let key = (spec.file.clone(), spec.name.clone());
            match old.remove(&key) {
                Some(current) if *current.group.spec == spec => running.push(current),
                predecessor => {
                    changed = true;
                    running.push(self.start(spec, predecessor));
                }
            }
        }
        let mut retired = self.retired.lock();
        retired.retain(|task| !task.is_finished());
        for (_, gone) in old {
            changed = true;
            self.metrics.forget(&gone.group.spec.key());
            let _ = gone.stop.send(true);
            let workers = self.workers.clone();
            let db = self.engine.db().clone();
            retired.push(tokio::spawn(async move {
                let _ = gone.task.await;
                let group = gone.group;
                let ended = workers.run(move || group.mark_all_stale(&db, tsdb::now_ms())).await;
                if let Err(e) = ended {
                    tracing::warn!(error = %e, "writing a removed rule group's staleness markers failed");
                }
            }));
        }
        if changed {
            tracing::info!(groups = running.len(), "rule groups loaded");
        }
        changed
    }

    /// Starts a group; `predecessor` is the running version it replaces, whose task it waits
    /// for before taking its state over.
    fn start(&self, spec: GroupSpec, predecessor: Option<Running>) -> Running {
        let key = spec.key();
        let label = GroupLabel { rule_group: key };
        self.metrics.interval.get_or_create(&label).set(spec.interval.as_secs_f64());
        self.metrics.rules.get_or_create(&label).set(spec.rules.len() as i64);
        let group = Arc::new(Group::new(Arc::new(spec)));
        let (stop, stop_rx) = watch::channel(false);
        let predecessor = predecessor.map(|p| {
            let _ = p.stop.send(true);
            (p.group, p.task)
        });
        let task = tokio::spawn(run_group(
            group.clone(),
            self.engine.clone(),
            self.workers.clone(),
            self.metrics.clone(),
            stop_rx,
            predecessor,
        ));
        Running { group, stop, task }
    }

    /// Stops every group and waits for them (at shutdown; no staleness markers are written).
    pub(crate) async fn stop(&self) {
        let running: Vec<Running> = std::mem::take(&mut *self.running.lock());
        let mut tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.retired.lock());
        for r in running {
            let _ = r.stop.send(true);
            tasks.push(r.task);
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// The next evaluation time after `now_ms` of a group with this interval and offset.
fn next_evaluation_ms(now_ms: i64, interval_ms: i64, offset_ms: i64) -> i64 {
    let base = (now_ms - offset_ms).div_euclid(interval_ms) * interval_ms + offset_ms;
    base + interval_ms
}

/// A stable offset inside the interval for a group (FNV-1a of `file;name`), so groups spread
/// over the interval and keep their phase across restarts.
fn offset_ms(key: &str, interval_ms: i64) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % interval_ms.max(1) as u64) as i64
}

async fn run_group(
    group: Arc<Group>,
    engine: Arc<query::Engine>,
    workers: Arc<Workers>,
    metrics: RuleMetrics,
    mut stop: watch::Receiver<bool>,
    predecessor: Option<(Arc<Group>, JoinHandle<()>)>,
) {
    if let Some((old, task)) = predecessor {
        let _ = task.await;
        let (new, db) = (group.clone(), engine.db().clone());
        let carried = workers
            .run(move || {
                new.take_state_from(&old);
                old.mark_all_stale(&db, tsdb::now_ms());
            })
            .await;
        if let Err(e) = carried {
            tracing::warn!(error = %e, "taking over a changed rule group's state failed");
        }
    }
    let key = group.spec.key();
    let label = GroupLabel { rule_group: key.clone() };
    let interval_ms = i64::try_from(group.spec.interval.as_millis()).unwrap_or(i64::MAX).max(1);
    let offset = offset_ms(&key, interval_ms);
    let mut last_ts: Option<i64> = None;
    loop {
        let now = tsdb::now_ms();
        let ts_ms = next_evaluation_ms(now, interval_ms, offset);
        if let Some(last) = last_ts {
            let missed = (ts_ms - last) / interval_ms - 1;
            if missed > 0 {
                metrics.missed.get_or_create(&label).inc_by(missed as u64);
                metrics.iterations.get_or_create(&label).inc_by(missed as u64);
            }
        }
        let wait = Duration::from_millis(u64::try_from(ts_ms - now).unwrap_or(0));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        metrics.iterations.get_or_create(&label).inc();
        let (evaluated, engine, metrics) = (group.clone(), engine.clone(), metrics.clone());
        if let Err(e) = workers.run(move || evaluated.evaluate(&engine, ts_ms, &metrics)).await {
            tracing::error!(group = %group.spec.name, error = %e, "rule group evaluation failed");
        }
        last_ts = Some(ts_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_times_are_aligned_to_the_interval_and_offset() {
        assert_eq!(next_evaluation_ms(10_500, 1000, 200), 11_200);
        assert_eq!(next_evaluation_ms(10_200, 1000, 200), 11_200);
        assert_eq!(next_evaluation_ms(10_199, 1000, 200), 10_200);
        let offset = offset_ms("rules.yaml;g", 60_000);
        assert!((0..60_000).contains(&offset));
        assert_eq!(offset, offset_ms("rules.yaml;g", 60_000), "stable");
    }

    #[tokio::test]
    async fn an_unchanged_group_keeps_running_and_a_changed_one_is_replaced() {
        let db = Arc::new(tsdb::Db::open(tsdb::Options::in_memory()).expect("store"));
        let engine = Arc::new(query::Engine::new(db, query::EngineOptions::default()));
        let workers = Arc::new(Workers::start(1, 0, 0.0).expect("workers"));
        let manager = RuleManager::new(engine, workers, &mut Registry::default());
        let specs = |second: &str| {
            let text = format!(
                "groups:\n- name: a\n  rules: [{{record: r, expr: '1'}}]\n- name: b\n  rules: [{{record: s, expr: '{second}'}}]\n"
            );
            crate::rules::file::parse_file("r.yaml", &text, Duration::from_secs(60)).expect("rules")
        };
        assert!(manager.apply(specs("2")));
        let before = manager.groups();
        assert!(!manager.apply(specs("2")), "nothing changed");
        let same = manager.groups();
        assert!(before.iter().zip(&same).all(|(a, b)| Arc::ptr_eq(a, b)), "both groups kept running");
        assert!(manager.apply(specs("3")));
        let after = manager.groups();
        assert!(Arc::ptr_eq(&before[0], &after[0]), "group a is unchanged");
        assert!(!Arc::ptr_eq(&before[1], &after[1]), "group b was replaced");
        assert!(manager.apply(Vec::new()));
        assert!(manager.groups().is_empty());
        manager.stop().await;
    }
}
