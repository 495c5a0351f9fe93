//! `Results` is everything one suite run measured: each workload's description and parameters,
//! and every raw figure (workload, figure, system, scaling point, repeat, value). Summaries
//! (min/median/max over repeats) and ratios are derived from the raw figures, never stored apart.

use super::systems::SystemKind;
use serde::Serialize;

/// One figure a workload reports per system and scaling point.
#[derive(Clone, Debug, Serialize)]
pub struct FigureSpec {
    pub key: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub lower_is_better: bool,
    /// Whether the report draws a scaling chart for it.
    pub chart: bool,
    /// The heading of a separate table the figure is listed in (`None`: the workload's main table).
    pub table: Option<&'static str>,
    /// What a point's cells say when no system has the figure there (`None`: the row is left out).
    pub when_missing: Option<&'static str>,
}

impl FigureSpec {
    /// The figure listed in a separate table under `heading`.
    pub const fn in_table(self, heading: &'static str) -> FigureSpec {
        FigureSpec { table: Some(heading), ..self }
    }

    /// The figure's row kept at points where nothing was measured, its cells saying `text`.
    pub const fn when_missing(self, text: &'static str) -> FigureSpec {
        FigureSpec { when_missing: Some(text), ..self }
    }
}

/// Shorthand for a figure that is charted.
pub const fn charted(key: &'static str, title: &'static str, unit: &'static str, lower_is_better: bool) -> FigureSpec {
    FigureSpec { key, title, unit, lower_is_better, chart: true, table: None, when_missing: None }
}

/// Shorthand for a figure that is only tabulated.
pub const fn tabulated(
    key: &'static str,
    title: &'static str,
    unit: &'static str,
    lower_is_better: bool,
) -> FigureSpec {
    FigureSpec { key, title, unit, lower_is_better, chart: false, table: None, when_missing: None }
}

/// What a workload is, how it was parameterised in this run, and what it reports.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadInfo {
    pub key: &'static str,
    pub title: &'static str,
    pub description: String,
    pub parameters: Vec<String>,
    /// What the scaling points count (x axis).
    pub point_label: &'static str,
    pub points: Vec<f64>,
    /// Whether the scaling charts use a logarithmic x axis (points spanning decades).
    pub log_x: bool,
    pub systems: Vec<SystemKind>,
    pub figures: Vec<FigureSpec>,
    /// Anything a reader must know: failures, timeouts, caveats found while running.
    pub notes: Vec<String>,
}

/// One raw measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub workload: &'static str,
    pub figure: &'static str,
    pub system: SystemKind,
    pub point: f64,
    pub repeat: usize,
    pub value: f64,
}

/// Min, median and max of one figure over repeats.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub count: usize,
}

/// All workloads' descriptions and raw measurements of one run.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub workloads: Vec<WorkloadInfo>,
    pub measurements: Vec<Measurement>,
    /// Where each workload's time went in the profiled system (`profile`), summed over windows.
    pub profiles: super::profile::ProfileStore,
}

impl Results {
    /// Registers a workload before it records figures.
    pub fn add_workload(&mut self, info: WorkloadInfo) {
        self.workloads.push(info);
    }

    /// Records one raw figure; non-finite values (a process gone, nothing measured) are skipped
    /// with a note rather than reported as numbers.
    pub fn record(
        &mut self,
        workload: &'static str,
        figure: &'static str,
        system: SystemKind,
        point: f64,
        repeat: usize,
        value: f64,
    ) {
        if !value.is_finite() {
            self.note(
                workload,
                format!("{figure} of {} at {point} (repeat {repeat}) could not be measured", system.name()),
            );
            return;
        }
        self.measurements.push(Measurement { workload, figure, system, point, repeat, value });
    }

    /// Adds a note to `workload`'s section of the report.
    pub fn note(&mut self, workload: &str, text: String) {
        if let Some(info) = self.workloads.iter_mut().find(|w| w.key == workload) {
            if !info.notes.contains(&text) {
                info.notes.push(text);
            }
        }
    }

    /// Min/median/max of one figure over its repeats; `None` when never measured.
    pub fn summary(&self, workload: &str, figure: &str, system: SystemKind, point: f64) -> Option<Summary> {
        let values: Vec<f64> = self
            .measurements
            .iter()
            .filter(|m| m.workload == workload && m.figure == figure && m.system == system && m.point == point)
            .map(|m| m.value)
            .collect();
        summarize(values)
    }
}

/// Min/median/max of `values` (the median of an even count is the mean of the middle two).
pub fn summarize(mut values: Vec<f64>) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
    Some(Summary { min: values[0], median, max: values[n - 1], count: n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_over_repeats() {
        let mut results = Results::default();
        for (repeat, value) in [3.0, 1.0, 2.0, f64::NAN].into_iter().enumerate() {
            results.record("w", "f", SystemKind::Ringtail, 10.0, repeat, value);
        }
        let summary = results.summary("w", "f", SystemKind::Ringtail, 10.0).map(|s| (s.min, s.median, s.max, s.count));
        assert_eq!(summary, Some((1.0, 2.0, 3.0, 3)));
        assert!(results.summary("w", "f", SystemKind::Prometheus, 10.0).is_none());
        assert_eq!(summarize(vec![1.0, 2.0]).map(|s| s.median), Some(1.5));
    }
}
