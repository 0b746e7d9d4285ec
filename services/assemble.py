"""A trace's result, column by column (ResultTable: what the store keeps for every job, whatever its size),
and the JSON views built from it: one node's NodeResult for listing pages and, for small graphs, the whole
TraceResult. The worker builds views from the arrays in memory, the API from the stored tensors: one code path.

Columns are plain lists built in a few passes over the graph; the JSON views are plain dicts validated once."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np
import orjson

from services.compare import PairErrors
from services.diagnostics import node_flags
from services.engines import EngineRun
from services.ir import Graph
from shared.codec import encode_dict, json_number, summarize
from shared.result import ResultSummary

Fetch = Callable[[list[str]], dict[str, np.ndarray]]
"""Given array keys, the arrays there are (missing keys are left out)."""


def array_key(engine: str, field: str, name: str) -> str:
    """Key of a full array in Trace.arrays and in the store: 'torch/grad/fx'; edges are 'torch/edge/<k>' (their
    index in the table) and finite differences' evaluated elements 'numeric/checked/<name>'."""
    return f"{engine}/{field}/{name}"


@dataclass
class ResultTable:
    """Every node's metadata and the engines' comparison, one list per column (row i is node i, leaves first,
    in graph order), edges as (src, dst) row indices. Tensors live apart, by array_key."""

    summary: dict[str, Any]
    names: list[str]
    op: list[str]
    expr: list[str]
    inputs: list[list[str | float]]
    shape: list[list[int]]
    dtype: list[str]
    is_leaf: list[bool]
    requires_grad: list[bool]
    kind: list[str]
    """'input', 'parameter' or 'node'."""
    init: list[str | None]
    grad_fn: list[str | None]
    next_functions: list[list[list[str | None]]]
    tensors: dict[str, dict[str, list[bool]]]
    """engine -> field -> whether node i has that tensor."""
    errors: dict[str, dict[str, dict[str, list[Any]]]]
    """pair -> 'value'|'grad' -> 'max_abs'|'max_rel'|'ok' -> per node (None where the pair did not compare it)."""
    nonfinite: list[bool]
    ok: list[bool]
    """Every pair agrees on node i."""
    edge_src: list[int]
    edge_dst: list[int]
    edge_engines: list[str]
    edge_errors: dict[str, dict[str, list[Any]]]
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Summaries of tensors over the inline limit, by array key."""
    checked: dict[str, int] = field(default_factory=dict)
    """Finite differences: elements evaluated per leaf."""
    inline_limit: int = 1024

    @cached_property
    def index(self) -> dict[str, int]:
        """Row of each node name."""
        return {n: i for i, n in enumerate(self.names)}

    @cached_property
    def neighbours(self) -> list[list[int]]:
        """Each row's inputs and users (the graph undirected: hops for views around a node)."""
        adj: list[list[int]] = [[] for _ in self.names]
        index = self.index
        for i, ins in enumerate(self.inputs):
            for x in ins:
                j = index.get(x) if isinstance(x, str) else None
                if j is not None:
                    adj[i].append(j)
                    adj[j].append(i)
        return adj

    def to_json(self) -> str:
        """The table as one JSON document (columns as lists). Internal to the store: written by orjson (10k-node
        chain: 12 ms against the stdlib's 77), unless a number in it is not finite: orjson would write null, so
        such a table is written as Python's json writes it (Infinity, NaN), which from_json reads back; views
        send non-finite numbers as strings."""
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        if self._all_finite():
            try:
                return orjson.dumps(doc).decode()
            except TypeError:  # a number type orjson does not write (a numpy scalar): the stdlib's json does
                pass
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> ResultTable:
        """Inverse of to_json (orjson reads the 10k-node chain's table in 25 ms, the stdlib's json in 320)."""
        try:
            return cls(**orjson.loads(text))
        except orjson.JSONDecodeError:  # Infinity or NaN in it: written by the stdlib's json
            return cls(**json.loads(text))

    def _all_finite(self) -> bool:
        """No inf or NaN in the columns that hold floats (a sum of floats is finite only if each one is; an
        overflowing sum only sends the table the slower way)."""
        floats = [v for ins in self.inputs for v in ins if type(v) is float]
        for cols in (*self.errors.values(), self.edge_errors):
            for col in cols.values():
                for part in col.values() if isinstance(col, dict) else [col]:
                    floats += [v for v in part if type(v) is float]
        return math.isfinite(sum(floats)) and _finite_tree(self.summary) and _finite_tree(self.summaries)

    def summary_model(self) -> ResultSummary:
        """The ResultSummary of this trace."""
        return ResultSummary.model_validate(self.summary)


def _finite_tree(x: Any) -> bool:
    """No inf or NaN anywhere in a small tree of dicts and lists."""
    if isinstance(x, dict):
        return all(_finite_tree(v) for v in x.values())
    if isinstance(x, list | tuple):
        return all(_finite_tree(v) for v in x)
    return not isinstance(x, float) or math.isfinite(x)


def build_table(
    graph: Graph, runs: list[EngineRun], pairs: list[PairErrors], summary: dict[str, Any], inline_limit: int,
    flags: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[ResultTable, dict[str, np.ndarray]]:
    """The columns of a trace and every array worth storing (values, grads, edge grads, checked masks); `flags`:
    the primary run's node_flags, when already computed."""
    names = graph.names()
    index = {n: i for i, n in enumerate(names)}
    n = len(names)
    leaves = list(graph.leaves.values())
    op = ["parameter" if leaf.kind == "parameter" else "input" for leaf in leaves] + [node.op.name for node in graph.nodes]
    kind = [leaf.kind for leaf in leaves] + ["node"] * len(graph.nodes)
    primary = runs[0]
    autograd = next((r.autograd for r in runs if r.autograd is not None), None)
    grad_fn = autograd.grad_fn if autograd is not None else [None] * n
    nexts = autograd.next_functions if autograd is not None else [[] for _ in range(n)]

    arrays: dict[str, np.ndarray] = {}
    tensors: dict[str, dict[str, list[bool]]] = {}
    for run in runs:
        has = {"value": [False] * n, "grad": [False] * n}
        for fld, table in (("value", run.values), ("grad", run.grads)):
            seen, prefix = has[fld], array_key(run.engine, fld, "")  # by the ~60k of a 10k-node graph: no calls
            for name, a in table.items():
                if a is not None:
                    seen[index[name]] = True
                    arrays[prefix + name] = a
        for name, mask in run.checked.items():
            arrays[array_key(run.engine, "checked", name)] = mask
        tensors[run.engine] = has
    checked = {name: int(mask.sum()) for run in runs for name, mask in run.checked.items()}

    edge_keys = list(primary.edges)
    edge_pos = {k: e for e, k in enumerate(edge_keys)}
    edge_engines = [r.engine for r in runs if r.edges]
    for run in runs:
        prefix = array_key(run.engine, "edge", "")
        for key, g in run.edges.items():
            e = edge_pos.get(key)
            if e is not None:
                arrays[f"{prefix}{e}"] = g

    errors: dict[str, dict[str, dict[str, list[Any]]]] = {}
    edge_errors: dict[str, dict[str, list[Any]]] = {}
    ok = [True] * n
    for p in pairs:
        cols = {f: {"max_abs": [None] * n, "max_rel": [None] * n, "ok": [None] * n} for f in ("value", "grad")}
        ecols: dict[str, list[Any]] = {"max_abs": [None] * len(edge_keys), "max_rel": [None] * len(edge_keys),
                                       "ok": [None] * len(edge_keys)}
        max_abs, max_rel, good = p.max_abs.tolist(), p.max_rel.tolist(), p.ok.tolist()
        for j, (k, name) in enumerate(zip(p.kinds, p.names, strict=True)):
            if k == "edge":
                e = edge_pos.get(name)  # type: ignore[arg-type]
                if e is not None:
                    ecols["max_abs"][e], ecols["max_rel"][e], ecols["ok"][e] = max_abs[j], max_rel[j], good[j]
                continue
            i = index[name]  # type: ignore[index]
            c = cols[k]
            c["max_abs"][i], c["max_rel"][i], c["ok"][i] = max_abs[j], max_rel[j], good[j]
            if not good[j]:
                ok[i] = False
        errors[p.name] = cols
        edge_errors[p.name] = ecols

    value_flags, grad_flags = flags if flags is not None else node_flags(graph, primary)
    nonfinite = (value_flags | grad_flags).tolist()
    summaries: dict[str, dict[str, Any]] = {}
    shapes = [leaf.shape for leaf in leaves] + [node.shape for node in graph.nodes]
    big = any(math.prod(s) > inline_limit for s in shapes)  # else no array needs a summary: skip the walk over them
    for k, a in arrays.items() if big else ():
        if a.size > inline_limit and "/checked/" not in k:
            mask = arrays.get(k.replace("/grad/", "/checked/", 1)) if "/grad/" in k else None
            summaries[k] = summarize(a[mask] if mask is not None else a)
    table = ResultTable(
        summary=summary, names=names, op=op,
        expr=[leaf.expr or leaf.init for leaf in leaves] + [node.expr for node in graph.nodes],
        inputs=[[] for _ in leaves] + [list(node.inputs) for node in graph.nodes],
        shape=[list(s) for s in shapes],
        dtype=[leaf.dtype for leaf in leaves] + [node.dtype for node in graph.nodes],
        is_leaf=[True] * len(leaves) + [not node.requires_grad for node in graph.nodes],  # torch's is_leaf
        requires_grad=[leaf.requires_grad for leaf in leaves] + [node.requires_grad for node in graph.nodes],
        kind=kind, init=[leaf.init for leaf in leaves] + [None] * len(graph.nodes),
        grad_fn=grad_fn, next_functions=nexts, tensors=tensors, errors=errors, nonfinite=nonfinite, ok=ok,
        edge_src=[index[s] for s, _ in edge_keys], edge_dst=[index[d] for _, d in edge_keys],
        edge_engines=edge_engines, edge_errors=edge_errors,
        summaries=summaries,
        checked=checked, inline_limit=inline_limit,
    )
    return table, arrays


# ---- views ----------------------------------------------------------------------------------------


def _size(shape: list[int]) -> int:
    return math.prod(shape)


def _wanted(table: ResultTable, rows: list[int], edges: list[int]) -> list[str]:
    """Keys of the small tensors the views of these rows and edges show inline."""
    keys: list[str] = []
    for i in rows:
        if _size(table.shape[i]) > table.inline_limit:
            continue
        name = table.names[i]
        for engine, has in table.tensors.items():
            for fld in ("value", "grad"):
                if has[fld][i]:
                    keys.append(array_key(engine, fld, name))
            if name in table.checked:
                keys.append(array_key(engine, "checked", name))
    for e in edges:
        if _size(table.shape[table.edge_src[e]]) <= table.inline_limit:
            keys += [array_key(engine, "edge", str(e)) for engine in table.edge_engines]
    return keys


def _tensor(table: ResultTable, arrays: dict[str, np.ndarray], engine: str, fld: str, key: str, i: int) -> dict[str, Any] | None:
    """TensorData of row i's tensor (inline numbers when small, the stored summary when not)."""
    shape, dtype = table.shape[i], table.dtype[i]
    name = table.names[i]
    checked_mask = arrays.get(array_key(engine, "checked", name)) if fld == "grad" else None
    if _size(shape) <= table.inline_limit:
        a = arrays.get(key)
        if a is None:  # exists, but was not stored (keep list or byte cap)
            return {"shape": shape, "dtype": dtype, "data": None, "summary": None, "checked": None}
        return encode_dict(a, table.inline_limit, checked_mask)
    out: dict[str, Any] = {"shape": shape, "dtype": "float64" if fld == "grad" and engine == "numeric" else dtype,
                           "data": None, "summary": None, "checked": None}
    if key in table.summaries:
        out["summary"] = table.summaries[key]
    if fld == "grad" and name in table.checked and engine in ("numeric",):
        out["checked"] = table.checked[name]
    return out


def node_items(table: ResultTable, rows: list[int], fetch: Fetch) -> list[dict[str, Any]]:
    """NodeItem dicts (NodeResult plus name) of these rows; small tensors are fetched in one call."""
    arrays = fetch(_wanted(table, rows, []))
    primary = next(iter(table.tensors), None)
    out = []
    for i in rows:
        name = table.names[i]
        engines = {}
        for engine, has in table.tensors.items():
            t = {fld: _tensor(table, arrays, engine, fld, array_key(engine, fld, name), i)
                 for fld in ("value", "grad") if has[fld][i]}
            if t:
                engines[engine] = t
        errors = {}
        for pair, cols in table.errors.items():
            e = {fld: _stat(cols[fld], i) for fld in ("value", "grad") if cols[fld]["ok"][i] is not None}
            if e:
                errors[pair] = e
        top = engines.get(primary or "", {})
        inputs = table.inputs[i]
        if any(type(v) is float and not math.isfinite(v) for v in inputs):  # x * float('-inf'): JSON has no -inf
            inputs = [json_number(v) if type(v) is float else v for v in inputs]
        out.append({
            "name": name, "op": table.op[i], "expr": table.expr[i], "inputs": inputs, "shape": table.shape[i],
            "dtype": table.dtype[i], "is_leaf": table.is_leaf[i], "requires_grad": table.requires_grad[i],
            "value": top.get("value"), "grad": top.get("grad"), "grad_fn": table.grad_fn[i],
            "next_functions": [{"grad_fn": f, "node": m} for f, m in table.next_functions[i]],
            "engines": engines, "error": errors, "nonfinite": table.nonfinite[i],
        })
    return out


def edge_items(table: ResultTable, edges: list[int], fetch: Fetch) -> list[dict[str, Any]]:
    """EdgeResult dicts of these edges (by index)."""
    arrays = fetch(_wanted(table, [], edges))
    out = []
    for e in edges:
        src = table.edge_src[e]
        per = {engine: _tensor(table, arrays, engine, "edge", array_key(engine, "edge", str(e)), src)
               for engine in table.edge_engines}
        out.append({
            "src": table.names[src], "dst": table.names[table.edge_dst[e]],
            "grad": per.get(table.edge_engines[0]) if table.edge_engines else None, "engines": per,
            "error": {pair: _stat(cols, e) for pair, cols in table.edge_errors.items() if cols["ok"][e] is not None},
        })
    return out


def _stat(cols: dict[str, list[Any]], i: int) -> dict[str, Any]:
    """ErrorStat fields of entry i, ready for JSON."""
    return {"max_abs": json_number(cols["max_abs"][i]), "max_rel": json_number(cols["max_rel"][i]), "ok": cols["ok"][i]}


def full_result_json(table: ResultTable, fetch: Fetch) -> str:
    """The whole TraceResult as JSON (the summary, every node, edge and parameter), written straight from plain
    dicts: the views are JSON-ready (non-finite numbers already strings), and a pydantic object per node would cost
    more than the trace. orjson writes them: the stdlib's encoder took 27 of the 38 ms of the CNN's batch-128 trace
    on a GPU machine (587 KB of inline numbers), orjson ~2 ms."""
    rows = list(range(len(table.names)))
    items = node_items(table, rows, fetch)
    nodes = {item.pop("name"): item for item in items}
    edges = edge_items(table, list(range(len(table.edge_src))), fetch)
    params = {
        table.names[i]: {"shape": table.shape[i], "init": table.init[i], "value": nodes[table.names[i]]["value"],
                         "grad": nodes[table.names[i]]["grad"]}
        for i in rows if table.kind[i] == "parameter"
    }
    head = table.summary_model().model_dump_json()
    body = orjson.dumps({"nodes": nodes, "edges": edges, "parameters": params}).decode()
    return f"{head[:-1]},{body[1:]}"
