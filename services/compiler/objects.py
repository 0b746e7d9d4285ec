"""Objects of a program's classes: an nn.Module subclass's object made (its __init__ run, its path: the variable or
place that names it, provisional until then), a plain class's object, an object of a class derived from a torch.nn
layer (the layer's parameters are its own), and names set on objects (setattr, add_module, register_buffer)."""

from __future__ import annotations

import ast

from services.compiler.expressions import ExpressionCompiler, _kind
from services.compiler.functions import SAME_OBJECT
from services.compiler.layers import NOT_CTOR, torch_attribute
from services.compiler.values import Instance, ModuleInst, T, UserClass, Value
from services.ir import Event

"""A conv layer's settings torch keeps as tuples (`self.padding[0]`)."""


class Objects(ExpressionCompiler):
    """instantiate, finalize and what they use (the attributes are the ProgramCompiler's)."""

    def instantiate(self, cls: UserClass, node: ast.Call) -> Instance:
        """Net(...): a new object named for the variable it is bound to; __init__ runs now (its modules draw their
        parameters in program order, as torch's do)."""
        if not cls.module:
            return self.plain_object(cls, node)
        s = self.stmt_expr
        if self.path_hint is not None:  # an item of a container being built: 'model.blocks.0'
            path, self.path_hint = self.path_hint, None
            if any(path.startswith(p) for p in self.calls):  # ... built inside a function: named where it ends up
                self.provisional.append(path)
        elif self.stmt_name is not None and (node is s or isinstance(s, ast.Call) and isinstance(s.func, ast.Attribute)
                                             and s.func.value is node and s.func.attr in SAME_OBJECT):
            path, self.stmt_name = self.object_name(self.stmt_name), None  # type: ignore[attr-defined]
            if self.local:  # `blk = Sub(d)` in a method: named where it ends up (`self.first = blk`)
                self.provisional.append(path)
        else:  # made where no variable or container names it: its class's name, until something does
            path = self.provisional_path(f"{self.prefix}{cls.name.lower()}")
        self.instance_paths.add(path)
        inst = Instance(cls, path, final=not any(path == p or path.startswith(f"{p}.") for p in self.provisional))
        init = cls.methods.get("__init__")
        args, kwargs = self.call_args(node)
        if init is not None:
            self.initializing.add(id(inst))
            try:
                self.call_user(init, [inst, *args], kwargs, node, prefix=f"{path}.", named=False)
            finally:
                self.initializing.discard(id(inst))
        elif cls.torch_base is not None:  # class MyLinear(nn.Linear) without an __init__ of its own: nn.Linear's
            self.torch_base_call(cls.torch_base, inst, "__init__", node, given=(args, kwargs))
        elif args or kwargs:
            raise self.err(node, f"{cls.name}() takes no arguments (it has no __init__)")
        return inst

    def provisional_path(self, base: str) -> str:
        """A path for an object nothing names yet (`base`, base#2, ...): renamed where it ends up (finalize)."""
        path, k = base, 1
        while path in self.instance_paths or path in self.builder:
            k += 1
            path = f"{base}#{k}"
        self.provisional.append(path)
        return path

    def plain_object(self, cls: UserClass, node: ast.Call) -> Instance:
        """An object of a plain class: a @dataclass's fields from the arguments and defaults (as its generated
        __init__ sets them, then __post_init__), or what the class's own __init__ sets."""
        hint, self.path_hint = self.path_hint, None  # an item of a list being built: 'layers.0' (makemore's layers)
        inst = Instance(cls, hint or f"{self.prefix}{self.stmt_name or cls.name.lower()}")
        args, kwargs = self.call_args(node)
        if cls.fields is None:
            init = cls.methods.get("__init__")
            if init is not None:
                self.call_user(init, [inst, *args], kwargs, node, prefix=f"{inst.path}.", named=False)
            elif args or kwargs:
                raise self.err(node, f"{cls.name}() takes no arguments (it has no __init__)")
            return inst
        if len(args) > len(cls.fields):
            raise self.err(node, f"{cls.name}() takes {len(cls.fields)} positional argument(s), got {len(args)}")
        values = dict(zip(cls.fields, args, strict=False))
        for k, v in kwargs.items():
            if k not in cls.fields:
                raise self.err(node, f"{cls.name}() got an unexpected keyword argument '{k}' (its fields: "
                                     f"{', '.join(cls.fields)})")
            if k in values:
                raise self.err(node, f"{cls.name}() got multiple values for argument '{k}'")
            values[k] = v
        missing = [f for f in cls.fields if f not in values and f not in cls.attrs]
        if missing:
            raise self.err(node, f"{cls.name}() missing argument(s): {', '.join(missing)}")
        inst.attrs = {f: values.get(f, cls.attrs.get(f)) for f in cls.fields}
        post = cls.methods.get("__post_init__")
        if post is not None:
            self.call_user(post, [inst], {}, node, prefix=f"{inst.path}.", named=False)
        return inst

    def finalize(self, inst: Instance, path: str | None = None) -> None:
        """Fix a provisional object's path (its place, 'net.layer1.0'; None: the one it has) and name the modules
        it holds under it, recursively. Their parameters were drawn when made: only the names wait."""
        if inst.final:
            if inst.placeable and path is not None and path not in self.instance_paths:
                self.renames[inst.path] = path  # (its tensors are named under the provisional path: renamed at the end)
                self.instance_paths.add(path)
                inst.placeable = False
            return
        if inst.path in self.provisional:
            self.provisional.remove(inst.path)
            inst.placeable = path is None
        if path is not None and path not in self.instance_paths:
            if inst.pinned:  # tensors are named under its provisional path already: renamed when the program ends
                self.renames[inst.path] = path
            else:
                inst.path = path
            self.instance_paths.add(path)
        inst.final = True
        for attr, v in inst.attrs.items():
            if isinstance(v, ModuleInst):
                self.ensure_path(v, f"{inst.path}.{attr}")
            elif isinstance(v, Instance):
                self.finalize(v, f"{inst.path}.{attr}")

    def torch_base_call(self, layer: str, obj: Instance, method: str, call: ast.Call,
                        given: tuple[list[Value], dict[str, Value]] | None = None) -> Value:
        """super().__init__(...) of a class derived from a torch.nn layer: the layer built as nn.<layer>(...) would be,
        its parameters the object's (self.weight, named model.fc.weight) and its settings its attributes
        (self.in_features); super().forward(x): that layer on x (with the object's parameters as they are now).
        `given`: the call's arguments evaluated already (a class without an __init__ of its own: `Seq(nn.Linear(3, 4))`
        draws once)."""
        if method == "__init__":
            args, keywords = call.args, call.keywords
            if given is not None or any(isinstance(a, ast.Starred) for a in args) or any(k.arg is None for k in keywords):
                values, named = given or self.call_args(call)  # type: ignore[attr-defined]  # super().__init__(*args, **kwargs)
                args = [ast.copy_location(ast.Constant(value=v), call) for v in values]
                keywords = [ast.keyword(arg=k, value=ast.copy_location(ast.Constant(value=v), call)) for k, v in named.items()]
            made = ast.copy_location(ast.Call(func=ast.Name(id=layer, ctx=ast.Load()), args=args, keywords=keywords), call)
            m = self.construct(layer, made)  # type: ignore[attr-defined]
            if m.lazy is not None:
                raise self.err(call, f"a class derived from nn.{layer} is not traced")
            self.instance_paths.discard(obj.path)  # (the layer is the object: its path, not a path#2 of its own)
            self.ensure_path(m, obj.path)  # type: ignore[attr-defined]
            obj.pinned = obj.pinned or not obj.final  # (named under a provisional path: renamed with it)
            obj.torch_module = m
            if m.layer is None:  # a container: its children are the object's, as its modules "0", "1", ...
                for k, child in enumerate(m.children):  # (parameters(), modules(), apply() go through them)
                    obj.attrs[m.child_name(k)] = child
                return None
            for attr in type(m.cfg).model_fields:
                if attr not in NOT_CTOR:  # torch's attributes: a conv's padding a tuple, a norm's shape a tuple
                    obj.attrs.setdefault(attr, torch_attribute(layer, attr, m.cfg))
            for attr, leaf in m.params.items():
                obj.attrs[attr] = T(leaf)
            if "bias" in type(m.cfg).model_fields and "bias" not in m.params:
                obj.attrs["bias"] = None
            if "reset_parameters" in obj.cls.methods:  # torch's layer __init__ calls the class's own init instead
                self.own_init(obj, m, call)
            return None
        if method == "forward":
            return self.torch_base_forward(obj, call)
        raise self.err(call, f"super().{method}: gradtrace traces nn.{layer}'s __init__ and forward")

    def own_init(self, obj: Instance, m: ModuleInst, call: ast.Call) -> None:
        """A class derived from a torch layer with a reset_parameters of its own: torch's __init__ makes the
        parameters empty and calls it (the layer's default init draws nothing)."""
        if m.event in self.stream.events:
            self.stream.events.remove(m.event)
        for leaf in m.params.values():
            shape, dtype = self.builder.shapes[leaf], self.builder.dtypes[leaf]
            self.stream.events.append(Event("tensor", leaf, {"fn": "empty", "args": [list(shape)], "dtype": dtype}))
            self.builder.leaves[leaf].init = f"{obj.kind}.reset_parameters"
        fn = obj.cls.methods["reset_parameters"]
        self.call_user(fn, [obj], {}, call, prefix=f"{obj.path}.", named=False)  # type: ignore[attr-defined]

    def torch_layer_on(self, obj: Instance, inputs: list[str], name: str, node: ast.Call) -> str:
        """The torch layer an object's class derives from, on these tensors, with the object's parameters now."""
        m = obj.torch_module
        for attr in m.params:
            if not isinstance(v := obj.attrs.get(attr), T):
                raise self.err(node, f"{obj.path}.{attr} is {_kind(v)}: nn.{m.kind}'s forward takes a tensor there")
            m.params[attr] = v.name
        return self.apply_module(m, inputs, name, node)  # type: ignore[attr-defined, no-any-return]

    def torch_base_forward(self, obj: Instance, call: ast.Call) -> Value:
        """The torch layer an object's class derives from, on the call's tensors, with the object's parameters."""
        if obj.torch_module is None:
            raise self.err(call, f"{obj.kind}: super().__init__(...) of its torch.nn layer did not run")
        args, kwargs = self.call_args(call)  # type: ignore[attr-defined]
        if kwargs or not all(isinstance(a, T) for a in args):
            raise self.err(call, f"nn.{obj.torch_module.kind}'s forward takes tensors positionally")
        name = self.name_for(call) if call is self.stmt_expr and self.stmt_name else self.fresh(f"{obj.path}.out")
        return T(self.torch_layer_on(obj, [a.name for a in args], name, call))

    def free_path(self, path: str) -> str:
        """path#2, path#3, ...: the first no module or object has."""
        k = 2
        while f"{path}#{k}" in self.instance_paths:
            k += 1
        return f"{path}#{k}"

    def set_named(self, name: ast.expr, value: list[ast.expr], call: ast.Call, obj: ast.expr | None = None) -> None:
        """setattr(self, name, m), self.add_module(name, m), self.register_parameter(name, p): `self.<name> = m`."""
        attr = self.const(name)
        if len(value) != 1 or call.keywords or not isinstance(attr, str) or not attr or "." in attr or attr.startswith("__"):
            raise self.err(call, "setattr/add_module take an object, a name (a string without dots) and a value")
        owner = obj if obj is not None else call.func.value  # type: ignore[attr-defined]
        target = ast.copy_location(ast.Attribute(value=owner, attr=attr, ctx=ast.Store()), call)
        self.assign(target, value[0], call)  # type: ignore[attr-defined]

    def register_buffer(self, inst: Instance, node: ast.Call) -> None:
        """self.register_buffer('mask', torch.tril(...)): an attribute that holds a tensor."""
        if not node.args or not isinstance(node.args[0], ast.Constant) or not isinstance(node.args[0].value, str):
            raise self.err(node, "register_buffer takes a name (a string) and a tensor")
        if len(node.args) < 2:
            raise self.err(node, "register_buffer takes a name and a tensor")
        self.set_attribute(inst, node.args[0].value, node.args[1])
        if not isinstance(inst.attrs[node.args[0].value], T):
            raise self.err(node, "register_buffer takes a tensor")
