"""scaled_dot_product_attention, with an optional mask or causal masking."""

from __future__ import annotations
