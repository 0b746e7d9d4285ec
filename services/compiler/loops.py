"""`for NAME in range(...)` loops unrolled into straight-line statements: the graph has no loops."""

from __future__ import annotations

import ast
from typing import Any

MAX_UNROLLED = 20_000
"""Statements a program may have once its `for ... in range(...)` loops are unrolled."""


def unroll(body: list[ast.stmt], err: Any, known: dict[str, int] | None = None) -> list[ast.stmt]:
    """`for NAME in range(a[, b[, step]]):` loops as their bodies repeated, each copy after `NAME = k` (what a loop
    runs, statement for statement; the graph has no loops). Bounds are int literals, or names bound earlier at the
    top level to one (`known`: such names of the scope around a function's body, and 'self.depth' for an int
    attribute of a module object); a break, continue or else clause is
    refused. Nested loops unroll too."""
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
        raise err(node, "a loop's range() needs constant bounds (int literals, or names set to one before the loop)")

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
            if not (isinstance(stmt.target, ast.Name) and isinstance(it, ast.Call) and isinstance(it.func, ast.Name)
                    and it.func.id == "range" and 1 <= len(it.args) <= 3 and not it.keywords):
                raise err(stmt, "only `for NAME in range(...)` loops are traced (they are unrolled)")
            if stmt.orelse:
                raise err(stmt.orelse[0], "a for loop's else clause is not allowed")
            for node in ast.walk(ast.Module(body=stmt.body, type_ignores=[])):
                if isinstance(node, (ast.Break, ast.Continue)):
                    raise err(node, f"'{type(node).__name__.lower()}' is not allowed: loops are unrolled")
            bounds = [bound(a) for a in it.args]
            if len(bounds) == 3 and bounds[2] == 0:
                raise err(it, "range() step must not be zero")
            for k in range(*bounds):
                set_k = ast.Assign(targets=[ast.Name(id=stmt.target.id, ctx=ast.Store())], value=ast.Constant(k))
                out.append(ast.copy_location(set_k, stmt))
                ints[stmt.target.id] = k
                expand(stmt.body, out)
                if len(out) > MAX_UNROLLED:
                    raise err(stmt, f"the unrolled loop makes over {MAX_UNROLLED:,} statements")
        return out

    return expand(body, [])
