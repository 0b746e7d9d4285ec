"""Small statistics for the benchmark: medians with their spread, percentiles, ratios of same-run figures."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any


def percentile(xs: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation, as numpy's default."""
    if not xs:
        return math.nan
    s = sorted(xs)
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] if lo == hi else s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(xs: list[float], unit: str = "ms") -> dict[str, Any]:
    """Median with its spread (p25..p75, min..max) over repeated runs; `n` says how many."""
    xs = [float(x) for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return {"median": None, "p25": None, "p75": None, "min": None, "max": None, "n": 0, "unit": unit}
    return {
        "median": statistics.median(xs), "p25": percentile(xs, 25), "p75": percentile(xs, 75),
        "min": min(xs), "max": max(xs), "n": len(xs), "unit": unit,
    }


def latency_summary(xs: list[float], unit: str = "ms") -> dict[str, Any]:
    """summary() plus p50/p90/p99, for per-request latencies."""
    out = summary(xs, unit)
    out.update({"p50": out["median"], "p90": percentile(xs, 90) if xs else None, "p99": percentile(xs, 99) if xs else None})
    return out


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str = "median") -> dict[str, Any]:
    """a/b of two summaries from the same run: the ratio of medians, and a range from their quartiles."""
    if not a or not b or a.get(key) is None or b.get(key) is None or not b[key]:
        return {"value": None, "lo": None, "hi": None}
    value = a[key] / b[key]
    lo = hi = value
    if key == "median" and a.get("p25") is not None and b.get("p75"):
        lo = a["p25"] / b["p75"] if b["p75"] else value
        hi = a["p75"] / b["p25"] if b.get("p25") else value
    return {"value": value, "lo": lo, "hi": hi}


def timeit(fn: Callable[[], Any], repeats: int, warmup: int = 1, budget_s: float | None = None) -> list[float]:
    """Milliseconds of `repeats` calls of fn after `warmup` calls; stops early (keeping >= 1) past `budget_s`."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return out


def fmt(x: float | None, digits: int = 3) -> str:
    """A number with `digits` significant digits (or '-')."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    return f"{x:,.{decimals}f}" if abs(x) < 1e6 else f"{x:,.0f}"


def fmt_summary(s: dict[str, Any] | None) -> str:
    """'12.3 [11.9-13.0]' median [p25-p75] (or min-max when fewer than 4 runs)."""
    if not s or s.get("median") is None:
        return "-"
    if s["n"] == 1:
        return f"{fmt(s['median'])} (n=1)"
    lo, hi = (s["p25"], s["p75"]) if s["n"] >= 4 else (s["min"], s["max"])
    return f"{fmt(s['median'])} [{fmt(lo)}-{fmt(hi)}]"


def fmt_ratio(r: dict[str, Any] | None) -> str:
    """'3.2x [2.9-3.6]'."""
    if not r or r.get("value") is None:
        return "-"
    if r.get("lo") is None or r["lo"] == r["hi"]:
        return f"{fmt(r['value'])}x"
    return f"{fmt(r['value'])}x [{fmt(r['lo'])}-{fmt(r['hi'])}]"
