"""Python's builtins on what a program holds, answered at compile time as Python would (isinstance, hasattr,
getattr, type, len, sum, zip, enumerate, dict, next, min/max, ...), the methods of strings, dicts, lists and f-strings,
torch.finfo / np.finfo, and comprehensions:
nothing runs but these functions on values the program wrote down or gradtrace knows."""

from __future__ import annotations

import ast
import math
from collections import ChainMap
from typing import Any

import numpy as np

from services.compiler import strings
from services.compiler.creation import CREATORS
from services.compiler.expressions import (
    CONSTANTS,
    MATH,
    MAX_INT,
    MAX_ITEMS,
    ExpressionCompiler,
    _is_const,
    _kind,
    is_dict_key,
)
from services.compiler.layers import BY_MODULE, SUBCLASS_OF
from services.compiler.values import (
    DTYPES,
    TENSOR_ATTRIBUTES,
    ClassRef,
    Dataset,
    DType,
    Epoch,
    FloatInfo,
    Instance,
    Loader,
    ModuleInst,
    T,
    Untraced,
    UserClass,
    Value,
    container_of,
    is_number,
)

BUILTINS = frozenset({'abs', 'bool', 'dict', 'enumerate', 'float', 'getattr', 'hasattr', 'int', 'isinstance', 'iter', 'len', 'list', 'map', 'max', 'min', 'next', 'pow', 'print', 'range', 'reversed', 'round', 'set', 'sorted', 'str', 'sum', 'tuple', 'type', 'zip'})
"""The builtin names a program may call (others are ops of the same name, or unknown)."""
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


class Builtins(ExpressionCompiler):
    """builtin() and the helpers behind it; the attributes are the ProgramCompiler's."""

    def builtin(self, fn: str, node: ast.Call) -> Value:
        """Python's builtin `fn` on this call, as Python answers it; NotImplemented when the call is not one of the
        forms gradtrace folds (then an op of that name may take it: abs(x), max(a, b) of tensors)."""
        if fn == "print":
            return None
        if fn == "isinstance":
            return self.is_instance(node)
        if fn == "type" and len(node.args) == 1 and not node.keywords:
            return self.type_of(self.expr(node.args[0]), node)
        if fn == "getattr":
            return self.get_named(node)
        if fn == "hasattr":
            return self.has_attribute(node)
        if fn in ("float", "int", "bool") and len(node.args) == 1 and not node.keywords:
            v = self.expr(node.args[0])
            if fn == "float" and isinstance(v, T):
                got = self.item(v, node)  # type: ignore[attr-defined]  # float(loss.detach()): torch's t.item()
                return float(got) if isinstance(got, (int, bool)) else got  # (of an int64 tensor made from numbers)
            if isinstance(v, T) and v.name not in self.item_values and self.dtype_of(v) in ("int64", "bool") and (
                    known := self.folded(v.name)) is not None and known.size == 1:  # type: ignore[attr-defined]
                # int(edge_index.max()) + 1 of literal edges: exact (a float's digits are torch's kernels')
                v = known.reshape(()).item()
            c = self.as_const(v, node.args[0])
            try:
                return {"float": float, "int": int, "bool": bool}[fn](c)
            except (TypeError, ValueError, OverflowError) as e:
                raise self.err(node, f"{fn}({c!r}): {e}") from None
        if fn == "str" and len(node.args) == 1 and not node.keywords:  # `"block" + str(i)`: of a constant
            c = self.const(node.args[0])
            if not isinstance(c, (int, float, str, bool)) and c is not None:
                raise self.err(node, f"str() of {_kind(c)} is not traced: gradtrace takes str() of numbers and strings")
            return str(c)
        if fn == "pow" and len(node.args) == 2 and not node.keywords:  # pow(2, 3), pow(x, 2): as `**`
            power = ast.copy_location(ast.BinOp(left=node.args[0], op=ast.Pow(), right=node.args[1]), node)
            return self.arith(power, self.expr(node.args[0]), self.expr(node.args[1]))
        if fn in ("abs", "round") and node.args and not node.keywords and len(node.args) <= (2 if fn == "round" else 1):
            vals = [self.expr(a) for a in node.args]
            if all(is_number(v) for v in vals):  # abs(-2), round(1.6): Python's; abs of a tensor: the op
                return abs(vals[0]) if fn == "abs" else round(*vals)  # type: ignore[call-overload]
            if fn == "round" and isinstance(vals[0], T) and vals[0].name in self.item_values:
                raise self.item_error(node.args[0])
            if fn == "round":
                raise self.err(node, "round() of a tensor: torch raises (type Tensor doesn't define __round__ method); "
                                     "use torch.round(x)")
            if isinstance(vals[0], T):  # abs(x - y): the abs op of the value already computed (not evaluated again)
                return self.emit("abs", [vals[0]], {}, node)
            return NotImplemented
        if fn == "range" and 1 <= len(node.args) <= 3 and not node.keywords:  # `logp[range(4), labels]`, list(range(n))
            bounds = [self.const(a) for a in node.args]
            if not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
                raise self.err(node, f"range() takes ints known now, got {bounds}")
            return list(range(*bounds))
        if fn == "dict" and not node.args:
            return {k.arg: self.expr(k.value) for k in node.keywords if k.arg}
        if fn == "dict" and len(node.args) == 1:  # dict([("a", 1)]), dict(other)
            return self.ordered_dict(node)
        if fn == "next" and len(node.args) == 1 and not node.keywords:  # next(model.parameters()), next(iter(xs))
            items = self.expr(node.args[0])
            if isinstance(items, Loader):  # next(iter(loader)) went through iter already; next(loader) is a TypeError
                raise self.err(node, "'DataLoader' object is not an iterator: next(iter(loader))")
            if isinstance(items, Epoch):  # `xb, yb = next(iter(loader))`: the iterator's next batch
                names = list(self.stmt_names) if node is self.stmt_expr else None
                return self.next_batch(items, node, names)  # type: ignore[attr-defined, no-any-return]
            if not isinstance(items, (list, tuple)) or not items:
                raise self.err(node, f"next() of {_kind(items)}: gradtrace takes the first item of a list or parameters()")
            return items[0]
        if fn == "iter" and len(node.args) == 1 and not node.keywords:
            v = self.expr(node.args[0])
            return self.epoch(v, node) if isinstance(v, Loader) else v  # type: ignore[attr-defined]
        if fn == "sum" and 1 <= len(node.args) <= 2 and not node.keywords:
            return self.python_sum(node)
        if fn in ("zip", "enumerate", "reversed") and node.args and not node.keywords:
            return self.sequence_builtin(fn, node)
        if fn == "map" and len(node.args) >= 2 and not node.keywords:
            return self.python_map(node)
        if fn == "sorted" and len(node.args) == 1:
            return self.python_sorted(node)
        if fn == "set" and len(node.args) <= 1 and not node.keywords:  # sorted(list(set(text))): the vocabulary
            v = self.expr(node.args[0]) if node.args else []
            if isinstance(v, dict):
                v = list(v)
            if not isinstance(v, (list, tuple, str, frozenset)) or not all(_is_const(x) for x in v):
                raise self.err(node, f"set() of {_kind(v)}: gradtrace makes sets of numbers and strings")
            return frozenset(v)
        if fn in ("list", "tuple") and not node.args and not node.keywords:
            return [] if fn == "list" else ()  # `row, col = list(), list()` (pytorch-fm's pairs of fields)
        if fn in ("list", "tuple") and len(node.args) == 1 and not node.keywords:
            v = self.expr(node.args[0])  # list(model.parameters()): still not traced
            if isinstance(v, (str, frozenset, T, dict)):
                v = self.iterable(v, node.args[0])  # list(t): its rows (t.unbind(0)); list(d): its keys
            if isinstance(v, Untraced) or isinstance(v, (list, tuple)):
                return v if isinstance(v, Untraced) else (list(v) if fn == "list" else tuple(v))
            raise self.err(node, f"{fn}() of {_kind(v)}")
        if fn == "len" and len(node.args) == 1:
            v = container_of(self.expr(node.args[0]))
            if isinstance(v, T):
                if not self.shape(v):
                    raise self.err(node, "len() of a 0-d tensor")
                return self.shape(v)[0]
            if isinstance(v, (tuple, list, dict, str, frozenset, Loader, Epoch)):
                return len(v)
            if isinstance(v, Dataset):
                return v.size
            if isinstance(v, ModuleInst) and v.layer is None:
                return len(v.children)
            raise self.err(node, f"len() of {_kind(v)}")
        if fn in ("min", "max") and node.args and not node.keywords:
            vals = [self.const(a) for a in node.args]
            vals = vals[0] if len(vals) == 1 and isinstance(vals[0], list) else vals
            if not vals or not all(is_number(v) for v in vals):
                raise self.err(node, f"{fn}() of constants only (for tensors use torch.{fn}imum or .{fn}())")
            return (min if fn == "min" else max)(vals)
        return NotImplemented

    def sequence_builtin(self, fn: str, node: ast.Call) -> list[Value]:
        """zip(a, b), enumerate(xs[, start]), reversed(xs) of lists, tuples and nn.Sequential/ModuleList, as lists
        (Python's iterators, consumed whole where gradtrace uses them: a comprehension, a loop, list())."""
        def items(v: Value, where: ast.expr) -> list[Value]:
            if isinstance(v, ModuleInst) and v.layer is None:
                return list(v.keys or v.children)  # a ModuleDict goes over its keys, as a dict does
            if isinstance(v, (list, tuple, dict)):
                return list(v)
            if isinstance(v, (str, frozenset, T)):
                return self.iterable(v, where)  # type: ignore[no-any-return]
            raise self.err(where, f"{fn}() of {_kind(v)}: gradtrace goes over lists, tuples, strings, tensors and module "
                                  "containers")
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

    def python_map(self, node: ast.Call) -> Value:
        """map(f, xs[, ys ...]) as the list `[f(x, y) for x, y in zip(xs, ys)]` (consumed whole where it is used)."""
        names = [f"_map{k}" for k in range(len(node.args) - 1)]
        target: ast.expr = ast.Name(id=names[0], ctx=ast.Store()) if len(names) == 1 else ast.Tuple(
            elts=[ast.Name(id=n, ctx=ast.Store()) for n in names], ctx=ast.Store())
        seq = node.args[1] if len(names) == 1 else ast.Call(func=ast.Name(id="zip", ctx=ast.Load()), args=node.args[1:], keywords=[])
        call = ast.Call(func=node.args[0], args=[ast.Name(id=n, ctx=ast.Load()) for n in names], keywords=[])
        comp = ast.ListComp(elt=call, generators=[ast.comprehension(target=target, iter=seq, ifs=[], is_async=0)])
        for n in ast.walk(comp):
            if not hasattr(n, "lineno") and isinstance(n, (ast.expr, ast.comprehension)):
                ast.copy_location(n, node)
                n.end_lineno, n.end_col_offset = node.end_lineno, node.end_col_offset  # type: ignore[attr-defined]
        return self.expr(comp)

    def python_sorted(self, node: ast.Call) -> Value:
        """sorted() of numbers or strings known now (a config's sizes, a dict's keys); tensors have no value yet."""
        if any(k.arg != "reverse" for k in node.keywords):
            raise self.err(node, "sorted(..., key=...) is not traced: gradtrace sorts numbers and strings known now")
        arg = node.args[0]
        if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name) and arg.func.id in ("list", "tuple") and len(
                arg.args) == 1 and arg.func.id not in self.scope:
            arg = arg.args[0]  # sorted(list(set(text))): the set itself (its order does not matter here)
        items = self.expr(arg)
        reverse = bool(self.const(node.keywords[0].value)) if node.keywords else False
        if isinstance(items, (dict, str, frozenset)):
            items = list(items)  # (a set's order does not matter here)
        if not isinstance(items, (list, tuple)) or not (all(is_number(v) for v in items) or all(isinstance(v, str) for v in items)):
            raise self.err(node, f"sorted() of {_kind(items)}: gradtrace sorts numbers and strings; tensors have no "
                                 "values while the program is compiled (sort them with torch.sort)")
        return sorted(items, reverse=reverse)  # type: ignore[type-var]

    def python_sum(self, node: ast.Call) -> Value:
        """Python's sum(items, start=0) over tensors and numbers, as Python adds them: ((0 + a) + b) + ..."""
        items = self.expr(node.args[0])
        if isinstance(items, T):
            items = self.iterable(items, node.args[0])  # sum(t): over its rows, as Python iterates a tensor
        acc = self.expr(node.args[1]) if len(node.args) == 2 else 0  # sum(gen, torch.tensor(0.0)): a tensor start
        if not (isinstance(acc, T) or is_number(acc)):
            raise self.err(node.args[1], f"sum()'s start is a number or a tensor, not {_kind(acc)}")
        if isinstance(items, (list, tuple)) and all(isinstance(v, bool) for v in items) and is_number(acc):
            return acc + sum(items)  # sum(isinstance(m, nn.Linear) for m in model.modules()): a count, as in Python
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
            if isinstance(v, Instance):  # class BinaryLinear(nn.Linear): an nn.Linear
                return v.cls.torch_base == path[3:]
            return isinstance(v, ModuleInst) and path[3:] in (v.kind, SUBCLASS_OF.get(v.kind))
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
        if name.startswith("__"):
            raise self.err(node, f"dunder name '{name}' is not allowed")
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
        if isinstance(v, ModuleInst) and v.lazy is not None:  # an uninitialized lazy module has them all
            return name in MODULE_ATTRIBUTES or name in ("weight", "bias", "reset_parameters") \
                or name in v.layer.schema.model_fields  # type: ignore[union-attr]
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
        except (TypeError, ValueError, OverflowError, KeyError, IndexError) as e:
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
                if sum(map(len, parts)) > strings.MAX_CHARS:  # (each part: 30,000 fields must not build GBs first)
                    raise ValueError(f"a string of over {strings.MAX_CHARS} characters")
            except (TypeError, ValueError, OverflowError) as e:
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
            key = self.dict_key(node.args[0])
            found = dict(pairs)
            return found[key] if key in found else (self.expr(node.args[1]) if len(node.args) == 2 else None)
        if node.args or node.keywords:
            raise self.err(node, f".{method}() takes no arguments")
        return [k for k, _ in pairs] if method == "keys" else [v for _, v in pairs] if method == "values" else [
            (k, v) for k, v in pairs]


    def type_of(self, v: Value, node: ast.expr) -> Value:
        """type(m): the class, compared with `==`, `is` or `in` (`type(m) == nn.Linear`, d2l's init functions)."""
        if isinstance(v, ModuleInst):
            return ClassRef(f"nn.{v.kind}")
        if isinstance(v, Instance):
            return v.cls
        if isinstance(v, T):  # a parameter is an nn.Parameter, as type(p).__name__ says in torch
            leaf = self.builder.leaves.get(v.name)
            return ClassRef("nn.Parameter" if leaf is not None and leaf.kind == "parameter" else "torch.Tensor")
        if v is None or type(v) in (int, float, str, bool, list, dict):
            return ClassRef(type(v).__name__)
        raise self.err(node, f"type() of {_kind(v)}: gradtrace answers for modules, tensors, the program's objects and "
                             "int/float/str/bool/list/dict/None")


    def get_named(self, node: ast.Call) -> Value:
        """getattr(self, f"layer{i}") (and a default when the attribute is missing)."""
        if not 2 <= len(node.args) <= 3 or node.keywords or not isinstance(attr := self.const(node.args[1]), str):
            raise self.err(node, "getattr takes an object, an attribute's name (a string) and maybe a default")
        if attr.startswith("__"):
            raise self.err(node, f"dunder name '{attr}' is not allowed")
        if len(node.args) == 3:
            probe = ast.copy_location(ast.Call(func=ast.Name(id="hasattr", ctx=ast.Load()), args=node.args[:2], keywords=[]), node)
            if not self.has_attribute(probe):  # type: ignore[attr-defined]
                return self.expr(node.args[2])
        return self.expr(ast.copy_location(ast.Attribute(value=node.args[0], attr=attr, ctx=ast.Load()), node))

    def ordered_dict(self, node: ast.Call) -> dict[str, Value]:
        """collections.OrderedDict([(k, v), ...]) or OrderedDict(k=v): a dict, in order (Python's dicts keep it)."""
        if len(node.args) > 1:
            raise self.err(node, "OrderedDict takes one list of (key, value) pairs")
        items = self.expr(node.args[0]) if node.args else []
        if isinstance(items, dict):
            items = list(items.items())
        if not isinstance(items, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in items):
            raise self.err(node, "OrderedDict takes a list of (key, value) pairs")
        out = {self.check_key(k, node): v for k, v in items}
        return {**out, **{k.arg: self.expr(k.value) for k in node.keywords if k.arg}}

    def check_key(self, k: Value, node: ast.AST) -> Any:
        if not is_dict_key(k):
            raise self.err(node, f"a dict key is a string, an int or a tuple of them here, not {_kind(k)}")
        return k

    def number_function(self, path: str, node: ast.Call) -> Value:
        """math.sqrt(d) (Python's), np.log(1 / 0.07) (numpy's float: np.floor too, -inf at 0) of numbers known now;
        torch.finfo / np.finfo."""
        if path in ("torch.finfo", "numpy.finfo"):
            return self.float_info(path, node)
        module, fn = path.split(".", 1)
        vals = [self.const(a) for a in node.args]
        if module == "numpy" and fn == "prod" and len(vals) == 1 and isinstance(vals[0], (list, tuple)) and vals[0] \
                and len(vals[0]) <= 1000 and all(isinstance(v, int) and not isinstance(v, bool) for v in vals[0]):
            r = math.prod(vals[0])  # int(np.prod(img_shape)) (PyTorch-GAN): numpy's int64, exact for sizes
            if abs(r) > MAX_INT:
                raise self.err(node, f"{path} gives an int too big for torch (over 2**62)")
            return r
        if module == "numpy":  # (int(np.prod(img_shape)): PyTorch-GAN's models; numpy's int, exact for sizes)
            if not vals or not all(is_number(v) for v in vals) or not hasattr(np, fn):
                raise self.err(node, f"{path} of numbers known now, got {vals}" if hasattr(np, fn) else f"unknown function '{path}'")
            with np.errstate(all="ignore"):
                r = getattr(np, fn)(*vals)
            return bool(r) if isinstance(r, np.bool_) else float(r)
        if fn in ("factorial", "comb") and any(isinstance(v, int) and abs(v) > 1000 for v in vals) or fn == "prod" and any(
                isinstance(v, (list, tuple)) and len(v) > 1000 for v in vals):  # (Python's are exact: unbounded size)
            raise self.err(node, f"{path} of numbers over 1000 (or of over 1000 numbers) is not computed here")
        try:
            r = MATH[fn](*vals)
        except (TypeError, ValueError, OverflowError) as e:
            raise self.err(node, f"{path}: {e}") from None
        if isinstance(r, int) and abs(r) > MAX_INT:
            raise self.err(node, f"{path} gives an int too big for torch (over 2**62)")
        return r

    def float_info(self, path: str, node: ast.Call) -> FloatInfo:
        """torch.finfo(torch.float32), np.finfo(np.float32), torch.finfo(x.dtype), torch.finfo() (the default dtype)."""
        if len(node.args) > 1 or node.keywords:
            raise self.err(node, f"{path} takes one dtype")
        dt = self.expr(node.args[0]) if node.args else DType(self.dtype)
        if not isinstance(dt, DType) or dt.name not in ("float32", "float64"):
            raise self.err(node, f"{path} takes a floating point dtype (torch.float32, np.float64), not {_kind(dt)}")
        fi = np.finfo(dt.name)
        return FloatInfo(int(fi.bits), float(fi.eps), float(fi.max), float(fi.min), float(fi.tiny), float(fi.resolution),
                         float(fi.smallest_normal))

    def sequence_search(self, items: list[Value] | tuple[Value, ...], method: str, node: ast.Call) -> int:
        """`all_categories.index(category)` (the char-RNN tutorial), `labels.count(1)`: of numbers, strings and the
        like known now (a tensor's == is elementwise: refused)."""
        if node.keywords or not 1 <= len(node.args) <= (1 if method == "count" else 3):
            raise self.err(node, f"list.{method} takes a value" + (" (and a start and end)" if method == "index" else ""))
        if any(isinstance(v, (T, ModuleInst, Instance)) for v in items):
            raise self.err(node, f".{method}() of a list holding tensors or modules is not traced (a tensor's == is elementwise)")
        value, *bounds = [self.const(a) for a in node.args]
        if method == "count":
            return items.count(value)
        try:
            return items.index(value, *bounds)  # type: ignore[arg-type]
        except ValueError:
            raise self.err(node, f"{value!r} is not in the list") from None
        except TypeError as e:
            raise self.err(node, f"list.index: {e}") from None

    def list_pop(self, items: list[Value], node: ast.Call) -> Value:
        """`stack.pop()`, `queue.pop(0)`: the list the name holds loses the item, as Python's."""
        k = self.const(node.args[0]) if node.args else -1
        if node.keywords or len(node.args) > 1 or not isinstance(k, int) or isinstance(k, bool):
            raise self.err(node, "list.pop takes one int index")
        if not -len(items) <= k < len(items):
            raise self.err(node, "pop from empty list" if not items else "pop index out of range")
        return items.pop(k)

    def list_change(self, items: list[Any], how: str, call: ast.Call) -> None:
        """`xs.insert(i, v)`, `xs.reverse()`, `xs.clear()`: the list the name holds changes, as Python's."""
        n = 2 if how == "insert" else 0
        if call.keywords or len(call.args) != n:
            raise self.err(call, f"list.{how} takes {n or 'no'} positional argument{'s' if n != 1 else ''}")
        if how == "insert":
            k = self.const(call.args[0])
            if not isinstance(k, int) or isinstance(k, bool):
                raise self.err(call, "list.insert takes an int index")
            items.insert(k, self.expr(call.args[1]))
        elif how == "reverse":
            items.reverse()
        else:
            items.clear()

    def comprehension(self, node: ast.ListComp | ast.GeneratorExp | ast.DictComp, base: str | None = None,
                      offset: int = 0) -> list[Value] | dict[Any, Value]:
        """`[f(x) for x in xs]`, `[Block(d) for _ in range(n)]`, `[h(x) for h in self.heads]`, `{k: nn.Linear(d, d)
        for k in names}`: the element (a dict's key and value) once per item, in order, so random draws come as in
        Python, with the loop's names bound in a scope of their own. `base`: module objects made by the element are
        named base.k (an nn.ModuleList's items, an nn.ModuleDict's keys)."""
        if len(node.generators) > 1 and not isinstance(node, ast.DictComp):
            # `[p for layer in layers for p in layer.parameters()]`: the later `for`s run inside the first, flattened
            inner = ast.copy_location(ast.ListComp(elt=node.elt, generators=node.generators[1:]), node)
            outer = ast.copy_location(ast.ListComp(elt=inner, generators=node.generators[:1]), node)
            parts = self.comprehension(outer)
            return [v for part in parts for v in part]  # type: ignore[union-attr]
        if len(node.generators) != 1 or node.generators[0].is_async:
            raise self.err(node, "a dict comprehension with one `for` only")
        gen = node.generators[0]
        names = gen.target.elts if isinstance(gen.target, ast.Tuple) else [gen.target]
        if not all(isinstance(n, ast.Name) for n in names):
            raise self.err(gen.target, "a comprehension's target is a name or a tuple of names")
        it = gen.iter
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range" and not it.keywords:
            bounds = [self.const(a) for a in it.args]
            if not 1 <= len(bounds) <= 3 or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds) or (
                    len(bounds) == 3 and bounds[2] == 0):
                raise self.err(it, "range() takes 1 to 3 ints (a step other than 0)")
            items: list[Value] = list(range(*bounds)[:MAX_ITEMS + 1])
        else:
            v = container_of(self.expr(it))
            if isinstance(v, ModuleInst) and v.layer is None:
                v = v.children
            v = self.iterable(v, it)  # a string's characters, a set of ints in Python's order
            if not isinstance(v, (list, tuple)):
                raise self.err(it, f"a comprehension goes over range(...), a list, a tuple, a dict, a tensor or a ModuleList, "
                                   f"not {_kind(v)}")
            items = list(v)
        if len(items) > MAX_ITEMS:
            raise self.err(node, f"the comprehension makes over {MAX_ITEMS:,} items")
        saved, out, pairs = self.scope, [], {}
        local: dict[str, Value] = {}  # one scope for every item, as Python's: a lambda made here sees the last item
        self.scope = ChainMap(local, saved)  # type: ignore[assignment]
        try:
            for item in items:
                values = [item] if len(names) == 1 else list(item) if isinstance(item, (list, tuple)) else None
                if values is None or len(values) != len(names):
                    raise self.err(gen.target, f"cannot unpack {_kind(item)} into {len(names)} names")
                local.update(zip([n.id for n in names], values, strict=True))
                if all(self.condition(c) for c in gen.ifs):
                    if isinstance(node, ast.DictComp):
                        key = self.dict_key(node.key)
                        self.path_hint = f"{base}.{key}" if base else None
                        pairs[key] = self.expr(node.value)
                    else:
                        self.path_hint = f"{base}.{offset + len(out)}" if base else None
                        out.append(self.expr(node.elt))
                    self.path_hint = None
        finally:
            self.scope = saved
        return pairs if isinstance(node, ast.DictComp) else out
