//! `script` reads the PromQL test-script format: series lines (`name{labels} values…`), the
//! `load` value notation (`0+1x10`, `_`, `stale`), script times, `eval` lines and the expected
//! results and `expect` lines of an eval block.

use crate::ast::ExprKind;
use tsdb::Labels;

/// `name{labels}[@st] values…` → (head, values, is_start_timestamp_line).
pub(super) fn split_series_line(line: &str) -> Option<(&str, &str, bool)> {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':') {
        i += 1;
    }
    if i < bytes.len() && bytes[i] == b'{' {
        let mut in_quote = false;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if in_quote => i += 1,
                b'"' => in_quote = !in_quote,
                b'}' if !in_quote => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
    }
    if i == 0 {
        return None;
    }
    let head = &line[..i];
    let rest = &line[i..];
    match rest.strip_prefix("@st") {
        Some(r) => Some((head, r.trim(), true)),
        None => Some((head, rest.trim(), false)),
    }
}

/// The labels a series line's head names, read with the PromQL parser.
pub(super) fn parse_series_labels(head: &str) -> Result<Labels, String> {
    let expr = crate::parse(head).map_err(|e| format!("bad series {head:?}: {}", e.message))?;
    match expr.kind {
        ExprKind::Vector(sel) => Ok(Labels::from_pairs(sel.matchers.iter().map(|m| (m.name.clone(), m.value.clone())))),
        _ => Err(format!("not a series: {head:?}")),
    }
}

/// A sample value: a float, signed `Inf`/`NaN`, or a hex integer.
fn parse_number(text: &str) -> Option<f64> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let v = if body.eq_ignore_ascii_case("inf") {
        f64::INFINITY
    } else if body.eq_ignore_ascii_case("nan") {
        f64::NAN
    } else if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()? as f64
    } else {
        body.parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Expands the `load` value notation; `None` is a step without a sample.
pub(super) fn expand_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for item in text.split_whitespace() {
        if item == "_" {
            out.push(None);
            continue;
        }
        if let Some(n) = item.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|_| format!("bad repeat {item:?}"))?;
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        if item == "stale" {
            out.push(Some(tsdb::stale_nan()));
            continue;
        }
        // a+bxn, a-bxn, axn (tried before plain numbers: `0x5` is zero six times, not hex)
        let repeat = item.rfind('x').and_then(|x| {
            let n: usize = item[x + 1..].parse().ok()?;
            (x > 0 && item[x + 1..].bytes().all(|b| b.is_ascii_digit())).then_some((x, n))
        });
        let Some((x, n)) = repeat else {
            match parse_number(item) {
                Some(v) => out.push(Some(v)),
                None => return Err(format!("bad value {item:?}")),
            }
            continue;
        };
        let head = &item[..x];
        let split = head
            .char_indices()
            .skip(1)
            .find(|&(i, c)| (c == '+' || c == '-') && !matches!(head.as_bytes()[i - 1], b'e' | b'E'))
            .map(|(i, _)| i);
        match split {
            None => {
                let a = parse_number(head).ok_or_else(|| format!("bad value {item:?}"))?;
                out.extend(std::iter::repeat_n(Some(a), n + 1));
            }
            Some(at) => {
                let a = parse_number(&head[..at]).ok_or_else(|| format!("bad value {item:?}"))?;
                let b = parse_number(&head[at + 1..]).ok_or_else(|| format!("bad value {item:?}"))?;
                let b = if head.as_bytes()[at] == b'-' { -b } else { b };
                let mut v = a;
                out.push(Some(v));
                for _ in 0..n {
                    v += b;
                    out.push(Some(v));
                }
            }
        }
    }
    Ok(out)
}

/// A time or interval of a test script: a Prometheus duration (`5m`) or float seconds (`300`).
/// Not the API's [`crate::parse_time_ms`]: scripts write times as durations since 0 and never as
/// RFC 3339.
fn parse_script_time_ms(text: &str) -> Option<i64> {
    crate::parse_duration_ms(text).or_else(|| text.parse::<f64>().ok().map(|s| (s * 1000.0).round() as i64))
}

/// What an eval block expects: its result (series, scalar or string) and its annotations.
#[derive(Debug, Default)]
pub(super) struct Expectations {
    pub(super) fail: Option<Matcher>,
    pub(super) fail_any: bool,
    pub(super) warn: Vec<Option<Matcher>>,
    pub(super) info: Vec<Option<Matcher>>,
    pub(super) no_warn: bool,
    pub(super) no_info: bool,
    pub(super) ordered: bool,
    pub(super) range_vector: Option<(i64, i64, i64)>,
    pub(super) string: Option<String>,
    pub(super) scalar: Option<f64>,
    pub(super) series: Vec<(Labels, Vec<Option<f64>>)>,
}

/// An expected error or annotation message: exact text or a regex.
#[derive(Debug)]
pub(super) enum Matcher {
    Exact(String),
    Regex(regex::Regex),
}

impl Matcher {
    pub(super) fn matches(&self, text: &str) -> bool {
        match self {
            Matcher::Exact(s) => s == text,
            Matcher::Regex(r) => r.is_match(text),
        }
    }

    fn parse(kind: &str, text: &str) -> Result<Matcher, String> {
        let text = text.trim();
        if kind == "regex" {
            regex::Regex::new(text).map(Matcher::Regex).map_err(|e| format!("bad regex: {e}"))
        } else {
            Ok(Matcher::Exact(text.to_string()))
        }
    }
}

/// Parses an eval block's body; `legacy` is the suffix of an `eval_fail`-style command.
pub(super) fn parse_expectations(legacy: Option<&str>, body: &[&str]) -> Result<Expectations, String> {
    let mut e = Expectations::default();
    match legacy {
        Some("fail") => e.fail_any = true,
        Some("warn") => e.warn.push(None),
        Some("info") => e.info.push(None),
        Some("ordered") => e.ordered = true,
        _ => {}
    }
    for line in body {
        if let Some(rest) = line.strip_prefix("expected_fail_message") {
            e.fail = Some(Matcher::Exact(rest.trim().to_string()));
            e.fail_any = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("expected_fail_regexp") {
            e.fail = Some(Matcher::parse("regex", rest)?);
            e.fail_any = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("expect ") {
            let rest = rest.trim();
            if let Some(r) = rest.strip_prefix("range vector") {
                let words: Vec<&str> = r.split_whitespace().collect();
                if let ["from", a, "to", b, "step", c] = words.as_slice() {
                    let (a, b, c) = (parse_script_time_ms(a), parse_script_time_ms(b), parse_script_time_ms(c));
                    if let (Some(a), Some(b), Some(c)) = (a, b, c) {
                        e.range_vector = Some((a, b, c));
                        continue;
                    }
                }
                return Err(format!("bad expect range vector line {line:?}"));
            }
            if let Some(r) = rest.strip_prefix("string") {
                let r = r.trim();
                e.string = Some(r.get(1..r.len().saturating_sub(1)).unwrap_or("").to_string());
                continue;
            }
            let (kind, matcher) = match rest.split_once(char::is_whitespace) {
                Some((kind, tail)) => {
                    let tail = tail.trim();
                    let (mode, text) = tail.split_once(':').ok_or_else(|| format!("bad expect line {line:?}"))?;
                    (kind, Some(Matcher::parse(mode.trim(), text)?))
                }
                None => (rest, None),
            };
            match kind {
                "fail" => {
                    e.fail_any = true;
                    e.fail = matcher;
                }
                "warn" => e.warn.push(matcher),
                "info" => e.info.push(matcher),
                "no_warn" => e.no_warn = true,
                "no_info" => e.no_info = true,
                "ordered" => e.ordered = true,
                _ => return Err(format!("unknown expectation {line:?}")),
            }
            continue;
        }
        if let Some(v) = parse_number(line) {
            e.scalar = Some(v);
            continue;
        }
        let (head, values, _) = split_series_line(line).ok_or_else(|| format!("bad result line {line:?}"))?;
        let labels =
            parse_series_labels(head).or_else(|m| if head == "{}" { Ok(Labels::default()) } else { Err(m) })?;
        e.series.push((labels, expand_values(values)?));
    }
    Ok(e)
}

/// An `eval` line: its query and evaluation times.
pub(super) struct EvalCommand<'a> {
    pub(super) legacy: Option<&'a str>,
    pub(super) query: &'a str,
    /// `(start, end, step)`; instant evals have `start == end` and `step == 0`.
    pub(super) start_ms: i64,
    pub(super) end_ms: i64,
    pub(super) step_ms: i64,
}

/// Parses `eval instant at T query` or `eval range from A to B step S query`; `None` if neither.
pub(super) fn parse_eval_line(line: &str) -> Option<EvalCommand<'_>> {
    let (cmd, rest) = line.split_once(char::is_whitespace)?;
    let legacy = cmd.strip_prefix("eval_");
    let rest = rest.trim_start();
    if let Some(r) = rest.strip_prefix("instant") {
        let r = r.trim_start().strip_prefix("at")?.trim_start();
        let (t, query) = r.split_once(char::is_whitespace)?;
        let t = parse_script_time_ms(t)?;
        return Some(EvalCommand { legacy, query: query.trim(), start_ms: t, end_ms: t, step_ms: 0 });
    }
    let r = rest.strip_prefix("range")?.trim_start().strip_prefix("from")?.trim_start();
    let (start, r) = r.split_once(" to ")?;
    let (end, r) = r.trim_start().split_once(" step ")?;
    let (step, query) = r.trim_start().split_once(char::is_whitespace)?;
    Some(EvalCommand {
        legacy,
        query: query.trim(),
        start_ms: parse_script_time_ms(start.trim())?,
        end_ms: parse_script_time_ms(end.trim())?,
        step_ms: parse_script_time_ms(step)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_the_load_notation() {
        let v = expand_values("5 2+3x2 _ stale -1-1x1 _x2 7x1 0x2 0x1f").unwrap();
        assert_eq!(v.len(), 16);
        assert_eq!(&v[..4], &[Some(5.0), Some(2.0), Some(5.0), Some(8.0)]);
        assert_eq!(v[4], None);
        assert!(tsdb::is_stale_nan(v[5].unwrap()));
        assert_eq!(&v[6..8], &[Some(-1.0), Some(-2.0)]);
        assert_eq!(&v[8..10], &[None, None]);
        assert_eq!(&v[10..12], &[Some(7.0), Some(7.0)]);
        assert_eq!(&v[12..], &[Some(0.0), Some(0.0), Some(0.0), Some(31.0)]);
    }
}
