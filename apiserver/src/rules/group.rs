//! `Group` is one loaded rule group: its spec, what `/api/v1/rules` shows of it (health, last
//! error, last evaluation time and duration per rule and for the group), and its evaluation —
//! every rule in order, through the query engine at the evaluation timestamp, recording rules'
//! results written to the store like scraped samples, with a staleness marker for each series of
//! the previous evaluation that is gone from this one (as Prometheus's `Group.Eval`).
//!
//! Alerting rules are evaluated for their state (inactive, pending, firing, and the active
//! alerts) only: nothing is sent, and no `ALERTS` series is written.

use super::file::{GroupSpec, RuleKind, RuleSpec};
use super::metrics::{GroupLabel, RuleMetrics};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tsdb::{Db, Labels, Sample, SeriesSamples};

/// Most series one rule may produce per evaluation, whatever the group's `limit` says (a rule
/// matching a whole cluster's series by mistake must not write millions of them every interval).
pub const MAX_SERIES_PER_RULE: usize = 100_000;

/// A rule's health, as Prometheus's `rules.RuleHealth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// An alert of an alerting rule: its label set holds its state.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    /// `true` once it has been active for the rule's `for`.
    pub firing: bool,
    pub active_at: SystemTime,
    /// When the expression last returned it (a firing alert it no longer returns keeps firing
    /// for `keep_firing_for`).
    pub last_seen: SystemTime,
    pub value: f64,
}

/// What `/api/v1/rules` shows of one rule.
#[derive(Debug, Clone)]
pub struct RuleStatus {
    pub health: Health,
    pub last_error: Option<String>,
    /// Wall-clock start of the last evaluation; `None` before the first.
    pub last_evaluation: Option<SystemTime>,
    pub evaluation_seconds: f64,
    /// Alerting rules: the active alerts, by label set.
    pub alerts: Vec<ActiveAlert>,
}

impl Default for RuleStatus {
    fn default() -> Self {
        RuleStatus {
            health: Health::Unknown,
            last_error: None,
            last_evaluation: None,
            evaluation_seconds: 0.0,
            alerts: Vec::new(),
        }
    }
}

/// What `/api/v1/rules` shows of one group.
#[derive(Debug, Clone, Default)]
pub struct GroupStatus {
    pub last_evaluation: Option<SystemTime>,
    pub evaluation_seconds: f64,
    pub rules: Vec<RuleStatus>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Group {
    pub spec: Arc<GroupSpec>,
    status: Mutex<GroupStatus>,
    /// Per rule, the series its last evaluation wrote (what gets staleness markers when gone).
    previous: Mutex<Vec<HashSet<Labels>>>,
}

impl Group {
    pub fn new(spec: Arc<GroupSpec>) -> Group {
        let rules = spec.rules.len();
        Group {
            status: Mutex::new(GroupStatus { rules: vec![RuleStatus::default(); rules], ..GroupStatus::default() }),
            previous: Mutex::new(vec![HashSet::new(); rules]),
            spec,
        }
    }

    /// A copy of the status.
    pub fn status(&self) -> GroupStatus {
        self.status.lock().clone()
    }

    /// Evaluates every rule at `ts_ms` and writes the recording rules' results. A rule that
    /// fails gets health `err` and its message; the next rule runs still.
    pub fn evaluate(&self, engine: &query::Engine, ts_ms: i64, metrics: &RuleMetrics) {
        let started = Instant::now();
        let wall = SystemTime::now();
        let label = GroupLabel { rule_group: self.spec.key() };
        let mut samples_written = 0usize;
        for (index, rule) in self.spec.rules.iter().enumerate() {
            let rule_started = Instant::now();
            let rule_wall = SystemTime::now();
            metrics.evaluations.get_or_create(&label).inc();
            let outcome = self.evaluate_rule(engine, index, rule, ts_ms);
            let mut status = self.status.lock();
            let rule_status = &mut status.rules[index];
            match outcome {
                Ok((written, alerts)) => {
                    samples_written += written;
                    rule_status.health = Health::Ok;
                    rule_status.last_error = None;
                    if let Some(alerts) = alerts {
                        rule_status.alerts = alerts;
                    }
                }
                Err(message) => {
                    metrics.failures.get_or_create(&label).inc();
                    tracing::warn!(group = %self.spec.name, rule = rule.name(), error = %message, "evaluating rule failed");
                    rule_status.health = Health::Err;
                    rule_status.last_error = Some(message);
                    rule_status.alerts.clear();
                }
            }
            rule_status.last_evaluation = Some(rule_wall);
            rule_status.evaluation_seconds = rule_started.elapsed().as_secs_f64();
        }
        let seconds = started.elapsed().as_secs_f64();
        {
            let mut status = self.status.lock();
            status.last_evaluation = Some(wall);
            status.evaluation_seconds = seconds;
        }
        metrics.last_duration.get_or_create(&label).set(seconds);
        metrics.last_evaluation.get_or_create(&label).set(ts_ms as f64 / 1000.0);
        metrics.last_samples.get_or_create(&label).set(samples_written as i64);
    }

    /// One rule: `Ok` with the samples written (recording) or the active alerts (alerting).
    fn evaluate_rule(
        &self,
        engine: &query::Engine,
        index: usize,
        rule: &RuleSpec,
        ts_ms: i64,
    ) -> Result<(usize, Option<Vec<ActiveAlert>>), String> {
        let result = engine
            .instant_expr(&rule.expr, &rule.parsed, ts_ms, &[])
            .map_err(|e| e.to_string())
            .and_then(|output| as_vector(output.value));
        match &rule.kind {
            RuleKind::Recording { record } => {
                let series = result.and_then(|vector| self.relabel_and_check(record, rule, vector));
                match series {
                    Ok(series) => self.write(engine.db(), index, series, ts_ms).map(|n| (n, None)),
                    Err(message) => {
                        // Nothing of this evaluation is written: what the last one wrote ends.
                        self.write(engine.db(), index, Vec::new(), ts_ms).map_err(|e| format!("{message}; {e}"))?;
                        Err(message)
                    }
                }
            }
            RuleKind::Alerting { alert, hold, keep_firing, annotations } => {
                let vector = result?;
                self.check_limit(vector.len())?;
                let previous = self.status.lock().rules[index].alerts.clone();
                let now = SystemTime::now();
                let mut alerts = Vec::with_capacity(vector.len());
                for (mut labels, value) in vector {
                    labels.remove(tsdb::METRIC_NAME);
                    for (name, value) in &rule.labels {
                        labels.set(name, value);
                    }
                    labels.set("alertname", alert);
                    let active_at =
                        previous.iter().find(|a| a.labels == labels).map_or(now, |earlier| earlier.active_at);
                    let firing = now.duration_since(active_at).unwrap_or_default() >= *hold;
                    alerts.push(ActiveAlert {
                        labels,
                        annotations: annotations.clone(),
                        firing,
                        active_at,
                        last_seen: now,
                        value,
                    });
                }
                let kept = previous.into_iter().filter(|earlier| {
                    earlier.firing
                        && now.duration_since(earlier.last_seen).unwrap_or_default() < *keep_firing
                        && !alerts.iter().any(|a| a.labels == earlier.labels)
                });
                let kept: Vec<ActiveAlert> = kept.collect();
                alerts.extend(kept);
                alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
                if alerts.windows(2).any(|w| w[0].labels == w[1].labels) {
                    return Err("vector contains metrics with the same labelset after applying alert labels".into());
                }
                Ok((0, Some(alerts)))
            }
        }
    }

    /// Names the series `record`, applies the rule's labels (an empty value removes one), and
    /// refuses duplicates and more series than the limits allow.
    fn relabel_and_check(
        &self,
        record: &str,
        rule: &RuleSpec,
        vector: Vec<(Labels, f64)>,
    ) -> Result<Vec<(Labels, f64)>, String> {
        let mut series: Vec<(Labels, f64)> = vector
            .into_iter()
            .map(|(mut labels, value)| {
                labels.set(tsdb::METRIC_NAME, record);
                for (name, value) in &rule.labels {
                    labels.set(name, value);
                }
                (labels, value)
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        if series.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err("vector contains metrics with the same labelset after applying rule labels".into());
        }
        self.check_limit(series.len())?;
        Ok(series)
    }

    fn check_limit(&self, produced: usize) -> Result<(), String> {
        let limit = self.spec.limit;
        if limit > 0 && produced > limit {
            return Err(format!("exceeded limit of {limit} with {produced} series"));
        }
        if produced > MAX_SERIES_PER_RULE {
            return Err(format!(
                "exceeded Ringtail's limit of {MAX_SERIES_PER_RULE} series per rule and evaluation with {produced} series"
            ));
        }
        Ok(())
    }

    /// Writes `series` at `ts_ms` and a staleness marker for every series rule `index` wrote last
    /// time and not now; returns the samples written.
    fn write(&self, db: &Db, index: usize, series: Vec<(Labels, f64)>, ts_ms: i64) -> Result<usize, String> {
        let current: HashSet<Labels> = series.iter().map(|(labels, _)| labels.clone()).collect();
        let previous = std::mem::take(&mut self.previous.lock()[index]);
        let stale: Vec<Labels> = previous.into_iter().filter(|labels| !current.contains(labels)).collect();
        let mut entries: Vec<(Labels, f64)> = series;
        entries.extend(stale.into_iter().map(|labels| (labels, tsdb::stale_nan())));
        let written = entries.len();
        self.previous.lock()[index] = current;
        append(db, &entries, ts_ms).map_err(|e| format!("storing the result failed: {e}"))?;
        Ok(written)
    }

    /// Carries what `old` (the same group before a reload changed it) wrote over to this one,
    /// for each rule of the same name and labels (in order, as Prometheus's `CopyState`), with
    /// their status; what is not carried over stays in `old`.
    pub fn take_state_from(&self, old: &Group) {
        let mut old_previous = old.previous.lock();
        let old_status = old.status.lock();
        let mut previous = self.previous.lock();
        let mut status = self.status.lock();
        let mut taken = vec![false; old.spec.rules.len()];
        for (index, rule) in self.spec.rules.iter().enumerate() {
            let found = old.spec.rules.iter().enumerate().position(|(i, candidate)| {
                !taken[i] && candidate.name() == rule.name() && candidate.labels == rule.labels
            });
            if let Some(i) = found {
                taken[i] = true;
                previous[index] = std::mem::take(&mut old_previous[i]);
                status.rules[index] = old_status.rules[i].clone();
            }
        }
        status.last_evaluation = old_status.last_evaluation;
        status.evaluation_seconds = old_status.evaluation_seconds;
    }

    /// Writes a staleness marker at `ts_ms` for every series this group wrote last (a group that
    /// was removed, or what a changed group no longer has).
    pub fn mark_all_stale(&self, db: &Db, ts_ms: i64) {
        let stale: Vec<(Labels, f64)> = self
            .previous
            .lock()
            .iter_mut()
            .flat_map(std::mem::take)
            .map(|labels| (labels, tsdb::stale_nan()))
            .collect();
        if let Err(e) = append(db, &stale, ts_ms) {
            tracing::warn!(group = %self.spec.name, error = %e, "writing staleness markers failed");
        }
    }
}

/// The store's view of `(labels, value)` pairs at one timestamp, in one append.
fn append(db: &Db, entries: &[(Labels, f64)], ts_ms: i64) -> Result<(), tsdb::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let pairs: Vec<Vec<(&str, &str)>> = entries
        .iter()
        .map(|(labels, _)| labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect())
        .collect();
    let samples: Vec<[Sample; 1]> = entries.iter().map(|(_, value)| [Sample::new(ts_ms, *value)]).collect();
    let batch: Vec<SeriesSamples<'_>> =
        pairs.iter().zip(&samples).map(|(labels, sample)| SeriesSamples::labels(labels, sample)).collect();
    let report = db.append(&batch)?;
    if !report.rejections.is_empty() {
        // The same timestamp twice (a group replaced within one interval) is not worth an error.
        tracing::debug!(rejected = report.rejections.len(), "some rule samples were refused by the store");
    }
    Ok(())
}

/// A rule's result as series: a vector as it is, a scalar as one series without labels.
fn as_vector(value: query::Value) -> Result<Vec<(Labels, f64)>, String> {
    match value {
        query::Value::Vector(samples) => Ok(samples.into_iter().map(|s| (s.labels, s.value)).collect()),
        query::Value::Scalar { value, .. } => Ok(vec![(Labels::default(), value)]),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::file::parse_file;
    use std::time::Duration;

    fn setup(rules_yaml: &str) -> (Arc<Db>, query::Engine, Group) {
        let db = Arc::new(Db::open(tsdb::Options::in_memory()).unwrap());
        let engine = query::Engine::new(db.clone(), query::EngineOptions::default());
        let spec = parse_file("r.yaml", rules_yaml, Duration::from_secs(1)).unwrap().remove(0);
        (db, engine, Group::new(Arc::new(spec)))
    }

    fn put(db: &Db, labels: &[(&str, &str)], ts_ms: i64, value: f64) {
        db.append(&[SeriesSamples::labels(labels, &[Sample::new(ts_ms, value)])]).unwrap();
    }

    fn exported(engine: &query::Engine, selector: &str, ts_ms: i64) -> Vec<(String, f64)> {
        match engine.instant(&format!("{selector}[1h]"), ts_ms).unwrap() {
            query::Value::Matrix(series) => series
                .into_iter()
                .flat_map(|s| {
                    let name = s.labels.to_string();
                    s.points.into_iter().map(move |(_, v)| (name.clone(), v))
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn results_are_named_relabelled_written_and_end_with_a_staleness_marker() {
        let (db, engine, group) = setup(
            "groups:\n- name: g\n  rules:\n  - record: job:x:sum\n    expr: sum by (job) (x)\n    labels: {team: a}\n\
             \x20 - record: two\n    expr: 1 + 1\n  - record: bad\n    expr: x + on() group_left x\n",
        );
        let metrics = RuleMetrics::default();
        let t0 = 1_000_000;
        put(&db, &[("__name__", "x"), ("job", "j1"), ("i", "1")], t0, 2.0);
        put(&db, &[("__name__", "x"), ("job", "j1"), ("i", "2")], t0, 3.0);
        put(&db, &[("__name__", "x"), ("job", "j2"), ("i", "1")], t0, 5.0);
        group.evaluate(&engine, t0, &metrics);
        let status = group.status();
        assert_eq!(status.rules[0].health, Health::Ok);
        assert_eq!(status.rules[1].health, Health::Ok);
        assert_eq!(status.rules[2].health, Health::Err, "many-to-one match fails");
        assert!(status.rules[2].last_error.as_deref().is_some_and(|e| !e.is_empty()));
        assert!(status.last_evaluation.is_some());
        let recorded = exported(&engine, "job:x:sum", t0);
        assert_eq!(
            recorded,
            vec![
                ("job:x:sum{job=\"j1\", team=\"a\"}".to_string(), 5.0),
                ("job:x:sum{job=\"j2\", team=\"a\"}".to_string(), 5.0)
            ]
        );
        assert_eq!(exported(&engine, "two", t0), vec![("two{}".to_string(), 2.0)]);

        // j2 goes away: its recorded series gets a staleness marker at the next evaluation.
        let t1 = t0 + 1000;
        put(&db, &[("__name__", "x"), ("job", "j1"), ("i", "1")], t1, 4.0);
        put(&db, &[("__name__", "x"), ("job", "j2"), ("i", "1")], t1, tsdb::stale_nan());
        group.evaluate(&engine, t1, &metrics);
        let raw = db.select(&[tsdb::Matcher::equal("job", "j2"), tsdb::Matcher::equal("team", "a")], 0, i64::MAX);
        let raw = raw.unwrap();
        assert_eq!(raw.len(), 1);
        let values: Vec<f64> = raw[0].samples().map(|s| s.value).collect();
        assert_eq!(values.len(), 2);
        assert!(tsdb::is_stale_nan(values[1]), "{values:?}");
        let label = GroupLabel { rule_group: "r.yaml;g".into() };
        assert_eq!(metrics.evaluations.get_or_create(&label).get(), 6);
        assert_eq!(metrics.failures.get_or_create(&label).get(), 2);
    }

    #[test]
    fn a_rule_over_its_limit_fails_writes_nothing_and_ends_its_series() {
        let (db, engine, group) = setup("groups:\n- name: g\n  limit: 1\n  rules:\n  - record: copy\n    expr: x\n");
        let metrics = RuleMetrics::default();
        put(&db, &[("__name__", "x"), ("i", "1")], 1000, 1.0);
        group.evaluate(&engine, 1000, &metrics);
        assert_eq!(group.status().rules[0].health, Health::Ok);
        put(&db, &[("__name__", "x"), ("i", "2")], 2000, 1.0);
        group.evaluate(&engine, 2000, &metrics);
        let status = group.status();
        assert_eq!(status.rules[0].health, Health::Err);
        assert_eq!(status.rules[0].last_error.as_deref(), Some("exceeded limit of 1 with 2 series"));
        let raw = db.select(&[tsdb::Matcher::equal("__name__", "copy")], 0, i64::MAX).unwrap();
        assert_eq!(raw.len(), 1, "nothing of the failed evaluation was written");
        let values: Vec<f64> = raw[0].samples().map(|s| s.value).collect();
        assert!(values.len() == 2 && tsdb::is_stale_nan(values[1]), "{values:?}");
    }

    #[test]
    fn duplicate_label_sets_after_relabelling_fail_the_rule() {
        let (db, engine, group) =
            setup("groups:\n- name: g\n  rules:\n  - record: r\n    expr: x\n    labels: {i: same}\n");
        put(&db, &[("__name__", "x"), ("i", "1")], 1000, 1.0);
        put(&db, &[("__name__", "x"), ("i", "2")], 1000, 1.0);
        group.evaluate(&engine, 1000, &RuleMetrics::default());
        let error = group.status().rules[0].last_error.clone().unwrap_or_default();
        assert!(error.contains("same labelset after applying rule labels"), "{error}");
    }

    #[test]
    fn alerting_rules_go_pending_then_firing_and_write_nothing() {
        let (db, engine, group) = setup(
            "groups:\n- name: g\n  rules:\n  - alert: Now\n    expr: x > 0\n    labels: {severity: page}\n\
             \x20 - alert: Later\n    expr: x > 0\n    for: 1h\n",
        );
        put(&db, &[("__name__", "x"), ("i", "1")], 1000, 1.0);
        group.evaluate(&engine, 1000, &RuleMetrics::default());
        let status = group.status();
        let now = &status.rules[0].alerts;
        assert_eq!(now.len(), 1);
        assert!(now[0].firing);
        assert_eq!(now[0].labels.get("alertname"), Some("Now"));
        assert_eq!(now[0].labels.get("severity"), Some("page"));
        assert_eq!(now[0].labels.get("__name__"), None);
        assert!(!status.rules[1].alerts[0].firing, "pending for an hour");
        assert_eq!(db.select(&[tsdb::Matcher::equal("__name__", "ALERTS")], 0, i64::MAX).unwrap().len(), 0);
    }

    #[test]
    fn state_carries_over_to_a_changed_group_by_rule_name_and_labels() {
        let (db, engine, old) =
            setup("groups:\n- name: g\n  rules:\n  - record: a\n    expr: x\n  - record: b\n    expr: x\n");
        put(&db, &[("__name__", "x")], 1000, 1.0);
        old.evaluate(&engine, 1000, &RuleMetrics::default());
        let spec = parse_file(
            "r.yaml",
            "groups:\n- name: g\n  rules:\n  - record: a\n    expr: x * 2\n",
            Duration::from_secs(1),
        )
        .unwrap()
        .remove(0);
        let new = Group::new(Arc::new(spec));
        new.take_state_from(&old);
        assert_eq!(new.status().rules[0].health, Health::Ok);
        old.mark_all_stale(&db, 1500);
        let b = db.select(&[tsdb::Matcher::equal("__name__", "b")], 0, i64::MAX).unwrap();
        assert!(tsdb::is_stale_nan(b[0].samples().last().unwrap().value), "rule b is gone: its series ends");
        let a = db.select(&[tsdb::Matcher::equal("__name__", "a")], 0, i64::MAX).unwrap();
        assert_eq!(a[0].samples().count(), 1, "rule a is carried over, not marked stale");
    }
}
