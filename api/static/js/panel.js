// The side panel: everything about one node. Its expression, inputs, grad_fn and next_functions, value and
// grad (every engine's, and the error between them), the numeric grad, the gradient from each outgoing edge
// (and that they sum to the grad), and .npy downloads.

import { TensorView, flat } from "./tensor.js";
import { compact, el, fill, fmt, fmtErr, range } from "./util.js";

function section(title, ...body) {
  return el("section", { class: "p-section" }, el("h3", { text: title }), body);
}

function nodeLink(name, go) {
  return el("button", { type: "button", class: "node-link", title: `show ${name}`, text: name, onclick: () => go(name) });
}

/** The TensorData of a field from every engine that has it. */
function sources(node, field) {
  const out = {};
  for (const [engine, t] of Object.entries(node.engines || {})) if (t && t[field]) out[engine] = t[field];
  if (!Object.keys(out).length && node[field]) out.torch = node[field];
  return out;
}

function errorTable(node) {
  const pairs = Object.entries(node.error || {});
  if (!pairs.length) return el("p", { class: "muted", text: "one engine ran: nothing to compare" });
  const rows = [];
  for (const [pair, pe] of pairs) {
    for (const field of ["value", "grad"]) {
      const s = pe[field];
      if (!s) continue;
      rows.push(el("tr", { class: s.ok ? "ok" : "bad" },
        el("td", { text: pair.replace("~", " vs ") }), el("td", { text: field }),
        el("td", { class: "num", text: fmtErr(s.max_abs) }), el("td", { class: "num", text: fmtErr(s.max_rel) }),
        el("td", {}, el("span", { class: `pill ${s.ok ? "verdict-agree" : "verdict-disagree"}`, text: s.ok ? "ok" : "differs" }))));
    }
  }
  return el("table", { class: "small-table" },
    el("thead", {}, el("tr", {}, ["engines", "", "max abs", "max rel", ""].map((h) => el("th", { text: h })))),
    el("tbody", {}, rows));
}

/** Element-wise sum of the edge gradients, compared with the node's grad (where all are inline). */
function sumCheck(node, edges) {
  const grads = edges.map((e) => e.grad).filter(Boolean);
  if (!node.grad || !grads.length || grads.length !== edges.length) return null;
  if (node.grad.data === null || node.grad.data === undefined || grads.some((g) => g.data === null || g.data === undefined)) {
    return el("p", { class: "muted", text: "the tensors are summarised: their sum is checked by the engines, not here" });
  }
  const target = flat(node.grad.data).values;
  const total = new Float64Array(target.length);
  for (const g of grads) {
    const v = flat(g.data).values;
    if (v.length !== target.length) return null;
    for (let i = 0; i < v.length; i++) total[i] += v[i];
  }
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < total.length; i++) {
    diff = Math.max(diff, Math.abs(total[i] - target[i]));
    scale = Math.max(scale, Math.abs(target[i]));
  }
  const ok = diff <= 1e-5 + 1e-4 * scale;
  const sumText = node.grad.shape.length === 0
    ? `${grads.map((g) => fmt(g.data)).join(" + ")} = ${fmt(total[0])}`
    : `Σ of ${grads.length} gradients: max |Σ − grad| = ${fmtErr(diff)}`;
  return el("p", { class: `sum ${ok ? "ok" : "bad"}` },
    el("span", { text: sumText }), el("span", { class: "eq", text: ok ? ` ✓ equals ${node.name}.grad` : " ✗ differs from the grad" }));
}

export class NodePanel {
  /** data: the job's data access (see job.js); go(name): show another node. */
  constructor(root, data, go) {
    this.root = root;
    this.data = data;
    this.go = go;
    this.token = 0;
    this.empty();
  }

  empty() {
    fill(this.root, el("div", { class: "panel-empty" },
      el("h2", { text: "Click a node" }),
      el("p", { text: "to see its expression, inputs, grad_fn, value and gradient from each engine, and the gradient " +
        "that reached it along each edge." }),
      el("p", { class: "muted", text: "Arrows point the way the gradient flows: from a node down into its inputs. " +
        "The number on an arrow is the gradient that flowed along it." })));
  }

  async show(name) {
    const token = ++this.token;
    fill(this.root, el("p", { class: "muted", text: `loading ${name}…` }));
    let node;
    let edges;
    try {
      [node, edges] = await Promise.all([this.data.node(name), this.data.outEdges(name)]);
    } catch (e) {
      if (token === this.token) fill(this.root, el("p", { class: "err-text", text: `could not load ${name}: ${e.message}` }));
      return;
    }
    if (token !== this.token) return;
    if (!node) {
      fill(this.root, el("p", { class: "err-text", text: `no node named ${name}` }));
      return;
    }
    fill(this.root, this.render(name, node, edges));
  }

  render(name, node, edges) {
    const d = this.data;
    const ok = Object.values(node.error || {}).every((pe) => (!pe.value || pe.value.ok) && (!pe.grad || pe.grad.ok));
    const chips = [
      el("span", { class: "chip op", text: node.is_leaf ? (d.isParam(name) ? "parameter" : "leaf") : node.op }),
      node.grad_fn ? el("span", { class: "chip", text: node.grad_fn }) : null,
      el("span", { class: `pill ${ok ? "verdict-agree" : "verdict-disagree"}`, text: ok ? "engines agree" : "engines disagree" }),
      node.nonfinite ? el("span", { class: "pill nonfinite", text: "inf/NaN" }) : null,
      name === d.output ? el("span", { class: "pill output", text: "output" }) : null,
    ];
    const head = el("header", { class: "p-head" }, el("h2", { class: "node-name", text: name }), el("div", { class: "chips" }, chips),
      el("div", { class: "p-meta muted", text: `${node.shape.length ? node.shape.join("×") : "scalar"} · ${node.dtype}${node.requires_grad ? "" : " · requires_grad=False"}` }));

    const expr = section("Expression", el("pre", { class: "expr" }, el("code", { text: node.is_leaf ? `${name}  (${node.expr})` : `${name} = ${node.expr}` })));

    const inputs = node.inputs.length
      ? el("div", { class: "inputs" }, node.inputs.map((x) => typeof x === "string" ? nodeLink(x, this.go) : el("span", { class: "const", text: fmt(x) })))
      : el("p", { class: "muted", text: node.is_leaf ? "a leaf: no inputs" : "none" });

    const nf = node.next_functions || [];
    const backward = node.grad_fn || nf.length
      ? el("div", {},
        el("p", {}, el("code", { text: node.grad_fn || "None" }), el("span", { class: "muted", text: " .next_functions:" })),
        el("ul", { class: "next-fns" }, nf.length ? nf.map((f) => el("li", {},
          el("code", { text: f.grad_fn || "None" }), f.node ? el("span", { class: "muted", text: " → " }) : null,
          f.node ? nodeLink(f.node, this.go) : el("span", { class: "muted", text: " (a constant: no gradient)" })))
          : el("li", { class: "muted", text: "()" })))
      : el("p", { class: "muted", text: node.requires_grad ? "AccumulateGrad: the gradient is stored in .grad" : "no grad_fn: no gradient flows here" });

    const npy = (field) => (engine) => d.stored(engine, field, name) ? d.tensorUrl(name, engine, field, "npy") : null;
    const value = new TensorView({ label: "value", sources: sources(node, "value"), npy: npy("value"),
      load: (engine) => d.loadTensor(name, engine, "value") });
    const grad = new TensorView({ label: "grad", sources: sources(node, "grad"), npy: npy("grad"),
      load: (engine) => d.loadTensor(name, engine, "grad") });

    const flow = this.flowSection(name, node, edges);
    return [head, expr, section("Value and gradient", value.root, grad.root), flow,
      section("Inputs", inputs), section("Backward: grad_fn and next_functions", backward),
      section("Engines compared", errorTable(node))];
  }

  flowSection(name, node, edges) {
    if (name === this.data.output) {
      return section("Gradient flow", el("p", { text: "This is the output: its gradient is the seed of the backward pass " +
        "(1 for a scalar loss, or the spec's grad_output)." }));
    }
    if (!edges.length) return section("Gradient flow", el("p", { class: "muted", text: "nothing uses this node: no gradient flows into it" }));
    const rows = edges.map((e) => el("tr", {},
      el("td", {}, el("span", { class: "muted", text: "from " }), nodeLink(e.dst, this.go)),
      el("td", { class: "expr-cell", title: e.expr || "", text: e.expr || "" }),
      el("td", { class: "num grad-flow", title: e.grad ? compact(e.grad) : "", text: e.grad ? range(e.grad) : "none" }),
      el("td", { class: "num muted", text: e.error ? Object.values(e.error).map((s) => fmtErr(s.max_rel)).join(" ") : "" })));
    return section("Gradient flow into this node",
      el("p", { class: "muted", text: `${name}.grad is the sum of the gradients that flowed back from each node that uses it:` }),
      el("table", { class: "small-table flow" },
        el("thead", {}, el("tr", {}, ["", "expression", "gradient", "err"].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows)),
      sumCheck(node, edges));
  }
}

