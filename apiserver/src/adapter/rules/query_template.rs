//! `QueryTemplate` is a rule's `metricsQuery` compiled once, at rule load: the template rendered
//! with placeholder values and parsed, so that a request substitutes its series name,
//! `LabelMatchers` and `GroupBy` into a copy of the syntax tree instead of rendering text and
//! parsing it again.
//!
//! Substitution gives exactly the tree the rendered text would parse to, so it is used only where
//! that is certain: the template only prints fields (`<<.Series>>`, no functions, conditionals or
//! loops), every placeholder lands where a value is a token of its own (a selector's metric name,
//! a matcher list, an aggregation's grouping label), and the request's values are tokens of the same kind (the
//! series a plain metric name, the labels plain label names, the matcher list not empty). Any
//! other template or request takes the text path ([`QueryForm::Text`]), with the same result.
//!
//! A series name outside the legacy metric-name character set (`net.http.request.count`, as
//! Prometheus 3 and OpenTelemetry write them) is substituted too: the text path prints it where a
//! metric name goes in PromQL's quoted form (`{"net.http.request.count",namespace="ns"}`, see
//! `render_template`), which parses to the selector's `__name__` matcher, exactly what
//! substitution puts there. Legacy-looking names that are keywords (`by`, `sum`) stay on the text
//! path, printed bare as prometheus-adapter prints them.

use super::naming::{is_prom_label_name, RuleKind};
use super::query::{first_range_seconds, render_template, LabelPart, QueryForm, TemplateArguments};
use super::template::Template;
use query::ast::{Expr, ExprKind, VectorSelector};
use std::sync::Arc;
use tsdb::{MatchOp, Matcher};

/// Stands for `.Series`; prints as a metric name no real request sends.
const SERIES_PLACEHOLDER: &str = "ringtail_adapter_placeholder_series";
/// Stands for one matcher of `.LabelMatchers`.
const MATCHERS_PLACEHOLDER: &str = "ringtail_adapter_placeholder_matchers";
/// Stands for the one label of `.GroupBy` of a custom-metrics query.
const GROUP_BY_PLACEHOLDER: &str = "ringtail_adapter_placeholder_group_by";
/// What every placeholder starts with.
const PLACEHOLDER_PREFIX: &str = "ringtail_adapter_placeholder_";

/// Words that are not a selector when written where a metric name goes (PromQL keywords,
/// operators and number words); a series named so takes the text path.
const NOT_A_SELECTOR: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
];

/// A `metricsQuery` template, parsed with placeholders when its shape allows.
#[derive(Debug, Clone)]
pub(crate) struct QueryTemplate {
    template: Template,
    parsed: Option<ParsedShape>,
}

/// The template's placeholder rendering parsed once.
#[derive(Debug, Clone)]
struct ParsedShape {
    /// The placeholder rendering (positions in `expr` refer to it).
    text: Arc<str>,
    expr: Expr,
    window_seconds: Option<i64>,
    /// Whether `.GroupBy` is a placeholder (custom rules) or a constant `""` (external rules).
    group_by_placeholder: bool,
}

impl QueryTemplate {
    /// Compiles `template` for a rule of `kind`.
    pub(crate) fn new(template: Template, kind: RuleKind) -> QueryTemplate {
        let mut compiled = QueryTemplate { template, parsed: None };
        compiled.parsed = compiled.parse_shape(kind);
        compiled
    }

    /// The template as parsed.
    pub(crate) fn template(&self) -> &Template {
        &self.template
    }

    /// The template text as written.
    pub(crate) fn source(&self) -> &str {
        self.template.source()
    }

    /// Whether requests substitute into a parsed tree (`false`: every request renders and parses).
    #[cfg(test)]
    pub(crate) fn is_parsed(&self) -> bool {
        self.parsed.is_some()
    }

    fn parse_shape(&self, kind: RuleKind) -> Option<ParsedShape> {
        if !self.template.is_plain_field_prints() {
            return None;
        }
        // External queries always get an empty GroupBy: a constant, rendered as such.
        let group_by_placeholder = kind == RuleKind::Custom;
        let allowed: &[&str] = if group_by_placeholder {
            &["Series", "LabelMatchers", "GroupBy"]
        } else {
            &["Series", "LabelMatchers", "GroupBy", "GroupBySlice"]
        };
        if !self.template.root_fields().iter().all(|f| allowed.contains(&f.as_str())) {
            return None;
        }
        let group_by = if group_by_placeholder { vec![GROUP_BY_PLACEHOLDER.to_string()] } else { Vec::new() };
        let placeholder_part = LabelPart::placeholder(MATCHERS_PLACEHOLDER);
        let text = render_template(
            self,
            &TemplateArguments {
                series: SERIES_PLACEHOLDER,
                parts: std::slice::from_ref(&placeholder_part),
                extra_matchers: &[],
                group_by: &group_by,
            },
            &[],
        )
        .ok()?;
        if text.trim().is_empty() {
            return None;
        }
        let expr = query::parse(&text).ok()?;
        let mut sites = Sites::default();
        count_sites(&expr, &mut sites);
        let occurrences = |placeholder: &str| text.matches(placeholder).count();
        let exact = sites.series == occurrences(SERIES_PLACEHOLDER)
            && sites.matchers == occurrences(MATCHERS_PLACEHOLDER)
            && sites.group_by == occurrences(GROUP_BY_PLACEHOLDER)
            && range_scan_avoids_placeholders(&text);
        exact.then(|| ParsedShape {
            window_seconds: first_range_seconds(&text),
            text: Arc::from(text),
            expr,
            group_by_placeholder,
        })
    }

    /// The parsed query with `series`, `parts` and `group_by` substituted, and its window;
    /// `None` when this template or these values need the text path.
    pub(crate) fn substitute(
        &self,
        series: &str,
        parts: &[LabelPart<'_>],
        group_by: Option<&str>,
    ) -> Option<(QueryForm, Option<i64>)> {
        if !is_substitutable_series(series)
            || parts.is_empty()
            || parts
                .iter()
                .any(|p| p.label == tsdb::METRIC_NAME || !is_prom_label_name(&p.label) || p.value.contains('['))
        {
            return None;
        }
        let matchers: Vec<Matcher> = parts
            .iter()
            .map(|p| Matcher::new(p.op, p.label.as_ref(), p.value.as_ref()))
            .collect::<Result<_, _>>()
            .ok()?;
        let group_by: Vec<String> = group_by.map(str::to_string).into_iter().collect();
        self.substitute_values(&Values { series, matchers: &matchers, group_by: &group_by })
    }

    /// The parsed query with `matchers` standing for `LabelMatchers` (set matchers included:
    /// they filter exactly where prometheus-adapter's `a|b|…` regex would) and `group_by` for
    /// `GroupBy`; `None` when the template prints `.Series` or needs the text path.
    pub(crate) fn substitute_matchers(
        &self,
        matchers: &[Matcher],
        group_by: &[String],
    ) -> Option<(QueryForm, Option<i64>)> {
        let shape = self.parsed.as_ref()?;
        if matchers.is_empty()
            || shape.text.contains(SERIES_PLACEHOLDER)
            || matchers.iter().any(|m| m.name == tsdb::METRIC_NAME || !is_prom_label_name(&m.name))
        {
            return None;
        }
        self.substitute_values(&Values { series: "", matchers, group_by })
    }

    fn substitute_values(&self, values: &Values<'_>) -> Option<(QueryForm, Option<i64>)> {
        let shape = self.parsed.as_ref()?;
        let group_by_fits = if shape.group_by_placeholder {
            !values.group_by.is_empty() && values.group_by.iter().all(|l| is_prom_label_name(l))
        } else {
            values.group_by.is_empty()
        };
        if !group_by_fits {
            return None;
        }
        let mut expr = shape.expr.clone();
        substitute(&mut expr, values)?;
        Some((QueryForm::Parsed { expr, text: shape.text.clone() }, shape.window_seconds))
    }
}

impl LabelPart<'static> {
    /// A matcher that stands for all of `LabelMatchers` (`name="x"`).
    fn placeholder(name: &'static str) -> Self {
        LabelPart::new(name, MatchOp::Equal, "x")
    }
}

/// How many places of each placeholder the parsed tree has. `GroupBy` counts only in an
/// aggregation's `by`/`without`: in `on(…)`/`group_left(…)` the parser checks labels against
/// each other, so the placeholder could pass where the real label fails.
#[derive(Debug, Default)]
struct Sites {
    series: usize,
    matchers: usize,
    group_by: usize,
}

fn count_sites(expr: &Expr, sites: &mut Sites) {
    expr.walk(&mut |node| match &node.kind {
        ExprKind::Vector(selector) | ExprKind::Matrix { selector, .. } => {
            for m in &selector.matchers {
                if m.name == tsdb::METRIC_NAME && m.op == MatchOp::Equal && m.value == SERIES_PLACEHOLDER {
                    sites.series += 1;
                }
                if m.name == MATCHERS_PLACEHOLDER && m.op == MatchOp::Equal && m.value == "x" {
                    sites.matchers += 1;
                }
            }
        }
        ExprKind::Aggregate { grouping, .. } => {
            sites.group_by += grouping.iter().filter(|l| *l == GROUP_BY_PLACEHOLDER).count();
        }
        _ => {}
    });
}

/// Whether every `[…]` segment `first_range_seconds` reads is free of placeholders, so the
/// window found in the placeholder text is the one the rendered text gives.
fn range_scan_avoids_placeholders(text: &str) -> bool {
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let end = after.find([']', ':']).unwrap_or(after.len());
        if after[..end].contains(PLACEHOLDER_PREFIX) {
            return false;
        }
        rest = after;
    }
    true
}

/// Whether `name`, printed where a metric name goes, parses as a selector of that name.
fn is_plain_metric_name(name: &str) -> bool {
    is_legacy_metric_name(name)
        && !NOT_A_SELECTOR.iter().any(|word| name.eq_ignore_ascii_case(word))
        && query::ast::AggOp::from_name(name).is_none()
}

/// Whether `name` is a metric name in the legacy character set (`[a-zA-Z_:][a-zA-Z0-9_:]*`),
/// which PromQL writes bare; any other name is written quoted (`{"net.http.request.count"}`).
pub(super) fn is_legacy_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `series` can be substituted: a plain metric name, or a name outside the legacy
/// character set, which the text path prints in PromQL's quoted form and so means exactly the
/// `__name__` matcher substitution gives. Legacy-looking keywords (`by`, `sum`, `Inf`) keep the
/// text path, which prints them bare as prometheus-adapter does. Quotes, backslashes and
/// control characters (escaped differently per string kind) and `[` (which the text path's
/// window scan would read) keep the text path too.
fn is_substitutable_series(series: &str) -> bool {
    is_plain_metric_name(series)
        || (!series.is_empty()
            && !is_legacy_metric_name(series)
            && !series.contains(['"', '\'', '`', '\\', '['])
            && !series.chars().any(char::is_control))
}

/// One request's values.
struct Values<'a> {
    series: &'a str,
    matchers: &'a [Matcher],
    /// What one `GroupBy` placeholder becomes (empty for external rules, which have none).
    group_by: &'a [String],
}

/// Puts `values` where the placeholders are; `None` where the rendered text would not parse to
/// the result (a selector left with only empty-matching matchers is a parse error there).
fn substitute(expr: &mut Expr, values: &Values<'_>) -> Option<()> {
    match &mut expr.kind {
        ExprKind::Number(_) | ExprKind::String(_) => {}
        ExprKind::Vector(selector) | ExprKind::Matrix { selector, .. } => substitute_selector(selector, values)?,
        ExprKind::Subquery { expr, .. } | ExprKind::Paren(expr) | ExprKind::Neg(expr) => substitute(expr, values)?,
        ExprKind::Binary { lhs, rhs, .. } => {
            substitute(lhs, values)?;
            substitute(rhs, values)?;
        }
        ExprKind::Aggregate { param, expr, grouping, .. } => {
            if let Some(param) = param {
                substitute(param, values)?;
            }
            substitute(expr, values)?;
            substitute_labels(grouping, values);
        }
        ExprKind::Call { args, .. } => {
            for arg in args {
                substitute(arg, values)?;
            }
        }
    }
    Some(())
}

fn substitute_labels(labels: &mut Vec<String>, values: &Values<'_>) {
    while let Some(at) = labels.iter().position(|l| l == GROUP_BY_PLACEHOLDER) {
        labels.splice(at..=at, values.group_by.iter().cloned());
    }
}

fn substitute_selector(selector: &mut VectorSelector, values: &Values<'_>) -> Option<()> {
    if selector.name.as_deref() == Some(SERIES_PLACEHOLDER) {
        selector.name = Some(values.series.to_string());
    }
    if !selector.matchers.iter().any(|m| m.name == MATCHERS_PLACEHOLDER || m.value == SERIES_PLACEHOLDER) {
        return Some(());
    }
    let mut matchers = Vec::with_capacity(selector.matchers.len() + values.matchers.len());
    for matcher in selector.matchers.drain(..) {
        if matcher.name == MATCHERS_PLACEHOLDER {
            matchers.extend(values.matchers.iter().cloned());
        } else if matcher.name == tsdb::METRIC_NAME && matcher.value == SERIES_PLACEHOLDER {
            matchers.push(Matcher::equal(tsdb::METRIC_NAME, values.series));
        } else {
            matchers.push(matcher);
        }
    }
    if matchers.iter().all(Matcher::matches_empty) {
        return None;
    }
    selector.matchers = matchers;
    Some(())
}
