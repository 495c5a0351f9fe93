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
    func!("day_of_week", [V], 1, V, DayOfWeek),
    func!("day_of_month", [V], 1, V, DayOfMonth),
    func!("day_of_year", [V], 1, V, DayOfYear),
    func!("hour", [V], 1, V, Hour),
    func!("minute", [V], 1, V, Minute),
    func!("month", [V], 1, V, Month),
    func!("year", [V], 1, V, Year),
    func!("days_in_month", [V], 1, V, DaysInMonth),
];

/// Functions of Prometheus 3 that Ringtail does not implement (a clearer error than "unknown").
pub static UNSUPPORTED_FUNCTIONS: &[&str] = &[
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "cos",
    "cosh",
    "deg",
    "double_exponential_smoothing",
    "first_over_time",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantiles",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "holt_winters",
    "info",
    "label_keep",
    "label_drop",
    "mad_over_time",
    "pi",
    "predict_linear",
    "rad",
    "range",
    "sin",
    "sinh",
    "sort_by_label",
    "sort_by_label_desc",
    "start_timestamp",
    "step",
    "tan",
    "tanh",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
];

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
            assert!(!UNSUPPORTED_FUNCTIONS.contains(&f.name));
        }
        assert!(lookup("Rate").is_none());
    }
}
