"""Statements that are calls (`loss.backward()`, `torch.manual_seed(0)`, `model.eval()`, `opt.step()`, `print(...)`,
`h.register_hook(...)`, `w.data.fill_(1)`): what each changes in the trace, or why it is not traced."""

from __future__ import annotations

import ast
from typing import Any

from services.compiler.bindings import view_fill
from services.compiler.creation import INPLACE_INIT, RANDOM, without_data
from services.compiler.expressions import ExpressionCompiler, _kind
from services.compiler.finish import TraceEnded
from services.compiler.functions import PURE_BUILTINS, is_super
from services.compiler.module_hooks import KINDS as HOOK_KINDS
from services.compiler.module_hooks import HookHandle, changes_in_place, observes
from services.compiler.torch_functions import is_in_place_function
from services.compiler.values import (
    CALLABLE,
    Bound,
    Ctx,
    DType,
    Foreign,
    Generator,
    Instance,
    ModuleInst,
    ParameterList,
    T,
    Untraced,
    UserClass,
    UserFunction,
)
from services.errors import SpecError
from services.ir import Event

DRAWING = frozenset({"uniform_", "normal_", "bernoulli", "bernoulli_", "random_", "exponential_", "geometric_", "cauchy_",
                     "log_normal_", "multinomial", "poisson", "gumbel_softmax", "rrelu", "sample", "rsample"})
"""Functions and tensor methods that draw from a generator (besides torch's random creators and dropout)."""
IGNORED_CALLS = {"torch.set_printoptions", "torch.autograd.set_detect_anomaly", "numpy.random.seed",
                 "torch.set_num_threads", "torch.use_deterministic_algorithms"}
"""Calls a program makes for its own sake that change nothing gradtrace traces."""


class CallStatements(ExpressionCompiler):
    """call_statement and what it hands on (ProgramCompiler runs the statements; the attributes are its)."""

    def printed(self, call: ast.Call) -> None:
        """print(...): nothing it prints is traced, but torch computes its arguments, and where they may draw from a
        generator (`print(torch.randn(2))`, the BiLSTM-CRF tutorial's `print(model(sent))` whose forward draws its
        hidden state) the draws move every later random number: such arguments run here too (their nodes stay in the
        graph). Where they cannot, the program is refused if they drew or surely draw (a random function, a dropout),
        else the print is left out as before (code of the program's own that may not draw at all)."""
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            for part in _printed_parts(arg):
                risks = {self.may_draw(c) for c in ast.walk(part) if isinstance(c, ast.Call)}
                if not risks <= {"no"}:
                    self.printed_part(part, "yes" in risks, call)

    def printed_part(self, part: ast.expr, surely: bool, call: ast.Call) -> None:
        """Evaluate a print argument that may draw; where it cannot be traced, refuse if it drew or `surely` draws,
        else leave it out with a note (code of the program's own that need not draw at all)."""
        streams = [self.stream, *(g.stream for g in self.generators)]  # type: ignore[attr-defined]
        mark, events = self.builder.mark(), [(st, len(st.events)) for st in streams]
        try:
            self.begin("t", part, [])  # type: ignore[attr-defined]
            self.expr(part)
        except SpecError as e:
            drew = any(len(st.events) > n for st, n in events)
            self.builder.rollback(mark)
            for st, n in events:
                del st.events[n:]
            if drew or surely:
                raise self.err(call, f"this print(...) computes what draws random numbers (torch runs it, and its draws "
                                     f"move every later one), and gradtrace cannot trace it: {e.message}") from None
            self.res.notes.append(f"line {call.lineno}: `{self.src(part)[:60]}` in a print is not run (what it computes "
                                  f"is not traced: {e.message[:120]})")

    def may_draw(self, call: ast.Call) -> str:
        """Whether a call draws from a random generator: 'yes' for torch's random functions and methods and dropout;
        'maybe' for a torch module in training mode that holds a dropout, and a module, function or object of the
        program's own (its code may); 'no' for the rest. Names, attributes and tensors' other methods are read, never
        called, to tell."""
        f = call.func
        if (foreign := self.foreign_path(f)) is not None:  # (Python's random is followed; numpy's moves no torch draw)
            return "yes" if foreign.startswith("random.") else "no"
        path = self.dotted(f) if isinstance(f, (ast.Name, ast.Attribute)) else None
        if path is not None:
            head, _, last = path.rpartition(".")
            sure = head == "torch" and last in RANDOM or last in DRAWING or path.startswith("nn.init.") or (
                head in ("F", "torch") and "dropout" in last)
            return "yes" if sure else "no"
        if isinstance(f, ast.Name):
            if f.id not in self.scope:
                return "no" if f.id in PURE_BUILTINS else "maybe"
            return "maybe" if _may_draw_value(self.scope[f.id]) else "no"
        if isinstance(f, ast.Attribute) and isinstance(f.value, (ast.Name, ast.Attribute)):
            try:
                receiver = self.expr(f.value)  # (a name or an attribute: read, nothing runs)
            except SpecError:
                return "maybe"  # (a comprehension's or lambda's name, bound only when it runs)
            if isinstance(receiver, T):
                return "yes" if f.attr in DRAWING else "no"
            if isinstance(receiver, (str, int, float, bool, list, tuple, dict, DType, Untraced, Foreign)) or receiver is None:
                return "no"
            if isinstance(receiver, ModuleInst) and f.attr != "forward":
                return "no"  # model.parameters(), model.state_dict(): its forward alone may draw
        return "maybe"

    def call_statement(self, call: ast.Call) -> None:
        f = call.func
        if isinstance(f, ast.Name) and f.id == "print" and f.id not in self.scope:
            self.printed(call)
            return
        if isinstance(f, ast.Name) and f.id == "setattr" and f.id not in self.scope and len(call.args) == 3:
            self.set_named(call.args[1], call.args[2:], call, call.args[0])  # setattr(self, f"layer{i}", nn.Linear(...))
            return
        if is_super(call):
            self.super_call(call)
            return
        foreign = self.foreign_path(f)
        if foreign is not None and foreign.startswith("random."):
            self.python_random(foreign, call)  # type: ignore[attr-defined]  # random.seed(0), random.shuffle(idx)
            return
        if foreign is not None and "seed" in foreign.lower() and not foreign.startswith("numpy."):
            raise self.err(call, f"{self.src(call)[:60]} would seed torch's generator, and gradtrace does not run "
                                 f"{foreign}: write torch.manual_seed(...) so the numbers are torch's")
        if foreign is not None and not self.touches_values(call):  # plt.show(), wandb.log({...})
            self.res.notes.append(f"line {call.lineno}: {self.src(call)[:80]} is not run: {_kind(Foreign(foreign))}")
            return
        self.refuse_foreign(f)
        if isinstance(f, ast.Name) and isinstance(self.scope.get(f.id), CALLABLE):
            self.begin("t", call, [])
            self.call_value(self.scope[f.id], call)
            return
        path = self.dotted(f) if isinstance(f, ast.Attribute) else None
        if path in ("torch.manual_seed", "torch.random.manual_seed"):
            seed = self.const(call.args[0]) if call.args else None
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise self.err(call, "torch.manual_seed takes an integer seed")
            self.stream.events.append(Event("seed", None, {"seed": seed}))
            return
        if path in IGNORED_CALLS or path in ("torch.cuda.manual_seed", "torch.cuda.manual_seed_all"):
            return
        if path == "torch.set_grad_enabled":  # as a call: grad mode from here on (till another call), as torch's
            flag = [*call.args, *(k.value for k in call.keywords if k.arg == "mode")]
            if len(flag) != 1 or any(k.arg != "mode" for k in call.keywords):
                raise self.err(call, "torch.set_grad_enabled takes one flag (mode)")
            self.no_grad = not bool(self.const(flag[0]))
            self.builder.grad_enabled = not self.no_grad
            return
        if path == "nn.Module.__init__" and self.depth:  # nn.Module.__init__(self): super().__init__() written out
            return
        if path in ("nn.utils.clip_grad_norm_", "nn.utils.clip_grad_value_"):
            self.res.notes.append(f"line {call.lineno}: {self.src(call)[:80]} is not traced: the grads shown are "
                                  "backward's, before clipping")
            return
        if path == "torch.autograd.backward" and call.args:  # torch.autograd.backward(y[, grad_tensors]): y.backward()
            out = call.args[0].elts[0] if isinstance(call.args[0], (ast.List, ast.Tuple)) and len(call.args[0].elts) == 1 \
                else call.args[0]
            grad = [*call.args[1:], *(k.value for k in call.keywords if k.arg == "grad_tensors")]
            grad = [g.elts[0] if isinstance(g, (ast.List, ast.Tuple)) and len(g.elts) == 1 else g for g in grad
                    if not (isinstance(g, ast.Constant) and g.value is None)]
            self.backward(out, ast.copy_location(ast.Call(  # (its other keywords as backward() takes or refuses them)
                func=ast.Attribute(value=out, attr="backward", ctx=ast.Load()), args=grad[:1],
                keywords=[k for k in call.keywords if k.arg != "grad_tensors"]), call))
            return
        if path == "F.batch_norm":  # on its own: training updates the running statistics it is given
            self.begin("t", call, [])
            self.call_path(path, call)
            return
        if path == "torch.set_default_dtype":
            d = self.const(call.args[0]) if call.args else None
            if not isinstance(d, DType) or d.name != self.dtype:
                raise self.err(call, f"the spec's dtype is the default dtype ({self.dtype}): call torch.set_default_dtype "
                                     "before the program makes anything, or set \"dtype\" in the spec (gradtrace run "
                                     "--dtype float64)")
            return
        if path is not None and path.startswith("nn.init."):
            self.nn_init(path[8:], call)
            return
        if isinstance(f, ast.Attribute) and path is None and view_fill(call) and self.basic_index(f.value.slice):  # type: ignore[attr-defined]
            # `emb.weight[pad].fill_(0.5)`, `lin.weight.data[:, 0].zero_()`: a view of the tensor filled, as
            # `emb.weight[pad] = 0.5` (an index that is not basic makes a copy in torch, which the fill leaves alone)
            value = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "value"), None)
            self.index_write(f.value, self.const(value) if value is not None else 0.0, call)  # type: ignore[arg-type]
            return
        if isinstance(f, ast.Attribute) and path is None and f.attr in ("fill_", "zero_") and isinstance(f.value, ast.Subscript):
            self.res.notes.append(f"line {call.lineno}: `{self.src(call)[:60]}` fills a copy (an index that is not basic "
                                  "makes one in torch): the tensor is unchanged, as in torch")
            return
        if isinstance(f, ast.Attribute) and path is None:
            if f.attr == "backward":
                self.backward(f.value, call)
                return
            self.begin("t", call, [])
            writes = f.attr in {"copy_"} | INPLACE_INIT
            self.via_data = writes and without_data(f.value) is not f.value  # `w.data.fill_(1)`: torch allows it always
            base = self.expr(without_data(f.value) if writes else f.value)
            if isinstance(base, Ctx):  # ctx.save_for_backward(x) in an autograd.Function's forward
                self.ctx_call(base, f.attr, call)  # type: ignore[attr-defined]
                return
            if isinstance(base, (ModuleInst, Instance)) and f.attr in HOOK_KINDS:
                self.register_module_hook(base, f.attr, call)  # type: ignore[attr-defined]
                return
            if isinstance(base, HookHandle) and f.attr == "remove" and not call.args:
                base.remove()
                return
            if isinstance(base, ModuleInst) and f.attr == "flatten_parameters" and base.kind in ("RNN", "LSTM", "GRU"):
                return  # `self.lstm.flatten_parameters()`: cuDNN's weight layout, no numbers change
            if isinstance(base, Untraced) or (isinstance(base, (ModuleInst, Instance)) and f.attr in (
                    "zero_grad", "train", "eval", "load_state_dict")):
                self.method_statement(base, f.attr, call)
                return
            if isinstance(base, Instance):
                if f.attr in ("add_module", "register_module", "register_parameter"):
                    self.set_named(call.args[0] if call.args else call, call.args[1:], call)
                elif f.attr == "register_buffer":
                    self.register_buffer(base, call)
                else:
                    self.instance_method(base, f.attr, call)
                return
            if isinstance(base, T) and f.attr == "register_hook":
                self.register_hook(base, call)
                return
            if isinstance(base, T) and (f.attr in {"retain_grad", "requires_grad_", "copy_", "detach_"} | INPLACE_INIT
                                        or f.attr.endswith("_") and f.attr[:-1] in self.methods):
                self.tensor_method(base, f.attr, call)
                return
            if isinstance(base, Generator) and f.attr == "manual_seed":
                self.seed_generator(base, call)
                return
            if isinstance(base, UserClass) or isinstance(base, ModuleInst) and f.attr in ("requires_grad_", "apply"):
                self.call(call)  # Base.__init__(self, d); model.fc.requires_grad_(False)
                return
            if isinstance(base, ModuleInst) and base.layer is None and f.attr in ("append", "extend") and len(call.args) == 1:
                self.container_add(base, f.attr, call)  # self.layers.append(nn.Linear(...))
                return
            if isinstance(base, ModuleInst) and base.layer is None and f.attr in ("add_module", "register_module"):
                self.add_module(base, call)
                return
            if isinstance(base, T) and isinstance(f.value, ast.Name) and not f.attr.endswith("_"):
                self.expr(call)  # `attn_bias.to(query.dtype)` on its own: torch makes a tensor nobody uses (draws run)
                self.res.notes.append(f"line {call.lineno}: `{self.src(call)[:60]}` makes a tensor the program does "
                                      "not use (as in torch, the name keeps its tensor)")
                return
            if isinstance(base, list) and f.attr == "pop":
                self.list_pop(base, call)  # `stack.pop()` on its own: the item is dropped
                return
            if isinstance(base, list) and f.attr in ("append", "extend") and len(call.args) == 1 and not call.keywords:
                item = self.expr(call.args[0])  # layers.append(nn.Linear(...)): the list the name holds grows
                if f.attr == "extend" and not isinstance(item, (list, tuple)):
                    raise self.err(call, f"extend() takes a list, not {_kind(item)}")
                new = list(item) if f.attr == "extend" else [item]
                if isinstance(base, ParameterList):  # self.coeffs.append(nn.Parameter(...)): a parameter of its place
                    if not all(isinstance(v, T) and v.name in self.builder.leaves for v in new):
                        raise self.err(call, "a ParameterList takes parameters made here (nn.Parameter(torch.randn(...)))")
                    for v in new:
                        self.as_parameter(v, call)  # type: ignore[attr-defined]
                base.extend(new)
                if isinstance(base, ParameterList) and base.path is not None:
                    self.name_parameters(base, base.path)  # type: ignore[attr-defined]
                return
            if isinstance(base, list) and f.attr in ("insert", "reverse", "clear"):
                self.list_change(base, f.attr, call)  # type: ignore[attr-defined]  # reinforce.py's `returns.insert(0, R)`
                return
            self.method_call(base, call)  # type: ignore[attr-defined]  # `y.mul_(0.5).add_(1.0).sum()`: the receiver
            self.dropped(call)  # evaluated once
            return
        if path is not None and is_in_place_function(call, path):  # F.relu(h, inplace=True), F.relu_(h): h changes
            self.begin("t", call, [])
            self.call_path(path, call)
            return
        self.begin("t", call, [])  # `sum(p.numel() for p in model.parameters())`, a pasted notebook cell's echo:
        self.expr(call)            # computed, as Python computes it, and dropped
        self.dropped(call)

    def register_hook(self, t: T, call: ast.Call) -> None:
        """`h.register_hook(lambda grad: print(grad))`, the tutorials' way to see a gradient torch does not keep: every
        node's gradient is in the result, so a hook that only prints is accepted (and noted); one that returns a
        gradient changes the backward pass, which gradtrace does not trace."""
        fn = self.expr(call.args[0]) if len(call.args) == 1 and not call.keywords else None
        method = isinstance(fn, Bound)  # Grad-CAM's `h.register_hook(self.save_gradient)`
        if method:
            fn = fn.fn  # type: ignore[union-attr]
        if not isinstance(fn, UserFunction):
            raise self.err(call, "register_hook takes one function (a lambda, a def or a method)")
        if not observes(fn.node, method):
            raise self.err(call, "a hook that changes the gradient (returns a tensor or changes it in place) or does more "
                                 "than print or keep it is not traced: gradtrace's engines run backward without hooks; "
                                 "every node's gradient is in the result, and a hook that prints the gradient or keeps it "
                                 "(`grads['y'] = grad`, `self.gradients = grad`, `store.append(grad)`) is accepted")
        self.res.notes.append(f"line {call.lineno}: the hook on '{t.name}' only looks at its gradient: gradtrace shows it "
                              f"as node '{t.name}''s grad (every node's gradient is in the result)")

    def method_statement(self, base: ModuleInst | Instance | Untraced, method: str, call: ast.Call) -> None:
        if isinstance(base, (ModuleInst, Instance)):
            if method in ("train", "eval"):
                base.set_training(self.training_flag(method, call))
            elif method == "load_state_dict":
                self.load_state(base, call)
            return
        if method == "zero_grad" or method == "remove" and base.what == "a hook's handle":
            return
        if method == "step" and ("optimizer" in base.what or "scheduler" in base.what):
            self.res.notes.append(f"line {call.lineno}: {self.src(call)} is not traced: gradtrace shows the gradients "
                                  "of one forward and backward pass, before any update" + (
                                      "; the trace ends here (what follows would see updated parameters)"
                                      if self.res.output is not None and "optimizer" in base.what else ""))
            if self.res.output is not None and "optimizer" in base.what:
                raise TraceEnded
            return
        raise self.err(call, f"{base.what} has no method '{method}' gradtrace understands")

    def basic_index(self, index: ast.expr) -> bool:
        """Whether an index is torch's basic indexing (ints, slices, None, ...: a view), its names evaluated now."""
        items = index.elts if isinstance(index, ast.Tuple) else [index]
        parts = [p for i in items for p in ((i.lower, i.upper, i.step) if isinstance(i, ast.Slice) else (i,)) if p is not None]
        def basic(p: ast.expr) -> bool:
            v = p.value if isinstance(p, ast.Constant) else self.expr(p)
            # (a 0-d integer tensor indexes as its int does: a view)
            return v is None or v is Ellipsis or type(v) is int or isinstance(v, T) and self.shape(v) == () \
                and self.dtype_of(v) == "int64"
        return all(basic(p) for p in parts)

    def const_or_none(self, node: ast.expr) -> Any:
        """The expression as a constant, or None when it is not one (a tensor) - evaluated only when it is a number
        or name of one, so nothing is added to the graph."""
        if isinstance(node, ast.Constant) or isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
            return self.const(node)
        if isinstance(node, ast.Name) and not isinstance(self.scope.get(node.id), T):
            return self.scope.get(node.id)
        return None

    def echo(self, value: ast.expr) -> None:
        """An expression on its own line (a notebook shows its value): computed as Python computes it, and dropped;
        a gradient read (`x.grad`) is what the result holds for every node."""
        if changes_in_place(value):
            raise self.err(value, "an in-place change inside an expression whose value is dropped (`x.mul_(3).shape`) "
                                  "is not traced: write the change as a statement of its own (`x.mul_(3)`)")
        if not any(isinstance(n, ast.Attribute) and n.attr in ("grad", "grad_fn") for n in ast.walk(value)):
            self.begin("t", value, [])
            made = len(self.builder.shapes)
            self.expr(value)
            if not any(isinstance(n, ast.Call) for n in ast.walk(value)):
                # `net[0].weight.data[0]`: nothing can keep the views it made, so they hold no tensor (a later write
                # into the weight is no write through a view); with a call, a function might keep one
                new = set(list(self.builder.shapes)[made:])
                for views in self.builder.views.values():
                    views[:] = [v for v in views if v not in new]
        self.dropped(value)

    def dropped(self, value: ast.expr) -> None:
        """The note for a value computed on a line of its own and not kept."""
        self.res.notes.append(f"line {value.lineno}: the value of `{self.src(value)[:60]}` is not kept (as a notebook "
                              "shows it and drops it)")


def _may_draw_value(v: Any) -> bool:
    """Whether calling this value may draw: a torch module in training mode that holds a dropout (or an RReLU),
    anything of the program's own (its code may), a distribution (sample)."""
    if isinstance(v, ModuleInst):
        if v.layer is None:
            return any(_may_draw_value(c) for c in v.children)
        cfg = v.cfg
        return v.training and ("dropout" in v.layer.type and getattr(cfg, "p", 0) > 0 or getattr(cfg, "dropout", 0) > 0
                               or "rrelu" in v.layer.type)
    return not isinstance(v, (str, int, float, bool, list, tuple, dict, DType, Untraced, Foreign, T)) and v is not None


def _printed_parts(arg: ast.expr) -> list[ast.expr]:
    """What a print argument computes: an f-string's or a `'...'.format(...)`'s values (not their formatting: a
    tensor's value is known only when the engines run), anything else itself."""
    if isinstance(arg, ast.JoinedStr):
        return [v.value for v in arg.values if isinstance(v, ast.FormattedValue)]
    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "format" and isinstance(
            arg.func.value, ast.Constant) and isinstance(arg.func.value.value, str):
        return [*arg.args, *(k.value for k in arg.keywords)]
    return [arg]
