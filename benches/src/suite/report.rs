//! `report` writes a run's report folder: `report.md` (machine, targets met or missed, one
//! section per workload with its table of min/median/max over repeats and ratios), `charts/*.svg`
//! (one scaling chart per workload and charted figure, drawn with plotters' SVG backend, no
//! system fonts needed) and `results.json` (every raw figure, the summaries, the targets, the
//! machine and the run's options).

use super::machine::MachineInfo;
use super::options::{Scale, SuiteOptions};
use super::results::{FigureSpec, Results, Summary, WorkloadInfo};
use super::systems::SystemKind;
use super::workloads;
use anyhow::{Context, Result};
use plotters::coord::combinators::{BindKeyPoints, LogCoord};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// How the run went, for the report's header and the JSON.
#[derive(Debug, Serialize)]
pub struct RunInfo {
    pub command: String,
    pub options: SuiteOptions,
    pub scale: Scale,
    pub started_utc: String,
    pub estimated_seconds: f64,
    pub actual_seconds: f64,
    pub failures: Vec<String>,
}

/// Whether a target of the issue is met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    Met,
    Missed,
    NotMeasured,
}

/// One earlier target re-checked against this run.
#[derive(Debug, Serialize)]
pub struct TargetCheck {
    pub target: &'static str,
    pub measured: String,
    pub verdict: Verdict,
}

#[derive(Serialize)]
struct SummaryRow<'a> {
    workload: &'a str,
    figure: &'a str,
    system: SystemKind,
    point: f64,
    #[serde(flatten)]
    summary: Summary,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    run: &'a RunInfo,
    machine: &'a MachineInfo,
    targets: &'a [TargetCheck],
    workloads: &'a [WorkloadInfo],
    summaries: Vec<SummaryRow<'a>>,
    measurements: &'a [super::results::Measurement],
    /// Where each workload's time went in the profiled system.
    profiles: Vec<super::profile::WorkloadProfile>,
}

/// Writes `report.md`, `charts/` and `results.json` under `out`.
pub fn write(out: &Path, run: &RunInfo, machine: &MachineInfo, results: &Results) -> Result<()> {
    let charts_dir = out.join("charts");
    std::fs::create_dir_all(&charts_dir).with_context(|| format!("creating {}", charts_dir.display()))?;
    let targets = check_targets(results, &run.scale);
    let mut chart_errors = Vec::new();
    let mut summaries = Vec::new();
    for workload in &results.workloads {
        for figure in &workload.figures {
            for &system in &workload.systems {
                for &point in &workload.points {
                    if let Some(summary) = results.summary(workload.key, figure.key, system, point) {
                        summaries.push(SummaryRow {
                            workload: workload.key,
                            figure: figure.key,
                            system,
                            point,
                            summary,
                        });
                    }
                }
            }
        }
    }
    let mut markdown = String::new();
    header(&mut markdown, run, machine, &targets);
    for workload in &results.workloads {
        workload_section(&mut markdown, workload, results, &charts_dir, &mut chart_errors);
    }
    measuring_section(&mut markdown);
    if !chart_errors.is_empty() {
        let _ = writeln!(markdown, "\n## Charts that could not be drawn\n");
        for error in &chart_errors {
            let _ = writeln!(markdown, "- {error}");
        }
    }
    let md_path = out.join("report.md");
    std::fs::write(&md_path, markdown).with_context(|| format!("writing {}", md_path.display()))?;
    let json = JsonReport {
        run,
        machine,
        targets: &targets,
        workloads: &results.workloads,
        summaries,
        measurements: &results.measurements,
        profiles: results.profiles.profiles(),
    };
    let json_path = out.join("results.json");
    let text = serde_json::to_string_pretty(&json).context("serialising results")?;
    std::fs::write(&json_path, text).with_context(|| format!("writing {}", json_path.display()))?;
    Ok(())
}

/// Three significant digits, with k/M for large values.
pub fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if magnitude >= 1e4 {
        format!("{:.1} k", value / 1e3)
    } else if magnitude >= 100.0 || value == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn format_summary(summary: Option<Summary>) -> String {
    match summary {
        None => "—".into(),
        Some(s) if s.count == 1 => format_value(s.median),
        Some(s) => format!("{} ({}–{})", format_value(s.median), format_value(s.min), format_value(s.max)),
    }
}

/// The rows every report gives about the run itself: load, the three systems' versions, commit.
pub(crate) fn run_rows(machine: &MachineInfo) -> [(&'static str, String); 5] {
    [
        ("load average at start", machine.load_average_at_start.clone()),
        ("ringtail", machine.ringtail_version.clone()),
        ("prometheus", machine.prometheus_version.clone()),
        ("victoria-metrics", machine.victoria_metrics_version.clone()),
        ("git commit", machine.git_commit.clone()),
    ]
}

/// Two-column table rows, `|` in values escaped.
pub(crate) fn write_rows(md: &mut String, rows: impl IntoIterator<Item = (&'static str, String)>) {
    for (name, value) in rows {
        let _ = writeln!(md, "| {name} | {} |", value.replace('|', "\\|"));
    }
}

fn header(md: &mut String, run: &RunInfo, machine: &MachineInfo, targets: &[TargetCheck]) {
    let _ = writeln!(md, "# Ringtail benchmark report\n");
    let _ = writeln!(
        md,
        "Started {} with `{}`; estimated {}, took {}. Every figure below was measured in this run, with \
         Ringtail, Prometheus and VictoriaMetrics started by the suite on the same machine; cells show the \
         median over repeats and, when there was more than one repeat, (min–max). Ratios are Ringtail's \
         median divided by the other system's: below 1 means Ringtail's figure is lower (better for costs \
         and latencies, worse for throughput).\n",
        run.started_utc,
        run.command,
        super::format_duration(run.estimated_seconds),
        super::format_duration(run.actual_seconds)
    );
    if !run.failures.is_empty() {
        let _ = writeln!(md, "**Workloads that failed:**\n");
        for failure in &run.failures {
            let _ = writeln!(md, "- {failure}");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Machine\n\n| | |\n| --- | --- |");
    let rows = [
        ("cores", machine.cores.to_string()),
        ("CPU", machine.cpu_model.clone()),
        ("memory", format!("{:.1} GiB", machine.memory_gib)),
        ("kernel", machine.kernel.clone()),
    ];
    write_rows(md, rows.into_iter().chain(run_rows(machine)));
    let _ = writeln!(md, "\n## Targets\n\n| target | measured | verdict |\n| --- | --- | --- |");
    for target in targets {
        let verdict = match target.verdict {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::NotMeasured => "not measured",
        };
        let _ = writeln!(md, "| {} | {} | {verdict} |", target.target, target.measured);
    }
    let _ = writeln!(md);
}

fn workload_section(
    md: &mut String,
    workload: &WorkloadInfo,
    results: &Results,
    charts_dir: &Path,
    chart_errors: &mut Vec<String>,
) {
    let _ = writeln!(md, "## {}\n\n{}\n", workload.title, workload.description);
    for parameter in &workload.parameters {
        let _ = writeln!(md, "- {parameter}");
    }
    let _ = writeln!(md);
    for note in &workload.notes {
        let _ = writeln!(md, "> **Note:** {note}\n");
    }
    let main: Vec<&FigureSpec> = workload.figures.iter().filter(|f| f.table.is_none()).collect();
    figure_table(md, workload, results, &main);
    let mut headings: Vec<&str> = Vec::new();
    for heading in workload.figures.iter().filter_map(|f| f.table) {
        if !headings.contains(&heading) {
            headings.push(heading);
        }
    }
    for heading in headings {
        let figures: Vec<&FigureSpec> = workload.figures.iter().filter(|f| f.table == Some(heading)).collect();
        let _ = writeln!(md, "### {heading}\n");
        figure_table(md, workload, results, &figures);
    }
    profile_paragraphs(md, workload, results);
    for figure in workload.figures.iter().filter(|f| f.chart) {
        let file = format!("{}-{}.svg", workload.key, figure.key);
        let series: Vec<(SystemKind, Vec<(f64, f64)>)> = workload
            .systems
            .iter()
            .map(|&system| {
                let points = workload
                    .points
                    .iter()
                    .filter_map(|&p| results.summary(workload.key, figure.key, system, p).map(|s| (p, s.median)))
                    .collect();
                (system, points)
            })
            .filter(|(_, points): &(SystemKind, Vec<(f64, f64)>)| !points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let title = format!("{}: {}", workload.title, figure.title);
        let y_label = figure.unit.to_string();
        match draw_chart(&charts_dir.join(&file), &title, workload.point_label, &y_label, workload.log_x, &series) {
            Ok(()) => {
                let _ = writeln!(md, "![{}](charts/{file})\n", figure.title);
            }
            Err(e) => chart_errors.push(format!("{file}: {e:#}")),
        }
    }
}

/// "Where the time goes" of Ringtail (and of any other system a workload profiled) in `workload`.
fn profile_paragraphs(md: &mut String, workload: &WorkloadInfo, results: &Results) {
    for &system in &workload.systems {
        let profile = results.profiles.get(workload.key, system);
        if system == SystemKind::Ringtail || profile.is_some() {
            let _ = writeln!(md, "{}", super::profile::report_paragraph(profile.as_ref(), system));
        }
    }
}

/// One table of `figures`: a row per figure and point (left out where nothing was measured, unless
/// the figure says what its cells show then), a column per system, then Ringtail's ratios.
fn figure_table(md: &mut String, workload: &WorkloadInfo, results: &Results, figures: &[&FigureSpec]) {
    if figures.is_empty() {
        return;
    }
    let others: Vec<SystemKind> = workload.systems.iter().copied().filter(|&s| s != SystemKind::Ringtail).collect();
    let _ = write!(md, "| figure | {} |", workload.point_label);
    for system in &workload.systems {
        let _ = write!(md, " {} |", system.name());
    }
    for other in &others {
        let _ = write!(md, " ringtail ÷ {} |", other.name());
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "|{}", " --- |".repeat(2 + workload.systems.len() + others.len()));
    for figure in figures {
        for &point in &workload.points {
            let cells: Vec<Option<Summary>> =
                workload.systems.iter().map(|&s| results.summary(workload.key, figure.key, s, point)).collect();
            let measured = cells.iter().any(Option::is_some);
            let Some(missing) = (if measured { Some("—") } else { figure.when_missing }) else { continue };
            let _ = write!(md, "| {} ({}) | {} |", figure.title, figure.unit, axis_label(point));
            for cell in &cells {
                let text = cell.map_or_else(|| missing.to_string(), |s| format_summary(Some(s)));
                let _ = write!(md, " {text} |");
            }
            let ringtail = results.summary(workload.key, figure.key, SystemKind::Ringtail, point);
            for &other in &others {
                let ratio = match (ringtail, results.summary(workload.key, figure.key, other, point)) {
                    (Some(r), Some(o)) if o.median != 0.0 => format!("{:.2}", r.median / o.median),
                    _ => "—".into(),
                };
                let _ = write!(md, " {ratio} |");
            }
            let _ = writeln!(md);
        }
    }
    let _ = writeln!(md);
}

fn measuring_section(md: &mut String) {
    let _ = writeln!(
        md,
        "## How the figures are taken\n\n\
         - **CPU**: user + system time of the server process from `/proc/<pid>/stat`, read before the \
         workload and after it plus a settle period, so deferred work (flushes, compaction of in-memory \
         parts, WAL fsync) is counted. The load generator's own CPU is not counted, but it shares the \
         machine's cores with the server.\n\
         - **RSS**: `VmRSS` (after settling) and `VmHWM` (peak) from `/proc/<pid>/status`. RSS per active \
         series is (RSS after the workload − RSS when idle after start) ÷ active series; for Ringtail this \
         includes the touched pages of its memory-mapped store. The anonymous-memory figure does the same \
         with `RssAnon` (heap, stacks, anonymous maps; no file-backed pages), the closest outside view of \
         heap per series.\n\
         - **Disk**: allocated blocks of every file under the data directory (as `du` counts them) after \
         the settle period, divided by the samples written; Prometheus's include its WAL (its head block is \
         not yet compacted at these spans).\n\
         - **Latency**: wall time from sending the request to the last byte of the response, on loopback. \
         Open-loop loads count from the scheduled send time (no coordinated omission) and record in an \
         hdrhistogram; so do the runs of PromQL's latency-distribution pass.\n\
         - **Throughput**: samples ÷ wall time from the first request to the last response.\n\n\
         See `benches/README.md` for the workloads' details and how to rerun."
    );
}

fn system_color(kind: SystemKind) -> RGBColor {
    match kind {
        SystemKind::Ringtail => RGBColor(44, 160, 44),
        SystemKind::Prometheus => RGBColor(230, 82, 44),
        SystemKind::VictoriaMetrics => RGBColor(31, 119, 180),
    }
}

/// Short axis labels: 1k, 30k, 1M, 0.5.
fn axis_label(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{}M", trim(value / 1e6))
    } else if magnitude >= 1e3 {
        format!("{}k", trim(value / 1e3))
    } else {
        trim(value)
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn draw_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    log_x: bool,
    series: &[(SystemKind, Vec<(f64, f64)>)],
) -> Result<()> {
    draw_styled_chart(path, (title, x_label, y_label), ChartStyle { log_x, auto_log_y: true, markers: true }, series)
}

/// A chart of a measure over time: one polyline per system, linear axes from 0 (a plateau or a
/// slope must read as it is), no markers (hundreds of points per line).
pub(crate) fn draw_time_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(SystemKind, Vec<(f64, f64)>)],
) -> Result<()> {
    draw_styled_chart(
        path,
        (title, x_label, y_label),
        ChartStyle { log_x: false, auto_log_y: false, markers: false },
        series,
    )
}

/// How a chart's axes and points are drawn.
#[derive(Clone, Copy)]
struct ChartStyle {
    log_x: bool,
    /// Log y when the systems differ by more than 30×.
    auto_log_y: bool,
    markers: bool,
}

fn draw_styled_chart(
    path: &Path,
    (title, x_label, y_label): (&str, &str, &str),
    style: ChartStyle,
    series: &[(SystemKind, Vec<(f64, f64)>)],
) -> Result<()> {
    let log_x = style.log_x;
    let xs = series.iter().flat_map(|(_, p)| p.iter().map(|&(x, _)| x));
    let ys = series.iter().flat_map(|(_, p)| p.iter().map(|&(_, y)| y));
    let (x_min, x_max) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    let (y_min, y_max) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    // Log y when the systems differ by more than 30× and everything is positive; linear from 0
    // otherwise, so a chart never exaggerates a small difference.
    let log_y = style.auto_log_y && y_min > 0.0 && y_max / y_min > 30.0;
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_linear = if x_min == x_max { x_min - 1.0..x_max + 1.0 } else { x_min..x_max };
    let x_log = (x_min / 1.2).max(f64::MIN_POSITIVE)..x_max * 1.2;
    let y_linear = 0.0..(y_max * 1.1).max(f64::MIN_POSITIVE);
    let y_log = y_min / 1.5..y_max * 1.5;
    let labels = (title, x_label, y_label, style.markers);
    // Log x labels at the scaling points themselves (plotters' own pick may skip them).
    let mut key_points: Vec<f64> = series.iter().flat_map(|(_, p)| p.iter().map(|&(x, _)| x)).collect();
    key_points.sort_by(f64::total_cmp);
    key_points.dedup();
    let x_log_keyed = || LogCoord::from(x_log.clone().log_scale()).with_key_points(key_points.clone());
    match (log_x && x_min > 0.0, log_y) {
        (true, true) => plot(&root, labels, x_log_keyed(), y_log.log_scale(), series)?,
        (true, false) => plot(&root, labels, x_log_keyed(), y_linear, series)?,
        (false, true) => plot(&root, labels, x_linear, y_log.log_scale(), series)?,
        (false, false) => plot(&root, labels, x_linear, y_linear, series)?,
    }
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn plot<X, Y>(
    root: &DrawingArea<SVGBackend, Shift>,
    (title, x_label, y_label, markers): (&str, &str, &str, bool),
    x: X,
    y: Y,
    series: &[(SystemKind, Vec<(f64, f64)>)],
) -> Result<()>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 17))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_labels(8)
        .y_labels(8)
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|v| axis_label(*v))
        .y_label_formatter(&|v| axis_label(*v))
        .draw()?;
    for (kind, points) in series {
        let color = system_color(*kind);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
            .label(kind.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    // Every system has its own marker and Ringtail's are drawn last, so equal values stay visible.
    for (kind, points) in series.iter().rev().filter(|_| markers) {
        let color = system_color(*kind);
        match kind {
            SystemKind::Ringtail => chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?,
            SystemKind::Prometheus => {
                chart.draw_series(points.iter().map(|&p| TriangleMarker::new(p, 6, color.filled())))?
            }
            SystemKind::VictoriaMetrics => {
                chart.draw_series(points.iter().map(|&p| Cross::new(p, 5, color.stroke_width(2))))?
            }
        };
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Re-checks the earlier targets against this run's medians.
pub fn check_targets(results: &Results, scale: &Scale) -> Vec<TargetCheck> {
    let median = |workload: &str, figure: &str, system: SystemKind, point: f64| {
        results.summary(workload, figure, system, point).map(|s| s.median)
    };
    let mut checks = Vec::new();

    // 1. Remote-write ingest per CPU-second ≥ 2× VictoriaMetrics, at every point measured.
    let mut parts = Vec::new();
    let mut all_met = true;
    for &series in &scale.rw_series {
        let point = series as f64;
        let key = workloads::remote_write::KEY;
        if let (Some(r), Some(v)) = (
            median(key, "samples_per_cpu_s", SystemKind::Ringtail, point),
            median(key, "samples_per_cpu_s", SystemKind::VictoriaMetrics, point),
        ) {
            parts.push(format!("{}: {:.2}×", axis_label(point), r / v));
            all_met &= r / v >= 2.0;
        }
    }
    checks.push(TargetCheck {
        target: "remote-write ingest ≥ 2× VictoriaMetrics per CPU-second (at every active-series point)",
        verdict: verdict(!parts.is_empty(), all_met),
        measured: if parts.is_empty() {
            "not run".into()
        } else {
            format!("Ringtail ÷ VictoriaMetrics samples per CPU-s — {}", parts.join(", "))
        },
    });

    // 2. PromQL median latency ≤ 1/3 of Prometheus's at 10k series.
    let key = workloads::promql::KEY;
    let point = scale.query_series.iter().copied().min_by_key(|&n| n.abs_diff(10_000)).map(|n| n as f64);
    let mut parts = Vec::new();
    let mut all_met = true;
    if let Some(point) = point {
        for (figure, name) in [
            ("sum_rate_instant_p50_ms", "sum-rate instant"),
            ("sum_rate_range_p50_ms", "sum-rate range"),
            ("histogram_instant_p50_ms", "histogram instant"),
            ("histogram_range_p50_ms", "histogram range"),
        ] {
            if let (Some(r), Some(p)) =
                (median(key, figure, SystemKind::Ringtail, point), median(key, figure, SystemKind::Prometheus, point))
            {
                parts.push(format!("{name} {:.2}", r / p));
                all_met &= r / p <= 1.0 / 3.0;
            }
        }
    }
    let at = point.map(axis_label).unwrap_or_default();
    checks.push(TargetCheck {
        target: "PromQL median latency ≤ 1/3 of Prometheus's (10k series)",
        verdict: verdict(!parts.is_empty() && point == Some(10_000.0), all_met),
        measured: if parts.is_empty() {
            "not run".into()
        } else {
            format!("Ringtail ÷ Prometheus median at {at} series — {}", parts.join(", "))
        },
    });

    // 3. Custom metrics API p99 < 5 ms at 500 req/s, pods/* over 1000 pods.
    let key = workloads::adapter_api::KEY;
    let p99 = median(key, "p99_ms", SystemKind::Ringtail, 1000.0);
    let conditions = scale.api_rate == 500;
    checks.push(TargetCheck {
        target: "custom metrics API p99 < 5 ms at 500 req/s, pods/* over 1000 pods",
        verdict: verdict(p99.is_some() && conditions, p99.is_some_and(|v| v < 5.0)),
        measured: match p99 {
            None => "not run at 1000 pods".into(),
            Some(v) => format!(
                "p99 {} ms (p50 {} ms) at {} req/s{}",
                format_value(v),
                median(key, "p50_ms", SystemKind::Ringtail, 1000.0).map(format_value).unwrap_or_default(),
                scale.api_rate,
                if conditions { "" } else { " — not the target's rate" }
            ),
        },
    });

    // 4. Freshness: remote-write ack → custom metrics API < 100 ms.
    let key = workloads::freshness::KEY;
    let first = scale.freshness_intervals.first().map(|&s| s as f64).unwrap_or(0.0);
    let rw_p99 = median(key, "rw_p99_ms", SystemKind::Ringtail, first);
    // Missed in any repeat.
    let rw_missed = results.summary(key, "rw_missed", SystemKind::Ringtail, first).map_or(0.0, |s| s.max);
    let rw_repeats = scale.repeats_at(0, scale.freshness_intervals.len());
    checks.push(TargetCheck {
        target: "freshness: remote-write ack → value in the custom metrics API < 100 ms",
        verdict: verdict(rw_p99.is_some(), rw_p99.is_some_and(|v| v < 100.0) && rw_missed == 0.0),
        measured: match rw_p99 {
            None => "not run".into(),
            Some(v) => format!(
                "p99 {} ms, p50 {} ms ({}, polled every 10 ms){}",
                format_value(v),
                median(key, "rw_p50_ms", SystemKind::Ringtail, first).map(format_value).unwrap_or_default(),
                if rw_repeats > 1 {
                    format!("medians over {rw_repeats} repeats of {} changes", scale.freshness_changes)
                } else {
                    format!("over {} changes", scale.freshness_changes)
                },
                if rw_missed > 0.0 { format!(", up to {rw_missed} never seen in a repeat") } else { String::new() }
            ),
        },
    });

    // 5. Heap per active series ≤ 1 KiB: growth of anonymous memory (heap, not the mapped store)
    // per series at the largest remote-write point.
    let key = workloads::remote_write::KEY;
    let largest = scale.rw_series.iter().copied().max().map(|n| n as f64);
    let per_series = largest.and_then(|p| median(key, "anon_bytes_per_series", SystemKind::Ringtail, p));
    let rss_per_series = largest.and_then(|p| median(key, "rss_bytes_per_series", SystemKind::Ringtail, p));
    checks.push(TargetCheck {
        target: "heap per active series ≤ 1 KiB",
        verdict: verdict(per_series.is_some(), per_series.is_some_and(|v| v <= 1024.0)),
        measured: match (per_series, largest) {
            (Some(v), Some(p)) => format!(
                "anonymous memory (RssAnon: heap, no mapped store pages) grew {} bytes per active series at {} \
                 series after remote-write ingest; whole RSS grew {} bytes per series",
                format_value(v),
                axis_label(p),
                rss_per_series.map(format_value).unwrap_or_else(|| "—".into())
            ),
            _ => "not run".into(),
        },
    });
    checks
}

fn verdict(measured: bool, met: bool) -> Verdict {
    match (measured, met) {
        (false, _) => Verdict::NotMeasured,
        (true, true) => Verdict::Met,
        (true, false) => Verdict::Missed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::results::tabulated;

    #[test]
    fn values_read_well() {
        assert_eq!(format_value(1_234_567.0), "1.23 M");
        assert_eq!(format_value(30_000.0), "30.0 k");
        assert_eq!(format_value(4.5678), "4.57");
        assert_eq!(format_value(0.01234), "0.012");
        assert_eq!(format_value(250.0), "250");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(axis_label(30_000.0), "30k");
        assert_eq!(axis_label(0.5), "0.5");
    }

    #[test]
    fn tables_show_ranges_and_missing_rows() {
        let figures = vec![
            tabulated("p50", "latency", "ms", true),
            tabulated("p999", "latency", "p99.9 ms", true).in_table("Distribution").when_missing("— (too few runs)"),
        ];
        let workload = WorkloadInfo {
            key: "w",
            title: "(w) workload",
            description: String::new(),
            parameters: vec![],
            point_label: "series",
            points: vec![1000.0, 10_000.0],
            log_x: true,
            systems: SystemKind::ALL.to_vec(),
            figures,
            notes: vec![],
        };
        let mut results = Results::default();
        for (repeat, value) in [2.0, 1.0, 3.0].into_iter().enumerate() {
            for system in SystemKind::ALL {
                results.record("w", "p50", system, 1000.0, repeat, value);
            }
        }
        results.record("w", "p999", SystemKind::Ringtail, 1000.0, 0, 5.0);
        results.record("w", "p999", SystemKind::Prometheus, 1000.0, 0, 20.0);
        results.add_workload(workload.clone());
        let mut md = String::new();
        workload_section(&mut md, &workload, &results, Path::new("/nonexistent"), &mut Vec::new());
        assert!(md.contains("| latency (ms) | 1k | 2.00 (1.00–3.00) | 2.00 (1.00–3.00) |"), "{md}");
        assert!(!md.contains("| latency (ms) | 10k |"), "{md}");
        assert!(md.contains("### Distribution\n\n| figure | series |"), "{md}");
        assert!(md.contains("| latency (p99.9 ms) | 1k | 5.00 | 20.0 | — | 0.25 | — |"), "{md}");
        let missing = "| latency (p99.9 ms) | 10k | — (too few runs) | — (too few runs) | — (too few runs) | — | — |";
        assert!(md.contains(missing), "{md}");
        // A workload that never sampled Ringtail says so in its "where the time goes" line.
        assert!(
            md.contains("**Where Ringtail's time goes:** not profiled — this workload does not sample it."),
            "{md}"
        );
    }

    #[test]
    fn chart_is_written_as_svg() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.svg");
        let series = vec![
            (SystemKind::Ringtail, vec![(1000.0, 1.0), (10_000.0, 2.0)]),
            (SystemKind::Prometheus, vec![(1000.0, 100.0), (10_000.0, 400.0)]),
        ];
        draw_chart(&path, "t", "series", "ms", true, &series)?;
        let svg = std::fs::read_to_string(&path)?;
        assert!(svg.starts_with("<svg") && svg.contains("ringtail"));
        Ok(())
    }
}
