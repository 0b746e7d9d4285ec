"""Tensors a program makes (torch.tensor, rand, randn, zeros, ...: leaves drawn on torch's generator in
program order) and writes into leaves (`.data =`, copy_, zero_, uniform_, nn.init.*, nn.Parameter)."""

from __future__ import annotations

import ast
import math
from typing import Any

import numpy as np

from services import strides
from services.compiler.expressions import ExpressionCompiler, _is_const, _kind
from services.compiler.inputs import infer_dtype, literal_array, value_range
from services.compiler.values import (
    TENSOR_ATTRIBUTES,
    Ctx,
    DType,
    Generator,
    Instance,
    ModuleInst,
    ParameterDict,
    ParameterList,
    T,
    Value,
    is_number,
)
from services.ir import TORCH_DEFAULT_SEED, Event, Leaf, Stream
from services.materialize import INITS as NN_INIT
from services.materialize import INPLACE as INPLACE_INIT

CREATORS = {
    "tensor", "rand", "randn", "randint", "zeros", "ones", "full", "arange", "linspace", "eye", "empty", "normal", "randperm",
    "rand_like", "randn_like", "zeros_like", "ones_like", "full_like", "empty_like", "randint_like",
}
"""torch functions that make a tensor (a leaf of the graph)."""
RANDOM = {"rand", "randn", "randint", "normal", "randperm", "rand_like", "randn_like", "randint_like"}
"""Those that draw from torch's generator."""
CREATOR_KWARGS = {"dtype", "requires_grad", "device", "fill_value", "steps", "generator"}

__all__ = ["CREATORS", "INPLACE_INIT", "NN_INIT", "RANDOM", "TensorCreation", "without_data"]


STREAM_ARITHMETIC = ("add_", "sub_", "mul_", "div_")
"""In-place methods a leaf's update may call with a tensor (a moving average of weights), replayed in the stream."""


def without_data(node: ast.expr) -> ast.expr:
    """`w` for `w.data` (and `w.data.data`): a write through .data writes into w itself, where a read of it is a
    tensor cut from the graph."""
    while isinstance(node, ast.Attribute) and node.attr == "data":
        node = node.value
    return node


BOOL_CREATORS = {"zeros", "ones", "full", "empty", "eye", "tensor"}
"""Creators that make torch.bool tensors (masks: `torch.ones(T, T, dtype=torch.bool).triu(1)`)."""


def made_value(ev: Event) -> np.ndarray | None:
    """The value a tensor factory's event makes from numbers alone (`torch.zeros_like(g)`, `torch.full((3,), 0.5)`,
    `torch.eye(3)`, `torch.arange(4)`), known before anything runs; None for any other event (a draw, a write)."""
    a = ev.args
    fn = a.get("fn")
    if ev.op != "tensor" or fn not in ("zeros", "ones", "full", "empty", "eye", "arange") or "strides" in a:
        return None
    args, dtype = list(a.get("args", [])), np.dtype(a["dtype"])
    if fn in ("zeros", "ones", "full", "empty"):  # (empty: torch's materialize fills it with zeros too)
        return np.full(args[0], args[1] if fn == "full" else float(fn == "ones"), dtype)
    return np.eye(*args, dtype=dtype) if fn == "eye" else np.arange(*args).astype(dtype)

class TensorCreation(ExpressionCompiler):
    """Leaves the program creates, and in-place writes into them; each is an event in the torch stream."""

    shared: set[str]
    """Parameter leaves a tie made one for two modules."""
    untied: set[str]
    """Parameter leaves a tie replaced (`dec.weight = emb.weight`): dropped from the graph at the end when nothing
    used them, as torch's named_parameters has no such Parameter (their draws still run, in order)."""

    def sizes(self, args: list[ast.expr], node: ast.AST) -> list[int]:
        """torch's *size arguments: ints, or one tuple/list/torch.Size."""
        vals = [self.const(a) for a in args]
        if len(vals) == 1 and isinstance(vals[0], (list, tuple)):  # torch.zeros(x.shape), torch.Tensor(x.size())
            vals = list(vals[0])
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in vals):
            raise self.err(node, f"sizes must be non-negative integers, got {vals}")
        return vals

    def create(self, fn: str, node: ast.Call, name: str, into: Leaf | None = None, legacy: bool = False,
               dtype: str | None = None) -> T:
        """torch.tensor / rand / zeros / ... as a leaf, or written into an existing leaf (`into`); `legacy`:
        torch.Tensor([...]), always of the default float dtype; `dtype`: the one without dtype= (x.new_zeros: x's)."""
        kw = {k.arg: k.value for k in node.keywords}
        args = list(node.args)
        if fn == "normal" and ("mean" in kw or "std" in kw):  # torch.normal(mean=0.0, std=0.01, size=(8, 3))
            given = dict(zip(("mean", "std"), args, strict=False)) | {k: kw.pop(k) for k in ("mean", "std") if k in kw}
            args = [given[k] for k in ("mean", "std") if k in given] + args[2:]
        if fn == "randint" and ("low" in kw and (args or "high" not in kw)):
            raise self.err(node, "torch.randint takes low= with high= (and no positional bounds besides): "
                                 "torch.randint(low=0, high=2, size=(4,))")
        if fn == "randint" and ("low" in kw or "high" in kw):  # torch.randint(low=0, high=2, size=(4,)) (UvA's tutorials)
            names = ("low", "high", "size") if len(args) == 3 or "low" in kw or "high" in kw and args else ("high", "size")
            given = dict(zip(names, args, strict=False)) | {k: kw.pop(k) for k in ("low", "high", "size") if k in kw}
            args = [given[k] for k in ("low", "high", "size") if k in given]
        if fn == "arange" and {"start", "end", "step"} & set(kw):  # torch.arange(start=0, end=half) (DiT's timestep embedding)
            if "end" not in kw and len(args) < 2:  # torch.arange(5, step=2) is a TypeError in torch
                raise self.err(node, "torch.arange takes end= with start= (and step=), or (start, end[, step])")
            given = dict(zip(("start", "end", "step") if len(args) > 1 or "end" in kw else ("end",), args, strict=False))
            given |= {k: kw.pop(k) for k in ("start", "end", "step") if k in kw}
            args = [given.get("start", ast.Constant(0)), given["end"], *([given["step"]] if "step" in given else [])]
        if "size" in kw and not fn.endswith("_like"):  # torch.randn(size=(2, 3)), d2l's torch.normal(0, 0.01, size=...)
            args.insert(0, kw.pop("size")) if fn == "full" else args.append(kw.pop("size"))
        unknown = set(kw) - CREATOR_KWARGS
        if unknown:
            raise self.err(node, f"torch.{fn}: unsupported argument(s) {sorted(unknown)}")
        dt = self.const(kw["dtype"]) if "dtype" in kw else None
        if dt is not None and (not isinstance(dt, DType) or dt.name not in ("float32", "float64", "int64") and not (
                dt.name == "bool" and fn.removesuffix("_like") in BOOL_CREATORS)):
            raise self.err(node, f"torch.{fn}: dtype must be torch.float32, torch.float64 or torch.int64"
                                 + (f" (torch.bool: {', '.join(sorted(BOOL_CREATORS))})" if isinstance(dt, DType) else ""))
        dtype = dt.name if dt is not None else dtype
        rg = bool(self.const(kw["requires_grad"])) if "requires_grad" in kw else False
        known: tuple[float, float] | None = None
        value: np.ndarray | None = None
        event_args: list[Any] = []
        if fn == "tensor":
            if len(args) != 1:
                raise self.err(node, "torch.tensor takes one value")
            data = self.expr(args[0])
            if isinstance(data, (list, tuple)) and any(isinstance(e, T) for e in data) and into is None:
                return self.tensor_of_tensors(list(data), dtype, rg, node, name)  # torch.tensor([R]), R a 0-d tensor
            if not _is_const(data):
                raise self.err(node, f"'{self.src(args[0])[:60]}' must be a constant (number, string, bool or list), not "
                                     f"{_kind(data)}")
            data = list(data) if isinstance(data, tuple) else data
            if not (is_number(data) or isinstance(data, (list, bool))):
                raise self.err(node, "torch.tensor takes a number or a nested list of numbers")
            dtype = dtype or (self.dtype if legacy else infer_dtype(data) or self.dtype)
            value = literal_array(data, dtype, ("program",), self.builder.limits.max_tensor_elements)
            shape = tuple(value.shape)
            known = value_range(value)
        elif fn.endswith("_like"):
            like = self.tensor(args[0]) if args else None
            if like is None:
                raise self.err(node, f"torch.{fn} takes a tensor")
            shape, fn = self.shape(like), fn[:-5]
            strided = self.builder.strides.get(like.name)  # empty_like keeps the tensor's layout
            kept = strides.like(shape, strided) if strided else None  # zeros_like(x.t()) is transposed too
            # torch.ones_like(mask) is a bool tensor too; the random ones have no bool form (floats of the default)
            dtype = dtype or (self.dtype_of(like) if self.dtype_of(like) != "bool" or fn in BOOL_CREATORS else self.dtype)
            rest = [self.const(a) for a in args[1:]] + ([self.const(kw["fill_value"])] if "fill_value" in kw else [])
            if fn == "full":
                if len(rest) != 1 or not is_number(rest[0]):
                    raise self.err(node, "torch.full_like takes a tensor and a fill value")
                event_args, known = [list(shape), rest[0]], (float(rest[0]),) * 2
            elif fn == "randint":
                bounds = rest if len(rest) == 2 else [0, *rest]
                if len(bounds) != 2 or not all(isinstance(b, int) for b in bounds) or bounds[1] <= bounds[0]:
                    raise self.err(node, "torch.randint_like takes (tensor, high) or (tensor, low, high)")
                event_args, known = [*bounds, list(shape)], (float(bounds[0]), float(bounds[1] - 1))
            else:
                event_args = [list(shape)]
                known = (float(fn == "ones"),) * 2 if fn in ("zeros", "ones") else (0.0, 1.0) if fn == "rand" else None
        else:
            kept = None
            shape, event_args, known, dtype = self.creator_args(fn, args, kw, node, dtype)
        dtype = dtype or self.dtype
        if rg and dtype not in ("float32", "float64"):
            raise self.err(node, "only floating point tensors can require gradients")
        size = int(np.prod(shape, dtype=np.int64))
        if size > self.builder.limits.max_tensor_elements:
            raise self.err(node, f"shape {list(shape)} has {size} elements, over the limit of {self.builder.limits.max_tensor_elements}")
        call_text = self.src(node)
        if into is not None:
            if tuple(into.shape) != tuple(shape):
                raise self.err(node, f"'{into.name}' has shape {list(into.shape)}, the new value {list(shape)}")
            target = into.name
            into.init = f"{call_text[:80]} (line {node.lineno})"
        else:
            leaf = Leaf(name, tuple(shape), dtype, rg, init=call_text[:80], expr=f"line {node.lineno}", value=value, known_range=known)
            self.builder.add_leaf(leaf, ("program",))
            target = name
        if value is not None:
            if into is not None:
                self.stream.events.append(Event("assign", target, {"value": value}))
        else:
            stream = self.generator(kw["generator"]).stream if "generator" in kw else self.stream
            event = {"fn": fn, "args": event_args, "dtype": dtype}
            if kept is not None:  # randn_like of a transposed tensor: torch fills it through its strides (and a
                # zeros_like of one keeps them: an in-place fill or an op after it goes in that memory order)
                event["strides"] = list(kept)
                self.builder.strides[target] = kept
            stream.events.append(Event("tensor", target, event))
        return T(target)

    def tensor_of_tensors(self, items: list[Any], dtype: str | None, rg: bool, node: ast.Call, name: str) -> T:
        """torch.tensor([R]) of 0-d tensors (actor_critic.py's `torch.tensor([R])`, R a row of the returns): their
        values copied into a new tensor without grad, as torch copies them: a stack, cut from the graph."""
        if rg or not all(isinstance(e, T) and self.shape(e) == () for e in items):
            raise self.err(node, "torch.tensor of tensors takes a list of 0-d tensors (one number each), without "
                                 "requires_grad: torch.stack(...) keeps the graph")
        kinds = {self.dtype_of(e) for e in items}
        if len(kinds) > 1 and dtype is None:
            raise self.err(node, f"torch.tensor of tensors of different dtypes {sorted(kinds)}: give dtype=")
        out = self.emit("stack", list(items), {"dim": 0}, node, name=self.temp())
        want = dtype or kinds.pop()
        if want != self.dtype_of(out):
            out = self.emit("to", [out], {"dtype": want}, node, name=self.temp())
        return self.emit("detach", [out], {}, node, name=name)

    def generator(self, node: ast.expr) -> Generator:
        """The torch.Generator a `generator=` argument names (None: torch's default one)."""
        g = self.expr(node)
        if g is None:
            return Generator(self.stream)
        if not isinstance(g, Generator):
            raise self.err(node, f"generator= takes a torch.Generator, not {self.src(node)[:40]}")
        return g

    def new_generator(self, node: ast.Call) -> Generator:
        """torch.Generator(): a stream of its own, from the seed a fresh generator has (manual_seed sets it)."""
        if node.args or any(k.arg != "device" for k in node.keywords):
            raise self.err(node, "torch.Generator takes only device= here")
        g = Generator(Stream("torch", TORCH_DEFAULT_SEED))
        self.generators.append(g)
        return g

    def seed_generator(self, g: Generator, node: ast.Call) -> Generator:
        """g.manual_seed(s): reseeds that generator, in order with its draws; returns it, as torch does."""
        seed = self.const(node.args[0]) if len(node.args) == 1 and not node.keywords else None
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise self.err(node, "manual_seed takes an integer seed")
        g.stream.events.append(Event("seed", None, {"seed": seed}))
        return g

    def creator_args(
        self, fn: str, args: list[ast.expr], kw: dict[str, ast.expr], node: ast.Call, dtype: str | None
    ) -> tuple[tuple[int, ...], list[Any], tuple[float, float] | None, str | None]:
        """Shape, the torch call's positional arguments, the known value range and dtype of a creator."""
        known: tuple[float, float] | None = None
        if fn in ("rand", "randn", "zeros", "ones", "empty"):
            shape = tuple(self.sizes(args, node))
            if fn in ("zeros", "ones"):
                known = (float(fn == "ones"),) * 2
            elif fn == "rand":
                known = (0.0, 1.0)
            return shape, [list(shape)], known, dtype
        if fn == "full":
            if len(args) + ("fill_value" in kw) < 2:
                raise self.err(node, "torch.full takes a size and a fill value")
            shape = tuple(self.sizes(args[:1], node))
            v = self.const(args[1]) if len(args) > 1 else self.const(kw["fill_value"])
            if not is_number(v):
                raise self.err(node, "torch.full: fill_value must be a number")
            dtype = dtype or ("int64" if isinstance(v, int) else None)
            return shape, [list(shape), v], (float(v), float(v)), dtype
        if fn == "randint":
            vals = [self.const(a) for a in args]
            if len(vals) == 2:
                vals = [0, *vals]
            if len(vals) != 3 or not all(isinstance(v, int) for v in vals[:2]) or vals[1] <= vals[0]:
                raise self.err(node, "torch.randint takes (low, high, size) or (high, size) with high > low")
            shape = tuple(self.sizes([args[-1]], node))
            return shape, [vals[0], vals[1], list(shape)], (float(vals[0]), float(vals[1] - 1)), dtype or "int64"
        if fn == "randperm":  # shuffled indices (`x[torch.randperm(n)]`): drawn as torch draws them, int64
            n = self.const(args[0]) if len(args) == 1 else None
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise self.err(node, "torch.randperm takes n, an int >= 0")
            return (n,), [n], (0.0, float(max(n - 1, 0))), dtype or "int64"
        if fn == "arange":
            vals = [self.const(a) for a in args]
            if not 1 <= len(vals) <= 3 or not all(is_number(v) for v in vals):
                raise self.err(node, "torch.arange takes (end), (start, end) or (start, end, step) numbers")
            start, end, step = (0, vals[0], 1) if len(vals) == 1 else (*vals, 1)[:3]
            if step == 0:
                raise self.err(node, "torch.arange: step must not be 0")
            n = max(0, int(np.ceil((end - start) / step)))
            ints = all(isinstance(v, int) for v in vals)
            known = (float(min(start, start + step * (n - 1))), float(max(start, start + step * (n - 1)))) if n else None
            return (n,), list(vals), known, dtype or ("int64" if ints else None)
        if fn == "linspace":
            vals = [self.const(a) for a in args] + ([self.const(kw["steps"])] if "steps" in kw else [])
            if len(vals) != 3 or not isinstance(vals[2], int) or vals[2] < 0:
                raise self.err(node, "torch.linspace takes (start, end, steps)")
            return (vals[2],), vals, None, dtype
        if fn == "eye":
            vals = [self.const(a) for a in args]
            if not 1 <= len(vals) <= 2 or not all(isinstance(v, int) and v >= 0 for v in vals):
                raise self.err(node, "torch.eye takes (n) or (n, m)")
            return (vals[0], vals[-1]), vals, (0.0, 1.0), dtype
        if fn == "normal":
            vals = [self.const(a) for a in args]
            if len(vals) != 3 or not is_number(vals[0]) or not is_number(vals[1]):
                raise self.err(node, "torch.normal takes (mean, std, size) numbers here")
            shape = tuple(self.sizes([args[2]], node))
            return shape, [vals[0], vals[1], list(shape)], None, dtype
        raise self.err(node, f"torch.{fn} is not supported")

    # ---- writes into leaves: parameters and fresh tensors -------------------------------------

    def leaf_target(self, target: ast.expr, stmt: ast.AST) -> T:
        """The leaf an attribute target names: `conv.weight.data`, `conv.weight`, `x.data`."""
        node = without_data(target)
        v = self.expr(node)
        if not isinstance(v, T) or v.name not in self.builder.leaves:
            raise self.err(stmt, f"'{self.src(node)[:60]}' is not a parameter or a tensor the program made: it cannot be written")
        return v

    def written(self, t: T, node: ast.AST) -> None:
        """Leaf `t`'s value is about to change, in program order; its known range goes. Once an operation has used
        it (d2l's dummy forward through lazy modules, then their init), the value that operation read stays its
        own: a leaf `t@k` (see keep_version)."""
        if t.name in self.builder.used:
            if self.res.output is not None or self.builder.views.get(t.name):  # after backward(); a view of it (`w.T`)
                raise self.err(node, f"'{t.name}' is written after an operation used it: gradtrace gives a tensor one "
                                     "value for the whole trace (torch's earlier operations saw the old one); write it "
                                     "before its first use")
            self.keep_version(t, node)
        self.builder.ranges.pop(t.name, None)
        self.builder.leaves[t.name].known_range = None

    def keep_version(self, t: T, node: ast.AST) -> None:
        """The value leaf `t` had before this write, for the operations that read it: the leaf becomes `t@k` (their
        input), and `t` a new leaf that starts as its copy (an 'assign' now in the stream, which the write follows),
        what every name of the tensor means from here, as they mean the one object in torch. Finish.stale_versions
        refuses the program if backward() reaches one of those operations (torch's would read the new values)."""
        b = self.builder
        k = sum(1 for name, _ in self.versions.values() if name == t.name)
        old = f"{t.name}@{k}"
        if old in b:
            raise self.err(node, f"'{t.name}' is written after an operation used it, and the name for its earlier value, "
                                 f"'{old}', is taken")
        b.rename({n: old if n == t.name else n for n in b.shapes})
        self.rename_events({t.name: old})  # type: ignore[attr-defined]
        leaf = b.leaves[old]
        b.add_leaf(Leaf(t.name, leaf.shape, leaf.dtype, leaf.requires_grad, kind=leaf.kind, init=leaf.init, expr=leaf.expr))
        leaf.kind, leaf.init = "input", f"{t.name} before the write of line {getattr(node, 'lineno', '?')}"
        self.stream.events.append(Event("assign", t.name, {"source": old}))
        self.versions[old] = (t.name, getattr(node, "lineno", 0))

    def attribute_write(self, target: ast.Attribute, value: ast.expr, stmt: ast.stmt) -> None:
        """`conv.weight.data = torch.rand(...)`, `conv.weight = nn.Parameter(...)`, `w.requires_grad = False`."""
        owner = self.scope.get(target.value.id) if isinstance(target.value, ast.Name) else self.expr(target.value) if (
            isinstance(target.value, (ast.Attribute, ast.Subscript)) and not self.dotted(target.value)) else None
        if isinstance(owner, Instance):  # `self.fc1 = nn.Linear(...)` in __init__, `self.config.block_size = 4`
            self.set_attribute(owner, target.attr, value)  # type: ignore[attr-defined]
            return
        if isinstance(owner, Ctx):  # `ctx.constant = constant` in an autograd.Function's forward
            self.ctx_write(owner, target.attr, value, stmt)  # type: ignore[attr-defined]
            return
        if target.attr == "grad" and isinstance(value, ast.Constant) and value.value is None:
            return  # `p.grad = None` (zero_grad written out): gradtrace's grads are one backward's anyway
        if target.attr == "requires_grad":
            self.requires_grad(self.tensor(target.value), bool(self.const(value)), stmt)
            return
        if (isinstance(target.value, ast.Name) and isinstance(self.scope.get(target.value.id), T)
                and target.attr not in ("data", "grad", *TENSOR_ATTRIBUTES)):
            self.const(value)  # `pe.require_grad = False` (the Time-Series-Library's typo): Python keeps an attribute
            self.res.notes.append(f"line {stmt.lineno}: `{self.src(target)}` sets an attribute torch does not read "  # type: ignore[attr-defined]
                                  "(Python keeps it on the tensor object): nothing changes, as in torch"
                                  + (" (requires_grad is the flag torch reads)" if target.attr == "require_grad" else ""))
            return
        if self.tie(target, value, stmt):
            return
        t = self.leaf_target(target, stmt)
        if without_data(target) is target and isinstance(value, ast.Call) and self.dotted(value.func) == "nn.Parameter":
            self.new_parameter(t, target, stmt)  # `lin.weight = nn.Parameter(...)`: a new object in torch
        self.write(t, value, stmt)

    def new_parameter(self, t: T, target: ast.Attribute, stmt: ast.stmt) -> None:
        """`m.weight = nn.Parameter(...)` gives the module a new Parameter; gradtrace writes the leaf of that name
        instead, which is the same only when nothing else holds the old one: refused for a tied parameter or one a
        name still holds (`w = lin.weight`), where torch would keep the old one."""
        if t.name in self.shared:
            raise self.err(stmt, f"'{t.name}' is tied (one Parameter for two modules): a new nn.Parameter for one of "
                                 "them unties them in torch, which gradtrace does not follow; assign the values through "
                                 ".data, or build the modules untied")
        owner = self.expr(target.value)
        slot = (owner, target.attr) if isinstance(owner, Instance) else None
        if self.holds(self.scope_maps(), None, {t.name}, slot, owner if isinstance(owner, ModuleInst) else None):  # type: ignore[attr-defined]
            raise self.err(stmt, f"a name still holds '{t.name}', which this new nn.Parameter replaces: torch keeps the old "
                                 "Parameter for it, gradtrace has one tensor per name; write the new values through .data "
                                 "or drop the other name")

    def tie(self, target: ast.Attribute, value: ast.expr, stmt: ast.AST) -> bool:
        """`self.decoder.weight = self.embed.weight`: the module's parameter becomes that Parameter itself (weight
        tying: one leaf, whose grad sums both uses, as in torch). False when the statement is no such tie."""
        if not isinstance(value, (ast.Attribute, ast.Name)) or not isinstance(target.value, (ast.Attribute, ast.Name, ast.Subscript)):
            return False
        m = self.expr(target.value)
        if not isinstance(m, ModuleInst) or m.layer is None:
            return False
        self.ensure_path(m, None)
        src = self.expr(value)
        if target.attr not in m.params or not isinstance(src, T) or src.name not in self.builder.leaves \
                or self.builder.leaves[src.name].kind != "parameter":
            return False
        old = m.params[target.attr]
        if self.shape(src) != self.shape(T(old)):
            raise self.err(stmt, f"'{old}' has shape {list(self.shape(T(old)))}, '{src.name}' {list(self.shape(src))}")
        owner = self.expr(value.value) if isinstance(value, ast.Attribute) else None
        leaves, used = list(self.builder.leaves), self.builder.used
        if (isinstance(owner, ModuleInst) and owner.params.get(value.attr) == src.name  # type: ignore[union-attr]
                and leaves.index(old) < leaves.index(src.name) and old not in used and src.name not in used):
            # torch names the shared Parameter where it is registered first: `self.wte.weight = self.lm_head.weight`
            # with wte first is wte.weight. That leaf takes the source's values (drawn after both), and both use it.
            self.written(T(old), stmt)
            self.stream.events.append(Event("assign", old, {"source": src.name}))
            self.builder.leaves[old].init = f"{self.src(value)[:60]} (tied, line {getattr(stmt, 'lineno', '?')})"
            owner.params[value.attr] = old  # type: ignore[union-attr]
            self.untied.add(src.name)  # the source's own Parameter: its draw is the shared one's value
            self.shared.add(old)
            return True
        m.params[target.attr] = src.name
        self.untied.add(old)  # the module's own leaf, drawn when the module was made: no parameter of it any more
        self.shared.add(src.name)
        return True

    def write(self, t: T, value: ast.expr, stmt: ast.AST) -> None:
        """Set leaf `t` from a tensor-creating call or another leaf: an event in the torch stream, in order."""
        self.written(t, stmt)
        leaf = self.builder.leaves[t.name]
        if isinstance(value, ast.Call) and self.dotted(value.func) == "nn.Parameter" and value.args:
            value = value.args[0]
        path = self.dotted(value.func) if isinstance(value, ast.Call) else None
        if path is not None and path.startswith("torch.") and path[6:] in CREATORS:
            self.create(path[6:], value, leaf.name, into=leaf)
            return
        src = self.expr(without_data(value))
        b = self.builder
        if isinstance(src, T) and src.name not in b.leaves and not b.grad[src.name] and src.name not in b.used:
            # `m.weight = nn.Parameter(torch.eye(8) * 0.5)`: values computed from tensors that require no grad, a
            # leaf whose value torch computes at this point of the stream (as `nn.Parameter(torch.randn(4) * 0.1)`)
            self.computed_in_stream(src, leaf.name, value, stmt)
            leaf = b.leaves[t.name]  # (a new leaf when the update read the old one)
        if isinstance(src, T) and src.name in self.builder.leaves:
            if self.shape(src) != leaf.shape:
                raise self.err(stmt, f"'{leaf.name}' has shape {list(leaf.shape)}, the new value {list(self.shape(src))}")
            self.stream.events.append(Event("assign", leaf.name, {"source": src.name}))
            leaf.init = f"{self.src(value)[:60]} (line {getattr(stmt, 'lineno', '?')})"
            return
        if is_number(src):
            self.stream.events.append(Event("inplace", leaf.name, {"method": "fill_", "args": [src]}))
            return
        raise self.err(stmt, "a parameter can be set from torch.tensor/rand/zeros/... or another leaf tensor, not a computed one")

    def leaf_write(self, t: T, method: str, node: ast.Call) -> None:
        """p.uniform_(a, b), p.zero_(), p.fill_(v), p.copy_(src): in-place writes into a leaf."""
        if t.name in self.recomputed and method != "copy_":
            self.discarded_fill(t, node, method=method)
            return
        if t.name not in self.builder.leaves:
            raise self.err(node, f"in-place .{method}() on '{t.name}', the result of an operation, is not traced")
        self.written(t, node)
        if method == "copy_":
            if len(node.args) != 1:
                raise self.err(node, "copy_ takes one tensor")
            self.write(t, node.args[0], node)
            return
        operands: list[tuple[int | str, ast.expr]] = [*enumerate(node.args), *((k.arg or "", k.value) for k in node.keywords)]
        values: dict[int | str, Any] = {}
        tensors: list[tuple[int | str, str]] = []
        for key, a in operands:
            src = self.expr(without_data(a))  # once: a draw in it (`randn_like(p)`) draws once
            values[key] = src if is_number(src) or isinstance(src, bool) else None  # (fill_diagonal_'s wrap)
            if values[key] is not None:
                continue
            if method not in STREAM_ARITHMETIC or not isinstance(src, T):
                raise self.err(node, f"in-place .{method}() of a tensor into '{t.name}', a leaf a module holds or that "
                                     "requires grad, is not traced (gradtrace gives a leaf one value for the whole trace): "
                                     "numbers are (`.add_(0.01)`, `.mul_(0.5)`, `.fill_(1.0)`), and so is a draw "
                                     "(`.normal_(0, 0.01)`, `.uniform_(-a, a)`), or with a tensor `.add_(other, alpha=0.01)` "
                                     "and `.mul_(other)`")
            tensors.append((key, self.stream_operand(src, t.name, a, node)))
        args = [values[k] for k, _ in enumerate(node.args)]
        kwargs = {k.arg: values[k.arg or ""] for k in node.keywords}
        extra = {"tensors": tensors} if tensors else {}
        self.stream.events.append(Event("inplace", t.name, {"method": method, "args": args, "kwargs": kwargs, **extra}))

    def stream_operand(self, src: T, target: str, value: ast.expr, stmt: ast.AST) -> str:
        """The leaf whose value at this point of the stream a leaf's in-place update reads (a moving average of
        weights: `ema.mul_(0.99).add_(p.detach(), alpha=0.01)`): `src` itself when a leaf, else the leaf torch computes
        here from tensors that require no grad (`(1 - m) * p.detach()`)."""
        b = self.builder
        if src.name in b.leaves:
            return src.name
        if b.grad[src.name] and not self.no_grad:
            raise self.err(stmt, f"in-place update of '{target}' with '{self.src(value)[:40]}', which requires grad: "
                                 "write it under torch.no_grad(), or with .detach()")
        if src.name in b.used:
            raise self.err(stmt, f"in-place update of '{target}' with '{self.src(value)[:40]}', which other operations "
                                 "use too: gradtrace computes such an update's tensor for it alone")
        self.computed_in_stream(src, target, value, stmt)
        return src.name

    def computed_in_stream(self, src: T, target: str, value: ast.expr, stmt: ast.AST) -> None:
        """Node `src`, computed from tensors that require no grad, becomes a leaf whose value torch computes at this
        point of the stream (its ancestry replayed), for writing into leaf `target`."""
        b = self.builder
        if target in b.used:  # read by this very update (MoCo's `k.data = k.data * m + q.data * (1 - m)`): those
            self.keep_version(T(target), stmt)  # operations read its old value, `target@k`, as torch's did
        b.node_to_leaf(src.name, f"{self.src(value)[:60]} (line {getattr(stmt, 'lineno', '?')})")
        self.stream.events.append(Event("node", src.name, {"nodes": b.ancestry(src.name)}))

    def nn_init(self, fn: str, call: ast.Call) -> T:
        """nn.init.kaiming_uniform_(conv.weight, a=...) and friends, replayed with torch; the tensor filled, which
        torch's init functions return."""
        if fn not in NN_INIT or not call.args:
            raise self.err(call, f"nn.init.{fn} is not supported (supported: {', '.join(sorted(NN_INIT))})")
        t = self.tensor(without_data(call.args[0]))
        if t.name in self.recomputed:
            self.discarded_fill(t, call, fn=fn)
            return t
        if t.name not in self.builder.leaves:
            raise self.err(call, f"nn.init.{fn} on '{t.name}', the result of an operation")
        self.written(t, call)
        args = [self.const(a) for a in call.args[1:]]
        kwargs = {k.arg: self.const(k.value) for k in call.keywords}
        if not all(_is_const(v) and not isinstance(v, DType) for v in [*args, *kwargs.values()]):
            raise self.err(call, f"nn.init.{fn} takes constant arguments")
        self.stream.events.append(Event("init", t.name, {"fn": fn, "args": args, "kwargs": kwargs}))
        return t

    def discarded_fill(self, t: T, node: ast.Call, method: str | None = None, fn: str | None = None) -> None:
        """`self.conv1.weight.data.normal_(0, 0.01)` on a weight under weight_norm (the TCN's init_weights): torch fills
        the weight it computed, which the next call computes anew from g and v; the fill's draws are torch's, in order
        (a 'discarded' stream event), and nothing else changes."""
        args = [self.const(a) for a in node.args[1 if fn else 0:]]
        kwargs = {k.arg: self.const(k.value) for k in node.keywords}
        if not all(is_number(v) or isinstance(v, str) for v in [*args, *kwargs.values()]):
            raise self.err(node, f"a fill of '{t.name}' takes numbers here")
        self.stream.events.append(Event("discarded", None, {"shape": list(self.shape(t)), "dtype": self.dtype_of(t),
                                                            **({"fn": fn} if fn else {"method": method}),
                                                            "args": args, "kwargs": kwargs}))
        self.res.notes.append(f"line {node.lineno}: `{self.src(node)[:60]}` fills the weight weight_norm computed, which "  # type: ignore[attr-defined]
                              "it computes anew from g and v before each call: the fill draws torch's numbers and changes "
                              "nothing, as in torch")

    def parameter(self, node: ast.Call) -> T:
        """nn.Parameter(torch.randn(...)): the leaf, requiring grad, as a parameter."""
        if len(node.args) != 1:
            raise self.err(node, "nn.Parameter takes one tensor")
        t = self.tensor(node.args[0])
        flag = self.const(node.keywords[0].value) if node.keywords and node.keywords[0].arg == "requires_grad" else True
        self.requires_grad(t, bool(flag), node, computed="nn.Parameter of a computed tensor")
        self.builder.leaves[t.name].kind = "parameter"
        return t

    def parameter_container(self, kind: str, node: ast.Call) -> ParameterList | ParameterDict:
        """nn.ParameterList([nn.Parameter(...), ...]) / nn.ParameterDict({"scale": nn.Parameter(...)}): the parameters
        (tensors become parameters, as torch wraps them), named for their place once set on a module."""
        if len(node.args) > 1 or node.keywords:
            raise self.err(node, f"nn.{kind} takes one {'list' if kind == 'ParameterList' else 'dict'} of parameters")
        items = self.expr(node.args[0]) if node.args else ([] if kind == "ParameterList" else {})
        values = list(items.values()) if isinstance(items, dict) else items
        if not isinstance(items, (list, tuple, dict)) or not all(isinstance(v, T) and v.name in self.builder.leaves
                                                                 for v in values):
            raise self.err(node, f"nn.{kind} takes parameters made here (nn.Parameter(torch.randn(...))), not {_kind(items)}")
        for v in values:
            self.as_parameter(v, node)
        return ParameterDict(items) if isinstance(items, dict) else ParameterList(items)

    def as_parameter(self, t: T, node: ast.AST) -> None:
        """A tensor a ParameterList or ParameterDict takes: a parameter (torch wraps it so)."""
        if not self.builder.grad[t.name]:
            self.requires_grad(t, True, node)
        self.builder.leaves[t.name].kind = "parameter"

    def name_parameters(self, held: ParameterList | ParameterDict, path: str) -> None:
        """Name a ParameterList's or ParameterDict's parameters for their place (model.coefs.0, model.gains.a)."""
        held.path = path
        keys = list(held) if isinstance(held, ParameterDict) else list(range(len(held)))
        renames = {held[k].name: self.fresh(f"{path}.{k}") for k in keys if held[k].name != f"{path}.{k}"}
        if renames:
            self.builder.rename({n: renames.get(n, n) for n in self.builder.shapes})
            self.rename_events(renames)  # type: ignore[attr-defined]
            for k in keys:
                held[k] = T(renames.get(held[k].name, held[k].name))

    def requires_grad(self, t: T, flag: bool, node: ast.AST, computed: str = "") -> None:
        """`t.requires_grad_()`, `t.requires_grad = True`, nn.Parameter(t). A tensor computed from tensors that
        require no grad (`W = torch.randn(8, 4) * 0.1`) is a leaf in torch: it becomes one here, its value
        computed by torch after the draws before it (a 'node' event), so that it can require grad."""
        b = self.builder
        if t.name not in b.leaves and not b.grad[t.name]:  # a leaf in torch's eyes
            if not flag and not computed:
                return  # requires no grad already
            if t.name in b.used:
                raise self.err(node, f"'{t.name}' is already used by an operation: make it require grad before using it")
            leaf = b.node_to_leaf(t.name, f"{self.src(node)[:60]} (line {getattr(node, 'lineno', '?')})")
            self.stream.events.append(Event("node", leaf.name, {"nodes": b.ancestry(leaf.name)}))
        elif computed and t.name not in b.leaves:
            raise self.err(node, f"{computed} that requires grad is not traced (torch cuts it from its graph into a new "
                                 "leaf): create it with torch.randn/zeros/tensor(...)")
        try:
            b.set_requires_grad(t.name, flag)
        except ValueError as e:
            raise self.err(node, str(e)) from None

    def init_gain(self, node: ast.Call) -> float:
        """nn.init.calculate_gain(nonlinearity, param=None): the gain torch's table gives."""
        given = dict(zip(("nonlinearity", "param"), node.args, strict=False)) | {k.arg: k.value for k in node.keywords if k.arg}
        what = self.const(given["nonlinearity"]) if "nonlinearity" in given else None
        param = self.const(given["param"]) if given.get("param") is not None else None
        linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "sigmoid")
        if what in linear:
            return 1.0
        if what == "tanh":
            return 5.0 / 3
        if what == "relu":
            return math.sqrt(2.0)
        if what == "selu":
            return 3.0 / 4
        if what == "leaky_relu" and (param is None or is_number(param) and not isinstance(param, bool)):
            slope = 0.01 if param is None else float(param)
            return math.sqrt(2.0 / (1 + slope**2))
        raise self.err(node, f"nn.init.calculate_gain: unsupported nonlinearity {what!r} (or its param {param!r})")

    def fans(self, fn: str, node: ast.Call) -> Value:
        """torch's nn.init._calculate_fan_in_and_fan_out(w) -> (fan_in, fan_out), _calculate_correct_fan(w, mode),
        from w's shape (dims 0 and 1 times the receptive field)."""
        if not node.args:
            raise self.err(node, f"nn.init.{fn} takes a tensor")
        shape = self.shape(self.tensor(node.args[0]))
        if len(shape) < 2:
            raise self.err(node, "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
        field = math.prod(shape[2:])
        fan_in, fan_out = shape[1] * field, shape[0] * field
        if fn == "_calculate_fan_in_and_fan_out":
            return (fan_in, fan_out)
        mode = self.const(node.args[1]) if len(node.args) > 1 else next(
            (self.const(k.value) for k in node.keywords if k.arg == "mode"), None)
        mode = mode.lower() if isinstance(mode, str) else mode
        if mode not in ("fan_in", "fan_out"):
            raise self.err(node, f"Mode {mode} not supported, please use one of fan_in, fan_out")
        return fan_in if mode == "fan_in" else fan_out

