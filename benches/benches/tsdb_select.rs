//! Select-and-decode throughput: samples/s returned by `Db::select` plus iteration, for a
//! whole-day scan of 1000 series and a one-series one-hour lookup.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tsdb::{Db, Matcher, Options, Sample, SeriesId, SeriesSamples};

const SERIES: usize = 1000;
const SAMPLES: usize = 5760;
const STEP_MS: i64 = 15_000;
const START_MS: i64 = 1_700_000_000_000;

fn filled_store() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(Options::new(dir.path())).expect("open");
    let ids: Vec<SeriesId> = (0..SERIES)
        .map(|i| db.resolve(&[("__name__", "requests_total"), ("pod", &format!("pod-{i}"))]).expect("resolve"))
        .collect();
    let mut values = vec![0.0; SERIES];
    let mut entries = Vec::with_capacity(SERIES);
    for step in 0..SAMPLES {
        entries.clear();
        for (i, (id, v)) in ids.iter().zip(values.iter_mut()).enumerate() {
            *v += ((step + i) % 5) as f64;
            entries.push((*id, Sample::new(START_MS + step as i64 * STEP_MS, *v)));
        }
        db.append(&entries.iter().map(|(id, s)| SeriesSamples::id(*id, std::slice::from_ref(s))).collect::<Vec<_>>())
            .expect("append");
    }
    (dir, db)
}

fn bench_select(c: &mut Criterion) {
    let (_dir, db) = filled_store();
    let mut group = c.benchmark_group("tsdb_select");
    let all = [Matcher::equal("__name__", "requests_total")];
    let end = START_MS + SAMPLES as i64 * STEP_MS;
    group.throughput(Throughput::Elements((SERIES * SAMPLES) as u64));
    group.bench_function("select_decode_1000_series_1_day", |b| {
        b.iter(|| {
            let found = db.select(&all, START_MS, end).expect("select");
            let n: usize = found.iter().map(|s| s.samples().count()).sum();
            assert_eq!(n, SERIES * SAMPLES, "BUG: samples missing");
        })
    });
    let one = [Matcher::equal("__name__", "requests_total"), Matcher::equal("pod", "pod-500")];
    let hour_start = end - 3_600_000;
    group.throughput(Throughput::Elements(240));
    group.bench_function("select_decode_1_series_1_hour", |b| {
        b.iter(|| {
            let found = db.select(&one, hour_start, end).expect("select");
            assert_eq!(found[0].samples().count(), 240, "BUG: samples missing");
        })
    });
    group.finish();
}

criterion_group!(benches, bench_select);
criterion_main!(benches);
