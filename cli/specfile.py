"""Read a spec from a .json file (a TraceSpec) or a .py file (a program)."""

from __future__ import annotations

import json
from pathlib import Path

from shared.spec import TraceSpec


def load_spec(path: Path) -> TraceSpec:
    """Parse and validate; raises pydantic.ValidationError or ValueError with the reason."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return TraceSpec(program=text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    return TraceSpec.model_validate(data)
