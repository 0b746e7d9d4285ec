"""A model spec's layer list (a chain, or a DAG through each layer's `inputs`) into parameter leaves and
nodes, through the same layer definitions a program's `nn.Conv2d(...)` uses."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.compiler.build import GraphBuilder, RawNode
from services.compiler.inputs import literal_array
from services.compiler.layers import LAYERS, Call, Emitter, add_params, param_event
from services.errors import SpecError
from services.ir import Event, Stream
from shared.spec import ModelSpec


def compile_model(model: ModelSpec, builder: GraphBuilder, dtype: str, max_elements: int) -> tuple[str, Stream]:
    """Add the model's parameters and nodes to `builder`; returns the loss node and the torch stream that
    initialises the parameters (torch.manual_seed(model.seed), then each layer's torch.nn class in order) and then
    draws the forward's dropout masks, as `nn.Sequential(...)` made first and then called does.

    Parameters are named like the state_dict ('0.weight', 'conv.bias' for a layer named 'conv'); a layer's
    output node is '<name>.out' for a named layer, else '<index>.<type>'."""
    if model.input not in builder.leaves:
        raise SpecError(f"model input '{model.input}' is not among the inputs", loc=("model", "input"))
    stream = Stream("torch", model.seed)
    made = []  # as torch runs nn.Sequential(...)(x): every layer made (its draws) before the forward's dropout masks
    for i, layer in enumerate(model.layers):
        loc: tuple[str | int, ...] = ("model", "layers", i)
        d = LAYERS[layer.type]
        prefix = layer.name or str(i)
        if layer.name is not None and (layer.name in (m[2] for m in made) or layer.name.isdigit()):
            raise SpecError(f"layer name '{layer.name}' is used twice or looks like an index", loc=(*loc, "name"))
        try:
            event = param_event(d, layer, dtype)
        except ValueError as e:
            raise SpecError(str(e), loc=loc) from None
        if event is not None:
            stream.events.append(event)
        params = add_params(d, layer, prefix, dtype, event, builder, loc)
        _assign_weights(layer, params, builder, stream, dtype, max_elements, loc)
        made.append((layer, d, prefix, params, loc))
    outputs: dict[str, str] = {}
    prev = model.input
    for i, (layer, d, prefix, params, loc) in enumerate(made):
        inputs = [_resolve(ref, outputs, builder, (*loc, "inputs", k)) for k, ref in enumerate(layer.inputs)] if layer.inputs else [prev]
        if len(inputs) < d.min_inputs or (d.max_inputs is not None and len(inputs) > d.max_inputs):
            want = f"at least {d.min_inputs}" if d.max_inputs is None else str(d.max_inputs)
            raise SpecError(f"a {layer.type} layer takes {want} input(s), got {len(inputs)}", loc=(*loc, "inputs"))
        e = Emitter(builder, stream, dtype, loc=loc)
        out = d.emit(e, Call(layer, params, inputs, f"{prefix}.out" if layer.name else f"{i}.{layer.type}", prefix))
        outputs[prefix] = prev = out

    loss = model.loss
    loc = ("model", "loss")
    x = _resolve(loss.input, outputs, builder, (*loc, "input")) if loss.input else prev
    if loss.type in ("sum", "mean"):
        builder.add(RawNode("loss", loss.type, [x], {}, expr=f"{x}.{loss.type}()", loc=loc))
    else:
        if loss.target not in builder.leaves:
            raise SpecError(f"loss target '{loss.target}' is not among the inputs", loc=(*loc, "target"))
        op = "mse_loss" if loss.type == "mse" else "cross_entropy"
        builder.add(RawNode("loss", op, [x, loss.target], {"reduction": loss.reduction},
                            expr=f"{op}({x}, {loss.target}, reduction='{loss.reduction}')", loc=loc))
    return "loss", stream


def _resolve(ref: str, outputs: dict[str, str], builder: GraphBuilder, loc: tuple[str | int, ...]) -> str:
    """A layer reference: an earlier layer's name or index, or a model input."""
    if ref in outputs:
        return outputs[ref]
    if ref in builder.leaves and builder.leaves[ref].kind == "input":
        return ref
    raise SpecError(f"'{ref}' is no earlier layer (by name or index) and no input", loc=loc)


def _assign_weights(
    layer: Any, params: dict[str, str], builder: GraphBuilder, stream: Stream, dtype: str, max_elements: int,
    loc: tuple[str | int, ...],
) -> None:
    """Explicit `weights` replace the drawn values (the draws still happen, so later layers keep theirs)."""
    for pname, given in (getattr(layer, "weights", None) or {}).items():
        wloc = (*loc, "weights", pname)
        if pname not in params:
            raise SpecError(f"this layer has no parameter '{pname}' (it has {sorted(params) or 'none'})", loc=wloc)
        value = literal_array(given, dtype, wloc, max_elements)
        want = builder.leaves[params[pname]].shape
        if value.shape != want:
            raise SpecError(f"given {pname} has shape {list(value.shape)}, the layer needs {list(want)}", loc=wloc)
        builder.leaves[params[pname]].init = "given"
        stream.events.append(Event("assign", params[pname], {"value": np.asarray(value)}))
