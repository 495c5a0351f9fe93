//! `explain` is `ringtail adapter-config check FILE`: it loads and compiles a prometheus-adapter
//! config (any error is reported with the rule and key it concerns) and explains each rule —
//! which series it matches now in the store, the metric names and resources it produces, and
//! the URL and query an example object would get.

use super::provider::discover;
use super::provider::resources::{BuiltinResolver, GroupResource, ObjectResolver, StandaloneResolver};
use super::rules::query::{ObjectNames, QueryInput};
use super::rules::selector::LabelSelector;
use super::rules::RuleSet;
use super::AdapterError;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
    let io = AdapterError::Output;
    writeln!(
        out,
        "{}: {} rules, {} externalRules: OK",
        config_path.display(),
        rules.custom.len(),
        rules.external.len()
    )
    .map_err(io)?;
    for warning in warnings {
        writeln!(out, "warning: {warning}").map_err(io)?;
    }
    if let Some(resource) = &rules.resource {
        writeln!(
            out,
            "resourceRules: cpu and memory served as metrics.k8s.io/v1beta1 (window {})",
            super::rules::config::prom_duration(resource.window)
        )
        .map_err(io)?;
        for query in [&resource.cpu, &resource.memory] {
            for (at, text) in query.example_texts()? {
                writeln!(out, "  {at} (every pod of namespace default / every node):\n    {}", text.trim())
                    .map_err(io)?;
            }
        }
    }
    let Some(db) = db else {
        writeln!(out, "(no store given: rules compile; live series are not shown)").map_err(io)?;
        for rule in rules.custom.iter().chain(&rules.external) {
            writeln!(
                out,
                "\n{}: seriesQuery {}\n  metricsQuery: {}",
                rule.at,
                rule.series_query,
                rule.metrics_query.source().trim()
            )
            .map_err(io)?;
        }
        return Ok(());
    };
    explain_live(&rules, &db, resolver.as_ref(), lookback, out).map_err(io)
}

fn explain_live(
    rules: &RuleSet,
    db: &tsdb::Db,
    resolver: &dyn ObjectResolver,
    lookback: Duration,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let now_ms = tsdb::now_ms();
    let snapshot = match discover(rules, db, None, resolver, lookback, now_ms, false) {
        Ok(s) => s,
        Err(e) => return writeln!(out, "cannot list series: {e}"),
    };
    let empty = LabelSelector::default();
    for (index, rule) in rules.custom.iter().enumerate() {
        writeln!(out, "\n{}: seriesQuery {}", rule.at, rule.series_query)?;
        let series = db.series(&rule.series_matchers, now_ms - lookback.as_millis() as i64, now_ms).unwrap_or_default();
        let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
        for labels in &series {
            if let Some(name) = labels.metric_name() {
                *by_name.entry(name).or_default() += 1;
            }
        }
        writeln!(out, "  matches {} series now ({} names)", series.len(), by_name.len())?;
        for (name, count) in &by_name {
            let verdict = match rule.metric_name(name) {
                Some(metric) => format!("→ metric {metric}"),
                None => "excluded by seriesFilters/name.matches".to_string(),
            };
            writeln!(out, "    {name} ({count} series) {verdict}")?;
        }
        for entry in snapshot.custom.iter().filter(|e| e.rule == index) {
            let scope = if entry.namespaced { "namespaced" } else { "root" };
            writeln!(
                out,
                "  serves {}/{} ({scope}, object label {:?})",
                entry.resource.group_resource, entry.metric_name, entry.label
            )?;
            let example = series.iter().find(|l| l.metric_name() == Some(entry.series_name.as_str()));
            let object = example.and_then(|l| l.get(&entry.label)).unwrap_or("NAME");
            let namespace_label = rule.label_for_resource(&GroupResource::namespaces(), resolver);
            let namespace = entry.namespaced.then(|| {
                example.and_then(|l| namespace_label.as_deref().and_then(|n| l.get(n))).unwrap_or("NAMESPACE")
            });
            let url = match (namespace, entry.resource.group_resource == GroupResource::namespaces()) {
                (_, true) => {
                    format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/{object}/metrics/{}", entry.metric_name)
                }
                (Some(ns), false) => format!(
                    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/{}/{object}/{}",
                    entry.resource.group_resource, entry.metric_name
                ),
                (None, false) => format!(
                    "/apis/custom.metrics.k8s.io/v1beta2/{}/{object}/{}",
                    entry.resource.group_resource, entry.metric_name
                ),
            };
            let query = rule.build_query(
                &QueryInput {
                    series: &entry.series_name,
                    resource: &entry.resource.group_resource,
                    namespace,
                    names: ObjectNames::One(object),
                    metric_selector: &empty,
                },
                resolver,
            );
            match query.and_then(|q| q.text(rule)) {
                Ok(text) => {
                    writeln!(out, "    e.g. GET {url}\n      runs: {}", text.trim().replace('\n', "\n            "))?
                }
                Err(e) => writeln!(out, "    e.g. GET {url}\n      cannot build the query: {e}")?,
            }
        }
    }
    for (index, rule) in rules.external.iter().enumerate() {
        writeln!(out, "\n{}: seriesQuery {}", rule.at, rule.series_query)?;
        for entry in snapshot.external.iter().filter(|e| e.rule == index) {
            writeln!(out, "  serves external metric {} (series {})", entry.metric_name, entry.series_name)?;
            match rule
                .build_external_query(&entry.series_name, "NAMESPACE", &empty, resolver)
                .and_then(|q| q.text(rule))
            {
                Ok(text) => writeln!(
                    out,
                    "    e.g. GET /apis/external.metrics.k8s.io/v1beta1/namespaces/NAMESPACE/{}\n      runs: {}",
                    entry.metric_name,
                    text.trim()
                )?,
                Err(e) => writeln!(out, "    cannot build the query: {e}")?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_rules_against_live_series() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(tsdb::Db::open(tsdb::Options::new(dir.path().join("data"))).unwrap());
        let now = tsdb::now_ms();
        let sample = [tsdb::Sample::new(now, 2.0)];
        let labels = [("__name__", "ei_scale_ratio"), ("namespace", "default"), ("pod", "web-0")];
        db.append(&[tsdb::SeriesSamples::labels(&labels, &sample)]).unwrap();
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
    }

    #[test]
    fn a_bad_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("adapter.yaml");
        std::fs::write(&config, "rules:\n- seriesQuery: 'up'\n  metricsQuery: '<<.Nope>>'\n").unwrap();
        let mut out = Vec::new();
        assert!(explain(&config, None, Duration::from_secs(600), &mut out).is_err());
    }
}
