/* tiering archive dashboard: plain JS, inline SVG charts, no network beyond this server.
   Every value from the server is inserted as text (textContent), never as HTML. */
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
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : "" }, c.label)))),
    h("tbody", {}, rows.map((r) => h("tr", { dataset: r.__id ? { id: r.__id } : {} },
      columns.map((c) => {
        const v = c.render ? c.render(r) : r[c.key];
        return h("td", { class: (c.num ? "num " : "") + (c.wrap ? "wrap" : "") }, v);
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

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function credential() { return sessionStorage.getItem(KEY); }

async function api(method, path, { params, body } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
  const headers = { Accept: "application/json" };
  const cred = credential();
  if (cred) headers.Authorization = cred;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
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
  activate(location.hash.slice(1) || "overview");
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

// ------------------------------------------------------------------ tabs

const loaders = {};
function activate(tab) {
  if (!loaders[tab]) tab = "overview";
  $$("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  $$(".panel").forEach((p) => p.classList.toggle("active", p.dataset.panel === tab));
  if (location.hash.slice(1) !== tab) history.replaceState(null, "", "#" + tab);
  loaders[tab]();
}
$$("#tabs button").forEach((b) => b.addEventListener("click", () => {
  if (!$("#app").hidden) activate(b.dataset.tab);
}));

// ------------------------------------------------------------------ charts (inline SVG)

const COLORS = { archive: "#2563eb", flush: "#60a5fa", restore: "#16a34a", purge: "#dc2626", erase: "#7c3aed" };

function niceMax(v) {
  // 4 gridlines at whole-number steps of 1, 2 or 5 x 10^k
  const raw = Math.max(1, v / 4);
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return 4 * m * p;
  return 40 * p;
}

function barChart(series, keys, { height = 220 } = {}) {
  const W = 640, H = height, L = 44, R = 8, T = 10, B = 26;
  const max = niceMax(Math.max(0, ...series.map((d) => Math.max(...keys.map((k) => d[k] || 0)))));
  const n = series.length || 1;
  const slot = (W - L - R) / n;
  const bw = Math.max(1, (slot - 2) / keys.length);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "jobs per day" });
  for (let i = 0; i <= 4; i++) {
    const v = (max / 4) * i;
    root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e2e8f0" }));
    root.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmtInt(Math.round(v))));
  }
  series.forEach((d, i) => {
    keys.forEach((k, j) => {
      const v = d[k] || 0;
      if (!v) return;
      const x = L + i * slot + 1 + j * bw;
      root.append(svg("rect", { x, y: y(v), width: bw, height: Math.max(1, y(0) - y(v)), fill: COLORS[k], rx: 1 },
        svg("title", {}, `${d.day} ${k}: ${fmtInt(v)}`)));
    });
    if (i % Math.ceil(n / 8) === 0) {
      root.append(svg("text", { x: L + i * slot + slot / 2, y: H - 8, "text-anchor": "middle" }, String(d.day).slice(5)));
    }
  });
  const legend = h("div", { class: "legend" }, keys.map((k) => h("span", {}, h("i", { style: `background:${COLORS[k]}` }), k)));
  return [root, legend];
}

function hbarChart(items, { color = "#2563eb", format = fmtBytes, extra } = {}) {
  if (!items.length) return h("div", { class: "empty" }, "No data yet.");
  const W = 640, rowH = 30, L = 150, R = 170, H = items.length * rowH + 6;
  const max = Math.max(1, ...items.map((d) => d.value));
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  items.forEach((d, i) => {
    const y = 4 + i * rowH;
    const w = ((W - L - R) * d.value) / max;
    root.append(svg("text", { x: L - 8, y: y + 17, "text-anchor": "end" }, d.label));
    root.append(svg("rect", { x: L, y: y + 5, width: W - L - R, height: 16, fill: "#f1f5f9", rx: 3 }));
    root.append(svg("rect", { x: L, y: y + 5, width: Math.max(d.value ? 2 : 0, w), height: 16, fill: d.color || color, rx: 3 }));
    root.append(svg("text", { x: W - R + 8, y: y + 17 }, format(d.value) + (extra ? "  " + extra(d) : "")));
  });
  return root;
}

// ------------------------------------------------------------------ overview

function statCard(label, value, sub) {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value),
    sub ? h("div", { class: "sub" }, sub) : null);
}

loaders.overview = async () => {
  const [stats, trends] = await Promise.all([
    guarded(() => api("GET", "/api/archive/stats"), "stats"),
    guarded(() => api("GET", "/api/archive/trends", { params: { days: 30 } }), "trends"),
  ]);
  if (stats) {
    const s = stats.data, t = s.total, tiers = s.tiers, cost = s.estimated_monthly_cost;
    $("#cards").replaceChildren(
      statCard("Archived jobs", fmtInt(t.jobs), `${fmtInt(tiers.staging.jobs)} staged · ${fmtInt(tiers.cold.jobs)} cold`),
      statCard("Stored", fmtBytes(t.stored_bytes), `from ${fmtBytes(t.original_bytes)} of payloads`),
      statCard("Compression", fmtRatio(t.compression_ratio), "stored / original"),
      statCard("Cold objects", fmtInt(tiers.cold.objects), "Parquet + zstd"),
      statCard("Est. monthly cost", fmtUsd(cost.total_estimated_usd_per_month), "storage only, list prices"),
      statCard("Restored", fmtInt(t.jobs_restored_to_date), "to date"),
      statCard("Purged", fmtInt(t.jobs_purged_to_date), `${fmtInt(t.jobs_erased_to_date)} erased`),
      statCard("Newest archived", t.newest_archived_at ? fmtDate(t.newest_archived_at).slice(0, 10) : "–",
        t.oldest_archived_at ? "oldest " + fmtDate(t.oldest_archived_at).slice(0, 10) : ""),
    );
    $("#chart-tiers").replaceChildren(
      h("div", { class: "muted small" }, "bytes stored"),
      hbarChart([
        { label: "staging (PostgreSQL)", value: tiers.staging.stored_bytes, color: "#f59e0b" },
        { label: "cold (objects)", value: tiers.cold.stored_bytes, color: "#2563eb" },
      ]),
      h("div", { class: "muted small" }, "jobs"),
      hbarChart([
        { label: "staging (PostgreSQL)", value: tiers.staging.jobs, color: "#f59e0b" },
        { label: "cold (objects)", value: tiers.cold.jobs, color: "#2563eb" },
      ], { format: fmtInt }),
      h("div", { class: "muted small" }, `payloads ${fmtBytes(t.original_bytes)} → stored ${fmtBytes(t.stored_bytes)} (${fmtRatio(t.compression_ratio)})`));
    const classes = Object.entries(tiers.cold_by_storage_class || {}).map(([k, v]) => ({
      label: k, value: v.stored_bytes, cost: (cost.by_storage_class[k] || {}).estimated_usd_per_month,
    }));
    $("#chart-classes").replaceChildren(hbarChart(classes, { color: "#60a5fa", extra: (d) => fmtUsd(d.cost) + "/mo" }));
    $("#cost-label").textContent = cost.label || "";
    const rows = Object.entries(s.queues || {}).map(([q, v]) => ({ queue: q, ...v }));
    $("#queue-table").replaceChildren(table([
      { label: "Queue", render: (r) => r.queue },
      { label: "Staged", num: true, render: (r) => fmtInt(r.staging.jobs) },
      { label: "Cold", num: true, render: (r) => fmtInt(r.cold.jobs) },
      { label: "Stored", num: true, render: (r) => fmtBytes(r.total.stored_bytes) },
      { label: "Ratio", num: true, render: (r) => fmtRatio(r.total.compression_ratio) },
      { label: "Restored", num: true, render: (r) => fmtInt(r.jobs_restored_to_date) },
      { label: "Purged", num: true, render: (r) => fmtInt(r.jobs_purged_to_date) },
    ], rows, "No archived jobs yet."));
  }
  if (trends) $("#chart-daily").replaceChildren(...barChart(trends.data.series, ["archive", "flush", "restore", "purge"]));
};
$("#refresh-overview").addEventListener("click", () => loaders.overview());

async function pollOperation(op, onDone) {
  const box = $("#run-status");
  box.hidden = false;
  box.className = "notice";
  for (;;) {
    const p = op.progress || {};
    box.replaceChildren(h("b", {}, `${op.kind} ${op.state}`),
      ` · phase ${p.phase || "starting"} · archived ${fmtInt(p.archived || 0)} · flushed ${fmtInt(p.flushed || 0)}`,
      op.state === "running" ? h("div", { class: "progress" }, h("div")) : null);
    if (op.state !== "running") break;
    await new Promise((r) => setTimeout(r, 700));
    const res = await guarded(() => api("GET", `/api/archive/operations/${op.operation_id}`));
    if (!res) return;
    op = res.data;
  }
  if (op.state === "failed") { box.className = "notice err"; box.append(" — " + (op.error || "failed")); }
  else box.className = "notice good";
  onDone && onDone(op);
}

$("#run-now").addEventListener("click", async () => {
  const btn = $("#run-now");
  btn.disabled = true;
  const body = { reason: "manual", dry_run: $("#run-dry").checked, wait_seconds: 1 };
  const q = $("#run-queue").value.trim();
  if (q) body.queue = q;
  try {
    const res = await guarded(() => api("POST", "/api/archive/run", { body }), "run");
    if (res) {
      await pollOperation(res.data, (op) => {
        const r = op.result || {};
        if (op.state === "succeeded") {
          $("#run-status").append(" — " + (r.dry_run ? `${fmtInt(r.jobs_that_would_be_archived)} jobs would be archived`
            : `${fmtInt(r.jobs_archived)} archived, ${fmtInt((r.flush || {}).jobs_flushed || 0)} flushed`));
          loaders.overview();
        }
      });
    }
  } finally { btn.disabled = false; }
});

// ------------------------------------------------------------------ jobs browser

const jobsState = { offset: 0, limit: 50, filters: {} };

function jobColumns(afterRestore) {
  return [
    { label: "Job", render: (r) => h("a", { href: "#", class: "mono", title: r.job_id, onclick: (e) => { e.preventDefault(); openJob(r.job_id); } }, shortId(r.job_id)) },
    { label: "Queue", render: (r) => r.queue_name },
    { label: "Status", render: (r) => badge(r.status) },
    { label: "Tier", render: (r) => badge(r.tier, r.tier) },
    { label: "Created", render: (r) => fmtDate(r.created_at) },
    { label: "Archived", render: (r) => fmtDate(r.archived_at) },
    { label: "Payload", num: true, render: (r) => fmtBytes(r.payload_bytes) },
    { label: "Class", render: (r) => r.storage_class || "" },
    { label: "", render: (r) => h("span", { class: "row" },
        h("button", { class: "small", onclick: () => openJob(r.job_id) }, "View"),
        h("button", { class: "small primary", "data-action": "restore", onclick: (e) => restoreOne(r.job_id, e.target, afterRestore) }, "Restore")) },
  ];
}

loaders.jobs = async () => {
  const f = jobsState.filters;
  const res = await guarded(() => api("GET", "/api/archive/jobs", { params: {
    queue: f.queue, status: f.status, archived_after: dateParam(f.archived_after),
    archived_before: dateParam(f.archived_before, true), limit: jobsState.limit, offset: jobsState.offset,
  } }), "jobs");
  if (!res) return;
  const d = res.data;
  const rows = d.items.map((j) => ({ ...j, __id: j.job_id }));
  $("#jobs-table").replaceChildren(table(jobColumns(() => loaders.jobs()), rows, "No archived jobs match these filters."));
  const from = d.total ? d.offset + 1 : 0, to = d.offset + d.items.length;
  $("#jobs-range").textContent = `${fmtInt(from)}–${fmtInt(to)} of ${fmtInt(d.total)}`;
  $("#jobs-prev").disabled = d.offset === 0;
  $("#jobs-next").disabled = !d.pagination.has_more;
};
$("#jobs-filter").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = formData(ev.target);
  jobsState.limit = Number(f.limit || 50);
  delete f.limit;
  jobsState.filters = f;
  jobsState.offset = 0;
  loaders.jobs();
});
$("#jobs-filter").addEventListener("reset", () => setTimeout(() => { jobsState.filters = {}; jobsState.offset = 0; loaders.jobs(); }));
$("#jobs-prev").addEventListener("click", () => { jobsState.offset = Math.max(0, jobsState.offset - jobsState.limit); loaders.jobs(); });
$("#jobs-next").addEventListener("click", () => { jobsState.offset += jobsState.limit; loaders.jobs(); });

async function restoreOne(id, btn, after) {
  if (btn) btn.disabled = true;
  const res = await guarded(() => api("POST", `/api/archive/jobs/${id}/restore`, { body: {} }), "restore");
  if (res) {
    toast(`Job ${shortId(id)} restored to ${res.data.queue_name} as Pending`);
    if (after) await after();
  } else if (btn) btn.disabled = false;
}

async function openJob(id) {
  const dlg = $("#job-dialog");
  $("#job-dialog-title").textContent = "Job " + id;
  $("#job-dialog-body").replaceChildren(h("div", { class: "muted" }, "Loading…"));
  if (!dlg.open) dlg.showModal();
  const res = await guarded(() => api("GET", `/api/archive/jobs/${id}`, { params: { payload: "true" } }), "job");
  if (!res) { dlg.close(); return; }
  const j = res.data;
  const kv = h("dl", { class: "kv" });
  for (const [k, v] of [["queue", j.queue_name], ["status", j.status], ["tier", j.tier], ["created", fmtDate(j.created_at)],
    ["archived", fmtDate(j.archived_at)], ["object", j.object_key || "–"], ["storage class", j.storage_class || "–"],
    ["payload size", fmtBytes(j.payload_bytes)]]) kv.append(h("dt", {}, k), h("dd", {}, v));
  if (j.warning) kv.append(h("dt", {}, "warning"), h("dd", { class: "error" }, j.warning));
  $("#job-dialog-body").replaceChildren(kv, h("h3", {}, "Payload"),
    h("pre", { class: "json" }, JSON.stringify(j.payload, null, 2)),
    h("div", { class: "row", style: "margin-top:12px" },
      h("button", { class: "primary", onclick: async (e) => { await restoreOne(id, e.target, async () => { dlg.close(); if ($("[data-panel=jobs]").classList.contains("active")) await loaders.jobs(); }); } }, "Restore this job")));
}
$("#job-dialog-close").addEventListener("click", () => $("#job-dialog").close());

// ------------------------------------------------------------------ search

loaders.search = async () => {};
$("#search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = formData(ev.target);
  $("#search-info").textContent = "Searching…";
  const res = await guarded(() => api("GET", "/api/archive/search", { params: f }), "search");
  if (!res) { $("#search-info").textContent = ""; return; }
  const d = res.data;
  $("#search-info").textContent = `${fmtInt(d.count)} match${d.count === 1 ? "" : "es"}${d.truncated ? " (truncated)" : ""} · ` +
    `${fmtInt(d.stats.objects_scanned)} of ${fmtInt(d.stats.objects_total)} objects read, ${fmtBytes(d.stats.object_bytes)}` +
    (d.objects_skipped.length ? ` · ${d.objects_skipped.length} archived objects skipped` : "");
  const rows = d.items.map((j) => ({ ...j, __id: j.job_id }));
  $("#search-table").replaceChildren(table(jobColumns(() => ev.target.requestSubmit()), rows, "No archived job has that value."));
});

// ------------------------------------------------------------------ bulk restore

loaders.restore = async () => {};
function restoreBody(f) {
  const body = {};
  if (f.queue) body.queue = f.queue;
  if (f.status) body.status = f.status;
  if (f.archived_after) body.archived_after = dateParam(f.archived_after);
  if (f.archived_before) body.archived_before = dateParam(f.archived_before, true);
  if (f.count) body.count = Number(f.count);
  return body;
}
$("#restore-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = restoreBody(formData(ev.target));
  const out = $("#restore-preview");
  const res = await guarded(() => api("POST", "/api/archive/restore", { body: { ...body, dry_run: true, wait_seconds: 30 } }), "preview");
  if (!res) return;
  const r = res.data.result || {};
  const n = r.would_restore || 0;
  const go = h("button", { class: "primary", disabled: n === 0 }, `Restore ${fmtInt(n)} job${n === 1 ? "" : "s"}`);
  go.addEventListener("click", async () => {
    go.disabled = true;
    const done = await guarded(() => api("POST", "/api/archive/restore", { body: { ...body, wait_seconds: 30 } }), "restore");
    if (!done) { go.disabled = false; return; }
    const rr = done.data.result || {};
    out.replaceChildren(h("div", { class: done.data.state === "succeeded" ? "notice good" : "notice" },
      done.data.state === "succeeded" ? `Restored ${fmtInt(rr.restored)} jobs.` + (rr.pending && rr.pending.length ? ` ${rr.pending.length} waiting for GLACIER restores.` : "")
        : `Restore is ${done.data.state}; operation ${done.data.operation_id}.`));
  });
  out.replaceChildren(
    h("div", { class: "notice" }, `Preview: ${fmtInt(n)} job(s) would be restored`,
      Object.keys(r.by_queue || {}).length ? " — " + Object.entries(r.by_queue).map(([q, c]) => `${q}: ${c}`).join(", ") : "",
      r.pending && r.pending.length ? ` · ${r.pending.length} in GLACIER objects (restore will be requested)` : ""),
    h("div", { class: "row", style: "margin-bottom:12px" }, go),
    h("div", { class: "card table-wrap" }, table(jobColumns().slice(0, 7), (r.jobs || []).map((j) => ({ ...j })), "Nothing matches.")));
});

// ------------------------------------------------------------------ purge

loaders.purge = async () => {};
$("#purge-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = formData(ev.target);
  const params = { older_than: f.older_than || "365", queue: f.queue, status: f.status };
  const out = $("#purge-preview");
  const res = await guarded(() => api("DELETE", "/api/archive/purge", { params: { ...params, dry_run: "true" } }), "preview");
  if (!res) return;
  const p = res.data;
  const confirmBox = h("input", { placeholder: "type purge", size: 12, "aria-label": "confirmation" });
  const go = h("button", { class: "danger solid", disabled: true }, `Purge ${fmtInt(p.jobs_to_purge)} jobs`);
  confirmBox.addEventListener("input", () => { go.disabled = confirmBox.value.trim() !== "purge" || !p.jobs_to_purge; });
  go.addEventListener("click", async () => {
    go.disabled = true;
    const done = await guarded(() => api("DELETE", "/api/archive/purge", { params }), "purge");
    if (!done) return;
    const d = done.data;
    out.replaceChildren(h("div", { class: d.errors && d.errors.length ? "notice err" : "notice good" },
      `Purged ${fmtInt(d.jobs_purged)} jobs; ${fmtInt(d.objects_deleted)} objects deleted, ${fmtInt(d.objects_rewritten)} rewritten, ${fmtBytes(d.storage_freed)} freed.`));
  });
  const kv = h("dl", { class: "kv" });
  for (const [k, v] of [["cutoff", fmtDate(p.cutoff)], ["jobs to purge", fmtInt(p.jobs_to_purge)],
    ["staged / cold", `${fmtInt(p.staging_jobs)} / ${fmtInt(p.cold_jobs)}`],
    ["objects to delete", fmtInt(p.objects_to_delete)], ["objects to rewrite", fmtInt(p.objects_to_rewrite)],
    ["storage to free", fmtBytes(p.storage_to_free) + (p.storage_to_free_is_estimate ? " (estimate)" : "")],
    ["queues", (p.affected_queues || []).join(", ") || "–"],
    ["oldest / newest", `${fmtDate(p.oldest_affected)} / ${fmtDate(p.newest_affected)}`],
    ["locked objects", fmtInt((p.locked_objects || []).length)]]) kv.append(h("dt", {}, k), h("dd", {}, v));
  out.replaceChildren(h("div", { class: "card" }, h("h3", {}, "Preview (nothing deleted yet)"), kv,
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
  if (!confirm("Remove the stored policy? Runs fall back to the defaults.")) return;
  const res = await guarded(() => api("DELETE", "/api/archive/policy"), "policy");
  if (res) { toast(res.data.removed ? "Stored policy removed" : "No stored policy"); loaders.policy(); }
});

// ------------------------------------------------------------------ lifecycle

function renderPlan(p) {
  const lines = (p.diff_text || "").split("\n").map((l) => h("span", {
    class: l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : l.startsWith("~") ? "chg" : "" }, l + "\n"));
  return [
    h("div", { class: p.supported ? "notice" : "notice err" },
      p.supported ? (p.applied ? "Applied. " : "") + (p.has_changes ? "The bucket's rules differ from the policy." : "The bucket's rules are up to date.")
        : "This store has no lifecycle support."),
    ...(p.warnings || []).map((w) => h("div", { class: "notice err" }, w)),
    p.diff_text ? h("div", { class: "card" }, h("h3", {}, "Diff"), h("pre", { class: "diff" }, lines)) : null,
    h("div", { class: "card" }, h("h3", {}, "Rules rendered from the policy"), h("pre", { class: "json" }, JSON.stringify(p.rules, null, 2))),
  ];
}
loaders.lifecycle = async () => {
  const res = await guarded(() => api("GET", "/api/archive/lifecycle/plan"), "lifecycle");
  if (!res) return;
  $("#lc-out").replaceChildren(...renderPlan(res.data));
  $("#lc-apply").disabled = !(res.data.supported && res.data.has_changes);
};
$("#lc-plan").addEventListener("click", () => loaders.lifecycle());
$("#lc-apply").addEventListener("click", async () => {
  if (!confirm("Write these lifecycle rules to the bucket? Rules tiering does not own are kept.")) return;
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

const auditState = { offset: 0, limit: 50, filters: {} };
function summarize(counts) {
  const keys = ["jobs_archived", "jobs_that_would_be_archived", "jobs_flushed", "restored", "jobs_purged", "jobs_erased", "objects_written", "objects_checked", "problems"];
  const parts = [];
  for (const k of keys) if (counts && counts[k] !== undefined && counts[k] !== null && typeof counts[k] !== "object") parts.push(`${k.replace(/^jobs_/, "")}: ${counts[k]}`);
  return parts.join(" · ");
}
loaders.audit = async () => {
  const f = auditState.filters;
  const res = await guarded(() => api("GET", "/api/archive/audit", { params: {
    operation: f.operation, since: f.since, limit: auditState.limit, offset: auditState.offset } }), "audit");
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
  $("#audit-range").textContent = items.length ? `${auditState.offset + 1}–${auditState.offset + items.length}` : "";
  $("#audit-prev").disabled = auditState.offset === 0;
  $("#audit-next").disabled = items.length < auditState.limit;
};
$("#audit-filter").addEventListener("submit", (ev) => { ev.preventDefault(); auditState.filters = formData(ev.target); auditState.offset = 0; loaders.audit(); });
$("#audit-prev").addEventListener("click", () => { auditState.offset = Math.max(0, auditState.offset - auditState.limit); loaders.audit(); });
$("#audit-next").addEventListener("click", () => { auditState.offset += auditState.limit; loaders.audit(); });

// ------------------------------------------------------------------ start

(async () => {
  if (credential()) {
    try { await api("GET", "/api/archive/schedule"); showApp(sessionStorage.getItem(KEY + ".label")); return; } catch (e) { /* fall through */ }
  }
  // a server without credentials (loopback only) answers without one
  try {
    const res = await fetch("/api/archive/schedule", { headers: { Accept: "application/json" } });
    if (res.ok) { showApp("open (no credential configured)"); return; }
  } catch (e) { /* offline */ }
  showLogin();
})();
