"""A program's own torch.autograd.Function (`class MyReLU(torch.autograd.Function)` with forward(ctx, ...) and
backward(ctx, grad)): one op per Function.apply call, whose forward and backward are the program's two bodies,
compiled to nodes of registered ops. torch runs them inside a torch.autograd.Function of the same name (so its
grad_fn is torch's `MyReLUBackward`); the reference engine runs the same nodes in numpy; finite differences of the
forward then check the program's backward."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.ops.base import Array, Op, Shape


@dataclass
class Body:
    """A compiled function body: the names its values come in under (in order), its nodes (services.ir.Node) in
    order, and the names it gives back (None: no gradient)."""

    inputs: list[str]
    nodes: list[Any]
    outputs: list[str | None]
    constants: dict[str, Array] = field(default_factory=dict)
    """Tensors the body makes from numbers alone (`torch.zeros(3)`), by name."""

    def run_torch(self, t: Any, args: list[Any]) -> dict[str, Any]:
        """Every value, torch running each node's op."""
        device = args[0].device if args else None
        values: dict[str, Any] = {k: t.from_numpy(v.copy()).to(device) for k, v in self.constants.items()}
        values.update(zip(self.inputs, args, strict=True))
        for node in self.nodes:
            values[node.name] = node.op.torch(t, [values[i] if isinstance(i, str) else i for i in node.inputs], node.args)
        return values

    def run_numpy(self, args: list[Array]) -> dict[str, Array]:
        """Every value, each node's reference forward; float results in the node's dtype, or float64 throughout
        when the values come in float64 (finite differences)."""
        wide = any(np.asarray(a).dtype == np.float64 for a in args)
        values: dict[str, Array] = dict(self.constants)
        values.update(zip(self.inputs, args, strict=True))
        for node in self.nodes:
            want = np.dtype(node.dtype)
            if want.kind == "f" and wide:
                want = np.dtype(np.float64)
            xs = [values[i] if isinstance(i, str) else np.asarray(i, dtype=want) if want.kind == "f" else np.asarray(i)
                  for i in node.inputs]
            out = np.asarray(node.op.forward(xs, node.args))
            values[node.name] = out if out.dtype == want else out.astype(want)
        return values


class CustomFunction(Op):
    """One call of a program's autograd.Function: inputs are its tensor arguments (the numbers it took are part of
    the bodies), then tensors of the program the bodies read without taking them (no gradient flows to those,
    as torch runs forward without a graph)."""

    any_dtype = True  # the bodies' own ops check their dtypes

    def __init__(self, cls_name: str, forward: Body, saved: list[str], backward: Body, n_args: int, shape: Shape,
                 dtype: str, n_saved: int | None = None) -> None:
        self.name = f"{cls_name}.apply"  # type: ignore[misc]
        self.cls_name = cls_name
        self.fwd, self.saved, self.bwd = forward, saved, backward
        self.n_args = n_args
        self.n_saved = len(saved) if n_saved is None else n_saved
        """How many of `saved` forward saves with ctx.save_for_backward (version-checked by torch, as the program's);
        the rest are ctx attributes, which torch does not check."""
        self.out_shape, self.out_dtype = shape, dtype
        n_in = len(forward.inputs) + len([i for i in backward.inputs[len(saved) + 1:]])
        self.tensors = tuple(f"input{k}" for k in range(n_in))  # type: ignore[misc]
        self.differentiable = (True,) * n_args + (False,) * (n_in - n_args)  # type: ignore[misc]
        self._function: Any = None

    def __str__(self) -> str:
        return self.name

    def shape(self, shapes: list[Shape], a: Any) -> Shape:
        return self.out_shape

    def dtype_for(self, dtypes: list[str], a: Any) -> str:
        return self.out_dtype

    def split(self, xs: list[Any]) -> tuple[list[Any], list[Any]]:
        """The forward body's values (arguments and what it reads of the program) and the backward's extra reads."""
        n = len(self.fwd.inputs)
        return xs[:n], xs[n:]

    def torch(self, t: Any, xs: list[Any], a: Any) -> Any:
        if self._function is None:
            self._function = self.torch_function(t)
        return self._function.apply(*xs)

    def torch_function(self, t: Any) -> Any:
        """A torch.autograd.Function named as the program's class, running the two bodies."""
        op = self

        def forward(ctx: Any, *xs: Any) -> Any:
            fwd_in, bwd_in = op.split(list(xs))
            values = op.fwd.run_torch(t, fwd_in)
            ctx.save_for_backward(*[values[k] for k in op.saved[:op.n_saved]])
            ctx.kept = [values[k] for k in op.saved[op.n_saved:]], bwd_in  # (attributes, as the program's ctx.x)
            return values[op.fwd.outputs[0]]  # type: ignore[index]

        def backward(ctx: Any, grad: Any) -> Any:
            attrs, reads = ctx.kept
            values = op.bwd.run_torch(t, [*ctx.saved_tensors, *attrs, grad, *reads])
            grads = [values[k] if k is not None else None for k in op.bwd.outputs]
            return (*grads, *[None] * (len(op.tensors) - len(grads)))

        return type(self.cls_name, (t.autograd.Function,), {"forward": staticmethod(forward), "backward": staticmethod(backward)})

    def forward_saving(self, xs: list[Array], a: Any) -> tuple[Array, Any]:
        values = self.fwd.run_numpy(self.split(xs)[0])
        return values[self.fwd.outputs[0]], values  # type: ignore[index]

    def forward(self, xs: list[Array], a: Any) -> Array:
        return self.forward_saving(xs, a)[0]

    def backward_saved(self, g: Array, out: Array, xs: list[Array], a: Any, saved: Any,
                       needs: tuple[bool, ...] | None = None) -> list[Array | None]:
        values = saved if saved is not None else self.forward_saving(xs, a)[1]
        back = self.bwd.run_numpy([*[values[k] for k in self.saved], g, *self.split(xs)[1]])
        grads: list[Array | None] = [back[k] if k is not None else None for k in self.bwd.outputs]
        return [*grads, *[None] * (len(xs) - len(grads))]

    def backward(self, g: Array, out: Array, xs: list[Array], a: Any) -> list[Array | None]:
        return self.backward_saved(g, out, xs, a, None)
