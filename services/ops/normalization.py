"""Normalisation and lookup ops: batch_norm (training mode), layer_norm, group_norm, embedding."""

from __future__ import annotations
