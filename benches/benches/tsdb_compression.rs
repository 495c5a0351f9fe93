//! Bytes per sample on realistic data, measured through the real store (chunk records with their
//! headers plus open chunks), next to Prometheus's XOR chunk size for the same samples; plus
//! chunk encode/decode throughput per data pattern.
//!
//! Full shape: 10k series × 1 day at 15 s (5760 samples each) per pattern; set
//! `RINGTAIL_BENCH_SERIES` to scale the series count down.

use criterion::{criterion_group, Criterion, Throughput};
use tsdb::chunk::{encode_chunk, prometheus_xor_size_bytes, ChunkDecoder};
use tsdb::{Db, Options, Sample, SeriesId, SeriesSamples};

const STEP_MS: i64 = 15_000;
const SAMPLES_PER_DAY: usize = 5760;
/// Prometheus cuts head chunks at 120 samples.
const PROMETHEUS_CHUNK_SAMPLES: usize = 120;
const START_MS: i64 = 1_700_000_000_000;

/// The named data patterns of the issue.
#[derive(Clone, Copy, Debug)]
enum Pattern {
    /// Counters with small integer increments (0..=9 per scrape).
    Counter,
    /// Integer gauges random-walking by -3..=3.
    IntGauge,
    /// Float gauges random-walking at 3 decimals (steps of up to ±0.5).
    FloatGauge3Decimals,
}

const PATTERNS: [Pattern; 3] = [Pattern::Counter, Pattern::IntGauge, Pattern::FloatGauge3Decimals];

/// Per-series generator state with a fixed seed (xorshift).
struct Generator {
    rng: u64,
    mantissa: i64,
}

impl Generator {
    fn new(series: usize) -> Self {
        Generator {
            rng: 0x9e37_79b9_7f4a_7c15 ^ (series as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d),
            mantissa: 1000,
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    fn next(&mut self, pattern: Pattern) -> f64 {
        match pattern {
            Pattern::Counter => {
                self.mantissa += self.below(10) as i64;
                self.mantissa as f64
            }
            Pattern::IntGauge => {
                self.mantissa = (self.mantissa + self.below(7) as i64 - 3).max(0);
                self.mantissa as f64
            }
            Pattern::FloatGauge3Decimals => {
                self.mantissa += self.below(1001) as i64 - 500;
                self.mantissa as f64 / 1000.0
            }
        }
    }
}

fn day_of(pattern: Pattern, series: usize) -> Vec<Sample> {
    let mut g = Generator::new(series);
    (0..SAMPLES_PER_DAY).map(|i| Sample::new(START_MS + i as i64 * STEP_MS, g.next(pattern))).collect()
}

/// Appends the full shape through the store and returns (store bytes/sample, Prometheus XOR
/// bytes/sample, raw chunk-encoding bytes/sample).
fn measure(pattern: Pattern, series: usize) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = Options::new(dir.path());
    options.storage_size_bytes = 8 << 30;
    let db = Db::open(options).expect("open");
    let ids: Vec<SeriesId> =
        (0..series).map(|i| db.resolve(&[("__name__", "m"), ("series", &i.to_string())]).expect("resolve")).collect();
    let mut generators: Vec<Generator> = (0..series).map(Generator::new).collect();
    let mut entries = Vec::with_capacity(series);
    for step in 0..SAMPLES_PER_DAY {
        entries.clear();
        let ts = START_MS + step as i64 * STEP_MS;
        for (id, g) in ids.iter().zip(generators.iter_mut()) {
            entries.push((*id, Sample::new(ts, g.next(pattern))));
        }
        let report = db
            .append(&entries.iter().map(|(id, s)| SeriesSamples::id(*id, std::slice::from_ref(s))).collect::<Vec<_>>())
            .expect("append");
        assert_eq!(report.appended as usize, series, "BUG: samples rejected");
    }
    let stats = db.stats();
    assert_eq!(stats.samples as usize, series * SAMPLES_PER_DAY, "BUG: samples lost");
    let (mut xor_bytes, mut raw_bytes, mut payload) = (0usize, 0usize, Vec::new());
    for i in 0..series {
        let day = day_of(pattern, i);
        xor_bytes += day.chunks(PROMETHEUS_CHUNK_SAMPLES).map(prometheus_xor_size_bytes).sum::<usize>();
        payload.clear();
        encode_chunk(&mut payload, &day);
        raw_bytes += payload.len();
    }
    let total = (series * SAMPLES_PER_DAY) as f64;
    (stats.bytes_per_sample, xor_bytes as f64 / total, raw_bytes as f64 / total)
}

fn report_full_shape() {
    let series: usize = std::env::var("RINGTAIL_BENCH_SERIES").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    println!("bytes/sample, {series} series x 1 day at 15 s ({} samples per pattern):", series * SAMPLES_PER_DAY);
    println!("{:<24} {:>14} {:>18} {:>16}", "pattern", "ringtail store", "prometheus XOR", "codec only");
    for pattern in PATTERNS {
        let (store, xor, raw) = measure(pattern, series);
        println!("{:<24} {store:>14.3} {xor:>18.3} {raw:>16.3}", format!("{pattern:?}"));
    }
}

fn bench_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("tsdb_chunk_codec");
    group.throughput(Throughput::Elements(SAMPLES_PER_DAY as u64));
    for pattern in PATTERNS {
        let day = day_of(pattern, 7);
        let mut payload = Vec::new();
        group.bench_function(format!("encode_{pattern:?}"), |b| {
            b.iter(|| {
                payload.clear();
                encode_chunk(&mut payload, &day);
            })
        });
        let mut encoded = Vec::new();
        encode_chunk(&mut encoded, &day);
        group.bench_function(format!("decode_{pattern:?}"), |b| {
            b.iter(|| {
                // Whole day in one stream (u16 count): the store's chunks are smaller, the loop is the same.
                let n = ChunkDecoder::new(&encoded, SAMPLES_PER_DAY as u16).filter(|s| s.is_ok()).count();
                assert_eq!(n, SAMPLES_PER_DAY, "BUG: decode failed");
            })
        });
        // The queries' loop: one closure call per sample, no iterator bookkeeping.
        group.bench_function(format!("decode_for_each_{pattern:?}"), |b| {
            b.iter(|| {
                let mut sum = 0.0;
                let mut decoder = ChunkDecoder::new(&encoded, SAMPLES_PER_DAY as u16);
                let decoded = decoder.for_each_until(|s| {
                    sum += s.value;
                    true
                });
                assert!(decoded.is_ok(), "BUG: decode failed");
                std::hint::black_box(sum)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_codec);

fn main() {
    report_full_shape();
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}
