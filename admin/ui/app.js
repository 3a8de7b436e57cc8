// fulcrum status page: polls upstream/status every second and redraws the summary, the
// backends table and a chart of active connections per backend. No libraries, no other hosts.
"use strict";

const refreshMs = 1000;
const windowSec = 120; // the chart's time span
const palette = ["#2f6fdf", "#e4572e", "#17a398", "#f3a712", "#8e44ad", "#5b8c2a",
  "#d6336c", "#2b2d42", "#0fa3b1", "#a0522d"];

const chart = document.getElementById("chart");
const svgNS = chart.namespaceURI; // the SVG namespace, taken from the page itself
const history = []; // {t, active: {key: n}}, oldest first
const colors = new Map(); // backend key -> colour, in order of first appearance
let refreshes = 0;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function backendKey(s) {
  return s.host.includes(":") ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`;
}

function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function formatAge(sec) {
  sec = Math.max(0, Math.floor(sec));
  const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600);
  const m = Math.floor(sec % 3600 / 60), s = sec % 60;
  if (d > 0) return `${d}d ${h}h ${m}m`;
  if (h > 0) return `${h}h ${m}m ${s}s`;
  if (m > 0) return `${m}m ${s}s`;
  return `${s}s`;
}

const num = (n) => Number(n).toLocaleString("en-US");

function colorOf(key) {
  if (!colors.has(key)) colors.set(key, palette[colors.size % palette.length]);
  return colors.get(key);
}

function renderSummary(st) {
  const servers = st.servers;
  const sum = (f) => servers.reduce((a, s) => a + s[f], 0);
  const states = {};
  for (const s of servers) states[s.state] = (states[s.state] || 0) + 1;
  const stateText = Object.keys(states).sort().map((k) => `${states[k]} ${k}`).join(", ");
  const parts = [];
  if (st.listen) parts.push(`listening on ${st.listen.join(", ") || "—"}`);
  if (st.admin) parts.push(`admin ${st.admin}`);
  if (st.uptime_seconds !== undefined) parts.push(`up ${formatAge(st.uptime_seconds)}`);
  parts.push(`${st.total} backend${st.total === 1 ? "" : "s"}` + (stateText ? ` (${stateText})` : ""));
  parts.push(`${num(sum("conn_count"))} active`);
  parts.push(`${num(sum("total_conns"))} total`);
  parts.push(`${formatBytes(sum("bytes_in"))} in`);
  parts.push(`${formatBytes(sum("bytes_out"))} out`);
  if (st.connections_rejected !== undefined) parts.push(`${num(st.connections_rejected)} rejected`);
  if (st.connections_failed !== undefined) parts.push(`${num(st.connections_failed)} failed`);
  if (st.connections_full) parts.push(`${num(st.connections_full)} turned away (backends full)`);
  if (st.version) parts.push(`fulcrum ${st.version}`);
  document.getElementById("summary").textContent = parts.join(" · ");
}

function renderTable(st) {
  const rows = st.servers.map((s) => {
    const key = backendKey(s);
    const tr = el("tr");
    tr.dataset.backend = key;
    const age = s.state === "static" ? "—" : formatAge(st.timestamp - s.last_heartbeat);
    const cells = [
      el("td", key),
      el("td", s.state, `state state-${s.state}`),
      el("td", String(s.conn_count)),
      el("td", num(s.total_conns)),
      el("td", formatBytes(s.bytes_in)),
      el("td", formatBytes(s.bytes_out)),
      el("td", age),
      el("td", String(s.weight)),
    ];
    cells[4].title = `${num(s.bytes_in)} bytes`;
    cells[5].title = `${num(s.bytes_out)} bytes`;
    tr.append(...cells);
    return tr;
  });
  document.querySelector("#backends tbody").replaceChildren(...rows); // one row per backend
  document.getElementById("empty").hidden = rows.length > 0;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// niceMax rounds the chart's top up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (v <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const f of [1, 2, 5, 10]) if (f * p >= v) return f * p;
  return 10 * p;
}

function renderChart(now) {
  // Draw in the chart's own pixels, so text and dots keep their shape at any width.
  const W = Math.max(200, Math.round(chart.getBoundingClientRect().width) || 720);
  const H = 180, left = 36, top = 8, bottom = 18;
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const plotW = W - left - 4, plotH = H - top - bottom;
  let peak = 0;
  for (const h of history) for (const v of Object.values(h.active)) peak = Math.max(peak, v);
  const ymax = niceMax(peak);
  const x = (t) => left + plotW * (1 - (now - t) / windowSec);
  const y = (v) => top + plotH * (1 - v / ymax);
  const nodes = [];
  for (const f of [0, 0.5, 1]) {
    const v = ymax * f;
    nodes.push(svg("line", { class: "grid", x1: left, x2: W - 4, y1: y(v), y2: y(v) }));
    nodes.push(svg("text", { class: "axis", x: left - 6, y: y(v) + 4, "text-anchor": "end" },
      Number.isInteger(v) ? String(v) : v.toFixed(1)));
  }
  nodes.push(svg("text", { class: "axis", x: left, y: H - 3 }, `−${windowSec}s`));
  nodes.push(svg("text", { class: "axis", x: W - 4, y: H - 3, "text-anchor": "end" }, "now"));
  for (const key of colors.keys()) {
    const samples = history.filter((h) => key in h.active);
    if (samples.length === 0) continue;
    const pts = samples.map((h) => `${x(h.t).toFixed(1)},${y(h.active[key]).toFixed(1)}`);
    nodes.push(svg("polyline", { points: pts.join(" "), stroke: colorOf(key) }));
    const last = samples[samples.length - 1]; // a dot marks the current value
    nodes.push(svg("circle", { cx: x(last.t).toFixed(1), cy: y(last.active[key]).toFixed(1), r: 3, fill: colorOf(key) }));
  }
  chart.replaceChildren(...nodes);
}

function renderLegend(st) {
  const items = st.servers.map((s) => {
    const key = backendKey(s);
    const li = el("li");
    const sw = el("span", undefined, "swatch");
    sw.style.background = colorOf(key);
    li.append(sw, el("span", `${key}: ${s.conn_count}`));
    return li;
  });
  document.getElementById("legend").replaceChildren(...items);
}

function record(st) {
  const active = {};
  for (const s of st.servers) {
    const key = backendKey(s);
    colorOf(key);
    active[key] = s.conn_count;
  }
  history.push({ t: st.timestamp, active });
  while (history.length > 0 && history[0].t < st.timestamp - windowSec) history.shift();
  for (const key of [...colors.keys()]) {
    if (!history.some((h) => key in h.active)) colors.delete(key);
  }
}

async function refresh() {
  const errBox = document.getElementById("error");
  try {
    const res = await fetch("upstream/status", { cache: "no-store" });
    if (!res.ok) throw new Error(`upstream/status: HTTP ${res.status}`);
    const st = await res.json();
    record(st);
    renderSummary(st);
    renderTable(st);
    renderLegend(st);
    renderChart(st.timestamp);
    errBox.hidden = true;
    refreshes++;
    document.body.dataset.refreshes = String(refreshes);
  } catch (e) {
    errBox.textContent = `cannot refresh: ${e.message} (showing the last state)`;
    errBox.hidden = false;
  } finally {
    setTimeout(refresh, refreshMs);
  }
}

refresh();
