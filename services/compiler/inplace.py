"""In-place changes of tensors in a program, as torch makes them: `x += ...` and `y.add_(1)` give a new node that
every name bound to the tensor then means; refused where torch refuses them (a leaf that requires grad, a change of
shape or dtype) and on views, whose base torch would change too. Under no_grad, `w += 0.5` changes a leaf's value."""

from __future__ import annotations

import ast
from typing import Any

from services.compiler.creation import TensorCreation
from services.compiler.values import Instance, ModuleInst, T, is_number
from services.errors import SpecError
from services.ir import Event


class InPlace(TensorCreation):
    """`x += ...`, `y.add_(...)`, `w -= 0.1` under no_grad (ProgramCompiler keeps the names and the grad mode)."""

    no_grad: bool = False
    via_data: bool = False

    def binding_name(self, var: str) -> str:
        """The node name of this binding of `var` (ProgramCompiler)."""
        raise NotImplementedError

    def in_place_call(self, node: ast.expr) -> bool:
        """`y.add_(1)` (an op's in-place method on a name), as a statement or a right-hand side."""
        f = node.func if isinstance(node, ast.Call) else None
        return isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.attr.endswith("_") and f.attr[:-1] in self.methods

    def in_place_method(self, t: T, m: str, node: ast.Call) -> T:
        """`y.add_(1)`, `h.relu_()` on a computed tensor: the op, then every name bound to y sees the result (as
        for `y += 1`); refused where torch refuses it, and on a view."""
        var = self.src(node.func.value)[:40]  # type: ignore[attr-defined]
        if t.name in self.builder.leaves and (self.no_grad or self.via_data):
            raise self.err(node, f"in-place .{m}() on the leaf '{var}' under torch.no_grad() or through .data is not traced "
                                 "(fill_, zero_, add_, mul_, div_, clamp_, uniform_, normal_ and `-=` by a number are)")
        self.check_in_place(t, var, f"`.{m}()`", f"`{var} = {var}.{m[:-1]}(...)`", node)
        if node is self.stmt_expr and self.stmt_name is not None:
            name = self.name_for(node)
        else:
            name = self.binding_name(var) if var.isidentifier() else self.temp()
        new = self.apply(self.methods[m[:-1]], node, receiver=t, out=name)
        self.changed_in_place(t, new, var, node)
        return new

    def leaf_update(self, t: T, stmt: ast.AugAssign) -> None:
        """`w += c` / `w *= c` on a leaf under no_grad, c a number: the leaf's value changes (a stream event, in
        order with the draws); by a tensor (an optimizer's step) it is not traced."""
        method = {ast.Add: "add_", ast.Sub: "add_", ast.Mult: "mul_", ast.Div: "div_"}.get(type(stmt.op))
        try:
            c = self.const(stmt.value)
        except SpecError:  # a tensor
            c = None
        if method is None or not is_number(c):
            raise self.err(stmt, f"an in-place update of '{self.src(stmt.target)}' by a tensor under torch.no_grad() (an optimizer's step) is "
                                 "not traced: gradtrace shows one forward and backward pass, before any update")
        self.written(t, stmt)
        self.stream.events.append(Event("inplace", t.name, {"method": method, "args": [-c if isinstance(stmt.op, ast.Sub) else c]}))

    def index_write(self, target: ast.Subscript, x: T, value: ast.expr, stmt: ast.stmt) -> None:
        """`pe[:, 0::2] = torch.sin(...)`: torch writes into the tensor (grad_fn CopySlices); here a setitem node,
        which every name bound to it then means. Refused where torch refuses it and on views, as `x += ...` is."""
        if not isinstance(target.value, ast.Name):
            raise self.err(stmt, f"`{self.src(target)[:60]} = ...` writes into a tensor that no name holds (a view, an "
                                 "attribute or .data): gradtrace traces index writes into a tensor bound to a name, "
                                 "as in `pe[:, 0::2] = torch.sin(...)`")
        var = target.value.id
        how = f"`{var}[...] = ...`"
        if x.name in self.builder.leaves and self.builder.grad[x.name]:
            raise self.err(stmt, f"'{var}' is a leaf tensor that requires grad: torch refuses {how} on it (a leaf "
                                 "Variable that requires grad is being used in an in-place operation); under "
                                 "torch.no_grad() it would change the leaf's starting value, which gradtrace traces "
                                 "for fill_, zero_, uniform_, normal_ and copy_ only")
        self.check_in_place(x, var, how, f"`{var} = torch.where(mask, value, {var})`", stmt)
        self.begin(var, value, [])  # the value's nodes are var#1, var#2, ...; the write itself is the new `var`
        v = self.expr(value)
        if not isinstance(v, T) and not (is_number(v) or isinstance(v, bool)):
            raise self.err(value, f"{how} takes a tensor or a number, got {self.src(value)[:60]!r}")
        index, tensors = self.index_of(target)
        new = self.emit("setitem", [x, v, *tensors], {"index": index}, stmt, name=self.binding_name(var))  # type: ignore[arg-type]
        self.changed_in_place(x, new, var, stmt)

    def mark_written(self, new: str, old: str) -> None:
        """Node `new` changes tensor `old` in place: the torch engine bumps old's version, so that an op that saved it
        fails at backward() as in torch. Not after the traced backward(): what follows it changes nothing that it
        used (`loss.backward(); y[0] = 0` runs in torch)."""
        res = getattr(self, "res", None)
        if res is not None and res.output is not None:
            return
        node = next((n for n in reversed(self.builder.nodes) if n.name == new), None)
        if node is not None:
            node.writes = old

    def check_in_place(self, t: T, var: str, how: str, instead: str, stmt: ast.AST) -> None:
        """`x += ...` or `x.add_(...)` on a tensor changes it in place, as torch does: refused where torch refuses it
        (a leaf that requires grad) or where it would change another tensor too (a view)."""
        b = self.builder
        if t.name in b.leaves and b.grad[t.name] and not self.no_grad:  # allowed under no_grad
            raise self.err(stmt, f"'{var}' is a leaf tensor that requires grad: torch refuses {how} on it (a leaf "
                                 f"Variable that requires grad is being used in an in-place operation); write {instead} "
                                 "for a new tensor, or change it under torch.no_grad() with .data")
        if t.name not in b.leaves and b.grad[t.name] and (self.no_grad or self.via_data):
            raise self.err(stmt, f"{how} on '{var}', which requires grad, under torch.no_grad() or through .data is not "
                                 "traced (torch changes its values and keeps its graph)")
        bound = {v.name for v in self.scope.values() if isinstance(v, T)}
        stack, seen = list(b.views.get(t.name, ())), set()
        while stack:  # views of it (and of its views) that a name still holds would change with it in torch
            k = stack.pop()
            if k in bound:
                raise self.err(stmt, f"{how} changes '{var}' in place, and '{k}' is a view of it: torch would change "
                                     f"'{k}' too, which gradtrace does not trace; write {instead} for a new tensor")
            if k not in seen:
                seen.add(k)
                stack.extend(b.views.get(k, ()))
        node = next((n for n in reversed(b.nodes) if n.name == t.name), None)
        if node is not None and node.op.view:
            base = node.inputs[0]
            raise self.err(stmt, f"{how} changes '{var}' in place, and '{var}' is a view of '{base}' ({node.op.name}): "
                                 f"torch would change '{base}' too, which gradtrace does not trace; write {instead} for a new tensor")

    def changed_in_place(self, old: T, new: T, var: str, stmt: ast.AST) -> None:
        """After an in-place change, every name bound to the tensor sees the new value (`b = a; b += 1` changes
        a too). In place, torch keeps the tensor's shape and dtype: a change of either is refused."""
        if self.shape(new) != self.shape(old):
            raise self.err(stmt, f"`{var}` has shape {list(self.shape(old))}, and in place it cannot become "
                                 f"{list(self.shape(new))} (torch: output shape doesn't match the broadcast shape)")
        was, now = self.dtype_of(old), self.dtype_of(new)
        if was != now:  # torch stores a float64 result into float32 (rounding it), and refuses float into int64
            raise self.err(stmt, f"`{var}` is {was}: in place, torch stores the {now} result as {was}"
                                 + (", which gradtrace does not trace" if was.startswith("float") else " (it refuses to)")
                                 + f"; write `{var} = ...` with the dtype cast you want")
        self.mark_written(new.name, old.name)
        callers = [m for c in getattr(self, "callers", []) for m in getattr(c, "maps", [c])]
        seen: set[int] = set()
        for scope in [*getattr(self.scope, "maps", [self.scope]), *callers]:  # a call's locals, the globals, its callers'
            _swap(scope, old, new, seen)


def _swap(v: Any, old: T, new: T, seen: set[int]) -> Any:
    """v with every reference to the tensor `old` replaced by `new`, wherever the program can reach it again: names,
    lists, tuples and dicts (nested), objects' attributes (`self.buf`, buffers) and the modules containers hold.
    Mutable holders change in place; a tuple holding it is rebuilt."""
    if isinstance(v, T):
        return new if v.name == old.name else v
    if isinstance(v, tuple):
        items = [_swap(x, old, new, seen) for x in v]
        return tuple(items) if any(a is not b for a, b in zip(items, v, strict=True)) else v
    if id(v) in seen or not isinstance(v, (list, dict, Instance, ModuleInst)) and not hasattr(v, "maps"):
        return v
    seen.add(id(v))
    if isinstance(v, list):
        v[:] = [_swap(x, old, new, seen) for x in v]
    elif isinstance(v, dict) or hasattr(v, "maps"):
        for k, x in list(v.items()):
            y = _swap(x, old, new, seen)
            if y is not x:
                v[k] = y
    elif isinstance(v, Instance):
        _swap(v.attrs, old, new, seen)
    else:
        _swap(v.children, old, new, seen)
    return v
