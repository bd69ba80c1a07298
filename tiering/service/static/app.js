/* tiering archive dashboard: plain JS, inline SVG charts, no network beyond this server.
   Every value from the server is inserted as text (textContent), never as HTML; no inline handlers or
   style attributes (the page runs under a strict Content-Security-Policy). Every request carries
   X-Tiering-Request, the header the server asks of browser requests that change data (anti-CSRF).
   The open tab, its filters and the selected job live in the URL hash: #jobs?queue=mail&job=<uuid>. */
"use strict";

const KEY = "tiering.credential";
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// ------------------------------------------------------------------ small helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") Object.assign(el.style, v); // CSSOM, allowed by CSP (style attributes are not)
    else if (k === "checked" || k === "value") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmtInt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
function fmtCompact(n) {
  // axis labels: 200000 -> 200k, 1500000 -> 1.5M (never clipped, whatever the magnitude)
  const v = Number(n), a = Math.abs(v);
  const trim = (x) => String(Number(x.toFixed(1)));
  if (a >= 1e9) return trim(v / 1e9) + "B";
  if (a >= 1e6) return trim(v / 1e6) + "M";
  if (a >= 1e3) return trim(v / 1e3) + "k";
  return String(Math.round(v));
}
function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB", "PB"];
  let v = Number(n), i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
}
function fmtDate(s) {
  if (!s) return "–";
  const d = new Date(s);
  if (isNaN(d)) return String(s);
  return d.toISOString().replace("T", " ").slice(0, 19) + "Z";
}
function fmtUsd(n) {
  if (n === null || n === undefined) return "–";
  return "$" + (n < 1 ? Number(n).toFixed(4) : Number(n).toFixed(2));
}
function fmtRatio(r) { return r === null || r === undefined ? "–" : (Number(r) * 100).toFixed(1) + "%"; }
const shortId = (id) => String(id).slice(0, 8) + "…";
const badge = (text, cls) => h("span", { class: "badge " + (cls || text) }, text);
const plural = (n, word) => `${fmtInt(n)} ${word}${n === 1 ? "" : "s"}`;

function toast(msg, isErr) {
  const t = $("#toast");
  t.textContent = msg;
  t.className = "toast show" + (isErr ? " err" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = "toast"; }, isErr ? 6000 : 3500);
}

function table(columns, rows, emptyText) {
  if (!rows.length) return h("div", { class: "empty" }, emptyText || "Nothing to show.");
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : "" }, c.head ? c.head() : c.label)))),
    h("tbody", {}, rows.map((r) => h("tr", { dataset: r.__id ? { id: r.__id } : {} },
      columns.map((c) => {
        const v = c.render ? c.render(r) : r[c.key];
        return h("td", { class: (c.num ? "num " : "") + (c.wrap ? "wrap " : "") + (c.cls || "") }, v);
      })))));
}

function dateParam(v, endOfDay) {
  if (!v) return null;
  return v + (endOfDay ? "T23:59:59.999Z" : "T00:00:00Z");
}

function formData(form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) if (String(v).trim() !== "") out[k] = String(v).trim();
  return out;
}

function fillForm(form, params) {
  for (const el of form.elements) {
    if (!el.name) continue;
    const v = params[el.name];
    if (el.tagName === "SELECT") {
      if (v && !Array.from(el.options).some((o) => o.value === v)) el.append(h("option", { value: v }, v));
      el.value = v === undefined ? (el.querySelector("option[selected]") || el.options[0] || {}).value || "" : v;
    } else if (el.type !== "submit" && el.type !== "reset" && el.type !== "button") {
      el.value = v === undefined ? el.defaultValue : v;
    }
  }
}

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function credential() { return sessionStorage.getItem(KEY); }

function headers(extra) {
  const out = { Accept: "application/json", "X-Tiering-Request": "1", ...(extra || {}) };
  const cred = credential();
  if (cred) out.Authorization = cred;
  return out;
}

async function api(method, path, { params, body } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
  const hdrs = headers(body !== undefined ? { "Content-Type": "application/json" } : {});
  let res;
  try {
    res = await fetch(url, { method, headers: hdrs, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "cannot reach the server: " + e.message);
  }
  let doc = null;
  try { doc = await res.json(); } catch (e) { /* not JSON */ }
  if (res.status === 401 || res.status === 403) {
    if (path !== "/api/archive/stats" || credential()) showLogin((doc && doc.error) || "please sign in");
    throw new ApiError(res.status, (doc && doc.error) || res.statusText);
  }
  if (!doc || !doc.success) {
    throw new ApiError(res.status, (doc && doc.error) || `${res.status} ${res.statusText}`);
  }
  return { data: doc.data, status: res.status };
}

async function guarded(fn, where) {
  try { return await fn(); } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return undefined;
    toast((where ? where + ": " : "") + e.message, true);
    return undefined;
  }
}

// ------------------------------------------------------------------ confirmation (every change of data asks)

function confirmAction({ title, body, ok = "OK", danger = false }) {
  const dlg = $("#confirm-dialog");
  $("#confirm-title").textContent = title;
  $("#confirm-body").replaceChildren(...[].concat(body || []).map((b) => (b instanceof Node ? b : h("p", {}, b))));
  const okBtn = $("#confirm-ok");
  okBtn.textContent = ok;
  okBtn.className = danger ? "danger solid" : "primary";
  dlg.returnValue = "";
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.showModal();
    $("#confirm-cancel").focus();
  });
}

// ------------------------------------------------------------------ URL state: #tab?filter=value&job=<uuid>

function parseHash() {
  const raw = location.hash.slice(1);
  const i = raw.indexOf("?");
  const tab = decodeURIComponent(i < 0 ? raw : raw.slice(0, i)) || "overview";
  const params = {};
  for (const [k, v] of new URLSearchParams(i < 0 ? "" : raw.slice(i + 1))) if (v !== "") params[k] = v;
  return { tab, params };
}

function hashFor(tab, params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== null && v !== undefined && v !== "") qs.set(k, String(v));
  const q = qs.toString();
  return "#" + tab + (q ? "?" + q : "");
}

let routed = null;
const tabParams = {}; // the last filters of each tab, restored when you come back to it

function navigate(tab, params, { replace = false } = {}) {
  const next = hashFor(tab, params);
  if (location.hash !== next) history[replace ? "replaceState" : "pushState"](null, "", next);
  route();
}

function setJobInUrl(id) {
  const { tab, params } = parseHash();
  if (id) params.job = id; else delete params.job;
  const next = hashFor(tab, params);
  if (location.hash !== next) history.replaceState(null, "", next);
  routed = location.hash;
}

function route() {
  if ($("#app").hidden) return;
  let { tab, params } = parseHash();
  if (!loaders[tab]) { tab = "overview"; params = {}; }
  routed = location.hash;
  $$("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  $$(".panel").forEach((p) => p.classList.toggle("active", p.dataset.panel === tab));
  const { job, ...filters } = params;
  tabParams[tab] = filters;
  loaders[tab](filters);
  if (job) openJob(job);
  else if ($("#job-dialog").open) $("#job-dialog").close();
}
window.addEventListener("hashchange", () => { if (location.hash !== routed) route(); });
window.addEventListener("popstate", () => { if (location.hash !== routed) route(); });

// ------------------------------------------------------------------ login

function showLogin(message) {
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#logout").hidden = true;
  $("#who-label").textContent = "";
  $("#login-error").textContent = message && credential() ? message : "";
  $("#login-token").focus();
}

async function tryLogin(cred) {
  sessionStorage.setItem(KEY, cred);
  try {
    await api("GET", "/api/archive/schedule");
  } catch (e) {
    sessionStorage.removeItem(KEY);
    $("#login-error").textContent = e.message;
    return false;
  }
  return true;
}

function showApp(label) {
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  $("#who-label").textContent = label || "";
  loadQueues().then(route);
  watchOperations();
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const user = $("#login-user").value.trim();
  const secret = $("#login-token").value;
  const cred = user ? "Basic " + btoa(unescape(encodeURIComponent(user + ":" + secret))) : "Bearer " + secret.trim();
  if (await tryLogin(cred)) {
    sessionStorage.setItem(KEY + ".label", user ? user : "token");
    $("#login-token").value = "";
    showApp(user ? user : "token");
  }
});
$("#logout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(KEY + ".label");
  showLogin();
});

// ------------------------------------------------------------------ tabs and the queue picker

const loaders = {};
$$("#tabs button").forEach((b) => b.addEventListener("click", () => {
  if (!$("#app").hidden) navigate(b.dataset.tab, tabParams[b.dataset.tab] || {});
}));

let knownQueues = [];
async function loadQueues() {
  const res = await guarded(() => api("GET", "/api/archive/stats"), "queues");
  if (res) knownQueues = Object.keys(res.data.queues || {}).sort();
  for (const sel of $$("select.queue-picker")) {
    const keep = sel.value;
    sel.replaceChildren(h("option", { value: "" }, sel.dataset.any || "any"),
      ...knownQueues.map((q) => h("option", { value: q }, q)));
    if (keep && !knownQueues.includes(keep)) sel.append(h("option", { value: keep }, keep));
    sel.value = keep;
  }
}

// ------------------------------------------------------------------ charts (inline SVG, drawn at the card's width)

const COLORS = { archive: "#2563eb", flush: "#f59e0b" };
const SERIES = [["archive", "jobs archived"], ["flush", "jobs flushed"]];

function niceMax(v) {
  // 4 gridlines at whole-number steps of 1, 2 or 5 x 10^k
  const raw = Math.max(1, v / 4);
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return 4 * Math.max(1, Math.round(m * p));
  return 40 * p;
}

function dailyChart(series, width) {
  // Two series side by side per day (never stacked: a job is archived once and flushed once).
  const W = Math.max(260, Math.floor(width)), H = 230, R = 8, T = 10, B = 26;
  const max = niceMax(Math.max(0, ...series.map((d) => Math.max(...SERIES.map(([k]) => Number(d[k]) || 0)))));
  const labels = [0, 1, 2, 3, 4].map((i) => fmtCompact((max / 4) * i));
  const L = 12 + 7 * Math.max(...labels.map((l) => l.length)); // room for the longest label at 11px
  const n = series.length || 1;
  const slot = (W - L - R) / n;
  const bw = Math.max(1, (slot - 2) / SERIES.length);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "jobs archived and flushed per day" });
  labels.forEach((label, i) => {
    const v = (max / 4) * i;
    root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e2e8f0" }));
    root.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, label));
  });
  const every = Math.max(1, Math.ceil(n / Math.max(1, Math.floor((W - L - R) / 46))));
  series.forEach((d, i) => {
    SERIES.forEach(([k, name], j) => {
      const v = Number(d[k]) || 0;
      if (!v) return;
      const x = L + i * slot + 1 + j * bw;
      root.append(svg("rect", { x, y: y(v), width: bw, height: Math.max(1, y(0) - y(v)), fill: COLORS[k], rx: 1,
        "data-day": d.day, "data-series": k, "data-value": v }, svg("title", {}, `${d.day}: ${fmtInt(v)} ${name}`)));
    });
    if (i % every === 0) {
      root.append(svg("text", { x: L + i * slot + slot / 2, y: H - 8, "text-anchor": "middle", class: "axis" }, String(d.day).slice(5)));
    }
  });
  const legend = h("div", { class: "legend" }, SERIES.map(([k, name]) => h("span", {}, h("i", { style: { background: COLORS[k] } }), name)));
  return [root, legend];
}

function hbarChart(items, { color = "#2563eb", format = fmtBytes, extra, width = 640 } = {}) {
  // drawn at the card's width so its 11px text stays readable on a phone
  if (!items.length) return h("div", { class: "empty" }, "No data yet.");
  const W = Math.max(260, Math.floor(width)), narrow = W < 520;
  const valueText = (d) => format(d.value) + (extra ? "  " + extra(d) : "");
  const longest = Math.max(...items.map((d) => valueText(d).length));
  // room right of the bars for the longest value at 11px, so nothing is cut on a phone
  const rowH = 30, L = narrow ? 100 : 150, R = Math.min(Math.round(W * 0.45), Math.max(narrow ? 90 : 170, 14 + 6.6 * longest));
  const H = items.length * rowH + 6;
  const max = Math.max(1, ...items.map((d) => d.value));
  const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
  items.forEach((d, i) => {
    const y = 4 + i * rowH;
    const w = ((W - L - R) * d.value) / max;
    root.append(svg("text", { x: L - 8, y: y + 17, "text-anchor": "end" }, narrow && d.short ? d.short : d.label));
    root.append(svg("rect", { x: L, y: y + 5, width: W - L - R, height: 16, fill: "#f1f5f9", rx: 3 }));
    root.append(svg("rect", { x: L, y: y + 5, width: Math.max(d.value ? 2 : 0, w), height: 16, fill: d.color || color, rx: 3 }));
    root.append(svg("text", { x: W - R + 8, y: y + 17 }, valueText(d)));
  });
  return root;
}

// ------------------------------------------------------------------ overview

function statCard(label, value, sub, cls) {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value " + (cls || "") }, value),
    sub ? h("div", { class: "sub" }, sub) : null);
}

let lastTrends = null;
function drawDaily() {
  const box = $("#chart-daily");
  if (!lastTrends || !box.clientWidth) return;
  box.replaceChildren(...dailyChart(lastTrends, box.clientWidth));
  const sum = (k) => lastTrends.reduce((a, d) => a + (Number(d[k]) || 0), 0);
  $("#chart-daily-note").textContent = `${lastTrends.length} days: ${fmtInt(sum("archive"))} archived, ${fmtInt(sum("flush"))} flushed, ` +
    `${fmtInt(sum("restore"))} restored, ${fmtInt(sum("purge"))} purged, ${fmtInt(sum("erase"))} erased.`;
}
new ResizeObserver(() => drawDaily()).observe($("#chart-daily"));

loaders.overview = async () => {
  const [stats, trends] = await Promise.all([
    guarded(() => api("GET", "/api/archive/stats"), "stats"),
    guarded(() => api("GET", "/api/archive/trends", { params: { days: 30 } }), "trends"),
  ]);
  if (stats) {
    const s = stats.data, t = s.total, tiers = s.tiers, cost = s.estimated_monthly_cost;
    const tierWidth = $("#chart-tiers").clientWidth || 640;
    $("#cards").replaceChildren(
      statCard("Archived jobs", fmtInt(t.jobs), `${fmtInt(tiers.staging.jobs)} staged · ${fmtInt(tiers.cold.jobs)} cold`),
      statCard("Stored", fmtBytes(t.stored_bytes), `from ${fmtBytes(t.original_bytes)} of payloads`),
      statCard("Compression", fmtRatio(t.compression_ratio), "stored / original"),
      statCard("Cold objects", fmtInt(tiers.cold.objects), "Parquet + zstd"),
      statCard("Est. monthly cost", fmtUsd(cost.total_estimated_usd_per_month), "storage only, list prices"),
      statCard("Restored", fmtInt(t.jobs_restored_to_date), "to date"),
      statCard("Purged", fmtInt(t.jobs_purged_to_date), `${fmtInt(t.jobs_erased_to_date)} erased`),
      statCard("Newest archived", t.newest_archived_at ? fmtDate(t.newest_archived_at).slice(0, 10) : "–",
        t.newest_archived_at ? fmtDate(t.newest_archived_at).slice(11) + (t.oldest_archived_at ? " · oldest " + fmtDate(t.oldest_archived_at).slice(0, 10) : "") : "", "date"),
    );
    $("#chart-tiers").replaceChildren(
      h("div", { class: "muted small" }, "bytes stored"),
      hbarChart([
        { label: "staging (PostgreSQL)", short: "staging", value: tiers.staging.stored_bytes, color: "#f59e0b" },
        { label: "cold (objects)", short: "cold", value: tiers.cold.stored_bytes, color: "#2563eb" },
      ], { width: tierWidth }),
      h("div", { class: "muted small" }, "jobs"),
      hbarChart([
        { label: "staging (PostgreSQL)", short: "staging", value: tiers.staging.jobs, color: "#f59e0b" },
        { label: "cold (objects)", short: "cold", value: tiers.cold.jobs, color: "#2563eb" },
      ], { format: fmtInt, width: tierWidth }),
      h("div", { class: "muted small" }, `payloads ${fmtBytes(t.original_bytes)} → stored ${fmtBytes(t.stored_bytes)} (${fmtRatio(t.compression_ratio)})`));
    const classes = Object.entries(tiers.cold_by_storage_class || {}).map(([k, v]) => ({
      label: k, value: v.stored_bytes, cost: (cost.by_storage_class[k] || {}).estimated_usd_per_month,
    }));
    $("#chart-classes").replaceChildren(hbarChart(classes, { color: "#60a5fa", extra: (d) => fmtUsd(d.cost) + "/mo", width: $("#chart-classes").clientWidth || 640 }));
    $("#cost-label").textContent = cost.label || "";
    const rows = Object.entries(s.queues || {}).map(([q, v]) => ({ queue: q, ...v }));
    $("#queue-table").replaceChildren(table([
      { label: "Queue", render: (r) => h("a", { href: hashFor("jobs", { queue: r.queue }) }, r.queue) },
      { label: "Staged", num: true, render: (r) => fmtInt(r.staging.jobs) },
      { label: "Cold", num: true, render: (r) => fmtInt(r.cold.jobs) },
      { label: "Stored", num: true, render: (r) => fmtBytes(r.total.stored_bytes) },
      { label: "Ratio", num: true, render: (r) => fmtRatio(r.total.compression_ratio) },
      { label: "Restored", num: true, render: (r) => fmtInt(r.jobs_restored_to_date) },
      { label: "Purged", num: true, render: (r) => fmtInt(r.jobs_purged_to_date) },
    ], rows, "No archived jobs yet."));
  }
  if (trends) { lastTrends = trends.data.series; drawDaily(); }
};
$("#refresh-overview").addEventListener("click", () => loaders.overview());

$("#run-now").addEventListener("click", async () => {
  const btn = $("#run-now");
  const dry = $("#run-dry").checked;
  const q = $("#run-queue").value.trim();
  if (!dry && !(await confirmAction({
    title: "Run archival now?",
    body: [`Eligible jobs of ${q ? "queue " + q : "every queue"} move from hammerwork_jobs to the archive, are flushed to ` +
      "the object store, and the policy's automatic purge runs.", "Tick “dry run” to only count them."],
    ok: "Run archival",
  }))) return;
  btn.disabled = true;
  const body = { reason: "manual", dry_run: dry, wait_seconds: 1 };
  if (q) body.queue = q;
  try {
    const res = await guarded(() => api("POST", "/api/archive/run", { body }), "run");
    if (res) {
      watchOperations();
      let op = res.data;
      const box = $("#run-status");
      box.hidden = false;
      box.className = "notice";
      while (op.state === "running") {
        box.textContent = `run started (operation ${op.operation_id}); this page refreshes until it ends.`;
        await new Promise((r) => setTimeout(r, 1000));
        const next = await guarded(() => api("GET", `/api/archive/operations/${op.operation_id}`), "run");
        if (!next) return;
        op = next.data;
      }
      const r = op.result || {};
      box.className = op.state === "succeeded" ? "notice good" : "notice err";
      box.textContent = op.state !== "succeeded" ? `run ${op.state}: ${op.error || ""}`
        : r.dry_run ? `${fmtInt(r.jobs_that_would_be_archived)} jobs would be archived.`
          : `${fmtInt(r.jobs_archived)} archived, ${fmtInt((r.flush || {}).jobs_flushed || 0)} flushed.`;
      loaders.overview();
    }
  } finally { btn.disabled = false; }
});

// ------------------------------------------------------------------ operations: banner and auto-refresh

const watch = { timer: null, running: [], busy: false, seen: null };
function refreshCurrent() {
  const { tab, params } = parseHash();
  const { job, ...filters } = params;
  if (["overview", "jobs", "audit", "schedule"].includes(tab) && loaders[tab]) loaders[tab](filters);
}
async function watchOperations() {
  clearTimeout(watch.timer);
  if (watch.busy) return;
  watch.busy = true;
  try {
    if (!$("#app").hidden && credentialOrOpen()) {
      let res = null;
      try { res = await api("GET", "/api/archive/operations", { params: { limit: 10 } }); } catch (e) { res = null; }
      if (res) {
        const running = res.data.filter((o) => o.state === "running");
        const banner = $("#ops-banner");
        banner.hidden = !running.length;
        banner.replaceChildren(...running.map((o) => {
          const p = o.progress || {};
          return h("div", {}, h("b", {}, `${o.kind} running`),
            ` · phase ${p.phase || "starting"} · archived ${fmtInt(p.archived || 0)} · flushed ${fmtInt(p.flushed || 0)}` +
            (p.restored ? ` · restored ${fmtInt(p.restored)}` : "") + ` · started ${fmtDate(o.started_at)} · this page refreshes until it ends`,
            h("div", { class: "progress" }, h("div")));
        }));
        // operations started elsewhere (CLI, scheduler, another tab) count too: any new or finished one refreshes
        const signature = res.data.map((o) => `${o.id}:${o.state}`).join(",");
        const changed = watch.seen !== null && signature !== watch.seen;
        watch.seen = signature;
        const finished = (watch.running.length && !running.length) || (changed && !running.length);
        if (running.length || finished) refreshCurrent();
        if (finished) { loadQueues(); toast("Operation finished"); }
        watch.running = running;
      }
    }
  } finally {
    watch.busy = false;
    watch.timer = setTimeout(watchOperations, watch.running.length ? 1500 : 10000);
  }
}
let openServer = false;
const credentialOrOpen = () => Boolean(credential()) || openServer;

// ------------------------------------------------------------------ jobs browser

const selected = new Map(); // job_id -> row, kept across pages and refreshes

function updateSelection() {
  const n = selected.size;
  $("#jobs-restore-selected").textContent = `Restore selected (${fmtInt(n)})`;
  $("#jobs-restore-selected").disabled = n === 0;
  $("#jobs-clear-selection").disabled = n === 0;
  for (const box of $$("#jobs-table input[data-select]")) box.checked = selected.has(box.dataset.select);
  const all = $("#jobs-table input.select-all");
  const boxes = $$("#jobs-table input[data-select]");
  if (all) all.checked = boxes.length > 0 && boxes.every((b) => b.checked);
}

function jobColumns(afterRestore, { selectable = false, actions = true } = {}) {
  const cols = [];
  if (selectable) {
    cols.push({
      head: () => h("input", { type: "checkbox", class: "select-all", "aria-label": "select every job on this page",
        onchange: (e) => {
          for (const box of $$("#jobs-table input[data-select]")) {
            if (e.target.checked) selected.set(box.dataset.select, JSON.parse(box.dataset.row));
            else selected.delete(box.dataset.select);
          }
          updateSelection();
        } }),
      render: (r) => h("input", { type: "checkbox", "aria-label": "select " + r.job_id, dataset: { select: r.job_id, row: JSON.stringify(r) },
        checked: selected.has(r.job_id),
        onchange: (e) => { if (e.target.checked) selected.set(r.job_id, r); else selected.delete(r.job_id); updateSelection(); } }),
    });
  }
  cols.push(
    { label: "Job", render: (r) => h("a", { href: "#", class: "mono", title: r.job_id, onclick: (e) => { e.preventDefault(); openJob(r.job_id); } }, shortId(r.job_id)) },
    { label: "Queue", render: (r) => r.queue_name },
    { label: "Status", render: (r) => badge(r.status) },
    { label: "Error", cls: "error-cell", render: (r) => r.error_message ? h("span", { title: r.error_message }, r.error_message) : "" },
    { label: "Tier", render: (r) => badge(r.tier, r.tier) },
    { label: "Created", render: (r) => fmtDate(r.created_at) },
    { label: "Archived", render: (r) => fmtDate(r.archived_at) },
    { label: "Payload", num: true, render: (r) => fmtBytes(r.payload_bytes) },
    { label: "Class", render: (r) => r.storage_class || "" },
  );
  if (actions) {
    cols.push({ label: "", render: (r) => h("span", { class: "row nowrap" },
      h("button", { class: "small", onclick: () => openJob(r.job_id) }, "View"),
      h("button", { class: "small primary", "data-action": "restore", onclick: (e) => restoreOne(r, e.target, afterRestore) }, "Restore")) });
  }
  return cols;
}

function jobsQuery(f) {
  return {
    queue: f.queue, status: f.status, archived_after: dateParam(f.archived_after),
    archived_before: dateParam(f.archived_before, true),
  };
}

loaders.jobs = async (params) => {
  const f = params || {};
  fillForm($("#jobs-filter"), f);
  const limit = Number(f.limit || 50), offset = Number(f.offset || 0);
  const res = await guarded(() => api("GET", "/api/archive/jobs", { params: { ...jobsQuery(f), limit, offset } }), "jobs");
  if (!res) return;
  const d = res.data;
  const rows = d.items.map((j) => ({ ...j, __id: j.job_id }));
  $("#jobs-table").replaceChildren(table(jobColumns(() => loaders.jobs(f), { selectable: true }), rows, "No archived jobs match these filters."));
  updateSelection();
  const from = d.total ? d.offset + 1 : 0, to = d.offset + d.items.length;
  $("#jobs-range").textContent = `${fmtInt(from)}–${fmtInt(to)} of ${d.total_is_estimate ? "~" : ""}${fmtInt(d.total)}`;
  $("#jobs-range").title = d.total_is_estimate ? "PostgreSQL's estimate (past 10,000 jobs a tier the total is not counted)" : "";
  $("#jobs-prev").disabled = d.offset === 0;
  $("#jobs-next").disabled = !d.pagination.has_more;
};
$("#jobs-filter").addEventListener("submit", (ev) => {
  ev.preventDefault();
  navigate("jobs", formData(ev.target));
});
$("#jobs-filter").addEventListener("reset", () => setTimeout(() => navigate("jobs", {})));
function jobsPage(delta) {
  const f = { ...(tabParams.jobs || {}) };
  const limit = Number(f.limit || 50);
  f.offset = Math.max(0, Number(f.offset || 0) + delta * limit) || undefined;
  navigate("jobs", f);
}
$("#jobs-prev").addEventListener("click", () => jobsPage(-1));
$("#jobs-next").addEventListener("click", () => jobsPage(1));
$("#jobs-clear-selection").addEventListener("click", () => { selected.clear(); updateSelection(); });

$("#jobs-restore-selected").addEventListener("click", async () => {
  const rows = Array.from(selected.values());
  if (!rows.length) return;
  const byQueue = {};
  for (const r of rows) byQueue[r.queue_name] = (byQueue[r.queue_name] || 0) + 1;
  const ok = await confirmAction({
    title: `Restore ${plural(rows.length, "job")}?`,
    body: [
      "They go back to hammerwork_jobs as Pending, and Hammerwork runs them again. Preview:",
      h("p", { class: "muted" }, Object.entries(byQueue).map(([q, c]) => `${q}: ${c}`).join(" · ")),
      h("div", { class: "table-wrap preview" }, table(jobColumns(null, { actions: false }), rows.slice(0, 200), "")),
      rows.length > 200 ? h("p", { class: "muted" }, `and ${fmtInt(rows.length - 200)} more`) : null,
    ].filter(Boolean),
    ok: `Restore ${plural(rows.length, "job")}`,
  });
  if (!ok) return;
  let done = 0;
  const failed = [];
  for (const r of rows) {
    try {
      await api("POST", `/api/archive/jobs/${r.job_id}/restore`, { body: {} });
      done++;
      selected.delete(r.job_id);
    } catch (e) { failed.push(`${shortId(r.job_id)}: ${e.message}`); }
  }
  toast(`Restored ${plural(done, "job")}` + (failed.length ? `; ${failed.length} failed (${failed[0]})` : ""), failed.length > 0);
  updateSelection();
  await loaders.jobs(tabParams.jobs || {});
});

// CSV export: every job of the current filters (all pages), the API's fields, values as the API gives them.
function csvCell(v) {
  const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
  return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}
async function exportCsv() {
  const f = tabParams.jobs || {};
  const items = [];
  // keyset paging (next_cursor): each page costs the same however deep in the archive it is
  for (let after = undefined; ; ) {
    const params = { ...jobsQuery(f), limit: 1000 };
    if (after) params.after = after;
    const res = await guarded(() => api("GET", "/api/archive/jobs", { params }), "export");
    if (!res) return;
    items.push(...res.data.items);
    after = res.data.pagination.next_cursor;
    if (!res.data.pagination.has_more || !res.data.items.length || !after) break;
  }
  const columns = [];
  for (const it of items) for (const k of Object.keys(it)) if (!columns.includes(k)) columns.push(k);
  if (!columns.length) columns.push("job_id");
  const lines = [columns.join(",")].concat(items.map((it) => columns.map((c) => csvCell(it[c])).join(",")));
  const blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" });
  const a = h("a", { href: URL.createObjectURL(blob), download: `archived-jobs-${new Date().toISOString().slice(0, 10)}.csv` });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  toast(`Exported ${plural(items.length, "job")}`);
}
$("#jobs-export").addEventListener("click", () => exportCsv());

async function restoreOne(r, btn, after) {
  const ok = await confirmAction({
    title: "Restore this job?",
    body: [h("p", {}, "Job ", h("code", {}, r.job_id), ` goes back to queue ${r.queue_name || "?"} as Pending; Hammerwork runs it again.`)],
    ok: "Restore job",
  });
  if (!ok) return false;
  if (btn) btn.disabled = true;
  const res = await guarded(() => api("POST", `/api/archive/jobs/${r.job_id}/restore`, { body: {} }), "restore");
  if (res) {
    selected.delete(r.job_id);
    toast(`Job ${shortId(r.job_id)} restored to ${res.data.queue_name} as Pending`);
    if (after) await after();
    return true;
  }
  if (btn) btn.disabled = false;
  return false;
}

async function openJob(id) {
  const dlg = $("#job-dialog");
  $("#job-dialog-title").textContent = "Job " + id;
  $("#job-dialog-body").replaceChildren(h("div", { class: "muted" }, "Loading…"));
  if (!dlg.open) dlg.showModal();
  setJobInUrl(id);
  const res = await guarded(() => api("GET", `/api/archive/jobs/${encodeURIComponent(id)}`, { params: { payload: "true" } }), "job");
  if (!res) { dlg.close(); return; }
  const j = res.data;
  const kv = h("dl", { class: "kv" });
  const record = j.record || {};
  for (const [k, v] of [["queue", j.queue_name], ["status", j.status], ["tier", j.tier], ["created", fmtDate(j.created_at)],
    ["archived", fmtDate(j.archived_at)], ["object", j.object_key || "–"], ["storage class", j.storage_class || "–"],
    ["payload size", fmtBytes(j.payload_bytes)], ["attempts", record.attempts !== undefined ? record.attempts : "–"],
    ["error", record.error_message || j.error_message || "–"]]) kv.append(h("dt", {}, k), h("dd", {}, v));
  if (j.warning) kv.append(h("dt", {}, "warning"), h("dd", { class: "error" }, j.warning));
  const after = async () => { dlg.close(); if ($("[data-panel=jobs]").classList.contains("active")) await loaders.jobs(tabParams.jobs || {}); };
  $("#job-dialog-body").replaceChildren(kv, h("h3", {}, "Payload"),
    h("pre", { class: "json" }, JSON.stringify(j.payload, null, 2)),
    h("div", { class: "row dialog-actions" },
      h("button", { class: "primary", "data-action": "restore", onclick: async (e) => { await restoreOne(j, e.target, after); } }, "Restore this job")));
}
$("#job-dialog-close").addEventListener("click", () => $("#job-dialog").close());
$("#job-dialog").addEventListener("close", () => setJobInUrl(null));

// ------------------------------------------------------------------ search

loaders.search = async (params) => {
  const f = params || {};
  fillForm($("#search-form"), f);
  if (!f.key || f.value === undefined) { $("#search-info").textContent = ""; $("#search-table").replaceChildren(); return; }
  $("#search-info").textContent = "Searching…";
  const res = await guarded(() => api("GET", "/api/archive/search", { params: f }), "search");
  if (!res) { $("#search-info").textContent = ""; return; }
  const d = res.data;
  $("#search-info").textContent = `${fmtInt(d.count)} match${d.count === 1 ? "" : "es"}${d.truncated ? " (truncated)" : ""} · ` +
    `${fmtInt(d.stats.objects_scanned)} of ${fmtInt(d.stats.objects_total)} objects read, ${fmtBytes(d.stats.object_bytes)}` +
    (d.objects_skipped.length ? ` · ${d.objects_skipped.length} archived objects skipped` : "");
  const rows = d.items.map((j) => ({ ...j, __id: j.job_id }));
  $("#search-table").replaceChildren(table(jobColumns(() => loaders.search(f)), rows, "No archived job has that value."));
};
$("#search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = formData(ev.target);
  if (location.hash === hashFor("search", f)) loaders.search(f); else navigate("search", f);
});

// ------------------------------------------------------------------ bulk restore (filters)

function restoreBody(f) {
  const body = {};
  if (f.queue) body.queue = f.queue;
  if (f.status) body.status = f.status;
  if (f.archived_after) body.archived_after = dateParam(f.archived_after);
  if (f.archived_before) body.archived_before = dateParam(f.archived_before, true);
  if (f.count) body.count = Number(f.count);
  return body;
}
loaders.restore = async (params) => {
  fillForm($("#restore-form"), params || {});
};
$("#restore-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = formData(ev.target);
  navigate("restore", f, { replace: true });
  const body = restoreBody(f);
  const out = $("#restore-preview");
  const res = await guarded(() => api("POST", "/api/archive/restore", { body: { ...body, dry_run: true, wait_seconds: 30 } }), "preview");
  if (!res) return;
  const r = res.data.result || {};
  const n = r.would_restore || 0;
  const byQueue = Object.entries(r.by_queue || {}).map(([q, c]) => `${q}: ${c}`).join(", ");
  const go = h("button", { class: "primary", disabled: n === 0 }, `Restore ${plural(n, "job")}`);
  go.addEventListener("click", async () => {
    const ok = await confirmAction({
      title: `Restore ${plural(n, "job")}?`,
      body: [`They go back to hammerwork_jobs as Pending${byQueue ? " (" + byQueue + ")" : ""}; Hammerwork runs them again.`,
        r.pending && r.pending.length ? `${r.pending.length} of their objects are in GLACIER: a restore of those objects is requested first.` : null].filter(Boolean),
      ok: `Restore ${plural(n, "job")}`,
    });
    if (!ok) return;
    go.disabled = true;
    const done = await guarded(() => api("POST", "/api/archive/restore", { body: { ...body, wait_seconds: 30 } }), "restore");
    if (!done) { go.disabled = false; return; }
    watchOperations();
    const rr = done.data.result || {};
    out.replaceChildren(h("div", { class: done.data.state === "succeeded" ? "notice good" : "notice" },
      done.data.state === "succeeded" ? `Restored ${plural(rr.restored, "job")}.` + (rr.pending && rr.pending.length ? ` ${rr.pending.length} waiting for GLACIER restores.` : "")
        : `Restore is ${done.data.state}; operation ${done.data.operation_id}.`));
  });
  out.replaceChildren(
    h("div", { class: "notice" }, `Preview: ${plural(n, "job")} would be restored`, byQueue ? " — " + byQueue : "",
      r.pending && r.pending.length ? ` · ${r.pending.length} in GLACIER objects (restore will be requested)` : ""),
    h("div", { class: "row toolbar" }, go),
    h("div", { class: "card table-wrap" }, table(jobColumns(null, { actions: false }), (r.jobs || []).map((j) => ({ ...j })), "Nothing matches.")));
});

// ------------------------------------------------------------------ purge

function purgeDays(f) {
  const n = Number(f.older_than === undefined ? 365 : f.older_than);
  return Math.round(n * Number(f.older_than_unit || 1));
}
loaders.purge = async (params) => {
  fillForm($("#purge-form"), params || {});
};
$("#purge-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = formData(ev.target);
  navigate("purge", f, { replace: true });
  const params = { older_than: String(purgeDays(f)), queue: f.queue, status: f.status };
  const out = $("#purge-preview");
  const res = await guarded(() => api("DELETE", "/api/archive/purge", { params: { ...params, dry_run: "true" } }), "preview");
  if (!res) return;
  const p = res.data;
  const confirmBox = h("input", { placeholder: "type purge", size: 12, "aria-label": "confirmation" });
  const go = h("button", { class: "danger solid", disabled: true }, `Purge ${plural(p.jobs_to_purge, "job")}`);
  confirmBox.addEventListener("input", () => { go.disabled = confirmBox.value.trim() !== "purge" || !p.jobs_to_purge; });
  go.addEventListener("click", async () => {
    go.disabled = true;
    const done = await guarded(() => api("DELETE", "/api/archive/purge", { params }), "purge");
    if (!done) return;
    const d = done.data;
    out.replaceChildren(h("div", { class: d.errors && d.errors.length ? "notice err" : "notice good" },
      `Purged ${plural(d.jobs_purged, "job")}; ${fmtInt(d.objects_deleted)} objects deleted, ${fmtInt(d.objects_rewritten)} rewritten, ${fmtBytes(d.storage_freed)} freed.`));
  });
  const kv = h("dl", { class: "kv" });
  for (const [k, v] of [["archived before", fmtDate(p.cutoff) + ` (${fmtInt(purgeDays(f))} days ago)`], ["jobs to purge", fmtInt(p.jobs_to_purge)],
    ["staged / cold", `${fmtInt(p.staging_jobs)} / ${fmtInt(p.cold_jobs)}`],
    ["objects to delete", fmtInt(p.objects_to_delete)], ["objects to rewrite", fmtInt(p.objects_to_rewrite)],
    ["storage to free", fmtBytes(p.storage_to_free) + (p.storage_to_free_is_estimate ? " (estimate)" : "")],
    ["queues", (p.affected_queues || []).join(", ") || "–"],
    ["oldest / newest", `${fmtDate(p.oldest_affected)} / ${fmtDate(p.newest_affected)}`],
    ["locked objects", fmtInt((p.locked_objects || []).length)]]) kv.append(h("dt", {}, k), h("dd", {}, v));
  out.replaceChildren(h("div", { class: "card" }, h("h3", {}, "Preview (nothing deleted yet)"), kv,
    h("p", { class: "muted" }, "This cannot be undone. Type purge to confirm."),
    h("div", { class: "row" }, confirmBox, go)));
});

// ------------------------------------------------------------------ policy

loaders.policy = async () => {
  const res = await guarded(() => api("GET", "/api/archive/policy"), "policy");
  if (!res) return;
  $("#policy-text").value = JSON.stringify(res.data.policy, null, 2);
  $("#policy-source").textContent = res.data.stored ? "stored policy" : "defaults (no stored policy)";
  $("#policy-msg").replaceChildren();
};
$("#policy-reload").addEventListener("click", () => loaders.policy());
$("#policy-save").addEventListener("click", async () => {
  const msg = $("#policy-msg");
  let doc;
  try { doc = JSON.parse($("#policy-text").value); } catch (e) {
    msg.replaceChildren(h("div", { class: "notice err" }, "Invalid JSON: " + e.message));
    return;
  }
  if (!(await confirmAction({ title: "Store this policy?", body: "The server validates it first. Runs and schedules use it from the next run on.", ok: "Store policy" }))) return;
  try {
    const res = await api("PUT", "/api/archive/policy", { body: doc });
    $("#policy-text").value = JSON.stringify(res.data.policy, null, 2);
    $("#policy-source").textContent = "stored policy";
    msg.replaceChildren(h("div", { class: "notice good" }, "Saved. Runs and schedules use it from now on."));
  } catch (e) {
    msg.replaceChildren(h("div", { class: "notice err" }, e.message));
  }
});
$("#policy-remove").addEventListener("click", async () => {
  if (!(await confirmAction({ title: "Remove the stored policy?", body: "Runs fall back to the defaults.", ok: "Remove policy", danger: true }))) return;
  const res = await guarded(() => api("DELETE", "/api/archive/policy"), "policy");
  if (res) { toast(res.data.removed ? "Stored policy removed" : "No stored policy"); loaders.policy(); }
});

// ------------------------------------------------------------------ lifecycle

function renderPlan(p) {
  const warnings = p.warnings || [];
  const lines = (p.diff_text || "").split("\n").map((l) => h("span", {
    class: l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : l.startsWith("~") ? "chg" : "" }, l + "\n"));
  const head = p.supported
    ? h("div", { class: "notice" }, (p.applied ? "Applied. " : "") + (p.has_changes ? "The bucket's rules differ from the policy." : "The bucket's rules are up to date."))
    // one box for an unsupported store: its reason is the first warning when there is one
    : h("div", { class: "notice err" }, warnings[0] || "This store has no lifecycle support.");
  const rest = p.supported ? warnings : warnings.slice(1);
  return [
    head,
    ...rest.map((w) => h("div", { class: "notice" }, w)),
    p.diff_text ? h("div", { class: "card" }, h("h3", {}, "Diff"), h("pre", { class: "diff" }, lines)) : null,
    p.rules && (!Array.isArray(p.rules) || p.rules.length)
      ? h("div", { class: "card" }, h("h3", {}, "Rules rendered from the policy"), h("pre", { class: "json" }, JSON.stringify(p.rules, null, 2)))
      : null,
  ].filter(Boolean);
}
loaders.lifecycle = async () => {
  const res = await guarded(() => api("GET", "/api/archive/lifecycle/plan"), "lifecycle");
  if (!res) return;
  $("#lc-out").replaceChildren(...renderPlan(res.data));
  $("#lc-apply").disabled = !(res.data.supported && res.data.has_changes);
};
$("#lc-plan").addEventListener("click", () => loaders.lifecycle());
$("#lc-apply").addEventListener("click", async () => {
  if (!(await confirmAction({ title: "Apply these lifecycle rules?", body: "They are written to the bucket; rules tiering does not own are kept.", ok: "Apply rules" }))) return;
  const res = await guarded(() => api("POST", "/api/archive/lifecycle/apply", { body: {} }), "apply");
  if (res) { $("#lc-out").replaceChildren(...renderPlan(res.data)); $("#lc-apply").disabled = true; toast("Lifecycle rules applied"); }
});

// ------------------------------------------------------------------ schedule

loaders.schedule = async () => {
  const res = await guarded(() => api("GET", "/api/archive/schedule"), "schedule");
  if (!res) return;
  const s = res.data;
  $("#schedule-out").replaceChildren(
    h("p", { class: "muted" }, `Cron in ${s.timezone}. Scheduler ${s.running_here ? "running in this server" : "not running in this server (tiering schedule may run elsewhere)"} · instance ${s.instance}` + (s.error ? ` · ${s.error}` : "")),
    h("div", { class: "card table-wrap" }, table([
      { label: "Task", render: (r) => h("b", {}, r.task) },
      { label: "Cron", render: (r) => h("code", {}, r.cron) },
      { label: "From", render: (r) => r.source },
      { label: "Next run", render: (r) => r.valid ? fmtDate(r.next_run) : badge("invalid", "failed") },
      { label: "Last run", render: (r) => r.last_run ? fmtDate(r.last_run.started_at) : "never" },
      { label: "Outcome", render: (r) => r.last_run ? badge(r.last_run.outcome) : "" },
      { label: "Instance", render: (r) => r.last_run ? r.last_run.instance : "" },
      { label: "Error", wrap: true, render: (r) => (r.last_run && r.last_run.error) || "" },
    ], s.schedules, "No schedules. Add \"schedules\" to the policy, e.g. {\"archive\": \"0 2 * * *\"}.")),
    h("h3", {}, "Recent scheduled runs"),
    h("div", { class: "card table-wrap" }, table([
      { label: "Task", render: (r) => r.task },
      { label: "Window", render: (r) => fmtDate(r.window_start) },
      { label: "Started", render: (r) => fmtDate(r.started_at) },
      { label: "Finished", render: (r) => fmtDate(r.finished_at) },
      { label: "Outcome", render: (r) => badge(r.outcome) },
      { label: "Instance", render: (r) => r.instance },
      { label: "Error", wrap: true, render: (r) => r.error || "" },
    ], s.history, "No scheduled run yet.")));
};
$("#schedule-refresh").addEventListener("click", () => loaders.schedule());

// ------------------------------------------------------------------ audit

const AUDIT_LIMIT = 50;
function summarize(counts) {
  const keys = ["jobs_archived", "jobs_that_would_be_archived", "jobs_flushed", "restored", "jobs_purged", "jobs_erased", "objects_written", "objects_checked", "problems"];
  const parts = [];
  for (const k of keys) if (counts && counts[k] !== undefined && counts[k] !== null && typeof counts[k] !== "object") parts.push(`${k.replace(/^jobs_/, "")}: ${counts[k]}`);
  return parts.join(" · ");
}
loaders.audit = async (params) => {
  const f = params || {};
  fillForm($("#audit-filter"), f);
  const offset = Number(f.offset || 0);
  const res = await guarded(() => api("GET", "/api/archive/audit", { params: {
    operation: f.operation, since: f.since, limit: AUDIT_LIMIT, offset } }), "audit");
  if (!res) return;
  const items = res.data.items;
  $("#audit-table").replaceChildren(table([
    { label: "#", num: true, render: (r) => r.id },
    { label: "Operation", render: (r) => h("b", {}, r.operation) },
    { label: "Started", render: (r) => fmtDate(r.started_at) },
    { label: "Took", num: true, render: (r) => r.finished_at ? ((new Date(r.finished_at) - new Date(r.started_at)) / 1000).toFixed(2) + " s" : "…" },
    { label: "By", render: (r) => r.initiated_by || "" },
    { label: "Reason", render: (r) => r.reason || "" },
    { label: "Outcome", render: (r) => badge(r.outcome) },
    { label: "Counts", wrap: true, render: (r) => summarize(r.counts) + (r.error ? " — " + r.error : "") },
  ], items, "No operations recorded."));
  $("#audit-range").textContent = items.length ? `${offset + 1}–${offset + items.length}` : "";
  $("#audit-prev").disabled = offset === 0;
  $("#audit-next").disabled = items.length < AUDIT_LIMIT;
};
$("#audit-filter").addEventListener("submit", (ev) => { ev.preventDefault(); navigate("audit", formData(ev.target)); });
function auditPage(delta) {
  const f = { ...(tabParams.audit || {}) };
  f.offset = Math.max(0, Number(f.offset || 0) + delta * AUDIT_LIMIT) || undefined;
  navigate("audit", f);
}
$("#audit-prev").addEventListener("click", () => auditPage(-1));
$("#audit-next").addEventListener("click", () => auditPage(1));

// ------------------------------------------------------------------ start

(async () => {
  if (credential()) {
    try { await api("GET", "/api/archive/schedule"); showApp(sessionStorage.getItem(KEY + ".label")); return; } catch (e) { /* fall through */ }
  }
  // a server without credentials (loopback only) answers without one
  try {
    const res = await fetch("/api/archive/schedule", { headers: headers() });
    if (res.ok) { openServer = true; showApp("open (no credential configured)"); return; }
  } catch (e) { /* offline */ }
  showLogin();
})();
