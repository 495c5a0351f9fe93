use tsdb::{Db, Options, Sample, SeriesSamples};
fn anon() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let f = |k: &str| {
        s.lines().find(|l| l.starts_with(k)).unwrap().split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    };
    eprintln!("RssAnon {} RssFile {}", f("RssAnon:"), f("RssFile:"));
    f("RssAnon:")
}
fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(dir.path());
    o.storage_size_bytes = 8 << 30;
    let db = Db::open(o).unwrap();
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1_000_000);
    let a0 = anon();
    let names = [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "container_memory_working_set_bytes",
        "container_cpu_usage_seconds_total",
        "http_requests_total",
    ];
    for step in 0..3i64 {
        for base in (0..n).step_by(2000) {
            let mut labels: Vec<Vec<(String, String)>> = Vec::new();
            for i in base..(base + 2000).min(n) {
                let pod = i / 10;
                labels.push(vec![
                    ("__name__".into(), names[i % 5].into()),
                    ("namespace".into(), format!("ns-{}", pod % 50)),
                    ("pod".into(), format!("app-{}-7d9f8b6c4-{:05}", pod % 100, pod)),
                    ("container".into(), "main".into()),
                    ("node".into(), format!("node-{}", pod % 100)),
                    ("app".into(), format!("app-{}", pod % 100)),
                    ("job".into(), "kubernetes-pods".into()),
                    ("instance".into(), format!("10.{}.{}.{}:8080", pod / 65536, (pod / 256) % 256, pod % 256)),
                    ("code".into(), format!("{}", 200 + (i % 2) * 300)),
                ]);
            }
            for chunk in labels.chunks(2000) {
                let pairs: Vec<Vec<(&str, &str)>> =
                    chunk.iter().map(|l| l.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()).collect();
                let samples: Vec<[Sample; 1]> = (0..chunk.len())
                    .map(|k| [Sample::new(1_700_000_000_000 + step * 15000, (k as i64 * 3 + step) as f64)])
                    .collect();
                let batch: Vec<SeriesSamples> =
                    pairs.iter().zip(&samples).map(|(p, s)| SeriesSamples::labels(p, s)).collect();
                db.append(&batch).unwrap();
            }
        }
    }
    let a1 = anon();
    let st = db.stats();
    eprintln!(
        "series {} anon/series {:.0} head_used {} log {}",
        st.series,
        (a1 - a0) as f64 / n as f64,
        st.head_slot_bytes_used,
        st.series_log_bytes
    );
}
