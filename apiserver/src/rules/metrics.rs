//! `RuleMetrics` is the rule manager's self-metrics, named as Prometheus's `prometheus_rule_*`
//! with Ringtail's prefix and the same `rule_group` label (`file;name`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct GroupLabel {
    pub(crate) rule_group: String,
}

/// See the module documentation. Cheap to clone; clones share the metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleMetrics {
    pub(crate) evaluations: Family<GroupLabel, Counter>,
    pub(crate) failures: Family<GroupLabel, Counter>,
    pub(crate) iterations: Family<GroupLabel, Counter>,
    pub(crate) missed: Family<GroupLabel, Counter>,
    pub(crate) last_duration: Family<GroupLabel, Gauge<f64, AtomicU64>>,
    pub(crate) last_evaluation: Family<GroupLabel, Gauge<f64, AtomicU64>>,
    pub(crate) last_samples: Family<GroupLabel, Gauge>,
    pub(crate) interval: Family<GroupLabel, Gauge<f64, AtomicU64>>,
    pub(crate) rules: Family<GroupLabel, Gauge>,
}

impl RuleMetrics {
    pub(crate) fn register(registry: &mut Registry) -> RuleMetrics {
        let m = RuleMetrics::default();
        registry.register("ringtail_rule_evaluations", "The total number of rule evaluations", m.evaluations.clone());
        registry.register(
            "ringtail_rule_evaluation_failures",
            "The total number of rule evaluation failures",
            m.failures.clone(),
        );
        registry.register(
            "ringtail_rule_group_iterations",
            "The total number of scheduled rule group evaluations, whether executed or missed",
            m.iterations.clone(),
        );
        registry.register(
            "ringtail_rule_group_iterations_missed",
            "The total number of rule group evaluations missed due to slow rule group evaluation",
            m.missed.clone(),
        );
        registry.register(
            "ringtail_rule_group_last_duration_seconds",
            "The duration of the last rule group evaluation",
            m.last_duration.clone(),
        );
        registry.register(
            "ringtail_rule_group_last_evaluation_timestamp_seconds",
            "The timestamp of the last rule group evaluation in seconds",
            m.last_evaluation.clone(),
        );
        registry.register(
            "ringtail_rule_group_last_evaluation_samples",
            "The number of samples returned during the last rule group evaluation",
            m.last_samples.clone(),
        );
        registry.register("ringtail_rule_group_interval_seconds", "The interval of a rule group", m.interval.clone());
        registry.register("ringtail_rule_group_rules", "The number of rules", m.rules.clone());
        m
    }

    /// Drops every series of a group that is no longer loaded.
    pub(crate) fn forget(&self, key: &str) {
        let label = GroupLabel { rule_group: key.to_string() };
        self.evaluations.remove(&label);
        self.failures.remove(&label);
        self.iterations.remove(&label);
        self.missed.remove(&label);
        self.last_duration.remove(&label);
        self.last_evaluation.remove(&label);
        self.last_samples.remove(&label);
        self.interval.remove(&label);
        self.rules.remove(&label);
    }
}
