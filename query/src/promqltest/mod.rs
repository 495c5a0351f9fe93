//! `promqltest` runs Prometheus's PromQL test scripts (`load`/`clear`/`eval`, described in
//! `shared/promql-conformance/upstream/README-upstream.md`) against Ringtail's engine and store.
//!
//! Data goes through the real [`tsdb::Db`] (a fresh store in a temporary directory per `clear`).
//! An eval is skipped only when it uses something outside Ringtail's subset (the `features`
//! module decides exactly as the conformance inventory does); every other eval is run, and every
//! instant eval also as a range query from t−1m to t+1m (the upstream harness's extra check).

mod features;

use crate::ast::{Expr, ExprKind};
use crate::{Engine, EngineOptions, QueryError, QueryOutput, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use tsdb::{Labels, Sample};

/// Why a script could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Syntax { file: String, line: usize, message: String },
    #[error("store error: {0}")]
    Store(#[from] tsdb::Error),
    #[error("cannot create a temporary store directory: {0}")]
    TempDir(std::io::Error),
}

/// What happened to one eval.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    Failed(String),
    /// Outside the subset; the features that put it there.
    Skipped(Vec<String>),
}

/// One eval's id (`file:line`) and outcome.
#[derive(Debug, Clone)]
pub struct EvalResult {
    pub id: String,
    pub query: String,
    pub outcome: Outcome,
}

/// Totals over any number of scripts.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Skipped evals per feature outside the subset (an eval counts under each of its features).
    pub skip_reasons: BTreeMap<String, usize>,
}

impl Summary {
    pub fn add(&mut self, results: &[EvalResult]) {
        for r in results {
            match &r.outcome {
                Outcome::Passed => self.passed += 1,
                Outcome::Failed(_) => self.failed += 1,
                Outcome::Skipped(reasons) => {
                    self.skipped += 1;
                    for reason in reasons {
                        *self.skip_reasons.entry(reason.clone()).or_default() += 1;
                    }
                }
            }
        }
    }

    /// The closing line: `N passed, M failed, K skipped`.
    pub fn line(&self) -> String {
        format!("{} passed, {} failed, {} skipped", self.passed, self.failed, self.skipped)
    }
}

/// Runner settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub engine: EngineOptions,
    /// Disk budget of each temporary store.
    pub storage_size_bytes: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { engine: EngineOptions::default(), storage_size_bytes: 64 << 20 }
    }
}

/// Runs one script file.
pub fn run_file(path: &Path, options: &RunOptions) -> Result<Vec<EvalResult>, ScriptError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ScriptError::Read { path: path.display().to_string(), source })?;
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    run_script(&name, &text, options)
}

/// A loaded series as the subset decision sees it.
struct LoadedSeries {
    pairs: Vec<(String, String)>,
    histogram: bool,
    start_timestamps: bool,
}

struct Store {
    _dir: tempfile::TempDir,
    engine: Engine,
}

fn fresh_store(options: &RunOptions) -> Result<Store, ScriptError> {
    let dir = tempfile::tempdir().map_err(ScriptError::TempDir)?;
    let mut db_options = tsdb::Options::new(dir.path());
    db_options.storage_size_bytes = options.storage_size_bytes;
    let db = Arc::new(tsdb::Db::open(db_options)?);
    Ok(Store { _dir: dir, engine: Engine::new(db, options.engine.clone()) })
}

/// Runs a script's text; `name` is used in eval ids.
pub fn run_script(name: &str, text: &str, options: &RunOptions) -> Result<Vec<EvalResult>, ScriptError> {
    let lines: Vec<&str> = text.split('\n').map(|l| if l.trim().starts_with('#') { "" } else { l.trim() }).collect();
    let syntax = |line: usize, message: String| ScriptError::Syntax { file: name.to_string(), line: line + 1, message };
    let mut store = fresh_store(options)?;
    let mut loaded: Vec<LoadedSeries> = Vec::new();
    let mut shadow: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
    let mut results = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let word = line.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
        if line.is_empty() {
            i += 1;
        } else if word == "clear" {
            store = fresh_store(options)?;
            loaded.clear();
            shadow.clear();
            i += 1;
        } else if word.starts_with("load") {
            let start = i;
            let nhcb = word == "load_with_nhcb";
            let interval = line.split_whitespace().nth(1).unwrap_or("");
            let interval_ms = crate::parse_duration_ms(interval)
                .ok_or_else(|| syntax(start, format!("bad load interval {interval:?}")))?;
            i += 1;
            // Later lines win over earlier ones at the same timestamp, as in Prometheus's loader.
            let mut block: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
            while i < lines.len() && !lines[i].is_empty() {
                let (head, values, st) =
                    split_series_line(lines[i]).ok_or_else(|| syntax(i, "bad series line".into()))?;
                let labels = parse_series_labels(head).map_err(|m| syntax(i, m))?;
                let pairs: Vec<(String, String)> = labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
                let histogram = values.contains("{{");
                if nhcb && !st {
                    if let Some(base) = nhcb_base(&pairs) {
                        loaded.push(LoadedSeries { pairs: base, histogram: true, start_timestamps: false });
                    }
                }
                loaded.push(LoadedSeries { pairs, histogram, start_timestamps: st });
                if !histogram && !st && labels.get(tsdb::METRIC_NAME).is_some() {
                    let points = expand_values(values).map_err(|m| syntax(i, m))?;
                    let entry = block.entry(labels).or_default();
                    for (k, v) in points.into_iter().enumerate() {
                        if let Some(v) = v {
                            entry.insert(k as i64 * interval_ms, v);
                        }
                    }
                }
                i += 1;
            }
            let appends_only = block.iter().all(|(labels, points)| {
                let last = shadow.get(labels).and_then(|p| p.keys().next_back().copied());
                match (last, points.keys().next()) {
                    (Some(last), Some(first)) => *first > last,
                    _ => true,
                }
            });
            for (labels, points) in &block {
                shadow.entry(labels.clone()).or_default().extend(points.iter().map(|(t, v)| (*t, *v)));
            }
            if appends_only {
                append_all(&store, &block)?;
            } else {
                store = fresh_store(options)?;
                append_all(&store, &shadow)?;
            }
        } else if word.starts_with("eval") {
            let start = i;
            i += 1;
            let mut body = Vec::new();
            while i < lines.len() && !lines[i].is_empty() {
                body.push(lines[i]);
                i += 1;
                if body
                    .last()
                    .is_some_and(|b| b.starts_with("expected_fail_message") || b.starts_with("expected_fail_regexp"))
                {
                    break;
                }
            }
            let id = format!("{name}:{}", start + 1);
            results.push(run_eval(&store.engine, &loaded, id, line, &body));
        } else {
            i += 1;
        }
    }
    Ok(results)
}

fn append_all(store: &Store, data: &BTreeMap<Labels, BTreeMap<i64, f64>>) -> Result<(), ScriptError> {
    let pairs: Vec<Vec<(&str, &str)>> =
        data.keys().map(|l| l.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect()).collect();
    let samples: Vec<Vec<Sample>> =
        data.values().map(|p| p.iter().map(|(t, v)| Sample::new(*t, *v)).collect()).collect();
    let batch: Vec<tsdb::SeriesSamples<'_>> =
        pairs.iter().zip(&samples).map(|(l, s)| tsdb::SeriesSamples::labels(l, s)).collect();
    store.engine.db().append(&batch)?;
    Ok(())
}

/// `name{labels}[@st] values…` → (head, values, is_start_timestamp_line).
fn split_series_line(line: &str) -> Option<(&str, &str, bool)> {
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

fn parse_series_labels(head: &str) -> Result<Labels, String> {
    let expr = crate::parse(head).map_err(|e| format!("bad series {head:?}: {}", e.message))?;
    match expr.kind {
        ExprKind::Vector(sel) => Ok(Labels::from_pairs(sel.matchers.iter().map(|m| (m.name.clone(), m.value.clone())))),
        _ => Err(format!("not a series: {head:?}")),
    }
}

fn nhcb_base(pairs: &[(String, String)]) -> Option<Vec<(String, String)>> {
    let name = pairs.iter().find(|(n, _)| n == "__name__").map(|(_, v)| v.as_str())?;
    for suffix in ["_bucket", "_count", "_sum"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if suffix == "_bucket" && !pairs.iter().any(|(n, _)| n == "le") {
                continue;
            }
            let mut out: Vec<(String, String)> =
                pairs.iter().filter(|(n, _)| n != "le" && n != "__name__").cloned().collect();
            out.push(("__name__".into(), base.to_string()));
            return Some(out);
        }
    }
    None
}

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
fn expand_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for item in text.split_whitespace() {
        if item == "_" {
            out.push(None);
            continue;
        }
        if let Some(n) = item.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|_| format!("bad repeat {item:?}"))?;
            out.extend(std::iter::repeat(None).take(n));
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
                out.extend(std::iter::repeat(Some(a)).take(n + 1));
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

#[derive(Debug, Default)]
struct Expectations {
    fail: Option<Matcher>,
    fail_any: bool,
    warn: Vec<Option<Matcher>>,
    info: Vec<Option<Matcher>>,
    no_warn: bool,
    no_info: bool,
    ordered: bool,
    range_vector: Option<(i64, i64, i64)>,
    string: Option<String>,
    scalar: Option<f64>,
    series: Vec<(Labels, Vec<Option<f64>>)>,
}

#[derive(Debug)]
enum Matcher {
    Exact(String),
    Regex(regex::Regex),
}

impl Matcher {
    fn matches(&self, text: &str) -> bool {
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

fn parse_expectations(legacy: Option<&str>, body: &[&str]) -> Result<Expectations, String> {
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

struct EvalCommand<'a> {
    legacy: Option<&'a str>,
    query: &'a str,
    /// `(start, end, step)`; instant evals have `start == end` and `step == 0`.
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
}

fn parse_eval_line(line: &str) -> Option<EvalCommand<'_>> {
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

fn run_eval(engine: &Engine, loaded: &[LoadedSeries], id: String, line: &str, body: &[&str]) -> EvalResult {
    let Some(cmd) = parse_eval_line(line) else {
        return EvalResult {
            id,
            query: line.to_string(),
            outcome: Outcome::Skipped(vec!["unparsable eval line".into()]),
        };
    };
    let query = cmd.query.to_string();
    let (mut feats, selectors) = features::analyse(cmd.query);
    let touched: Vec<&LoadedSeries> =
        loaded.iter().filter(|s| selectors.iter().any(|m| features::matches(&s.pairs, m))).collect();
    if body.iter().any(|b| b.contains("{{")) || touched.iter().any(|s| s.histogram) {
        feats.insert("native histograms".into());
    }
    if touched.iter().any(|s| s.start_timestamps) {
        feats.insert("start timestamps".into());
    }
    let outside: Vec<String> =
        feats.iter().filter(|f| !features::in_project(f)).map(|f| features::reason_label(f)).collect();
    if !outside.is_empty() {
        return EvalResult { id, query, outcome: Outcome::Skipped(outside) };
    }
    let outcome = match parse_expectations(cmd.legacy, body) {
        Ok(expect) => match check_eval(engine, &cmd, &expect) {
            Ok(()) => Outcome::Passed,
            Err(message) => Outcome::Failed(message),
        },
        Err(message) => Outcome::Failed(format!("bad eval block: {message}")),
    };
    EvalResult { id, query, outcome }
}

fn evaluate(engine: &Engine, query: &str, start: i64, end: i64, step: i64) -> Result<QueryOutput, QueryError> {
    let expr: Expr = crate::parse(query)?;
    if step == 0 {
        engine.instant_expr(query, &expr, start, &[])
    } else {
        engine.range_expr(query, &expr, start, end, step, &[])
    }
}

fn check_eval(engine: &Engine, cmd: &EvalCommand<'_>, expect: &Expectations) -> Result<(), String> {
    let result = evaluate(engine, cmd.query, cmd.start_ms, cmd.end_ms, cmd.step_ms);
    if expect.fail_any {
        return match result {
            Ok(_) => Err("expected the query to fail, it succeeded".into()),
            Err(e) => {
                let message = e.message();
                match &expect.fail {
                    Some(m) if !m.matches(&message) => {
                        Err(format!("error {message:?} does not match the expected one"))
                    }
                    _ => Ok(()),
                }
            }
        };
    }
    let output = result.map_err(|e| format!("query failed: {}", e.message()))?;
    check_annotations(&output.annotations.warnings, &expect.warn, expect.no_warn, "warn")?;
    check_annotations(&output.annotations.infos, &expect.info, expect.no_info, "info")?;
    compare(&output.value, expect, cmd)?;
    let time_dependent = ["start()", "end()", "range()", "step()"].iter().any(|f| cmd.query.contains(f));
    if cmd.step_ms == 0
        && !expect.ordered
        && expect.range_vector.is_none()
        && expect.string.is_none()
        && !time_dependent
    {
        let t = cmd.start_ms;
        let ranged = evaluate(engine, cmd.query, t - 60_000, t + 60_000, 60_000)
            .map_err(|e| format!("as a range query: query failed: {}", e.message()))?;
        let Value::Matrix(series) = ranged.value else { return Err("as a range query: no matrix".into()) };
        let at_t: Vec<crate::InstantSample> = series
            .into_iter()
            .filter_map(|s| {
                s.points.iter().find(|p| p.0 == t).map(|p| crate::InstantSample {
                    labels: s.labels.clone(),
                    ts_ms: t,
                    value: p.1,
                })
            })
            .collect();
        let as_value = match (&output.value, at_t.first()) {
            (Value::Scalar { .. }, Some(first)) => Value::Scalar { ts_ms: t, value: first.value },
            _ => Value::Vector(at_t),
        };
        compare(&as_value, expect, cmd).map_err(|m| format!("as a range query: {m}"))?;
    }
    Ok(())
}

fn check_annotations(got: &[String], want: &[Option<Matcher>], none: bool, kind: &str) -> Result<(), String> {
    if none && !got.is_empty() {
        return Err(format!("expected no {kind} annotation, got {got:?}"));
    }
    if want.is_empty() {
        return Ok(());
    }
    if got.is_empty() {
        return Err(format!("expected a {kind} annotation, got none"));
    }
    for w in want.iter().flatten() {
        if !got.iter().any(|g| w.matches(g)) {
            return Err(format!("no {kind} annotation matches {w:?}; got {got:?}"));
        }
    }
    let specific: Vec<&Matcher> = want.iter().flatten().collect();
    if !specific.is_empty() {
        if let Some(extra) = got.iter().find(|g| !specific.iter().any(|m| m.matches(g))) {
            return Err(format!("unexpected {kind} annotation {extra:?}"));
        }
    }
    Ok(())
}

/// Float comparison of the upstream harness: NaN equals NaN, otherwise relative 1e-6.
fn values_equal(want: f64, got: f64) -> bool {
    if tsdb::is_stale_nan(want) || tsdb::is_stale_nan(got) {
        return tsdb::is_stale_nan(want) && tsdb::is_stale_nan(got);
    }
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want == got {
        return true;
    }
    let abs_sum = want.abs() + got.abs();
    let diff = (want - got).abs();
    if want == 0.0 || got == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < 1e-6 * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < 1e-6
}

fn compare(value: &Value, expect: &Expectations, cmd: &EvalCommand<'_>) -> Result<(), String> {
    if let Some(s) = &expect.string {
        return match value {
            Value::String { value, .. } if value == s => Ok(()),
            other => Err(format!("expected string {s:?}, got {other:?}")),
        };
    }
    if let Some(want) = expect.scalar {
        return match value {
            Value::Scalar { value, .. } if values_equal(want, *value) => Ok(()),
            other => Err(format!("expected scalar {want}, got {}", short(other))),
        };
    }
    match value {
        Value::Scalar { value, .. } => Err(format!("expected a vector, got scalar {value}")),
        Value::String { value, .. } => Err(format!("expected a vector, got string {value:?}")),
        Value::Vector(samples) => {
            if cmd.step_ms != 0 {
                return Err("range query returned a vector".into());
            }
            if samples.len() != expect.series.len() {
                return Err(format!(
                    "expected {} series, got {}: {}",
                    expect.series.len(),
                    samples.len(),
                    short(value)
                ));
            }
            for (k, (labels, values)) in expect.series.iter().enumerate() {
                let want = values.first().copied().flatten().unwrap_or(f64::NAN);
                let found = if expect.ordered {
                    Some(&samples[k]).filter(|s| s.labels == *labels)
                } else {
                    samples.iter().find(|s| s.labels == *labels)
                };
                match found {
                    Some(s) if values_equal(want, s.value) => {}
                    Some(s) => return Err(format!("{labels}: expected {want}, got {}", s.value)),
                    None => return Err(format!("expected series {labels} not in result {}", short(value))),
                }
            }
            Ok(())
        }
        Value::Matrix(series) => {
            let (start, step) = match (expect.range_vector, cmd.step_ms) {
                (Some((from, _, step)), _) => (from, step),
                (None, 0) => return Err(format!("instant query returned a matrix: {}", short(value))),
                (None, step) => (cmd.start_ms, step),
            };
            if series.len() != expect.series.len() {
                return Err(format!("expected {} series, got {}: {}", expect.series.len(), series.len(), short(value)));
            }
            let got_labels: BTreeSet<&Labels> = series.iter().map(|s| &s.labels).collect();
            for (labels, values) in &expect.series {
                if !got_labels.contains(labels) {
                    return Err(format!("expected series {labels} not in result {}", short(value)));
                }
                let Some(s) = series.iter().find(|s| s.labels == *labels) else { continue };
                let want: Vec<(i64, f64)> =
                    values.iter().enumerate().filter_map(|(k, v)| v.map(|v| (start + k as i64 * step, v))).collect();
                if want.len() != s.points.len()
                    || want.iter().zip(&s.points).any(|(w, g)| w.0 != g.0 || !values_equal(w.1, g.1))
                {
                    return Err(format!("{labels}: expected points {want:?}, got {:?}", s.points));
                }
            }
            Ok(())
        }
    }
}

fn short(value: &Value) -> String {
    let text = match value {
        Value::Vector(v) => v.iter().map(|s| format!("{} {}", s.labels, s.value)).collect::<Vec<_>>().join(", "),
        Value::Matrix(m) => m.iter().map(|s| format!("{} {:?}", s.labels, s.points)).collect::<Vec<_>>().join(", "),
        other => format!("{other:?}"),
    };
    text.chars().take(400).collect()
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

    #[test]
    fn runs_a_small_script() {
        let script = "load 1m\n  m{a=\"1\"} 0+1x10\n  m{a=\"2\"} 0+2x10\n\n\
                      eval instant at 10m sum(m)\n  {} 30\n\n\
                      eval range from 0 to 2m step 1m m{a=\"2\"} * 2\n  {a=\"2\"} 0 4 8\n\n\
                      eval instant at 10m predict_linear(m[5m], 60)\n  {a=\"1\"} 1\n\n\
                      eval instant at 10m sum(m)\n  {} 31\n\n\
                      clear\n\neval instant at 10m m\n";
        let results = run_script("t.test", script, &RunOptions::default()).unwrap();
        let outcomes: Vec<&Outcome> = results.iter().map(|r| &r.outcome).collect();
        assert_eq!(outcomes[0], &Outcome::Passed);
        assert_eq!(outcomes[1], &Outcome::Passed);
        assert!(matches!(outcomes[2], Outcome::Skipped(r) if r == &vec!["function predict_linear".to_string()]));
        assert!(matches!(outcomes[3], Outcome::Failed(_)));
        assert_eq!(outcomes[4], &Outcome::Passed, "clear must empty the store");
    }
}
