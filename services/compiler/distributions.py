"""torch.distributions' Categorical and Normal, and torch.multinomial, as torch's own Python code composes them from
ops: Categorical(probs) divides by the sum, log_prob gathers from the normalised logits, entropy sums p * log p, Normal's
log_prob is the formula torch writes out. Each method adds the nodes torch's code runs, so values, grad_fns and
gradients are torch's (a reinforce.py policy gradient, an actor-critic, a Gaussian policy's rsample).

Draws are torch's too: multinomial of one sample (or without replacement) is torch's exponential race, argmax (topk)
of probs / q with q = empty_like(probs).exponential_(1), whose q is a leaf the materializer draws in program order;
Normal.sample and rsample are a standard normal leaf times scale plus loc, as torch.normal and _standard_normal run."""

from __future__ import annotations

import ast
import math
from typing import Any

import numpy as np

from services.compiler.expressions import ExpressionCompiler, _kind
from services.compiler.values import Distribution, T, Value, is_number
from services.ir import Event, Leaf
from services.ops.base import broadcast

PARAMETERS = {"Categorical": ("probs", "logits"), "Normal": ("loc", "scale")}
"""The classes traced, by their constructor's parameters in torch's order."""
PATHS = {f"torch.distributions.{k}": k for k in PARAMETERS} | {
    "torch.distributions.categorical.Categorical": "Categorical", "torch.distributions.normal.Normal": "Normal"}
"""Where a program finds them (`from torch.distributions import Categorical`, `import torch.distributions as D`)."""
METHODS = {"Categorical": ("log_prob", "entropy", "sample"), "Normal": ("log_prob", "entropy", "sample", "rsample")}


class Distributions(ExpressionCompiler):
    """Distribution objects: made, asked for log_prob / entropy / samples, their parameters read."""

    stream: Any  # (the program's default random stream: CallStatements)

    def distribution(self, kind: str, node: ast.Call) -> Distribution:
        """Categorical(probs) / Categorical(logits=...) / Normal(loc, scale): the parameters as torch holds them."""
        names = (*PARAMETERS[kind], "validate_args")
        if len(node.args) > len(names):
            raise self.err(node, f"{kind} takes at most {len(names)} arguments ({', '.join(names)})")
        given: dict[str, ast.expr] = dict(zip(names, node.args, strict=False))
        for k in node.keywords:
            if k.arg not in names or k.arg in given:
                raise self.err(node, f"{kind}: unexpected or repeated argument '{k.arg}'")
            given[k.arg] = k.value
        given.pop("validate_args", None)  # torch's checks of the values: they change no number
        base = self.target if node is self.stmt_expr else None
        d = Distribution(kind, {}, (), base)
        if kind == "Categorical":
            self.categorical(d, given, node)
        else:
            self.normal(d, given, node)
        return d

    def part_name(self, d: Distribution, attr: str) -> str | None:
        return self.fresh(f"{d.base}.{attr}") if d.base else None

    def categorical(self, d: Distribution, given: dict[str, ast.expr], node: ast.Call) -> None:
        vals = {k: self.expr(v) for k, v in given.items()}
        present = [k for k, v in vals.items() if v is not None]
        if len(present) != 1:
            raise self.err(node, "Categorical: Either `probs` or `logits` must be specified, but not both.")
        which = present[0]
        t = vals[which]
        if not isinstance(t, T) or not self.dtype_of(t).startswith("float"):
            raise self.err(node, f"Categorical: `{which}` must be a floating point tensor, not {_kind(t)}")
        shape = self.shape(t)
        if not shape:
            raise self.err(node, f"Categorical: `{which}` parameter must be at least one-dimensional.")
        if which == "probs":  # probs / probs.sum(-1, keepdim=True)
            total = self.emit("sum", [t], {"dim": -1, "keepdim": True}, node, name=self.temp())
            d.params["probs"] = self.emit("div", [t, total], {}, node, name=self.part_name(d, "probs") or self.temp())
        else:  # logits - logits.logsumexp(dim=-1, keepdim=True)
            lse = self.emit("logsumexp", [t], {"dim": -1, "keepdim": True}, node, name=self.temp())
            d.params["logits"] = self.emit("sub", [t, lse], {}, node, name=self.part_name(d, "logits") or self.temp())
        d.batch_shape = tuple(shape[:-1])

    def normal(self, d: Distribution, given: dict[str, ast.expr], node: ast.Call) -> None:
        """broadcast_all(loc, scale): numbers become tensors of the other's dtype, then both are broadcast."""
        if set(given) != {"loc", "scale"}:
            raise self.err(node, "Normal takes loc and scale")
        vals = {k: self.expr(given[k]) for k in ("loc", "scale")}
        tensors = [v for v in vals.values() if isinstance(v, T)]
        dtype = self.dtype_of(tensors[0]) if tensors else self.dtype
        for k, v in vals.items():
            if is_number(v):
                name = self.part_name(d, k) or self.temp()
                self.builder.add_leaf(Leaf(name, (), dtype, False, init=f"{float(v)!r} (line {node.lineno})",
                                           expr=f"line {node.lineno}", value=np.array(v, dtype=dtype)), ("program",))
                vals[k] = T(name)
            elif not isinstance(v, T) or not self.dtype_of(v).startswith("float"):
                raise self.err(node, f"Normal: {k} must be a floating point tensor or a number, not {_kind(v)}")
        shape = broadcast(*(self.shape(v) for v in vals.values()))
        for k, v in vals.items():
            d.params[k] = v if self.shape(v) == shape else self.emit("expand", [v], {"size": list(shape)}, node,
                                                                     name=self.part_name(d, k) or self.temp())
        d.batch_shape = () if not tensors else tuple(shape)

    # ---- attributes ---------------------------------------------------------------------------

    def distribution_attribute(self, d: Distribution, node: ast.Attribute) -> Any:
        """m.probs, m.logits (made on first use, as torch's lazy_property), m.loc, m.scale, m.mean, m.stddev, m.mode,
        m.variance, m.batch_shape, m.event_shape."""
        a = node.attr
        if a == "batch_shape":
            return d.batch_shape
        if a == "event_shape":
            return ()
        if d.kind == "Categorical":
            if a in ("probs", "logits"):
                return self.categorical_param(d, a, node)
            if a == "mode":
                return self.emit("argmax", [self.categorical_param(d, "probs", node)], {"dim": -1}, node)
            if a == "param_shape":
                return tuple(self.shape(d.params.get("probs") or d.params["logits"]))
        else:
            if a in ("loc", "mean", "mode"):
                return d.params["loc"]
            if a in ("scale", "stddev"):
                return d.params["scale"]
            if a == "variance":  # self.stddev.pow(2)
                return self.emit("pow", [d.params["scale"], 2], {}, node)
        raise self.err(node, f"{d.kind}.{a} is not traced (gradtrace traces {', '.join(METHODS[d.kind])} and its parameters)")

    def categorical_param(self, d: Distribution, which: str, node: ast.expr) -> T:
        """Categorical's probs or logits, made from the other on first use: log(probs.clamp(eps, 1 - eps)) (torch's
        probs_to_logits), softmax(logits, -1) (logits_to_probs)."""
        if which not in d.params:
            if which == "logits":
                probs = d.params["probs"]
                eps = float(np.finfo(self.dtype_of(probs)).eps)
                clamped = self.emit("clamp", [probs], {"min": eps, "max": 1 - eps}, node, name=self.temp())
                d.params["logits"] = self.emit("log", [clamped], {}, node, name=self.part_name(d, "logits") or self.temp())
            else:
                d.params["probs"] = self.emit("softmax", [d.params["logits"]], {"dim": -1}, node,
                                              name=self.part_name(d, "probs") or self.temp())
        return d.params[which]

    # ---- methods ------------------------------------------------------------------------------

    def distribution_method(self, d: Distribution, method: str, node: ast.Call) -> T:
        if method not in METHODS[d.kind]:
            raise self.err(node, f"{d.kind}.{method} is not traced (gradtrace traces {', '.join(METHODS[d.kind])})")
        if method in ("sample", "rsample"):
            shape = self.sample_shape(node, method)
            return self.categorical_sample(d, shape, node) if d.kind == "Categorical" else self.normal_sample(d, shape, method, node)
        if method == "entropy":
            if node.args or node.keywords:
                raise self.err(node, "entropy() takes no arguments")
            return self.categorical_entropy(d, node) if d.kind == "Categorical" else self.normal_entropy(d, node)
        if len(node.args) != 1 or node.keywords:
            raise self.err(node, "log_prob takes one value")
        value = self.expr(node.args[0])
        if d.kind == "Categorical":
            if not isinstance(value, T):
                raise self.err(node, f"Categorical.log_prob takes a tensor of category indices, not {_kind(value)}")
            return self.categorical_log_prob(d, value, node)
        if not isinstance(value, T) and not is_number(value):
            raise self.err(node, f"Normal.log_prob takes a tensor or a number, not {_kind(value)}")
        return self.normal_log_prob(d, value, node)

    def sample_shape(self, node: ast.Call, method: str) -> tuple[int, ...]:
        if len(node.args) > 1 or any(k.arg != "sample_shape" for k in node.keywords):
            raise self.err(node, f"{method} takes one sample_shape")
        arg = node.args[0] if node.args else (node.keywords[0].value if node.keywords else None)
        shape = () if arg is None else self.const(arg)
        shape = (shape,) if isinstance(shape, int) else shape
        if not isinstance(shape, (list, tuple)) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise self.err(node, f"{method}: sample_shape is a tuple of sizes (torch.Size([5]), (5,)), not {shape!r}")
        return tuple(shape)

    def categorical_log_prob(self, d: Distribution, value: T, node: ast.Call) -> T:
        """value.long().unsqueeze(-1), broadcast against the logits, [..., :1], gathered, squeezed (torch's code)."""
        logits = self.categorical_param(d, "logits", node)
        v = value if self.dtype_of(value) == "int64" else self.emit("to", [value], {"dtype": "int64"}, node, name=self.temp())
        v = self.emit("unsqueeze", [v], {"dim": -1}, node, name=self.temp())
        common = broadcast(self.shape(v), self.shape(logits))
        if self.shape(v) != common:
            v = self.emit("expand", [v], {"size": list(common)}, node, name=self.temp())
        if self.shape(logits) != common:
            logits = self.emit("expand", [logits], {"size": list(common)}, node, name=self.temp())
        v = self.emit("getitem", [v], {"index": [Ellipsis, slice(None, 1, None)]}, node, name=self.temp())
        picked = self.emit("gather", [logits, v], {"dim": -1}, node, name=self.temp())
        return self.emit("squeeze", [picked], {"dim": -1}, node)

    def categorical_entropy(self, d: Distribution, node: ast.Call) -> T:
        """-(clamp(logits, min=finfo.min) * probs).sum(-1)."""
        logits = self.categorical_param(d, "logits", node)
        probs = self.categorical_param(d, "probs", node)
        low = float(np.finfo(self.dtype_of(logits)).min)
        clamped = self.emit("clamp", [logits], {"min": low}, node, name=self.temp())
        p_log_p = self.emit("mul", [clamped, probs], {}, node, name=self.temp())
        return self.emit("neg", [self.emit("sum", [p_log_p], {"dim": -1}, node, name=self.temp())], {}, node)

    def categorical_sample(self, d: Distribution, shape: tuple[int, ...], node: ast.Call) -> T:
        """probs.reshape(-1, n), multinomial of numel(sample_shape) draws with replacement, .T, reshaped to
        sample_shape + batch_shape."""
        probs = self.categorical_param(d, "probs", node)
        events = self.shape(probs)[-1]
        flat = self.emit("reshape", [probs], {"shape": [-1, events]}, node, name=self.temp())
        drawn = self.multinomial_draw(flat, math.prod(shape), True, self.stream, node, last=False)
        turned = self.emit("permute", [drawn], {"dims": [1, 0]}, node, name=self.temp())
        return self.emit("reshape", [turned], {"shape": [*shape, *d.batch_shape]}, node)

    def normal_log_prob(self, d: Distribution, value: Any, node: ast.Call) -> T:
        """-((value - loc) ** 2) / (2 * var) - log(scale) - log(sqrt(2 pi)), var = scale ** 2 (torch's order)."""
        loc, scale = d.params["loc"], d.params["scale"]
        var = self.emit("pow", [scale, 2], {}, node, name=self.temp())
        log_scale = self.emit("log", [scale], {}, node, name=self.temp())
        diff = self.emit("sub", [value, loc], {}, node, name=self.temp())
        sq = self.emit("neg", [self.emit("pow", [diff, 2], {}, node, name=self.temp())], {}, node, name=self.temp())
        two_var = self.emit("mul", [2, var], {}, node, name=self.temp())
        first = self.emit("sub", [self.emit("div", [sq, two_var], {}, node, name=self.temp()), log_scale], {}, node,
                          name=self.temp())
        return self.emit("sub", [first, math.log(math.sqrt(2 * math.pi))], {}, node)

    def normal_entropy(self, d: Distribution, node: ast.Call) -> T:
        """0.5 + 0.5 * log(2 pi) + log(scale)."""
        log_scale = self.emit("log", [d.params["scale"]], {}, node, name=self.temp())
        return self.emit("add", [0.5 + 0.5 * math.log(2 * math.pi), log_scale], {}, node)

    def normal_sample(self, d: Distribution, shape: tuple[int, ...], method: str, node: ast.Call) -> T:
        """sample: torch.normal(loc.expand(s), scale.expand(s)) under no_grad (a standard normal draw, times scale,
        plus loc); rsample: loc + eps * scale, eps = empty(s).normal_() (both draw as torch.randn(s) does)."""
        loc, scale = d.params["loc"], d.params["scale"]
        full = (*shape, *d.batch_shape)
        eps = self.draw_leaf("randn", full, self.dtype_of(loc), self.stream, node)
        if method == "rsample":
            return self.emit("add", [loc, self.emit("mul", [eps, scale], {}, node, name=self.temp())], {}, node)
        wide = [v if self.shape(v) == full else self.emit("expand", [v], {"size": list(full)}, node, name=self.temp())
                for v in (loc, scale)]
        was = self.builder.grad_enabled
        self.builder.grad_enabled = False
        try:
            scaled = self.emit("mul", [eps, wide[1]], {}, node, name=self.temp())
            return self.emit("add", [scaled, wide[0]], {}, node)
        finally:
            self.builder.grad_enabled = was

    # ---- draws ----------------------------------------------------------------------------------

    def draw_leaf(self, fn: str, shape: tuple[int, ...], dtype: str, stream: Any, node: ast.Call, fill: str | None = None) -> T:
        """A random leaf drawn at this point of the stream: torch.<fn>(shape) (`fill`: empty, then that in-place
        method with rate 1, as exponential_(1))."""
        name = self.temp()
        call = f"torch.empty({list(shape)}).{fill}(1)" if fill else f"torch.{fn}({list(shape)})"
        self.builder.add_leaf(Leaf(name, shape, dtype, False, init=f"{call} (line {node.lineno})", expr=f"line {node.lineno}"),
                              ("program",))
        stream.events.append(Event("tensor", name, {"fn": "empty" if fill else fn, "args": [list(shape)], "dtype": dtype}))
        if fill:
            stream.events.append(Event("inplace", name, {"method": fill, "args": [1.0]}))
        return T(name)

    def kl_divergence(self, node: ast.Call) -> T:
        """torch.distributions.kl_divergence(p, q) of two Normals (a VAE's KL term), as torch's _kl_normal_normal writes
        it: var_ratio = (p.scale / q.scale).pow(2); t1 = ((p.loc - q.loc) / q.scale).pow(2);
        0.5 * (var_ratio + t1 - 1 - var_ratio.log())."""
        if len(node.args) != 2 or node.keywords:
            raise self.err(node, "kl_divergence takes two distributions, p and q")
        p, q = (self.expr(a) for a in node.args)
        if not (isinstance(p, Distribution) and isinstance(q, Distribution)):
            raise self.err(node, f"kl_divergence takes two distributions, not {_kind(p)} and {_kind(q)}")
        if (p.kind, q.kind) != ("Normal", "Normal"):
            raise self.err(node, f"kl_divergence({p.kind}, {q.kind}) is not traced: gradtrace traces it between two Normals "
                                 "(torch's Categorical form writes through masks of the data)")

        def add(op: str, inputs: list[Any], last: bool = False) -> T:
            return self.emit(op, inputs, {}, node, name=None if last else self.temp())

        var_ratio = add("pow", [add("div", [p.params["scale"], q.params["scale"]]), 2.0])
        t1 = add("pow", [add("div", [add("sub", [p.params["loc"], q.params["loc"]]), q.params["scale"]]), 2.0])
        inner = add("sub", [add("sub", [add("add", [var_ratio, t1]), 1.0]), add("log", [var_ratio])])
        return add("mul", [inner, 0.5], last=True)

    def bernoulli(self, node: ast.Call, receiver: T | None = None) -> T:
        """torch.bernoulli(p) / p.bernoulli() (a binarized image, a classifier-free-guidance drop mask): a uniform
        drawn per element as torch's kernel draws it, and 1 where it is below p."""
        args = ([receiver] if receiver is not None else []) + list(node.args)
        if len(args) != 1 or any(k.arg != "generator" for k in node.keywords):
            raise self.err(node, "torch.bernoulli takes a tensor of probabilities (and generator=) here; "
                                 "torch.bernoulli(x, p) with a number p is not traced")
        p = args[0] if isinstance(args[0], T) else self.tensor(args[0])
        g = next((self.generator(k.value) for k in node.keywords if k.arg == "generator"), None)  # type: ignore[attr-defined]
        shape, dtype = self.shape(p), self.dtype_of(p)
        if not dtype.startswith("float"):
            raise self.err(node, f"torch.bernoulli: p must be a floating point tensor, got {dtype}")
        u = self.draw_leaf("rand", shape, dtype, g.stream if g is not None else self.stream, node)
        return self.emit("bernoulli", [p, u], {}, node)

    def normal_of_tensors(self, node: ast.Call) -> Value:
        """torch.normal(mean, std) with a tensor among them (a Bayesian layer's `torch.normal(mu, sigma)`): noise drawn
        as torch.randn(shape) here, then noise * std + mean, torch's zero gradient (NormalBackward3). Numbers alone:
        NotImplemented (tensor creation), with the arguments evaluated once."""
        names = ("mean", "std")
        given = dict(zip(names, node.args, strict=False)) | {k.arg: k.value for k in node.keywords if k.arg in names}
        if set(given) != set(names) or len(node.args) > 2:
            return NotImplemented
        mean, std = self.expr(given["mean"]), self.expr(given["std"])
        if not isinstance(mean, T) and not isinstance(std, T):
            once = ast.copy_location(ast.Call(func=node.func, args=[], keywords=[
                *(ast.keyword(arg=k, value=ast.copy_location(ast.Constant(v), node)) for k, v in (("mean", mean), ("std", std))),
                *(k for k in node.keywords if k.arg not in names)]), node)
            return self.create("normal", once, self.name_for(node))  # type: ignore[attr-defined]
        if {k.arg for k in node.keywords} - {"mean", "std", "generator"}:
            raise self.err(node, "torch.normal(mean, std) of tensors takes generator= (and no size=) here")
        if not isinstance(std, T):
            raise self.err(node, "torch.normal(mean_tensor, std_number) is not traced (torch draws it in double precision "
                                 "for small tensors): write torch.normal(mean, torch.full_like(mean, std))")
        if not is_number(mean) and not isinstance(mean, T):
            raise self.err(given["mean"], f"torch.normal: mean must be a tensor or a number, not {type(mean).__name__}")
        dtypes = [self.dtype_of(v) for v in (mean, std) if isinstance(v, T)]
        if not all(d.startswith("float") for d in dtypes):
            raise self.err(node, f"torch.normal: mean and std must be floating point tensors, got {dtypes}")
        shape = broadcast(*(self.shape(v) for v in (mean, std) if isinstance(v, T)))
        g = next((self.generator(k.value) for k in node.keywords if k.arg == "generator"), None)  # type: ignore[attr-defined]
        noise = self.draw_leaf("randn", shape, dtypes[-1], g.stream if g is not None else self.stream, node)
        return self.emit("normal_tensors", [mean, std, noise], {}, node)

    def multinomial(self, node: ast.Call, receiver: T | None = None) -> T:
        """torch.multinomial(input, num_samples, replacement=False, generator=None) / x.multinomial(...)."""
        names = ("input", "num_samples", "replacement")
        args = ([receiver] if receiver is not None else []) + list(node.args)
        if len(args) > len(names):
            raise self.err(node, "torch.multinomial takes input, num_samples, replacement (and generator=)")
        given: dict[str, Any] = dict(zip(names, args, strict=False))
        for k in node.keywords:
            if k.arg not in (*names, "generator") or k.arg in given:
                raise self.err(node, f"torch.multinomial: unexpected or repeated argument '{k.arg}'")
            given[k.arg] = k.value
        if "input" not in given or "num_samples" not in given:
            raise self.err(node, "torch.multinomial takes input and num_samples")
        p = given["input"] if isinstance(given["input"], T) else self.tensor(given["input"])
        n = self.const(given["num_samples"])
        replacement = bool(self.const(given["replacement"])) if "replacement" in given else False
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise self.err(node, f"torch.multinomial: num_samples must be a positive int, got {n!r}")
        g = self.generator(given["generator"]) if "generator" in given else None  # type: ignore[attr-defined]
        stream = g.stream if g is not None else self.stream
        return self.multinomial_draw(p, n, replacement, stream, node, last=True)

    def multinomial_draw(self, p: T, n: int, replacement: bool, stream: Any, node: ast.Call, last: bool) -> T:
        """torch's fast path (one sample, or none replaced): q = empty_like(p).exponential_(1), then argmax(p / q, -1,
        keepdim=True), or topk(p / q, n).indices. With replacement and several samples torch runs another kernel: a
        uniform double per sample and a binary search of p's cumulative sum (the multinomial_replacement op)."""
        shape, dtype = self.shape(p), self.dtype_of(p)
        if len(shape) not in (1, 2) or not dtype.startswith("float"):
            raise self.err(node, f"torch.multinomial: prob_dist must be a 1 or 2 dim float tensor, got {list(shape)} {dtype}")
        if replacement and n > 1:  # torch's other kernel: a uniform double per sample, a search of p's cumulative sum
            u = self.draw_leaf("rand", (*shape[:-1], n), "float64", stream, node)
            return self.emit("multinomial_replacement", [p, u], {}, node, name=None if last else self.temp())
        if not replacement and n > shape[-1]:
            raise self.err(node, "torch.multinomial: cannot sample n_sample > prob_dist.size(-1) samples without replacement")
        if self.builder.strides.get(p.name):
            raise self.err(node, "torch.multinomial of a tensor with strides of its own (a transpose) is not traced: "
                                 "call .contiguous() on it first")
        q = self.draw_leaf("empty", shape, dtype, stream, node, fill="exponential_")
        ratio = self.emit("div", [p, q], {}, node, name=self.temp())
        name = None if last else self.temp()
        if n == 1:
            return self.emit("argmax", [ratio], {"dim": -1, "keepdim": True}, node, name=name)
        return self.emit("topk", [ratio], {"k": n, "dim": -1, "largest": True, "part": "indices"}, node, name=name)
