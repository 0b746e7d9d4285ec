"""Job rules shared by the API and the worker: trace limits, which tensors to keep, where a tensor is."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from services.assemble import ResultTable
from services.errors import SpecError
from services.ir import Graph
from shared.codec import dtype_name


def check_keep(graph: Graph) -> None:
    """Raise SpecError at ('keep', i) for a name in the spec's keep list that is no node or parameter."""
    if not isinstance(graph.keep, list):
        return
    known = set(graph.names())
    for i, name in enumerate(graph.keep):
        if name not in known:
            raise SpecError(f"keep: no node or parameter named '{name}'", loc=("keep", i), node=name)


@dataclass
class Selection:
    """What a job stores in full, with plain-data manifest entries: a 10k-node job has ~60k tensors, and a
    pydantic object (or a dict) per entry would cost more than writing them."""

    chosen: dict[str, np.ndarray] = field(default_factory=dict)
    stored: dict[str, tuple[str, tuple[int, ...], int]] = field(default_factory=dict)
    """'engine/field/name' -> (dtype, shape, nbytes) of a StoredTensor."""
    offsets: dict[str, int] = field(default_factory=dict)
    """Byte offsets in the packed blob of small tensors (the others have their own key)."""
    not_kept: dict[str, str] = field(default_factory=dict)
    nbytes: int = 0

    def index(self) -> dict[str, str]:
        """Every tensor's index entry: the stored ones (index_entry) and '!<why>' for those not kept."""
        offs, dims = self.offsets, {(): ""}
        out = {}
        for k, (dt, shape, n) in self.stored.items():
            d = dims.get(shape)
            if d is None:
                d = dims[shape] = ",".join(map(str, shape))
            out[k] = f"{offs.get(k, '-')} {n} {dt} {d}"
        out.update((k, f"!{why}") for k, why in self.not_kept.items())
        return out

    def manifest_json(self) -> str:
        """The Manifest (shared.job) as JSON."""
        offs = self.offsets
        stored = {k: {"dtype": dt, "shape": list(shape), "nbytes": n, "offset": offs.get(k)}
                  for k, (dt, shape, n) in self.stored.items()}
        return orjson.dumps({"stored": stored, "not_kept": self.not_kept, "nbytes": self.nbytes}).decode()


def manifest_from_index(index: dict[bytes, bytes]) -> str:
    """The Manifest JSON of a job's index hash (what Selection.manifest_json gave when the job was stored)."""
    stored: dict[str, dict[str, Any]] = {}
    not_kept: dict[str, str] = {}
    total = 0
    for k, v in index.items():
        entry = v.decode()
        if entry.startswith("!"):
            not_kept[k.decode()] = entry[1:]
            continue
        offset, nbytes, dtype, dims = entry.split(" ")
        stored[k.decode()] = {"dtype": dtype, "shape": [int(d) for d in dims.split(",") if d], "nbytes": int(nbytes),
                              "offset": None if offset == "-" else int(offset)}
        total += int(nbytes)
    return orjson.dumps({"stored": stored, "not_kept": not_kept, "nbytes": total}).decode()


def select_tensors(
    arrays: dict[str, np.ndarray], keep: str | list[str] | None, max_bytes: int, inline_limit: int,
    names_of: Callable[[str], tuple[str, ...]],
) -> Selection:
    """The arrays to store: every small one (up to `inline_limit` elements: the result's numbers), then the large
    ones named by `keep` (names_of(key) gives the node names a key belongs to), in order, within `max_bytes`."""
    wanted = None if keep is None or keep == "all" else set(keep)
    sel = Selection()
    chosen, stored = sel.chosen, sel.stored
    nbytes = 0
    large = []
    names: dict[Any, str] = {}  # dtype -> its name, looked up once per dtype rather than per array
    for key, a in arrays.items():
        if a.size > inline_limit:
            large.append((key, a))
            continue
        chosen[key] = a
        dt = a.dtype
        nb = a.nbytes
        stored[key] = (names.get(dt) or names.setdefault(dt, dtype_name(dt)), a.shape, nb)
        nbytes += nb
    for key, a in large:
        if wanted is not None and not wanted.intersection(names_of(key)):
            sel.not_kept[key] = "not kept: not named in the spec's 'keep'"
        elif nbytes + a.nbytes > max_bytes:
            sel.not_kept[key] = f"not kept: over the job's cap of {max_bytes} stored bytes"
        else:
            chosen[key] = a
            stored[key] = (dtype_name(a.dtype), a.shape, a.nbytes)
            nbytes += a.nbytes
    sel.nbytes = nbytes
    return sel


def missing_reason(table: ResultTable, engine: str, field: str, name: str) -> str:
    """Why there is no such tensor: unknown node, engine that did not run, or no such field."""
    if name not in table.index:
        return f"no node or parameter named '{name}'"
    if engine not in table.tensors:
        return f"engine '{engine}' did not run (engines: {', '.join(table.tensors)})"
    return f"node '{name}' has no {field} from engine '{engine}'"


@dataclass
class Budget:
    """What a job will cost, from shapes alone: bytes it stores, the worker's peak memory, finite-difference passes."""

    stored_bytes: int
    peak_bytes: int
    forward_passes: int
    seconds: float
    """Estimated run time (engines and finite differences)."""


BASE_BYTES = 400 * 1024 * 1024
"""A worker child's memory before any job (Python, numpy, torch)."""
TABLE_BYTES_PER_NODE = 400
"""The result table and JSON views per node (names, expressions, errors, ...)."""


def budget(graph: Graph, settings: Any) -> Budget:
    """Estimate a job's cost from its compiled graph (no data): every value, grad and edge gradient per engine,
    the table per node, the worker's peak (torch's and the reference's tensors alive together, plus the stored
    copies), and the finite-difference passes (each counted as a forward over the whole graph: an upper bound, as
    an evaluation recomputes only what the perturbed leaf reaches)."""
    itemsize = {"float64": 8, "int64": 8, "bool": 1}
    sizes = {k: leaf.size * itemsize.get(leaf.dtype, 4) for k, leaf in graph.leaves.items()}
    grads = {k: sizes[k] for k, leaf in graph.leaves.items() if leaf.requires_grad}
    edges, total_elements = 0, sum(leaf.size for leaf in graph.leaves.values())
    for n in graph.nodes:  # one pass, in graph order: a node's inputs are counted before it
        elems = math.prod(n.shape)
        total_elements += elems
        sizes[n.name] = b = elems * itemsize.get(n.dtype, 4)
        if n.requires_grad:
            grads[n.name] = b
            srcs = [i for i in n.inputs if isinstance(i, str) and i in grads]
            edges += sum(sizes[i] for i in (srcs if len(srcs) < 2 else set(srcs)))
    analytic = [e for e in graph.engines if e != "numeric"]
    small, large = 0, 0
    for b in (*sizes.values(), *grads.values()):
        small, large = (small + b, large) if b <= settings.inline_limit * 8 else (small, large + b)
    per_engine = sum(sizes.values()) + sum(grads.values()) + edges
    leaf_elems = [min(leaf.size, graph.numeric.max_elements_per_leaf) for leaf in graph.leaves.values() if leaf.requires_grad]
    passes = 2 * sum(leaf_elems) if "numeric" in graph.engines else 0
    # small tensors are always stored; large ones up to the job's cap (the rest keep a summary)
    kept = (small + edges) * len(analytic) + min(large * len(analytic), settings.max_job_bytes)
    stored = kept + (sum(leaf.size * 9 for leaf in graph.leaves.values() if leaf.requires_grad) if passes else 0) \
        + TABLE_BYTES_PER_NODE * (len(graph.nodes) + len(graph.leaves))
    per_pass = 2e-6 * len(graph.nodes) + 2e-9 * total_elements  # one numpy forward, measured here: ~2 us a node
    seconds = len(analytic) * 3 * per_pass + passes * per_pass
    return Budget(stored_bytes=stored, peak_bytes=BASE_BYTES + 3 * per_engine * len(analytic), forward_passes=passes,
                  seconds=seconds)


def check_budget(graph: Graph, settings: Any) -> Budget:
    """Raise SpecError (a 422 before anything is queued) when the estimate is over the configured caps, with
    the figures; else the Budget."""
    b = budget(graph, settings)
    mib = 1024 * 1024
    if b.stored_bytes > settings.max_result_bytes:
        raise SpecError(f"the result would be about {b.stored_bytes / mib:.0f} MiB (values, grads and edge gradients of "
                        f"{len(graph.nodes)} nodes per engine), over the cap of {settings.max_result_bytes / mib:.0f} MiB "
                        "(GRADTRACE_MAX_RESULT_BYTES): use smaller tensors, fewer engines, or fewer nodes")
    if b.peak_bytes > settings.max_worker_bytes:
        raise SpecError(f"a worker would need about {b.peak_bytes / mib:.0f} MiB for this job, over the cap of "
                        f"{settings.max_worker_bytes / mib:.0f} MiB (GRADTRACE_MAX_WORKER_BYTES)")
    if b.seconds > 0.8 * settings.soft_time_limit_s:
        what = (f"{b.forward_passes} finite-difference forward passes" if b.forward_passes else "the engines")
        raise SpecError(f"{what} of this {len(graph.nodes)}-node graph would take about {b.seconds:.0f} s, more than the "
                        f"time limit of {settings.soft_time_limit_s} s allows"
                        + ("; lower numeric.max_elements_per_leaf or drop 'numeric' from the engines" if b.forward_passes else ""),
                        loc=("numeric",) if b.forward_passes else ())
    return b
