"""Views of a result too large to send whole: a filtered page of nodes, and the part of the graph around one
node (for drawing it with expand-on-demand). Both read the ResultTable and fetch only the tensors they show."""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

from services.assemble import Fetch, ResultTable, edge_items, node_items
from shared.result import GraphView, NodePage

Filter = Literal["all", "disagree", "nonfinite", "leaves", "params"]


def select(table: ResultTable, filter: Filter = "all", q: str | None = None, name: str | None = None) -> list[int]:
    """Rows passing the filter (and, with `q`, whose name contains it; with `name`, of exactly that name), in graph
    order."""
    if name is not None:
        i = table.index.get(name)
        return [] if i is None else [r for r in select(table, filter, q) if r == i] if (filter != "all" or q) else [i]
    keep = {
        "all": lambda i: True,
        "disagree": lambda i: not table.ok[i],
        "nonfinite": lambda i: table.nonfinite[i],
        "leaves": lambda i: table.is_leaf[i],
        "params": lambda i: table.kind[i] == "parameter",
    }[filter]
    needle = q.lower() if q else None
    return [i for i, name in enumerate(table.names) if keep(i) and (needle is None or needle in name.lower())]


def page(table: ResultTable, rows: list[int], offset: int, limit: int, fetch: Fetch) -> NodePage:
    """One page of NodeItems of the selected rows."""
    chosen = rows[offset : offset + limit]
    return NodePage.model_validate({"total": len(rows), "offset": offset, "limit": limit, "items": node_items(table, chosen, fetch)})


def around(table: ResultTable, name: str | None, depth: int, max_nodes: int) -> list[int]:
    """Rows within `depth` hops of `name` (default: the output), nearest first, at most `max_nodes`."""
    start = table.index[name or table.summary["output"]]
    adj = table.neighbours
    seen = {start: 0}
    queue = deque([start])
    while queue and len(seen) < max_nodes:
        i = queue.popleft()
        if seen[i] >= depth:
            continue
        for j in adj[i]:
            if j not in seen:
                seen[j] = seen[i] + 1
                queue.append(j)
                if len(seen) >= max_nodes:
                    break
    return sorted(seen)


def graph_view(table: ResultTable, rows: list[int] | None, fetch: Fetch) -> GraphView:
    """The nodes of `rows` (None: all) with their numbers, the edges among them, and for each node how many
    neighbours are left out (so that a drawing can offer to expand it)."""
    rows = list(range(len(table.names))) if rows is None else rows
    inside = set(rows)
    adj = table.neighbours if len(inside) < len(table.names) else None
    edges = [e for e, (s, d) in enumerate(zip(table.edge_src, table.edge_dst, strict=True)) if s in inside and d in inside]
    items = node_items(table, rows, fetch)
    nodes: list[dict[str, Any]] = []
    for i, item in zip(rows, items, strict=True):
        nodes.append({
            "name": item["name"], "op": item["op"], "expr": item["expr"], "inputs": item["inputs"], "shape": item["shape"],
            "grad_fn": item["grad_fn"],
            "is_leaf": item["is_leaf"], "value": item["value"], "grad": item["grad"], "ok": table.ok[i],
            "nonfinite": table.nonfinite[i], "hidden": sum(j not in inside for j in set(adj[i])) if adj else 0,
        })
    edge_list = [{"src": x["src"], "dst": x["dst"], "grad": x["grad"]} for x in edge_items(table, edges, fetch)]
    return GraphView.model_validate({"output": table.summary["output"], "total": len(table.names), "nodes": nodes,
                                     "edges": edge_list})
