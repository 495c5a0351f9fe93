//! `LabelSelector` is a parsed Kubernetes label selector (`app=foo,tier in (a,b),!legacy`), the
//! syntax of `labelSelector` and `metricLabelSelector` query parameters, with the same grammar
//! and name/value validation as `k8s.io/apimachinery/pkg/labels`.

use std::fmt;

/// Largest selector accepted, in bytes. Real selectors are a few hundred bytes at most (a
/// Deployment's `matchLabels`); anything far bigger is refused rather than parsed.
pub const MAX_SELECTOR_BYTES: usize = 16 * 1024;
/// Kubernetes' limit on a label name (after the prefix) and on a label value.
const MAX_LABEL_LEN: usize = 63;
/// Kubernetes' limit on a DNS-subdomain label-key prefix.
const MAX_PREFIX_LEN: usize = 253;

/// A selector operator, named as in `k8s.io/apimachinery/pkg/selection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One condition of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and deduplicated (as Kubernetes' `sets.String` keeps them).
    pub values: Vec<String>,
}

/// A parsed label selector; empty means "everything".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

/// Why a selector was refused, with the byte offset where parsing stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("label selector is {len} bytes, more than the {max} accepted")]
    TooLarge { len: usize, max: usize },
    #[error("unable to parse label selector {text:?} at byte {offset}: {reason}")]
    Syntax { text: String, offset: usize, reason: String },
    #[error("invalid label selector {text:?}: {reason}")]
    Invalid { text: String, reason: String },
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Comma,
    Open,
    Close,
    Eq,
    DoubleEq,
    NotEq,
    Not,
    Gt,
    Lt,
    In,
    NotIn,
}

impl LabelSelector {
    /// Parses `text`; the empty string (or only blanks) is the empty selector.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        if text.len() > MAX_SELECTOR_BYTES {
            return Err(SelectorError::TooLarge { len: text.len(), max: MAX_SELECTOR_BYTES });
        }
        let tokens = lex(text)?;
        let mut parser = Parser { text, tokens, pos: 0 };
        let mut requirements = Vec::new();
        if parser.tokens.is_empty() {
            return Ok(LabelSelector::default());
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.next() {
                None => break,
                Some((Token::Comma, _)) => continue,
                Some((_, offset)) => return Err(parser.syntax(offset, "expected ',' between requirements")),
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether a label set (looked up through `get`) satisfies every requirement.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| {
            let value = get(&r.key);
            match r.operator {
                Operator::Equals | Operator::In => value.is_some_and(|v| r.values.iter().any(|x| x == v)),
                Operator::NotEquals | Operator::NotIn => !value.is_some_and(|v| r.values.iter().any(|x| x == v)),
                Operator::Exists => value.is_some(),
                Operator::DoesNotExist => value.is_none(),
                Operator::GreaterThan | Operator::LessThan => {
                    let (Some(v), Some(bound)) = (value.and_then(|v| v.parse::<i64>().ok()), r.values.first()) else {
                        return false;
                    };
                    let Ok(bound) = bound.parse::<i64>() else { return false };
                    if r.operator == Operator::GreaterThan {
                        v > bound
                    } else {
                        v < bound
                    }
                }
            }
        })
    }

    /// The selector as a `metav1.LabelSelector` JSON object, as `metav1.ParseToLabelSelector`
    /// builds it: equalities in `matchLabels`, everything else in `matchExpressions`.
    pub fn to_k8s_json(&self) -> serde_json::Value {
        let mut match_labels = serde_json::Map::new();
        let mut expressions = Vec::new();
        for r in &self.requirements {
            let (operator, values): (&str, &[String]) = match r.operator {
                Operator::Equals => {
                    if let Some(v) = r.values.first() {
                        match_labels.insert(r.key.clone(), v.clone().into());
                    }
                    continue;
                }
                Operator::NotEquals | Operator::NotIn => ("NotIn", &r.values),
                Operator::In => ("In", &r.values),
                Operator::Exists => ("Exists", &[]),
                Operator::DoesNotExist => ("DoesNotExist", &[]),
                Operator::GreaterThan => ("Gt", &r.values),
                Operator::LessThan => ("Lt", &r.values),
            };
            let mut expr = serde_json::Map::new();
            expr.insert("key".into(), r.key.clone().into());
            expr.insert("operator".into(), operator.into());
            if !values.is_empty() {
                expr.insert("values".into(), values.to_vec().into());
            }
            expressions.push(serde_json::Value::Object(expr));
        }
        let mut out = serde_json::Map::new();
        if !match_labels.is_empty() {
            out.insert("matchLabels".into(), match_labels.into());
        }
        if !expressions.is_empty() {
            out.insert("matchExpressions".into(), expressions.into());
        }
        serde_json::Value::Object(out)
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let joined = r.values.join(",");
            match r.operator {
                Operator::Equals => write!(f, "{}={}", r.key, joined)?,
                Operator::NotEquals => write!(f, "{}!={}", r.key, joined)?,
                Operator::In => write!(f, "{} in ({})", r.key, joined)?,
                Operator::NotIn => write!(f, "{} notin ({})", r.key, joined)?,
                Operator::Exists => write!(f, "{}", r.key)?,
                Operator::DoesNotExist => write!(f, "!{}", r.key)?,
                Operator::GreaterThan => write!(f, "{}>{}", r.key, joined)?,
                Operator::LessThan => write!(f, "{}<{}", r.key, joined)?,
            }
        }
        Ok(())
    }
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(Token, usize)>,
    pos: usize,
}

impl Parser<'_> {
    fn next(&mut self) -> Option<(Token, usize)> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn end_offset(&self) -> usize {
        self.text.len()
    }

    fn syntax(&self, offset: usize, reason: &str) -> SelectorError {
        SelectorError::Syntax { text: self.text.to_string(), offset, reason: reason.to_string() }
    }

    fn invalid(&self, reason: String) -> SelectorError {
        SelectorError::Invalid { text: self.text.to_string(), reason }
    }

    /// Consumes one requirement: `!key`, `key`, `key op value` or `key (not)in (values)`.
    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let end = self.end_offset();
        let (first, offset) = self.next().ok_or_else(|| self.syntax(end, "expected a label key"))?;
        if first == Token::Not {
            let (key, offset) = self.key()?;
            self.validate_key(&key, offset)?;
            return Ok(Requirement { key, operator: Operator::DoesNotExist, values: Vec::new() });
        }
        let Token::Ident(key) = first else {
            return Err(self.syntax(offset, "expected a label key"));
        };
        self.validate_key(&key, offset)?;
        let operator = match self.peek() {
            None | Some(Token::Comma) => {
                return Ok(Requirement { key, operator: Operator::Exists, values: Vec::new() })
            }
            Some(Token::Eq) | Some(Token::DoubleEq) => Operator::Equals,
            Some(Token::NotEq) => Operator::NotEquals,
            Some(Token::In) => Operator::In,
            Some(Token::NotIn) => Operator::NotIn,
            Some(Token::Gt) => Operator::GreaterThan,
            Some(Token::Lt) => Operator::LessThan,
            Some(_) => {
                let offset = self.tokens[self.pos].1;
                return Err(self.syntax(offset, "expected an operator (=, ==, !=, in, notin, >, <)"));
            }
        };
        self.pos += 1;
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => vec![self.single_value()?],
        };
        if matches!(operator, Operator::GreaterThan | Operator::LessThan)
            && values.first().is_none_or(|v| v.parse::<i64>().is_err())
        {
            return Err(self.invalid(format!("{key}: '>' and '<' need an integer value")));
        }
        for value in &values {
            validate_value(value).map_err(|reason| self.invalid(format!("{key}: {reason}")))?;
        }
        let mut values = values;
        values.sort();
        values.dedup();
        Ok(Requirement { key, operator, values })
    }

    fn key(&mut self) -> Result<(String, usize), SelectorError> {
        let end = self.end_offset();
        match self.next() {
            Some((Token::Ident(key), offset)) => Ok((key, offset)),
            Some((_, offset)) => Err(self.syntax(offset, "expected a label key")),
            None => Err(self.syntax(end, "expected a label key")),
        }
    }

    fn validate_key(&self, key: &str, offset: usize) -> Result<(), SelectorError> {
        validate_key(key).map_err(|reason| self.syntax(offset, &format!("invalid label key {key:?}: {reason}")))
    }

    /// Consumes a value after `=`, `!=`, `>`, `<`; an absent value is the empty string.
    fn single_value(&mut self) -> Result<String, SelectorError> {
        match self.peek() {
            None | Some(Token::Comma) => Ok(String::new()),
            Some(Token::Ident(_)) => match self.next() {
                Some((Token::Ident(v), _)) => Ok(v),
                _ => Err(self.syntax(self.end_offset(), "expected a value")),
            },
            Some(_) => {
                let offset = self.tokens[self.pos].1;
                Err(self.syntax(offset, "expected a value"))
            }
        }
    }

    /// Consumes `( v1, v2, … )`.
    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        let end = self.end_offset();
        match self.next() {
            Some((Token::Open, _)) => {}
            Some((_, offset)) => return Err(self.syntax(offset, "expected '('")),
            None => return Err(self.syntax(end, "expected '('")),
        }
        let mut values = Vec::new();
        loop {
            match self.next() {
                Some((Token::Ident(v), _)) => values.push(v),
                Some((Token::Close, _)) if values.is_empty() => {
                    return Err(self.invalid("a set needs at least one value".into()))
                }
                Some((Token::Comma, _)) => values.push(String::new()),
                Some((_, offset)) => return Err(self.syntax(offset, "expected a value")),
                None => return Err(self.syntax(end, "expected ')'")),
            }
            match self.next() {
                Some((Token::Comma, _)) => continue,
                Some((Token::Close, _)) => return Ok(values),
                Some((_, offset)) => return Err(self.syntax(offset, "expected ',' or ')'")),
                None => return Err(self.syntax(end, "expected ')'")),
            }
        }
    }
}

/// Splits a selector into tokens (Kubernetes' lexer: special symbols, blanks, identifiers).
fn lex(text: &str) -> Result<Vec<(Token, usize)>, SelectorError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let token = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b',' => Token::Comma,
            b'(' => Token::Open,
            b')' => Token::Close,
            b'>' => Token::Gt,
            b'<' => Token::Lt,
            b'=' if bytes.get(i + 1) == Some(&b'=') => {
                i += 1;
                Token::DoubleEq
            }
            b'=' => Token::Eq,
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 1;
                Token::NotEq
            }
            b'!' => Token::Not,
            _ => {
                while i < bytes.len() && !b" \t\n\r,()<>=!".contains(&bytes[i]) {
                    i += 1;
                }
                let word = &text[start..i];
                tokens.push((
                    match word {
                        "in" => Token::In,
                        "notin" => Token::NotIn,
                        _ => Token::Ident(word.to_string()),
                    },
                    start,
                ));
                continue;
            }
        };
        i += 1;
        tokens.push((token, start));
    }
    Ok(tokens)
}

fn is_name_part(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A qualified name: optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !ok {
            return Err("the prefix must be a DNS subdomain (lower case, '.' separated)".into());
        }
    }
    if !is_name_part(name) {
        return Err(format!(
            "must be at most {MAX_LABEL_LEN} characters of [A-Za-z0-9-_.], starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

fn validate_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "value {value:?} must be empty or at most {MAX_LABEL_LEN} characters of [A-Za-z0-9-_.], \
             starting and ending with an alphanumeric"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn labels(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn parses_every_operator() {
        let s = LabelSelector::parse("app=foo, tier in (b,a), env!=prod,track notin (x),ready,!legacy,n>3,m<2,k==v")
            .unwrap();
        let ops: Vec<(&str, Operator, Vec<String>)> =
            s.requirements.iter().map(|r| (r.key.as_str(), r.operator, r.values.clone())).collect();
        assert_eq!(ops.len(), 9);
        assert!(ops.contains(&("tier", Operator::In, vec!["a".into(), "b".into()])));
        assert!(ops.contains(&("legacy", Operator::DoesNotExist, vec![])));
        assert!(ops.contains(&("ready", Operator::Exists, vec![])));
        assert!(ops.contains(&("k", Operator::Equals, vec!["v".into()])));
        assert!(ops.contains(&("n", Operator::GreaterThan, vec!["3".into()])));
    }

    #[test]
    fn matches_like_kubernetes() {
        let s = LabelSelector::parse("app=foo,tier in (a,b),!legacy,env!=prod").unwrap();
        let l = labels(&[("app", "foo"), ("tier", "a")]);
        assert!(s.matches(|k| l.get(k).copied()));
        let l = labels(&[("app", "foo"), ("tier", "a"), ("legacy", "1")]);
        assert!(!s.matches(|k| l.get(k).copied()));
        let l = labels(&[("app", "foo"), ("tier", "c")]);
        assert!(!s.matches(|k| l.get(k).copied()));
        assert!(LabelSelector::parse("").unwrap().matches(|_| None));
    }

    #[test]
    fn empty_value_is_allowed_after_equals() {
        let s = LabelSelector::parse("a=,b=c").unwrap();
        assert_eq!(s.requirements[0].values, vec![String::new()]);
    }

    #[test]
    fn rejects_malformed_selectors_with_offsets() {
        for bad in ["=foo", "app in (a", "app in a", "a b", "app=foo bar", "x in ()", "a>b", "-bad=1"] {
            let err = LabelSelector::parse(bad).unwrap_err();
            assert!(matches!(err, SelectorError::Syntax { .. } | SelectorError::Invalid { .. }), "{bad}: {err}");
        }
        let long_value = "v".repeat(64);
        assert!(LabelSelector::parse(&format!("a={long_value}")).is_err());
        let huge = "a=b,".repeat(MAX_SELECTOR_BYTES);
        assert!(matches!(LabelSelector::parse(&huge), Err(SelectorError::TooLarge { .. })));
    }

    #[test]
    fn k8s_json_splits_match_labels_and_expressions() {
        let s = LabelSelector::parse("app=foo,tier in (a),!old").unwrap();
        let json = s.to_k8s_json();
        assert_eq!(json["matchLabels"]["app"], "foo");
        assert_eq!(json["matchExpressions"].as_array().map(Vec::len), Some(2));
        assert_eq!(s.to_string(), "app=foo,!old,tier in (a)");
    }

    #[test]
    fn prefixed_keys_are_valid() {
        assert!(LabelSelector::parse("app.kubernetes.io/name=web").is_ok());
        assert!(LabelSelector::parse("Bad_Prefix/name=web").is_err());
    }
}
