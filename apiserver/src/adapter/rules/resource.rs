//! `ResourceQueries` is prometheus-adapter's `resourceRules` compiled: the `cpu` and `memory`
//! rules' `containerQuery` and `nodeQuery` templates, the labels naming namespaces, pods, nodes
//! and containers in their series, and the `window` — what `metrics.k8s.io` is served from.
//!
//! A query is built as prometheus-adapter builds it (`LabelMatchers` from the namespace and the
//! object names, `GroupBy` = the object's label, plus the container label for pods), with two
//! differences that change no answer: several names become one set matcher where
//! `LabelMatchers` stands in the parsed template (no `a|b|…` regex to compile; templates that
//! cannot be substituted get the regex in rendered text), and a list across namespaces is one
//! query grouped by the namespace label too, instead of one query per namespace.

use super::config::{DiscoveryRule, ResourceRule, ResourceRules};
use super::naming::{CompiledRule, RuleError, RuleKind};
use super::query::{LabelPart, QueryForm};
use crate::adapter::provider::resources::{GroupResource, ObjectResolver};
use std::time::Duration;
use tsdb::MatchOp;

/// `resourceRules`, ready to build queries.
#[derive(Debug)]
pub(crate) struct ResourceQueries {
    pub(crate) cpu: ResourceQuery,
    pub(crate) memory: ResourceQuery,
    /// `window`: what the answers report as the window their values cover.
    pub(crate) window: Duration,
}

/// One of `resourceRules.cpu` / `.memory`.
#[derive(Debug)]
pub(crate) struct ResourceQuery {
    container: CompiledRule,
    node: CompiledRule,
    pub(crate) labels: ResourceLabels,
}

/// The labels naming each kind of object in a rule's series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceLabels {
    pub(crate) namespace: String,
    pub(crate) pod: String,
    pub(crate) node: String,
    pub(crate) container: String,
}

/// The objects a resource query is about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ResourceNames<'a> {
    /// These objects (sorted, deduplicated, never empty).
    Set(&'a [String]),
    /// Every object with the label (a standalone server knows no object list).
    All,
}

/// A resource query ready for the engine.
#[derive(Debug, Clone)]
pub(crate) struct ResourceQueryText {
    /// The query as PromQL text (what a text-form query runs; messages for a parsed one).
    pub(crate) text: String,
    pub(crate) form: QueryForm,
}

impl ResourceQueries {
    /// Compiles `rules`; the window must be a Prometheus duration (`5m`).
    pub(crate) fn compile(rules: &ResourceRules, resolver: &dyn ObjectResolver) -> Result<ResourceQueries, RuleError> {
        let invalid = |at: &str, message: String| RuleError::Invalid { at: at.to_string(), message };
        let window_text = rules.window.as_deref().unwrap_or("").trim();
        if window_text.is_empty() {
            return Err(invalid("resourceRules.window", "must be set (a duration such as 5m)".into()));
        }
        let window_ms = query::parse_duration_ms(window_text)
            .filter(|ms| *ms > 0)
            .ok_or_else(|| invalid("resourceRules.window", format!("{window_text:?} is not a positive duration")))?;
        let compile = |rule: &Option<ResourceRule>, name: &str| {
            let at = format!("resourceRules.{name}");
            let rule =
                rule.as_ref().ok_or_else(|| invalid(&at, "must be set (cpu and memory are both served)".into()))?;
            ResourceQuery::compile(rule, &at, resolver)
        };
        Ok(ResourceQueries {
            cpu: compile(&rules.cpu, "cpu")?,
            memory: compile(&rules.memory, "memory")?,
            window: Duration::from_millis(window_ms as u64),
        })
    }
}

impl ResourceQuery {
    fn compile(rule: &ResourceRule, at: &str, resolver: &dyn ObjectResolver) -> Result<ResourceQuery, RuleError> {
        let compile_one = |query: &str, field: &'static str| {
            if query.trim().is_empty() {
                return Err(RuleError::Invalid { at: format!("{at}.{field}"), message: "must not be empty".into() });
            }
            let as_rule = DiscoveryRule {
                // Never used to list series: resource rules name no metric.
                series_query: "{__name__!=\"\"}".into(),
                resources: rule.resources.clone(),
                metrics_query: query.to_string(),
                ..DiscoveryRule::default()
            };
            CompiledRule::compile_query(&as_rule, at.to_string(), field, RuleKind::Custom, resolver)
        };
        let container = compile_one(&rule.container_query, "containerQuery")?;
        let node = compile_one(&rule.node_query, "nodeQuery")?;
        let label = |resource: &str| {
            container.label_for_resource(&GroupResource::new("", resource), resolver).ok_or_else(|| RuleError::Invalid {
                at: format!("{at}.resources"),
                message: format!(
                    "no label names {resource} (add `overrides: {{{singular}: {{resource: {singular}}}}}` or a template)",
                    singular = resource.trim_end_matches('s')
                ),
            })
        };
        if rule.container_label.trim().is_empty() {
            return Err(RuleError::Invalid { at: format!("{at}.containerLabel"), message: "must be set".into() });
        }
        let labels = ResourceLabels {
            namespace: label("namespaces")?,
            pod: label("pods")?,
            node: label("nodes")?,
            container: rule.container_label.clone(),
        };
        Ok(ResourceQuery { container, node, labels })
    }

    /// The `containerQuery` for pods in `namespace` (all namespaces when `None`): grouped by pod
    /// and container, and by namespace too when across namespaces.
    pub(crate) fn pods_query(
        &self,
        namespace: Option<&str>,
        names: ResourceNames<'_>,
    ) -> Result<ResourceQueryText, RuleError> {
        let mut parts = Vec::with_capacity(2);
        if let Some(namespace) = namespace {
            parts.push(LabelPart::new(&self.labels.namespace, MatchOp::Equal, namespace));
        }
        let mut group_by = vec![self.labels.pod.clone(), self.labels.container.clone()];
        if namespace.is_none() {
            group_by.push(self.labels.namespace.clone());
        }
        self.build(&self.container, &self.labels.pod, parts, names, &group_by)
    }

    /// The `nodeQuery` for `names`, grouped by node.
    pub(crate) fn nodes_query(&self, names: ResourceNames<'_>) -> Result<ResourceQueryText, RuleError> {
        let group_by = [self.labels.node.clone()];
        self.build(&self.node, &self.labels.node, Vec::new(), names, &group_by)
    }

    fn build<'a>(
        &self,
        rule: &CompiledRule,
        object_label: &'a str,
        mut parts: Vec<LabelPart<'a>>,
        names: ResourceNames<'a>,
        group_by: &[String],
    ) -> Result<ResourceQueryText, RuleError> {
        let mut set = Vec::new();
        match names {
            ResourceNames::Set([name]) => parts.push(LabelPart::new(object_label, MatchOp::Equal, name)),
            ResourceNames::Set(names) => {
                set.push(tsdb::Matcher::one_of(object_label.to_string(), names.iter().cloned()))
            }
            ResourceNames::All => parts.push(LabelPart::new(object_label, MatchOp::NotEqual, "")),
        }
        let substituted = parts
            .iter()
            .map(|p| tsdb::Matcher::new(p.op, p.label.as_ref(), p.value.as_ref()).ok())
            .collect::<Option<Vec<_>>>()
            .and_then(|mut matchers| {
                matchers.extend(set.iter().cloned());
                rule.metrics_query.substitute_matchers(&matchers, group_by)
            });
        // The text: what a request would render (the set as prometheus-adapter's regex).
        let text = rule.render("", &parts, &set, group_by)?;
        let form = match substituted {
            Some((form, _)) => form,
            None => QueryForm::Text(text.clone()),
        };
        Ok(ResourceQueryText { text, form })
    }

    /// Both templates rendered as a request for every object would render them (for
    /// `adapter-config check`).
    pub(crate) fn example_texts(&self) -> Result<[(String, String); 2], RuleError> {
        let container = self.pods_query(Some("default"), ResourceNames::All)?.text;
        let node = self.nodes_query(ResourceNames::All)?.text;
        Ok([
            (format!("{}.{}", self.container.at, self.container.query_field), container),
            (format!("{}.{}", self.node.at, self.node.query_field), node),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::provider::resources::BuiltinResolver;
    use crate::adapter::rules::config::AdapterConfig;
    use std::path::Path;

    /// kube-prometheus's adapter configuration (its plain, recording-rule-free form).
    const KUBE_PROMETHEUS: &str = r#"
resourceRules:
  cpu:
    containerQuery: |
      sum by (<<.GroupBy>>) (
        irate (
            container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!="",pod!=""}[120s]
        )
      )
    nodeQuery: |
      sum by (<<.GroupBy>>) (
        1 - irate(
          node_cpu_seconds_total{mode="idle"}[60s]
        )
        * on(namespace, pod) group_left(node) (
          node_namespace_pod:kube_pod_info:{<<.LabelMatchers>>}
        )
      )
    resources:
      overrides:
        node: {resource: node}
        namespace: {resource: namespace}
        pod: {resource: pod}
    containerLabel: container
  memory:
    containerQuery: |
      sum by (<<.GroupBy>>) (
        container_memory_working_set_bytes{<<.LabelMatchers>>,container!="",pod!=""}
      )
    nodeQuery: |
      sum by (<<.GroupBy>>) (
        node_memory_MemTotal_bytes{job="node-exporter",<<.LabelMatchers>>}
        -
        node_memory_MemAvailable_bytes{job="node-exporter",<<.LabelMatchers>>}
      )
    resources:
      overrides:
        instance: {resource: node}
        namespace: {resource: namespace}
        pod: {resource: pod}
    containerLabel: container
  window: 5m
"#;

    fn compiled(yaml: &str) -> Result<ResourceQueries, RuleError> {
        let config = AdapterConfig::parse(yaml, Path::new("test.yaml")).unwrap();
        ResourceQueries::compile(config.resource_rules.as_ref().unwrap(), &BuiltinResolver)
    }

    #[test]
    fn queries_render_as_prometheus_adapter_renders_them() {
        let rules = compiled(KUBE_PROMETHEUS).unwrap();
        assert_eq!(rules.window, Duration::from_secs(300));
        assert_eq!(rules.memory.labels.node, "instance");
        let names = ["a".to_string(), "b".to_string()];
        let pods = rules.cpu.pods_query(Some("web"), ResourceNames::Set(&names)).unwrap();
        assert!(
            pods.text
                .contains(r#"container_cpu_usage_seconds_total{namespace="web",pod=~"a|b",container!="",pod!=""}"#),
            "{}",
            pods.text
        );
        assert!(pods.text.starts_with("sum by (pod,container)"), "{}", pods.text);
        assert!(matches!(pods.form, QueryForm::Parsed { .. }), "the set is substituted, not a regex");
        let one = rules.cpu.pods_query(Some("web"), ResourceNames::Set(&names[..1])).unwrap();
        assert!(one.text.contains(r#"{namespace="web",pod="a","#), "{}", one.text);
        let all = rules.memory.pods_query(None, ResourceNames::All).unwrap();
        assert!(all.text.starts_with("sum by (pod,container,namespace)"), "{}", all.text);
        let nodes = rules.memory.nodes_query(ResourceNames::Set(&names[..1])).unwrap();
        assert!(
            nodes.text.contains(r#"node_memory_MemTotal_bytes{job="node-exporter",instance="a"}"#),
            "{}",
            nodes.text
        );
        for (_, text) in rules.cpu.example_texts().unwrap() {
            query::parse(&text).unwrap();
        }
    }

    #[test]
    fn incomplete_rules_are_refused_by_path() {
        let cases = [
            (KUBE_PROMETHEUS.replace("  window: 5m\n", ""), "resourceRules.window"),
            (KUBE_PROMETHEUS.replace("window: 5m", "window: soon"), "not a positive duration"),
            (
                KUBE_PROMETHEUS.replace("containerLabel: container\n  memory", "containerLabel: \"\"\n  memory"),
                "cpu.containerLabel",
            ),
            (
                KUBE_PROMETHEUS.replace(
                    "        pod: {resource: pod}\n    containerLabel: container\n  memory",
                    "    containerLabel: container\n  memory",
                ),
                "no label names pods",
            ),
            (
                KUBE_PROMETHEUS
                    .replace("<<.GroupBy>>) (\n        container_memory", "<<.Nope>>) (\n        container_memory"),
                "memory.containerQuery",
            ),
        ];
        for (yaml, expected) in cases {
            let error = compiled(&yaml).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
        }
        let without_memory = KUBE_PROMETHEUS.split("  memory:").next().unwrap().to_string() + "  window: 5m\n";
        assert!(compiled(&without_memory).err().unwrap().to_string().contains("resourceRules.memory"));
    }
}
