"""The end of a program's trace: backward() (the output and its gradient), statements after it (a training loop's
next step ends the trace there), and the names fixed once the program has run (provisional object paths, the last
binding a trace reached, the Parameters a weight tie or a replaced module left unused)."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from services.compiler.creation import made_value
from services.compiler.expressions import ExpressionCompiler, _kind
from services.compiler.values import Instance, T, Untraced, is_number
from services.errors import SpecError
from services.ir import LeafGradient

BINDING = re.compile(r"^(?P<var>[A-Za-z_]\w*)@\d+$")
"""An earlier binding's node name: 'loss@1'."""


class TraceEnded(Exception):
    """A statement after backward() that cannot be traced ended the trace (Finish.statement)."""


class Finish(ExpressionCompiler):
    """statement (watching what follows backward()) and finish_names; the attributes are the ProgramCompiler's."""

    res: Any
    generators: list[Any]
    untied: set[str]
    renames: dict[str, str]
    replaced: list[tuple[str, str]]
    ended: bool
    at_backward: tuple[Any, ...] | None
    guarded = False
    fold_nodes: dict[str, Any] = {}  # noqa: RUF012  # (replaced per fold)

    def backward(self, receiver: ast.expr, call: ast.Call, from_grad: bool = False) -> None:
        """`y.backward(gradient)` on any expression: picks the output and its gradient. One after a
        torch.autograd.grad (a PINN's du/dx looked at before `loss.backward()`) takes its place: torch's .grad holds
        this pass's gradients (autograd.grad set none), and what autograd.grad returned is not computed with."""
        if self.res.output is not None and not from_grad and (line := getattr(self, "grad_call", None)) is not None:
            self.res.output, self.res.grad_output, self.grad_call = None, None, None
            self.res.notes = [n for n in self.res.notes if not n.startswith(f"line {line}: torch.autograd.grad is traced")]
            self.res.notes.append(f"line {line}: torch.autograd.grad is not traced: the backward() of line {call.lineno} "
                                  "after it is (its gradients are what torch's .grad holds)")
        if self.res.output is not None:
            again = isinstance(receiver, ast.Name) and isinstance(out := self.scope.get(receiver.id), T) and any(
                n.name == out.name for n in self.builder.nodes[: self.at_backward[1][0]]) if self.at_backward else False
            raise self.err(call, "backward() is called a second time: gradtrace traces one backward pass (the grads "
                                 "shown are the first's)" + ("; torch adds this pass's gradients to .grad" + (
                                     "" if getattr(self, "retained", False) else ", or, where it reaches a part of the "
                                     "graph the first pass freed (an op that saved a tensor), raises 'Trying to backward "
                                     "through the graph a second time': the first backward() has no retain_graph=True")
                                     if again else ""))
        self.retained = any(k.arg == "retain_graph" and self.const(k.value) for k in call.keywords)
        bad = [k.arg for k in call.keywords if k.arg not in ("gradient", "retain_graph", "create_graph")]
        if bad or len(call.args) > 1:
            raise self.err(call, f"backward() takes only 'gradient' (and retain_graph) here, not {bad or 'more arguments'}")
        if any(k.arg == "create_graph" and self.const(k.value) for k in call.keywords):
            raise self.err(call, "create_graph=True (higher-order gradients) is not traced")
        text = self.src(receiver)
        self.begin("output", receiver, [self.fresh(text if len(text) <= 60 and "\n" not in text else "output")])
        out = self.expr(receiver)
        if not isinstance(out, T):
            raise self.err(receiver, f"backward() is called on {_kind(out)}, not a tensor")
        self.res.output = out.name
        rebound = self.rebound_reads() if getattr(self, "backward_reads", None) else None  # type: ignore[attr-defined]
        if rebound:
            raise self.err(call, rebound)
        grad = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "gradient"), None)
        if grad is not None:
            self.res.grad_output = self.fitted(self.gradient(grad, out), out, call)
        self.at_backward = self.snapshot(call.lineno)

    def autograd_grad(self, call: ast.Call) -> Any:
        """`dx, = torch.autograd.grad(y, x)`, `torch.autograd.grad(loss, model.parameters())`: one backward pass from
        the output, as y.backward() traces it (every node's gradient is in the result; torch leaves .grad unset). The
        gradients it returns can be printed; computing with them (create_graph, a manual update) is not traced."""
        given = dict(zip(("outputs", "inputs", "grad_outputs", "retain_graph", "create_graph"), call.args, strict=False))
        for k in call.keywords:
            if k.arg not in ("outputs", "inputs", "grad_outputs", "retain_graph", "create_graph", "only_inputs",
                             "allow_unused", "materialize_grads", "is_grads_batched"):
                raise self.err(call, f"torch.autograd.grad() got an unexpected keyword argument '{k.arg}'")
            given[k.arg] = k.value  # type: ignore[index]
        if given.get("create_graph") is not None and self.const(given["create_graph"]) or given.get(
                "is_grads_batched") is not None and self.const(given["is_grads_batched"]):
            raise self.err(call, "torch.autograd.grad(..., create_graph=True) (higher-order gradients, a gradient "
                                 "penalty) is not traced: gradtrace traces one first-order backward pass")
        if "outputs" not in given or "inputs" not in given:
            raise self.err(call, "torch.autograd.grad() takes outputs and inputs")
        outputs = given["outputs"]
        if isinstance(outputs, (ast.List, ast.Tuple)):
            if len(outputs.elts) != 1:
                raise self.err(outputs, "torch.autograd.grad of several outputs is not traced: give one output "
                                        "(their sum, `(a + b)`, has the same gradients)")
            outputs = outputs.elts[0]
        grad = given.get("grad_outputs")
        if isinstance(grad, (ast.List, ast.Tuple)) and len(grad.elts) == 1:
            grad = grad.elts[0]
        if isinstance(grad, ast.Constant) and grad.value is None:  # grad_outputs=None: torch's default
            grad = None
        if grad is not None and is_number(self.const(grad) if isinstance(grad, ast.Constant) else None):
            raise self.err(grad, "torch.autograd.grad's grad_outputs are tensors (torch.ones_like(y)), not a number")
        backward = ast.copy_location(ast.Call(func=ast.Attribute(value=outputs, attr="backward", ctx=ast.Load()),
                                              args=[grad] if grad is not None else [], keywords=[]), call)
        self.backward(outputs, backward, from_grad=True)
        inputs = self.expr(given["inputs"])
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not items:
            raise self.err(given["inputs"], "`inputs` argument to `grad()` cannot be empty (torch raises this)")
        unused = not any(self.const(given[k]) for k in ("allow_unused", "materialize_grads") if k in given)
        used = self.ancestors(self.res.output) if unused else set()
        for k, v in enumerate(items):
            if not isinstance(v, (T, Untraced)):
                raise self.err(given["inputs"], f"torch.autograd.grad's inputs are tensors, not {_kind(v)}")
            if isinstance(v, T) and not self.builder.grad[v.name]:
                raise self.err(given["inputs"], "One of the differentiated Tensors does not require grad (torch raises "
                                                "this in torch.autograd.grad)")
            if isinstance(v, T) and unused and v.name not in used:
                raise self.err(given["inputs"], f"The differentiated Tensor at index {k} appears to not have been used in "
                                                "the graph (torch raises this): set allow_unused=True if this is the "
                                                "desired behavior")
        self.res.notes.append(f"line {call.lineno}: torch.autograd.grad is traced as backward() from its output: each "
                              "input's gradient is its grad in the result")
        self.grad_call = call.lineno
        what = "the gradient torch.autograd.grad returns (the result has it as the input's grad)"
        if isinstance(inputs, Untraced):  # model.parameters(): as many as the model has
            return Untraced(what.replace("gradient", "gradients").replace("input's", "parameters'"))
        return tuple(Untraced(what) for _ in items)

    def ancestors(self, name: str) -> set[str]:
        """The tensors `name` was computed from, itself included."""
        inputs = {n.name: n.inputs for n in self.builder.nodes}
        seen, stack = {name}, [name]
        while stack:
            for i in inputs.get(stack.pop(), ()):
                if isinstance(i, str) and i not in seen:
                    seen.add(i)
                    stack.append(i)
        return seen

    def fitted(self, grad: Any, out: T, call: ast.Call) -> Any:
        """backward(gradient) as torch takes it: a tensor of the output's shape; any other shape fails, as in torch."""
        if is_number(grad) or isinstance(grad, str):
            return grad
        shape = self.shape(T(grad.name)) if isinstance(grad, LeafGradient) else np.shape(grad)
        want = tuple(self.shape(out))
        if shape != want:
            raise self.err(call, f"Mismatch in shape: the gradient has a shape of {list(shape)} and the output "
                                 f"'{self.src(call.func.value)[:40]}' has a shape of {list(want)}, as torch says")  # type: ignore[attr-defined]
        return grad

    def gradient(self, node: ast.expr, out: T) -> Any:
        """backward's gradient as data: torch.ones_like(y), torch.ones/full(...), torch.tensor([...]), a number,
        or a tensor made by torch.tensor."""
        if isinstance(node, ast.Call):
            path = self.dotted(node.func)
            if path in ("torch.ones_like", "torch.ones"):
                return "ones" if path == "torch.ones_like" else np.ones(self.sizes(node.args, node)).tolist()
            if path == "torch.full" and len(node.args) == 2:
                return np.full(self.sizes(node.args[:1], node), float(self.const(node.args[1]))).tolist()
            if path == "torch.tensor" and node.args:
                return self.const(node.args[0])
        v = self.expr(node)
        if is_number(v):
            return v
        if isinstance(v, T) and (value := self.folded(v.name)) is not None:
            return value.tolist()
        if isinstance(v, T) and v.name in self.builder.leaves and not self.builder.grad[v.name]:
            return LeafGradient(v.name)  # `out.backward(torch.randn(1, 10))`: drawn in the stream, in program order
        raise self.err(node, "backward(gradient): give torch.ones_like(y), torch.tensor([...]), a tensor made from "
                             "numbers (`one_hot = torch.zeros_like(out); one_hot[0, k] = 1`) or drawn (torch.randn(...))")

    def folded(self, name: str, depth: int = 0, memo: dict[str, np.ndarray | None] | None = None) -> np.ndarray | None:
        """A tensor's value now, when it is made from numbers alone (a literal, torch.zeros_like(out), and ops on
        them: Grad-CAM's one-hot gradient); None when it depends on anything drawn or computed from the program."""
        if memo is None:
            memo, self.fold_nodes = {}, {n.name: n for n in self.builder.nodes}
        if name not in memo:
            memo[name] = self.fold_one(name, depth, memo) if depth <= 64 else None
        return memo[name]

    def fold_one(self, name: str, depth: int, memo: dict[str, np.ndarray | None]) -> np.ndarray | None:
        b = self.builder
        if name in b.leaves:
            leaf = b.leaves[name]
            made = [ev for ev in self.stream.events if ev.target == name]
            if leaf.value is not None:
                return None if made else leaf.value  # (a literal changed in place since: not its literal)
            return made_value(made[0]) if len(made) == 1 else None
        node = self.fold_nodes.get(name)
        if node is None or node.requires_grad or node.op.name in ("dropout",):
            return None
        xs = []
        for i in node.inputs:
            x = self.folded(i, depth + 1, memo) if isinstance(i, str) else np.asarray(i, dtype=node.dtype if node.dtype.startswith("float") else None)
            if x is None:
                return None
            xs.append(x)
        return np.asarray(node.op.forward(xs, node.args)).astype(node.dtype)

    def statement(self, stmt: ast.stmt) -> None:
        """Compile a statement. After the traced backward(), one gradtrace cannot trace (the next step of a training
        loop: `w -= lr * w.grad`, `loss.item()`, a second backward()) ends the trace: everything since backward() is
        undone, a note says where and why, and TraceEnded unwinds to the program's top."""
        self.watched(stmt, lambda: self.dispatch(stmt))  # type: ignore[attr-defined]

    def watched(self, stmt: ast.stmt, run: Callable[[], Any]) -> Any:
        """run() for `stmt`, undone with the trace's end when it cannot follow the traced backward() (a statement, or
        a function's `return loss.item()` right after its backward())."""
        if self.at_backward is None or self.guarded:
            return run()
        self.guarded = True
        if self.at_backward[3] is None:  # the names as the statement that ran backward() left them (`l = step()`)
            self.at_backward = (*self.at_backward[:3], dict(self.globals))  # type: ignore[attr-defined]
        try:
            return run()
        except SpecError as e:
            line, mark, events, names = self.at_backward
            grad_line = getattr(self, "grad_call", None)
            later = [n for n in self.backward_lines() if n > stmt.lineno] if grad_line is not None else []
            if later:  # torch's .grad will hold that backward()'s gradients, which the trace cannot reach
                raise SpecError(f"this statement cannot follow the torch.autograd.grad of line {grad_line} ({e.message}), "
                                f"and the backward() of line {later[0]} comes after it: torch's .grad then holds that "
                                "backward()'s gradients, which gradtrace does not reach (it traces autograd.grad as the "
                                "backward pass, and computing with what it returns is not traced); trace the program "
                                "without the autograd.grad (or without what follows it)", loc=("program",),
                                line=stmt.lineno) from None
            self.builder.rollback(mark)
            for s, n in events:
                del s.events[n:]
            self.globals.clear()  # type: ignore[attr-defined]
            self.globals.update(names)  # type: ignore[attr-defined]
            again = " (its first run)" if stmt.lineno == line else ""
            self.res.notes.append(f"line {stmt.lineno}: the trace ends at the backward() of line {line}{again}: gradtrace "
                                  "traces one forward and backward (a training loop's first step), and this line cannot "
                                  f"follow it ({e.message}); nothing after that backward() is traced")
            raise TraceEnded from None
        finally:
            self.guarded = False

    def backward_lines(self) -> list[int]:
        """Lines of the program's `.backward(...)` calls, in order."""
        return sorted(n.lineno for n in ast.walk(self.tree) if isinstance(n, ast.Call) and  # type: ignore[attr-defined]
                      isinstance(n.func, ast.Attribute) and n.func.attr == "backward")

    def snapshot(self, line: int) -> tuple[Any, ...]:
        """What the program has made when backward() is traced: the graph and the streams' draws (the top level's
        names are taken when the statement that called it is done)."""
        streams = [self.stream, *(g.stream for g in self.generators)]
        return line, self.builder.mark(), [(s, len(s.events)) for s in streams], None

    def stale_versions(self) -> None:
        """Refuse a program whose backward() reaches an operation that read a leaf's earlier value (TensorCreation.
        keep_version): torch's autograd holds the one tensor, whose backward reads its new values (or fails: modified
        by an inplace operation) and sums every use into one .grad."""
        versions: dict[str, tuple[str, int]] = getattr(self, "versions", {})
        holds: dict[str, tuple[str, int, str]] = getattr(self, "ctx_holds", {})
        if not versions and not holds or self.res.output is None:
            return
        reached = self.ancestors(self.res.output)
        for n in self.builder.nodes if holds else ():
            if n.writes in holds and holds[n.writes][2] in reached:
                fn, line, _ = holds[n.writes]
                raise SpecError(f"'{n.writes}' is changed in place{f' on line {n.line}' if n.line else ''} after {fn}.forward kept it "
                                f"on ctx (line {line}): torch's backward of {fn} reads it as it is then (ctx attributes "
                                "are not version-checked), which gradtrace does not trace; keep a clone (`ctx.x = x.clone()`) "
                                "or save it with ctx.save_for_backward", loc=("program",))
        for n in self.builder.nodes:
            old = next((i for i in n.inputs if i.__class__ is str and i in versions), None)
            if old is not None and n.name in reached and self.builder.grad[n.name]:
                name, line = versions[old]
                raise SpecError(f"'{name}' is written after an operation used it (line {line}), and backward() reaches "
                                f"that operation{f' (line {n.line})' if n.line else ''}: torch's autograd holds the one "
                                "tensor, whose backward there reads its new values or fails (modified by an inplace "
                                "operation), which gradtrace does not trace; write it before its first use, or after "
                                "backward()", loc=("program",))

    def finish_names(self) -> None:
        """Drop the Parameters ties replaced (unused), and give tensors their final names: objects named under a
        provisional path take their place's ('model.block.ln_1.weight' -> 'model.transformer.h.0.ln_1.weight'),
        each variable's last binding its bare name where bindings counted before they ran did not all come (loss@1
        -> loss: an `if` not known then, a trace that ended early, loops that ran as Python runs them; more came than
        counted: the first, which took the bare name, is loss@1), and a module's running statistics their buffer's
        (latest_buffers)."""
        for name in self.untied - self.builder.used:
            if name in self.builder.leaves:  # (not when a statement after backward() made it and was rolled back)
                self.builder.drop_leaf(name)
        self.parameter_places()
        self.latest_attributes()
        for old, new in reversed(self.replaced):  # the last replacement first: its names may be an earlier one's
            self.take_place(old, new)
        prefixes = sorted(self.renames, key=len, reverse=True)

        def renamed(name: str) -> str:  # through chains: an object's part named under its provisional path
            used: set[str] = set()
            while (p := next((p for p in prefixes if name.startswith(p + ".") and p not in used), None)) is not None:
                used.add(p)
                name = self.renames[p] + name[len(p):]
            return name
        new = {k: renamed(k) for k in self.builder.shapes} if prefixes else {}
        # `loss@1` was to be followed by bindings the trace did not reach (an `if` whose condition was not known when
        # they were counted, a trace ended early), or a loop ran as Python runs it (its bindings named as they came):
        # the last is `loss`
        loose: set[str] = getattr(self, "loose_names", set())
        b = self.builder
        held = [(var, v.name) for var, v in self.globals.items() if isinstance(v, T)]  # type: ignore[attr-defined]
        bound = [(var, name) for var, name in held if var not in b]
        last = {name: var for var, name in bound if (m := BINDING.match(name)) and m["var"] == var}
        for var, name in held:  # more bindings came than were counted, the first took the bare name: it is var@j
            if var in b and (m := BINDING.match(name)) and m["var"] == var and var not in self.spec_inputs and getattr(
                    b.leaves.get(var), "kind", "input") == "input" and var not in b.module_buffers:
                free = next((f"{var}@{j}" for j in range(1, int(name.rpartition("@")[2])) if f"{var}@{j}" not in b), None)
                if free is not None:
                    last[name], last[var] = var, free
        for var, name in bound:  # a while loop's value another name holds (`out = model(x)`, `loss = acc`)
            if name in loose:
                last.setdefault(name, var)
        if last:
            def bare(k: str) -> str:  # loss@1 -> loss, and its sub-expressions loss@1#2 -> loss#2
                if k in last:  # (a while loop's value named f.v@2#2 in a function's second call: `b`)
                    return last[k]
                head, sep, tail = k.partition("#")
                return last[head] + sep + tail if head in last and (not sep or tail.isdigit()) else new.get(k, k)
            new = {k: bare(k) for k in self.builder.shapes}
        if new and len(set(new.values())) == len(new):  # (a clash with a name made since: the names stay as they are)
            self.rename_tensors(new)
        self.latest_buffers()

    def parameter_places(self) -> None:
        """A Parameter made from a local or an argument (`w_init = torch.randn(3, 3); self.weight = nn.Parameter(w_init)`,
        `self.embed = nn.Parameter(init)`) named for the module attribute that holds it, as named_parameters() names it
        (model.weight, not model.w_init); one a module's own place names already (a tied weight) keeps its name."""
        b = self.builder
        places: dict[str, str] = {}  # tensor -> its first place: registration order, as named_parameters() goes
        owned: set[str] = set()
        for v in self.instances():
            for attr, x in v.attrs.items() if v.cls.module else ():
                if isinstance(x, T) and getattr(b.leaves.get(x.name), "kind", "") == "parameter":
                    places.setdefault(x.name, f"{v.path}.{attr}")
                    owned.add(f"{v.path}.{attr}")
        mapping = {name: place for name, place in places.items() if name not in owned and place not in b}
        if mapping and len(set(mapping.values())) == len(mapping):
            self.rename_tensors({k: mapping.get(k, k) for k in b.shapes})

    def instances(self) -> Iterator[Instance]:
        """The program's objects its variables reach (through lists, tuples, dicts and their attributes), once each,
        in the order the program named them (as named_parameters() goes from the module a variable holds)."""
        seen: set[int] = set()
        stack = list(reversed(self.globals.values()))  # type: ignore[attr-defined]
        while stack:
            v = stack.pop()
            if id(v) in seen:
                continue
            seen.add(id(v))
            if isinstance(v, Instance):
                yield v
                stack.extend(reversed([x for x in v.attrs.values() if not isinstance(x, T)]))
            elif isinstance(v, (list, tuple)):
                stack.extend(reversed(v))
            elif isinstance(v, dict):
                stack.extend(reversed(list(v.values())))

    def latest_attributes(self) -> None:
        """An object's tensor attribute bound again (`layer.weight *= 5 / 3` on makemore's layers, `self.out = ...` at
        each call): what it holds when the program ends takes the attribute's name (layers.0.weight), its first
        binding `@1`, as a variable's."""
        b = self.builder
        mapping: dict[str, str] = {}
        statistics = {n.name for n in b.nodes if n.op.name == "batch_norm_running"}  # (latest_buffers names those)
        for v in self.instances():
            for attr, x in v.attrs.items():
                base = f"{v.path}.{attr}"
                head, sep, k = x.name.rpartition("#") if isinstance(x, T) else ("", "", "")
                if sep and k.isdigit() and head == base and base in b and f"{base}@1" not in b \
                        and not {base, x.name} & set(mapping) and x.name not in statistics \
                        and getattr(b.leaves.get(base), "kind", "") != "parameter":
                    mapping[base], mapping[x.name] = f"{base}@1", base
        if mapping:
            self.rename_tensors({k: mapping.get(k, k) for k in b.shapes})

    def latest_buffers(self) -> None:
        """A module's running statistics updated more than once (a BatchNorm called twice in training): the latest
        takes the buffer's name, as the module holds it when the program ends (bn.running_mean), the earlier ones
        bn.running_mean@1, @2, ... as a variable's earlier bindings."""
        b = self.builder
        mapping: dict[str, str] = {}
        bases = set()
        for n in b.nodes:
            if n.op.name == "batch_norm_running":
                head, sep, k = n.name.rpartition("#")
                bases.add(head if sep and k.isdigit() else n.name)
        for base in bases:
            members = [base] if base in b else []
            while members and f"{base}#{len(members) + 1}" in b:  # base, base#2, base#3, ... (Emitter.unique's order)
                members.append(f"{base}#{len(members) + 1}")
            first = 0 if base in b.leaves else 1  # a buffer read before its first update: @0 is it, @k after update k
            if len(members) > 1:
                mapping |= {m: f"{base}@{i + first}" for i, m in enumerate(members[:-1])} | {members[-1]: base}
        if mapping and not any(v in b and v not in mapping for v in mapping.values()):
            self.rename_tensors({k: mapping.get(k, k) for k in b.shapes})

    def take_place(self, old: str, new: str) -> None:
        """A module replaced by another (`model.fc = nn.Linear(512, 10)`): when no operation used the old one's
        parameters, they go (torch lists only the new one) and the new one takes its names, model.fc#2.weight ->
        model.fc.weight. Its draws still run, into names of their own (an init through an old alias stays its own)."""
        b = self.builder
        names = [n for n in b.shapes if n.startswith(old + ".")]
        if not names or any(n in b.used or n not in b.leaves for n in names):
            return  # used (or it computed tensors): both stay, the new one as model.fc#2
        mapping = {k: old + k[len(new):] if k.startswith(new + ".") else k for k in b.shapes if k not in names}
        if len(set(mapping.values())) != len(mapping):
            return
        self.rename_events({n: f"{n}~replaced" for n in names})
        for n in names:
            b.drop_leaf(n)
        self.rename_tensors(mapping)

    def rename_tensors(self, new: dict[str, str]) -> None:
        """Rename tensors everywhere a compiled program names them: graph, random streams, variables, output."""
        self.builder.rename(new)
        self.rename_events(new)
        self.res.names = {k: new.get(v, v) for k, v in self.res.names.items()}
        if self.res.output is not None:
            self.res.output = new.get(self.res.output, self.res.output)

    def rename_events(self, new: dict[str, str]) -> None:
        """Rename the tensors the random streams' events write and read."""
        streams = {id(s): s for s in [self.stream, *self.res.streams, *(g.stream for g in self.generators)]}
        for stream in streams.values():  # (a generator's stream is among the result's once the program is done)
            for ev in stream.events:
                ev.target = new.get(ev.target, ev.target) if ev.target is not None else None
                if isinstance(ev.args.get("source"), str):
                    ev.args["source"] = new.get(ev.args["source"], ev.args["source"])
                if "tensors" in ev.args:  # an in-place update's tensor operands
                    ev.args["tensors"] = [(k, new.get(v, v)) for k, v in ev.args["tensors"]]
                if ev.op in ("module", "clone"):
                    ev.args["params"] = {k: new.get(v, v) for k, v in ev.args["params"].items()}
                    ev.args["also"] = [{k: new.get(v, v) for k, v in m.items()} for m in ev.args.get("also", [])]
                if ev.op == "clone":
                    ev.args["sources"] = {k: new.get(v, v) for k, v in ev.args["sources"].items()}
                    ev.args["buffers"] = {k: new.get(v, v) for k, v in ev.args["buffers"].items()}
