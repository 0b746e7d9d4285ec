// One tensor on screen: its numbers (up to a few hundred elements), else a heatmap of a 2-D slice and a
// histogram; a slice selector for 3-D and 4-D tensors; a tab per engine; a .npy download link.

import { el, fill, fmt, num, prod, shapeText } from "./util.js";

export const NUMBERS_MAX = 300;   // up to this many elements: every number
const FETCH_MAX = 200_000;        // summarised tensors up to this many elements are fetched in full to draw them
const CANVAS_PX = 360;

/** Flat values and a mask of elements not computed (null in the JSON: a finite-difference element not sampled). */
export function flat(data) {
  const values = [];
  const missing = [];
  let anyMissing = false;
  const walk = (x) => {
    if (Array.isArray(x)) {
      for (const y of x) walk(y);
    } else {
      const m = x === null || x === undefined;
      anyMissing ||= m;
      missing.push(m ? 1 : 0);
      values.push(m ? NaN : typeof x === "boolean" ? Number(x) : num(x));
    }
  };
  walk(data);
  return { values: Float64Array.from(values), missing: anyMissing ? Uint8Array.from(missing) : null };
}

function describe(values, missing) {
  let min = Infinity, max = -Infinity, sum = 0, sq = 0, n = 0, nan = 0, inf = 0, absmax = 0, skipped = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (missing && missing[i]) { skipped++; continue; }
    if (Number.isNaN(v)) { nan++; continue; }
    if (!Number.isFinite(v)) { inf++; continue; }
    if (v < min) min = v;
    if (v > max) max = v;
    const a = Math.abs(v);
    if (a > absmax) absmax = a;
    sum += v; sq += v * v; n++;
  }
  return { min: n ? min : null, max: n ? max : null, mean: n ? sum / n : null, norm: Math.sqrt(sq), n, nan, inf, absmax, skipped };
}

/** A diverging colour for v scaled by m: blue below zero, red above, white at zero. */
export function heatColor(v, m) {
  if (Number.isNaN(v)) return [142, 68, 173];
  if (!Number.isFinite(v)) return [214, 51, 132];
  const t = m > 0 ? Math.min(1, Math.abs(v) / m) : 0;
  const to = v < 0 ? [46, 111, 189] : [192, 57, 43];
  return [0, 1, 2].map((i) => Math.round(255 + (to[i] - 255) * t));
}

function rgb(c) {
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

/** The 2-D view of a tensor: rows x cols of its last two dims of size over 1 (a vector wraps into rows; dims of
size 1 are dropped: a [4, 8, 1, 1] conv output shows as 4x8). `axes` maps the view's dims to the tensor's. */
function grid(shape, wrap) {
  const axes = shape.map((_, i) => i).filter((i) => shape[i] !== 1);
  const dims = axes.map((i) => shape[i]);
  if (dims.length <= 1) {
    const n = dims.length ? dims[0] : 1;
    const cols = Math.max(1, Math.min(n, wrap));
    return { rows: Math.ceil(n / cols), cols, lead: [], leadAxes: [], axes, vector: true };
  }
  return { rows: dims[dims.length - 2], cols: dims[dims.length - 1], lead: dims.slice(0, -2), leadAxes: axes.slice(0, -2), axes };
}

/** The full index (every dim of the tensor) of an element of the view. */
function fullIndex(shape, g, lead, i, j) {
  const idx = shape.map(() => 0);
  if (g.vector) {
    if (g.axes.length) idx[g.axes[0]] = i * g.cols + j;
  } else {
    g.leadAxes.forEach((ax, k) => { idx[ax] = lead[k] || 0; });
    idx[g.axes[g.axes.length - 2]] = i;
    idx[g.axes[g.axes.length - 1]] = j;
  }
  return idx;
}

const DIM_NAMES = { 4: ["n", "c"], 3: ["c"] };

export class TensorView {
  /**
   * sources: {engine: TensorData}; load(engine) -> Promise of the full tensor's nested data (for summarised ones);
   * npy(engine) -> a download URL or null; label: what it is ("value", "grad").
   */
  constructor({ label, sources, load, npy, compactScalar = true }) {
    this.label = label;
    this.sources = Object.fromEntries(Object.entries(sources).filter(([, td]) => td));
    this.engines = Object.keys(this.sources);
    this.engine = this.engines[0];
    this.load = load;
    this.npy = npy;
    this.compactScalar = compactScalar;
    this.lead = [];
    this.full = {};
    this.root = el("div", { class: "tensor", dataset: { label } });
    this.render();
  }

  get td() {
    return this.sources[this.engine];
  }

  render() {
    if (!this.engines.length) {
      fill(this.root, el("div", { class: "tensor-head" }, el("span", { class: "t-label", text: this.label })),
        el("p", { class: "muted", text: "none (no gradient reaches it)" }));
      return;
    }
    if (this.td.shape.length === 0 && this.compactScalar) {
      this.renderScalars();
      return;
    }
    const head = el("div", { class: "tensor-head" }, el("span", { class: "t-label", text: this.label }));
    if (this.engines.length > 1) {
      head.append(el("span", { class: "engine-tabs" }, this.engines.map((e) => el("button", {
        type: "button", class: e === this.engine ? "active" : "", text: e,
        onclick: () => { this.engine = e; this.render(); },
      }))));
    }
    head.append(el("span", { class: "t-meta", title: this.td.dtype, text: shapeText(this.td.shape) }));
    const link = this.npy && this.npy(this.engine);
    if (link) head.append(el("a", { class: "npy", href: link, download: "", text: ".npy" }));
    this.body = el("div", { class: "tensor-body" });
    fill(this.root, head, this.body);
    this.renderBody();
  }

  /** A scalar: one line per engine. */
  renderScalars() {
    const rows = this.engines.map((e) => {
      const v = this.sources[e].data;
      const link = this.npy && this.npy(e);
      return el("div", { class: "scalar-row", dataset: { engine: e } },
        el("span", { class: "engine", text: e }),
        el("span", { class: `scalar${Number.isFinite(num(v)) || v === null ? "" : " nonfinite"}`, text: fmt(v, 7) }),
        link ? el("a", { class: "npy", href: link, download: "", text: ".npy" }) : null);
    });
    fill(this.root, el("div", { class: "tensor-head" }, el("span", { class: "t-label", text: this.label }),
      el("span", { class: "t-meta", text: `scalar · ${this.td.dtype}` })), el("div", { class: "scalars" }, rows));
  }

  async renderBody() {
    const td = this.td;
    const n = prod(td.shape);
    let data = td.data;
    if ((data === null || data === undefined) && n > 0) {
      if (this.full[this.engine] === undefined && n <= FETCH_MAX && this.load) {
        fill(this.body, el("p", { class: "muted", text: `loading ${n.toLocaleString("en")} elements…` }));
        try {
          this.full[this.engine] = await this.load(this.engine);
        } catch (e) {
          this.full[this.engine] = null;
          this.loadError = e.message;
        }
      }
      data = this.full[this.engine];
    }
    if (data === null || data === undefined) {
      const s = td.summary;
      fill(this.body,
        s ? this.statsLine({ min: s.min, max: s.max, mean: s.mean, norm: s.norm, nan: 0, inf: 0, skipped: 0 }) : null,
        el("p", { class: "muted", text: n > FETCH_MAX ? `${n.toLocaleString("en")} elements: too many to draw here; download the .npy.`
          : `not available in full${this.loadError ? ` (${this.loadError})` : ""}.` }));
      return;
    }
    const { values, missing } = flat(data);
    const st = describe(values, missing);
    this.values = values;
    this.missing = missing;
    this.st = st;
    const parts = [this.statsLine(st, td.checked)];
    const g = grid(td.shape, n <= NUMBERS_MAX ? 8 : Math.ceil(Math.sqrt(n)));
    if (g.lead.length) parts.push(this.sliceSelector(g));
    this.view = el("div", { class: "tensor-view" });
    parts.push(this.view);
    if (n > NUMBERS_MAX) parts.push(histogram(values, missing, st));
    fill(this.body, parts);
    this.drawSlice(g);
  }

  statsLine(st, checked) {
    const items = [["min", st.min], ["max", st.max], ["mean", st.mean], ["‖·‖", st.norm]].map(([k, v]) =>
      el("span", { class: "stat" }, el("span", { class: "k", text: k }), el("span", { class: "v", text: fmt(v, 4) })));
    if (st.nan) items.push(el("span", { class: "stat bad", text: `${st.nan} NaN` }));
    if (st.inf) items.push(el("span", { class: "stat bad", text: `${st.inf} inf` }));
    if (checked !== null && checked !== undefined) items.push(el("span", { class: "stat", text: `${checked} checked` }));
    if (st.skipped) items.push(el("span", { class: "stat muted", text: `${st.skipped} not sampled` }));
    return el("div", { class: "stats" }, items);
  }

  /** Selectors for the leading dims (batch n, channel c of a conv tensor); dims of size 1 need none. */
  sliceSelector(g) {
    const names = DIM_NAMES[this.td.shape.length] || [];
    this.lead = g.lead.map((_, i) => Math.min(this.lead[i] || 0, g.lead[i] - 1));
    const dimName = (i) => names[g.leadAxes[i]] || `d${g.leadAxes[i]}`;
    const box = el("div", { class: "slice" }, el("span", { class: "muted", text: "slice" }));
    g.lead.forEach((size, i) => {
      const label = `${dimName(i)} =`;
      if (size === 1) {
        box.append(el("label", {}, el("span", { text: label }), el("span", { class: "fixed", text: "0" })));
        return;
      }
      const sel = el("select", { "aria-label": `index of dim ${g.leadAxes[i]}` });
      for (let k = 0; k < size; k++) sel.append(el("option", { value: k, text: String(k) }));
      sel.value = String(this.lead[i]);
      sel.addEventListener("change", () => {
        this.lead[i] = Number(sel.value);
        this.drawSlice(g);
      });
      box.append(el("label", {}, el("span", { text: label }), sel));
    });
    box.append(el("span", { class: "muted", text: `${g.rows}×${g.cols} of ${this.td.shape.join("×")}` }));
    return box;
  }

  drawSlice(g) {
    let offset = 0;
    let stride = g.rows * g.cols;
    for (let i = g.lead.length - 1; i >= 0; i--) {
      offset += (this.lead[i] || 0) * stride;
      stride *= g.lead[i];
    }
    const n = this.values.length;
    if (n <= NUMBERS_MAX) fill(this.view, this.numbers(g, offset));
    else fill(this.view, this.heatmap(g, offset));
  }

  /** Every number, coloured by its size; rows and columns indexed. */
  numbers(g, offset) {
    const m = this.st.absmax;
    const table = el("table", { class: `numbers${g.rows * g.cols <= 16 && !g.vector ? " big" : ""}` });
    const head = el("tr", {}, el("th", {}));
    for (let j = 0; j < g.cols; j++) head.append(el("th", { text: g.vector ? `+${j}` : String(j) }));
    table.append(head);
    for (let i = 0; i < g.rows; i++) {
      const tr = el("tr", {}, el("th", { text: g.vector ? String(i * g.cols) : String(i) }));
      for (let j = 0; j < g.cols; j++) {
        const k = offset + i * g.cols + j;
        if (g.vector && k >= this.values.length) {
          tr.append(el("td", { class: "pad" }));
          continue;
        }
        const v = this.values[k];
        const miss = this.missing && this.missing[k];
        const td = el("td", { text: miss ? "·" : fmt(v, 5), title: miss ? "not sampled" : String(v) });
        if (miss) td.className = "missing";
        else {
          const c = heatColor(v, m);
          td.style.background = rgb(c);
          if (!Number.isFinite(v) || (c[0] + c[1] + c[2]) / 3 < 140) td.classList.add("dark");
          if (!Number.isFinite(v)) td.classList.add("nonfinite");
        }
        tr.append(td);
      }
      table.append(tr);
    }
    return el("div", { class: "numbers-wrap" }, table);
  }

  /** A 2-D slice as a heatmap canvas, with the element under the pointer read out. */
  heatmap(g, offset) {
    const cell = Math.max(1, Math.min(24, Math.floor(CANVAS_PX / Math.max(g.cols, g.rows))));
    const canvas = el("canvas", { class: "heat", width: g.cols, height: g.rows });
    canvas.style.width = `${g.cols * cell}px`;
    canvas.style.height = `${g.rows * cell}px`;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(g.cols, g.rows);
    const m = this.st.absmax;
    for (let i = 0; i < g.rows * g.cols; i++) {
      const k = offset + i;
      const inside = k < this.values.length;
      const c = !inside ? [255, 255, 255] : this.missing && this.missing[k] ? [200, 200, 200] : heatColor(this.values[k], m);
      img.data.set([c[0], c[1], c[2], 255], i * 4);
    }
    ctx.putImageData(img, 0, 0);
    const readout = el("div", { class: "readout muted", text: "point at a cell to read it" });
    canvas.addEventListener("mousemove", (e) => {
      const r = canvas.getBoundingClientRect();
      const j = Math.floor(((e.clientX - r.left) / r.width) * g.cols);
      const i = Math.floor(((e.clientY - r.top) / r.height) * g.rows);
      const k = offset + i * g.cols + j;
      if (i < 0 || j < 0 || i >= g.rows || j >= g.cols || k >= this.values.length) return;
      const idx = `[${fullIndex(this.td.shape, g, this.lead, i, j).join(", ")}]`;
      readout.textContent = `${idx} = ${this.missing && this.missing[k] ? "not sampled" : fmt(this.values[k], 7)}`;
    });
    const scale = el("div", { class: "scale" },
      el("span", { text: fmt(-m, 3) }), el("span", { class: "ramp" }), el("span", { text: fmt(m, 3) }));
    return el("div", { class: "heat-wrap" }, canvas, scale, readout);
  }
}

/** A histogram of the finite elements (40 bins) with the range under it. */
function histogram(values, missing, st) {
  const bins = 40;
  const counts = new Array(bins).fill(0);
  const lo = st.min;
  const hi = st.max;
  if (lo === null) return el("div", { class: "muted", text: "no finite elements" });
  const w = hi > lo ? (hi - lo) / bins : 1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if ((missing && missing[i]) || !Number.isFinite(v)) continue;
    counts[Math.min(bins - 1, Math.floor((v - lo) / w))]++;
  }
  const peak = Math.max(...counts);
  const W = CANVAS_PX, H = 70;
  const canvas = el("canvas", { class: "hist", width: W, height: H });
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#5b7bb4";
  const bw = W / bins;
  counts.forEach((c, i) => {
    const h = peak ? Math.max(c ? 1 : 0, (c / peak) * (H - 2)) : 0;
    ctx.fillRect(i * bw + 0.5, H - h, bw - 1, h);
  });
  if (lo < 0 && hi > 0) {
    ctx.fillStyle = "#c0392b";
    ctx.fillRect(((0 - lo) / (hi - lo)) * W, 0, 1, H);
  }
  return el("div", { class: "hist-wrap" }, el("div", { class: "muted small", text: "histogram" }), canvas,
    el("div", { class: "hist-axis" }, el("span", { text: fmt(lo, 4) }), el("span", { text: fmt(hi, 4) })));
}
