// The home page: the spec editor with the examples, submission, and the list of recent jobs (polled).

import { Editor } from "./editor.js";
import { locate } from "./jsonloc.js";
import { $, ApiError, age, api, el, enc, fill, statusPill, verdictPill } from "./util.js";

const DRAFT_KEY = "gradtrace.draft";
const POLL_MS = 1500;

const examples = JSON.parse($("#examples-data").textContent);
const editor = new Editor($("#editor"));
let mode = "program";

function setMode(m) {
  mode = m;
  for (const b of document.querySelectorAll(".mode .seg")) {
    const on = b.dataset.mode === m;
    b.classList.toggle("active", on);
    b.setAttribute("aria-checked", String(on));
  }
}

function loadExample(key) {
  const ex = examples.find((e) => e.key === key);
  if (!ex) return;
  editor.value = ex.text;
  setMode(ex.kind);
  showErrors([]);
  for (const b of document.querySelectorAll(".example")) b.classList.toggle("active", b.dataset.example === key);
  saveDraft();
}

function saveDraft() {
  try {
    localStorage.setItem(DRAFT_KEY, JSON.stringify({ text: editor.value, mode }));
  } catch {
    /* storage may be disabled */
  }
}

function restoreDraft() {
  try {
    const d = JSON.parse(localStorage.getItem(DRAFT_KEY) || "null");
    if (d && typeof d.text === "string" && d.text.trim()) {
      editor.value = d.text;
      setMode(d.mode === "json" ? "json" : "program");
      return;
    }
  } catch {
    /* ignore a bad draft */
  }
  loadExample("chain_rule");
}

// ---- errors -------------------------------------------------------------------------------------------------

/** Where a JSON.parse error is: V8 names "line L column C" or "position P". */
function jsonErrorAt(text, message) {
  let m = /line (\d+) column (\d+)/.exec(message);
  if (m) return { line: Number(m[1]), col: Number(m[2]) };
  m = /position (\d+)/.exec(message);
  if (m) {
    const before = text.slice(0, Number(m[1])).split("\n");
    return { line: before.length, col: before[before.length - 1].length + 1 };
  }
  return { line: null, col: null };
}

/** The line of a JSON spec where a node's name is written, to mark errors that name a node. */
function lineOfNode(text, node) {
  const needle = JSON.stringify(node);
  const lines = text.split("\n");
  const i = lines.findIndex((l) => /"name"\s*:/.test(l) && l.includes(needle));
  const j = i >= 0 ? i : lines.findIndex((l) => l.includes(needle));
  return j >= 0 ? j + 1 : null;
}

function describeLoc(d) {
  const parts = [];
  if (d.loc && d.loc.length) parts.push(d.loc.join("."));
  if (d.node) parts.push(`node ${d.node}`);
  return parts.join(", ");
}

/** Show API or parse errors: a list under the editor and marks at their lines (program mode: the API's line). */
function showErrors(items) {
  const box = $("#errors");
  if (!items.length) {
    box.hidden = true;
    fill(box);
    editor.clearErrors();
    return;
  }
  const marks = [];
  const rows = items.map((d) => {
    let line = null;
    let col = null;
    if (d.editorLine) {
      line = d.editorLine;
      col = d.editorCol;
    } else if (mode === "program" && d.line) {
      line = d.line;
      col = d.col;
    } else if (mode === "json") {
      const at = d.loc && d.loc.length ? locate(editor.value, d.loc) : null;
      if (at && (at.line > 1 || !d.node)) ({ line, col } = at);
      else if (d.node) line = lineOfNode(editor.value, d.node);
    }
    if (line) marks.push({ line, col, msg: d.msg });
    const where = line ? `Line ${line}${col ? `, column ${col}` : ""}` : describeLoc(d) || "spec";
    const extra = !line && d.line ? ` (program line ${d.line}${d.col ? `, column ${d.col}` : ""})` : "";
    const item = el("li", { class: "error-item" },
      el("span", { class: "where", text: where + extra }), el("span", { class: "msg", text: d.msg }));
    if (line) {
      item.classList.add("jump");
      item.tabIndex = 0;
      item.addEventListener("click", () => editor.goTo(line, col));
    }
    return item;
  });
  fill(box, el("div", { class: "errors-title", text: items.length === 1 ? "The spec was not accepted:" : `The spec was not accepted (${items.length} problems):` }),
    el("ul", {}, rows));
  box.hidden = false;
  editor.setErrors(marks);
}

// ---- submit -------------------------------------------------------------------------------------------------

/** The request body for the editor's text: the program as a string, or the JSON spec as data. */
function buildSpec() {
  const text = editor.value;
  let spec;
  if (mode === "json") {
    try {
      spec = JSON.parse(text);
    } catch (e) {
      const at = jsonErrorAt(text, e.message);
      const msg = e.message.replace(/ in JSON at position \d+.*$/, "");
      throw Object.assign(new Error(e.message), { items: [{ msg: `not valid JSON: ${msg}`, editorLine: at.line, editorCol: at.col }] });
    }
    if (!spec || typeof spec !== "object" || Array.isArray(spec)) {
      throw Object.assign(new Error("not an object"), { items: [{ msg: "a JSON spec is an object: {\"program\": ...} or {\"nodes\": [...]} or {\"model\": {...}}", editorLine: 1, editorCol: 1 }] });
    }
  } else {
    spec = { program: text };
  }
  if ($("#numeric").checked && !spec.engines) spec.engines = ["torch", "reference", "numeric"];
  return spec;
}

async function submit() {
  const button = $("#submit");
  const status = $("#submit-status");
  let spec;
  try {
    spec = buildSpec();
  } catch (e) {
    showErrors(e.items);
    return;
  }
  button.disabled = true;
  status.textContent = "checking…";
  try {
    const created = await api("/v1/jobs", { method: "POST", body: spec });
    showErrors([]);
    status.textContent = "queued";
    window.location.assign(`/jobs/${enc(created.id)}`);
  } catch (e) {
    status.textContent = "";
    if (e instanceof ApiError && Array.isArray(e.detail)) showErrors(e.detail);
    else showErrors([{ msg: e instanceof ApiError ? `${e.status}: ${e.message}` : `the API did not answer (${e.message})` }]);
  } finally {
    button.disabled = false;
  }
}

// ---- recent jobs --------------------------------------------------------------------------------------------

function progressCell(job) {
  const p = job.progress;
  if (job.status === "failed") return el("span", { class: "err-text", text: job.error ? job.error.type : "failed" });
  if (!p) return el("span", { class: "muted", text: job.status === "queued" ? "waiting" : "–" });
  const bar = el("div", { class: "mini-bar", title: `${p.step} ${Math.round(p.fraction * 100)}%` }, el("div", { class: "fill" }));
  bar.firstChild.style.width = `${Math.round(p.fraction * 100)}%`;
  const live = job.status === "running" || job.status === "queued";
  return el("div", { class: "progress-cell" }, bar, live ? el("span", { class: "step", text: p.step }) : null);
}

async function cancelJob(id, button) {
  button.disabled = true;
  try {
    await api(`/v1/jobs/${enc(id)}`, { method: "DELETE" });
  } catch {
    /* gone already */
  }
  refreshJobs();
}

function jobRow(job, now) {
  const link = el("a", { href: `/jobs/${enc(job.id)}`, class: "job-link", title: job.id }, el("code", { text: job.id.slice(0, 8) }));
  const actions = [];
  if (job.status === "queued" || job.status === "running") {
    actions.push(el("button", { type: "button", class: "ghost small", text: "cancel", onclick: (e) => cancelJob(job.id, e.currentTarget) }));
  }
  const row = el("tr", { dataset: { id: job.id, status: job.status } },
    el("td", {}, statusPill(job.status)),
    el("td", {}, link),
    el("td", { class: "muted", title: job.created_at, text: age(job.created_at, now) }),
    el("td", {}, progressCell(job)),
    el("td", { class: "num", text: String(job.attempts) }),
    el("td", {}, verdictPill(job.verdict)),
    el("td", { class: "num", text: job.nodes ? job.nodes.toLocaleString("en") : "–" }),
    el("td", {}, actions));
  row.addEventListener("click", (e) => {
    if (!e.target.closest("a, button")) window.location.assign(`/jobs/${enc(job.id)}`);
  });
  return row;
}

let jobsTimer = null;

async function refreshJobs() {
  clearTimeout(jobsTimer);
  try {
    const list = await api("/v1/jobs?limit=25");
    const now = Date.now();
    fill($("#jobs tbody"), list.items.map((j) => jobRow(j, now)));
    $("#jobs-empty").hidden = list.items.length > 0;
    $("#jobs-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    $("#jobs-updated").textContent = `could not reach the API (${e.message})`;
  }
  jobsTimer = setTimeout(refreshJobs, document.hidden ? POLL_MS * 4 : POLL_MS);
}

// ---- wiring -------------------------------------------------------------------------------------------------

for (const b of document.querySelectorAll(".mode .seg")) b.addEventListener("click", () => { setMode(b.dataset.mode); saveDraft(); });
for (const b of document.querySelectorAll(".example")) b.addEventListener("click", () => loadExample(b.dataset.example));
$("#more-examples").addEventListener("change", (e) => {
  if (e.target.value) loadExample(e.target.value);
  e.target.value = "";
});
$("#submit").addEventListener("click", submit);
editor.textarea.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    submit();
  }
});
editor.textarea.addEventListener("input", () => {
  for (const b of document.querySelectorAll(".example.active")) b.classList.remove("active");
  const head = editor.value.trimStart();
  if (head.startsWith("{") && mode !== "json") setMode("json");
  else if (head && !head.startsWith("{") && mode === "json" && !head.startsWith("[")) setMode("program");
  if (!$("#errors").hidden) showErrors([]);
  saveDraft();
});
document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshJobs(); });

restoreDraft();
refreshJobs();
