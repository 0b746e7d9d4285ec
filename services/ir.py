"""The graph IR every spec form compiles to: leaves with values, and op nodes in topological order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel

from services.ops.base import Op

Input = str | float
"""A node input: the name of a leaf or node, or a Python scalar constant."""


@dataclass
class Leaf:
    """A tensor the user provides (or a model parameter), differentiated if `requires_grad`."""

    name: str
    value: np.ndarray
    requires_grad: bool
    kind: str = "input"
    """'input' or 'parameter'."""
    init: str = "given"
    """How the value was made, enough to reproduce it (e.g. 'uniform(-0.5, 0.5) seed=0')."""
    expr: str = ""


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


@dataclass
class Graph:
    """A compiled spec: ready for any engine."""

    leaves: dict[str, Leaf]
    nodes: list[Node]
    output: str
    grad_output: np.ndarray | None
    dtype: str = "float32"
    device: str = "cpu"
    engines: list[str] = field(default_factory=lambda: ["torch", "reference"])
    numeric: Any = None
    keep: Any = None

    def shape_of(self, name: str) -> tuple[int, ...]:
        """Shape of a leaf or node."""
        if name in self.leaves:
            return tuple(self.leaves[name].value.shape)
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
