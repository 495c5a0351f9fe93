//! `TargetState` is what one target's loop carries from scrape to scrape, and the way a scraped
//! page enters the store. Each sample's raw `name{labels}` text is first compared with the text at
//! the same place on the previous page ([`PageLayout`]: pages usually repeat their order, so this
//! costs no hashing and reads memory in order), then looked up among the previous page's texts
//! (series id, or "dropped by relabeling"); a miss builds the series' labels (target labels,
//! `honor_labels`, `metric_relabel_configs`). The page is then stored by one `Db::append`, known
//! series by id and new ones by their labels, whose ids the append's report hands back for the
//! next page. Then come the staleness markers of series that disappeared and the report series.
//! A series missing from one page is resolved by its labels again when it comes back.

use super::{Fetched, Target};
use crate::exposition;
use crate::metadata;
use crate::metrics::{IngestMetrics, JobLabels, RejectLabels, ScrapeLabels, SOURCE_SCRAPE};
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::time::Instant;
use tsdb::{stale_nan, Db, Labels, Sample, SeriesId, SeriesSamples, METRIC_NAME};

/// Report series names, in the order their ids are cached.
const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// The largest page (as fetched, after decompression) processed on the async worker that fetched
/// it (`TargetState::processes_inline`): about 400 series of Kubernetes pod metrics, a tenth of a
/// millisecond of parsing and appending at the scraper's steady state, about what a task may run
/// between two awaits without holding up the others.
const INLINE_PAGE_BYTES: usize = 64 * 1024;

/// The most series the previous page (or a failed scrape's staleness markers) may have for a page
/// to be processed inline (`TargetState::processes_inline`).
const INLINE_PAGE_SERIES: usize = 1000;

/// A set or map hashed with foldhash seeded at random per process: the keys are chosen by the
/// target (raw series texts) or follow from them (series ids), so the hash stays keyed.
type KeyedSet<K> = HashSet<K, foldhash::quality::RandomState>;
type KeyedMap<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

/// The previous page: its text, and each sample's series text in page order with what it resolved
/// to (`None`: dropped).
#[derive(Default)]
struct PageLayout {
    /// The page's text, kept whole; or only its series texts, when the page is more than twice
    /// their size plus 4 KiB (long help texts or comments are not held between scrapes).
    body: String,
    series: Vec<Range<usize>>,
    ids: Vec<Option<SeriesId>>,
    /// The size of the page as fetched.
    page_bytes: usize,
}

impl PageLayout {
    /// The layout of a page: `body` and its samples' series ranges (disjoint, in page order).
    fn new(body: String, series: Vec<Range<usize>>, ids: Vec<Option<SeriesId>>) -> PageLayout {
        let page_bytes = body.len();
        let series_bytes: usize = series.iter().map(Range::len).sum();
        if page_bytes <= series_bytes.saturating_mul(2).saturating_add(4096) {
            return PageLayout { body, series, ids, page_bytes };
        }
        let mut compact = String::with_capacity(series_bytes);
        let mut compact_series = Vec::with_capacity(series.len());
        for range in series {
            let start = compact.len();
            compact.push_str(body.get(range).unwrap_or_default());
            compact_series.push(start..compact.len());
        }
        PageLayout { body: compact, series: compact_series, ids, page_bytes }
    }

    /// The series text of sample `index`.
    fn text(&self, index: usize) -> Option<&str> {
        self.body.get(self.series.get(index)?.clone())
    }

    /// What sample `index` resolved to, when its text was `series`.
    #[cfg(test)]
    fn resolved_at(&self, index: usize, series: &str) -> Option<Option<SeriesId>> {
        (self.text(index)? == series).then(|| self.resolved(index))
    }

    /// What sample `index` resolved to (`None`: dropped).
    fn resolved(&self, index: usize) -> Option<SeriesId> {
        self.ids.get(index).copied().flatten()
    }
}

/// Where `part`, a slice of `whole`, lies in it.
fn range_within(whole: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// The previous page's texts, looked up by place and, built on the first need, by text (a page
/// whose order changed).
struct PreviousPage<'l> {
    layout: &'l PageLayout,
    by_text: std::cell::OnceCell<KeyedMap<&'l str, Option<SeriesId>>>,
}

impl<'l> PreviousPage<'l> {
    fn new(layout: &'l PageLayout) -> PreviousPage<'l> {
        PreviousPage { layout, by_text: std::cell::OnceCell::new() }
    }

    /// What `series` resolved to on the previous page, wherever it was there.
    fn by_text(&self, series: &str) -> Option<Option<SeriesId>> {
        let map = self.by_text.get_or_init(|| {
            (0..self.layout.series.len())
                .filter_map(|index| Some((self.layout.text(index)?, self.layout.ids.get(index).copied().flatten())))
                .collect()
        });
        map.get(series).copied()
    }
}

/// What the parser may skip: the previous page's series.
impl exposition::KnownSeries for PreviousPage<'_> {
    fn expected(&self, index: usize) -> Option<&str> {
        self.layout.text(index)
    }

    fn contains(&self, series: &str) -> bool {
        self.by_text(series).is_some()
    }
}

/// The series of one page sample: known from the previous page, or first seen on this page (an
/// index into the page's new series, named by labels in the append).
#[derive(Clone, Copy)]
enum PageSeries {
    Known(SeriesId),
    New(usize),
}

/// One sample of a page on its way into the append.
struct PageSample {
    series: PageSeries,
    sample: Sample,
    /// The page gave the timestamp (such series are exempt from staleness).
    explicit: bool,
}

/// Per-target state carried from scrape to scrape.
#[derive(Default)]
pub(super) struct TargetState {
    /// The previous successful page's series, in order.
    layout: PageLayout,
    /// Series of the previous successful scrape, for staleness.
    previous: KeyedSet<SeriesId>,
    report_ids: Option<[SeriesId; 5]>,
    scrapes: u64,
    /// `metadata::families_fingerprint` of the metadata last handed to the target.
    metadata_fingerprint: Option<u64>,
}

/// Counts from one successful page.
struct PageStats {
    scraped: u64,
    post_relabel: u64,
    series_added: u64,
    appended: u64,
    rejected: Vec<(&'static str, u64)>,
    /// New series dropped by an ingestion limit, by the limit's name.
    refused: Vec<(&'static str, u64)>,
}

impl TargetState {
    pub(super) fn record(
        &mut self,
        target: &Target,
        db: &Db,
        metrics: &IngestMetrics,
        fetched: Result<Fetched, String>,
        scrape_ts_ms: i64,
        started: Instant,
    ) {
        self.scrapes += 1;
        let outcome = fetched.and_then(|f| self.ingest_page(target, db, f, scrape_ts_ms));
        let job = &target.job.job.name;
        let (up, stats) = match &outcome {
            Ok(stats) => (1.0, Some(stats)),
            Err(_) => {
                let stale: Vec<(SeriesId, Sample)> =
                    self.previous.drain().map(|id| (id, Sample::new(scrape_ts_ms, stale_nan()))).collect();
                if let Err(e) = append_pairs(db, &stale) {
                    tracing::warn!(target = %target.url, error = %e, "writing staleness markers failed");
                }
                (0.0, None)
            }
        };
        let duration_seconds = started.elapsed().as_secs_f64();
        let report_values = [
            up,
            duration_seconds,
            stats.map_or(0.0, |s| s.scraped as f64),
            stats.map_or(0.0, |s| s.post_relabel as f64),
            stats.map_or(0.0, |s| s.series_added as f64),
        ];
        self.write_report(target, db, scrape_ts_ms, report_values);
        if let Some(stats) = stats {
            metrics.ingested(SOURCE_SCRAPE, stats.appended);
            for (reason, n) in &stats.rejected {
                metrics.rejected(SOURCE_SCRAPE, reason, *n);
            }
            for (reason, n) in &stats.refused {
                metrics.series_refused.get_or_create(&RejectLabels { source: SOURCE_SCRAPE, reason }).inc_by(*n);
                metrics.rejected(SOURCE_SCRAPE, reason, *n);
            }
        }
        let result = if outcome.is_ok() { "success" } else { "failure" };
        metrics.scrapes.get_or_create(&ScrapeLabels { job: job.clone(), result }).inc();
        metrics.scrape_duration_seconds.get_or_create(&JobLabels { job: job.clone() }).observe(duration_seconds);
        if let Err(message) = &outcome {
            tracing::debug!(target = %target.url, error = %message, "scrape failed");
        }
        if let Ok(mut health) = target.health.lock() {
            health.up = Some(outcome.is_ok());
            health.last_error = outcome.err();
            health.last_scrape_ts_ms = scrape_ts_ms;
            health.last_duration_seconds = duration_seconds;
            health.scrapes = self.scrapes;
        }
    }

    /// Stores one page in one append: series the cache knows by id, new ones by their labels
    /// (their ids come back in the append's report and join the cache).
    fn ingest_page(
        &mut self,
        target: &Target,
        db: &Db,
        fetched: Fetched,
        scrape_ts_ms: i64,
    ) -> Result<PageStats, String> {
        let job = &target.job.job;
        let body = String::from_utf8(fetched.body).map_err(|e| format!("page is not UTF-8: {}", e.utf8_error()))?;
        let text = body.as_str();
        // Known series are not parsed again: only their raw text is looked up below.
        let previous = PreviousPage::new(&self.layout);
        let page = exposition::parse_skipping_known(text, fetched.format, &previous)
            .map_err(|e| format!("parse error: {e}"))?;
        let fingerprint = metadata::families_fingerprint(page.families());
        if self.metadata_fingerprint != Some(fingerprint) {
            self.metadata_fingerprint = Some(fingerprint);
            let families = std::sync::Arc::new(metadata::from_families(page.families(), fetched.format));
            if let Ok(mut kept) = target.metadata.lock() {
                *kept = families;
            }
        }
        let mut appends: Vec<PageSample> = Vec::with_capacity(page.samples().len());
        // The labels of series first seen on this page.
        let mut new_series: Vec<Labels> = Vec::new();
        let mut refused: Vec<(&'static str, u64)> = Vec::new();
        // Per sample, its entry in `appends` (`None`: dropped), for the next page's layout.
        let mut sample_appends: Vec<Option<usize>> = Vec::with_capacity(page.samples().len());
        for (index, line) in page.samples().iter().enumerate() {
            sample_appends.push(None);
            // The parser compared the line with the previous page's text at its place already.
            let known = match line.at_expected_place {
                true => Some(previous.layout.resolved(index)),
                false => previous.by_text(line.series),
            };
            let series = match known {
                Some(Some(id)) => PageSeries::Known(id),
                Some(None) => continue,
                None => {
                    let labels = page.labels(line).ok_or_else(|| {
                        format!("series {} was left unparsed as known but is not on the previous page", line.series)
                    })?;
                    match sample_series_labels(target, line.name(), labels, &mut refused)? {
                        Some(labels) => {
                            new_series.push(labels);
                            PageSeries::New(new_series.len() - 1)
                        }
                        None => continue,
                    }
                }
            };
            let (ts_ms, explicit) = match line.ts_ms {
                Some(ts) if job.honor_timestamps => (ts, true),
                _ => (scrape_ts_ms, false),
            };
            if let Some(slot) = sample_appends.last_mut() {
                *slot = Some(appends.len());
            }
            appends.push(PageSample { series, sample: Sample::new(ts_ms, line.value), explicit });
        }
        if job.sample_limit > 0 && appends.len() as u64 > job.sample_limit {
            return Err(format!(
                "sample limit exceeded: {} samples > sample_limit {}",
                appends.len(),
                job.sample_limit
            ));
        }
        let new_pairs: Vec<Vec<(&str, &str)>> =
            new_series.iter().map(|new| new.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect()).collect();
        let batch: Vec<SeriesSamples<'_>> = appends
            .iter()
            .map(|append| {
                let samples = std::slice::from_ref(&append.sample);
                match append.series {
                    PageSeries::Known(id) => SeriesSamples::id(id, samples),
                    PageSeries::New(index) => SeriesSamples::labels(&new_pairs[index], samples),
                }
            })
            .collect();
        let report = db.append(&batch).map_err(|e| format!("storing samples failed: {e}"))?;
        if !report.removed.is_empty() {
            // Series the store removed since the previous page (nothing of them was inside the
            // retention): forgotten with the whole layout below, so the next scrape creates them
            // anew.
            let removed: KeyedSet<SeriesId> =
                report.removed.iter().filter_map(|i| report.ids.get(*i).copied()).collect();
            self.previous.retain(|id| !removed.contains(id));
        }
        // The next page's layout: none when the store removed cached series.
        let series: Option<Vec<Range<usize>>> = match report.removed.is_empty() {
            true => page.samples().iter().map(|line| range_within(text, line.series)).collect(),
            false => None,
        };
        let ids = sample_appends.iter().map(|append| append.and_then(|index| report.ids.get(index).copied())).collect();
        let mut current = KeyedSet::with_capacity_and_hasher(self.previous.len(), Default::default());
        let mut series_added = 0;
        for (append, id) in appends.iter().zip(&report.ids) {
            if !append.explicit && current.insert(*id) && !self.previous.contains(id) {
                series_added += 1;
            }
        }
        let stale: Vec<(SeriesId, Sample)> =
            self.previous.difference(&current).map(|id| (*id, Sample::new(scrape_ts_ms, stale_nan()))).collect();
        if !stale.is_empty() {
            append_pairs(db, &stale).map_err(|e| format!("storing staleness markers failed: {e}"))?;
        }
        self.previous = current;
        let mut rejected: HashMap<&'static str, u64> = HashMap::new();
        for rejection in &report.rejections {
            *rejected.entry(rejection.reason.as_str()).or_default() += 1;
        }
        let stats = PageStats {
            scraped: page.samples().len() as u64,
            post_relabel: appends.len() as u64,
            series_added,
            appended: report.appended,
            rejected: rejected.into_iter().collect(),
            refused,
        };
        drop(page);
        self.layout = match series {
            Some(series) => PageLayout::new(body, series, ids),
            None => PageLayout::default(),
        };
        Ok(stats)
    }

    /// Whether the page just fetched is cheap enough to process on the async worker that fetched
    /// it rather than handing it to the blocking pool. At a slow interval the hand-off costs more
    /// than such a page: the blocking thread is woken, and wakes the worker again when it is done.
    ///
    /// Inline: a page of at most [`INLINE_PAGE_BYTES`], and at most twice the size of the previous
    /// page, which was stored and had at most [`INLINE_PAGE_SERIES`] series (so this page is
    /// mostly lookups of known series, not series creation); or a failed scrape whose staleness
    /// markers are for at most [`INLINE_PAGE_SERIES`] series. Anything else (a first page, a large
    /// one, one that grew a lot) goes to the blocking pool.
    pub(super) fn processes_inline(&self, fetched: &Result<Fetched, String>) -> bool {
        let previous = &self.layout;
        match fetched {
            Ok(page) => {
                previous.page_bytes > 0
                    && previous.series.len() <= INLINE_PAGE_SERIES
                    && page.body.len() <= INLINE_PAGE_BYTES.min(previous.page_bytes.saturating_mul(2))
            }
            Err(_) => self.previous.len() <= INLINE_PAGE_SERIES,
        }
    }

    /// The size of the previous page, to size the next one's buffer.
    pub(super) fn page_size_hint(&self) -> usize {
        self.layout.page_bytes
    }

    /// Writes the report series; the first time by their labels, then by the ids that append
    /// returned.
    fn write_report(&mut self, target: &Target, db: &Db, ts_ms: i64, values: [f64; 5]) {
        let samples = values.map(|v| Sample::new(ts_ms, v));
        let result = match self.report_ids {
            Some(ids) => {
                let batch: Vec<SeriesSamples<'_>> = ids
                    .iter()
                    .zip(&samples)
                    .map(|(id, sample)| SeriesSamples::id(*id, std::slice::from_ref(sample)))
                    .collect();
                db.append(&batch)
            }
            None => {
                let target_pairs = target.labels.iter().map(|l| (l.name.as_str(), l.value.as_str()));
                let label_sets: Vec<Vec<(&str, &str)>> = REPORT_SERIES
                    .iter()
                    .map(|name| target_pairs.clone().chain(std::iter::once((METRIC_NAME, *name))).collect())
                    .collect();
                let batch: Vec<SeriesSamples<'_>> = label_sets
                    .iter()
                    .zip(&samples)
                    .map(|(labels, sample)| SeriesSamples::labels(labels, std::slice::from_ref(sample)))
                    .collect();
                db.append(&batch)
            }
        };
        match result {
            Ok(report) if self.report_ids.is_none() => self.report_ids = report.ids.try_into().ok(),
            // The store removed them (a target not scraped for longer than the retention).
            Ok(report) if !report.removed.is_empty() => self.report_ids = None,
            Ok(_) => {}
            Err(e) if self.report_ids.is_none() => {
                tracing::warn!(target = %target.url, error = %e, "cannot create report series")
            }
            Err(e) => tracing::warn!(target = %target.url, error = %e, "writing report series failed"),
        }
    }

    /// The target went away: every series it wrote, report series included, goes stale.
    pub(super) fn end_of_run(self, db: &Db, ts_ms: i64) {
        let mut ids: Vec<SeriesId> = self.previous.into_iter().collect();
        if self.scrapes > 0 {
            ids.extend(self.report_ids.into_iter().flatten());
        }
        let stale: Vec<(SeriesId, Sample)> = ids.into_iter().map(|id| (id, Sample::new(ts_ms, stale_nan()))).collect();
        if let Err(e) = append_pairs(db, &stale) {
            tracing::warn!(error = %e, "writing end-of-run staleness markers failed");
        }
    }
}

/// Appends one sample per series (a scrape has at most one sample of a series per page).
fn append_pairs(db: &Db, pairs: &[(SeriesId, Sample)]) -> Result<tsdb::AppendReport, tsdb::Error> {
    let batch: Vec<SeriesSamples<'_>> =
        pairs.iter().map(|(id, sample)| SeriesSamples::id(*id, std::slice::from_ref(sample))).collect();
    db.append(&batch)
}

/// Prometheus's per-job label limits, with its messages.
fn check_job_label_limits(job: &crate::scrape_config::Job, labels: &Labels) -> Result<(), String> {
    if job.label_limit > 0 && labels.len() as u64 > job.label_limit {
        return Err(format!(
            "label_limit exceeded (metric: {labels}, number of labels: {}, limit: {})",
            labels.len(),
            job.label_limit
        ));
    }
    for label in labels.iter() {
        if job.label_name_length_limit > 0 && label.name.len() as u64 > job.label_name_length_limit {
            return Err(format!(
                "label_name_length_limit exceeded (metric: {labels}, label name: {}, length: {}, limit: {})",
                label.name,
                label.name.len(),
                job.label_name_length_limit
            ));
        }
        if job.label_value_length_limit > 0 && label.value.len() as u64 > job.label_value_length_limit {
            return Err(format!(
                "label_value_length_limit exceeded (metric: {labels}, label name: {}, value: {:?}, length: {}, limit: {})",
                label.name,
                label.value,
                label.value.len(),
                job.label_value_length_limit
            ));
        }
    }
    Ok(())
}

/// Builds a new series' labels: the sample's, merged with the target's (Prometheus' rules: with
/// `honor_labels` the sample wins; otherwise a clashing sample label is kept as `exported_<name>`),
/// then `metric_relabel_configs`. `None` when dropped, or when the result breaks the store's one
/// label rule ([`tsdb::validate_labels`], checked here so that one bad series is dropped, as
/// Prometheus does, instead of failing the page's append).
/// A series over one of the `--limits.*` label limits is dropped too, and its limit's name counted
/// in `refused`; one over the job's own `label_limit`, `label_name_length_limit` or
/// `label_value_length_limit` fails the whole scrape, as in Prometheus.
fn sample_series_labels(
    target: &Target,
    name: &str,
    sample_labels: &[(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)],
    refused: &mut Vec<(&'static str, u64)>,
) -> Result<Option<Labels>, String> {
    let job = &target.job.job;
    let mut labels = Labels::from_pairs(
        sample_labels.iter().map(|(n, v)| (n.as_ref(), v.as_ref())).chain(std::iter::once((METRIC_NAME, name))),
    );
    for target_label in target.labels.iter() {
        let (label, value) = (target_label.name.as_str(), target_label.value.as_str());
        if job.honor_labels {
            if labels.get(label).is_none() {
                labels.set(label, value);
            }
            continue;
        }
        if let Some(existing) = labels.get(label).map(str::to_string) {
            let mut exported = format!("exported_{label}");
            while labels.get(&exported).is_some() {
                exported = format!("exported_{exported}");
            }
            labels.set(&exported, &existing);
        }
        labels.set(label, value);
    }
    if !job.metric_relabel.is_empty() && !job.metric_relabel.apply(&mut labels) {
        return Ok(None);
    }
    if labels.metric_name().is_none() {
        return Ok(None);
    }
    check_job_label_limits(job, &labels)?;
    let pairs: Vec<(&str, &str)> = labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
    if let Err(reason) = tsdb::validate_labels(&pairs) {
        tracing::warn!(target = %target.url, series = %labels, error = %reason, "series refused by the store");
        return Ok(None);
    }
    if let Some((limit, detail)) = target.job.limits.check_labels(&pairs) {
        tracing::warn!(
            target = %target.url,
            series = %labels,
            limit = limit.as_str(),
            detail,
            "series refused by an ingestion limit (--limits.*)"
        );
        match refused.iter_mut().find(|(reason, _)| *reason == limit.as_str()) {
            Some((_, n)) => *n += 1,
            None => refused.push((limit.as_str(), 1)),
        }
        return Ok(None);
    }
    Ok(Some(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::resolve_target;
    use crate::scrape::tests::runtime;

    #[test]
    fn a_new_series_over_a_job_label_limit_fails_the_scrape() {
        for (limit, expected) in [
            ("label_limit: 3", Some("label_limit exceeded")),
            ("label_name_length_limit: 4", Some("label_name_length_limit exceeded")),
            ("label_value_length_limit: 2", Some("label_value_length_limit exceeded")),
            ("label_limit: 4", None),
        ] {
            let rt = runtime(&format!(
                "scrape_configs:\n- job_name: j\n  {limit}\n  static_configs: [{{targets: ['h:1']}}]\n"
            ));
            let target = resolve_target(&rt, &rt.job.static_groups[0], "h:1").unwrap();
            let labels = [(std::borrow::Cow::Borrowed("code"), std::borrow::Cow::Borrowed("200"))];
            let result = sample_series_labels(&target, "m", &labels, &mut Vec::new());
            match expected {
                Some(message) => assert!(result.as_ref().is_err_and(|e| e.starts_with(message)), "{limit}: {result:?}"),
                None => assert!(matches!(result, Ok(Some(_))), "{limit}: {result:?}"),
            }
        }
    }

    #[test]
    fn clashing_labels_become_exported_unless_honored() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(tsdb::Options::new(dir.path())).unwrap();
        for (honor, expected_job, exported) in [(false, "j", Some("inner")), (true, "inner", None)] {
            let rt = runtime(&format!(
                "scrape_configs:\n- job_name: j\n  honor_labels: {honor}\n  static_configs: [{{targets: ['h:1']}}]\n"
            ));
            let target = resolve_target(&rt, &rt.job.static_groups[0], "h:1").unwrap();
            let labels = [(std::borrow::Cow::Borrowed("job"), std::borrow::Cow::Borrowed("inner"))];
            let labels =
                sample_series_labels(&target, &format!("m_{honor}"), &labels, &mut Vec::new()).unwrap().unwrap();
            let pairs: Vec<(&str, &str)> = labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
            db.append(&[SeriesSamples::labels(&pairs, &[Sample::new(1, 1.0)])]).unwrap();
            let found = db.select(&[tsdb::Matcher::equal("__name__", format!("m_{honor}"))], 0, 10).unwrap();
            assert_eq!(found[0].labels.get("job"), Some(expected_job));
            assert_eq!(found[0].labels.get("exported_job"), exported);
        }
    }

    #[test]
    fn a_series_over_a_label_limit_is_dropped_alone_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(tsdb::Options::new(dir.path())).unwrap();
        let mut rt = runtime("scrape_configs:\n- job_name: j\n  static_configs: [{targets: ['h:1']}]\n");
        let job = std::sync::Arc::get_mut(&mut rt).expect("only this test holds it");
        job.limits.max_label_value_bytes = 8;
        job.limits.max_labels_per_series = 4;
        let target = resolve_target(&rt, &rt.job.static_groups[0], "h:1").unwrap();
        let body = "ok{v=\"short\"} 1\nlong{v=\"longer than 8\"} 2\nwide{a=\"1\",b=\"2\",c=\"3\"} 3\n";
        let fetched = || Fetched { body: body.as_bytes().to_vec(), format: crate::exposition::Format::Text };
        let mut state = TargetState { scrapes: 1, ..TargetState::default() };
        let mut stats = state.ingest_page(&target, &db, fetched(), 1_000).unwrap();
        stats.refused.sort();
        assert_eq!(stats.refused, vec![("max_label_value_length", 1), ("max_labels_per_series", 1)]);
        assert_eq!((stats.appended, db.stats().series), (1, 1), "the series within the limits is stored");
        // Remembered as dropped: the next scrape neither stores nor counts them again.
        let stats = state.ingest_page(&target, &db, fetched(), 2_000).unwrap();
        assert!(stats.refused.is_empty());
        assert_eq!(stats.appended, 1);
    }

    #[test]
    fn a_page_is_one_append_and_its_new_series_are_known_on_the_next_page() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(tsdb::Options::new(dir.path())).unwrap();
        let rt = runtime("scrape_configs:\n- job_name: j\n  static_configs: [{targets: ['h:1']}]\n");
        let target = resolve_target(&rt, &rt.job.static_groups[0], "h:1").unwrap();
        let page = |body: String| Fetched { body: body.into_bytes(), format: crate::exposition::Format::Text };
        let mut state = TargetState { scrapes: 1, ..TargetState::default() };
        // `a` twice (one series, the repeat refused), and `c` over the store's label length rule:
        // dropped alone, the rest of the page stored.
        let too_long = "x".repeat(tsdb::MAX_LABEL_BYTES + 1);
        let first = format!("a 1\nb{{x=\"1\"}} 2\na 3\nc{{v=\"{too_long}\"}} 4\n");
        let stats = state.ingest_page(&target, &db, page(first), 1_000).unwrap();
        assert_eq!((stats.scraped, stats.post_relabel, stats.series_added, stats.appended), (4, 3, 2, 2));
        assert_eq!(stats.rejected, vec![("duplicate_timestamp", 1)]);
        assert_eq!(db.stats().series, 2);
        let known: Vec<Option<SeriesId>> = (0..4).map(|i| state.layout.ids[i]).collect();
        assert!(known[..3].iter().all(Option::is_some));
        assert_eq!(known[0], known[2], "a is one series");
        assert_eq!(known[3], None, "c is remembered as dropped");

        state.scrapes = 2;
        let stats = state.ingest_page(&target, &db, page("a 5\nb{x=\"1\"} 6\n".into()), 2_000).unwrap();
        assert_eq!((stats.series_added, stats.appended), (0, 2));
        assert_eq!(db.stats().series, 2);
        assert_eq!(state.previous.len(), 2);
    }

    #[test]
    fn only_a_small_page_much_like_the_stored_one_is_processed_inline() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(tsdb::Options::new(dir.path())).unwrap();
        let rt = runtime("scrape_configs:\n- job_name: j\n  static_configs: [{targets: ['h:1']}]\n");
        let target = resolve_target(&rt, &rt.job.static_groups[0], "h:1").unwrap();
        // Pages of `bytes` or a little more, in lines of about `line` bytes.
        let page = |bytes: usize, line: usize| {
            let (mut body, mut i) = (String::new(), 0);
            while body.len() < bytes {
                let text = format!("m{{i=\"{i}\"}} 1");
                body.push_str(&format!("{text:<0$}\n", line.max(text.len() + 1) - 1));
                i += 1;
            }
            Ok(Fetched { body: body.into_bytes(), format: crate::exposition::Format::Text })
        };
        let store = |state: &mut TargetState, fetched: Result<Fetched, String>, ts_ms: i64| {
            let fetched = fetched.unwrap();
            let series = state.ingest_page(&target, &db, fetched, ts_ms).unwrap().scraped;
            assert_eq!(series as usize, state.layout.series.len());
            series
        };
        let failed = || -> Result<Fetched, String> { Err("connection refused".into()) };
        let mut state = TargetState::default();
        assert!(!state.processes_inline(&page(100, 100)), "a first page creates its series: blocking pool");
        assert!(state.processes_inline(&failed()), "nothing to mark stale");

        assert_eq!(store(&mut state, page(40_000, 100), 1_000), 400);
        assert!(state.processes_inline(&page(40_000, 100)));
        assert!(state.processes_inline(&page(INLINE_PAGE_BYTES - 100, 100)));
        assert!(!state.processes_inline(&page(INLINE_PAGE_BYTES + 1, 100)));
        assert!(state.processes_inline(&failed()));

        store(&mut state, page(1_000, 100), 2_000);
        assert!(state.processes_inline(&page(2_000, 100)));
        assert!(!state.processes_inline(&page(2_100, 100)), "more than twice the previous page");

        // Many short series: small pages, but more series than inline processing takes.
        assert!(store(&mut state, page(20_000, 16), 3_000) > INLINE_PAGE_SERIES as u64);
        assert!(!state.processes_inline(&page(20_000, 16)));
        assert!(!state.processes_inline(&failed()), "staleness markers for every one of them");
        store(&mut state, page(100, 100), 4_000);
        assert!(state.processes_inline(&page(100, 100)));
    }

    #[test]
    fn a_page_mostly_of_help_text_keeps_only_its_series_texts() {
        let help = format!("# HELP m {}\n", "h".repeat(10_000));
        let body = format!("{help}m{{a=\"1\"}} 1\n{help}m{{a=\"2\"}} 2\n");
        let ids = vec![Some(SeriesId(1)), None];
        let first = help.len();
        let second = body.rfind("m{").unwrap();
        let layout = PageLayout::new(body.clone(), vec![first..first + 8, second..second + 8], ids.clone());
        assert_eq!(layout.page_bytes, body.len());
        assert_eq!(layout.body, "m{a=\"1\"}m{a=\"2\"}");
        assert_eq!((layout.text(0), layout.text(1)), (Some("m{a=\"1\"}"), Some("m{a=\"2\"}")));
        assert_eq!(layout.resolved_at(1, "m{a=\"2\"}"), Some(None));
        // A page of mostly series is kept as it is.
        let plain = "m{a=\"1\"} 1\n".to_string();
        let layout = PageLayout::new(plain.clone(), std::iter::once(0..8).collect(), vec![Some(SeriesId(1))]);
        assert_eq!(
            (layout.body.as_str(), layout.resolved_at(0, "m{a=\"1\"}")),
            (plain.as_str(), Some(Some(SeriesId(1))))
        );
    }

    #[test]
    fn a_page_in_another_order_or_with_a_line_inserted_keeps_every_series_and_drop() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(tsdb::Options::new(dir.path())).unwrap();
        let rt = runtime(
            "scrape_configs:\n- job_name: j\n  static_configs: [{targets: ['h:1']}]\n  metric_relabel_configs:\n  - {source_labels: [__name__], regex: dropped, action: drop}\n",
        );
        let target = resolve_target(&rt, &rt.job.static_groups[0], "h:1").unwrap();
        let page = |lines: &[&str]| Fetched {
            body: lines.iter().map(|line| format!("{line} 1\n")).collect::<String>().into_bytes(),
            format: crate::exposition::Format::Text,
        };
        let ids = |state: &TargetState| -> HashMap<String, Option<SeriesId>> {
            (0..state.layout.series.len())
                .map(|i| (state.layout.text(i).unwrap().to_string(), state.layout.ids[i]))
                .collect()
        };
        let mut state = TargetState::default();
        let scrape = |state: &mut TargetState, lines: &[&str]| {
            state.scrapes += 1;
            let ts = state.scrapes as i64 * 1_000;
            state.ingest_page(&target, &db, page(lines), ts).unwrap()
        };
        let first = ["a{x=\"1\"}", "a{x=\"2\"}", "dropped", "b"];
        let stats = scrape(&mut state, &first);
        assert_eq!((stats.post_relabel, stats.series_added, db.stats().series), (3, 3, 3));
        let first_ids = ids(&state);
        assert_eq!(first_ids["dropped"], None);
        // The same page again, found by place.
        for _ in 0..3 {
            let stats = scrape(&mut state, &first);
            assert_eq!((stats.post_relabel, stats.series_added, stats.appended), (3, 0, 3));
            assert_eq!(ids(&state), first_ids);
        }
        // Reordered, with a series inserted: the known ones resolve to the same ids by text.
        let reordered = ["b", "a{x=\"2\"}", "new", "dropped", "a{x=\"1\"}"];
        let stats = scrape(&mut state, &reordered);
        assert_eq!((stats.post_relabel, stats.series_added, stats.appended), (4, 1, 4));
        assert_eq!(db.stats().series, 4);
        let now = ids(&state);
        for (series, id) in &first_ids {
            assert_eq!(now[series], *id, "{series}");
        }
        assert!(now["new"].is_some());
        // Back to the first order: nothing new, nothing stale.
        let stats = scrape(&mut state, &first);
        assert_eq!((stats.post_relabel, stats.series_added, stats.appended), (3, 0, 3));
        assert_eq!(db.stats().series, 4);
    }
}
