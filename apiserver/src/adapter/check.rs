//! `Explanation` is what the adapter rules make of the store now: for each rule, the series its
//! `seriesQuery` matches, the names a filter dropped, the metrics it serves with their resources
//! and an example URL and query, and why a series gives no metric (no series match, a filter
//! dropped it, the `resources` labels are absent). [`ObjectExplanation`] answers the same for one
//! object: the value it gets, or why it gets none (including "the query returns nothing").
//!
//! One computation, two renderings: `ringtail adapter-config check FILE` ([`explain`]) writes it
//! as text, and the web UI's `GET /api/ringtail/v1/adapter` (`crate::http::ui_api`) as JSON, so
//! both always give the same answer.

use super::provider::discover;
use super::provider::resources::{BuiltinResolver, GroupResource, ObjectResolver, StandaloneResolver};
use super::provider::{CustomMetricRequest, ObjectSelection, Provider, ProviderErrorKind};
use super::rules::query::{ObjectNames, QueryInput};
use super::rules::selector::LabelSelector;
use super::rules::{CompiledRule, RuleSet};
use super::AdapterError;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Most series of one rule an explanation looks at: the store lists them all, but only this many
/// are grouped by name, so one broad `seriesQuery` cannot make the answer huge or slow.
pub const MAX_SERIES_EXAMINED: usize = 100_000;
/// Most series names listed per rule (the count of all names is still given).
pub const MAX_NAMES_LISTED: usize = 200;
/// Most metrics listed per rule as served (each carries an example query).
pub const MAX_SERVED_LISTED: usize = 200;

/// The reason given when a rule's `seriesQuery` matches nothing.
pub const NO_SERIES_MATCH: &str = "no series match seriesQuery";
/// The reason given when the query of a served metric returns nothing for the object asked about.
pub const QUERY_RETURNS_NOTHING: &str = "the query returns nothing for this object";

/// The rules in force, explained against the store's series.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// Where the rules came from (a file path, or the embedded default).
    pub source: String,
    pub custom_rules: usize,
    pub external_rules: usize,
    /// Warnings from loading the file.
    pub warnings: Vec<String>,
    /// `resourceRules`, when given.
    pub resource_rules: Option<ResourceRulesExplanation>,
    /// Whether live series were looked at (the CLI without `--data-dir` only compiles).
    pub live: bool,
    /// Why the store could not be listed, when it could not.
    pub list_error: Option<String>,
    /// Every rule, `rules` first, then `externalRules`.
    pub rules: Vec<RuleExplanation>,
}

/// What `resourceRules` serve (`metrics.k8s.io`).
#[derive(Debug, Clone, Serialize)]
pub struct ResourceRulesExplanation {
    /// The rate window, as written in a config file.
    pub window: String,
    /// `(query key, rendered example)` for cpu and memory.
    pub examples: Vec<(String, String)>,
}

/// One rule against the store.
#[derive(Debug, Clone, Serialize)]
pub struct RuleExplanation {
    /// `rules[0]` / `externalRules[1]`.
    pub at: String,
    pub external: bool,
    pub series_query: String,
    pub metrics_query: String,
    /// Series the `seriesQuery` matches now (at most [`MAX_SERIES_EXAMINED`] looked at).
    pub series_matched: usize,
    /// More series matched than were looked at.
    pub series_truncated: bool,
    /// Distinct series names among the series looked at.
    pub names_total: usize,
    /// The first [`MAX_NAMES_LISTED`] names, sorted, with what became of each.
    pub names: Vec<NameExplanation>,
    /// Metrics this rule serves now (at most [`MAX_SERVED_LISTED`]).
    pub served: Vec<ServedMetric>,
    /// Why this rule serves less than it might, one sentence each (empty when all is well).
    pub problems: Vec<String>,
}

/// What became of one series name under a rule.
#[derive(Debug, Clone, Serialize)]
pub struct NameExplanation {
    pub name: String,
    pub series: usize,
    /// The API metric name, or `None` when `seriesFilters`/`name.matches` dropped it.
    pub metric: Option<String>,
    /// Labels `resources.overrides` names that none of this name's series carry, with the
    /// resource each would attach to.
    pub absent_labels: Vec<AbsentLabel>,
    /// The resources the series attach to (empty: the metric is attached to nothing).
    pub resources: Vec<String>,
}

/// A resource label missing from a series name.
#[derive(Debug, Clone, Serialize)]
pub struct AbsentLabel {
    pub label: String,
    pub resource: String,
}

/// One metric a rule serves.
#[derive(Debug, Clone, Serialize)]
pub struct ServedMetric {
    /// `pods`, `deployments.apps`, … (empty for an external metric).
    pub resource: String,
    pub metric: String,
    pub series_name: String,
    pub namespaced: bool,
    /// The label naming the object.
    pub label: String,
    /// An example request path, with an object and namespace from a live series when one exists.
    pub example_url: String,
    /// The query that request runs, or why it cannot be built.
    pub example_query: Result<String, String>,
}

/// One object's value of a custom metric, or why it has none.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectExplanation {
    pub metric: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
    /// The value the API serves now, when it serves one.
    pub value: Option<f64>,
    /// Why there is no value (empty when there is one).
    pub reasons: Vec<String>,
}

/// Writes the explanation of `config_path` to `out`, with live series from `db` if given.
/// Returns an error (and writes nothing misleading) when the file does not load.
pub fn explain(
    config_path: &Path,
    db: Option<Arc<tsdb::Db>>,
    lookback: Duration,
    out: &mut dyn Write,
) -> Result<(), AdapterError> {
    let resolver: Arc<dyn ObjectResolver> = match &db {
        Some(db) => Arc::new(StandaloneResolver::new(db.clone(), lookback)),
        None => Arc::new(BuiltinResolver),
    };
    let (rules, warnings) = super::rules::load_rules(Some(config_path), super::DEFAULT_RATE_WINDOW, resolver.as_ref())?;
    let mut explanation = explanation(&rules, db.as_deref(), resolver.as_ref(), lookback, tsdb::now_ms())?;
    explanation.source = config_path.display().to_string();
    explanation.warnings = warnings;
    write_text(&explanation, out).map_err(AdapterError::Output)
}

/// Explains `rules` against the series of `db` seen within `lookback` of `now_ms` (`None`: the
/// rules only). Errors only when a `resourceRules` example cannot be rendered.
pub(crate) fn explanation(
    rules: &RuleSet,
    db: Option<&tsdb::Db>,
    resolver: &dyn ObjectResolver,
    lookback: Duration,
    now_ms: i64,
) -> Result<Explanation, AdapterError> {
    let resource_rules = match &rules.resource {
        Some(resource) => {
            let mut examples = Vec::new();
            for query in [&resource.cpu, &resource.memory] {
                examples.extend(query.example_texts()?);
            }
            Some(ResourceRulesExplanation {
                window: super::rules::config::prom_duration(resource.window),
                examples: examples.into_iter().map(|(at, text)| (at, text.trim().to_string())).collect(),
            })
        }
        None => None,
    };
    let mut explanation = Explanation {
        source: rules.source.clone(),
        custom_rules: rules.custom.len(),
        external_rules: rules.external.len(),
        warnings: Vec::new(),
        resource_rules,
        live: db.is_some(),
        list_error: None,
        rules: Vec::new(),
    };
    let all = rules.custom.iter().map(|r| (r, false)).chain(rules.external.iter().map(|r| (r, true)));
    let Some(db) = db else {
        explanation.rules = all.map(|(rule, external)| rule_without_store(rule, external)).collect();
        return Ok(explanation);
    };
    let snapshot = match discover(rules, db, None, resolver, lookback, now_ms, false) {
        Ok(s) => s,
        Err(e) => {
            explanation.list_error = Some(e.to_string());
            return Ok(explanation);
        }
    };
    let mint_ms = now_ms - lookback.as_millis() as i64;
    for (index, rule) in rules.custom.iter().enumerate() {
        let (mut out, series) = rule_against_series(rule, false, db, resolver, mint_ms, now_ms);
        for entry in snapshot.custom.iter().filter(|e| e.rule == index).take(MAX_SERVED_LISTED) {
            let mut served = ServedMetric {
                resource: entry.resource.group_resource.to_string(),
                metric: entry.metric_name.clone(),
                series_name: entry.series_name.clone(),
                namespaced: entry.namespaced,
                label: entry.label.clone(),
                example_url: String::new(),
                example_query: Err(String::new()),
            };
            let example = series.iter().find(|l| l.metric_name() == Some(entry.series_name.as_str()));
            add_example(rule, &entry.resource.group_resource, &mut served, example, resolver);
            out.served.push(served);
        }
        note_unserved(&mut out);
        explanation.rules.push(out);
    }
    let empty = LabelSelector::default();
    for (index, rule) in rules.external.iter().enumerate() {
        let (mut out, _) = rule_against_series(rule, true, db, resolver, mint_ms, now_ms);
        for entry in snapshot.external.iter().filter(|e| e.rule == index).take(MAX_SERVED_LISTED) {
            out.served.push(ServedMetric {
                resource: String::new(),
                metric: entry.metric_name.clone(),
                series_name: entry.series_name.clone(),
                namespaced: rule.namespaced,
                label: String::new(),
                example_url: format!(
                    "/apis/external.metrics.k8s.io/v1beta1/namespaces/NAMESPACE/{}",
                    entry.metric_name
                ),
                example_query: rule
                    .build_external_query(&entry.series_name, "NAMESPACE", &empty, resolver)
                    .and_then(|q| q.text(rule))
                    .map(|t| t.trim().to_string())
                    .map_err(|e| e.to_string()),
            });
        }
        note_unserved(&mut out);
        explanation.rules.push(out);
    }
    Ok(explanation)
}

fn rule_without_store(rule: &CompiledRule, external: bool) -> RuleExplanation {
    RuleExplanation {
        at: rule.at.clone(),
        external,
        series_query: rule.series_query.clone(),
        metrics_query: rule.metrics_query.source().trim().to_string(),
        series_matched: 0,
        series_truncated: false,
        names_total: 0,
        names: Vec::new(),
        served: Vec::new(),
        problems: Vec::new(),
    }
}

/// The rule's series grouped by name (bounded), with what became of each name; the series looked
/// at are returned for picking example objects.
fn rule_against_series(
    rule: &CompiledRule,
    external: bool,
    db: &tsdb::Db,
    resolver: &dyn ObjectResolver,
    mint_ms: i64,
    now_ms: i64,
) -> (RuleExplanation, Vec<tsdb::Labels>) {
    let mut out = rule_without_store(rule, external);
    let mut series = match db.series(&rule.series_matchers, mint_ms, now_ms) {
        Ok(series) => series,
        Err(e) => {
            out.problems.push(format!("cannot list series: {e}"));
            return (out, Vec::new());
        }
    };
    out.series_matched = series.len();
    if series.len() > MAX_SERIES_EXAMINED {
        series.truncate(MAX_SERIES_EXAMINED);
        out.series_truncated = true;
    }
    // Per name: series count and the union of label names (as series discovery sees them).
    let mut by_name: BTreeMap<&str, (usize, BTreeSet<&str>)> = BTreeMap::new();
    for labels in &series {
        if let Some(name) = labels.metric_name() {
            let (count, names) = by_name.entry(name).or_default();
            *count += 1;
            names.extend(labels.iter().map(|l| l.name.as_str()));
        }
    }
    out.names_total = by_name.len();
    for (name, (count, label_names)) in by_name.iter().take(MAX_NAMES_LISTED) {
        let metric = rule.metric_name(name);
        let (absent_labels, resources) = if metric.is_some() && !external {
            let absent = rule
                .override_labels()
                .filter(|(label, _)| !label_names.contains(label))
                .map(|(label, resource)| AbsentLabel { label: label.to_string(), resource: resource.to_string() })
                .collect();
            let resources = rule
                .resources_for_labels(label_names.iter().copied(), resolver)
                .into_iter()
                .map(|(info, _)| info.group_resource.to_string())
                .collect();
            (absent, resources)
        } else {
            (Vec::new(), Vec::new())
        };
        out.names.push(NameExplanation { name: name.to_string(), series: *count, metric, absent_labels, resources });
    }
    if out.series_matched == 0 {
        out.problems.push(NO_SERIES_MATCH.to_string());
    }
    (out, series)
}

/// Adds a problem for each listed name that gives no metric, or attaches to nothing.
fn note_unserved(out: &mut RuleExplanation) {
    let dropped: Vec<&str> = out.names.iter().filter(|n| n.metric.is_none()).map(|n| n.name.as_str()).collect();
    if !dropped.is_empty() {
        out.problems.push(format!("seriesFilters/name.matches dropped {}", dropped.join(", ")));
    }
    if out.external {
        return;
    }
    for name in out.names.iter().filter(|n| n.metric.is_some()) {
        for absent in &name.absent_labels {
            out.problems.push(format!(
                "label {} absent from {}: not attached to {} (resources.overrides)",
                absent.label, name.name, absent.resource
            ));
        }
        if name.resources.is_empty() && name.absent_labels.is_empty() {
            out.problems.push(format!("{}: no label of its series names a resource (resources)", name.name));
        }
    }
}

/// Fills in `served`'s example URL and query, for the object of `example` if any.
fn add_example(
    rule: &CompiledRule,
    resource: &GroupResource,
    served: &mut ServedMetric,
    example: Option<&tsdb::Labels>,
    resolver: &dyn ObjectResolver,
) {
    let empty = LabelSelector::default();
    let object = example.and_then(|l| l.get(&served.label)).unwrap_or("NAME");
    let namespace_label = rule.label_for_resource(&GroupResource::namespaces(), resolver);
    let namespace = served
        .namespaced
        .then(|| example.and_then(|l| namespace_label.as_deref().and_then(|n| l.get(n))).unwrap_or("NAMESPACE"));
    let metric = &served.metric;
    served.example_url = match (namespace, *resource == GroupResource::namespaces()) {
        (_, true) => format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/{object}/metrics/{metric}"),
        (Some(ns), false) => {
            format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/{resource}/{object}/{metric}")
        }
        (None, false) => format!("/apis/custom.metrics.k8s.io/v1beta2/{resource}/{object}/{metric}"),
    };
    let query = rule.build_query(
        &QueryInput {
            series: &served.series_name,
            resource,
            namespace,
            names: ObjectNames::One(object),
            metric_selector: &empty,
        },
        resolver,
    );
    served.example_query = query.and_then(|q| q.text(rule)).map(|t| t.trim().to_string()).map_err(|e| e.to_string());
}

/// Asks `provider` for `metric` of one object, as the custom-metrics API would, and explains an
/// empty answer with `explanation` (the rules in force against the store). Blocks on the store
/// and the engine.
pub(crate) fn explain_object(
    provider: &Provider,
    explanation: &Explanation,
    metric: &str,
    resource: &str,
    namespace: Option<&str>,
    name: &str,
) -> ObjectExplanation {
    let parsed = GroupResource::parse(resource);
    let group_resource = provider
        .resolver()
        .resource_info(&parsed.group, &parsed.resource)
        .map(|info| info.group_resource)
        .unwrap_or(parsed);
    let mut answer = ObjectExplanation {
        metric: metric.to_string(),
        resource: group_resource.to_string(),
        namespace: namespace.map(str::to_string),
        name: name.to_string(),
        value: None,
        reasons: Vec::new(),
    };
    let served = explanation
        .rules
        .iter()
        .flat_map(|r| &r.served)
        .any(|s| s.metric == metric && s.resource == answer.resource && s.namespaced == namespace.is_some());
    let request = CustomMetricRequest {
        resource: group_resource,
        namespace: namespace.map(str::to_string),
        objects: ObjectSelection::Named(name.to_string()),
        metric: metric.to_string(),
        metric_selector: LabelSelector::default(),
    };
    match provider.custom_metric(&request) {
        Ok(values) => match values.items.iter().find(|item| item.name == name) {
            Some(item) => answer.value = Some(item.value.as_f64()),
            None => answer.reasons.push(QUERY_RETURNS_NOTHING.to_string()),
        },
        Err(e) => {
            answer.reasons.push(e.message.clone());
            match (e.kind, served) {
                (ProviderErrorKind::NotFound, true) => answer.reasons.push(QUERY_RETURNS_NOTHING.to_string()),
                (ProviderErrorKind::NotFound, false) => answer.reasons.extend(why_no_metric(explanation, metric)),
                _ => {}
            }
        }
    }
    answer
}

/// The reasons the rules give no `metric`: from the rules whose names map to it, or else every
/// custom rule's problems.
fn why_no_metric(explanation: &Explanation, metric: &str) -> Vec<String> {
    let custom = explanation.rules.iter().filter(|r| !r.external);
    let mut reasons = Vec::new();
    for rule in custom.clone() {
        for name in rule.names.iter().filter(|n| n.metric.as_deref() == Some(metric)) {
            for absent in &name.absent_labels {
                reasons.push(format!(
                    "{}: label {} absent from {}: not attached to {}",
                    rule.at, absent.label, name.name, absent.resource
                ));
            }
            if !name.resources.is_empty() {
                reasons.push(format!("{}: {} attaches to {} only", rule.at, name.name, name.resources.join(", ")));
            }
        }
    }
    if reasons.is_empty() {
        for rule in custom.filter(|r| !r.problems.is_empty()) {
            reasons.push(format!("{}: {}", rule.at, rule.problems.join("; ")));
        }
    }
    reasons
}

/// The text `ringtail adapter-config check` prints.
fn write_text(explanation: &Explanation, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {} rules, {} externalRules: OK",
        explanation.source, explanation.custom_rules, explanation.external_rules
    )?;
    for warning in &explanation.warnings {
        writeln!(out, "warning: {warning}")?;
    }
    if let Some(resource) = &explanation.resource_rules {
        writeln!(out, "resourceRules: cpu and memory served as metrics.k8s.io/v1beta1 (window {})", resource.window)?;
        for (at, text) in &resource.examples {
            writeln!(out, "  {at} (every pod of namespace default / every node):\n    {text}")?;
        }
    }
    if !explanation.live {
        writeln!(out, "(no store given: rules compile; live series are not shown)")?;
        for rule in &explanation.rules {
            writeln!(out, "\n{}: seriesQuery {}\n  metricsQuery: {}", rule.at, rule.series_query, rule.metrics_query)?;
        }
        return Ok(());
    }
    if let Some(error) = &explanation.list_error {
        return writeln!(out, "cannot list series: {error}");
    }
    for rule in &explanation.rules {
        writeln!(out, "\n{}: seriesQuery {}", rule.at, rule.series_query)?;
        if rule.external {
            write_external_rule(rule, out)?;
            continue;
        }
        let more =
            if rule.series_truncated { format!(", the first {MAX_SERIES_EXAMINED} looked at") } else { String::new() };
        writeln!(out, "  matches {} series now ({} names{more})", rule.series_matched, rule.names_total)?;
        for name in &rule.names {
            let verdict = match &name.metric {
                Some(metric) => format!("→ metric {metric}"),
                None => "excluded by seriesFilters/name.matches".to_string(),
            };
            writeln!(out, "    {} ({} series) {verdict}", name.name, name.series)?;
        }
        if rule.names.len() < rule.names_total {
            writeln!(out, "    … {} more names", rule.names_total - rule.names.len())?;
        }
        for served in &rule.served {
            let scope = if served.namespaced { "namespaced" } else { "root" };
            writeln!(out, "  serves {}/{} ({scope}, object label {:?})", served.resource, served.metric, served.label)?;
            match &served.example_query {
                Ok(text) => writeln!(
                    out,
                    "    e.g. GET {}\n      runs: {}",
                    served.example_url,
                    text.replace('\n', "\n            ")
                )?,
                Err(e) => writeln!(out, "    e.g. GET {}\n      cannot build the query: {e}", served.example_url)?,
            }
        }
        for problem in &rule.problems {
            writeln!(out, "  ! {problem}")?;
        }
    }
    Ok(())
}

fn write_external_rule(rule: &RuleExplanation, out: &mut dyn Write) -> std::io::Result<()> {
    for served in &rule.served {
        writeln!(out, "  serves external metric {} (series {})", served.metric, served.series_name)?;
        match &served.example_query {
            Ok(text) => writeln!(out, "    e.g. GET {}\n      runs: {text}", served.example_url)?,
            Err(e) => writeln!(out, "    cannot build the query: {e}")?,
        }
    }
    for problem in &rule.problems {
        writeln!(out, "  ! {problem}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_AND_BROKEN: &str = "rules:\n\
        - seriesQuery: '{__name__=\"ei_scale_ratio\",pod!=\"\"}'\n  resources:\n    overrides:\n      \
          pod: {resource: pod}\n      namespace: {resource: namespace}\n  \
          metricsQuery: 'avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n\
        - seriesQuery: '{__name__=\"absent_metric_total\"}'\n  resources:\n    overrides:\n      \
          pod: {resource: pod}\n  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n\
        - seriesQuery: '{__name__=~\"ei_.*\"}'\n  seriesFilters:\n  - isNot: '^ei_scale_ratio$'\n  \
          resources:\n    overrides:\n      container_name: {resource: pod}\n  \
          metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n";

    fn store_with(series: &[&[(&str, &str)]]) -> (tempfile::TempDir, Arc<tsdb::Db>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(tsdb::Db::open(tsdb::Options::new(dir.path().join("data"))).unwrap());
        let sample = [tsdb::Sample::new(tsdb::now_ms(), 2.0)];
        for labels in series {
            db.append(&[tsdb::SeriesSamples::labels(labels, &sample)]).unwrap();
        }
        (dir, db)
    }

    #[test]
    fn explains_rules_against_live_series() {
        let (dir, db) = store_with(&[&[("__name__", "ei_scale_ratio"), ("namespace", "default"), ("pod", "web-0")]]);
        let config = dir.path().join("adapter.yaml");
        std::fs::write(
            &config,
            "rules:\n- seriesQuery: '{__name__=\"ei_scale_ratio\",pod!=\"\"}'\n  resources:\n    overrides:\n      pod: {resource: pod}\n      namespace: {resource: namespace}\n  metricsQuery: 'avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n",
        )
        .unwrap();
        let mut out = Vec::new();
        explain(&config, Some(db), Duration::from_secs(600), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("serves pods/ei_scale_ratio (namespaced"), "{text}");
        assert!(text.contains("/namespaces/default/pods/web-0/ei_scale_ratio"), "{text}");
        assert!(text.contains("avg(ei_scale_ratio{namespace=\"default\",pod=\"web-0\"}) by (pod)"), "{text}");
        assert!(!text.contains(" ! "), "no problem for a good rule: {text}");
    }

    #[test]
    fn a_bad_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("adapter.yaml");
        std::fs::write(&config, "rules:\n- seriesQuery: 'up'\n  metricsQuery: '<<.Nope>>'\n").unwrap();
        let mut out = Vec::new();
        assert!(explain(&config, None, Duration::from_secs(600), &mut out).is_err());
    }

    #[test]
    fn broken_rules_say_why_in_text_and_structure() {
        let (dir, db) = store_with(&[
            &[("__name__", "ei_scale_ratio"), ("namespace", "default"), ("pod", "web-0")],
            &[("__name__", "ei_queue_depth"), ("namespace", "default"), ("pod", "web-0")],
        ]);
        let config = dir.path().join("adapter.yaml");
        std::fs::write(&config, GOOD_AND_BROKEN).unwrap();
        let mut out = Vec::new();
        explain(&config, Some(db.clone()), Duration::from_secs(600), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("rules[1]: seriesQuery") && text.contains(&format!("! {NO_SERIES_MATCH}")), "{text}");
        assert!(text.contains("ei_scale_ratio (1 series) excluded by seriesFilters/name.matches"), "{text}");
        assert!(text.contains("label container_name absent from ei_queue_depth"), "{text}");

        let resolver = StandaloneResolver::new(db.clone(), Duration::from_secs(600));
        let (rules, _) = crate::adapter::rules::load_rules(Some(&config), Duration::from_secs(300), &resolver).unwrap();
        let got = explanation(&rules, Some(&db), &resolver, Duration::from_secs(600), tsdb::now_ms()).unwrap();
        assert_eq!(got.rules.len(), 3);
        let served: Vec<&str> = got.rules[0].served.iter().map(|s| s.resource.as_str()).collect();
        assert_eq!(served, ["namespaces", "pods"], "{:?}", got.rules[0]);
        assert_eq!(got.rules[1].problems, [NO_SERIES_MATCH]);
        let third = &got.rules[2];
        assert!(third.served.is_empty(), "{third:?}");
        assert_eq!(third.names.len(), 2);
        assert_eq!(third.names[0].absent_labels[0].label, "container_name");
        assert_eq!(third.names[1].metric, None, "{third:?}");
    }

    #[test]
    fn the_series_looked_at_and_the_names_listed_are_bounded() {
        let (_dir, db) = store_with(&[]);
        let now = tsdb::now_ms();
        let names: Vec<String> = (0..MAX_NAMES_LISTED + 5).map(|i| format!("many_{i:04}")).collect();
        let batch: Vec<[(&str, &str); 2]> = names.iter().map(|n| [("__name__", n.as_str()), ("pod", "p")]).collect();
        let sample = [tsdb::Sample::new(now, 1.0)];
        let series: Vec<_> = batch.iter().map(|l| tsdb::SeriesSamples::labels(l, &sample)).collect();
        db.append(&series).unwrap();
        let resolver = StandaloneResolver::new(db.clone(), Duration::from_secs(600));
        let config = crate::adapter::rules::config::AdapterConfig::parse(
            "rules:\n- seriesQuery: '{__name__=~\"many_.*\"}'\n  resources: {overrides: {pod: {resource: pod}}}\n  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n",
            Path::new("t.yaml"),
        )
        .unwrap();
        let rules = crate::adapter::rules::compile_rules(&config, "t".into(), &resolver).unwrap();
        let got = explanation(&rules, Some(&db), &resolver, Duration::from_secs(600), now).unwrap();
        assert_eq!(got.rules[0].names_total, MAX_NAMES_LISTED + 5);
        assert_eq!(got.rules[0].names.len(), MAX_NAMES_LISTED);
        assert_eq!(got.rules[0].served.len(), MAX_SERVED_LISTED.min(MAX_NAMES_LISTED + 5));
    }
}
