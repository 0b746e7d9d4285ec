"""A program's control flow and Python's builtins, folded at compile time: `if` picks the branch its condition (a
constant by now) names, `for` over what was not known before the statements ran is unrolled when reached, `assert`
on constants is checked; sum, zip, enumerate and reversed work on lists as Python's do; isinstance and hasattr
answer as they would in torch (`if isinstance(m, nn.Linear):` in an init function)."""

from __future__ import annotations

import ast
from collections import Counter

from services.compiler import strings
from services.compiler.creation import CREATORS
from services.compiler.expressions import CONSTANTS, ExpressionCompiler, _kind
from services.compiler.layers import BY_MODULE
from services.compiler.loops import unroll
from services.compiler.values import DTYPES, Instance, ModuleInst, T, UserClass, Value, is_number
from services.errors import SpecError

PY_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": tuple, "dict": dict}
"""Python's types isinstance() tests against (a tensor is none of them)."""
CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")
MODULE_ATTRIBUTES = {"forward", "parameters", "named_parameters", "modules", "named_modules", "children",
                     "named_children", "apply", "train", "eval", "zero_grad", "to", "cpu", "cuda", "float", "double",
                     "half", "type", "state_dict", "load_state_dict", "register_buffer", "register_parameter",
                     "register_module", "add_module", "requires_grad_", "training", "extra_repr", "buffers",
                     "named_buffers", "get_submodule", "get_parameter"}
"""What every nn.Module has (hasattr(model, "forward") is True)."""
TENSOR_ATTRIBUTES = ("shape", "ndim", "dtype", "requires_grad", "is_leaf", "data", "T", "mT", "grad", "grad_fn", "device")


class ControlFlow(ExpressionCompiler):
    """if / for / assert statements and sum / zip / enumerate / reversed (ProgramCompiler runs the statements)."""

    def if_statement(self, stmt: ast.If) -> None:
        """`if self.training:`, `if bias:`, `if targets is None:`: the condition folds at compile time and the branch
        it picks runs (a trace has one path)."""
        self.begin("t", stmt.test, [])
        branch = stmt.body if self.condition(stmt.test) else stmt.orelse
        for s in branch:
            self.line = s.lineno
            self.statement(s)

    def assertion(self, stmt: ast.Assert) -> None:
        """`assert C, msg`: checked now when C folds to a constant (shapes, flags), as Python would fail; an assert
        on a tensor's values is noted, not checked (it depends on the data)."""
        self.begin("t", stmt.test, [])
        v = self.expr(stmt.test)
        if isinstance(v, T):
            self.res.notes.append(f"line {stmt.lineno}: `assert {self.src(stmt.test)[:60]}` tests a tensor's values: not checked")
        elif not v:
            msg = self.const(stmt.msg) if stmt.msg is not None else None
            raise self.err(stmt, f"the program's assert fails: {self.src(stmt.test)[:80]}" + (f" ({msg})" if msg else ""))

    def for_statement(self, stmt: ast.For) -> None:
        """A loop over what was not known before the statements ran (`for stride in strides:`, a list the code built):
        unrolled now that the names hold their values; its bindings join the counts (the last takes the bare name)."""
        known = {k: v for k, v in self.scope.items() if type(v) is int}
        it = stmt.iter
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range" and not it.keywords:
            try:
                bounds = [self.const(a) for a in it.args]  # range(x.size()[0]): known now that the names hold values
            except SpecError:
                bounds = []  # (unroll says why it is not a constant)
            if bounds and all(type(b) is int for b in bounds):
                it = ast.copy_location(ast.Call(func=it.func, args=[ast.Constant(b) for b in bounds], keywords=[]), it)
                stmt = ast.copy_location(ast.For(target=stmt.target, iter=it, body=stmt.body, orelse=stmt.orelse), stmt)
        if not isinstance(it, (ast.Name, ast.Attribute, ast.List, ast.Tuple)) and not (
                isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id in ("range", "enumerate", "zip")):
            hidden = f"iter#{it.lineno}.{it.col_offset}"  # model.parameters(): evaluated once, as Python does
            self.scope[hidden] = self.expr(it)
            stmt = ast.copy_location(ast.For(target=stmt.target, iter=ast.copy_location(ast.Name(id=hidden, ctx=ast.Load()), it),
                                             body=stmt.body, orelse=stmt.orelse), stmt)
        body = unroll([stmt], self.err, known, self.runtime_length, lazy=True)
        if body and body[0] is stmt:
            unroll([stmt], self.err, known, self.runtime_length)  # raises: why its length is unknown
        outer, before = self.bindings, set(self.bindings)
        counts = []
        for stmts in (stmt.body, body):  # what was counted for it (its body once), what it binds unrolled
            self.bindings = Counter()
            self.count_bindings(stmts)
            counts.append(self.bindings)
        self.bindings = outer
        outer.update(counts[1])
        outer.subtract(counts[0])
        self.reserved |= {self.prefix + k for k in set(self.bindings) - before}
        for s in body:
            self.line = s.lineno
            self.statement(s)

    def sequence_builtin(self, fn: str, node: ast.Call) -> list[Value]:
        """zip(a, b), enumerate(xs[, start]), reversed(xs) of lists, tuples and nn.Sequential/ModuleList, as lists
        (Python's iterators, consumed whole where gradtrace uses them: a comprehension, a loop, list())."""
        def items(v: Value, where: ast.expr) -> list[Value]:
            if isinstance(v, ModuleInst) and v.layer is None:
                return list(v.keys or v.children)  # a ModuleDict goes over its keys, as a dict does
            if isinstance(v, (list, tuple, dict)):
                return list(v)
            raise self.err(where, f"{fn}() of {_kind(v)}: gradtrace goes over lists, tuples and module containers")
        if fn == "enumerate":
            start = self.const(node.args[1]) if len(node.args) == 2 else 0
            if len(node.args) > 2 or not isinstance(start, int):
                raise self.err(node, "enumerate takes a sequence and an int start")
            return [(start + k, v) for k, v in enumerate(items(self.expr(node.args[0]), node.args[0]))]
        seqs = [items(self.expr(a), a) for a in node.args]
        if fn == "reversed":
            if len(seqs) != 1:
                raise self.err(node, "reversed takes one sequence")
            return seqs[0][::-1]
        return [tuple(t) for t in zip(*seqs, strict=False)]

    def python_sum(self, node: ast.Call) -> Value:
        """Python's sum(items, start=0) over tensors and numbers, as Python adds them: ((0 + a) + b) + ..."""
        items = self.expr(node.args[0])
        acc = self.expr(node.args[1]) if len(node.args) == 2 else 0  # sum(gen, torch.tensor(0.0)): a tensor start
        if not (isinstance(acc, T) or is_number(acc)):
            raise self.err(node.args[1], f"sum()'s start is a number or a tensor, not {_kind(acc)}")
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, T) or is_number(v) for v in items):
            raise self.err(node, f"sum() of {_kind(items)}: a list of tensors or numbers")
        tensors = [k for k, v in enumerate(items) if isinstance(v, T)]
        for k, v in enumerate(items):
            if isinstance(acc, T) or isinstance(v, T):
                last = k == tensors[-1] and all(is_number(w) for w in items[k + 1:])
                acc = self.emit("add", [acc, v], {}, node, name=None if last else self.temp())
            else:
                acc = acc + v
        return acc

    def is_instance(self, node: ast.Call) -> bool:
        """isinstance(m, nn.Linear), isinstance(m, (nn.Conv2d, nn.Linear)), isinstance(block, Block),
        isinstance(x, torch.Tensor), isinstance(k, int): as Python answers for what the program holds."""
        if len(node.args) != 2 or node.keywords:
            raise self.err(node, "isinstance takes an object and a class (or a tuple of classes)")
        return self.instance_of(self.expr(node.args[0]), node.args[1])

    def instance_of(self, v: Value, cls: ast.expr) -> bool:
        if isinstance(cls, ast.Tuple):
            return any(self.instance_of(v, c) for c in cls.elts)
        path = self.dotted(cls)
        if path == "nn.Module":
            return isinstance(v, ModuleInst) or isinstance(v, Instance) and v.cls.module
        if path is not None and path.startswith("nn.") and (path[3:] in BY_MODULE or path[3:] in CONTAINERS):
            return isinstance(v, ModuleInst) and v.kind == path[3:]
        if path in ("torch.Tensor", "nn.Parameter"):
            leaves = self.builder.leaves
            return isinstance(v, T) and (path == "torch.Tensor" or v.name in leaves and leaves[v.name].kind == "parameter")
        if path is None and isinstance(cls, ast.Name) and cls.id in PY_TYPES and cls.id not in self.scope:
            return not isinstance(v, T) and isinstance(v, PY_TYPES[cls.id])
        c = self.expr(cls) if path is None else None
        if isinstance(c, UserClass):
            k = v.cls if isinstance(v, Instance) else None
            while k is not None and k is not c:
                k = k.base
            return k is not None
        raise self.err(cls, f"isinstance(..., {self.src(cls)[:40]}): gradtrace tests nn module classes, the program's "
                            "own classes, torch.Tensor, nn.Parameter and int/float/str/bool/list/tuple/dict")

    def has_attribute(self, node: ast.Call) -> bool:
        """hasattr(F, 'scaled_dot_product_attention'), hasattr(self, 'proj'), hasattr(m, 'bias'): as torch answers.
        Where gradtrace cannot tell (a torch function it does not trace, an attribute of a torch module it does not
        model) it refuses rather than guess: the branch taken would differ from torch's."""
        if len(node.args) != 2 or node.keywords or not isinstance(name := self.const(node.args[1]), str):
            raise self.err(node, "hasattr takes an object and an attribute's name (a string)")
        path = self.dotted(node.args[0])
        if path is not None:
            full = self.dotted(ast.Attribute(value=node.args[0], attr=name, ctx=ast.Load())) or ""
            if (full in self.functions or full in CONSTANTS or path == "torch" and (name in CREATORS or name in DTYPES)
                    or path == "nn" and (name in BY_MODULE or name in CONTAINERS)):
                return True
            raise self.err(node, f"hasattr({self.src(node.args[0])[:40]}, '{name}'): gradtrace does not trace {full}, so "
                                 "it cannot take the branch torch would take here")
        v = self.expr(node.args[0])
        if isinstance(v, Instance):
            return (name in v.attrs or name in v.cls.attrs or name in v.cls.methods
                    or v.cls.module and name in MODULE_ATTRIBUTES)
        if isinstance(v, ModuleInst):
            cfg = type(v.cfg).model_fields if v.cfg is not None else {}
            if (name in v.params or v.keys is not None and name in v.keys or name in cfg or name in MODULE_ATTRIBUTES
                    or name in ("weight", "bias") and ("bias" in cfg or v.layer is not None and v.layer.params(v.cfg))):
                return True
            if name in ("reset_parameters", "weight", "bias") and v.layer is not None:
                return bool(v.layer.params(v.cfg))  # (nn.Tanh has neither)
            if name in ("running_mean", "running_var", "num_batches_tracked") and v.layer is not None:
                return v.layer.type.startswith("batch_norm") and bool(getattr(v.cfg, "track_running_stats", True))
            raise self.err(node, f"hasattr({self.src(node.args[0])[:40]}, '{name}'): gradtrace cannot tell whether "
                                 f"nn.{v.kind} has it")
        if isinstance(v, T):
            if name in TENSOR_ATTRIBUTES or name in self.methods:
                return True
            raise self.err(node, f"hasattr of a tensor, '{name}': gradtrace cannot tell whether torch.Tensor has it")
        raise self.err(node, f"hasattr of {_kind(v)}: gradtrace answers for modules, objects and tensors")

    def string_method(self, s: str, method: str, node: ast.Call) -> Value:
        """'fc.weight'.endswith('weight'), name.split('.'): Python's answer on constants."""
        args = [self.const(a) for a in node.args]
        kwargs = {k.arg: self.const(k.value) for k in node.keywords if k.arg}
        try:
            return strings.method(s, method, args, kwargs)
        except (TypeError, ValueError) as e:
            raise self.err(node, f"{method}: {e}") from None

    def fstring(self, node: ast.JoinedStr) -> str:
        """f"layer{i}", f"{name:>10}", f"{loss_scale:.2f}": formatted from constants."""
        parts: list[str] = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
                continue
            assert isinstance(v, ast.FormattedValue)
            spec = self.fstring(v.format_spec) if isinstance(v.format_spec, ast.JoinedStr) else ""
            try:
                parts.append(strings.format_value(self.const(v.value), spec, v.conversion))
            except (TypeError, ValueError) as e:
                raise self.err(v, f"f-string: {e}") from None
        try:
            return strings.checked("".join(parts))
        except ValueError as e:
            raise self.err(node, f"f-string: {e}") from None

    def mapping_method(self, m: dict[str, Value] | ModuleInst, method: str, node: ast.Call) -> Value:
        """d.items() / .keys() / .values() / .get(k, default) of a dict or an nn.ModuleDict."""
        pairs = list(m.items()) if isinstance(m, dict) else list(zip(m.keys or [], m.children, strict=True))
        if method == "get":
            if not 1 <= len(node.args) <= 2:
                raise self.err(node, "get takes a key and a default")
            key = self.const(node.args[0])
            found = dict(pairs)
            return found[key] if key in found else (self.expr(node.args[1]) if len(node.args) == 2 else None)
        if node.args or node.keywords:
            raise self.err(node, f".{method}() takes no arguments")
        return [k for k, _ in pairs] if method == "keys" else [v for _, v in pairs] if method == "values" else [
            (k, v) for k, v in pairs]

    def runtime_length(self, it: ast.expr) -> int | None:
        """How many items a loop reached now goes over (None: not something gradtrace iterates)."""
        if isinstance(it, ast.Name) and it.id not in self.scope:
            return None  # bound by an outer loop's iteration that has not run yet: unrolled when reached
        return self.length_of(self.expr(it))  # type: ignore[attr-defined]
