// Ringtail's web UI: hash-routed views over the server's own APIs.
//   #/targets                               scrape targets and their health
//   #/adapter[?metric=&resource=&namespace=&name=]   adapter rules explained (and one object)
//   #/query?expr=…&range=1h&tab=table|graph query box, result table, time-series graph
//   #/rules                                 recording and alerting rules (rule_files)
//   #/store                                 store figures
// Everything is built with DOM calls and textContent: server data is never parsed as HTML.
"use strict";
(function () {
  const view = document.getElementById("view");
  const RANGES = ["5m", "15m", "1h", "3h", "6h", "12h", "1d", "2d", "7d"];
  // Points per graph line: the query_range step is the range divided by this.
  const GRAPH_POINTS = 240;
  // Rows of a result table drawn; a larger result says how many were left out.
  const MAX_TABLE_ROWS = 1000;

  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") n.className = v;
      else if (k === "text") n.textContent = v;
      else n.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      n.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return n;
  }

  function table(headers, rows) {
    return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))));
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const text = await response.text();
    let body;
    try { body = JSON.parse(text); } catch (e) { throw new Error(`${url}: HTTP ${response.status}: ${text.slice(0, 300)}`); }
    if (!response.ok || body.status !== "success") throw new Error(body.error || `${url}: HTTP ${response.status}`);
    return body.data;
  }

  function parseDuration(text) {
    const m = /^(\d+)([smhdw])$/.exec(text || "");
    if (!m) return null;
    return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2]];
  }

  function fmtNum(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"); }
  function fmtBytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0, v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
  }
  function fmtTime(ms) {
    if (ms === null || ms === undefined) return "—";
    return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }
  function fmtAge(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 120) return s + " s ago";
    if (s < 7200) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }

  function route() {
    const hash = location.hash.replace(/^#\/?/, "");
    const [name, query] = hash.split("?");
    return { name: name || "targets", params: new URLSearchParams(query || "") };
  }

  async function show() {
    const { name, params } = route();
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === name);
    const render = { targets: targetsView, adapter: adapterView, query: queryView, rules: rulesView, store: storeView }[name];
    view.dataset.state = "loading";
    view.dataset.view = name;
    view.replaceChildren(el("p", { class: "muted" }, "Loading…"));
    try {
      const content = render ? await render(params) : [el("h1", {}, "Not found"), el("p", {}, `No view “${name}”.`)];
      view.replaceChildren(...content.filter((c) => c !== null && c !== undefined && c !== false));
      view.dataset.state = "ready";
    } catch (e) {
      view.replaceChildren(el("h1", {}, "Error"), el("div", { class: "error" }, String(e.message || e)));
      view.dataset.state = "error";
    }
  }

  // ---- Targets ----
  async function targetsView() {
    const data = await getJSON("/api/v1/targets");
    const active = data.activeTargets || [];
    const down = active.filter((t) => t.health !== "up").length;
    const out = [el("h1", {}, "Targets"),
      el("p", { class: "muted" }, `${active.length} active (${active.length - down} up, ${down} not up), ${(data.droppedTargets || []).length} dropped by relabeling`)];
    if (active.length === 0) return out.concat(el("div", { class: "notice" }, "No scrape targets are configured."));
    const rows = active.map((t) => [
      t.scrapePool,
      el("span", { class: "mono" }, t.scrapeUrl),
      el("span", { class: "badge " + t.health }, t.health),
      t.lastScrape.startsWith("0001") ? "never" : fmtAge(Date.parse(t.lastScrape)),
      (t.lastScrapeDuration * 1000).toFixed(1) + " ms",
      t.scrapeInterval,
      t.lastError ? el("span", { class: "problem" }, t.lastError) : "",
    ]);
    return out.concat(table(["Pool", "Endpoint", "Health", "Last scrape", "Duration", "Interval", "Error"], rows));
  }

  // ---- Adapter ----
  function objectForm(params) {
    const field = (name, placeholder) => el("input", { name, placeholder, value: params.get(name) || "", "aria-label": name });
    const form = el("form", { class: "object" }, field("metric", "metric"), field("resource", "resource (pods)"),
      field("namespace", "namespace"), field("name", "object name"), el("button", { type: "submit" }, "Explain"));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      for (const f of ["metric", "resource", "namespace", "name"]) if (form.elements[f].value) q.set(f, form.elements[f].value);
      location.hash = "#/adapter?" + q.toString();
    });
    return form;
  }

  function objectAnswer(o) {
    const where = (o.namespace ? o.namespace + "/" : "") + o.name;
    if (o.value !== null && o.value !== undefined) {
      return el("div", { class: "card good", id: "object-answer" }, el("h2", {}, `${o.metric} for ${o.resource} ${where}`),
        el("p", {}, "Served value: ", el("strong", {}, String(o.value))));
    }
    return el("div", { class: "card broken", id: "object-answer" }, el("h2", {}, `${o.metric} for ${o.resource} ${where}: no value`),
      el("ul", { class: "problems" }, o.reasons.map((r) => el("li", { class: "problem" }, r))));
  }

  function ruleCard(rule) {
    const broken = rule.problems.length > 0;
    const card = el("div", { class: "card " + (broken ? "broken" : "good"), "data-rule": rule.at });
    card.append(el("h2", {}, rule.at + (rule.external ? " (external)" : "")),
      el("dl", { class: "kv" }, el("dt", {}, "seriesQuery"), el("dd", { class: "mono" }, rule.series_query),
        el("dt", {}, "metricsQuery"), el("dd", { class: "mono" }, rule.metrics_query),
        el("dt", {}, "matches"), el("dd", {}, `${fmtNum(rule.series_matched)} series now, ${rule.names_total} names` +
          (rule.series_truncated ? " (only the first part looked at)" : ""))));
    if (rule.served.length > 0) {
      card.append(el("h3", {}, "Serves"), table(["Metric", "Resource", "Scope", "Object label", "Example"],
        rule.served.map((s) => [el("strong", {}, s.metric), s.resource || "external", s.namespaced ? "namespaced" : "root", s.label,
          el("div", {}, el("div", { class: "mono" }, "GET " + s.example_url),
            el("div", { class: "mono muted" }, s.example_query.Ok !== undefined ? "runs: " + s.example_query.Ok : "cannot build the query: " + s.example_query.Err))])));
    }
    if (rule.names.length > 0) {
      card.append(el("h3", {}, "Series names"), table(["Series name", "Series", "Becomes", "Attached to"],
        rule.names.map((n) => [el("span", { class: "mono" }, n.name), n.series,
          n.metric === null ? el("span", { class: "problem" }, "dropped by seriesFilters/name.matches") : n.metric,
          n.metric === null || rule.external ? "" : (n.resources.length ? n.resources.join(", ") : el("span", { class: "problem" }, "nothing"))])));
      if (rule.names.length < rule.names_total) card.append(el("p", { class: "muted" }, `… ${rule.names_total - rule.names.length} more names`));
    }
    if (broken) card.append(el("h3", {}, "Why metrics are missing"), el("ul", { class: "problems" }, rule.problems.map((p) => el("li", { class: "problem" }, p))));
    return card;
  }

  async function adapterView(params) {
    const query = new URLSearchParams();
    for (const f of ["metric", "resource", "namespace", "name"]) if (params.get(f)) query.set(f, params.get(f));
    const data = await getJSON("/api/ringtail/v1/adapter" + (query.toString() ? "?" + query : ""));
    const out = [el("h1", {}, "Adapter rules")];
    if (!data.serving) return out.concat(el("div", { class: "notice" }, data.message));
    if (!data.configured) out.push(el("div", { class: "notice" }, data.message));
    const x = data.explanation;
    out.push(el("p", { class: "muted" }, `Rules from ${x.source}: ${x.custom_rules} rules, ${x.external_rules} externalRules.`));
    for (const w of x.warnings) out.push(el("div", { class: "notice" }, "warning: " + w));
    if (x.list_error) out.push(el("div", { class: "error" }, "cannot list series: " + x.list_error));
    out.push(el("div", { class: "card" }, el("h2", {}, "Why does an object have no value?"), objectForm(params)));
    if (data.object) out.push(objectAnswer(data.object));
    const problems = x.rules.flatMap((r) => r.problems.map((p) => r.at + ": " + p));
    out.push(problems.length === 0
      ? el("div", { class: "card good" }, el("h2", {}, `Every rule serves what it matches (${x.rules.length} rules)`))
      : el("div", { class: "card broken", id: "problems" }, el("h2", {}, `${problems.length} problem${problems.length === 1 ? "" : "s"} in ${x.rules.filter((r) => r.problems.length).length} of ${x.rules.length} rules`),
        el("ul", { class: "problems" }, problems.map((p) => el("li", { class: "problem" }, p)))));
    if (x.resource_rules) {
      out.push(el("div", { class: "card" }, el("h2", {}, `resourceRules (window ${x.resource_rules.window})`),
        x.resource_rules.examples.map(([at, text]) => el("div", {}, el("strong", {}, at), el("pre", {}, text)))));
    }
    return out.concat(x.rules.map(ruleCard));
  }

  // ---- Query ----
  async function queryView(params) {
    const expr = params.get("expr") || "";
    const range = RANGES.includes(params.get("range")) ? params.get("range") : "1h";
    const tab = params.get("tab") === "graph" ? "graph" : "table";
    const box = el("textarea", { name: "expr", placeholder: "PromQL expression, e.g. up", "aria-label": "expression", spellcheck: "false" });
    box.value = expr;
    const select = el("select", { name: "range", "aria-label": "graph range" }, RANGES.map((r) => el("option", { value: r, selected: r === range }, r)));
    const form = el("form", { class: "query" }, box, select, el("button", { type: "submit", class: "primary" }, "Execute"));
    const go = (nextTab) => {
      const q = new URLSearchParams({ expr: box.value, range: select.value, tab: nextTab || tab });
      const next = "#/query?" + q.toString();
      if (location.hash === next) show(); else location.hash = next;
    };
    form.addEventListener("submit", (ev) => { ev.preventDefault(); go(); });
    box.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); go(); } });
    const tabLink = (name, label) => {
      const a = el("a", { href: "#", class: name === tab ? "active" : "" }, label);
      a.addEventListener("click", (ev) => { ev.preventDefault(); go(name); });
      return a;
    };
    const panel = el("div", { class: "tabpanel" + (tab === "graph" ? " graph" : "") });
    const out = [el("h1", {}, "Query"), form, el("div", { class: "tabs" }, tabLink("table", "Table"), tabLink("graph", "Graph")), panel];
    if (!expr) { panel.append(el("p", { class: "muted" }, "Type an expression and press Execute.")); return out; }
    try {
      if (tab === "table") await fillTable(panel, expr); else await fillGraph(panel, expr, range);
    } catch (e) {
      panel.replaceChildren(el("div", { class: "error" }, String(e.message || e)));
    }
    return out;
  }

  async function fillTable(panel, expr) {
    const data = await getJSON("/api/v1/query?" + new URLSearchParams({ query: expr }));
    const label = (metric) => window.RingtailGraph.seriesName(metric);
    let rows;
    switch (data.resultType) {
      case "vector": rows = data.result.map((s) => [el("span", { class: "mono" }, label(s.metric)), s.value[1]]); break;
      case "matrix": rows = data.result.map((s) => [el("span", { class: "mono" }, label(s.metric)),
        s.values.map((v) => `${v[1]} @${v[0]}`).join("\n")]); break;
      case "scalar": case "string": rows = [["scalar", data.result[1]]]; break;
      default: rows = [];
    }
    panel.replaceChildren(el("p", { class: "muted" }, `${rows.length} result${rows.length === 1 ? "" : "s"} (${data.resultType})` +
      (rows.length > MAX_TABLE_ROWS ? `, the first ${MAX_TABLE_ROWS} shown` : "")));
    if (rows.length === 0) panel.append(el("p", {}, "Empty query result."));
    else panel.append(table(["Series", "Value"], rows.slice(0, MAX_TABLE_ROWS)));
  }

  async function fillGraph(panel, expr, range) {
    const seconds = parseDuration(range);
    const end = Math.floor(Date.now() / 1000);
    const start = end - seconds;
    const step = Math.max(1, Math.ceil(seconds / GRAPH_POINTS));
    const data = await getJSON("/api/v1/query_range?" + new URLSearchParams({ query: expr, start, end, step }));
    panel.replaceChildren();
    if (data.result.length === 0) { panel.append(el("p", {}, "Empty query result.")); return; }
    const chart = el("div", { class: "chart" });
    panel.append(el("p", { class: "muted" }, `${data.result.length} series, last ${range}, step ${step}s`), chart);
    window.RingtailGraph.render(chart, data.result, start, end);
  }

  // ---- Rules (recording and alerting, from rule_files) ----
  async function rulesView() {
    const data = await getJSON("/api/v1/rules");
    const groups = data.groups || [];
    const out = [el("h1", {}, "Rules")];
    if (groups.length === 0) return out.concat(el("div", { class: "notice" }, "No recording or alerting rules are loaded (rule_files in --config)."));
    for (const g of groups) {
      const rows = g.rules.map((r) => [el("strong", {}, r.name), r.type === "recording" ? "record" : "alert",
        el("span", { class: "mono" }, r.query), el("span", { class: "badge " + (r.health === "ok" ? "up" : r.health === "err" ? "down" : "unknown") }, r.health),
        r.lastEvaluation && !r.lastEvaluation.startsWith("0001") ? fmtAge(Date.parse(r.lastEvaluation)) : "never",
        r.lastError ? el("span", { class: "problem" }, r.lastError) : ""]);
      out.push(el("div", { class: "card" }, el("h2", {}, `${g.name} (every ${g.interval}s, ${g.file})`),
        table(["Rule", "Type", "Query", "Health", "Last evaluation", "Error"], rows)));
    }
    return out;
  }

  // ---- Store ----
  async function storeView() {
    const [s, tsdb] = await Promise.all([getJSON("/api/ringtail/v1/store"), getJSON("/api/v1/status/tsdb")]);
    const figure = (label, value, ...extra) => el("div", { class: "figure" }, el("div", { class: "label" }, label), el("div", { class: "value" }, value), extra);
    const pct = s.ringFill * 100;
    const fill = (pct === 0 || pct >= 1 ? pct.toFixed(1) : pct.toPrecision(2)) + " %";
    const bar = el("div", { class: "bar" }, el("span", {}));
    bar.firstChild.style.width = Math.min(100, s.ringFill * 100).toFixed(1) + "%";
    const out = [el("h1", {}, "Store"),
      s.writesAccepted ? null : el("div", { class: "error" }, "Writes refused: " + s.writesRefusedReason),
      el("div", { class: "figures" },
        figure("Series", fmtNum(s.series)),
        figure("Samples", fmtNum(s.samples), el("div", { class: "muted" }, `${fmtNum(s.headSamples)} in open chunks`)),
        figure("Ring fill", fill, bar, el("div", { class: "muted" }, `${fmtBytes(s.dataBytes)} of ${fmtBytes(s.ringBudgetBytes)}`)),
        figure("Oldest sample", s.oldestSampleMs === null ? "none" : fmtAge(s.oldestSampleMs), el("div", { class: "muted" }, fmtTime(s.oldestSampleMs))),
        figure("Newest sample", s.newestSampleMs === null ? "none" : fmtAge(s.newestSampleMs), el("div", { class: "muted" }, fmtTime(s.newestSampleMs))),
        figure("On disk", fmtBytes(s.bytesOnDisk), el("div", { class: "muted" }, `budget ${fmtBytes(s.budgetBytes)}, ${s.bytesPerSample.toFixed(2)} B/sample`)),
        figure("Series churn", `+${fmtNum(s.seriesCreated)} / −${fmtNum(s.seriesRemoved)}`, el("div", { class: "muted" }, "created / removed since start")))];
    const top = (tsdb.seriesCountByMetricName || []).map((e) => [el("span", { class: "mono" }, e.name), fmtNum(e.value)]);
    out.push(el("h2", { class: "spaced" }, "Series per metric name (top 10)"), top.length ? table(["Metric", "Series"], top) : el("p", { class: "muted" }, "No series."));
    return out;
  }

  window.addEventListener("hashchange", show);
  show();
})();
