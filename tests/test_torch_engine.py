"""The torch engine's host copies: one packed copy per dtype must give the same arrays as .cpu()."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from services.engines.torch_engine import to_host


def test_batched_host_copy_matches_per_tensor_copies() -> None:
    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(2, 3, generator=g), torch.tensor(5.0, dtype=torch.float64), torch.randn(4, generator=g).t(),
          torch.arange(6).reshape(2, 3), torch.randn(3, 2, generator=g).t(), torch.zeros(0, 3)]
    plain = to_host(ts, batched=False)
    packed = to_host(ts, batched=True)
    for a, b, t in zip(plain, packed, ts, strict=True):
        assert a.shape == b.shape == tuple(t.shape) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_cuda_trace_matches_cpu_when_a_gpu_is_present() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from pathlib import Path

    from cli.specfile import load_spec
    from services.trace import trace

    spec = load_spec(Path(__file__).resolve().parent.parent / "examples" / "small_cnn.json")
    cpu = trace(spec.model_copy(update={"engines": ["torch", "reference"]}))
    gpu = trace(spec.model_copy(update={"engines": ["torch", "reference"], "device": "cuda"}))
    assert gpu.result.comparison.verdict == "agree"  # with cuDNN's TF32 the conv grads were 5.7e-4 off (H200)
    assert any("TF32 off" in n for n in gpu.result.notes)
    assert torch.backends.cudnn.allow_tf32  # torch's default is back after the job
    np.testing.assert_allclose(gpu.arrays["torch/grad/0.weight"], cpu.arrays["torch/grad/0.weight"], rtol=1e-4, atol=1e-6)


def test_cpu_host_copies_view_large_tensors_and_stack_small_ones() -> None:
    big = torch.randn(5000)
    small = [torch.randn((), requires_grad=True) * 2, torch.randn(3, 2), torch.tensor(7), torch.randn(3, 2).t()]
    out = to_host([big, *small], batched=False)
    assert np.shares_memory(out[0], big.numpy())  # no copy of a large tensor
    for a, t in zip(out[1:], small, strict=True):
        assert a.shape == tuple(t.shape) and a.dtype == t.detach().numpy().dtype
        np.testing.assert_array_equal(a, t.detach().numpy())


def test_repeated_and_expanded_tensors_come_back_as_themselves() -> None:
    """A tensor listed several times is read once (the same array for each), and an expanded (stride-0, not
    contiguous) tensor in a stacked group comes back with its own numbers."""
    g = torch.Generator().manual_seed(1)
    vecs = [torch.randn(16, generator=g) for _ in range(12)]
    expanded = torch.tensor(3.0).expand(16)
    scalar = torch.tensor(2.5) * 1
    ts = [*vecs, expanded, vecs[3], expanded, *[torch.randn((), generator=g) for _ in range(9)], scalar, scalar]
    out = to_host(ts, batched=False)
    for a, t in zip(out, ts, strict=True):
        assert a.shape == tuple(t.shape) and a.dtype == t.numpy().dtype
        np.testing.assert_array_equal(a, t.numpy())
    assert out[13] is out[3] and out[14] is out[12] and out[-1] is out[-2]


def test_groups_of_0d_tensors_come_back_bit_for_bit() -> None:
    """Eight or more 0-d tensors of a dtype are read with Tensor.item() (a stack for other dtypes): every value
    exact, the special floats and int64 past 2**53 included, each a 0-d array of its own dtype."""
    floats = [float("nan"), -0.0, float("inf"), -float("inf"), 1e-45, 3.4028234663852886e38, 0.1, -2.5]
    groups = [
        [torch.tensor(v, dtype=torch.float32, requires_grad=True) * 1 for v in floats],
        [torch.tensor(v, dtype=torch.float64) for v in floats],
        [torch.tensor(2**62 + k) for k in range(9)] + [torch.tensor(-(2**63))],
        [torch.tensor(k % 3 == 0) for k in range(8)],
        [torch.tensor(k, dtype=torch.int32) for k in range(8)],  # not read by item(): a stack
    ]
    ts = [t for g in groups for t in g]
    out = to_host(ts, batched=False)
    for a, t in zip(out, ts, strict=True):
        want = t.detach().numpy()
        assert isinstance(a, np.ndarray) and a.shape == () and a.dtype == want.dtype
        assert a.tobytes() == want.tobytes() or (np.isnan(a) and np.isnan(want))


def test_edge_gradients_with_and_without_hooks_match_the_reference() -> None:
    # edges into a single consumer come from the source's retained grad (no hook); shared sources, a source used
    # twice by one node, a leaf feeding several nodes and broadcasting go through the hooked path
    from services.compiler import compile_spec
    from services.engines.reference import run_reference
    from services.engines.torch_engine import run_torch
    from services.materialize import materialize
    from shared.spec import TraceSpec

    program = "\n".join([
        "x = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)",
        "w = torch.tensor(1.5, requires_grad=True)",
        "a = x * w", "b = a.sin()", "c = b * b", "d = c + a", "e = d.exp()", "f = (e * x).sum()",
    ])
    graph = compile_spec(TraceSpec.model_validate({"program": program}))
    materialize(graph)
    t, r = run_torch(graph), run_reference(graph)
    assert set(t.edges) == set(r.edges) and ("b", "c") in t.edges and ("a", "d") in t.edges and ("x", "f#1") in t.edges
    for key in r.edges:
        np.testing.assert_allclose(t.edges[key], r.edges[key], rtol=1e-5, atol=1e-6, err_msg=str(key))
    np.testing.assert_allclose(t.edges[("b", "c")], t.grads["b"])  # single consumer: its grad
    assert not np.allclose(t.edges[("a", "d")], t.grads["a"])  # a feeds b and d: the edge is one part


def _chain_graph(n: int, shared: bool) -> Any:
    from services.compiler import compile_spec
    from services.materialize import materialize
    from shared.spec import TraceSpec

    nodes, prev = [], "x"
    for i in range(n):  # with `shared`, every other node also reads x: those edges go through hooks
        nodes.append({"name": f"n{i}", "op": "mul" if i % 2 else "sin",
                      "inputs": [prev, "x"] if i % 2 and shared else [prev, 1.01] if i % 2 else [prev]})
        prev = f"n{i}"
    graph = compile_spec(TraceSpec.model_validate({"inputs": {"x": 0.5}, "nodes": nodes}))
    materialize(graph)
    return graph


@pytest.mark.parametrize("shared", [False, True])
def test_no_autograd_graph_outlives_its_run(shared: bool) -> None:
    # hooks holding their own grad_fn made a cycle through C++ that no GC sees: every job leaked its graph
    import gc

    from services.engines.torch_engine import run_torch

    graph = _chain_graph(2000, shared)
    run_torch(graph)
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(3):
        run_torch(graph)
    gc.collect()
    assert len(gc.get_objects()) - before < 100


def test_a_deep_chain_is_freed_without_deep_recursion() -> None:
    # 20k nodes on a 1 MiB thread stack: freeing the graph at once recursed in C++ per node (a segfault at
    # 100k nodes on the main thread); run in a child, which a crash would kill
    import subprocess
    import sys
    from pathlib import Path

    code = "\n".join([
        "import threading, gc, tests.test_torch_engine as t",
        "from services.engines.torch_engine import run_torch",
        "graph = t._chain_graph(20000, True)",
        "def go():",
        "    run = run_torch(graph); gc.collect(); print(len(run.edges))",
        "threading.stack_size(1 << 20)",
        "th = threading.Thread(target=go); th.start(); th.join()",
    ])
    root = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert int(p.stdout.strip()) == 20000 + 10000  # one edge per node, plus x -> every mul


def test_a_gpu_job_notes_that_tf32_is_off_and_a_cpu_job_does_not() -> None:
    import json
    from pathlib import Path

    from services.compiler import compile_spec
    from shared.spec import TraceSpec

    raw = json.loads((Path(__file__).resolve().parent.parent / "examples" / "small_cnn.json").read_text())
    gpu = compile_spec(TraceSpec.model_validate({**raw, "device": "cuda"}))  # compiling needs no GPU
    cpu = compile_spec(TraceSpec.model_validate(raw))
    assert any("TF32 off" in n for n in gpu.notes) and not any("TF32" in n for n in cpu.notes)


@pytest.mark.parametrize(("node", "note"), [
    ({"name": "y", "op": "sort", "inputs": ["x"]}, "sort: torch's CUDA sort orders equal values as it likes"),
    ({"name": "y", "op": "sort", "inputs": ["x"], "args": {"stable": True}}, None),
    ({"name": "y", "op": "hardsigmoid", "inputs": ["x"]}, "hardsigmoid: torch's CUDA kernel multiplies by one sixth"),
    ({"name": "y", "op": "scatter", "inputs": ["x", "i", "x"], "args": {"dim": 0}}, "scatter: where index repeats"),
    ({"name": "y", "op": "scatter_add", "inputs": ["x", "i", "x"], "args": {"dim": 0}}, None),
    ({"name": "y", "op": "topk", "inputs": ["x"], "args": {"k": 2}}, "topk: torch's CUDA kernel picks among equal values"),
    ({"name": "y", "op": "median", "inputs": ["x"], "args": {"dim": 0}}, "median: along a dim, torch's CUDA kernel picks"),
    ({"name": "y", "op": "median", "inputs": ["x"]}, None),  # of all elements: no index, ties share the gradient
    ({"name": "y", "op": "weight_norm", "inputs": ["x", "x"]}, "weight_norm: torch's fused CUDA kernel"),
])
def test_a_gpu_job_notes_where_torchs_cuda_kernel_differs_from_its_cpu_one(node: dict, note: str | None) -> None:
    """Op.on_cuda: a job with device 'cuda' says where CUDA's numbers may differ from the CPU's and the reference
    engine's (unspecified tie order, racing writes, a float32 constant); a CPU job says nothing of it."""
    from services.compiler import compile_spec
    from shared.spec import TraceSpec

    raw = {"inputs": {"x": [1.0, 2.0, 1.0], "i": {"value": [0, 0, 1], "dtype": "int64"}},
           "nodes": [node, {"name": "z", "op": "sum", "inputs": ["y"]}]}
    gpu = compile_spec(TraceSpec.model_validate({**raw, "device": "cuda"})).notes
    cpu = compile_spec(TraceSpec.model_validate(raw)).notes
    found = [n for n in gpu if n.startswith(node["op"] + ":")]
    assert (found[0].startswith(note) if note else not found), gpu
    assert not any(n.startswith(node["op"] + ":") for n in cpu)


EXAMPLES = sorted(p.name for p in __import__("pathlib").Path(__file__).resolve().parent.parent.joinpath("examples").iterdir()
                  if p.suffix in (".py", ".json"))


@pytest.mark.parametrize("example", EXAMPLES)
def test_grads_are_bit_for_bit_what_backward_and_retain_grad_give(example: str) -> None:
    """The engine takes every grad from one torch.autograd.grad call: each must be, byte for byte, the .grad that
    out.backward() leaves on a leaf and that retain_grad() keeps on every other tensor, as a user's script sees."""
    from pathlib import Path

    from cli.specfile import load_spec
    from services.compiler import compile_spec
    from services.engines.torch_engine import run_torch
    from services.materialize import materialize

    graph = compile_spec(load_spec(Path(__file__).resolve().parent.parent / "examples" / example))
    materialize(graph)
    run = run_torch(graph)
    tensors: dict[str, Any] = {}
    for leaf in graph.leaves.values():
        tensors[leaf.name] = torch.from_numpy(np.array(leaf.value)).requires_grad_(leaf.requires_grad)
    for node in graph.nodes:
        out = node.op.torch(torch, [tensors[i] if isinstance(i, str) else i for i in node.inputs], node.args)
        if any(out is t for t in tensors.values()):
            out = out.view_as(out)
        if out.requires_grad:
            out.retain_grad()
        tensors[node.name] = out
    go = None if graph.grad_output is None else torch.from_numpy(np.array(graph.grad_output))
    tensors[graph.output].backward(go)
    with_grad = 0
    for name, t in tensors.items():
        if t.grad is None:
            assert run.grads[name] is None, name
            continue
        with_grad += 1
        want = t.grad.numpy()
        got = run.grads[name]
        assert got.shape == want.shape and got.dtype == want.dtype, name
        assert got.tobytes() == want.tobytes(), name
    assert with_grad >= 3
