"""Comparisons (bool results, no gradient) and the ops that select by them: where, clamp, maximum, minimum."""

from __future__ import annotations
