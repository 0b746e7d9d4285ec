"""Profiles of a missed target: py-spy over the running stack (worker + API processes), or an in-process
profile (pyinstrument when installed, else cProfile) of the workload behind the gap."""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.stack import Stack, children

ROOT = str(Path(__file__).resolve().parent.parent)


def py_spy() -> str | None:
    exe = Path(sys.executable).parent / "py-spy"
    return str(exe) if exe.exists() else shutil.which("py-spy")


def _short(frame: str) -> str:
    """'func (path/to/file.py)' with the path shortened to the project or the package."""
    if " (" not in frame:
        return frame
    func, _, where = frame.rpartition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    if where.startswith(ROOT):
        where = where[len(ROOT) + 1:]
    return f"{func} ({where})"


def spy_stack(stack: Stack, workload: Callable[[], Any], seconds: float, rate: int = 200, top: int = 14) -> dict[str, Any]:
    """Sample the worker and the API (all their processes) with py-spy while `workload` runs."""
    exe = py_spy()
    if exe is None:
        return {"error": "py-spy not installed (pip install py-spy)"}
    roles = {stack.worker.pid: "worker", stack.api.pid: "api"}
    for p in children(stack.worker.pid):
        roles[p] = "worker pool"
    for p in children(stack.api.pid):
        roles[p] = "api (gunicorn worker)"
    tmp = Path(tempfile.mkdtemp(prefix="bench-spy-"))
    procs = []
    for pid, role in ((stack.worker.pid, "worker"), (stack.api.pid, "api")):
        out = tmp / f"{role}.txt"
        procs.append((role, out, subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--subprocesses", "--nolineno", "--nonblocking", "-f", "raw",
             "-o", str(out), "-d", str(int(seconds) + 1), "-r", str(rate)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    time.sleep(1.0)  # let py-spy attach
    stop = threading.Event()
    done = {"runs": 0}

    def loop() -> None:
        while not stop.is_set():
            workload()
            done["runs"] += 1

    t = threading.Thread(target=loop, daemon=True)
    t0 = time.perf_counter()
    t.start()
    time.sleep(seconds)
    stop.set()
    t.join()
    wall = time.perf_counter() - t0
    report: dict[str, Any] = {"seconds": wall, "workload_runs": done["runs"], "rate_hz": rate, "processes": {}}
    for role, out, p in procs:
        _, err = p.communicate(timeout=60)
        if not out.exists():
            report["processes"][role] = {"error": err.decode(errors="replace")[-500:]}
            continue
        per_pid: dict[str, Counter[str]] = {}
        own: dict[str, Counter[str]] = {}
        totals: Counter[str] = Counter()
        for line in out.read_text(errors="replace").splitlines():
            stack_s, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            frames = stack_s.split(";")
            procs_in = [f for f in frames if f.startswith("process ")]
            pid = int(procs_in[-1].split()[1].rstrip(":").split(":")[0]) if procs_in else 0
            label = roles.get(pid, role)
            frames = [_short(f) for f in frames if not f.startswith("process ")]
            totals[label] += int(n)
            c = per_pid.setdefault(label, Counter())
            for f in set(frames):
                c[f] += int(n)
            if frames:
                own.setdefault(label, Counter())[frames[-1]] += int(n)
        for label, c in per_pid.items():
            tot = totals[label]
            pkg: Counter[str] = Counter()
            for f, k in own[label].items():
                pkg[_package(f)] += k
            report["processes"][label] = {
                "busy_pct_of_one_core": 100.0 * tot / (rate * wall),
                "samples": tot,
                # frames in (nearly) every sample are entry points: they say nothing
                "inclusive": [(f, 100.0 * k / tot) for f, k in c.most_common() if k < 0.97 * tot and not _boring(f)][:top],
                "project": [(f, 100.0 * k / tot) for f, k in c.most_common() if _is_project(f) and k < 0.97 * tot][:top],
                "self": [(f, 100.0 * k / tot) for f, k in own[label].most_common(top)],
                "self_by_package": [(f, 100.0 * k / tot) for f, k in pkg.most_common(8)],
            }
    shutil.rmtree(tmp, ignore_errors=True)
    return report


PROJECT_DIRS = ("api/", "services/", "shared/", "worker/", "bench/", "cli/")


def _where(frame: str) -> str:
    return frame.rpartition(" (")[2].rstrip(")")


def _is_project(frame: str) -> bool:
    return _where(frame).startswith(PROJECT_DIRS)


def _package(frame: str) -> str:
    """The project file, else the top-level package a frame's code lives in."""
    w = _where(frame)
    if _is_project(frame):
        return w
    return w.split("/", 1)[0].removesuffix(".py") if "/" in w else w


def _boring(frame: str) -> bool:
    """Frames present in every sample of a process (entry points), which say nothing."""
    return frame.split(" (", 1)[0] in {"<module>", "main", "_run_module_as_main", "_run_code", "run", "start",
                                       "__call__", "_bootstrap", "_bootstrap_inner", "_launch", "__init__",
                                       "_Popen", "workloop", "run_forever", "spawn_worker", "manage_workers"}


def profile_inproc(fn: Callable[[], Any], repeats: int = 1, top: int = 25) -> dict[str, Any]:
    """Profile repeats calls of fn: pyinstrument's tree when installed, else cProfile by cumulative time."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        Profiler = None  # noqa: N806
    if Profiler is not None:
        prof = Profiler(interval=0.0005)
        prof.start()
        for _ in range(repeats):
            fn()
        prof.stop()
        opts = {"filter_threshold": 0.03}  # hide calls under 3% of the total
        tree = prof.output_text(unicode=False, color=False, time="percent_of_total", processor_options=opts)
        flat = prof.output_text(unicode=False, color=False, flat=True, time="percent_of_total", processor_options=opts)
        lines = tree.splitlines()
        first = next((i for i, ln in enumerate(lines) if "%" in ln), 0)  # skip the banner
        tree_lines = [ln for ln in lines[first:] if ln.strip() and not ln.startswith("To view")]
        flat_lines = [ln for ln in flat.splitlines() if "%" in ln][:top // 2]
        return {"tool": "pyinstrument", "text": "\n".join(tree_lines[: top + 15] + ["", "self time (flat):"] + flat_lines)}
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(repeats):
        fn()
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).strip_dirs().sort_stats("cumulative").print_stats(top)
    return {"tool": "cProfile", "text": buf.getvalue()}


def format_spy(rep: dict[str, Any], top: int = 10) -> str:
    """Text lines of a spy_stack report."""
    if "error" in rep:
        return rep["error"]
    lines = [f"py-spy, {rep['seconds']:.1f} s at {rep['rate_hz']} Hz, {rep['workload_runs']} workload runs; "
             "% of that process's busy samples (idle excluded)"]
    for label, p in sorted(rep["processes"].items(), key=lambda kv: -kv[1].get("samples", 0)):
        if "error" in p:
            lines.append(f"[{label}] py-spy failed: {p['error']}")
            continue
        lines.append(f"[{label}] busy {p['busy_pct_of_one_core']:.0f}% of one core")
        lines.append("  self time by package/file: " + ", ".join(f"{f} {pct:.0f}%" for f, pct in p["self_by_package"]))
        lines.append("  project functions, inclusive:")
        lines += [f"    {pct:5.1f}%  {f}" for f, pct in p["project"][:top]]
        lines.append("  hottest frames, inclusive:")
        lines += [f"    {pct:5.1f}%  {f}" for f, pct in p["inclusive"][: max(5, top // 2)]]
        lines.append("  self:")
        lines += [f"    {pct:5.1f}%  {f}" for f, pct in p["self"][: max(5, top // 2)]]
    return "\n".join(lines)


__all__ = ["format_spy", "profile_inproc", "py_spy", "spy_stack"]
