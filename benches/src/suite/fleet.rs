//! `Fleet` is the synthetic Kubernetes cluster every workload draws its label sets from: pods with
//! a namespace, a Deployment-style name (`<app>-<replicaset hash>-<suffix>`, a new hash per
//! rollout generation), a container, a node, a job and an `ip:port` instance, and the series each
//! pod exposes (request counters by method and code, a latency histogram, process gauges). It
//! also encodes those series as Remote-Write 1.0 requests and renders them as exposition pages, so
//! every system under test is fed byte-identical data.

use ingest::proto::v1;
use ingest::remote_write::encode_body;
use std::fmt::Write as _;

const NAMESPACES: [&str; 8] = ["checkout", "payments", "search", "catalog", "identity", "ads", "mail", "ingest"];
const APPS: [&str; 12] =
    ["web", "api", "worker", "cart", "auth", "gateway", "indexer", "ranker", "mailer", "billing", "feed", "cache"];
/// Nodes in the synthetic cluster; pods are spread round-robin, as a scheduler would roughly do.
const NODES: usize = 50;
const METHODS: [&str; 2] = ["GET", "POST"];
const CODES: [&str; 5] = ["200", "201", "404", "429", "500"];
/// Classic histogram bucket bounds (Prometheus client defaults, trimmed to 10).
pub const BUCKET_BOUNDS: [&str; 10] = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
/// Scrape and data interval of generated samples: the common Kubernetes default.
pub const DATA_STEP_MS: i64 = 15_000;

/// One pod of the synthetic cluster.
#[derive(Clone, Debug)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub app: String,
    pub node: String,
    pub instance: String,
}

impl Pod {
    /// Pod `index` of rollout `generation`; the same index keeps its namespace, app and node across
    /// generations but gets a new name and address, as a Deployment rollout does.
    pub fn new(index: usize, generation: usize) -> Pod {
        let app = APPS[(index / NAMESPACES.len()) % APPS.len()];
        // A 10-hex-digit "replicaset hash" and a 5-character suffix, derived from the index and
        // generation so runs are reproducible.
        let hash =
            (index as u64 / 64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((generation as u64 + 1) * 0x1234_5677);
        let suffix = (index as u64).wrapping_mul(2_654_435_761) ^ generation as u64;
        let address = index + generation * 1_000_003;
        Pod {
            namespace: NAMESPACES[index % NAMESPACES.len()].to_string(),
            name: format!("{app}-{:010x}-{:05x}", hash & 0xff_ffff_ffff, suffix & 0xf_ffff),
            app: app.to_string(),
            node: format!("node-{:03}", index % NODES),
            instance: format!("10.{}.{}.{}:8080", (address >> 16) & 0xff, (address >> 8) & 0xff, address & 0xff),
        }
    }

    /// A pod of the adapter workloads: fixed namespace and app, a short predictable name.
    pub fn named(namespace: &str, app: &str, name: String, index: usize) -> Pod {
        Pod {
            namespace: namespace.to_string(),
            name,
            app: app.to_string(),
            node: format!("node-{:03}", index % NODES),
            instance: format!("10.200.{}.{}:8080", (index >> 8) & 0xff, index & 0xff),
        }
    }

    /// The pod's identifying labels as Kubernetes service discovery plus relabelling attach them.
    pub fn labels(&self) -> [(&'static str, &str); 6] {
        [
            ("app", &self.app),
            ("container", &self.app),
            ("instance", &self.instance),
            ("namespace", &self.namespace),
            ("node", &self.node),
            ("pod", &self.name),
        ]
    }
}

/// What one series of a pod measures, which fixes how its value moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesKind {
    Counter,
    Gauge,
    /// A cumulative histogram bucket; `bucket` indexes [`BUCKET_BOUNDS`].
    Bucket {
        bucket: usize,
    },
}

/// One series of a pod: metric name, extra labels and kind.
#[derive(Clone, Debug)]
pub struct SeriesShape {
    pub name: &'static str,
    pub extra: Vec<(&'static str, String)>,
    pub kind: SeriesKind,
}

/// The series a pod exposes, most common first: 5 process/container gauges, 10 request counters
/// (method × code), then a 10-bucket latency histogram per handler with its `_sum` and `_count`.
/// Taking the first `count` gives a pod of that many series (a page of 100 is typical of an
/// instrumented service).
pub fn pod_series(count: usize) -> Vec<SeriesShape> {
    let mut shapes = Vec::with_capacity(count);
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "go_goroutines",
        "container_memory_working_set_bytes",
        "process_cpu_seconds_total",
    ] {
        let kind = if name.ends_with("_total") { SeriesKind::Counter } else { SeriesKind::Gauge };
        shapes.push(SeriesShape { name, extra: vec![], kind });
    }
    for method in METHODS {
        for code in CODES {
            shapes.push(SeriesShape {
                name: "http_requests_total",
                extra: vec![("code", code.to_string()), ("method", method.to_string())],
                kind: SeriesKind::Counter,
            });
        }
    }
    let mut handler = 0;
    while shapes.len() < count {
        let handler_label = ("handler", format!("/api/v1/resource{handler}"));
        for (bucket, le) in BUCKET_BOUNDS.iter().enumerate() {
            shapes.push(SeriesShape {
                name: "http_request_duration_seconds_bucket",
                extra: vec![handler_label.clone(), ("le", le.to_string())],
                kind: SeriesKind::Bucket { bucket },
            });
        }
        for name in ["http_request_duration_seconds_sum", "http_request_duration_seconds_count"] {
            shapes.push(SeriesShape { name, extra: vec![handler_label.clone()], kind: SeriesKind::Counter });
        }
        handler += 1;
    }
    shapes.truncate(count);
    shapes
}

/// The value of series `series` (a stable per-series number) of `kind` at step `step`: counters
/// grow at a per-series rate, gauges wander in a band, buckets are cumulative in `le`.
pub fn value_at(kind: SeriesKind, series: usize, step: i64) -> f64 {
    let rate = 1.0 + (series % 7) as f64;
    match kind {
        SeriesKind::Counter => step as f64 * rate,
        SeriesKind::Gauge => 1000.0 + ((series as i64 * 37 + step * 11) % 200) as f64,
        SeriesKind::Bucket { bucket } => step as f64 * rate * (bucket + 1) as f64,
    }
}

/// Sorted Remote-Write labels of one pod series.
pub fn series_labels(pod: &Pod, shape: &SeriesShape, job: &str) -> Vec<v1::Label> {
    let mut labels: Vec<(&str, &str)> = pod.labels().to_vec();
    labels.push(("__name__", shape.name));
    labels.push(("job", job));
    for (name, value) in &shape.extra {
        labels.push((name, value));
    }
    labels.sort_unstable();
    labels.into_iter().map(|(name, value)| v1::Label { name: name.to_string(), value: value.to_string() }).collect()
}

/// One Remote-Write series ready to receive samples: its labels and the value parameters.
#[derive(Clone)]
pub struct WriteSeries {
    pub labels: Vec<v1::Label>,
    pub kind: SeriesKind,
    pub seed: usize,
}

/// The series of `pods`, each exposing the first `per_pod` shapes of [`pod_series`].
pub fn write_series(pods: &[Pod], per_pod: usize, job: &str) -> Vec<WriteSeries> {
    let shapes = pod_series(per_pod);
    let mut out = Vec::with_capacity(pods.len() * per_pod);
    for pod in pods {
        for shape in &shapes {
            let seed = out.len();
            out.push(WriteSeries { labels: series_labels(pod, shape, job), kind: shape.kind, seed });
        }
    }
    out
}

/// Pre-encoded Remote-Write 1.0 requests (snappy-compressed protobuf), sent identically to every
/// system.
pub struct RequestBatch {
    pub bodies: Vec<Vec<u8>>,
    /// Requests per time slice: request `i` carries the same series as request `i + per_slice`,
    /// so senders keep each series in order by giving `i % per_slice` a fixed lane.
    pub per_slice: usize,
    pub samples: u64,
}

impl RequestBatch {
    /// Compressed bytes of all requests.
    pub fn bytes(&self) -> usize {
        self.bodies.iter().map(Vec::len).sum()
    }

    /// Appends `other` (same series chunking) after this batch.
    pub fn extend(&mut self, other: RequestBatch) {
        self.per_slice = self.per_slice.max(other.per_slice);
        self.bodies.extend(other.bodies);
        self.samples += other.samples;
    }
}

/// Encodes steps `steps` of every series in `series`, one sample per series per step, cut into
/// requests of at most `samples_per_request` samples with `steps_per_series` consecutive samples
/// of a series together (1 = the shape Prometheus's remote-write queue sends live; more = a
/// backfill).
pub fn encode_requests(
    series: &[WriteSeries],
    steps: std::ops::Range<i64>,
    first_step_ms: i64,
    steps_per_series: i64,
    samples_per_request: usize,
) -> RequestBatch {
    let steps_per_series = steps_per_series.max(1);
    let series_per_request = (samples_per_request / steps_per_series as usize).max(1);
    let mut batch =
        RequestBatch { bodies: Vec::new(), per_slice: series.len().div_ceil(series_per_request), samples: 0 };
    let mut from = steps.start;
    while from < steps.end {
        let to = (from + steps_per_series).min(steps.end);
        for chunk in series.chunks(series_per_request) {
            let timeseries = chunk
                .iter()
                .map(|s| v1::TimeSeries {
                    labels: s.labels.clone(),
                    samples: (from..to)
                        .map(|step| v1::Sample {
                            value: value_at(s.kind, s.seed, step),
                            timestamp: first_step_ms + step * DATA_STEP_MS,
                        })
                        .collect(),
                    exemplars: vec![],
                    histograms: vec![],
                })
                .collect();
            batch.samples += (chunk.len() as i64 * (to - from)) as u64;
            batch.bodies.push(encode_body(&v1::WriteRequest { timeseries, metadata: vec![] }));
        }
        from = to;
    }
    batch
}

/// Renders pod `pod`'s `per_pod` series at step `step` as a Prometheus text exposition page (the
/// `instance` label is left to the scraper, which attaches the target address).
pub fn render_page(pod: &Pod, shapes: &[SeriesShape], seed_base: usize, step: i64, page: &mut String) {
    page.clear();
    let mut last_family = "";
    for (i, shape) in shapes.iter().enumerate() {
        let family = shape
            .name
            .strip_suffix("_bucket")
            .or_else(|| shape.name.strip_suffix("_sum"))
            .or_else(|| shape.name.strip_suffix("_count"))
            .unwrap_or(shape.name);
        if family != last_family {
            let kind = match shape.kind {
                SeriesKind::Bucket { .. } => "histogram",
                SeriesKind::Counter if !shape.name.starts_with("http_request_duration") => "counter",
                SeriesKind::Counter => "histogram",
                SeriesKind::Gauge => "gauge",
            };
            let _ = writeln!(page, "# TYPE {family} {kind}");
            last_family = family;
        }
        let _ = write!(
            page,
            "{}{{namespace=\"{}\",pod=\"{}\",container=\"{}\",node=\"{}\",app=\"{}\"",
            shape.name, pod.namespace, pod.name, pod.app, pod.node, pod.app
        );
        for (name, value) in &shape.extra {
            let _ = write!(page, ",{name}=\"{value}\"");
        }
        let _ = writeln!(page, "}} {}", value_at(shape.kind, seed_base + i, step));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_series_counts_and_orders() {
        let shapes = pod_series(100);
        assert_eq!(shapes.len(), 100);
        assert_eq!(shapes[0].kind, SeriesKind::Gauge);
        assert_eq!(shapes.iter().filter(|s| s.name == "http_requests_total").count(), 10);
        assert_eq!(pod_series(10).len(), 10);
    }

    #[test]
    fn labels_are_sorted_and_unique_across_pods() {
        let pods: Vec<Pod> = (0..500).map(|i| Pod::new(i, 0)).collect();
        let series = write_series(&pods, 10, "kubernetes-pods");
        for s in &series {
            assert!(s.labels.windows(2).all(|w| w[0].name < w[1].name));
        }
        let distinct: std::collections::HashSet<_> =
            series.iter().map(|s| s.labels.iter().map(|l| l.value.clone()).collect::<Vec<_>>()).collect();
        assert_eq!(distinct.len(), series.len());
        assert_ne!(Pod::new(3, 0).name, Pod::new(3, 1).name);
    }

    #[test]
    fn requests_carry_every_sample() {
        let pods: Vec<Pod> = (0..3).map(|i| Pod::new(i, 0)).collect();
        let series = write_series(&pods, 10, "j");
        let live = encode_requests(&series, 0..4, 0, 1, 7);
        assert_eq!((live.bodies.len(), live.per_slice, live.samples), (4 * 5, 5, 120));
        let backfill = encode_requests(&series, 0..4, 0, 2, 20);
        assert_eq!((backfill.bodies.len(), backfill.per_slice, backfill.samples), (2 * 3, 3, 120));
    }

    #[test]
    fn page_has_one_line_per_series() {
        let mut page = String::new();
        render_page(&Pod::new(0, 0), &pod_series(100), 0, 3, &mut page);
        assert_eq!(page.lines().filter(|l| !l.starts_with('#')).count(), 100);
    }
}
