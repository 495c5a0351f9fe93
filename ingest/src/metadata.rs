//! `metadata` is what Ringtail keeps of metric metadata (type, help, unit per metric family): each
//! scraped target's `# TYPE`/`# HELP`/`# UNIT` lines of its last parsed page, and the
//! metadata of remote-write requests ([`RemoteWriteMetadata`]: 1.0's `metadata` entries, 2.0's
//! per-series metadata under the series' family name). Nothing of it is
//! stored on disk: as in Prometheus, metadata lives as long as the process (and the target).
//!
//! Names and type words are Prometheus's (`counter`, `gauge`, `histogram`, `gaugehistogram`,
//! `summary`, `info`, `stateset`, `unknown`; a text-format `untyped` reads as `unknown`), so the
//! HTTP API can answer in Prometheus's shape.

use crate::exposition::{Family, Format, MetricType};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Most metric families kept per target; the page's first ones are kept, the rest left out (a
/// page declaring more families than this is a broken exporter, not a metadata source).
pub const MAX_METADATA_FAMILIES_PER_TARGET: usize = 10_000;

/// Longest help text kept, in bytes; a longer one is cut at a character boundary.
pub const MAX_METADATA_HELP_BYTES: usize = 4096;

/// Most `(metric family, metadata)` entries kept from remote-write requests in all; a new entry
/// past it is left out (and counted) until the process restarts.
pub const MAX_REMOTE_WRITE_METADATA_ENTRIES: usize = 100_000;

/// Most bytes the kept remote-write entries' names, help texts and units take in all (a sender
/// cannot fill memory with long ones); a new entry past it is left out (and counted) too.
pub const MAX_REMOTE_WRITE_METADATA_BYTES: usize = 16 << 20;

/// One metric family's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricMetadata {
    /// The family name as declared (`http_requests`, or `http_requests_total` in text format).
    pub metric: String,
    /// Prometheus's type word.
    pub kind: &'static str,
    pub help: String,
    pub unit: String,
}

/// Prometheus's word for a declared type (none declared: `unknown`).
pub fn type_word(kind: Option<MetricType>) -> &'static str {
    match kind {
        Some(MetricType::Counter) => "counter",
        Some(MetricType::Gauge) => "gauge",
        Some(MetricType::Histogram) => "histogram",
        Some(MetricType::GaugeHistogram) => "gaugehistogram",
        Some(MetricType::Summary) => "summary",
        Some(MetricType::Info) => "info",
        Some(MetricType::StateSet) => "stateset",
        Some(MetricType::Untyped) | None => "unknown",
    }
}

/// The word of remote-write 1.0's `MetricMetadata.MetricType` enum (an unknown number: `unknown`).
pub fn remote_write_type_word(number: i32) -> &'static str {
    match number {
        1 => "counter",
        2 => "gauge",
        3 => "histogram",
        4 => "gaugehistogram",
        5 => "summary",
        6 => "info",
        7 => "stateset",
        _ => "unknown",
    }
}

/// A page's families as metadata, sorted by name (at most [`MAX_METADATA_FAMILIES_PER_TARGET`];
/// help unescaped as Prometheus's parsers do: `\\` and `\n`, and `\"` in OpenMetrics).
pub(crate) fn from_families(families: &[Family<'_>], format: Format) -> Vec<MetricMetadata> {
    let mut out: Vec<MetricMetadata> = families
        .iter()
        // The text format 0.0.4 has no `# UNIT` (Prometheus reads it as a comment).
        .filter(|f| format == Format::OpenMetrics || f.kind.is_some() || f.help.is_some())
        .take(MAX_METADATA_FAMILIES_PER_TARGET)
        .map(|f| MetricMetadata {
            metric: f.name.to_string(),
            kind: type_word(f.kind),
            help: truncate_help(unescape_help(f.help.unwrap_or(""), format)),
            unit: if format == Format::OpenMetrics { f.unit.unwrap_or("").to_string() } else { String::new() },
        })
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.metric == b.metric);
    out
}

/// A stable hash of a page's families as written, so an unchanged page costs no allocation.
pub(crate) fn families_fingerprint(families: &[Family<'_>]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut add = |text: &str| {
        for byte in text.bytes().chain(std::iter::once(0xff)) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for f in families {
        add(f.name);
        add(type_word(f.kind));
        add(f.help.unwrap_or(""));
        add(f.unit.unwrap_or(""));
    }
    hash
}

fn unescape_help(raw: &str, format: Format) -> String {
    if !raw.contains('\\') {
        return raw.to_string();
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if format == Format::OpenMetrics => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn truncate_help(mut help: String) -> String {
    if help.len() > MAX_METADATA_HELP_BYTES {
        let mut cut = MAX_METADATA_HELP_BYTES;
        while !help.is_char_boundary(cut) {
            cut -= 1;
        }
        help.truncate(cut);
    }
    help
}

/// The metadata remote-write senders sent: for each metric family, the distinct metadata seen
/// (normally one), bounded by [`MAX_REMOTE_WRITE_METADATA_ENTRIES`]. Shared behind an `Arc`.
#[derive(Debug, Default)]
pub struct RemoteWriteMetadata {
    state: Mutex<RemoteWriteMetadataState>,
}

#[derive(Debug, Default)]
struct RemoteWriteMetadataState {
    by_metric: HashMap<String, Vec<Arc<MetricMetadata>>>,
    entries: usize,
    /// Bytes of the kept entries' names, help texts and units.
    bytes: usize,
    left_out: u64,
}

impl RemoteWriteMetadata {
    /// Records one entry; `false` when it is new and the store is full, in entries or in bytes
    /// (left out).
    pub fn record(&self, kind: &'static str, metric: &str, help: &str, unit: &str) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let help = truncate_help(help.to_string());
        let known = state
            .by_metric
            .get(metric)
            .is_some_and(|all| all.iter().any(|m| m.kind == kind && m.help == help && m.unit == unit));
        if known {
            return true;
        }
        // The name is held twice: as the key and in the entry.
        let bytes = metric.len().saturating_mul(2).saturating_add(help.len()).saturating_add(unit.len());
        if state.entries >= MAX_REMOTE_WRITE_METADATA_ENTRIES
            || state.bytes.saturating_add(bytes) > MAX_REMOTE_WRITE_METADATA_BYTES
        {
            state.left_out += 1;
            return false;
        }
        state.entries += 1;
        state.bytes += bytes;
        let entry = Arc::new(MetricMetadata { metric: metric.to_string(), kind, help, unit: unit.to_string() });
        state.by_metric.entry(metric.to_string()).or_default().push(entry);
        true
    }

    /// Every entry kept, sorted.
    pub fn entries(&self) -> Vec<Arc<MetricMetadata>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Arc<MetricMetadata>> = state.by_metric.values().flatten().cloned().collect();
        out.sort();
        out
    }

    /// New entries left out because the store was full.
    pub fn left_out(&self) -> u64 {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).left_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::parse;

    #[test]
    fn families_become_prometheus_metadata() {
        let page = "# HELP a_total Line one\\nwith \\\\ slash.\n# TYPE a_total counter\na_total 1\n\
                    # TYPE b untyped\nb 1\n# HELP c only help\nc 1\n# UNIT d seconds\nd 1\n";
        let parsed = parse(page, Format::Text).unwrap();
        let metadata = from_families(parsed.families(), Format::Text);
        let words: Vec<(&str, &str, &str)> =
            metadata.iter().map(|m| (m.metric.as_str(), m.kind, m.help.as_str())).collect();
        assert_eq!(
            words,
            [("a_total", "counter", "Line one\nwith \\ slash."), ("b", "unknown", ""), ("c", "unknown", "only help")]
        );
        let page = "# TYPE d_seconds gauge\n# UNIT d_seconds seconds\nd_seconds 1\n# EOF\n";
        let parsed = parse(page, Format::OpenMetrics).unwrap();
        assert_eq!(from_families(parsed.families(), Format::OpenMetrics)[0].unit, "seconds");
    }

    #[test]
    fn help_is_cut_at_the_limit_on_a_character_boundary() {
        let long = "é".repeat(MAX_METADATA_HELP_BYTES);
        let cut = truncate_help(long);
        assert!(cut.len() <= MAX_METADATA_HELP_BYTES && cut.len() >= MAX_METADATA_HELP_BYTES - 1);
    }

    #[test]
    fn remote_write_metadata_keeps_distinct_entries_up_to_the_limit() {
        let store = RemoteWriteMetadata::default();
        assert!(store.record("counter", "x_total", "X.", ""));
        assert!(store.record("counter", "x_total", "X.", ""));
        assert_eq!(store.entries().len(), 1);
        for i in 0..MAX_REMOTE_WRITE_METADATA_ENTRIES {
            store.record("gauge", &format!("g{i}"), "", "");
        }
        assert_eq!(store.entries().len(), MAX_REMOTE_WRITE_METADATA_ENTRIES);
        assert_eq!(store.left_out(), 1);
        assert!(store.record("counter", "x_total", "X.", ""), "a known entry is still fine");
    }

    #[test]
    fn remote_write_metadata_keeps_entries_up_to_its_bytes() {
        let store = RemoteWriteMetadata::default();
        let unit = "u".repeat(1 << 20);
        let mut kept = 0;
        for i in 0..32 {
            kept += usize::from(store.record("gauge", &format!("g{i}"), "", &unit));
        }
        assert_eq!(kept, MAX_REMOTE_WRITE_METADATA_BYTES / (1 << 20) - 1, "names take a few bytes too");
        assert_eq!(store.left_out(), 32 - kept as u64);
        let held: usize = store.entries().iter().map(|m| 2 * m.metric.len() + m.help.len() + m.unit.len()).sum();
        assert!(held <= MAX_REMOTE_WRITE_METADATA_BYTES);
        assert!(store.record("counter", "small_total", "Fits.", ""), "a small entry still fits");
    }
}
