//! Remote-write decoding throughput: snappy + zero-copy protobuf walk + validation of a 1.0
//! request of 2000 series × 1 sample with 6 labels (the `remote_write_compare` shape), and of the
//! same request as 2.0; plus decode + append into a fresh in-memory-sized store, without and with
//! the receiver's raw-label-bytes series cache, and with 100 samples per series per request (20
//! known series of 2000 samples, as a sender catching up or batching sends).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
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

/// 20 series of 100 counter samples each, 15 s apart from `first_ts_ms` on.
fn v1_body_100_per_series(first_ts_ms: i64) -> Vec<u8> {
    let timeseries = (0..SERIES / 100)
        .map(|s| v1::TimeSeries {
            labels: label_pairs(s).into_iter().map(|(name, value)| v1::Label { name, value }).collect(),
            samples: (0..100i64)
                .map(|i| {
                    let ts_ms = first_ts_ms + i * 15_000;
                    v1::Sample { value: (ts_ms / 15_000 * (s as i64 % 5 + 1)) as f64, timestamp: ts_ms }
                })
                .collect(),
            exemplars: vec![],
            histograms: vec![],
        })
        .collect();
    encode_body(&v1::WriteRequest { timeseries, metadata: vec![] })
}

fn bench_write_per_series(c: &mut Criterion) {
    let mut group = c.benchmark_group("remote_write_store");
    group.throughput(Throughput::Elements(SERIES as u64));
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Arc::new(tsdb::Db::open(tsdb::Options::new(dir.path())).expect("store"));
    let receiver = Receiver::new(db, DecodeLimits::default());
    let mut first_ts_ms = 1_000;
    let first = receiver
        .remote_write(Protocol::V1, &v1_body_100_per_series(first_ts_ms), first_ts_ms + 100 * 15_000)
        .expect("write");
    assert_eq!(first.samples_written, SERIES as u64);
    group.bench_function("v1_known_series_cached_100_per_series", |b| {
        b.iter_batched(
            || {
                first_ts_ms += 100 * 15_000;
                (v1_body_100_per_series(first_ts_ms), first_ts_ms + 100 * 15_000)
            },
            |(body, now_ms)| {
                let written = receiver.remote_write(Protocol::V1, &body, now_ms).expect("write").samples_written;
                assert_eq!(written, SERIES as u64, "BUG: samples refused");
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_decode, bench_write, bench_write_per_series);
criterion_main!(benches);
