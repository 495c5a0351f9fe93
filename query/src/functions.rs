//! `Function` is the table of PromQL functions Ringtail knows: argument types, return type and
//! which evaluator routine runs them. Names Prometheus has but Ringtail does not are listed too,
//! so the parser can tell "not supported" apart from "unknown".

use crate::ast::ValueType;
use crate::ast::ValueType::{Matrix as M, Scalar as S, String as Str, Vector as V};

/// How the evaluator runs a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FuncKind {
    // Range-vector functions (argument: one range vector).
    Rate,
    Irate,
    Increase,
    Delta,
    Idelta,
    Deriv,
    Resets,
    Changes,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    SumOverTime,
    CountOverTime,
    LastOverTime,
    QuantileOverTime,
    StddevOverTime,
    StdvarOverTime,
    PresentOverTime,
    AbsentOverTime,
    MadOverTime,
    // Range-vector functions with scalar parameters after the range vector.
    PredictLinear,
    HoltWinters,
    // Element-wise math on an instant vector.
    Abs,
    Ceil,
    Floor,
    Round,
    Sqrt,
    Exp,
    Ln,
    Log2,
    Log10,
    Sgn,
    Clamp,
    ClampMin,
    ClampMax,
    Acos,
    Acosh,
    Asin,
    Asinh,
    Atan,
    Atanh,
    Cos,
    Cosh,
    Sin,
    Sinh,
    Tan,
    Tanh,
    Deg,
    Rad,
    // The rest.
    HistogramQuantile,
    LabelReplace,
    LabelJoin,
    Time,
    Timestamp,
    Vector,
    Scalar,
    Absent,
    Sort,
    SortDesc,
    SortByLabel,
    SortByLabelDesc,
    Pi,
    DayOfWeek,
    DayOfMonth,
    DayOfYear,
    Hour,
    Minute,
    Month,
    Year,
    DaysInMonth,
}

/// One function's signature.
#[derive(Debug)]
pub struct Function {
    pub name: &'static str,
    pub arg_types: &'static [ValueType],
    /// How many trailing arguments may be left out (`usize::MAX`: the last one repeats freely).
    pub optional_args: usize,
    pub return_type: ValueType,
    pub kind: FuncKind,
}

impl Function {
    /// Whether the result keeps `__name__` (Prometheus drops it for everything that changes the
    /// value's meaning).
    pub fn keeps_metric_name(&self) -> bool {
        matches!(
            self.kind,
            FuncKind::LastOverTime
                | FuncKind::Sort
                | FuncKind::SortDesc
                | FuncKind::SortByLabel
                | FuncKind::SortByLabelDesc
                | FuncKind::LabelReplace
                | FuncKind::LabelJoin
                | FuncKind::Vector
                | FuncKind::Absent
                | FuncKind::AbsentOverTime
        )
    }

    /// Whether the value depends on the evaluation time itself (not just on the data).
    pub fn is_time_dependent(&self) -> bool {
        matches!(
            self.kind,
            FuncKind::Time
                | FuncKind::Timestamp
                | FuncKind::PredictLinear
                | FuncKind::DayOfWeek
                | FuncKind::DayOfMonth
                | FuncKind::DayOfYear
                | FuncKind::Hour
                | FuncKind::Minute
                | FuncKind::Month
                | FuncKind::Year
                | FuncKind::DaysInMonth
        )
    }
}

macro_rules! func {
    ($name:literal, [$($t:expr),*], $opt:expr, $ret:expr, $kind:ident) => {
        Function { name: $name, arg_types: &[$($t),*], optional_args: $opt, return_type: $ret, kind: FuncKind::$kind }
    };
}

/// Every supported function.
pub static FUNCTIONS: &[Function] = &[
    func!("rate", [M], 0, V, Rate),
    func!("irate", [M], 0, V, Irate),
    func!("increase", [M], 0, V, Increase),
    func!("delta", [M], 0, V, Delta),
    func!("idelta", [M], 0, V, Idelta),
    func!("deriv", [M], 0, V, Deriv),
    func!("resets", [M], 0, V, Resets),
    func!("changes", [M], 0, V, Changes),
    func!("avg_over_time", [M], 0, V, AvgOverTime),
    func!("min_over_time", [M], 0, V, MinOverTime),
    func!("max_over_time", [M], 0, V, MaxOverTime),
    func!("sum_over_time", [M], 0, V, SumOverTime),
    func!("count_over_time", [M], 0, V, CountOverTime),
    func!("last_over_time", [M], 0, V, LastOverTime),
    func!("quantile_over_time", [S, M], 0, V, QuantileOverTime),
    func!("stddev_over_time", [M], 0, V, StddevOverTime),
    func!("stdvar_over_time", [M], 0, V, StdvarOverTime),
    func!("present_over_time", [M], 0, V, PresentOverTime),
    func!("absent_over_time", [M], 0, V, AbsentOverTime),
    func!("mad_over_time", [M], 0, V, MadOverTime),
    func!("predict_linear", [M, S], 0, V, PredictLinear),
    func!("holt_winters", [M, S, S], 0, V, HoltWinters),
    // Prometheus 3's name for `holt_winters` (same arguments, same algorithm).
    func!("double_exponential_smoothing", [M, S, S], 0, V, HoltWinters),
    func!("abs", [V], 0, V, Abs),
    func!("ceil", [V], 0, V, Ceil),
    func!("floor", [V], 0, V, Floor),
    func!("round", [V, S], 1, V, Round),
    func!("sqrt", [V], 0, V, Sqrt),
    func!("exp", [V], 0, V, Exp),
    func!("ln", [V], 0, V, Ln),
    func!("log2", [V], 0, V, Log2),
    func!("log10", [V], 0, V, Log10),
    func!("sgn", [V], 0, V, Sgn),
    func!("clamp", [V, S, S], 0, V, Clamp),
    func!("clamp_min", [V, S], 0, V, ClampMin),
    func!("clamp_max", [V, S], 0, V, ClampMax),
    func!("acos", [V], 0, V, Acos),
    func!("acosh", [V], 0, V, Acosh),
    func!("asin", [V], 0, V, Asin),
    func!("asinh", [V], 0, V, Asinh),
    func!("atan", [V], 0, V, Atan),
    func!("atanh", [V], 0, V, Atanh),
    func!("cos", [V], 0, V, Cos),
    func!("cosh", [V], 0, V, Cosh),
    func!("sin", [V], 0, V, Sin),
    func!("sinh", [V], 0, V, Sinh),
    func!("tan", [V], 0, V, Tan),
    func!("tanh", [V], 0, V, Tanh),
    func!("deg", [V], 0, V, Deg),
    func!("rad", [V], 0, V, Rad),
    func!("pi", [], 0, S, Pi),
    func!("histogram_quantile", [S, V], 0, V, HistogramQuantile),
    func!("label_replace", [V, Str, Str, Str, Str], 0, V, LabelReplace),
    func!("label_join", [V, Str, Str, Str], usize::MAX, V, LabelJoin),
    func!("time", [], 0, S, Time),
    func!("timestamp", [V], 0, V, Timestamp),
    func!("vector", [S], 0, V, Vector),
    func!("scalar", [V], 0, S, Scalar),
    func!("absent", [V], 0, V, Absent),
    func!("sort", [V], 0, V, Sort),
    func!("sort_desc", [V], 0, V, SortDesc),
    func!("sort_by_label", [V, Str], usize::MAX, V, SortByLabel),
    func!("sort_by_label_desc", [V, Str], usize::MAX, V, SortByLabelDesc),
    func!("day_of_week", [V], 1, V, DayOfWeek),
    func!("day_of_month", [V], 1, V, DayOfMonth),
    func!("day_of_year", [V], 1, V, DayOfYear),
    func!("hour", [V], 1, V, Hour),
    func!("minute", [V], 1, V, Minute),
    func!("month", [V], 1, V, Month),
    func!("year", [V], 1, V, Year),
    func!("days_in_month", [V], 1, V, DaysInMonth),
];

/// Why a function of Prometheus that Ringtail refuses is refused.
const NATIVE: &str = "it reads native histograms, which Ringtail does not store";
const NEWER: &str = "it is newer than Prometheus 2.42 and not implemented";

/// Functions (and aggregations) of Prometheus 3 that Ringtail does not implement, with the reason
/// the error gives (a clearer error than "unknown").
pub static UNSUPPORTED_FUNCTIONS: &[(&str, &str)] = &[
    ("histogram_avg", NATIVE),
    ("histogram_count", NATIVE),
    ("histogram_fraction", NATIVE),
    ("histogram_quantiles", NATIVE),
    ("histogram_stddev", NATIVE),
    ("histogram_stdvar", NATIVE),
    ("histogram_sum", NATIVE),
    ("first_over_time", NEWER),
    ("info", NEWER),
    ("label_keep", NEWER),
    ("label_drop", NEWER),
    ("limitk", NEWER),
    ("limit_ratio", NEWER),
    ("range", NEWER),
    ("start_timestamp", NEWER),
    ("step", NEWER),
    ("ts_of_first_over_time", NEWER),
    ("ts_of_last_over_time", NEWER),
    ("ts_of_max_over_time", NEWER),
    ("ts_of_min_over_time", NEWER),
];

/// Why Ringtail refuses a function Prometheus has, or `None` when it does not refuse it.
pub fn unsupported_reason(name: &str) -> Option<&'static str> {
    UNSUPPORTED_FUNCTIONS.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

/// Looks a supported function up by its exact (case-sensitive) name.
pub fn lookup(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_name_is_unique_and_found() {
        for f in FUNCTIONS {
            assert!(std::ptr::eq(lookup(f.name).unwrap(), f));
            assert!(unsupported_reason(f.name).is_none());
        }
        assert!(lookup("Rate").is_none());
    }
}
