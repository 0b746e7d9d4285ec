// The job page's other views: the summary line, the node table (paged, filtered, searched), the parameters
// with their gradients as heatmaps, and the verdict with per-pair errors, anomalies, gradient health and timings.

import { TensorView } from "./tensor.js";
import { api, compact, debounce, el, fill, fmt, fmtErr, verdictPill } from "./util.js";

function nodeButton(name, go) {
  return el("button", { type: "button", class: "node-link", text: name, title: `show ${name} in the graph`, onclick: () => go(name) });
}

function verdictText(summary) {
  const c = summary.comparison;
  if (c.verdict === "single-engine") return `one engine ran (${summary.engines.join(", ")}): nothing to compare`;
  const bad = c.pairs.filter((p) => !p.ok);
  if (!bad.length) {
    const worst = Math.max(...c.pairs.map((p) => p.max_rel));
    const checked = c.pairs.reduce((a, p) => a + p.checked, 0);
    return `engines agree: ${checked} comparisons, worst rel. error ${fmtErr(worst)}`;
  }
  return bad.map((p) => `${p.engines.replace("~", " and ")} disagree on ${p.failures.length} of ${p.checked} tensors`).join(" · ");
}

/** The line under the job's title: the verdict in words, output, size, engines, time. */
export function summaryStrip(summary) {
  const c = summary.counts;
  const fact = (k, v) => el("span", { class: "fact" }, el("span", { class: "k", text: k }), el("span", { class: "v", text: v }));
  return el("div", { class: "facts" },
    el("span", { class: `fact verdict-text ${summary.comparison.verdict}`, text: verdictText(summary) }),
    fact("output", summary.output),
    fact("nodes", c.nodes.toLocaleString("en")), fact("leaves", String(c.leaves)), fact("parameters", String(c.parameters)),
    fact("edges", c.edges.toLocaleString("en")), fact("dtype", summary.dtype), fact("device", summary.device),
    fact("engines", summary.engines.join(", ")));
}

/** A warning above the tabs: the first non-finite value, or where the engines disagree. */
export function banner(summary, go) {
  const out = [];
  const a = summary.anomalies[0];
  if (a) {
    out.push(el("div", { class: "banner-row nonfinite" }, el("strong", { text: "First non-finite value: " }),
      el("span", { text: a.message }), " ", nodeButton(a.node, go),
      summary.anomalies.length > 1 ? el("span", { class: "muted", text: ` (+${summary.anomalies.length - 1} more in Verdict & health)` }) : null));
  }
  for (const p of summary.comparison.pairs) {
    if (p.ok) continue;
    const worst = p.worst ? p.worst.split(":").slice(1).join(":") : null;
    out.push(el("div", { class: "banner-row bad" }, el("strong", { text: `${p.engines.replace("~", " and ")} disagree` }),
      el("span", { text: ` on ${p.failures.length} of ${p.checked} tensors; the worst is ${p.worst || "?"} (max rel ${fmtErr(p.max_rel)}) ` }),
      worst ? nodeButton(worst, go) : null));
  }
  return out;
}

// ---- nodes --------------------------------------------------------------------------------------------------

const FILTERS = [["all", "all nodes"], ["disagree", "engines disagree"], ["nonfinite", "inf/NaN"], ["leaves", "leaves"], ["params", "parameters"]];
const PAGE = 50;

function errCell(node, field) {
  const pe = Object.values(node.error || {})[0];
  const s = pe && pe[field];
  if (!s) return el("td", { class: "num muted", text: "–" });
  return el("td", { class: `num ${s.ok ? "" : "bad"}`, title: `max abs ${s.max_abs}, max rel ${s.max_rel}`, text: fmtErr(s.max_rel) });
}

export class NodesTab {
  constructor(root, data, go) {
    this.root = root;
    this.data = data;
    this.go = go;
    this.state = { offset: 0, filter: "all", q: "" };
    const filter = el("select", { "aria-label": "filter" }, FILTERS.map(([v, t]) => el("option", { value: v, text: t })));
    filter.addEventListener("change", () => { this.state.filter = filter.value; this.state.offset = 0; this.load(); });
    const q = el("input", { type: "search", placeholder: "name contains…", "aria-label": "name contains" });
    q.addEventListener("input", debounce(() => { this.state.q = q.value.trim(); this.state.offset = 0; this.load(); }, 200));
    this.prev = el("button", { type: "button", text: "‹ prev", onclick: () => { this.state.offset = Math.max(0, this.state.offset - PAGE); this.load(); } });
    this.next = el("button", { type: "button", text: "next ›", onclick: () => { this.state.offset += PAGE; this.load(); } });
    this.info = el("span", { class: "muted" });
    this.tbody = el("tbody");
    fill(root, el("div", { class: "table-toolbar" }, filter, q, el("span", { class: "spacer" }), this.info, this.prev, this.next),
      el("div", { class: "table-wrap" }, el("table", { class: "nodes-table" },
        el("thead", {}, el("tr", {}, ["name", "op", "expression", "shape", "value", "grad", "grad_fn", "value err", "grad err"]
          .map((h) => el("th", { text: h })))), this.tbody)));
    this.load();
  }

  async load() {
    const s = this.state;
    const token = (this.token = (this.token || 0) + 1);
    let page;
    try {
      page = await api(this.data.urls.nodes({ offset: s.offset, limit: PAGE, filter: s.filter, q: s.q || undefined }));
    } catch (e) {
      fill(this.tbody, el("tr", {}, el("td", { colspan: 9, class: "err-text", text: e.message })));
      return;
    }
    if (token !== this.token) return;
    fill(this.tbody, page.items.map((n) => el("tr", { class: n.nonfinite ? "nonfinite" : "" },
      el("td", {}, nodeButton(n.name, this.go)), el("td", { text: n.op }), el("td", { class: "expr-cell", title: n.expr, text: n.expr }),
      el("td", { text: n.shape.length ? n.shape.join("×") : "scalar" }),
      el("td", { class: "num", text: compact(n.value) }), el("td", { class: "num", text: n.grad ? compact(n.grad) : "None" }),
      el("td", { text: n.grad_fn || "" }), errCell(n, "value"), errCell(n, "grad"))));
    if (!page.items.length) fill(this.tbody, el("tr", {}, el("td", { colspan: 9, class: "muted", text: "no node matches" })));
    this.info.textContent = page.total ? `${s.offset + 1}–${s.offset + page.items.length} of ${page.total.toLocaleString("en")}` : "";
    this.prev.disabled = s.offset === 0;
    this.next.disabled = s.offset + PAGE >= page.total;
  }
}

// ---- parameters ---------------------------------------------------------------------------------------------

function healthLine(h) {
  if (!h) return null;
  return el("div", { class: "health-line" },
    el("span", { class: "stat" }, el("span", { class: "k", text: "‖grad‖" }), el("span", { class: "v", text: fmt(h.grad_norm, 4) })),
    el("span", { class: "stat" }, el("span", { class: "k", text: "max |grad|" }), el("span", { class: "v", text: fmt(h.max_abs, 4) })),
    el("span", { class: "stat" }, el("span", { class: "k", text: "‖grad‖/‖w‖" }), el("span", { class: "v", text: h.ratio === null ? "–" : fmt(h.ratio, 3) })),
    h.vanishing ? el("span", { class: "pill nonfinite", text: "vanishing" }) : null,
    h.exploding ? el("span", { class: "pill verdict-disagree", text: "exploding" }) : null);
}

function engineSources(item, field) {
  const out = {};
  for (const [engine, t] of Object.entries(item.engines || {})) if (t && t[field]) out[engine] = t[field];
  if (!Object.keys(out).length && item[field]) out.torch = item[field];
  return out;
}

function tensorCard(data, item, health, go) {
  const name = item.name;
  const npy = (field) => (engine) => data.stored(engine, field, name) ? data.tensorUrl(name, engine, field, "npy") : null;
  const view = (field) => new TensorView({ label: field === "value" ? "weight" : "grad", sources: engineSources(item, field),
    npy: npy(field), load: (engine) => data.loadTensor(name, engine, field) }).root;
  const shape = item.shape.length ? item.shape.join("×") : "scalar";
  return el("article", { class: "param card", dataset: { param: name } },
    el("header", {}, el("h3", {}, nodeButton(name, go)), el("span", { class: "muted", text: `${shape}${item.init ? ` · ${item.init}` : ""}` })),
    healthLine(health),
    el("div", { class: "side-by-side" }, view("value"), view("grad")));
}

export async function paramsTab(root, data, go) {
  fill(root, el("p", { class: "muted", text: "loading…" }));
  const items = await data.loadParams();
  const health = data.summary.health || {};
  if (items.length) {
    fill(root, el("p", { class: "muted", text: "Each parameter's weight beside its gradient (red above zero, blue below). Pick a slice of a conv kernel with the selectors." }),
      el("div", { class: "params" }, items.map((p) => tensorCard(data, p, health[p.name], go))));
    return;
  }
  const leaves = (await api(data.urls.nodes({ filter: "leaves", limit: 50 }))).items.filter((n) => n.requires_grad);
  fill(root, el("p", { class: "muted", text: "This spec has no model parameters. Its leaves that take a gradient:" }),
    el("div", { class: "params" }, leaves.map((p) => tensorCard(data, p, health[p.name], go))));
}

// ---- verdict and health ---------------------------------------------------------------------------------------

function table(headers, rows, cls = "small-table") {
  return el("table", { class: cls }, el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))), el("tbody", {}, rows));
}

export function verdictTab(root, summary, go) {
  const c = summary.comparison;
  const pairs = c.pairs.length
    ? table(["engines", "verdict", "tensors", "max abs", "max rel", "worst", "rtol / atol"], c.pairs.map((p) => el("tr", { class: p.ok ? "ok" : "bad" },
      el("td", { text: p.engines.replace("~", " vs ") }), el("td", {}, verdictPill(p.ok ? "agree" : "disagree")),
      el("td", { class: "num", text: String(p.checked) }), el("td", { class: "num", text: fmtErr(p.max_abs) }),
      el("td", { class: "num", text: fmtErr(p.max_rel) }),
      el("td", {}, p.worst ? nodeButton(p.worst.split(":").slice(1).join(":"), go) : "–", p.worst ? el("span", { class: "muted", text: ` (${p.worst.split(":")[0]})` }) : null),
      el("td", { class: "num", text: `${fmtErr(p.rtol)} / ${fmtErr(p.atol)}` }))))
    : el("p", { class: "muted", text: "One engine ran: nothing to compare." });
  const failures = c.pairs.filter((p) => p.failures.length).map((p) => el("div", {},
    el("h4", { text: `${p.engines.replace("~", " vs ")}: tensors that differ` }),
    el("ul", { class: "failures" }, p.failures.slice(0, 50).map((f) => el("li", { text: f })))));

  const anomalies = summary.anomalies.length
    ? el("ol", { class: "anomalies" }, summary.anomalies.map((a, i) => el("li", { class: i === 0 ? "first" : "" },
      el("span", { class: "pill nonfinite", text: a.phase }), " ", nodeButton(a.node, go), " ", el("span", { text: a.message }))))
    : el("p", { class: "muted", text: "No inf or NaN anywhere." });

  const health = Object.entries(summary.health || {});
  const healthTable = health.length
    ? table(["leaf / parameter", "‖grad‖", "max |grad|", "‖grad‖ / ‖value‖", "flags"], health.map(([name, h]) => el("tr", {},
      el("td", {}, nodeButton(name, go)), el("td", { class: "num", text: fmt(h.grad_norm, 4) }), el("td", { class: "num", text: fmt(h.max_abs, 4) }),
      el("td", { class: "num", text: h.ratio === null ? "–" : fmt(h.ratio, 4) }),
      el("td", {}, h.vanishing ? el("span", { class: "pill nonfinite", text: "vanishing" }) : null,
        h.exploding ? el("span", { class: "pill verdict-disagree", text: "exploding" }) : null,
        !h.vanishing && !h.exploding ? el("span", { class: "muted", text: "ok" }) : null))))
    : el("p", { class: "muted", text: "No leaf has a gradient." });

  const aliases = Object.entries(summary.aliases || {});
  const timings = Object.entries(summary.timings_ms || {});
  const max = Math.max(1e-9, ...timings.map(([, v]) => v));
  const timingRows = timings.map(([k, v]) => {
    const bar = el("span", { class: "tbar" });
    bar.style.width = `${Math.max(1, (v / max) * 100)}%`;
    return el("div", { class: "timing" }, el("span", { class: "k", text: k }), el("span", { class: "bar-track" }, bar), el("span", { class: "v", text: `${fmt(v, 3)} ms` }));
  });

  fill(root, el("div", { class: "verdict-grid" },
    el("section", { class: "card" }, el("h3", { text: "Engines compared" }), el("p", { class: "muted", text: "max |a−b| ≤ atol + rtol·max|b| per tensor, over every value, grad and edge gradient." }), pairs, failures),
    el("section", { class: "card" }, el("h3", { text: "Where did inf/NaN come from?" }), anomalies),
    el("section", { class: "card" }, el("h3", { text: "Gradient health" }), healthTable),
    el("section", { class: "card" }, el("h3", { text: "Timings" }), el("div", { class: "timings" }, timingRows),
      summary.notes.length ? [el("h3", { text: "Notes" }), el("ul", {}, summary.notes.map((n) => el("li", { text: n })))] : null,
      aliases.length ? [el("h3", { text: "Other names" }), el("ul", { class: "aliases" }, aliases.map(([k, v]) => el("li", { text: `${k} is ${v}` })))] : null)));
}
