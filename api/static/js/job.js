// The job page: progress while the job is queued or running, then the traced graph, the node panel and the
// other views. Everything comes from the JSON API.

import { JobData } from "./data.js";
import { GraphCanvas, viewNote } from "./graph.js";
import { NodePanel } from "./panel.js";
import { $, ApiError, age, api, debounce, duration, el, fill, jobUrls, sleep, statusPill, verdictPill } from "./util.js";
import { NodesTab, banner, paramsTab, summaryStrip, verdictTab } from "./views.js";

const jobId = $("#job").dataset.jobId;
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
// The first view: the whole graph up to 200 nodes, else the nodes within 8 hops of the output (at most 200). Asked for together with the job itself, so a finished job shows at once.
const START = { max_nodes: 200, depth: 8 };

// ---- status -------------------------------------------------------------------------------------------------

function renderStatus(job) {
  fill($("#status"), statusPill(job.status));
  fill($("#verdict"), job.summary ? verdictPill(job.summary.comparison.verdict) : null);
  const meta = [`submitted ${age(job.created_at)}`];
  if (job.finished_at && job.started_at) meta.push(`ran ${duration(job.started_at, job.finished_at)}`);
  if (job.attempts > 1) meta.push(`${job.attempts} tries`);
  $("#job-meta").textContent = meta.join(" · ");
  const live = job.status === "queued" || job.status === "running";
  $("#cancel").hidden = !live;
  $("#delete").hidden = live;
  $("#progress").hidden = !live;
  if (live) {
    const p = job.progress || { step: job.status === "queued" ? "queued" : "starting", fraction: 0 };
    $("#progress-step").textContent = job.status === "queued" ? "waiting for a worker" : `running: ${p.step}`;
    $("#progress-attempts").textContent = job.attempts ? `try ${job.attempts}` : "";
    $("#progress-fill").style.width = `${Math.round(p.fraction * 100)}%`;
    const steps = ["queued", "torch", "reference", "numeric", "compare", "done"];
    const at = steps.indexOf(job.status === "queued" ? "queued" : p.step);
    fill($("#progress-steps"), steps.map((st, i) => el("span", {
      class: `step-chip${i === at ? " current" : ""}${at >= 0 && i < at ? " done" : ""}`, text: st })));
    $("#progress-note").textContent = "This page follows the job: the graph appears when it is done.";
  }
  if (job.status === "failed" || job.status === "cancelled") {
    const err = job.error || { type: job.status, message: job.status === "cancelled" ? "the job was cancelled" : "" };
    fill($("#problem"), el("h2", { text: job.status === "failed" ? "The job failed" : "The job was cancelled" }),
      el("p", {}, el("code", { text: err.type }), " ", el("span", { text: err.message })),
      el("p", {}, el("a", { href: "/", class: "button", text: "Edit and trace again" })));
    $("#problem").hidden = false;
  }
}

let cancelling = false;

function gone(message) {
  if (cancelling) message = "You cancelled it: the worker stops at its next step and all its data is deleted.";
  $("#progress").hidden = true;
  $("#cancel").hidden = true;
  $("#delete").hidden = true;
  fill($("#status"), statusPill("gone"));
  fill($("#problem"), el("h2", { text: cancelling ? "The job was cancelled" : "This job is gone" }), el("p", { text: message }),
    el("p", {}, el("a", { href: "/", class: "button primary", text: "Trace something new" })));
  $("#problem").hidden = false;
}

async function follow() {
  let first = true;
  const early = api(jobUrls(jobId).graph(START)).catch(() => null);  // 409 while the job is not done
  for (;;) {
    let job;
    try {
      // the manifest (a line per stored tensor: megabytes for big graphs) is not needed here
      job = await api(`/v1/jobs/${encodeURIComponent(jobId)}?manifest=false${first ? "" : "&wait=1"}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        gone(e.message);
        return;
      }
      $("#progress-note").textContent = `the API did not answer (${e.message}); trying again…`;
      await sleep(1000);
      continue;
    }
    renderStatus(job);
    if (TERMINAL.has(job.status)) {
      if (job.status === "succeeded") {
        try {
          await showResult(job, first ? await early : null);
        } catch (e) {
          fill($("#problem"), el("h2", { text: "The result could not be shown" }), el("p", { text: e.message }));
          $("#problem").hidden = false;
          throw e;
        }
      }
      return;
    }
    first = false;
    await sleep(250);
  }
}

$("#cancel").addEventListener("click", async () => {
  $("#cancel").disabled = true;
  cancelling = true;
  try {
    await api(`/v1/jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" });
  } catch {
    /* finished or gone meanwhile */
  }
});

$("#delete").addEventListener("click", async () => {
  if (!window.confirm("Delete this job and all its results?")) return;
  try {
    await api(`/v1/jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" });
  } catch {
    /* gone already */
  }
  window.location.assign("/");
});

// ---- result -------------------------------------------------------------------------------------------------

let data;
let canvas;
let panel;

function note(view, around) {
  $("#graph-note").textContent = viewNote(canvas.nodes.size, view.total, around);
}

async function startView(view = null) {
  view = view || (await data.graph(START));
  canvas.setView(view);
  note(view, data.output);
  canvas.overview(data.output);
}

function select(name) {
  canvas.highlight(name);
  panel.show(name);
  history.replaceState(null, "", `#node=${encodeURIComponent(name)}`);
}

/** Show a node: on screen already, or the part of the graph around it. */
async function focus(name) {
  showTab("graph");
  if (!canvas.has(name)) {
    let view;
    try {
      view = await data.graph({ around: name, depth: 3, max_nodes: 80 });
    } catch (e) {
      $("#graph-note").textContent = `could not show ${name}: ${e.message}`;
      return;
    }
    canvas.setView(view);
    note(view, name);
  }
  canvas.reveal(name);
  select(name);
}

async function expand(name) {
  const at = canvas.screenOf(name);
  const view = await data.graph({ around: name, depth: 1, max_nodes: 1000 });
  canvas.setView(view, true);
  canvas.keepAt(name, at);
  note(view, name);
}

// ---- search -------------------------------------------------------------------------------------------------

let results = [];

async function search(q) {
  const list = $("#search-results");
  if (!q) {
    list.hidden = true;
    return;
  }
  const token = (search.token = (search.token || 0) + 1);
  let page;
  try {
    page = await api(data.urls.nodes({ q, limit: 12 }));
  } catch (e) {
    fill(list, el("li", { class: "err-text", text: e.message }));
    list.hidden = false;
    return;
  }
  if (token !== search.token) return;
  results = page.items;
  const exact = results.findIndex((n) => n.name === q);
  if (exact > 0) results.unshift(...results.splice(exact, 1));
  fill(list, results.length ? results.map((n, i) => el("li", {
    role: "option", class: i === 0 ? "active" : "", dataset: { node: n.name },
    onmousedown: (e) => { e.preventDefault(); pick(n.name); },
  }, el("span", { class: "r-name", text: n.name }), el("span", { class: "r-op muted", text: `${n.op} · ${n.shape.length ? n.shape.join("×") : "scalar"}` })))
    : el("li", { class: "muted", text: "no node matches" }),
  page.total > results.length ? el("li", { class: "muted more", text: `${page.total.toLocaleString("en")} match: type more` }) : null);
  list.hidden = false;
}

function pick(name) {
  $("#search-results").hidden = true;
  $("#search").blur();
  focus(name);
}

function wireSearch() {
  const input = $("#search");
  const run = debounce(() => search(input.value.trim()), 120);
  input.addEventListener("input", run);
  input.addEventListener("keydown", (e) => {
    const items = [...document.querySelectorAll("#search-results li[data-node]")];
    const active = items.findIndex((li) => li.classList.contains("active"));
    if (e.key === "Enter") {
      e.preventDefault();
      const q = input.value.trim();
      if (items.length && $("#search-results").hidden === false) pick(items[Math.max(0, active)].dataset.node);
      else if (q) search(q).then(() => results.length && pick(results[0].name));
    } else if ((e.key === "ArrowDown" || e.key === "ArrowUp") && items.length) {
      e.preventDefault();
      const next = (active + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
      items.forEach((li, i) => li.classList.toggle("active", i === next));
      items[next].scrollIntoView({ block: "nearest" });
    } else if (e.key === "Escape") {
      $("#search-results").hidden = true;
    }
  });
  input.addEventListener("blur", () => setTimeout(() => { $("#search-results").hidden = true; }, 150));
}

// ---- tabs ---------------------------------------------------------------------------------------------------

const rendered = new Set(["graph"]);

function showTab(tab) {
  for (const b of document.querySelectorAll(".tabs [data-tab]")) {
    b.classList.toggle("active", b.dataset.tab === tab);
    b.setAttribute("aria-selected", String(b.dataset.tab === tab));
  }
  for (const p of document.querySelectorAll(".tab-panel")) p.hidden = p.id !== `tab-${tab}`;
  if (rendered.has(tab)) return;
  rendered.add(tab);
  if (tab === "nodes") new NodesTab($("#tab-nodes"), data, focus);
  if (tab === "params") paramsTab($("#tab-params"), data, focus).catch((e) => fill($("#tab-params"), el("p", { class: "err-text", text: e.message })));
  if (tab === "verdict") verdictTab($("#tab-verdict"), data.summary, focus);
}

async function showResult(job, firstView) {
  data = new JobData(job);
  $("#result").hidden = false;
  fill($("#summary"), summaryStrip(job.summary));
  const warn = banner(job.summary, focus);
  $("#banner").hidden = !warn.length;
  fill($("#banner"), warn);
  for (const b of document.querySelectorAll(".tabs [data-tab]")) b.addEventListener("click", () => showTab(b.dataset.tab));
  const anomalies = new Map(job.summary.anomalies.map((a, i) => [a.node, { first: i === 0 }]).reverse());
  canvas = new GraphCanvas($("#graph"), { select, expand: (n) => expand(n).catch((e) => { $("#graph-note").textContent = e.message; }) },
    { output: data.output, anomalies, params: data.params });
  panel = new NodePanel($("#panel"), data, focus);
  $("#zoom-in").addEventListener("click", () => canvas.zoomBy(1.25));
  $("#zoom-out").addEventListener("click", () => canvas.zoomBy(0.8));
  $("#fit").addEventListener("click", () => canvas.fit());
  $("#to-output").addEventListener("click", async () => {
    if (!canvas.has(data.output)) await startView();
    focus(data.output);
  });
  wireSearch();
  await startView(firstView);
  if (job.summary.counts.parameters && !job.result) data.loadParams().then(() => canvas.render()).catch(() => {});
  const fromHash = () => {
    const m = /^#node=(.+)$/.exec(window.location.hash);
    if (m && decodeURIComponent(m[1]) !== canvas.selected) focus(decodeURIComponent(m[1]));
  };
  window.addEventListener("hashchange", fromHash);
  fromHash();
  document.body.dataset.ready = "1";
}

follow();
