// The backward graph as SVG: laid out by dagre top to bottom in the gradient's direction (output at the top,
// leaves at the bottom), each node with its value and grad, each edge labelled with the gradient that flowed
// along it. Pan by dragging, zoom with the wheel. Shows a part of a large graph and grows on demand (+N).

/* global dagre */
import { compact, fill, range, shapeText, svgEl } from "./util.js";

const NODE_W = 232;
const NODE_H = 82;
const MAX_LINE = 22;
const TOP = 52; // the toolbar's height over the drawing

function clip(s, n) {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** d3's curveBasis through dagre's points: a smooth path. */
function basis(points) {
  const p = points;
  if (p.length < 3) return `M${p[0].x},${p[0].y}L${p[p.length - 1].x},${p[p.length - 1].y}`;
  let d = `M${p[0].x},${p[0].y}L${(5 * p[0].x + p[1].x) / 6},${(5 * p[0].y + p[1].y) / 6}`;
  for (let i = 1; i < p.length - 1; i++) {
    const a = p[i - 1], b = p[i], c = p[i + 1];
    d += `C${(2 * a.x + b.x) / 3},${(2 * a.y + b.y) / 3} ${(a.x + 2 * b.x) / 3},${(a.y + 2 * b.y) / 3} ${(a.x + 4 * b.x + c.x) / 6},${(a.y + 4 * b.y + c.y) / 6}`;
  }
  const a = p[p.length - 2], b = p[p.length - 1];
  d += `C${(2 * a.x + b.x) / 3},${(2 * a.y + b.y) / 3} ${(a.x + 2 * b.x) / 3},${(a.y + 2 * b.y) / 3} ${b.x},${b.y}`;
  return d;
}

/** Each node's inputs and users among `nodes`: name -> Set. */
function neighbours(nodes) {
  const out = new Map(nodes.map((n) => [n.name, new Set()]));
  for (const n of nodes) {
    for (const x of n.inputs) {
      if (typeof x === "string" && out.has(x) && x !== n.name) {
        out.get(n.name).add(x);
        out.get(x).add(n.name);
      }
    }
  }
  return out;
}

/** The point halfway along a polyline. */
function midpoint(points) {
  let total = 0;
  for (let i = 1; i < points.length; i++) total += Math.hypot(points[i].x - points[i - 1].x, points[i].y - points[i - 1].y);
  let left = total / 2;
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1], b = points[i];
    const d = Math.hypot(b.x - a.x, b.y - a.y);
    if (d >= left && d > 0) return { x: a.x + ((b.x - a.x) * left) / d, y: a.y + ((b.y - a.y) * left) / d };
    left -= d;
  }
  return points[points.length - 1];
}

function edgeLabelText(e) {
  if (!e.grad) return null;
  return clip(range(e.grad), 22);
}

export class GraphCanvas {
  /** host: the element to draw in; on: {select(name), expand(name)}; marks: {output, anomalies: Map, params: Set}. */
  constructor(host, on, marks) {
    this.host = host;
    this.on = on;
    this.marks = marks;
    this.nodes = new Map();
    this.edges = new Map();
    this.degree = new Map();
    this.selected = null;
    this.t = { x: 0, y: 0, k: 1 };
    this.svg = svgEl("svg", { class: "graph-svg", role: "img", "aria-label": "backward graph" });
    const defs = svgEl("defs", {},
      svgEl("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        svgEl("path", { d: "M0,0L10,5L0,10z", class: "arrow-head" })),
      svgEl("marker", { id: "arrow-hi", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        svgEl("path", { d: "M0,0L10,5L0,10z", class: "arrow-head hi" })));
    this.viewport = svgEl("g", { class: "viewport" });
    this.edgeLayer = svgEl("g", { class: "edges" });
    this.nodeLayer = svgEl("g", { class: "nodes" });
    this.viewport.append(this.edgeLayer, this.nodeLayer);
    this.svg.append(defs, this.viewport);
    fill(host, this.svg);
    this.panZoom();
  }

  // ---- data ---------------------------------------------------------------------------------------------------

  /** Show a GraphView; merge=true adds it to what is shown (expanding), else replaces it. */
  setView(view, merge = false) {
    if (!merge) {
      this.nodes.clear();
      this.edges.clear();
    }
    // neighbours are inputs and users (as the API counts them for `hidden`), gradient or not
    const within = neighbours(view.nodes);
    for (const n of view.nodes) {
      this.nodes.set(n.name, n);
      this.degree.set(n.name, Math.max(this.degree.get(n.name) || 0, within.get(n.name).size + n.hidden));
    }
    const seen = new Map();
    for (const e of view.edges) {
      const base = `${e.src}\u0000${e.dst}`;
      const i = seen.get(base) || 0;
      seen.set(base, i + 1);
      this.edges.set(`${base}\u0000${i}`, e);
    }
    // inputs no gradient flows into (requires_grad=False) have no edge in the view: draw them dashed
    for (const n of this.nodes.values()) {
      for (const x of n.inputs) {
        if (typeof x !== "string" || !this.nodes.has(x)) continue;
        const key = `${x}\u0000${n.name}\u00000`;
        if (!this.edges.has(key)) this.edges.set(key, { src: x, dst: n.name, grad: null, synthetic: true });
      }
    }
    this.near = neighbours([...this.nodes.values()]);
    this.layout();
    this.render();
  }

  /** Neighbours of a node that are not on screen. */
  hiddenOf(name) {
    return Math.max(0, (this.degree.get(name) || 0) - (this.near.get(name) || new Set()).size);
  }

  has(name) {
    return this.nodes.has(name);
  }

  layout() {
    const g = new dagre.graphlib.Graph({ multigraph: true });
    g.setGraph({ rankdir: "TB", nodesep: 26, ranksep: 40, edgesep: 12, marginx: 24, marginy: 24 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const name of this.nodes.keys()) g.setNode(name, { width: NODE_W, height: NODE_H });
    for (const [key, e] of this.edges) {
      if (!this.nodes.has(e.src) || !this.nodes.has(e.dst)) continue;
      // the gradient flows from the consumer (dst, above) down to its input (src, below)
      g.setEdge(e.dst, e.src, {}, key);
    }
    dagre.layout(g);
    this.g = g;
    this.size = { w: g.graph().width || NODE_W, h: g.graph().height || NODE_H };
  }

  // ---- drawing ------------------------------------------------------------------------------------------------

  render() {
    const edgeEls = [];
    const labelEls = [];
    const parallel = new Map();
    for (const ge of this.g.edges()) {
      const e = this.edges.get(ge.name);
      const lay = this.g.edge(ge);
      const label = edgeLabelText(e);
      const cls = `edge${e.grad ? "" : " no-grad"}`;
      edgeEls.push(svgEl("path", { class: cls, d: basis(lay.points), "marker-end": "url(#arrow)", dataset: { src: e.src, dst: e.dst } }));
      if (label) {
        const pair = `${e.src}\u0000${e.dst}`;
        const nth = parallel.get(pair) || 0;
        parallel.set(pair, nth + 1);
        const at = midpoint(lay.points);
        const w = label.length * 6.8 + 10;
        labelEls.push(svgEl("g", { class: "edge-label", transform: `translate(${at.x},${at.y + nth * 20})`, dataset: { src: e.src, dst: e.dst } },
          svgEl("title", { text: `gradient from ${e.dst} into ${e.src}: ${compact(e.grad)}` }),
          svgEl("rect", { x: -w / 2, y: -9, width: w, height: 18, rx: 4 }),
          svgEl("text", { x: 0, y: 4, "text-anchor": "middle", text: label })));
      }
    }
    fill(this.edgeLayer, edgeEls, labelEls);
    const nodeEls = [];
    for (const name of this.g.nodes()) {
      const n = this.nodes.get(name);
      const p = this.g.node(name);
      nodeEls.push(this.nodeEl(n, p.x - NODE_W / 2, p.y - NODE_H / 2));
    }
    fill(this.nodeLayer, nodeEls);
    if (this.selected) this.highlight(this.selected);
  }

  nodeEl(n, x, y) {
    const anomaly = this.marks.anomalies.get(n.name);
    const isParam = this.marks.params.has(n.name);
    const classes = ["node", n.is_leaf ? "leaf" : "op", n.ok ? "ok" : "bad"];
    if (n.nonfinite) classes.push("nonfinite");
    if (anomaly) classes.push("anomaly");
    if (isParam) classes.push("param");
    if (n.name === this.marks.output) classes.push("output");
    const hidden = this.hiddenOf(n.name);
    const kind = clip(n.is_leaf ? (isParam ? "parameter" : "leaf") : n.op, 14);
    const nameChars = Math.floor((NODE_W - 34 - kind.length * 6.6) / 8.4);
    const grp = svgEl("g", { class: classes.join(" "), transform: `translate(${x},${y})`, tabindex: 0, role: "button",
      "aria-label": `node ${n.name}`, dataset: { node: n.name } },
      svgEl("title", { text: `${n.name} = ${n.expr}${n.grad_fn ? `\ngrad_fn: ${n.grad_fn}` : ""}` }),
      svgEl("rect", { class: "box", width: NODE_W, height: NODE_H, rx: n.is_leaf ? 14 : 6 }),
      svgEl("rect", { class: "stripe", width: 5, height: NODE_H - 12, x: 0, y: 6, rx: 2 }),
      svgEl("text", { class: "name", x: 13, y: 21, text: clip(n.name, nameChars) }),
      svgEl("text", { class: "kind", x: NODE_W - 10, y: 20, "text-anchor": "end", text: kind }),
      svgEl("text", { class: "meta", x: 13, y: 38, text: clip(`${shapeText(n.shape)}${n.grad_fn ? ` · ${n.grad_fn}` : ""}`, 32) }),
      svgEl("text", { class: "row", x: 13, y: 57 }, svgEl("tspan", { class: "k", text: "value " }),
        svgEl("tspan", { class: "v value", text: clip(range(n.value), MAX_LINE) })),
      svgEl("text", { class: "row", x: 13, y: 74 }, svgEl("tspan", { class: "k", text: "grad  " }),
        svgEl("tspan", { class: "v grad", text: n.grad ? clip(range(n.grad), MAX_LINE) : "None" })));
    const flags = [];
    if (n.name === this.marks.output) flags.push(["output", "flag-output"]);
    if (anomaly) flags.push([anomaly.first ? "first anomaly" : "anomaly", "flag-anomaly"]);
    if (n.nonfinite && !anomaly) flags.push(["inf/NaN", "flag-nonfinite"]);
    if (!n.ok) flags.push(["engines disagree", "flag-bad"]);
    let fx = 8;
    for (const [text, cls] of flags) {
      const w = text.length * 6.2 + 12;
      grp.append(svgEl("g", { class: `flag ${cls}`, transform: `translate(${fx},-11)` },
        svgEl("rect", { width: w, height: 16, rx: 8 }), svgEl("text", { x: w / 2, y: 11.5, "text-anchor": "middle", text })));
      fx += w + 4;
    }
    if (hidden > 0) {
      const more = svgEl("g", { class: "expand", transform: `translate(${NODE_W - 26},${NODE_H - 9})`, role: "button",
        "aria-label": `show ${hidden} more neighbours of ${n.name}`, dataset: { expand: n.name } },
      svgEl("title", { text: `${hidden} neighbour${hidden > 1 ? "s" : ""} not shown: click to show` }),
      svgEl("rect", { width: 40, height: 18, rx: 9 }), svgEl("text", { x: 20, y: 13, "text-anchor": "middle", text: `+${hidden}` }));
      more.addEventListener("click", (e) => {
        e.stopPropagation();
        if (!this.dragged) this.on.expand(n.name);
      });
      grp.append(more);
    }
    grp.addEventListener("click", () => {
      if (!this.dragged) this.on.select(n.name);
    });
    grp.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        this.on.select(n.name);
      }
    });
    return grp;
  }

  /** Mark a node selected and its edges highlighted. */
  highlight(name) {
    this.selected = name;
    for (const g of this.nodeLayer.children) g.classList.toggle("selected", g.dataset.node === name);
    for (const p of this.edgeLayer.querySelectorAll(".edge, .edge-label")) {
      const on = p.dataset.src === name || p.dataset.dst === name;
      p.classList.toggle("hi", on);
      if (p.tagName === "path") p.setAttribute("marker-end", on ? "url(#arrow-hi)" : "url(#arrow)");
    }
  }

  nodeElement(name) {
    for (const g of this.nodeLayer.children) if (g.dataset.node === name) return g;
    return null;
  }

  // ---- pan and zoom -------------------------------------------------------------------------------------------

  apply() {
    const { x, y, k } = this.t;
    this.viewport.setAttribute("transform", `translate(${x},${y}) scale(${k})`);
  }

  viewportSize() {
    const r = this.svg.getBoundingClientRect();
    return { w: r.width || 800, h: r.height || 600 };
  }

  /** Fit the whole drawing, at most at natural size (below the toolbar). */
  fit() {
    const { w, h } = this.viewportSize();
    const k = this.fitScale();
    this.t = { k, x: (w - this.size.w * k) / 2, y: TOP + Math.max(0, (h - TOP - this.size.h * k) / 2) };
    this.apply();
  }

  fitScale() {
    const { w, h } = this.viewportSize();
    return Math.max(0.05, Math.min(1.1, (0.96 * w) / this.size.w, (0.96 * (h - TOP)) / this.size.h));
  }

  /** The whole drawing if it is readable so, else `name` (the output) at the top at a readable size. */
  overview(name) {
    if (this.fitScale() >= 0.6 || !this.g.node(name)) {
      this.fit();
      return;
    }
    const { w } = this.viewportSize();
    const p = this.g.node(name);
    const k = 0.85;
    this.t = { k, x: w / 2 - p.x * k, y: TOP + 14 - (p.y - NODE_H / 2) * k };
    this.apply();
  }

  /** Centre a node (zooming in to a readable size if needed). */
  center(name, minK = 0.75) {
    const p = this.g.node(name);
    if (!p) return;
    const { w, h } = this.viewportSize();
    const k = Math.max(this.t.k, minK);
    this.t = { k, x: w / 2 - p.x * k, y: TOP + (h - TOP) / 2 - p.y * k };
    this.apply();
  }

  /** Bring a node into view: left where it is when it is on screen and readable, else centred. */
  reveal(name) {
    const p = this.g.node(name);
    if (!p) return;
    const { w, h } = this.viewportSize();
    const { x, y, k } = this.t;
    const left = x + (p.x - NODE_W / 2) * k;
    const top = y + (p.y - NODE_H / 2) * k;
    const inside = left >= 0 && top >= TOP && left + NODE_W * k <= w && top + NODE_H * k <= h;
    if (!inside || k < 0.5) this.center(name);
  }

  /** Screen position of a node, to keep it in place across a re-layout. */
  screenOf(name) {
    const p = this.g && this.g.node(name);
    return p ? { x: this.t.x + p.x * this.t.k, y: this.t.y + p.y * this.t.k } : null;
  }

  keepAt(name, screen) {
    const p = this.g.node(name);
    if (!p || !screen) return;
    this.t.x = screen.x - p.x * this.t.k;
    this.t.y = screen.y - p.y * this.t.k;
    this.apply();
  }

  zoomBy(f, cx, cy) {
    const { w, h } = this.viewportSize();
    cx = cx ?? w / 2;
    cy = cy ?? h / 2;
    const k = Math.max(0.05, Math.min(4, this.t.k * f));
    const r = k / this.t.k;
    this.t = { k, x: cx - (cx - this.t.x) * r, y: cy - (cy - this.t.y) * r };
    this.apply();
  }

  panZoom() {
    this.svg.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = this.svg.getBoundingClientRect();
      this.zoomBy(Math.exp(-e.deltaY * (e.deltaMode ? 0.05 : 0.0015)), e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    let start = null;
    this.svg.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      start = { x: e.clientX, y: e.clientY, tx: this.t.x, ty: this.t.y, id: e.pointerId };
      this.dragged = false;
    });
    this.svg.addEventListener("pointermove", (e) => {
      if (!start) return;
      const dx = e.clientX - start.x;
      const dy = e.clientY - start.y;
      if (!this.dragged && Math.hypot(dx, dy) < 4) return;
      if (!this.dragged) {
        this.dragged = true;
        this.svg.setPointerCapture(start.id);
        this.svg.classList.add("dragging");
      }
      this.t.x = start.tx + dx;
      this.t.y = start.ty + dy;
      this.apply();
    });
    const end = () => {
      start = null;
      this.svg.classList.remove("dragging");
      setTimeout(() => { this.dragged = false; }, 0);
    };
    this.svg.addEventListener("pointerup", end);
    this.svg.addEventListener("pointercancel", end);
  }
}

/** A line saying what part of the graph is shown. */
export function viewNote(shown, total, around) {
  if (shown >= total) return `${total.toLocaleString("en")} nodes`;
  return `${shown.toLocaleString("en")} of ${total.toLocaleString("en")} nodes, around ${around}: search a name, or click +N on a node to show its neighbours`;
}

