"""A program's expressions, evaluated at compile time over the whitelist: tensor arithmetic and op calls
become graph nodes, everything else must fold to a constant. Nothing is ever executed."""

from __future__ import annotations

import ast
import math
import operator
import re
import string
from functools import lru_cache
from typing import Any

from services.compiler import strings
from services.compiler.build import GraphBuilder, RawNode
from services.compiler.layers import BY_MODULE
from services.compiler.values import (
    DTYPES,
    Applier,
    AutogradFunction,
    Bound,
    ClassRef,
    Ctx,
    Dataset,
    Distribution,
    DType,
    Epoch,
    FloatInfo,
    Foreign,
    Instance,
    Loader,
    ModuleInst,
    T,
    TorchVersion,
    Untraced,
    UserClass,
    UserFunction,
    Value,
    is_number,
    torch_version,
)
from services.errors import SpecError
from services.ir import Stream
from services.ops import REGISTRY, Op

BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow", ast.MatMult: "matmul",
          ast.Mod: "remainder", ast.FloorDiv: "floor_divide",
          ast.BitAnd: "logical_and", ast.BitOr: "logical_or", ast.BitXor: "logical_xor"}
FOLD = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
COMPARE = {ast.Gt: "gt", ast.Lt: "lt", ast.GtE: "ge", ast.LtE: "le", ast.Eq: "eq", ast.NotEq: "ne"}
MATH = {"sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log2": math.log2, "log10": math.log10,
        "cos": math.cos, "sin": math.sin, "tanh": math.tanh, "floor": math.floor, "ceil": math.ceil, "prod": math.prod,
        **{k: getattr(math, k) for k in ("log1p", "expm1", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "fabs",
                                         "erf", "erfc", "gamma", "lgamma", "hypot", "trunc", "degrees", "radians", "pow",
                                         "isnan", "isinf", "isfinite", "copysign", "fmod", "comb", "factorial")}}
FUNCTION_VALUES = {"F.normalize", "F.relu6", "F.dropout", "torch.dropout", "F.dropout1d", "F.dropout2d", "F.dropout3d",
                   "copy.deepcopy"}
"""torch functions traced by the compiler rather than one op, which a program may still hold as values."""
CONSTANTS = {f"{m}.{k}": getattr(math, k) for m in ("math", "torch", "numpy") for k in ("pi", "e", "inf", "nan")} | {
    "torch.__version__": TorchVersion(torch_version())} | {
    f"string.{k}": getattr(string, k) for k in ("ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits",
                                                "octdigits", "punctuation", "printable", "whitespace")}
SAME_PATHS = {"nn.parameter.Parameter": "nn.Parameter", "nn.modules.module.Module": "nn.Module"}
"""Paths by which torch also exports a name (time2vec's `nn.parameter.Parameter(...)`), as the name."""
MAX_ITEMS = 20_000
"""Items a comprehension may make."""
MAX_INT = 2**62
"""Folded integers stay below this: constant arithmetic cannot make huge numbers."""
CASTS = {"float": "float32", "double": "float64", "long": "int64", "bool": "bool"}
"""Tensor methods that cast: x.float(), x.double(), ..."""


def _op_tables() -> tuple[dict[str, Op], dict[str, Op]]:
    """Ops by the function and method names a program may call them by (read-only; rebuilt when ops are added)."""
    return _tables_for(len(REGISTRY))


@lru_cache(maxsize=1)
def _tables_for(_registered: int) -> tuple[dict[str, Op], dict[str, Op]]:
    functions: dict[str, Op] = {}
    methods: dict[str, Op] = {}
    for op in REGISTRY.values():
        for fn in (op.name, *op.functions):
            functions[fn] = op
        for m in op.methods:
            methods[m] = op
    return functions, methods


NUMPY_NAMES = {"axis": "dim", "keepdims": "keepdim"}
"""numpy's argument names that torch accepts too (`x.sum(axis=1, keepdims=True)`), as torch's own."""


_UNREAD = object()
"""An index item not evaluated yet (ExpressionCompiler.index_of)."""


class ExpressionCompiler:
    """Expression evaluation; `ProgramCompiler` adds statements, modules and tensor creation on top."""

    def __init__(self, text: str, builder: GraphBuilder, stream: Stream, dtype: str) -> None:
        self.text = text
        self.lines = re.split(r"\r\n|\r|\n", text)
        self.builder = builder
        self.stream = stream
        self.dtype = dtype
        self.scope: dict[str, Value] = {}
        self.aliases: dict[str, str] = {"torch": "torch", "F": "F"}
        self.functions, self.methods = _op_tables()
        self.target = "t"
        self.stmt_expr: ast.expr | None = None
        self.stmt_name: str | None = None
        self.stmt_names: list[str] = []
        self.stmt_shape: Any = None
        """The nesting of a tuple statement's target (returns.target_shape), None otherwise."""
        self.counter = 0
        self.line = 0
        self.reserved: set[str] = set()
        """Program variable names: nodes named after module paths or temporaries never take them."""
        self.item_values: set[str] = set()
        """Nodes made by `.item()` (a Python number in torch): refusals that need a number say what they are."""
        self.recomputed: set[str] = set()
        """Weights under nn.utils.weight_norm as torch recomputes them before each call (modules.normed_params): a fill
        through `.data` draws its numbers into a copy torch then throws away (the TCN's `init_weights`)."""
        self.pending: set[str] = set()
        """Inside a call: the names its callers' statements bind once it returns (functions.frame)."""
        self.instance_paths: set[str] = set()
        """Paths of the modules and module objects named so far (each names its parameters: no two may share one)."""
        self.path_hint: str | None = None
        """The path a module object made now takes: its place in a container being built ('model.blocks.0')."""

    # ---- errors and names ---------------------------------------------------------------------

    def err(self, node: ast.AST, msg: str) -> SpecError:
        """A SpecError at this AST node's line and column."""
        return SpecError(
            msg, loc=("program",), line=getattr(node, "lineno", None) or self.line or None,
            col=(getattr(node, "col_offset", -1) + 1) if hasattr(node, "col_offset") else None,
        )

    def fresh(self, base: str) -> str:
        """`base` if free, else base#2, base#3, ... (never a program variable's name)."""
        taken = (self.builder, self.reserved, self.pending)  # (pending: what the callers' statements will bind)
        if not any(base in t for t in taken):
            self.reserved.add(base)  # handed out: a call inside this statement must not take it too
            return base
        k = 2
        while any(f"{base}#{k}" in t for t in taken):
            k += 1
        self.reserved.add(f"{base}#{k}")  # handed out: a temporary (target#k) must not take it before it is added
        return f"{base}#{k}"

    def temp(self) -> str:
        """A name for a sub-expression of the current statement: target#1, target#2, ..."""
        self.counter += 1
        while f"{self.target}#{self.counter}" in self.builder or f"{self.target}#{self.counter}" in self.reserved:
            self.counter += 1
        return f"{self.target}#{self.counter}"

    def piece_names(self, node: ast.Call, count: int) -> list[str]:
        """Node names of the `count` pieces a call gives (chunk, split, unbind, meshgrid): a tuple assignment's
        targets (`a, b = x.chunk(2)`), the statement's name for the one piece it takes (`h = h.chunk(3, 1)[1]`: that
        piece is h), temporaries base.0, base.1, ... for the rest."""
        if node is self.stmt_expr and len(self.stmt_names) == count:
            return list(self.stmt_names)
        base = self.temp_pieces(count)
        names = [f"{base}.{k}" for k in range(count)]
        s = self.stmt_expr
        taken = isinstance(s, ast.Subscript) and (s.value is node or s.value is getattr(node, "replaces", None))
        if taken and self.stmt_name is not None and isinstance(s.slice, ast.Constant | ast.UnaryOp):  # type: ignore[union-attr]
            k = self.const(s.slice)  # type: ignore[union-attr]
            if isinstance(k, int) and not isinstance(k, bool) and -count <= k < count:
                names[k], self.stmt_name = self.stmt_name, None
        return names

    def temp_pieces(self, count: int) -> str:
        """A temporary base for a tuple's `count` pieces (base.0, base.1, ...) that no earlier statement's pieces
        took: `h = h.chunk(3, 1)[1]` twice makes h#1.0... and then h#2.0... (one of them may have taken its
        statement's name: every piece's is checked)."""
        while True:
            base = self.temp()
            if not any(f"{base}.{k}" in self.builder or f"{base}.{k}" in self.reserved for k in range(count)):
                return base

    def name_for(self, node: ast.expr) -> str:
        """The statement's binding name for its whole right-hand side, a temporary otherwise."""
        if node is self.stmt_expr and self.stmt_name is not None:
            name, self.stmt_name = self.stmt_name, None
            return name
        return self.temp()

    def src(self, node: ast.AST) -> str:
        """The source text of a node (ast.get_source_segment re-splits the whole text on every call)."""
        start, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
        if start is None or end is None:
            return ast.unparse(node)
        lines = self.lines[start - 1 : end]
        if not lines:
            return ast.unparse(node)
        if len(lines) == 1:
            return lines[0].encode()[node.col_offset : node.end_col_offset].decode(errors="replace")
        first = lines[0].encode()[node.col_offset :].decode(errors="replace")
        last = lines[-1].encode()[: node.end_col_offset].decode(errors="replace")
        return "\n".join([first, *lines[1:-1], last])

    def emit(self, op: str, inputs: list[Any], args: dict[str, Any], node: ast.expr, name: str | None = None) -> T:
        """Add `op(*inputs, **args)` as a node (checked now: shape errors name this line)."""
        name = name or self.name_for(node)
        ins = [i.name if isinstance(i, T) else i for i in inputs]
        self.builder.add(RawNode(
            name=name, op=op, inputs=ins, args=args, expr=self.src(node),
            line=getattr(node, "lineno", self.line), col=getattr(node, "col_offset", 0) + 1, loc=("program",),
        ))
        return T(name)

    def item_error(self, node: ast.expr) -> SpecError:
        """The refusal of a tensor's `.item()` where a number known now is needed."""
        return self.err(node, f"'{self.src(node)[:60]}' is a tensor's `.item()`, a Python number in torch, whose value "
                              "gradtrace does not know while it compiles (it is in the result): use it in tensor "
                              "arithmetic, not where a number known now is needed (a size, an index, int(), round())")

    def iterable(self, v: Value, node: ast.expr) -> Value:
        """What a loop or comprehension goes over, for strings, dicts, tensors and sets: a string's characters; a dict's
        keys; a tensor's rows (`[-lp * R for lp, R in zip(log_probs, returns)]`); a set of numbers in
        Python's order (numbers hash to themselves: the same in every process); a set of strings in sorted order, with
        a note: Python's order changes with each process (hash randomisation), so torch's runs differ from each other
        (the word embeddings tutorial's `enumerate(set(words))`)."""
        if isinstance(v, str):
            return list(v)
        if isinstance(v, dict):
            return list(v)  # its keys, in order
        if isinstance(v, T):
            return self.rows(v, node)
        if isinstance(v, frozenset):
            if all(is_number(x) for x in v):
                return list(v)
            self.res.notes.append(f"line {getattr(node, 'lineno', self.line)}: a set of strings goes in sorted order here; "  # type: ignore[attr-defined]
                                  "Python's order changes with each process (hash randomisation), so each run of the "
                                  "program numbers them otherwise: sorted(set(...)) makes it the same everywhere")
            return sorted(v, key=str)
        return v

    def rows(self, t: T, node: ast.expr, only: int | None = None) -> list[T]:
        """A tensor's rows as iterating over it gives them in torch (`iter(t)` is `t.unbind(0)`: UnbindBackward0);
        `only`: row k alone (a loop's iteration k)."""
        shape = self.shape(t)
        if not shape:
            raise self.err(node, "iteration over a 0-d tensor")
        ks = range(shape[0]) if only is None else [only]
        return [self.emit("unbind", [t], {"dim": 0, "index": k}, node) for k in ks]

    def shape(self, t: T) -> tuple[int, ...]:
        return self.builder.shapes[t.name]

    def dtype_of(self, t: T) -> str:
        return self.builder.dtypes[t.name]

    # ---- module paths -------------------------------------------------------------------------

    def dotted(self, node: ast.expr) -> str | None:
        """'torch.nn.functional.relu' -> 'F.relu' through import aliases; None if not a module path."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in self.aliases or node.id in self.scope:
            return None
        path = ".".join([self.aliases[node.id], *reversed(parts)])
        for long, short in (("torch.nn.functional.", "F."), ("torch.nn.", "nn."), ("torch.nn", "nn")):
            if path.startswith(long) or path == long:
                path = short + path[len(long):]
        return SAME_PATHS.get(path, path)

    # ---- expressions --------------------------------------------------------------------------

    def expr(self, node: ast.expr) -> Value:
        """Evaluate an expression: a tensor (adding nodes), or a compile-time constant."""
        if isinstance(node, ast.Constant):
            if node.value is Ellipsis or isinstance(node.value, (bytes, complex)):
                raise self.err(node, f"the constant {node.value!r} is not allowed here")
            return node.value
        if isinstance(node, ast.Name):
            if node.id in self.scope:
                return self.scope[node.id]
            if node.id in self.aliases:  # `from torch import float32`: a name for a path; a module is no value
                return self.path_value(self.dotted(node) or node.id, node)
            raise self.err(node, f"unknown name '{node.id}'")
        if isinstance(node, (ast.Tuple, ast.List)):
            items = []
            for e in node.elts:  # `(0, *field_dims[:-1])` (pytorch-fm's offsets): a list or tuple spread
                if isinstance(e, ast.Starred):
                    v = self.expr(e.value)
                    if not isinstance(v, (list, tuple)):
                        raise self.err(e, f"* unpacks a list or tuple here, not {_kind(v)}")
                    items.extend(v)
                else:
                    items.append(self.expr(e))
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.IfExp):  # `a if self.training else b`: the condition folds to a constant
            picked = node.body if self.condition(node.test) else node.orelse
            if node is self.stmt_expr:
                self.stmt_expr = picked  # the statement's variable names the branch's value
            return self.expr(picked)
        if isinstance(node, ast.BoolOp):
            return self.bool_op(node)
        if isinstance(node, ast.Dict):  # {'d': 8, 'act': 'relu'}: values in order, keys constants
            if any(k is None for k in node.keys):
                raise self.err(node, "** unpacking is not allowed")
            return {self.dict_key(k): self.expr(v) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
        if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.DictComp)):  # a generator is only ever consumed whole here
            return self.comprehension(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Attribute):
            return self.attribute(node)
        if isinstance(node, ast.Subscript):
            return self.subscript(node)
        if isinstance(node, ast.JoinedStr):
            return self.fstring(node)  # type: ignore[attr-defined]
        if isinstance(node, ast.Lambda):
            return self.lambda_function(node)  # type: ignore[attr-defined]
        raise self.err(node, f"'{type(node).__name__}' expressions are not allowed")

    def tensor(self, node: ast.expr, what: str = "a tensor") -> T:
        """An expression that must be a tensor."""
        v = self.expr(node)
        if not isinstance(v, T):
            raise self.err(node, f"'{self.src(node)[:60]}' must be {what}, not {_kind(v)}")
        return v

    def dict_key(self, node: ast.expr) -> Any:
        """A dict key: a string, an int, or a tuple of them (a heterogeneous graph's `('paper', 'cites', 'paper')`)."""
        v = self.expr(node)
        if not is_dict_key(v):
            raise self.err(node, f"a dict key is a string, an int or a tuple of them here, not {_kind(v)}")
        return v

    def const(self, node: ast.expr) -> Any:
        """An expression that must fold to a constant (number, string, bool, None, tuple/list of them)."""
        return self.as_const(self.expr(node), node)

    def as_const(self, v: Value, node: ast.expr) -> Any:
        """`node`'s value `v` as a constant, or the refusal saying what it is."""
        if isinstance(v, T) and v.name in self.item_values:
            raise self.item_error(node)
        if not _is_const(v):
            what = "a tensor (its values are known only when the engines run)" if isinstance(v, T) else _kind(v)
            raise self.err(node, f"'{self.src(node)[:60]}' must be a constant (number, string, bool or list), not {what}")
        return list(v) if isinstance(v, tuple) else v

    def unary(self, node: ast.UnaryOp) -> Value:
        v = self.expr(node.operand)
        if isinstance(node.op, ast.UAdd) and (isinstance(v, T) or is_number(v)):
            return v
        if isinstance(node.op, ast.USub):
            if isinstance(v, T):
                return self.emit("neg", [v], {}, node)
            if is_number(v):
                return -v
        if isinstance(node.op, ast.Not) and not isinstance(v, T) and _is_const(v) | isinstance(v, (ModuleInst, Instance)):
            return not v
        if isinstance(node.op, ast.Invert) and isinstance(v, T):
            return self.emit("logical_not", [v], {}, node)  # ~mask
        if isinstance(v, Untraced):
            raise self.err(node, f"'{self.src(node)[:60]}' computes with {v.what}, which is not traced")
        raise self.err(node, f"'{self.src(node)[:60]}': this unary operator is not supported here")

    def binop(self, node: ast.BinOp) -> Value:
        return self.arith(node, self.expr(node.left), self.expr(node.right))

    def arith(self, node: ast.BinOp, a: Value, b: Value) -> Value:
        """`a <op> b` of values evaluated already: a node where one is a tensor, else folded."""
        if isinstance(a, T) or isinstance(b, T):
            kind = BINOPS.get(type(node.op))
            if kind is None:
                raise self.err(node, f"the operator '{ast.unparse(node.op).strip() or type(node.op).__name__}' is not a traced op")
            for v, side in ((a, node.left), (b, node.right)):
                if not isinstance(v, T) and not is_number(v):
                    raise self.err(side, f"'{self.src(side)[:60]}' is {_kind(v)}: arithmetic needs tensors and numbers")
            return self.emit(kind, [a, b], {}, node)
        return self.fold(node, a, b)

    def fold(self, node: ast.BinOp, a: Any, b: Any) -> Any:
        """Arithmetic between constants, bounded so that it cannot blow up."""
        fn = FOLD.get(type(node.op))
        seq = (list, tuple)
        if isinstance(node.op, ast.Add) and isinstance(a, seq) and type(a) is type(b):
            return a + b  # [1, 2] + [3]
        if isinstance(a, str) and (isinstance(node.op, ast.Mod) or isinstance(node.op, ast.Add) and isinstance(b, str)):
            try:  # 'denseblock%d' % (i + 1), prefix + name
                return strings.percent(a, b) if isinstance(node.op, ast.Mod) else strings.checked(a + b)
            except (TypeError, ValueError, KeyError) as e:
                raise self.err(node, f"string formatting: {e}") from None
        if isinstance(node.op, ast.Mult) and (isinstance(a, seq) and isinstance(b, int) or isinstance(b, seq) and isinstance(a, int)):
            items, n = (a, b) if isinstance(a, seq) else (b, a)
            if len(items) * max(n, 0) > 1_000_000:
                raise self.err(node, "constant list repetition too large")
            return items * n  # [0] * 4
        if fn is None or not (is_number(a) or isinstance(a, bool)) or not (is_number(b) or isinstance(b, bool)):
            raise self.err(node, f"'{self.src(node)[:60]}' is not a tensor expression or number arithmetic")
        if isinstance(node.op, ast.Pow) and isinstance(a, int) and isinstance(b, int) and abs(b) > 64:
            raise self.err(node, "constant power too large")
        try:
            r = fn(a, b) if not isinstance(node.op, ast.Pow) else (float(a) ** b if isinstance(b, float) or b < 0 else a**b)
        except (ZeroDivisionError, OverflowError, ValueError) as e:
            raise self.err(node, f"constant arithmetic failed: {e}") from None
        if isinstance(r, int) and abs(r) > MAX_INT:
            raise self.err(node, "constant arithmetic gives a number too large")
        if isinstance(r, complex):
            raise self.err(node, "constant arithmetic gives a complex number")
        return r

    def condition(self, node: ast.expr) -> bool:
        """An `if`'s condition, folded at compile time (self.training, a flag, `self.bias is not None`): a trace has
        one path. A condition on a tensor's values depends on the data and is refused."""
        v = self.expr(node)
        if isinstance(v, T):
            raise self.err(node, f"'{self.src(node)[:60]}' tests a tensor's values, which depend on the data: gradtrace "
                                 "traces one path (torch.where(cond, a, b) computes both)")
        return bool(v)

    def comprehension(self, node: ast.ListComp | ast.GeneratorExp | ast.DictComp, base: str | None = None,
                      offset: int = 0) -> list[Value] | dict[Any, Value]:
        """A list, generator or dict comprehension, its element once per item, in order (Builtins)."""
        raise NotImplementedError

    def bool_op(self, node: ast.BoolOp) -> Value:
        """`a and b`, `a or b` over constants (Python's short-circuit: the deciding operand's value)."""
        v: Value = None
        for operand in node.values:
            v = self.expr(operand)
            if isinstance(v, T):
                raise self.err(operand, f"'{self.src(operand)[:60]}' is a tensor: `and`/`or` test values at compile "
                                        "time (for tensors: torch.logical_and / & and |)")
            if bool(v) is isinstance(node.op, ast.Or):
                return v
        return v

    def compare(self, node: ast.Compare) -> Value:
        if len(node.ops) != 1:  # `0 <= p <= 1` of constants: each pair in turn, as Python does (tensors: refused,
            left = node.left    # torch's `and` of tensors would need their values)
            for op, right in zip(node.ops, node.comparators, strict=True):
                v = self.compare(ast.copy_location(ast.Compare(left=left, ops=[op], comparators=[right]), node))
                if isinstance(v, T):
                    raise self.err(node, "chained comparisons of tensors are not supported: compare two values at a time")
                if not v:
                    return v
                left = right
            return v
        if isinstance(node.ops[0], (ast.Is, ast.IsNot)) and isinstance(node.left, ast.Attribute) and node.left.attr == "grad" \
                and isinstance(node.comparators[0], ast.Constant) and node.comparators[0].value is None \
                and getattr(getattr(self, "res", None), "output", None) is None and isinstance(self.expr(node.left.value), T):
            return isinstance(node.ops[0], ast.Is)  # `if w.grad is not None: w.grad.zero_()` before any backward()
        if isinstance(node.ops[0], (ast.Is, ast.IsNot, ast.In, ast.NotIn)):
            a, b = self.expr(node.left), self.expr(node.comparators[0])
            if isinstance(node.ops[0], (ast.In, ast.NotIn)):
                if isinstance(b, ModuleInst) and b.container == "ModuleDict":
                    b = b.keys
                if not isinstance(b, (list, tuple, str, dict, frozenset)) or isinstance(a, T):
                    raise self.err(node, f"'{self.src(node)[:60]}': `in` tests constants in a list, tuple, dict or string")
                return (a in b) is isinstance(node.ops[0], ast.In)
            same = a is b if a is None or b is None or isinstance(a, bool) else a == b
            return same is isinstance(node.ops[0], ast.Is)  # `self.bias is not None`
        op = COMPARE.get(type(node.ops[0]))
        if op in ("eq", "ne"):
            a, b = self.expr(node.left), self.expr(node.comparators[0])
            if isinstance(a, (ClassRef, UserClass)) or isinstance(b, (ClassRef, UserClass)):
                return (a == b) is (op == "eq")  # type(m) == nn.Linear
            return self.compared(node, op, a, b)
        if op is None:
            raise self.err(node, f"'{self.src(node)[:60]}': only > < >= <= == != compare tensors")
        return self.compared(node, op, self.expr(node.left), self.expr(node.comparators[0]))

    def compared(self, node: ast.Compare, op: str, a: Value, b: Value) -> Value:
        """`a <op> b` of tensors (a node) or constants (folded)."""
        if isinstance(a, T) or isinstance(b, T):
            return self.emit(op, [a, b], {}, node)
        if _is_const(a) and _is_const(b):
            return {"gt": operator.gt, "lt": operator.lt, "ge": operator.ge, "le": operator.le,
                    "eq": operator.eq, "ne": operator.ne}[op](a, b)
        if op in ("eq", "ne") and any(v is None or isinstance(v, (ModuleInst, Instance)) for v in (a, b)):
            return (a is b) is (op == "eq")  # `self.se != None` (MobileNetV3): an object equals itself only
        raise self.err(node, f"'{self.src(node)[:60]}' compares values that are neither tensors nor constants")

    # ---- attributes and subscripts ------------------------------------------------------------

    def attribute(self, node: ast.Attribute) -> Value:
        path = self.dotted(node)
        if path is not None:
            return self.path_value(path, node)
        base = self.expr(node.value)
        if node.attr == "__class__":  # m.__class__.__name__ (checked at parse: nothing else reaches here)
            return self.type_of(base, node)  # type: ignore[attr-defined]
        if node.attr == "__name__" and isinstance(base, (ClassRef, UserClass)):
            return base.name if isinstance(base, UserClass) else base.path.rsplit(".", 1)[-1]
        if isinstance(base, ModuleInst):
            return self.module_attribute(base, node)
        if isinstance(base, Instance):
            return self.instance_attribute(base, node)
        if isinstance(base, UserClass) and node.attr in base.attrs:  # BasicBlock.expansion
            return base.attrs[node.attr]
        if isinstance(base, AutogradFunction) and node.attr == "apply":  # `relu = MyReLU.apply`
            return Applier(base)
        if isinstance(base, AutogradFunction) and node.attr in base.attrs:  # SurrGradSpike.scale
            return base.attrs[node.attr]  # type: ignore[no-any-return]
        if isinstance(base, Ctx):
            return self.ctx_attribute(base, node)  # type: ignore[attr-defined, no-any-return]
        if isinstance(base, Distribution):
            return self.distribution_attribute(base, node)  # type: ignore[attr-defined]
        if isinstance(base, FloatInfo) and node.attr in FloatInfo.__dataclass_fields__:
            return getattr(base, node.attr)
        if isinstance(base, T):
            return self.tensor_attribute(base, node)
        if isinstance(base, tuple) and len(base) == 2 and node.attr in ("values", "indices", "sign", "logabsdet"):
            return base[0] if node.attr in ("values", "sign") else base[1]  # max(dim=...)'s (values, indices), slogdet's
        raise self.err(node, f"attribute '{node.attr}' of {_kind(base)} is not allowed")

    def path_value(self, path: str, node: ast.expr) -> Value:
        """math.pi, torch.float64 (or their names imported `from torch import float64`)."""
        if path in CONSTANTS:
            return CONSTANTS[path]
        if path.startswith("torch.") and path[6:] in DTYPES:
            return DType(DTYPES[path[6:]])
        if path.startswith("torch.") and path[6:] in OTHER_DTYPES:  # nanoGPT's `{'float32': torch.float32, 'bfloat16':
            return DType(path[6:])  # torch.bfloat16, ...}[dtype]`: a value; a tensor of it is refused where it is made
        if path in ("numpy.float32", "numpy.float64", "numpy.int64"):  # np.finfo(np.float32)
            return DType(path[6:])
        if path.startswith("nn.") and (path[3:] in BY_MODULE or path in ("nn.Module", "nn.Sequential",
                                                                              "nn.ModuleList", "nn.ModuleDict")):
            return ClassRef(path)  # `type(m) == nn.Linear`
        if path in LEGACY_TYPES:  # `dtype = torch.FloatTensor; x.type(dtype)` (2017's tutorials)
            return DType(LEGACY_TYPES[path], legacy=path)
        if path in ("torch.Tensor", "nn.Parameter") or path in self.functions or path in FUNCTION_VALUES:
            return ClassRef(path)  # `act = F.relu`, `activation=torch.tanh`: called as the function
        if "." not in path or path in ("nn", "F", "nn.init", "torch.optim"):
            raise self.err(node, f"the module '{self.src(node)[:40]}' is not a value")
        raise self.err(node, f"'{path}' is not a value gradtrace knows")

    def tensor_attribute(self, t: T, node: ast.Attribute) -> Value:
        a = node.attr
        shape = self.shape(t)
        if a == "shape":
            return tuple(shape)
        if a == "ndim":
            return len(shape)
        if a == "dtype":
            return DType(self.dtype_of(t))
        if a == "requires_grad":  # (an autograd.Function's input: the argument's, though its body records no graph)
            return getattr(self, "argument_grad", {}).get(t.name, self.builder.grad[t.name])
        if a == "is_leaf":  # torch's: made by the program, or not requiring grad (`x.detach().is_leaf` is True)
            return t.name in self.builder.leaves or not getattr(self, "argument_grad", {}).get(t.name, self.builder.grad[t.name])
        if a == "data":  # the same numbers cut from the graph, as .detach() gives (writes through it: TensorCreation)
            return self.emit("detach", [t], {}, node) if self.builder.grad[t.name] else t
        if a in ("T", "mT"):
            if a == "T" and len(shape) != 2:
                return t if len(shape) < 2 else self.emit("permute", [t], {"dims": list(range(len(shape)))[::-1]}, node)
            return self.emit("transpose", [t], {"dim0": -2, "dim1": -1}, node)
        if a == "device":  # as torch.device(...): the spec's device decides, `.to(device)` keeps it
            return "cpu"
        if a in ("grad", "grad_fn"):
            raise self.err(node, f"'.{a}' is what gradtrace reports for every node: it cannot be used inside the computation")
        raise self.err(node, f"tensor attribute '.{a}' is not supported")

    def subscript(self, node: ast.Subscript) -> Value:
        """x[...] of a tensor, a list, a dict, a container of modules, a dataset (Subscripts)."""
        raise NotImplementedError

    def index_of(self, node: ast.Subscript, shape: tuple[int, ...] | None = None, read: bool = False) -> tuple[list[Any], list[T]]:
        """The items of x[...] as getitem and setitem take them, and the index tensors they name (Subscripts)."""
        raise NotImplementedError

    def mask_positions(self, mask: T, before: list[Any], shape: tuple[int, ...] | None, node: ast.expr) -> list[list[int]]:
        """x[mask] with a mask known now: its True positions, one int list per dim it covers (Subscripts)."""
        raise NotImplementedError

    # ---- calls --------------------------------------------------------------------------------

    def ensure_path(self, m: ModuleInst, name: str | None) -> None:
        """Give a module its path and parameter leaves (ProgramCompiler)."""
        raise NotImplementedError

    def instance_attribute(self, inst: Instance, node: ast.Attribute) -> Value:
        """An attribute of a program's nn.Module object (ProgramCompiler)."""
        raise NotImplementedError

    def module_attribute(self, m: ModuleInst, node: ast.Attribute) -> Value:
        """An attribute of an nn module: a parameter, a child, a setting (ModuleCalls)."""
        raise NotImplementedError

    def call(self, node: ast.Call) -> Value:
        """Dispatch a call: subclasses add modules, tensor creation and the like; ops are here."""
        raise NotImplementedError

    def apply(self, op: Op, call: ast.Call, receiver: T | None = None, extra: dict[str, Any] | None = None,
              out: str | None = None) -> T:
        """Bind a call's arguments (after the method's receiver) to the op's tensor slots and arguments by
        torch's signature, then emit it."""
        pre: dict[int, Any] = {}  # arguments evaluated already, by their node's id
        if op.name in CLAMPS:
            pre, bounded = self.clamp_bounds(op, call, receiver, out)
            if bounded is not None:
                return bounded
        positional: list[Any] = ([_Given(receiver)] if receiver is not None else []) + list(call.args)
        tensors: list[Any] = []
        args: dict[str, Any] = dict(extra or {})
        if op.variadic:
            if not positional:
                raise self.err(call, f"{op.name} takes a list of tensors first")
            head = positional.pop(0)
            first = head.value if isinstance(head, _Given) else self.expr(head)
            if isinstance(first, T):  # x.cat(...) is no torch method; stack/cat take a sequence
                raise self.err(call, f"{op.name} takes a list or tuple of tensors")
            if not isinstance(first, (list, tuple)) or not all(isinstance(v, T) for v in first):
                raise self.err(call, f"{op.name} takes a list or tuple of tensors")
            tensors = list(first)
            sig: tuple[str, ...] = op.positional
        else:
            sig = op.signature or (*op.tensors, *op.positional)
        slots = {name: k for k, name in enumerate(op.tensors)} if not op.variadic else {}
        bound: list[Any] = [None] * len(slots)
        n = min(len(positional), len(sig))
        for param, a in zip(sig[:n], positional[:n], strict=True):
            if param in slots:
                bound[slots[param]] = self.tensor_arg(a, op, param)
            else:
                v = pre[id(a)] if id(a) in pre else self.const(a)
                args[param] = v.name if isinstance(v, DType) else v
        rest = positional[n:]
        if rest:
            if op.star is None:
                raise self.err(call, f"{op.name}: too many positional arguments")
            vals = [self.const(a) for a in rest]
            args[op.star] = list(vals[0]) if len(vals) == 1 and isinstance(vals[0], (list, tuple)) else vals
        for kw in call.keywords:
            if kw.arg is None:
                raise self.err(call, "** arguments are not allowed")
            key = kw.arg
            if key in NUMPY_NAMES and key not in op.Args.model_fields and NUMPY_NAMES[key] in op.Args.model_fields:
                key = NUMPY_NAMES[key]
            if key in slots:
                if bound[slots[key]] is not None:
                    raise self.err(kw.value, f"{op.name}: '{key}' given twice")
                bound[slots[key]] = self.tensor_arg(kw.value, op, key)
            elif key in args:
                raise self.err(kw.value, f"{op.name}: '{key}' given twice")
            else:
                v = pre[id(kw.value)] if id(kw.value) in pre else self.const(kw.value)
                args[key] = v.name if isinstance(v, DType) else v
        if not op.variadic:
            while bound and bound[-1] is None:
                bound.pop()
            for i, b in enumerate(bound):  # a number written in a tensor slot torch takes as None (BCE's weight)
                if op.tensors[i] in op.optional and is_number(b) and not op.scalars:
                    raise self.err(call, f"{op.name}: '{op.tensors[i]}' must be a tensor or None, not the number {b!r} "
                                         "(torch raises this)")
            bound = [op.optional.get(op.tensors[i], b) if b is None else b for i, b in enumerate(bound)]
            if any(b is None for b in bound):
                missing = [op.tensors[i] for i, b in enumerate(bound) if b is None]
                raise self.err(call, f"{op.name}: tensor argument(s) {missing} missing (gradtrace needs them in order)")
            tensors = bound
        if "dtype" in args and "dtype" not in op.Args.model_fields:
            if op.name not in CAST_FIRST:
                raise self.err(call, f"{op.name}(..., dtype=...) is not traced: cast first (x.double().{op.name}(...))")
            want = args.pop("dtype")  # F.softmax(x, -1, dtype=torch.float32): torch casts the input first
            if want is not None and isinstance(tensors[0], T) and want != self.dtype_of(tensors[0]):
                tensors[0] = self.emit("to", [tensors[0]], {"dtype": want}, call, name=self.temp())
        return self.emit(op.name, tensors, args, call, name=out)

    def clamp_bounds(self, op: Op, call: ast.Call, receiver: T | None, out: str | None) -> tuple[dict[int, Any], T | None]:
        """clamp / clamp_min / clamp_max: the bounds evaluated once; tensor bounds make a clamp_tensors node (torch's
        clamp.Tensor), number bounds are the op's own arguments (returned by their node's id, for apply)."""
        args = list(call.args) if receiver is not None else list(call.args[1:])
        given = dict(zip(op.positional, args, strict=False)) | {k.arg: k.value for k in call.keywords if k.arg in op.positional}
        values = {k: self.expr(v) for k, v in given.items()}
        if not any(isinstance(v, T) for v in values.values()):
            return {id(e): values[k] for k, e in given.items()}, None
        if any(v is not None and not isinstance(v, T) for v in values.values()):
            raise self.err(call, f"{op.name}: min and max are both tensors or both numbers (torch raises this)")
        x = receiver if receiver is not None else self.tensor(call.args[0]) if call.args else None
        if x is None:
            raise self.err(call, f"{op.name} takes a tensor")
        lo, hi = values.get("min"), values.get("max")
        bounds = "both" if lo is not None and hi is not None else "min" if lo is not None else "max"
        inputs = [x, *(b for b in (lo, hi) if b is not None)]
        return {}, self.emit("clamp_tensors", inputs, {"bounds": bounds, "fn": op.name}, call, name=out)

    def tensor_arg(self, node: Any, op: Op, param: str) -> Any:
        """A tensor slot's value: a tensor, a number where the op takes numbers, or None for an optional one."""
        v = node.value if isinstance(node, _Given) else self.expr(node)
        if v is None or isinstance(v, T) or is_number(v):
            return v
        raise self.err(node, f"{op.name}: '{param}' must be a tensor, not {_kind(v)}")


CLAMPS = frozenset({"clamp", "clamp_min", "clamp_max"})
"""Ops whose bounds may be tensors (torch's clamp.Tensor overloads): ExpressionCompiler.clamp_bounds."""
CAST_FIRST = frozenset({"softmax", "log_softmax"})
"""Ops whose `dtype=` casts the input before they run, as a node of its own in torch's graph (softmax(x, dim,
dtype=...): ToCopyBackward0 then SoftmaxBackward0); a reduction's dtype= casts inside it (refused here)."""


class _Given:
    """An argument evaluated already (a method's receiver)."""

    def __init__(self, value: Value) -> None:
        self.value = value


def _is_const(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int, float, str, DType)):
        return True
    if isinstance(v, (list, tuple)):
        return all(_is_const(x) for x in v)
    return False


def is_dict_key(v: Any) -> bool:
    """A string, an int, or a tuple of them: what a program's dicts are keyed by (hashable, compared as Python does)."""
    if isinstance(v, tuple):
        return all(map(is_dict_key, v))
    return isinstance(v, (str, int)) and not isinstance(v, bool)


def _int_list(v: Any) -> bool:
    if isinstance(v, (list, tuple)):
        return len(v) > 0 and all(_int_list(x) for x in v)
    return isinstance(v, int) and not isinstance(v, bool)


OTHER_DTYPES = frozenset({"bfloat16", "float16", "half", "int32", "int16", "int8", "uint8", "complex64", "complex128"})
"""torch dtypes gradtrace has no tensors of (float32, float64, int64 and bool it has), known as values."""
LEGACY_TYPES = {f"torch{cuda}.{kind}Tensor": dtype for cuda in ("", ".cuda") for kind, dtype in
                (("Float", "float32"), ("Double", "float64"), ("Long", "int64"), ("Bool", "bool"))}
"""torch's legacy tensor types as values, by the dtype each stands for (`x.type(torch.FloatTensor)`)."""


def _kind(v: Any) -> str:
    """How a value reads in an error message."""
    if isinstance(v, T):
        return f"the tensor '{v.name}'"
    if isinstance(v, Instance) and not v.cls.module:
        return f"the {v.kind} object"
    if isinstance(v, (ModuleInst, Instance)):
        return f"the module {v.kind}"
    if isinstance(v, Bound):
        return f"the method {v.obj.kind}.{v.fn.name}"
    if isinstance(v, ClassRef):
        return f"the class {v.path}"
    if isinstance(v, (tuple, list)) and v and all(isinstance(i, T) for i in v):
        return f"a {type(v).__name__} of {len(v)} tensors"
    if isinstance(v, (tuple, list, dict)) and not _is_const(list(v.values()) if isinstance(v, dict) else v):
        return f"a {type(v).__name__} of {len(v)} items"  # (of modules, objects: no repr of compiler values)
    if isinstance(v, Foreign):
        return (f"'{v.path}', imported from a module gradtrace does not trace (it traces torch, torch.nn, "
                "torch.nn.functional, torch.distributions, math, Python's random, and numpy's math of numbers)")
    if isinstance(v, UserFunction):
        return f"the function {v.name}"
    if isinstance(v, UserClass):
        return f"the class {v.name}"
    if isinstance(v, AutogradFunction):
        return f"the autograd.Function {v.name}"
    if isinstance(v, Distribution):
        return f"the {v.kind} distribution"
    if isinstance(v, (Dataset, Loader, Epoch)):
        return {Dataset: "a TensorDataset", Loader: "a DataLoader", Epoch: "a DataLoader's iterator"}[type(v)]
    if isinstance(v, Untraced):
        return v.what
    if isinstance(v, DType):
        return f"the dtype torch.{v.name}"
    if v is None:
        return "None"
    return f"the {type(v).__name__} {v!r}"[:80]
