// The portal's one script: no framework, no build step. It only calls the gateway's public API
// (/system/functions, /metrics, /function/NAME) and shows errors as the API returns them.
"use strict";

const $ = (sel) => document.querySelector(sel);
const MODES = { "image-classify": "image", "object-classify": "raw" }; // text-* default to "text"
const history = {}; // function -> [{sum, count}] of gateway_functions_seconds, one per poll
const POINTS = 30;
let selected = null;

// -- the API, with basic auth when the gateway asks for it -------------------------------------
function authHeader() {
  const cred = sessionStorage.getItem("sai-basic-auth");
  return cred ? { Authorization: "Basic " + cred } : {};
}

// credentials "omit": the page sends its own Authorization header, and a 401 then never opens the
// browser's own password dialog (Fetch standard: it prompts only when credentials are included),
// which would hold the request until answered.
async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), ...authHeader() };
  const resp = await fetch(path, { ...options, headers, credentials: "omit" });
  if (resp.status === 401) showLogin();
  return resp;
}

function showLogin() {
  if (!$("#login").hidden) return;
  $("#login").hidden = false;
  $("#login-password").focus();
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const cred = btoa($("#login-user").value + ":" + $("#login-password").value);
  const check = await fetch("/system/functions", { headers: { Authorization: "Basic " + cred }, credentials: "omit" });
  if (check.status === 401) {
    $("#login-error").textContent = "wrong user or password";
    return;
  }
  sessionStorage.setItem("sai-basic-auth", cred);
  $("#login").hidden = true;
  $("#login-error").textContent = "";
  await refresh();
});

// -- the function list: /system/functions, latency from /metrics ------------------------------
function parseMetrics(text) {
  // {function: {sum, count}} of gateway_functions_seconds over every status code, and
  // {function: {wakes, seconds}} of its cold starts (sai_cold_start_seconds, phase "total")
  const latency = {}, cold = {};
  const re = /^(gateway_functions_seconds|sai_cold_start_seconds)_(sum|count)\{([^}]*)\}\s+(\S+)/;
  for (const line of text.split("\n")) {
    const m = re.exec(line);
    if (!m) continue;
    const fn = (/function_name="([^"]*)"/.exec(m[3]) || [])[1];
    if (!fn) continue;
    const name = fn.replace(/\.openfaas-fn$/, "");
    if (m[1] === "gateway_functions_seconds") {
      latency[name] = latency[name] || { sum: 0, count: 0 };
      latency[name][m[2]] += parseFloat(m[4]);
    } else if (/phase="total"/.test(m[3])) {
      cold[name] = cold[name] || { wakes: 0, seconds: 0 };
      cold[name][m[2] === "count" ? "wakes" : "seconds"] = parseFloat(m[4]);
    }
  }
  return { latency, cold };
}

function replicasCell(fn, cold) {
  // ready/wanted; at zero, how it wakes; and how often it has, and how long that took on average
  const wakes = cold && cold.wakes ? cold.wakes : 0;
  const mark = wakes
    ? ` <span class="cold" title="mean wake: ${(cold.seconds / wakes).toFixed(2)} s">${wakes} cold start${wakes > 1 ? "s" : ""}</span>`
    : "";
  const zero = fn.replicas === 0 ? ' <span class="muted">scaled to zero: a call wakes it</span>' : "";
  return `${fn.availableReplicas}/${fn.replicas}${zero}${mark}`;
}

function sparkline(points) {
  // mean latency of the calls between two polls; a gap where there were none
  const values = [];
  for (let i = 1; i < points.length; i++) {
    const calls = points[i].count - points[i - 1].count;
    values.push(calls > 0 ? (points[i].sum - points[i - 1].sum) / calls : null);
  }
  const seen = values.filter((v) => v !== null);
  const max = Math.max(...seen, 1e-6);
  const xy = values.map((v, i) => (v === null ? null : `${(i / Math.max(values.length - 1, 1)) * 108 + 1},${23 - (v / max) * 21}`));
  const drawn = xy.filter(Boolean);
  if (drawn.length === 1) drawn.push(drawn[0].replace(/^[^,]*/, "109")); // one value: a flat line
  const line = drawn.join(" ");
  const last = seen.length ? seen[seen.length - 1] : null;
  const title = last === null ? "no calls yet" : `last: ${last.toFixed(3)} s, max: ${max.toFixed(3)} s`;
  return `<svg class="spark" viewBox="0 0 110 24"><title>${title}</title><polyline points="${line}"/></svg>` +
    `<span class="muted">${last === null ? "" : last.toFixed(3)}</span>`;
}

async function refresh() {
  const resp = await api("/system/functions");
  if (!resp.ok) {
    $("#gateway-status").textContent = resp.status === 401 ? "sign in to see the functions" : `gateway answered ${resp.status}`;
    return;
  }
  const functions = await resp.json();
  let latency = {}, cold = {};
  try {
    const m = await api("/metrics");
    if (m.ok) ({ latency, cold } = parseMetrics(await m.text()));
  } catch (e) { /* metrics are optional */ }
  $("#gateway-status").textContent = `${functions.length} functions · ${new Date().toLocaleTimeString()}`;
  const body = $("#functions tbody");
  body.innerHTML = "";
  for (const fn of functions) {
    const points = (history[fn.name] = history[fn.name] || []);
    points.push(latency[fn.name] || { sum: 0, count: 0 });
    if (points.length > POINTS + 1) points.shift();
    const row = document.createElement("tr");
    row.dataset.function = fn.name;
    row.className = fn.availableReplicas ? "" : fn.replicas ? "down" : "zero";
    row.innerHTML = `<td>${fn.name}</td><td class="replicas">${replicasCell(fn, cold[fn.name])}</td>` +
      `<td class="invocations">${fn.invocationCount}</td><td>${sparkline(points)}</td>` +
      `<td><button type="button">try</button></td>`;
    row.querySelector("button").addEventListener("click", () => select(fn.name));
    body.appendChild(row);
  }
  const chooser = $("#fn-select");
  if (chooser.options.length !== functions.length) {
    chooser.innerHTML = functions.map((f) => `<option>${f.name}</option>`).join("");
    select(selected || (functions.find((f) => f.name === "image-classify") || functions[0] || {}).name);
  }
}

// -- the try-it panel ---------------------------------------------------------------------------
function select(name) {
  if (!name) return;
  selected = name;
  $("#fn-select").value = name;
  setMode(MODES[name] || (name.startsWith("text-") ? "text" : "raw"));
}

function setMode(mode) {
  document.querySelectorAll(".mode").forEach((el) => (el.hidden = el.dataset.mode !== mode));
  document.querySelectorAll(".tabs button").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.mode === mode)));
}

$("#fn-select").addEventListener("change", (ev) => select(ev.target.value));
document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));

async function invoke(body, contentType) {
  $("#error").hidden = true;
  $("#result").innerHTML = "<span class='muted'>running…</span>";
  $("#raw-output").textContent = "";
  let resp;
  try {
    resp = await api(`/function/${encodeURIComponent(selected)}`, { method: "POST", body, headers: { "Content-Type": contentType } });
  } catch (e) {
    return showError(`the gateway did not answer: ${e}`);
  }
  const text = await resp.text();
  $("#call-info").textContent = `HTTP ${resp.status} · X-Call-Id ${resp.headers.get("X-Call-Id") || "-"} · ` +
    `${(parseFloat(resp.headers.get("X-Duration-Seconds")) * 1000 || 0).toFixed(1)} ms`;
  let doc = null;
  try { doc = JSON.parse(text); } catch (e) { /* not JSON: shown raw */ }
  $("#raw-output").textContent = doc ? JSON.stringify(doc, null, 2) : text;
  $("#result").innerHTML = "";
  if (!resp.ok) {
    const err = doc && doc.error;
    return showError(err ? `${resp.status} ${err.code}: ${err.message}` : `${resp.status}: ${text.slice(0, 300)}`);
  }
  render(doc);
  refresh();
}

function showError(message) {
  $("#result").innerHTML = "";
  $("#error").textContent = message;
  $("#error").hidden = false;
}

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

function bars(rows, id) {
  // rows: [{label, score, cls}]
  return `<div id="${id}">` + rows.map((r) =>
    `<div class="bar-row"><span class="label" title="${esc(r.label)}">${esc(r.label)}</span>` +
    `<div><div class="bar ${r.cls || ""}" data-score="${Math.max(0, Math.min(1, r.score))}"></div></div>` +
    `<span class="score">${r.score.toFixed(3)}</span></div>`).join("") + "</div>";
}

function render(doc) {
  // by the response's shape, not the function's name: a new function of a known kind just works
  const out = $("#result");
  if (!doc) { out.textContent = "(not JSON: see the response)"; return; }
  if (doc.results && !doc.predictions) out.innerHTML = doc.results.map((r) => `<div>${html(r)}</div>`).join("<hr>");
  else out.innerHTML = html(doc);
  // widths through the CSSOM: the page's CSP refuses inline style attributes
  for (const bar of out.querySelectorAll(".bar[data-score]")) bar.style.width = `${bar.dataset.score * 100}%`;
}

function html(doc) {
  if (Array.isArray(doc.predictions)) {
    return bars(doc.predictions.map((p) => ({ label: p.label, score: p.score })), "predictions");
  }
  if (doc.label && doc.scores) {
    return `<p class="sentiment" id="sentiment">${esc(doc.label)} <span class="muted">${doc.score.toFixed(3)}</span></p>` +
      bars(Object.entries(doc.scores).map(([label, score]) => ({ label, score, cls: label === "negative" ? "negative" : "" })), "sentiment-scores");
  }
  if (Array.isArray(doc.keywords)) {
    return `<div class="chips" id="keywords">` + doc.keywords.map((k) => `<span>${esc(k.keyword)} <b>${k.score.toFixed(2)}</b></span>`).join("") + "</div>";
  }
  if (Array.isArray(doc.entities)) {
    const text = $("#text-input").value;
    let at = 0, parts = "";
    for (const e of [...doc.entities].sort((a, b) => a.start - b.start)) {
      if (e.start < at || text.slice(e.start, e.end) !== e.text) continue; // raw mode: text differs
      parts += esc(text.slice(at, e.start)) + `<span class="entity">${esc(e.text)}<sub>${esc(e.label)}</sub></span>`;
      at = e.end;
    }
    const list = doc.entities.map((e) => `<span>${esc(e.text)} <b>${esc(e.label)}</b></span>`).join("") || "<span>no entities</span>";
    return `<p id="entities">${parts + esc(text.slice(at))}</p><div class="chips">${list}</div>`;
  }
  if (Array.isArray(doc.embeddings)) {
    return doc.embeddings.map((v, i) => {
      const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
      return `<p class="embedding">embedding ${i + 1}: dimension <b>${v.length}</b>, norm <b>${norm.toFixed(4)}</b></p>`;
    }).join("");
  }
  return `<pre>${esc(JSON.stringify(doc, null, 2))}</pre>`;
}

// image: choosing (or dropping) a file sends it at once, so a photo is two clicks away
function sendImage(file) {
  if (!file) return;
  const preview = $("#preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  invoke(file, file.type || "application/octet-stream");
}
$("#image-input").addEventListener("change", (ev) => sendImage(ev.target.files[0]));
const drop = $("#drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); sendImage(ev.dataTransfer.files[0]); });

$("#send-text").addEventListener("click", () => invoke(JSON.stringify({ text: $("#text-input").value }), "application/json"));
$("#send-raw").addEventListener("click", () => invoke($("#raw-input").value, "application/json"));

refresh();
setInterval(refresh, 3000);
