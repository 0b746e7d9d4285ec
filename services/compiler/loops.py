"""`for NAME in range(...)` loops unrolled into straight-line statements: the graph has no loops."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

INT_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv}
MAX_UNROLLED = 20_000
"""Statements a program may have once its `for ... in range(...)` loops are unrolled."""


def unroll(body: list[ast.stmt], err: Any, known: dict[str, int] | None = None,
           length: Callable[[ast.expr], int | None] | None = None) -> list[ast.stmt]:
    """`for NAME in range(a[, b[, step]]):` loops as their bodies repeated, each copy after `NAME = k` (what a loop
    runs, statement for statement; the graph has no loops). Bounds are int literals, or names bound earlier at the
    top level to one (`known`: such names of the scope around a function's body, and 'self.depth' for an int
    attribute of a module object); a break, continue or else clause is
    refused. Nested loops unroll too. Loops over other things unroll when their length is known before they run
    (`length`: nn.Sequential/ModuleList, lists and tuples, a tensor's first dim), each iteration after
    `NAME = X[k]` (`enumerate`, `zip` and list literals of names too)."""
    ints: dict[str, int] = dict(known or {})

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
            if isinstance(node.op, ast.FloorDiv) and right == 0:
                raise err(node, "integer division by zero in a loop's bounds")
            return INT_OPS[type(node.op)](left, right)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len" and len(node.args) == 1
                and length is not None and (n := length(node.args[0])) is not None):
            return n
        raise err(node, "a loop's range() needs constant bounds (int literals, names set to one before the loop, len() of "
                        "a function's list or module argument, and + - * // of those)")

    def expand(stmts: list[ast.stmt], out: list[ast.stmt]) -> list[ast.stmt]:
        for stmt in stmts:  # in the order the unrolled program runs them: `ints` follows the names' values
            if isinstance(stmt, (ast.Assign, ast.AugAssign)):  # a name rebound to anything but an int literal
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            ints.pop(n.id, None)
                v = stmt.value
                if (isinstance(stmt, ast.Assign) and len(targets) == 1 and isinstance(targets[0], ast.Name)
                        and isinstance(v, ast.Constant) and type(v.value) is int):
                    ints[targets[0].id] = v.value
            if isinstance(stmt, ast.If):  # loops inside either branch unroll too
                branches = ast.If(test=stmt.test, body=expand(stmt.body, []), orelse=expand(stmt.orelse, []))
                out.append(ast.copy_location(branches, stmt))
                continue
            if not isinstance(stmt, ast.For):
                out.append(stmt)
                continue
            it = stmt.iter
            if _prints_only(stmt.body) and not stmt.orelse:  # `for name, p in model.named_parameters(): print(...)`
                continue  # shows what the result holds anyway; nothing to trace
            if stmt.orelse:
                raise err(stmt.orelse[0], "a for loop's else clause is not allowed")
            for node in ast.walk(ast.Module(body=stmt.body, type_ignores=[])):
                if isinstance(node, (ast.Break, ast.Continue)):
                    raise err(node, f"'{type(node).__name__.lower()}' is not allowed: loops are unrolled")
            if not isinstance(stmt.target, (ast.Name, ast.Tuple, ast.List)) or not all(
                    isinstance(n, ast.Name) for n in getattr(stmt.target, "elts", [stmt.target])):
                raise err(stmt, "a loop's target is a name or a tuple of names")
            if _is_range(it):
                if not isinstance(stmt.target, ast.Name):
                    raise err(stmt, "a range() loop's target is one name")
                bounds = [bound(a) for a in it.args]
                if len(bounds) == 3 and bounds[2] == 0:
                    raise err(it, "range() step must not be zero")
                items: list[ast.expr] = [ast.Constant(k) for k in range(*bounds)]
            else:
                items = iteration_values(it, length, err)
            for value in items:
                set_k = ast.Assign(targets=[stmt.target], value=value)
                out.append(ast.copy_location(set_k, stmt))
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


def _is_range(it: ast.expr) -> bool:
    return (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
            and 1 <= len(it.args) <= 3 and not it.keywords)


def iteration_values(it: ast.expr, length: Callable[[ast.expr], int | None] | None, err: Any) -> list[ast.expr]:
    """What the loop's target is set to in each iteration: `X[k]`; `(start + k, X[k])` for enumerate(X);
    `(A[k], B[k])` for zip(A, B); the k-th element of a list or tuple written out (no calls: Python
    evaluates the whole list before the loop, and a call may draw random numbers)."""
    if isinstance(it, (ast.List, ast.Tuple)):
        if any(isinstance(n, (ast.Call, ast.Starred)) for n in ast.walk(it)):  # a call may draw: Python draws first
            raise err(it, "a loop over a list that computes its items: assign the list to a name first")
        return list(it.elts)
    if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id in ("enumerate", "zip") and not it.keywords:
        if it.func.id == "enumerate" and len(it.args) in (1, 2):
            start = it.args[1].value if len(it.args) == 2 and isinstance(it.args[1], ast.Constant) else 0
            if not isinstance(start, int):
                raise err(it, "enumerate's start must be an int literal")
            n = _length(it.args[0], length, err)
            return [_tuple([ast.Constant(start + k), _item(it.args[0], k)], it) for k in range(n)]
        if it.func.id == "zip" and it.args:
            n = min(_length(a, length, err) for a in it.args)
            return [_tuple([_item(a, k) for a in it.args], it) for k in range(n)]
    return [_item(it, k) for k in range(_length(it, length, err))]


def _length(it: ast.expr, length: Callable[[ast.expr], int | None] | None, err: Any) -> int:
    n = length(it) if length is not None and isinstance(it, (ast.Name, ast.Attribute)) else None
    if n is None:
        raise err(it, "loops are unrolled, so gradtrace needs their length before they run: `for NAME in range(...)`, "
                      "or over an nn.Sequential/ModuleList, list, tuple or tensor that a function's arguments hold "
                      "(self.layers), or over a list written out")
    return n


def _item(seq: ast.expr, k: int) -> ast.expr:
    return ast.copy_location(ast.Subscript(value=seq, slice=ast.Constant(k), ctx=ast.Load()), seq)


def _tuple(elts: list[ast.expr], where: ast.expr) -> ast.expr:
    return ast.copy_location(ast.Tuple(elts=elts, ctx=ast.Load()), where)


def _prints_only(body: list[ast.stmt]) -> bool:
    """A loop body that only prints (or passes): it adds nothing to a trace."""
    return all(isinstance(s, ast.Pass) or isinstance(s, ast.Expr) and (
        isinstance(s.value, ast.Constant) or isinstance(s.value, ast.Call) and isinstance(s.value.func, ast.Name)
        and s.value.func.id == "print") or isinstance(s, ast.For) and _prints_only(s.body) for s in body)
