"""torch.nn layers, defined once for both spec forms: a `model` spec's layer list and a program's
`nn.Conv2d(...)`. Each LayerDef holds the layer's constructor schema (torch's argument names, order and
defaults), its parameters in torch's registration order, and the nodes a call adds to the graph."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel

from services import strides
from services.compiler import composites
from services.compiler.build import GraphBuilder, RawNode
from services.errors import SpecError
from services.ir import Event, Input, Leaf, Stream
from services.ops.base import pair
from shared.spec import (
    ActivationLayer,
    AdaptivePool1dLayer,
    AdaptivePoolLayer,
    AddLayer,
    BatchNormLayer,
    CatLayer,
    CeluLayer,
    ChannelDropoutLayer,
    Conv1dLayer,
    Conv2dLayer,
    ConvTranspose1dLayer,
    ConvTranspose2dLayer,
    DropoutLayer,
    EdgePadLayer,
    EluLayer,
    EmbeddingBagLayer,
    EmbeddingLayer,
    FlattenLayer,
    GeluLayer,
    GluLayer,
    GroupNormLayer,
    HardtanhLayer,
    InstanceNormLayer,
    LayerNormLayer,
    LeakyReluLayer,
    LinearLayer,
    MaxPool2dLayer,
    PadLayer,
    PixelShuffleLayer,
    Pool1dLayer,
    Pool2dLayer,
    PReLULayer,
    RMSNormLayer,
    ShrinkLayer,
    SoftmaxLayer,
    SoftplusLayer,
    ThresholdLayer,
    UnflattenLayer,
    UpsampleLayer,
)

Shape = tuple[int, ...]
NOT_CTOR = frozenset({"name", "inputs", "type", "weights", "causal"})
"""Schema fields that are not torch constructor arguments."""

CONV_TUPLES = ("kernel_size", "stride", "padding", "dilation", "output_padding")


def torch_attribute(kind: str, attr: str, cfg: Any) -> Any:
    """A layer's setting as torch's module holds it: a conv's kernel_size, stride, padding, ... a tuple of one int
    per spatial dim (`m.kernel_size[0]` in the ResNet paper's init), a norm's normalized_shape a tuple, a pool's
    stride its kernel_size when not given (nn.MaxPool2d(2).stride is 2)."""
    v = getattr(cfg, attr)
    if attr == "stride" and v is None and kind.startswith(("MaxPool", "AvgPool")):
        v = cfg.kernel_size
    if kind == "AvgPool1d" and attr in ("kernel_size", "stride", "padding") and isinstance(v, int):
        return (v,)  # (torch's AvgPool1d keeps 1-tuples; MaxPool1d and the 2d pools keep ints)
    dims = int(kind[-2]) if kind.startswith(("Conv", "ConvTranspose")) and kind[-2].isdigit() else 0
    if dims and attr in CONV_TUPLES and isinstance(v, int) or attr == "normalized_shape" and isinstance(v, int):
        return (v,) * max(dims, 1)
    return tuple(v) if isinstance(v, list) else v


@dataclass
class Emitter:
    """Adds a layer's nodes to the graph, with the source position errors should name."""

    builder: GraphBuilder
    stream: Stream
    dtype: str
    loc: tuple[str | int, ...] = ()
    line: int | None = None
    col: int | None = None
    texts: dict[str, str] = field(default_factory=dict)
    """Source text to show for some nodes (a program's `conv(x)` for the call's output)."""

    def node(self, name: str, op: str, inputs: list[Input], args: dict[str, Any] | None = None, expr: str = "") -> str:
        """Check and add `name = op(*inputs, **args)`; returns its name."""
        expr = expr or self.texts.get(name) or f"{op}({', '.join(str(i) for i in inputs)})"
        self.builder.add(RawNode(name, op, list(inputs), args or {}, expr, self.line, self.col, self.loc))
        return name

    def shape(self, name: str) -> Shape:
        """Shape of a name already in the graph."""
        return self.builder.shapes[name]

    def error(self, message: str, node: str | None = None) -> SpecError:
        """A SpecError at this layer's position."""
        return SpecError(message, loc=self.loc, node=node, line=self.line, col=self.col)

    def unique(self, name: str) -> str:
        """`name`, or name#2, name#3, ... when a module called again already made one (a dropout's mask)."""
        k, out = 1, name
        while out in self.builder:
            k += 1
            out = f"{name}#{k}"
        return out

    def latest(self, name: str) -> str | None:
        """The last of name, name#2, name#3, ... in the graph (what `unique` handed out), or None."""
        if name not in self.builder:
            return None
        k = 2
        while f"{name}#{k}" in self.builder:
            k += 1
        return name if k == 2 else f"{name}#{k - 1}"

    def buffer(self, name: str, size: int, fill: float, like: str | None = None, dtype: str | None = None) -> str:
        """A module's buffer as a fresh module holds it (a BatchNorm's running_mean: zeros), a leaf of `like`'s dtype
        (or `dtype`)."""
        dtype = dtype or self.builder.dtypes[like or ""]
        leaf = Leaf(name, (size,), dtype, False, init=f"torch.full(({size},), {fill:g}) (the module's buffer)",
                    value=np.full((size,), fill, dtype=dtype))
        self.builder.add_leaf(leaf, self.loc)
        self.builder.module_buffers.add(name)
        return name

    def dropout_mask(self, name: str, like: str, p: float, shape: Shape | None = None) -> str:
        """A leaf holding torch's dropout noise for `like` (bernoulli(1 - p) / (1 - p)), drawn here in order. torch
        fills it in `like`'s memory order (empty_like keeps a dense tensor's strides): for a transposed one
        (nn.MultiheadAttention's batch_first output, `x.permute(1, 0, 2) + pe`) the leaf is drawn in that order and
        permuted to `like`'s shape; `shape`: the mask of a new tensor of that shape (row-major)."""
        name = self.unique(name)
        strided = self.builder.strides.get(like) if shape is None else None  # `shape`: a new tensor's (row-major)
        shape = shape or self.shape(like)
        order = strides.memory_order(shape, strides.like(shape, strided)) if strided else None
        drawn = shape if order is None else tuple(shape[d] for d in order)
        leaf = Leaf(name, drawn, self.builder.dtypes[like], False, init=f"dropout mask, p={p:g}")
        self.builder.add_leaf(leaf, self.loc)
        self.stream.events.append(Event("dropout_mask", name, {"p": p}))
        if order is None:
            return name
        return self.node(self.unique(f"{name}.layout"), "permute", [name], {"dims": [order.index(i) for i in range(len(order))]})


@dataclass
class Call:
    """One application of a layer: its config, parameter leaves (attr -> name), inputs, and names."""

    cfg: Any
    params: dict[str, str]
    inputs: list[str]
    out: str
    """The output node's name."""
    prefix: str
    """The layer's path ('conv', 'net.0'): names its parameters and its other nodes."""
    training: bool = True
    states: dict[str, str] = field(default_factory=dict)
    """Outputs besides `out`, by name: a recurrent layer's final states ('h_n', 'c_n'), attention weights."""
    options: dict[str, Any] = field(default_factory=dict)
    """What a program's call gives besides the input (an attention's key, value and masks)."""


Emit = Callable[[Emitter, Call], str]
"""emit(e, call) adds the call's nodes and returns the name of its output (the input itself for an identity)."""


@dataclass(frozen=True)
class LayerDef:
    """One layer type: `type` in model specs, `module` in torch.nn, its schema, parameters and call."""

    type: str
    module: str | None
    schema: type[BaseModel]
    emit: Emit
    params: Callable[[Any], list[tuple[str, Shape]]] = field(default=lambda cfg: [])
    torch_kwargs: Callable[[Any], dict[str, Any]] | None = None
    """Arguments of the torch.nn class that draws the default init (None: the schema's constructor fields)."""
    min_inputs: int = 1
    max_inputs: int | None = 1

    def positional(self) -> list[str]:
        """Constructor arguments a program may give positionally, in torch's order."""
        return [f for f in self.schema.model_fields if f not in NOT_CTOR]

    def ctor_kwargs(self, cfg: Any) -> dict[str, Any]:
        """What to pass the torch.nn class to build the same parameters."""
        if self.torch_kwargs is not None:
            return self.torch_kwargs(cfg)
        return {k: v for k, v in cfg.model_dump().items() if k not in NOT_CTOR and k not in ("inplace",)}


LAYERS: dict[str, LayerDef] = {}
BY_MODULE: dict[str, LayerDef] = {}
SUBCLASS_OF = {"NonDynamicallyQuantizableLinear": "Linear"}
"""torch.nn classes gradtrace makes only as parts (nn.MultiheadAttention's out_proj) and the class they derive from:
isinstance(m, nn.Linear) holds, type(m) is nn.Linear does not."""


def layer(d: LayerDef) -> LayerDef:
    """Register a LayerDef under its type and its torch.nn class name."""
    LAYERS[d.type] = d
    if d.module:
        BY_MODULE[d.module] = d
    return d


def _with_params(op: str, args: Callable[[Any], dict[str, Any]], order: tuple[str, ...]) -> Emit:
    """A single node `op(x, *params in order, **args(cfg))`."""

    def emit(e: Emitter, c: Call) -> str:
        return e.node(c.out, op, [c.inputs[0], *[c.params[p] for p in order if p in c.params]], args(c.cfg))

    return emit


def _plain(op: str, args: Callable[[Any], dict[str, Any]] = lambda cfg: {}) -> Emit:
    return _with_params(op, args, ())


# ---- layers with parameters -------------------------------------------------------------------


def _kernel(c: Conv2dLayer | ConvTranspose2dLayer) -> tuple[int, ...]:
    """The kernel's sizes: (KH, KW) for 2-d layers, (K,) for 1-d ones."""
    if c.type.endswith("1d"):
        return (c.kernel_size if isinstance(c.kernel_size, int) else c.kernel_size[0],)
    return pair(c.kernel_size)


def _conv_params(c: Conv2dLayer) -> list[tuple[str, Shape]]:
    if c.in_channels % c.groups or c.out_channels % c.groups:
        raise ValueError(f"channels {c.in_channels}->{c.out_channels} are not divisible by groups={c.groups}")
    return [("weight", (c.out_channels, c.in_channels // c.groups, *_kernel(c)))] + ([("bias", (c.out_channels,))] if c.bias else [])


def _conv_transpose_params(c: ConvTranspose2dLayer) -> list[tuple[str, Shape]]:
    if c.in_channels % c.groups or c.out_channels % c.groups:
        raise ValueError(f"channels {c.in_channels}->{c.out_channels} are not divisible by groups={c.groups}")
    return [("weight", (c.in_channels, c.out_channels // c.groups, *_kernel(c)))] + ([("bias", (c.out_channels,))] if c.bias else [])


def _edge_padding(c: Conv2dLayer | Conv1dLayer) -> list[int]:
    """torch's `_reversed_padding_repeated_twice`: F.pad's sides (last dim first) for a padding_mode other than zeros;
    'same' pads dilation * (kernel - 1) per dim, the extra one on the right."""
    kernel = _kernel(c)
    n = len(kernel)
    dilation = [c.dilation] * n if isinstance(c.dilation, int) else list(c.dilation)
    if c.padding == "valid":
        return [0, 0] * n
    if c.padding == "same":
        sides = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for d, k in zip(dilation, kernel, strict=True)]
    else:
        sides = [(p, p) for p in ([c.padding] * n if isinstance(c.padding, int) else list(c.padding))]
    return [v for side in reversed(sides) for v in side]


def _conv(d: str) -> Emit:
    """conv(x): the conv op with the layer's weight and bias; with padding_mode 'reflect' / 'replicate' / 'circular'
    (the Time-Series-Library's TokenEmbedding), F.pad in that mode first and no padding in the conv, as torch's
    `_conv_forward`."""

    def emit(e: Emitter, call: Call) -> str:
        c: Conv2dLayer = call.cfg
        args = {"stride": c.stride, "padding": c.padding, "dilation": c.dilation, "groups": c.groups}
        x = call.inputs[0]
        if c.padding == "same" and any(s != 1 for s in ([c.stride] if isinstance(c.stride, int) else c.stride)):
            raise e.error("padding='same' is not supported for strided convolutions")  # (torch's own check, at __init__)
        sides = _edge_padding(c)
        if c.padding_mode != "zeros":
            x = e.node(e.unique(f"{call.prefix}.padded"), "pad", [x], {"pad": sides, "mode": c.padding_mode})
            args["padding"] = 0
        elif c.padding == "same" and sides[::2] != sides[1::2]:
            # an even effective kernel: ATen's _convolution_mode pads the extra one on the right (constant_pad_nd) and
            # convolves with the symmetric rest, as its warning says (a zero-padded copy of the input)
            x = e.node(e.unique(f"{call.prefix}.padded"), "pad", [x],
                       {"pad": [0 if k % 2 == 0 else sides[k] - sides[k - 1] for k in range(len(sides))], "value": 0.0})
            args["padding"] = list(reversed(sides[::2]))  # the left sides, first dim first
        return e.node(call.out, f"conv{d}", [x, *[call.params[p] for p in ("weight", "bias") if p in call.params]], args)

    return emit


for _d, _conv_layer, _transposed in (("2d", Conv2dLayer, ConvTranspose2dLayer), ("1d", Conv1dLayer, ConvTranspose1dLayer)):
    layer(LayerDef(f"conv{_d}", f"Conv{_d}", _conv_layer, _conv(_d), _conv_params))
    layer(LayerDef(
        f"conv_transpose{_d}", f"ConvTranspose{_d}", _transposed,
        _with_params(f"conv_transpose{_d}", lambda c: {"stride": c.stride, "padding": c.padding, "output_padding": c.output_padding,
                                                       "groups": c.groups, "dilation": c.dilation}, ("weight", "bias")),
        _conv_transpose_params,
    ))
layer(LayerDef(
    "linear", "Linear", LinearLayer, _with_params("linear", lambda c: {}, ("weight", "bias")),
    lambda c: [("weight", (c.out_features, c.in_features))] + ([("bias", (c.out_features,))] if c.bias else []),
))


def stale_statistics(builder: GraphBuilder, stat: str, error: Callable[[str], Exception]) -> None:
    """Refuse a training step's in-place update of running statistics `stat` that an operation needing a gradient read
    before (an eval-mode batch norm, `w * bn.running_mean`): torch updates them without a version bump, so that
    operation's backward reads the new values (not the ones its forward used), which gradtrace does not trace."""
    reader = next((n for n in builder.nodes if stat in n.inputs and builder.grad[n.name]), None)
    if reader is not None:
        what = "an earlier eval-mode call" if reader.op.name == "batch_norm_eval" else f"node '{reader.name}'"
        raise error(f"a batch norm in training mode updates the running statistics {what} read, before backward: "
                    "torch's backward of it then reads the updated statistics in place (other numbers than its forward "
                    "used), which gradtrace does not trace; read them under torch.no_grad(), or after backward")


def _batch_norm(e: Emitter, call: Call) -> str:
    c: BatchNormLayer = call.cfg
    x = call.inputs[0]
    ndim = len(e.shape(x))
    want = (2, 3) if c.type == "batch_norm1d" else (4,)
    if ndim not in want:
        raise e.error(f"{c.type} expects a {' or '.join(f'{n}-d' for n in want)} input, got {list(e.shape(x))}")
    if e.shape(x)[1] != c.num_features:
        raise e.error(f"{c.type}: input has {e.shape(x)[1]} channels, the layer {c.num_features} (num_features)")
    params = [call.params[p] for p in ("weight", "bias") if p in call.params]
    if not call.training and c.track_running_stats:  # model.eval(): the running statistics, an affine map per channel
        stats = [e.latest(f"{call.prefix}.running_{stat}") or e.buffer(f"{call.prefix}.running_{stat}", c.num_features, fill, x)
                 for stat, fill in (("mean", 0.0), ("var", 1.0))]
        return e.node(call.out, "batch_norm_eval", [x, *stats, *params], {"eps": c.eps})
    momentum = c.momentum
    if momentum is None:  # torch's cumulative average: 1 / num_batches_tracked, counted per training call
        calls = sum(n.op.name == "batch_norm_running" and n.name.startswith(f"{call.prefix}.running_mean") for n in e.builder.nodes)
        momentum = 1.0 / (calls + 1)
    y = e.node(call.out, "batch_norm", [x, *params], {"momentum": momentum, "eps": c.eps})
    if c.track_running_stats:
        for stat in ("mean", "var"):  # a module called again updates the buffers its last call left
            previous = e.latest(f"{call.prefix}.running_{stat}")
            if previous is not None:
                stale_statistics(e.builder, previous, lambda msg: e.error(msg))
            e.node(e.unique(f"{call.prefix}.running_{stat}"), "batch_norm_running", [x, *([previous] if previous else [])],
                   {"stat": stat, "momentum": momentum}, expr=f"running_{stat} after this step (momentum {momentum:g})")
    return y


layer(LayerDef(
    "batch_norm1d", "BatchNorm1d", BatchNormLayer, _batch_norm,
    lambda c: [("weight", (c.num_features,)), ("bias", (c.num_features,))] if c.affine else [],
))
layer(LayerDef(
    "batch_norm2d", "BatchNorm2d", BatchNormLayer, _batch_norm,
    lambda c: [("weight", (c.num_features,)), ("bias", (c.num_features,))] if c.affine else [],
))


def _normalized(c: LayerNormLayer | RMSNormLayer) -> Shape:
    return (c.normalized_shape,) if isinstance(c.normalized_shape, int) else tuple(c.normalized_shape)


layer(LayerDef(
    "layer_norm", "LayerNorm", LayerNormLayer,
    _with_params("layer_norm", lambda c: {"normalized_shape": list(_normalized(c)), "eps": c.eps}, ("weight", "bias")),
    lambda c: ([("weight", _normalized(c))] + ([("bias", _normalized(c))] if c.bias else [])) if c.elementwise_affine else [],
))
layer(LayerDef(
    "rms_norm", "RMSNorm", RMSNormLayer,
    _with_params("rms_norm", lambda c: {"normalized_shape": list(_normalized(c)), "eps": c.eps}, ("weight",)),
    lambda c: [("weight", _normalized(c))] if c.elementwise_affine else [],
))
layer(LayerDef(
    "group_norm", "GroupNorm", GroupNormLayer,
    _with_params("group_norm", lambda c: {"num_groups": c.num_groups, "eps": c.eps}, ("weight", "bias")),
    lambda c: [("weight", (c.num_channels,)), ("bias", (c.num_channels,))] if c.affine else [],
))


def _instance_norm(e: Emitter, call: Call) -> str:
    """nn.InstanceNorm1d/2d/3d on a batched input: F.instance_norm with input statistics."""
    c: InstanceNormLayer = call.cfg
    x, dims = call.inputs[0], int(c.type[-2])
    shape = e.shape(x)
    if len(shape) != dims + 2:
        raise e.error(f"{c.type} takes a batched {dims + 2}-d input (N, C, ...) here, got {list(shape)}"
                      + (" (an unbatched input: add the batch dim with .unsqueeze(0))" if len(shape) == dims + 1 else ""))
    if c.affine and shape[1] != c.num_features:
        raise e.error(f"{c.type}: input has {shape[1]} channels, the layer {c.num_features} (num_features)")
    return e.node(call.out, "instance_norm", [x, *[call.params[p] for p in ("weight", "bias") if p in call.params]], {"eps": c.eps})


for _dims in ("1d", "2d", "3d"):
    layer(LayerDef(f"instance_norm{_dims}", f"InstanceNorm{_dims}", InstanceNormLayer, _instance_norm,
                   lambda c: [("weight", (c.num_features,)), ("bias", (c.num_features,))] if c.affine else []))


def _embedding(e: Emitter, call: Call) -> str:
    c: EmbeddingLayer = call.cfg
    args = {} if c.padding_idx is None else {"padding_idx": c.padding_idx}
    if c.sparse and not any("sparse=True" in n for n in e.builder.notes):  # (recommenders' embeddings)
        e.builder.notes.append(f"{call.prefix}: nn.Embedding(sparse=True): torch's weight.grad is a sparse tensor; the "
                               "gradient shown is the same numbers, dense")
    return e.node(call.out, "embedding", [call.inputs[0], call.params["weight"]], args)


layer(LayerDef(
    "embedding", "Embedding", EmbeddingLayer, _embedding, lambda c: [("weight", (c.num_embeddings, c.embedding_dim))],
))


def _embedding_bag(e: Emitter, call: Call) -> str:
    """bag(input, offsets=None, per_sample_weights=None): F.embedding_bag with the layer's mode and weight."""
    c: EmbeddingBagLayer = call.cfg
    x, *rest = call.inputs  # a model spec's layer: [input, offsets, per_sample_weights]; a program's call: options
    offsets, weights = call.options.get("offsets"), call.options.get("per_sample_weights")
    if not call.options:
        offsets, weights = (rest + [None, None])[:2]
    args = {"mode": c.mode, "include_last_offset": c.include_last_offset, "padding_idx": c.padding_idx}
    inputs: list[Input] = [x, call.params["weight"], 0.0 if offsets is None else offsets]
    return e.node(call.out, "embedding_bag", inputs + ([weights] if weights is not None else []), args)


layer(LayerDef(
    "embedding_bag", "EmbeddingBag", EmbeddingBagLayer, _embedding_bag,
    lambda c: [("weight", (c.num_embeddings, c.embedding_dim))], max_inputs=3,
))


# ---- layers without parameters -----------------------------------------------------------------

for _type, _module in (("relu", "ReLU"), ("sigmoid", "Sigmoid"), ("tanh", "Tanh"), ("silu", "SiLU"), ("hardswish", "Hardswish"),
                       ("hardsigmoid", "Hardsigmoid"), ("mish", "Mish"), ("selu", "SELU"), ("logsigmoid", "LogSigmoid"),
                       ("softsign", "Softsign")):
    layer(LayerDef(_type, _module, ActivationLayer, _plain(_type)))
layer(LayerDef("softplus", "Softplus", SoftplusLayer, _plain("softplus", lambda c: {"beta": c.beta, "threshold": c.threshold})))
layer(LayerDef("celu", "CELU", CeluLayer, _plain("celu", lambda c: {"alpha": c.alpha})))
for _type, _module in (("hardshrink", "Hardshrink"), ("softshrink", "Softshrink")):
    layer(LayerDef(_type, _module, ShrinkLayer, _plain(_type, lambda c: {"lambd": c.lambd})))
layer(LayerDef("threshold", "Threshold", ThresholdLayer, _plain("threshold", lambda c: {"threshold": c.threshold, "value": c.value})))
layer(LayerDef("relu6", "ReLU6", ActivationLayer, _plain("hardtanh", lambda c: {"min_val": 0.0, "max_val": 6.0})))
layer(LayerDef("identity", "Identity", ActivationLayer, lambda e, c: c.inputs[0]))
layer(LayerDef("gelu", "GELU", GeluLayer, _plain("gelu", lambda c: {"approximate": c.approximate})))
layer(LayerDef("leaky_relu", "LeakyReLU", LeakyReluLayer, _plain("leaky_relu", lambda c: {"negative_slope": c.negative_slope})))
layer(LayerDef("prelu", "PReLU", PReLULayer, _with_params("prelu", lambda c: {}, ("weight",)), lambda c: [("weight", (c.num_parameters,))]))
layer(LayerDef("elu", "ELU", EluLayer, _plain("elu", lambda c: {"alpha": c.alpha})))
layer(LayerDef("hardtanh", "Hardtanh", HardtanhLayer, _plain("hardtanh", lambda c: {"min_val": c.min_val, "max_val": c.max_val})))
def _softmax(e: Emitter, call: Call) -> str:
    """nn.Softmax(dim) / nn.LogSoftmax(dim); without dim, the one torch picks from the input's rank (with its warning)."""
    c: SoftmaxLayer = call.cfg
    dim = c.dim
    if dim is None:
        ndim = len(e.shape(call.inputs[0]))
        dim = 0 if ndim in (0, 1, 3) else 1
        e.builder.notes.append(f"{call.prefix}: nn.{'Softmax' if c.type == 'softmax' else 'LogSoftmax'}() without dim: torch "
                               f"chose dim={dim} from the input's {ndim} dimensions (an implicit dim is deprecated: pass dim=)")
    return e.node(call.out, c.type, [call.inputs[0]], {"dim": dim})


layer(LayerDef("softmax", "Softmax", SoftmaxLayer, _softmax))
layer(LayerDef("log_softmax", "LogSoftmax", SoftmaxLayer, _softmax))
layer(LayerDef("glu", "GLU", GluLayer, _plain("glu", lambda c: {"dim": c.dim})))


def _adder(e: Emitter, call: Call) -> composites.Add:
    """A composite's nodes for a module call: the last is the call's output, the others `<path>.<op>`."""
    def add(op: str, inputs: list[Any], args: dict[str, Any], last: bool) -> str:
        return e.node(call.out if last else e.unique(f"{call.prefix}.{op}"), op, inputs, args)
    return add


def _pool_args(c: Pool2dLayer | MaxPool2dLayer) -> dict[str, Any]:
    ceil = {"ceil_mode": True} if getattr(c, "ceil_mode", False) else {}
    exclude = {"count_include_pad": False} if not getattr(c, "count_include_pad", True) else {}
    return {"kernel_size": c.kernel_size, "padding": c.padding, **({"stride": c.stride} if c.stride is not None else {}), **ceil,
            **exclude}


def _pool1d(e: Emitter, call: Call) -> str:
    """nn.MaxPool1d / AvgPool1d / AdaptiveAvgPool1d / AdaptiveMaxPool1d: the 2-d pool over a height of 1, as torch runs them."""
    c: Pool1dLayer | AdaptivePool1dLayer = call.cfg
    shape = e.shape(call.inputs[0])
    if len(shape) not in (2, 3):
        raise e.error(f"{c.type} needs input (N, C, L) or (C, L), got {list(shape)}")

    def one(v: Any) -> Any:
        return v[0] if isinstance(v, (list, tuple)) else v

    if isinstance(c, AdaptivePool1dLayer):
        return composites.pool1d(_adder(e, call), call.inputs[0], c.type.replace("1d", "2d"), one(c.output_size))
    options = {"ceil_mode": True} if c.ceil_mode else {}
    if not c.count_include_pad:
        if c.type != "avg_pool1d":
            raise e.error("count_include_pad is an argument of average pooling")
        options["count_include_pad"] = False
    return composites.pool1d(_adder(e, call), call.inputs[0], c.type.replace("1d", "2d"), one(c.kernel_size),
                             one(c.stride), one(c.padding), options)


layer(LayerDef("max_pool1d", "MaxPool1d", Pool1dLayer, _pool1d))
layer(LayerDef("avg_pool1d", "AvgPool1d", Pool1dLayer, _pool1d))
layer(LayerDef("adaptive_avg_pool1d", "AdaptiveAvgPool1d", AdaptivePool1dLayer, _pool1d))
layer(LayerDef("max_pool2d", "MaxPool2d", MaxPool2dLayer, _plain("max_pool2d", _pool_args)))
layer(LayerDef("avg_pool2d", "AvgPool2d", Pool2dLayer, _plain("avg_pool2d", _pool_args)))
layer(LayerDef("adaptive_max_pool1d", "AdaptiveMaxPool1d", AdaptivePool1dLayer, _pool1d))
for _type, _cls in (("adaptive_avg_pool2d", "AdaptiveAvgPool2d"), ("adaptive_max_pool2d", "AdaptiveMaxPool2d")):
    layer(LayerDef(_type, _cls, AdaptivePoolLayer, _plain(_type, lambda c: {"output_size": c.output_size})))
def _upsample_args(c: UpsampleLayer) -> dict[str, Any]:
    """F.interpolate's arguments for nn.Upsample; the Upsampling*2d classes fix the mode (bilinear: align_corners)."""
    if c.type == "upsample":
        return c.model_dump(include={"size", "scale_factor", "mode", "align_corners", "recompute_scale_factor"})
    bilinear = c.type == "upsampling_bilinear2d"
    return {"size": c.size, "scale_factor": c.scale_factor, "mode": "bilinear" if bilinear else "nearest",
            "align_corners": True if bilinear else None}


for _type, _cls in (("upsample", "Upsample"), ("upsampling_nearest2d", "UpsamplingNearest2d"),
                    ("upsampling_bilinear2d", "UpsamplingBilinear2d")):
    layer(LayerDef(_type, _cls, UpsampleLayer, _plain("interpolate", _upsample_args)))
layer(LayerDef("pixel_shuffle", "PixelShuffle", PixelShuffleLayer, _plain("pixel_shuffle", lambda c: {"upscale_factor": c.upscale_factor})))
layer(LayerDef("flatten", "Flatten", FlattenLayer, _plain("flatten", lambda c: {"start_dim": c.start_dim, "end_dim": c.end_dim})))


def _unflatten(e: Emitter, call: Call) -> str:
    """nn.Unflatten(dim, sizes): a reshape of that dim into the sizes (torch's view: ViewBackward0)."""
    c: UnflattenLayer = call.cfg
    shape = e.shape(call.inputs[0])
    if not -len(shape) <= c.dim < len(shape) or math.prod(c.unflattened_size) != shape[c.dim]:
        raise e.error(f"unflatten: sizes {c.unflattened_size} do not make dim {c.dim} of {list(shape)}")
    d = c.dim % len(shape)
    return e.node(call.out, "reshape", [call.inputs[0]], {"shape": [*shape[:d], *c.unflattened_size, *shape[d + 1:]]})


def _pad(e: Emitter, call: Call) -> str:
    """nn.ZeroPad2d, nn.ReflectionPad2d, ...: F.pad in the class's mode, an int meaning every side."""
    c: PadLayer | EdgePadLayer = call.cfg
    sides = 2 * int(c.type[-2])  # 1d, 2d, 3d
    pad = [c.padding] * sides if isinstance(c.padding, int) else list(c.padding)
    if len(pad) != sides:
        raise e.error(f"{c.type}: padding is an int or {sides} ints, got {c.padding}")
    mode = PAD_MODES.get(c.type.split("_")[0], "constant")
    args: dict[str, Any] = {"pad": pad, "mode": mode} if mode != "constant" else {"pad": pad, "value": c.value}  # type: ignore[union-attr]
    return e.node(call.out, "pad", [call.inputs[0]], args)


PAD_MODES = {"reflection": "reflect", "replication": "replicate", "circular": "circular"}
layer(LayerDef("unflatten", "Unflatten", UnflattenLayer, _unflatten))
for _dims in ("1d", "2d", "3d"):
    layer(LayerDef(f"zero_pad{_dims}", f"ZeroPad{_dims}", PadLayer, _pad))
    layer(LayerDef(f"constant_pad{_dims}", f"ConstantPad{_dims}", PadLayer, _pad))
    for _kind in PAD_MODES:
        layer(LayerDef(f"{_kind}_pad{_dims}", f"{_kind.capitalize()}Pad{_dims}", EdgePadLayer, _pad))


def _dropout(e: Emitter, call: Call) -> str:
    """Training mode with p > 0: input * mask, the mask drawn from torch's generator; otherwise the input itself."""
    c: DropoutLayer = call.cfg
    if not call.training or c.p == 0:
        return call.inputs[0]
    mask = e.dropout_mask(f"{call.prefix}.mask", call.inputs[0], c.p)
    return e.node(call.out, "dropout", [call.inputs[0], mask], {"p": c.p})


layer(LayerDef("dropout", "Dropout", DropoutLayer, _dropout))


def _channel_dropout(e: Emitter, call: Call) -> str:
    """Training mode with p > 0: input * mask, the mask (N, C, 1, ...) drawn from torch's generator (torch's feature
    dropout: MulBackward0); an unbatched input (dropout1d's 2-d, dropout3d's 4-d) runs as a batch of one."""
    c: ChannelDropoutLayer = call.cfg
    x = call.inputs[0]
    ndim = len(e.shape(x))
    if c.type == "dropout1d" and ndim not in (2, 3):
        raise e.error(f"dropout1d: Expected 2D or 3D input, but received a {ndim}D input")
    # torch: dropout1d unsqueezes a 2-d input, dropout3d any but a 5-d one; dropout2d none (a 3-d input is (N, C, L))
    unbatched = ndim == 2 if c.type == "dropout1d" else ndim != 5 if c.type == "dropout3d" else False
    if ndim + unbatched < 2:
        raise e.error(f"{c.type}: Expected a 2D or larger input (channels first), but received a {ndim}D input")
    if not call.training or c.p == 0:
        return x
    if unbatched:
        x = e.node(e.unique(f"{call.prefix}.batch_of_one"), "unsqueeze", [x], {"dim": 0})
    shape = e.shape(x)
    mask = e.dropout_mask(f"{call.prefix}.mask", x, c.p, (shape[0], shape[1], *(1,) * (len(shape) - 2)))
    y = e.node(e.unique(f"{call.prefix}.dropped") if unbatched else call.out, "mul", [x, mask])
    return e.node(call.out, "squeeze", [y], {"dim": 0}) if unbatched else y


for _dims in ("1d", "2d", "3d"):
    layer(LayerDef(f"dropout{_dims}", f"Dropout{_dims}", ChannelDropoutLayer, _channel_dropout))


def _add(e: Emitter, call: Call) -> str:
    xs = call.inputs
    acc = xs[0]
    for k, x in enumerate(xs[1:], start=1):
        acc = e.node(call.out if k == len(xs) - 1 else f"{call.out}#{k}", "add", [acc, x], expr=f"{acc} + {x}")
    return acc


layer(LayerDef("add", None, AddLayer, _add, min_inputs=2, max_inputs=None))
layer(LayerDef("cat", None, CatLayer, lambda e, c: e.node(c.out, "cat", c.inputs, {"dim": c.cfg.dim}), max_inputs=None))


def param_event(d: LayerDef, cfg: Any, dtype: str) -> Event | None:
    """The torch stream event that builds the layer's torch.nn class (drawing torch's default init, in order);
    its parameter targets are filled by `add_params` once the layer has a name."""
    if not d.params(cfg):
        return None
    return Event("module", None, {"cls": d.module, "kwargs": d.ctor_kwargs(cfg), "dtype": dtype, "params": {}})


def add_params(
    d: LayerDef, cfg: Any, prefix: str, dtype: str, event: Event | None, builder: GraphBuilder,
    loc: tuple[str | int, ...] = (), norms: dict[str, tuple[int, str]] | None = None,
) -> dict[str, str]:
    """Parameter leaves named like the state_dict ('conv.weight'); returns attr -> leaf name. `norms`: weights under
    nn.utils.weight_norm, which torch replaces by g and v registered after the others (weight_g, weight_v; in the
    parametrizations form parametrizations.weight.original0 and original1)."""
    shapes = list(d.params(cfg))
    for attr, (dim, style) in (norms or {}).items():
        shape = dict(shapes)[attr]
        shapes.remove((attr, shape))
        g = () if dim == -1 else tuple(n if k == dim else 1 for k, n in enumerate(shape))
        shapes += list(zip(weight_norm_names(attr, style), (g, shape), strict=True))
    names: dict[str, str] = {}
    for attr, shape in shapes:
        names[attr] = f"{prefix}.{attr}"
        builder.add_leaf(Leaf(names[attr], shape, dtype, True, kind="parameter", init=f"nn.{d.module} default init"
                              + (" under weight_norm" if norms and attr not in dict(d.params(cfg)) else "")), loc)
    if event is not None:
        event.args["params"].update(names)
        if norms:
            event.args["norms"] = [[attr, dim, style] for attr, (dim, style) in norms.items()]
    return names


def weight_norm_names(attr: str, style: str) -> tuple[str, str]:
    """The attributes of g and v that weight_norm registers for the parameter `attr`."""
    if style == "parametrizations":
        return f"parametrizations.{attr}.original0", f"parametrizations.{attr}.original1"
    return f"{attr}_g", f"{attr}_v"


def check_params(d: LayerDef, cfg: Any) -> None:
    """Raise ValueError when the configuration has no valid parameter shapes (channels vs groups)."""
    d.params(cfg)


from services.compiler import lazy as _lazy  # noqa: E402,F401  (registers nn.LazyLinear, ...)
from services.compiler import losses as _losses  # noqa: E402,F401  (registers nn.MSELoss, nn.L1Loss, ...)
from services.compiler import recurrent as _recurrent  # noqa: E402,F401  (registers nn.RNN, nn.LSTM, nn.GRU)
from services.compiler import transformer as _transformer  # noqa: E402,F401  (nn.MultiheadAttention, nn.Transformer*)
