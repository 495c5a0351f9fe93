//! `mathfns` is the numeric core of PromQL's functions, on plain sample slices: Kahan-Neumaier
//! summation, Prometheus's rate extrapolation (`extrapolatedRate` in `promql/functions.go`),
//! linear regression (`deriv`, `predict_linear`), Holt's double exponential smoothing
//! (`holt_winters`), quantiles and the median absolute deviation, and the classic-bucket
//! `histogram_quantile` (`promql/quantile.go`).
//! The formulas follow Prometheus 3 step by step so results agree to the last bits that matter.

/// One `(timestamp ms, value)` point.
pub type Point = (i64, f64);

/// Adds `inc` to a Kahan-Neumaier sum `(sum, c)`.
#[inline]
pub fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// `rate`/`increase`/`delta` of `points` for the window `(range_start_ms, range_end_ms]`.
/// `None` when fewer than two points.
pub fn extrapolated_rate(
    points: &[Point],
    range_start_ms: i64,
    range_end_ms: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    let mut timing = WindowTiming::default();
    extrapolated_rate_timed(points, range_start_ms, range_end_ms, is_counter, is_rate, true, &mut timing)
}

/// Where a window's points lie in it, in whole milliseconds: everything of the extrapolation that
/// does not depend on the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WindowShape {
    to_start_ms: i64,
    to_end_ms: i64,
    sampled_ms: i64,
    points: usize,
    range_ms: i64,
    is_rate: bool,
}

/// The extrapolation's durations and factor for the last [`WindowShape`] seen: a series scraped
/// at a steady interval, read by a range query whose step is a multiple of it, puts its points at
/// the same places in window after window, and these are the rate's divisions. The same integer
/// inputs give the same floating-point results, so reusing them changes no bit.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowTiming {
    shape: Option<WindowShape>,
    /// Seconds from the window's start to the first point, or half the average interval when the
    /// series is taken to start inside the window (before the zero-crossing limit).
    duration_to_start: f64,
    /// The same at the window's end.
    duration_to_end: f64,
    sampled_interval: f64,
    /// `(sampled + to_start + to_end) / sampled`, divided by the range in seconds for a rate.
    factor: f64,
}

impl WindowTiming {
    fn of(shape: WindowShape) -> WindowTiming {
        let mut duration_to_start = shape.to_start_ms as f64 / 1000.0;
        let mut duration_to_end = shape.to_end_ms as f64 / 1000.0;
        let sampled_interval = shape.sampled_ms as f64 / 1000.0;
        let average_between_samples = sampled_interval / (shape.points - 1) as f64;
        // Extrapolate to a boundary only when a sample is within 110 % of the average spacing of
        // it; otherwise assume the series starts/ends half an interval beyond the outermost sample.
        let threshold = average_between_samples * 1.1;
        if duration_to_start >= threshold {
            duration_to_start = average_between_samples / 2.0;
        }
        if duration_to_end >= threshold {
            duration_to_end = average_between_samples / 2.0;
        }
        let factor = extrapolation_factor(shape, sampled_interval, duration_to_start, duration_to_end);
        WindowTiming { shape: Some(shape), duration_to_start, duration_to_end, sampled_interval, factor }
    }
}

fn extrapolation_factor(shape: WindowShape, sampled: f64, to_start: f64, to_end: f64) -> f64 {
    let mut factor = (sampled + to_start + to_end) / sampled;
    if shape.is_rate {
        factor /= shape.range_ms as f64 / 1000.0;
    }
    factor
}

/// [`extrapolated_rate`], reusing `timing` when this window's points lie where the previous
/// window's did (one `WindowTiming` per walk over a range query's steps), and told whether the
/// window holds a counter reset (a value below its predecessor): without one, the correction pass
/// over the points is skipped (it would add nothing: a first value below zero only adds zero).
#[allow(clippy::too_many_arguments)]
pub fn extrapolated_rate_timed(
    points: &[Point],
    range_start_ms: i64,
    range_end_ms: i64,
    is_counter: bool,
    is_rate: bool,
    has_resets: bool,
    timing: &mut WindowTiming,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (first_t, first_v) = points[0];
    let (last_t, last_v) = points[points.len() - 1];
    let mut result = last_v - first_v;
    if is_counter && has_resets {
        let mut last_value = 0.0;
        for &(_, v) in points {
            if v < last_value {
                result += last_value;
            }
            last_value = v;
        }
    }
    let shape = WindowShape {
        to_start_ms: first_t - range_start_ms,
        to_end_ms: range_end_ms - last_t,
        sampled_ms: last_t - first_t,
        points: points.len(),
        range_ms: range_end_ms - range_start_ms,
        is_rate,
    };
    if timing.shape != Some(shape) {
        *timing = WindowTiming::of(shape);
    }
    // A counter cannot go below zero: never extrapolate past where it would reach zero. That
    // point is `sampled × first / result` before the first sample; when `first ≥ 2 × result` it
    // is at least twice the sampled interval away, farther than `duration_to_start` can be (at
    // most 1.1 average intervals, or half of one), so the division is skipped.
    if is_counter && result > 0.0 && first_v >= 0.0 && first_v < 2.0 * result {
        let duration_to_zero = timing.sampled_interval * (first_v / result);
        if duration_to_zero < timing.duration_to_start {
            let factor = extrapolation_factor(shape, timing.sampled_interval, duration_to_zero, timing.duration_to_end);
            return Some(result * factor);
        }
    }
    Some(result * timing.factor)
}

/// `irate` (`is_rate`) or `idelta` from the last two points.
pub fn instant_value(points: &[Point], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (prev_t, prev_v) = points[points.len() - 2];
    let (last_t, last_v) = points[points.len() - 1];
    let mut result = last_v - prev_v;
    if is_rate && last_v < prev_v {
        // Counter reset: the counter restarted from zero.
        result = last_v;
    }
    if is_rate {
        let interval_s = (last_t - prev_t) as f64 / 1000.0;
        if interval_s == 0.0 {
            return None;
        }
        result /= interval_s;
    }
    Some(result)
}

/// Least-squares slope and intercept at `intercept_ms` (Prometheus's `linearRegression`).
pub fn linear_regression(points: &[Point], intercept_ms: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = points[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in points.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_ms) as f64 / 1000.0;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Mean of `values` with Kahan summation, falling back to an incremental mean on overflow
/// (Prometheus's `avg_over_time`).
pub fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut mean, mut count, mut c) = (0.0, 0.0, 0.0, 0.0);
    let mut incremental = false;
    for v in values {
        count += 1.0;
        if !incremental {
            let (new_sum, new_c) = kahan_inc(v, sum, c);
            if count == 1.0 || !new_sum.is_infinite() {
                (sum, c) = (new_sum, new_c);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        let corrected = mean + c;
        (mean, c) = kahan_inc(v / count - corrected / count, mean, c);
    }
    if incremental {
        mean + c
    } else {
        (sum + c) / count
    }
}

/// Population variance with Kahan-compensated Welford updates (`stdvar_over_time`).
pub fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for v in values {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// The `q`-quantile of `values` (sorted in place), interpolating between neighbours.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// The median absolute deviation of `values` (`mad_over_time`): the median of the distances
/// from the median. A NaN among the values makes it NaN (as in Prometheus 3). `scratch` is
/// reused for the values, then the distances.
pub fn median_absolute_deviation(values: impl Iterator<Item = f64>, scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend(values);
    if scratch.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let median = quantile(0.5, scratch);
    scratch.iter_mut().for_each(|v| *v = (*v - median).abs());
    quantile(0.5, scratch)
}

/// Holt's linear (double exponential) smoothing of `values` with smoothing factor `sf` and
/// trend factor `tf` (Prometheus's `holt_winters`, called `double_exponential_smoothing` in
/// Prometheus 3): the last smoothed value, `None` with fewer than two values. The level starts
/// at the first value and the trend at the first difference; the trend is updated from the
/// second step on, before each level update.
pub fn holt_winters(mut values: impl Iterator<Item = f64>, sf: f64, tf: f64) -> Option<f64> {
    let first = values.next()?;
    let second = values.next()?;
    let (mut previous, mut level, mut trend) = (0.0, first, second - first);
    let mut step = |value: f64, first_step: bool| {
        if !first_step {
            trend = tf * (level - previous) + (1.0 - tf) * trend;
        }
        let next = sf * value + (1.0 - sf) * (level + trend);
        previous = level;
        level = next;
    };
    step(second, true);
    for v in values {
        step(v, false);
    }
    Some(level)
}

/// One classic histogram bucket: upper bound (`le`) and cumulative count.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    pub upper_bound: f64,
    pub count: f64,
}

/// Differences this small relative to the counts are float noise and silently evened out.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// The outcome of [`bucket_quantile`]: the value and whether the buckets had to be made monotonic.
pub struct BucketQuantile {
    pub value: f64,
    pub forced_monotonic: bool,
}

/// `histogram_quantile` over classic buckets (`bucketQuantile` in Prometheus's `quantile.go`).
pub fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> BucketQuantile {
    let plain = |value| BucketQuantile { value, forced_monotonic: false };
    if q.is_nan() {
        return plain(f64::NAN);
    }
    if q < 0.0 {
        return plain(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return plain(f64::INFINITY);
    }
    buckets.sort_by(|a, b| a.upper_bound.partial_cmp(&b.upper_bound).unwrap_or(std::cmp::Ordering::Equal));
    match buckets.last() {
        Some(b) if b.upper_bound == f64::INFINITY => {}
        _ => return plain(f64::NAN),
    }
    coalesce_buckets(buckets);
    let forced_monotonic = ensure_monotonic(buckets);
    let with = |value| BucketQuantile { value, forced_monotonic };
    if buckets.len() < 2 {
        return with(f64::NAN);
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return with(f64::NAN);
    }
    let mut rank = q * observations;
    let b = buckets[..buckets.len() - 1].partition_point(|bucket| bucket.count < rank);
    if b == buckets.len() - 1 {
        return with(buckets[buckets.len() - 2].upper_bound);
    }
    if b == 0 && buckets[0].upper_bound <= 0.0 {
        return with(buckets[0].upper_bound);
    }
    let mut bucket_start = 0.0;
    let bucket_end = buckets[b].upper_bound;
    let mut count = buckets[b].count;
    if b > 0 {
        bucket_start = buckets[b - 1].upper_bound;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    with(bucket_start + (bucket_end - bucket_start) * (rank / count))
}

fn coalesce_buckets(buckets: &mut Vec<Bucket>) {
    let mut out = 0;
    for i in 1..buckets.len() {
        if buckets[i].upper_bound == buckets[out].upper_bound {
            buckets[out].count += buckets[i].count;
        } else {
            out += 1;
            buckets[out] = buckets[i];
        }
    }
    buckets.truncate(out + 1);
}

fn ensure_monotonic(buckets: &mut [Bucket]) -> bool {
    let mut forced = false;
    let mut prev = buckets[0].count;
    for bucket in buckets.iter_mut().skip(1) {
        let curr = bucket.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) {
            bucket.count = prev;
            continue;
        }
        if curr < prev {
            bucket.count = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    forced
}

/// Relative float comparison as Prometheus's `util/almost.Equal`.
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Prometheus's `extrapolatedRate` (`promql/functions.go`) transcribed line by line, with
    /// every division it makes: the oracle for the reused timing and the skipped zero-crossing.
    fn prometheus_extrapolated_rate(points: &[Point], start: i64, end: i64, is_counter: bool, is_rate: bool) -> f64 {
        let (first_t, first_v) = points[0];
        let (last_t, last_v) = points[points.len() - 1];
        let mut result = last_v - first_v;
        if is_counter {
            let mut last_value = 0.0;
            for &(_, v) in points {
                if v < last_value {
                    result += last_value;
                }
                last_value = v;
            }
        }
        let mut duration_to_start = (first_t - start) as f64 / 1000.0;
        let mut duration_to_end = (end - last_t) as f64 / 1000.0;
        let sampled_interval = (last_t - first_t) as f64 / 1000.0;
        let average_duration_between_samples = sampled_interval / (points.len() - 1) as f64;
        let extrapolation_threshold = average_duration_between_samples * 1.1;
        if duration_to_start >= extrapolation_threshold {
            duration_to_start = average_duration_between_samples / 2.0;
        }
        if is_counter && result > 0.0 && first_v >= 0.0 {
            let duration_to_zero = sampled_interval * (first_v / result);
            if duration_to_zero < duration_to_start {
                duration_to_start = duration_to_zero;
            }
        }
        if duration_to_end >= extrapolation_threshold {
            duration_to_end = average_duration_between_samples / 2.0;
        }
        let mut factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
        if is_rate {
            factor /= (end - start) as f64 / 1000.0;
        }
        result * factor
    }

    proptest::proptest! {
        /// One timing reused over every window of a range query's walk gives Prometheus's bits,
        /// whatever the spacing (steady, jittered, gaps), the values (counters from zero or far
        /// from it, resets, NaN) and the range.
        #[test]
        fn reused_timing_gives_prometheus_bits(
            interval_ms in 1_000i64..60_000,
            jitter_ms in prop_oneof![Just(vec![0i64; 80]), proptest::collection::vec(0i64..3_000, 80)],
            gaps in proptest::collection::vec(proptest::bool::weighted(0.1), 80),
            start_value in prop_oneof![Just(0.0), 0.0f64..10.0, 1e3f64..1e9],
            increments in proptest::collection::vec(prop_oneof![
                8 => 0.0f64..100.0,
                1 => Just(-50.0),
                1 => Just(f64::NAN),
            ], 80),
            range_ms in 5_000i64..600_000,
            steps_per_interval in 0i64..4,
            any_step_ms in 1_000i64..120_000,
            is_counter in proptest::bool::ANY,
            is_rate in proptest::bool::ANY,
        ) {
            let mut points: Vec<Point> = Vec::new();
            let mut value = start_value;
            for (i, ((jitter, gap), inc)) in jitter_ms.iter().zip(&gaps).zip(&increments).enumerate() {
                value = if *inc < 0.0 { value / 3.0 } else { value + inc };
                if !gap {
                    points.push((i as i64 * interval_ms + jitter, value));
                }
            }
            points.sort_by_key(|p| p.0);
            points.dedup_by_key(|p| p.0);
            // A step that is a multiple of the interval puts the points of a steady series at the
            // same places in every window: the timing is reused.
            let step_ms = if steps_per_interval == 0 { any_step_ms } else { steps_per_interval * interval_ms };
            let mut timing = WindowTiming::default();
            let end_ms = 80 * interval_ms;
            let mut t = range_ms;
            while t <= end_ms {
                let lo = t - range_ms;
                let window: Vec<Point> = points.iter().copied().filter(|p| p.0 > lo && p.0 <= t).collect();
                let got = extrapolated_rate_timed(&window, lo, t, is_counter, is_rate, true, &mut timing);
                if window.len() < 2 {
                    prop_assert!(got.is_none());
                } else {
                    let want = prometheus_extrapolated_rate(&window, lo, t, is_counter, is_rate);
                    let got = got.unwrap_or(f64::INFINITY);
                    prop_assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                        "window ending {t}: {got:?} != {want:?} ({window:?})");
                }
                t += step_ms;
            }
        }
    }

    #[test]
    fn rate_of_a_steady_counter_extrapolates_to_the_window() {
        let points: Vec<Point> = (1..=10).map(|i| (i * 15_000, i as f64 * 15.0)).collect();
        let r = extrapolated_rate(&points, 0, 150_000, true, true).unwrap();
        assert!((r - 1.0).abs() < 1e-12, "{r}");
    }

    #[test]
    fn counter_reset_adds_the_value_before_the_reset() {
        let points = vec![(10_000, 5.0), (20_000, 10.0), (30_000, 2.0), (40_000, 4.0)];
        let inc = extrapolated_rate(&points, 5_000, 45_000, true, false).unwrap();
        // raw increase 10 - 5 + 4 = 9 over 30 s, extrapolated by 5 s at each end.
        assert!((inc - 9.0 * 40.0 / 30.0).abs() < 1e-9, "{inc}");
    }

    #[test]
    fn irate_uses_last_two_points() {
        assert_eq!(instant_value(&[(0, 1.0), (10_000, 3.0), (20_000, 8.0)], true), Some(0.5));
        assert_eq!(instant_value(&[(0, 5.0), (10_000, 1.0)], true), Some(0.1));
        assert_eq!(instant_value(&[(0, 5.0), (10_000, 1.0)], false), Some(-4.0));
    }

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile(0.5, &mut [1.0, 3.0, 2.0, 4.0]), 2.5);
        assert_eq!(quantile(2.0, &mut [1.0]), f64::INFINITY);
    }

    #[test]
    fn bucket_quantile_matches_hand_computation() {
        let mut buckets = vec![
            Bucket { upper_bound: 0.1, count: 10.0 },
            Bucket { upper_bound: 0.5, count: 30.0 },
            Bucket { upper_bound: f64::INFINITY, count: 40.0 },
        ];
        let r = bucket_quantile(0.5, &mut buckets);
        assert!((r.value - 0.3).abs() < 1e-12);
        assert!(!r.forced_monotonic);
    }

    #[test]
    fn mean_survives_overflow() {
        let m = mean([f64::MAX, f64::MAX, f64::MAX].into_iter());
        assert!((m - f64::MAX).abs() / f64::MAX < 1e-12);
    }

    #[test]
    fn regression_of_a_line() {
        let (slope, intercept) = linear_regression(&[(0, 1.0), (1000, 3.0), (2000, 5.0)], 0);
        assert!((slope - 2.0).abs() < 1e-12 && (intercept - 1.0).abs() < 1e-12);
    }
}
