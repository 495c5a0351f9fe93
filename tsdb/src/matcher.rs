//! `Matcher` is one label condition of a selector: `=`, `!=`, `=~`, `!~` (regexes fully
//! anchored, as in Prometheus), plus `In`, a set-membership matcher used internally (the adapter
//! resolves a Kubernetes label selector to a set of object names instead of a giant regex).

use crate::Error;
use regex::Regex;

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
    /// The value is one of a set (not PromQL syntax; built with [`Matcher::one_of`]).
    In,
}

impl MatchOp {
    /// The operator as PromQL writes it; a set matcher is written as the regex match it stands
    /// for (`=~`), its values joined by `|`.
    pub fn promql_text(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch | MatchOp::In => "=~",
            MatchOp::RegexNoMatch => "!~",
        }
    }
}

/// A compiled label matcher. A missing label matches as the empty string, as in Prometheus.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    /// The literal value or regex source (for `In`, the values joined by `|`, for display only).
    pub value: String,
    regex: Option<Regex>,
    set: Vec<String>,
}

/// Largest compiled regex program accepted (regex bombs get a clear error, not unbounded memory).
const REGEX_SIZE_LIMIT_BYTES: usize = 1 << 20;

impl Matcher {
    /// Builds a matcher; regexes are anchored as `^(?s:value)$`.
    pub fn new(op: MatchOp, name: impl Into<String>, value: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        let value = value.into();
        let regex = match op {
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => Some(
                regex::RegexBuilder::new(&format!("^(?s:{value})$"))
                    .size_limit(REGEX_SIZE_LIMIT_BYTES)
                    .build()
                    .map_err(|e| Error::InvalidRegex { regex: value.clone(), reason: e.to_string() })?,
            ),
            MatchOp::In => {
                return Ok(Self::one_of(name, value.split('|').map(str::to_string)));
            }
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher { name, op, value, regex, set: Vec::new() })
    }

    /// Shorthand for an `=` matcher.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher { name: name.into(), op: MatchOp::Equal, value: value.into(), regex: None, set: Vec::new() }
    }

    /// A set-membership matcher: the label's value is one of `values`.
    pub fn one_of(name: impl Into<String>, values: impl IntoIterator<Item = String>) -> Self {
        let mut set: Vec<String> = values.into_iter().collect();
        set.sort();
        set.dedup();
        let value = set.join("|");
        Matcher { name: name.into(), op: MatchOp::In, value, regex: None, set }
    }

    /// Appends bytes identifying what the matcher selects (name, operator, value, and the values
    /// of a set), each length-prefixed: equal bytes mean the same matcher.
    pub(crate) fn write_key(&self, out: &mut Vec<u8>) {
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        field(self.name.as_bytes());
        field(&[self.op as u8]);
        match self.op {
            MatchOp::In => {
                field(&(self.set.len() as u64).to_le_bytes());
                for value in &self.set {
                    field(value.as_bytes());
                }
            }
            _ => field(self.value.as_bytes()),
        }
    }

    /// The values of an `In` matcher, sorted.
    pub fn set_values(&self) -> &[String] {
        &self.set
    }

    /// Whether `value` (empty when the label is absent) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::RegexMatch => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::RegexNoMatch => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::In => self.set.binary_search_by(|v| v.as_str().cmp(value)).is_ok(),
        }
    }

    /// Whether the matcher accepts the empty string (and so series without the label).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.promql_text(), self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_fully_anchored() {
        let m = Matcher::new(MatchOp::RegexMatch, "job", "api").unwrap();
        assert!(m.matches("api"));
        assert!(!m.matches("api-server"));
        assert!(!m.matches("my-api"));
    }

    #[test]
    fn alternation_is_anchored_as_a_whole() {
        let m = Matcher::new(MatchOp::RegexMatch, "job", "a|b").unwrap();
        assert!(m.matches("a") && m.matches("b") && !m.matches("ab"));
    }

    #[test]
    fn negative_matchers_accept_missing_labels() {
        let m = Matcher::new(MatchOp::NotEqual, "job", "x").unwrap();
        assert!(m.matches_empty());
        let m = Matcher::new(MatchOp::RegexNoMatch, "job", ".+").unwrap();
        assert!(m.matches_empty());
    }

    #[test]
    fn one_of_matches_members_only() {
        let m = Matcher::one_of("pod", ["b".to_string(), "a".to_string()]);
        assert!(m.matches("a") && m.matches("b") && !m.matches("c") && !m.matches(""));
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(Matcher::new(MatchOp::RegexMatch, "a", "(").is_err());
    }
}
