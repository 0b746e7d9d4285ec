"""Engines that run a Graph forward and backward: torch, our numpy reference, finite differences."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Edge = tuple[str, str]
"""(src, dst): the gradient that flowed from node dst back into its input src."""


@dataclass
class AutogradMeta:
    """What torch says about each tensor's place in the autograd graph, in graph order (leaves, then nodes):
    its grad_fn's name and, per entry of next_functions, [grad_fn name, the graph node it leads to]."""

    grad_fn: list[str | None]
    next_functions: list[list[list[str | None]]]


@dataclass
class EngineRun:
    """One engine's values, grads and edge gradients, by node name."""

    engine: str
    values: dict[str, np.ndarray] = field(default_factory=dict)
    grads: dict[str, np.ndarray | None] = field(default_factory=dict)
    edges: dict[Edge, np.ndarray] = field(default_factory=dict)
    autograd: AutogradMeta | None = None
    """torch only: grad_fn and next_functions per tensor."""
    checked: dict[str, np.ndarray] = field(default_factory=dict)
    """Finite differences only: which elements of each grad were evaluated (the rest are NaN, not checked)."""
    seconds: float = 0.0
