"""The benchmark: `python -m bench [--quick]` (or `make bench`). Starts its own redis-server, Celery worker and
gunicorn API, runs the five sections, prints markdown tables and writes bench/out/report.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.stack import (
    BENCH_SETTINGS,
    GUNICORN_TIMEOUT_S,
    GUNICORN_WORKERS,
    MALLOC_ENV,
    ROOT,
    WORKER_CONCURRENCY,
    WORKER_POOL,
    Stack,
)

OUT = ROOT / "bench" / "out"


@dataclass
class Config:
    mode: str = "full"
    budget_s: float = 560.0  # the whole run, stack start-up included; 100k-node work fits in what is left
    profile_reserve_s: float = 45.0
    # 1. queue overhead
    warmup: int = 10
    latency_n: int = 80
    inproc_n: int = 50
    calls_n: int = 20
    clients: int = 8
    tput_rounds: int = 4
    tput_jobs: int = 48
    bare_tput_jobs: int = 300
    # 2. scale
    sizes: list[int] = field(default_factory=lambda: [1000, 10_000, 100_000])
    repeats: dict[int, int] = field(default_factory=lambda: {1000: 3, 10_000: 2, 100_000: 1})
    cnn_batches: list[int] = field(default_factory=lambda: [1, 8, 32])
    cnn_repeats: int = 3
    big_deadline: float = 0.0
    previous: dict[str, Any] | None = None
    # 3. op families
    family_batches: list[int] = field(default_factory=lambda: [1, 8, 32])
    family_repeats: int = 7
    # 4. store
    store_repeats: int = 5
    large_shape: tuple[int, int] = (1024, 1024)
    # 6. load
    load_jobs: int = 3000
    load_clients: int = 16
    # 5. GPU
    gpu_batches: list[int] = field(default_factory=lambda: [32, 128])
    gpu_repeats: int = 20

    def repeats_for(self, n: int) -> int:
        return self.repeats.get(n, 1)

    @classmethod
    def quick(cls) -> Config:
        return cls(
            mode="quick", budget_s=75.0, profile_reserve_s=12.0, warmup=3, latency_n=20, inproc_n=20, calls_n=5, clients=8,
            tput_rounds=2, tput_jobs=24, bare_tput_jobs=100, sizes=[100, 1000], repeats={100: 2, 1000: 1},
            cnn_batches=[1, 8], cnn_repeats=2, family_batches=[8], family_repeats=3, store_repeats=2, load_jobs=300,
            large_shape=(512, 512), gpu_batches=[32], gpu_repeats=2,
        )


def _sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "?"


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")).split()[1])
        mem = f"{kb / 1024 / 1024:.0f}"
    except (OSError, StopIteration):
        pass
    import numpy
    import torch

    return {
        "cpu_model": cpu, "cores": os.cpu_count(), "mem_gib": mem, "python": platform.python_version(),
        "torch": torch.__version__, "numpy": numpy.__version__, "platform": platform.platform(),
        "redis_server": _sh(["redis-server", "--version"]).split(" v=")[-1].split(" ")[0],
        "cuda": torch.cuda.is_available(), "loadavg_start": _loadavg(),
        "git_commit": _sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(_sh(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])),
    }


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smoke mode: small sizes and few repeats (about a minute)")
    ap.add_argument("--out", default=None, help="where to write the JSON report (default bench/out/report.json, "
                    "bench/out/report-quick.json with --quick)")
    ap.add_argument("--sections", default="1,2,3,4,5,6", help="comma-separated sections to run (default all)")
    ap.add_argument("--budget-s", type=float, default=None, help="time budget of the whole run, seconds")
    ap.add_argument("--no-profile", action="store_true", help="skip profiling the missed targets")
    ap.add_argument("--huge", action="store_true",
                    help="also run the 1,000,000-node chain and wide graph once each end to end in section 2 (about "
                         "11 minutes; up to ~20 GB of memory in all), outside the time budget")
    ap.add_argument("--update-readme", action="store_true",
                    help="also put the tables into bench/README.md between its 'latest results' markers")
    args = ap.parse_args(argv)

    cfg = Config.quick() if args.quick else Config()
    args.out = args.out or str(OUT / ("report-quick.json" if args.quick else "report.json"))
    if args.budget_s:
        cfg.budget_s = args.budget_s
    sections = {int(s) for s in args.sections.split(",") if s.strip()}
    t_start = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "logs").mkdir(exist_ok=True)

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    import torch

    from shared.settings import get_settings

    torch.set_num_threads(get_settings().worker_torch_threads)  # in-process baselines: the worker's thread count
    rep: dict[str, Any] = {"mode": cfg.mode, "config": asdict(cfg), "machine": machine()}
    rep["service"] = {
        "settings_changed": BENCH_SETTINGS, "worker": f"celery {WORKER_POOL} x{WORKER_CONCURRENCY}",
        "api": f"gunicorn -w {GUNICORN_WORKERS} --timeout {GUNICORN_TIMEOUT_S} (gunicorn.conf.py: gthread)",
        "torch_threads_in_process": torch.get_num_threads(),
        "malloc_env": {k: os.environ.get(k) for k in MALLOC_ENV},
    }
    log(f"mode {cfg.mode}, budget {cfg.budget_s:.0f} s; starting redis-server, celery worker, gunicorn")
    from bench import engines, gpu, load, profiling, queue_overhead, report, scale, store_bench

    outside = 0.0  # seconds spent outside the time budget (the 1M chain, the load run)
    with Stack(OUT / "logs") as stack:
        log(f"stack up: redis :{stack.redis_port}, API {stack.api_url}, worker pool {stack.pool_pids()}")
        if 1 in sections:
            log("1. queue overhead")
            rep["queue"] = queue_overhead.run(stack, cfg, log)
        if 3 in sections:
            log("3. reference engine vs torch per op family")
            rep["engines"] = engines.run(cfg, log)
        if 4 in sections:
            log("4. store vs raw Redis")
            rep["store"] = store_bench.run(stack, cfg, log)
            stack.flush_store()
        if 5 in sections:
            log("5. GPU")
            rep["gpu"] = gpu.run(stack, cfg, log)
        if 2 in sections:
            log("2. scale")
            small = scale.run(stack, cfg, log, big=False)
            cfg.big_deadline = t_start + cfg.budget_s - cfg.profile_reserve_s
            cfg.previous = {k: small[k][-1] for k in ("chain", "wide") if small[k]}
            big = scale.run(stack, cfg, log, big=True)
            if args.huge:
                t_huge = time.monotonic()
                for kind in ("chain", "wide"):
                    big[kind].append(scale.huge(stack, log, kind))
                outside += time.monotonic() - t_huge
            sc = {k: small[k] + big[k] for k in small}
            sc["growth"] = {
                k: scale.growth([r for r in sc[k] if r.get("stages")], [r["nodes"] for r in sc[k] if r.get("stages")])
                for k in ("chain", "wide")
            }
            sc["growth"]["cnn"] = scale.growth(sc["cnn"], [float(r["graph"].split("-b")[1]) for r in sc["cnn"]])
            sc["huge_note"] = scale.huge_note(sc)
            rep["scale"] = sc
        if 6 in sections:
            log("6. load: none lost (after the budgeted sections)")
            t_load = time.monotonic()
            rep["load"] = load.run(stack, cfg, log)
            stack.flush_store()
            outside += time.monotonic() - t_load
        rep["targets"] = report.evaluate(rep)
        rep["profiles"] = []
        if not args.no_profile:
            # the budget's clock stops during the parts outside it (the 1M chain, the load run): what the budgeted
            # sections left, at least profile_reserve_s, goes to the profiles of the missed targets
            rep["profiles"] = profile_misses(stack, cfg, rep, log, t_start + outside, profiling)
    rep["runtime_s"] = time.monotonic() - t_start
    rep["loadavg_end"] = _loadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rep, indent=1, default=str))
    md = report.markdown(rep)
    (Path(args.out).with_suffix(".md")).write_text(md + "\n")
    print(md)
    if args.update_readme:
        update_readme(md)
        log("bench/README.md updated")
    log(f"done in {rep['runtime_s']:.0f} s; report: {args.out} (and {Path(args.out).with_suffix('.md').name})")
    return 0


README = ROOT / "bench" / "README.md"
BEGIN, END = "<!-- latest results: begin -->", "<!-- latest results: end -->"


def update_readme(md: str) -> None:
    """Replace what is between the README's markers with this run's tables."""
    text = README.read_text()
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    README.write_text(text[:a] + "\n" + md + "\n" + text[b:])


def profile_misses(stack: Stack, cfg: Config, rep: dict[str, Any], log: Any, t_start: float, profiling: Any) -> list[dict[str, Any]]:
    """Profile the missed targets, largest gap first: the largest always, the others while time is left."""
    missed = sorted((t for t in rep["targets"] if t["met"] is False), key=lambda t: -t["gap"])
    handlers = {"throughput": _profile_queue, "latency": _profile_queue, "inproc": _profile_queue,
                "chain10k": _profile_e2e, "torch10k": _profile_e2e, "chain100k": _profile_e2e,
                "linear": _profile_linear, "refconv": _profile_reference, "store": _profile_store}
    out = []
    for i, t in enumerate(missed):
        left = t_start + cfg.budget_s - time.monotonic()
        if i and left < 15:
            log(f"profile of '{t['target']}' skipped: time budget")
            continue
        handler = handlers.get(t["key"])
        if handler is None:
            continue
        log(f"profiling: {t['target']} (gap {t['gap']:.2f}x)")
        try:
            rp, text, what = handler(t["key"], stack, cfg, rep, profiling, left)
        except Exception as e:  # a failed profile must not lose the report
            rp, text, what = None, f"profiling failed: {type(e).__name__}: {e}", ""
        out.append({"target": t["target"], "gap": t["gap"], "what": what, "text": text, "raw": rp})
    return out


def _spy_seconds(cfg: Config) -> float:
    return 4.0 if cfg.mode == "quick" else 8.0


def _profile_queue(key: str, stack: Stack, cfg: Config, rep: dict[str, Any], profiling: Any, left: float) -> tuple[Any, str, str]:
    """py-spy over the API and worker while the chain-rule job runs: 8 clients at once, or one at a time."""
    from bench import graphs
    from bench.clients import ApiClient, concurrent

    body = graphs.dumps(graphs.chain_rule())
    api = ApiClient(stack.api_url)

    def client() -> Any:
        c = ApiClient(stack.api_url)
        return lambda: c.run(body)

    if key == "throughput":
        def work() -> None:
            concurrent(client, cfg.clients, cfg.clients * 4)
        what = f"py-spy over the API and worker processes while {cfg.clients} clients submit and poll the chain-rule job."
    else:
        def work() -> None:
            api.run(body)
        what = "py-spy over the API and worker processes while one client submits and polls the chain-rule job, one at a time."
    rp = profiling.spy_stack(stack, work, _spy_seconds(cfg))
    if "error" in rp:
        return None, _inproc_service_profile(stack, body, profiling), what + " (py-spy unavailable: in-process profile instead)"
    return rp, profiling.format_spy(rp), what


def _profile_e2e(key: str, stack: Stack, cfg: Config, rep: dict[str, Any], profiling: Any, left: float) -> tuple[Any, str, str]:
    """py-spy over the API and worker during e2e runs of the chain the target was judged on."""
    from bench import graphs
    from bench.clients import ApiClient

    chains = [c for c in rep["scale"]["chain"] if c.get("stages", {}).get("e2e")]
    want = 100_000 if key in ("chain100k", "rss100k") else 10_000
    row = next((c for c in chains if c["nodes"] == want), None) or max(chains, key=lambda c: c["nodes"])
    body = graphs.dumps(graphs.scalar_chain(row["nodes"]))
    api = ApiClient(stack.api_url)
    rp = profiling.spy_stack(stack, lambda: api.run(body), max(_spy_seconds(cfg), row["stages"]["e2e"]["median"] / 1e3 * 1.1))
    stack.flush_store()
    what = f"py-spy over the API and worker processes during e2e runs of the {row['nodes']}-node chain."
    if "error" in rp:
        return None, _inproc_service_profile(stack, body, profiling), what + " (py-spy unavailable: in-process profile instead)"
    return rp, profiling.format_spy(rp), what


def _profile_reference(key: str, stack: Stack, cfg: Config, rep: dict[str, Any], profiling: Any, left: float) -> tuple[Any, str, str]:
    """pyinstrument of run_reference on the worst conv2d/matmul graph."""
    from bench import graphs
    from services.compiler import compile_spec
    from services.engines.reference import run_reference
    from services.materialize import materialize
    from shared.spec import TraceSpec

    worst = max((r for r in rep["engines"]["rows"] if r["family"] in ("conv2d", "matmul") and r["batch"] >= 8),
                key=lambda r: r["reference_over_torch"]["value"])
    g = compile_spec(TraceSpec.model_validate(graphs.op_family(worst["family"], worst["batch"])))
    materialize(g)
    rp = profiling.profile_inproc(lambda: run_reference(g), repeats=5)
    return rp, rp["text"], f"{rp['tool']}: run_reference on the {worst['family']} graph at batch {worst['batch']}, 5 runs."


def _profile_store(key: str, stack: Stack, cfg: Config, rep: dict[str, Any], profiling: Any, left: float) -> tuple[Any, str, str]:
    """pyinstrument of the store's side (write or read) with the worst ratio to raw Redis."""
    from bench import graphs
    from bench.scale import StoreBench
    from services.trace import trace
    from shared.spec import TraceSpec

    case, side = max(((c, k) for c in rep["store"]["cases"] for k in ("write", "read")),
                     key=lambda ck: ck[0][f"{ck[1]}_ratio"]["value"])
    big_case = case["case"].startswith("large")
    rows, cols = cfg.large_shape
    ts = TraceSpec.model_validate(graphs.large_result(rows, cols) if big_case else graphs.chain_rule())
    done = trace(ts)
    sb = StoreBench(stack)
    spec_json = ts.model_dump_json(exclude_unset=True)
    job_id, _, _ = sb.write(spec_json, done)
    keys = [k.split("/", 2) for k in done.arrays]

    def io_() -> None:
        if side == "write":
            sb.write(spec_json, done)
        else:
            sb.store.get(job_id)
            for e, f, nm in keys:
                sb.store.tensor(job_id, e, f, nm)

    reps = 5 if big_case else 100
    rp = profiling.profile_inproc(io_, repeats=reps)
    stack.flush_store()
    what = (f"{rp['tool']}: the store's {side} of the {case['case']} result ({case[side + '_ratio']['value']:.1f}x raw), "
            f"{reps} runs" + (": JobStore.get, then JobStore.tensor for every stored tensor." if side == "read"
                             else ": JobStore.finish."))
    return rp, rp["text"], what


def _inproc_service_profile(stack: Stack, body: bytes, profiling: Any) -> str:
    """What one job costs the worker and the API, in this process: parse + trace + store + GET view."""
    from api.routes import view_json
    from services.store import JobStore
    from services.trace import trace
    from shared.spec import TraceSpec

    store = JobStore.from_settings(stack.settings())

    def job() -> None:
        ts = TraceSpec.model_validate_json(body)
        job_id, _ = store.create(ts.model_dump_json(exclude_unset=True))
        delivery = store.deliver(job_id, 3)
        done = trace(ts)
        store.finish(job_id, done, ts.keep, delivery)
        view_json(store.get(job_id, "summary", "result", "manifest"))

    return profiling.profile_inproc(job, repeats=20)["text"]


def _profile_linear(key: str, stack: Stack, cfg: Config, rep: dict[str, Any], profiling: Any, left: float) -> tuple[Any, str, str]:
    """Profile the stage that grew worst, on its own workload, at the bigger size when that fits the time left."""
    from bench import graphs
    from bench.report import LINEAR_STAGES, MIN_JUDGED_MS, STAGE_LABELS
    from bench.scale import StoreBench
    from services.compiler import compile_spec
    from services.trace import trace
    from shared.spec import TraceSpec

    sc = rep["scale"]
    worst = None
    for kind in ("chain", "wide"):
        for g in sc["growth"].get(kind, []):
            big = next(r for r in sc[kind] if r["graph"] == g["to"])
            for k, s in g["stages"].items():
                if k in LINEAR_STAGES and (big["stages"].get(k, {}).get("median") or 0) >= MIN_JUDGED_MS \
                        and (worst is None or s["ratio"] > worst[0]):
                    worst = (s["ratio"], kind, g, k)
    assert worst is not None
    ratio_, kind, g, stage = worst
    big = next(r for r in sc[kind] if r["graph"] == g["to"])
    small = next(r for r in sc[kind] if r["graph"] == g["from"])
    cost_s = (big["stages"].get(stage, {}).get("median") or 1e9) / 1e3
    use = big if cost_s * 3 < min(left, 60) else small
    spec = (graphs.scalar_chain if kind == "chain" else graphs.wide)(use["nodes"])
    body = graphs.dumps(spec)
    label = f"worst growth: {STAGE_LABELS.get(stage, stage)}, {g['from']} -> {g['to']} = {ratio_:.1f}x"
    if stage in ("post", "e2e", "fetch"):
        from bench.clients import ApiClient

        api = ApiClient(stack.api_url)
        secs = (use["stages"]["e2e"]["median"] / 1e3) * 1.1
        rp = profiling.spy_stack(stack, lambda: api.run(body), max(4.0, secs))
        stack.flush_store()
        return rp, profiling.format_spy(rp), f"py-spy over API and worker, e2e runs of {use['graph']} ({label})."
    ts = TraceSpec.model_validate_json(body)
    if stage == "spec_parse":
        def fn() -> None:
            TraceSpec.model_validate_json(body)
    elif stage == "compile":
        def fn() -> None:
            compile_spec(ts)
    elif stage in ("store_write", "store_read"):
        done = trace(ts)
        sb = StoreBench(stack)
        job_id, _, _ = sb.write(ts.model_dump_json(exclude_unset=True), done)

        def fn() -> None:
            if stage == "store_write":
                sb.write(ts.model_dump_json(exclude_unset=True), done)
            else:
                sb.store.get(job_id)
    else:
        def fn() -> None:
            trace(ts)
    rp = profiling.profile_inproc(fn, repeats=1)
    stack.flush_store()
    return rp, rp["text"], f"{rp['tool']}: {stage} in-process at {use['graph']} ({label})."


if __name__ == "__main__":
    raise SystemExit(main())
