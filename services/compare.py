"""Cross-check engines tensor by tensor, with tolerances that fit the dtype, into one verdict."""

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


def error(a: np.ndarray, b: np.ndarray, rtol: float, atol: float, sampled: bool = False) -> ErrorStat:
    """Max |a - b| relative to max |b|; ok when within atol + rtol * max |b|. NaN must match NaN,
    except that `sampled` skips elements `b` left NaN (finite differences sample elements)."""
    a64, b64 = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if np.shape(a) != np.shape(b):
        return ErrorStat(max_abs=float("inf"), max_rel=float("inf"), ok=False)
    if sampled:
        keep = ~np.isnan(b64)
        a64, b64 = a64[keep], b64[keep]
    nan_a, nan_b = np.isnan(a64), np.isnan(b64)
    if (nan_a != nan_b).any():
        return ErrorStat(max_abs=float("inf"), max_rel=float("inf"), ok=False)
    a64, b64 = a64[~nan_a], b64[~nan_a]
    if a64.size == 0:
        return ErrorStat(max_abs=0.0, max_rel=0.0, ok=True)
    with np.errstate(invalid="ignore"):
        d = np.where(a64 == b64, 0.0, np.abs(a64 - b64))
    max_abs = float(np.nan_to_num(d.max(), nan=np.inf))
    finite = np.abs(b64[np.isfinite(b64)])
    scale = float(finite.max()) if finite.size else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    return ErrorStat(max_abs=max_abs, max_rel=max_rel, ok=bool(max_abs <= atol + rtol * scale))


@dataclass
class PairErrors:
    """Per-tensor error stats of one engine pair, keyed 'value:node', 'grad:node', 'edge:src->dst'."""

    name: str
    stats: dict[str, ErrorStat]
    rtol: float
    atol: float


def compare_pair(a: EngineRun, b: EngineRun, dtype: str) -> PairErrors:
    """Compare every value, grad and edge two engines both produced."""
    numeric = "numeric" in (a.engine, b.engine)
    rtol, atol = tolerance(dtype, numeric)
    stats: dict[str, ErrorStat] = {}
    for name, va in a.values.items():
        if name in b.values:
            stats[f"value:{name}"] = error(va, b.values[name], rtol, atol)
    for name, ga in a.grads.items():
        if name not in b.grads:
            continue
        gb = b.grads[name]
        if ga is None and gb is None:
            continue
        if ga is None or gb is None:
            stats[f"grad:{name}"] = ErrorStat(max_abs=float("inf"), max_rel=float("inf"), ok=False)
            continue
        stats[f"grad:{name}"] = error(ga, gb, rtol, atol, sampled=b.engine == "numeric")
    for key in set(a.edges) | set(b.edges):
        if key in a.edges and key in b.edges:
            stats[f"edge:{key[0]}->{key[1]}"] = error(a.edges[key], b.edges[key], rtol, atol)
        elif a.edges and b.edges:
            stats[f"edge:{key[0]}->{key[1]}"] = ErrorStat(max_abs=float("inf"), max_rel=float("inf"), ok=False)
    return PairErrors(f"{a.engine}~{b.engine}", stats, rtol, atol)


def summarize(pairs: list[PairErrors]) -> Comparison:
    """One line per engine pair and the overall verdict."""
    out = []
    for p in pairs:
        failures = [k for k, s in p.stats.items() if not s.ok]
        worst = max(p.stats, key=lambda k: p.stats[k].max_rel, default=None)
        out.append(
            PairComparison(
                engines=p.name, ok=not failures, checked=len(p.stats),
                max_abs=max((s.max_abs for s in p.stats.values()), default=0.0),
                max_rel=max((s.max_rel for s in p.stats.values()), default=0.0),
                worst=worst, failures=failures[:50], rtol=p.rtol, atol=p.atol,
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
