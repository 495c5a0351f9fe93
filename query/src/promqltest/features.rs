//! `features` decides which PromQL features a test query uses, token by token, the same way the
//! conformance inventory (`shared/promql-conformance/inventory.py`) does, so the runner skips
//! exactly the evals that use something outside Ringtail's language. The engine knows more than
//! the inventory's `project` subset (the rest of Prometheus 2.42's float PromQL), so it runs every
//! eval the inventory places inside that subset and the further ones of the added features.

use crate::ast::AggOp;
use std::collections::BTreeSet;

/// Tokens the inventory treats as aggregation operators when followed by `(`, `by` or `without`
/// (every aggregation of Prometheus 3, in or outside Ringtail's subset).
const AGGREGATORS: &[&str] = &[
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
    "limitk",
    "limit_ratio",
];
const GROUPING: &[&str] =
    &["by", "without", "on", "ignoring", "group_left", "group_right", "fill", "fill_left", "fill_right"];
const ARITH: &[&str] = &["+", "-", "*", "/", "%", "^"];
const COMPARE: &[&str] = &["==", "!=", ">", "<", ">=", "<="];

/// Whether `feature` is inside Ringtail's subset.
pub fn in_project(feature: &str) -> bool {
    // Functions and aggregations are in the subset exactly when the parser knows them: the
    // function table and `AggOp` are the lists, so the runner cannot drift from the engine.
    if let Some(f) = feature.strip_prefix("fn:") {
        return crate::functions::lookup(f).is_some();
    }
    if let Some(a) = feature.strip_prefix("agg:") {
        return AggOp::from_name(a).is_some();
    }
    if let Some(o) = feature.strip_prefix("op:") {
        return ARITH.contains(&o) || COMPARE.contains(&o) || ["and", "or", "unless", "atan2"].contains(&o);
    }
    matches!(
        feature,
        "unary:-"
            | "unary:+"
            | "literal:number"
            | "literal:string"
            | "grouping:by"
            | "grouping:without"
            | "match:on"
            | "match:ignoring"
            | "match:group_left"
            | "match:group_right"
            | "matcher:="
            | "matcher:!="
            | "matcher:=~"
            | "matcher:!~"
            | "range"
            | "offset"
            | "offset:negative"
            | "bool"
            | "at"
            | "at:start()"
            | "at:end()"
            | "subquery"
    )
}

/// A human name for a feature outside the subset (`function info`).
pub fn reason_label(feature: &str) -> String {
    if let Some(f) = feature.strip_prefix("fn:") {
        return format!("function {f}");
    }
    if let Some(a) = feature.strip_prefix("agg:") {
        return format!("aggregation {a}");
    }
    if let Some(o) = feature.strip_prefix("op:") {
        return format!("operator {o}");
    }
    feature.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Dur,
    Num,
    Id,
    Op,
    Bad,
}

struct Tok<'a> {
    kind: Kind,
    text: &'a str,
}

/// One selector condition `(label, op, value)` as the inventory reads it.
pub type LooseMatcher = (String, String, String);

fn lex(query: &str) -> Vec<Tok<'_>> {
    let bytes = query.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &query[pos..];
        let c = bytes[pos];
        if c.is_ascii_whitespace() {
            pos += 1;
            continue;
        }
        let len = lex_string(rest)
            .map(|l| (Kind::Str, l))
            .or_else(|| lex_duration(rest).map(|l| (Kind::Dur, l)))
            .or_else(|| lex_number(rest).map(|l| (Kind::Num, l)))
            .or_else(|| lex_ident(rest).map(|l| (Kind::Id, l)))
            .or_else(|| lex_op(rest).map(|l| (Kind::Op, l)));
        let (mut kind, l) = len.unwrap_or((Kind::Bad, rest.chars().next().map_or(1, char::len_utf8)));
        let text = &query[pos..pos + l];
        if kind == Kind::Id && (text.eq_ignore_ascii_case("inf") || text.eq_ignore_ascii_case("nan")) {
            kind = Kind::Num;
        }
        out.push(Tok { kind, text });
        pos += l;
    }
    out
}

fn lex_string(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let q = *b.first()?;
    match q {
        b'`' => s[1..].find('`').map(|i| i + 2),
        b'"' | b'\'' => {
            let mut i = 1;
            while i < b.len() {
                if b[i] == b'\\' {
                    i += 2;
                    continue;
                }
                if b[i] == q {
                    return Some(i + 1);
                }
                i += 1;
            }
            None
        }
        _ => None,
    }
}

fn lex_duration(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut ends = Vec::new();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i >= b.len() {
            break;
        }
        if b[i..].starts_with(b"ms") {
            i += 2;
        } else if b"smhdwy".contains(&b[i]) {
            i += 1;
        } else {
            break;
        }
        ends.push(i);
    }
    ends.into_iter().rev().find(|&e| !b.get(e).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.'))
}

fn lex_number(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.len() > 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') && b[2].is_ascii_hexdigit() {
        let mut i = 2;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        return Some(i);
    }
    let mut i = 0;
    if b.first()?.is_ascii_digit() {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        while i + 1 < b.len() && b[i] == b'_' && b[i + 1].is_ascii_digit() {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
        }
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    } else if b[0] == b'.' && b.get(1).is_some_and(u8::is_ascii_digit) {
        i = 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    } else {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let digits = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > digits {
            i = j;
        }
    }
    Some(i)
}

fn lex_ident(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if !(b.first()?.is_ascii_alphabetic() || b[0] == b'_') {
        return None;
    }
    Some(b.iter().position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')).unwrap_or(b.len()))
}

fn lex_op(s: &str) -> Option<usize> {
    for two in ["==", "!=", ">=", "<=", "=~", "!~", "</", ">/"] {
        if s.starts_with(two) {
            return Some(2);
        }
    }
    "-+*/%^<>=@(){}[],:".contains(s.chars().next()?).then_some(1)
}

/// The value of a quoted string token.
fn unquote(s: &str) -> String {
    if s.starts_with('`') {
        return s[1..s.len() - 1].to_string();
    }
    let inner = &s[1..s.len().saturating_sub(1).max(1)];
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn parse_matchers(toks: &[Tok<'_>], mut i: usize) -> (Vec<LooseMatcher>, usize) {
    let mut matchers = Vec::new();
    i += 1;
    while i < toks.len() && toks[i].text != "}" {
        let t = &toks[i];
        if (t.kind == Kind::Id || t.kind == Kind::Str)
            && i + 2 < toks.len()
            && ["=", "!=", "=~", "!~"].contains(&toks[i + 1].text)
        {
            let label = if t.kind == Kind::Str { unquote(t.text) } else { t.text.to_string() };
            let v = &toks[i + 2];
            let value = if v.kind == Kind::Str { unquote(v.text) } else { v.text.to_string() };
            matchers.push((label, toks[i + 1].text.to_string(), value));
            i += 3;
        } else if t.kind == Kind::Str {
            matchers.push(("__name__".into(), "=".into(), unquote(t.text)));
            i += 1;
        } else {
            i += 1;
        }
    }
    (matchers, i + 1)
}

fn skip_group(toks: &[Tok<'_>], mut i: usize) -> usize {
    if i >= toks.len() || toks[i].text != "(" {
        return i;
    }
    let mut depth = 0;
    while i < toks.len() {
        if toks[i].text == "(" {
            depth += 1;
        } else if toks[i].text == ")" {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    i
}

/// Features of a query, and its selectors as lists of matchers.
pub fn analyse(query: &str) -> (BTreeSet<String>, Vec<Vec<LooseMatcher>>) {
    let toks = lex(query);
    let mut feats = BTreeSet::new();
    let mut selectors = Vec::new();
    let mut prev_operand = false;
    let mut i = 0;
    let add = |f: String, feats: &mut BTreeSet<String>| {
        feats.insert(f);
    };
    while i < toks.len() {
        let (kind, text) = (toks[i].kind, toks[i].text);
        let nxt = toks.get(i + 1).map(|t| t.text);
        let low = text.to_ascii_lowercase();
        match kind {
            Kind::Bad => {
                add("unlexable text".into(), &mut feats);
                i += 1;
                continue;
            }
            Kind::Str => {
                add("literal:string".into(), &mut feats);
                prev_operand = true;
                i += 1;
                continue;
            }
            Kind::Num | Kind::Dur => {
                add("literal:number".into(), &mut feats);
                prev_operand = true;
                i += 1;
                continue;
            }
            Kind::Id => {
                let nxt_low = nxt.map(str::to_ascii_lowercase);
                if AGGREGATORS.contains(&low.as_str())
                    && nxt_low.as_deref().is_some_and(|n| n == "(" || n == "by" || n == "without")
                {
                    add(format!("agg:{low}"), &mut feats);
                    prev_operand = false;
                    i += 1;
                    continue;
                }
                if GROUPING.contains(&low.as_str()) {
                    let f = if low == "by" || low == "without" {
                        format!("grouping:{low}")
                    } else if ["on", "ignoring", "group_left", "group_right"].contains(&low.as_str()) {
                        format!("match:{low}")
                    } else {
                        "newer:fill".to_string()
                    };
                    add(f, &mut feats);
                    i = skip_group(&toks, i + 1);
                    continue;
                }
                if ["and", "or", "unless", "atan2"].contains(&low.as_str()) {
                    add(format!("op:{low}"), &mut feats);
                    prev_operand = false;
                    i += 1;
                    continue;
                }
                if low == "bool" {
                    add("bool".into(), &mut feats);
                    i += 1;
                    continue;
                }
                if low == "smoothed" || low == "anchored" {
                    add(format!("newer:{low}"), &mut feats);
                    i += 1;
                    continue;
                }
                if low == "offset" {
                    add("offset".into(), &mut feats);
                    let mut j = i + 1;
                    if j < toks.len() && (toks[j].text == "-" || toks[j].text == "+") {
                        if toks[j].text == "-" {
                            add("offset:negative".into(), &mut feats);
                        }
                        j += 1;
                    }
                    if j < toks.len() && matches!(toks[j].kind, Kind::Dur | Kind::Num) {
                        i = j + 1;
                    } else {
                        add("duration expression".into(), &mut feats);
                        if j < toks.len() && toks[j].kind == Kind::Id {
                            j += 1;
                        }
                        i = skip_group(&toks, j);
                    }
                    prev_operand = true;
                    continue;
                }
                if nxt == Some("(") {
                    add(format!("fn:{text}"), &mut feats);
                    prev_operand = false;
                    i += 1;
                    continue;
                }
                let mut matchers = vec![("__name__".to_string(), "=".to_string(), text.to_string())];
                i += 1;
                if i < toks.len() && toks[i].text == "{" {
                    let (more, next) = parse_matchers(&toks, i);
                    i = next;
                    for m in &more {
                        add(format!("matcher:{}", m.1), &mut feats);
                    }
                    matchers.extend(more);
                }
                selectors.push(matchers);
                prev_operand = true;
                continue;
            }
            Kind::Op => {}
        }
        match text {
            "{" => {
                let (matchers, next) = parse_matchers(&toks, i);
                for m in &matchers {
                    add(format!("matcher:{}", m.1), &mut feats);
                }
                selectors.push(matchers);
                prev_operand = true;
                i = next;
                continue;
            }
            "[" => {
                let mut depth = 0;
                let mut j = i;
                while j < toks.len() {
                    if toks[j].text == "[" {
                        depth += 1;
                    } else if toks[j].text == "]" {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    j += 1;
                }
                let inner = &toks[i + 1..j.min(toks.len())];
                let colon = inner.iter().position(|t| t.text == ":");
                let parts: Vec<&[Tok<'_>]> = match colon {
                    Some(c) => vec![&inner[..c], &inner[c + 1..]],
                    None => vec![inner],
                };
                add(if colon.is_some() { "subquery" } else { "range" }.into(), &mut feats);
                let simple = !parts[0].is_empty()
                    && parts
                        .iter()
                        .filter(|p| !p.is_empty())
                        .all(|p| p.len() == 1 && matches!(p[0].kind, Kind::Dur | Kind::Num));
                if !simple {
                    add("duration expression".into(), &mut feats);
                }
                prev_operand = true;
                i = j + 1;
                continue;
            }
            "@" => {
                add("at".into(), &mut feats);
                let mut j = i + 1;
                if j < toks.len() && (toks[j].text == "-" || toks[j].text == "+") {
                    j += 1;
                }
                let word = toks.get(j).map(|t| t.text.to_ascii_lowercase());
                if (word.as_deref() == Some("start") || word.as_deref() == Some("end"))
                    && toks.get(j + 1).is_some_and(|t| t.text == "(")
                {
                    add(format!("at:{}()", word.unwrap_or_default()), &mut feats);
                    i = skip_group(&toks, j + 1);
                } else if toks.get(j).is_some_and(|t| matches!(t.kind, Kind::Num | Kind::Dur)) {
                    i = j + 1;
                } else {
                    add("duration expression".into(), &mut feats);
                    i = j;
                }
                prev_operand = true;
                continue;
            }
            "+" | "-" if !prev_operand => {
                add(format!("unary:{text}"), &mut feats);
                i += 1;
                continue;
            }
            t if ARITH.contains(&t) || COMPARE.contains(&t) || t == "</" || t == ">/" => {
                add(format!("op:{t}"), &mut feats);
                prev_operand = false;
                i += 1;
                continue;
            }
            ")" => prev_operand = true,
            "(" | "," | ":" | "=" | "=~" | "!~" => prev_operand = false,
            _ => {}
        }
        i += 1;
    }
    (feats, selectors)
}

/// Whether a loaded series (label map) matches a loose selector, as the inventory decides.
pub fn matches(series: &[(String, String)], matchers: &[LooseMatcher]) -> bool {
    matchers.iter().all(|(label, op, value)| {
        let have = series.iter().find(|(n, _)| n == label).map_or("", |(_, v)| v.as_str());
        match op.as_str() {
            "=" => have == value,
            "!=" => have != value,
            _ => {
                let hit = regex::Regex::new(&format!("^(?s:{value})$")).map(|r| r.is_match(have)).unwrap_or(false);
                hit == (op == "=~")
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_of_typical_queries() {
        let (f, s) = analyse("sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m] offset -1m))");
        for want in ["agg:sum", "grouping:by", "fn:rate", "matcher:=~", "range", "offset", "offset:negative"] {
            assert!(f.contains(want), "{want} missing from {f:?}");
        }
        assert_eq!(s.len(), 1);
        let (f, _) = analyse("-metric_a or predict_linear(x[5m], 60) atan2 histogram_count(y)");
        assert!(f.contains("unary:-") && f.contains("op:or") && f.contains("fn:predict_linear"));
        assert!(f.contains("op:atan2") && f.contains("fn:histogram_count"));
        assert!(in_project("fn:predict_linear") && in_project("op:atan2"));
        assert!(!in_project("fn:histogram_count"));
        assert!(in_project("fn:rate"));
    }

    /// The subset of `shared/promql-conformance/inventory.py` (`PROJECT_FUNCS`, `PROJECT_AGGS`):
    /// the engine implements all of these and more (the rest of Prometheus 2.42's float
    /// functions), so the runner runs every eval the inventory places inside the subset and the
    /// further ones of the added functions.
    const INVENTORY_FUNCS: &str = "rate irate increase delta idelta deriv resets changes
        avg_over_time min_over_time max_over_time sum_over_time count_over_time last_over_time
        quantile_over_time stddev_over_time stdvar_over_time present_over_time absent_over_time
        abs ceil floor round sqrt exp ln log2 log10 clamp clamp_min clamp_max sgn
        histogram_quantile label_replace label_join time timestamp vector scalar absent sort sort_desc
        day_of_week day_of_month day_of_year hour minute month year days_in_month";
    const INVENTORY_AGGS: &str = "sum avg min max count group stddev stdvar topk bottomk quantile count_values";

    #[test]
    fn the_function_subset_is_the_function_table() {
        for f in crate::functions::FUNCTIONS {
            assert!(in_project(&format!("fn:{}", f.name)), "{} is in the table but not in the subset", f.name);
        }
        for (name, _) in crate::functions::UNSUPPORTED_FUNCTIONS {
            assert!(!in_project(&format!("fn:{name}")), "{name} is unsupported but in the subset");
        }
        assert!(!in_project("fn:Rate"), "function names are case-sensitive");
        let table: BTreeSet<&str> = crate::functions::FUNCTIONS.iter().map(|f| f.name).collect();
        let inventory: BTreeSet<&str> = INVENTORY_FUNCS.split_whitespace().collect();
        let missing: Vec<&&str> = inventory.difference(&table).collect();
        assert!(missing.is_empty(), "functions of the conformance inventory missing from the table: {missing:?}");
    }

    #[test]
    fn the_aggregation_subset_is_the_parser_operators() {
        let inventory: BTreeSet<&str> = INVENTORY_AGGS.split_whitespace().collect();
        for agg in AGGREGATORS {
            assert_eq!(in_project(&format!("agg:{agg}")), inventory.contains(agg), "{agg}");
            assert_eq!(AggOp::from_name(agg).map(AggOp::as_str), inventory.contains(agg).then_some(*agg), "{agg}");
        }
        assert!(inventory.iter().all(|a| AGGREGATORS.contains(a)));
    }

    #[test]
    fn durations_need_a_clean_end() {
        let (f, _) = analyse("x[5m:1m]");
        assert!(f.contains("subquery") && !f.contains("duration expression"));
        let (f, _) = analyse("x[5m+1m]");
        assert!(f.contains("duration expression"));
    }
}
