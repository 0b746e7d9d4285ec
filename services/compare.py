"""Cross-check engines tensor by tensor, with tolerances that fit the dtype, into one verdict.

Every tensor pair of two engines is flattened into one long array so that the per-tensor
maxima are a handful of vectorised `reduceat` calls, not a Python loop over tensors."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from services.engines import EngineRun
from shared.result import Comparison, ErrorStat, PairComparison

TOLERANCES: dict[tuple[str, str], tuple[float, float]] = {
    # (dtype, kind) -> (rtol, atol); 'exact' compares two analytic engines, 'numeric' finite differences.
    ("float32", "exact"): (1e-4, 1e-5),
    ("float64", "exact"): (1e-8, 1e-10),
    ("float32", "numeric"): (2e-3, 1e-4),
    ("float64", "numeric"): (1e-5, 1e-7),
}


def tolerance(dtype: str, numeric: bool) -> tuple[float, float]:
    """(rtol, atol) for comparing tensors of this dtype; looser against finite differences."""
    return TOLERANCES[(dtype if dtype in ("float32", "float64") else "float32", "numeric" if numeric else "exact")]


Name = str | tuple[str, str]
"""A node's name, or an edge's (src, dst): kept apart, so a node named 'a->b' is never an edge."""


@dataclass
class PairErrors:
    """Error of each tensor two engines share, typed by kind ('value', 'grad' or 'edge') and name."""

    name: str
    kinds: list[str]
    names: list[Name]
    max_abs: np.ndarray
    max_rel: np.ndarray
    ok: np.ndarray
    rtol: float
    atol: float

    def label(self, i: int) -> str:
        """How tensor i reads in messages: 'grad:x', 'edge:x->y'."""
        n = self.names[i]
        return f"{self.kinds[i]}:{n[0]}->{n[1]}" if isinstance(n, tuple) else f"{self.kinds[i]}:{n}"

    def stat(self, i: int) -> dict[str, float | bool]:
        """ErrorStat fields of tensor i."""
        return {"max_abs": float(self.max_abs[i]), "max_rel": float(self.max_rel[i]), "ok": bool(self.ok[i])}


CHUNK = 1 << 17
"""Elements compared per vectorised pass (1 MiB of float64 per operand): a pass over a large graph's tensors in
one piece ran ~15 sweeps over arrays far larger than the CPU cache (compare grew 26x for 10x nodes)."""


def batch_errors(
    pairs: list[tuple[np.ndarray, np.ndarray]], rtol: float, atol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair (a, b): max |a - b|, that over max |b|, and whether it is within atol + rtol * max |b|.

    NaN must meet NaN (inf must meet the same inf)."""
    n = len(pairs)
    max_abs, scale = np.zeros(n), np.zeros(n)
    firsts = [np.asarray(a) for a, _ in pairs]
    seconds = [np.asarray(b) for _, b in pairs]
    sizes = np.fromiter((a.size for a in firsts), dtype=np.int64, count=n)
    bad = np.fromiter((a.shape != b.shape for a, b in zip(firsts, seconds, strict=True)), dtype=bool, count=n)
    live = np.flatnonzero((sizes > 0) & ~bad)
    ends = np.cumsum(sizes[live])
    lo = 0
    while lo < live.size:  # runs of whole tensors, about CHUNK elements each (a larger tensor alone)
        hi = max(lo + 1, int(np.searchsorted(ends, (ends[lo - 1] if lo else 0) + CHUNK, side="right")))
        idx = live[lo:hi]
        max_abs[idx], scale[idx], mismatch = _chunk_errors([firsts[i] for i in idx], [seconds[i] for i in idx], sizes[idx])
        bad[idx] |= mismatch
        lo = hi
    max_abs[bad] = np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        max_rel = np.where(scale > 0, max_abs / np.where(scale > 0, scale, 1), np.where(max_abs == 0, 0.0, np.inf))
    ok = ~bad & (max_abs <= atol + rtol * scale)
    return max_abs, max_rel, ok


def _chunk_errors(
    firsts: list[np.ndarray], seconds: list[np.ndarray], sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """max |a - b|, max |b| (finite elements) and a NaN-placement mismatch per pair of same-shape, non-empty arrays."""
    # axis=None flattens every array as it copies: one C loop, no ravel per tensor
    A = np.concatenate(firsts, axis=None, dtype=np.float64, casting="unsafe")
    B = np.concatenate(seconds, axis=None, dtype=np.float64, casting="unsafe")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nan_a, nan_b = np.isnan(A), np.isnan(B)
    mismatch = nan_a != nan_b
    with np.errstate(invalid="ignore"):
        d = np.where((A == B) | nan_b | nan_a, 0.0, np.abs(A - B))
    d = np.nan_to_num(d, nan=np.inf)
    return (np.maximum.reduceat(d, starts), np.maximum.reduceat(np.where(np.isfinite(B), np.abs(B), 0.0), starts),
            np.logical_or.reduceat(mismatch, starts))


def error(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> ErrorStat:
    """The error of one tensor pair (see batch_errors)."""
    m, r, ok = batch_errors([(np.asarray(a), np.asarray(b))], rtol, atol)
    return ErrorStat(max_abs=float(m[0]), max_rel=float(r[0]), ok=bool(ok[0]))


_MISSING = np.array(np.nan)


def compare_pair(a: EngineRun, b: EngineRun, dtype: str, exact: bool = True) -> PairErrors:
    """Compare every value, grad and edge two engines both produced (`exact`: both are analytic)."""
    # A graph is judged by its least precise float tensor: one float32 input or cast in a float64 graph
    # limits every number computed from it, and its gradients limit everything upstream.
    # (and a float32 spec whose tensors are all float64, `torch.randn(10, dtype=torch.float64)` as gradcheck's docs
    # write them, by float64's)
    floats = {v.dtype for run in (a, b) for v in run.values.values() if v.dtype.kind == "f"}
    if np.dtype(np.float32) in floats:
        dtype = "float32"
    elif floats == {np.dtype(np.float64)}:
        dtype = "float64"
    rtol, atol = tolerance(dtype, not exact)
    kinds: list[str] = []
    names: list[Name] = []
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    for name, va in a.values.items():
        if name in b.values:
            kinds.append("value")
            names.append(name)
            pairs.append((va, b.values[name]))
    for name, ga in a.grads.items():
        if name not in b.grads or (ga is None and b.grads[name] is None):
            continue
        gb = b.grads[name]
        checked = b.checked.get(name) if name in b.checked else a.checked.get(name)
        if checked is not None:  # finite differences: compare only the elements they evaluated
            ga = np.where(checked, ga, np.nan) if ga is not None else ga
            gb = np.where(checked, gb, np.nan) if gb is not None else gb
        kinds.append("grad")
        names.append(name)
        # A grad one engine has and the other lacks can never match: compare against a shape that differs.
        pairs.append((ga if ga is not None else _MISSING, gb if gb is not None else _MISSING[None]))
    if a.edges and b.edges:
        # in a's order, then b's own: walking a set of the keys (hash order) made every lookup a cache miss at
        # 100k nodes (26x the time of 10k)
        a_edges, b_edges = a.edges, b.edges
        for key, ea in a_edges.items():
            kinds.append("edge")
            names.append(key)
            pairs.append((ea, b_edges.get(key, _MISSING[None])))
        for key, eb in b_edges.items():
            if key not in a_edges:
                kinds.append("edge")
                names.append(key)
                pairs.append((_MISSING, eb))
    max_abs, max_rel, ok = batch_errors(pairs, rtol, atol)
    return PairErrors(f"{a.engine}~{b.engine}", kinds, names, max_abs, max_rel, ok, rtol, atol)


def summarize(pairs: list[PairErrors]) -> Comparison:
    """One line per engine pair and the overall verdict."""
    out = []
    for p in pairs:
        failures = [p.label(i) for i in np.flatnonzero(~p.ok)[:50]]
        worst = p.label(int(np.argmax(p.max_rel))) if p.names else None
        out.append(
            PairComparison(
                engines=p.name, ok=bool(p.ok.all()), checked=len(p.names),
                max_abs=float(p.max_abs.max(initial=0.0)), max_rel=float(p.max_rel.max(initial=0.0)),
                worst=worst, failures=failures, rtol=p.rtol, atol=p.atol,
            )
        )
    if not out:
        return Comparison(verdict="single-engine")
    return Comparison(verdict="agree" if all(p.ok for p in out) else "disagree", pairs=out)


def compare_runs(runs: list[EngineRun], dtype: str, exact: dict[str, bool] | None = None) -> tuple[Comparison, list[PairErrors]]:
    """Compare every pair of engines that ran, in run order; `exact` says which engines are analytic."""
    exact = exact or {}
    pairs = [compare_pair(a, b, dtype, exact.get(a.engine, True) and exact.get(b.engine, True))
             for a, b in itertools.combinations(runs, 2)]
    return summarize(pairs), pairs
