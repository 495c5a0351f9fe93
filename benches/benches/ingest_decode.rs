//! Remote-write decoding throughput: snappy + zero-copy protobuf walk + validation of a 1.0
//! request of 2000 series × 1 sample with 6 labels (the `remote_write_compare` shape), and of the
//! same request as 2.0; plus decode + append into a fresh in-memory-sized store, without and with
//! the receiver's raw-label-bytes series cache.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ingest::proto::{v1, v2};
use ingest::remote_write::{decode_request, decompress_snappy, encode_body, DecodeLimits, Protocol, Receiver};
use std::sync::Arc;

const SERIES: usize = 2_000;

fn label_pairs(s: usize) -> Vec<(String, String)> {
    let mut labels = vec![
        ("__name__".to_string(), format!("http_requests_total_{}", s % 20)),
        ("container".to_string(), "app".to_string()),
        ("instance".to_string(), format!("10.0.{}.{}:8080", s / 250, s % 250)),
        ("job".to_string(), "bench".to_string()),
        ("namespace".to_string(), format!("ns-{}", s % 7)),
        ("pod".to_string(), format!("app-{s:05}")),
    ];
    labels.sort();
    labels
}

fn v1_body(ts_ms: i64) -> Vec<u8> {
    let timeseries = (0..SERIES)
        .map(|s| v1::TimeSeries {
            labels: label_pairs(s).into_iter().map(|(name, value)| v1::Label { name, value }).collect(),
            samples: vec![v1::Sample { value: s as f64, timestamp: ts_ms }],
            exemplars: vec![],
            histograms: vec![],
        })
        .collect();
    encode_body(&v1::WriteRequest { timeseries, metadata: vec![] })
}

fn v2_body(ts_ms: i64) -> Vec<u8> {
    let mut symbols = vec![String::new()];
    let mut index = std::collections::HashMap::new();
    let mut timeseries = Vec::new();
    for s in 0..SERIES {
        let mut refs = Vec::new();
        for (name, value) in label_pairs(s) {
            for text in [name, value] {
                let next = symbols.len() as u32;
                let r = *index.entry(text.clone()).or_insert_with(|| {
                    symbols.push(text);
                    next
                });
                refs.push(r);
            }
        }
        timeseries.push(v2::TimeSeries {
            labels_refs: refs,
            samples: vec![v2::Sample { value: s as f64, timestamp: ts_ms }],
            ..Default::default()
        });
    }
    encode_body(&v2::Request { symbols, timeseries })
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("remote_write_decode");
    group.throughput(Throughput::Elements(SERIES as u64));
    for (name, protocol, body) in [("v1", Protocol::V1, v1_body(1_000)), ("v2", Protocol::V2, v2_body(1_000))] {
        let limits = DecodeLimits::default();
        let mut scratch = Vec::new();
        decompress_snappy(&body, limits.max_decompressed_bytes, &mut scratch).expect("valid body");
        assert_eq!(decode_request(protocol, &scratch, 1_000, &limits).expect("valid request").sample_count(), SERIES);
        group.bench_with_input(BenchmarkId::new("snappy+decode+validate", name), &body, |b, body| {
            b.iter(|| {
                decompress_snappy(body, limits.max_decompressed_bytes, &mut scratch).expect("valid body");
                decode_request(protocol, &scratch, 1_000, &limits).expect("valid request").sample_count()
            })
        });
    }
    group.finish();
}

fn bench_write(c: &mut Criterion) {
    let mut group = c.benchmark_group("remote_write_store");
    group.throughput(Throughput::Elements(SERIES as u64));
    for cached in [false, true] {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(tsdb::Db::open(tsdb::Options::new(dir.path())).expect("store"));
        let mut receiver = Receiver::new(db, DecodeLimits::default());
        if !cached {
            receiver = receiver.with_series_cache_max_bytes(0);
        }
        let write_one = |body: &[u8], now_ms: i64| receiver.remote_write(Protocol::V1, body, now_ms).expect("write");
        // Series known after the first request: the steady state of a remote-write stream.
        let mut ts_ms = 1_000;
        let first = write_one(&v1_body(ts_ms), ts_ms);
        assert_eq!(first.samples_written, SERIES as u64);
        let bodies: Vec<Vec<u8>> = (1..=64).map(|i| v1_body(1_000 + i * 15_000)).collect();
        let mut i = 0usize;
        let name = if cached { "v1_known_series_cached" } else { "v1_known_series" };
        group.bench_function(name, |b| {
            b.iter(|| {
                // Cycle through increasing timestamps; once exhausted, samples are duplicates or out
                // of order, which is still the full decode + lookup path.
                let body = &bodies[i % bodies.len()];
                i += 1;
                ts_ms += 15_000;
                write_one(body, ts_ms).samples_written
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_write);
criterion_main!(benches);
