"""Run a Graph in PyTorch: capture every grad, and hook the grad_fns whose edges need it to see the gradient on each edge."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import cache
from typing import Any

import numpy as np

from services.engines import AutogradMeta, Edge, EngineRun
from services.errors import SpecError
from services.ir import Graph


def to_host(tensors: list[Any], batched: bool) -> list[np.ndarray]:
    """Tensors as numpy arrays (on the CPU: see _host_views). On a GPU (`batched`), one copy per dtype: the
    tensors are packed into one flat device buffer and copied once into pinned host memory, instead of one
    small synchronising copy per tensor, which dominates the cost of a trace on a GPU."""
    import torch

    out: list[np.ndarray | None] = [None] * len(tensors)
    if not batched:
        return _host_views(tensors, out)
    by_dtype: dict[Any, list[int]] = {}
    for i, t in enumerate(tensors):
        by_dtype.setdefault(t.dtype, []).append(i)
    for dtype, idx in by_dtype.items():
        flat = torch.cat([tensors[i].detach().reshape(-1) for i in idx])
        host = torch.empty(flat.shape, dtype=dtype, pin_memory=flat.is_cuda)
        host.copy_(flat, non_blocking=flat.is_cuda)
        if flat.is_cuda:
            torch.cuda.current_stream().synchronize()
        arr = host.numpy()
        pos = 0
        for i in idx:
            n = tensors[i].numel()
            out[i] = arr[pos : pos + n].reshape(tuple(tensors[i].shape))
            pos += n
    return out  # type: ignore[return-value]


SMALL = 4096
"""Tensors of up to this many elements are copied to the host in stacks of their shape; larger ones are viewed."""


def _host_views(tensors: list[Any], out: list[np.ndarray | None]) -> list[np.ndarray]:
    """On the CPU: large tensors as numpy views of their memory, small ones stacked per (dtype, shape) into one
    array and handed out as its rows: Tensor.numpy() costs ~4 us a call, a 10k-node graph has ~30k tensors.
    Grouping reads each tensor's dtype and shape once; sizes and the no-grad mode are per group."""
    import torch

    scalars = _scalar_dtypes()
    groups: dict[tuple[Any, ...], list[int]] = {}
    # One tensor often stands for several (a grad that add passed on to both inputs, the expanded grad of a sum
    # down a tree of adds): each is read once.
    seen_at: dict[int, int] = {}
    same: list[tuple[int, int]] = []
    for i, t in enumerate(tensors):
        j = seen_at.setdefault(id(t), i)
        if j != i:
            same.append((i, j))
            continue
        key = (t.dtype, t.shape)
        idx = groups.get(key)
        if idx is None:
            groups[key] = [i]
        else:
            idx.append(i)
    stacks = []
    for (_, shape), idx in groups.items():
        if len(idx) < 8 or math.prod(shape) > SMALL:  # large: a view; a few small: a stack costs what views do
            for i in idx:
                t = tensors[i]
                out[i] = (t.detach() if t.requires_grad else t).numpy()
        else:
            stacks.append(idx)
    if stacks:
        with torch.no_grad():
            for idx in stacks:
                first = tensors[idx[0]]
                if first.dim() == 0 and first.dtype in scalars:  # Tensor.item() is exact for these, 2x a stack's speed
                    rows = np.array([tensors[i].item() for i in idx], dtype=scalars[first.dtype])
                else:
                    # one tensor that is not contiguous (an expanded grad) sends all of them down torch.stack's slow
                    # path (4x the time of 15k [16] vectors): such ones are made contiguous first
                    group = [tensors[i] for i in idx]
                    rows = torch.stack([t if t.is_contiguous() else t.contiguous() for t in group]).numpy()
                for j, i in enumerate(idx):
                    out[i] = rows[j, ...]  # a view with the tensor's own shape (0-d arrays included)
    for i, j in same:
        out[i] = out[j]
    return out  # type: ignore[return-value]


@cache
def _scalar_dtypes() -> dict[Any, np.dtype]:
    """torch dtype -> numpy dtype of the 0-d tensors read with Tensor.item() (a Python float, int or bool holds
    each of their values exactly)."""
    import torch

    return {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64), torch.int64: np.dtype(np.int64),
            torch.bool: np.dtype(np.bool_)}


def run_torch(graph: Graph) -> EngineRun:
    """Forward and backward in torch on graph.device; torch is imported here, not at module load, and before the
    clock starts: the first import in a process (~1 s) is no part of the trace (`gradtrace run` showed it as
    the torch engine's time)."""
    import torch  # noqa: F401

    t0 = time.perf_counter()
    with full_float32() if graph.device == "cuda" else nullcontext(), default_dtype(graph.dtype):
        run, tensors = _run(graph)
        release(tensors)
    run.seconds = time.perf_counter() - t0
    return run


@contextmanager
def default_dtype(dtype: str) -> Iterator[None]:
    """torch's default dtype set to the spec's while a job runs (restored after): the spec's dtype is the program's
    default dtype, so `int_tensor * 0.5` is float64 in a float64 spec, as under torch.set_default_dtype."""
    import torch

    was = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        yield
    finally:
        torch.set_default_dtype(was)


@contextmanager
def full_float32() -> Iterator[None]:
    """TF32 off for convolutions and matmuls while a job runs on a GPU (restored after). torch's default lets cuDNN
    convolve in TF32 on Ampere and newer cards: measured on an H200, the small CNN's conv weight and bias grads
    then differ from the float32 reference by 5.7e-4 relative (a 'disagree' for every conv job), against 5e-7
    with TF32 off. The result's notes say so."""
    import torch

    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def release(tensors: dict[str, Any]) -> None:
    """Drop the tensors from the output down (reverse graph order), so that each autograd node is freed on its
    own. Nodes that have a Python object (the engine read their grad_fn) free their inputs recursively in C++
    when the last tensor holding them goes: a 100k-node chain freed at once overflowed the C stack."""
    for name in reversed(list(tensors)):
        del tensors[name]


def _stale_save(graph: Graph, message: str) -> SpecError:
    """torch's backward failed on a tensor the program changed in place after an op saved it: the program fails so
    in torch too. The error names the in-place changes."""
    writes = [f"line {n.line} `{n.expr[:60]}` ({n.writes})" if n.line else f"node '{n.name}' ({n.writes})"
              for n in graph.nodes if n.writes is not None]
    return SpecError(f"torch fails at backward() on this program, as it does running it: {message.split(' Hint:')[0]} "
                     f"The program changes in place a tensor that an op saved for its backward ({'; '.join(writes[:5])}"
                     f"{'; ...' if len(writes) > 5 else ''}): write it as a new tensor (`x = x + 1`, "
                     "`x = torch.where(mask, v, x)`) instead", loc=("program",))


def _failed(node: Any, e: Exception) -> Exception:
    """torch refused a node's op on these values (an index computed out of range, a number that does not fit the
    dtype): the program fails there in torch too. The same exception (the job's engine_error names it), its message
    naming the node and its line."""
    where = f"node '{node.name}'" + (f", line {node.line}" if node.line else "")
    msg = f"{str(e).splitlines()[0] if str(e) else type(e).__name__} ({where}: torch raises this running the program too)"
    try:
        return type(e)(msg)
    except Exception:  # an exception type that takes other arguments
        return RuntimeError(f"{type(e).__name__}: {msg}")


def _run(graph: Graph) -> tuple[EngineRun, dict[str, Any]]:
    """run_torch's work; returns the run and the tensors, which alone still hold the autograd graph (every other
    reference to a tensor or grad_fn is a local of this frame, gone on return). Per node it does what the
    results need and no more: bookkeeping is what a trace pays over bare torch (bench section 2)."""
    import torch
    from torch.autograd.graph import get_gradient_edge, increment_version

    if graph.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but this worker has no CUDA device (torch.cuda.is_available() is False)")
    dev = torch.device(graph.device)
    on_cpu = dev.type == "cpu"
    tensors: dict[str, Any] = {}
    leaf_of: dict[int, str] = {}
    values = graph.leaf_values()
    for leaf in graph.leaves.values():
        t = torch.from_numpy(np.array(values[leaf.name]))
        if not on_cpu:
            t = t.to(dev)
        t.requires_grad_(leaf.requires_grad)
        tensors[leaf.name] = t
        leaf_of[id(t)] = leaf.name
    wanted = [k for k, t in tensors.items() if t.requires_grad]  # what autograd.grad captures, in graph order
    owner: dict[Any, str] = {}
    fns: list[Any] = []  # each node's grad_fn, read once (None where it has none)
    # A view's grad_fn is made anew when its base's version changes (a write into the base): with writes in the
    # program, views are captured by the gradient edge they had when made, not by the tensor.
    pinned: dict[str, Any] = {}
    writes = any(node.writes is not None for node in graph.nodes)
    cloned: set[str] = set()  # nodes run on a clone of their input (a write into a view)
    for node in graph.nodes:
        # The program changes this tensor in place: what saved it is stale, as in torch. Before the op, which may
        # save it itself (`x *= w`: mul keeps x, as torch's mul_ keeps a copy); after a write into a clone (setitem),
        # whose value may be a view of the tensor (`y[0] = y[2]`), and after a change of a view, which the bump would
        # give a new grad_fn before the op reads it.
        written = node.writes
        after = written is not None and (node.op.hides_clone or tensors[written]._is_view())  # F.relu_(x.t()): a view
        if written is not None and not after:
            increment_version(tensors[written])
        xs = [tensors[i] if i.__class__ is str else i for i in node.inputs]
        if node.in_place:  # `h.unsqueeze_(0)`: the tensor itself changes shape; h@1 keeps its view and its grad's edge
            src = node.inputs[0]
            if xs[0].requires_grad and src not in pinned:
                pinned[src] = get_gradient_edge(xs[0])
            tensors[src] = xs[0].detach()
        if after and not node.op.hides_clone and node.inputs[0] == written:
            # `F.leaky_relu(v, inplace=True)` of a view (InstanceNorm's output): run on a copy, whose version is its own,
            # so that the op's save of its input stays valid, as torch's in-place kernel saves its result; the bump
            # after it fails what saved the view before. next_functions look through the clone, as for setitem.
            xs[0] = xs[0].clone()
            cloned.add(node.name)
        try:
            out = node.op.torch_in_place(torch, xs, node.args) if node.in_place else node.op.torch(torch, xs, node.args)
        except (RuntimeError, IndexError) as e:  # torch's own refusals of these values
            raise _failed(node, e) from None
        if after:
            increment_version(tensors[written])
        for x in xs:
            if out is x and not node.in_place:
                out = out.view_as(out)  # an op that returned its input unchanged still gets its own node
                break
        fn = None
        if out.requires_grad:
            if node.requires_grad:
                fn = out.grad_fn
                owner[fn] = node.name
                wanted.append(node.name)
                if writes and out._is_view() or node.in_place:  # a view op's, or a view torch made inside an op
                    pinned[node.name] = get_gradient_edge(out)  # (instance_norm's); a tensor changed in place again
            else:  # computed under torch.no_grad() in the program: no graph, as torch keeps none
                out = out.detach()
        fns.append(fn)
        tensors[node.name] = out

    # The gradient on edge src -> dst is src's own grad when dst is src's only consumer. Only the nodes
    # with an input used elsewhere too get their grad_fn hooked, with the torch-internal functions behind it.
    # Counted over every input (C-speed Counter): a node reading a source twice counts it twice, hooks included,
    # so a node that is not hooked reads each source once and from it alone.
    uses = Counter([i for node in graph.nodes for i in node.inputs if i.__class__ is str])
    shared = {k for k, c in uses.items() if c > 1}
    shared.add(graph.output)  # the output's grad is the seed, not an edge's
    hooked_nodes = {node.name for node in graph.nodes if not shared.isdisjoint(node.inputs)}
    captured: dict[int, tuple[Any, ...]] = {}
    hooked: set[Any] = set()

    def hook_from(fn: Any) -> None:
        stack = [fn]
        while stack:
            f = stack.pop()
            if f is None or f in hooked or (f is not fn and (f in owner or type(f).__name__ == "AccumulateGrad")):
                continue
            hooked.add(f)
            # keyed by id: a hook holding its own grad_fn would be a cycle through C++ that no GC sees (a leak
            # of the whole graph per job); `hooked` keeps every hooked function alive while its id is a key
            f.register_hook(lambda gi, go, k=id(f): captured.__setitem__(k, gi))
            stack.extend(nf for nf, _ in f.next_functions)

    fn_of = {name: fn for fn, name in owner.items()} if hooked_nodes else {}
    for name in hooked_nodes:
        hook_from(fn_of.get(name))
    del fn_of
    out = tensors[graph.output]
    grad_output = None if graph.grad_output is None else torch.from_numpy(np.array(graph.grad_output)).to(dev)
    # every grad at once, as torch.autograd.grad captures them: the same sums that out.backward() leaves in each
    # leaf's .grad and each retain_grad()'s .grad, without a hook and a grad copy per node (~15% of a scalar chain)
    try:
        got = torch.autograd.grad(out, [pinned.get(k, tensors[k]) for k in wanted] if pinned else [tensors[k] for k in wanted],
                                  grad_output, allow_unused=True)
    except RuntimeError as e:
        if "modified by an inplace operation" in str(e):
            raise _stale_save(graph, str(e)) from None
        raise
    if not on_cpu:
        torch.cuda.synchronize()

    run = EngineRun("torch")

    def target(f: Any) -> str | None:
        """The graph node a next_functions entry leads to, looking through torch-internal functions."""
        seen = 0
        while f is not None and seen < 64:
            if f in owner:
                return owner[f]
            if type(f).__name__ == "AccumulateGrad":
                return leaf_of.get(id(f.variable))
            nexts = [nf for nf, _ in f.next_functions if nf is not None]
            f = nexts[0] if nexts else None
            seen += 1
        return None

    def flow(f: Any, g: Any, dst: str, edges: dict[Edge, Any], seen: set[int]) -> None:
        if f is None or g is None:
            return
        if f in owner or type(f).__name__ == "AccumulateGrad":
            src = target(f)
            if src is not None:
                key = (src, dst)
                edges[key] = edges[key] + g if key in edges else g
            return
        if id(f) in seen:  # a torch-internal function two paths reach (label smoothing's log_softmax): its captured
            return  # gradients are its whole output already, passed on once
        seen.add(id(f))
        for (nf, _), gk in zip(f.next_functions, captured.get(id(f), ()), strict=False):
            flow(nf, gk, dst, edges, seen)

    edges: dict[Edge, Any] = {}  # a tensor the hooks captured, or the name of the source whose grad it is
    grads: dict[str, Any] = dict.fromkeys(tensors)
    grads.update(zip(wanted, got, strict=True))
    del got
    grad_fn: list[str | None] = [None] * len(graph.leaves)  # leaves have none
    next_functions: list[list[list[str | None]]] = [[] for _ in graph.leaves]
    owned = owner.get
    for node, fn in zip(graph.nodes, fns, strict=True):
        name = node.name
        if fn is None:
            grad_fn.append(None)
            next_functions.append([])
            continue
        nfs = fn.next_functions
        grad_fn.append(type(fn).__name__)
        entries = [[None, None] if nf is None else [type(nf).__name__, owned(nf) or target(nf)] for nf, _ in nfs]
        if (node.op.hides_clone or name in cloned) and nfs and nfs[0][0] is not None and nfs[0][0] not in owner:
            inner = nfs[0][0].next_functions[0][0]  # behind our CloneBackward0, the input's grad_fn, as torch shows
            entries[0] = [None, None] if inner is None else [type(inner).__name__, owned(inner) or target(inner)]
        next_functions.append(entries)
        if name in hooked_nodes:
            if id(fn) in captured:
                seen: set[int] = set()
                for (nf, _), gk in zip(nfs, captured[id(fn)], strict=False):
                    flow(nf, gk, name, edges, seen)
            continue
        for src in node.inputs:  # not hooked: each source read once, by this node alone, its grad is the edge's
            if src.__class__ is str and grads[src] is not None:
                edges[(src, name)] = src
    run.autograd = AutogradMeta(grad_fn, next_functions)
    names = list(tensors)
    with_grad = [k for k in wanted if grads[k] is not None]
    flowed = [g for g in edges.values() if g.__class__ is not str]
    arrays = to_host([*tensors.values(), *(grads[k] for k in with_grad), *flowed], batched=not on_cpu)
    n, m = len(names), len(with_grad)
    run.values = dict(zip(names, arrays[:n], strict=True))
    run.grads = dict.fromkeys(names)
    run.grads.update(zip(with_grad, arrays[n : n + m], strict=True))
    host_grads, host_flowed = run.grads, iter(arrays[n + m :])
    run.edges = {k: host_grads[g] if g.__class__ is str else next(host_flowed) for k, g in edges.items()}
    owner.clear(), captured.clear(), hooked.clear(), pinned.clear()  # grad_fn objects the closures above would keep past return
    return run, tensors
