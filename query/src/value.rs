//! `Value` is what a query returns to its caller: a scalar, a string, an instant vector of
//! [`InstantSample`]s or a matrix of [`RangeSeries`], with the [`Annotations`] the evaluation
//! produced. A leaf module: the evaluator's own intermediate values live in `eval`.

use tsdb::Labels;

/// A sample value as Prometheus writes it in messages and JSON (`1.5`, `+Inf`, `-Inf`, `NaN`;
/// shortest round-trip digits, never an exponent, as Go's `FormatFloat(v, 'f', -1, 64)`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
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
    }

    #[test]
    fn annotations_are_kept_once() {
        let mut list = Vec::new();
        Annotations::push_unique(&mut list, "a".into());
        Annotations::push_unique(&mut list, "a".into());
        assert_eq!(list, vec!["a".to_string()]);
    }
}
