//! `Quantity` is a metric value as the Kubernetes metrics APIs carry it: a `resource.Quantity`
//! string such as `"3033m"`, `"55"` or `"1500k"`, formatted exactly as Go's
//! `k8s.io/apimachinery/pkg/api/resource` `Quantity.String()` formats a `DecimalSI` quantity.
//!
//! Ringtail keeps a value as a whole number of thousandths (milli-units), because the HPA reads
//! custom metrics with `MilliValue()`. A float becomes milli-units rounded *up* (towards +∞), so
//! `MilliValue()` of the served string is never below the float: `3.0331` is served as `"3034m"`.
//! Floats that are already a whole number of milli-units up to float noise (`3.033 * 1000 =
//! 3032.9999999999995`) keep that number. Values beyond ±9.2e15 saturate at the `i64` milli range.
//! NaN and ±Inf have no Quantity: [`Quantity::from_f64`] returns `None` and the caller leaves the
//! object out of the answer (see `provider`), so a client never sees a made-up number.

use std::fmt;

/// A metric value in milli-units, formatted like Kubernetes' `DecimalSI` quantities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    milli: i64,
}

/// Why a quantity string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {text:?}: {reason}")]
pub struct QuantityError {
    pub text: String,
    pub reason: &'static str,
}

/// Relative slack under which `value * 1000` counts as already whole (float noise, not data).
const WHOLE_MILLI_EPSILON: f64 = 1e-9;

impl Quantity {
    /// A quantity of exactly `milli` thousandths.
    pub fn from_milli(milli: i64) -> Self {
        Quantity { milli }
    }

    /// The quantity for `value`, rounded up to a whole milli-unit; `None` for NaN and ±Inf.
    pub fn from_f64(value: f64) -> Option<Self> {
        if !value.is_finite() {
            return None;
        }
        let scaled = value * 1000.0;
        let nearest = scaled.round();
        let milli_f = if (scaled - nearest).abs() <= WHOLE_MILLI_EPSILON * nearest.abs().max(1.0) {
            nearest
        } else {
            scaled.ceil()
        };
        // `as` saturates at the i64 range, which is the documented behaviour for huge values.
        Some(Quantity { milli: milli_f as i64 })
    }

    /// The value in thousandths, as Go's `MilliValue()` returns it.
    pub fn milli_value(self) -> i64 {
        self.milli
    }

    /// The value as a float (exact for anything the HPA can tell apart).
    pub fn as_f64(self) -> f64 {
        self.milli as f64 / 1000.0
    }

    /// Parses a Kubernetes quantity string (`"1500k"`, `"3033m"`, `"2Gi"`, `"1e3"`), rounding
    /// up to milli-units as Go's `MilliValue()` does.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let err = |reason| QuantityError { text: text.to_string(), reason };
        let bytes = text.as_bytes();
        let mut pos = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                pos += 1;
                true
            }
            Some(b'+') => {
                pos += 1;
                false
            }
            Some(_) => false,
            None => return Err(err("empty")),
        };
        // Mantissa as an integer with `frac_digits` digits after the point.
        let mut mantissa: i128 = 0;
        let mut frac_digits: i32 = 0;
        let mut seen_digit = false;
        let mut seen_point = false;
        while pos < bytes.len() {
            match bytes[pos] {
                b'0'..=b'9' => {
                    if mantissa > i128::MAX / 100 {
                        return Err(err("too many digits"));
                    }
                    mantissa = mantissa * 10 + i128::from(bytes[pos] - b'0');
                    if seen_point {
                        frac_digits += 1;
                    }
                    seen_digit = true;
                }
                b'.' if !seen_point => seen_point = true,
                _ => break,
            }
            pos += 1;
        }
        if !seen_digit {
            return Err(err("no digits"));
        }
        let (binary_power, decimal_exponent) = match &text[pos..] {
            "" => (0, 0),
            "n" => (0, -9),
            "u" => (0, -6),
            "m" => (0, -3),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            "Ki" => (10, 0),
            "Mi" => (20, 0),
            "Gi" => (30, 0),
            "Ti" => (40, 0),
            "Pi" => (50, 0),
            "Ei" => (60, 0),
            suffix if suffix.starts_with(['e', 'E']) => {
                let exp: i32 = suffix[1..].parse().map_err(|_| err("bad exponent"))?;
                if !(-30..=30).contains(&exp) {
                    return Err(err("exponent out of range"));
                }
                (0, exp)
            }
            _ => return Err(err("unknown suffix")),
        };
        // milli = mantissa * 2^binary_power * 10^(decimal_exponent - frac_digits + 3), rounded up.
        let mut numerator = mantissa.checked_shl(binary_power).ok_or_else(|| err("too large"))?;
        let mut denominator: i128 = 1;
        let exp10 = decimal_exponent - frac_digits + 3;
        for _ in 0..exp10.max(0) {
            numerator = numerator.checked_mul(10).ok_or_else(|| err("too large"))?;
        }
        for _ in 0..(-exp10).max(0) {
            denominator = denominator.checked_mul(10).ok_or_else(|| err("too many fractional digits"))?;
        }
        let signed = if negative { -numerator } else { numerator };
        let milli = signed.div_euclid(denominator) + i128::from(signed.rem_euclid(denominator) != 0);
        let milli = i64::try_from(milli).map_err(|_| err("out of range"))?;
        Ok(Quantity { milli })
    }
}

impl Quantity {
    /// Go's `CanonicalizeBytes` for `DecimalSI`: strip trailing zeros into the exponent, move the
    /// exponent down to a multiple of three, and name it with an SI suffix. Returns the sign, the
    /// mantissa's magnitude and the suffix; `Err(exponent)` for an exponent with no SI name
    /// (unreachable for i64 milli-units, whose exponent stays in -3..=15; Go writes `eN` then).
    fn canonical(self) -> (bool, u64, Result<&'static str, i32>) {
        if self.milli == 0 {
            return (false, 0, Ok(""));
        }
        // Every scaling below multiplies back at most the factors of ten divided out, so the
        // mantissa never exceeds |milli| and u64 holds it (even for i64::MIN).
        let mut mantissa = self.milli.unsigned_abs();
        let mut exponent: i32 = -3;
        while mantissa >= 10 && mantissa.is_multiple_of(10) {
            mantissa /= 10;
            exponent += 1;
        }
        match exponent.rem_euclid(3) {
            1 => {
                mantissa *= 10;
                exponent -= 1;
            }
            2 => {
                mantissa *= 100;
                exponent -= 2;
            }
            _ => {}
        }
        let suffix = match exponent {
            -3 => Ok("m"),
            0 => Ok(""),
            3 => Ok("k"),
            6 => Ok("M"),
            9 => Ok("G"),
            12 => Ok("T"),
            15 => Ok("P"),
            18 => Ok("E"),
            other => Err(other),
        };
        (self.milli < 0, mantissa, suffix)
    }

    /// Appends the quantity's string (as [`fmt::Display`] writes it) to `out`, without the
    /// formatting machinery: the hot path of a 1 000-item `MetricValueList`.
    pub fn push_to(self, out: &mut Vec<u8>) {
        let (negative, mantissa, suffix) = self.canonical();
        if negative {
            out.push(b'-');
        }
        out.extend_from_slice(itoa::Buffer::new().format(mantissa).as_bytes());
        match suffix {
            Ok(suffix) => out.extend_from_slice(suffix.as_bytes()),
            Err(exponent) => {
                out.push(b'e');
                out.extend_from_slice(itoa::Buffer::new().format(exponent).as_bytes());
            }
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (negative, mantissa, suffix) = self.canonical();
        let sign = if negative { "-" } else { "" };
        match suffix {
            Ok(suffix) => write!(f, "{sign}{mantissa}{suffix}"),
            Err(exponent) => write!(f, "{sign}{mantissa}e{exponent}"),
        }
    }
}

impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Quantity::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// CPU usage as metrics-server serves it: whole nanocores (`resource.NewScaledQuantity(n, -9)`),
/// printed canonically — `"123456789n"`, `"250m"`, `"2"`. `None` for NaN and ±Inf.
pub fn cpu_usage(cores: f64) -> Option<String> {
    let nanocores = nearest_i128(cores * 1e9)?;
    Some(decimal_si(nanocores, -9))
}

/// Memory usage as metrics-server serves it: whole bytes as a `BinarySI` quantity printed
/// canonically — `"5678Ki"`, `"1Mi"`, `"1500"` (not a multiple of 1024), `"1k"` (under 1024
/// Go prints the decimal form). `None` for NaN and ±Inf.
pub fn memory_usage(bytes: f64) -> Option<String> {
    let bytes = nearest_i128(bytes)?;
    if bytes.abs() < 1024 {
        return Some(decimal_si(bytes, 0));
    }
    let mut mantissa = bytes;
    let mut power = 0;
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    while power < SUFFIXES.len() - 1 && mantissa % 1024 == 0 {
        mantissa /= 1024;
        power += 1;
    }
    Some(format!("{mantissa}{}", SUFFIXES[power]))
}

/// `value` rounded to the nearest whole number, saturating at the `i64` range Go's quantities hold.
fn nearest_i128(value: f64) -> Option<i128> {
    value.is_finite().then(|| value.round().clamp(i64::MIN as f64, i64::MAX as f64) as i128)
}

/// Go's canonical `DecimalSI` text of `mantissa × 10^exponent` (`exponent` a multiple of 3):
/// trailing zeros move into the exponent three at a time.
fn decimal_si(mut mantissa: i128, mut exponent: i32) -> String {
    if mantissa == 0 {
        return "0".to_string();
    }
    while exponent < 18 && mantissa % 1000 == 0 {
        mantissa /= 1000;
        exponent += 3;
    }
    let suffix = match exponent {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    format!("{mantissa}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(value: f64) -> String {
        Quantity::from_f64(value).map(|q| q.to_string()).unwrap_or_else(|| "none".into())
    }

    #[test]
    fn usage_formats_like_metrics_server() {
        // resource.NewScaledQuantity(n, -9).String() and resource.NewQuantity(b, BinarySI).String().
        assert_eq!(cpu_usage(0.123456789).as_deref(), Some("123456789n"));
        assert_eq!(cpu_usage(0.25).as_deref(), Some("250m"));
        assert_eq!(cpu_usage(1.5).as_deref(), Some("1500m"));
        assert_eq!(cpu_usage(2.0).as_deref(), Some("2"));
        assert_eq!(cpu_usage(0.000001).as_deref(), Some("1u"));
        assert_eq!(cpu_usage(0.0).as_deref(), Some("0"));
        assert_eq!(cpu_usage(f64::NAN), None);
        assert_eq!(memory_usage(5_814_272.0).as_deref(), Some("5678Ki"));
        assert_eq!(memory_usage(1_048_576.0).as_deref(), Some("1Mi"));
        assert_eq!(memory_usage(1500.0).as_deref(), Some("1500"));
        assert_eq!(memory_usage(1000.0).as_deref(), Some("1k"));
        assert_eq!(memory_usage(512.4).as_deref(), Some("512"));
        assert_eq!(memory_usage(0.0).as_deref(), Some("0"));
        assert_eq!(memory_usage(f64::INFINITY), None);
    }

    #[test]
    fn formats_like_go_decimal_si() {
        // Expected strings are what `resource.NewMilliQuantity(m, DecimalSI).String()` prints.
        let cases = [
            (0, "0"),
            (3033, "3033m"),
            (i64::MAX, "9223372036854775807m"),
            (i64::MIN, "-9223372036854775808m"),
            (55_000, "55"),
            (1_500_000_000, "1500k"),
            (1_000_000, "1k"),
            (2_500_000, "2500"),
            (1_234_567_000, "1234567"),
            (1_234_000_000, "1234k"),
            (500, "500m"),
            (1_500, "1500m"),
            (10, "10m"),
            (100, "100m"),
            (-5_000, "-5"),
            (-1_500, "-1500m"),
            (1_000_000_000_000, "1G"),
            (10_000_000, "10k"),
            (100_000_000, "100k"),
            (120_000, "120"),
            (i64::MAX, "9223372036854775807m"),
        ];
        for (milli, want) in cases {
            assert_eq!(Quantity::from_milli(milli).to_string(), want, "milli={milli}");
            let mut pushed = Vec::new();
            Quantity::from_milli(milli).push_to(&mut pushed);
            assert_eq!(String::from_utf8(pushed).unwrap(), want, "push_to, milli={milli}");
        }
    }

    #[test]
    fn floats_round_up_to_milli_but_keep_exact_values() {
        assert_eq!(show(3.033), "3033m");
        assert_eq!(show(3.0331), "3034m");
        assert_eq!(show(0.0001), "1m");
        assert_eq!(show(-0.0001), "0");
        assert_eq!(show(55.0), "55");
        assert_eq!(show(1_500_000.0), "1500k");
        assert_eq!(show(0.1 + 0.2), "300m");
        assert_eq!(show(f64::NAN), "none");
        assert_eq!(show(f64::INFINITY), "none");
        assert_eq!(show(f64::NEG_INFINITY), "none");
        assert_eq!(Quantity::from_f64(1e300).map(|q| q.milli_value()), Some(i64::MAX));
    }

    #[test]
    fn parse_rounds_up_like_milli_value() {
        let cases = [
            ("3033m", 3033),
            ("55", 55_000),
            ("1500k", 1_500_000_000),
            ("1.5", 1_500),
            ("1Ki", 1_024_000),
            ("1e3", 1_000_000),
            ("100u", 1),
            ("1n", 1),
            ("-1n", 0),
            ("0", 0),
            ("+2", 2_000),
            ("3.0331", 3034),
        ];
        for (text, want) in cases {
            assert_eq!(Quantity::parse(text).map(|q| q.milli_value()), Ok(want), "{text}");
        }
        for bad in ["", "k", "1x", "1.2.3", "--1", "1e99"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_then_parse_round_trips() {
        for milli in [1, 7, 999, 1000, 1001, 123_456_789, -42, 10_i64.pow(15), 3_000_000_000_000_000] {
            let quantity = Quantity::from_milli(milli);
            assert_eq!(Quantity::parse(&quantity.to_string()), Ok(quantity), "{milli}");
        }
    }
}
