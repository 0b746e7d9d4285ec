"""nn.RNN, nn.LSTM and nn.GRU (and their one-step cells), unrolled over time with torch's equations: every step's gates and states are nodes
(torch runs each layer as one fused node and shows none of them), so a trace shows backpropagation through time.
Parameters are torch's (drawn by constructing the torch module, named as its state_dict); dropout between layers in
training mode is torch's mask of each layer's output, drawn in order (its fused kernel calls at::dropout there)."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.compiler.layers import Call, Emitter, LayerDef, layer
from services.ir import Leaf
from shared.spec import GatedCellLayer, GatedRNNLayer, RNNCellLayer, RNNLayer

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
"""Rows of weight_ih per hidden unit: torch stacks the gates' weights (LSTM: i, f, g, o; GRU: r, z, n)."""


def _params(kind: str) -> Any:
    def params(c: RNNLayer | GatedRNNLayer) -> list[tuple[str, tuple[int, ...]]]:
        g, h, d = GATES[kind] * c.hidden_size, c.hidden_size, 2 if c.bidirectional else 1
        out: list[tuple[str, tuple[int, ...]]] = []
        for k in range(c.num_layers):
            for s in ("", "_reverse")[:d]:
                out += [(f"weight_ih_l{k}{s}", (g, c.input_size if k == 0 else h * d)), (f"weight_hh_l{k}{s}", (g, h))]
                out += [(f"bias_ih_l{k}{s}", (g,)), (f"bias_hh_l{k}{s}", (g,))] if c.bias else []
        return out
    return params


def _cell_params(kind: str) -> Any:
    def params(c: RNNCellLayer | GatedCellLayer) -> list[tuple[str, tuple[int, ...]]]:
        g, h = GATES[kind.removesuffix("_cell")] * c.hidden_size, c.hidden_size
        return [("weight_ih", (g, c.input_size)), ("weight_hh", (g, h))] + (
            [("bias_ih", (g,)), ("bias_hh", (g,))] if c.bias else [])
    return params


def _cell_kwargs(c: RNNCellLayer | GatedCellLayer) -> dict[str, Any]:
    kw = {"input_size": c.input_size, "hidden_size": c.hidden_size, "bias": c.bias}
    return kw | ({"nonlinearity": c.nonlinearity} if isinstance(c, RNNCellLayer) else {})


def _kwargs(c: RNNLayer | GatedRNNLayer) -> dict[str, Any]:
    kw = {"input_size": c.input_size, "hidden_size": c.hidden_size, "num_layers": c.num_layers, "bias": c.bias,
          "batch_first": c.batch_first, "dropout": c.dropout, "bidirectional": c.bidirectional}
    return kw | ({"nonlinearity": c.nonlinearity} if isinstance(c, RNNLayer) else {})


def recurrent(e: Emitter, call: Call) -> str:
    """The layer over its input (seq, batch, features) (batch_first: (batch, seq, features); unbatched: (seq,
    features)), from call.inputs[1:] as the initial h (and c) or zeros; call.states gets 'h_n' (and 'c_n'), named
    as it asks when it holds them already."""
    c = call.cfg
    kind, p, H = c.type, call.prefix, c.hidden_size
    D = 2 if c.bidirectional else 1
    x = call.inputs[0]
    shape = e.shape(x)
    if len(shape) not in (2, 3) or shape[-1] != c.input_size:
        raise e.error(f"{kind}: expects input of shape (L, {c.input_size}) or (L, N, {c.input_size})"
                      f"{' (batch_first: (N, L, ...))' if c.batch_first else ''}, got {list(shape)}")
    if c.batch_first and len(shape) == 3:
        x = e.node(e.unique(f"{p}.seq_first"), "transpose", [x], {"dim0": 0, "dim1": 1}, expr=f"{x}.transpose(0, 1)")
    L, batch = e.shape(x)[0], list(e.shape(x)[1:-1])
    state_shape = (D * c.num_layers, *batch, H)
    init = [_initial(e, call, i, state_shape, name) for i, name in enumerate(("h0", "c0")[: 2 if kind == "lstm" else 1])]
    finals: dict[str, list[str]] = {"h_n": [], "c_n": []}
    for k in range(c.num_layers):
        outs: list[list[str]] = []
        for d, s in enumerate(("", "_reverse")[:D]):
            w = {n: call.params.get(f"{n}_l{k}{s}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            at = f"{p}.l{k}{s}"
            gi = e.node(e.unique(f"{at}.x_proj"), "linear", [x, w["weight_ih"], *([w["bias_ih"]] if c.bias else [])],
                        expr=f"input @ weight_ih_l{k}{s}.T + bias_ih_l{k}{s}")
            h, cell = (e.node(e.unique(f"{at}.{n}"), "getitem", [t], {"index": [k * D + d]}) for n, t in
                       zip(("h_init", "c_init"), init, strict=False)) if kind == "lstm" else (
                e.node(e.unique(f"{at}.h_init"), "getitem", [init[0]], {"index": [k * D + d]}), "")
            steps: list[str] = [""] * L
            for t in (range(L - 1, -1, -1) if s else range(L)):
                h, cell = _step(e, kind, f"{at}.t{t}", e.node(e.unique(f"{at}.t{t}.x_proj"), "getitem", [gi], {"index": [t]}),
                                h, cell, w, c)
                steps[t] = h
            outs.append(steps)
            finals["h_n"].append(h)
            finals["c_n"].append(cell)
        per_step = outs[0] if D == 1 else [e.node(e.unique(f"{p}.l{k}.t{t}.h"), "cat", [a, b], {"dim": -1})
                                            for t, (a, b) in enumerate(zip(*outs, strict=True))]
        last = k == c.num_layers - 1 and not (c.batch_first and len(shape) == 3)
        x = e.node(call.out if last else e.unique(f"{p}.l{k}.out"), "stack", per_step, {"dim": 0},
                   expr=f"{kind}({call.inputs[0]})[0]" if last else "")
        if c.dropout and call.training and k < c.num_layers - 1:  # torch's kernel: at::dropout of the layer's output
            mask = e.dropout_mask(f"{p}.l{k}.mask", x, c.dropout)  # (sequence first), drawn here, as F.dropout draws
            x = e.node(e.unique(f"{p}.l{k}.dropped"), "dropout", [x, mask], {"p": c.dropout})
    if c.batch_first and len(shape) == 3:
        x = e.node(call.out, "transpose", [x], {"dim0": 0, "dim1": 1}, expr=f"{kind}({call.inputs[0]})[0]")
    for n in ("h_n", "c_n")[: 2 if kind == "lstm" else 1]:
        call.states[n] = e.node(call.states.get(n) or e.unique(f"{p}.{n}"), "stack", finals[n], {"dim": 0})
    return x


def _initial(e: Emitter, call: Call, i: int, shape: tuple[int, ...], name: str) -> str:
    """The initial h (i 0) or c (i 1): the state the program passed, or zeros as torch makes them."""
    given = call.inputs[1 + i] if len(call.inputs) > 1 + i else None
    if given is not None:
        got = e.shape(given)
        if tuple(got) != shape:
            raise e.error(f"{call.cfg.type}: the initial {name[0]} has shape {list(got)}, expected {list(shape)}")
        return given
    leaf = Leaf(e.unique(f"{call.prefix}.{name}"), shape, e.dtype, False, init=f"zeros (the initial {name[0]})",
                value=np.zeros(shape, dtype=e.dtype))
    e.builder.add_leaf(leaf, e.loc)
    return leaf.name


def _step(e: Emitter, kind: str, at: str, gi: str, h: str, cell: str, w: dict[str, Any], c: Any,
          named: dict[str, str] | None = None) -> tuple[str, str]:
    """One time step of one layer and direction: the new (h, c) (c is unchanged for RNN and GRU); `named`: names
    for the new 'h' and 'c' (a cell's call)."""
    def n(name: str, op: str, inputs: list[Any], args: dict[str, Any] | None = None) -> str:
        return e.node((named or {}).get(name) or e.unique(f"{at}.{name}"), op, inputs, args)

    gh = n("h_proj", "linear", [h, w["weight_hh"], *([w["bias_hh"]] if c.bias else [])])
    if kind == "rnn":
        return n("h", c.nonlinearity, [n("pre", "add", [gi, gh])]), cell
    if kind == "lstm":
        gates = n("gates", "add", [gi, gh])
        i, f, g, o = (n(f"{g}_pre", "chunk", [gates], {"chunks": 4, "dim": -1, "index": k}) for k, g in enumerate("ifgo"))
        i, f, o, g = n("i", "sigmoid", [i]), n("f", "sigmoid", [f]), n("o", "sigmoid", [o]), n("g", "tanh", [g])
        cell = n("c", "add", [n("f*c", "mul", [f, cell]), n("i*g", "mul", [i, g])])
        return n("h", "mul", [o, n("tanh_c", "tanh", [cell])]), cell
    ir, iz, i_n = (n(f"x_{g}", "chunk", [gi], {"chunks": 3, "dim": -1, "index": k}) for k, g in enumerate("rzn"))
    hr, hz, h_n = (n(f"h_{g}", "chunk", [gh], {"chunks": 3, "dim": -1, "index": k}) for k, g in enumerate("rzn"))
    r, z = n("r", "sigmoid", [n("r_pre", "add", [ir, hr])]), n("z", "sigmoid", [n("z_pre", "add", [iz, hz])])
    new = n("n", "tanh", [n("n_pre", "add", [i_n, n("r*h_n", "mul", [r, h_n])])])
    return n("h", "add", [n("(1-z)*n", "mul", [n("1-z", "sub", [1.0, z]), new]), n("z*h", "mul", [z, h])]), cell


for _type, _module, _schema in (("rnn", "RNN", RNNLayer), ("lstm", "LSTM", GatedRNNLayer), ("gru", "GRU", GatedRNNLayer)):
    layer(LayerDef(_type, _module, _schema, recurrent, _params(_type), torch_kwargs=_kwargs, max_inputs=3))


def cell(e: Emitter, call: Call) -> str:
    """nn.RNNCell / LSTMCell / GRUCell on input (N, input_size) or (input_size,), from call.inputs[1:] as h (and c)
    or zeros: one step; call.states gets 'c_n' (an LSTMCell's new c), named as it asks."""
    c = call.cfg
    kind, x = c.type.removesuffix("_cell"), call.inputs[0]
    shape = e.shape(x)
    if len(shape) not in (1, 2) or shape[-1] != c.input_size:
        raise e.error(f"{c.type}: expects input of shape ({c.input_size},) or (N, {c.input_size}), got {list(shape)}")
    state_shape = (*shape[:-1], c.hidden_size)
    h, *rest = [_initial(e, call, i, state_shape, n) for i, n in enumerate(("h0", "c0")[: 2 if kind == "lstm" else 1])]
    w = {n: call.params.get(n) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    gi = e.node(e.unique(f"{call.prefix}.x_proj"), "linear", [x, w["weight_ih"], *([w["bias_ih"]] if c.bias else [])])
    new, cell_new = _step(e, kind, call.prefix, gi, h, rest[0] if rest else "", w, c,
                          {"h": call.out, **({"c": call.states["c_n"]} if "c_n" in call.states else {})})
    if kind == "lstm":
        call.states["c_n"] = cell_new
    return new


for _type, _module, _schema in (("rnn_cell", "RNNCell", RNNCellLayer), ("lstm_cell", "LSTMCell", GatedCellLayer),
                                ("gru_cell", "GRUCell", GatedCellLayer)):
    layer(LayerDef(_type, _module, _schema, cell, _cell_params(_type), torch_kwargs=_cell_kwargs, max_inputs=3))
