//! Exposition parser throughput (MB/s and samples/s) on a synthetic node-exporter-like page:
//! HELP/TYPE comments, counters, gauges, a histogram, label values with escapes; in text 0.0.4 and
//! OpenMetrics form. `known_series` is a scraper's steady state: the same page again, every series
//! known from the previous one at its place, so no label set is parsed.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ingest::exposition::{parse, parse_skipping_known, Format, KnownSeries};
use std::fmt::Write;

/// Builds a page with `families` metric families of 20 series each, plus one histogram.
fn page(families: usize, format: Format) -> String {
    let mut text = String::new();
    for f in 0..families {
        let kind = if f % 2 == 0 { "counter" } else { "gauge" };
        let _ = writeln!(text, "# HELP node_metric_{f}_total Synthetic metric number {f}.");
        let _ = writeln!(text, "# TYPE node_metric_{f}_total {kind}");
        for s in 0..20 {
            let _ = writeln!(
                text,
                "node_metric_{f}_total{{cpu=\"{s}\",mode=\"user\",device=\"/dev/sd{s}\",path=\"C:\\\\x\\\"{s}\\\"\"}} {}.{s}e3",
                f * 7 + s
            );
        }
    }
    let _ = writeln!(text, "# TYPE http_request_duration_seconds histogram");
    for le in ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "+Inf"] {
        let _ = writeln!(text, "http_request_duration_seconds_bucket{{handler=\"/api\",le=\"{le}\"}} 42");
    }
    let _ = writeln!(text, "http_request_duration_seconds_sum{{handler=\"/api\"}} 17.5");
    let _ = writeln!(text, "http_request_duration_seconds_count{{handler=\"/api\"}} 42");
    if format == Format::OpenMetrics {
        text.push_str("# EOF\n");
    }
    text
}

fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("exposition_parse");
    for (name, format) in [("text_0_0_4", Format::Text), ("openmetrics_1_0", Format::OpenMetrics)] {
        let text = page(100, format);
        let samples = parse(&text, format).expect("page parses").samples().len();
        assert_eq!(samples, 100 * 20 + 11);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("bytes", name), &text, |b, text| {
            b.iter(|| parse(text, format).expect("page parses").samples().len())
        });
        group.throughput(Throughput::Elements(samples as u64));
        group.bench_with_input(BenchmarkId::new("samples", name), &text, |b, text| {
            b.iter(|| parse(text, format).expect("page parses").samples().len())
        });
    }
    group.finish();
}

/// The previous page's series texts, in page order (as a scraper keeps them).
struct PreviousPage {
    series: Vec<String>,
    set: std::collections::HashSet<String>,
}

impl KnownSeries for PreviousPage {
    fn expected(&self, index: usize) -> Option<&str> {
        self.series.get(index).map(String::as_str)
    }

    fn contains(&self, series: &str) -> bool {
        self.set.contains(series)
    }
}

fn bench_known_series(c: &mut Criterion) {
    let mut group = c.benchmark_group("exposition_parse_known_series");
    for (name, format) in [("text_0_0_4", Format::Text), ("openmetrics_1_0", Format::OpenMetrics)] {
        let text = page(100, format);
        let series: Vec<String> =
            parse(&text, format).expect("page parses").samples().iter().map(|s| s.series.to_string()).collect();
        let previous = PreviousPage { set: series.iter().cloned().collect(), series };
        let parsed = parse_skipping_known(&text, format, &previous).expect("page parses");
        assert!(parsed.samples().iter().all(|s| parsed.labels(s).is_none()), "every series is known");
        group.throughput(Throughput::Elements(parsed.samples().len() as u64));
        group.bench_with_input(BenchmarkId::new("samples", name), &text, |b, text| {
            b.iter(|| parse_skipping_known(text, format, &previous).expect("page parses").samples().len())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_parse, bench_known_series);
criterion_main!(benches);
