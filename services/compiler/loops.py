"""`for` loops unrolled into straight-line statements (the graph has no loops): over range(...), and over lists,
tuples, module containers and tensor rows whose length is known by the time the loop runs; `while` loops on ints the
program counts."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

INT_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
           ast.Mod: operator.mod}
COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Eq: operator.eq,
           ast.NotEq: operator.ne}
ITER = "iter#"
"""Hidden names of what loops go over (a '#' never names a program variable)."""
MAX_UNROLLED = 20_000
"""Statements a program may have once its `for ... in range(...)` loops are unrolled."""


def is_shape_query(node: ast.expr) -> bool:
    """`x.size(0)`, `x.shape[0]`, `x.size()[0]`, `x.numel()`, `x.dim()` on a name or attribute: an int the compiler
    knows when the loop is reached (shapes are known), with no side effect to evaluate."""
    def plain(e: ast.expr) -> bool:
        return isinstance(e, ast.Name) or isinstance(e, ast.Attribute) and plain(e.value)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, (ast.Constant, ast.UnaryOp)):
        node = node.value
        return (isinstance(node, ast.Attribute) and node.attr == "shape" and plain(node.value)) or (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "size"
            and not node.args and plain(node.func.value))
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("size", "numel", "dim")
            and plain(node.func.value) and all(isinstance(a, (ast.Constant, ast.UnaryOp)) for a in node.args) and not node.keywords)


def _dotted(node: ast.expr) -> str | None:
    """`xs` -> 'xs', `self.layers` -> 'self.layers'; None for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


MUTATORS = frozenset({"append", "extend", "insert", "pop", "remove", "clear", "add_module", "register_module", "update",
                      "setdefault", "popitem"})
"""Methods that change the length of what they are called on (a list, a dict, an nn.ModuleList)."""


def changed_names(stmt: ast.stmt, harmless: Callable[[ast.Call], bool]) -> set[str] | None:
    """Names and attribute paths a statement binds anew (`xs = xs + [...]`, `self.layers = ...`): a loop over one of
    them after it reads what it holds then. None: the statement may change what some list holds, through any name
    (an object's own list grown in place: `.append(...)`, `xs += [...]`, `xs[1:] = []`, `del xs[0]`, or a call of
    something that may do so, a function of the program); `harmless` says which calls cannot (a torch module's
    forward, torch's functions, Python's pure builtins)."""
    out: set[str] = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Delete) or isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del)):
            return None
        if isinstance(node, ast.AugAssign) and not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, int)):
            return None  # (`i += 1` rebinds an int; `xs += [y]` extends the list every alias of xs holds)
        if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Store):
            if (path := _dotted(node)) is not None:
                out.add(path)
        elif isinstance(node, ast.Call) and (isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS
                                              or not harmless(node)):
            return None
    return out


def unroll(body: list[ast.stmt], err: Any, known: dict[str, int] | None = None,
           length: Callable[[ast.expr], int | None] | None = None, lazy: bool = False,
           value: Callable[[ast.expr], int | None] | None = None,
           harmless: Callable[[ast.Call], bool] | None = None, read_lengths: bool | None = None) -> list[ast.stmt]:
    """`for NAME in range(a[, b[, step]]):` loops as their bodies repeated, each copy after `NAME = k` (what a loop
    runs, statement for statement; the graph has no loops); `while COND:` loops the same, while COND holds on the ints
    known then (`i += 1` in the body counts). Bounds are int literals, or names bound earlier at the
    top level to one (`known`: such names of the scope around a function's body, and 'self.depth' for an int
    attribute of a module object); a loop that may end early (break, continue) runs when reached; an else clause is
    refused. Nested loops unroll too. Loops over other things unroll when their length is known before they run
    (`length`: nn.Sequential/ModuleList, lists and tuples, a tensor's first dim), each iteration after
    `NAME = X[k]` (`enumerate`, `zip` and list literals of names too); `value` reads a bound off a tensor's shape
    when the loop is reached (`range(0, x.size(0) - 1, bptt)`). `lazy`: a loop whose length is not known yet
    (a list the body builds before it) stays a `for` statement, unrolled when the program reaches it. A training
    loop (its body calls `.backward()`) unrolls two iterations: a trace ends at the second backward(). With `harmless`
    (a function's body, whose `length` is what its names held at the call), only a loop that returns from inside
    takes its length then, and only while no statement before it may have changed a list (changed_names); every
    other loop over a name runs when reached, on what the name holds then. `read_lengths` with `harmless` (a loop
    reached while the program runs, whose names hold their values): lengths are read now, of names no statement of
    the unrolled body bound or may have changed before (`for row in block: for v in row:` reads row's when reached)."""
    ints: dict[str, int] = dict(known or {})
    changed: set[str] | None = set()  # what the statements so far may have given another length (None: anything)
    # lengths of names read now: always outside a function, for returning loops in one
    read_now = harmless is None if read_lengths is None else read_lengths

    def known_length(it: ast.expr) -> int | None:
        if length is None or not read_now or changed is None:
            return None
        path = _dotted(it)
        if path is not None and any(path == c or path.startswith(c + ".") or c.startswith(path + ".") for c in changed):
            return None
        return length(it)

    def stale(query: ast.expr) -> bool:
        """Whether a shape query reads a name a statement unrolled before it binds anew (`Xb = ...` in the body, then
        `range(Xb.shape[0])`): what it holds now is not what it will hold there."""
        if changed is None:
            return True
        names = {_dotted(n) for n in ast.walk(query) if isinstance(n, (ast.Name, ast.Attribute))} - {None}
        return any(p == c or p.startswith(c + ".") or c.startswith(p + ".") for p in names for c in changed)  # type: ignore[union-attr]

    def note(stmt: ast.stmt) -> None:
        nonlocal changed
        if harmless is not None and changed is not None:
            done = changed

            def still(call: ast.Call) -> bool:  # (a callee rebound in the body is not what the call's names held)
                f = call.func
                while isinstance(f, ast.Attribute):
                    f = f.value
                return not (isinstance(f, ast.Name) and any(c == f.id or c.startswith(f.id + ".") for c in done)) \
                    and harmless(call)

            found = changed_names(stmt, still)
            changed = None if found is None else changed | found
            if changed is None:  # (a call of the program's own: `self.n` may be another number after it)
                for k in [k for k in ints if "." in k]:
                    del ints[k]

    def bound(node: ast.expr) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -bound(node.operand)
        if isinstance(node, ast.Name) and node.id in ints:
            return ints[node.id]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and f"{node.value.id}.{node.attr}" in ints:
            return ints[f"{node.value.id}.{node.attr}"]  # range(self.depth): an int attribute of a module object
        if isinstance(node, ast.BinOp) and type(node.op) in INT_OPS:  # range(len(sizes) - 1), range(n // 2)
            left, right = bound(node.left), bound(node.right)
            if isinstance(node.op, (ast.FloorDiv, ast.Mod)) and right == 0:
                raise err(node, "integer division by zero in a loop's bounds")
            return INT_OPS[type(node.op)](left, right)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len" and len(node.args) == 1
                and (n := known_length(node.args[0])) is not None):
            return n
        if value is not None and is_shape_query(node) and not stale(node) and (v := value(node)) is not None:
            return v  # range(0, data.size(0) - 1, bptt): a shape, known when the loop is reached
        raise Unknown(node, "a loop's range() needs constant bounds (int literals, names set to one before the loop, "
                             "len() of a list or module, a tensor's size(d) / shape[d], and + - * // of those)")

    def foldable(node: ast.expr) -> bool:
        """Whether `static` can fold it (checked first: most assignments are tensor expressions, and an exception
        per statement costs a small program's compile 5%)."""
        if isinstance(node, ast.Constant):
            return type(node.value) is int
        if isinstance(node, ast.Name):
            return node.id in ints
        if isinstance(node, ast.BinOp):
            return type(node.op) in INT_OPS and foldable(node.left) and foldable(node.right)
        return isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and foldable(node.operand)

    def static(node: ast.expr) -> int:
        """An int from literals and names known now (no len(), no shapes: what an assignment in a loop body binds)."""
        if isinstance(node, ast.BinOp) and type(node.op) in INT_OPS:
            return bound(ast.copy_location(ast.BinOp(left=ast.Constant(static(node.left)), op=node.op,
                                                     right=ast.Constant(static(node.right))), node))
        if isinstance(node, ast.Call) or is_shape_query(node):
            raise Unknown(node, "not a constant")
        return bound(node)

    def holds(test: ast.expr) -> bool:
        """A while loop's condition from the ints known now: comparisons, and/or/not, an int's truth."""
        if isinstance(test, ast.Compare) and all(type(op) in COMPARE for op in test.ops):
            left = static(test.left)
            for op, right in zip(test.ops, test.comparators, strict=True):
                r = static(right)
                if not COMPARE[type(op)](left, r):
                    return False
                left = r
            return True
        if isinstance(test, ast.BoolOp):
            return all(holds(v) for v in test.values) if isinstance(test.op, ast.And) else any(holds(v) for v in test.values)
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return not holds(test.operand)
        if isinstance(test, ast.Constant) and type(test.value) is bool:
            return test.value
        return static(test) != 0

    def loop_while(stmt: ast.While, out: list[ast.stmt]) -> None:
        """`while i < n:` with ints the body counts (`i += 1`): unrolled while the condition holds."""
        if stmt.orelse:
            raise err(stmt.orelse[0], "a while loop's else clause is not allowed")
        for node in ast.walk(ast.Module(body=stmt.body, type_ignores=[])):
            if isinstance(node, (ast.Break, ast.Continue)):  # run when reached (ControlFlow.while_loop)
                raise Unknown(node, f"'{type(node).__name__.lower()}' ends a loop where its values say")
        training, k, start = _steps(stmt.body), 0, len(out)
        message = ("a while loop's condition must be known before it runs, from ints the program counts (`while step "
                   "< n:` with `step += 1` in the body): one that reads a tensor's values (`while loss > 0.01`) "
                   "depends on the data; gradtrace traces one path (write a for loop over range(...))")
        try:
            go = holds(stmt.test)
        except Unknown:
            raise Unknown(stmt.test, message) from None  # run when reached, on the values then (ControlFlow.while_loop)
        while go and not (training and k == 2):
            expand(stmt.body, out)
            k += 1
            if len(out) - start > MAX_UNROLLED or k > MAX_UNROLLED:  # (run when reached, it meets the same limit)
                raise Unknown(stmt, f"the unrolled while loop makes over {MAX_UNROLLED:,} statements (does its "
                                     "condition ever become false?)")
            try:
                go = holds(stmt.test)
            except Unknown:  # its names changed in ways not followed here (`i, j = i + 1, j`): run when reached
                raise Unknown(stmt.test, message) from None

    def forget(loop: ast.stmt) -> None:
        """A loop left to run when reached: the ints its body assigns are unknown after it, and so are the lengths
        of what it changes."""
        note(loop)
        for n in ast.walk(loop):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                ints.pop(n.id, None)

    def expand(stmts: list[ast.stmt], out: list[ast.stmt]) -> list[ast.stmt]:
        nonlocal read_now
        for stmt in stmts:  # in the order the unrolled program runs them: `ints` follows the names' values
            if isinstance(stmt, (ast.Assign, ast.AugAssign)):  # a name rebound to anything but an int it can compute
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                new = None
                try:
                    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name) and type(stmt.op) in INT_OPS \
                            and stmt.target.id in ints and foldable(stmt.value):
                        new = static(ast.copy_location(ast.BinOp(left=stmt.target, op=stmt.op, right=stmt.value), stmt))
                    elif isinstance(stmt, ast.Assign) and len(targets) == 1 and isinstance(targets[0], ast.Name) \
                            and foldable(stmt.value):
                        new = static(stmt.value)  # `i = 0`, `i = i + 1`, `n = 2 * k`
                except Unknown:
                    new = None
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            ints.pop(n.id, None)
                        elif isinstance(n, ast.Attribute) and (path := _dotted(n)) is not None:
                            ints.pop(path, None)  # `self.n = 3` before `range(self.n)`
                if new is not None and type(new) is int:
                    ints[targets[0].id] = new  # type: ignore[attr-defined]
            if isinstance(stmt, ast.While):
                start, saved = len(out), dict(ints)
                try:
                    loop_while(stmt, out)
                except Unknown as e:
                    if not lazy:
                        raise err(e.node, e.message) from None
                    del out[start:]  # what it unrolled before it turned out unknown
                    ints.clear()
                    ints.update(saved)
                    forget(stmt)
                    out.append(stmt)  # run when reached, on the values its names hold then (ControlFlow.while_loop)
                continue
            if isinstance(stmt, ast.If):  # loops inside either branch unroll too; the ints after it are those of the
                note(ast.Expr(value=stmt.test))  # (a call in the test runs first)
                before = dict(ints)  # branch its condition picks, or those both branches leave alike
                try:
                    pick = holds(stmt.test)
                except Unknown:
                    pick = None
                body = expand(stmt.body, [])
                after_body = dict(ints)
                ints.clear()
                ints.update(before)
                orelse = expand(stmt.orelse, [])
                if pick is True:
                    ints.clear()
                    ints.update(after_body)
                elif pick is None:
                    for name in [n for n, v in ints.items() if after_body.get(n) != v]:
                        del ints[name]
                out.append(ast.copy_location(ast.If(test=stmt.test, body=body, orelse=orelse), stmt))
                continue
            if isinstance(stmt, (ast.With, ast.Try)):  # their bodies run when reached: what they assign is unknown after
                forget(stmt)
            if not isinstance(stmt, ast.For):
                note(stmt)
                out.append(stmt)
                continue
            it = stmt.iter
            if _prints_only(stmt.body) and not stmt.orelse:  # `for name, p in model.named_parameters(): print(...)`
                continue  # shows what the result holds anyway; nothing to trace
            if stmt.orelse:
                raise err(stmt.orelse[0], "a for loop's else clause is not allowed")
            if not _target(stmt.target):
                raise err(stmt, "a loop's target is a name or a (nested) tuple of names")
            exit_ = exits(stmt.body)
            if exit_ is not None:  # it may end early: run when reached, as Python runs it (ControlFlow.for_loop)
                if not lazy:
                    raise err(exit_, f"'{type(exit_).__name__.lower()}' ends a loop where its values say: it runs when "
                                     "reached")
                forget(stmt)
                out.append(stmt)
                continue
            training = _steps(stmt.body)  # a training loop: tracing ends at its second backward() (ProgramCompiler.run)
            was_read_now = read_now
            read_now = read_now or any(isinstance(n, ast.Return) for n in ast.walk(ast.Module(body=stmt.body, type_ignores=[])))
            try:
                if _is_range(it):
                    if not isinstance(stmt.target, ast.Name):
                        raise err(stmt, "a range() loop's target is one name")
                    bounds = [bound(a) for a in it.args]
                    if len(bounds) == 3 and bounds[2] == 0:
                        raise err(it, "range() step must not be zero")
                    steps = range(*bounds)[:2] if training else range(*bounds)
                    if len(steps) > MAX_UNROLLED:
                        raise err(stmt, f"the unrolled loop makes over {MAX_UNROLLED:,} statements ({len(steps):,} iterations)")
                    items: list[ast.expr] = [ast.Constant(k) for k in steps]
                else:
                    prelude, items = iteration_values(it, known_length, err)
                    out.extend(prelude)
            except Unknown as e:
                if lazy:
                    forget(stmt)
                    out.append(stmt)  # unrolled when reached, once the names it goes over hold their values
                    continue
                raise err(e.node, e.message) from None
            finally:
                read_now = was_read_now
            items = items[:2] if training else items
            for value in items:
                set_k = ast.Assign(targets=[stmt.target], value=value)
                out.append(ast.copy_location(set_k, stmt))
                note(set_k)  # `for row in rows: for v in row:` reads row's length when reached
                if isinstance(stmt.target, ast.Name) and isinstance(value, ast.Constant) and type(value.value) is int:
                    ints[stmt.target.id] = value.value
                else:
                    for n in ast.walk(stmt.target):
                        ints.pop(getattr(n, "id", ""), None)
                expand(stmt.body, out)
                if len(out) > MAX_UNROLLED:
                    raise err(stmt, f"the unrolled loop makes over {MAX_UNROLLED:,} statements")
        return out

    return expand(body, [])


def exits(body: list[ast.stmt]) -> ast.stmt | None:
    """The first break or continue in a loop body that ends that loop (not one of a loop inside it), or None."""
    for stmt in body:
        if isinstance(stmt, (ast.Break, ast.Continue)):
            return stmt
        if isinstance(stmt, (ast.If, ast.With, ast.Try)):
            inner = [*getattr(stmt, "body", []), *getattr(stmt, "orelse", []), *getattr(stmt, "finalbody", []),
                     *(s for h in getattr(stmt, "handlers", []) for s in h.body)]
            if (found := exits(inner)) is not None:
                return found
    return None


def _is_range(it: ast.expr) -> bool:
    return (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
            and 1 <= len(it.args) <= 3 and not it.keywords)


def iteration_values(it: ast.expr, length: Callable[[ast.expr], int | None] | None,
                     err: Any) -> tuple[list[ast.stmt], list[ast.expr]]:
    """Statements before the loop, and what its target is set to in each iteration. What the loop goes over is
    evaluated once, before it, into a hidden name (as Python does: the body may rebind the name it came from, and a
    list written out is made whole first); each iteration takes `it#[k]`, `(start + k, it#[k])` for enumerate,
    `(a#[k], b#[k])` for zip."""
    seqs = it.args if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id in ("enumerate", "zip") \
        and not it.keywords and it.args else [it]
    if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "enumerate":
        if len(seqs) not in (1, 2) or len(seqs) == 2 and not (isinstance(seqs[1], ast.Constant) and type(seqs[1].value) is int):
            raise err(it, "enumerate takes a sequence and an int literal start")
        start, seqs = (seqs[1].value if len(seqs) == 2 else 0), seqs[:1]  # type: ignore[attr-defined]
    zipped = len(seqs) == 1 and isinstance(seqs[0], ast.Call) and isinstance(seqs[0].func, ast.Name) and \
        seqs[0].func.id == "zip" and bool(seqs[0].args) and not seqs[0].keywords  # enumerate(zip(xs, ys))
    if zipped:
        seqs = seqs[0].args  # type: ignore[attr-defined]
    n = min(_length(a, length, err) for a in seqs)
    hidden = [f"{ITER}{a.lineno}.{a.col_offset}" for a in seqs]
    prelude: list[ast.stmt] = [ast.copy_location(ast.Assign(targets=[ast.Name(id=h, ctx=ast.Store())], value=a), a)
                               for h, a in zip(hidden, seqs, strict=True)]
    names = [ast.copy_location(ast.Name(id=h, ctx=ast.Load()), a) for h, a in zip(hidden, seqs, strict=True)]
    if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "enumerate":
        return prelude, [_tuple([ast.Constant(start + k), _tuple([_item(m, k) for m in names], it) if zipped
                                 else _item(names[0], k)], it) for k in range(n)]
    if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "zip":
        return prelude, [_tuple([_item(m, k) for m in names], it) for k in range(n)]
    return prelude, [_item(names[0], k) for k in range(n)]


def _length(it: ast.expr, length: Callable[[ast.expr], int | None] | None, err: Any) -> int:
    if isinstance(it, (ast.List, ast.Tuple)) and not any(isinstance(e, ast.Starred) for e in it.elts):
        return len(it.elts)
    n = length(it) if length is not None and (isinstance(it, (ast.Name, ast.Attribute)) or _is_range(it)) else None
    if n is None:
        raise Unknown(it, "loops are unrolled, so gradtrace needs their length before they run: `for NAME in "
                           "range(...)`, or over a name holding an nn.Sequential/ModuleList, a list, a tuple or a tensor "
                           "(its rows), or over a list written out")
    return n


class Unknown(Exception):
    """A loop's length is not known (yet): `lazy` unrolling leaves the loop for later."""

    def __init__(self, node: ast.expr, message: str) -> None:
        super().__init__(message)
        self.node, self.message = node, message


def _item(seq: ast.expr, k: int) -> ast.expr:
    return ast.copy_location(ast.Subscript(value=seq, slice=ast.Constant(k), ctx=ast.Load()), seq)


def _tuple(elts: list[ast.expr], where: ast.expr) -> ast.expr:
    return ast.copy_location(ast.Tuple(elts=elts, ctx=ast.Load()), where)


def _target(t: ast.expr) -> bool:
    """A loop target: a name, or a (nested) tuple of names (`for i, (a, b) in enumerate(zip(xs, ys)):`)."""
    return isinstance(t, ast.Name) or isinstance(t, (ast.Tuple, ast.List)) and bool(t.elts) and all(map(_target, t.elts))


def _steps(body: list[ast.stmt]) -> bool:
    """A loop body that calls `.backward()` in every iteration (a statement of its own, or in a loop of its own that
    does): a training loop."""
    return any(isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) and isinstance(s.value.func, ast.Attribute)
               and s.value.func.attr == "backward" or isinstance(s, (ast.For, ast.While)) and _steps(s.body) for s in body)


QUIET_CALLS = frozenset({"len", "str", "repr", "int", "float", "bool", "round", "abs", "min", "max", "sum", "list", "tuple",
                         "sorted", "type", "isinstance", "format", "item", "tolist", "norm", "mean", "std", "var", "size",
                         "numel", "dim", "detach", "cpu", "numpy", "join", "keys", "items", "values", "named_parameters",
                         "parameters", "upper", "lower", "ljust", "rjust", "argmax", "argmin", "all", "any", "isnan",
                         "isfinite", "clone"})
"""Calls a print in a print-only loop may make and still draw nothing (`print(name, p.grad.norm().item())`); any
other (a random function, a module, a function of the program's own) may draw, and the loop runs as torch runs it."""


def _prints_only(body: list[ast.stmt]) -> bool:
    """A loop body that only prints (or passes) what draws no random numbers (`print(name, p.grad)`): it adds
    nothing to a trace. (`print(torch.randn(2))`, `print(step(w))` may draw, as torch runs them: the loop runs, and
    ProgramCompiler.printed decides.)"""
    def drawless(call: ast.Call) -> bool:
        return all((c.func.attr if isinstance(c.func, ast.Attribute) else getattr(c.func, "id", "")) in QUIET_CALLS
                   for a in [*call.args, *(k.value for k in call.keywords)] for c in ast.walk(a) if isinstance(c, ast.Call))
    return all(isinstance(s, ast.Pass) or isinstance(s, ast.Expr) and (
        isinstance(s.value, ast.Constant) or isinstance(s.value, ast.Call) and isinstance(s.value.func, ast.Name)
        and s.value.func.id == "print" and drawless(s.value)) or isinstance(s, ast.For) and _prints_only(s.body)
        for s in body)
