//! `Value` is what a query returns to its caller: a scalar, a string, an instant vector of
//! [`InstantSample`]s or a matrix of [`RangeSeries`], with the [`Annotations`] the evaluation
//! produced. A leaf module: the evaluator's own intermediate values live in `eval`.

use tsdb::Labels;

/// A sample value as Prometheus writes it in messages and JSON (`1.5`, `+Inf`, `-Inf`, `NaN`;
/// shortest round-trip digits, never an exponent, as Go's `FormatFloat(v, 'f', -1, 64)`).
pub fn format_value(v: f64) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

/// Appends `v` to `out` as [`format_value`] writes it, without allocating: the JSON writers call
/// it once per point (a 1 h range query over 1 000 series writes 241 000 of them).
pub fn write_value(out: &mut String, v: f64) {
    /// Integral values below this are written with integer formatting (exact: < 2^53).
    const EXACT_INTEGER_LIMIT: f64 = 1e15;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() < EXACT_INTEGER_LIMIT && !(v == 0.0 && v.is_sign_negative()) {
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else if (PLAIN_SHORTEST_FROM..EXACT_INTEGER_LIMIT).contains(&v.abs()) {
        // ryu writes these in plain notation already ("0.000125", "12.5"), and a non-integer's
        // shortest digits never end in a zero: nothing to rewrite.
        out.push_str(ryu::Buffer::new().format_finite(v));
    } else {
        push_plain_decimal(out, ryu::Buffer::new().format_finite(v));
    }
}

/// The smallest magnitude ryu writes without an exponent is 1e-5; from here on, with a margin.
const PLAIN_SHORTEST_FROM: f64 = 1e-4;

/// Appends ryu's shortest round-trip digits (`1.5`, `1e21`, `1.25e-7`, `3.0`) in plain decimal
/// notation (`1.5`, `1000000000000000000000`, `0.000000125`, `3`).
fn push_plain_decimal(out: &mut String, shortest: &str) {
    let (negative, unsigned) = match shortest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, shortest),
    };
    let (mantissa, exponent) = match unsigned.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let frac_part = frac_part.trim_end_matches('0');
    if negative {
        out.push('-');
    }
    if exponent == 0 {
        out.push_str(int_part);
        if !frac_part.is_empty() {
            out.push('.');
            out.push_str(frac_part);
        }
        return;
    }
    // Digits without the point, and where the point goes counted from their start.
    let digits_len = int_part.len() + frac_part.len();
    let point = int_part.len() as i64 + i64::from(exponent);
    let digits = int_part.bytes().chain(frac_part.bytes());
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.extend(digits.map(char::from));
    } else if point as usize >= digits_len {
        out.extend(digits.map(char::from));
        out.extend(std::iter::repeat_n('0', point as usize - digits_len));
    } else {
        for (i, d) in digits.enumerate() {
            if i == point as usize {
                out.push('.');
            }
            out.push(char::from(d));
        }
    }
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub ts_ms: i64,
    pub value: f64,
}

/// One series of a matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// A query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { ts_ms: i64, value: f64 },
    String { ts_ms: i64, value: String },
    Vector(Vec<InstantSample>),
    Matrix(Vec<RangeSeries>),
}

/// Warnings and infos a query produced, rendered like Prometheus's API (`PromQL warning: … (1:5)`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    /// Adds `text` to `list` unless it is there already (Prometheus reports each annotation once).
    pub(crate) fn push_unique(list: &mut Vec<String>, text: String) {
        if !list.contains(&text) {
            list.push(text);
        }
    }
}

/// A result with the warnings and infos the evaluation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    pub value: Value,
    pub annotations: Annotations,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_like_go() {
        assert_eq!(format_value(1.5), "1.5");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(-0.0), "-0");
        assert_eq!(format_value(1.25e-7), "0.000000125");
        assert_eq!(format_value(-1.5e300).len(), 302);
    }

    /// Every finite value is written as Go's `FormatFloat(v, 'f', -1, 64)` writes it: the
    /// shortest digits that read back as `v`, in plain notation. Rust's `Display` gives the same
    /// digits except where two shortest candidates are equally near (it rounds the tie up, Go and
    /// ryu to even), so the check is: reads back exactly, no exponent, as short as `Display`'s.
    fn assert_like_display(v: f64) {
        let written = format_value(v);
        let display = format!("{v}");
        assert_eq!(written.parse::<f64>().map(f64::to_bits), Ok(v.to_bits()), "{written} for bits {:#x}", v.to_bits());
        assert!(!written.contains('e'), "{written}");
        assert_eq!(written.len(), display.len(), "{written} against {display}");
    }

    #[test]
    fn ties_round_to_even_as_go_does() {
        // Printed by Go 1.19's strconv.FormatFloat(math.Float64frombits(b), 'f', -1, 64).
        for (bits, go) in [
            (0x42b5_0566_0237_b7d0_u64, "23112930441143.812"),
            (0x42b5_0555_54f6_5e50, "23112650651230.312"),
            (0x42b5_054c_fe55_b190, "23112510756273.562"),
        ] {
            assert_eq!(format_value(f64::from_bits(bits)), go);
        }
    }

    #[test]
    fn edge_values_are_written_like_display() {
        for v in [
            0.0,
            1.0,
            -1.0,
            0.1,
            0.3,
            1e15,
            1e15 - 1.0,
            -1e15,
            9007199254740993.0,
            1e16,
            1.5e16,
            123456789012345680000.0,
            1e-5,
            1e-7,
            1e-4,
            -1e-4,
            9.999e-5,
            1.0001e-4,
            999_999_999_999_999.9,
            -999_999_999_999_999.9,
            1e15 - 0.5,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            2.5,
            0.5,
            1e100,
            1.7976931348623157e308,
        ] {
            assert_like_display(v);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_finite_value_is_written_like_display(bits in proptest::prelude::any::<u64>()) {
            let v = f64::from_bits(bits);
            if v.is_finite() {
                assert_like_display(v);
            }
        }

        #[test]
        fn everyday_values_are_written_like_display(mantissa in -10_000_000i64..10_000_000, scale in -12i32..12) {
            assert_like_display(mantissa as f64 * 10f64.powi(scale));
            assert_like_display(mantissa as f64 / 7.0);
        }
    }

    #[test]
    fn annotations_are_kept_once() {
        let mut list = Vec::new();
        Annotations::push_unique(&mut list, "a".into());
        Annotations::push_unique(&mut list, "a".into());
        assert_eq!(list, vec!["a".to_string()]);
    }
}
