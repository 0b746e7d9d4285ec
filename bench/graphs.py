"""The specs the benchmark traces: the tutorial job, scalar chains, wide graphs, the small CNN, op families."""

from __future__ import annotations

import copy
import json
from typing import Any

from bench.stack import ROOT

EXAMPLES = ROOT / "examples"


def chain_rule() -> dict[str, Any]:
    """The tutorial's chain-rule job: examples/chain_rule.py as a program."""
    return {"program": (EXAMPLES / "chain_rule.py").read_text()}


def scalar_chain(n: int, engines: list[str] | None = None) -> dict[str, Any]:
    """n scalar nodes in one chain, cycling mul/add/sin (values stay bounded)."""
    cycle = (("mul", 1.01), ("add", 0.01), ("sin", None))
    nodes, prev = [], "x"
    for i in range(n):
        op, c = cycle[i % 3]
        nodes.append({"name": f"n{i}", "op": op, "inputs": [prev] if c is None else [prev, c]})
        prev = f"n{i}"
    spec: dict[str, Any] = {"inputs": {"x": 0.5}, "nodes": nodes}
    if engines:
        spec["engines"] = engines
    return spec


def wide(n: int, width_elems: int = 16, engines: list[str] | None = None) -> dict[str, Any]:
    """About n nodes side by side: n/2 independent branches b_i = sin(x * c_i) of a [16] vector,
    joined by a balanced tree of adds, then summed: shallow and wide, unlike the chain."""
    branches = max(1, n // 2)
    nodes: list[dict[str, Any]] = []
    level = []
    for i in range(branches):
        nodes.append({"name": f"b{i}", "op": "mul" if i % 2 else "sin", "inputs": ["x", 1.0 + i * 1e-4] if i % 2 else ["x"]})
        level.append(f"b{i}")
    k = 0
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level) - 1, 2):
            nodes.append({"name": f"a{k}", "op": "add", "inputs": [level[j], level[j + 1]]})
            nxt.append(f"a{k}")
            k += 1
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    nodes.append({"name": "loss", "op": "sum", "inputs": [level[0]]})
    spec: dict[str, Any] = {"inputs": {"x": {"shape": [width_elems], "seed": 1}}, "nodes": nodes}
    if engines:
        spec["engines"] = engines
    return spec


def small_cnn(batch: int, engines: list[str] | None = None, device: str | None = None) -> dict[str, Any]:
    """examples/small_cnn.json with `batch` images (labels drawn at random in 0..2)."""
    spec = json.loads((EXAMPLES / "small_cnn.json").read_text())
    spec["inputs"]["images"]["shape"][0] = batch
    spec["inputs"]["labels"] = {"shape": [batch], "init": "randint", "low": 0, "high": 3, "dtype": "int64", "seed": 0}
    if engines:
        spec["engines"] = engines
    if device:
        spec["device"] = device
    return spec


def node_count(spec: dict[str, Any]) -> int:
    """Nodes in a nodes-form spec (model: layers + loss)."""
    if spec.get("nodes") is not None:
        return len(spec["nodes"])
    if spec.get("model") is not None:
        return len(spec["model"]["layers"]) + 1
    return 0


# ---- op families: graphs where one family of ops does (almost) all the work ----------------------------


def _leaf(shape: list[int], seed: int, **kw: Any) -> dict[str, Any]:
    return {"shape": shape, "init": "normal", "seed": seed, **kw}


def op_family(family: str, batch: int) -> dict[str, Any]:
    """A graph for one op family at `batch`, ending in a scalar (via sum/mean, a negligible share)."""
    if family == "elementwise":
        d = 4096
        nodes = [
            {"name": "a", "op": "mul", "inputs": ["x", "y"]},
            {"name": "b", "op": "add", "inputs": ["a", "x"]},
            {"name": "c", "op": "tanh", "inputs": ["b"]},
            {"name": "d", "op": "sigmoid", "inputs": ["c"]},
            {"name": "e", "op": "exp", "inputs": ["d"]},
            {"name": "f", "op": "sub", "inputs": ["e", "y"]},
            {"name": "g", "op": "relu", "inputs": ["f"]},
            {"name": "h", "op": "div", "inputs": ["g", "e"]},
            {"name": "loss", "op": "sum", "inputs": ["h"]},
        ]
        return {"inputs": {"x": _leaf([batch, d], 0), "y": _leaf([batch, d], 1)}, "nodes": nodes}
    if family == "reductions":
        d = 4096
        nodes = [
            {"name": "s", "op": "sum", "inputs": ["x"], "args": {"dim": 1, "keepdim": True}},
            {"name": "m", "op": "mean", "inputs": ["x"], "args": {"dim": 1, "keepdim": True}},
            {"name": "mx", "op": "max", "inputs": ["x"], "args": {"dim": 1, "keepdim": True}},
            {"name": "sm", "op": "softmax", "inputs": ["x"], "args": {"dim": 1}},
            {"name": "ls", "op": "log_softmax", "inputs": ["x"], "args": {"dim": 1}},
            {"name": "t1", "op": "add", "inputs": ["s", "m"]},
            {"name": "t2", "op": "add", "inputs": ["t1", "mx"]},
            {"name": "u", "op": "mul", "inputs": ["sm", "ls"]},
            {"name": "r1", "op": "sum", "inputs": ["u"]},
            {"name": "r2", "op": "sum", "inputs": ["t2"]},
            {"name": "loss", "op": "add", "inputs": ["r1", "r2"]},
        ]
        return {"inputs": {"x": _leaf([batch, d], 0)}, "nodes": nodes}
    if family == "matmul":
        d = 512
        nodes = [
            {"name": "h1", "op": "matmul", "inputs": ["x", "w1"]},
            {"name": "h2", "op": "linear", "inputs": ["h1", "w2"]},
            {"name": "h3", "op": "matmul", "inputs": ["h2", "w3"]},
            {"name": "loss", "op": "sum", "inputs": ["h3"]},
        ]
        return {"inputs": {"x": _leaf([batch * 16, d], 0), "w1": _leaf([d, d], 1), "w2": _leaf([d, d], 2),
                           "w3": _leaf([d, d], 3)}, "nodes": nodes}
    if family == "conv2d":
        nodes = [
            {"name": "c1", "op": "conv2d", "inputs": ["x", "w1", "b1"], "args": {"padding": 1}},
            {"name": "c2", "op": "conv2d", "inputs": ["c1", "w2"], "args": {"padding": 1, "stride": 2}},
            {"name": "loss", "op": "sum", "inputs": ["c2"]},
        ]
        return {"inputs": {"x": _leaf([batch, 8, 32, 32], 0, requires_grad=False), "w1": _leaf([16, 8, 3, 3], 1),
                           "b1": _leaf([16], 2), "w2": _leaf([32, 16, 3, 3], 3)}, "nodes": nodes}
    if family == "pooling":
        nodes = [
            {"name": "p1", "op": "max_pool2d", "inputs": ["x"], "args": {"kernel_size": 2}},
            {"name": "p2", "op": "avg_pool2d", "inputs": ["x"], "args": {"kernel_size": 3, "stride": 2, "padding": 1}},
            {"name": "p3", "op": "max_pool2d", "inputs": ["p1"], "args": {"kernel_size": 3, "stride": 1, "padding": 1}},
            {"name": "s1", "op": "sum", "inputs": ["p3"]},
            {"name": "s2", "op": "sum", "inputs": ["p2"]},
            {"name": "loss", "op": "add", "inputs": ["s1", "s2"]},
        ]
        return {"inputs": {"x": _leaf([batch, 16, 32, 32], 0)}, "nodes": nodes}
    raise ValueError(family)


FAMILIES = ("elementwise", "reductions", "matmul", "conv2d", "pooling")


def large_result(rows: int = 1024, cols: int = 1024) -> dict[str, Any]:
    """A few big tensors: ~rows*cols*4 bytes each, 8 nodes x (value, grad) x 2 engines stored."""
    nodes = [
        {"name": "a", "op": "tanh", "inputs": ["x"]},
        {"name": "b", "op": "mul", "inputs": ["a", "x"]},
        {"name": "c", "op": "sigmoid", "inputs": ["b"]},
        {"name": "loss", "op": "mean", "inputs": ["c"]},
    ]
    return {"inputs": {"x": _leaf([rows, cols], 0)}, "nodes": nodes}


def dumps(spec: dict[str, Any]) -> bytes:
    return json.dumps(spec, separators=(",", ":")).encode()


def with_engines(spec: dict[str, Any], engines: list[str]) -> dict[str, Any]:
    s = copy.deepcopy(spec)
    s["engines"] = engines
    return s
