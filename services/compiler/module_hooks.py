"""A module's forward hooks as programs register them (`model.fc2.register_forward_hook(get_activation('fc2'))`,
feature maps kept for a loss, Grad-CAM's activations): each runs where torch runs it, after the module's forward
(a pre-hook before it), and what it returns replaces the output (the input); a backward hook that only looks at
the gradients is accepted, as every gradient is in the result."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from services.compiler.expressions import ExpressionCompiler, _kind
from services.compiler.values import Bound, T, UserFunction, Value, receiver

KINDS = {"register_forward_hook": "forward", "register_forward_pre_hook": "pre", "register_full_backward_hook": "backward",
         "register_backward_hook": "backward"}
"""A module's hook-registering methods, by the kind of hook each takes."""


@dataclass(eq=False)
class Hook:
    """One registered hook: its kind ('forward', 'pre') and the function (a def, a lambda, a bound method)."""

    kind: str
    fn: UserFunction | Bound


@dataclass(eq=False)
class HookHandle:
    """What register_*_hook returns: `handle.remove()` takes the hook off (later calls run without it)."""

    hooks: list[Hook]
    hook: Hook | None

    def remove(self) -> None:
        if self.hook in self.hooks:
            self.hooks.remove(self.hook)


class ModuleHooks(ExpressionCompiler):
    """register_module_hook and the calls that run the hooks (the attributes are the ProgramCompiler's)."""

    module_hooks: dict[int, list[Hook]]
    in_place_of: dict[str, str]
    res: Any

    def register_module_hook(self, m: Any, method: str, node: ast.Call) -> HookHandle:
        """m.register_forward_hook(hook) and friends, on an nn module or an object of the program's module classes."""
        kind = KINDS[method]
        if len(node.args) != 1 or any(k.arg not in ("prepend",) for k in node.keywords):
            raise self.err(node, f"{method} takes one hook here (with_kwargs and always_call are not traced)")
        fn = self.expr(node.args[0])
        if not isinstance(fn, (UserFunction, Bound)):
            raise self.err(node, f"{method} takes a function (a def, a lambda or a method), not {_kind(fn)}")
        if kind == "backward":
            if not observes(fn.fn.node if isinstance(fn, Bound) else fn.node, isinstance(fn, Bound)):
                raise self.err(node, "a backward hook that changes the gradients (returns them or writes into them) is not "
                                     "traced: gradtrace runs backward without hooks; one that looks at them is accepted "
                                     "(every node's gradient is in the result)")
            self.res.notes.append(f"line {node.lineno}: the backward hook only looks at the gradients: they are the module's "
                                  "input and output nodes' grads in the result")
            return HookHandle([], None)
        hooks = self.module_hooks.setdefault(id(m), [])
        hook = Hook(kind, fn)
        prepend = any(k.arg == "prepend" and self.const(k.value) for k in node.keywords)
        hooks.insert(0, hook) if prepend else hooks.append(hook)
        return HookHandle(hooks, hook)

    def has_hooks(self, m: Any) -> bool:
        return bool(self.module_hooks.get(id(m)))

    def replaces_output(self, m: Any) -> bool:
        """Whether a forward hook of m may return a new output (its module's own output is then not the caller's)."""
        return any(h.kind == "forward" and may_return(h.fn.fn.node if isinstance(h.fn, Bound) else h.fn.node)
                   for h in self.module_hooks.get(id(m), []))

    def named_output(self, got: Value, own: str, name: str) -> Value:
        """A hook's replacement of the module's output `own` takes the caller's name when it can (the last tensor
        made, unused yet)."""
        if isinstance(got, T) and got.name != own and self.builder.rename_last(got.name, name):
            return T(name)
        return got

    def run_hook(self, hook: Hook, args: list[Value], node: ast.Call) -> Value:
        fn = hook.fn
        if isinstance(fn, Bound):
            return self.call_user(fn.fn, [*receiver(fn.fn, fn.obj), *args], {}, node, prefix=f"{fn.obj.path}.",  # type: ignore[attr-defined, no-any-return]
                                  named=False)
        return self.call_user(fn, args, {}, node, prefix=f"{fn.name}.", named=False)  # type: ignore[attr-defined, no-any-return]

    def latest(self, v: Value) -> Value:
        """A tensor as a hook left it: its newest value if the hook changed it in place (`o[:, 0] = 0.0`)."""
        if not isinstance(v, T):
            return v
        name = v.name
        while name in self.in_place_of:
            name = self.in_place_of[name]
        return T(name)

    def pre_hooks(self, m: Any, inputs: list[Value], node: ast.Call) -> list[Value]:
        """The module's pre-hooks on its inputs, in order; what one returns (a tuple, or one value) replaces them, and
        what one changes in place is changed for the module."""
        for hook in [h for h in self.module_hooks.get(id(m), []) if h.kind == "pre"]:
            got = self.run_hook(hook, [m, tuple(inputs)], node)
            inputs = [self.latest(i) for i in inputs] if got is None else list(got) if isinstance(got, tuple) else [got]
        return inputs

    def forward_hooks(self, m: Any, inputs: list[Value], out: Value, node: ast.Call) -> Value:
        """The module's forward hooks on (module, inputs, output), in order; what one returns replaces the output,
        and what one changes in place (`o[:, 0] = 0.0`, an ablation) is changed for the caller."""
        for hook in [h for h in self.module_hooks.get(id(m), []) if h.kind == "forward"]:
            got = self.run_hook(hook, [m, tuple(inputs), out], node)
            out = self.latest(out) if got is None else got
        return out

    def hooked_tensor(self, m: Any, inputs: list[str], out: str, node: ast.Call) -> str:
        """forward_hooks inside an nn.Sequential: the output a hook leaves must be a tensor."""
        got = self.forward_hooks(m, [T(i) for i in inputs], T(out), node)
        if not isinstance(got, T):
            raise self.err(node, f"a forward hook returned {_kind(got)} inside an nn.Sequential: it takes a tensor")
        return got.name


def may_return(fn: ast.FunctionDef) -> bool:
    """Whether a hook may return a value: a lambda's expression other than a print or a container's append; a def's
    `return <value>`."""
    if fn.name == "lambda":
        body = fn.body[0].value  # type: ignore[attr-defined]
        return not (is_print(body) or isinstance(body, ast.Call) and isinstance(body.func, ast.Attribute)
                    and body.func.attr in KEEPERS)
    return any(isinstance(n, ast.Return) and n.value is not None and not (isinstance(n.value, ast.Constant) and
                                                                          n.value.value is None) for n in ast.walk(fn))


def changes_in_place(e: ast.AST) -> bool:
    """Whether an expression calls an in-place tensor method anywhere (`grad.clamp_(0, 1)`, `x.mul_(3).shape`)."""
    return any(isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr.endswith("_")
               and not c.func.attr.startswith("_") for c in ast.walk(e))


def is_print(e: ast.expr) -> bool:
    return isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "print"


KEEPERS = frozenset({"append", "extend", "update", "add", "__setitem__"})
"""Methods by which a hook keeps its gradient in a container (`store.append(grad)`)."""


def observes(fn: ast.FunctionDef, method: bool = False) -> bool:
    """Whether a hook's body (a lambda's: `return <its expression>`) only prints its gradient or keeps it
    (`grads[name] = grad`, `self.gradients = grad`, `store.append(grad.clone())`) and returns None: it leaves the
    gradient as it is. Nothing may change the gradient in place (`grad.mul_(2)`, `grad[0] = 0`, `grad += 1`)."""
    params = {a.arg for a in (*fn.args.posonlyargs, *fn.args.args)[method:]}  # (a method's self is no gradient)

    def rooted(e: ast.expr) -> bool:  # grad, grad[0], grad.data
        while isinstance(e, (ast.Subscript, ast.Attribute, ast.Starred)):
            e = e.value
        return isinstance(e, ast.Name) and e.id in params

    def harmless(e: ast.AST) -> bool:  # no in-place method call (`grad.clamp_(...)`) anywhere in it
        return not changes_in_place(e)

    def call(e: ast.expr) -> bool:
        return (is_print(e) or isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr in KEEPERS
                and not rooted(e.func.value)) and harmless(e)

    def reads(e: ast.expr) -> bool:  # mentions the gradient (or a name bound from it)
        return any(isinstance(n, ast.Name) and n.id in params for n in ast.walk(e))

    def ok(b: ast.stmt) -> bool:
        if isinstance(b, (ast.Pass, ast.Global, ast.Nonlocal)):
            return True
        if isinstance(b, ast.Expr):
            return isinstance(b.value, ast.Constant) or call(b.value)
        if isinstance(b, ast.Assign):
            if any(rooted(t) for t in b.targets) or not harmless(b):
                return False
            if reads(b.value) and not _copied(b.value):  # `g = grad`, `g = grad[0]`: the same tensor (a view)
                params.update(n.id for t in b.targets for n in ast.walk(t) if isinstance(n, ast.Name))
            return True
        if isinstance(b, (ast.AnnAssign, ast.AugAssign)):
            return not rooted(b.target) and harmless(b)
        if isinstance(b, ast.If):
            return harmless(b.test) and all(map(ok, b.body)) and all(map(ok, b.orelse))
        if isinstance(b, ast.Return):
            return b.value is None or isinstance(b.value, ast.Constant) and b.value.value is None or call(b.value)
        return False

    return all(map(ok, fn.body))


def _copied(e: ast.expr) -> bool:
    """`grad.clone()`, `grad.detach().clone()`, `grad * 2`: a new tensor, not the gradient itself."""
    return isinstance(e, ast.BinOp) or isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr in (
        "clone", "tolist", "item", "norm", "sum", "mean", "abs", "pow")  # (.cpu() on the CPU is the tensor itself)
