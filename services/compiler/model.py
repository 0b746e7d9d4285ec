"""Expand a Sequential-style model spec into parameter leaves and raw nodes."""

from __future__ import annotations

import math

import numpy as np

from services.compiler.build import RawNode
from services.errors import SpecError
from services.ir import Leaf
from services.ops.base import pair
from shared.spec import Conv2dLayer, LinearLayer, ModelSpec


def _param(
    name: str, shape: tuple[int, ...], given: object, bound: float, rng: np.random.Generator, dtype: str, loc: tuple
) -> Leaf:
    """A parameter leaf: the given value, or uniform(-bound, bound) as torch's default init draws it."""
    if given is not None:
        try:
            value = np.array(given, dtype=np.float64)
        except (ValueError, TypeError):
            raise SpecError("weights must be a rectangular nested list of numbers", loc=loc) from None
        if value.shape != shape:
            raise SpecError(f"given {name} has shape {list(value.shape)}, the layer needs {list(shape)}", loc=loc)
        rng.uniform(-bound, bound, size=shape)  # keep later layers' draws independent of this choice
        return Leaf(name, value.astype(dtype), True, kind="parameter", init="given")
    value = rng.uniform(-bound, bound, size=shape)
    return Leaf(name, value.astype(dtype), True, kind="parameter", init=f"uniform(-{bound:.6g}, {bound:.6g})")


def compile_model(model: ModelSpec, inputs: dict[str, Leaf], dtype: str) -> tuple[dict[str, Leaf], list[RawNode]]:
    """Parameters named like nn.Sequential's state_dict ('0.weight'), and one node per layer plus the loss.

    Missing weights follow torch's default bounds (kaiming_uniform with a=sqrt(5): 1/sqrt(fan_in),
    the same for biases) drawn from numpy's PCG64 seeded with `model.seed`, in layer order."""
    if model.input not in inputs:
        raise SpecError(f"model input '{model.input}' is not among the inputs", loc=("model", "input"))
    rng = np.random.Generator(np.random.PCG64(model.seed))
    params: dict[str, Leaf] = {}
    raws: list[RawNode] = []
    prev = model.input
    for i, layer in enumerate(model.layers):
        prefix = layer.name or str(i)
        loc: tuple[str | int, ...] = ("model", "layers", i)
        node = f"{prefix}.out" if layer.name else f"{i}.{layer.type}"
        given = (getattr(layer, "weights", None) or {}) if isinstance(layer, (Conv2dLayer, LinearLayer)) else {}
        inputs_: list[str | float] = [prev]
        args: dict[str, object] = {}
        if isinstance(layer, Conv2dLayer):
            kh, kw = pair(layer.kernel_size)
            if layer.in_channels % layer.groups or layer.out_channels % layer.groups:
                raise SpecError(f"channels {layer.in_channels}->{layer.out_channels} are not divisible by groups={layer.groups}", loc=loc)
            wshape = (layer.out_channels, layer.in_channels // layer.groups, kh, kw)
            fan_in = wshape[1] * kh * kw
            bound = 1 / math.sqrt(fan_in)
            for pname, shape in (("weight", wshape), ("bias", (layer.out_channels,))):
                if pname == "bias" and not layer.bias:
                    continue
                leaf = _param(f"{prefix}.{pname}", shape, given.get(pname), bound, rng, dtype, (*loc, "weights", pname))
                params[leaf.name] = leaf
                inputs_.append(leaf.name)
            args = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation, "groups": layer.groups}
            op = "conv2d"
        elif isinstance(layer, LinearLayer):
            bound = 1 / math.sqrt(layer.in_features)
            for pname, shape in (("weight", (layer.out_features, layer.in_features)), ("bias", (layer.out_features,))):
                if pname == "bias" and not layer.bias:
                    continue
                leaf = _param(f"{prefix}.{pname}", shape, given.get(pname), bound, rng, dtype, (*loc, "weights", pname))
                params[leaf.name] = leaf
                inputs_.append(leaf.name)
            op = "linear"
        elif layer.type == "dropout":
            continue
        else:
            op = layer.type
            args = layer.model_dump(exclude={"type", "name"})
        if layer.type in ("max_pool2d", "avg_pool2d") and args.get("stride") is None:
            args.pop("stride", None)
        raws.append(RawNode(node, op, inputs_, args, expr=f"{op}({', '.join(map(str, inputs_))})", loc=loc))
        prev = node

    loss = model.loss
    loc = ("model", "loss")
    if loss.type in ("sum", "mean"):
        raws.append(RawNode("loss", loss.type, [prev], {}, expr=f"{prev}.{loss.type}()", loc=loc))
    else:
        if loss.target not in inputs:
            raise SpecError(f"loss target '{loss.target}' is not among the inputs", loc=(*loc, "target"))
        op = "mse_loss" if loss.type == "mse" else "cross_entropy"
        raws.append(
            RawNode("loss", op, [prev, loss.target], {"reduction": loss.reduction},
                    expr=f"{op}({prev}, {loss.target}, reduction='{loss.reduction}')", loc=loc)
        )
    return params, raws
