"""Indexing ops: getitem (ints, slices, None, Ellipsis, integer lists and tensors, with torch's semantics),
index_select and gather; gradients scatter back, accumulating on repeated indices."""

from __future__ import annotations
