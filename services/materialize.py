"""Make the values of a compiled graph's leaves by replaying its random streams in program order.

torch streams are replayed with torch itself, under `torch.manual_seed`, calling the very functions the
program named (torch.rand, nn.Conv2d(...), nn.init.kaiming_uniform_, bernoulli_ for dropout masks), so the
numbers equal what the same code prints in torch. The result is plain data: the reference engine computes
from the same numbers without importing torch. numpy streams draw from PCG64 (JSON specs' generated inputs)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from services.ir import Event, Graph, Leaf, Stream
from services.ops.indexing import spec_index

TORCH_CREATORS = {"rand", "randn", "randint", "zeros", "ones", "full", "arange", "linspace", "eye", "empty", "normal", "randperm"}
"""torch functions a 'tensor' event may call (empty is made as zeros: a trace must be deterministic)."""
INPLACE = {"uniform_", "normal_", "zero_", "fill_", "bernoulli_", "exponential_", "random_", "mul_", "add_", "sub_", "div_", "clamp_",
           "fill_diagonal_"}
"""Tensor methods an 'inplace' event may call."""
INITS = {
    "uniform_", "normal_", "constant_", "ones_", "zeros_", "eye_", "xavier_uniform_", "xavier_normal_",
    "kaiming_uniform_", "kaiming_normal_", "trunc_normal_", "orthogonal_",
}
"""torch.nn.init functions an 'init' event may call."""
MODULES = {
    "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "Linear", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
    "InstanceNorm3d", "Embedding", "EmbeddingBag", "MultiheadAttention", "PReLU",
    "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "TransformerEncoderLayer", "TransformerEncoder",
    "TransformerDecoderLayer", "TransformerDecoder", "Transformer",
}
"""torch.nn classes a 'module' event may construct (those with parameters)."""


def materialize(graph: Graph) -> float:
    """Fill every leaf's value; returns the seconds it took. Idempotent: literal leaves keep their values."""
    t0 = time.perf_counter()
    for stream in graph.streams:
        values = _run_torch(stream, graph.leaves, graph.dtype) if stream.backend == "torch" else _run_numpy(stream, graph.leaves)
        for name, value in values.items():
            leaf = graph.leaves[name]
            leaf.value = np.ascontiguousarray(value, dtype=leaf.dtype).reshape(leaf.shape)
    graph.leaf_values()  # every leaf has a value now
    if graph.grad_output_leaf is not None:  # `out.backward(torch.randn(1, 10))`: the drawn gradient, in out's dtype
        out = graph.leaves[graph.output].dtype if graph.output in graph.leaves else graph.node(graph.output).dtype
        graph.grad_output = graph.leaves[graph.grad_output_leaf].value.astype(out)  # type: ignore[union-attr]
    return time.perf_counter() - t0


def _run_numpy(stream: Stream, leaves: dict[str, Leaf]) -> dict[str, np.ndarray]:
    """PCG64(seed) draws in event order."""
    rng = np.random.Generator(np.random.PCG64(stream.seed))
    draw: dict[str, Callable[[tuple[int, ...], dict[str, Any]], np.ndarray]] = {
        "uniform": lambda s, a: rng.uniform(a["low"], a["high"], size=s),
        "normal": lambda s, a: rng.normal(a["mean"], a["std"], size=s),
        "randint": lambda s, a: rng.integers(int(a["low"]), int(a["high"]), size=s),
        "arange": lambda s, a: np.arange(int(np.prod(s)), dtype=np.float64).reshape(s),
        "zeros": lambda s, a: np.zeros(s),
        "ones": lambda s, a: np.ones(s),
    }
    out: dict[str, np.ndarray] = {}
    for ev in stream.events:
        assert ev.target is not None
        out[ev.target] = draw[ev.op](leaves[ev.target].shape, ev.args)
    return out


def _run_torch(stream: Stream, leaves: dict[str, Leaf], dtype: str = "float32") -> dict[str, np.ndarray]:
    """Replay on torch's CPU generator, under the spec's default dtype, leaving the process's global generator
    state and default dtype as they were."""
    import torch

    values: dict[str, Any] = {}
    was = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.set_default_dtype(getattr(torch, dtype))
        try:
            torch.manual_seed(stream.seed)
            for ev in stream.events:
                _apply(torch, ev, values, leaves)
        finally:
            torch.set_default_dtype(was)
    return {k: v.detach().cpu().numpy() for k, v in values.items() if k in leaves}


def _dtype(torch: Any, name: str) -> Any:
    return getattr(torch, name)


def _apply(torch: Any, ev: Event, values: dict[str, Any], leaves: dict[str, Leaf]) -> None:
    """One event: each op calls the torch function the program named, with the program's arguments."""
    a = ev.args
    if ev.op == "seed":
        torch.manual_seed(int(a["seed"]))
    elif ev.op == "tensor":
        fn = a["fn"]
        assert fn in TORCH_CREATORS, fn
        kw = dict(a.get("kwargs", {}))
        kw["dtype"] = _dtype(torch, a["dtype"])
        if "strides" in a:  # randn_like / rand_like / randint_like of a strided tensor: empty_like keeps its strides
            made = _strided_draw(torch, fn, a["args"], a["strides"], kw["dtype"])
        else:
            made = torch.zeros(*a.get("args", []), **kw) if fn == "empty" else getattr(torch, fn)(*a.get("args", []), **kw)
        _keep(values, ev.target, made)
    elif ev.op == "module":
        assert a["cls"] in MODULES, a["cls"]
        module, original = _module(torch, a["cls"], a["kwargs"], _dtype(torch, a["dtype"]))
        for attr, dim, style in a.get("norms", []):  # nn.utils.weight_norm: g and v from the weight torch drew
            if style == "parametrizations":
                torch.nn.utils.parametrizations.weight_norm(module, attr, None if dim == -1 else dim)
            else:
                with warnings.catch_warnings():  # (torch.nn.utils.weight_norm is deprecated, and warns so)
                    warnings.simplefilter("ignore")
                    torch.nn.utils.weight_norm(module, attr, None if dim == -1 else dim)
        for k, params in enumerate([a["params"], *a.get("also", [])]):  # also: copy.deepcopy's of the module
            for attr, target in params.items():
                t: Any = module if original is None or attr.startswith("layers.") else original
                for part in attr.split("."):
                    t = getattr(t, part)
                _keep(values, target, t.detach() if k == 0 else t.detach().clone())
    elif ev.op == "clone":  # copy.deepcopy of a named module: its parameters' values now
        for attr, target in a["params"].items():
            _keep(values, target, _get(torch, values, a["sources"][attr], leaves).clone())
    elif ev.op == "copies":  # nn.TransformerEncoder(layer, n) of a layer with parameters: each copy takes their values
        for attr, target in a["params"].items():
            _keep(values, target, _get(torch, values, a["sources"][attr.split(".", 2)[2]], leaves).clone())
    elif ev.op == "inplace":
        assert a["method"] in INPLACE, a["method"]
        args, kwargs = list(a.get("args", [])), dict(a.get("kwargs", {}))
        for key, name in a.get("tensors", []):  # `ema.add_(p, alpha=0.01)`: p's value at this point of the stream
            if isinstance(key, int):
                args[key] = _get(torch, values, name, leaves)
            else:
                kwargs[key] = _get(torch, values, name, leaves)
        getattr(_get(torch, values, ev.target, leaves), a["method"])(*args, **kwargs)
    elif ev.op == "setitem":  # `with torch.no_grad(): emb.weight[0] = 0.0` (or a made tensor): ints, slices, int lists
        value = _get(torch, values, a["source"], leaves) if "source" in a else a["value"]
        _get(torch, values, ev.target, leaves)[spec_index(a["index"])] = value
    elif ev.op == "init":
        assert a["fn"] in INITS, a["fn"]
        getattr(torch.nn.init, a["fn"])(_get(torch, values, ev.target, leaves), *a.get("args", []), **a.get("kwargs", {}))
    elif ev.op == "assign":
        src = _get(torch, values, a["source"], leaves) if "source" in a else torch.as_tensor(np.asarray(a["value"]))
        _keep(values, ev.target, src.to(_dtype(torch, leaves[ev.target].dtype)).clone())
    elif ev.op == "node":  # a leaf torch computed from earlier tensors (`W = torch.randn(8, 4) * 0.1`), no draw
        for node in a["nodes"]:
            xs = [_get(torch, values, i, leaves) if isinstance(i, str) else i for i in node.inputs]
            values[node.name] = node.op.torch(torch, xs, node.args)
    elif ev.op == "discarded":  # a fill of a tensor torch then throws away (a weight weight_norm recomputes): its draws
        made = torch.zeros(tuple(a["shape"]), dtype=_dtype(torch, a["dtype"]))
        if "fn" in a:
            assert a["fn"] in INITS, a["fn"]
            getattr(torch.nn.init, a["fn"])(made, *a["args"], **a["kwargs"])
        else:
            assert a["method"] in INPLACE, a["method"]
            getattr(made, a["method"])(*a["args"], **a["kwargs"])
    elif ev.op == "loader_seed":  # iter(DataLoader): _BaseDataLoaderIter's base seed, from the default generator
        torch.empty((), dtype=torch.int64).random_()
    elif ev.op == "sampler_order":  # RandomSampler.__iter__: a seed from the default generator, randperm from it
        g = torch.Generator()
        g.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        _keep(values, ev.target, torch.randperm(int(a["n"]), generator=g))
    elif ev.op == "dropout_mask":
        # torch's CPU dropout: noise = empty_like(input).bernoulli_(1 - p); noise.div_(1 - p); input * noise
        p = float(a["p"])
        leaf = leaves[ev.target] if ev.target else None
        shape, dtype = (leaf.shape, leaf.dtype) if leaf else (tuple(a["shape"]), a["dtype"])
        noise = torch.empty(shape, dtype=_dtype(torch, dtype))
        if p < 1:
            noise.bernoulli_(1 - p).div_(1 - p)
        else:
            noise.zero_()
        _keep(values, ev.target, noise)
    else:
        raise ValueError(f"unknown stream event '{ev.op}'")


STACKS = {"TransformerEncoder": "TransformerEncoderLayer", "TransformerDecoder": "TransformerDecoderLayer"}
"""nn.TransformerEncoder / Decoder: the layer class each deep-copies."""


def _module(torch: Any, cls: str, kwargs: dict[str, Any], dtype: Any) -> tuple[Any, Any]:
    """The torch.nn module, and for a TransformerEncoder / Decoder the layer it copies (whose own parameters a program
    may hold too: `layer.linear1.weight`, against `layers.0.linear1.weight` of the stack)."""
    if cls not in STACKS:
        return getattr(torch.nn, cls)(**kwargs, dtype=dtype), None
    layer = getattr(torch.nn, STACKS[cls])(**kwargs["layer"], dtype=dtype)
    stack = getattr(torch.nn, cls)(layer, kwargs["num_layers"], **({"enable_nested_tensor": False} if cls == "TransformerEncoder" else {}))
    return stack, layer


def _strided_draw(torch: Any, fn: str, args: list[Any], strides: list[int], dtype: Any) -> Any:
    """torch.<fn>_like(x) for a strided x: empty_like(x) (its strides) filled in place, as torch's *_like do."""
    shape = args[0] if fn == "full" else args[-1]
    t = torch.empty_strided(shape, strides, dtype=dtype)
    if fn == "randn":
        return t.normal_()
    if fn == "rand":
        return t.uniform_()
    if fn == "randint":
        return t.random_(args[0], args[1])
    if fn in ("zeros", "empty"):  # empty: zeros, as gradtrace's empty tensors are
        return t.zero_()
    if fn in ("ones", "full"):
        return t.fill_(1 if fn == "ones" else args[1])
    raise ValueError(f"no strided form of {fn}")


def _get(torch: Any, values: dict[str, Any], name: str | None, leaves: dict[str, Leaf]) -> Any:
    """The current tensor of `name`: written by an earlier event, or a literal leaf's compile-time value."""
    assert name is not None
    if name not in values:
        value = leaves[name].value
        if value is None:
            raise ValueError(f"'{name}' is used before it has a value")
        values[name] = torch.from_numpy(np.array(value))
    return values[name]


def _keep(values: dict[str, Any], target: str | None, t: Any) -> None:
    if target is not None:
        values[target] = t
