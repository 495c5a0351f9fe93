//! `Labels` is a series identity: a set of label pairs sorted by name, `__name__` included.

use std::fmt;

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Longest label name or value the store keeps (its series log stores 16-bit lengths).
pub const MAX_LABEL_BYTES: usize = u16::MAX as usize;

/// Most labels one series may have (its series log record stores the count in 16 bits).
pub const MAX_LABELS_PER_SERIES: usize = u16::MAX as usize;

/// Largest encoded label set (the sum over its labels of `4 + name + value` bytes: two 16-bit
/// lengths and the bytes). A series log record is at most 1 MiB including its fixed fields (14
/// bytes today); the 64 bytes kept back leave room for those fields to grow.
pub const MAX_LABEL_SET_BYTES: usize = (1 << 20) - 64;

/// The one rule a label set must follow to become a series, whoever sends it (remote-write, the
/// scraper, recording tools): names non-empty and unique, names and values at most
/// [`MAX_LABEL_BYTES`], at most [`MAX_LABELS_PER_SERIES`] labels of at most
/// [`MAX_LABEL_SET_BYTES`] encoded, `__name__` present with a value. Names may be any UTF-8
/// (Prometheus 3 accepts dots and spaces). The order does not matter: the store sorts. Returns
/// why a set is refused. These bounds make every accepted set fit the series log's record, so no
/// acknowledged series can cut the log at the next start.
pub fn validate_labels(labels: &[(&str, &str)]) -> Result<(), String> {
    if labels.len() > MAX_LABELS_PER_SERIES {
        return Err(format!(
            "series has {} labels, more than the {MAX_LABELS_PER_SERIES} a series may have",
            labels.len()
        ));
    }
    let mut has_name = false;
    let mut sorted_so_far = true;
    let mut previous: Option<&str> = None;
    let mut encoded_bytes = 0usize;
    for (name, value) in labels {
        encoded_bytes += 4 + name.len() + value.len();
        if name.is_empty() {
            return Err(format!("empty label name (value {value:?})"));
        }
        if name.len() > MAX_LABEL_BYTES || value.len() > MAX_LABEL_BYTES {
            return Err(format!(
                "label {:?} is too long ({} byte name, {} byte value; max {MAX_LABEL_BYTES})",
                name.get(..64).unwrap_or(name),
                name.len(),
                value.len()
            ));
        }
        if let Some(previous) = previous {
            match previous.cmp(name) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Err(format!("duplicate label name {name:?}")),
                std::cmp::Ordering::Greater => sorted_so_far = false,
            }
        }
        if *name == METRIC_NAME {
            has_name = !value.is_empty();
        }
        previous = Some(name);
    }
    if encoded_bytes > MAX_LABEL_SET_BYTES {
        return Err(format!(
            "label set is {encoded_bytes} bytes, more than the {MAX_LABEL_SET_BYTES} a series may have"
        ));
    }
    if !sorted_so_far {
        let mut names: Vec<&str> = labels.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("duplicate label name {:?}", pair[0]));
        }
    }
    if !has_name {
        return Err("missing metric name (__name__ label)".to_string());
    }
    Ok(())
}

/// One label pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label { name: name.into(), value: value.into() }
    }
}

/// A label set, always sorted by name with unique names and no empty values
/// (an empty value means "label absent", as in Prometheus).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set from pairs in any order; later duplicates replace earlier ones and
    /// empty values are dropped.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        let mut labels: Vec<Label> = pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        let mut deduped: Vec<Label> = Vec::with_capacity(labels.len());
        for label in labels {
            match deduped.last_mut() {
                Some(last) if last.name == label.name => *last = label,
                _ => deduped.push(label),
            }
        }
        deduped.retain(|l| !l.value.is_empty());
        Labels(deduped)
    }

    /// Wraps an already sorted, deduplicated vector. Debug builds check the invariant.
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        debug_assert!(labels.windows(2).all(|w| w[0].name < w[1].name), "BUG: labels not sorted/unique");
        Labels(labels)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|l| l.name.as_str().cmp(name)).ok().map(|i| self.0[i].value.as_str())
    }

    /// The metric name, if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// Sets `name` to `value` (removes it when `value` is empty), keeping the order.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].value = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, Label::new(name, value)),
        }
    }

    /// Removes `name` if present.
    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            self.0.remove(i);
        }
    }
}

impl fmt::Display for Labels {
    /// Formats as Prometheus does: `name{a="b", c="d"}` with the metric name outside the braces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.metric_name() {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for label in self.0.iter().filter(|l| l.name != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", label.name, label.value)?;
        }
        f.write_str("}")
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_pairs_sorts_dedups_and_drops_empty_values() {
        let labels = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        assert_eq!(labels.as_slice(), &[Label::new("a", "1"), Label::new("b", "3")]);
    }

    #[test]
    fn set_and_remove_keep_order() {
        let mut labels = Labels::from_pairs([("b", "2")]);
        labels.set("a", "1");
        labels.set("c", "3");
        labels.set("b", "");
        assert_eq!(labels.as_slice(), &[Label::new("a", "1"), Label::new("c", "3")]);
        labels.remove("a");
        assert_eq!(labels.get("c"), Some("3"));
        assert_eq!(labels.len(), 1);
    }

    #[test]
    fn display_matches_prometheus() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a\"b")]);
        assert_eq!(labels.to_string(), "up{job=\"a\\\"b\"}");
    }
}

#[cfg(test)]
mod validate_tests {
    use super::*;

    #[test]
    fn accepts_any_order_and_refuses_each_broken_rule() {
        assert!(validate_labels(&[("job", "a"), ("__name__", "up")]).is_ok());
        assert!(validate_labels(&[("__name__", "a.b c"), ("ünï", "v")]).is_ok());
        let refused = |labels: &[(&str, &str)]| validate_labels(labels).unwrap_err();
        assert!(refused(&[("job", "a")]).contains("missing metric name"));
        assert!(refused(&[("__name__", "")]).contains("missing metric name"));
        assert!(refused(&[("__name__", "up"), ("", "v")]).contains("empty label name"));
        assert!(refused(&[("__name__", "up"), ("a", "1"), ("a", "2")]).contains("duplicate label name \"a\""));
        assert!(refused(&[("z", "1"), ("__name__", "up"), ("z", "2")]).contains("duplicate label name \"z\""));
        let long = "x".repeat(MAX_LABEL_BYTES + 1);
        assert!(refused(&[("__name__", "up"), ("a", &long)]).contains("too long"));
    }

    #[test]
    fn refuses_more_labels_than_the_series_log_can_count() {
        let names: Vec<String> = (0..70_000).map(|i| format!("l{i:05}")).collect();
        let mut labels: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        labels.push(("__name__", "up"));
        assert_eq!(
            validate_labels(&labels).unwrap_err(),
            "series has 70001 labels, more than the 65535 a series may have"
        );
        labels.truncate(MAX_LABELS_PER_SERIES - 1);
        labels.push(("__name__", "up"));
        assert!(validate_labels(&labels).is_ok(), "exactly the maximum is accepted");
    }

    #[test]
    fn refuses_a_label_set_larger_than_a_series_log_record() {
        let value = "x".repeat(MAX_LABEL_BYTES);
        let names: Vec<String> = (0..32).map(|i| format!("l{i:02}")).collect();
        let mut labels: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), value.as_str())).collect();
        labels.push(("__name__", "up"));
        // 32 × (4 + 3 + 65535) + (4 + 8 + 2)
        assert_eq!(
            validate_labels(&labels).unwrap_err(),
            "label set is 2097358 bytes, more than the 1048512 a series may have"
        );
        // At the bound exactly: 15 full labels and one filling the rest.
        let full = 15 * (4 + 3 + MAX_LABEL_BYTES) + (4 + 8 + 2);
        let rest = "y".repeat(MAX_LABEL_SET_BYTES - full - 4 - 3);
        let mut labels: Vec<(&str, &str)> = names[..15].iter().map(|n| (n.as_str(), value.as_str())).collect();
        labels.push(("__name__", "up"));
        labels.push((names[15].as_str(), rest.as_str()));
        assert!(validate_labels(&labels).is_ok(), "exactly the maximum is accepted");
        let over = format!("{rest}y");
        *labels.last_mut().unwrap() = (names[15].as_str(), over.as_str());
        assert!(validate_labels(&labels).unwrap_err().contains("more than the 1048512"));
    }
}
