"""Tensor methods in a program: sizes and casts that fold to constants or one node, in-place methods and
`inplace=True` functions, max/min's (values, indices), chunk/split into several nodes, and op methods by name."""

from __future__ import annotations

import ast
import math
from typing import Any

import numpy as np

from services.compiler.arranging import METHODS as ARRANGING_METHODS
from services.compiler.bindings import is_number_literal
from services.compiler.creation import INPLACE_INIT
from services.compiler.expressions import CASTS, LEGACY_TYPES, ExpressionCompiler
from services.compiler.values import DType, T, Untraced, Value
from services.errors import ShapeError
from services.ops import REGISTRY
from services.ops.base import norm_dim


class TensorMethods(ExpressionCompiler):
    """x.size(), x.float(), x.view_as(y), x.max(1), x.chunk(3), x.relu_(), x.sum(dim=1) (ProgramCompiler)."""

    def tensor_method(self, t: T, m: str, node: ast.Call) -> Value:
        """x.size(), x.float(), x.view_as(y), x.chunk(), x.uniform_() on a fresh tensor, and op methods."""
        shape = self.shape(t)
        if m in ("size", "dim", "numel", "nelement"):
            if m == "size":
                if not node.args:
                    return tuple(shape)
                d = self.const(node.args[0])
                if not isinstance(d, int) or not -max(len(shape), 1) <= d < max(len(shape), 1) or not shape:
                    raise self.err(node, f"size({d!r}) of a tensor of shape {list(shape)}")
                return shape[d]
            return len(shape) if m == "dim" else int(np.prod(shape, dtype=np.int64))
        if m in ("is_floating_point", "is_complex") and not node.args and not node.keywords:
            return m == "is_floating_point" and self.dtype_of(t).startswith("float")  # torchvision's box _upcast
        if m == "item" and not node.args and not node.keywords and getattr(self, "at_backward", None) is None:
            return self.item(t, node)
        if m in ("item", "tolist", "numpy", "cpu", "cuda") and m != "cpu":
            raise self.err(node, f".{m}() needs the tensor's value: gradtrace computes values for you, they are in the result")
        if m == "contiguous":  # a copy when t is strided (CloneBackward0, row-major: its dropout draws so), else t
            if t.name in self.builder.strides and not node.args and not node.keywords:
                return self.emit("clone", [t], {"memory_format": "contiguous"}, node)
            t = self.adopt(t, node)  # `h = self.fc(x).contiguous()`: h names the fc's output
            self.contiguous.add(t.name)  # type: ignore[attr-defined]  # torch's engine copies where a view needs it
            return t
        if m == "cpu":
            return t
        if m == "view" and t.name in self.contiguous:  # type: ignore[attr-defined]
            return self.apply(self.methods[m], node, receiver=t, extra={"contiguous": True})
        if m == "type" and not node.args and not node.keywords:  # `if alpha.type() != x.data.type():` (a focal loss)
            return next(k for k, v in LEGACY_TYPES.items() if v == self.dtype_of(t))  # 'torch.FloatTensor', as on the CPU
        if m in CASTS or m in ("to", "type", "type_as"):
            return self.cast(t, m, node)
        if m in ("view_as", "reshape_as", "expand_as"):
            other = self.tensor(node.args[0]) if node.args else None
            if other is None:
                raise self.err(node, f".{m}() takes a tensor")
            op, arg = ("expand", "size") if m == "expand_as" else ("reshape", "shape")
            return self.emit(op, [t], {arg: list(self.shape(other))}, node)
        if m in ("new_zeros", "new_ones", "new_full", "new_empty", "new_tensor"):  # a new leaf of t's dtype (and device)
            return self.create(m[4:], node, self.name_for(node), dtype=self.dtype_of(t))
        if m == "new" and not node.keywords:  # legacy `w.new(n, b, h).zero_()`: new_empty (new_tensor of a list)
            data = len(node.args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple))  # w.new([5]): the data [5.]
            return self.create("tensor" if data else "empty", node, self.name_for(node), dtype=self.dtype_of(t))
        if m == "detach":
            return self.emit("detach", [t], {}, node)
        if m in ("fliplr", "flipud") and not node.args and not node.keywords:
            return self.flip_lr_ud(m, t, node)  # type: ignore[attr-defined, no-any-return]
        if m in ("chunk", "split"):
            return self.multi(m, t, node, node.args)
        if m == "requires_grad_":
            self.requires_grad(t, bool(self.const(node.args[0])) if node.args else True, node)
            return t
        if m == "retain_grad":
            return None
        if m == "register_hook":  # `handle = h.register_hook(hook)`: the handle's remove() changes nothing here
            self.register_hook(t, node)  # type: ignore[attr-defined]
            return Untraced("a hook's handle")
        arithmetic = m in ("add_", "sub_", "mul_", "div_") and not self.builder.grad[t.name] and not self.module_state(t) \
            and not all(self.plain_number(a) for a in [*node.args, *(k.value for k in node.keywords)])
        if arithmetic:  # `acc = torch.zeros(4); acc.add_(x[0])`, a buffer's `running_mean.mul_(0.9).add_(m)`: as `+=`
            return self.in_place_method(t, m, node)
        if m == "copy_" or m in INPLACE_INIT and (t.name in self.builder.leaves or m[:-1] not in self.methods):
            if t.name in self.builder.leaves and self.builder.grad[t.name] and not (self.no_grad or self.via_data):
                var = self.src(node.func.value)[:40]  # type: ignore[attr-defined]
                raise self.err(node, f"'{var}' is a leaf tensor that requires grad: torch refuses `.{m}()` on it (a leaf "
                                     "Variable that requires grad is being used in an in-place operation); write it under "
                                     f"torch.no_grad(), or through `{var}.data`")
            self.leaf_write(t, m, node)
            return t
        if m in ("max", "min", "median") and (node.args or any(k.arg == "dim" for k in node.keywords)) or m in PARTS and m != "median":
            return self.extreme_pair(m, node, t)
        if m == "masked_select" and len(node.args) == 1 and not node.keywords:
            return self.masked_select(t, node, node.args[0])  # type: ignore[attr-defined, no-any-return]
        if m == "nanmean":
            return self.nanmean(t, node, list(node.args))  # type: ignore[attr-defined, no-any-return]
        if m == "diff":
            return self.diff(t, node, list(node.args))  # type: ignore[attr-defined, no-any-return]
        if m == "logdet" and not node.args and not node.keywords:
            return self.logdet(t, node)
        if m == "cholesky":  # Tensor.cholesky(upper=False): torch.cholesky's (CholeskyBackward0)
            return self.apply(REGISTRY["cholesky"], node, receiver=t, extra={"deprecated": True})
        if m == "multinomial":  # probs.multinomial(1): torch.multinomial
            return self.multinomial(node, receiver=t)  # type: ignore[attr-defined, no-any-return]
        if m == "bernoulli":
            return self.bernoulli(node, receiver=t)  # type: ignore[attr-defined, no-any-return]
        if m in ARRANGING_METHODS:
            return self.arrange(m, node, receiver=t)  # type: ignore[attr-defined, no-any-return]
        if m == "argsort":
            return self.apply(self.functions["sort"], node, receiver=t, extra={"part": "indices"})
        if m in RESHAPES:
            return self.reshape_alias(t, m, node)
        if m == "fill_diagonal":
            raise self.err(node, "torch.Tensor has no method 'fill_diagonal' (it has fill_diagonal_, in place)")
        if m in self.methods:
            return self.apply(self.methods[m], node, receiver=t)
        if m in ("unsqueeze_", "squeeze_", "t_", "transpose_", "detach_"):
            return self.metadata_in_place(t, m, node)  # type: ignore[attr-defined, no-any-return]
        if m.endswith("_") and m[:-1] in self.methods:
            return self.in_place_method(t, m, node)
        raise self.err(node, f"unknown tensor method '.{m}()'")

    def plain_number(self, a: ast.expr) -> bool:
        """An argument that is a number without evaluating it: a literal, a name holding one (`scale`), or + - * /
        of those."""
        if is_number_literal(a):
            return True
        if isinstance(a, ast.Name):
            v = self.scope.get(a.id)
            return isinstance(v, (int, float)) and not isinstance(v, bool)
        if isinstance(a, ast.UnaryOp):
            return self.plain_number(a.operand)
        return isinstance(a, ast.BinOp) and self.plain_number(a.left) and self.plain_number(a.right)

    def reshape_alias(self, t: T, m: str, node: ast.Call) -> Value:
        """Methods that are another op with other arguments: x.swapaxes(0, 1) (transpose), x.movedim(0, -1)
        (permute), x.narrow(dim, start, length) and x.select(dim, i) (getitem), x.unflatten(dim, sizes) (reshape),
        x.unbind(dim) (one node per slice, named by a tuple assignment's targets)."""
        names = {"swapaxes": ("axis0", "axis1"), "swapdims": ("dim0", "dim1"), "movedim": ("source", "destination"),
                 "narrow": ("dim", "start", "length"), "select": ("dim", "index"), "unflatten": ("dim", "sizes"),
                 "unbind": ("dim",)}[m]
        given = dict(zip(names, (self.const(a) for a in node.args), strict=False))
        given |= {k.arg: self.const(k.value) for k in node.keywords if k.arg}
        if set(given) - set(names) or (m != "unbind" and set(given) != set(names)):
            raise self.err(node, f".{m}() takes ({', '.join(names)})")
        shape = self.shape(t)
        n = len(shape)
        try:
            if m in ("swapaxes", "swapdims"):
                a, b = (norm_dim(given[k], n) for k in names)
                return self.emit("transpose", [t], {"dim0": a, "dim1": b}, node)
            if m == "movedim":
                src = [given["source"]] if isinstance(given["source"], int) else list(given["source"])
                dst = [given["destination"]] if isinstance(given["destination"], int) else list(given["destination"])
                src, dst = [norm_dim(d, n) for d in src], [norm_dim(d, n) for d in dst]
                if len(src) != len(dst) or len(set(src)) != len(src) or len(set(dst)) != len(dst):
                    raise ShapeError(f"movedim: source {given['source']} and destination {given['destination']} differ")
                order: list[int | None] = [None] * n
                for s_, d_ in zip(src, dst, strict=True):
                    order[d_] = s_
                rest = iter(d for d in range(n) if d not in src)
                return self.emit("permute", [t], {"dims": [d if d is not None else next(rest) for d in order]}, node)
            d = norm_dim(given.get("dim", 0), n)
            if m == "unflatten":
                sizes = list(given["sizes"])
                known = math.prod(v for v in sizes if v != -1)
                if sizes.count(-1) == 1 and known:
                    sizes[sizes.index(-1)] = shape[d] // known
                if math.prod(sizes) != shape[d] or sizes.count(-1):
                    raise ShapeError(f"unflatten: sizes {given['sizes']} do not make dim {d} of size {shape[d]}")
                return self.emit("reshape", [t], {"shape": [*shape[:d], *sizes, *shape[d + 1:]]}, node)
            lead: list[Any] = [{"slice": [None, None, None]}] * d
            if m == "narrow":
                start = given["start"] + shape[d] if given["start"] < 0 else given["start"]
                if not 0 <= start <= start + given["length"] <= shape[d]:
                    raise ShapeError(f"narrow: start {given['start']} and length {given['length']} exceed dim {d} of size {shape[d]}")
                return self.emit("getitem", [t], {"index": [*lead, {"slice": [start, start + given["length"], None]}]}, node)
            if m == "select":
                return self.emit("getitem", [t], {"index": [*lead, given["index"]]}, node)
        except ShapeError as e:
            raise self.err(node, str(e)) from None
        count = shape[d]  # unbind
        names = self.piece_names(node, count)
        return tuple(self.emit("unbind", [t], {"dim": d, "index": k}, node, name=names[k]) for k in range(count))

    def cast(self, t: T, m: str, node: ast.Call) -> T:
        """x.float(), x.double(), x.to(torch.float64), x.type_as(y): no node when the dtype already matches."""
        if m in CASTS:
            want = CASTS[m]
        elif m == "type_as":
            want = self.dtype_of(self.tensor(node.args[0]))
        else:
            first = self.expr(node.args[0]) if node.args else None
            if isinstance(first, T) and first.name not in self.item_values:  # `x.abs().to(x)`: other's dtype (and device)
                want = self.dtype_of(first)
                return self.adopt(t, node) if want == self.dtype_of(t) else self.emit("to", [t], {"dtype": want}, node)
            vals = ([self.as_const(first, node.args[0])] if node.args else []) + [self.const(a) for a in node.args[1:]] + [
                self.const(k.value) for k in node.keywords if k.arg == "dtype"]
            dts = [v for v in vals if isinstance(v, DType)]
            if not dts:
                return self.adopt(t, node)  # .to('cpu') / .to(device): the spec's device decides
            want = dts[0].name
        if want == self.dtype_of(t):
            return self.adopt(t, node)
        return self.emit("to", [t], {"dtype": want}, node)

    def adopt(self, t: T, node: ast.expr) -> T:
        """The tensor a no-op method returned (`x = torch.randn(3).to(device)`): the statement's variable names it
        when it is a sub-expression's temporary this statement made and nothing used yet (x, not x#1)."""
        made_here = t.name.startswith(f"{self.target}#") or any(  # (a module's output: `logits = self.out(h).float()`)
            n.name == t.name for n in self.builder.nodes[getattr(self, "stmt_start", len(self.builder.nodes)):])
        if node is self.stmt_expr and self.stmt_name is not None and made_here:
            name, self.stmt_name = self.stmt_name, None
            if self.builder.rename_last(t.name, name):
                for ev in self.stream.events[-2:]:  # the draw that made it (and a uniform_ after it)
                    if ev.target == t.name:
                        ev.target = name
                return T(name)
        return t

    def inplace_function(self, path: str, node: ast.Call) -> T:
        """F.relu(h, inplace=True): h.relu_(), with what that means for every name of h; inplace=False: F.relu(h)."""
        flag = next(self.const(k.value) for k in node.keywords if k.arg == "inplace")
        rest = ast.copy_location(ast.Call(func=node.func, args=node.args[1 if flag else 0:],
                                          keywords=[k for k in node.keywords if k.arg != "inplace"]), node)
        rest.end_lineno, rest.end_col_offset = node.end_lineno, node.end_col_offset
        if node is self.stmt_expr:
            self.stmt_expr = rest
        if not flag:
            return self.apply(self.functions[path], rest)
        op = self.functions[path].name
        if op not in self.methods:  # F.leaky_relu(h, 0.2, inplace=True): no method; the function, h changed by it
            full = ast.copy_location(ast.Call(func=node.func, args=node.args,
                                              keywords=[k for k in node.keywords if k.arg != "inplace"]), node)
            full.end_lineno, full.end_col_offset = node.end_lineno, node.end_col_offset
            if node is self.stmt_expr:
                self.stmt_expr = full
            return self.in_place_method(self.tensor(node.args[0]), f"{op}_", full, op=self.functions[path])
        rest.func = ast.copy_location(ast.Attribute(value=node.args[0], attr=f"{op}_", ctx=ast.Load()), node)
        return self.in_place_method(self.tensor(node.args[0]), f"{op}_", rest)

    def implicit_softmax(self, path: str, node: ast.Call) -> T:
        """F.softmax(x) without dim: torch picks one from x's rank (0 for 0, 1 or 3 dims, else 1) and warns that
        this is deprecated; so does the result's notes."""
        x = self.tensor(node.args[0])  # once: evaluating it again would draw its random numbers again
        ndim = len(self.shape(x))
        dim = 0 if ndim in (0, 1, 3) else 1
        self.res.notes.append(f"line {node.lineno}: {path}() without dim: torch chose dim={dim} from the input's {ndim} "
                              "dimensions (an implicit dim is deprecated: pass dim=)")
        rest = ast.copy_location(ast.Call(func=node.func, args=[], keywords=node.keywords), node)
        rest.end_lineno, rest.end_col_offset = node.end_lineno, node.end_col_offset
        if node is self.stmt_expr:
            self.stmt_expr = rest
        return self.apply(self.functions[path], rest, receiver=x, extra={"dim": dim})

    def extreme_pair(self, m: str, node: ast.Call, receiver: T | None = None) -> tuple[T, T]:
        """x.max(dim) / torch.max(x, dim): torch's (values, indices), the indices an argmax (argmin) node of the same
        dim; x.topk(k), x.sort(), x.median(dim), slogdet, var_mean, std_mean: a pair of one op's nodes (its `part`,
        PARTS); `vals, idx = ...` names them, `.values`/`.indices` (`.sign`/`.logabsdet`) and [0], [1] pick them."""
        names: list[str | None] = [None, None]
        if node is self.stmt_expr and len(self.stmt_names) == 2:
            names = list(self.stmt_names)
        picked = _picked(self.stmt_expr, node)  # `v = x.max(1).values` / `v = torch.max(x, 1)[0]`: v names that one
        if picked is not None and self.stmt_name is not None:
            names[picked], self.stmt_name = self.stmt_name, None
        if names[0] is not None:
            self.stmt_expr, self.stmt_name = node, names[0]
        if m in PARTS:
            first, second = PARTS[m]
            op = REGISTRY[m]
            values = self.apply(op, node, receiver=receiver, extra={"part": first})
            last = self.builder.nodes[-1]
            index = self.emit(m, [receiver or T(last.inputs[0])], {**last.args.model_dump(), "part": second},  # type: ignore[arg-type]
                              node, name=names[1])
            return (values, index)
        values = self.apply(self.functions[f"torch.{m}"], node, receiver=receiver)
        args = self.builder.nodes[-1].args
        index = self.emit(f"arg{m}", [receiver or T(self.builder.nodes[-1].inputs[0])],  # type: ignore[arg-type]
                          {"dim": args.dim, "keepdim": args.keepdim}, node, name=names[1])  # type: ignore[attr-defined]
        return (values, index)

    def logdet(self, t: T, node: ast.Call) -> T:
        """torch.logdet(A) as ATen composes it: where(sign == -1, nan, logabsdet) of slogdet (WhereBackward0)."""
        sign = self.emit("slogdet", [t], {"part": "sign"}, node, name=self.temp())
        logabs = self.emit("slogdet", [t], {"part": "logabsdet"}, node, name=self.temp())
        negative = self.emit("eq", [sign, -1.0], {}, node, name=self.temp())
        return self.emit("where", [negative, float("nan"), logabs], {}, node)

    def multi(self, fn: str, t: T | None, node: ast.Call, args: list[ast.expr]) -> tuple[T, ...]:
        """x.chunk(n, dim) / x.split(size, dim): one node per piece, named by a tuple assignment's targets."""
        sized = args[0] if args else next((k.value for k in node.keywords  # mamba-minimal's x.split(split_size=[d, d], dim=-1)
                                           if k.arg in ("split_size", "split_size_or_sections", "chunks")), None)
        if t is None or sized is None:
            raise self.err(node, f"{fn} takes a tensor and a size")
        first = self.const(sized)
        dim = self.const(args[1]) if len(args) > 1 else next((self.const(k.value) for k in node.keywords if k.arg == "dim"), 0)
        shape = self.shape(t)
        if not shape or not isinstance(dim, int) or not -len(shape) <= dim < len(shape):
            raise self.err(node, f"{fn}: dim {dim!r} does not fit shape {list(shape)}")
        size = shape[dim]
        if fn == "chunk":
            if not isinstance(first, int) or first < 1:
                raise self.err(node, "chunk: chunks must be a positive integer")
            step = -(-size // first) if size else 1
            count = -(-size // step) if size else first
            key = "chunks"
        elif isinstance(first, int) and first > 0:
            count, key = max(1, -(-size // first)), "split_size_or_sections"
        elif isinstance(first, list) and all(isinstance(v, int) and v >= 0 for v in first):
            count, key = len(first), "split_size_or_sections"
        else:
            raise self.err(node, "split takes a positive size or a list of sizes")
        names = self.piece_names(node, count)
        return tuple(self.emit(fn, [t], {key: first, "dim": dim, "index": k}, node, name=names[k]) for k in range(count))


    def item(self, t: T, node: ast.Call) -> T | float | int | bool:
        """`advantage = R - value.item()` (actor_critic.py) before backward(): the number, as a node without grad of t's
        dtype (0-d), where torch has a Python number; arithmetic on it then runs in that dtype, where Python's runs in
        double (digits past float32's may differ), and a note says so. A branch on it depends on the data: refused.
        Of an int64 or bool tensor made from numbers alone (`batch.max().item() + 1`): the Python number itself."""
        shape = self.shape(t)
        if int(np.prod(shape, dtype=np.int64)) != 1:
            raise self.err(node, f"a Tensor with {int(np.prod(shape, dtype=np.int64))} elements cannot be converted to Scalar")
        known = self.folded(t.name) if self.dtype_of(t) in ("int64", "bool") else None  # type: ignore[attr-defined]
        if known is not None:  # made from integers alone (`batch.max().item() + 1` of a literal batch vector): exact; a
            # float's digits depend on torch's kernels (a float32 sum of 0.3s is 2.9999998 there), so it stays a node
            return known.reshape(()).item()  # type: ignore[no-any-return]  # Python's, as torch's .item() gives it
        v = self.emit("detach", [t], {}, node, name=self.temp()) if self.builder.grad[t.name] else t
        v = self.emit("clone", [v], {}, node, name=self.temp() if shape else None)  # a number of its own: no view of t
        if shape:
            v = self.emit("reshape", [v], {"shape": []}, node)
        self.item_values.add(v.name)  # type: ignore[attr-defined]
        self.res.notes.append(f"line {node.lineno}: `{self.src(node)[:60]}` is a Python number in torch; here it is the "  # type: ignore[attr-defined]
                              "tensor's value as a node without grad, so arithmetic on it runs in the tensor's dtype "
                              "(Python's in double: digits past float32's may differ)")
        return v


RESHAPES = {"swapaxes", "swapdims", "movedim", "narrow", "select", "unflatten", "unbind"}
"""Tensor methods traced as another op (reshape_alias)."""


PAIRS = (("values", "indices"), ("sign", "logabsdet"))
"""The field names of torch's named pairs: max / topk / sort / median / cummax's, slogdet's."""
PARTS = {"topk": PAIRS[0], "sort": PAIRS[0], "median": PAIRS[0], "cummax": PAIRS[0], "cummin": PAIRS[0],
         "slogdet": PAIRS[1], "var_mean": ("spread", "mean"), "std_mean": ("spread", "mean")}
"""Ops that give a pair, one node each: the `part` argument of each."""


def _picked(stmt: ast.expr | None, call: ast.Call) -> int | None:
    """Which of a named pair (max's (values, indices), slogdet's (sign, logabsdet)) a statement's whole right-hand side
    takes from `call`, if it does."""
    if isinstance(stmt, ast.Attribute) and stmt.value is call:
        return next((pair.index(stmt.attr) for pair in PAIRS if stmt.attr in pair), None)
    if isinstance(stmt, ast.Subscript) and stmt.value is call and isinstance(stmt.slice, ast.Constant):
        return stmt.slice.value if stmt.slice.value in (0, 1) else None
    return None
