"""How a call of the program's own function ends: its statements up to the return reached (a return inside an `if`
whose condition is known now ends it there), and the caller's names for what it returns (`out = model(x)`)."""

from __future__ import annotations

import ast
from collections import Counter

from services.compiler.expressions import ExpressionCompiler
from services.compiler.values import Value


class FunctionReturns(ExpressionCompiler):
    """body, block, reached and returned; statement, static_condition, condition and watched are the ProgramCompiler's."""

    return_shape: Shape | None = None
    """Inside a call: the nesting of the caller's tuple target (`out, (h, c) = ...`), None for a name."""

    def reached(self, stmts: list[ast.stmt]) -> tuple[bool | None, ast.Return | None]:
        """The return a call's statements reach, when the conditions of the ifs on the way are known before they run
        (`if self.reduction == 'mean': return loss.mean()`): (True, the return) where they return, (False, None) where
        they run through, (None, None) where an if's condition is not known (its names then keep their own)."""
        for stmt in stmts:
            if isinstance(stmt, ast.Return):
                return True, stmt
            if isinstance(stmt, ast.With) and has_return(stmt):
                done, ret = self.reached(stmt.body)
                if done is not False:
                    return done, ret
                continue
            if isinstance(stmt, ast.If) and has_return(stmt):
                known = self.static_condition(stmt.test)
                if known is None:
                    return None, None
                done, ret = self.reached(stmt.body if known else stmt.orelse)
                if done is not False:
                    return done, ret
        return False, None

    def body(self, stmts: list[ast.stmt], outers: list[str], prefix: str) -> Value:
        """A function's statements; what its return gives."""
        return self.block(stmts, outers, prefix)[1]

    def block(self, stmts: list[ast.stmt], outers: list[str], prefix: str) -> tuple[bool, Value]:
        """Statements of a function up to its return: (whether it returned, the value). An `if` with a return in it
        (`if self.reduction == 'mean': return loss.mean()`, `if x is None: return a` / `else: return b`) runs the branch
        its condition picks, and the function ends there when that branch returns, as in Python."""
        for stmt in stmts:
            self.line = stmt.lineno
            if isinstance(stmt, ast.Return):
                if stmt.value is None:
                    return True, None
                return True, self.watched(stmt, lambda v=stmt.value: self.returned(v, outers, prefix))  # type: ignore[attr-defined,misc]
            if isinstance(stmt, ast.With) and has_return(stmt):  # `with torch.no_grad(): return teacher(x)`
                with self.with_mode(stmt):  # type: ignore[attr-defined]
                    done, value = self.block(stmt.body, outers, prefix)
                if done:
                    return True, value
                continue
            if isinstance(stmt, ast.If) and has_return(stmt):
                self.begin("t", stmt.test, [])  # type: ignore[attr-defined]
                done, value = self.block(stmt.body if self.condition(stmt.test) else stmt.orelse, outers, prefix)
                if done:
                    return True, value
                continue
            self.statement(stmt)  # type: ignore[attr-defined]
        return False, None

    def returned(self, value: ast.expr, outers: list[str], prefix: str) -> Value:
        """A return's value, named by the caller's targets: `out = model(x)` names it out, `m, v = stats(x)` names
        the elements of `return a, b` m and v, `out, (h, c) = cell(x)` those of `return y, (h1, c1)` (a value that is
        a node already keeps its name)."""
        self.counter = 0
        if len(outers) > 1 and isinstance(value, ast.Tuple) and len(value.elts) == len(outers):
            items = []
            for elt, name in zip(value.elts, outers, strict=True):
                self.begin_named(elt, name)
                items.append(self.expr(elt))
            return tuple(items)
        if len(outers) > 1 and (flat := nested(value, self.return_shape)) is not None and len(flat) == len(outers):
            names = dict(zip(map(id, flat), outers, strict=True))
            return self.nested_value(value, names)
        self.begin_named(value, outers[0] if len(outers) == 1 else self.fresh(f"{prefix}out"))
        return self.expr(value)


    def nested_value(self, value: ast.expr, names: dict[int, str]) -> Value:
        """A returned (nested) tuple's value, each leaf expression named by `names` (by the expression's id)."""
        if isinstance(value, ast.Tuple):
            return tuple(self.nested_value(e, names) for e in value.elts)
        self.begin_named(value, names[id(value)])
        return self.expr(value)


Shape = int | tuple["Shape", ...]
"""A tuple target's nesting: 1 for a name, a tuple of its items' for a tuple (`out, (h, c)`: (1, (1, 1)))."""


def target_shape(target: ast.expr) -> Shape:
    """The nesting of an assignment's target."""
    return tuple(target_shape(e) for e in target.elts) if isinstance(target, (ast.Tuple, ast.List)) else 1


def nested(value: ast.expr | None, shape: Shape | None) -> list[ast.expr] | None:
    """The leaf expressions of a returned tuple `y, (h1, c1)` in order, when its nesting is the target's; else None."""
    if value is None or shape is None:
        return None
    if shape == 1:
        return [value]
    if not isinstance(value, ast.Tuple) or not isinstance(shape, tuple) or len(value.elts) != len(shape):
        return None
    parts = [nested(e, s) for e, s in zip(value.elts, shape, strict=True)]
    return None if any(p is None for p in parts) else [e for p in parts for e in p]  # type: ignore[union-attr]


def _returned_names(last: ast.Return | None, outers: list[str], bindings: Counter[str],
                    shape: Shape | None = None) -> dict[str, str]:
    """`return h` (or `return a, b`, `return [w, b]`, `return y, (h, c)`) of variables the body binds, named by the
    caller's targets."""
    if not outers or last is None or last.value is None:
        return {}
    elts = last.value.elts if isinstance(last.value, (ast.Tuple, ast.List)) and len(outers) > 1 else [last.value]
    if len(elts) != len(outers) and (flat := nested(last.value, shape)) is not None:
        elts = flat
    if len(elts) != len(outers):
        return {}
    names = {e.id: o for e, o in zip(elts, outers, strict=True) if isinstance(e, ast.Name) and bindings[e.id]}
    return names if len(set(names)) == len(names) == len(set(names.values())) else {}


def has_return(stmt: ast.If | ast.With) -> bool:
    """Whether an `if` returns in one of its branches, or a `with` block in its body (inside nested ifs and withs; a
    loop's return is refused where it is)."""
    return any(isinstance(s, ast.Return) or isinstance(s, (ast.If, ast.With)) and has_return(s)
               for s in (*stmt.body, *getattr(stmt, "orelse", [])))


def always_returns(stmts: list[ast.stmt]) -> bool:
    """Whether these statements end in a return whichever way their ifs go."""
    return any(isinstance(s, ast.Return) or isinstance(s, ast.If) and always_returns(s.body) and always_returns(s.orelse)
               or isinstance(s, ast.With) and always_returns(s.body) for s in stmts)
