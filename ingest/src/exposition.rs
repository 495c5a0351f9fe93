//! `exposition` is the parser for scrape pages: the Prometheus text format 0.0.4 and OpenMetrics
//! 1.0 text, written with small nom functions.
//!
//! A page parses into a [`ParsedPage`]: the samples in page order, each with the raw text of its
//! name and label set (`series`, the scraper's cache key: a series seen before is not re-parsed or
//! re-relabeled), its labels as `Cow` slices (borrowed unless a value holds an escape), the value
//! and an optional timestamp. Labels of all samples share one vector, so a page costs a handful of
//! allocations, not one per sample. Exemplars are parsed and dropped; `_created`, `_bucket`,
//! `_sum`, `_count` are ordinary samples, as Prometheus 2.x stores them.
//!
//! [`parse_skipping_known`] leaves out the labels of series the caller already knows by their raw
//! text ([`KnownSeries`]): a line that starts with the text the caller expects at its place (a
//! scraper's previous page, usually in the same order) is only compared with it; any other line's
//! label set is found by a quote-aware byte scan and looked up. A raw text is only ever known
//! because the full parse accepted the same text before, so skipping it loses no error.
//!
//! The small pieces every line goes through (names, blanks, value tokens) are byte loops with
//! nom's signature; the rest is composed with nom. Errors carry the 1-based line and byte column
//! and what was expected there.

use crate::error::ParseError;
use nom::branch::alt;
use nom::bytes::complete::tag;
use nom::character::complete::char;
use nom::combinator::opt;
use nom::error::{context, ErrorKind, VerboseError, VerboseErrorKind};
use nom::sequence::pair;
use nom::IResult;
use std::borrow::Cow;
use std::ops::Range;

/// The `Accept` header a scraper sends: OpenMetrics preferred, text 0.0.4 next (Prometheus' order).
pub const SCRAPE_ACCEPT_HEADER: &str =
    "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Which exposition format a page is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Text,
    /// OpenMetrics 1.0 text (`application/openmetrics-text`): float-second timestamps, `# EOF`.
    OpenMetrics,
}

impl Format {
    /// The format a response's Content-Type announces; anything not OpenMetrics is read as text,
    /// as Prometheus does.
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        match content_type {
            Some(ct) if ct.trim_start().to_ascii_lowercase().starts_with("application/openmetrics-text") => {
                Format::OpenMetrics
            }
            _ => Format::Text,
        }
    }
}

/// A metric family's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Untyped,
}

impl MetricType {
    fn parse(word: &str) -> Option<MetricType> {
        Some(match word {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "untyped" | "unknown" => MetricType::Untyped,
            _ => return None,
        })
    }
}

/// `# TYPE`, `# HELP` and `# UNIT` lines, as declared (help text kept raw, escapes included).
#[derive(Debug, Clone, PartialEq)]
pub struct Family<'a> {
    pub name: &'a str,
    pub kind: Option<MetricType>,
    pub help: Option<&'a str>,
    pub unit: Option<&'a str>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleLine<'a> {
    /// The raw `name{labels}` text, identical for identical lines: a cache key.
    pub series: &'a str,
    /// Where its labels are in the page's label vector; `None` when the caller knew the series.
    labels: Option<Range<u32>>,
    /// The series is the text [`KnownSeries::expected`] gave for this line's place.
    pub at_expected_place: bool,
    pub value: f64,
    /// Milliseconds since the epoch, when the line has a timestamp.
    pub ts_ms: Option<i64>,
}

impl<'a> SampleLine<'a> {
    /// The metric name: the series text up to its labels (found when asked, as only lines of
    /// new series need it).
    pub fn name(&self) -> &'a str {
        let series = self.series;
        &series[..series.find('{').unwrap_or(series.len())]
    }
}

/// A parsed page; see the module doc.
#[derive(Debug, Default)]
pub struct ParsedPage<'a> {
    samples: Vec<SampleLine<'a>>,
    labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    families: Vec<Family<'a>>,
}

impl<'a> ParsedPage<'a> {
    pub fn samples(&self) -> &[SampleLine<'a>] {
        &self.samples
    }

    /// The labels of `sample` (without `__name__`), in page order; `None` for a sample whose series
    /// [`parse_skipping_known`]'s caller knew (never for [`parse`]).
    pub fn labels(&self, sample: &SampleLine<'a>) -> Option<&[(Cow<'a, str>, Cow<'a, str>)]> {
        let range = sample.labels.as_ref()?;
        self.labels.get(range.start as usize..range.end as usize)
    }

    /// Families declared with `# TYPE`/`# HELP`/`# UNIT`, in first-mention order.
    pub fn families(&self) -> &[Family<'a>] {
        &self.families
    }

    fn family_mut(&mut self, name: &'a str) -> &mut Family<'a> {
        let index = match self.families.iter().rposition(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family { name, kind: None, help: None, unit: None });
                self.families.len() - 1
            }
        };
        &mut self.families[index]
    }
}

type Res<'a, T> = IResult<&'a str, T, VerboseError<&'a str>>;

/// Series texts a caller already knows (a scraper's cache), whose labels
/// [`parse_skipping_known`] leaves out. Both methods must only name raw `name{labels}` texts this
/// parser accepted before: those are not checked again.
pub trait KnownSeries {
    /// The series text sample line `index` (0-based, in page order) is expected to start with, if
    /// any: taken when the line starts with it followed by a blank.
    fn expected(&self, index: usize) -> Option<&str>;
    /// Whether `series`, a line's series text found by scanning, is known.
    fn contains(&self, series: &str) -> bool;
}

/// Nothing known: every label set is parsed.
struct NothingKnown;

impl KnownSeries for NothingKnown {
    fn expected(&self, _index: usize) -> Option<&str> {
        None
    }

    fn contains(&self, _series: &str) -> bool {
        false
    }
}

/// Parses a whole page.
pub fn parse(text: &str, format: Format) -> Result<ParsedPage<'_>, ParseError> {
    parse_skipping_known(text, format, &NothingKnown)
}

/// Parses a whole page, but leaves out the labels of samples whose raw `name{labels}` text `known`
/// knows (their [`ParsedPage::labels`] is `None`).
pub fn parse_skipping_known<'a>(
    text: &'a str,
    format: Format,
    known: &impl KnownSeries,
) -> Result<ParsedPage<'a>, ParseError> {
    let mut page = ParsedPage::default();
    let mut saw_eof = false;
    let mut line_no = 0;
    let mut rest = text;
    while !rest.is_empty() {
        line_no += 1;
        let (line, next) = match rest.find('\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        rest = next;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if saw_eof {
            return Err(error_at(line_no, 1, "nothing after # EOF"));
        }
        let body = match format {
            Format::Text => line.trim_start_matches([' ', '\t']),
            Format::OpenMetrics => line,
        };
        if body.is_empty() {
            if format == Format::OpenMetrics {
                return Err(error_at(line_no, 1, "empty line (not allowed in OpenMetrics)"));
            }
            continue;
        }
        let column_base = line.len() - body.len();
        let result = if body.starts_with('#') {
            comment_line(body, format, &mut page).map(|eof| saw_eof = eof)
        } else {
            sample_line(body, format, &mut page, known)
        };
        if let Err(failure) = result {
            return Err(to_parse_error(failure, body, line_no, column_base));
        }
    }
    if format == Format::OpenMetrics && !saw_eof {
        return Err(error_at(line_no.max(1), 1, "missing # EOF at the end of an OpenMetrics page"));
    }
    Ok(page)
}

fn error_at(line: usize, column: usize, message: &str) -> ParseError {
    ParseError { line, column, message: message.to_string() }
}

/// Turns a nom failure into line/column and the innermost `context` that failed.
fn to_parse_error(failure: nom::Err<VerboseError<&str>>, line: &str, line_no: usize, column_base: usize) -> ParseError {
    let errors = match failure {
        nom::Err::Error(e) | nom::Err::Failure(e) => e.errors,
        nom::Err::Incomplete(_) => Vec::new(),
    };
    let remaining = errors.first().map(|(input, _)| input.len()).unwrap_or(0);
    let expected = errors
        .iter()
        .find_map(|(_, kind)| match kind {
            VerboseErrorKind::Context(ctx) => Some(*ctx),
            _ => None,
        })
        .unwrap_or("valid syntax");
    let column = column_base + line.len().saturating_sub(remaining) + 1;
    ParseError { line: line_no, column, message: format!("expected {expected}") }
}

/// Consumes a comment line: `# HELP`, `# TYPE`, `# UNIT`, `# EOF` or free text. Returns whether it
/// was `# EOF`.
fn comment_line<'a>(
    line: &'a str,
    format: Format,
    page: &mut ParsedPage<'a>,
) -> Result<bool, nom::Err<VerboseError<&'a str>>> {
    let (rest, _) = pair(char('#'), space0)(line)?;
    if format == Format::OpenMetrics && rest == "EOF" {
        return Ok(true);
    }
    let keyword: Res<&str> = alt((tag("HELP"), tag("TYPE"), tag("UNIT")))(rest);
    let Ok((rest, keyword)) = keyword else {
        return Ok(false);
    };
    let Ok((rest, _)) = space1(rest) else {
        return Ok(false);
    };
    let (rest, name) = context("metric name", metric_name)(rest)?;
    let (text, _) = space0(rest)?;
    match keyword {
        "TYPE" => {
            let Some(kind) = MetricType::parse(text.trim_end()) else {
                return Err(nom::Err::Failure(VerboseError {
                    errors: vec![(
                        text,
                        VerboseErrorKind::Context("a metric type (counter, gauge, histogram, summary, untyped, …)"),
                    )],
                }));
            };
            page.family_mut(name).kind = Some(kind);
        }
        "HELP" => page.family_mut(name).help = Some(text),
        _ => page.family_mut(name).unit = Some(text.trim_end()),
    }
    Ok(false)
}

/// Consumes one sample line: `name{labels} value [timestamp] [# {exemplar labels} value [ts]]`.
fn sample_line<'a>(
    line: &'a str,
    format: Format,
    page: &mut ParsedPage<'a>,
    known: &impl KnownSeries,
) -> Result<(), nom::Err<VerboseError<&'a str>>> {
    let at_expected_place = expected_series(line, known.expected(page.samples.len()));
    let (series, labels) = match at_expected_place {
        Some(series) => (series, None),
        None => {
            let (after_name, name) = context("metric name", metric_name)(line)?;
            let scanned = label_set_end(after_name).map(|end| &line[..name.len() + end]);
            match scanned {
                Some(series) if known.contains(series) => (series, None),
                _ => {
                    let labels_start = page.labels.len() as u32;
                    let rest =
                        if after_name.starts_with('{') { label_set(after_name, &mut page.labels)? } else { after_name };
                    (&line[..line.len() - rest.len()], Some(labels_start..page.labels.len() as u32))
                }
            }
        }
    };
    let at_expected_place = at_expected_place.is_some();
    let rest = &line[series.len()..];
    let (rest, _) = context("space before the value", space1)(rest)?;
    let (rest, value) = context("a sample value (float, NaN, +Inf, -Inf)", float_value)(rest)?;
    if space0(rest)?.0.is_empty() {
        // The usual line ends here: no timestamp or exemplar to try (and no error to build).
        page.samples.push(SampleLine { series, labels, at_expected_place, value, ts_ms: None });
        return Ok(());
    }
    let (rest, ts_ms) = opt(|i| timestamp(i, format))(rest)?;
    let (rest, _) = opt(exemplar)(rest)?;
    let (rest, _) = space0(rest)?;
    if !rest.is_empty() {
        return Err(nom::Err::Failure(VerboseError {
            errors: vec![(rest, VerboseErrorKind::Context("end of line after the value and timestamp"))],
        }));
    }
    page.samples.push(SampleLine { series, labels, at_expected_place, value, ts_ms });
    Ok(())
}

/// `line`'s own prefix equal to `expected`, when `line` starts with it followed by a blank. A text
/// the parser accepted as a series, followed by a blank, is this line's series too: the name ends
/// where it did, and the label set at the same `}`.
fn expected_series<'a>(line: &'a str, expected: Option<&str>) -> Option<&'a str> {
    let expected = expected?;
    let followed_by_blank = matches!(line.as_bytes().get(expected.len()), Some(b' ' | b'\t'));
    // A blank is ASCII, so `expected.len()` is a char boundary of `line`.
    (followed_by_blank && line.as_bytes().starts_with(expected.as_bytes())).then(|| &line[..expected.len()])
}

/// Where the label set at the start of `input` ends (just past its `}`; 0 when `input` does not
/// start with `{`): the first `}` outside a quoted value, where a backslash in a value escapes the
/// next byte. For a label set [`label_set`] accepts, this is where it stops. `None` when no `}`
/// closes it.
fn label_set_end(input: &str) -> Option<usize> {
    let bytes = input.as_bytes();
    if bytes.first() != Some(&b'{') {
        return Some(0);
    }
    let mut in_quotes = false;
    let mut i = 1;
    while let Some(&b) = bytes.get(i) {
        match (in_quotes, b) {
            (true, b'\\') => i += 1,
            (true, b'"') => in_quotes = false,
            (false, b'"') => in_quotes = true,
            (false, b'}') => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// A recoverable nom error of `kind` at `input` (an `alt` or `opt` may try something else).
fn nom_error<T>(input: &str, kind: ErrorKind) -> Res<'_, T> {
    Err(nom::Err::Error(VerboseError { errors: vec![(input, VerboseErrorKind::Nom(kind))] }))
}

/// Consumes a byte satisfying `first`, then every following byte satisfying `rest`.
fn identifier(input: &str, first: impl Fn(u8) -> bool, rest: impl Fn(u8) -> bool) -> Res<'_, &str> {
    let bytes = input.as_bytes();
    match bytes.first() {
        Some(&b) if first(b) => {
            let len = 1 + bytes[1..].iter().take_while(|b| rest(**b)).count();
            // Both predicates only accept ASCII, so `len` is a char boundary.
            Ok((&input[len..], &input[..len]))
        }
        _ => nom_error(input, ErrorKind::Satisfy),
    }
}

/// Consumes a metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn metric_name(input: &str) -> Res<'_, &str> {
    identifier(
        input,
        |b| b.is_ascii_alphabetic() || b == b'_' || b == b':',
        |b| b.is_ascii_alphanumeric() || b == b'_' || b == b':',
    )
}

/// Consumes a label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn label_name(input: &str) -> Res<'_, &str> {
    identifier(input, |b| b.is_ascii_alphabetic() || b == b'_', |b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The number of blanks (spaces and tabs) `input` starts with.
fn blanks(input: &str) -> usize {
    input.bytes().take_while(|b| *b == b' ' || *b == b'\t').count()
}

/// Consumes any blanks (spaces and tabs).
fn space0(input: &str) -> Res<'_, &str> {
    let len = blanks(input);
    Ok((&input[len..], &input[..len]))
}

/// Consumes one or more blanks (spaces and tabs).
fn space1(input: &str) -> Res<'_, &str> {
    match blanks(input) {
        0 => nom_error(input, ErrorKind::Space),
        len => Ok((&input[len..], &input[..len])),
    }
}

/// Consumes a token: the bytes up to ASCII whitespace or the end, at least one.
fn value_token(input: &str) -> Res<'_, &str> {
    match input.bytes().position(|b| b.is_ascii_whitespace()).unwrap_or(input.len()) {
        0 => nom_error(input, ErrorKind::TakeWhile1),
        // ASCII whitespace starts a char, so `len` is a char boundary.
        len => Ok((&input[len..], &input[..len])),
    }
}

/// Consumes a quoted label value with the escapes `\\`, `\"` and `\n`; borrows unless it has one.
fn label_value(input: &str) -> Res<'_, Cow<'_, str>> {
    let (body, _) = context("'\"' opening the label value", char('"'))(input)?;
    let bytes = body.as_bytes();
    let mut i = 0;
    let mut owned: Option<String> = None;
    let mut copied_to = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let value = match owned {
                    Some(mut s) => {
                        s.push_str(&body[copied_to..i]);
                        Cow::Owned(s)
                    }
                    None => Cow::Borrowed(&body[..i]),
                };
                return Ok((&body[i + 1..], value));
            }
            b'\\' => {
                let replacement = match bytes.get(i + 1) {
                    Some(b'\\') => '\\',
                    Some(b'"') => '"',
                    Some(b'n') => '\n',
                    _ => {
                        return Err(nom::Err::Failure(VerboseError {
                            errors: vec![(
                                &body[i..],
                                VerboseErrorKind::Context("an escape sequence: \\\\, \\\" or \\n"),
                            )],
                        }))
                    }
                };
                let s = owned.get_or_insert_with(String::new);
                s.push_str(&body[copied_to..i]);
                s.push(replacement);
                i += 2;
                copied_to = i;
            }
            _ => i += 1,
        }
    }
    Err(nom::Err::Failure(VerboseError {
        errors: vec![(&body[body.len()..], VerboseErrorKind::Context("'\"' closing the label value"))],
    }))
}

/// Consumes `{name="value", …}` (a trailing comma allowed), pushing the pairs onto `out`.
fn label_set<'a>(
    input: &'a str,
    out: &mut Vec<(Cow<'a, str>, Cow<'a, str>)>,
) -> Result<&'a str, nom::Err<VerboseError<&'a str>>> {
    let (mut rest, _) = pair(char('{'), space0)(input)?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let (after, name) = context("a label name or '}'", label_name)(rest).map_err(to_failure)?;
        let (after, _) = context("'=' after the label name", |i| {
            let (i, _) = space0(i)?;
            let (i, c) = char('=')(i)?;
            let (i, _) = space0(i)?;
            Ok((i, c))
        })(after)
        .map_err(to_failure)?;
        let (after, value) = label_value(after).map_err(to_failure)?;
        out.push((Cow::Borrowed(name), value));
        let (after, _) = space0(after)?;
        rest = match after.strip_prefix(',') {
            Some(after) => space0(after)?.0,
            None => {
                let (after, _) = context("',' or '}' after a label", char('}'))(after).map_err(to_failure)?;
                return Ok(after);
            }
        };
    }
}

fn to_failure<E>(e: nom::Err<E>) -> nom::Err<E> {
    match e {
        nom::Err::Error(e) => nom::Err::Failure(e),
        other => other,
    }
}

/// Consumes a float: decimal or exponent notation, `NaN`, `+Inf`, `-Inf` (any case, as Go's
/// `ParseFloat` accepts).
fn float_value(input: &str) -> Res<'_, f64> {
    let (rest, token) = value_token(input)?;
    match token.parse::<f64>() {
        Ok(v) => Ok((rest, v)),
        Err(_) => Err(nom::Err::Failure(VerboseError { errors: vec![(input, VerboseErrorKind::Context("a float"))] })),
    }
}

/// Consumes ` timestamp`: integer milliseconds (text) or float seconds (OpenMetrics).
fn timestamp(input: &str, format: Format) -> Res<'_, i64> {
    let (after_space, _) = space1(input)?;
    if after_space.starts_with('#') || after_space.is_empty() {
        return Err(nom::Err::Error(VerboseError { errors: vec![(input, VerboseErrorKind::Context("timestamp"))] }));
    }
    let (rest, token) = value_token(after_space)?;
    let fail =
        || nom::Err::Failure(VerboseError { errors: vec![(after_space, VerboseErrorKind::Context("a timestamp"))] });
    let ts_ms = match format {
        Format::Text => token.parse::<i64>().map_err(|_| fail())?,
        Format::OpenMetrics => {
            let seconds = token.parse::<f64>().map_err(|_| fail())?;
            if !seconds.is_finite() {
                return Err(fail());
            }
            (seconds * 1000.0) as i64
        }
    };
    Ok((rest, ts_ms))
}

/// Consumes ` # {labels} value [timestamp]`, an exemplar, and drops it.
fn exemplar(input: &str) -> Res<'_, ()> {
    let (rest, _) = pair(space1, char('#'))(input)?;
    let (rest, _) = space1(rest)?;
    let mut scratch = Vec::new();
    let rest = label_set(rest, &mut scratch)?;
    let (rest, _) = space1(rest)?;
    let (rest, _) = context("the exemplar value", float_value)(rest)?;
    let (rest, _) = opt(|i| timestamp(i, Format::OpenMetrics))(rest)?;
    Ok((rest, ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels_of(page: &ParsedPage<'_>, i: usize) -> Vec<(String, String)> {
        page.labels(&page.samples()[i]).unwrap().iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn text_format_with_everything() {
        let text = "# HELP http_requests_total The total.\n\
                    # TYPE http_requests_total counter\n\
                    http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                    http_requests_total{method=\"post\",code=\"400\",}    3 1395066363000\n\
                    \n\
                    msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
                    # A normal comment.\n\
                    metric_without_timestamp_and_labels 12.47\n\
                    something_weird{problem=\"division by zero\"} +Inf -3982045\n\
                    nan_metric NaN\n\
                    neg -Inf\n\
                    # TYPE rpc_duration_seconds summary\n\
                    rpc_duration_seconds{quantile=\"0.5\"} 4773\n\
                    rpc_duration_seconds_sum 1.7560473e+07\n\
                    rpc_duration_seconds_count 2693\n";
        let page = parse(text, Format::Text).unwrap();
        let s = page.samples();
        assert_eq!(s.len(), 10);
        assert_eq!(s[0].name(), "http_requests_total");
        assert_eq!(s[0].series, "http_requests_total{method=\"post\",code=\"200\"}");
        assert_eq!(s[0].ts_ms, Some(1395066363000));
        assert_eq!(labels_of(&page, 1), vec![("method".into(), "post".into()), ("code".into(), "400".into())]);
        assert_eq!(labels_of(&page, 2)[0].1, "C:\\DIR\\FILE.TXT");
        assert_eq!(labels_of(&page, 2)[1].1, "Cannot find file:\n\"FILE.TXT\"");
        assert_eq!(s[3].ts_ms, None);
        assert_eq!((s[4].value, s[4].ts_ms), (f64::INFINITY, Some(-3982045)));
        assert!(s[5].value.is_nan());
        assert_eq!(s[6].value, f64::NEG_INFINITY);
        assert_eq!(page.families()[0].kind, Some(MetricType::Counter));
        assert_eq!(page.families()[0].help, Some("The total."));
    }

    #[test]
    fn openmetrics_with_exemplars_units_created_and_eof() {
        let text = "# TYPE foo histogram\n\
                    # UNIT foo seconds\n\
                    foo_bucket{le=\"0.1\"} 8 # {trace_id=\"abc\"} 0.05 1520879607.789\n\
                    foo_bucket{le=\"+Inf\"} 17\n\
                    foo_count 17 1520879607.789\n\
                    foo_sum 324789.3\n\
                    foo_created 1520430000.123\n\
                    # EOF\n";
        let page = parse(text, Format::OpenMetrics).unwrap();
        assert_eq!(page.samples().len(), 5);
        assert_eq!(page.samples()[2].ts_ms, Some(1520879607789));
        assert_eq!(labels_of(&page, 1), vec![("le".into(), "+Inf".into())]);
        assert_eq!(page.families()[0].unit, Some("seconds"));
    }

    #[test]
    fn openmetrics_requires_eof_and_nothing_after() {
        let missing = parse("a 1\n", Format::OpenMetrics).unwrap_err();
        assert!(missing.message.contains("# EOF"), "{missing}");
        let after = parse("a 1\n# EOF\nb 2\n", Format::OpenMetrics).unwrap_err();
        assert_eq!(after.line, 3);
    }

    #[test]
    fn broken_escaping_reports_line_and_column() {
        let err = parse("ok 1\nbad{a=\"x\\qy\"} 1\n", Format::Text).unwrap_err();
        assert_eq!((err.line, err.column), (2, 9), "{err}");
        assert!(err.message.contains("escape"), "{err}");

        let err = parse("bad{a=\"unterminated} 1\n", Format::Text).unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("closing"), "{err}");

        let err = parse("m{a=\"1\"} one\n", Format::Text).unwrap_err();
        assert_eq!((err.line, err.column), (1, 10), "{err}");
    }

    #[test]
    fn other_malformed_lines() {
        for (text, expected) in [
            ("9metric 1\n", "metric name"),
            ("m{1a=\"x\"} 1\n", "label name"),
            ("m{a \"x\"} 1\n", "'='"),
            ("m{a=\"x\" b=\"y\"} 1\n", "','"),
            ("m 1 notatimestamp\n", "timestamp"),
            ("m\n", "space before the value"),
            ("# TYPE m bogus\n", "metric type"),
        ] {
            let err = parse(text, Format::Text).unwrap_err();
            assert!(err.message.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn content_type_selects_format() {
        assert_eq!(
            Format::from_content_type(Some("application/openmetrics-text; version=1.0.0; charset=utf-8")),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_content_type(Some("text/plain; version=0.0.4")), Format::Text);
        assert_eq!(Format::from_content_type(None), Format::Text);
    }

    #[test]
    fn known_series_keep_their_text_value_and_timestamp_but_not_their_labels() {
        let text = "a{x=\"1\"} 1 10\na{x=\"}\\\"\"} 2\nb 3\n";
        let full = parse(text, Format::Text).unwrap();
        // Line 1 is known by its place, line 2 by a lookup; line 0's expected text is another's.
        let known = TestKnown {
            expected: vec![Some("b".to_string()), Some(full.samples()[1].series.to_string())],
            set: ["b".to_string()].into(),
        };
        let skipped = parse_skipping_known(text, Format::Text, &known).unwrap();
        assert_eq!(skipped.samples()[1].series, "a{x=\"}\\\"\"}");
        for (i, (a, b)) in full.samples().iter().zip(skipped.samples()).enumerate() {
            assert_eq!((a.series, a.name(), a.value, a.ts_ms), (b.series, b.name(), b.value, b.ts_ms), "sample {i}");
        }
        assert_eq!(labels_of(&skipped, 0), vec![("x".to_string(), "1".to_string())]);
        assert_eq!(skipped.labels(&skipped.samples()[1]), None);
        assert_eq!(skipped.labels(&skipped.samples()[2]), None);
        let at_place: Vec<bool> = skipped.samples().iter().map(|s| s.at_expected_place).collect();
        assert_eq!(at_place, [false, true, false], "only line 1 is its expected text");
    }

    /// Known series for tests: expected texts by line, and a set.
    struct TestKnown {
        expected: Vec<Option<String>>,
        set: std::collections::HashSet<String>,
    }

    impl KnownSeries for TestKnown {
        fn expected(&self, index: usize) -> Option<&str> {
            self.expected.get(index)?.as_deref()
        }

        fn contains(&self, series: &str) -> bool {
            self.set.contains(series)
        }
    }

    /// One sample line from generated parts: blanks, label values with escapes, a timestamp.
    fn sample_text(
        name: &str,
        labels: &[(String, String)],
        blank: &str,
        comma: bool,
        value: f64,
        ts: Option<i64>,
    ) -> String {
        let mut line = name.to_string();
        if !labels.is_empty() || comma {
            line.push('{');
            for (i, (n, v)) in labels.iter().enumerate() {
                let escaped = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let sep = if i + 1 < labels.len() || comma { "," } else { "" };
                line.push_str(&format!("{blank}{n}{blank}={blank}\"{escaped}\"{blank}{sep}"));
            }
            line.push('}');
        }
        line.push_str(&format!("{blank} {value}"));
        if let Some(ts) = ts {
            line.push_str(&format!(" {ts}"));
        }
        line
    }

    proptest::proptest! {
        #[test]
        fn skipping_known_series_changes_nothing_but_their_labels(
            lines in proptest::collection::vec(
                (
                    "[a-z_:][a-z0-9_:]{0,8}",
                    proptest::collection::vec(("[a-z_][a-z0-9_]{0,5}", "[ -~\n{}\\\\\"]{0,12}"), 0..4),
                    "[ \t]{0,2}",
                    proptest::bool::ANY,
                    -1e9f64..1e9,
                    proptest::option::of(proptest::num::i64::ANY),
                    0..4u8,
                ),
                1..20,
            ),
        ) {
            let text: String = lines
                .iter()
                .map(|(name, labels, blank, comma, value, ts, _)| sample_text(name, labels, blank, *comma, *value, *ts) + "\n")
                .collect();
            let full = parse(&text, Format::Text).unwrap();
            proptest::prop_assert_eq!(full.samples().len(), lines.len());
            // Each line is unknown (0), known by lookup (1), expected at its place (2), or expected
            // to be the next line's series (3: taken only if the texts are equal).
            let series: Vec<&str> = full.samples().iter().map(|sample| sample.series).collect();
            let known = TestKnown {
                expected: lines
                    .iter()
                    .enumerate()
                    .map(|(i, line)| match line.6 {
                        2 => Some(series[i].to_string()),
                        3 => Some(series[(i + 1) % series.len()].to_string()),
                        _ => None,
                    })
                    .collect(),
                set: lines.iter().zip(&series).filter(|(line, _)| line.6 == 1).map(|(_, s)| s.to_string()).collect(),
            };
            let skipped = parse_skipping_known(&text, Format::Text, &known).unwrap();
            for (i, (a, b)) in full.samples().iter().zip(skipped.samples()).enumerate() {
                proptest::prop_assert_eq!((a.series, a.name(), a.ts_ms), (b.series, b.name(), b.ts_ms), "line {}", i);
                proptest::prop_assert_eq!(a.value.to_bits(), b.value.to_bits(), "line {}", i);
                let is_known = known.set.contains(a.series) || known.expected(i) == Some(a.series);
                let expected = if is_known { None } else { full.labels(a) };
                proptest::prop_assert_eq!(skipped.labels(b), expected, "line {}", i);
                let generated: Vec<(&str, &str)> = lines[i].1.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                let parsed: Vec<(&str, &str)> = full.labels(a).unwrap().iter().map(|(n, v)| (n.as_ref(), v.as_ref())).collect();
                proptest::prop_assert_eq!(parsed, generated, "line {}", i);
            }
        }

        #[test]
        fn the_label_set_scan_stops_where_the_label_set_parser_does(
            text in proptest::prop_oneof![
                r#"\{( ?[a-z]{1,3} ?= ?"([a-z}{ ]|\\[\\"n])*" ?,)* ?([a-z]{1,3} ?= ?"([a-z}{ ]|\\[\\"n])*" ?)?\}[a-z}" ]{0,5}"#,
                "\\{[a-z=\",} \\\\n]{0,40}",
            ],
        ) {
            let mut scratch = Vec::new();
            match label_set(&text, &mut scratch) {
                Ok(rest) => proptest::prop_assert_eq!(label_set_end(&text), Some(text.len() - rest.len())),
                Err(_) => proptest::prop_assume!(false, "not a label set"),
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "[a-z{}=\",# \\\\\n0-9.+-]{0,200}") {
            let _ = parse(&text, Format::Text);
            let _ = parse(&text, Format::OpenMetrics);
        }

        #[test]
        fn escaped_values_round_trip(value in "[ -~\n]{0,30}") {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let text = format!("m{{v=\"{escaped}\"}} 1\n");
            let page = parse(&text, Format::Text).unwrap();
            proptest::prop_assert_eq!(page.labels(&page.samples()[0]).unwrap()[0].1.as_ref(), value.as_str());
        }
    }
}
