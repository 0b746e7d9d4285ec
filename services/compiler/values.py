"""What a program's expressions evaluate to at compile time: tensors (graph names), Python constants,
torch dtypes, nn modules, torch.Generators, and objects whose methods gradtrace accepts but does not trace
(optimizers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.compiler.layers import LayerDef
from services.ir import Event, Stream

DTYPES = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
    "int64": "int64", "long": "int64", "bool": "bool",
}
"""torch dtype attribute names and the dtype each means."""


@dataclass(frozen=True)
class T:
    """A tensor: the name of a leaf or node in the graph."""

    name: str


@dataclass(frozen=True)
class DType:
    """torch.float32 and friends."""

    name: str


@dataclass
class ModuleInst:
    """An nn module the program built: its layer, config and (once it has a path) its parameter leaves."""

    layer: LayerDef | None
    """None for nn.Sequential."""
    cfg: Any
    event: Event | None = None
    """The torch stream event that draws its parameters; its targets are filled in when the module gets a path."""
    children: list[ModuleInst] = field(default_factory=list)
    path: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    training: bool = True

    @property
    def kind(self) -> str:
        """'Conv2d', 'Sequential', ..."""
        return self.layer.module or self.layer.type if self.layer else "Sequential"

    def set_training(self, flag: bool) -> None:
        """model.train() / model.eval(): recursively."""
        self.training = flag
        for c in self.children:
            c.set_training(flag)


@dataclass(frozen=True)
class Untraced:
    """An object the program may use only in ways that do not change the trace (an optimizer,
    model.parameters(), max's indices); `what` says what it is in messages."""

    what: str


@dataclass
class Generator:
    """A torch.Generator the program made: its own stream of draws (`torch.randn(..., generator=g)`)."""

    stream: Stream


Value = Any
"""T | int | float | bool | str | None | tuple | list | DType | ModuleInst | Untraced."""


def is_number(v: Value) -> bool:
    """A Python int or float (bools are not numbers here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)
