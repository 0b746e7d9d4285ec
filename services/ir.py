"""The graph IR every spec form compiles to: leaves, op nodes in topological order, and the random
streams that make the leaves' values.

A compiled graph knows every shape and dtype but holds no generated data: values are made by
`services.materialize` in the worker, so that the API can check a spec without drawing its tensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from services.ops.base import Op

Input = str | float
"""A node input: the name of a leaf or node, or a Python scalar constant."""

TORCH_DEFAULT_SEED = 67280421310721
"""The seed a fresh torch.Generator starts from: the torch stream's seed when the program sets none."""


@dataclass
class Leaf:
    """A tensor the user provides (or a model parameter), differentiated if `requires_grad`."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool
    kind: str = "input"
    """'input' or 'parameter'."""
    init: str = "given"
    """How the value was made, enough to reproduce it (e.g. 'torch.rand(2, 3) seed=0')."""
    expr: str = ""
    value: np.ndarray | None = None
    """Set at compile time for literals, by `services.materialize` for generated tensors."""
    known_range: tuple[float, float] | None = None
    """(min, max) of an integer tensor's values when known before drawing (literals, randint bounds)."""

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Event:
    """One step of a random stream: `op` applied with `args`, writing leaf `target` (None: a draw the
    program made and did not keep, which still advances the generator)."""

    op: str
    target: str | None = None
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stream:
    """Events replayed in order on one generator: torch's CPU generator (under `torch.manual_seed(seed)`)
    or numpy's PCG64(seed)."""

    backend: Literal["torch", "numpy"]
    seed: int
    events: list[Event] = field(default_factory=list)


@dataclass
class Node:
    """`name = op(*inputs, **args)` with its inferred shape and dtype."""

    name: str
    op: Op
    inputs: list[Input]
    args: BaseModel
    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool
    expr: str = ""
    line: int | None = None
    writes: str | None = None
    """The tensor this node changes in place in the program (`x += 1`, `pe[:, 0] = ...`): a new node here, while
    torch bumps that tensor's version, so that an op that saved it fails at backward() as in torch."""
    in_place: bool = False
    """The program changed its input's shape in place (`h.unsqueeze_(0)`): the torch engine runs the op's in-place
    form on that tensor (torch's UnsqueezeBackward1, and its version bumped), keeping the tensor's earlier view."""


@dataclass(frozen=True)
class LeafGradient:
    """backward(gradient) given as a leaf the program drew (`out.backward(torch.randn(1, 10))`, the 60-minute blitz)."""

    name: str


@dataclass
class Graph:
    """A compiled spec: ready for `materialize`, then any engine."""

    leaves: dict[str, Leaf]
    nodes: list[Node]
    output: str
    grad_output: np.ndarray | None
    dtype: str = "float32"
    grad_output_leaf: str | None = None
    """The leaf whose value is grad_output (`out.backward(torch.randn(1, 10))`, drawn in the stream): materialize
    sets grad_output from it."""
    device: str = "cpu"
    engines: list[str] = field(default_factory=lambda: ["torch", "reference"])
    numeric: Any = None
    keep: Any = None
    streams: list[Stream] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the compiler accepted but did not trace (optimizer.step(), ...), for the user to read."""
    aliases: dict[str, str] = field(default_factory=dict)
    """The program's other names of tensors (`loss = total`: loss -> total), for finding a node by either."""

    def shape_of(self, name: str) -> tuple[int, ...]:
        """Shape of a leaf or node."""
        if name in self.leaves:
            return self.leaves[name].shape
        return self.node(name).shape

    def node(self, name: str) -> Node:
        """The op node called `name`."""
        return self._by_name()[name]

    def _by_name(self) -> dict[str, Node]:
        if getattr(self, "_index", None) is None or len(self._index) != len(self.nodes):
            self._index = {n.name: n for n in self.nodes}
        return self._index

    def names(self) -> list[str]:
        """Leaves then nodes, in evaluation order."""
        return list(self.leaves) + [n.name for n in self.nodes]

    def leaf_values(self) -> dict[str, np.ndarray]:
        """Every leaf's value; raises if the graph was not materialized."""
        missing = [k for k, v in self.leaves.items() if v.value is None]
        if missing:
            raise RuntimeError(f"leaves {missing[:5]} have no value: call services.materialize.materialize first")
        return {k: v.value for k, v in self.leaves.items()}  # type: ignore[misc]
