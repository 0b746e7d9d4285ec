// One finished job's data, read through the JSON API: the whole result for small graphs, otherwise the
// paginated node listing, the graph view around a node, and single tensors.

import { api, jobUrls } from "./util.js";

const PAGE = 200;

export class JobData {
  constructor(job) {
    this.id = job.id;
    this.urls = jobUrls(job.id);
    this.summary = job.summary;
    this.result = job.result || null;
    this.manifest = job.manifest || null;
    this.output = job.summary.output;
    this.nodes = new Map();
    this.params = new Set(this.result ? Object.keys(this.result.parameters || {}) : []);
    this.paramItems = null;
  }

  get total() {
    return this.summary.counts.nodes;
  }

  /** The parameters (model weights) as NodeItems; for large jobs read from the listing. */
  async loadParams() {
    if (this.paramItems) return this.paramItems;
    if (this.result) {
      this.paramItems = Object.entries(this.result.parameters || {}).map(([name, p]) => ({ name, ...p, ...(this.result.nodes[name] || {}), init: p.init }));
    } else if (this.summary.counts.parameters) {
      const page = await api(this.urls.nodes({ filter: "params", limit: 1000 }));
      this.paramItems = page.items;
    } else {
      this.paramItems = [];
    }
    for (const p of this.paramItems) this.params.add(p.name);
    return this.paramItems;
  }

  isParam(name) {
    return this.params.has(name);
  }

  /** A GraphView: graph(params) with around, depth, max_nodes. */
  graph(params) {
    return api(this.urls.graph(params));
  }

  /** Everything about one node (a NodeResult with its name), or null. */
  async node(name) {
    if (this.result) {
      const n = this.result.nodes[name];
      return n ? { name, ...n } : null;
    }
    if (this.nodes.has(name)) return this.nodes.get(name);
    const page = await api(this.urls.nodes({ name, limit: 1 }));  // the listing's exact-name lookup
    for (const item of page.items) this.nodes.set(item.name, item);
    return this.nodes.get(name) || null;
  }

  /** The gradients that flowed into `name` from each node using it: [{dst, expr, grad, error?}]. */
  async outEdges(name) {
    if (this.result) {
      return this.result.edges.filter((e) => e.src === name)
        .map((e) => ({ ...e, expr: (this.result.nodes[e.dst] || {}).expr }));
    }
    const view = await this.graph({ around: name, depth: 1, max_nodes: 5000 });
    const exprs = new Map(view.nodes.map((n) => [n.name, n.expr]));
    return view.edges.filter((e) => e.src === name).map((e) => ({ ...e, expr: exprs.get(e.dst) }));
  }

  /** Whether the service kept this tensor in full (false: only its summary exists). */
  stored(engine, field, name) {
    if (!this.manifest) return true;
    return `${engine}/${field}/${name}` in this.manifest.stored;
  }

  tensorUrl(name, engine, field, format) {
    return this.urls.tensor(name, { engine, field, format });
  }

  /** One full tensor's nested data. */
  async loadTensor(name, engine, field) {
    const t = await api(this.tensorUrl(name, engine, field, "json"));
    return t.data;
  }
}
