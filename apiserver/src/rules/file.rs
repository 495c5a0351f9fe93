//! `file` is Prometheus's rule-file format (`groups` of `name`, `interval`, `limit`, `rules`;
//! each rule a `record` or an `alert` with `expr`, `labels`, and for alerts `for` and
//! `annotations`), read and checked as Prometheus 2.42's `rulefmt` does: unknown keys, a group
//! name repeated in one file, an `expr` that does not parse, an invalid `record` metric name or
//! label name are refused at load, naming the file, the group and the rule. What it returns,
//! [`GroupSpec`]s, is what the evaluator runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Largest rule file read (kube-prometheus's whole rule set is about 200 KiB).
pub const MAX_RULE_FILE_BYTES: u64 = 16 << 20;
/// Most rule groups loaded from all rule files together.
pub const MAX_RULE_GROUPS: usize = 2_000;
/// Most rules loaded from all rule files together.
pub const MAX_RULES: usize = 20_000;
/// Prometheus's default `global.evaluation_interval`.
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);

/// Why rule files were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleFileError {
    #[error("cannot read rule file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("rule file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// The `rule_files` patterns or `global` could not be read.
    #[error("{0}")]
    Files(String),
    #[error("rule files: more than {limit} {what} (a named limit of Ringtail)")]
    TooMany { what: &'static str, limit: usize },
}

/// What a rule is.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// Writes its result under `record`.
    Recording { record: String },
    /// Listed (and evaluated for its state), never sent anywhere. `hold` is `for`; `keep_firing`
    /// is `keep_firing_for` (Debian's Prometheus 2.42 accepts it, so Ringtail does too).
    Alerting { alert: String, hold: Duration, keep_firing: Duration, annotations: BTreeMap<String, String> },
}

/// One checked rule.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub kind: RuleKind,
    /// The expression as written (trimmed).
    pub expr: String,
    /// The parsed expression (checked at load; evaluated without parsing again).
    pub parsed: Arc<query::ast::Expr>,
    pub labels: BTreeMap<String, String>,
}

impl RuleSpec {
    /// `record` or `alert`.
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Recording { record } => record,
            RuleKind::Alerting { alert, .. } => alert,
        }
    }
}

impl PartialEq for RuleSpec {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.expr == other.expr && self.labels == other.labels
    }
}

/// One checked group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    /// The file as its `rule_files` pattern named it (relative patterns joined to the config
    /// file's directory), shown as `file` in `/api/v1/rules`.
    pub file: String,
    pub name: String,
    pub interval: Duration,
    /// Most series one rule of the group may produce per evaluation (0: no limit).
    pub limit: usize,
    pub rules: Vec<RuleSpec>,
}

impl GroupSpec {
    /// `file;name`, the `rule_group` label of the self-metrics (as Prometheus's `GroupKey`).
    pub fn key(&self) -> String {
        format!("{};{}", self.file, self.name)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    record: Option<String>,
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    expr: Option<String>,
    #[serde(default, rename = "for")]
    hold: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Reads and checks every file in `files`, in order; `default_interval` applies to groups
/// without `interval`. Any error refuses the whole set.
pub fn load_files(files: &[PathBuf], default_interval: Duration) -> Result<Vec<GroupSpec>, RuleFileError> {
    let mut groups = Vec::new();
    let mut rules = 0usize;
    for path in files {
        let text = read_limited(path)?;
        for group in parse_file(&path.display().to_string(), &text, default_interval)? {
            rules += group.rules.len();
            groups.push(group);
            if groups.len() > MAX_RULE_GROUPS {
                return Err(RuleFileError::TooMany { what: "rule groups", limit: MAX_RULE_GROUPS });
            }
            if rules > MAX_RULES {
                return Err(RuleFileError::TooMany { what: "rules", limit: MAX_RULES });
            }
        }
    }
    Ok(groups)
}

fn read_limited(path: &Path) -> Result<String, RuleFileError> {
    use std::io::Read;
    let read_error = |e: std::io::Error| RuleFileError::Read { path: path.into(), message: e.to_string() };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut text = String::new();
    file.take(MAX_RULE_FILE_BYTES + 1).read_to_string(&mut text).map_err(read_error)?;
    if text.len() as u64 > MAX_RULE_FILE_BYTES {
        return Err(RuleFileError::Read {
            path: path.into(),
            message: format!("larger than {MAX_RULE_FILE_BYTES} bytes (a named limit of Ringtail)"),
        });
    }
    Ok(text)
}

/// Checks one file's text (`file` names it in errors and in the groups).
pub fn parse_file(file: &str, text: &str, default_interval: Duration) -> Result<Vec<GroupSpec>, RuleFileError> {
    let invalid = |message: String| RuleFileError::Invalid { path: file.into(), message };
    let raw: Option<RawFile> = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let mut groups: Vec<GroupSpec> = Vec::new();
    for raw_group in raw.map(|r| r.groups).unwrap_or_default() {
        if raw_group.name.is_empty() {
            return Err(invalid("Groupname must not be empty".into()));
        }
        let name = raw_group.name;
        if groups.iter().any(|g| g.name == name) {
            return Err(invalid(format!("{name:?}: repeated in the same file")));
        }
        let interval = match raw_group.interval.as_deref() {
            None => default_interval,
            Some(text) => match query::parse_duration_ms(text) {
                Some(0) => default_interval,
                Some(ms) if ms > 0 => Duration::from_millis(ms as u64),
                _ => return Err(invalid(format!("group {name:?}: invalid interval {text:?}"))),
            },
        };
        let limit = match raw_group.limit {
            None => 0,
            Some(n) if n >= 0 => n as usize,
            Some(n) => return Err(invalid(format!("group {name:?}: limit {n} is negative"))),
        };
        let mut rules = Vec::with_capacity(raw_group.rules.len());
        for (index, raw_rule) in raw_group.rules.into_iter().enumerate() {
            let named = [&raw_rule.record, &raw_rule.alert].into_iter().flatten().find(|n| !n.is_empty());
            let which = match named {
                Some(rule_name) => format!("rule {} ({rule_name:?})", index + 1),
                None => format!("rule {}", index + 1),
            };
            rules.push(check_rule(raw_rule).map_err(|message| invalid(format!("group {name:?}, {which}: {message}")))?);
        }
        groups.push(GroupSpec { file: file.to_string(), name, interval, limit, rules });
    }
    Ok(groups)
}

/// Checks one rule as `rulefmt.RuleNode.Validate` does.
fn check_rule(raw: RawRule) -> Result<RuleSpec, String> {
    let (record, alert) = (raw.record.unwrap_or_default(), raw.alert.unwrap_or_default());
    let expr = raw.expr.unwrap_or_default().trim().to_string();
    if expr.is_empty() {
        return Err("field 'expr' must be set in rule".into());
    }
    let parsed = query::parse(&expr).map_err(|e| {
        let (line, col) = query::line_col(&expr, e.pos);
        format!("could not parse expression: {line}:{col}: parse error: {}", e.message)
    })?;
    let labels = raw.labels.unwrap_or_default();
    for name in labels.keys() {
        if !is_label_name(name) || name == tsdb::METRIC_NAME {
            return Err(format!("invalid label name: {name}"));
        }
    }
    let annotations = raw.annotations.unwrap_or_default();
    let kind = match (record.is_empty(), alert.is_empty()) {
        (false, false) => return Err("only one of 'record' and 'alert' must be set".into()),
        (true, true) => return Err("one of 'record' or 'alert' must be set".into()),
        (false, true) => {
            if !annotations.is_empty() {
                return Err("invalid field 'annotations' in recording rule".into());
            }
            if raw.hold.is_some() {
                return Err("invalid field 'for' in recording rule".into());
            }
            if raw.keep_firing_for.is_some() {
                return Err("invalid field 'keep_firing_for' in recording rule".into());
            }
            if !is_metric_name(&record) {
                return Err(format!("invalid recording rule name: {record}"));
            }
            RuleKind::Recording { record }
        }
        (true, false) => {
            for name in annotations.keys() {
                if !is_label_name(name) {
                    return Err(format!("invalid annotation name: {name}"));
                }
            }
            let hold = optional_duration("for", raw.hold.as_deref())?;
            let keep_firing = optional_duration("keep_firing_for", raw.keep_firing_for.as_deref())?;
            RuleKind::Alerting { alert, hold, keep_firing, annotations }
        }
    };
    Ok(RuleSpec { kind, expr, parsed: Arc::new(parsed), labels })
}

/// A rule's `for`/`keep_firing_for` (absent: zero).
fn optional_duration(key: &str, text: Option<&str>) -> Result<Duration, String> {
    match text {
        None => Ok(Duration::ZERO),
        Some(text) => match query::parse_duration_ms(text) {
            Some(ms) if ms >= 0 => Ok(Duration::from_millis(ms as u64)),
            _ => Err(format!("invalid '{key}' duration {text:?}")),
        },
    }
}

/// Prometheus's metric name rule: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Prometheus's label name rule: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<GroupSpec>, String> {
        parse_file("r.yaml", text, DEFAULT_EVALUATION_INTERVAL).map_err(|e| e.to_string())
    }

    #[test]
    fn groups_and_rules_are_read_with_their_defaults() {
        let groups = parse(
            "groups:\n- name: a\n  rules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n    labels: {team: x}\n\
             - name: b\n  interval: 15s\n  limit: 10\n  rules:\n  - alert: Down\n    expr: up == 0\n    for: 5m\n    \
             annotations: {summary: down}\n",
        )
        .unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!((groups[0].interval, groups[0].limit), (DEFAULT_EVALUATION_INTERVAL, 0));
        assert_eq!(groups[0].rules[0].name(), "job:up:sum");
        assert_eq!(groups[0].rules[0].labels.get("team").map(String::as_str), Some("x"));
        assert_eq!(groups[0].key(), "r.yaml;a");
        assert_eq!((groups[1].interval, groups[1].limit), (Duration::from_secs(15), 10));
        match &groups[1].rules[0].kind {
            RuleKind::Alerting { alert, hold, keep_firing, annotations } => {
                assert_eq!((alert.as_str(), *hold, *keep_firing), ("Down", Duration::from_secs(300), Duration::ZERO));
                assert_eq!(annotations.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse("").unwrap().is_empty());
        assert!(parse("groups: []\n").unwrap().is_empty());
    }

    #[test]
    fn bad_files_are_refused_naming_file_group_and_rule() {
        for (text, expected) in [
            ("groups:\n- name: a\n  rules: []\n  extra: 1\n", "unknown field `extra`"),
            ("gruops: []\n", "unknown field `gruops`"),
            ("groups:\n- name: a\n  rules: []\n- name: a\n  rules: []\n", "\"a\": repeated in the same file"),
            ("groups:\n- rules: []\n", "Groupname must not be empty"),
            (
                "groups:\n- name: g\n  rules:\n  - record: x\n    expr: sum(\n",
                "group \"g\", rule 1 (\"x\"): could not parse expression: 1:5: parse error:",
            ),
            ("groups:\n- name: g\n  rules:\n  - record: 1x\n    expr: up\n", "invalid recording rule name: 1x"),
            (
                "groups:\n- name: g\n  rules:\n  - record: x\n    expr: up\n    labels: {a-b: c}\n",
                "invalid label name: a-b",
            ),
            ("groups:\n- name: g\n  rules:\n  - record: x\n    expr: up\n    for: 1m\n", "invalid field 'for'"),
            ("groups:\n- name: g\n  rules:\n  - expr: up\n", "group \"g\", rule 1: one of 'record' or 'alert'"),
            ("groups:\n- name: g\n  rules:\n  - record: x\n", "field 'expr' must be set"),
            ("groups:\n- name: g\n  rules:\n  - record: x\n    alert: y\n    expr: up\n", "only one of"),
            ("groups:\n- name: g\n  interval: soon\n  rules: []\n", "invalid interval \"soon\""),
            ("groups:\n- name: g\n  limit: -1\n  rules: []\n", "negative"),
            (
                "groups:\n- name: g\n  rules:\n  - record: a\n    expr: up\n    keep_firing_for: 1m\n",
                "invalid field 'keep_firing_for' in recording rule",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotation: {}\n",
                "unknown field `annotation`",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with("rule file r.yaml: ") && err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn names_follow_prometheus() {
        assert!(is_metric_name("node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate"));
        assert!(!is_metric_name("") && !is_metric_name("a-b") && !is_metric_name("9a"));
        assert!(is_label_name("_a1") && !is_label_name("a:b") && !is_label_name(""));
    }

    #[test]
    fn the_named_limits_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("many.yaml");
        let mut text = String::from("groups:\n");
        for i in 0..=MAX_RULE_GROUPS {
            text.push_str(&format!("- name: g{i}\n  rules: []\n"));
        }
        std::fs::write(&path, text).unwrap();
        let err = load_files(&[path], DEFAULT_EVALUATION_INTERVAL).unwrap_err().to_string();
        assert!(err.contains(&format!("more than {MAX_RULE_GROUPS} rule groups")), "{err}");
        let err = load_files(&[dir.path().join("absent.yaml")], DEFAULT_EVALUATION_INTERVAL).unwrap_err();
        assert!(err.to_string().starts_with("cannot read rule file"), "{err}");
    }
}
