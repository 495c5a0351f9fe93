//! Append throughput of the ring store: samples/s into existing series through `Db::append` (one entry per series)
//! batches (one sample per series per batch, as a scrape or remote-write request delivers them),
//! on 1 and 2 threads. Data pattern: counters with small integer increments at 15 s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;
use tsdb::{Db, Options, Sample, SeriesId, SeriesSamples};

const SERIES: usize = 10_000;
const STEP_MS: i64 = 15_000;

struct Store {
    _dir: tempfile::TempDir,
    db: Db,
    ids: Vec<SeriesId>,
    values: Vec<f64>,
    next_ts: AtomicI64,
}

fn store() -> Store {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = Options::new(dir.path());
    options.storage_size_bytes = 4 << 30;
    let db = Db::open(options).expect("open store");
    let ids: Vec<SeriesId> = (0..SERIES)
        .map(|i| {
            let instance = format!("10.0.{}.{}:9100", i / 250, i % 250);
            db.resolve(&[("__name__", "http_requests_total"), ("job", "api"), ("instance", &instance)])
                .expect("resolve")
        })
        .collect();
    Store { _dir: dir, db, ids, values: vec![0.0; SERIES], next_ts: AtomicI64::new(1_700_000_000_000) }
}

/// Appends one batch (one sample per series in `ids`) and checks that every sample went in.
fn append_batch(db: &Db, ids: &[SeriesId], values: &mut [f64], ts: i64, entries: &mut Vec<(SeriesId, Sample)>) {
    entries.clear();
    for (i, (id, value)) in ids.iter().zip(values.iter_mut()).enumerate() {
        *value += ((ts / STEP_MS + i as i64) % 7) as f64;
        entries.push((*id, Sample::new(ts, *value)));
    }
    let report = db
        .append(&entries.iter().map(|(id, s)| SeriesSamples::id(*id, std::slice::from_ref(s))).collect::<Vec<_>>())
        .expect("append");
    assert_eq!(report.appended as usize, ids.len(), "BUG: samples rejected: {:?}", report.rejections.first());
}

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("tsdb_append");
    group.throughput(Throughput::Elements(SERIES as u64));
    let mut s = store();
    let mut entries = Vec::with_capacity(SERIES);
    group.bench_function("append_ids_10k_series_1_thread", |b| {
        b.iter(|| {
            let ts = s.next_ts.fetch_add(STEP_MS, Ordering::Relaxed);
            append_batch(&s.db, &s.ids, &mut s.values, ts, &mut entries);
        })
    });
    let half = SERIES / 2;
    group.bench_function("append_ids_10k_series_2_threads", |b| {
        // Each thread appends `iters` batches to its own half of the series; the measured time is
        // the wall time until both are done (threads are started once per measurement, not per batch).
        b.iter_custom(|iters| {
            let first_ts = s.next_ts.fetch_add(STEP_MS * iters as i64, Ordering::Relaxed);
            let (ids_a, ids_b) = s.ids.split_at(half);
            let (values_a, values_b) = s.values.split_at_mut(half);
            let db = &s.db;
            let started = Instant::now();
            std::thread::scope(|scope| {
                for (ids, values) in [(ids_a, values_a), (ids_b, values_b)] {
                    scope.spawn(move || {
                        let mut entries = Vec::with_capacity(half);
                        for i in 0..iters as i64 {
                            append_batch(db, ids, values, first_ts + i * STEP_MS, &mut entries);
                        }
                    });
                }
            });
            started.elapsed()
        })
    });
    group.finish();
    let stats = s.db.stats();
    println!(
        "tsdb_append: {} samples stored, {:.3} bytes/sample, {} segments",
        stats.samples, stats.bytes_per_sample, stats.segments
    );
}

criterion_group!(benches, bench_append);
criterion_main!(benches);
