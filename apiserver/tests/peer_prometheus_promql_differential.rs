//! Differential test against a real Prometheus 2.42: the same generated data (counters with
//! resets, gauges, histogram buckets, a series with a gap, a series ended by a staleness marker)
//! is remote-written to both, then several hundred generated queries from Ringtail's PromQL subset
//! run through both HTTP APIs, as instant queries at several times and as range queries: the
//! series sets must be identical and every value equal within 1e-9 relative.
//!
//! Prometheus 2.42 still uses closed windows (`[t-range, t]`) where Prometheus 3 and Ringtail use
//! left-open ones, so every sample timestamp is jittered off whole seconds while evaluation times,
//! ranges, offsets and steps are whole seconds: no sample ever sits on a window boundary. Counters
//! stay far from zero (resets drop to about half) so the extrapolation's zero-point clamp, whose
//! order changed between 2.42 and 3.x, never decides a result.
//!
//! Skipped (saying so) when Prometheus is not installed, unless `RINGTAIL_REQUIRE_PEERS=1`.

mod promql_support;

use promql_support::*;
use tsdb::now_ms;

/// A tiny deterministic generator (fixed seed: the data is the same in every run).
struct Lcg(u64);

impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Jitter in 1..=999 ms, never 0, so no sample sits on a whole second.
    fn jitter_ms(&mut self) -> i64 {
        1 + (self.next_f64() * 998.0) as i64
    }
}

const SCRAPE_MS: i64 = 15_000;
const SPAN_MS: i64 = 60 * 60_000;

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// Every generated series over `[base, base + SPAN_MS)`.
fn generate(base: i64) -> Vec<SeriesData> {
    let mut rng = Lcg(42);
    let steps = SPAN_MS / SCRAPE_MS;
    let times: Vec<i64> = (0..steps).map(|k| base + k * SCRAPE_MS).collect();
    let mut out = Vec::new();
    for job in ["api", "web"] {
        for instance in ["0", "1", "2"] {
            for code in ["200", "500"] {
                let mut value = 1.0e6 + rng.next_f64() * 1.0e5;
                let reset_at = if instance == "1" { Some(steps / 3 + (rng.next_f64() * 20.0) as i64) } else { None };
                let speed = if code == "200" { 20.0 } else { 2.0 };
                let samples = times
                    .iter()
                    .enumerate()
                    .map(|(k, t)| {
                        if Some(k as i64) == reset_at {
                            value /= 2.0;
                        } else {
                            value += rng.next_f64() * speed;
                        }
                        (t + rng.jitter_ms(), value)
                    })
                    .collect();
                out.push((
                    labels(&[
                        ("__name__", "diff_requests_total"),
                        ("job", job),
                        ("instance", instance),
                        ("code", code),
                    ]),
                    samples,
                ));
            }
        }
        // Histogram buckets: cumulative counts, reset together halfway for `web`.
        let bounds = ["0.05", "0.1", "0.5", "1", "+Inf"];
        let mut counts = [1.0e6, 2.0e6, 3.0e6, 3.5e6, 3.6e6];
        let mut series: Vec<Vec<(i64, f64)>> = vec![Vec::new(); bounds.len()];
        for (k, t) in times.iter().enumerate() {
            if job == "web" && k as i64 == steps / 2 {
                counts.iter_mut().for_each(|c| *c /= 2.0);
            } else {
                let mut add = 0.0;
                for c in counts.iter_mut() {
                    add += rng.next_f64() * 10.0;
                    *c += add;
                }
            }
            let ts = t + rng.jitter_ms();
            for (b, c) in counts.iter().enumerate() {
                series[b].push((ts, *c));
            }
        }
        for (b, samples) in series.into_iter().enumerate() {
            out.push((
                labels(&[("__name__", "diff_latency_seconds_bucket"), ("job", job), ("le", bounds[b])]),
                samples,
            ));
        }
    }
    for room in ["a", "b", "c", "d"] {
        let mut value = 15.0 + rng.next_f64() * 10.0;
        let samples = times
            .iter()
            .map(|t| {
                value = (value + (rng.next_f64() - 0.5) * 2.0).clamp(5.0, 40.0);
                (t + rng.jitter_ms(), value)
            })
            .collect();
        out.push((labels(&[("__name__", "diff_temperature"), ("room", room)]), samples));
    }
    // A gap longer than the lookback (20 m .. 35 m) and a series ended by a staleness marker at
    // 30 m that comes back at 45 m.
    let gappy = times
        .iter()
        .filter(|t| **t - base < 20 * 60_000 || **t - base >= 35 * 60_000)
        .map(|t| (t + rng.jitter_ms(), 100.0 + rng.next_f64()))
        .collect();
    out.push((labels(&[("__name__", "diff_gappy"), ("kind", "gap")]), gappy));
    let mut stale: Vec<(i64, f64)> = Vec::new();
    for t in &times {
        let offset = t - base;
        if !(30 * 60_000..45 * 60_000).contains(&offset) {
            stale.push((t + rng.jitter_ms(), 50.0 + rng.next_f64() * 5.0));
        } else if offset == 30 * 60_000 {
            stale.push((t + rng.jitter_ms(), tsdb::stale_nan()));
        }
    }
    out.push((labels(&[("__name__", "diff_stale"), ("kind", "stale")]), stale));
    out
}

/// Writes the data in time order (Prometheus's head refuses samples far behind its newest one).
async fn write_all(url: &str, data: &[SeriesData], base: i64) {
    let slice_ms = 5 * 60_000;
    let mut from = base;
    while from < base + SPAN_MS + 60_000 {
        let part: Vec<SeriesData> = data
            .iter()
            .map(|(l, s)| (l.clone(), s.iter().copied().filter(|(t, _)| *t >= from && *t < from + slice_ms).collect()))
            .filter(|(_, s): &SeriesData| !s.is_empty())
            .collect();
        if !part.is_empty() {
            remote_write(url, &part).await;
        }
        from += slice_ms;
    }
}

/// The generated queries: every combination below, all inside Ringtail's language.
fn queries() -> Vec<String> {
    let counters = [
        "diff_requests_total",
        "diff_requests_total{job=\"api\"}",
        "diff_requests_total{code=~\"5..\"}",
        "diff_requests_total{instance!=\"0\",job!~\"web\"}",
    ];
    let gauges = ["diff_temperature", "diff_temperature{room=~\"a|c\"}", "diff_gappy", "diff_stale"];
    let mut q: Vec<String> = Vec::new();
    for c in counters {
        for f in ["rate", "increase", "irate", "resets", "changes", "count_over_time"] {
            for r in ["1m", "5m", "10m"] {
                q.push(format!("{f}({c}[{r}])"));
            }
        }
        q.push(format!("rate({c}[5m] offset 3m)"));
        q.push(format!("rate({c}[5m] offset -2m)"));
        q.push(format!("increase({c}[2m] @ end())"));
        q.push(format!("rate({c}[3m] @ start())"));
        q.push(format!("predict_linear({c}[10m], 3600)"));
    }
    for g in gauges {
        for f in [
            "delta",
            "idelta",
            "deriv",
            "avg_over_time",
            "min_over_time",
            "max_over_time",
            "sum_over_time",
            "count_over_time",
            "stddev_over_time",
            "stdvar_over_time",
            "present_over_time",
            "changes",
        ] {
            for r in ["2m", "10m"] {
                q.push(format!("{f}({g}[{r}])"));
            }
        }
        q.push(format!("quantile_over_time(0.3, {g}[10m])"));
        q.push(format!("quantile_over_time(0.9, {g}[5m])"));
        q.push(g.to_string());
        q.push(format!("{g} offset 7m"));
        q.push(format!("timestamp({g})"));
        // The regression's intercept is at the evaluation time, wherever `offset` puts the window.
        // (Not with `@` here: in a range query 2.42 selects the data up to the `@` time but slides
        // the window with the steps, so later steps see fewer samples, then none; Prometheus 3
        // and Ringtail keep the `@` window at every step.)
        q.push(format!("predict_linear({g}[10m], 600)"));
        q.push(format!("predict_linear({g}[5m] offset 3m, 120)"));
        q.push(format!("holt_winters({g}[10m], 0.3, 0.7)"));
        q.push(format!("holt_winters({g}[5m], 0.9, 0.1)"));
    }
    for f in ["sin", "cos", "tan", "atan", "asinh", "acosh", "deg", "rad"] {
        q.push(format!("{f}(diff_temperature)"));
    }
    for e in ["sinh", "cosh", "tanh"] {
        q.push(format!("{e}(diff_temperature / 10 - 2)"));
    }
    for f in ["abs", "ceil", "floor", "round", "sqrt", "exp", "ln", "log2", "log10", "sgn"] {
        q.push(format!("{f}(diff_temperature - 20)"));
    }
    for e in [
        "round(diff_temperature, 0.5)",
        "clamp(diff_temperature, 10, 20)",
        "clamp_min(diff_temperature, 20)",
        "clamp_max(diff_temperature, 20)",
        "-diff_temperature",
        "diff_temperature * 2 + 1",
        "diff_temperature / 3",
        "diff_temperature % 7",
        "diff_temperature ^ 0.5",
        "2 ^ 3 ^ 0.5 - diff_temperature",
        "diff_temperature > 20",
        "diff_temperature < bool 20",
        "20 >= diff_temperature",
        "diff_temperature != diff_temperature offset 1m",
        "diff_temperature == bool diff_temperature",
        "diff_temperature and diff_temperature{room=\"a\"}",
        "diff_temperature or diff_gappy",
        "diff_temperature unless diff_temperature{room=\"b\"}",
        "diff_temperature{room=\"a\"} + on() group_left diff_temperature{room=\"b\"}",
        "diff_temperature * ignoring(room) group_left sum(diff_temperature)",
        "sum by (job) (rate(diff_requests_total{code=\"500\"}[5m])) / sum by (job) (rate(diff_requests_total[5m]))",
        "rate(diff_requests_total[5m]) / on(job, instance) group_left sum by (job, instance) (rate(diff_requests_total[5m]))",
        "sum without (code) (rate(diff_requests_total[5m])) > bool 10",
        "vector(1)",
        "vector(time())",
        "scalar(sum(diff_temperature))",
        "sum(diff_temperature) * scalar(count(diff_temperature))",
        "absent(diff_nonexistent{job=\"x\"})",
        "absent(diff_temperature)",
        "absent_over_time(diff_nonexistent{a=\"b\"}[5m])",
        "absent_over_time(diff_gappy[5m])",
        "label_replace(diff_temperature, \"where\", \"room-$1\", \"room\", \"(.*)\")",
        "label_join(diff_requests_total, \"id\", \"/\", \"job\", \"instance\", \"code\")",
        "hour(timestamp(diff_temperature))",
        "minute(timestamp(diff_temperature))",
        "day_of_week(timestamp(diff_temperature))",
        "day_of_month(timestamp(diff_temperature))",
        "day_of_year(timestamp(diff_temperature))",
        "month(timestamp(diff_temperature))",
        "year(timestamp(diff_temperature))",
        "days_in_month(timestamp(diff_temperature))",
        "max_over_time(rate(diff_requests_total[1m])[10m:1m])",
        "avg_over_time(diff_temperature[5m:30s])",
        "min_over_time(sum by (job) (rate(diff_requests_total[2m]))[6m:20s] offset 1m)",
        "sum_over_time(diff_gappy[30m:1m])",
        "count_over_time((diff_temperature > 20)[10m:1m])",
        "asin(diff_temperature / 40)",
        "acos((diff_temperature - 20) / 20)",
        "atanh((diff_temperature - 20) / 25)",
        "deg(diff_temperature atan2 20)",
        "rad(-diff_temperature) + pi()",
        "pi()",
        "pi() atan2 -2",
        // `atan2` of a selector keeps `__name__` in 2.42 and drops it in Prometheus 3 (and
        // Ringtail), so its operands here carry no name already.
        "10 atan2 (diff_temperature - 20)",
        "(diff_temperature - 20) atan2 (diff_temperature offset 1m - 20)",
        "(diff_temperature{room=\"a\"} + 0) atan2 on() group_left() (diff_temperature{room=\"b\"} + 0)",
        "1 + diff_temperature atan2 2 ^ 3",
        "predict_linear(diff_temperature[10m], scalar(count(diff_temperature)) * 60)",
        "predict_linear(diff_temperature[10m:30s], 300)",
        "sum by (job) (predict_linear(diff_requests_total[5m], 600))",
        "holt_winters(diff_temperature[10m:1m], 0.5, 0.5)",
        "holt_winters(sum by (job) (rate(diff_requests_total[2m]))[20m:1m], 0.2, 0.4)",
    ] {
        q.push(e.to_string());
    }
    let aggs = ["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"];
    for a in aggs {
        q.push(format!("{a}(rate(diff_requests_total[5m]))"));
        q.push(format!("{a} by (job) (rate(diff_requests_total[5m]))"));
        q.push(format!("{a} without (instance) (diff_requests_total)"));
        q.push(format!("{a}(diff_temperature) by (room)"));
    }
    for k in ["1", "2", "5"] {
        q.push(format!("topk({k}, diff_temperature)"));
        q.push(format!("bottomk({k}, rate(diff_requests_total[5m]))"));
        q.push(format!("topk by (job) ({k}, rate(diff_requests_total[5m]))"));
    }
    for p in ["0", "0.5", "0.9", "1"] {
        q.push(format!("quantile({p}, diff_temperature)"));
        q.push(format!("quantile by (job) ({p}, rate(diff_requests_total[5m]))"));
    }
    q.push("count_values(\"value\", round(diff_temperature))".into());
    q.push("count_values by (room) (\"v\", ceil(diff_temperature / 5))".into());
    for quantile in ["0.1", "0.5", "0.9", "0.99"] {
        q.push(format!("histogram_quantile({quantile}, sum by (le) (rate(diff_latency_seconds_bucket[5m])))"));
        q.push(format!("histogram_quantile({quantile}, sum by (le, job) (rate(diff_latency_seconds_bucket[2m])))"));
        q.push(format!("histogram_quantile({quantile}, rate(diff_latency_seconds_bucket[10m]))"));
    }
    q
}

async fn query(url: &str, path: &str, params: &[(&str, String)]) -> Result<Result_, String> {
    let (status, body) = get_json(url, path, params).await;
    if status != 200 || body["status"] != "success" {
        return Err(format!("{status}: {body}"));
    }
    Ok(result_of(&body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringtail_agrees_with_prometheus_on_generated_queries() {
    if !peer::peers_installed("ringtail_agrees_with_prometheus_on_generated_queries", &[peer::PROMETHEUS]) {
        return;
    }
    let prometheus = start_prometheus().await;
    let ringtail = start_ringtail(&[]).await;
    // The previous whole hour: in the past for both stores, on whole minutes.
    let base = (now_ms() / 3_600_000 - 2) * 3_600_000;
    let data = generate(base);
    write_all(&prometheus.url, &data, base).await;
    write_all(&ringtail.url, &data, base).await;

    // Evaluation times 7 s past a minute: subquery steps (which divide a minute) never meet a
    // window edge either.
    let at = |minutes: i64| base + minutes * 60_000 + 7_000;
    let instants = [at(12), at(31), at(44), at(59), at(64)];
    let queries = queries();
    assert!(queries.len() >= 200, "only {} queries", queries.len());
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut non_empty = 0;
    let mut count_non_empty = |r: &Result<Result_, String>| {
        if matches!(r, Ok(Result_::Series(s)) if !s.is_empty()) || matches!(r, Ok(Result_::Scalar(_))) {
            non_empty += 1;
        }
    };
    for q in &queries {
        for t in instants {
            let params = [("query", q.clone()), ("time", format!("{}", t as f64 / 1000.0))];
            let want = query(&prometheus.url, "/api/v1/query", &params).await;
            let got = query(&ringtail.url, "/api/v1/query", &params).await;
            compared += 1;
            count_non_empty(&got);
            match (&want, &got) {
                (Ok(w), Ok(g)) => {
                    if let Some(d) = difference(w, g, 1e-9) {
                        failures.push(format!("instant {q} @ {t}: {d}"));
                    }
                }
                (Err(w), Err(_)) => failures.push(format!("instant {q} @ {t}: both failed; Prometheus: {w}")),
                (w, g) => failures.push(format!("instant {q} @ {t}: Prometheus {w:?} vs Ringtail {g:?}")),
            }
        }
        let params = [
            ("query", q.clone()),
            ("start", format!("{}", at(5) as f64 / 1000.0)),
            ("end", format!("{}", at(62) as f64 / 1000.0)),
            ("step", "60".to_string()),
        ];
        let want = query(&prometheus.url, "/api/v1/query_range", &params).await;
        let got = query(&ringtail.url, "/api/v1/query_range", &params).await;
        compared += 1;
        count_non_empty(&got);
        match (&want, &got) {
            (Ok(w), Ok(g)) => {
                if let Some(d) = difference(w, g, 1e-9) {
                    failures.push(format!("range {q}: {d}"));
                }
            }
            (w, g) => failures.push(format!("range {q}: Prometheus {w:?} vs Ringtail {g:?}")),
        }
    }
    // The comparison means something only if most queries return data.
    assert!(non_empty * 10 >= compared * 8, "only {non_empty} of {compared} results hold data");
    eprintln!("{compared} comparisons of {} queries, {non_empty} with data", queries.len());
    assert!(
        failures.is_empty(),
        "{} of {compared} comparisons differ ({} queries):\n{}",
        failures.len(),
        queries.len(),
        failures.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}
