//! `rules` owns Prometheus-style rule files (`rule_files:` in the `--config` file): recording
//! rules evaluated on their group's interval through the same query engine and written to the
//! store like scraped samples, and alerting rules parsed, checked, evaluated for their state and
//! listed — never sent (Ringtail has no Alertmanager client).
//!
//! Map: `file` reads and checks the rule-file format; `group` is one group's state and its
//! evaluation; `manager` runs the groups and swaps them on reload; `metrics` is the
//! `ringtail_rule_*` self-metrics. `/api/v1/rules` (`crate::http::rules_api`) lists the groups.
//! [`load`] is the one way from the config file's `rule_files` patterns to checked groups: the
//! server calls it at start (a bad file stops the start) and the config reloader on every
//! reload (a bad file is refused and the running rules stay).

pub(crate) mod file;
pub(crate) mod group;
mod manager;
mod metrics;

pub use file::{GroupSpec, RuleFileError, RuleKind, DEFAULT_EVALUATION_INTERVAL};
pub use group::{Group, Health, RuleStatus};
pub use manager::RuleManager;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The groups of the files `patterns` (globs relative to `config_file`'s directory) name, with
/// `global.evaluation_interval` (default 1m) for groups without an interval.
pub fn load(
    config_file: &Path,
    patterns: &[String],
    global: Option<&serde_yaml::Value>,
) -> Result<Vec<GroupSpec>, RuleFileError> {
    if patterns.is_empty() {
        return Ok(Vec::new());
    }
    let base = config_file.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = Vec::new();
    for pattern in patterns {
        for file in crate::config::glob_files_for("rule_files", base, pattern).map_err(RuleFileError::Files)? {
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    file::load_files(&files, evaluation_interval(global)?)
}

/// `global.evaluation_interval`, or Prometheus's default.
fn evaluation_interval(global: Option<&serde_yaml::Value>) -> Result<Duration, RuleFileError> {
    let Some(global) = global else { return Ok(DEFAULT_EVALUATION_INTERVAL) };
    let global: ingest::GlobalConfig =
        serde_yaml::from_value(global.clone()).map_err(|e| RuleFileError::Files(format!("global: {e}")))?;
    match global.evaluation_interval {
        Some(interval) if interval.is_zero() => {
            Err(RuleFileError::Files("global.evaluation_interval must be above zero".into()))
        }
        Some(interval) => Ok(interval),
        None => Ok(DEFAULT_EVALUATION_INTERVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_relative_to_the_config_file_and_the_global_interval_applies() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules.d")).unwrap();
        let group = |name: &str| format!("groups:\n- name: {name}\n  rules:\n  - record: r\n    expr: up\n");
        std::fs::write(dir.path().join("rules.d/b.yaml"), group("b")).unwrap();
        std::fs::write(dir.path().join("rules.d/a.yaml"), group("a")).unwrap();
        std::fs::write(dir.path().join("one.yml"), "groups:\n- name: c\n  interval: 5s\n  rules: []\n").unwrap();
        let config = dir.path().join("ringtail.yaml");
        let global: serde_yaml::Value = serde_yaml::from_str("{evaluation_interval: 10s}").unwrap();
        let patterns = ["rules.d/*.yaml".to_string(), "one.yml".to_string(), "rules.d/a.yaml".to_string()];
        let groups = load(&config, &patterns, Some(&global)).unwrap();
        let names: Vec<(&str, Duration)> = groups.iter().map(|g| (g.name.as_str(), g.interval)).collect();
        assert_eq!(
            names,
            [("a", Duration::from_secs(10)), ("b", Duration::from_secs(10)), ("c", Duration::from_secs(5))],
            "a file named twice is read once"
        );
        assert!(groups[0].file.ends_with("rules.d/a.yaml"), "{}", groups[0].file);
        assert_eq!(load(&config, &patterns, None).unwrap()[0].interval, DEFAULT_EVALUATION_INTERVAL);
        let err = load(&config, &["*/x.yaml".to_string()], None).unwrap_err().to_string();
        assert!(err.starts_with("rule_files: ") && err.contains("only in the file name"), "{err}");
    }
}
