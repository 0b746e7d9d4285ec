"""In-place changes of tensors in a program, as torch makes them: `x += ...` and `y.add_(1)` give a new node that
every name bound to the tensor then means; refused where torch refuses them (a leaf that requires grad, a change of
shape or dtype) and on views, whose base torch would change too. Under no_grad, `w += 0.5` changes a leaf's value."""

from __future__ import annotations

import ast
import math
from typing import Any

import numpy as np

from services.compiler.build import views_input
from services.compiler.creation import TensorCreation, without_data
from services.compiler.expressions import _kind
from services.compiler.values import Instance, ModuleInst, T, is_number
from services.errors import ShapeError, SpecError
from services.ir import Event
from services.ops.indexing import GetitemArgs, plan_shape, value_shape

_OPS: dict[type, str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.MatMult: "@",
                         ast.Mod: "%", ast.FloorDiv: "//", ast.BitXor: "^", ast.BitAnd: "&", ast.BitOr: "|",
                         ast.LShift: "<<", ast.RShift: ">>"}
"""An augmented assignment's operator as written."""


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
        return isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.attr.endswith("_") \
            and (f.attr[:-1] in self.methods or f.attr == "detach_") and f.value.id not in self.aliases  # not F.relu_(h)

    def in_place_chain(self, node: ast.expr) -> tuple[ast.Name, int] | None:
        """`y.mul_(0.5).add_(1.0)`: the name the chain changes and how many in-place ops it runs on it (each a binding
        of y, as `y.mul_(0.5)` then `y.add_(1.0)` would be); None when it is no such chain."""
        count = 0
        while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr.endswith("_") and (
                node.func.attr[:-1] in self.methods):
            count, node = count + 1, node.func.value
        return (node, count) if count > 1 and isinstance(node, ast.Name) and node.id not in self.aliases else None

    def module_state(self, t: T) -> bool:
        """A leaf a module holds (a parameter, frozen or not; a BatchNorm's running buffer): its in-place change must
        reach the module (a stream event on the leaf), not make a new node only the program's names see."""
        leaf = self.builder.leaves.get(t.name)
        return leaf is not None and (leaf.kind == "parameter" or t.name in self.builder.module_buffers)

    def in_place_method(self, t: T, m: str, node: ast.Call, op: Any = None) -> T:
        """`y.add_(1)`, `h.relu_()` on a computed tensor: the op, then every name bound to y sees the result (as
        for `y += 1`); refused where torch refuses it, and on a view. `op`: a function's op called with the tensor
        first (`F.leaky_relu(h, 0.2, inplace=True)`)."""
        var = self.src(node.args[0] if op is not None else _chain_root(node.func.value))[:40]  # type: ignore[attr-defined]
        if t.name in self.builder.leaves and (self.builder.grad[t.name] or self.module_state(t)) and (self.no_grad or self.via_data):
            raise self.err(node, f"in-place .{m}() on the leaf '{var}' under torch.no_grad() or through .data is not traced "
                                 "(fill_, zero_, add_, sub_, mul_, div_, clamp_, uniform_, normal_ and `-=` by a number are)")
        self.check_in_place(t, var, f"`.{m}()`", f"`{var} = {var}.{m[:-1]}(...)`", node)
        name = self.in_place_name(t, node, _chain_root(node.args[0] if op is not None else node.func.value), var)  # type: ignore[attr-defined]
        new = self.apply(op, node, out=name) if op is not None else self.apply(self.methods[m[:-1]], node, receiver=t, out=name)
        self.changed_in_place(t, new, var, node)
        return new

    def in_place_name(self, t: T, node: ast.Call, root: ast.expr, var: str) -> str:
        """The name of what an in-place method makes: the statement's variable, a binding of the name it changes
        (`h.mul_(0.5).add_(1.0)`: h's), or for an object's attribute `self.running_mean.mul_(0.9)` bn.running_mean#2,
        the latest of which takes the attribute's name (Finish.latest_attributes)."""
        owner = self.scope.get(root.value.id) if isinstance(root, ast.Attribute) and isinstance(root.value, ast.Name) else None
        if node is self.stmt_expr and self.stmt_name is not None:
            return self.name_for(node)
        if isinstance(owner, Instance) and owner.attrs.get(root.attr) is t:  # type: ignore[union-attr]
            return self.fresh(f"{owner.path}.{root.attr}")  # type: ignore[union-attr]
        return self.binding_name(var) if var.isidentifier() else self.temp()

    def metadata_in_place(self, t: T, m: str, node: ast.Call) -> T:
        """`target.unsqueeze_(-1)` (the char-RNN tutorial), `x.squeeze_()`, `h.t_()`, `h.transpose_(0, 1)`: the tensor
        takes the new shape in place; `h.detach_()`: it leaves the graph; every name bound to it sees it, views of it
        keep theirs (no data changes). For the shape methods the torch engine runs torch's in-place form on the
        tensor (Node.in_place): torch's grad_fn (UnsqueezeBackward1) and version bump, so a backward() through
        something that saved the tensor fails as torch's does."""
        var = self.src(node.func.value)[:40]  # type: ignore[attr-defined]
        if m == "detach_":
            if any(t.name in made for made in self.builder.views.values()):
                raise self.err(node, f"'{var}' is a view: torch refuses `.detach_()` on it (Can't detach views in-place. "
                                     f"Use detach() instead); write `{var} = {var}.detach()`")
        else:
            self.check_in_place(t, var, f"`.{m}()`", f"`{var} = {var}.{m[:-1]}(...)`", node, data=False)
        name = self.in_place_name(t, node, _chain_root(node.func.value), var)  # type: ignore[attr-defined]
        if m == "detach_":
            new = self.emit("detach", [t], {}, node, name=name) if self.builder.grad[t.name] else t  # type: ignore[attr-defined]
        else:
            new = self.apply(self.methods[m[:-1]], node, receiver=t, out=name)
            made = self.builder.nodes[-1]
            if made.name == new.name and made.op.in_place:  # torch's own in-place form runs (UnsqueezeBackward1)
                made.in_place = True
        if new is not t:
            self.changed_in_place(t, new, var, node, bump=False, reshaped=True)  # (see the docstring's caveat)
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

    def index_write(self, target: ast.Subscript, value: ast.expr | Any, stmt: ast.stmt) -> None:
        """`pe[:, 0::2] = torch.sin(...)`: torch writes into the tensor (grad_fn CopySlices); here a setitem node,
        which every holder of it then means (names, containers, attributes). Refused where torch refuses it and on
        views, as `x += ...` is. `x[i][j] = v` with an int i is `x[i, j] = v`; under torch.no_grad() (or through
        .data) a parameter's starting value changes: `emb.weight[pad] = 0.0`. `value`: an expression, or what an
        augmented assignment computed already (`y[:, 0] += 1`)."""
        chain: list[ast.expr] = []  # the index expressions, outermost last: holder[k1][k2]...[index]
        root: ast.expr = target
        while isinstance(root, ast.Subscript):
            chain.insert(0, root.slice)
            root = root.value
        via_data = without_data(root) is not root
        root = without_data(root)
        x = self.expr(root)
        keys: list[Any] = []
        while len(chain) > 1 and isinstance(x, (list, tuple, dict)):  # lst[0][1] = v: the list's tensor, written
            key = self.const(chain.pop(0))
            try:
                x = x[key]
            except (IndexError, KeyError, TypeError):
                raise self.err(stmt, f"{self.src(root)[:40]}{''.join(f'[{k!r}]' for k in keys)} has no item {key!r}") from None
            keys.append(key)
        var = self.src(root)[:40] + "".join(f"[{k!r}]" for k in keys)
        how = f"`{var}[...] = ...`"
        if isinstance(x, (dict, list)):  # d["a"]["b"] = 3: a nested container's item
            if isinstance(value, ast.AST):
                self.item_write(x, chain[0], value, stmt)  # type: ignore[attr-defined]
                return
            key = self.const(chain[0])
            old = x[key]  # type: ignore[index]
            if isinstance(old, T) and isinstance(value, T):  # accs[k] += v: that tensor changes in place
                self.check_in_place(old, f"{var}[{key!r}]", f"`{var}[{key!r}] += ...`", f"`{var}[{key!r}] = {var}[{key!r}] + ...`", stmt)
                self.changed_in_place(old, value, f"{var}[{key!r}]", stmt)
            else:
                x[key] = value  # type: ignore[index]  # counts[0] += 1
            return
        if not isinstance(x, T):
            raise self.err(stmt, f"{how}: '{var}' is {_kind(x)}, not a tensor")
        items: list[ast.expr] = []
        for k, sl in enumerate(chain):  # target[i][l] = 1.0 with an int i: the row is a view, the write x[i, l]'s
            its = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]
            if k < len(chain) - 1 and not all(not isinstance(i, ast.Slice) and type(self.const(i)) is int for i in its):
                raise self.err(stmt, f"`{self.src(target)[:60]} = ...` writes through a view made by a slice or a "
                                     "tensor index: write it as one index, `x[a, b] = ...`")
            items += its
        target = ast.copy_location(ast.Subscript(value=root, slice=ast.Tuple(elts=items, ctx=ast.Load()), ctx=ast.Store()),
                                   target)
        b = self.builder
        if x.name in b.leaves and b.grad[x.name]:
            if self.no_grad or via_data:
                self.leaf_index_write(x, target, value, stmt)
                return
            raise self.err(stmt, f"'{var}' is a leaf tensor that requires grad: torch refuses {how} on it (a leaf "
                                 "Variable that requires grad is being used in an in-place operation); write it under "
                                 "torch.no_grad() to change its starting value")
        if via_data:
            raise self.err(stmt, f"{how} through .data on '{var}', which requires grad, is not traced (torch changes "
                                 "its values and keeps its graph)")
        self.check_in_place(x, var, how, f"`{var} = torch.where(mask, value, {var})`", stmt)
        base = root.id if isinstance(root, ast.Name) and not keys else None  # `pe[...] = ...`: a binding of pe
        path = self.write_path(root) + "".join(f".{k}" for k in keys)
        self.begin(base or path.rsplit(".", 1)[-1], value, [])  # type: ignore[arg-type]  # the value's nodes: var#1, ...
        v = self.expr(value) if isinstance(value, ast.AST) else value
        if not isinstance(v, T) and not (is_number(v) or isinstance(v, bool)):
            raise self.err(stmt, f"{how} takes a tensor or a number, got {self.src(value)[:60]!r}")  # type: ignore[arg-type]
        only = items[0] if len(items) == 1 and not isinstance(items[0], (ast.Slice, ast.Constant)) else None
        idx = self.expr(only) if only is not None else None
        name = self.binding_name(base) if base else self.fresh(path)
        mask = isinstance(idx, T) and self.dtype_of(idx) == "bool"
        known = mask and isinstance(v, T) and not _fits(self.shape(v), self.shape(x)[len(self.shape(idx)):]) and (
            self.folded(idx.name) is not None)  # type: ignore[attr-defined]  # (a value per selected element)
        if mask and not known:  # y[y < 0] = 0.0: torch's index_put with a mask
            new = self.emit("mask_put", [x, idx, v], {}, stmt, name=name)  # type: ignore[arg-type]
        else:
            if known:  # a mask known now (the DQN tutorial's next_state_values[mask] = ...): its True positions
                index, tensors = self.mask_positions(idx, [], self.shape(x), only), []  # type: ignore[arg-type]
            elif isinstance(idx, T):
                index, tensors = [{"tensor": 0}], [idx]
            else:
                index, tensors = self.index_of(target, self.shape(x))
            new = self.emit("setitem", [x, v, *tensors], {"index": index}, stmt, name=name)  # type: ignore[arg-type]
        self.changed_in_place(x, new, var, stmt)

    def aug_index_write(self, stmt: ast.AugAssign) -> None:
        """`y[:, 0] += 1.0`: torch adds into the indexed part of y in place; here the part, plus the value, written
        back (a setitem: CopySlices, as torch's). `accs[k] += v` on a list's tensor changes that tensor in place."""
        target = stmt.target
        assert isinstance(target, ast.Subscript)
        if self.mask_aug_write(stmt):
            return
        root: ast.expr = target
        while isinstance(root, ast.Subscript):
            root = root.value
        self.begin(root.id if isinstance(root, ast.Name) else "write", stmt.value, [])
        read = ast.copy_location(ast.Subscript(value=target.value, slice=target.slice, ctx=ast.Load()), target)
        new = self.expr(ast.copy_location(ast.BinOp(left=read, op=stmt.op, right=stmt.value), stmt))
        self.index_write(target, new, stmt)

    def mask_aug_write(self, stmt: ast.AugAssign) -> bool:
        """`idx[idx >= k] += 1` (wav2vec2's negative sampling) on a tensor that requires no grad, the mask of its shape:
        torch.where(mask, idx + 1, idx), every name of it seeing the change; False where it is no such write (a
        mask's part has a shape that depends on the data, which the general form then refuses)."""
        target = stmt.target
        assert isinstance(target, ast.Subscript)
        if not isinstance(target.value, ast.Name) or isinstance(target.slice, (ast.Slice, ast.Tuple, ast.Constant)):
            return False
        var = target.value.id
        x = self.scope.get(var)
        if not isinstance(x, T) or self.builder.grad[x.name] or isinstance(target.slice, ast.Name) and not (
                isinstance(m := self.scope.get(target.slice.id), T) and self.dtype_of(m) == "bool"):
            return False
        sl = target.slice  # a mask's forms: `x >= k`, `m`, `~m`, `a & b` (not `x[i + 1]`, an index)
        if not (isinstance(sl, (ast.Compare, ast.Name)) or isinstance(sl, ast.UnaryOp) and isinstance(sl.op, (ast.Invert, ast.Not))
                or isinstance(sl, ast.BinOp) and isinstance(sl.op, (ast.BitAnd, ast.BitOr, ast.BitXor))):
            return False
        mask = self.expr(sl)
        if not isinstance(mask, T):
            return False  # numbers compared (`x[a > b]`): Python's bool, the general form's
        if self.dtype_of(mask) != "bool":
            raise self.err(stmt, f"`{self.src(target)[:40]} {_OPS.get(type(stmt.op), '?')}= ...` takes a bool mask here")
        if self.shape(mask) != self.shape(x):
            raise self.err(stmt, f"`{self.src(target)[:40]} {_OPS.get(type(stmt.op), '?')}= ...`: a mask of the tensor's "
                                 f"shape {list(self.shape(x))} is traced (this one is {list(self.shape(mask))})")
        binop = ast.copy_location(ast.BinOp(left=target.value, op=stmt.op, right=stmt.value), stmt)
        changed = self.arith(binop, x, self.expr(stmt.value))
        new = self.emit("where", [mask, changed, x], {}, stmt, name=self.binding_name(var))  # type: ignore[attr-defined]
        self.scope[var] = new
        self.changed_in_place(x, new, var, stmt)
        return True

    def write_path(self, root: ast.expr) -> str:
        """The node name of a write through `root`: `self.buf` is 'model.buf', `hs` (a list) 'hs' (its items 'hs.0')."""
        if isinstance(root, ast.Attribute):
            owner = self.expr(root.value)
            if isinstance(owner, Instance):
                return f"{owner.path}.{root.attr}"
        return self.prefix + (root.id if isinstance(root, ast.Name) else "write")

    def leaf_index_write(self, t: T, target: ast.Subscript, value: ast.expr | Any, stmt: ast.stmt) -> None:
        """`with torch.no_grad(): emb.weight[0] = 0.0`: the parameter's starting value changes (an event in program
        order with the draws), as fill_ and uniform_ change it; ints, slices and int lists, a number."""
        v = self.expr(value) if isinstance(value, ast.AST) else value
        made = isinstance(v, T) and v.name in self.builder.leaves  # `emb.weight[unk] = torch.zeros(d)`: a made tensor
        if not (is_number(v) or isinstance(v, bool) or made):
            raise self.err(stmt, f"a write into the parameter '{t.name}' takes a number or a tensor the program made "
                                 "(torch.zeros(d)) here: torch.no_grad() changes its starting value")
        index, tensors = self.index_of(target)
        if tensors:
            raise self.err(stmt, f"a write into the parameter '{t.name}' takes ints, slices and int lists as its index")
        try:
            part = plan_shape(self.builder.leaves[t.name].shape, GetitemArgs.model_validate({"index": index}).index)
            if made:
                value_shape(self.shape(v), part)
        except (ShapeError, ValueError) as e:
            raise self.err(stmt, str(e)) from None
        self.written(t, stmt)
        if made:
            self.builder.used.add(v.name)
        self.stream.events.append(Event("setitem", t.name, {"index": index, **({"source": v.name} if made else {"value": v})}))

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

    def check_in_place(self, t: T, var: str, how: str, instead: str, stmt: ast.AST, data: bool = True) -> None:
        """`x += ...` or `x.add_(...)` on a tensor changes it in place, as torch does: refused where torch refuses it
        (a leaf that requires grad) or where it would change another tensor too (a view; `data` False: a change of
        shape alone, which views do not see)."""
        b = self.builder
        if not _assignable(var):  # `K.diagonal().add_(jitter)`: `K.diagonal() = ...` is no Python
            instead = ("the change out of place on the tensor it views (for a diagonal `K = K + jitter * torch.eye(n)`, "
                       "for a slice an index write `K[i] = ...`)")
        if t.name in b.leaves and b.grad[t.name] and not self.no_grad:  # allowed under no_grad
            raise self.err(stmt, f"'{var}' is a leaf tensor that requires grad: torch refuses {how} on it (a leaf "
                                 f"Variable that requires grad is being used in an in-place operation); write {instead} "
                                 "for a new tensor, or change it under torch.no_grad() with .data")
        if t.name not in b.leaves and b.grad[t.name] and (self.no_grad or self.via_data):
            raise self.err(stmt, f"{how} on '{var}', which requires grad, under torch.no_grad() or through .data is not "
                                 "traced (torch changes its values and keeps its graph)")
        if t.name in self.windows:  # type: ignore[attr-defined]
            raise self.err(stmt, f"{how} changes '{var}' in place, a slice `data[i:i + n]` with i a tensor, which in torch is "
                                 f"a view of data: torch would change data too, which gradtrace does not trace; write "
                                 f"{instead} for a new tensor")
        bound = {v.name for v in self.scope.values() if isinstance(v, T)}
        stack, seen = list(b.views.get(t.name, ())), set()
        while stack:  # views of it (and of its views) that a name still holds would change with it in torch
            k = stack.pop()
            if k in bound:
                raise self.err(stmt, f"{how} changes '{var}' in place, and '{k}' is a view of it: torch would change "
                                     f"'{k}' too, which gradtrace does not trace; write {instead} for a new tensor"
                               if data else f"{how} changes the shape of '{var}' in place while '{k}', a view of it, is "
                               f"held: torch makes '{k}''s grad_fn anew through the change, which gradtrace does not "
                               f"trace; write {instead} for a new tensor")
            if k not in seen:
                seen.add(k)
                stack.extend(b.views.get(k, ()))
        name = t.name
        node = next((n for n in reversed(b.nodes) if n.name == name), None)
        while True:  # the tensor, or what it views: kept by a fused torch module for backward (an LSTM's output)
            if name in b.saved_by_torch and getattr(getattr(self, "res", None), "output", None) is None:
                raise self.err(stmt, f"{how} changes '{var}' in place, the output of {b.saved_by_torch[name]}, which torch "
                                     "keeps for backward: torch's backward() fails there (one of the variables needed "
                                     f"for gradient computation has been modified by an inplace operation); write {instead}")
            if node is None or not node.op.view:
                break
            name = node.inputs[0]
            node = next((n for n in reversed(b.nodes) if n.name == name), None)
        if not data:  # (a view's new shape is its own: what it views keeps its shape)
            return
        node = next((n for n in reversed(b.nodes) if n.name == t.name), None)
        if node is not None and node.op.name == "expand" and math.prod(b.shapes[node.inputs[0]]) < math.prod(b.shapes[t.name]):
            raise self.err(stmt, f"{how} on '{var}', an expanded tensor: torch refuses it (unsupported operation: more than "
                                 "one element of the written-to tensor refers to a single memory location); clone() it "
                                 f"first, or write {instead}")
        while node is not None and views_input(node.op, node.inputs, node.args) and not b.copies(node.op, node.inputs,
                                                                                                  node.shape):  # a view:
            base = node.inputs[0]  # (torch would change that one too)
            if base in bound or base in b.leaves:
                raise self.err(stmt, f"{how} changes '{var}' in place, and '{var}' is a view of '{base}' ({node.op.name}): "
                                     f"torch would change '{base}' too, which gradtrace does not trace; write {instead} "
                                     "for a new tensor")
            node = next((n for n in reversed(b.nodes) if n.name == base), None)  # a temporary: what it views

    def changed_in_place(self, old: T, new: T, var: str, stmt: ast.AST, bump: bool = True, reshaped: bool = False) -> None:
        """After an in-place change, every name bound to the tensor sees the new value (`b = a; b += 1` changes
        a too). In place, torch keeps the tensor's shape (unless `reshaped`: `unsqueeze_`) and dtype: a change of
        either is refused. `bump` False: a change torch makes without counting it (batch norm's running statistics:
        no version bump, so nothing that saved the tensor fails at backward)."""
        if self.shape(new) != self.shape(old) and not reshaped:
            raise self.err(stmt, f"`{var}` has shape {list(self.shape(old))}, and in place it cannot become "
                                 f"{list(self.shape(new))} (torch: output shape doesn't match the broadcast shape)")
        was, now = self.dtype_of(old), self.dtype_of(new)
        if was != now:  # torch stores a float64 result into float32 (rounding it), and refuses float into int64
            raise self.err(stmt, f"`{var}` is {was}: in place, torch stores the {now} result as {was}"
                                 + (", which gradtrace does not trace" if was.startswith("float") else " (it refuses to)")
                                 + f"; write `{var} = ...` with the dtype cast you want")
        if bump:
            self.mark_written(new.name, old.name)
        callers = [m for c in getattr(self, "callers", []) for m in getattr(c, "maps", [c])]
        scopes = [*getattr(self.scope, "maps", [self.scope]), *callers]  # a call's locals, the globals, its callers'
        res = getattr(self, "res", None)
        # `x += 1`: x@1 before, x after, as always; `self.buf.mul_(0.9)`: bn.buf, then bn.buf#2 (bn.buf@1, bn.buf at the end)
        own = old.name.split("@")[0] == new.name.split("@")[0] or new.name.rpartition("#")[0] == old.name
        if res is not None and "#" not in old.name and not own and (bump or reshaped):  # (statistics: their names say it)
            # `a = b; a[1] = 2`, `self.buf = t; t[1] = 0.5`: torch's one tensor has two names, a node has one
            res.notes.append(f"line {getattr(stmt, 'lineno', '?')}: `{var}` changes in place the tensor node "
                             f"'{old.name}' shows: '{old.name}' is its value before the change, '{new.name}' after")
        self.in_place_of[old.name] = new.name  # (what a hook changed in place: module_hooks.latest)
        seen: set[int] = set()
        for scope in scopes:
            _swap(scope, old, new, seen)

    def aug_assign(self, stmt: ast.AugAssign) -> None:
        if isinstance(stmt.op, ast.Add) and isinstance(stmt.value, (ast.List, ast.Tuple)) and isinstance(
                stmt.target, (ast.Name, ast.Attribute)) and isinstance(held := self.expr(stmt.target), ModuleInst) \
                and held.layer is None and held.container == "ModuleList":
            # `self.layers += [nn.Conv1d(...)]` (ParallelWaveGAN): ModuleList's += is its extend
            call = ast.copy_location(ast.Call(func=stmt.target, args=[stmt.value], keywords=[]), stmt)
            self.container_add(held, "extend", call)  # type: ignore[attr-defined]
            return
        if isinstance(stmt.target, ast.Subscript):
            self.aug_index_write(stmt)  # y[:, 0] += 1.0, acc[i % 3] += x[i].sum(), counts[0] += 1
            return
        owner = self.expr(stmt.target.value) if isinstance(stmt.target, ast.Attribute) and without_data(stmt.target) is \
            stmt.target else None
        if isinstance(owner, Instance) and not (isinstance(held := owner.attrs.get(stmt.target.attr), T)  # type: ignore[union-attr]
                                                and held.name in self.builder.leaves and (
                                                    self.builder.grad[held.name] or self.builder.leaves[held.name].kind != "input"
                                                    or is_number(self.const_or_none(stmt.value)))):
            # `self.out += self.bias` (makemore's Linear), `self.steps += 1`: the tensor it holds changes in place, as a
            # name's does (`h += b`); a number is rebound
            var = self.src(stmt.target)[:40]
            old = owner.attrs.get(stmt.target.attr)  # type: ignore[union-attr]
            if isinstance(old, T):
                self.check_in_place(old, var, f"`{var} {_OPS.get(type(stmt.op), '?')}= ...`", f"`{var} = {var} ...`", stmt)
            binop = ast.copy_location(ast.BinOp(left=stmt.target, op=stmt.op, right=stmt.value), stmt)
            binop.end_lineno, binop.end_col_offset = stmt.end_lineno, stmt.end_col_offset
            self.assign(stmt.target, binop, stmt)
            new = owner.attrs.get(stmt.target.attr)  # type: ignore[union-attr]
            if isinstance(old, T) and isinstance(new, T) and new != old:
                self.changed_in_place(old, new, var, stmt)
            return
        if isinstance(stmt.target, ast.Attribute):
            t = self.leaf_target(stmt.target, stmt)
            if self.builder.grad[t.name] and not self.no_grad and without_data(stmt.target) is stmt.target:
                var = self.src(stmt.target)[:40]
                raise self.err(stmt, f"'{var}' is a leaf tensor that requires grad: torch refuses `{var} {_OPS.get(type(stmt.op), '?')}= "
                                     "...` on it (a leaf Variable that requires grad is being used in an in-place operation); "
                                     f"write it under torch.no_grad(), or through `{var}.data`")
            self.written(t, stmt)
            c = self.const(stmt.value)
            method = {ast.Add: "add_", ast.Sub: "add_", ast.Mult: "mul_", ast.Div: "div_"}.get(type(stmt.op))
            if method is None or not is_number(c):
                raise self.err(stmt, "only += -= *= /= by a number may change a parameter in place")
            self.stream.events.append(Event("inplace", t.name, {"method": method, "args": [-c if isinstance(stmt.op, ast.Sub) else c]}))
            return
        if not isinstance(stmt.target, ast.Name):
            raise self.err(stmt, "augmented assignment needs a plain name target")
        var = stmt.target.id
        old = self.scope.get(var)
        if isinstance(old, T) and self.no_grad and old.name in self.builder.leaves:
            self.leaf_update(old, stmt)  # `w -= 0.1` under no_grad changes the leaf itself
            return
        sym = _OPS.get(type(stmt.op), "?")
        if isinstance(old, T):
            self.check_in_place(old, var, f"`{var} {sym}= ...`", f"`{var} = {var} {sym} ...`", stmt)
        binop = ast.BinOp(left=ast.Name(id=var, ctx=ast.Load()), op=stmt.op, right=stmt.value)
        ast.copy_location(binop, stmt)
        binop.end_lineno, binop.end_col_offset = stmt.end_lineno, stmt.end_col_offset
        self.assign(ast.Name(id=var, ctx=ast.Store()), binop, stmt)
        new = self.scope[var]
        if isinstance(old, T) and isinstance(new, T) and new != old:
            self.changed_in_place(old, new, var, stmt)


def _chain_root(e: ast.expr) -> ast.expr:
    """What a chain of in-place methods changes: `h` of `h.mul_(0.5).add_(1.0)` (each returns the tensor itself)."""
    while isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr.endswith("_") and e.func.attr != "_":
        e = e.func.value
    return e


def _swap(v: Any, old: T, new: T, seen: set[int]) -> Any:
    """v with every reference to the tensor `old` replaced by `new`, wherever the program can reach it again: names,
    lists, tuples and dicts (nested), objects' attributes (`self.buf`, buffers) and the modules containers hold.
    Mutable holders change in place; a tuple holding it is rebuilt."""
    if isinstance(v, T):
        return new if v.name == old.name else v
    if isinstance(v, tuple):
        items = [_swap(x, old, new, seen) for x in v]
        return tuple(items) if any(a is not b for a, b in zip(items, v, strict=True)) else v
    if id(v) in seen or not isinstance(v, (list, dict, Instance, ModuleInst)):
        return v
    seen.add(id(v))
    if isinstance(v, list):
        v[:] = [_swap(x, old, new, seen) for x in v]
    elif isinstance(v, dict):
        for k, x in list(v.items()):
            y = _swap(x, old, new, seen)
            if y is not x:
                v[k] = y
    elif isinstance(v, Instance):
        _swap(v.attrs, old, new, seen)
    else:
        _swap(v.children, old, new, seen)
    return v


def _fits(shape: tuple[int, ...], row: tuple[int, ...]) -> bool:
    """Whether a value of this shape broadcasts to one row of what a mask selects (mask_put takes it)."""
    try:
        return np.broadcast_shapes(shape, row) == tuple(row)
    except ValueError:
        return False


def _assignable(var: str) -> bool:
    """Whether `var = ...` is Python (a name, an attribute or an index), for the rewrite a refusal suggests."""
    try:
        return isinstance(ast.parse(var, mode="eval").body, (ast.Name, ast.Attribute, ast.Subscript))
    except SyntaxError:
        return False
