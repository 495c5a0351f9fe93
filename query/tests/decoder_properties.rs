//! Property tests of the query crate's parsers on hostile input: PromQL built from real tokens (so
//! that inputs get deep into the grammar), `match[]` series selectors, and the duration and time
//! parameters — each a value or an error with a position inside the text, never a panic. The
//! libFuzzer targets `promql_parse` and `series_selector` in `fuzz/` push the same properties to
//! millions of inputs; these run on stable in CI.

use proptest::prelude::*;

/// PromQL tokens: operators, modifiers, functions, aggregations, selectors and literals.
const PROMQL_TOKENS: &[&str] = &[
    "up",
    "m_total",
    "{",
    "}",
    "job",
    "=",
    "!=",
    "=~",
    "!~",
    "\"a\"",
    "\".+\"",
    "\"\\\\\"",
    ",",
    "(",
    ")",
    "[",
    "]",
    "5m",
    "1h30m",
    "0s",
    ":",
    "1ms",
    " ",
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "==",
    "!=",
    ">",
    "<",
    ">=",
    "<=",
    "and",
    "or",
    "unless",
    "atan2",
    "bool",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "by",
    "without",
    "offset",
    "@",
    "start()",
    "end()",
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "stddev",
    "limitk",
    "rate",
    "irate",
    "increase",
    "delta",
    "histogram_quantile",
    "label_replace",
    "label_join",
    "abs",
    "time()",
    "vector",
    "scalar",
    "absent",
    "sort",
    "clamp",
    "round",
    "predict_linear",
    "holt_winters",
    "sum_over_time",
    "1",
    "0.5",
    "-1e3",
    "0x1F",
    "Inf",
    "NaN",
    "'a'",
    "`b`",
    "# c\n",
    "\n",
    "__name__",
    "\u{E9}",
];

fn promql() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(PROMQL_TOKENS), 0..32).prop_map(|t| t.concat())
}

/// Selector-shaped text: a name, then matchers from PromQL tokens.
fn selector() -> impl Strategy<Value = String> {
    (
        proptest::option::of("[a-z_:][a-z0-9_:]{0,6}"),
        proptest::collection::vec(proptest::sample::select(PROMQL_TOKENS), 0..12),
    )
        .prop_map(|(name, rest)| format!("{}{{{}", name.unwrap_or_default(), rest.concat()))
}

/// Inputs the fuzzer flagged (`fuzz/artifacts/promql_parse/`), replayed on stable:
/// `slow-case-insensitive-regex` (2.4 KB: a matcher whose regex holds `(?i)` over wide classes)
/// passed libFuzzer's 10 s wall-clock limit on a machine with both cores busy at higher priority;
/// alone it takes 0.3 s of CPU, almost all of it coverage callbacks inside regex-syntax's Unicode
/// case folding. Each must parse or fail with a position inside the text.
#[test]
fn fuzz_findings_parse_or_fail_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_findings/promql_parse");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8(bytes).expect("the fuzz target only parses UTF-8");
        match query::parse(&text) {
            Ok(expr) => {
                let _ = expr.value_type();
            }
            Err(e) => assert!(e.pos <= text.len(), "position {} in {} bytes", e.pos, text.len()),
        }
        replayed += 1;
    }
    assert!(replayed > 0, "no findings in {}", dir.display());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn promql_from_tokens_parses_or_names_a_position(text in promql()) {
        match query::parse(&text) {
            Ok(expr) => {
                let _ = expr.value_type();
            }
            Err(e) => {
                prop_assert!(e.pos <= text.len(), "position {} in {} bytes", e.pos, text.len());
                let _ = query::line_col(&text, e.pos);
            }
        }
    }

    #[test]
    fn a_selector_is_a_query_that_parses(text in selector()) {
        if let Ok(matchers) = query::parse_selector(&text) {
            prop_assert!(query::parse(&text).is_ok());
            for matcher in &matchers {
                let _ = matcher.matches(&text);
            }
        }
    }

    #[test]
    fn parameters_parse_or_fail_cleanly(text in "[0-9a-zA-Z.:+\\-TZ]{0,24}|\\PC{0,24}") {
        let _ = query::parse_duration_ms(&text);
        let _ = query::parse_duration_param_ms(&text);
        let _ = query::parse_time_ms(&text);
        let _ = query::parse_selector(&text);
    }
}
