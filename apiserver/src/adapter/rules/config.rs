//! `AdapterConfig` is a prometheus-adapter configuration file read unchanged: `rules`,
//! `externalRules` and `resourceRules`, each key spelled as prometheus-adapter spells it.
//!
//! Keys Ringtail does not know are an error naming every one of them with its path
//! (`rules[0].resources.overides`), so a typo never silently changes what is served.
//! `resourceRules` (compiled in `rules::resource`) serve `metrics.k8s.io`. The embedded default
//! used without `--adapter-config` is `AdapterConfig::embedded_default`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read adapter config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("adapter config {path}: not valid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("adapter config {path}: unknown keys (not part of the prometheus-adapter format): {}", keys.join(", "))]
    UnknownKeys { path: PathBuf, keys: Vec<String> },
    #[error("adapter config {path}: {at}: {message}")]
    Invalid { path: PathBuf, at: String, message: String },
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AdapterConfig {
    #[serde(default)]
    pub(crate) rules: Vec<DiscoveryRule>,
    #[serde(default)]
    pub(crate) external_rules: Vec<DiscoveryRule>,
    #[serde(default)]
    pub(crate) resource_rules: Option<ResourceRules>,
}

/// One rule: how to find series, tie them to resources, name them, and query them.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DiscoveryRule {
    #[serde(default)]
    pub(crate) series_query: String,
    #[serde(default)]
    pub(crate) series_filters: Vec<RegexFilter>,
    #[serde(default)]
    pub(crate) resources: ResourceMapping,
    #[serde(default)]
    pub(crate) name: NameMapping,
    #[serde(default)]
    pub(crate) metrics_query: String,
    #[serde(default)]
    pub(crate) label_value_replacements: Vec<LabelValueReplacement>,
    /// Ringtail's extension (like `ownerAggregation`): where the rule's series are found and
    /// its queries run when an external query source (`--prometheus-url`) is set.
    #[serde(default)]
    pub(crate) query_source: Option<RuleQuerySource>,
}

/// Where a rule's series are listed and its queries evaluated.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RuleQuerySource {
    /// Ringtail's own store only.
    Local,
    /// The external query source only (`--prometheus-url`); without one the rule's metrics are
    /// unavailable (503).
    External,
    /// Series in Ringtail's store are served from it, series only the external source has are
    /// served from there (the default when an external source is set).
    Auto,
}

/// `is:` or `isNot:`; exactly one is set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegexFilter {
    pub(crate) is: Option<String>,
    pub(crate) is_not: Option<String>,
}

/// How series labels map to Kubernetes group-resources.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceMapping {
    /// A `<<.Group>>`/`<<.Resource>>` template naming the label for any resource.
    pub(crate) template: Option<String>,
    /// Label name → group-resource.
    #[serde(default)]
    pub(crate) overrides: BTreeMap<String, GroupResourceSpec>,
    /// External rules only: `false` stops the request's namespace being added as a matcher.
    pub(crate) namespaced: Option<bool>,
    /// Ringtail's one extension of the format: a rule whose series carry a pod label also
    /// answers for the controllers owning those pods (Deployment, ReplicaSet, StatefulSet, Job,
    /// …, found through owner references in the cluster), combining the pods' values with this
    /// operation. prometheus-adapter has no equivalent; without it such requests are 404.
    pub(crate) owner_aggregation: Option<OwnerAggregation>,
}

/// How the per-pod values of a metric combine into one value for the pods' owner.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OwnerAggregation {
    Sum,
    Avg,
    Min,
    Max,
}

impl OwnerAggregation {
    /// Combines `values` (at least one).
    pub(crate) fn combine(self, values: &[f64]) -> Option<f64> {
        let first = *values.first()?;
        Some(match self {
            OwnerAggregation::Sum => values.iter().sum(),
            OwnerAggregation::Avg => values.iter().sum::<f64>() / values.len() as f64,
            OwnerAggregation::Min => values.iter().fold(first, |a, &b| a.min(b)),
            OwnerAggregation::Max => values.iter().fold(first, |a, &b| a.max(b)),
        })
    }
}

/// A group-resource as written in a config (`resource` may be singular).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub(crate) struct GroupResourceSpec {
    #[serde(default)]
    pub(crate) group: String,
    #[serde(default)]
    pub(crate) resource: String,
}

/// How a series name becomes an API metric name.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub(crate) struct NameMapping {
    #[serde(default)]
    pub(crate) matches: String,
    #[serde(default, rename = "as")]
    pub(crate) as_: String,
}

/// A find/replace applied to label values of external queries.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub(crate) struct LabelValueReplacement {
    #[serde(default)]
    pub(crate) find: String,
    #[serde(default)]
    pub(crate) replace: String,
}

/// `resourceRules` (cpu/memory for `metrics.k8s.io`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub(crate) struct ResourceRules {
    pub(crate) cpu: Option<ResourceRule>,
    pub(crate) memory: Option<ResourceRule>,
    pub(crate) window: Option<String>,
}

/// One of `resourceRules.cpu` / `.memory`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceRule {
    #[serde(default)]
    pub(crate) container_query: String,
    #[serde(default)]
    pub(crate) node_query: String,
    #[serde(default)]
    pub(crate) resources: ResourceMapping,
    #[serde(default)]
    pub(crate) container_label: String,
}

/// Metric names in `query` that follow the recording-rule convention `level:metric:operations`
/// (a name with a `:`), deduplicated in order of appearance.
fn recording_rule_names(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let bytes = query.as_bytes();
    let mut i = 0;
    let mut in_string: Option<u8> = None;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(quote) = in_string {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == quote {
                in_string = None;
            }
            i += 1;
            continue;
        }
        if c == b'"' || c == b'\'' || c == b'`' {
            in_string = Some(c);
            i += 1;
            continue;
        }
        // Template actions (`<<.LabelMatchers>>`) are not names.
        if c == b'<' && bytes.get(i + 1) == Some(&b'<') {
            i = query[i..].find(">>").map(|end| i + end + 2).unwrap_or(bytes.len());
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':') {
                i += 1;
            }
            let word = &query[start..i];
            // `[5m:1m]` subquery steps and `a:b` inside ranges are not names; a name has a
            // letter before its first colon.
            let in_range = query[..start].rfind('[').is_some_and(|open| !query[open..start].contains(']'));
            let is_name = word.contains(':')
                && !in_range
                && word.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if is_name && !out.iter().any(|n| n == word) {
                out.push(word.to_string());
            }
            continue;
        }
        i += 1;
    }
    out
}

/// The known keys of each object in the format, for reporting the unknown ones by path.
enum Shape {
    Object(&'static [(&'static str, Shape)]),
    List(&'static Shape),
    /// A map with free keys (resource overrides: label name → group-resource).
    Map(&'static Shape),
    Scalar,
}

const GROUP_RESOURCE: Shape = Shape::Object(&[("group", Shape::Scalar), ("resource", Shape::Scalar)]);
const RESOURCES: Shape = Shape::Object(&[
    ("template", Shape::Scalar),
    ("overrides", Shape::Map(&GROUP_RESOURCE)),
    ("namespaced", Shape::Scalar),
    ("ownerAggregation", Shape::Scalar),
]);
const RULE: Shape = Shape::Object(&[
    ("seriesQuery", Shape::Scalar),
    ("seriesFilters", Shape::List(&Shape::Object(&[("is", Shape::Scalar), ("isNot", Shape::Scalar)]))),
    ("resources", RESOURCES),
    ("name", Shape::Object(&[("matches", Shape::Scalar), ("as", Shape::Scalar)])),
    ("metricsQuery", Shape::Scalar),
    ("labelValueReplacements", Shape::List(&Shape::Object(&[("find", Shape::Scalar), ("replace", Shape::Scalar)]))),
    ("querySource", Shape::Scalar),
]);
const RESOURCE_RULE: Shape = Shape::Object(&[
    ("containerQuery", Shape::Scalar),
    ("nodeQuery", Shape::Scalar),
    ("resources", RESOURCES),
    ("containerLabel", Shape::Scalar),
]);
const FILE: Shape = Shape::Object(&[
    ("rules", Shape::List(&RULE)),
    ("externalRules", Shape::List(&RULE)),
    ("resourceRules", Shape::Object(&[("cpu", RESOURCE_RULE), ("memory", RESOURCE_RULE), ("window", Shape::Scalar)])),
]);

fn unknown_keys(value: &serde_yaml::Value, shape: &Shape, path: &str, out: &mut Vec<String>) {
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (shape, value) {
        (Shape::Object(fields), serde_yaml::Value::Mapping(map)) => {
            for (key, child) in map {
                let key_text = key.as_str().map(str::to_string).unwrap_or_else(|| format!("{key:?}"));
                match fields.iter().find(|(name, _)| *name == key_text) {
                    Some((_, child_shape)) => unknown_keys(child, child_shape, &join(&key_text), out),
                    None => out.push(join(&key_text)),
                }
            }
        }
        (Shape::Map(inner), serde_yaml::Value::Mapping(map)) => {
            for (key, child) in map {
                let key_text = key.as_str().unwrap_or("?");
                unknown_keys(child, inner, &join(key_text), out);
            }
        }
        (Shape::List(inner), serde_yaml::Value::Sequence(items)) => {
            for (i, child) in items.iter().enumerate() {
                unknown_keys(child, inner, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

impl AdapterConfig {
    /// Reads and checks a config file.
    pub(crate) fn load(path: &Path) -> Result<AdapterConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` only names the source in errors.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<AdapterConfig, ConfigError> {
        let yaml_err = |e: serde_yaml::Error| ConfigError::Yaml { path: path.to_path_buf(), message: e.to_string() };
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(yaml_err)?;
        if value.is_null() {
            return Ok(AdapterConfig::default());
        }
        let mut unknown = Vec::new();
        unknown_keys(&value, &FILE, "", &mut unknown);
        if !unknown.is_empty() {
            return Err(ConfigError::UnknownKeys { path: path.to_path_buf(), keys: unknown });
        }
        let config: AdapterConfig = serde_yaml::from_value(value).map_err(yaml_err)?;
        config.check_shape(path)?;
        Ok(config)
    }

    /// Checks what serde cannot: filters with exactly one of `is`/`isNot`, non-empty queries.
    fn check_shape(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |at: String, message: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            at,
            message: message.to_string(),
        };
        for (kind, rules) in [("rules", &self.rules), ("externalRules", &self.external_rules)] {
            for (i, rule) in rules.iter().enumerate() {
                if rule.series_query.trim().is_empty() {
                    return Err(invalid(format!("{kind}[{i}].seriesQuery"), "must not be empty"));
                }
                if rule.metrics_query.trim().is_empty() {
                    return Err(invalid(format!("{kind}[{i}].metricsQuery"), "must not be empty"));
                }
                for (j, filter) in rule.series_filters.iter().enumerate() {
                    if filter.is.is_some() == filter.is_not.is_some() {
                        return Err(invalid(
                            format!("{kind}[{i}].seriesFilters[{j}]"),
                            "set exactly one of `is` and `isNot`",
                        ));
                    }
                }
                if kind == "rules" && rule.resources.namespaced.is_some() {
                    return Err(invalid(
                        format!("{kind}[{i}].resources.namespaced"),
                        "only external rules take `namespaced`",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Human-readable notes about accepted parts that may not do what their author expects
    /// (printed at start and by `adapter-config check`): queries reading recording-rule
    /// outputs (`a:b:c` names), which Ringtail only has when something writes them to it.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut queries: Vec<(String, &str)> = Vec::new();
        for (kind, rules) in [("rules", &self.rules), ("externalRules", &self.external_rules)] {
            for (i, rule) in rules.iter().enumerate() {
                queries.push((format!("{kind}[{i}].seriesQuery"), &rule.series_query));
                queries.push((format!("{kind}[{i}].metricsQuery"), &rule.metrics_query));
            }
        }
        if let Some(resource) = &self.resource_rules {
            for (name, rule) in [("cpu", &resource.cpu), ("memory", &resource.memory)] {
                if let Some(rule) = rule {
                    queries.push((format!("resourceRules.{name}.containerQuery"), &rule.container_query));
                    queries.push((format!("resourceRules.{name}.nodeQuery"), &rule.node_query));
                }
            }
        }
        for (at, query) in queries {
            let recorded = recording_rule_names(query);
            if !recorded.is_empty() {
                out.push(format!(
                    "{at} reads {} — the output of a recording rule: it answers only once a rule in Ringtail's \
                     `rule_files` (kube-prometheus's rule files work as they are) or a Prometheus remote-writing to \
                     Ringtail records it (or rewrite the query over the raw series)",
                    recorded.join(", ")
                ));
            }
        }
        out
    }

    /// The rules used without `--adapter-config`, after prometheus-adapter's default config:
    /// every series with `namespace` and `pod` labels is a pods metric (and a namespaces
    /// metric), `*_total` counters as their per-second rate over `rate_window`; every other series
    /// with a `namespace` label is a metric of the namespace and of any resource named by one of
    /// its labels (`service`, `deployment`, …).
    pub(crate) fn embedded_default(rate_window: Duration) -> AdapterConfig {
        let window = prom_duration(rate_window);
        let pod_resources = ResourceMapping {
            template: None,
            overrides: [
                ("namespace".to_string(), GroupResourceSpec { group: String::new(), resource: "namespace".into() }),
                ("pod".to_string(), GroupResourceSpec { group: String::new(), resource: "pod".into() }),
            ]
            .into_iter()
            .collect(),
            ..ResourceMapping::default()
        };
        let template_resources =
            ResourceMapping { template: Some("<<.Resource>>".into()), ..ResourceMapping::default() };
        let rule = |series_query: &str,
                    filters: &[(&str, bool)],
                    matches: &str,
                    resources: &ResourceMapping,
                    query: String| {
            DiscoveryRule {
                series_query: series_query.to_string(),
                series_filters: filters
                    .iter()
                    .map(|(re, is)| RegexFilter {
                        is: is.then(|| re.to_string()),
                        is_not: (!is).then(|| re.to_string()),
                    })
                    .collect(),
                resources: resources.clone(),
                name: NameMapping { matches: matches.to_string(), as_: String::new() },
                metrics_query: query,
                label_value_replacements: Vec::new(),
                query_source: None,
            }
        };
        let gauge_query = "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)".to_string();
        let rate_query = format!("sum(rate(<<.Series>>{{<<.LabelMatchers>>}}[{window}])) by (<<.GroupBy>>)");
        AdapterConfig {
            rules: vec![
                rule(r#"{namespace!="",pod!=""}"#, &[(".*_total$", false)], "", &pod_resources, gauge_query.clone()),
                rule(r#"{namespace!="",pod!=""}"#, &[], "^(.*)_total$", &pod_resources, rate_query.clone()),
                rule(r#"{namespace!="",pod=""}"#, &[(".*_total$", false)], "", &template_resources, gauge_query),
                rule(r#"{namespace!="",pod=""}"#, &[], "^(.*)_total$", &template_resources, rate_query),
            ],
            external_rules: Vec::new(),
            resource_rules: None,
        }
    }
}

/// A duration in Prometheus syntax (`2m`, `90s`, `1h30m`, `1s500ms`), as Prometheus prints one.
pub(crate) fn prom_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SELDON: &str = include_str!("../../../tests/fixtures/seldon-rules.yaml");

    #[test]
    fn reads_the_seldon_rule_verbatim() {
        let config = AdapterConfig::parse(SELDON, Path::new("seldon.yaml")).unwrap();
        let rule = &config.rules[0];
        assert_eq!(rule.series_filters.len(), 2);
        assert_eq!(rule.resources.overrides["model"].group, "mlops.seldon.io");
        assert_eq!(rule.name.as_, "${1}_rps");
        assert!(rule.metrics_query.contains("<<.GroupBy>>"));
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let text =
            "rules:\n- seriesQuery: 'up'\n  metricsQuery: 'x'\n  resources:\n    overides: {}\n  nmae: {}\nfoo: 1\n";
        let err = AdapterConfig::parse(text, Path::new("c.yaml")).unwrap_err().to_string();
        assert!(err.contains("rules[0].resources.overides"), "{err}");
        assert!(err.contains("rules[0].nmae"), "{err}");
        assert!(err.contains("foo"), "{err}");
    }

    #[test]
    fn filters_need_exactly_one_condition() {
        let text = "rules:\n- seriesQuery: 'up'\n  metricsQuery: 'x'\n  seriesFilters: [{}]\n";
        assert!(AdapterConfig::parse(text, Path::new("c.yaml")).is_err());
    }

    #[test]
    fn external_rules_and_resource_rules_parse() {
        let text = r#"
externalRules:
- seriesQuery: '{__name__="queue_length",queue!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)
  resources:
    namespaced: false
resourceRules:
  cpu:
    containerQuery: sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>}[3m])) by (<<.GroupBy>>)
    nodeQuery: x
    resources:
      overrides:
        node: {resource: node}
    containerLabel: container
  window: 3m
"#;
        let config = AdapterConfig::parse(text, Path::new("c.yaml")).unwrap();
        assert_eq!(config.external_rules[0].resources.namespaced, Some(false));
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
        let recorded = text.replace("container_cpu_usage_seconds_total", "node_namespace_pod_container:cpu:sum_irate");
        let config = AdapterConfig::parse(&recorded, Path::new("c.yaml")).unwrap();
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0]
            .starts_with("resourceRules.cpu.containerQuery reads node_namespace_pod_container:cpu:sum_irate"));
    }

    #[test]
    fn owner_aggregation_is_read_and_combines() {
        let text = "rules:\n- seriesQuery: 'ei_scale_ratio{namespace!=\"\",pod!=\"\"}'\n  resources:\n    \
                    overrides: {namespace: {resource: namespace}, pod: {resource: pod}}\n    ownerAggregation: avg\n  \
                    metricsQuery: 'avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n";
        let config = AdapterConfig::parse(text, Path::new("c.yaml")).unwrap();
        assert_eq!(config.rules[0].resources.owner_aggregation, Some(OwnerAggregation::Avg));
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
        assert_eq!(OwnerAggregation::Avg.combine(&[1.0, 2.0, 6.0]), Some(3.0));
        assert_eq!(OwnerAggregation::Sum.combine(&[1.0, 2.0, 6.0]), Some(9.0));
        assert_eq!(OwnerAggregation::Min.combine(&[4.0, 2.0, 6.0]), Some(2.0));
        assert_eq!(OwnerAggregation::Max.combine(&[4.0, 2.0, 6.0]), Some(6.0));
        assert_eq!(OwnerAggregation::Max.combine(&[]), None);
        let bad = text.replace("ownerAggregation: avg", "ownerAggregation: median");
        assert!(AdapterConfig::parse(&bad, Path::new("c.yaml")).is_err());
    }

    #[test]
    fn empty_file_is_no_rules() {
        assert_eq!(AdapterConfig::parse("", Path::new("c.yaml")).unwrap(), AdapterConfig::default());
    }

    #[test]
    fn recording_rule_outputs_are_named() {
        let query = r#"sum by (<<.GroupBy>>) (node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate{<<.LabelMatchers>>}) * on(namespace, pod) group_left(node) node_namespace_pod:kube_pod_info:{a="x:y"} + rate(x[5m:1m])"#;
        assert_eq!(
            recording_rule_names(query),
            [
                "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate",
                "node_namespace_pod:kube_pod_info:"
            ]
        );
        assert!(
            recording_rule_names(r#"sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>}[3m]))"#).is_empty()
        );
    }

    #[test]
    fn prom_durations() {
        assert_eq!(prom_duration(Duration::from_secs(120)), "2m");
        assert_eq!(prom_duration(Duration::from_secs(300)), "5m");
        assert_eq!(prom_duration(Duration::from_secs(5430)), "1h30m30s");
        assert_eq!(prom_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(prom_duration(Duration::from_secs(2 * 86_400)), "2d");
        assert_eq!(prom_duration(Duration::ZERO), "0s");
    }
}
