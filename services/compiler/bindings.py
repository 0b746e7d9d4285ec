"""How a program's variables are named: each assignment counted before the statements run, so that a variable's
last binding takes the bare name (`loss`) and earlier ones `loss@1`, `loss@2`; an object rebound to itself
(`model = model.to(device)`) keeps its name."""

from __future__ import annotations

import ast
from collections import Counter

from services.compiler.creation import INPLACE_INIT
from services.compiler.expressions import ExpressionCompiler
from services.compiler.functions import SAME_OBJECT
from services.compiler.returns import always_returns
from services.compiler.torch_functions import in_place_statement
from services.compiler.values import is_number


class Bindings(ExpressionCompiler):
    """count_bindings before a body runs, binding_name as each assignment runs (ProgramCompiler holds the counters:
    bindings, rebinds, seen)."""

    bindings: Counter[str]
    rebinds: dict[str, set[int]]
    seen: Counter[str]
    spec_inputs: set[str]
    returns: dict[str, str]

    def count_bindings(self, body: list[ast.stmt], no_grad: bool = False, made: set[str] | None = None) -> None:
        """How often each variable is assigned (`y.add_(1)` too), so that its last binding can take the bare name
        (`w += 0.5` under no_grad, a leaf's update, binds nothing new; but an op's in-place method on a tensor the
        no_grad block made, `t = torch.zeros(3, 4); t.scatter_(1, labels, 0.7)`, is a new binding, as outside it).
        `made`: the names the no_grad block being counted assigned so far."""
        made = set() if made is None else made
        for stmt in body:
            targets: list[ast.expr] = []
            if isinstance(stmt, (ast.Assign, ast.Expr)) and self.in_place_call(stmt.value) and (
                    not no_grad or stmt.value.func.value.id in made and self.binds_under_no_grad(stmt.value)):  # type: ignore[attr-defined]
                targets = [stmt.value.func.value]  # type: ignore[attr-defined]  # `y.add_(1)`: a new binding of y
            elif isinstance(stmt, (ast.Assign, ast.Expr)) and (chain := self.in_place_chain(stmt.value)) is not None:
                targets = [chain[0]] * chain[1]  # `y.mul_(0.5).add_(1.0)`: one per in-place op
            elif isinstance(stmt, ast.Expr) and view_fill(stmt.value):
                targets = [stmt.value.func.value]  # type: ignore[attr-defined]  # `h[0].fill_(3.0)`, as `h[0] = 3.0`
            elif isinstance(stmt, ast.Expr) and not no_grad and in_place_statement(stmt.value, self.dotted):
                targets = [stmt.value.args[0]]  # type: ignore[attr-defined]  # `F.relu(h, inplace=True)`, `F.relu_(h)`
            if isinstance(stmt, (ast.Assign, ast.Expr)) and not no_grad and self.names_batch_norm:  # type: ignore[attr-defined]
                targets += self.updated_statistics(stmt.value)  # (a walk of every statement costs a small compile 10%)
            if isinstance(stmt, ast.Assign):
                targets += list(stmt.targets)
                if no_grad:
                    made.update(n.id for t in stmt.targets for n in ast.walk(t) if isinstance(n, ast.Name))
                if _rebinds_itself(stmt):  # which binding of the name it is (counted below)
                    name = stmt.targets[0].id  # type: ignore[attr-defined]
                    self.rebinds.setdefault(name, set()).add(self.bindings[name] + 1)
            elif isinstance(stmt, ast.AugAssign) and not (no_grad and is_number_literal(stmt.value)):
                targets = [stmt.target]
            elif isinstance(stmt, (ast.For, ast.While)):  # a loop unrolled when reached: counted once now, in full then
                self.count_bindings(stmt.body, no_grad, made)
            elif isinstance(stmt, ast.If):  # the branch that runs when the condition is known now, else the larger
                known = self.static_condition(stmt.test)
                outer = self.bindings
                counts = []
                for branch in (stmt.body, stmt.orelse):
                    self.bindings = Counter()
                    self.count_bindings(branch, no_grad, made)
                    counts.append(self.bindings)
                self.bindings = outer
                outer.update(counts[0] | counts[1] if known is None else counts[0] if known else counts[1])
                if known is not None and always_returns(stmt.body if known else stmt.orelse):
                    return  # `if self.reduction == 'mean': return loss.mean()`: what follows never runs
            elif isinstance(stmt, ast.With):
                calls = [i.context_expr for i in stmt.items if isinstance(i.context_expr, ast.Call)]
                modes = {self.dotted(c.func) for c in calls}  # (inference_mode(False), or of a variable: not known here)
                off = {self.dotted(c.func) for c in calls if c.args or c.keywords} & {"torch.inference_mode"}
                self.count_bindings(stmt.body, (no_grad or bool((modes - off) & {"torch.no_grad", "torch.inference_mode"}))
                                    and "torch.enable_grad" not in modes, made if no_grad else None)
            for t in targets:
                while isinstance(t, ast.Subscript):
                    t = t.value  # `pe[:, 0::2] = ...`, `target[i][l] = 1.0`: a tensor written by index is a new binding
                for n in (target_names(t) or [] if isinstance(t, (ast.Tuple, ast.List)) else [t.id] if isinstance(t, ast.Name) else []):
                    self.bindings[n] += 1

    def binds_under_no_grad(self, call: ast.Call) -> bool:
        """Whether an in-place method on a tensor a no_grad block made is an op (a new binding, as TensorMethods runs
        it: `t.scatter_(1, idx, 0.7)`, `t.div_(t.sum(1, keepdim=True))`) rather than a write of its value (`t.fill_(0.1)`,
        `t.add_(0.2)`)."""
        m = call.func.attr  # type: ignore[attr-defined]
        if m not in INPLACE_INIT | {"copy_"}:
            return True
        return m in ("add_", "sub_", "mul_", "div_") and not all(
            self.plain_number(a) for a in [*call.args, *(k.value for k in call.keywords)])  # type: ignore[attr-defined]

    def updated_statistics(self, value: ast.expr) -> list[ast.expr]:
        """The running statistics a training-mode `F.batch_norm(x, rm, rv, ..., training=True)` in `value` updates in
        place: new bindings of rm and rv."""
        out: list[ast.expr] = []
        for call in ast.walk(value):
            if isinstance(call, ast.Call) and self.dotted(call.func) == "F.batch_norm":
                args = dict(zip(("input", "running_mean", "running_var", "weight", "bias", "training"), call.args,
                                strict=False)) | {k.arg: k.value for k in call.keywords if k.arg}
                training = args.get("training")  # (a name: taken as true unless known false now)
                if training is not None and self.static_condition(training) is not False:
                    out += [args[k] for k in ("running_mean", "running_var") if isinstance(args.get(k), ast.Name)]
        return out

    def object_name(self, name: str) -> str:
        """The path of an object made at a statement's binding `name`: `model = Net()` followed only by rebindings to
        itself (`model = model.to(device)`, `model.train()`'s value) takes the bare name, as torch's object keeps it."""
        var, _, k = name.partition("@")
        if k.isdigit() and not self.prefix and var not in self.spec_inputs and all(
                j in self.rebinds.get(var, ()) for j in range(int(k) + 1, self.bindings[var] + 1)):
            return var
        return name

    def binding_name(self, var: str) -> str:
        """The node name of this binding of `var`: `var` for the last one, var@k for earlier ones
        (inputs given in the spec keep their name: the program's rebindings are var@2, var@3, ...). Inside a call,
        under the call's prefix ('model.h'), and a variable the call returns takes the caller's name at its last
        binding (`return output` in forward, `out = net(x)`: the node is out)."""
        self.seen[var] += 1
        k = self.seen[var]
        if var in self.spec_inputs:
            return f"{var}@{k + 1}"
        last = k >= self.bindings[var] and not self.loose  # type: ignore[attr-defined]
        if last and var in self.returns:
            return self.returns[var]
        var = self.prefix + var  # inside a call: 'model.h', 'layer.h'
        name = var if last else f"{var}@{k}"
        if name in self.builder or name in self.pending:  # a call made again; a binding count_bindings did not
            # foresee; a name a caller's statement binds when this call returns
            name = self.fresh(name if self.prefix else f"{var}@{k}")
        if self.loose:  # type: ignore[attr-defined]
            self.loose_names.add(name)  # type: ignore[attr-defined]
        return name


def target_names(target: ast.expr) -> list[str] | None:
    """The names of a (nested) tuple target in order, `out, (h, c)` -> [out, h, c] (`self.hidden`: 'hidden#attr', a
    name no variable has); None if it holds anything else."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
        return [f"{target.attr}#attr"]
    if isinstance(target, ast.Starred) and isinstance(target.value, ast.Name):
        return [target.value.id]  # `b, *_ = t.shape`, `first, *rest = layers`: a list
    if not isinstance(target, (ast.Tuple, ast.List)) or not target.elts \
            or sum(isinstance(e, ast.Starred) for e in target.elts) > 1:
        return None
    parts = [target_names(e) for e in target.elts]
    return None if any(p is None for p in parts) else [n for p in parts for n in p]  # type: ignore[union-attr]


def _rebinds_itself(stmt: ast.Assign) -> bool:
    """`m = m.to(device)`, `m = m.cpu()`, `m = m.train()`: a name bound again to what a method returns of it (the same
    object for a module)."""
    v, t = stmt.value, stmt.targets
    return (len(t) == 1 and isinstance(t[0], ast.Name) and isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute)
            and isinstance(v.func.value, ast.Name) and v.func.value.id == t[0].id and v.func.attr in SAME_OBJECT)


def is_number_literal(node: ast.expr) -> bool:
    """A number written out: 0.5, -1, 1e-3."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and is_number(node.value)


def view_fill(v: ast.expr) -> bool:
    """`emb.weight[pad].fill_(0.5)`, `h[:, :k].zero_()`, `h[i].fill_(value=2.0)`: a fill of an indexed tensor whose index
    may be basic (ints, slices, None, ...: names and attributes are looked at when it runs), which torch writes into the
    tensor, as `h[:, 0] = 0.0`."""
    if not (isinstance(v, ast.Call) and isinstance(f := v.func, ast.Attribute) and f.attr in ("fill_", "zero_")
            and isinstance(f.value, ast.Subscript)
            and len(v.args) + len([k for k in v.keywords if k.arg == "value"]) == (f.attr == "fill_")
            and all(k.arg == "value" for k in v.keywords)):
        return False
    index = f.value.slice
    items = index.elts if isinstance(index, ast.Tuple) else [index]

    def simple(e: ast.expr | None) -> bool:
        return e is None or isinstance(e, (ast.Constant, ast.Name, ast.Attribute)) or (
            isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub) and simple(e.operand)) or (
            isinstance(e, ast.BinOp) and simple(e.left) and simple(e.right))
    return all(simple(i) or isinstance(i, ast.Slice) and all(simple(b) for b in (i.lower, i.upper, i.step)) for i in items)
