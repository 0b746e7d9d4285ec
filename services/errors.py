"""Errors a spec can raise, each naming where in the spec it is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SpecError(ValueError):
    """A spec that cannot be traced: carries the field path, node and source position."""

    def __init__(
        self,
        message: str,
        *,
        loc: tuple[str | int, ...] = (),
        node: str | None = None,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        self.message = message
        self.loc = loc
        self.node = node
        self.line = line
        self.col = col
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.loc:
            where.append(".".join(str(p) for p in self.loc))
        if self.node:
            where.append(f"node '{self.node}'")
        if self.line is not None:
            where.append(f"line {self.line}" + (f", col {self.col}" if self.col is not None else ""))
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, object]:
        """JSON form for API error bodies."""
        return {
            "type": "spec_error",
            "msg": self.message,
            "loc": list(self.loc),
            "node": self.node,
            "line": self.line,
            "col": self.col,
        }


class ShapeError(ValueError):
    """Raised by an op's shape rule; the compiler adds the node and its input shapes."""


class CancelledError(RuntimeError):
    """Raised between trace steps when the job was cancelled."""


def argument_error(err: Mapping[str, Any]) -> str:
    """One validation error of an op's or a module's arguments (a pydantic error dict) in torch's terms: an argument
    gradtrace does not trace, a value of it that gradtrace does not trace, a missing one, or the check's own words."""
    where = ".".join(str(p) for p in err.get("loc", ()))
    kind, msg = err.get("type"), str(err.get("msg", "")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"the argument '{where}' is not one gradtrace traces (or torch takes: check its spelling)"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{where}={err.get('input')!r} is not traced (gradtrace takes {where}={expected})"
    if kind == "missing":
        return f"the argument '{where}' is required"
    if kind == "none_required":  # nn.Embedding(max_norm=1.0): a setting gradtrace traces only at its default
        return f"{where}={err.get('input')!r} is not traced (gradtrace takes {where}=None, torch's default)"
    return f"argument '{where}': {msg}" if where else msg
