//! The soak's result folder: `probes.csv` (every reading, one row per system per probe),
//! `charts/*.svg` (one chart per measure, the three systems' curves over time) and `summary.md`
//! (parameters, machine, final values with Ringtail's ratio to each peer, the plateau check and
//! how the stream went). The plateau check compares the last third of the run with the middle
//! third: the maximum and the least-squares slope of each measure.

use super::options::SoakPlan;
use super::probe::{active_series_metric, Probe};
use super::stream::StreamStats;
use crate::suite::machine::MachineInfo;
use crate::suite::report::{draw_time_chart, run_rows, write_rows};
use crate::suite::systems::{victoria_metrics_retention_days, SystemKind};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// The last third's maximum may exceed the middle third's by this much and still count as a
/// plateau: probes land at different points of a generation's saw-tooth, and allocators keep
/// some slack.
const PLATEAU_TOLERANCE: f64 = 0.10;
const MIB: f64 = 1024.0 * 1024.0;

/// How the run went, for the summary's header.
pub struct RunInfo {
    pub command: String,
    pub started_utc: String,
    pub elapsed: Duration,
    pub interrupted: bool,
    pub log_tails: Vec<(SystemKind, String)>,
}

/// A measure of a [`Probe`], charted and checked for a plateau.
struct Measure {
    key: &'static str,
    title: &'static str,
    unit: &'static str,
    /// Divides the raw value for display (bytes → MiB).
    scale: f64,
    value: fn(&Probe) -> f64,
}

const MEASURES: [Measure; 5] = [
    Measure { key: "rss", title: "Resident memory (VmRSS)", unit: "MiB", scale: MIB, value: |p| p.rss_bytes },
    Measure { key: "anon", title: "Anonymous memory (RssAnon)", unit: "MiB", scale: MIB, value: |p| p.anon_bytes },
    Measure {
        key: "disk-allocated",
        title: "Data directory, allocated on disk",
        unit: "MiB",
        scale: MIB,
        value: |p| p.disk_allocated_bytes,
    },
    Measure {
        key: "disk-apparent",
        title: "Data directory, apparent size",
        unit: "MiB",
        scale: MIB,
        value: |p| p.disk_apparent_bytes,
    },
    Measure {
        key: "active-series",
        title: "Active series (self-reported)",
        unit: "series",
        scale: 1.0,
        value: |p| p.active_series,
    },
];

/// Maximum and slope of a measure over one window of the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowFigures {
    pub max: f64,
    /// Least-squares slope, per minute.
    pub slope_per_min: f64,
}

/// [`WindowFigures`] of the `(seconds, value)` points with `from_s <= seconds < to_s` (NaN values
/// skipped); `None` with fewer than two points.
pub fn window_figures(points: &[(f64, f64)], from_s: f64, to_s: f64) -> Option<WindowFigures> {
    let inside: Vec<(f64, f64)> =
        points.iter().copied().filter(|&(t, v)| t >= from_s && t < to_s && !v.is_nan()).collect();
    if inside.len() < 2 {
        return None;
    }
    let n = inside.len() as f64;
    let mean_t = inside.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = inside.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance: f64 = inside.iter().map(|&(t, v)| (t - mean_t) * (v - mean_v)).sum();
    let variance: f64 = inside.iter().map(|&(t, _)| (t - mean_t).powi(2)).sum();
    let slope_per_s = if variance > 0.0 { covariance / variance } else { 0.0 };
    let max = inside.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    Some(WindowFigures { max, slope_per_min: slope_per_s * 60.0 })
}

/// Whether the last third stays within [`PLATEAU_TOLERANCE`] of the middle third's maximum.
pub fn plateaus(middle: WindowFigures, last: WindowFigures) -> bool {
    last.max <= middle.max * (1.0 + PLATEAU_TOLERANCE)
}

fn series_of(probes: &[Probe], system: SystemKind, measure: &Measure) -> Vec<(f64, f64)> {
    probes
        .iter()
        .filter(|p| p.system == system)
        .map(|p| (p.elapsed_s, (measure.value)(p) / measure.scale))
        .filter(|(_, v)| !v.is_nan())
        .collect()
}

/// Writes `probes.csv`, `charts/` and `summary.md` under `out`.
pub fn write(
    out: &Path,
    plan: &SoakPlan,
    run: &RunInfo,
    machine: &MachineInfo,
    stats: &StreamStats,
    probes: &[Probe],
) -> Result<()> {
    let mut csv = String::from(Probe::CSV_HEADER);
    csv.push('\n');
    for probe in probes {
        csv.push_str(&probe.csv_row());
        csv.push('\n');
    }
    let csv_path = out.join("probes.csv");
    std::fs::write(&csv_path, csv).with_context(|| format!("writing {}", csv_path.display()))?;
    let charts_dir = out.join("charts");
    std::fs::create_dir_all(&charts_dir).with_context(|| format!("creating {}", charts_dir.display()))?;
    let mut chart_notes = Vec::new();
    let mut charts = Vec::new();
    for measure in &MEASURES {
        let series: Vec<(SystemKind, Vec<(f64, f64)>)> = SystemKind::ALL
            .iter()
            .map(|&kind| (kind, series_of(probes, kind, measure).into_iter().map(|(t, v)| (t / 60.0, v)).collect()))
            .filter(|(_, points): &(SystemKind, Vec<(f64, f64)>)| !points.is_empty())
            .collect();
        if series.is_empty() {
            chart_notes.push(format!("{}: no readings, no chart", measure.title));
            continue;
        }
        let file = format!("{}.svg", measure.key);
        match draw_time_chart(
            &charts_dir.join(&file),
            measure.title,
            "minutes since the stream started",
            measure.unit,
            &series,
        ) {
            Ok(()) => charts.push((measure.title, file)),
            Err(e) => chart_notes.push(format!("{}: chart not drawn: {e:#}", measure.title)),
        }
    }
    let summary = summary_markdown(plan, run, machine, stats, probes, &charts, &chart_notes);
    let summary_path = out.join("summary.md");
    std::fs::write(&summary_path, summary).with_context(|| format!("writing {}", summary_path.display()))?;
    Ok(())
}

fn summary_markdown(
    plan: &SoakPlan,
    run: &RunInfo,
    machine: &MachineInfo,
    stats: &StreamStats,
    probes: &[Probe],
    charts: &[(&str, String)],
    chart_notes: &[String],
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Churn soak\n");
    let _ = writeln!(
        md,
        "`{}` — started {}, ran {:.0} s{}.\n",
        run.command,
        run.started_utc,
        run.elapsed.as_secs_f64(),
        if run.interrupted { " (**interrupted** by Ctrl-C before the planned duration)" } else { "" }
    );
    let _ = writeln!(
        md,
        "Ringtail, Prometheus and VictoriaMetrics ran side by side and received the same live Remote-Write \
         stream: {} pods × {} series ({} live series), one sample per series every {} s timestamped with \
         the send time, every pod renamed (new `pod` and `instance`) every {} s — a rolling deploy per \
         generation — for {} s, {:.1}× the retention. A probe read every system every {} s. Nothing is \
         asserted; this reports.\n",
        plan.pods,
        plan.series_per_pod,
        plan.active_series(),
        secs(plan.scrape_interval),
        secs(plan.generation_every),
        secs(plan.duration),
        plan.retentions_spanned(),
        secs(plan.probe_every),
    );
    parameters_section(&mut md, plan, machine);
    final_values_section(&mut md, probes);
    plateau_section(&mut md, probes, run.elapsed.as_secs_f64());
    stream_section(&mut md, plan, stats, run);
    let _ = writeln!(md, "## Charts\n");
    for (title, file) in charts {
        let _ = writeln!(md, "### {title}\n\n![{title}](charts/{file})\n");
    }
    for note in chart_notes {
        let _ = writeln!(md, "- {note}");
    }
    measuring_section(&mut md);
    md
}

fn secs(duration: Duration) -> String {
    let text = format!("{:.3}", duration.as_secs_f64());
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn parameters_section(md: &mut String, plan: &SoakPlan, machine: &MachineInfo) {
    let _ = writeln!(md, "## Parameters\n\n| parameter | value |\n| --- | --- |");
    let rows = [
        ("duration", format!("{} s", secs(plan.duration))),
        (
            "retention (Ringtail `--retention`, Prometheus `--storage.tsdb.retention.time`)",
            format!("{} s", secs(plan.retention)),
        ),
        (
            "VictoriaMetrics `-retentionPeriod`",
            format!(
                "{}d (its minimum; it drops data a day-partition at a time)",
                victoria_metrics_retention_days(plan.retention)
            ),
        ),
        (
            "Ringtail `--storage-size`",
            format!(
                "{} bytes ({:.0} MiB)",
                plan.ringtail_storage_size_bytes,
                plan.ringtail_storage_size_bytes as f64 / MIB
            ),
        ),
        ("pods alive at a time", plan.pods.to_string()),
        ("series per pod", plan.series_per_pod.to_string()),
        ("live series", plan.active_series().to_string()),
        ("a generation every", format!("{} s", secs(plan.generation_every))),
        ("generations", plan.generations().to_string()),
        ("series created over the run", (plan.generations() * plan.active_series() as u64).to_string()),
        ("a sample per series every", format!("{} s", secs(plan.scrape_interval))),
        ("probe every", format!("{} s", secs(plan.probe_every))),
        (
            "machine",
            format!(
                "{} cores, {}, {:.1} GiB, kernel {}",
                machine.cores, machine.cpu_model, machine.memory_gib, machine.kernel
            ),
        ),
    ];
    write_rows(md, rows.into_iter().chain(run_rows(machine)));
    let _ = writeln!(md);
}

fn last_probe(probes: &[Probe], system: SystemKind) -> Option<&Probe> {
    probes.iter().rev().find(|p| p.system == system)
}

fn cell(value: f64, scale: f64) -> String {
    if value.is_nan() {
        "—".to_string()
    } else if scale == 1.0 {
        format!("{value:.0}")
    } else {
        format!("{:.1}", value / scale)
    }
}

fn final_values_section(md: &mut String, probes: &[Probe]) {
    let _ = writeln!(
        md,
        "## Final values\n\nThe last probe of each system (after the stream stopped).\n\n\
         | system | RSS (MiB) | anonymous (MiB) | disk allocated (MiB) | disk apparent (MiB) | active series | CPU (s) |\n\
         | --- | --- | --- | --- | --- | --- | --- |"
    );
    for kind in SystemKind::ALL {
        let Some(p) = last_probe(probes, kind) else {
            let _ = writeln!(md, "| {} | — | — | — | — | — | — |", kind.name());
            continue;
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.1} |",
            kind.name(),
            cell(p.rss_bytes, MIB),
            cell(p.anon_bytes, MIB),
            cell(p.disk_allocated_bytes, MIB),
            cell(p.disk_apparent_bytes, MIB),
            cell(p.active_series, 1.0),
            p.cpu_seconds
        );
    }
    if let Some(ringtail) = last_probe(probes, SystemKind::Ringtail) {
        for peer in [SystemKind::Prometheus, SystemKind::VictoriaMetrics] {
            let Some(other) = last_probe(probes, peer) else { continue };
            let ratio = |a: f64, b: f64| {
                if a.is_nan() || b.is_nan() || b == 0.0 {
                    "—".to_string()
                } else {
                    format!("{:.2}×", a / b)
                }
            };
            let _ = writeln!(
                md,
                "| ringtail / {} | {} | {} | {} | {} | {} | {} |",
                peer.name(),
                ratio(ringtail.rss_bytes, other.rss_bytes),
                ratio(ringtail.anon_bytes, other.anon_bytes),
                ratio(ringtail.disk_allocated_bytes, other.disk_allocated_bytes),
                ratio(ringtail.disk_apparent_bytes, other.disk_apparent_bytes),
                ratio(ringtail.active_series, other.active_series),
                ratio(ringtail.cpu_seconds, other.cpu_seconds),
            );
        }
    }
    let _ = writeln!(md);
}

fn plateau_section(md: &mut String, probes: &[Probe], run_s: f64) {
    let third = run_s / 3.0;
    let _ = writeln!(
        md,
        "## Plateau check\n\nMiddle third: {:.0}–{:.0} s; last third: {:.0}–{:.0} s. *Plateau* when the last third's \
         maximum is at most {:.0}% above the middle third's; slopes are least-squares fits per minute. A \
         plateau in the last third after churning through many retentions means dead series are being freed; \
         a steady positive slope means they are not.\n\n\
         | system | measure | middle max | last max | last / middle | middle slope (/min) | last slope (/min) | verdict |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |",
        third,
        2.0 * third,
        2.0 * third,
        run_s,
        PLATEAU_TOLERANCE * 100.0
    );
    for kind in SystemKind::ALL {
        for measure in MEASURES.iter().filter(|m| m.key != "anon") {
            let points = series_of(probes, kind, measure);
            let middle = window_figures(&points, third, 2.0 * third);
            let last = window_figures(&points, 2.0 * third, f64::INFINITY);
            let (Some(middle), Some(last)) = (middle, last) else {
                let _ = writeln!(md, "| {} | {} | — | — | — | — | — | too few readings |", kind.name(), measure.title);
                continue;
            };
            let value =
                |v: f64| if measure.scale == 1.0 { format!("{v:.0}") } else { format!("{v:.1} {}", measure.unit) };
            let verdict = if plateaus(middle, last) {
                "plateau".to_string()
            } else {
                format!("grows (+{:.0}%)", (last.max / middle.max - 1.0) * 100.0)
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.2} | {} | {} | {verdict} |",
                kind.name(),
                measure.title,
                value(middle.max),
                value(last.max),
                last.max / middle.max,
                value(middle.slope_per_min),
                value(last.slope_per_min),
            );
        }
    }
    let _ = writeln!(md);
}

fn stream_section(md: &mut String, plan: &SoakPlan, stats: &StreamStats, run: &RunInfo) {
    let _ = writeln!(
        md,
        "## The stream\n\n{} ticks sent ({} samples to each system, {} generations started); {} ticks took longer \
         than the {} s interval to be acknowledged by the slowest system (the next tick then started late for all).\n\n\
         | system | failed requests | slowest tick (s) | last error |\n| --- | --- | --- | --- |",
        stats.ticks,
        stats.samples_per_system,
        stats.generations,
        stats.late_ticks,
        secs(plan.scrape_interval),
    );
    for (kind, system) in &stats.per_system {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {} |",
            kind.name(),
            system.failed_requests,
            system.slowest_tick.as_secs_f64(),
            system.last_error.as_deref().map(|e| e.replace('|', "\\|")).unwrap_or_else(|| "—".to_string())
        );
    }
    let _ = writeln!(md);
    for (kind, tail) in &run.log_tails {
        let failed = stats.per_system.get(kind).is_some_and(|s| s.failed_requests > 0);
        if failed && !tail.is_empty() {
            let _ = writeln!(md, "{}'s log ends: `{}`\n", kind.name(), tail.replace('`', "'"));
        }
    }
}

fn measuring_section(md: &mut String) {
    let metric = |kind| active_series_metric(kind).join("`, else `");
    let _ = writeln!(
        md,
        "\n## How it is measured\n\n\
         - **RSS** and **anonymous memory**: `VmRSS` and `RssAnon` of `/proc/<pid>/status`, summed over the \
         process and any children it started (none of the three forks). Ringtail's RSS includes the touched \
         pages of its memory-mapped store; anonymous memory leaves them out.\n\
         - **Disk allocated**: 512-byte blocks of every file under the data directory, as `du` counts them \
         (sparse, preallocated files count only what was written); **apparent**: the sum of file lengths.\n\
         - **Active series**: what each system reports about itself on `/metrics` — Ringtail: `{}`; \
         Prometheus: `{}` (head series, freed only at head compaction, every 2 h); VictoriaMetrics: `{}` \
         (series seen in the current hour; it keeps no count of live series, and frees data per day).\n\
         - **CPU**: user + system seconds of the process since it started.\n\
         - Every reading is in `probes.csv` (one row per system per probe; an empty cell could not be read).\n\
         - The processes are started by the program on loopback with fresh temporary data directories and \
         killed by pid when it ends.",
        metric(SystemKind::Ringtail),
        metric(SystemKind::Prometheus),
        metric(SystemKind::VictoriaMetrics),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slope_and_max() {
        let points: Vec<(f64, f64)> = (0..10).map(|s| (s as f64 * 6.0, 100.0 + s as f64)).collect();
        let figures = window_figures(&points, 0.0, 60.0).unwrap();
        assert_eq!(figures.max, 109.0);
        assert!((figures.slope_per_min - 10.0).abs() < 1e-9, "{figures:?}");
        assert_eq!(window_figures(&points, 0.0, 6.0), None);
        assert_eq!(window_figures(&[(0.0, 1.0), (1.0, f64::NAN)], 0.0, 10.0), None);
    }

    #[test]
    fn plateau_allows_a_little_over_the_middle_max() {
        let middle = WindowFigures { max: 100.0, slope_per_min: 5.0 };
        assert!(plateaus(middle, WindowFigures { max: 105.0, slope_per_min: 0.0 }));
        assert!(!plateaus(middle, WindowFigures { max: 150.0, slope_per_min: 5.0 }));
    }
}
