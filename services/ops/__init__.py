"""Every op gradtrace knows, registered by importing its family module."""

from __future__ import annotations

from services.ops import (  # noqa: F401
    activations,
    attention,
    cast,
    comparison,
    conv,
    cumulative,
    decompositions,
    distance,
    dropout,
    einsum,
    elementwise,
    embedding,
    indexing,
    linalg,
    losses,
    matrices,
    normalization,
    pieces,
    pointwise,
    pool,
    reductions,
    resample,
    rolling,
    scatter,
    searching,
    shaping,
    sorting,
    special,
    statistics,
    weight_norm,
    windows,
)
from services.ops.base import REGISTRY, Op

__all__ = ["REGISTRY", "Op", "get_op"]


def get_op(name: str) -> Op | None:
    """The op registered under `name`, or None."""
    return REGISTRY.get(name)
