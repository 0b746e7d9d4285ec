"""Cross-check engines tensor by tensor, with tolerances that fit the dtype, into one verdict.

Every tensor pair of two engines is flattened into one long array so that the per-tensor
maxima are a handful of vectorised `reduceat` calls, not a Python loop over tensors."""

from __future__ import annotations

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


@dataclass
class PairErrors:
    """Error of each tensor two engines share: keys like 'value:x', 'grad:x', 'edge:x->y'."""

    name: str
    keys: list[str]
    max_abs: np.ndarray
    max_rel: np.ndarray
    ok: np.ndarray
    rtol: float
    atol: float

    def stat(self, i: int) -> ErrorStat:
        return ErrorStat(max_abs=float(self.max_abs[i]), max_rel=float(self.max_rel[i]), ok=bool(self.ok[i]))


def batch_errors(
    pairs: list[tuple[np.ndarray, np.ndarray]], rtol: float, atol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair (a, b): max |a - b|, that over max |b|, and whether it is within atol + rtol * max |b|.

    NaN must meet NaN (inf must meet the same inf)."""
    n = len(pairs)
    max_abs, scale = np.zeros(n), np.zeros(n)
    bad = np.zeros(n, dtype=bool)
    sizes = np.array([a.size for a, _ in pairs], dtype=np.int64)
    bad |= np.array([np.shape(a) != np.shape(b) for a, b in pairs], dtype=bool)
    live = np.flatnonzero((sizes > 0) & ~bad)
    if live.size:
        A = np.concatenate([np.asarray(pairs[i][0], np.float64).ravel() for i in live])
        B = np.concatenate([np.asarray(pairs[i][1], np.float64).ravel() for i in live])
        starts = np.concatenate([[0], np.cumsum(sizes[live])[:-1]])
        nan_a, nan_b = np.isnan(A), np.isnan(B)
        mismatch = nan_a != nan_b
        with np.errstate(invalid="ignore"):
            d = np.where((A == B) | nan_b | nan_a, 0.0, np.abs(A - B))
        d = np.nan_to_num(d, nan=np.inf)
        max_abs[live] = np.maximum.reduceat(d, starts)
        scale[live] = np.maximum.reduceat(np.where(np.isfinite(B), np.abs(B), 0.0), starts)
        bad[live] |= np.logical_or.reduceat(mismatch, starts)
    max_abs[bad] = np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        max_rel = np.where(scale > 0, max_abs / np.where(scale > 0, scale, 1), np.where(max_abs == 0, 0.0, np.inf))
    ok = ~bad & (max_abs <= atol + rtol * scale)
    return max_abs, max_rel, ok


def error(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> ErrorStat:
    """The error of one tensor pair (see batch_errors)."""
    m, r, ok = batch_errors([(np.asarray(a), np.asarray(b))], rtol, atol)
    return ErrorStat(max_abs=float(m[0]), max_rel=float(r[0]), ok=bool(ok[0]))


_MISSING = np.array(np.nan)


def compare_pair(a: EngineRun, b: EngineRun, dtype: str) -> PairErrors:
    """Compare every value, grad and edge two engines both produced."""
    numeric = "numeric" in (a.engine, b.engine)
    # A graph is judged by its least precise float tensor: one float32 input or cast in a float64 graph
    # limits every number computed from it, and its gradients limit everything upstream.
    if any(v.dtype == np.float32 for run in (a, b) for v in run.values.values()):
        dtype = "float32"
    rtol, atol = tolerance(dtype, numeric)
    keys: list[str] = []
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    for name, va in a.values.items():
        if name in b.values:
            keys.append(f"value:{name}")
            pairs.append((va, b.values[name]))
    grad_keys, grad_pairs = [], []
    for name, ga in a.grads.items():
        if name not in b.grads or (ga is None and b.grads[name] is None):
            continue
        gb = b.grads[name]
        if name in b.checked and ga is not None:  # finite differences: compare only the elements they evaluated
            ga = np.where(b.checked[name], ga, np.nan)
        grad_keys.append(f"grad:{name}")
        # A grad one engine has and the other lacks can never match: compare against a shape that differs.
        grad_pairs.append((ga if ga is not None else _MISSING, gb if gb is not None else _MISSING[None]))
    edge_keys, edge_pairs = [], []
    if a.edges and b.edges:
        for key in a.edges.keys() | b.edges.keys():
            edge_keys.append(f"edge:{key[0]}->{key[1]}")
            edge_pairs.append((a.edges.get(key, _MISSING), b.edges.get(key, _MISSING[None])))
    parts = [batch_errors(pairs, rtol, atol), batch_errors(grad_pairs, rtol, atol), batch_errors(edge_pairs, rtol, atol)]
    return PairErrors(
        f"{a.engine}~{b.engine}", keys + grad_keys + edge_keys,
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]), rtol, atol,
    )


def summarize(pairs: list[PairErrors]) -> Comparison:
    """One line per engine pair and the overall verdict."""
    out = []
    for p in pairs:
        failures = [p.keys[i] for i in np.flatnonzero(~p.ok)[:50]]
        worst = p.keys[int(np.argmax(p.max_rel))] if p.keys else None
        out.append(
            PairComparison(
                engines=p.name, ok=bool(p.ok.all()), checked=len(p.keys),
                max_abs=float(p.max_abs.max(initial=0.0)), max_rel=float(p.max_rel.max(initial=0.0)),
                worst=worst, failures=failures, rtol=p.rtol, atol=p.atol,
            )
        )
    if not out:
        return Comparison(verdict="single-engine")
    return Comparison(verdict="agree" if all(p.ok for p in out) else "disagree", pairs=out)


def compare_runs(runs: list[EngineRun], dtype: str) -> tuple[Comparison, list[PairErrors]]:
    """Compare the first engine against each other one (torch is first when it ran)."""
    pairs = [compare_pair(runs[0], r, dtype) for r in runs[1:]]
    if len(runs) == 3:
        pairs.append(compare_pair(runs[1], runs[2], dtype))
    return summarize(pairs), pairs
