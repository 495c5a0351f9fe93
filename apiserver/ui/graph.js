// RingtailGraph draws a Prometheus range-query matrix as an SVG line chart: a time axis, a value
// axis, one line per series and a legend. Plain DOM, no dependencies.
"use strict";
(function (global) {
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#2457c5", "#c0362c", "#1a7f37", "#9a6700", "#8250df", "#0a7ea4", "#bf3989", "#57606a"];
  // Most series drawn; the legend says how many more there were.
  const MAX_SERIES = 40;

  function node(tag, attrs, text) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  }

  // Round, readable tick values covering [lo, hi].
  function ticks(lo, hi, count) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return out;
  }

  function formatValue(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
    return String(Number(v.toPrecision(6)));
  }

  function formatTime(sec, span) {
    const d = new Date(sec * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    const hm = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
    if (span <= 3600 * 2) return hm + ":" + pad(d.getUTCSeconds());
    if (span <= 86400 * 2) return hm;
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
  }

  function seriesName(metric) {
    const name = metric.__name__ || "";
    const labels = Object.keys(metric).filter((k) => k !== "__name__").sort()
      .map((k) => k + '="' + metric[k] + '"');
    return name + "{" + labels.join(", ") + "}";
  }

  // Renders `matrix` (Prometheus `data.result` of a range query) over [start, end] (Unix seconds)
  // into `container`.
  function render(container, matrix, start, end) {
    container.textContent = "";
    const W = 1160, H = 380, L = 64, R = 16, T = 12, B = 34;
    const drawn = matrix.slice(0, MAX_SERIES);
    let lo = Infinity, hi = -Infinity;
    for (const s of drawn) for (const [, v] of s.values) {
      const f = Number(v);
      if (Number.isFinite(f)) { lo = Math.min(lo, f); hi = Math.max(hi, f); }
    }
    if (lo === Infinity) { lo = 0; hi = 1; }
    if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
    const x = (t) => L + ((t - start) / Math.max(end - start, 1e-9)) * (W - L - R);
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
    const svg = node("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "time-series graph" });
    const grid = node("g", { class: "grid" });
    const axis = node("g", { class: "axis" });
    for (const v of ticks(lo, hi, 6)) {
      grid.appendChild(node("line", { x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      axis.appendChild(node("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, formatValue(v)));
    }
    const span = end - start;
    for (const t of ticks(start, end, 8)) {
      grid.appendChild(node("line", { x1: x(t), x2: x(t), y1: T, y2: H - B }));
      axis.appendChild(node("text", { x: x(t), y: H - B + 16, "text-anchor": "middle" }, formatTime(t, span)));
    }
    axis.appendChild(node("path", { d: `M${L},${T}V${H - B}H${W - R}`, fill: "none" }));
    axis.appendChild(node("text", { x: W - R, y: H - 4, "text-anchor": "end" }, "time (UTC)"));
    svg.appendChild(grid);
    svg.appendChild(axis);
    const legend = document.createElement("ul");
    legend.className = "legend";
    drawn.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      let d = "", pen = "M";
      for (const [t, v] of s.values) {
        const f = Number(v);
        if (!Number.isFinite(f)) { pen = "M"; continue; }
        d += pen + x(Number(t)).toFixed(1) + "," + y(f).toFixed(1);
        pen = "L";
      }
      const path = node("path", { d: d, fill: "none", stroke: color, "stroke-width": 1.8, class: "series" });
      path.appendChild(node("title", {}, seriesName(s.metric)));
      svg.appendChild(path);
      // A lone point draws nothing as a path: mark it.
      if (s.values.length === 1 && Number.isFinite(Number(s.values[0][1]))) {
        svg.appendChild(node("circle", { cx: x(Number(s.values[0][0])), cy: y(Number(s.values[0][1])), r: 3, fill: color }));
      }
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = color;
      const label = document.createElement("span");
      label.className = "mono";
      label.textContent = seriesName(s.metric);
      li.append(sw, label);
      legend.appendChild(li);
    });
    if (matrix.length > drawn.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = `… ${matrix.length - drawn.length} more series not drawn`;
      legend.appendChild(li);
    }
    container.append(svg, legend);
  }

  global.RingtailGraph = { render: render, seriesName: seriesName };
})(window);
