"""Print a TraceResult as a readable table with rich."""

from __future__ import annotations

import math

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.graph import short
from shared.result import TraceResult


def _err(node_error: dict, field: str) -> str:
    """The worst relative error of this field over the engine pairs, marked when a pair disagrees."""
    stats = [getattr(e, field) for e in node_error.values() if getattr(e, field) is not None]
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


def checked_elements(result: TraceResult) -> tuple[int, int]:
    """Finite differences: (elements evaluated, elements of the leaves they sampled)."""
    done = total = 0
    for n in result.nodes.values():
        g = n.engines["numeric"].grad if "numeric" in n.engines else None
        if g is not None and g.checked is not None:
            done += g.checked
            total += math.prod(g.shape)
    return done, total


def verdict_line(result: TraceResult) -> str:
    """'agree' or 'disagree' with the worst error of each engine pair (and how much finite differences checked)."""
    c = result.comparison
    done, total = checked_elements(result)
    parts = [
        f"{p.engines}: {'ok' if p.ok else 'MISMATCH'} (max rel {p.max_rel:.2e} over {p.checked} tensors"
        + (f", {done} of {total} leaf elements checked" if "numeric" in p.engines and total else "")
        + (f"; worst {escape(p.worst)}" if p.worst and not p.ok else "") + ")"
        for p in c.pairs
    ]
    timing = ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items())
    color = "green" if c.verdict == "agree" else "red" if c.verdict == "disagree" else "yellow"
    return f"[bold {color}]verdict: {c.verdict}[/]  " + "; ".join(parts) + (f"\n[dim]{timing}[/]" if timing else "")


def anomaly_lines(result: TraceResult) -> list[str]:
    """'where did my NaN come from?': the non-finite origins, first one first."""
    return [f"[red]{a.phase}[/]: {escape(a.message)}" for a in result.anomalies]


def health_table(result: TraceResult, max_rows: int = 60) -> Table:
    """Gradient flow per leaf and parameter: norms, the grad/value ratio, vanishing and exploding flags."""
    t = Table(title="gradient health (leaves and parameters)")
    for col in ("tensor", "grad norm", "max |grad|", "grad/value norm", "flag"):
        t.add_column(col, justify="left" if col in ("tensor", "flag") else "right")
    for k, (name, h) in enumerate(result.health.items()):
        if k == max_rows:
            t.add_row(f"... {len(result.health) - max_rows} more", "", "", "", "")
            break
        flag = "[red]exploding[/]" if h.exploding else "[yellow]vanishing[/]" if h.vanishing else ""
        ratio = f"{h.ratio:.3g}" if h.ratio is not None else "-"
        t.add_row(escape(name), f"{h.grad_norm:.4g}", f"{h.max_abs:.4g}", ratio, flag)
    return t


def torch_text(a: np.ndarray) -> str:
    """A tensor printed as torch prints it (torch's own formatter when torch is here)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency; a thin client may lack it
        return np.array2string(a, precision=4, separator=", ")
    return str(torch.from_numpy(np.array(a)))


def print_tensors(console: Console, name: str, tensors: dict[str, np.ndarray | None]) -> None:
    """One node's tensors in full ('value', 'grad', ...), as torch prints them."""
    console.rule(f"[bold]{escape(name)}")
    for label, a in tensors.items():
        text = "None" if a is None else torch_text(a)
        console.print(f"[bold]{label}[/]:", escape(text), highlight=False)


def print_result(result: TraceResult, console: Console | None = None) -> None:
    """Table, gradient flow, anomalies, gradient health, notes, then the verdict."""
    console = console or Console(width=None if Console().is_terminal else 160)
    console.print(table(result))
    if result.edges:
        console.print(flow_table(result))
    if result.anomalies:
        console.print("[bold red]non-finite values (first one first):[/]")
        for line in anomaly_lines(result):
            console.print("  " + line, highlight=False)
    if result.health:
        console.print(health_table(result))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    console.print(verdict_line(result))
