"""Print a TraceResult as a readable table with rich."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.graph import short
from shared.result import TraceResult


def _err(node_error: dict, field: str) -> str:
    stats = [s for k, s in node_error.items() if k.startswith(field + ":")]
    if not stats:
        return ""
    worst = max(stats, key=lambda s: s.max_rel)
    mark = "" if all(s.ok for s in stats) else " ✗"
    return f"{worst.max_rel:.1e}{mark}"


def table(result: TraceResult, width: int = 36, max_rows: int = 200) -> Table:
    """One row per node: op, source expression, value, grad, grad_fn, and cross-engine error."""
    t = Table(title=f"gradtrace: d {result.output} / d everything ({', '.join(result.engines)}, {result.dtype})")
    for col in ("node", "op", "expression", "value", "grad", "grad_fn", "value err", "grad err"):
        t.add_column(col, overflow="fold", justify="right" if col in ("value", "grad") else "left")
    for k, (name, n) in enumerate(result.nodes.items()):
        if k == max_rows:
            t.add_row(f"... {len(result.nodes) - max_rows} more", "", "(--json has all)", "", "", "", "", "")
            break
        t.add_row(
            escape(name), n.op, escape(n.expr[:40]), escape(short(n.value, width)), escape(short(n.grad, width)),
            n.grad_fn or "",
            _err(n.error, "value"), _err(n.error, "grad"),
        )
    return t


def flow_table(result: TraceResult, width: int = 36, max_rows: int = 60) -> Table:
    """The chain rule made visible: the gradient each node sent back into each of its inputs."""
    t = Table(title="gradient flow into each input (sums to its grad)")
    for col in ("into", "from", "grad"):
        t.add_column(col, justify="right" if col == "grad" else "left")
    for k, e in enumerate(result.edges):
        if k == max_rows:
            t.add_row(f"... {len(result.edges) - max_rows} more", "", "")
            break
        t.add_row(escape(e.src), escape(f"{e.dst} = {result.nodes[e.dst].expr[:40]}"), escape(short(e.grad, width)))
    return t


def verdict_line(result: TraceResult) -> str:
    """'agree' or 'disagree' with the worst error of each engine pair."""
    c = result.comparison
    parts = [
        f"{p.engines}: {'ok' if p.ok else 'MISMATCH'} (max rel {p.max_rel:.2e} over {p.checked} tensors"
        + (f"; worst {escape(p.worst)}" if p.worst and not p.ok else "") + ")"
        for p in c.pairs
    ]
    timing = ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items())
    color = "green" if c.verdict == "agree" else "red" if c.verdict == "disagree" else "yellow"
    return f"[bold {color}]verdict: {c.verdict}[/]  " + "; ".join(parts) + (f"\n[dim]{timing}[/]" if timing else "")


def print_result(result: TraceResult, console: Console | None = None) -> None:
    """Table, then verdict."""
    console = console or Console(width=None if Console().is_terminal else 160)
    console.print(table(result))
    if result.edges:
        console.print(flow_table(result))
    console.print(verdict_line(result))
