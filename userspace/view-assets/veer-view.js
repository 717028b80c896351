// veer's live view (docs/view.md): plain JavaScript drawing inline SVG, no
// library, nothing fetched from elsewhere. Live: polls veerd's read-only API
// (/api/v1/services, /api/v1/services/NAME, /api/v1/nodes) every second.
// Report (`veerctl report`): the same renderer on window.VEER_REPORT, one
// service document embedded in the file; no request at all.
// Stable hooks for tests and scripts: section.service[data-service][data-phase],
// .weights-chart path.desired|applied|step[data-variant], .marker.abort|completed,
// tr.gate-row[data-gate][data-result], tr.variant-row[data-variant],
// .traffic-chart[data-field=flows_per_s|latency_p95_ms|error_rate] path[data-variant],
// ol.timeline li.event[data-kind], .ab-verdict, tr.node-row[data-node].
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#2563eb", "#16a34a", "#ea580c", "#9333ea", "#0891b2", "#ca8a04", "#db2777", "#475569"];
  const POLL_MS = 1000;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, v);
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, v);
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }
  const num = (v, digits) => (v === null || v === undefined || !isFinite(v) ? "–" : Number(v).toFixed(digits));
  // An axis label with as many digits as the axis's range needs (error rates are thousandths).
  function tick(v, top) {
    if (v === 0) return "0";
    if (top >= 10) return v.toFixed(0);
    if (top >= 0.1) return v.toFixed(2);
    return v.toPrecision(2);
  }
  const clock = (ms) => new Date(ms).toISOString().substring(11, 19);
  function colorOf(names, name) {
    const i = names.indexOf(name);
    return COLORS[(i < 0 ? 0 : i) % COLORS.length];
  }

  // A time chart: SERIES [{cls, variant, color, points: [[t, v|null]...], step}], MARKERS
  // [{t, cls, label}], BOUNDS [{y, label}]. Null values break a line.
  function chart(cls, id, opts) {
    const W = opts.width || 720, H = opts.height || 200, L = 44, R = 10, T = 10, B = 22;
    const s = svg("svg", {class: "chart " + cls, id: id, width: W, height: H, viewBox: `0 0 ${W} ${H}`,
                          role: "img", "aria-label": opts.title || cls});
    const x0 = opts.t0, x1 = Math.max(opts.t1, opts.t0 + 1000);
    let y0 = opts.ymin !== undefined ? opts.ymin : 0, y1 = opts.ymax;
    if (y1 === undefined) {
      y1 = 0;
      for (const se of opts.series) for (const p of se.points) if (p[1] !== null && isFinite(p[1])) y1 = Math.max(y1, p[1]);
      for (const b of opts.bounds || []) if (isFinite(b.y)) y1 = Math.max(y1, b.y);
      y1 = y1 > 0 ? y1 * 1.15 : 1;
    }
    const X = (t) => L + ((t - x0) / (x1 - x0)) * (W - L - R);
    const Y = (v) => T + (1 - (v - y0) / (y1 - y0 || 1)) * (H - T - B);
    for (let i = 0; i <= 4; i++) {
      const v = y0 + ((y1 - y0) * i) / 4, y = Y(v);
      s.append(svg("line", {class: "grid", x1: L, x2: W - R, y1: y, y2: y}));
      s.append(svg("text", {x: L - 4, y: y + 3, "text-anchor": "end"}, tick(v, y1)));
    }
    s.append(svg("line", {class: "axis", x1: L, x2: L, y1: T, y2: H - B}));
    s.append(svg("line", {class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B}));
    s.append(svg("text", {x: L, y: H - 6}, clock(x0)));
    s.append(svg("text", {x: W - R, y: H - 6, "text-anchor": "end"}, clock(x1)));
    for (const b of opts.bounds || []) {
      if (!isFinite(b.y)) continue;
      s.append(svg("line", {class: "bound", x1: L, x2: W - R, y1: Y(b.y), y2: Y(b.y), "data-bound": b.y}));
      s.append(svg("text", {x: W - R - 2, y: Y(b.y) - 3, "text-anchor": "end"}, b.label));
    }
    for (const se of opts.series) {
      let d = "", pen = false, last = null, n = 0;
      for (const [t, v] of se.points) {
        if (v === null || !isFinite(v)) { pen = false; continue; }
        if (se.step && pen && last !== null) d += `L${X(t).toFixed(1)},${Y(last).toFixed(1)}`;
        d += `${pen ? "L" : "M"}${X(t).toFixed(1)},${Y(v).toFixed(1)}`;
        pen = true; last = v; n++;
      }
      if (se.step && pen && se.extend !== false) d += `L${X(x1).toFixed(1)},${Y(last).toFixed(1)}`;
      if (se.line !== false) s.append(svg("path", {class: se.cls, "data-variant": se.variant, "data-points": n, d: d, stroke: se.color}));
      if (se.dots) for (const p of se.points) {
        if (p[1] === null || !isFinite(p[1])) continue;
        s.append(svg("circle", {class: "point", cx: X(p[0]), cy: Y(p[1]), r: 3, "data-result": p[2] || ""}));
      }
    }
    for (const m of opts.markers || []) {
      if (m.t < x0 || m.t > x1) continue;
      const g = svg("g", {class: "marker " + m.cls, "data-t": m.t});
      g.append(svg("line", {class: "marker " + m.cls, x1: X(m.t), x2: X(m.t), y1: T, y2: H - B}));
      // Labels at the foot of the line (bounds are labelled at the top), turned left near the right edge.
      const right = X(m.t) > W - R - 60;
      g.append(svg("text", {x: X(m.t) + (right ? -3 : 3), y: H - B - 4, "text-anchor": right ? "end" : "start"}, m.label));
      s.append(g);
    }
    return s;
  }

  function legend(names, report) {
    const d = el("div", {class: "legend"});
    for (const n of names) {
      const i = el("i");
      i.style.background = colorOf(names, n);
      d.append(el("span", {}, i, n));
    }
    d.append(el("span", {class: "muted"}, report ? "the desired weights of each step, from the event log" : "dashed: desired, solid: applied (sampled each second)"));
    return d;
  }

  const MARKED = {abort: "abort", completed: "completed", started: "start", retry: "retry"};
  function markersOf(rollout) {
    if (!rollout) return [];
    return rollout.events.filter((e) => MARKED[e.kind]).map((e) => ({t: Date.parse(e.time), cls: e.kind, label: MARKED[e.kind]}));
  }

  function weightsChart(doc, report) {
    const names = doc.status.variants.map((v) => v.name);
    const h = doc.history, r = doc.rollout, series = [];
    let t0, t1;
    if (!report && h && h.t.length) {
      t0 = h.t[0]; t1 = h.t[h.t.length - 1];
      for (const n of names) {
        const v = h.variants[n];
        if (!v) continue;
        // Weights change in steps (one table flip): drawn as steps, not slopes between samples.
        series.push({cls: "desired", variant: n, color: colorOf(names, n), step: true, extend: false, points: h.t.map((t, i) => [t, v.desired[i]])});
        series.push({cls: "applied", variant: n, color: colorOf(names, n), step: true, extend: false, points: h.t.map((t, i) => [t, v.applied[i]])});
      }
    } else if (r && r.steps.length) {
      // The rollout's weight steps from its events: the report's picture, which outlives the history.
      t0 = r.started_at_ms;
      t1 = Math.max(r.outcome ? r.outcome.t : 0, r.steps[r.steps.length - 1].t, Date.parse(r.events[r.events.length - 1].time));
      t1 = Math.max(t1 + (t1 - t0) * 0.05, t0 + 1000);
      for (const n of names)
        series.push({cls: "step", variant: n, color: colorOf(names, n), step: true,
                     points: r.steps.filter((s) => n in s.weights).map((s) => [s.t, s.weights[n]])});
    } else {
      return el("p", {class: "muted no-weights"}, report ? "no weight changed in this rollout" : "no samples yet");
    }
    return chart("weights-chart", "weights-chart-" + doc.service,
                 {t0, t1, ymin: 0, ymax: 100, series, markers: markersOf(r), title: "weights of " + doc.service + " (%)"});
  }

  function boundText(g) {
    const parts = [];
    if (g.max !== null && g.max !== undefined) parts.push("≤ " + g.max);
    if (g.min !== null && g.min !== undefined) parts.push("≥ " + g.min);
    return parts.join(", ") || "–";
  }

  function gateTable(doc, report) {
    const st = doc.status.rollout;
    const t = el("table", {class: "gates"}, el("thead", {}, el("tr", {}, ...["gate", "stage", "value", "bound", "result", "failures", "reason"].map((c) => el("th", {}, c)))));
    const body = el("tbody");
    for (const g of st ? st.gates : []) {
      body.append(el("tr", {class: "gate-row", "data-gate": g.name, "data-result": g.last_result, "data-stage": g.stage || ""},
                      el("td", {}, g.name), el("td", {}, g.stage || ""), el("td", {class: "num value"}, num(g.value, 4)),
                      el("td", {class: "bound"}, boundText(g)), el("td", {class: "result"}, g.last_result),
                      el("td", {class: "num failures"}, g.failures), el("td", {class: "muted"}, g.reason || "")));
    }
    t.append(body);
    return t;
  }

  // Each gate's value against its bound over time: the history (live) or the gate events (report).
  function gateCharts(doc, report) {
    const out = el("div", {class: "gate-charts columns"});
    const h = doc.history, r = doc.rollout;
    const gates = {};
    if (!report && h && h.t.length) {
      for (const [key, g] of Object.entries(h.gates))
        gates[key] = {name: g.name, max: g.max, min: g.min, t0: h.t[0], t1: h.t[h.t.length - 1],
                      points: h.t.map((t, i) => [t, g.value[i], g.result[i]])};
    } else if (r) {
      const t1 = r.outcome ? r.outcome.t : Date.parse(r.events[r.events.length - 1].time);
      // Gate events come on a change of result and on every failure only: points, no line between them,
      // joined by the sampled history where it covers the rollout (the last ten minutes).
      for (const [name, g] of Object.entries(r.gates)) {
        const points = g.points.map((p) => [p.t, p.value, p.result]);
        const hg = h && h.gates[name];
        if (hg) h.t.forEach((t, i) => { if (t >= r.started_at_ms && t <= t1) points.push([t, hg.value[i], hg.result[i]]); });
        points.sort((a, b) => a[0] - b[0]);
        gates[name] = {name, max: g.max, min: g.min, t0: r.started_at_ms, t1: t1 + 1000, line: false, points};
      }
    }
    for (const [key, g] of Object.entries(gates)) {
      const bounds = [];
      if (g.max !== null && g.max !== undefined) bounds.push({y: g.max, label: "max " + g.max});
      if (g.min !== null && g.min !== undefined) bounds.push({y: g.min, label: "min " + g.min});
      const box = el("div", {class: "gate-chart", "data-gate": key}, el("h3", {}, g.name));
      box.append(chart("gate-value-chart", "gate-chart-" + doc.service + "-" + key,
                       {t0: g.t0, t1: g.t1, width: 340, height: 140, bounds, markers: markersOf(r),
                        series: [{cls: "value", variant: key, color: "#2563eb", dots: true, line: g.line, points: g.points}]}));
      out.append(box);
    }
    return out;
  }

  // Per variant over the sampled history: flows/s, p95 and error rate (live view only; a report's history
  // may not cover its rollout).
  function trafficCharts(doc) {
    const h = doc.history, out = el("div", {class: "traffic-charts columns"});
    if (!h || h.t.length < 2) return out;
    const names = doc.status.variants.map((v) => v.name);
    for (const [field, title] of [["flows_per_s", "flows/s"], ["latency_p95_ms", "p95 ms"], ["error_rate", "error rate"]]) {
      const series = names.filter((n) => h.variants[n]).map((n) => ({cls: "traffic " + field, variant: n, color: colorOf(names, n),
                                                                      points: h.t.map((t, i) => [t, h.variants[n][field][i]])}));
      const box = el("div", {class: "traffic-chart", "data-field": field}, el("h3", {}, title));
      box.append(chart("traffic-chart", "traffic-chart-" + doc.service + "-" + field,
                       {t0: h.t[0], t1: h.t[h.t.length - 1], width: 340, height: 130, series, markers: markersOf(doc.rollout)}));
      out.append(box);
    }
    return out;
  }

  function variantTable(doc) {
    const h = doc.history;
    const t = el("table", {class: "variants"}, el("thead", {}, el("tr", {}, ...["variant", "desired %", "applied %", "flows/s", "p95 ms", "error rate", "flows"].map((c) => el("th", {}, c)))));
    const body = el("tbody");
    for (const v of doc.status.variants) {
      const hv = h && h.variants[v.name];
      const rate = hv && hv.flows_per_s.length ? hv.flows_per_s[hv.flows_per_s.length - 1] : (v.window ? v.window.flows_per_s : null);
      body.append(el("tr", {class: "variant-row", "data-variant": v.name},
                      el("td", {}, v.name), el("td", {class: "num desired"}, v.weight_desired), el("td", {class: "num applied"}, v.weight_applied),
                      el("td", {class: "num flows-per-s"}, num(rate, 1)),
                      el("td", {class: "num p95"}, num(v.window && v.window.latency_p95_ms, 2)),
                      el("td", {class: "num error-rate"}, num(v.window && v.window.error_rate, 4)),
                      el("td", {class: "num flows"}, v.flows)));
    }
    t.append(body);
    return t;
  }

  function timeline(doc) {
    const r = doc.rollout;
    if (!r) return el("p", {class: "muted"}, "no rollout yet");
    const ol = el("ol", {class: "timeline"});
    for (const e of r.events.slice().reverse())
      ol.append(el("li", {class: "event " + e.kind, "data-kind": e.kind, "data-seq": e.seq},
                   el("time", {datetime: e.time}, clock(Date.parse(e.time))), el("span", {class: "kind"}, e.kind), e.message));
    return ol;
  }

  function outcome(doc) {
    const o = doc.rollout && doc.rollout.outcome;
    if (!o) return null;
    return el("p", {class: "outcome " + o.kind, "data-kind": o.kind}, (o.kind === "abort" ? "Aborted at " : "Promoted at ") + clock(o.t) + ": " + o.message);
  }

  function abVerdict(doc) {
    const ab = doc.ab;
    if (!ab) return null;
    const d = el("div", {class: "ab-verdict"}, el("h3", {}, `A/B on ${ab.metric} (${ab.test})`), el("p", {class: "verdict"}, ab.verdict));
    const t = el("table", {}, el("tr", {}, ...["variant", "n", "estimate", "95 % interval", "p"].map((c) => el("th", {}, c))));
    for (const v of ab.variants)
      t.append(el("tr", {}, el("td", {}, v.variant), el("td", {class: "num"}, v.n), el("td", {class: "num"}, num(v.estimate, 4)),
                  el("td", {class: "num"}, num(v.ci_low, 4) + " – " + num(v.ci_high, 4)), el("td", {class: "num"}, v.p_value === undefined ? "" : num(v.p_value, 4))));
    d.append(t, el("p", {class: "muted"}, `SRM p ${num(ab.srm_p_value, 4)}${ab.srm_mismatch ? " (mismatch: verdict held)" : ""}`));
    return d;
  }

  function renderService(doc, report) {
    const st = doc.status, ro = st.rollout;
    const phase = ro ? ro.phase : "none";
    const sec = el("section", {class: "service", id: "service-" + doc.service, "data-service": doc.service, "data-phase": phase});
    const head = el("div", {class: "service-head"}, el("h2", {}, doc.service), el("span", {class: "muted"}, `${st.vip}:${st.port}/${st.protocol}`));
    if (ro) {
      head.append(el("span", {class: "strategy"}, ro.strategy), el("span", {class: "phase", "data-phase": phase}, phase),
                  ro.steps ? el("span", {class: "step"}, `step ${Math.min(ro.step + 1, ro.steps)}/${ro.steps}`) : "");
      if (ro.pause_remaining_ms !== null) head.append(el("span", {class: "muted"}, `pause ${(ro.pause_remaining_ms / 1000).toFixed(0)} s left`));
      if (ro.abort_reason) head.append(el("span", {class: "abort-reason"}, ro.abort_reason));
    } else {
      head.append(el("span", {class: "phase", "data-phase": "none"}, "no rollout configured"));
    }
    sec.append(head);
    const o = outcome(doc);
    if (o) sec.append(o);
    const names = st.variants.map((v) => v.name);
    sec.append(el("h3", {}, report ? "Weights: the rollout's steps" : "Weights, last minutes"), legend(names, report), weightsChart(doc, report));
    sec.append(el("h3", {}, "Variants"), variantTable(doc));
    if (!report) sec.append(trafficCharts(doc));
    if (ro) sec.append(el("h3", {}, "Gates"), gateTable(doc, report), gateCharts(doc, report));
    const ab = abVerdict(doc);
    if (ab) sec.append(ab);
    if (doc.fleet) sec.append(el("p", {class: "muted fleet-version"}, `fleet: applied version ${doc.fleet.applied_version} of ${doc.fleet.current_version}`));
    sec.append(el("h3", {}, "Events of the last rollout"), timeline(doc));
    return sec;
  }

  function renderNodes(nodes) {
    const box = document.getElementById("fleet");
    if (!nodes || !nodes.nodes) { box.hidden = true; return; }
    box.hidden = false;
    const services = Object.keys(nodes.current || {});
    const table = document.getElementById("nodes");
    table.tHead.replaceChildren(el("tr", {}, el("th", {}, "node"), el("th", {}, "report age"), ...services.map((s) => el("th", {}, s + " (current " + nodes.current[s] + ")"))));
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const n of nodes.nodes) {
      const tr = el("tr", {class: "node-row", "data-node": n.node}, el("td", {}, n.node + (n.node === nodes.self ? " (this)" : "")),
                    el("td", {class: "num"}, n.report_age_ms === undefined ? "–" : (n.report_age_ms / 1000).toFixed(1) + " s"));
      for (const s of services) {
        const v = n.services && n.services[s];
        tr.append(el("td", {class: "num applied-version", "data-service": s, "data-behind": v ? v.behind : ""},
                     v ? `${v.applied_version}${v.behind ? " (" + v.behind + " behind)" : ""}` : (n.error || "–")));
      }
      body.append(tr);
    }
  }

  function problem(text) {
    const p = document.getElementById("problem");
    p.hidden = !text;
    p.textContent = text || "";
  }

  async function getJson(path) {
    const res = await fetch(path, {cache: "no-store"});
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
    return res.json();
  }

  async function poll() {
    try {
      const list = await getJson("/api/v1/services");
      const docs = await Promise.all(list.services.map((s) => getJson("/api/v1/services/" + encodeURIComponent(s.name))));
      document.getElementById("services").replaceChildren(...docs.map((d) => renderService(d, false)));
      renderNodes(list.fleet ? await getJson("/api/v1/nodes").catch((e) => ({error: e.message})) : null);
      document.getElementById("updated").textContent = "updated " + clock(docs.length ? docs[0].now_ms : Date.now());
      problem(null);
    } catch (e) {
      problem("veerd did not answer: " + e.message);
    }
    setTimeout(poll, POLL_MS);
  }

  function main() {
    const report = window.VEER_REPORT;
    if (report) {
      document.body.dataset.mode = "report";
      document.title = "veer report: " + report.service;
      document.getElementById("source").textContent = `report of ${report.service}, written ${new Date(report.now_ms).toISOString()}`;
      document.getElementById("services").replaceChildren(renderService(report, true));
      document.body.dataset.rendered = "1";
      return;
    }
    document.getElementById("source").textContent = location.host;
    poll().then(() => { document.body.dataset.rendered = "1"; });
  }
  main();
})();
