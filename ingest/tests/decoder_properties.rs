//! Property tests of the ingest decoders on hostile input: any remote-write body (valid ones
//! mutated, arbitrary bytes, bodies with a bad series), any exposition page and any scrape config
//! gets a value or an error — never a panic — and a refused remote-write request never changes
//! what the store already holds. The libFuzzer targets in `fuzz/` push the same properties to
//! millions of inputs; these run on stable in CI.

use ingest::exposition::{parse, Format};
use ingest::proto::{v1, v2};
use ingest::remote_write::{decode_request, DecodeLimits, Protocol};
use ingest::{Receiver, ScrapeConfigs};
use proptest::prelude::*;
use std::sync::Arc;

const NOW_MS: i64 = 1_764_892_800_000;

/// One series of a generated request: labels (names sorted) and `(ts_ms, value)` samples.
type Series = (Vec<(String, String)>, Vec<(i64, f64)>);

/// A label set the store accepts: a metric name and up to three more labels, names sorted.
fn valid_labels() -> impl Strategy<Value = Vec<(String, String)>> {
    ("[a-z_][a-z0-9_]{0,8}", proptest::collection::btree_map("[a-z][a-z0-9_]{0,6}", "[ -~]{1,8}", 0..4)).prop_map(
        |(name, rest)| {
            let mut labels = vec![("__name__".to_string(), name)];
            labels.extend(rest);
            labels.sort();
            labels
        },
    )
}

fn samples() -> impl Strategy<Value = Vec<(i64, f64)>> {
    proptest::collection::vec((NOW_MS - 3_600_000..NOW_MS, -1e6f64..1e6), 1..4)
}

fn v1_body(series: &[Series]) -> Vec<u8> {
    let request = v1::WriteRequest {
        timeseries: series
            .iter()
            .map(|(labels, samples)| v1::TimeSeries {
                labels: labels
                    .iter()
                    .map(|(name, value)| v1::Label { name: name.clone(), value: value.clone() })
                    .collect(),
                samples: samples.iter().map(|&(timestamp, value)| v1::Sample { value, timestamp }).collect(),
                ..Default::default()
            })
            .collect(),
        metadata: vec![],
    };
    prost::Message::encode_to_vec(&request)
}

fn v2_body(series: &[Series]) -> Vec<u8> {
    let mut symbols = vec![String::new()];
    let mut symbol = |text: &str| match symbols.iter().position(|s| s == text) {
        Some(i) => i as u32,
        None => {
            symbols.push(text.to_string());
            (symbols.len() - 1) as u32
        }
    };
    let timeseries = series
        .iter()
        .map(|(labels, samples)| v2::TimeSeries {
            labels_refs: labels.iter().flat_map(|(n, v)| [symbol(n), symbol(v)]).collect(),
            samples: samples.iter().map(|&(timestamp, value)| v2::Sample { value, timestamp }).collect(),
            ..Default::default()
        })
        .collect();
    prost::Message::encode_to_vec(&v2::Request { symbols, timeseries })
}

/// How a valid body is damaged: bytes overwritten, the tail cut, or bytes inserted.
#[derive(Debug, Clone)]
enum Damage {
    Overwrite(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Vec<Damage>> {
    let one = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Damage::Overwrite(at, byte)),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(at, bytes)| Damage::Insert(at, bytes)),
    ];
    proptest::collection::vec(one, 1..4)
}

fn apply(mut body: Vec<u8>, damage: &[Damage]) -> Vec<u8> {
    for d in damage {
        let len = body.len().max(1);
        match d {
            Damage::Overwrite(at, byte) if !body.is_empty() => body[at % len] = *byte,
            Damage::Overwrite(..) => {}
            Damage::Truncate(at) => body.truncate(at % len),
            Damage::Insert(at, bytes) => {
                let at = at % (body.len() + 1);
                body.splice(at..at, bytes.iter().copied());
            }
        }
    }
    body
}

fn snappy(body: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(body).expect("test bodies are small")
}

/// Everything the store holds: each series' labels with its samples (values by their bits).
fn contents(db: &tsdb::Db) -> Vec<(String, Vec<(i64, u64)>)> {
    let all = tsdb::Matcher::new(tsdb::MatchOp::RegexMatch, "__name__", ".+").expect("a valid regex");
    let mut out: Vec<_> = db
        .select(&[all], i64::MIN, i64::MAX)
        .expect("the store reads")
        .iter()
        .map(|s| (format!("{:?}", s.labels), s.samples().map(|x| (x.ts_ms, x.value.to_bits())).collect()))
        .collect();
    out.sort();
    out
}

fn receiver() -> (Arc<tsdb::Db>, Receiver) {
    let db = Arc::new(tsdb::Db::open(tsdb::Options::in_memory()).expect("an in-memory store opens"));
    let receiver = Receiver::new(db.clone(), DecodeLimits::default());
    (db, receiver)
}

/// A request the receiver must refuse as a whole: valid series plus one whose labels break a rule
/// of the spec or the store (names out of order, an empty or duplicate name, no metric name).
fn with_bad_series(mut series: Vec<Series>, flaw: u8) -> Vec<Series> {
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    let labels = match flaw % 4 {
        0 => vec![pair("__name__", "m"), pair("z", "1"), pair("a", "2")],
        1 => vec![pair("", "x"), pair("__name__", "m")],
        2 => vec![pair("__name__", "m"), pair("a", "1"), pair("a", "2")],
        _ => vec![pair("a", "1")],
    };
    let at = usize::from(flaw) % (series.len() + 1);
    series.insert(at, (labels, vec![(NOW_MS - 1_000, 1.0)]));
    series
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn damaged_valid_bodies_decode_or_fail_cleanly(
        series in proptest::collection::vec((valid_labels(), samples()), 1..6),
        damage in damage(),
    ) {
        for (protocol, body) in [(Protocol::V1, v1_body(&series)), (Protocol::V2, v2_body(&series))] {
            let damaged = apply(body, &damage);
            if let Ok(decoded) = decode_request(protocol, &damaged, NOW_MS, &DecodeLimits::default()) {
                for s in decoded.batch() {
                    if let Some(labels) = s.series.labels() {
                        prop_assert!(tsdb::validate_labels(labels).is_ok(), "{labels:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_as_snappy_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (_db, receiver) = receiver();
        for protocol in [Protocol::V1, Protocol::V2] {
            let _ = receiver.remote_write(protocol, &bytes, NOW_MS);
            let _ = receiver.remote_write(protocol, &snappy(&bytes), NOW_MS);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn a_refused_request_leaves_the_store_as_it_was(
        stored in proptest::collection::vec((valid_labels(), samples()), 1..5),
        next in proptest::collection::vec((valid_labels(), samples()), 0..5),
        flaw in any::<u8>(),
        damage in damage(),
        garbage in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let (db, receiver) = receiver();
        receiver.remote_write(Protocol::V1, &snappy(&v1_body(&stored)), NOW_MS).expect("a valid request is stored");
        let before = contents(&db);
        prop_assert!(!before.is_empty());
        let bad = with_bad_series(next.clone(), flaw);
        for (protocol, body) in [(Protocol::V1, v1_body(&bad)), (Protocol::V2, v2_body(&bad))] {
            prop_assert!(receiver.remote_write(protocol, &snappy(&body), NOW_MS).is_err(), "{bad:?} was accepted");
            prop_assert_eq!(&contents(&db), &before);
        }
        let damaged = [
            (Protocol::V1, snappy(&apply(v1_body(&next), &damage))),
            (Protocol::V2, snappy(&apply(v2_body(&next), &damage))),
            (Protocol::V1, garbage.clone()),
            (Protocol::V2, snappy(&garbage)),
        ];
        for (protocol, body) in damaged {
            let before = contents(&db);
            if receiver.remote_write(protocol, &body, NOW_MS).is_err() {
                prop_assert_eq!(&contents(&db), &before);
            }
        }
    }
}

/// Pieces of exposition pages, so that generated pages get past the first token.
const EXPOSITION_TOKENS: &[&str] = &[
    "# TYPE ",
    "# HELP ",
    "# UNIT ",
    "# EOF",
    "\n",
    " ",
    "m",
    "m_total",
    "m_bucket",
    "m_created",
    "{",
    "}",
    "a=\"b\"",
    "le=\"0.5\"",
    "le=\"+Inf\"",
    ",",
    "=",
    "\"",
    "\\",
    "1",
    "-1.5e3",
    "NaN",
    "+Inf",
    "-Inf",
    "1764892800",
    "1764892800.5",
    "counter",
    "gauge",
    "histogram",
    "summary",
    "stateset",
    "info",
    "unknown",
    "# {trace_id=\"x\"} 1 2",
    "\u{1F600}",
];

fn page() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(EXPOSITION_TOKENS), 0..40).prop_map(|t| t.concat())
}

/// Pieces of scrape configurations.
const SCRAPE_TOKENS: &[&str] = &[
    "global:\n",
    "scrape_configs:\n",
    "- job_name: ",
    "  scrape_interval: ",
    "  scrape_timeout: ",
    "  metrics_path: ",
    "  static_configs:\n",
    "  - targets: [",
    "]\n",
    "'a:9090'",
    ", ",
    "15s",
    "0s",
    "1d",
    "-1s",
    "x",
    "\n",
    "  kubernetes_sd_configs:\n",
    "  - role: ",
    "pod",
    "node",
    "  relabel_configs:\n",
    "  - action: ",
    "keep",
    "labelmap",
    "hashmod",
    "    regex: ",
    "(",
    ")",
    "[",
    "    source_labels: [a]\n",
    "    modulus: 0\n",
    "  sample_limit: ",
    "99999999999999999999",
    "  body_size_limit: ",
    "1KB",
    "  honor_labels: true\n",
    "  basic_auth: {username: u, password: p}\n",
    "  scheme: ",
    "https",
    "  tls_config: {insecure_skip_verify: true}\n",
];

fn scrape_yaml() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(SCRAPE_TOKENS), 0..30).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_page_parses_or_names_a_position(text in page()) {
        for format in [Format::Text, Format::OpenMetrics] {
            match parse(&text, format) {
                Ok(page) => {
                    for sample in page.samples() {
                        prop_assert!(!sample.name().is_empty());
                    }
                }
                Err(e) => prop_assert!(e.line >= 1 && e.column >= 1),
            }
        }
    }

    #[test]
    fn any_unicode_page_never_panics(text in "\\PC{0,200}") {
        let _ = parse(&text, Format::Text);
        let _ = parse(&text, Format::OpenMetrics);
    }

    #[test]
    fn any_scrape_config_loads_or_fails_cleanly(text in scrape_yaml()) {
        if let Ok(configs) = ScrapeConfigs::from_yaml(&text) {
            let _ = configs.resolve();
        }
    }
}
