//! `CompiledRule` is one prometheus-adapter rule made executable: the `seriesQuery` as store
//! matchers, `seriesFilters` and `name.matches` as regexes, the `name.as` expansion (series name
//! → metric name), the label ↔ group-resource mapping (`resources.overrides` and
//! `resources.template`), and the `metricsQuery` compiled once ([`QueryTemplate`]). Building a
//! request's query from it is `query.rs`.

use super::config::{DiscoveryRule, RegexFilter};
use super::query_template::QueryTemplate;
use super::template::{Template, TemplateError, TemplateValue};
use crate::adapter::provider::resources::{GroupResource, ObjectResolver, ResourceInfo};
use regex::Regex;

/// Why a rule could not be compiled or a query not built.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{at}: invalid seriesQuery {query:?}: {message}")]
    SeriesQuery { at: String, query: String, message: String },
    #[error("{at}: invalid regex {regex:?}: {message}")]
    Regex { at: String, regex: String, message: String },
    #[error("{at}: {source}")]
    Template {
        at: String,
        #[source]
        source: TemplateError,
    },
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    /// A request the rule cannot express (bad metric selector): the client's fault.
    #[error("{0}")]
    BadRequest(String),
}

/// Whether a rule serves custom or external metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleKind {
    Custom,
    External,
}

/// How the label of a resource is found.
#[derive(Debug, Clone)]
struct ResourceTemplate {
    template: Template,
    /// The template inverted: `^kube_(?P<group>.+?)_(?P<resource>.+?)$`.
    extractor: Regex,
}

/// A rule ready to run.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    /// `rules[3]` / `externalRules[0]`, for messages.
    pub(crate) at: String,
    /// The key holding the query template (`metricsQuery`; `containerQuery`/`nodeQuery` of a
    /// resource rule), for messages.
    pub(crate) query_field: &'static str,
    pub(crate) kind: RuleKind,
    pub(crate) series_query: String,
    pub(crate) series_matchers: Vec<tsdb::Matcher>,
    filters: Vec<(Regex, bool)>,
    name_regex: Regex,
    name_as: String,
    overrides: Vec<(String, ResourceInfo)>,
    resource_template: Option<ResourceTemplate>,
    pub(crate) metrics_query: QueryTemplate,
    /// External rules: whether the request's namespace becomes a matcher.
    pub(crate) namespaced: bool,
    /// Ringtail's extension: answer for the owners of the pods this rule describes.
    pub(crate) owner_aggregation: Option<super::config::OwnerAggregation>,
    pub(super) label_value_replacements: Vec<(String, String)>,
    /// `querySource` (Ringtail's extension); `None` follows the server's default.
    pub(crate) query_source: Option<super::config::RuleQuerySource>,
    /// The longest `[range]` written in `metricsQuery`, in seconds (0 without one).
    pub(crate) longest_range_seconds: i64,
}

impl CompiledRule {
    /// Compiles `rule`; `at` names it in errors (`rules[0]`).
    pub(crate) fn compile(
        rule: &DiscoveryRule,
        at: String,
        kind: RuleKind,
        resolver: &dyn ObjectResolver,
    ) -> Result<CompiledRule, RuleError> {
        Self::compile_query(rule, at, "metricsQuery", kind, resolver)
    }

    /// Like [`CompiledRule::compile`], with the query template under the key `query_field`.
    pub(crate) fn compile_query(
        rule: &DiscoveryRule,
        at: String,
        query_field: &'static str,
        kind: RuleKind,
        resolver: &dyn ObjectResolver,
    ) -> Result<CompiledRule, RuleError> {
        let series_matchers = parse_series_selector(&rule.series_query).map_err(|message| RuleError::SeriesQuery {
            at: format!("{at}.seriesQuery"),
            query: rule.series_query.clone(),
            message,
        })?;
        let compile_regex = |field: String, source: &str| {
            Regex::new(source).map_err(|e| RuleError::Regex {
                at: field,
                regex: source.to_string(),
                message: e.to_string(),
            })
        };
        let mut filters = Vec::new();
        for (i, RegexFilter { is, is_not }) in rule.series_filters.iter().enumerate() {
            let field = format!("{at}.seriesFilters[{i}]");
            match (is, is_not) {
                (Some(re), None) => filters.push((compile_regex(field, re)?, true)),
                (None, Some(re)) => filters.push((compile_regex(field, re)?, false)),
                _ => return Err(RuleError::Invalid { at: field, message: "set exactly one of is/isNot".into() }),
            }
        }
        let matches = if rule.name.matches.is_empty() { ".*" } else { rule.name.matches.as_str() };
        let name_regex = compile_regex(format!("{at}.name.matches"), matches)?;
        let name_as = if rule.name.as_.is_empty() {
            // prometheus-adapter: `$0` without capture groups, `$1` with one, an error with more.
            match name_regex.captures_len() - 1 {
                0 => "$0".to_string(),
                1 => "$1".to_string(),
                n => {
                    return Err(RuleError::Invalid {
                        at: format!("{at}.name.as"),
                        message: format!("must be set when name.matches has {n} capture groups"),
                    })
                }
            }
        } else {
            rule.name.as_.clone()
        };
        let mut overrides = Vec::new();
        for (label, spec) in &rule.resources.overrides {
            if spec.resource.is_empty() {
                return Err(RuleError::Invalid {
                    at: format!("{at}.resources.overrides.{label}"),
                    message: "resource must be set".into(),
                });
            }
            overrides.push((label.clone(), resolver.resource_info_or_assume(&spec.group, &spec.resource)));
        }
        let resource_template = match &rule.resources.template {
            Some(text) if !text.is_empty() => {
                let field = format!("{at}.resources.template");
                let template =
                    Template::parse(text).map_err(|source| RuleError::Template { at: field.clone(), source })?;
                let extractor =
                    invert_resource_template(&template).map_err(|message| RuleError::Invalid { at: field, message })?;
                Some(ResourceTemplate { template, extractor })
            }
            _ => None,
        };
        let metrics_template = Template::parse(&rule.metrics_query)
            .map_err(|source| RuleError::Template { at: format!("{at}.{query_field}"), source })?;
        const FIELDS: [&str; 5] = ["Series", "LabelMatchers", "LabelValuesByName", "GroupBy", "GroupBySlice"];
        if let Some(unknown) = metrics_template.root_fields().into_iter().find(|f| !FIELDS.contains(&f.as_str())) {
            return Err(RuleError::Invalid {
                at: format!("{at}.{query_field}"),
                message: format!("unknown template field .{unknown} (known: {})", FIELDS.join(", ")),
            });
        }
        Ok(CompiledRule {
            at,
            query_field,
            kind,
            series_query: rule.series_query.trim().to_string(),
            series_matchers,
            filters,
            name_regex,
            name_as,
            overrides,
            resource_template,
            metrics_query: QueryTemplate::new(metrics_template, kind),
            namespaced: rule.resources.namespaced.unwrap_or(true),
            owner_aggregation: rule.resources.owner_aggregation,
            label_value_replacements: rule
                .label_value_replacements
                .iter()
                .map(|r| (r.find.clone(), r.replace.clone()))
                .collect(),
            query_source: rule.query_source,
            longest_range_seconds: super::query::longest_range_seconds(&rule.metrics_query),
        })
    }

    /// The API metric name for a series name, or `None` when the filters or `name.matches`
    /// exclude it (prometheus-adapter adds `name.matches` as an implicit `is` filter).
    pub(crate) fn metric_name(&self, series_name: &str) -> Option<String> {
        if !self.filters.iter().all(|(re, is)| re.is_match(series_name) == *is) {
            return None;
        }
        let captures = self.name_regex.captures(series_name)?;
        let mut out = String::new();
        captures.expand(&self.name_as, &mut out);
        Some(out)
    }

    /// The resources a series with these label names can describe, with the label naming each.
    pub(crate) fn resources_for_labels<'a>(
        &self,
        label_names: impl IntoIterator<Item = &'a str>,
        resolver: &dyn ObjectResolver,
    ) -> Vec<(ResourceInfo, String)> {
        let mut out: Vec<(ResourceInfo, String)> = Vec::new();
        for label in label_names {
            if let Some((_, info)) = self.overrides.iter().find(|(l, _)| l == label) {
                out.push((info.clone(), label.to_string()));
            } else if let Some(info) = self.resource_from_template(label, resolver) {
                out.push((info, label.to_string()));
            }
        }
        out.sort_by(|a, b| a.0.group_resource.cmp(&b.0.group_resource));
        out.dedup_by(|a, b| a.0.group_resource == b.0.group_resource);
        out
    }

    fn resource_from_template(&self, label: &str, resolver: &dyn ObjectResolver) -> Option<ResourceInfo> {
        let template = self.resource_template.as_ref()?;
        let captures = template.extractor.captures(label)?;
        let resource = captures.name("resource")?.as_str();
        let group_sanitized = captures.name("group").map(|g| g.as_str()).unwrap_or("");
        let info = if group_sanitized.is_empty() {
            resolver.resource_info("", resource)?
        } else {
            // The label holds the group with `.`/`-` turned into `_`; find the real group back.
            let info = resolver.resource_info("", resource)?;
            if sanitize_group(&info.group_resource.group) != group_sanitized {
                return None;
            }
            info
        };
        // The label must be exactly what the template gives for this resource (no aliases).
        (self.label_for_resource(&info.group_resource, resolver).as_deref() == Some(label)).then_some(info)
    }

    /// The labels `resources.overrides` names, with the resource each names (for explanations).
    pub(crate) fn override_labels(&self) -> impl Iterator<Item = (&str, &GroupResource)> {
        self.overrides.iter().map(|(label, info)| (label.as_str(), &info.group_resource))
    }

    /// The label holding names of `resource` objects, from the overrides or the template.
    pub(crate) fn label_for_resource(&self, resource: &GroupResource, resolver: &dyn ObjectResolver) -> Option<String> {
        if let Some((label, _)) = self.overrides.iter().find(|(_, info)| &info.group_resource == resource) {
            return Some(label.clone());
        }
        let template = self.resource_template.as_ref()?;
        let singular = resolver
            .resource_info(&resource.group, &resource.resource)
            .map(|info| info.singular)
            .unwrap_or_else(|| resource.resource.clone());
        let args = TemplateValue::object([
            ("Group", TemplateValue::str(sanitize_group(&resource.group))),
            ("Resource", TemplateValue::str(singular)),
        ]);
        template.template.render(&args).ok().filter(|l| !l.is_empty())
    }
}

/// `.`/`-` → `_`, as prometheus-adapter passes a group to a resource template.
fn sanitize_group(group: &str) -> String {
    group.replace(['.', '-'], "_")
}

/// Turns a resource template into a regex extracting group and resource from a label name.
fn invert_resource_template(template: &Template) -> Result<Regex, String> {
    const GROUP_MARK: &str = "\u{1}G\u{1}";
    const RESOURCE_MARK: &str = "\u{1}R\u{1}";
    let rendered = template
        .render(&TemplateValue::object([
            ("Group", TemplateValue::str(GROUP_MARK)),
            ("Resource", TemplateValue::str(RESOURCE_MARK)),
        ]))
        .map_err(|e| e.to_string())?;
    if !rendered.contains(RESOURCE_MARK) {
        return Err("the template must use <<.Resource>>".into());
    }
    let mut pattern = String::from("^");
    for (i, piece) in rendered.split(RESOURCE_MARK).enumerate() {
        if i > 0 {
            pattern.push_str("(?P<resource>.+?)");
        }
        for (j, literal) in piece.split(GROUP_MARK).enumerate() {
            if j > 0 {
                // The core group renders as an empty string, so the group may be empty.
                pattern.push_str(if pattern.contains("(?P<group>") { "(?:.*?)" } else { "(?P<group>.*?)" });
            }
            pattern.push_str(&regex::escape(literal));
        }
    }
    pattern.push('$');
    Regex::new(&pattern).map_err(|e| format!("cannot invert the template: {e}"))
}

pub(crate) fn is_prom_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A rule's `seriesQuery`: a PromQL series selector, through the query crate's one parser (the
/// same grammar Prometheus applies to the `match[]` prometheus-adapter sends it).
pub(crate) fn parse_series_selector(text: &str) -> Result<Vec<tsdb::Matcher>, String> {
    query::parse_selector(text.trim()).map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::adapter::provider::resources::BuiltinResolver as TableOnly;
    use crate::adapter::rules::config::{AdapterConfig, GroupResourceSpec, NameMapping, ResourceMapping};

    pub(crate) fn seldon_rule() -> CompiledRule {
        let rule = DiscoveryRule {
            series_query: "{__name__=~\"^seldon_model.*_total\",namespace!=\"\"}\n".into(),
            series_filters: vec![
                RegexFilter { is: None, is_not: Some("^seldon_.*_seconds_total".into()) },
                RegexFilter { is: None, is_not: Some("^seldon_.*_aggregate_.*".into()) },
            ],
            resources: ResourceMapping {
                template: None,
                overrides: [
                    ("model", "mlops.seldon.io", "model"),
                    ("server", "mlops.seldon.io", "server"),
                    ("pod", "", "pod"),
                    ("namespace", "", "namespace"),
                ]
                .into_iter()
                .map(|(l, g, r)| (l.to_string(), GroupResourceSpec { group: g.into(), resource: r.into() }))
                .collect(),
                ..ResourceMapping::default()
            },
            name: NameMapping { matches: "^seldon_model_(.*)_total".into(), as_: "${1}_rps".into() },
            metrics_query: "sum by (<<.GroupBy>>) (\n  rate (\n    <<.Series>>{<<.LabelMatchers>>}[2m]\n  )\n)\n"
                .into(),
            label_value_replacements: Vec::new(),
            query_source: None,
        };
        CompiledRule::compile(&rule, "rules[0]".into(), RuleKind::Custom, &TableOnly).unwrap()
    }

    #[test]
    fn seldon_names_and_filters() {
        let rule = seldon_rule();
        assert_eq!(rule.metric_name("seldon_model_infer_total").as_deref(), Some("infer_rps"));
        assert_eq!(rule.metric_name("seldon_model_infer_seconds_total"), None);
        assert_eq!(rule.metric_name("seldon_model_aggregate_infer_total"), None);
        let resources = rule.resources_for_labels(["model", "server", "pod", "namespace", "code"], &TableOnly);
        let names: Vec<String> = resources.iter().map(|(i, _)| i.group_resource.to_string()).collect();
        assert_eq!(names, vec!["namespaces", "pods", "models.mlops.seldon.io", "servers.mlops.seldon.io"]);
    }

    #[test]
    fn resource_templates_are_inverted() {
        let rule = DiscoveryRule {
            series_query: "{namespace!=\"\"}".into(),
            resources: ResourceMapping {
                template: Some("kube_<<.Group>>_<<.Resource>>".into()),
                ..ResourceMapping::default()
            },
            metrics_query: "x".into(),
            ..Default::default()
        };
        let rule = CompiledRule::compile(&rule, "rules[0]".into(), RuleKind::Custom, &TableOnly).unwrap();
        let found = rule.resources_for_labels(["kube_apps_deployment", "kube__pod", "kube_x_y", "job"], &TableOnly);
        let names: Vec<String> = found.iter().map(|(i, _)| i.group_resource.to_string()).collect();
        assert_eq!(names, vec!["pods", "deployments.apps"]);
        assert_eq!(
            rule.label_for_resource(&GroupResource::new("apps", "deployments"), &TableOnly).as_deref(),
            Some("kube_apps_deployment")
        );
    }

    #[test]
    fn default_rules_compile_and_name_counters() {
        let config = AdapterConfig::embedded_default(std::time::Duration::from_secs(300));
        let rules: Vec<CompiledRule> = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| CompiledRule::compile(r, format!("rules[{i}]"), RuleKind::Custom, &TableOnly).unwrap())
            .collect();
        assert_eq!(rules[0].metric_name("ei_scale_ratio").as_deref(), Some("ei_scale_ratio"));
        assert_eq!(rules[0].metric_name("http_requests_total"), None);
        assert_eq!(rules[1].metric_name("http_requests_total").as_deref(), Some("http_requests"));
        let found = rules[2].resources_for_labels(["service", "namespace", "instance", "job"], &TableOnly);
        assert_eq!(found.len(), 3, "{found:?}");
    }

    #[test]
    fn series_selectors() {
        let m = parse_series_selector("{__name__=~\"^seldon_model.*_total\",namespace!=\"\"}\n").unwrap();
        assert_eq!(m.len(), 2);
        assert!(m[0].matches("seldon_model_infer_total"));
        let m = parse_series_selector("up{job='a\\\\.b'}").unwrap();
        assert_eq!(m[1].value, "a\\.b");
        // Prometheus refuses an unknown escape in a string, and so does every Ringtail parser.
        assert!(parse_series_selector("up{job='a\\.b'}").is_err());
        assert!(parse_series_selector("{a!=\"\"}").is_ok());
        assert!(parse_series_selector("{a=\"\"}").is_err());
        assert!(parse_series_selector("{a=\"x\"").is_err());
        assert!(parse_series_selector("{a==\"x\"}").is_err());
    }

    #[test]
    fn unknown_template_fields_fail_at_load() {
        let rule =
            DiscoveryRule { series_query: "up".into(), metrics_query: "<<.Seris>>".into(), ..Default::default() };
        let err = CompiledRule::compile(&rule, "rules[0]".into(), RuleKind::Custom, &TableOnly).unwrap_err();
        assert!(err.to_string().contains(".Seris"), "{err}");
    }
}
