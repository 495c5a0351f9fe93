//! `CompiledRule::build_query` and `build_external_query` turn one request into the query the
//! engine runs: the `LabelMatchers` of prometheus-adapter (metric label selector, namespace,
//! object names) as [`LabelPart`]s, substituted into the rule's parsed `metricsQuery`
//! ([`QueryTemplate`]) or, where the template's shape needs it, rendered to text and parsed.
//!
//! One deliberate difference from prometheus-adapter: when a request names several objects,
//! `LabelMatchers` carries `pod!=""` instead of `pod=~"a|b|…"`, and the exact set goes to the
//! query engine as a set matcher added to every selector (no giant regex to compile per
//! request). `LabelValuesByName` still holds the `a|b|…` form for templates that read it.
//!
//! A series name that is not a legacy metric name (`net.http.request.count`) renders in
//! PromQL's quoted form where `.Series` stands for a metric name — `<<.Series>>{<<.LabelMatchers>>}`
//! gives `{"net.http.request.count",namespace="ns"}` (Prometheus 3's spelling, without its space
//! after the comma) — and escaped inside string literals (`{__name__="<<.Series>>"}` as before).
//! This holds for templates that only print `.Series` (`<<.Series>>`); one that passes it to a
//! function, condition or variable prints it as is, like prometheus-adapter. Both custom and
//! external rules render here.

use super::naming::{is_prom_label_name, CompiledRule, RuleError};
use super::query_template::{is_legacy_metric_name, QueryTemplate};
use super::selector::{LabelSelector, Operator};
use super::template::TemplateValue;
use crate::adapter::provider::resources::{GroupResource, ObjectResolver};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use tsdb::MatchOp;

/// The objects a custom-metrics query is about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ObjectNames<'a> {
    One(&'a str),
    /// Several objects, sorted; never empty (an empty set is answered without a query).
    Set(&'a [String]),
    /// Every object with the resource label (a namespace-wide or cluster-wide request).
    All,
}

/// Everything a custom-metrics query is built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueryInput<'a> {
    pub(crate) series: &'a str,
    pub(crate) resource: &'a GroupResource,
    /// The namespace of a namespaced request (`None` for root-scoped objects and namespaces).
    pub(crate) namespace: Option<&'a str>,
    pub(crate) names: ObjectNames<'a>,
    pub(crate) metric_selector: &'a LabelSelector,
}

/// What `LabelValuesByName` holds for a part (joined lazily: only templates reading it pay).
#[derive(Debug, Clone, Copy)]
enum ValuesByName<'a> {
    One(&'a str),
    Joined(&'a [String]),
}

/// One matcher of `LabelMatchers`: `label op "value"`.
#[derive(Debug, Clone)]
pub(crate) struct LabelPart<'a> {
    pub(crate) label: Cow<'a, str>,
    pub(crate) op: MatchOp,
    pub(crate) value: Cow<'a, str>,
    by_name: ValuesByName<'a>,
}

impl<'a> LabelPart<'a> {
    /// A part whose `LabelValuesByName` entry is `value` itself.
    pub(super) fn new(label: &'a str, op: MatchOp, value: &'a str) -> Self {
        LabelPart { label: Cow::Borrowed(label), op, value: Cow::Borrowed(value), by_name: ValuesByName::One(value) }
    }

    /// The matcher as PromQL text (what the template's `LabelMatchers` prints).
    fn push_text(&self, out: &mut String) {
        out.push_str(&self.label);
        out.push_str(self.op.promql_text());
        out.push_str(&quote(&self.value));
    }

    fn joined(&self) -> String {
        match self.by_name {
            ValuesByName::One(value) => value.to_string(),
            ValuesByName::Joined(values) => values.join("|"),
        }
    }
}

/// How the engine gets the query.
#[derive(Debug, Clone)]
pub(crate) enum QueryForm {
    /// The rule's parsed template with this request's values substituted (no text, no parse);
    /// `text` is the placeholder rendering the positions in `expr` refer to.
    Parsed { expr: query::ast::Expr, text: Arc<str> },
    /// Rendered text, parsed by the engine (templates whose shape does not allow substitution).
    Text(String),
}

/// A query ready for the engine, and what the answer needs with it.
#[derive(Debug, Clone)]
pub(crate) struct BuiltQuery<'a> {
    pub(crate) form: QueryForm,
    /// Matchers to add to every selector (the exact object set of a multi-object request).
    pub(crate) extra_matchers: Vec<tsdb::Matcher>,
    /// The label naming the object in each result sample (empty for external queries).
    pub(crate) resource_label: String,
    /// Length of the first range (`[2m]` → 120) in the query, if any.
    pub(crate) window_seconds: Option<i64>,
    /// What the query was built from, to render its text for messages.
    series: &'a str,
    parts: Vec<LabelPart<'a>>,
    group_by_resource: bool,
}

impl BuiltQuery<'_> {
    /// The query as PromQL text (for messages and `adapter-config check`).
    pub(crate) fn text(&self, rule: &CompiledRule) -> Result<String, RuleError> {
        match &self.form {
            QueryForm::Text(text) => Ok(text.clone()),
            QueryForm::Parsed { .. } => rule.render(self.series, &self.parts, &[], self.group_by()),
        }
    }

    /// The whole query as PromQL text for a Prometheus-compatible query API: the
    /// `extra_matchers` (an object set, a label selector answered from series labels) become
    /// part of `LabelMatchers` — `pod=~"a|b"` with the names regex-escaped, as
    /// prometheus-adapter sends them.
    pub(crate) fn external_text(&self, rule: &CompiledRule) -> Result<String, RuleError> {
        if self.extra_matchers.is_empty() {
            return self.text(rule);
        }
        rule.render(self.series, &self.parts, &self.extra_matchers, self.group_by())
    }

    fn group_by(&self) -> &[String] {
        if self.group_by_resource {
            std::slice::from_ref(&self.resource_label)
        } else {
            &[]
        }
    }
}

impl CompiledRule {
    /// Builds the query for a custom-metrics request.
    pub(crate) fn build_query<'a>(
        &self,
        input: &QueryInput<'a>,
        resolver: &dyn ObjectResolver,
    ) -> Result<BuiltQuery<'a>, RuleError> {
        let resource_label = self.label_for_resource(input.resource, resolver).ok_or_else(|| RuleError::Invalid {
            at: self.at.clone(),
            message: format!("no label for resource {}", input.resource),
        })?;
        let mut parts = selector_parts(input.metric_selector)?;
        if let Some(namespace) = input.namespace {
            parts.push(self.namespace_part(namespace, resolver));
        }
        let mut extra_matchers = Vec::new();
        let label = Cow::Owned(resource_label.clone());
        parts.push(match input.names {
            ObjectNames::One(name) => {
                LabelPart { label, op: MatchOp::Equal, value: Cow::Borrowed(name), by_name: ValuesByName::One(name) }
            }
            ObjectNames::Set([name]) => {
                LabelPart { label, op: MatchOp::Equal, value: Cow::Borrowed(name), by_name: ValuesByName::One(name) }
            }
            ObjectNames::Set(names) => {
                extra_matchers.push(tsdb::Matcher::one_of(resource_label.clone(), names.iter().cloned()));
                LabelPart {
                    label,
                    op: MatchOp::NotEqual,
                    value: Cow::Borrowed(""),
                    by_name: ValuesByName::Joined(names),
                }
            }
            ObjectNames::All => {
                LabelPart { label, op: MatchOp::NotEqual, value: Cow::Borrowed(""), by_name: ValuesByName::One("") }
            }
        });
        let group_by = std::slice::from_ref(&resource_label);
        let (form, window_seconds) = self.query_form(input.series, &parts, group_by)?;
        Ok(BuiltQuery {
            form,
            extra_matchers,
            resource_label,
            window_seconds,
            series: input.series,
            parts,
            group_by_resource: true,
        })
    }

    /// Builds the query for an external-metrics request in `namespace`.
    pub(crate) fn build_external_query<'a>(
        &self,
        series: &'a str,
        namespace: &'a str,
        metric_selector: &'a LabelSelector,
        resolver: &dyn ObjectResolver,
    ) -> Result<BuiltQuery<'a>, RuleError> {
        let mut parts = selector_parts(metric_selector)?;
        if self.namespaced {
            parts.push(self.namespace_part(namespace, resolver));
        }
        let (form, window_seconds) = self.query_form(series, &parts, &[])?;
        Ok(BuiltQuery {
            form,
            extra_matchers: Vec::new(),
            resource_label: String::new(),
            window_seconds,
            series,
            parts,
            group_by_resource: false,
        })
    }

    fn namespace_part<'a>(&self, namespace: &'a str, resolver: &dyn ObjectResolver) -> LabelPart<'a> {
        let label =
            self.label_for_resource(&GroupResource::namespaces(), resolver).unwrap_or_else(|| "namespace".into());
        LabelPart {
            label: Cow::Owned(label),
            op: MatchOp::Equal,
            value: Cow::Borrowed(namespace),
            by_name: ValuesByName::One(namespace),
        }
    }

    /// The parsed template with the values substituted when its shape allows, else the text.
    fn query_form(
        &self,
        series: &str,
        parts: &[LabelPart<'_>],
        group_by: &[String],
    ) -> Result<(QueryForm, Option<i64>), RuleError> {
        if let Some(substituted) = self.metrics_query.substitute(series, parts, group_by.first().map(String::as_str)) {
            return Ok(substituted);
        }
        let text = self.render(series, parts, &[], group_by)?;
        let window_seconds = first_range_seconds(&text);
        Ok((QueryForm::Text(text), window_seconds))
    }

    /// Renders `metricsQuery` with prometheus-adapter's arguments; `extra_matchers` are
    /// appended to `LabelMatchers` (and left out of `LabelValuesByName`).
    pub(crate) fn render(
        &self,
        series: &str,
        parts: &[LabelPart<'_>],
        extra_matchers: &[tsdb::Matcher],
        group_by: &[String],
    ) -> Result<String, RuleError> {
        let arguments = TemplateArguments { series, parts, extra_matchers, group_by };
        let text = render_template(&self.metrics_query, &arguments, &self.label_value_replacements)
            .map_err(|source| RuleError::Template { at: format!("{}.{}", self.at, self.query_field), source })?;
        if text.trim().is_empty() {
            return Err(RuleError::Invalid {
                at: format!("{}.{}", self.at, self.query_field),
                message: "the template rendered an empty query".into(),
            });
        }
        Ok(text)
    }
}

/// Executes `template` with prometheus-adapter's `metricsQuery` arguments (`replacements` apply
/// to `LabelValuesByName` only, as `labelValueReplacements` of external rules do).
pub(super) fn render_template(
    template: &QueryTemplate,
    arguments: &TemplateArguments<'_>,
    replacements: &[(String, String)],
) -> Result<String, super::template::TemplateError> {
    let TemplateArguments { series, parts, extra_matchers, group_by } = *arguments;
    let mut by_name = BTreeMap::new();
    let mut label_matchers = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            label_matchers.push(',');
        }
        part.push_text(&mut label_matchers);
        let mut value = part.joined();
        for (find, replace) in replacements {
            value = value.replace(find.as_str(), replace);
        }
        by_name.insert(part.label.to_string(), TemplateValue::Str(value));
    }
    for matcher in extra_matchers {
        if !label_matchers.is_empty() {
            label_matchers.push(',');
        }
        push_matcher_text(matcher, &mut label_matchers);
    }
    // A name that is not a legacy metric name is printed as a marker and then quoted where it
    // stands (see `quote_series_sites`); a template passing `.Series` to a function, condition
    // or variable prints it as is. The marker is one no other input holds (request values are
    // anyone's text).
    let marker = (!series.is_empty()
        && !is_legacy_metric_name(series)
        && template.template().prints_field_only_plainly("Series"))
    .then(|| {
        let taken = |m: &str| {
            template.source().contains(m)
                || label_matchers.contains(m)
                || group_by.iter().any(|g| g.contains(m))
                || by_name.iter().any(|(k, v)| k.contains(m) || matches!(v, TemplateValue::Str(s) if s.contains(m)))
        };
        (0u32..).map(|n| format!("{SERIES_MARKER}{n}")).find(|m| !taken(m))
    })
    .flatten();
    let args = TemplateValue::object([
        ("Series", TemplateValue::str(marker.as_deref().unwrap_or(series))),
        ("LabelMatchers", TemplateValue::str(label_matchers)),
        ("LabelValuesByName", TemplateValue::map(by_name)),
        ("GroupBy", TemplateValue::str(group_by.join(","))),
        ("GroupBySlice", TemplateValue::list_of_str(group_by.iter().cloned())),
    ]);
    let text = template.template().render(&args)?;
    Ok(match marker {
        Some(marker) => quote_series_sites(&text, &marker, series),
        None => text,
    })
}

/// What `.Series` prints as (with a number making it unique) before [`quote_series_sites`]
/// puts the name in: a legacy name, so the template prints it like any series.
const SERIES_MARKER: &str = "ringtail_adapter_series_marker";

/// Puts `series` where `marker` was printed in `text`: inside a string literal as its escaped
/// content, and where a metric name goes (outside strings) as PromQL's quoted name in the
/// selector's braces — `m{a="b"}` becomes `{"m",a="b"}`, a bare `m` becomes `{"m"}` — which
/// parses to the same selector as `{__name__="m",a="b"}`. Text around the marker in the same
/// name token (`<<.Series>>_sum`) becomes part of the quoted name; in a `#` comment the name is
/// put as is.
fn quote_series_sites(text: &str, marker: &str, series: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + series.len() + 8);
    let mut i = 0;
    let is_name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    while i < bytes.len() {
        match bytes[i] {
            quote_char @ (b'"' | b'\'' | b'`') => {
                let end = string_end(bytes, i);
                let closed = end - 1 > i && bytes[end - 1] == quote_char;
                let body = &text[i + 1..if closed { end - 1 } else { end }];
                out.push(quote_char as char);
                if quote_char == b'`' {
                    out.push_str(&body.replace(marker, series));
                } else {
                    out.push_str(&body.replace(marker, &escape_in_string(series, quote_char as char)));
                }
                if closed {
                    out.push(quote_char as char);
                }
                i = end;
            }
            b'#' => {
                let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
                out.push_str(&text[i..end].replace(marker, series));
                i = end;
            }
            b if is_name_byte(b) => {
                let end = bytes[i..].iter().position(|&b| !is_name_byte(b)).map_or(bytes.len(), |n| i + n);
                let token = &text[i..end];
                if !token.contains(marker) {
                    out.push_str(token);
                    i = end;
                    continue;
                }
                let name = quote(&token.replace(marker, series));
                let after = text[end..].trim_start();
                if let Some(inside) = after.strip_prefix('{') {
                    out.push('{');
                    out.push_str(&name);
                    if !inside.trim_start().starts_with('}') {
                        out.push(',');
                    }
                    i = text.len() - inside.len();
                } else {
                    out.push('{');
                    out.push_str(&name);
                    out.push('}');
                    i = end;
                }
            }
            _ => {
                let len = text[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&text[i..i + len]);
                i += len;
            }
        }
    }
    out
}

/// The byte after the string literal opening at `start` (or the text's end if unterminated).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let quote_char = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote_char != b'`' => i += 2,
            b if b == quote_char => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// `value` as the content of a `quote_char` string literal.
fn escape_in_string(value: &str, quote_char: char) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c == quote_char => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// What `metricsQuery` is rendered from.
#[derive(Debug, Clone, Copy)]
pub(super) struct TemplateArguments<'a> {
    pub(super) series: &'a str,
    pub(super) parts: &'a [LabelPart<'a>],
    /// Appended to `LabelMatchers` as text; not in `LabelValuesByName`.
    pub(super) extra_matchers: &'a [tsdb::Matcher],
    pub(super) group_by: &'a [String],
}

/// A store matcher as PromQL text; a set matcher becomes `=~"a|b"` with each value
/// regex-escaped.
fn push_matcher_text(matcher: &tsdb::Matcher, out: &mut String) {
    out.push_str(&matcher.name);
    out.push_str(matcher.op.promql_text());
    match matcher.op {
        MatchOp::In => out.push_str(&quote(&regex_alternation(matcher.set_values()))),
        _ => out.push_str(&quote(&matcher.value)),
    }
}

/// A regex matching exactly `values` (each escaped, joined by `|`).
pub(crate) fn regex_alternation<'v>(values: impl IntoIterator<Item = &'v String>) -> String {
    values.into_iter().map(|v| regex::escape(v)).collect::<Vec<_>>().join("|")
}

/// A label value as a PromQL string literal.
pub(crate) fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A metric label selector as `LabelMatchers` parts, with prometheus-adapter's operator
/// mapping; `>`/`<` and non-PromQL label names are refused.
fn selector_parts(selector: &LabelSelector) -> Result<Vec<LabelPart<'_>>, RuleError> {
    let mut parts = Vec::with_capacity(selector.requirements.len() + 2);
    for r in &selector.requirements {
        if !is_prom_label_name(&r.key) {
            return Err(RuleError::BadRequest(format!(
                "metric label selector key {:?} is not a Prometheus label name",
                r.key
            )));
        }
        let alternation = || Cow::Owned(regex_alternation(&r.values));
        let (op, value) = match (r.operator, r.values.as_slice()) {
            (Operator::Equals, [v]) => (MatchOp::Equal, Cow::Borrowed(v.as_str())),
            (Operator::NotEquals, [v]) => (MatchOp::NotEqual, Cow::Borrowed(v.as_str())),
            (Operator::In, _) => (MatchOp::RegexMatch, alternation()),
            (Operator::NotIn, _) => (MatchOp::RegexNoMatch, alternation()),
            (Operator::Exists, _) => (MatchOp::NotEqual, Cow::Borrowed("")),
            (Operator::DoesNotExist, _) => (MatchOp::Equal, Cow::Borrowed("")),
            (op, _) => {
                return Err(RuleError::BadRequest(format!(
                    "operator {op:?} on {:?} is not supported in metric label selectors",
                    r.key
                )))
            }
        };
        parts.push(LabelPart { label: Cow::Borrowed(&r.key), op, value, by_name: ValuesByName::Joined(&r.values) });
    }
    Ok(parts)
}

/// Seconds of the first `[duration]` range in a PromQL text (`[2m]`, `[1m30s]`, `[5m:1m]`).
pub(crate) fn first_range_seconds(query: &str) -> Option<i64> {
    range_seconds(query).next()
}

/// Seconds of the longest `[duration]` range in a PromQL text (or template); 0 without one.
pub(crate) fn longest_range_seconds(query: &str) -> i64 {
    range_seconds(query).max().unwrap_or(0)
}

/// Seconds of every `[duration]` range in a PromQL text, in order.
fn range_seconds(query: &str) -> impl Iterator<Item = i64> + '_ {
    let mut rest = query;
    std::iter::from_fn(move || {
        while let Some(open) = rest.find('[') {
            let after = &rest[open + 1..];
            rest = after;
            let end = after.find([']', ':']).unwrap_or(after.len());
            if let Some(ms) = query::parse_duration_ms(after[..end].trim()) {
                return Some(ms / 1000);
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::provider::resources::BuiltinResolver as TableOnly;
    use crate::adapter::rules::naming::tests::seldon_rule;
    use crate::adapter::rules::RuleKind;

    #[test]
    fn seldon_queries_render_like_prometheus_adapter() {
        let rule = seldon_rule();
        let empty = LabelSelector::default();
        let model = GroupResource::new("mlops.seldon.io", "models");
        let q = rule
            .build_query(
                &QueryInput {
                    series: "seldon_model_infer_total",
                    resource: &model,
                    namespace: Some("seldon-mesh"),
                    names: ObjectNames::One("irisa0"),
                    metric_selector: &empty,
                },
                &TableOnly,
            )
            .unwrap();
        assert_eq!(
            q.text(&rule).unwrap(),
            "sum by (model) (\n  rate (\n    seldon_model_infer_total{namespace=\"seldon-mesh\",model=\"irisa0\"}[2m]\n  )\n)\n"
        );
        assert_eq!(q.window_seconds, Some(120));
        let namespaces = GroupResource::namespaces();
        let q = rule
            .build_query(
                &QueryInput {
                    series: "seldon_model_infer_total",
                    resource: &namespaces,
                    namespace: None,
                    names: ObjectNames::All,
                    metric_selector: &empty,
                },
                &TableOnly,
            )
            .unwrap();
        assert!(
            q.text(&rule).unwrap().contains("seldon_model_infer_total{namespace!=\"\"}[2m]"),
            "{}",
            q.text(&rule).unwrap()
        );
        assert!(q.text(&rule).unwrap().starts_with("sum by (namespace)"));
    }

    #[test]
    fn object_sets_become_a_set_matcher_not_a_regex() {
        let rule = seldon_rule();
        let pods = GroupResource::new("", "pods");
        let names = vec!["a".to_string(), "b".to_string()];
        let selector = LabelSelector::parse("method_type=rest,code in (200,201)").unwrap();
        let q = rule
            .build_query(
                &QueryInput {
                    series: "seldon_model_infer_total",
                    resource: &pods,
                    namespace: Some("ns"),
                    names: ObjectNames::Set(&names),
                    metric_selector: &selector,
                },
                &TableOnly,
            )
            .unwrap();
        assert!(
            q.text(&rule).unwrap().contains("{code=~\"200|201\",method_type=\"rest\",namespace=\"ns\",pod!=\"\"}"),
            "{}",
            q.text(&rule).unwrap()
        );
        assert_eq!(q.extra_matchers.len(), 1);
        assert_eq!(q.extra_matchers[0].set_values(), &names[..]);
    }

    #[test]
    fn ranges() {
        assert_eq!(first_range_seconds("rate(x[1m30s])"), Some(90));
        assert_eq!(first_range_seconds("max_over_time(rate(x[5m])[10m:1m])"), Some(300));
        assert_eq!(first_range_seconds("x"), None);
        assert_eq!(first_range_seconds("x{a=~\"[0-9]\"}"), None);
        assert_eq!(longest_range_seconds("max_over_time(rate(x[5m])[10m:1m])"), 600);
        assert_eq!(longest_range_seconds("sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) / x{a=~\"[0-9]\"}[30s]"), 120);
        assert_eq!(longest_range_seconds("avg(<<.Series>>{<<.LabelMatchers>>})"), 0);
    }

    fn rule(metrics_query: &str, kind: RuleKind) -> CompiledRule {
        rule_in(metrics_query, kind, true)
    }

    fn rule_in(metrics_query: &str, kind: RuleKind, namespaced: bool) -> CompiledRule {
        let rule = crate::adapter::rules::config::DiscoveryRule {
            series_query: "{namespace!=\"\",pod!=\"\"}".into(),
            resources: crate::adapter::rules::config::ResourceMapping {
                template: Some("<<.Resource>>".into()),
                namespaced: Some(namespaced),
                ..Default::default()
            },
            metrics_query: metrics_query.into(),
            ..Default::default()
        };
        CompiledRule::compile(&rule, "rules[0]".into(), kind, &TableOnly).unwrap()
    }

    /// The tree without byte offsets (the placeholder text and the rendered text differ there).
    fn shape(expr: &query::ast::Expr) -> String {
        regex::Regex::new(r"pos: \d+").unwrap().replace_all(&format!("{expr:?}"), "pos: _").into_owned()
    }

    /// Asserts the substituted tree is the one the rendered text parses to; returns whether the
    /// parsed form was used.
    fn assert_same_as_text(rule: &CompiledRule, query: &BuiltQuery<'_>) -> bool {
        let text = query.text(rule).unwrap();
        match &query.form {
            QueryForm::Parsed { expr, .. } => {
                let parsed = query::parse(&text).unwrap();
                assert_eq!(shape(expr), shape(&parsed), "{text}");
                assert_eq!(query.window_seconds, first_range_seconds(&text), "{text}");
                true
            }
            QueryForm::Text(rendered) => {
                assert_eq!(rendered, &text);
                false
            }
        }
    }

    #[test]
    fn substituted_queries_equal_parsed_renderings() {
        let templates = [
            ("sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)", true),
            ("avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)", true),
            ("<<.Series>>{<<.LabelMatchers>>}", true),
            ("max by (<<.GroupBy>>) ({__name__=\"<<.Series>>\",<<.LabelMatchers>>} offset 1m)", true),
            ("sum(<<.Series>>{<<.LabelMatchers>>,job=\"x\"}) by (<<.GroupBy>>) / 2", true),
            ("max_over_time(<<.Series>>{<<.LabelMatchers>>}[5m:1m])", true),
            // Shapes that need the text path.
            ("sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>) * on(<<.GroupBy>>) group_left up", false),
            ("label_replace(<<.Series>>{<<.LabelMatchers>>}, \"a\", \"<<.GroupBy>>\", \"b\", \"\")", false),
            ("<<if .LabelMatchers>><<.Series>>{<<.LabelMatchers>>}<<end>>", false),
            ("<<.Series>>_sum{<<.LabelMatchers>>}", false),
            ("sum(<<.Series>>{pod=~\"<<.LabelValuesByName.pod>>\"}) by (<<.GroupBy>>)", false),
            ("sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBySlice>>)", false),
        ];
        let names = vec!["a".to_string(), "b\"c".to_string()];
        let selectors = [
            LabelSelector::default(),
            LabelSelector::parse("code in (200,2.1),method notin (GET),tier,!canary,zone!=x").unwrap(),
        ];
        let pods = GroupResource::new("", "pods");
        for (template, parsed) in templates {
            let rule = rule(template, RuleKind::Custom);
            assert_eq!(rule.metrics_query.is_parsed(), parsed, "{template}");
            for selector in &selectors {
                for names in [ObjectNames::One("web-0"), ObjectNames::Set(&names), ObjectNames::All] {
                    for namespace in [Some("ns"), None] {
                        let input = QueryInput {
                            series: "http_requests_total",
                            resource: &pods,
                            namespace,
                            names,
                            metric_selector: selector,
                        };
                        let query = rule.build_query(&input, &TableOnly).unwrap();
                        assert_eq!(assert_same_as_text(&rule, &query), parsed, "{template}");
                    }
                }
            }
        }
    }

    #[test]
    fn requests_the_parsed_form_cannot_express_take_the_text_path() {
        let rule = rule("sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)", RuleKind::Custom);
        let pods = GroupResource::new("", "pods");
        let empty = LabelSelector::default();
        // Series names that are not a plain selector name, and a value whose `[` the text path's
        // window scan would read.
        for (series, object) in [("sum", "p"), ("by", "p"), ("Inf", "p"), ("a[1m].b", "p"), ("x", "p[1m]")] {
            let input = QueryInput {
                series,
                resource: &pods,
                namespace: Some("ns"),
                names: ObjectNames::One(object),
                metric_selector: &empty,
            };
            let query = rule.build_query(&input, &TableOnly).unwrap();
            assert!(matches!(query.form, QueryForm::Text(_)), "{series} {object}");
            let text = query.text(&rule).unwrap();
            assert_eq!(query.window_seconds, first_range_seconds(&text), "{text}");
        }
        let query = rule
            .build_query(
                &QueryInput {
                    series: "x",
                    resource: &pods,
                    namespace: None,
                    names: ObjectNames::One(""),
                    metric_selector: &empty,
                },
                &TableOnly,
            )
            .unwrap();
        assert!(matches!(query.form, QueryForm::Parsed { .. }), "a named selector always has a non-empty matcher");
    }

    #[test]
    fn external_queries_substitute_too() {
        let rule = rule("sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)", RuleKind::External);
        assert!(rule.metrics_query.is_parsed());
        let selector = LabelSelector::parse("queue=a").unwrap();
        let query = rule.build_external_query("queue_depth", "ns", &selector, &TableOnly).unwrap();
        assert!(assert_same_as_text(&rule, &query));
        let empty = LabelSelector::default();
        let unnamespaced = rule_in("sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)", RuleKind::External, false);
        let query = unnamespaced.build_external_query("queue_depth", "ns", &empty, &TableOnly).unwrap();
        assert!(!assert_same_as_text(&unnamespaced, &query), "no LabelMatchers at all: the text path");
    }

    #[test]
    fn utf8_series_names_render_quoted_and_substitute_to_the_same_tree() {
        let templates = [
            ("sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)", true),
            ("<<.Series>>{<<.LabelMatchers>>}", true),
            ("max by (<<.GroupBy>>) ({__name__=\"<<.Series>>\",<<.LabelMatchers>>} offset 1m)", true),
            ("max_over_time(<<.Series>>{<<.LabelMatchers>>}[5m:1m])", true),
            ("<<.Series>>_sum{<<.LabelMatchers>>}", false),
            ("sum(<<.Series>>{pod=~\"<<.LabelValuesByName.pod>>\"}) by (<<.GroupBy>>)", false),
        ];
        let selector = LabelSelector::parse("code in (200,500),tier").unwrap();
        let pods = GroupResource::new("", "pods");
        let names = vec!["a".to_string(), "b".to_string()];
        for (template, parsed) in templates {
            let rule = rule(template, RuleKind::Custom);
            for series in ["net.http.request.count", "x:y.z", "über_zähler", "a b{c}=\"", "sum.x", "by-1"] {
                for names in [ObjectNames::One("web-0"), ObjectNames::Set(&names), ObjectNames::All] {
                    let input = QueryInput {
                        series,
                        resource: &pods,
                        namespace: Some("ns"),
                        names,
                        metric_selector: &selector,
                    };
                    let query = rule.build_query(&input, &TableOnly).unwrap();
                    let substitutable = parsed && !series.contains('"');
                    assert_eq!(assert_same_as_text(&rule, &query), substitutable, "{template} {series}");
                    let text = query.text(&rule).unwrap();
                    let expr = query::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
                    let mut names = Vec::new();
                    expr.walk(&mut |node| {
                        if let query::ast::ExprKind::Vector(s) | query::ast::ExprKind::Matrix { selector: s, .. } =
                            &node.kind
                        {
                            names.push(s.name.clone());
                        }
                    });
                    let want = if template.contains("_sum") { format!("{series}_sum") } else { series.to_string() };
                    assert_eq!(names, [Some(want)], "{text}");
                }
            }
        }
    }

    #[test]
    fn utf8_series_names_print_as_prometheus_3_quotes_them() {
        let rule = rule("sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)", RuleKind::Custom);
        let services = GroupResource::new("", "services");
        let empty = LabelSelector::default();
        let input = QueryInput {
            series: "net.http.request.count",
            resource: &services,
            namespace: Some("default"),
            names: ObjectNames::One("frontend"),
            metric_selector: &empty,
        };
        let query = rule.build_query(&input, &TableOnly).unwrap();
        assert!(matches!(query.form, QueryForm::Parsed { .. }));
        assert_eq!(
            query.text(&rule).unwrap(),
            "sum(rate({\"net.http.request.count\",namespace=\"default\",service=\"frontend\"}[1m])) by (service)"
        );
        let by_name = rule_in("{__name__=\"<<.Series>>\",<<.LabelMatchers>>}", RuleKind::Custom, true);
        let query = by_name.build_query(&input, &TableOnly).unwrap();
        assert_eq!(
            query.text(&by_name).unwrap(),
            "{__name__=\"net.http.request.count\",namespace=\"default\",service=\"frontend\"}"
        );
        // Keyword-like legacy names print bare, as before (and as prometheus-adapter prints them).
        let query = rule.build_query(&QueryInput { series: "by", ..input }, &TableOnly).unwrap();
        assert!(matches!(query.form, QueryForm::Text(_)));
        assert!(query.text(&rule).unwrap().starts_with("sum(rate(by{"), "{}", query.text(&rule).unwrap());
    }

    #[test]
    fn series_sites_are_quoted_where_they_stand() {
        let m = "ringtail_adapter_series_marker";
        let cases = [
            ("M{a=\"b\"}", "n.x", "{\"n.x\",a=\"b\"}"),
            ("rate(M[1m])", "n.x", "rate({\"n.x\"}[1m])"),
            ("M {}", "n.x", "{\"n.x\"}"),
            ("M_sum { a=\"b\" }", "n.x", "{\"n.x_sum\", a=\"b\" }"),
            ("M offset 1m", "n.x", "{\"n.x\"} offset 1m"),
            (
                "label_replace(M{a=\"ü\"}, \"x\", \"M\", 'M', `M`)",
                "n\"'",
                "label_replace({\"n\\\"'\",a=\"ü\"}, \"x\", \"n\\\"'\", 'n\"\\'', `n\"'`)",
            ),
            ("# M here\nM", "n.x", "# n.x here\n{\"n.x\"}"),
            ("x{a=\"\\\"M\"}", "n.x", "x{a=\"\\\"n.x\"}"),
            ("\"M", "n.x", "\"n.x"),
            ("\"", "n.x", "\""),
        ];
        for (template, series, want) in cases {
            let text = template.replace('M', m);
            assert_eq!(quote_series_sites(&text, m, series), want, "{template}");
        }
    }

    #[test]
    fn templates_passing_series_to_functions_print_it_as_is() {
        let pods = GroupResource::new("", "pods");
        let empty = LabelSelector::default();
        let input = QueryInput {
            series: "n.x",
            resource: &pods,
            namespace: None,
            names: ObjectNames::One("p"),
            metric_selector: &empty,
        };
        for template in
            ["<<printf \"%s\" .Series>>{<<.LabelMatchers>>}", "<<with .>><<.Series>><<end>>{<<.LabelMatchers>>}"]
        {
            let rule = rule(template, RuleKind::Custom);
            assert!(!rule.metrics_query.template().prints_field_only_plainly("Series"), "{template}");
            let query = rule.build_query(&input, &TableOnly).unwrap();
            assert_eq!(query.text(&rule).unwrap(), "n.x{pod=\"p\"}", "{template}");
        }
        let plain = rule("<<.Series>>{<<.LabelMatchers>>} / on(<<.GroupBy>>) <<.Series>>", RuleKind::Custom);
        assert!(plain.metrics_query.template().prints_field_only_plainly("Series"));
    }

    #[test]
    fn request_values_holding_the_marker_are_left_alone() {
        let rule = rule("sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)", RuleKind::Custom);
        let pods = GroupResource::new("", "pods");
        let object = format!("{SERIES_MARKER}0");
        let selector = LabelSelector::parse(&format!("{SERIES_MARKER}1={SERIES_MARKER}2")).unwrap();
        let input = QueryInput {
            series: "n.x",
            resource: &pods,
            namespace: None,
            names: ObjectNames::One(&object),
            metric_selector: &selector,
        };
        let query = rule.build_query(&input, &TableOnly).unwrap();
        assert_eq!(
            query.text(&rule).unwrap(),
            format!("sum({{\"n.x\",{SERIES_MARKER}1=\"{SERIES_MARKER}2\",pod=\"{object}\"}}) by (pod)")
        );
    }

    #[test]
    fn external_queries_quote_utf8_series_names() {
        let rule = rule("sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m]))", RuleKind::External);
        let selector = LabelSelector::parse("queue=a").unwrap();
        let query = rule.build_external_query("queue.depth", "ns", &selector, &TableOnly).unwrap();
        assert!(assert_same_as_text(&rule, &query));
        assert_eq!(query.text(&rule).unwrap(), "sum(rate({\"queue.depth\",queue=\"a\",namespace=\"ns\"}[1m]))");
    }

    #[test]
    fn default_rules_are_parsed_once() {
        let config =
            crate::adapter::rules::config::AdapterConfig::embedded_default(std::time::Duration::from_secs(300));
        let rules = crate::adapter::rules::compile_rules(&config, "default".into(), &TableOnly).unwrap();
        for rule in rules.custom.iter().chain(&rules.external) {
            assert!(rule.metrics_query.is_parsed(), "{}: {}", rule.at, rule.metrics_query.source());
        }
    }
}
