"""copy.deepcopy of modules, as a DQN's target network, an EMA teacher or the Annotated Transformer's `clones` make
them: a new module of the same structure whose parameters and buffers start as the original's values at the copy
(torch copies, it draws nothing), named where the copy ends up ('target_net.fc.weight')."""

from __future__ import annotations

import ast
from collections import Counter
from typing import Any

from services.compiler.expressions import ExpressionCompiler, _kind
from services.compiler.layers import Emitter
from services.compiler.values import DType, Instance, ModuleInst, T, Value
from services.ir import Event, Leaf

BUFFERS = ("running_mean", "running_var")
"""The buffers a torch.nn layer of gradtrace's holds by name (a BatchNorm's), copied with it."""


class ModuleCopies(ExpressionCompiler):
    """deepcopy (ProgramCompiler holds provisional, instance_paths and the stream)."""

    provisional: list[str]
    instance_paths: set[str]

    def deepcopy(self, node: ast.Call) -> Value:
        """copy.deepcopy(obj): modules, the program's module objects, and lists, tuples and dicts of them."""
        if len(node.args) != 1 or node.keywords:
            raise self.err(node, "copy.deepcopy takes one object")
        v = self.expr(node.args[0])
        tied = next((p for p, n in Counter(self.parameters_held(v, set())).items() if n > 1), None)
        if tied is not None:  # torch's copy keeps the tie (one Parameter in two places); each copy here is its own
            raise self.err(node, f"copy.deepcopy of modules whose parameters are tied ('{tied}' in two places) is not "
                                 "traced: the copy would keep the tie")
        return self.copied(v, {}, node)

    def parameters_held(self, v: Value, seen: set[int]) -> list[str]:
        """Every parameter leaf `v` holds, once per place (a tied one twice)."""
        if id(v) in seen:
            return []
        seen.add(id(v))
        if isinstance(v, ModuleInst):
            return [*v.params.values(), *(p for c in v.children for p in self.parameters_held(c, seen))]
        if isinstance(v, Instance):
            return [p for a in v.attrs.values() for p in (
                [a.name] if isinstance(a, T) and a.name in self.builder.leaves else self.parameters_held(a, seen))]
        if isinstance(v, (list, tuple)):
            return [p for x in v for p in self.parameters_held(x, seen)]
        if isinstance(v, dict):
            return [p for x in v.values() for p in self.parameters_held(x, seen)]
        return []

    def copied(self, v: Value, memo: dict[Any, Any], node: ast.Call) -> Value:
        """A deep copy of `v`; `memo` maps what was copied already to its copy (a module held twice stays one)."""
        if id(v) in memo:
            return memo[id(v)]
        if v is None or isinstance(v, (bool, int, float, str, DType)):
            return v
        if isinstance(v, ModuleInst):
            return self.copy_module(v, memo, node)
        if isinstance(v, Instance):
            return self.copy_instance(v, memo, node)
        if isinstance(v, (list, tuple)):
            out = [self.copied(x, memo, node) for x in v]
            return out if isinstance(v, list) else tuple(out)
        if isinstance(v, dict):
            return {k: self.copied(x, memo, node) for k, x in v.items()}
        raise self.err(node, f"copy.deepcopy of {_kind(v)} is not traced (modules and the program's module objects are; "
                             "a tensor: x.detach().clone())")

    def copy_module(self, m: ModuleInst, memo: dict[Any, Any], node: ast.Call) -> ModuleInst:
        """A torch.nn module's copy: its parameters take the original's values when the copy is made (a 'clone'
        event now; an original that has no name yet, made inside `clones(nn.Linear(...), 4)`, gives the copies the
        values its construction draws), its BatchNorm buffers the original's latest."""
        if m.norms:
            raise self.err(node, f"copy.deepcopy of an nn.{m.kind} under weight_norm is not traced (torch refuses the "
                                 "nn.utils.weight_norm form's copy; copy the module before applying it)")
        if m.parts:
            raise self.err(node, f"copy.deepcopy of a {m.kind} whose submodules the program used (its out_proj, "
                                 "linear1, ...) is not traced: copy it before using them")
        if m.layer is not None and getattr(m.cfg, "momentum", 0.1) is None and m.path is not None \
                and f"{m.path}.running_mean" in self.builder:
            raise self.err(node, f"copy.deepcopy of {m.path} (momentum=None) after it ran in training is not traced: "
                                 "the copy would go on counting its batches (num_batches_tracked), which gradtrace does "
                                 "not copy")
        new = ModuleInst(m.layer, m.cfg, training=m.training, container=m.container,
                         keys=list(m.keys) if m.keys is not None else None, copy_site=node)
        memo[id(m)] = new
        if m.lazy is not None:  # uninitialized: the copy draws its own parameters at its own first call, as in torch
            new.lazy = dict(m.lazy)
            return new
        if m.layer is not None and m.path is None and m.event is not None:
            new.event = m.event  # its construction's values, for the copy too ('also')
            new.copy_of = "construction"
        elif m.layer is not None and m.path is not None:
            tied = [p for p in m.params.values() if list(m.params.values()).count(p) > 1]
            if tied:
                raise self.err(node, f"copy.deepcopy of {m.path}: its parameters are tied ({tied[0]}), which the copy "
                                     "would keep; gradtrace does not trace that")
            e = Emitter(self.builder, self.stream, self.dtype)
            buffers = {b: latest for b in BUFFERS if (latest := e.latest(f"{m.path}.{b}")) is not None}
            frozen = [attr for attr, src in m.params.items() if not self.builder.grad[src]]  # (as they are now)
            new.event = Event("clone", None, {"sources": dict(m.params), "params": {}, "buffers": buffers,
                                              "frozen": frozen})
            self.stream.events.append(new.event)
            new.copy_of = "values"
        new.children = [self.copied(c, memo, node) for c in m.children]
        return new

    def copy_instance(self, inst: Instance, memo: dict[Any, Any], node: ast.Call) -> Instance:
        """An object of the program's module classes, copied attribute by attribute under a provisional path (named
        where the copy ends up: `target = copy.deepcopy(model)` is 'target')."""
        if inst.torch_module is not None:
            raise self.err(node, f"copy.deepcopy of {inst.path} (a {inst.kind}, derived from nn.{inst.cls.torch_base}) is not "
                                 "traced")
        path = self.provisional_path(f"deepcopy.{inst.cls.name.lower()}")  # type: ignore[attr-defined]  # (no program
        self.instance_paths.add(path)  # name starts so: nothing else takes its renaming)
        new = Instance(inst.cls, path, training=inst.training, final=False, pinned=True)
        memo[id(inst)] = new
        for attr, v in inst.attrs.items():
            new.attrs[attr] = self.copy_tensor(v, f"{path}.{attr}", memo, node) if isinstance(v, T) else self.copied(v, memo, node)
        return new

    def copy_tensor(self, t: T, name: str, memo: dict[Any, Any], node: ast.Call) -> T:
        """A tensor an object holds (an nn.Parameter, a buffer): a leaf that takes the original's value now (an
        'assign' event); a computed one that needs no grad (a positional encoding's table): a clone node."""
        key = ("tensor", t.name)
        if key in memo:
            return memo[key]  # type: ignore[no-any-return]
        b = self.builder
        if t.name in b.leaves:
            leaf = b.leaves[t.name]
            b.add_leaf(Leaf(name, leaf.shape, leaf.dtype, leaf.requires_grad, kind=leaf.kind,
                            init=f"copy.deepcopy of {t.name}"), ("program",))
            self.stream.events.append(Event("assign", name, {"source": t.name}))
            if t.name in b.module_buffers:
                b.module_buffers.add(name)
        elif b.grad[t.name]:
            raise self.err(node, f"copy.deepcopy of '{t.name}': only tensors created explicitly by the user (graph "
                                 "leaves) support the deepcopy protocol (torch raises this)")
        else:
            self.emit("clone", [t], {}, node, name=name)
        memo[key] = T(name)
        return T(name)

    def copied_params(self, m: ModuleInst) -> None:
        """Once a copy has its path and parameter leaves: their values (and requires_grad) come from the original's,
        and a BatchNorm's buffers are the original's latest (clone nodes named for the copy's buffers)."""
        ev = m.event
        assert ev is not None
        if m.copy_of == "construction":
            ev.args.setdefault("also", []).append(dict(m.params))
            return
        b = self.builder
        for attr, leaf in m.params.items():
            b.leaves[leaf].init = f"copy.deepcopy of {ev.args['sources'][attr]}"
            if attr in ev.args["frozen"]:  # requires_grad as the original's was at the copy
                b.set_requires_grad(leaf, False)
        for buf, src in ev.args["buffers"].items():
            self.emit("clone", [T(src)], {}, m.copy_site, name=f"{m.path}.{buf}")
