//! `relabel` is Prometheus relabeling: the `relabel_configs` / `metric_relabel_configs` rule shape
//! and its evaluation over a label set, with Prometheus' semantics (regexes fully anchored as
//! `^(?s:…)$`, `$1`/`${name}` expansion, an empty replacement result deleting the target label,
//! `hashmod` on the last 8 bytes of the MD5 of the joined source values).

use crate::error::ConfigError;
use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;
use tsdb::Labels;

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
    KeepEqual,
    DropEqual,
}

/// One relabel rule as written in YAML (Prometheus field names and defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default)]
    pub source_labels: Vec<String>,
    #[serde(default = "default_separator")]
    pub separator: String,
    #[serde(default = "default_regex")]
    pub regex: String,
    #[serde(default)]
    pub modulus: u64,
    #[serde(default)]
    pub target_label: String,
    #[serde(default = "default_replacement")]
    pub replacement: String,
    #[serde(default)]
    pub action: Action,
}

fn default_separator() -> String {
    ";".to_string()
}
fn default_regex() -> String {
    "(.*)".to_string()
}
fn default_replacement() -> String {
    "$1".to_string()
}

/// A compiled rule.
#[derive(Debug, Clone)]
struct Rule {
    config: RelabelConfig,
    regex: Regex,
}

/// A compiled list of rules, applied in order.
#[derive(Debug, Clone, Default)]
pub struct Relabeler {
    rules: Vec<Rule>,
}

impl Relabeler {
    /// Compiles and checks `configs` (regexes, required fields per action).
    pub fn new(configs: &[RelabelConfig]) -> Result<Relabeler, ConfigError> {
        let mut rules = Vec::with_capacity(configs.len());
        for config in configs {
            let regex = Regex::new(&format!("^(?s:{})$", config.regex))
                .map_err(|e| ConfigError::Regex { regex: config.regex.clone(), reason: e.to_string() })?;
            match config.action {
                Action::Replace | Action::HashMod if config.target_label.is_empty() => {
                    return Err(ConfigError::Relabel(format!("action {:?} needs target_label", config.action)));
                }
                Action::HashMod if config.modulus == 0 => {
                    return Err(ConfigError::Relabel("action hashmod needs a modulus > 0".into()));
                }
                Action::Lowercase | Action::Uppercase | Action::KeepEqual | Action::DropEqual
                    if !is_label_name(&config.target_label) =>
                {
                    return Err(ConfigError::Relabel(format!(
                        "action {:?} needs target_label to be a label name, not {:?}",
                        config.action, config.target_label
                    )));
                }
                Action::KeepEqual | Action::DropEqual
                    if config.regex != default_regex()
                        || config.modulus != 0
                        || config.separator != default_separator()
                        || config.replacement != default_replacement() =>
                {
                    return Err(ConfigError::Relabel(format!(
                        "action {:?} takes only source_labels and target_label",
                        config.action
                    )));
                }
                _ => {}
            }
            rules.push(Rule { config: config.clone(), regex });
        }
        Ok(Relabeler { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies the rules to `labels`. Returns `false` when a `keep`/`drop` rule dropped the set.
    pub fn apply(&self, labels: &mut Labels) -> bool {
        let mut joined = String::new();
        for rule in &self.rules {
            let config = &rule.config;
            joined.clear();
            for (i, name) in config.source_labels.iter().enumerate() {
                if i > 0 {
                    joined.push_str(&config.separator);
                }
                joined.push_str(labels.get(name).unwrap_or(""));
            }
            match config.action {
                Action::Keep if !rule.regex.is_match(&joined) => return false,
                Action::Drop if rule.regex.is_match(&joined) => return false,
                Action::Keep | Action::Drop => {}
                Action::Replace => {
                    let Some(captures) = rule.regex.captures(&joined) else {
                        continue;
                    };
                    let mut target = String::new();
                    captures.expand(&config.target_label, &mut target);
                    if target.is_empty() {
                        continue;
                    }
                    let mut value = String::new();
                    captures.expand(&config.replacement, &mut value);
                    labels.set(&target, &value);
                }
                Action::HashMod => {
                    let digest = Md5::digest(joined.as_bytes());
                    let mut tail = [0u8; 8];
                    tail.copy_from_slice(&digest[8..16]);
                    let bucket = u64::from_be_bytes(tail) % config.modulus;
                    labels.set(&config.target_label, &bucket.to_string());
                }
                Action::LabelMap => {
                    let renamed: Vec<(String, String)> = labels
                        .iter()
                        .filter(|l| rule.regex.is_match(&l.name))
                        .map(|l| {
                            (rule.regex.replace(&l.name, config.replacement.as_str()).into_owned(), l.value.clone())
                        })
                        .collect();
                    for (name, value) in renamed {
                        labels.set(&name, &value);
                    }
                }
                Action::Lowercase => labels.set(&config.target_label, &joined.to_lowercase()),
                Action::Uppercase => labels.set(&config.target_label, &joined.to_uppercase()),
                Action::KeepEqual if labels.get(&config.target_label).unwrap_or("") != joined => return false,
                Action::DropEqual if labels.get(&config.target_label).unwrap_or("") == joined => return false,
                Action::KeepEqual | Action::DropEqual => {}
                Action::LabelDrop | Action::LabelKeep => {
                    let keep_matching = config.action == Action::LabelKeep;
                    let doomed: Vec<String> = labels
                        .iter()
                        .filter(|l| rule.regex.is_match(&l.name) != keep_matching)
                        .map(|l| l.name.clone())
                        .collect();
                    for name in doomed {
                        labels.remove(&name);
                    }
                }
            }
        }
        true
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Relabeler {
        let configs: Vec<RelabelConfig> = serde_yaml::from_str(yaml).unwrap();
        Relabeler::new(&configs).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn replace_with_captures_and_defaults() {
        let r = rules(
            "- source_labels: [__address__]\n  regex: '([^:]+):\\d+'\n  target_label: host\n\
             - source_labels: [a, b]\n  target_label: joined\n",
        );
        let mut l = labels(&[("__address__", "node1:9100"), ("a", "x"), ("b", "y")]);
        assert!(r.apply(&mut l));
        assert_eq!(l.get("host"), Some("node1"));
        assert_eq!(l.get("joined"), Some("x;y"));
    }

    #[test]
    fn regex_is_anchored_and_empty_result_deletes() {
        let r = rules("- source_labels: [a]\n  regex: 'b'\n  target_label: c\n  replacement: 'hit'\n");
        let mut l = labels(&[("a", "abc")]);
        r.apply(&mut l);
        assert_eq!(l.get("c"), None, "a partial match must not count");
        let r = rules("- source_labels: [a]\n  target_label: a\n  replacement: ''\n");
        let mut l = labels(&[("a", "x")]);
        r.apply(&mut l);
        assert_eq!(l.get("a"), None);
    }

    #[test]
    fn keep_and_drop() {
        let keep = rules("- source_labels: [job]\n  regex: 'api|web'\n  action: keep\n");
        assert!(keep.apply(&mut labels(&[("job", "api")])));
        assert!(!keep.apply(&mut labels(&[("job", "db")])));
        let drop = rules("- source_labels: [__name__]\n  regex: 'go_.*'\n  action: drop\n");
        assert!(!drop.apply(&mut labels(&[("__name__", "go_goroutines")])));
        assert!(drop.apply(&mut labels(&[("__name__", "up")])));
    }

    #[test]
    fn labelmap_labeldrop_labelkeep() {
        let r = rules("- regex: '__meta_kubernetes_pod_label_(.+)'\n  action: labelmap\n- regex: '__meta_.*'\n  action: labeldrop\n");
        let mut l = labels(&[("__meta_kubernetes_pod_label_app", "web"), ("job", "j")]);
        r.apply(&mut l);
        assert_eq!(l.get("app"), Some("web"));
        assert_eq!(l.get("__meta_kubernetes_pod_label_app"), None);
        let keep = rules("- regex: '__name__|job'\n  action: labelkeep\n");
        let mut l = labels(&[("__name__", "up"), ("job", "j"), ("extra", "x")]);
        keep.apply(&mut l);
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8; Prometheus takes the last 8 bytes as a
        // big-endian u64 modulo `modulus`.
        let r = rules("- source_labels: [a]\n  modulus: 10\n  target_label: shard\n  action: hashmod\n");
        let mut l = labels(&[("a", "foo")]);
        r.apply(&mut l);
        assert_eq!(l.get("shard"), Some((0xedef654fccc4a4d8u64 % 10).to_string().as_str()));
    }

    #[test]
    fn case_and_equality_actions() {
        let r = rules(
            "- source_labels: [team, zone]\n  target_label: lower\n  action: lowercase\n\
             - source_labels: [team]\n  target_label: upper\n  action: uppercase\n",
        );
        let mut l = labels(&[("team", "Core-Ä"), ("zone", "EU")]);
        assert!(r.apply(&mut l));
        assert_eq!((l.get("lower"), l.get("upper")), (Some("core-ä;eu"), Some("CORE-Ä")));
        let keep = rules("- source_labels: [a]\n  target_label: b\n  action: keepequal\n");
        assert!(keep.apply(&mut labels(&[("a", "x"), ("b", "x")])));
        assert!(!keep.apply(&mut labels(&[("a", "x"), ("b", "y")])));
        assert!(keep.apply(&mut labels(&[("c", "z")])), "both absent: equal empty strings");
        let drop = rules("- source_labels: [a]\n  target_label: b\n  action: dropequal\n");
        assert!(!drop.apply(&mut labels(&[("a", "x"), ("b", "x")])));
        assert!(drop.apply(&mut labels(&[("a", "x")])));
    }

    #[test]
    fn invalid_configs_are_errors() {
        for yaml in [
            "- source_labels: [a]\n  action: lowercase\n",
            "- source_labels: [a]\n  target_label: '${1}'\n  action: uppercase\n",
            "- source_labels: [a]\n  target_label: b\n  regex: x\n  action: keepequal\n",
            "- source_labels: [a]\n  target_label: b\n  replacement: y\n  action: dropequal\n",
            "- regex: '('\n",
            "- source_labels: [a]\n  action: replace\n",
            "- source_labels: [a]\n  target_label: t\n  action: hashmod\n",
        ] {
            let configs: Vec<RelabelConfig> = serde_yaml::from_str(yaml).unwrap();
            assert!(Relabeler::new(&configs).is_err(), "{yaml}");
        }
        assert!(serde_yaml::from_str::<Vec<RelabelConfig>>("- action: explode\n").is_err());
    }
}
