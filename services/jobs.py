"""Job rules shared by the API and the worker: trace limits, which tensors to keep, where a tensor is."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    """What a job stores in full, and its manifest entries as plain data: a 10k-node job has ~40k tensors,
    and a pydantic object per entry would cost more than writing them."""

    chosen: dict[str, np.ndarray] = field(default_factory=dict)
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    """'engine/field/name' -> the fields of a StoredTensor (dtype, shape, nbytes, offset)."""
    not_kept: dict[str, str] = field(default_factory=dict)
    nbytes: int = 0

    def manifest_json(self) -> str:
        """The Manifest (shared.job) as JSON."""
        return json.dumps({"stored": self.stored, "not_kept": self.not_kept, "nbytes": self.nbytes},
                          separators=(",", ":"), ensure_ascii=False)


def select_tensors(
    arrays: dict[str, np.ndarray], keep: str | list[str] | None, max_bytes: int, inline_limit: int,
    names_of: Callable[[str], tuple[str, ...]],
) -> Selection:
    """The arrays to store: every small one (up to `inline_limit` elements: the result's numbers), then the large
    ones named by `keep` (names_of(key) gives the node names a key belongs to), in order, within `max_bytes`."""
    wanted = None if keep is None or keep == "all" else set(keep)
    sel = Selection()
    nbytes = 0
    for small in (True, False):
        for key, a in arrays.items():
            if (a.size <= inline_limit) != small:
                continue
            if not small and wanted is not None and not wanted.intersection(names_of(key)):
                sel.not_kept[key] = "not kept: not named in the spec's 'keep'"
            elif not small and nbytes + a.nbytes > max_bytes:
                sel.not_kept[key] = f"not kept: over the job's cap of {max_bytes} stored bytes"
            else:
                sel.chosen[key] = a
                sel.stored[key] = {"dtype": dtype_name(a.dtype), "shape": list(a.shape), "nbytes": a.nbytes, "offset": None}
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
