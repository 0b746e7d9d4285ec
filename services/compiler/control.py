"""A program's control flow and Python's builtins, folded at compile time: `if` picks the branch its condition (a
constant by now) names, `for` over what was not known before the statements ran is unrolled when reached, `assert`
on constants is checked; sum, zip, enumerate and reversed work on lists as Python's do; isinstance and hasattr
answer as they would in torch (`if isinstance(m, nn.Linear):` in an init function)."""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from services.compiler.expressions import ExpressionCompiler
from services.compiler.loops import MAX_UNROLLED, Unknown, exits, iteration_values, unroll
from services.compiler.values import Epoch, Loader, T
from services.errors import SpecError


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

    def for_statement(self, stmt: ast.For | ast.While) -> None:
        """A loop over what was not known before the statements ran (`for stride in strides:`, a list the code built;
        `while i < n:` after `n = x.size(0)`): unrolled now that the names hold their values; its bindings join the
        counts (the last takes the bare name)."""
        known = {k: v for k, v in self.scope.items() if type(v) is int}
        it = stmt.iter if isinstance(stmt, ast.For) else None
        if isinstance(stmt, ast.For) and isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range" \
                and not it.keywords:
            try:
                bounds = [self.const(a) for a in it.args]  # range(x.size()[0]): known now that the names hold values
            except SpecError:
                bounds = []  # (unroll says why it is not a constant)
            if bounds and all(type(b) is int for b in bounds):
                it = ast.copy_location(ast.Call(func=it.func, args=[ast.Constant(b) for b in bounds], keywords=[]), it)
                stmt = ast.copy_location(ast.For(target=stmt.target, iter=it, body=stmt.body, orelse=stmt.orelse), stmt)
        if isinstance(stmt, ast.For) and (it := self.evaluated_iterable(stmt.iter)) is not stmt.iter:
            stmt = ast.copy_location(ast.For(target=stmt.target, iter=it, body=stmt.body, orelse=stmt.orelse), stmt)
        scope = self.scope  # (what a loop inside reads: the names its statements bind take new values as they run)
        body = unroll([stmt], self.err, known, self.runtime_length, lazy=True, value=self.runtime_int,
                      harmless=lambda call: self.harmless_call(call, scope), read_lengths=True)  # type: ignore[attr-defined]
        if isinstance(stmt, ast.While) and body and body[0] is stmt:
            self.while_loop(stmt)
            return
        if isinstance(stmt, ast.For) and body and body[0] is stmt and exits(stmt.body) is not None:
            self.for_loop(stmt)
            return
        if body and body[0] is stmt:
            unroll([stmt], self.err, known, self.runtime_length, value=self.runtime_int)  # raises: why its length is unknown
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

    def while_loop(self, stmt: ast.While) -> None:
        """A while loop run as Python runs it, on the values its names hold as it goes (`while t < 1.0: t += dt`,
        `while len(stack) > 1:`, `while True: ... if step == n: break`): each iteration's statements are traced in
        turn. Its bindings are named var@k as they come; the last of each takes the bare name when the program is
        done (Finish.finish_names). A condition on a tensor's values is refused (it depends on the data)."""
        if stmt.orelse:
            raise self.err(stmt.orelse[0], "a while loop's else clause is not allowed")
        statements = 0
        with self.running(stmt):
            while True:
                self.begin("t", stmt.test, [])
                go = self.expr(stmt.test)
                if isinstance(go, T):
                    raise self.err(stmt.test, "a while loop's condition must not read a tensor's values (`while loss > "
                                              "0.01`): it depends on the data, and gradtrace traces one path (write a "
                                              "for loop over range(...), or a condition on Python numbers)")
                if not go:
                    return
                statements += len(stmt.body)
                if statements > MAX_UNROLLED:
                    raise self.err(stmt, f"the while loop runs over {MAX_UNROLLED:,} statements (does its condition ever "
                                         "become false?)")
                if not self.iteration(stmt.body):
                    return

    def for_loop(self, stmt: ast.For) -> None:
        """A for loop that may end early (`if i == k: break`, `continue`), run as Python runs it: what it goes over is
        evaluated once, then each iteration binds the target and traces the body in turn (naming as while_loop's)."""
        if stmt.orelse:
            raise self.err(stmt.orelse[0], "a for loop's else clause is not allowed")
        it = self.evaluated_iterable(stmt.iter)
        try:
            if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range" and not it.keywords:
                bounds = [self.const(a) for a in it.args]
                if not bounds or not all(type(b) is int for b in bounds) or len(bounds) == 3 and bounds[2] == 0:
                    raise self.err(it, "range() takes ints, its step not zero")
                prelude, items = [], [ast.Constant(k) for k in range(*bounds)]
            else:
                prelude, items = iteration_values(it, self.runtime_length, self.err)
        except Unknown as e:
            raise self.err(e.node, e.message) from None
        if len(items) * len(stmt.body) > MAX_UNROLLED:
            raise self.err(stmt, f"the loop runs over {MAX_UNROLLED:,} statements ({len(items):,} iterations)")
        for s in prelude:
            self.statement(s)
        with self.running(stmt):
            for item in items:
                self.statement(ast.copy_location(ast.Assign(targets=[stmt.target], value=item), stmt))
                if not self.iteration(stmt.body):
                    return

    def iteration(self, body: list[ast.stmt]) -> bool:
        """One pass of a running loop's body; False when a break ended the loop."""
        try:
            for s in body:
                self.line = s.lineno
                self.statement(s)
        except LoopExit as e:
            return e.kind != "break"
        return True

    @contextmanager
    def running(self, stmt: ast.While | ast.For) -> Iterator[None]:
        """A loop running as Python runs it: its bindings are named var@k as they come (the last of each takes the bare
        name when the program is done), a break or continue reaches it, and afterwards the binding counts are the
        true ones (what was counted for it before it ran was its body once)."""
        outer = self.bindings  # type: ignore[has-type]
        self.bindings = Counter()
        self.count_bindings(stmt.body)  # type: ignore[attr-defined]
        counted, self.bindings = self.bindings, outer
        seen = Counter(self.seen)  # type: ignore[attr-defined]
        self.loose += 1  # type: ignore[attr-defined]
        self.loop_depth += 1  # type: ignore[attr-defined]
        self.loops_ran = True
        try:
            yield
        finally:
            self.loose -= 1  # type: ignore[attr-defined]
            self.loop_depth -= 1  # type: ignore[attr-defined]
            ran = Counter(self.seen)  # type: ignore[attr-defined]
            ran.subtract(seen)  # the bindings it made, against those counted: later ones are named by the true count
            for var in set(counted) | {v for v, n in ran.items() if n}:
                self.bindings[var] += ran[var] - counted[var]

    def evaluated_iterable(self, it: ast.expr) -> ast.expr:
        """What a loop goes over, with each call in it but range/enumerate/zip evaluated once into a hidden name, as
        Python does: `model.parameters()`, `enumerate(model.named_parameters())`, `zip(a.parameters(), b.parameters())`."""
        held = self.scope.get(it.id) if isinstance(it, ast.Name) else None
        if isinstance(held, Loader):  # `for xb, yb in loader:` iter(loader), as Python calls it
            hidden = f"iter#{it.lineno}.{it.col_offset}"
            self.scope[hidden] = self.epoch(held, it)  # type: ignore[attr-defined]
            return ast.copy_location(ast.Name(id=hidden, ctx=ast.Load()), it)
        if isinstance(held, Epoch):  # `it = iter(loader); next(it); for xb in it:` goes on from where it is
            held.offset = held.position
        if isinstance(it, (ast.Name, ast.Attribute, ast.List, ast.Tuple)):
            return it
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id in ("range", "enumerate", "zip"):
            if it.func.id == "range" or it.keywords:
                return it
            args = [self.evaluated_iterable(a) if k == 0 or it.func.id == "zip" else a for k, a in enumerate(it.args)]
            if all(a is b for a, b in zip(args, it.args, strict=True)):
                return it
            return ast.copy_location(ast.Call(func=it.func, args=args, keywords=[]), it)
        hidden = f"iter#{it.lineno}.{it.col_offset}"  # model.parameters(): evaluated once, as Python does
        v = self.expr(it)
        self.scope[hidden] = self.epoch(v, it) if isinstance(v, Loader) else v  # type: ignore[attr-defined]
        return ast.copy_location(ast.Name(id=hidden, ctx=ast.Load()), it)

    def runtime_int(self, node: ast.expr) -> int | None:
        """A loop bound read now (loops.is_shape_query: `x.size(0)`), None when it is no int (or its tensor is not
        bound yet: made by a statement of the loop around it, before it)."""
        head = node
        while not isinstance(head, ast.Name) and isinstance(head, (ast.Attribute, ast.Subscript, ast.Call)):
            head = head.func if isinstance(head, ast.Call) else head.value
        if isinstance(head, ast.Name) and head.id not in self.scope:
            return None
        v = self.expr(node)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def runtime_length(self, it: ast.expr) -> int | None:
        """How many items a loop reached now goes over (None: not something gradtrace iterates)."""
        if isinstance(it, ast.Name) and it.id not in self.scope:
            return None  # bound by an outer loop's iteration that has not run yet: unrolled when reached
        return self.length_of(self.expr(it))  # type: ignore[attr-defined]


class LoopExit(Exception):
    """`break` or `continue` reached in a while loop that runs as Python runs it."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind
