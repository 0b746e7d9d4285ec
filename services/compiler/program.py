"""Parse program text with `ast` against a whitelist into raw nodes. Nothing is ever evaluated
except number literals (and arithmetic folded between them)."""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from typing import Any

from services.compiler.build import RawNode
from services.errors import SpecError
from services.ops import REGISTRY, Op
from shared.spec import InputSpec

BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "truediv", ast.Pow: "pow", ast.MatMult: "matmul"}
OP_OF = {"add": "add", "sub": "sub", "mul": "mul", "truediv": "div", "pow": "pow", "matmul": "matmul"}
MODULES = {"torch": "torch", "numpy": "numpy", "torch.nn": "torch.nn", "torch.nn.functional": "F"}
"""Importable modules and the canonical prefix each maps to."""
CREATORS = {"tensor", "rand", "randn", "zeros", "ones", "arange"}
DTYPES = {"float32": "float32", "float": "float32", "float64": "float64", "double": "float64", "int64": "int64", "long": "int64"}
IGNORED_METHODS = {"retain_grad", "requires_grad_"}


def _functions() -> dict[str, Op]:
    table: dict[str, Op] = {}
    for op in REGISTRY.values():
        for fn in (op.name, *op.functions):
            table[fn] = op
    return table


def _methods() -> dict[str, Op]:
    return {m: op for op in REGISTRY.values() for m in op.methods}


Value = str | float
"""What an expression compiles to: a node/leaf name, or a number constant."""


@dataclass
class ProgramResult:
    """Raw nodes, the inputs the program defined itself, and the output it chose."""

    nodes: list[RawNode] = field(default_factory=list)
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    input_lines: dict[str, int] = field(default_factory=dict)
    output: str | None = None
    grad_output: Any = None
    names: dict[str, str] = field(default_factory=dict)
    """Program variable -> node name it is bound to now."""


class ProgramCompiler:
    """Walks the statements of a program; each method handles one whitelisted form."""

    def __init__(self, text: str, known_inputs: set[str]) -> None:
        self.text = text
        self.lines = re.split(r"\r\n|\r|\n", text)
        self.versions: dict[str, int] = {}
        self.known = set(known_inputs)
        self.res = ProgramResult(names={k: k for k in known_inputs})
        self.aliases: dict[str, str] = {"torch": "torch", "F": "F"}
        self.functions = _functions()
        self.methods = _methods()
        self.used: set[str] = set(known_inputs)
        self.target = ""
        self.counter = 0
        self.line = 0
        self.stmt_expr: ast.expr | None = None

    # ---- errors and names ---------------------------------------------------------------------

    def err(self, node: ast.AST, msg: str) -> SpecError:
        return SpecError(
            msg,
            loc=("program",),
            line=getattr(node, "lineno", None),
            col=(getattr(node, "col_offset", -1) + 1) if hasattr(node, "col_offset") else None,
        )

    def fresh(self, base: str) -> str:
        """A unique node name: the variable itself, then base@2, base@3 for rebindings."""
        if base not in self.used:
            self.used.add(base)
            return base
        k = self.versions.get(base, 1) + 1
        while f"{base}@{k}" in self.used:
            k += 1
        self.versions[base] = k
        self.used.add(f"{base}@{k}")
        return f"{base}@{k}"

    def temp(self) -> str:
        self.counter += 1
        name = f"{self.target}#{self.counter}"
        while name in self.used:
            self.counter += 1
            name = f"{self.target}#{self.counter}"
        self.used.add(name)
        return name

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

    # ---- statements ---------------------------------------------------------------------------

    def run(self) -> ProgramResult:
        try:
            tree = ast.parse(self.text, mode="exec")
        except SyntaxError as e:
            raise SpecError(f"syntax error: {e.msg}", loc=("program",), line=e.lineno, col=e.offset) from None
        for node in ast.walk(tree):
            name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
            if name and name.startswith("__"):
                raise self.err(node, f"dunder name '{name}' is not allowed")
        for stmt in tree.body:
            self.line = stmt.lineno
            self.statement(stmt)
        return self.res

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            self.imports(stmt)
        elif isinstance(stmt, ast.Assign):
            if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
                raise self.err(stmt, "only 'name = expression' assignments are allowed (no unpacking, chains or subscripts)")
            self.assign(stmt.targets[0].id, stmt.value, stmt)
        elif isinstance(stmt, ast.AugAssign):
            if not isinstance(stmt.target, ast.Name):
                raise self.err(stmt, "augmented assignment needs a plain name target")
            binop = ast.BinOp(left=ast.Name(id=stmt.target.id, ctx=ast.Load()), op=stmt.op, right=stmt.value)
            ast.copy_location(binop, stmt)
            binop.end_lineno, binop.end_col_offset = stmt.end_lineno, stmt.end_col_offset
            self.assign(stmt.target.id, binop, stmt)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            self.call_statement(stmt.value)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            pass  # a docstring
        elif isinstance(stmt, ast.Pass):
            pass
        else:
            raise self.err(stmt, f"'{type(stmt).__name__}' statements are not allowed; write one assignment per line")

    def imports(self, stmt: ast.Import | ast.ImportFrom) -> None:
        if isinstance(stmt, ast.Import):
            for a in stmt.names:
                if a.name not in MODULES:
                    raise self.err(stmt, f"import of '{a.name}' is not allowed (only torch, numpy, torch.nn.functional)")
                if a.asname:
                    self.aliases[a.asname] = MODULES[a.name]
                else:
                    self.aliases[a.name.split(".")[0]] = a.name.split(".")[0]
            return
        for a in stmt.names:
            full = f"{stmt.module}.{a.name}"
            if full not in MODULES or stmt.level:
                raise self.err(stmt, f"'from {stmt.module} import {a.name}' is not allowed")
            self.aliases[a.asname or a.name] = MODULES[full]

    def call_statement(self, call: ast.Call) -> None:
        f = call.func
        if isinstance(f, ast.Name) and f.id == "print":
            return
        if isinstance(f, ast.Attribute) and self.dotted(f) in ("torch.manual_seed",):
            return
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in self.res.names:
            var = f.value.id
            if f.attr in IGNORED_METHODS and not call.args:
                return
            if f.attr == "backward":
                self.backward(var, call)
                return
        raise self.err(call, f"the statement '{self.src(call)}' does nothing gradtrace can trace")

    def backward(self, var: str, call: ast.Call) -> None:
        self.res.output = self.res.names[var]
        grad = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "gradient"), None)
        extra = [k.arg for k in call.keywords if k.arg not in ("gradient", "retain_graph")]
        if extra or len(call.args) > 1:
            raise self.err(call, "backward() takes only 'gradient' here")
        if grad is not None:
            self.res.grad_output = self.literal(self.unwrap_tensor(grad))

    def unwrap_tensor(self, node: ast.expr) -> ast.expr:
        """`torch.tensor(L)` -> L, for backward's gradient."""
        if isinstance(node, ast.Call) and self.dotted(node.func) == "torch.tensor" and node.args:
            return node.args[0]
        return node

    def assign(self, var: str, value: ast.expr, stmt: ast.stmt) -> None:
        if var in self.aliases:
            raise self.err(stmt, f"'{var}' names a module and cannot be assigned")
        if isinstance(value, ast.Call) and self.creator(value.func):
            self.define_input(var, value)
            return
        self.target = var
        self.counter = 0
        self.stmt_expr = value
        result = self.expr(value)
        if isinstance(result, float):
            raise self.err(stmt, f"'{var}' is a constant: give it as an input (torch.tensor(...)) to trace it")
        self.res.names[var] = result

    def define_input(self, var: str, call: ast.Call) -> None:
        kind = self.creator(call.func)
        kw = {k.arg: k.value for k in call.keywords}
        if None in kw:
            raise self.err(call, "** arguments are not allowed")
        unknown = set(kw) - {"requires_grad", "dtype", "device"}
        if unknown:
            raise self.err(call, f"torch.{kind}: unsupported argument(s) {sorted(unknown)}")
        dtype = self.dtype_arg(kw["dtype"]) if "dtype" in kw else None
        rg = self.literal(kw["requires_grad"]) if "requires_grad" in kw else False
        if not isinstance(rg, bool):
            raise self.err(call, "requires_grad must be True or False")
        if kind == "tensor":
            if len(call.args) != 1:
                raise self.err(call, "torch.tensor takes one value")
            spec = InputSpec(value=self.literal(call.args[0]), dtype=dtype, requires_grad=rg)
        else:
            dims = [self.literal(a) for a in call.args]
            if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
                dims = list(dims[0])
            if not all(isinstance(d, int) and d >= 0 for d in dims):
                raise self.err(call, f"torch.{kind} takes non-negative integer sizes")
            init = {"rand": "uniform", "randn": "normal"}.get(kind, kind)
            if kind == "arange":
                if len(dims) != 1:
                    raise self.err(call, "torch.arange(n) takes one size here")
            seed = len(self.res.inputs)
            spec = InputSpec(shape=dims, init=init, seed=seed, dtype=dtype, requires_grad=rg)
        name = self.fresh(var)
        self.res.inputs[name] = spec
        self.res.input_lines[name] = call.lineno
        self.res.names[var] = name

    def creator(self, func: ast.expr) -> str | None:
        d = self.dotted(func)
        if d and d.startswith("torch.") and d[6:] in CREATORS:
            return d[6:]
        return None

    def dtype_arg(self, node: ast.expr) -> str:
        d = self.dotted(node)
        if d and d.startswith("torch.") and d[6:] in DTYPES:
            return DTYPES[d[6:]]
        if isinstance(node, ast.Constant) and node.value in DTYPES:
            return DTYPES[node.value]
        raise self.err(node, f"unsupported dtype '{self.src(node)}' (float32, float64 or int64)")

    # ---- expressions --------------------------------------------------------------------------

    def dotted(self, node: ast.expr) -> str | None:
        """'torch.nn.functional.relu' -> 'F.relu' through import aliases; None if not a module path."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in self.aliases or node.id in self.res.names:
            return None
        path = ".".join([self.aliases[node.id], *reversed(parts)])
        for long, short in (("torch.nn.functional.", "F."), ("torch.nn.", "torch.nn.")):
            if path.startswith(long):
                path = short + path[len(long):]
        return path

    def expr(self, node: ast.expr) -> Value:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id in self.res.names:
                return self.res.names[node.id]
            raise self.err(node, f"unknown name '{node.id}'")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self.expr(node.operand)
            if isinstance(node.op, ast.UAdd):
                return v
            return -v if isinstance(v, float) else self.emit("neg", [v], {}, node)
        if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
            a, b = self.expr(node.left), self.expr(node.right)
            kind = BINOPS[type(node.op)]
            if isinstance(a, float) and isinstance(b, float):
                return self.fold(kind, a, b, node)
            return self.emit(OP_OF[kind], [a, b], {}, node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Subscript):
            raise self.err(node, "indexing and slicing are not supported ops")
        if isinstance(node, ast.Attribute):
            raise self.err(node, f"attribute access '{self.src(node)}' is not allowed")
        raise self.err(node, f"'{type(node).__name__}' expressions are not allowed")

    def fold(self, kind: str, a: float, b: float, node: ast.AST) -> float:
        """Arithmetic between two number literals, bounded so it cannot blow up."""
        try:
            r = {"add": a + b, "sub": a - b, "mul": a * b}.get(kind)
            if r is None and kind == "truediv":
                r = a / b
            elif r is None and kind == "pow":
                r = math.pow(a, b)
            elif r is None:
                raise self.err(node, "matmul of two numbers")
        except (ZeroDivisionError, OverflowError, ValueError) as e:
            raise self.err(node, f"constant arithmetic failed: {e}") from None
        return float(r)

    def call(self, node: ast.Call) -> Value:
        f = node.func
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise self.err(node, "* and ** arguments are not allowed")
        path = self.dotted(f) if isinstance(f, ast.Attribute) else None
        if isinstance(f, ast.Name) and f.id in self.functions and f.id not in self.res.names:
            return self.apply(self.functions[f.id], None, node)
        if path is not None:
            op = self.functions.get(path)
            if op is None:
                raise self.err(node, f"unknown function '{path}'")
            return self.apply(op, None, node)
        if isinstance(f, ast.Attribute):
            op = self.methods.get(f.attr)
            if op is None:
                raise self.err(node, f"unknown tensor method '.{f.attr}()'")
            return self.apply(op, f.value, node)
        raise self.err(node, f"unknown function '{self.src(f)}'")

    def apply(self, op: Op, receiver: ast.expr | None, call: ast.Call) -> Value:
        """Bind a call's arguments to the op's tensor slots and argument schema, then emit it."""
        positional = list(call.args)
        tensors: list[Value | None] = []
        if receiver is not None:
            tensors.append(self.expr(receiver))
        args: dict[str, Any] = {}
        slots = len(op.tensors)
        if op.variadic:
            if receiver is None:
                if not positional or not isinstance(positional[0], (ast.List, ast.Tuple)):
                    raise self.err(call, f"{op.name} takes a list of tensors first")
                tensors = [self.expr(e) for e in positional.pop(0).elts]
        else:
            while positional and len(tensors) < slots:
                a = positional[0]
                if isinstance(a, ast.Constant) and a.value is None and len(tensors) >= (op.arity[0]):
                    positional.pop(0)
                    tensors.append(None)
                    continue
                if self.is_literal(a) and not (op.scalars and len(tensors) < op.arity[0]):
                    break
                tensors.append(self.expr(positional.pop(0)))
        if op.star and positional:
            vals = [self.literal(a) for a in positional]
            args[op.star] = list(vals[0]) if len(vals) == 1 and isinstance(vals[0], (list, tuple)) else vals
            positional = []
        if len(positional) > len(op.positional):
            raise self.err(call, f"{op.name}: too many positional arguments")
        for fname, a in zip(op.positional, positional, strict=False):
            args[fname] = self.literal(a)
        for k in call.keywords:
            if k.arg in op.tensors and not op.variadic:
                slot = op.tensors.index(k.arg)
                while len(tensors) <= slot:
                    tensors.append(None)
                if tensors[slot] is not None:
                    raise self.err(k.value, f"{op.name}: '{k.arg}' given twice")
                is_none = isinstance(k.value, ast.Constant) and k.value.value is None
                tensors[slot] = None if is_none else self.expr(k.value)
            elif k.arg in args:
                raise self.err(k.value, f"{op.name}: '{k.arg}' given twice")
            else:
                args[k.arg] = self.literal(k.value)
        while tensors and tensors[-1] is None:
            tensors.pop()
        if any(t is None for t in tensors):
            raise self.err(call, f"{op.name}: a required tensor argument is missing")
        return self.emit(op.name, [t for t in tensors if t is not None], args, call)

    def is_literal(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return self.is_literal(node.operand)
        if isinstance(node, (ast.List, ast.Tuple)):
            return all(self.is_literal(e) for e in node.elts)
        return False

    def literal(self, node: ast.expr) -> Any:
        """A literal argument (numbers, strings, bools, None, lists/tuples of them), never evaluated as code."""
        if not self.is_literal(node):
            raise self.err(node, f"'{self.src(node)}' must be a literal (number, string, bool or list)")
        try:
            v = ast.literal_eval(node)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise self.err(node, f"'{self.src(node)[:40]}' is not a valid literal") from None
        return list(v) if isinstance(v, tuple) else v

    def emit(self, op: str, inputs: list[Value], args: dict[str, Any], node: ast.expr) -> str:
        name = self.fresh(self.target) if node is self.stmt_expr else self.temp()
        self.res.nodes.append(
            RawNode(
                name=name, op=op, inputs=list(inputs), args=args, expr=self.src(node),
                line=getattr(node, "lineno", self.line), col=getattr(node, "col_offset", 0) + 1, loc=("program",),
            )
        )
        return name


def compile_program(text: str, known_inputs: set[str]) -> ProgramResult:
    """Parse a program into raw nodes; see ProgramCompiler for the whitelist."""
    compiler = ProgramCompiler(text, known_inputs)
    try:
        return compiler.run()
    except (RecursionError, MemoryError):
        raise SpecError(
            "an expression is nested too deeply; split it over several assignments", loc=("program",), line=compiler.line or None
        ) from None
