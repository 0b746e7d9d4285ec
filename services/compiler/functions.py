"""The program's own `def` functions and `class Net(nn.Module)` classes, inlined where they are called: a call runs
the body's statements with the parameters bound, in a scope of its own (globals readable), as Python runs it.
Nothing is executed: the statements go through the same whitelist as the top level's.

Names: a call's local variables are nodes under a prefix, the function's name ('layer.h') or a module object's
path ('model.h'); the value a call returns takes the name the caller binds it to (`out = model(x)`). Parameters
that __init__ sets on `self` are named under the object's path ('model.fc1.weight'), drawn in the order torch
draws them."""

from __future__ import annotations

import ast
from collections import ChainMap, Counter
from collections.abc import Iterator
from contextlib import contextmanager

from services.compiler.expressions import _kind
from services.compiler.loops import unroll
from services.compiler.module_tree import MODULE_WALKS
from services.compiler.returns import FunctionReturns, _returned_names
from services.compiler.values import (
    CALLABLE,
    Applier,
    Bound,
    ClassRef,
    Epoch,
    Foreign,
    Instance,
    Loader,
    ModuleInst,
    ParameterDict,
    ParameterList,
    T,
    Untraced,
    UserClass,
    UserFunction,
    Value,
    container_of,
    receiver,
)
from services.errors import SpecError

MAX_DEPTH = 16
"""Calls nested deeper than this are refused (a recursive function would inline forever)."""


def _torch_only(v: Value) -> bool:
    """A torch module whose forward is torch's alone (no module of the program's inside: nn.Sequential(Block()) runs
    the program's forward, which may grow a list)."""
    return isinstance(v, ModuleInst) and all(_torch_only(c) for c in v.children)


PURE_BUILTINS = frozenset({"len", "pow", "print", "isinstance", "range", "enumerate", "zip", "min", "max", "abs", "sum", "list",
                           "tuple", "int", "float", "str", "bool", "round", "sorted", "reversed", "getattr", "hasattr",
                           "type", "dict", "set", "any", "all"})
"""Python's builtins that change no list they are given (sorted and reversed make new ones)."""
FRAME = ("scope", "bindings", "seen", "spec_inputs", "reserved", "pending", "prefix", "returns", "return_shape", "target",
         "stmt_expr", "stmt_name", "stmt_names", "stmt_shape", "stmt_start", "counter", "line", "via_data", "loop_depth")
"""The compiler's per-scope and per-statement state, saved around a call."""
SAME_OBJECT = ("to", "cpu", "float", "double", "train", "eval", "requires_grad_")
"""Module methods that return the module itself: `model = Net().to(device)` names the object `model`."""
NOT_TRACED = ("state_dict", "buffers")
TORCH_BASES = ("Linear", "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "Embedding", "LayerNorm", "GroupNorm",
               "RMSNorm", "BatchNorm1d", "BatchNorm2d", "Sequential", "ModuleList")
"""torch.nn layers a program's class may derive from (`class BinaryLinear(nn.Linear)`, CLIP's `class LayerNorm(
nn.LayerNorm)`): super().__init__ builds the layer's parameters on the object, super().forward runs it; and the
containers (torchvision's `class ConvBNReLU(nn.Sequential)`: super().__init__(conv, bn, relu) makes its children)."""
ONCE_DIFFERENTIABLE = "torch.autograd.function.once_differentiable"
"""Module methods accepted as values gradtrace does not trace (an Untraced: printing them is fine)."""
BINDINGS = ("property", "staticmethod", "classmethod")
"""Decorators that change how a class binds a method."""


class UserCode(FunctionReturns):
    """def and class statements, and calls of what they define."""

    depth = 0
    prefix = ""
    local = False
    """The statement binds a local variable of a call (an object made now is named where it ends up)."""
    calls: list[str]
    """Prefixes of the plain functions running now ('make.'): objects made under them are named where they end up."""
    returns: dict[str, str] = {}  # noqa: RUF012  # replaced per call, never mutated
    """Inside a call: local variables the call returns -> the caller's names for them."""

    # ---- definitions --------------------------------------------------------------------------

    def define(self, stmt: ast.FunctionDef | ast.ClassDef) -> None:
        """Bind a def or a top-level class: checked now, compiled at each call. A def inside a function (a hook
        factory's `def hook(grad): ...; return hook`) has the enclosing locals as its closure, as a lambda has."""
        if isinstance(stmt, ast.FunctionDef) and self.depth and not stmt.decorator_list:
            self.scope[stmt.name] = self.closure_of(self.function(stmt))
            return
        if self.depth:
            raise self.err(stmt, "class is allowed at the top level of the program only" if isinstance(stmt, ast.ClassDef)
                           else "a def inside a function takes no decorators here")
        if isinstance(stmt, ast.FunctionDef):
            self.scope[stmt.name] = self.function(stmt)
            return
        dataclass = False
        for d in stmt.decorator_list:
            if self.foreign_path(d.func if isinstance(d, ast.Call) else d) != "dataclasses.dataclass":
                raise self.err(d, f"class {stmt.name}: the only class decorator gradtrace understands is @dataclass")
            dataclass = True
        base = self.scope.get(stmt.bases[0].id) if len(stmt.bases) == 1 and isinstance(stmt.bases[0], ast.Name) else None
        plain = not stmt.bases or len(stmt.bases) == 1 and isinstance(stmt.bases[0], ast.Name) and (
            stmt.bases[0].id == "object" or isinstance(base, UserClass) and not base.module)
        function = len(stmt.bases) == 1 and self.dotted(stmt.bases[0]) in ("torch.autograd.Function",
                                                                           "torch.autograd.function.Function")
        if function:
            plain = True  # (its methods are collected as a plain class's; define_function checks them)
        layer = self.dotted(stmt.bases[0]) if len(stmt.bases) == 1 else None  # class BinaryLinear(nn.Linear)
        layer = layer[3:] if layer and layer.startswith("nn.") and layer[3:] in TORCH_BASES else None
        if stmt.keywords or not plain and (len(stmt.bases) != 1 or not (
                self.dotted(stmt.bases[0]) == "nn.Module" or isinstance(base, UserClass) or layer)):
            raise self.err(stmt, f"class {stmt.name}: only subclasses of nn.Module (or of the program's own classes) and "
                                 f"plain classes (a @dataclass config) are traced: class {stmt.name}(nn.Module)")
        parent = base if isinstance(base, UserClass) else None
        if dataclass and (not plain or parent is not None and parent.module):
            raise self.err(stmt, f"class {stmt.name}: a @dataclass nn.Module is not traced (a @dataclass holds a config)")
        methods: dict[str, UserFunction] = dict(parent.methods) if parent else {}
        attrs: dict[str, Value] = dict(parent.attrs) if parent else {}
        fields = list(parent.fields or []) if parent and dataclass else []
        own: list[UserFunction] = []
        for item in stmt.body:
            if isinstance(item, ast.FunctionDef):
                fn = self.function(item)
                if any(isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter") for d in item.decorator_list):
                    continue  # a property's setter: writes set the attribute itself (the getter stays for reads)
                if not (item.args.posonlyargs or item.args.args) and fn.binding != "staticmethod":
                    raise self.err(item, f"{stmt.name}.{item.name} needs `self` as its first parameter")
                methods[item.name] = fn
                own.append(fn)
            elif dataclass and isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                fields += [] if item.target.id in fields else [item.target.id]  # `n_embd: int = 768`: a field
                if item.value is not None:
                    with self.class_body(attrs):
                        attrs[item.target.id] = self.const(item.value)
            elif isinstance(item, (ast.Assign, ast.AnnAssign)) and item.value is not None and isinstance(
                    target := item.targets[0] if isinstance(item, ast.Assign) and len(item.targets) == 1 else
                    getattr(item, "target", None), ast.Name):
                with self.class_body(attrs):
                    attrs[target.id] = self.const(item.value)  # `expansion = 1`, `double = base * 2`
            elif not (isinstance(item, ast.Pass) or isinstance(item, ast.Expr) and isinstance(item.value, ast.Constant)
                      or isinstance(item, ast.AnnAssign) and item.value is None):  # `last_loss: Optional[torch.Tensor]`
                raise self.err(item, f"class {stmt.name}: only methods (def) and constant class attributes are allowed "
                                     "in the class body")
        if function:
            self.scope[stmt.name] = self.define_function(stmt, methods, attrs)  # type: ignore[attr-defined]
            return
        module = parent.module if parent is not None else not plain
        cls = UserClass(stmt.name, methods, attrs, parent, module=module, fields=fields if dataclass else None,
                        torch_base=layer or (parent.torch_base if parent else None))
        for fn in own:
            fn.owner = cls
        self.scope[stmt.name] = cls

    def touches_values(self, node: ast.expr) -> bool:
        """Whether the expression names a tensor, a module or an object of the program, or a list or dict holding one
        (a call of a module gradtrace does not trace could change them, shuffle a list of them: refused, not skipped)."""
        def held(v: Value) -> bool:
            items = v.values() if isinstance(v, dict) else v if isinstance(v, (list, tuple)) else ()
            return isinstance(v, (T, ModuleInst, Instance)) or any(held(i) for i in items)

        return any(isinstance(n, ast.Name) and held(self.scope.get(n.id)) for n in ast.walk(node))

    def refuse_foreign(self, func: ast.expr) -> None:
        """A call of what a module gradtrace does not trace gives (os.system, tqdm): refused, naming it."""
        path = self.foreign_path(func)
        if path is not None:
            raise self.err(func, f"{self.src(func)[:60]}(...): {_kind(Foreign(path))}")

    @contextmanager
    def class_body(self, attrs: dict[str, Value]) -> Iterator[None]:
        """A class body's names: its attributes so far over the program's (`double = base * 2`)."""
        scope = self.scope
        self.scope = ChainMap(attrs, scope)  # type: ignore[assignment]
        try:
            yield
        finally:
            self.scope = scope

    def foreign_path(self, node: ast.expr) -> str | None:
        """`dataclass` or `dataclasses.dataclass` when imported from a module gradtrace does not trace: its path."""
        if isinstance(node, ast.Name):
            v = self.scope.get(node.id)
            return v.path if isinstance(v, Foreign) else None
        if isinstance(node, ast.Attribute):
            base = self.foreign_path(node.value)
            return f"{base}.{node.attr}" if base is not None else None
        return None

    def function(self, stmt: ast.FunctionDef) -> UserFunction:
        a = stmt.args
        params = [p.arg for p in (*a.posonlyargs, *a.args)]

        def default(d: ast.expr) -> Value:
            v = self.expr(d)  # evaluated at the def, as Python does (`lambda t, a=a: ...` keeps a's value now)
            # (act_fn=nn.SiLU(); nerf-pytorch's `embed = lambda x, eo=embedder_obj: eo.embed(x)`)
            return v if isinstance(v, (T, UserFunction, ClassRef, ModuleInst, Instance, UserClass)) else self.const(d)

        defaults = dict(zip(params[len(params) - len(a.defaults):], (default(d) for d in a.defaults), strict=True))
        defaults |= {p.arg: default(d) for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None}
        fn = UserFunction(stmt, defaults)
        for d in stmt.decorator_list:  # @torch.no_grad() def estimate_loss(): ... (refused when called, if ever)
            if isinstance(d, ast.Name) and d.id in BINDINGS and d.id not in self.scope:
                fn.binding = d.id  # @property, @staticmethod, @classmethod
                continue
            path = self.dotted(d.func if isinstance(d, ast.Call) else d)
            given = [*d.args, *(k.value for k in d.keywords)] if isinstance(d, ast.Call) else []
            off = path == "torch.inference_mode" and bool(given) and not self.const(given[0])  # @inference_mode(False)
            fn.no_grad = fn.no_grad or path in ("torch.no_grad", "torch.inference_mode") and not off
            if path not in ("torch.no_grad", "torch.inference_mode", "torch.enable_grad", ONCE_DIFFERENTIABLE):
                # (@once_differentiable on a Function's backward: it runs without a graph, as gradtrace's does)
                fn.refused = fn.refused or f"the decorator @{self.src(d)[:40]} of {stmt.name} is not traced"
        return fn

    def lambda_function(self, node: ast.Lambda) -> UserFunction:
        """`lambda x: x * torch.sigmoid(x)`: a function whose body returns the expression, called like a def; the
        locals where it is made are its closure (read when it runs, as Python reads them after the fact too)."""
        fn_def = ast.FunctionDef(name="lambda", args=node.args, body=[ast.copy_location(ast.Return(node.body), node.body)],
                                 decorator_list=[], returns=None)
        return self.closure_of(self.function(ast.fix_missing_locations(ast.copy_location(fn_def, node))))

    def closure_of(self, fn: UserFunction) -> UserFunction:
        """A lambda's or inner def's closure: the enclosing scopes themselves, not a copy (a name rebound later is
        read when it runs, as Python does)."""
        maps = [m for m in (self.scope.maps if isinstance(self.scope, ChainMap) else [self.scope]) if m is not self.globals]
        if maps:
            fn.closure = ChainMap(*maps)
        return fn

    # ---- calls --------------------------------------------------------------------------------

    def call_value(self, v: UserFunction | UserClass | Instance | Bound | ClassRef, node: ast.Call) -> Value:
        """f(...), Net(...), model(...); a torch function held as a value (`act = F.relu`, `self.act(x)`)."""
        if isinstance(v, ClassRef):
            return self.call_path(v.path, node)  # type: ignore[attr-defined]
        if isinstance(v, UserFunction):
            prefix = self.prefix if v.name == "lambda" else f"{v.name}."  # a lambda's nodes are its caller's
            self.calls.append(prefix)
            try:
                return self.call_user(v, *self.call_args(node), node, prefix=prefix)
            finally:
                self.calls.pop()
        if isinstance(v, UserClass):
            return self.instantiate(v, node)
        if isinstance(v, Bound):
            args, kwargs = self.call_args(node)
            return self.call_user(v.fn, [*receiver(v.fn, v.obj), *args], kwargs, node, prefix=f"{v.obj.path}.")
        if isinstance(v, Applier):
            return self.apply_function(v.fn, node)  # type: ignore[attr-defined, no-any-return]
        if "__call__" in v.cls.methods:  # a plain class's (a Grad-CAM helper), or a module's own (fast.ai's part 2)
            if v.cls.module:
                self.finalize(v)
            return self.call_method(v, "__call__", node)
        if not v.cls.module:
            raise self.err(node, f"{_kind(v)} is not callable")
        if self.has_hooks(v):  # type: ignore[attr-defined]
            return self.hooked_forward(v, node)
        return self.call_method(v, "forward", node)

    def hooked_forward(self, inst: Instance, node: ast.Call) -> Value:
        """model(x) with forward (pre-)hooks registered on it: they run around its forward, as torch runs them."""
        self.finalize(inst)
        fn = inst.cls.methods.get("forward")
        if fn is None and inst.torch_module is None:
            raise self.err(node, f"{inst.kind} has no method 'forward' (an nn.Module is called through its forward)")
        args, kwargs = self.call_args(node)
        args = self.pre_hooks(inst, args, node)  # type: ignore[attr-defined]
        replaced = self.replaces_output(inst)  # type: ignore[attr-defined]
        caller = node is self.stmt_expr and self.stmt_name is not None
        wanted = self.name_for(node) if caller and (replaced or fn is None) else None  # the caller's name (name_for takes it)
        if fn is None:  # a class derived from a torch layer, its forward the layer's
            if kwargs or not all(isinstance(a, T) for a in args):
                raise self.err(node, f"{inst.kind}(...) takes tensors positionally")
            name = wanted if wanted and not replaced else self.fresh(f"{inst.path}.out")
            out = T(self.torch_layer_on(inst, [a.name for a in args], name, node))  # type: ignore[attr-defined]
        else:  # (the caller's name goes to what a hook returns, when one may: named_output)
            out = self.call_user(fn, [*receiver(fn, inst), *args], kwargs, node, prefix=f"{inst.path}.", named=not replaced)
        got = self.forward_hooks(inst, args, out, node)  # type: ignore[attr-defined]
        if replaced and wanted and isinstance(out, T):
            return self.named_output(got, out.name, wanted)  # type: ignore[attr-defined, no-any-return]
        return got

    def call_args(self, node: ast.Call) -> tuple[list[Value], dict[str, Value]]:
        """A call's arguments, evaluated in the caller's scope; `*xs` and `**cfg` unpack a list or tuple and a dict."""
        args: list[Value] = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                v = self.expr(a.value)
                if not isinstance(v, (list, tuple)):
                    raise self.err(a, f"*{self.src(a.value)[:40]} unpacks a list or tuple here, not {_kind(v)}")
                args.extend(v)
            else:
                args.append(self.expr(a))
        kwargs: dict[str, Value] = {}
        for k in node.keywords:
            items = {k.arg: self.expr(k.value)} if k.arg else self.expr(k.value)
            if not isinstance(items, dict) or not all(isinstance(key, str) for key in items):
                raise self.err(k.value, f"**{self.src(k.value)[:40]} unpacks a dict with string keys here, not {_kind(items)}")
            for key, v in items.items():
                if key in kwargs:
                    raise self.err(k.value, f"keyword argument '{key}' given twice")
                kwargs[key] = v
        return args, kwargs

    def call_method(self, inst: Instance, name: str, node: ast.Call) -> Value:
        if name == "forward":
            self.finalize(inst)
        fn = inst.cls.methods.get(name)
        if fn is None and name == "forward" and inst.torch_module is not None:
            return self.torch_base_forward(inst, node)  # the torch layer's own forward
        if fn is None:
            raise self.err(node, f"{inst.kind} has no method '{name}'" + (" (an nn.Module is called through its forward)"
                                                                           if name == "forward" else ""))
        args, kwargs = self.call_args(node)
        return self.call_user(fn, [*receiver(fn, inst), *args], kwargs, node, prefix=f"{inst.path}.")

    def forward_on(self, inst: Instance, inputs: list[str], node: ast.Call) -> str:
        """inst's forward on these tensors (an item of an nn.Sequential); the name of what it returns."""
        self.finalize(inst)
        fn = inst.cls.methods.get("forward")
        if fn is None and inst.torch_module is None:
            raise self.err(node, f"{inst.kind} has no method 'forward'")
        if fn is None:  # a class derived from a torch layer, its forward the layer's
            return self.torch_layer_on(inst, inputs, self.fresh(f"{inst.path}.out"), node)  # type: ignore[attr-defined, no-any-return]
        out = self.call_user(fn, [inst, *(T(i) for i in inputs)], {}, node, prefix=f"{inst.path}.", named=False)
        if not isinstance(out, T):
            raise self.err(node, f"{inst.kind}.forward returned {_kind(out)}, not a tensor (inside an nn.Sequential)")
        return out.name

    def training_flag(self, method: str, call: ast.Call) -> bool:
        """The mode `m.train()`, `m.train(False)`, `m.train(mode=False)` or `m.eval()` sets."""
        if method == "eval":
            if call.args or call.keywords:
                raise self.err(call, "eval() takes no arguments")
            return False
        given = [*call.args, *[k.value for k in call.keywords if k.arg == "mode"]]
        if len(given) > 1 or any(k.arg != "mode" for k in call.keywords):
            raise self.err(call, "train() takes one argument, mode")
        return bool(self.const(given[0])) if given else True
    def instance_method(self, inst: Instance, method: str, node: ast.Call) -> Value:
        """model.forward(x), model.eval(), model.to(device), model.parameters(), self.helper(x)."""
        if method in inst.attrs:  # self.fc1(x): a module it holds
            v = inst.attrs[method]
            if isinstance(v, (ModuleInst, Instance)) and id(inst) not in self.initializing:
                self.finalize(inst)  # its modules are about to be used: they need their names now
            if isinstance(v, ModuleInst):
                return self.module_call(v, node)  # type: ignore[attr-defined]
            if isinstance(v, CALLABLE):
                return self.call_value(v, node)
            raise self.err(node, f"{inst.path}.{method} is {_kind(v)}, which is not callable")
        if method in inst.cls.methods and inst.cls.methods[method].binding == "property":
            v = self.call_user(inst.cls.methods[method], [inst], {}, node, prefix=f"{inst.path}.", named=False)
            if isinstance(v, ModuleInst):  # self.head(x), head a @property returning a module
                return self.module_call(v, node)  # type: ignore[attr-defined]
            if isinstance(v, CALLABLE):
                return self.call_value(v, node)
            raise self.err(node, f"{inst.kind}.{method} is a property whose value is {_kind(v)}, which is not callable")
        if method in inst.cls.methods:
            return self.call_method(inst, method, node)
        if not inst.cls.module:
            raise self.err(node, f"{inst.kind} has no method '{method}'")
        if method in ("parameters", "named_parameters"):
            return self.module_parameters(inst, method, node)
        if method == "apply":
            return self.module_apply(inst, node)
        if method in MODULE_WALKS:
            return self.module_walk(inst, method, node)
        if method in NOT_TRACED:
            return Untraced(f"{inst.path}.{method}()")
        if method in ("train", "eval"):
            inst.set_training(self.training_flag(method, node))
            return inst
        if method == "requires_grad_":
            return self.module_requires_grad(inst, node)
        if method in SAME_OBJECT:
            if method in ("float", "double", "to"):
                self.module_cast(inst, method, node)  # type: ignore[attr-defined]
            return inst
        raise self.err(node, f"{inst.kind} has no method '{method}' gradtrace understands")

    def module_requires_grad(self, m: ModuleInst | Instance, node: ast.Call) -> ModuleInst | Instance:
        """model.backbone.requires_grad_(False): every parameter of it, as torch's Module.requires_grad_ (freezing)."""
        flag = bool(self.const(node.args[0])) if node.args else True
        found: dict[str, str] = {}
        self.collect_parameters(m, "", found)
        for leaf in found:
            self.requires_grad(T(leaf), flag, node)  # type: ignore[attr-defined]
        return m

    def call_user(self, fn: UserFunction, args: list[Value], kwargs: dict[str, Value], node: ast.Call, prefix: str,
                  named: bool = True) -> Value:
        """Run fn's body for this call; returns what its last statement returns (None without a return)."""
        a = fn.node.args
        params = [p.arg for p in (*a.posonlyargs, *a.args)]
        keyword_only = [p.arg for p in a.kwonlyargs]
        if len(args) > len(params) and a.vararg is None:
            raise self.err(node, f"{fn.name}() takes {len(params)} positional argument(s), got {len(args)}")
        bound = dict(zip(params, args, strict=False))
        if a.vararg is not None:  # def forward(self, x, *args): the rest, as a tuple
            bound[a.vararg.arg] = tuple(args[len(params):])
        extra: dict[str, Value] = {}
        for k, v in kwargs.items():
            if k not in params and k not in keyword_only:
                if a.kwarg is None:
                    raise self.err(node, f"{fn.name}() got an unexpected keyword argument '{k}'")
                extra[k] = v  # def f(x, **kwargs): the rest, as a dict
                continue
            if k in bound:
                raise self.err(node, f"{fn.name}() got multiple values for argument '{k}'")
            bound[k] = v
        if a.kwarg is not None:
            bound[a.kwarg.arg] = extra
        missing = [p for p in (*params, *keyword_only) if p not in bound and p not in fn.defaults]
        if missing:
            raise self.err(node, f"{fn.name}() missing argument(s): {', '.join(missing)}")
        if fn.refused:
            raise self.err(node, fn.refused)
        if self.depth >= MAX_DEPTH:
            raise self.err(node, f"calls nest deeper than {MAX_DEPTH} (recursion is not traced)")
        outers = list(self.stmt_names) if named and node is self.stmt_expr else []
        outer = self.stmt_name if named and node is self.stmt_expr else None
        outers = [outer] if outer is not None else outers if len(outers) > 1 else []
        shape = self.stmt_shape if len(outers) > 1 else None
        scope = {**self.globals, **fn.closure, **fn.defaults, **bound}
        known = {k: v for k, v in scope.items() if type(v) is int}
        known |= {f"{k}.{a}": v for k, o in scope.items() if isinstance(o, Instance)
                  for a, v in {**o.cls.attrs, **o.attrs}.items() if type(v) is int}
        # loops over what the call's names hold unroll when reached, on the values then (a list a statement before
        # may have grown: `ys = xs; ys.append(...)`, a helper's append); a loop that returns from inside unrolls now,
        # when nothing before it may have changed its length
        body = unroll(fn.node.body, self.err, known, lambda it: self.static_length(it, scope), lazy=True,
                      harmless=lambda call: self.harmless_call(call, scope))
        with self.frame(prefix, {**fn.closure, **fn.defaults, **bound}, body), self.grad_mode(fn), self.method_of(fn, bound):
            self.returns = _returned_names(self.reached(body)[1], outers, self.bindings, shape)
            self.return_shape = shape
            result = self.body(body, outers, prefix)
        if outers:
            self.stmt_name = None
        return result

    @contextmanager
    def method_of(self, fn: UserFunction, bound: dict[str, Value]) -> Iterator[None]:
        """While a method runs, super() inside it looks at its class's base, for the object it runs on."""
        if fn.owner is None:
            yield
            return
        a = fn.node.args
        self.supers.append((fn.owner, bound[(*a.posonlyargs, *a.args)[0].arg]))
        try:
            yield
        finally:
            self.supers.pop()

    def super_call(self, call: ast.Call) -> Value:
        """super().__init__(...), super().forward(x), super(Net, self).method(...): the method of the base class of
        the class whose method runs now, on the same object; nn.Module's own __init__ does nothing traced."""
        f = call.func
        assert isinstance(f, ast.Attribute)
        if not self.supers:
            raise self.err(call, "super() outside a method of a class")
        cls, obj = self.supers[-1]
        fn = cls.base.methods.get(f.attr) if cls.base is not None else None
        if fn is None and cls.torch_base is not None and isinstance(obj, Instance):
            return self.torch_base_call(cls.torch_base, obj, f.attr, call)
        if fn is None:
            if f.attr == "__init__":
                return None  # nn.Module.__init__
            raise self.err(call, f"super().{f.attr}: the base class of {cls.name} has no method '{f.attr}'")
        args, kwargs = self.call_args(call)
        return self.call_user(fn, [obj, *args], kwargs, call, prefix=f"{obj.path}.", named=f.attr != "__init__")

    @contextmanager
    def grad_mode(self, fn: UserFunction) -> Iterator[None]:
        """A function decorated @torch.no_grad() runs without a graph, as a `with torch.no_grad():` block."""
        was = self.no_grad  # type: ignore[has-type]
        if fn.no_grad:
            self.no_grad = True
            self.builder.grad_enabled = False
        try:
            yield
        finally:
            self.no_grad = was
            self.builder.grad_enabled = not was

    @contextmanager
    def frame(self, prefix: str, local: dict[str, Value], body: list[ast.stmt]) -> Iterator[None]:
        """A call's scope: its locals over the program's globals, its own binding counts, names under `prefix`."""
        saved = {k: getattr(self, k) for k in FRAME}
        self.callers.append(saved["scope"])  # type: ignore[attr-defined]
        self.scope = ChainMap(dict(local), self.globals)  # type: ignore[assignment]
        self.prefix, self.spec_inputs = prefix, set()
        self.bindings, self.seen = Counter(), Counter()
        self.loop_depth = 0  # a break in a function ends no loop of its caller (Python refuses it)
        self.count_bindings(body)  # type: ignore[attr-defined]
        self.reserved = saved["reserved"] | {prefix + k for k in self.bindings}
        # the names the callers' statements will bind when the call returns: the callee's own bindings take others
        # (a helper method's `e = ...` under forward's `e = self.prep(h)`, both under the object's prefix)
        self.pending = saved["pending"] | {n for n in (saved["stmt_name"], *saved["stmt_names"]) if n}
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            self.callers.pop()  # type: ignore[attr-defined]
            for k, v in saved.items():
                setattr(self, k, v)

    def begin_named(self, value: ast.expr, name: str) -> None:
        """Start a statement whose right-hand side is named `name`, its sub-expressions name#1, name#2, ..."""
        self.begin("", value, [name])  # type: ignore[attr-defined]
        self.target = name

    def static_length(self, it: ast.expr, scope: dict[str, Value]) -> int | None:
        """The number of items of `self.layers`, `xs` (a call's arguments) before its statements run: the length of
        a loop over it (None: unknown)."""
        return self.length_of(self.entry_value(it, scope))

    def entry_value(self, node: ast.expr, scope: dict[str, Value]) -> Value:
        """What `xs` or `self.blocks` held when the call began (None: not a name or an object's attribute)."""
        path: list[str] = []
        while isinstance(node, ast.Attribute):
            path.append(node.attr)
            node = node.value
        v = scope.get(node.id) if isinstance(node, ast.Name) else None
        for attr in reversed(path):
            v = v.attrs.get(attr) if isinstance(v, Instance) else None
        return v

    def harmless_call(self, call: ast.Call, scope: dict[str, Value]) -> bool:
        """A call that cannot change the length of a list or module container: Python's pure builtins, torch's
        functions, a module of torch's called or asked (`self.stem(x)`, `m.parameters()`), a tensor's methods."""
        f = call.func
        if isinstance(f, ast.Name) and f.id not in scope and f.id in PURE_BUILTINS:
            return True
        path = self.dotted(f)
        if path is not None and path.split(".")[0] in ("torch", "F", "nn", "math", "numpy"):
            return True
        if _torch_only(self.entry_value(f, scope)):
            return True
        return isinstance(f, ast.Attribute) and (isinstance(receiver := self.entry_value(f.value, scope), T)
                                                 or _torch_only(receiver))

    def length_of(self, v: Value) -> int | None:
        """How many items a loop over v goes over (None: nothing gradtrace iterates): a list, tuple or dict, a module
        container, a tensor's rows."""
        v = container_of(v)
        if isinstance(v, (list, tuple, dict, str)):
            return len(v)
        if isinstance(v, (frozenset, Loader, Epoch)):
            return len(v)
        if isinstance(v, ModuleInst) and v.layer is None:
            return len(v.children)
        if isinstance(v, T):
            shape = self.shape(v)
            return shape[0] if shape else None
        return None

    def static_condition(self, test: ast.expr) -> bool | None:
        """An `if`'s condition when names bound so far decide it (`self.act == "relu"`, `targets is None` in a call),
        else None: how many times a call binds each name, known before its statements run (the last binding takes
        the bare name). Only names, attributes of objects, constants, comparisons and `and`/`or`/`not`: nothing that
        could add a node."""
        # a tensor is known to be no None: `targets is None`, `self.bias is not None` decide now
        identity = {id(e) for c in ast.walk(test) if isinstance(c, ast.Compare) and all(isinstance(o, (ast.Is, ast.IsNot))
                                                                                  for o in c.ops) for e in (c.left, *c.comparators)}
        for n in ast.walk(test):
            if not isinstance(n, (ast.Name, ast.Attribute, ast.Constant, ast.Compare, ast.BoolOp, ast.UnaryOp,
                                  ast.Load, ast.boolop, ast.cmpop, ast.Not, ast.Tuple, ast.List)):
                return None
            if isinstance(n, ast.Name) and (n.id not in self.scope or isinstance(self.scope[n.id], T) and id(n) not in identity):
                return None
            if isinstance(n, ast.Attribute) and not (isinstance(n.value, ast.Name)
                                                     and isinstance(self.scope.get(n.value.id), Instance)):
                return None
            if isinstance(n, ast.Attribute) and (isinstance(self.scope[n.value.id].attrs.get(n.attr), T) and id(n) not in identity  # type: ignore[attr-defined]
                                                 or n.attr in self.scope[n.value.id].cls.methods):  # type: ignore[attr-defined]
                return None  # a tensor, or a property (its getter could add nodes)
        try:
            v = self.expr(test)
        except SpecError:
            return None
        return None if isinstance(v, T) else bool(v)

    # ---- objects ------------------------------------------------------------------------------

    def instance_attribute(self, inst: Instance, node: ast.Attribute) -> Value:
        """self.fc1, self.training, model.fc1.weight (through the module)."""
        if node.attr in inst.attrs:
            v = inst.attrs[node.attr]
            building = id(inst) in self.initializing and isinstance(v, ModuleInst) and v.layer is None
            if isinstance(v, (ModuleInst, Instance)) and not building:  # (its own __init__ filling a container waits)
                self.finalize(inst)  # its modules' parameters are about to be used: they need their names now
            return v
        if node.attr == "training":
            return inst.training
        if node.attr in inst.cls.attrs:
            return inst.cls.attrs[node.attr]
        if node.attr in inst.cls.methods:
            fn = inst.cls.methods[node.attr]
            if fn.binding == "property":  # self.head_size: the getter runs
                return self.call_user(fn, [inst], {}, node, prefix=f"{inst.path}.")  # type: ignore[arg-type]
            return Bound(fn, inst)  # self._init_weights, passed to self.apply
        if inst.torch_module is not None:  # the torch layer's own (a BatchNorm's running_mean)
            return self.module_attribute(inst.torch_module, node)
        have = ", ".join(inst.attrs) or "none"
        raise self.err(node, f"{inst.kind} has no attribute '{node.attr}' (set in __init__: {have})")

    def set_attribute(self, inst: Instance, attr: str, value: ast.expr) -> None:
        """`self.fc1 = nn.Linear(...)`: modules and parameters named under the object's path."""
        path = f"{inst.path}.{attr}"
        old = inst.attrs.get(attr)
        replacing = isinstance(old, (ModuleInst, Instance)) and old.path is not None
        if replacing and isinstance(old, ModuleInst) and not _holds_parameters(old):
            self.instance_paths.discard(old.path)  # type: ignore[arg-type]  # `self.shortcut = nn.Sequential()` set again
            replacing = False
        self.begin_named(value, self.fresh(path))
        if replacing:
            self.stmt_name = None  # the new object is named apart, after it is made (Finish may give it the old name)
        v = self.expr(value)
        if container_of(inst) is not inst and (isinstance(v, ModuleInst) or isinstance(v, Instance) and v.cls.module):
            raise self.err(value, f"{path}: a module set on an object of an nn.{inst.torch_module.kind} subclass joins its "
                                  "layers in torch (its forward and loops go over it too); not traced here: give it to "
                                  "super().__init__(...) with the others")
        if replacing and isinstance(v, (ModuleInst, Instance)) and v is not old and inst.final:
            place = self.free_path(path)  # 'model.fc#2' until the program has run
            self.replaced.append((old.path, place))  # type: ignore[union-attr]
            path = place
        if inst.final and isinstance(v, ModuleInst):
            self.ensure_path(v, path)
        elif inst.final and isinstance(v, Instance):
            self.finalize(v, path)  # `self.block = make_block()`: named for its place
        elif isinstance(v, (list, tuple)) and any(isinstance(i, ModuleInst) or isinstance(i, Instance) and i.cls.module
                                                  for i in v):
            self.res.notes.append(f"line {self.line}: {path} holds modules in a plain {type(v).__name__}: torch does not "  # type: ignore[attr-defined]
                                  "register them (model.parameters(), the optimizer and state_dict() miss them); "
                                  "nn.ModuleList does")
        elif not inst.final and isinstance(v, T):
            inst.pinned = True  # an nn.Parameter named under the provisional path
        if isinstance(v, (ParameterList, ParameterDict)):  # each parameter named for its place: model.coefs.0
            self.name_parameters(v, path)  # type: ignore[attr-defined]
            inst.pinned = inst.pinned or not inst.final
        inst.attrs[attr] = v

    def scope_maps(self) -> list[Value]:
        """The scope's name tables (a call's locals, then the globals)."""
        return list(self.scope.maps) if isinstance(self.scope, ChainMap) else [self.scope]

    def holds(self, roots: list[Value], obj: Value, names: set[str], skip: tuple[Instance, str] | None = None,
              owner: Value = None) -> bool:
        """Whether anything reachable from `roots` (names' values, containers, modules and objects) is `obj` or a
        tensor named in `names`; `skip`: the (object, attribute) slot being replaced; `owner`: not looked into."""
        stack, seen = list(roots), set()
        while stack:
            v = stack.pop()
            if obj is not None and v is obj or isinstance(v, T) and v.name in names:
                return True
            if v is owner or id(v) in seen or not isinstance(v, (list, tuple, dict, ModuleInst, Instance)):
                continue
            seen.add(id(v))
            if isinstance(v, dict):
                stack += v.values()
            elif isinstance(v, (list, tuple)):
                stack += v
            elif isinstance(v, ModuleInst):
                subs = [part for _, part in v.parts or []]  # a transformer layer holds its parts' parameters through them
                held = {n for part in subs for n in part.params.values()}
                stack += [*v.children, *subs, *(T(n) for n in v.params.values() if n not in held)]
            else:
                stack += [a for k, a in v.attrs.items() if skip is None or not (v is skip[0] and k == skip[1])]
        return False

def _holds_parameters(m: ModuleInst) -> bool:
    """Whether a module (or anything in a container) has parameter leaves already named after its path."""
    return bool(m.params) or any(_holds_parameters(c) if isinstance(c, ModuleInst) else True for c in m.children)


def is_super(call: ast.Call) -> bool:
    """`super().method(...)` or `super(Net, self).method(...)`."""
    f = call.func
    return (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Call)
            and isinstance(f.value.func, ast.Name) and f.value.func.id == "super")

