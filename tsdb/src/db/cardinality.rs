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
    /// Chunks of the live series (closed chunks in the ring plus open chunks).
    pub chunk_count: u64,
    /// Oldest and newest sample timestamps held (`None` without samples).
    pub min_time_ms: Option<i64>,
    pub max_time_ms: Option<i64>,
}

impl Db {
    /// The cardinality figures of the live series, each list cut to the `top` largest.
    pub fn cardinality(&self, top: usize) -> Cardinality {
        let mut figures = self.index.read().cardinality(top);
        let (chunk_count, min_time_ms, max_time_ms) = self.chunk_figures();
        figures.chunk_count = chunk_count;
        figures.min_time_ms = min_time_ms;
        figures.max_time_ms = max_time_ms;
        figures
    }
}

impl Db {
    /// Chunks held and the time span of the samples, from every series' state (one lock each).
    fn chunk_figures(&self) -> (u64, Option<i64>, Option<i64>) {
        let table = self.table.read();
        let (mut chunks, mut min, mut max) = (0u64, None::<i64>, None::<i64>);
        for (id, state) in table.iter() {
            let state = state.lock();
            let first_closed = state.chunks().iter().find_map(|c| self.ring.chunk_header(c, id));
            let open = (state.enc.num_samples > 0).then_some(state.enc.first_ts_ms);
            chunks += state.chunks().len() as u64 + u64::from(state.enc.num_samples > 0);
            if let Some(first) = first_closed.map(|h| h.min_ts_ms).or(open) {
                min = Some(min.map_or(first, |m| m.min(first)));
            }
            if state.has_samples() {
                max = Some(max.map_or(state.newest_ts_ms(), |m| m.max(state.newest_ts_ms())));
            }
        }
        (chunks, min, max)
    }
}
