"""What an nn.Module object offers besides forward: parameters() and named_parameters() in torch's order and names,
apply(fn) children first, modules()/named_modules()/children() as torch lists them."""

from __future__ import annotations

import ast

from services.compiler.expressions import ExpressionCompiler, _kind
from services.compiler.transformer import parts, synced
from services.compiler.values import (
    Bound,
    Instance,
    ModuleInst,
    ParameterDict,
    ParameterList,
    T,
    UserFunction,
    Value,
    receiver,
)
from services.errors import SpecError
from services.ir import Event

MODULE_WALKS = ("modules", "named_modules", "children", "named_children")
"""Module methods that list submodules (`for m in self.modules(): if isinstance(m, nn.Conv2d): ...`)."""


class ModuleTree(ExpressionCompiler):
    """The walks over a module's submodules; ensure_path, finalize and call_user are the ProgramCompiler's."""

    def module_parameters(self, m: ModuleInst | Instance, method: str, node: ast.Call) -> list[Value]:
        """model.parameters() / model.named_parameters(): the parameter leaves in torch's order (a module's own, then
        its submodules' in the order they were set, depth first; a tied parameter once), named as torch names them."""
        recurse = True
        if node.args or any(k.arg != "recurse" for k in node.keywords):
            raise self.err(node, f".{method}() takes only recurse= here")
        if node.keywords:
            recurse = bool(self.const(node.keywords[0].value))
        found: dict[str, str] = {}  # leaf -> its name relative to m, the first place it is found
        self.collect_parameters(m, "", found, recurse)
        if method == "parameters":
            return [T(leaf) for leaf in found]
        return [(name, T(leaf)) for leaf, name in found.items()]

    def module_apply(self, m: ModuleInst | Instance, node: ast.Call) -> ModuleInst | Instance:
        """model.apply(init_weights): the function on every submodule, children before their parent, in the order
        they were set (torch's Module.apply); it returns the module."""
        if len(node.args) != 1 or node.keywords:
            raise self.err(node, "apply takes one function")
        fn = self.expr(node.args[0])
        if not isinstance(fn, (UserFunction, Bound)):
            raise self.err(node.args[0], f"apply takes a function of the program, not {_kind(fn)}")
        s = self.stmt_expr  # `model = nn.Sequential(...).apply(init)`: named for the variable first
        if self.stmt_name is not None and isinstance(s, ast.Call) and isinstance(s.func, ast.Attribute) and s is node:
            if isinstance(m, ModuleInst) and m.path is None:
                self.ensure_path(m, self.stmt_name)
            elif isinstance(m, Instance):
                self.finalize(m, self.stmt_name)
        for sub in self.submodules(m):
            if isinstance(fn, Bound):
                self.call_user(fn.fn, [*receiver(fn.fn, fn.obj), sub], {}, node, prefix=f"{fn.obj.path}.", named=False)
            else:
                self.call_user(fn, [sub], {}, node, prefix=f"{fn.name}.", named=False)
        return m

    def module_walk(self, m: ModuleInst | Instance, method: str, node: ast.Call) -> list[Value]:
        """model.modules() / named_modules() (the module, then each submodule once, depth first) and children() /
        named_children(), as torch lists them, with torch's relative names ('features.0')."""
        if node.args or node.keywords:
            raise self.err(node, f".{method}() takes no arguments here")
        pairs: list[tuple[str, ModuleInst | Instance]] = []
        seen: set[int] = set()  # each module once, under the first name it is found by
        stack = [("", m)] if method in ("modules", "named_modules") else self.named_children(m)[::-1]
        while stack:
            name, v = stack.pop()
            if id(v) in seen:
                continue
            seen.add(id(v))
            pairs.append((name, v))
            if method in ("modules", "named_modules"):
                stack += [(f"{name}.{k}" if name else k, c) for k, c in reversed(self.named_children(v))]
        return [c for _, c in pairs] if method in ("modules", "children") else [tuple(p) for p in pairs]

    def named_children(self, m: ModuleInst | Instance) -> list[tuple[str, ModuleInst | Instance]]:
        """A module's direct submodules by the names torch gives them, named first (their parameters may be used)."""
        if isinstance(m, ModuleInst):
            self.ensure_path(m, None)
            return parts(m) + [(m.child_name(i), c) for i, c in enumerate(m.children)]  # parts: an attention's out_proj
        self.finalize(m)
        return [(k, a) for k, a in m.attrs.items() if isinstance(a, ModuleInst) or isinstance(a, Instance) and a.cls.module]

    def submodules(self, m: ModuleInst | Instance) -> list[ModuleInst | Instance]:
        """m's modules, each after its children (the order torch's apply visits them), named first."""
        out: list[ModuleInst | Instance] = []
        for c in {id(c): c for _, c in self.named_children(m)}.values():  # a module set twice on one parent: once
            out += self.submodules(c)
        return [*out, m]

    def load_state(self, m: ModuleInst | Instance, node: ast.Call) -> None:
        """`target_net.load_state_dict(policy_net.state_dict())` (the DQN tutorial): each parameter takes the other
        module's values of the same name, as torch copies them (strict: the same names and shapes)."""
        arg = node.args[0] if len(node.args) == 1 else None
        if not (isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "state_dict"
                and not arg.args and not arg.keywords) or any(k.arg != "strict" for k in node.keywords):
            raise self.err(node, "load_state_dict takes another module's state_dict() here (a file's or a dict's "
                                 "values are not traced)")
        src = self.expr(arg.func.value)
        if not isinstance(src, (ModuleInst, Instance)):
            raise self.err(arg, f"state_dict() of {_kind(src)}: a module's is copied")
        leaves = self.builder.leaves
        if any(isinstance(sub, ModuleInst) and sub.layer is not None and sub.layer.type.startswith("batch_norm")
               or isinstance(sub, Instance) and any(isinstance(a, T) and a.name in leaves and leaves[a.name].kind != "parameter"
                                                    for a in sub.attrs.values())
               for sub in [*self.submodules(m), *self.submodules(src)]):
            raise self.err(node, "load_state_dict of modules with buffers (batch norm's running statistics, "
                                 "register_buffer) is not traced: only parameters are copied here")
        strict = next((bool(self.const(k.value)) for k in node.keywords if k.arg == "strict"), True)
        mine: dict[str, str] = {}
        theirs: dict[str, str] = {}
        self.collect_parameters(m, "", mine)
        self.collect_parameters(src, "", theirs)
        by_name = {name: leaf for leaf, name in theirs.items()}
        missing = [name for name in mine.values() if name not in by_name]
        unexpected = sorted(set(by_name) - set(mine.values()))
        if strict and (missing or unexpected):
            raise self.err(node, "Error(s) in loading state_dict: " + "; ".join(
                ([f"Missing key(s): {', '.join(missing[:5])}"] if missing else [])
                + ([f"Unexpected key(s): {', '.join(unexpected[:5])}"] if unexpected else [])))
        for leaf, name in mine.items():
            if name not in by_name:
                continue  # strict=False: what the other module lacks keeps its values
            source = by_name[name]
            if self.shape(T(source)) != self.shape(T(leaf)):
                raise self.err(node, f"size mismatch for {name}: copying a param with shape {list(self.shape(T(source)))}, "
                                     f"the shape in the current model is {list(self.shape(T(leaf)))}")
            if source != leaf:
                self.written(T(leaf), node)  # type: ignore[attr-defined]
                self.stream.events.append(Event("assign", leaf, {"source": source}))  # type: ignore[attr-defined]

    def other_names(self) -> dict[str, str]:
        """The program's names, at its end, of tensors the graph knows by another name: `loss = total`, a loop's last
        `p` over model.parameters(), and torch's names of a module's parameters where the module is held under
        another name too (`model = Seq2Seq(enc, dec)`: model.encoder.weight is enc.weight), each -> the graph's name."""
        b, out = self.builder, {}
        for var, v in self.globals.items():  # type: ignore[attr-defined]
            if not var.isidentifier():
                continue
            if isinstance(v, T) and v.name != var and var not in b and v.name in b:
                out[var] = v.name
            elif isinstance(v, (ModuleInst, Instance)) and not var.startswith("_"):
                found: dict[str, str] = {}
                self.collect_parameters(v, "", found, named_only=True)
                out |= {f"{var}.{rel}": leaf for leaf, rel in found.items()
                        if f"{var}.{rel}" != leaf and f"{var}.{rel}" not in b and leaf in b}
        return out

    def collect_parameters(self, v: Value, prefix: str, found: dict[str, str], recurse: bool = True,
                           named_only: bool = False) -> None:
        """v's parameter leaves -> their names relative to v, in torch's order. `named_only`: a look that changes
        nothing, over modules named already (a module not yet named, or lazy, is passed over)."""
        if isinstance(v, ModuleInst):
            if named_only and (v.path is None or v.lazy is not None):
                return
            self.ensure_path(v, None)
            if v.lazy is not None:  # torch lists its UninitializedParameters, which gradtrace does not model
                raise SpecError(f"{v.path} (nn.{v.kind}) makes its parameters at its first call: read, count or freeze them "
                                "after it (call the model on an input first)", loc=("program",))
            for attr, leaf in (v.params if named_only else synced(v, modes=False)).items():  # a part's tie counts once
                found.setdefault(leaf, prefix + attr)
            for i, child in enumerate(v.children if recurse else []):
                self.collect_parameters(child, f"{prefix}{v.child_name(i)}.", found, named_only=named_only)
        elif isinstance(v, Instance) and v.cls.module:
            if named_only and not v.final:
                return
            self.finalize(v)
            leaves = self.builder.leaves
            for attr, a in v.attrs.items():  # its own nn.Parameters first (buffers are no parameters)
                if isinstance(a, T) and a.name in leaves and leaves[a.name].kind == "parameter":
                    found.setdefault(a.name, prefix + attr)
            for attr, a in v.attrs.items() if recurse else ():  # then its submodules' (a ParameterList is one), in order
                if isinstance(a, (ModuleInst, Instance)):
                    self.collect_parameters(a, f"{prefix}{attr}.", found, named_only=named_only)
                elif isinstance(a, (ParameterList, ParameterDict)):
                    for k, p in (a.items() if isinstance(a, ParameterDict) else enumerate(a)):
                        found.setdefault(p.name, f"{prefix}{attr}.{k}")


