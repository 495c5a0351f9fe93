//! `Db::cardinality` answers "where do my series come from": the head's series and label-pair
//! counts and the top metric names, label names and label pairs, as Prometheus's
//! `/api/v1/status/tsdb` reports them.

use super::Db;

/// Cardinality figures of the live series (see [`Db::cardinality`]). Each list is sorted by count,
/// largest first, ties by name, and holds at most the `top` entries asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cardinality {
    /// Live series.
    pub num_series: u64,
    /// Distinct (label name, label value) pairs over the live series.
    pub num_label_pairs: u64,
    /// Series per metric name (`__name__` value).
    pub series_count_by_metric_name: Vec<(String, u64)>,
    /// Distinct values per label name.
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    /// Bytes of the distinct values of each label name (what its values cost in the index).
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    /// Series per `name=value` pair.
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
}

impl Db {
    /// The cardinality figures of the live series, each list cut to the `top` largest.
    pub fn cardinality(&self, top: usize) -> Cardinality {
        self.index.read().cardinality(top)
    }
}
