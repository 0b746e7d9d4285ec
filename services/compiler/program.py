"""PyTorch program text into graph nodes, parsed with `ast` against a whitelist and never executed.

Accepted: imports of torch, torch.nn, torch.nn.functional, math and numpy (other modules' names are bound, refused
where used); assignments (also tuple
unpacking and augmented); tensor creation (torch.tensor, rand, randn, ...) on torch's generator in program
order; nn modules (construction, calls, nn.Sequential) whose parameters are named and initialised as torch
does; `with torch.no_grad():` parameter writes (.data =, copy_, zero_, fill_, uniform_, nn.init.*, += a number)
and computations that require no grad;
indexing; `.backward()` on any expression; print, retain_grad, optimizers' zero_grad/step (not traced);
`def` and `class Net(nn.Module)` inlined where called (functions.py); if/for/assert folded at compile time
(control.py, loops.py); calls are dispatched in calls.py, subscripts in subscripts.py. A name means its last
binding: earlier bindings of `g` are nodes `g@1`, `g@2`."""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from services.compiler.arranging import Arranging
from services.compiler.autograd_functions import AutogradFunctions
from services.compiler.bindings import Bindings, target_names
from services.compiler.build import GraphBuilder
from services.compiler.builtins import Builtins
from services.compiler.calls import MODULES, Calls
from services.compiler.control import ControlFlow, LoopExit
from services.compiler.copying import ModuleCopies
from services.compiler.creation import without_data
from services.compiler.data import DataLoading
from services.compiler.distributions import Distributions
from services.compiler.expressions import _kind
from services.compiler.finish import Finish, TraceEnded
from services.compiler.functions import UserCode
from services.compiler.inplace import InPlace
from services.compiler.loops import unroll
from services.compiler.module_hooks import ModuleHooks
from services.compiler.module_tree import ModuleTree
from services.compiler.modules import ModuleCalls
from services.compiler.objects import Objects
from services.compiler.pyrandom import PythonRandom
from services.compiler.returns import target_shape
from services.compiler.statements import CallStatements
from services.compiler.subscripts import Subscripts
from services.compiler.tensor_methods import TensorMethods
from services.compiler.torch_functions import TorchFunctions
from services.compiler.values import (
    DTYPES,
    Foreign,
    Generator,
    Instance,
    ModuleInst,
    ParameterDict,
    ParameterList,
    T,
    UserClass,
    Value,
)
from services.compiler.weight_norms import WeightNorms
from services.errors import SpecError
from services.ir import Stream

FROM_IMPORTS = {"torch.nn": "torch.nn", "torch.nn.functional": "torch.nn.functional", "torch.optim": "torch.optim",
                "torch.nn.init": "torch.nn.init", "torch.nn.parameter.Parameter": "torch.nn.Parameter",
                "torch.nn.modules.module.Module": "torch.nn.Module", "copy.deepcopy": "copy.deepcopy",
                "torch.autograd.Function": "torch.autograd.Function", "torch.autograd.Variable": "torch.autograd.Variable",
                "torch.autograd.function.once_differentiable": "torch.autograd.function.once_differentiable"}
"""`from X import Y` forms: X.Y must be one of these."""
GRAD_MODES = {"torch.no_grad", "torch.inference_mode", "torch.enable_grad", "torch.set_grad_enabled",
              "torch.autograd.set_detect_anomaly", "torch.autograd.detect_anomaly"}


@dataclass
class ProgramResult:
    """The output `.backward()` chose, its gradient, and notes about lines accepted but not traced."""

    output: str | None = None
    grad_output: Any = None
    notes: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    """Program variable -> the node or leaf it names at the end (its last binding)."""
    streams: list[Stream] = field(default_factory=list)
    """The program's own torch.Generators' draws, each a stream of its own."""
    aliases: dict[str, str] = field(default_factory=dict)
    """Program names of tensors that have another name in the graph (ModuleTree.other_names)."""






class ProgramCompiler(PythonRandom, DataLoading, WeightNorms, Distributions, AutogradFunctions, ModuleHooks, Objects, CallStatements, ModuleCopies, Bindings, Finish, InPlace, ControlFlow, Builtins, UserCode, ModuleTree, TensorMethods, ModuleCalls,
                      TorchFunctions, Arranging, Subscripts, Calls):
    """Walks the statements; each method handles one whitelisted form."""

    def __init__(self, text: str, builder: GraphBuilder, stream: Stream, dtype: str, spec_inputs: set[str]) -> None:
        super().__init__(text, builder, stream, dtype)
        self.scope = {k: T(k) for k in spec_inputs}
        self.globals = self.scope
        self.provisional: list[str] = []
        self.windows: set[str] = set()
        self.calls: list[str] = []
        self.untied: set[str] = set()
        self.shared: set[str] = set()
        self.replaced: list[tuple[str, str]] = []
        """(old path, new path) of modules replaced (`model.fc = nn.Linear(...)`): see Finish.take_place."""
        self.renames: dict[str, str] = {}
        """Provisional paths tensors were named under -> the paths their objects took (see Finish)."""
        self.body_nodes = 0
        """Nodes of the program's autograd.Function bodies so far (they count against the node limit)."""
        self.argument_grad: dict[str, bool] = {}
        """An autograd.Function body's inputs -> whether the argument requires grad (what `x.requires_grad` reads)."""
        self.in_place_of: dict[str, str] = {}
        """A tensor changed in place -> the node of its new value (InPlace.changed_in_place)."""
        self.module_hooks: dict[int, list[Any]] = {}
        """Forward hooks registered on modules and module objects, by the object's id (services.compiler.module_hooks)."""
        self.backward_reads: list[tuple[str, int, dict[str, Any]]] = []
        """Per autograd.Function apply: the top-level names its backward reads, with their values then."""
        self.ctx_holds: dict[str, tuple[str, int, str]] = {}
        """Program tensors an autograd.Function's ctx holds as attributes -> (its name, line, node): Finish refuses an
        in-place change of one before a backward that reaches the node (torch's backward would read the new values)."""
        self.functions_noted: set[str] = set()
        """The program's autograd.Functions whose backward the result's notes have named."""
        self.versions: dict[str, tuple[str, int]] = {}
        """A leaf's earlier values, each kept for the operations that read it before a write (`name@k`) -> (the
        leaf's name, the line of the write that ended it): TensorCreation.written, Finish.stale_versions."""
        self.ended = False
        self.names_batch_norm = "batch_norm" in text
        """The text names F.batch_norm (bindings.count_bindings looks for its running statistics' updates then only)."""
        self.loop_depth = 0
        """While loops running now as Python runs them, in this function's body (a break ends the innermost)."""
        self.loops_ran = False
        """A while loop ran as Python runs it (Finish.finish_names gives each variable's last binding its bare name)."""
        self.loose = 0
        """While loops running now as Python runs them (their bindings are named as they come, see binding_name)."""
        self.loose_names: set[str] = set()
        """Names bindings took in such loops: the last of each variable takes the bare name when the program is done."""
        """The trace ended after backward(), before the program's end (a training loop's next step)."""
        self.at_backward: tuple[Any, ...] | None = None
        """What the program had made when backward() was traced (Finish.snapshot), for undoing what follows."""
        self.initializing: set[int] = set()
        """Objects whose __init__ runs now (by id)."""
        self.supers: list[tuple[UserClass, Value]] = []
        """The methods running now: (the class that defines each, the object it runs on), for super()."""
        self.callers: list[Any] = []
        """The scopes of the calls running now, outermost first (an in-place change in a callee is seen there too)."""
        self.module_activations: set[int] = set()
        """Transformer decoder layers made with an activation module (nn.GELU()): torch's deepcopy runs F.relu."""
        self.contiguous: set[str] = set()
        """Tensors the program called .contiguous() on: a .view() of them views a contiguous copy where torch made one."""
        """Provisional paths given so far: an object made inside one's __init__ waits for its name too."""
        """The top level's names (a function call's scope is its locals over these)."""
        self.spec_inputs = set(spec_inputs)
        self.bindings: Counter[str] = Counter()
        self.rebinds: dict[str, set[int]] = {}
        """Which bindings of a name are `m = m.to(device)` (the object bound before, for a module): 1 for the first."""
        self.seen: Counter[str] = Counter()
        self.res = ProgramResult()
        self.no_grad = False
        self.via_data = False
        """The statement being compiled writes through `.data`."""
        self.generators: list[Generator] = []

    # ---- statements ---------------------------------------------------------------------------

    def run(self) -> ProgramResult:
        try:
            tree = parse(self.text)
        except SyntaxError as e:
            raise SpecError(f"syntax error: {e.msg}", loc=("program",), line=e.lineno, col=e.offset) from None
        self.tree = tree
        if "start=" in self.text:
            _enumerate_start(tree)
        body = unroll(_main_guard(tree.body), self.err, lazy=True)
        if "__" in self.text:  # a walk over every node costs more than the rest of a small program's compile
            _mangle_private(ast.Module(body=body, type_ignores=[]))
            nodes = list(ast.walk(ast.Module(body=body, type_ignores=[])))
            named = {id(n.value) for n in nodes if _class_name(n)}  # m.__class__.__name__ (DCGAN's weights_init)
            for node in nodes:
                name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
                if name and name.startswith("__") and name not in ("__init__", "__post_init__", "__call__") and not (
                        _class_name(node) or id(node) in named and name == "__class__" or _torch_version(node)):
                    raise self.err(node, f"dunder name '{name}' is not allowed")
        self.count_bindings(body)
        self.reserved = set(self.bindings) | self.spec_inputs
        try:
            for stmt in body:
                self.line = stmt.lineno
                self.statement(stmt)
        except TraceEnded:
            self.ended = True
        self.res.names = {k: v.name for k, v in self.scope.items() if isinstance(v, T)}
        self.res.streams = [g.stream for g in self.generators if g.stream.events]
        self.stale_versions()
        self.finish_names()
        self.res.aliases = self.other_names()
        return self.res

    def dispatch(self, stmt: ast.stmt) -> None:
        """Compile one statement (Finish.statement calls it, watching what follows backward())."""
        self.counter = 0
        self.via_data = False
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            self.imports(stmt)
        elif isinstance(stmt, ast.Assign):
            if len(stmt.targets) != 1 and not all(isinstance(t, ast.Name) for t in stmt.targets):
                named = next((t for t in stmt.targets if isinstance(t, ast.Name)), None)
                if named is None:
                    raise self.err(stmt, "chained assignment (a = b = ...) takes a name among its targets")
                if any(isinstance(n, ast.Name) and n.id == named.id for t in stmt.targets if t is not named for n in ast.walk(t)):
                    raise self.err(stmt, f"chained assignment whose targets read '{named.id}', which it binds (Python "
                                         "assigns left to right): write it as two statements")
                # CleanRL's `advantages[t] = lastgaelam = delta + ...`: the value once, named for the name, then
                # written into the other targets (in Python's order: no target here reads another)
                self.assign(named, stmt.value, stmt)
                for t in stmt.targets:
                    if t is not named:
                        self.assign(t, ast.copy_location(ast.Name(id=named.id, ctx=ast.Load()), stmt.value), stmt)
                return
            self.assign(stmt.targets[0], stmt.value, stmt)
            for t in stmt.targets[1:]:  # h = c = torch.zeros(2): one object, every name bound to it
                self.binding_name(t.id)  # type: ignore[attr-defined]  # a binding of c that makes no node
                self.scope[t.id] = self.scope[stmt.targets[0].id]  # type: ignore[attr-defined]
        elif isinstance(stmt, ast.AugAssign):
            self.aug_assign(stmt)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            self.call_statement(stmt.value)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            pass  # a docstring
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Tuple) and stmt.value.elts and all(
                isinstance(e, ast.Call) for e in stmt.value.elts):
            for e in stmt.value.elts:  # `row.append(i), col.append(j)` (pytorch-fm): each call in order, as Python
                self.call_statement(e)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, (ast.Name, ast.Attribute, ast.Subscript, ast.BinOp,
                                                                    ast.Compare, ast.Tuple)):
            self.echo(stmt.value)  # `x.shape`, `y` on a notebook cell's last line
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None and stmt.simple is not None:
            self.assign(stmt.target, stmt.value, stmt)  # `self.d: int = d`: the annotation is not evaluated
        elif isinstance(stmt, ast.Assert):
            self.assertion(stmt)
        elif isinstance(stmt, ast.Pass):
            pass
        elif isinstance(stmt, (ast.Break, ast.Continue)):
            word = "break" if isinstance(stmt, ast.Break) else "continue"
            if not self.loop_depth:
                raise self.err(stmt, f"'{word}' outside loop (Python refuses it)")
            raise LoopExit(word)
        elif isinstance(stmt, ast.Delete) and all(isinstance(t, ast.Name) for t in stmt.targets):
            for t in stmt.targets:  # `del query` (the annotated transformer's attention): the name is unbound
                try:
                    del self.scope[t.id]  # type: ignore[attr-defined]
                except KeyError:
                    raise self.err(stmt, f"name '{t.id}' is not defined") from None  # type: ignore[attr-defined]
        elif isinstance(stmt, ast.With):
            self.with_block(stmt)
        elif isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            self.define(stmt)
        elif isinstance(stmt, ast.If):
            self.if_statement(stmt)
        elif isinstance(stmt, (ast.For, ast.While)):
            self.for_statement(stmt)
        elif isinstance(stmt, ast.Return):
            raise self.err(stmt, "return inside a loop is not traced (a return ends a function at its top level, in an "
                                 "if or in a with block)" if self.depth else "return outside a function")
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, (ast.Yield, ast.YieldFrom)):
            raise self.err(stmt, "a generator (`yield`) is not traced: go over the batches in the loop itself (`for i in "
                                 "range(0, n, batch_size): xb = X[i:i + batch_size]`)")
        else:
            kind = type(stmt).__name__
            raise self.err(stmt, f"'{kind}' statements are not allowed: gradtrace traces straight-line code, one statement per line"
                           + (" (loops: `for` and `while`, unrolled)" if kind in ("For", "While") else ""))

    def imports(self, stmt: ast.Import | ast.ImportFrom) -> None:
        """torch's modules, math and numpy by their paths; anything else (`import os`, `from tqdm import tqdm`) binds a
        Foreign name: a pasted script's imports are fine, a use of what gradtrace does not trace is refused there."""
        if isinstance(stmt, ast.Import):
            for a in stmt.names:
                if a.name not in MODULES:
                    name = a.asname or a.name.split(".")[0]
                    self.scope[name] = Foreign(a.name if a.asname else name)
                elif a.asname:
                    self.aliases[a.asname] = MODULES[a.name]
                else:
                    self.aliases[a.name.split(".")[0]] = a.name.split(".")[0]
            return
        if stmt.level:
            raise self.err(stmt, f"relative import 'from {'.' * stmt.level}{stmt.module or ''}' is not allowed")
        for a in stmt.names:
            full = f"{stmt.module}.{a.name}"
            if a.name == "*":
                raise self.err(stmt, f"'from {stmt.module} import *' is not allowed: import the names the program uses")
            if full in FROM_IMPORTS:
                self.aliases[a.asname or a.name] = FROM_IMPORTS[full]
            elif stmt.module in MODULES:  # `from torch.nn import Linear, Module`: the name stands for torch.nn.Linear
                self.aliases[a.asname or a.name] = full
            else:
                self.scope[a.asname or a.name] = Foreign(full)

    def assign(self, target: ast.expr, value: ast.expr, stmt: ast.stmt) -> None:
        if isinstance(value, ast.GeneratorExp):
            raise self.err(value, "a generator expression bound to a name runs where Python consumes it: write a list "
                                  "comprehension [...] (or pass the generator straight to sum(), torch.cat, ...)")
        if isinstance(target, ast.Name):
            var = target.id
            if var == "torch" or var in self.aliases and not self.depth and self.aliases[var] in MODULES.values() \
                    and var != "F":
                # (a function's local `F = torch.sigmoid(...)`, d2l's forget gate, shadows `F` there, as in Python)
                raise self.err(stmt, f"'{var}' names a module and cannot be assigned")
            self.begin(var, value, [self.binding_name(var)])
            self.local = self.depth > 0
            try:
                if isinstance(value, (ast.List, ast.ListComp)) and not self.depth and any(
                        isinstance(n, ast.Call) for n in ast.walk(value)):
                    # `layers = [Linear(27, 100), Tanh(), ...]` (makemore's objects): each object made is layers.k
                    v = self.elements(value, var, 0)  # type: ignore[attr-defined]
                else:
                    v = self.expr(value)
            finally:
                self.local = False
            want = self.stmt_names[0] if self.stmt_names else None
            if isinstance(v, T) and want and v.name.startswith(want + "#") and want not in self.builder:
                # `X = dropout_p0(w * 2)`, `x = Variable(torch.randn(4))`: an op that gives back its input (the same
                # tensor, in torch too) leaves the statement's own sub-expression as its value: it takes the name
                leaf = v.name in self.builder.leaves
                if self.builder.rename_last(v.name, want):
                    if leaf:
                        self.rename_events({v.name: want})  # (what draws or fills it)
                    v = T(want)
            if isinstance(v, ModuleInst) and self.depth:
                v.hint = v.hint or self.prefix + var  # a function's local: named when used, or by who keeps it
            elif isinstance(v, ModuleInst):
                self.ensure_path(v, var)
            elif isinstance(v, Instance) and self.depth == 0:
                self.finalize(v, var)  # `net = make_net()`: named for the variable
            elif isinstance(v, (ParameterList, ParameterDict)) and self.depth == 0 and v.path is None:
                self.name_parameters(v, var)  # `pd = nn.ParameterDict({...})`: pd.left, as torch's named_parameters
            self.scope[var] = v
        elif isinstance(target, (ast.Tuple, ast.List)):
            ids = target_names(target)
            if ids is None:
                raise self.err(stmt, "tuple assignment needs names on the left (nested tuples of names, or an object's "
                                     "attributes: `out, self.hidden = ...`)")
            names = [self.fresh(self.prefix + i[:-5]) if i.endswith("#attr") else self.binding_name(i) for i in ids]
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts) and not any(
                    isinstance(e, ast.Starred) for e in value.elts):
                # `mu, logvar = self.fc_mu(h), self.fc_var(h)`: each item named by its target (a loop's
                # `i, (xb, yb) = k, batch`: the batch by xb and yb), all evaluated before any is bound
                # (`u, v = v, u * v`), as Python does
                items, at = [], 0
                for sub, elt in zip(target.elts, value.elts, strict=True):
                    n = len(target_names(sub) or ())
                    first = ids[at]
                    self.begin(first[:-5] if first.endswith("#attr") else first, elt, names[at : at + n])
                    items.append(self.expr(elt))
                    at += n
                self.unpack(target, tuple(items), stmt)
            else:
                self.begin(ids[0], value, names)
                self.stmt_shape = target_shape(target)  # (a call's nested return takes the names: `out, (h, c) = f(x)`)
                self.unpack(target, self.expr(value), stmt)
        elif isinstance(target, ast.Attribute) and (path := self.dotted(target) or "").startswith("torch.backends."):
            # `torch.backends.cudnn.deterministic = True` in a set_seed(): which kernels a GPU runs; nothing to trace
            if "tf32" in path or "precision" in path:
                self.res.notes.append(f"line {stmt.lineno}: {path} is not followed: gradtrace runs a GPU job's "
                                      "convolutions and matmuls in full float32 (TF32 off), as on the CPU")
        elif isinstance(target, ast.Attribute):
            self.attribute_write(target, value, stmt)
        elif isinstance(target, ast.Subscript) and (isinstance(target.value, ast.Subscript) or
                                                    without_data(target.value) is not target.value):
            self.index_write(target, value, stmt)  # target[i][l] = 1.0, emb.weight.data[0] = 0.0: before any read
        elif isinstance(target, ast.Subscript) and isinstance(into := self.expr(target.value), ModuleInst) and into.layer is None:
            self.container_set(into, self.const(target.slice), value, stmt)  # model.classifier[6] = nn.Linear(4096, 10)
        elif isinstance(target, ast.Subscript) and isinstance(into, (dict, list)):
            self.item_write(into, target.slice, value, stmt, target.value)  # word_to_ix[w] = len(word_to_ix), sizes[0] = 8
        elif isinstance(target, ast.Subscript) and isinstance(into, T):
            self.index_write(target, value, stmt)  # pe[:, 0::2] = torch.sin(position * div_term), self.buf[0] = 1.0
        else:
            raise self.err(stmt, "only 'name = expression' assignments are allowed (and writes into tensors, dicts, "
                                 "lists and containers by index)")
        self.stmt_expr, self.stmt_names = None, []

    def item_write(self, into: dict[Any, Value] | list[Value], key_expr: ast.expr, value: ast.expr, stmt: ast.stmt,
                   holder: ast.expr | None = None) -> None:
        """`d[key] = value`, `xs[0] = value`: a dict's or list's item (not a tensor's elements). A tensor made for a
        named dict's string key is named for its place, as a ParameterDict's: `params['W1'] = torch.randn(...)` is
        params.W1."""
        key = self.dict_key(key_expr) if isinstance(into, dict) else self.const(key_expr)
        if isinstance(into, list) and not (isinstance(key, int) and -len(into) <= key < len(into)):
            raise self.err(stmt, f"list index {key!r} out of range (the list has {len(into)} items)")
        if isinstance(into, dict) and isinstance(key, str) and key.isidentifier() and isinstance(holder, ast.Name):
            self.begin_named(value, self.fresh(f"{self.prefix}{holder.id}.{key}"))
        into[key] = self.expr(value)  # type: ignore[index]

    def unpack(self, target: ast.expr, v: Value, stmt: ast.stmt) -> None:
        """`a, b = ...`, `out, (h, c) = lstm(x)`: each name bound to its item, as Python unpacks."""
        if isinstance(target, ast.Name):
            if isinstance(v, ModuleInst) and not self.depth:
                self.ensure_path(v, target.id)  # `enc, dec = make_pair(3)`: named for the variables, as torch's
            self.scope[target.id] = v
            return
        if isinstance(target, ast.Attribute) and isinstance(owner := self.expr(target.value), Instance) and not isinstance(
                v, (ModuleInst, Instance)):
            owner.attrs[target.attr] = v  # `lstm_out, self.hidden_cell = self.lstm(...)`
            return
        if not isinstance(target, (ast.Tuple, ast.List)):
            raise self.err(stmt, f"'{self.src(target)[:40]}' takes {_kind(v)} in a tuple assignment: assign a module to "
                                 "an attribute in a statement of its own (self.a = nn.Linear(...))")
        elts = target.elts
        star = next((k for k, e in enumerate(elts) if isinstance(e, ast.Starred)), None)
        if isinstance(v, T) and star is not None:
            v = tuple(self.rows(v, stmt.value))  # type: ignore[attr-defined]  # `first, *rest = t`: its rows
        elif isinstance(v, T) and isinstance(stmt, ast.Assign) and all(isinstance(e, ast.Name) for e in elts):
            v = self.unpack_rows(v, len(elts), stmt)  # `row, col = edge_index`: iter(t.unbind(0)), as torch's __iter__
        if isinstance(v, dict):
            v = tuple(v)  # `a, b = d`: its keys
        if star is not None and isinstance(v, (tuple, list)) and len(v) >= len(elts) - 1:
            after = len(elts) - star - 1  # `b, *_ = x.shape`, `first, *rest, last = xs`: the starred name takes a list
            v = (*v[:star], list(v[star:len(v) - after]), *v[len(v) - after:])
            elts = [*elts[:star], elts[star].value, *elts[star + 1:]]  # type: ignore[attr-defined]
        if not isinstance(v, (tuple, list)) or len(v) != len(elts):
            raise self.err(stmt, f"cannot unpack {_kind(v)} into {len(elts)} names")
        for t, item in zip(elts, v, strict=True):
            self.unpack(t, item, stmt)

    def unpack_rows(self, t: T, n: int, stmt: ast.Assign) -> tuple[T, ...]:
        """A tensor unpacked into n names: its rows, one unbind node each (UnbindBackward0), named for the names."""
        shape = self.shape(t)
        if not shape:
            raise self.err(stmt, f"cannot unpack {_kind(t)}: iteration over a 0-d tensor")
        if shape[0] != n:
            raise self.err(stmt, f"cannot unpack {_kind(t)} of {shape[0]} rows into {n} names")
        names = self.stmt_names if len(self.stmt_names) == n else [None] * n
        return tuple(self.emit("unbind", [t], {"dim": 0, "index": k}, stmt.value, name=names[k]) for k in range(n))

    def begin(self, target: str, value: ast.expr, names: list[str]) -> None:
        """Start a statement whose right-hand side is `value`, bound to `names`."""
        self.target = self.prefix + target
        self.stmt_expr = value
        self.stmt_names = names
        self.stmt_shape = None
        self.stmt_name = names[0] if len(names) == 1 else None
        self.stmt_start = len(self.builder.nodes)

    def with_block(self, stmt: ast.With) -> None:
        with self.with_mode(stmt):
            for s in stmt.body:
                self.line = s.lineno
                self.statement(s)

    @contextmanager
    def with_mode(self, stmt: ast.With) -> Iterator[None]:
        """The grad mode a `with torch.no_grad():` (or enable_grad, set_grad_enabled, inference_mode) block sets, for
        its body; restored after."""
        for item in stmt.items:
            d = self.dotted(item.context_expr.func) if isinstance(item.context_expr, ast.Call) else None
            if d not in GRAD_MODES or item.optional_vars is not None:
                raise self.err(stmt, "only 'with torch.no_grad():' (or enable_grad, set_grad_enabled, inference_mode) blocks are allowed")
        was = self.no_grad
        for item in stmt.items:
            mode = self.dotted(item.context_expr.func)  # type: ignore[attr-defined]
            if mode == "torch.no_grad":
                self.no_grad = True
            elif mode == "torch.inference_mode":  # inference_mode(False) (`inference_mode(not training)`) enables grad
                call = item.context_expr
                given = [*call.args, *(k.value for k in call.keywords if k.arg == "mode")]  # type: ignore[attr-defined]
                if len(given) > 1 or len(call.keywords) > (1 if given and not call.args else 0):  # type: ignore[attr-defined]
                    raise self.err(stmt, "torch.inference_mode takes one flag, mode")
                self.no_grad = bool(self.const(given[0])) if given else True  # type: ignore[attr-defined]
            elif mode == "torch.enable_grad":
                self.no_grad = False
            elif mode == "torch.set_grad_enabled":  # the transfer-learning tutorial's `set_grad_enabled(phase == 'train')`
                call = item.context_expr
                if len(call.args) != 1 or call.keywords:  # type: ignore[attr-defined]
                    raise self.err(stmt, "torch.set_grad_enabled takes one flag")
                self.no_grad = not bool(self.const(call.args[0]))  # type: ignore[attr-defined]
        self.builder.grad_enabled = not self.no_grad  # what is computed under no_grad requires no grad, as in torch
        try:
            yield
        finally:
            self.no_grad = was
            self.builder.grad_enabled = not was


def _class_name(node: ast.AST) -> bool:
    """`m.__class__.__name__` or `type(m).__name__`: a class's name, the one use of dunder names allowed."""
    return isinstance(node, ast.Attribute) and node.attr == "__name__" and (
        isinstance(node.value, ast.Attribute) and node.value.attr == "__class__"
        or isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name) and node.value.func.id == "type")




def _torch_version(node: ast.AST) -> bool:
    """`torch.__version__`: the one dunder attribute of torch a program may read (a version test)."""
    return isinstance(node, ast.Attribute) and node.attr == "__version__" and isinstance(node.value, ast.Name) \
        and node.value.id == "torch"


def _enumerate_start(tree: ast.Module) -> None:
    """`enumerate(xs, start=1)` as `enumerate(xs, 1)`, the one form the loops and builtins read."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "enumerate" and len(
                node.args) == 1 and [k.arg for k in node.keywords] == ["start"]:
            node.args, node.keywords = [*node.args, node.keywords[0].value], []


def _mangle_private(node: ast.AST, cls: str | None = None) -> None:
    """Python's private names: `self.__padding` in `class CausalConv1d` is `self._CausalConv1d__padding`, so a
    module kept there has torch's parameter names (`conv._CausalConv1d__conv.weight`)."""
    for child in ast.iter_child_nodes(node):
        if cls:
            for field in ("id", "attr", "arg", "name"):
                v = getattr(child, field, None)  # (a call's keyword is no identifier: Python leaves it)
                if isinstance(v, str) and v.startswith("__") and not v.endswith("__") and not isinstance(
                        child, (ast.ClassDef, ast.keyword)):
                    setattr(child, field, f"_{cls}{v}")
        _mangle_private(child, child.name.lstrip("_") if isinstance(child, ast.ClassDef) else cls)


def _main_guard(body: list[ast.stmt]) -> list[ast.stmt]:
    """`if __name__ == "__main__":` blocks as their bodies (scripts pasted whole)."""
    out: list[ast.stmt] = []
    for stmt in body:
        if (isinstance(stmt, ast.If) and not stmt.orelse and isinstance(stmt.test, ast.Compare)
                and isinstance(stmt.test.left, ast.Name) and stmt.test.left.id == "__name__"
                and len(stmt.test.comparators) == 1 and isinstance(stmt.test.comparators[0], ast.Constant)
                and stmt.test.comparators[0].value == "__main__"):
            out.extend(stmt.body)
        else:
            out.append(stmt)
    return out


PARSE_CACHE_CHARS = 8 * 1024
"""Programs up to this size keep their syntax tree (64 at most: a few MB); larger ones are parsed each time."""


def parse(text: str) -> ast.Module:
    """The program's syntax tree. A small program's is parsed once per text: the compiler only reads trees (loops
    unroll into new lists), a pipeline sends the same program with new inputs again and again, and parsing is a
    quarter of a small program's compile (the tutorial's 0.42 -> 0.30 ms)."""
    return _parse_small(text) if len(text) <= PARSE_CACHE_CHARS else ast.parse(text, mode="exec")


@lru_cache(maxsize=64)
def _parse_small(text: str) -> ast.Module:
    return ast.parse(text, mode="exec")


def compile_program(text: str, builder: GraphBuilder, stream: Stream, dtype: str, spec_inputs: set[str]) -> ProgramResult:
    """Parse a program into `builder`'s graph and `stream`'s events; see ProgramCompiler for the whitelist."""
    compiler = ProgramCompiler(text, builder, stream, dtype, spec_inputs)
    try:
        return compiler.run()
    except (RecursionError, MemoryError):
        raise SpecError(
            "an expression is nested too deeply; split it over several assignments", loc=("program",), line=compiler.line or None
        ) from None


__all__ = ["ProgramResult", "compile_program", "DTYPES"]
