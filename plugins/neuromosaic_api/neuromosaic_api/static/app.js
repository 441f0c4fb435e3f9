// The Neuromosaic dashboard: plain JavaScript, no library, no network resource but this server.
// The token is entered once and kept in sessionStorage (this tab only); every data call sends it
// as a bearer token. Data from the server (names, architectures, generated code) is untrusted and
// is only ever written with textContent, never parsed as HTML.
"use strict";

const TOKEN_KEY = "neuromosaic-api-token";
const POLL_MS = 1500;
let selected = null;      // experiment name
let timer = null;

const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem(TOKEN_KEY);

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${token()}`, "Content-Type": "application/json", ...(options.headers || {}) },
  });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("the token was refused (expired or invalid); paste a new one");
    throw new Error("unauthorized");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error((body && (body.message || body.detail)) || `HTTP ${response.status}`);
  }
  return body;
}

function fmt(value) {
  if (value === null || value === undefined) return "-";
  if (typeof value === "number") return Math.abs(value) >= 1000 ? Math.round(value).toLocaleString("en") : value.toFixed(4);
  return String(value);
}

function row(cells, onClick, data) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.textContent = cell;
    tr.appendChild(td);
  }
  Object.assign(tr.dataset, data || {});
  if (onClick) tr.addEventListener("click", onClick);
  return tr;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function setStatus(text) {
  $("status").textContent = text || "";
}

function showLogin(message) {
  clearInterval(timer);
  $("main").hidden = true;
  $("login").hidden = false;
  $("token-forget").hidden = true;
  setStatus(message);
}

async function refreshExperiments() {
  const rows = await api("/api/experiments");
  fill($("experiments").querySelector("tbody"), rows.map((r) => row(
    [r.name, r.task || "-", r.trials, r.completed, r.failed, fmt(r.best), r.metric || "-", r.search.state],
    () => select(r.name), { name: r.name })));
}

async function refreshExperiment() {
  if (!selected) return;
  const name = encodeURIComponent(selected);
  const [info, history, top, page0] = await Promise.all([
    api(`/api/experiments/${name}`),
    api(`/api/experiments/${name}/history`),
    api(`/api/experiments/${name}/best?k=5`).catch(() => []),
    api(`/api/experiments/${name}/trials?limit=1`),
  ]);
  $("experiment-name").textContent = selected;
  $("progress-count").textContent = info.trials;
  $("progress-completed").textContent = info.completed;
  $("progress-failed").textContent = `${info.failed} / ${info.invalid}`;
  $("best").textContent = fmt(info.best);
  $("search-state").textContent = info.search.state;
  const running = info.search.state === "running";
  $("start").hidden = running || !info.definition;
  $("stop").hidden = !running;
  $("report-link").hidden = !info.report;
  $("report-link").href = `/api/experiments/${name}/report`;
  drawHistory(history, info.direction !== "minimize");
  fill($("top").querySelector("tbody"), top.map((t, i) => row(
    [i + 1, t.number, fmt(t.metrics[history.metric]), t.architecture || "-"],
    () => showTrial(t.number), { number: String(t.number) })));
  const latest = await api(`/api/experiments/${name}/trials?offset=${Math.max(0, page0.total - 15)}&limit=15`);
  fill($("trials").querySelector("tbody"), latest.items.reverse().map((t) => row(
    [t.number, t.status, fmt(t.metrics[history.metric]), t.architecture || "-"],
    () => showTrial(t.number), { number: String(t.number) })));
}

// The history plot: one dot per trial with a value, and the best-so-far line, in plain SVG.
function drawHistory(history, maximize) {
  const svg = $("history");
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const points = history.points.filter((p) => typeof p.value === "number");
  const [W, H, L, B] = [640, 240, 50, 25];
  const nodes = [el("line", { class: "axis", x1: L, y1: H - B, x2: W - 5, y2: H - B }),
                 el("line", { class: "axis", x1: L, y1: 5, x2: L, y2: H - B }),
                 el("text", { x: L, y: H - 5 }, `trial (${history.points.length} so far)`),
                 el("text", { x: 2, y: 15 }, history.metric)];
  if (points.length) {
    const xs = points.map((p) => p.number), ys = points.map((p) => p.value);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
    let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
    const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - 15);
    const py = (y) => (H - B) - ((y - y0) / (y1 - y0)) * (H - B - 15);
    nodes.push(el("text", { x: 2, y: py(y1) + 4 }, fmt(y1)), el("text", { x: 2, y: py(y0) + 4 }, fmt(y0)));
    let best = null;
    const line = [];
    for (const p of points) {
      best = best === null ? p.value : (maximize ? Math.max(best, p.value) : Math.min(best, p.value));
      line.push(`${px(p.number).toFixed(1)},${py(best).toFixed(1)}`);
      nodes.push(el("circle", { class: `point ${p.status}`, cx: px(p.number), cy: py(p.value), r: 3 }));
    }
    nodes.push(el("polyline", { class: "best", points: line.join(" ") }));
  }
  svg.replaceChildren(...nodes);
}

async function showTrial(number) {
  const t = await api(`/api/experiments/${encodeURIComponent(selected)}/trials/${number}`);
  $("trial-details").hidden = false;
  $("trial-title").textContent = `Trial ${t.number} of ${selected}`;
  const fields = [["status", t.status], ["architecture", t.architecture || "-"], ["spec hash", t.spec_hash || "-"],
                  ["code by", t.code_by || "-"],
                  ["vector", Object.entries(t.vector).map(([k, v]) => `${k}=${v}`).join(", ")],
                  ...Object.entries(t.metrics).sort().map(([k, v]) => [k, fmt(v)])];
  if (t.error_class) fields.push(["error", `${t.error_class}: ${t.error}`]);
  fill($("trial-fields").querySelector("tbody"), fields.map((f) => row(f)));
  $("trial-code").textContent = t.code || "(no code stored for this trial)";
  $("trial-details").scrollIntoView({ block: "nearest" });
}

async function select(name) {
  selected = name;
  $("trial-details").hidden = true;
  $("experiment").hidden = false;
  await tick();
}

async function tick() {
  try {
    await refreshExperiments();
    await refreshExperiment();
    setStatus("");
  } catch (error) {
    if (error.message !== "unauthorized") setStatus(error.message);
  }
}

async function control(action) {
  try {
    await api(`/api/experiments/${encodeURIComponent(selected)}/${action}`, { method: "POST" });
    await tick();
  } catch (error) {
    setStatus(error.message);
  }
}

function startPolling() {
  $("login").hidden = true;
  $("main").hidden = false;
  $("token-forget").hidden = false;
  clearInterval(timer);
  tick();
  timer = setInterval(tick, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    startPolling();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
  });
  $("start").addEventListener("click", () => control("start"));
  $("stop").addEventListener("click", () => control("stop"));
  if (token()) startPolling(); else showLogin("");
});
