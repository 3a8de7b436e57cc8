// fulcrum status page: polls upstream/status every second and redraws the summary, the
// backends table and a chart of active connections per backend. With several services the
// table gains a Service column and a filter picks one service for the table and the chart.
// No libraries, no other hosts.
"use strict";

const refreshMs = 1000;
const windowSec = 120; // the chart's time span
const palette = ["#2f6fdf", "#e4572e", "#17a398", "#f3a712", "#8e44ad", "#5b8c2a",
  "#d6336c", "#2b2d42", "#0fa3b1", "#a0522d"];

const chart = document.getElementById("chart");
const svgNS = chart.namespaceURI; // the SVG namespace, taken from the page itself
const history = []; // {t, active: {id: n}}, oldest first; id is seriesId(s)
const colors = new Map(); // series id -> colour, in order of first appearance
const filter = document.getElementById("service-filter");
let refreshes = 0;
let last = null; // the last status, redrawn at once when the filter changes

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function backendKey(s) {
  return s.host.includes(":") ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`;
}

// A backend is one address in one service: the same address may serve two services.
const serviceOf = (s) => s.service || "default";
const seriesId = (s) => `${serviceOf(s)} ${backendKey(s)}`;
const serviceOfId = (id) => id.slice(0, id.indexOf(" "));

// several is whether the balancer runs more than one service: only then is the service shown.
const several = (st) => Array.isArray(st.services) && st.services.length > 1;

// label names a backend in the legend: with several services, by service and address.
const label = (st, s) => several(st) ? `${serviceOf(s)}/${backendKey(s)}` : backendKey(s);

// shown is whether the filter lets a backend (or a series id's service) through.
const shown = (service) => filter.value === "" || filter.value === service;

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
  if (st.data_plane) parts.push(`data plane ${st.data_plane}`);
  if (st.registry && st.registry !== "memory") {
    parts.push(st.registry_healthy ? `registry ${st.registry}`
      : `registry ${st.registry} unreachable: routing to the last known backends`);
  }
  if (several(st)) parts.push(`${st.services.length} services`);
  const routes = sniRoutes(st);
  if (routes) parts.push(`routed by TLS server name: ${routes}`);
  parts.push(`${st.total} backend${st.total === 1 ? "" : "s"}` + (stateText ? ` (${stateText})` : ""));
  parts.push(`${num(sum("conn_count"))} active`);
  if (st.sockmap) {
    parts.push(`${num(st.sockmap.kernel)} in the kernel, ${num(st.sockmap.relay)} on the relay` +
      ` (${num(st.sockmap.promoted)} promoted)`);
  }
  parts.push(`${num(sum("total_conns"))} total`);
  parts.push(`${formatBytes(sum("bytes_in"))} in`);
  parts.push(`${formatBytes(sum("bytes_out"))} out`);
  if (st.connections_rejected !== undefined) parts.push(`${num(st.connections_rejected)} rejected`);
  if (st.connections_failed !== undefined) parts.push(`${num(st.connections_failed)} failed`);
  if (st.connections_full) parts.push(`${num(st.connections_full)} turned away (backends full)`);
  if (st.version) parts.push(`fulcrum ${st.version}` + (st.revision ? ` (revision ${st.revision})` : ""));
  document.getElementById("summary").textContent = parts.join(" · ");
}

// sniRoutes says which server-name patterns go to which service ("" when none is routed by
// name): "api: api.example.com *.api.example.com; web: www.example.com".
function sniRoutes(st) {
  if (!Array.isArray(st.services)) return "";
  return st.services.filter((v) => Array.isArray(v.sni) && v.sni.length > 0)
    .map((v) => `${v.name}: ${v.sni.join(" ")}`).join("; ");
}

// renderFilter offers each service, keeping the choice made; it shows only with several.
function renderFilter(st) {
  const bar = document.getElementById("filter-bar");
  bar.hidden = !several(st);
  const names = several(st) ? st.services.map((v) => v.name) : [];
  const chosen = names.includes(filter.value) ? filter.value : "";
  const options = [el("option", "all services")];
  options[0].value = "";
  for (const v of several(st) ? st.services : []) {
    const sni = Array.isArray(v.sni) && v.sni.length > 0 ? `sni ${v.sni.join(" ")}, ` : "";
    const o = el("option", `${v.name} (${sni}${v.backends} backend${v.backends === 1 ? "" : "s"}, ${num(v.active)} active)`);
    o.value = v.name;
    options.push(o);
  }
  filter.replaceChildren(...options);
  filter.value = chosen;
}

// anyError is whether a backend the table shows has a last error: only then is the Last error
// column there.
const anyError = (st) => st.servers.some((s) => shown(serviceOf(s)) && s.last_error);

// renderHeader adds the Service column before Backend with several services, and the Last
// error column after Weight when a backend shown has one, and takes them away again.
function renderHeader(st) {
  const row = document.querySelector("#backends thead tr");
  const has = row.cells[0].dataset.column === "service";
  if (several(st) && !has) {
    const th = el("th", "Service");
    th.dataset.column = "service";
    row.prepend(th);
  } else if (!several(st) && has) {
    row.cells[0].remove();
  }
  const lastCell = row.cells[row.cells.length - 1];
  const hasError = lastCell.dataset.column === "error";
  if (anyError(st) && !hasError) {
    const th = el("th", "Last error", "error");
    th.dataset.column = "error";
    row.append(th);
  } else if (!anyError(st) && hasError) {
    lastCell.remove();
  }
  document.getElementById("backends").classList.toggle("with-service", several(st));
}

// isStatic: configured, not heartbeating. A balancer without the static field says so by state.
const isStatic = (s) => s.static === undefined ? s.state === "static" : s.static;

// shared is whether a registry shared by several balancers (etcd) keeps the backends: there a
// backend lives by its lease, renewed through any balancer, and this one cannot tell its age.
const shared = (st) => st.registry !== undefined && st.registry !== "memory";

// ageText is a backend's heartbeat age, or a dash where none means anything.
function ageText(st, s) {
  if (isStatic(s)) return "—";
  if (shared(st)) return "—";
  return formatAge(st.timestamp - s.last_heartbeat);
}

// errorText is why a backend last failed, and how long ago.
function errorText(st, s) {
  if (!s.last_error) return "—";
  const ago = s.last_error_time ? ` (${formatAge(st.timestamp - s.last_error_time)} ago)` : "";
  return s.last_error + ago;
}

function renderTable(st) {
  const rows = st.servers.filter((s) => shown(serviceOf(s))).map((s) => {
    const key = backendKey(s);
    const tr = el("tr");
    tr.dataset.backend = key;
    tr.dataset.service = serviceOf(s);
    const cells = [
      el("td", key),
      el("td", s.state, `state state-${s.state}`),
      el("td", String(s.conn_count)),
      el("td", num(s.total_conns)),
      el("td", formatBytes(s.bytes_in)),
      el("td", formatBytes(s.bytes_out)),
      el("td", ageText(st, s)),
      el("td", String(s.weight)),
    ];
    cells[4].title = `${num(s.bytes_in)} bytes`;
    cells[5].title = `${num(s.bytes_out)} bytes`;
    if (shared(st) && !isStatic(s)) cells[6].title = `kept by its lease in the ${st.registry} registry`;
    if (anyError(st)) cells.push(el("td", errorText(st, s), s.state === "down" ? "error error-down" : "error"));
    if (several(st)) cells.unshift(el("td", serviceOf(s), "service"));
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
  for (const h of history) {
    for (const [id, v] of Object.entries(h.active)) if (shown(serviceOfId(id))) peak = Math.max(peak, v);
  }
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
    if (!shown(serviceOfId(key))) continue;
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
  const items = st.servers.filter((s) => shown(serviceOf(s))).map((s) => {
    const li = el("li");
    const sw = el("span", undefined, "swatch");
    sw.style.background = colorOf(seriesId(s));
    li.append(sw, el("span", `${label(st, s)}: ${s.conn_count}`));
    return li;
  });
  document.getElementById("legend").replaceChildren(...items);
}

function record(st) {
  const active = {};
  for (const s of st.servers) {
    const id = seriesId(s);
    colorOf(id);
    active[id] = s.conn_count;
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
    last = st;
    render(st);
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

function render(st) {
  renderSummary(st);
  renderFilter(st);
  renderHeader(st);
  renderTable(st);
  renderLegend(st);
  renderChart(st.timestamp);
}

filter.addEventListener("change", () => { if (last) render(last); });
refresh();
