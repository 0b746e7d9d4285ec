"""Engines that run a Graph forward and backward: torch, our numpy reference, finite differences."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Edge = tuple[str, str]
"""(src, dst): the gradient that flowed from node dst back into its input src."""


@dataclass
class NodeMeta:
    """What torch says about a tensor's place in the autograd graph."""

    grad_fn: str | None
    next_functions: list[tuple[str | None, str | None]]
    is_leaf: bool
    requires_grad: bool


@dataclass
class EngineRun:
    """One engine's values, grads and edge gradients, by node name."""

    engine: str
    values: dict[str, np.ndarray] = field(default_factory=dict)
    grads: dict[str, np.ndarray | None] = field(default_factory=dict)
    edges: dict[Edge, np.ndarray] = field(default_factory=dict)
    meta: dict[str, NodeMeta] = field(default_factory=dict)
    checked: dict[str, np.ndarray] = field(default_factory=dict)
    """Finite differences only: which elements of each grad were evaluated (the rest are NaN, not checked)."""
    seconds: float = 0.0
