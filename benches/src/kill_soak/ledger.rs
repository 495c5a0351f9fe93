//! `Ledger` is the kill soak's record of what the sender wrote and what Ringtail acknowledged,
//! and the check of Ringtail's export against it.
//!
//! The sender is split into lanes, each a set of series one task writes in order. Sample number
//! `k` of a lane goes to every series of the lane that exists by then, with timestamp
//! `base_ts_ms + k` and value `k`: a sample that is missing, moved to another timestamp or altered
//! is recognised from the export alone, and the ledger holds a few numbers per lane instead of
//! every sample (the next `k`, each series' first `k`, and the ranges of `k` whose request was not
//! acknowledged).

use anyhow::{anyhow, bail, Context, Result};
use ingest::proto::v1;
use ingest::remote_write::encode_body;
use serde::Deserialize;
use std::collections::HashMap;
use std::ops::Range;

/// The metric name of every series the soak writes.
pub(crate) const METRIC: &str = "kill_soak_samples";

/// Lost ranges kept for the report; the counts cover all of them.
const LOST_EXAMPLES: usize = 20;

/// What was sent to one lane's series.
#[derive(Debug)]
pub(crate) struct Lane {
    index: usize,
    base_ts_ms: i64,
    /// First sample number of each series (series `i` carries the label `series="i"`).
    series_first_k: Vec<u64>,
    series_labels: Vec<Vec<v1::Label>>,
    next_k: u64,
    /// Sample numbers sent whose request got no 2xx, ascending and merged.
    unacknowledged: Vec<Range<u64>>,
}

impl Lane {
    fn new(index: usize, series: usize, base_ts_ms: i64) -> Lane {
        let mut lane = Lane {
            index,
            base_ts_ms,
            series_first_k: Vec::new(),
            series_labels: Vec::new(),
            next_k: 0,
            unacknowledged: Vec::new(),
        };
        lane.add_series(series);
        lane
    }

    /// Adds `count` series that receive samples from the next request on.
    pub(crate) fn add_series(&mut self, count: usize) {
        for _ in 0..count {
            let series = self.series_first_k.len();
            self.series_first_k.push(self.next_k);
            self.series_labels.push(
                [("__name__", METRIC.to_string()), ("lane", self.index.to_string()), ("series", series.to_string())]
                    .into_iter()
                    .map(|(name, value)| v1::Label { name: name.to_string(), value })
                    .collect(),
            );
        }
    }

    /// The lane's selector for `/api/v1/export`.
    pub(crate) fn selector(&self) -> String {
        format!("{{__name__=\"{METRIC}\",lane=\"{}\"}}", self.index)
    }

    /// The next request: `per_series` new samples for every series, as a snappy-compressed
    /// Remote-Write 1.0 body, with the sample numbers it carries. Until [`Lane::settle`] is called
    /// the samples count as sent and unacknowledged.
    pub(crate) fn next_request(&mut self, per_series: u64) -> (Vec<u8>, Range<u64>) {
        let range = self.next_k..self.next_k + per_series;
        self.next_k = range.end;
        let timeseries = self
            .series_labels
            .iter()
            .map(|labels| v1::TimeSeries {
                labels: labels.clone(),
                samples: range
                    .clone()
                    .map(|k| v1::Sample { value: sample_value(k), timestamp: self.base_ts_ms + k as i64 })
                    .collect(),
                exemplars: vec![],
                histograms: vec![],
            })
            .collect();
        (encode_body(&v1::WriteRequest { timeseries, metadata: vec![] }), range)
    }

    /// Records the answer to the request carrying `range`: acknowledged (a 2xx) or not.
    pub(crate) fn settle(&mut self, range: Range<u64>, acknowledged: bool) {
        if acknowledged {
            return;
        }
        match self.unacknowledged.last_mut() {
            Some(last) if last.end == range.start => last.end = range.end,
            _ => self.unacknowledged.push(range),
        }
    }

    /// Samples sent to all series so far, and how many of them were acknowledged.
    fn sent_and_acknowledged(&self) -> (u64, u64) {
        let mut sent = 0;
        let mut acknowledged = 0;
        for &first in &self.series_first_k {
            let span = first..self.next_k;
            let total = span.end.saturating_sub(span.start);
            sent += total;
            acknowledged += total - overlap(&self.unacknowledged, &span);
        }
        (sent, acknowledged)
    }

    /// Compares the lane's export (one JSON object per line, VictoriaMetrics' shape) with the
    /// ledger.
    pub(crate) fn check_export(&self, export: &[u8]) -> Result<CheckOutcome> {
        let mut outcome = CheckOutcome::default();
        let mut exported: HashMap<usize, ExportLine> = HashMap::new();
        for line in export.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let parsed: ExportLine = serde_json::from_slice(line).with_context(|| {
                format!("unreadable export line: {}", String::from_utf8_lossy(&line[..line.len().min(200)]))
            })?;
            if parsed.values.len() != parsed.timestamps.len() {
                bail!("export line with {} values and {} timestamps", parsed.values.len(), parsed.timestamps.len());
            }
            let series = parsed.metric.get("series").and_then(|s| s.parse::<usize>().ok());
            match series {
                Some(series) if series < self.series_first_k.len() => {
                    if exported.insert(series, parsed).is_some() {
                        bail!("series {series} of lane {} exported twice", self.index);
                    }
                }
                _ => outcome.foreign_series += 1,
            }
        }
        for (series, &first) in self.series_first_k.iter().enumerate() {
            let sent = first..self.next_k;
            let acknowledged = ranges_minus(&sent, &self.unacknowledged);
            let mut present = Vec::new();
            if let Some(line) = exported.get(&series) {
                let mut previous_ts = i64::MIN;
                for (&ts_ms, &value) in line.timestamps.iter().zip(&line.values) {
                    let k = ts_ms - self.base_ts_ms;
                    let known = ts_ms > previous_ts
                        && k >= 0
                        && sent.contains(&(k as u64))
                        && value.to_bits() == sample_value(k as u64).to_bits();
                    previous_ts = previous_ts.max(ts_ms);
                    if !known {
                        outcome.foreign_samples += 1;
                        if outcome.foreign_examples.len() < LOST_EXAMPLES {
                            outcome.foreign_examples.push(format!(
                                "lane {} series {series}: ts {ts_ms} value {value} (expected value {k})",
                                self.index
                            ));
                        }
                    } else if contains(&self.unacknowledged, k as u64) {
                        outcome.unacknowledged_present += 1;
                    } else {
                        present.push(k as u64);
                    }
                }
            }
            outcome.checked += acknowledged.iter().map(|r| r.end - r.start).sum::<u64>();
            for lost in gaps(&acknowledged, &present) {
                outcome.lost += lost.end - lost.start;
                if outcome.lost_examples.len() < LOST_EXAMPLES {
                    outcome.lost_examples.push(LostRange { lane: self.index, series, k: lost });
                }
            }
        }
        Ok(outcome)
    }
}

/// The value of sample number `k`: `k` itself, exact in an f64 far beyond any soak's length.
fn sample_value(k: u64) -> f64 {
    k as f64
}

/// The sender's lanes.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub(crate) lanes: Vec<Lane>,
}

impl Ledger {
    /// `lanes` lanes of `series_per_lane` series each, timestamps counted from `base_ts_ms`.
    pub(crate) fn new(lanes: usize, series_per_lane: usize, base_ts_ms: i64) -> Ledger {
        Ledger { lanes: (0..lanes).map(|i| Lane::new(i, series_per_lane, base_ts_ms)).collect() }
    }

    /// Samples sent so far and how many of them were acknowledged.
    pub(crate) fn sent_and_acknowledged(&self) -> (u64, u64) {
        self.lanes.iter().map(Lane::sent_and_acknowledged).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Series created so far.
    pub(crate) fn series(&self) -> usize {
        self.lanes.iter().map(|l| l.series_first_k.len()).sum()
    }

    /// Reads every lane's export from the Ringtail at `url` and checks it against the ledger. The
    /// exports are fetched at once, so Ringtail encodes one while the previous one is compared.
    pub(crate) async fn check(&self, client: &reqwest::Client, url: &str) -> Result<CheckOutcome> {
        let fetches: Vec<_> = self
            .lanes
            .iter()
            .map(|lane| tokio::spawn(fetch_export(client.clone(), url.to_string(), lane.index, lane.selector())))
            .collect();
        let mut total = CheckOutcome::default();
        for (lane, fetch) in self.lanes.iter().zip(fetches) {
            let export = fetch.await.map_err(|e| anyhow!("BUG: an export fetch failed: {e}"))??;
            total.add(lane.check_export(&export)?);
        }
        Ok(total)
    }
}

async fn fetch_export(client: reqwest::Client, url: String, lane: usize, selector: String) -> Result<Vec<u8>> {
    let response = client
        .get(format!("{url}/api/v1/export"))
        .query(&[("match[]", selector)])
        .send()
        .await
        .with_context(|| format!("exporting lane {lane} from {url}"))?;
    let status = response.status();
    let body = response.bytes().await.with_context(|| format!("reading lane {lane}'s export"))?;
    if !status.is_success() {
        return Err(anyhow!("export of lane {lane} answered {status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(body.to_vec())
}

/// One line of `/api/v1/export`.
#[derive(Deserialize)]
struct ExportLine {
    metric: HashMap<String, String>,
    values: Vec<f64>,
    timestamps: Vec<i64>,
}

/// Acknowledged sample numbers of one series that the export lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LostRange {
    pub(crate) lane: usize,
    pub(crate) series: usize,
    pub(crate) k: Range<u64>,
}

/// The result of one check.
#[derive(Clone, Debug, Default)]
pub(crate) struct CheckOutcome {
    /// Acknowledged samples looked for.
    pub(crate) checked: u64,
    /// Acknowledged samples not found with their timestamp and value.
    pub(crate) lost: u64,
    pub(crate) lost_examples: Vec<LostRange>,
    /// Samples whose request got no 2xx but which are stored (allowed: the kill came between the
    /// append and the answer).
    pub(crate) unacknowledged_present: u64,
    /// Exported samples the sender never sent (another timestamp or value, or out of order).
    pub(crate) foreign_samples: u64,
    pub(crate) foreign_examples: Vec<String>,
    /// Exported series the ledger does not know.
    pub(crate) foreign_series: u64,
}

impl CheckOutcome {
    fn add(&mut self, other: CheckOutcome) {
        self.checked += other.checked;
        self.lost += other.lost;
        self.unacknowledged_present += other.unacknowledged_present;
        self.foreign_samples += other.foreign_samples;
        self.foreign_series += other.foreign_series;
        let room = LOST_EXAMPLES.saturating_sub(self.lost_examples.len());
        self.lost_examples.extend(other.lost_examples.into_iter().take(room));
        let room = LOST_EXAMPLES.saturating_sub(self.foreign_examples.len());
        self.foreign_examples.extend(other.foreign_examples.into_iter().take(room));
    }

    /// Nothing acknowledged is missing and nothing stored was never sent.
    pub(crate) fn is_clean(&self) -> bool {
        self.lost == 0 && self.foreign_samples == 0 && self.foreign_series == 0
    }
}

/// How many numbers of `span` lie in the ascending, disjoint `ranges`.
fn overlap(ranges: &[Range<u64>], span: &Range<u64>) -> u64 {
    ranges.iter().map(|r| r.end.min(span.end).saturating_sub(r.start.max(span.start))).sum()
}

fn contains(ranges: &[Range<u64>], k: u64) -> bool {
    let after = ranges.partition_point(|r| r.end <= k);
    ranges.get(after).is_some_and(|r| r.contains(&k))
}

/// `span` without the ascending, disjoint `holes`.
fn ranges_minus(span: &Range<u64>, holes: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut start = span.start;
    for hole in holes {
        if hole.end <= start {
            continue;
        }
        if hole.start >= span.end {
            break;
        }
        if hole.start > start {
            out.push(start..hole.start);
        }
        start = hole.end;
    }
    if start < span.end {
        out.push(start..span.end);
    }
    out
}

/// The parts of the ascending `expected` ranges that the ascending `present` numbers do not
/// cover.
fn gaps(expected: &[Range<u64>], present: &[u64]) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut cursor = 0;
    for range in expected {
        let mut next = range.start;
        while cursor < present.len() && present[cursor] < range.end {
            let k = present[cursor];
            if k >= next {
                if k > next {
                    out.push(next..k);
                }
                next = k + 1;
            }
            cursor += 1;
        }
        if next < range.end {
            out.push(next..range.end);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export_line(lane: usize, series: usize, samples: &[(i64, f64)]) -> String {
        let timestamps: Vec<i64> = samples.iter().map(|s| s.0).collect();
        let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
        serde_json::json!({
            "metric": {"__name__": METRIC, "lane": lane.to_string(), "series": series.to_string()},
            "values": values,
            "timestamps": timestamps,
        })
        .to_string()
            + "\n"
    }

    #[test]
    fn range_helpers() {
        assert_eq!(ranges_minus(&(0..10), &[2..4, 8..12]), vec![0..2, 4..8]);
        let rest = ranges_minus(&(5..10), &[0..6, 20..30]);
        assert_eq!((rest.len(), rest.first()), (1, Some(&(6..10))));
        assert_eq!(gaps(&[0..5, 7..9], &[0, 2, 3, 8]), vec![1..2, 4..5, 7..8]);
        assert_eq!(overlap(&[0..3, 5..9], &(2..6)), 2);
        assert!(contains(&[0..3, 5..9], 5) && !contains(&[0..3, 5..9], 3));
    }

    #[test]
    fn a_clean_export_checks_every_acknowledged_sample() {
        let mut lane = Lane::new(0, 1, 1000);
        let (_, first) = lane.next_request(3);
        lane.settle(first, true);
        let (_, second) = lane.next_request(3);
        lane.settle(second, false);
        lane.add_series(1);
        let (_, third) = lane.next_request(2);
        lane.settle(third, true);
        assert_eq!(lane.sent_and_acknowledged(), (10, 7));
        // Series 0 has 0..3 acknowledged, 3 (unacknowledged) stored, 6..8 acknowledged.
        let export = export_line(0, 0, &[(1000, 0.0), (1001, 1.0), (1002, 2.0), (1003, 3.0), (1006, 6.0), (1007, 7.0)])
            + &export_line(0, 1, &[(1006, 6.0), (1007, 7.0)]);
        let outcome = lane.check_export(export.as_bytes()).expect("readable");
        assert_eq!((outcome.checked, outcome.lost, outcome.unacknowledged_present), (7, 0, 1));
        assert!(outcome.is_clean());
    }

    #[test]
    fn a_missing_or_altered_sample_is_lost_and_foreign() {
        let mut lane = Lane::new(2, 2, 0);
        let (_, range) = lane.next_request(4);
        lane.settle(range, true);
        let export = export_line(2, 0, &[(0, 0.0), (1, 1.0), (3, 3.0)])
            + &export_line(2, 1, &[(0, 0.0), (1, 1.5), (2, 2.0), (3, 3.0)])
            + &export_line(2, 9, &[(0, 0.0)]);
        let outcome = lane.check_export(export.as_bytes()).expect("readable");
        assert_eq!((outcome.checked, outcome.lost, outcome.foreign_samples, outcome.foreign_series), (8, 2, 1, 1));
        assert_eq!(
            outcome.lost_examples,
            vec![LostRange { lane: 2, series: 0, k: 2..3 }, LostRange { lane: 2, series: 1, k: 1..2 }]
        );
        assert!(!outcome.is_clean());
    }

    #[test]
    fn a_series_absent_from_the_export_loses_everything_acknowledged() {
        let mut lane = Lane::new(0, 1, 0);
        let (body, range) = lane.next_request(5);
        assert!(!body.is_empty());
        lane.settle(range, true);
        let outcome = lane.check_export(b"").expect("readable");
        assert_eq!((outcome.checked, outcome.lost), (5, 5));
    }
}
