"""torch functions a program calls that trace as several nodes or as another call: F.normalize (as torch composes
it), F.relu6, the function forms of in-place methods (`F.relu_(h)` is `h.relu_()`) and of tensor methods
(`torch.unbind(x, 1)` is `x.unbind(1)`), and `*xs` of numbers written out in calls of torch's (`x.view(b, *shape)`)."""

from __future__ import annotations

import ast
from typing import Any

import numpy as np

from services.compiler import composites
from services.compiler.expressions import ExpressionCompiler, _kind
from services.compiler.functions import is_super
from services.compiler.layers import Emitter, stale_statistics
from services.compiler.transformer import attention
from services.compiler.values import CALLABLE, Instance, T, Untraced, UserClass, UserFunction, Value, is_number
from services.errors import ShapeError, SpecError
from services.ir import Leaf
from services.ops import REGISTRY
from services.ops.attention import AttentionArgs, groups

IN_PLACE_FUNCTIONS = {"F.relu_": "relu_", "torch.relu_": "relu_", "torch.sigmoid_": "sigmoid_", "torch.tanh_": "tanh_",
                      "F.elu_": "elu_", "F.leaky_relu_": "leaky_relu_", "torch.clamp_": "clamp_"}
"""Function forms of in-place methods: `F.relu_(h)` is `h.relu_()`."""
METHOD_FORMS = {"torch.unbind", "torch.movedim", "torch.narrow", "torch.select", "torch.swapaxes", "torch.swapdims",
                "torch.unflatten"}
"""Functions that are a tensor method of their first argument (TensorMethods.reshape_alias)."""


INPLACE_AT = {"F.relu": 1, "F.relu6": 1, "F.silu": 1, "F.selu": 1, "F.hardswish": 1, "F.hardsigmoid": 1, "F.mish": 1,
              "F.elu": 2, "F.leaky_relu": 2, "F.celu": 2, "F.hardtanh": 3, "F.threshold": 3}
"""Where torch's functional activations take `inplace` positionally (`F.relu(h, True)`, `F.leaky_relu(h, 0.2, True)`)."""


COMPOSITES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "F.l1_loss": (("input", "target", "size_average", "reduce", "reduction"), {"reduction": "mean"}),
    "F.kl_div": (("input", "target", "size_average", "reduce", "reduction", "log_target"), {"reduction": "mean", "log_target": False}),
    "F.cosine_similarity": (("x1", "x2", "dim", "eps"), {"dim": 1, "eps": 1e-8}),
    "torch.cosine_similarity": (("x1", "x2", "dim", "eps"), {"dim": 1, "eps": 1e-8}),
    "F.pairwise_distance": (("x1", "x2", "p", "eps", "keepdim"), {"p": 2.0, "eps": 1e-6, "keepdim": False}),
    "torch.pairwise_distance": (("x1", "x2", "p", "eps", "keepdim"), {"p": 2.0, "eps": 1e-6, "keepdim": False}),
    "F.triplet_margin_loss": (("anchor", "positive", "negative", "margin", "p", "eps", "swap", "size_average", "reduce",
                               "reduction"), {"margin": 1.0, "p": 2.0, "eps": 1e-6, "swap": False, "reduction": "mean"}),
    "F.margin_ranking_loss": (("input1", "input2", "target", "margin", "size_average", "reduce", "reduction"),
                              {"margin": 0.0, "reduction": "mean"}),
    "F.cosine_embedding_loss": (("input1", "input2", "target", "margin", "size_average", "reduce", "reduction"),
                                {"margin": 0.0, "reduction": "mean"}),
    "F.hinge_embedding_loss": (("input", "target", "margin", "size_average", "reduce", "reduction"),
                               {"margin": 1.0, "reduction": "mean"}),
    "F.poisson_nll_loss": (("input", "target", "log_input", "full", "size_average", "eps", "reduce", "reduction"),
                           {"log_input": True, "full": False, "eps": 1e-8, "reduction": "mean"}),
    "F.multilabel_soft_margin_loss": (("input", "target", "weight", "size_average", "reduce", "reduction"),
                                      {"reduction": "mean"}),
    "F.gaussian_nll_loss": (("input", "target", "var", "full", "eps", "reduction"),
                            {"full": False, "eps": 1e-6, "reduction": "mean"}),
}
"""torch functions torch composes of other ops (services.compiler.composites): their parameters and defaults."""


def inplace_keyword(call: ast.Call, path: str) -> None:
    """`F.relu(h, True)` as `F.relu(h, inplace=True)`, the form the compiler reads (the call is rewritten once)."""
    k = INPLACE_AT.get(path)
    if k is not None and len(call.args) == k + 1 and not any(kw.arg == "inplace" for kw in call.keywords):
        call.keywords.append(ast.copy_location(ast.keyword(arg="inplace", value=call.args.pop()), call))


def is_in_place_function(call: ast.Call, path: str) -> bool:
    """`F.relu(h, inplace=True)` or `F.relu_(h)`: a call that changes its first argument."""
    inplace_keyword(call, path)
    return bool(call.args) and (path in IN_PLACE_FUNCTIONS or path.startswith("F.") and any(
        k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords))


def in_place_statement(v: ast.expr, dotted: Any) -> bool:
    """Such a call as a statement on a name: a new binding of that name (for the binding counts)."""
    if not isinstance(v, ast.Call) or not v.args or not isinstance(v.args[0], ast.Name):
        return False
    path = dotted(v.func) if isinstance(v.func, ast.Attribute) else None
    return path is not None and is_in_place_function(v, path)


class TorchFunctions(ExpressionCompiler):
    """function_form and spread (ProgramCompiler calls them)."""

    def function_form(self, path: str, node: ast.Call) -> Value:
        """The call as gradtrace traces it, or NotImplemented when `path` is none of these."""
        if path == "F.normalize":
            return self.normalize(node)
        if path == "F.batch_norm":
            return self.batch_norm(node)
        if path == "F.cross_entropy" and (given := self.evaluated_target(node)) is not None:
            call, probs = given
            return self.apply(REGISTRY["cross_entropy_probs"] if probs else self.functions[path], call, out=self.name_for(node))
        if path in COMPOSITES:
            return self.composite(path, node)
        if path == "nn.Transformer.generate_square_subsequent_mask":
            return self.square_subsequent_mask(node)
        if path == "F.scaled_dot_product_attention":
            return self.attention_with_dropout(node)
        if path in ("torch.einsum", "torch.functional.einsum"):
            return self.einsum(node)
        if path == "F.relu6" and node.args and not any(k.arg != "inplace" for k in node.keywords):
            return self.emit("hardtanh", [self.tensor(node.args[0])], {"min_val": 0.0, "max_val": 6.0}, node)  # torch's too
        if path in IN_PLACE_FUNCTIONS and node.args:  # g = F.relu_(h): h.relu_(), which returns h
            return self.expr(self.as_method(node, IN_PLACE_FUNCTIONS[path]))
        if path in ("torch.fliplr", "torch.flipud") and len(node.args) == 1 and not node.keywords:
            return self.flip_lr_ud(path[6:], self.tensor(node.args[0]), node)
        if path in ("torch.linalg.slogdet", "torch.slogdet") and len(node.args) == 1 and not node.keywords:
            return self.extreme_pair("slogdet", node)  # type: ignore[attr-defined, no-any-return]
        if path == "torch.logdet" and len(node.args) == 1 and not node.keywords:
            return self.logdet(self.tensor(node.args[0]), node)  # type: ignore[attr-defined, no-any-return]
        if path == "torch.cholesky":  # deprecated, still in older GP code: CholeskyBackward0
            return self.apply(REGISTRY["cholesky"], node, extra={"deprecated": True})
        if path == "torch.diff" and node.args:
            return self.diff(self.tensor(node.args[0]), node, node.args[1:])
        if path in METHOD_FORMS and node.args:  # torch.unbind(x, 1): x.unbind(1)
            return self.reshape_alias(self.tensor(node.args[0]), path[6:], self.as_method(node, path[6:]))  # type: ignore[attr-defined]
        if path == "torch.masked_select" and len(node.args) == 2 and not node.keywords:
            return self.masked_select(self.tensor(node.args[0]), node, node.args[1])
        if path == "torch.nanmean" and node.args:
            return self.nanmean(self.tensor(node.args[0]), node, node.args[1:])
        if path == "F.gumbel_softmax" and node.args:
            return self.gumbel_softmax(node)
        if path in ("torch.tril_indices", "torch.triu_indices"):
            return self.triangle_indices(path[6:], node)
        if path == "nn.utils.parameters_to_vector" and len(node.args) == 1 and not node.keywords:
            return self.parameters_to_vector(node)
        if path in ("nn.utils.clip_grad_norm_", "nn.utils.clip_grad_value_"):  # `total_norm = clip_grad_norm_(...)`
            self.res.notes.append(f"line {node.lineno}: {self.src(node)[:80]} is not traced: the grads shown are "  # type: ignore[attr-defined]
                                  "backward's, before clipping")
            return Untraced(f"what {path[9:]} returns (not traced)")
        return NotImplemented

    def masked_select(self, t: T, node: ast.Call, mask_arg: ast.expr) -> T:
        """x.masked_select(mask) (the chatbot tutorial's maskNLLLoss): with the mask made from numbers alone, its count
        is known now (the result's shape); a mask from the data is refused, as boolean indexing by one is."""
        mask = self.tensor(mask_arg)
        if self.dtype_of(mask) != "bool":
            raise self.err(node, f"masked_select: expected BoolTensor for mask, got {self.dtype_of(mask)} (as torch raises)")
        value = self.folded(mask.name)  # type: ignore[attr-defined]
        if value is None:
            raise self.err(node, "masked_select gives a shape that depends on the data: use torch.where(mask, x, 0) "
                                 "(and a sum over the mask), or make the mask from numbers alone, which gradtrace reads now")
        try:
            count = int(np.broadcast_to(value, np.broadcast_shapes(value.shape, self.shape(t))).sum())
        except ValueError as e:
            raise self.err(node, f"masked_select: the mask {list(value.shape)} does not broadcast with {list(self.shape(t))}") from e
        if getattr(self.builder.leaves.get(mask.name), "value", None) is None:  # (made from numbers: the same values,
            literal = ast.copy_location(ast.Call(func=node.func, args=[ast.Constant(value.tolist())], keywords=[]), node)
            mask = self.create("tensor", literal, self.temp(), dtype="bool")  # type: ignore[attr-defined]  # written out)
        return self.emit("masked_select", [t, mask], {"count": count}, node)

    def nanmean(self, t: T, node: ast.Call, args: list[ast.expr]) -> T:
        """torch.nanmean(x, dim=None, keepdim=False) / x.nanmean(...): as ATen composes it (composites.nanmean)."""
        given = dict(zip(("dim", "keepdim"), args, strict=False)) | {k.arg: k.value for k in node.keywords if k.arg}
        if len(args) > 2 or set(given) - {"dim", "keepdim"}:
            raise self.err(node, "nanmean takes (dim=None, keepdim=False)")
        if not self.dtype_of(t).startswith("float"):
            raise self.err(node, f"nanmean(): expected input to have floating point dtype but got {self.dtype_of(t)}")
        dim, keepdim = (self.const(given[k]) if k in given else v for k, v in (("dim", None), ("keepdim", False)))

        def add(op: str, inputs: list[Any], a: dict[str, Any], last: bool) -> str:
            return self.emit(op, inputs, a, node, name=None if last else self.temp()).name

        return T(composites.nanmean(add, t.name, dim, bool(keepdim)))

    def gumbel_softmax(self, node: ast.Call) -> T:
        """F.gumbel_softmax(logits, tau=1, hard=False, dim=-1) as torch's Python writes it: gumbels =
        -empty_like(logits).exponential_().log() (drawn here, in order), softmax((logits + gumbels) / tau); `hard`: the
        one-hot of its argmax, y_hard - y_soft.detach() + y_soft (the straight-through estimator)."""
        names = ("logits", "tau", "hard", "eps", "dim")
        given = dict(zip(names, node.args, strict=False)) | {k.arg: k.value for k in node.keywords if k.arg}
        if len(node.args) > len(names) or set(given) - set(names):
            raise self.err(node, "F.gumbel_softmax takes (logits, tau=1, hard=False, eps=1e-10, dim=-1)")
        logits = self.tensor(given["logits"])
        tau, hard, dim = (self.const(given[k]) if k in given else v for k, v in (("tau", 1.0), ("hard", False), ("dim", -1)))
        shape, dtype = self.shape(logits), self.dtype_of(logits)
        if not dtype.startswith("float") or not is_number(tau) or not isinstance(dim, int):
            raise self.err(node, "F.gumbel_softmax takes float logits, a number tau and an int dim")

        def add(op: str, inputs: list[Any], a: dict[str, Any], last: bool = False) -> T:
            return self.emit(op, inputs, a, node, name=None if last else self.temp())

        e = self.draw_leaf("empty", shape, dtype, self.stream, node, fill="exponential_")  # type: ignore[attr-defined]
        gumbels = add("neg", [add("log", [e], {})], {})
        y_soft = add("softmax", [add("div", [add("add", [logits, gumbels], {}), float(tau)], {})], {"dim": dim}, last=not hard)
        if not hard:
            return y_soft
        index = add("argmax", [y_soft], {"dim": dim, "keepdim": True})
        zeros = ast.copy_location(ast.Call(func=ast.Attribute(value=ast.Name(id="torch", ctx=ast.Load()), attr="zeros",
                                                              ctx=ast.Load()), args=[ast.Constant(list(shape))], keywords=[]), node)
        y_hard = add("scatter", [self.create("zeros", zeros, self.temp(), dtype=dtype), index, 1.0], {"dim": dim})  # type: ignore[attr-defined]
        return add("add", [add("sub", [y_hard, add("detach", [y_soft], {})], {}), y_soft], {}, last=True)

    def triangle_indices(self, fn: str, node: ast.Call) -> T:
        """torch.tril_indices(row, col, offset=0) / triu_indices (DLRM's interaction layer): the (2, N) int64 indices
        of the triangle, row by row, a tensor made by the program (a leaf)."""
        names = ("row", "col", "offset")
        given = dict(zip(names, node.args, strict=False)) | {k.arg: k.value for k in node.keywords if k.arg}
        if len(node.args) > 3 or set(given) - {*names, "dtype", "device"} or not {"row", "col"} <= set(given):
            raise self.err(node, f"torch.{fn} takes (row, col, offset=0)")
        row, col, offset = (self.const(given[k]) if k in given else 0 for k in names)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (row, col, offset)) or row < 0 or col < 0:
            raise self.err(node, f"torch.{fn}: row and col are sizes (ints >= 0), offset an int")
        if 2 * row * col > self.builder.limits.max_tensor_elements:  # (checked before numpy makes the lists)
            raise self.err(node, f"torch.{fn}({row}, {col}) is over the element limit "
                                 f"({self.builder.limits.max_tensor_elements:,} per tensor)")
        rows, cols = (np.tril_indices if fn == "tril_indices" else np.triu_indices)(row, offset, col)
        literal = ast.copy_location(ast.Call(func=node.func, args=[ast.Constant([rows.tolist(), cols.tolist()])],
                                             keywords=[k for k in node.keywords if k.arg == "dtype"]), node)
        return self.create("tensor", literal, self.name_for(node), dtype="int64")  # type: ignore[attr-defined, no-any-return]

    def parameters_to_vector(self, node: ast.Call) -> T:
        """nn.utils.parameters_to_vector(model.parameters()): torch.cat of each parameter's view(-1), as torch's own
        code writes it (CatBackward0 over ViewBackward0s)."""
        params = self.expr(node.args[0])
        if not isinstance(params, (list, tuple)) or not params or not all(isinstance(p, T) for p in params):
            raise self.err(node, f"parameters_to_vector takes tensors (model.parameters()), not {_kind(params)}")
        flat = [self.emit("view", [p], {"shape": [-1]}, node, name=self.temp()) for p in params]  # type: ignore[attr-defined]
        return self.emit("cat", flat, {"dim": 0}, node)

    def diff(self, t: T, node: ast.Call, args: list[ast.expr]) -> T:
        """torch.diff(x, n=1, dim=-1, prepend=None, append=None) / x.diff(...): as ATen's diff_helper, n times the
        slice from 1 minus the slice to -1 along dim (SubBackward0 over SliceBackward0s), after a cat of prepend and
        append (logical_xor for bools)."""
        names = ("n", "dim", "prepend", "append")
        given: dict[str, ast.expr] = dict(zip(names, args, strict=False))
        for k in node.keywords:
            if k.arg not in names or k.arg in given:
                raise self.err(node, "torch.diff takes (input, n=1, dim=-1, prepend=None, append=None)")
            given[k.arg] = k.value
        n = self.const(given["n"]) if "n" in given else 1
        dim = self.const(given["dim"]) if "dim" in given else -1
        shape = self.shape(t)
        if not isinstance(n, int) or n < 0 or not isinstance(dim, int) or not shape or not -len(shape) <= dim < len(shape):
            raise self.err(node, f"torch.diff: n must be an int >= 0 and dim a dim of {list(shape)}, got n={n!r}, dim={dim!r}")
        d = dim % len(shape)
        ends = [self.expr(given[k]) if k in given else None for k in ("prepend", "append")]
        if any(e is not None for e in ends):
            if not all(e is None or isinstance(e, T) for e in ends):
                raise self.err(node, "torch.diff: prepend and append are tensors")
            parts = [e for e in (ends[0], t, ends[1]) if e is not None]
            t = self.emit("cat", parts, {"dim": d}, node, name=self.temp())
        if n == 0:
            return self.emit("clone", [t], {}, node)
        op = "logical_xor" if self.dtype_of(t) == "bool" else "sub"
        size = self.shape(t)[d]
        for k in range(min(n, size)):
            hi = self.emit("getitem", [t], {"index": [{"slice": [None, None, None]}] * d + [{"slice": [1, None, None]}]}, node,
                           name=self.temp())
            lo = self.emit("getitem", [t], {"index": [{"slice": [None, None, None]}] * d + [{"slice": [None, size - 1 - k, None]}]},
                           node, name=self.temp())
            t = self.emit(op, [hi, lo], {}, node, name=None if k == min(n, size) - 1 else self.temp())
        return t

    def flip_lr_ud(self, fn: str, t: T, node: ast.Call) -> T:
        """torch.fliplr / flipud (and the methods): flip of dim 1 / dim 0, as torch records it (FlipBackward0)."""
        dim, least = (1, 2) if fn == "fliplr" else (0, 1)
        if len(self.shape(t)) < least:
            raise self.err(node, f"{fn}: input must be >= {least}-d, got shape {list(self.shape(t))}")
        return self.emit("flip", [t], {"dims": [dim]}, node)

    def einsum(self, node: ast.Call) -> T:
        """torch.einsum("bij,bjk->bik", a, b), or with the operands in one list: one einsum node."""
        if not node.args or node.keywords:
            raise self.err(node, "torch.einsum takes an equation and the tensors")
        equation = self.const(node.args[0])
        if not isinstance(equation, str):
            raise self.err(node, "torch.einsum's first argument is the equation (a string)")
        rest = [self.expr(a) for a in node.args[1:]]
        operands = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
        if not operands or not all(isinstance(v, T) for v in operands):
            raise self.err(node, "torch.einsum takes tensors after its equation")
        return self.emit("einsum", list(operands), {"equation": equation}, node)

    def composite(self, path: str, node: ast.Call) -> T:
        """F.l1_loss, F.kl_div, F.cosine_similarity, F.pairwise_distance, F.triplet_margin_loss, F.margin_ranking_loss:
        the ops torch composes them of (services.compiler.composites), the last named by the statement."""
        names, defaults = COMPOSITES[path]
        given = dict(zip(names, node.args, strict=False))
        for k in node.keywords:
            if k.arg not in names or k.arg in given:
                raise self.err(node, f"{path} takes ({', '.join(names)})")
            given[k.arg] = k.value
        if len(node.args) > len(names) or not {names[0], names[1]} <= set(given):
            raise self.err(node, f"{path} takes ({', '.join(names)})")
        a, b = self.tensor(given[names[0]]), self.tensor(given[names[1]])
        weight = self.expr(given["weight"]) if "weight" in given else None  # (multilabel_soft_margin_loss's)
        if weight is not None and not isinstance(weight, T):
            raise self.err(node, f"{path}: weight is a tensor or None, not {_kind(weight)}")
        opts = {k: self.const(given[k]) if k in given else v for k, v in defaults.items()}
        if "size_average" in given or "reduce" in given:  # RepDistiller's F.kl_div(..., size_average=False): torch's
            # legacy_get_string, with its warning
            legacy = {k: self.const(given[k]) if k in given else None for k in ("size_average", "reduce")}
            size_average, reduce = (True if v is None else bool(v) for v in legacy.values())
            opts["reduction"] = "none" if not reduce else "mean" if size_average else "sum"
            self.res.notes.append(f"line {node.lineno}: size_average and reduce are deprecated in torch: "  # type: ignore[attr-defined]
                                  f"reduction='{opts['reduction']}'")

        def add(op: str, inputs: list[Any], args: dict[str, Any], last: bool) -> str:
            return self.emit(op, inputs, args, node, name=None if last else self.temp()).name

        three = ("F.triplet_margin_loss", "F.margin_ranking_loss", "F.gaussian_nll_loss", "F.cosine_embedding_loss")
        third = [self.tensor(given[names[2]])] if path in three and names[2] in given else []
        if path in three and names[2] not in given:
            raise self.err(node, f"{path} takes ({', '.join(names)})")
        try:
            if path in ("F.pairwise_distance", "torch.pairwise_distance"):
                ndim = max(len(self.shape(a)), len(self.shape(b)))
                return T(composites.pairwise_distance(add, a.name, b.name, ndim, float(opts["p"]), float(opts["eps"]),
                                                      bool(opts["keepdim"])))
            if path == "F.triplet_margin_loss":
                ndim = max(len(self.shape(t)) for t in (a, b, *third))
                return T(composites.triplet_margin_loss(add, a.name, b.name, third[0].name, ndim, float(opts["margin"]),
                                                        float(opts["p"]), float(opts["eps"]), bool(opts["swap"]),
                                                        opts["reduction"]))
            if path == "F.margin_ranking_loss":
                return T(composites.margin_ranking_loss(add, a.name, b.name, third[0].name, float(opts["margin"]),
                                                        opts["reduction"]))
            if path == "F.cosine_embedding_loss":
                shapes = (self.shape(a), self.shape(b), self.shape(third[0]))
                return T(composites.cosine_embedding_loss(add, a.name, b.name, third[0].name, shapes, float(opts["margin"]),
                                                          opts["reduction"]))
            if path == "F.hinge_embedding_loss":
                return T(composites.hinge_embedding_loss(add, a.name, b.name, float(opts["margin"]), opts["reduction"]))
            if path == "F.l1_loss":
                return T(composites.l1_loss(add, a.name, b.name, opts["reduction"]))
            if path == "F.poisson_nll_loss":
                return T(composites.poisson_nll_loss(add, a.name, b.name, bool(opts["log_input"]), bool(opts["full"]),
                                                     float(opts["eps"]), opts["reduction"]))
            if path == "F.gaussian_nll_loss":
                shapes = (self.shape(a), self.shape(b), self.shape(third[0]))
                return T(composites.gaussian_nll_loss(add, a.name, b.name, third[0].name, shapes, bool(opts["full"]),
                                                      float(opts["eps"]), opts["reduction"]))
            if path == "F.multilabel_soft_margin_loss":
                shape = self.shape(a)
                return T(composites.multilabel_soft_margin_loss(add, a.name, b.name, shape[-1] if shape else 1,
                                                                weight.name if weight is not None else None, opts["reduction"]))
            if path == "F.kl_div":
                batch = self.shape(a)[0] if self.shape(a) else 1
                return T(composites.kl_div(add, a.name, b.name, batch, opts["reduction"], bool(opts["log_target"])))
            shapes = (self.shape(a), self.shape(b))
            return T(composites.cosine_similarity(add, a.name, b.name, shapes, int(opts["dim"]), float(opts["eps"])))
        except (ValueError, ShapeError) as e:
            raise self.err(node, f"{path}: {e}") from None

    def attention_with_dropout(self, node: ast.Call) -> Value:
        """F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p > 0, is_causal, scale): torch's math, node by
        node, the weights' dropout mask drawn from torch's generator (services.compiler.transformer.attention); without
        dropout, NotImplemented (the op)."""
        names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
        given = dict(zip(names, node.args, strict=False)) | {k.arg: k.value for k in node.keywords if k.arg}
        p = self.const(given["dropout_p"]) if "dropout_p" in given else 0.0
        if not is_number(p) or p == 0 or set(given) - set(names) or not {"query", "key", "value"} <= set(given):
            return NotImplemented
        if not 0 < p < 1:
            raise self.err(node, f"scaled_dot_product_attention: dropout_p is from 0 to 1 (1 excluded), got {p!r}")
        opts = {k: self.const(given[k]) for k in ("is_causal", "scale", "enable_gqa") if k in given}
        q, k, v = (self.tensor(given[a]) for a in ("query", "key", "value"))
        if opts.get("enable_gqa"):  # torch's math repeats each key/value head for its group of query heads first
            shapes = [self.shape(t) for t in (q, k, v)]
            try:
                counts = groups(*shapes, AttentionArgs(enable_gqa=True))
            except ShapeError as err:
                raise self.err(node, str(err)) from None
            k, v = (t if n == 1 else self.repeat_interleave(  # type: ignore[attr-defined]
                t, {"repeats": ast.Constant(n), "dim": ast.Constant(-3)}, node, self.temp()) for t, n in zip((k, v), counts, strict=True))
        mask = self.expr(given["attn_mask"]) if "attn_mask" in given else None
        if mask is not None and not isinstance(mask, T):
            raise self.err(node, f"scaled_dot_product_attention: attn_mask is a tensor or None, not {_kind(mask)}")
        causal = bool(opts.get("is_causal", False))
        if causal and mask is not None:
            raise self.err(node, "scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True")
        for t in (q, k, v):
            if len(self.shape(t)) < 2:
                raise self.err(node, f"scaled_dot_product_attention: query, key and value must be at least 2-D, got {list(self.shape(t))}")
        name = self.name_for(node)
        e = Emitter(self.builder, self.stream, self.dtype, loc=("program",), line=node.lineno, col=node.col_offset + 1,
                    texts={name: self.src(node)})
        m = None
        if mask is not None and self.builder.dtypes[mask.name] not in ("bool", self.builder.dtypes[q.name]):
            raise self.err(node, "scaled_dot_product_attention: Expected attn_mask dtype to be bool or float or to match "
                                 f"query dtype, got {self.builder.dtypes[mask.name]} and {self.builder.dtypes[q.name]}")
        if mask is not None:  # a bool mask: True takes part (torch's SDPA, unlike nn.MultiheadAttention's)
            m = mask.name if self.builder.dtypes[mask.name] != "bool" else e.node(
                self.temp(), "where", [mask.name, 0.0, float("-inf")], expr=f"{mask.name} as 0 / -inf")
        try:
            return T(attention(e, name, q.name, k.name, v.name, m, causal, float(p), opts.get("scale"), out=name))
        except SpecError as err:
            raise self.err(node, f"scaled_dot_product_attention: {err.message}") from None

    def square_subsequent_mask(self, node: ast.Call) -> T:
        """nn.Transformer.generate_square_subsequent_mask(sz): the causal mask, -inf above the diagonal, 0 elsewhere
        (a constant; a TransformerEncoder given it detects it as causal, as torch's does)."""
        given = dict(zip(("sz", "device", "dtype"), node.args, strict=False)) | {k.arg: k.value for k in node.keywords if k.arg}
        size = self.const(given["sz"]) if "sz" in given else None
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 4096 or set(given) - {"sz", "device", "dtype"}:
            raise self.err(node, "generate_square_subsequent_mask takes the size (an int up to 4096), device and dtype")
        dtype = self.const(given["dtype"]).name if given.get("dtype") is not None else self.dtype
        if dtype not in ("float32", "float64"):
            raise self.err(node, f"generate_square_subsequent_mask: dtype {dtype} is not a floating dtype")
        value = np.triu(np.full((size, size), -np.inf), 1).astype(dtype)
        name = self.name_for(node)
        self.builder.add_leaf(Leaf(name, (size, size), dtype, False, init=self.src(node)[:80], expr=f"line {node.lineno}",
                                   value=value), ("program",))
        return T(name)

    def as_method(self, node: ast.Call, attr: str) -> ast.Call:
        """`f(x, *rest)` as `x.attr(*rest)`, in the call's place (the statement's variable names it)."""
        method = ast.copy_location(ast.Call(func=ast.Attribute(value=node.args[0], attr=attr, ctx=ast.Load()),
                                            args=node.args[1:], keywords=node.keywords), node)
        method.end_lineno, method.end_col_offset = node.end_lineno, node.end_col_offset
        method.replaces = node  # type: ignore[attr-defined]  # `u = torch.unbind(x, 1)[3]`: the piece is still u
        if node is self.stmt_expr:
            self.stmt_expr = method
        return method

    def normalize(self, node: ast.Call) -> T:
        """F.normalize(x, p=2.0, dim=1, eps=1e-12) as torch computes it: x / x.norm(p, dim, keepdim=True)
        .clamp_min(eps).expand_as(x), so its nodes, numbers and grad_fn (DivBackward0) are torch's."""
        names = ("input", "p", "dim", "eps")
        given = dict(zip(names, node.args, strict=False)) | {k.arg: k.value for k in node.keywords if k.arg}
        if set(given) - set(names) or "input" not in given:
            raise self.err(node, "F.normalize takes (input, p=2.0, dim=1, eps=1e-12)")
        x = self.tensor(given["input"])
        p = self.const(given["p"]) if "p" in given else 2.0
        dim = self.const(given["dim"]) if "dim" in given else 1
        eps = self.const(given["eps"]) if "eps" in given else 1e-12
        if p not in (1, 2) or not isinstance(dim, int):
            raise self.err(node, "F.normalize: p is 1 or 2 here, dim one int")
        norm = self.emit("norm", [x], {"p": int(p), "dim": dim, "keepdim": True}, node, name=self.temp())
        denom = self.emit("clamp_min", [norm], {"min": float(eps)}, node, name=self.temp())
        wide = self.emit("expand", [denom], {"size": list(self.shape(x))}, node, name=self.temp())
        return self.emit("div", [x, wide], {}, node)

    def evaluated_target(self, node: ast.Call) -> tuple[ast.Call, bool] | None:
        """F.cross_entropy's call with each argument evaluated once, in Python's order, into hidden names, and whether
        its target is float (class probabilities: cross_entropy_probs) rather than class indices; None when the call
        unpacks arguments (`*args`, `**kw`: left to the op's own binding)."""
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            return None

        def held(a: ast.expr) -> ast.expr:
            if isinstance(a, (ast.Name, ast.Constant)):
                return a
            hidden = f"arg#{a.lineno}.{a.col_offset}"
            self.scope[hidden] = self.expr(a)  # type: ignore[attr-defined]
            return ast.copy_location(ast.Name(id=hidden, ctx=ast.Load()), a)

        call = ast.copy_location(ast.Call(func=node.func, args=[held(a) for a in node.args],
                                          keywords=[ast.keyword(arg=k.arg, value=held(k.value)) for k in node.keywords]), node)
        target = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "target"), None)
        v = self.expr(target) if target is not None else None
        return call, isinstance(v, T) and self.dtype_of(v).startswith("float")

    def batch_norm(self, node: ast.Call) -> T:
        """F.batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
        eps=1e-05): with training False, an affine map by the running statistics given (batch_norm_eval); in training,
        the batch's statistics (batch_norm), and the running statistics given, if any, change in place as torch's do
        (each name bound to them sees the new values)."""
        names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
        given = dict(zip(names, node.args, strict=False)) | {k.arg: k.value for k in node.keywords if k.arg}
        if set(given) - set(names) or not {"input", "running_mean", "running_var"} <= set(given):
            raise self.err(node, "F.batch_norm takes (input, running_mean, running_var, weight=None, bias=None, "
                                 "training=False, momentum=0.1, eps=1e-05)")
        x = self.tensor(given["input"])
        training = bool(self.const(given["training"])) if "training" in given else False
        eps = self.const(given["eps"]) if "eps" in given else 1e-5
        if not is_number(eps):
            raise self.err(node, f"F.batch_norm: eps must be a float, not {_kind(eps)} (torch raises this)")
        eps = float(eps)
        momentum = self.const(given["momentum"]) if "momentum" in given else 0.1
        stats, params = [[self.expr(given[k]) if k in given else None for k in keys]
                         for keys in (("running_mean", "running_var"), ("weight", "bias"))]
        if params[0] is None and params[1] is not None:
            raise self.err(node, "F.batch_norm with a bias and no weight is not traced: give weight=torch.ones(C)")
        affine = [p for p in params if p is not None]
        if any(not isinstance(v, T) for v in [*stats, *affine] if v is not None):
            raise self.err(node, "F.batch_norm's running statistics, weight and bias are tensors or None")
        if not training:
            if None in stats:
                raise self.err(node, "running_mean and running_var must be defined when not training (torch raises this)")
            return self.emit("batch_norm_eval", [x, *stats, *affine], {"eps": eps}, node)
        if stats.count(None) == 1:
            raise self.err(node, "F.batch_norm: give both running_mean and running_var, or neither")
        if not is_number(momentum):
            raise self.err(node, f"F.batch_norm: momentum must be a float, not {_kind(momentum)} (torch raises this)")
        if stats[0] is not None and any(self.builder.grad[s.name] for s in stats):
            raise self.err(node, "F.batch_norm in training updates its running statistics in place: they need no grad")
        for s in (s for s in stats if s is not None and momentum != 0):  # (momentum 0 leaves them as they are)
            stale_statistics(self.builder, s.name, lambda msg: self.err(node, msg))
        y = self.emit("batch_norm", [x, *affine], {"momentum": float(momentum), "eps": eps}, node)
        for key, stat in zip(("running_mean", "running_var"), stats, strict=True):
            if stat is not None:  # a name's new binding; an attribute's buffer `bn.running_mean` -> bn.running_mean#2
                var = self.src(given[key])[:40]  # (the latest takes the buffer's name when the program ends)
                self.check_in_place(stat, var, "F.batch_norm's update of its running statistics",  # type: ignore[attr-defined]
                                    "separate tensors for running_mean and running_var", node)
                head, sep, k = stat.name.rpartition("#")  # (an earlier update's bn.running_mean#2: its buffer's name)
                base = head if sep and k.isdigit() else stat.name
                name = self.binding_name(var) if var.isidentifier() else \
                    Emitter(self.builder, self.stream, self.dtype).unique(base)
                new = self.emit("batch_norm_running", [x, stat], {"stat": key[8:], "momentum": float(momentum)}, node,
                                name=name)
                self.changed_in_place(stat, new, var, node, bump=False)  # type: ignore[attr-defined]
        return y

    def spread(self, node: ast.Call) -> ast.Call:
        """The call with each `*xs` of numbers written out (`x.view(x.size(0), *self.shape)`) and each `**kw` of a dict
        as its keywords (`nn.Linear(d, d, **factory_kwargs)`), for torch's functions, methods and modules; the
        statement's own call stays the one its variable names."""
        args: list[ast.expr] = []
        for a in node.args:
            if not isinstance(a, ast.Starred):
                args.append(a)
                continue
            v = self.expr(a.value)
            if not isinstance(v, (list, tuple)):
                raise self.err(a, f"*{self.src(a.value)[:40]} in a call of torch's unpacks a list or tuple here "
                                  f"(x.view(b, *shape), TensorDataset(*arrays)), not {_kind(v)}")
            for k, x in enumerate(v):  # numbers written out; tensors and the like held by hidden names
                if is_number(x) or isinstance(x, (bool, str)):
                    args.append(ast.copy_location(ast.Constant(x), a))
                else:
                    hidden = f"star#{a.lineno}.{a.col_offset}.{k}"
                    self.scope[hidden] = x  # type: ignore[attr-defined]
                    args.append(ast.copy_location(ast.Name(id=hidden, ctx=ast.Load()), a))
        keywords: list[ast.keyword] = []
        for k in node.keywords:  # **factory_kwargs (a dict the program made): its items as keywords, each held once
            if k.arg is not None:
                keywords.append(k)
                continue
            d = self.expr(k.value)
            if not isinstance(d, dict) or not all(isinstance(key, str) for key in d):
                raise self.err(k.value, f"**{self.src(k.value)[:40]} in a call of torch's unpacks a dict of keyword "
                                        f"arguments here, not {_kind(d)}")
            for key, v in d.items():
                hidden = f"kw#{k.value.lineno}.{k.value.col_offset}.{key}"
                self.scope[hidden] = v  # type: ignore[attr-defined]
                keywords.append(ast.keyword(arg=key, value=ast.copy_location(ast.Name(id=hidden, ctx=ast.Load()), k.value)))
        given = [k.arg for k in keywords]
        if len(set(given)) < len(given):
            dup = next(a for a in given if given.count(a) > 1)
            raise self.err(node, f"got multiple values for keyword argument '{dup}'")
        new = ast.copy_location(ast.Call(func=node.func, args=args, keywords=keywords), node)
        if node is self.stmt_expr:
            self.stmt_expr = new
        return new

    def unpacks_into_user_code(self, node: ast.Call) -> bool:
        """Whether a call with `*xs` / `**cfg` goes to the program's own code (a def, a lambda, a class, an object's
        method, super()), whose parameters bind them as Python does: `MLP(**cfg)`, `self.block(x, *extra)`."""
        f = node.func
        if is_super(node):
            return True
        if isinstance(f, ast.Name):
            return isinstance(self.scope.get(f.id), CALLABLE)
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            owner = self.scope.get(f.value.id)
            if isinstance(owner, Instance):
                return f.attr in owner.cls.methods or isinstance(owner.attrs.get(f.attr), (UserFunction, Instance))
            return isinstance(owner, UserClass) and f.attr in owner.methods
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Attribute) and isinstance(f.value.value, ast.Name):
            owner = self.scope.get(f.value.value.id)  # self.block.forward(...) / self.encoder(...)'s methods
            inner = owner.attrs.get(f.value.attr) if isinstance(owner, Instance) else None
            return isinstance(inner, Instance) and f.attr in inner.cls.methods
        return False
