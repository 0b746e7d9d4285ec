// Small helpers shared by the pages: DOM building (text only, never HTML), the JSON API, number formatting.

const SVG_NS = "http://www.w3.org/2000/svg";

/** An element with attributes and children; strings become text nodes (never parsed as HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

/** An SVG element, same conventions as el(). */
export function svgEl(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.setAttribute("class", v);
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(node, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace a node's children. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export const $ = (sel, root = document) => root.querySelector(sel);

/** An error from the API: status and the `detail` of its ErrorBody. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : (detail || []).map((d) => d.msg).join("; ") || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

const TOKEN_COOKIE = "gradtrace_token";
let asking = null;

/** Ask for an API token (an API with GRADTRACE_API_TOKENS set answers 401) and keep it in a same-site cookie,
 * which every request of the page sends, .npy downloads included. Resolves once a token was entered. */
function askToken(message) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const input = el("input", { type: "password", id: "token-input", autocomplete: "off", "aria-label": "API token" });
    const form = el("form", { class: "token-form", id: "token-form" },
      el("h2", { text: "This gradtrace needs an API token" }),
      el("p", { class: "muted", text: message }),
      input, el("button", { type: "submit", class: "button primary", text: "Use token" }));
    const overlay = el("div", { class: "token-overlay", role: "dialog", "aria-modal": "true" }, form);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (!input.value.trim()) return;
      document.cookie = `${TOKEN_COOKIE}=${encodeURIComponent(input.value.trim())}; path=/; SameSite=Strict`;
      overlay.remove();
      asking = null;
      resolve();
    });
    document.body.append(overlay);
    input.focus();
  });
  return asking;
}

/** Call the JSON API; resolves to the parsed body, throws ApiError on a non-2xx answer. */
export async function api(path, options = {}) {
  const init = { method: options.method || "GET", headers: { Accept: "application/json" }, signal: options.signal };
  if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
  }
  let r = await fetch(path, init);
  for (let tries = 0; r.status === 401 && tries < 3; tries++) {
    let detail = "";
    try { detail = (await r.json()).detail; } catch { detail = ""; }
    await askToken(typeof detail === "string" ? detail : "");
    r = await fetch(path, init);
  }
  if (r.status === 204) return null;
  let body = null;
  try {
    body = await r.json();
  } catch {
    body = null;
  }
  if (!r.ok) throw new ApiError(r.status, body && body.detail !== undefined ? body.detail : `HTTP ${r.status}`);
  return body;
}

/** The query string of an object (undefined/null values left out). */
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : "";
}

export const enc = encodeURIComponent;

/** URLs of one job's API resources. */
export function jobUrls(jobId) {
  const base = `/v1/jobs/${enc(jobId)}`;
  return {
    self: base,
    graph: (params) => `${base}/graph${qs({ format: "json", ...params })}`,
    nodes: (params) => `${base}/nodes${qs(params)}`,
    tensor: (name, params) => `${base}/nodes/${enc(name)}${qs(params)}`,
  };
}

// ---- numbers ---------------------------------------------------------------------------------------------

const NONFINITE = { Infinity: Infinity, "-Infinity": -Infinity, NaN: NaN };

/** A JSON tensor element as a number (the API sends inf/NaN as strings; null = not computed). */
export function num(v) {
  if (typeof v === "string") return v in NONFINITE ? NONFINITE[v] : Number(v);
  return v;
}

/** A number as people read it: integers whole, others with 5 significant digits. */
export function fmt(v, digits = 5) {
  v = num(v);
  if (v === null || v === undefined) return "·";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "inf";
  if (v === -Infinity) return "-inf";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e9) return String(v);
  if (a >= 1e-3 && a < 1e6) return String(Number(v.toPrecision(digits)));
  return v.toExponential(Math.max(1, digits - 2)).replace("e+", "e");
}

/** An error figure: 0 or 2 significant digits in exponent form. */
export function fmtErr(v) {
  v = num(v);
  if (v === null || v === undefined) return "–";
  if (v === 0) return "0";
  return v.toExponential(1).replace("e+", "e");
}

export function prod(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

export function shapeText(shape) {
  return shape.length ? shape.join("×") : "scalar";
}

/** A TensorData's elements as a flat Float64Array (NaN where not computed), or null when summarised. */
export function flatten(td) {
  if (!td || td.data === null || td.data === undefined) return null;
  const out = [];
  const walk = (x) => {
    if (Array.isArray(x)) for (const y of x) walk(y);
    else out.push(x === null ? NaN : typeof x === "boolean" ? Number(x) : num(x));
  };
  walk(td.data);
  return Float64Array.from(out);
}

/** min, max, mean, norm and counts of a flat array (non-finite elements counted apart). */
export function stats(flat) {
  let min = Infinity, max = -Infinity, sum = 0, sq = 0, n = 0, nan = 0, inf = 0;
  for (const v of flat) {
    if (Number.isNaN(v)) { nan++; continue; }
    if (!Number.isFinite(v)) { inf++; continue; }
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v; sq += v * v; n++;
  }
  return { min: n ? min : null, max: n ? max : null, mean: n ? sum / n : null, norm: Math.sqrt(sq), n, nan, inf };
}

/** A tensor's numbers in a few characters: the number for a scalar, else [min, max] (inf and NaN included). */
export function range(td) {
  if (!td) return "–";
  if (td.shape.length === 0 || (td.data !== null && td.data !== undefined && !Array.isArray(td.data))) {
    return fmt(td.data, 5);
  }
  let s = td.summary;
  if (td.data !== null && td.data !== undefined) {
    const values = flatten(td);
    const st = stats(values);
    s = { min: st.min, max: st.max, nan: st.nan };
    if (values.includes(-Infinity)) s.min = -Infinity;
    if (values.includes(Infinity)) s.max = Infinity;
    if (s.min === null && s.max !== null) s.min = s.max;
    if (s.max === null && s.min !== null) s.max = s.min;
  }
  if (!s || s.min === null || s.min === undefined) return s && s.nan ? "NaN" : "…";
  return `[${fmt(s.min, 3)}, ${fmt(s.max, 3)}]${s.nan ? " NaN" : ""}`;
}

/** A tensor in one short line: the number for a scalar, else shape and range. */
export function compact(td) {
  if (!td) return "–";
  if (td.shape.length === 0) return range(td);
  return `${shapeText(td.shape)} ${range(td)}`;
}

export function isScalar(td) {
  return td && td.shape.length === 0;
}

/** "3 s ago", "5 min ago" for an ISO time. */
export function age(iso, now = Date.now()) {
  if (!iso) return "";
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Milliseconds between two ISO times, as "123 ms" or "4.5 s". */
export function duration(a, b) {
  if (!a || !b) return "";
  const ms = Date.parse(b) - Date.parse(a);
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** A pill showing a job status. */
export function statusPill(status) {
  return el("span", { class: `pill status-${status}`, text: status });
}

/** A pill showing a verdict. */
export function verdictPill(verdict) {
  if (!verdict) return el("span", { class: "muted", text: "–" });
  return el("span", { class: `pill verdict-${verdict}`, text: verdict });
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
