//! Property tests of the adapter's parsers on hostile input: Kubernetes label selectors, and whole
//! prometheus-adapter rule files (YAML, selectors, regexes, `<<.Series>>`/`<<.LabelMatchers>>`/
//! `<<.GroupBy>>` templates) loaded, compiled and rendered for example objects as
//! `ringtail adapter-config check` does — each a value or an error, never a panic. The libFuzzer
//! targets `adapter_label_selector` and `adapter_rules` in `fuzz/` push the same properties to
//! millions of inputs; these run on stable in CI.

use apiserver::adapter::check::explain;
use apiserver::adapter::rules::selector::LabelSelector;
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;

const SELECTOR_TOKENS: &[&str] = &[
    "app",
    "tier",
    "a.b/c",
    "x",
    "",
    "=",
    "==",
    "!=",
    "!",
    " in ",
    " notin ",
    "(",
    ")",
    ",",
    " ",
    ">",
    "<",
    "3",
    "-1",
    "99999999999999999999",
    "web",
    "a b",
    "/",
    "-",
    "_",
    ".",
    "\u{E9}",
];

fn label_selector() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(SELECTOR_TOKENS), 0..20).prop_map(|t| t.concat())
}

/// Pieces of a rule's templates and PromQL.
const TEMPLATE_TOKENS: &[&str] = &[
    "<<.Series>>",
    "<<.LabelMatchers>>",
    "<<.GroupBy>>",
    "<<.GroupBySlice>>",
    "<<",
    ">>",
    "<<.Nope>>",
    "<< .Series >>",
    "<<range .GroupBySlice>>",
    "<<end>>",
    "<<if .Series>>",
    "{",
    "}",
    ",",
    "sum(",
    "avg(",
    "rate(",
    ")",
    " by (",
    "[2m]",
    "[5m:1m]",
    "up",
    "pod!=\"\"",
    "namespace=\"x\"",
    "\"",
    "'",
    "\\",
    " ",
    "1",
];

fn template() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(TEMPLATE_TOKENS), 0..14).prop_map(|t| t.concat())
}

/// Single-quoted YAML scalar for any text (a quote is doubled).
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[derive(Debug, Clone)]
struct Rule {
    series_query: String,
    overrides: Vec<(String, String)>,
    resource_template: Option<String>,
    name: Option<(String, String)>,
    metrics_query: String,
}

fn rule() -> impl Strategy<Value = Rule> {
    let series_query = prop_oneof![
        Just("ei_scale_ratio{namespace!=\"\",pod!=\"\"}".to_string()),
        Just("{__name__=~\"^.*_total$\",namespace!=\"\"}".to_string()),
        Just("queue_messages_ready".to_string()),
        template(),
    ];
    let label =
        proptest::sample::select(&["namespace", "pod", "service", "node", "queue", "x"][..]).prop_map(String::from);
    let resource = proptest::sample::select(&["namespace", "pod", "pods", "service", "deployment", "nope", ""][..])
        .prop_map(String::from);
    let name = (proptest::sample::select(&["^(.*)_total$", "(", "", ".*", "^(.*)$"][..]), "[$a-z{}1_]{0,8}")
        .prop_map(|(m, a)| (m.to_string(), a));
    (
        series_query,
        proptest::collection::vec((label, resource), 0..3),
        proptest::option::of(prop_oneof![
            Just("<<.Resource>>".to_string()),
            Just("kube_<<.Group>>_<<.Resource>>".to_string()),
            template()
        ]),
        proptest::option::of(name),
        template(),
    )
        .prop_map(|(series_query, overrides, resource_template, name, metrics_query)| Rule {
            series_query,
            overrides,
            resource_template,
            name,
            metrics_query,
        })
}

fn rule_file(custom: &[Rule], external: &[Rule]) -> String {
    let mut yaml = String::new();
    for (key, rules) in [("rules", custom), ("externalRules", external)] {
        yaml.push_str(&format!("{key}:\n"));
        for rule in rules {
            yaml.push_str(&format!("- seriesQuery: {}\n  resources:\n", quoted(&rule.series_query)));
            if let Some(template) = &rule.resource_template {
                yaml.push_str(&format!("    template: {}\n", quoted(template)));
            }
            yaml.push_str("    overrides:\n");
            for (label, resource) in &rule.overrides {
                yaml.push_str(&format!("      {label}: {{resource: {}}}\n", quoted(resource)));
            }
            if let Some((matches, as_)) = &rule.name {
                yaml.push_str(&format!("  name: {{matches: {}, as: {}}}\n", quoted(matches), quoted(as_)));
            }
            yaml.push_str(&format!("  metricsQuery: {}\n", quoted(&rule.metrics_query)));
        }
    }
    yaml
}

/// A store holding series the generated rules can select, so that queries get rendered.
fn store() -> Arc<tsdb::Db> {
    let db = Arc::new(tsdb::Db::open(tsdb::Options::in_memory()).expect("an in-memory store opens"));
    let now_ms = tsdb::now_ms();
    let samples = [tsdb::Sample::new(now_ms, 1.0)];
    let series: &[&[(&str, &str)]] = &[
        &[("__name__", "ei_scale_ratio"), ("namespace", "default"), ("pod", "web-0")],
        &[("__name__", "http_requests_total"), ("namespace", "default"), ("pod", "web-0"), ("service", "web")],
        &[("__name__", "queue_messages_ready"), ("namespace", "default"), ("queue", "orders")],
    ];
    let batch: Vec<_> = series.iter().map(|labels| tsdb::SeriesSamples::labels(labels, &samples)).collect();
    db.append(&batch).expect("the series are stored");
    db
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_label_selector_parses_or_fails_cleanly(text in label_selector()) {
        if let Ok(selector) = LabelSelector::parse(&text) {
            let _ = selector.matches(|name| (name.len() % 2 == 0).then_some("web"));
            let _ = selector.to_k8s_json();
        }
    }

    #[test]
    fn any_unicode_label_selector_never_panics(text in "\\PC{0,64}") {
        let _ = LabelSelector::parse(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_rule_file_is_explained_or_refused(
        custom in proptest::collection::vec(rule(), 0..3),
        external in proptest::collection::vec(rule(), 0..2),
        cut in any::<usize>(),
    ) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("adapter.yaml");
        let db = store();
        let yaml = rule_file(&custom, &external);
        std::fs::write(&path, &yaml).expect("the rule file is written");
        let mut out = Vec::new();
        let _ = explain(&path, Some(db.clone()), Duration::from_secs(600), &mut out);
        // The same file cut anywhere (at a character boundary): YAML errors, never a panic.
        let mut at = cut % (yaml.len() + 1);
        while !yaml.is_char_boundary(at) {
            at -= 1;
        }
        std::fs::write(&path, &yaml[..at]).expect("the rule file is written");
        let _ = explain(&path, Some(db), Duration::from_secs(600), &mut Vec::new());
    }
}
