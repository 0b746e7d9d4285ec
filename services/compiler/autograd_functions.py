"""A program's own torch.autograd.Function (`class MyReLU(torch.autograd.Function)`, the tutorials' custom op, a
gradient reversal layer): its forward and backward bodies compiled each into nodes of their own, one op per
`MyReLU.apply(x)` call (services.ops.custom.CustomFunction), whose backward is the program's."""

from __future__ import annotations

import ast
from collections import ChainMap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from services.compiler.build import GraphBuilder, RawNode
from services.compiler.creation import made_value
from services.compiler.expressions import ExpressionCompiler, _kind
from services.compiler.values import AutogradFunction, Ctx, T, UserFunction, Value
from services.ir import Leaf
from services.ops.custom import Body, CustomFunction

CTX_IGNORED = ("set_materialize_grads",)
"""ctx methods that change nothing gradtrace traces (one output: its gradient is always a tensor)."""


class AutogradFunctions(ExpressionCompiler):
    """define_function, apply_function and the ctx's attributes and methods (the attributes are the
    ProgramCompiler's)."""

    generators: list[Any]
    res: Any
    body_nodes: int
    argument_grad: dict[str, bool]
    functions_noted: set[str]
    ctx_holds: dict[str, tuple[str, int, str]]
    backward_reads: list[tuple[str, int, dict[str, Any]]]

    def define_function(self, stmt: ast.ClassDef, methods: dict[str, UserFunction],
                        attrs: dict[str, Value] | None = None) -> AutogradFunction:
        """`class MyReLU(torch.autograd.Function)` with static forward(ctx, ...) and backward(ctx, grad_output)."""
        if "setup_context" in methods:
            raise self.err(stmt, f"class {stmt.name}: a forward without ctx and a setup_context are not traced yet: "
                                 "write forward(ctx, ...) and save with ctx.save_for_backward(...), as the tutorials do")
        missing = [m for m in ("forward", "backward") if m not in methods]
        if missing:
            raise self.err(stmt, f"class {stmt.name}: a torch.autograd.Function needs a static {' and '.join(missing)}")
        for m in ("forward", "backward"):
            a = methods[m].node.args
            if len([*a.posonlyargs, *a.args]) < 2 or a.vararg or a.kwarg or a.kwonlyargs:
                raise self.err(methods[m].node, f"{stmt.name}.{m} takes ctx and then its inputs by name "
                                                f"(`def {m}(ctx, {'input' if m == 'forward' else 'grad_output'}):`)")
        if [*methods["backward"].node.args.posonlyargs, *methods["backward"].node.args.args][2:]:
            raise self.err(methods["backward"].node, f"{stmt.name}.backward takes one gradient here: forward returns "
                                                     "one tensor")
        return AutogradFunction(stmt.name, methods["forward"], methods["backward"], dict(attrs or {}))

    @contextmanager
    def own_builder(self, leaves: list[Leaf], node: ast.AST, what: str) -> Iterator[GraphBuilder]:
        """Compile a body into a builder of its own, which sees the program's tensors (read, not changed) and
        records no graph (torch runs forward and backward with grad mode off)."""
        main = self.builder
        sub = GraphBuilder(main.limits)
        sub.total = main.total  # (its tensors count against the job's limits, as the same code written inline)
        sub.default_dtype = main.default_dtype
        sub.shapes = ChainMap(sub.shapes, main.shapes)  # type: ignore[assignment]
        sub.dtypes = ChainMap(sub.dtypes, main.dtypes)  # type: ignore[assignment]
        sub.grad = ChainMap(sub.grad, main.grad)  # type: ignore[assignment]
        sub.ranges = ChainMap(sub.ranges, main.ranges)  # type: ignore[assignment]
        sub.grad_enabled = False
        for leaf in leaves:
            sub.add_leaf(leaf)
        streams = [self.stream, *(g.stream for g in self.generators)]
        before = [len(s.events) for s in streams]
        self.builder = sub
        try:
            yield sub
        finally:
            self.builder = main
        self.body_nodes += len(sub.nodes)  # (every apply's bodies: they run as the same code written inline would)
        if len(main.nodes) + self.body_nodes > main.limits.max_nodes:
            raise self.err(node, f"more than {main.limits.max_nodes} nodes (with {what}'s): over the limit")
        main.total = sub.total
        made = self.stream.events[before[0]:]
        if [len(s.events) for s in streams[1:]] != before[1:] or not all(self.constant_made(ev, sub) for ev in made):
            raise self.err(node, f"{what} draws random numbers or writes into a tensor of the program: not traced inside "
                                 "an autograd.Function (draw them outside and pass them in)")
        del self.stream.events[before[0]:]  # (their values are the body's constants now)

    def constant_made(self, ev: Any, sub: GraphBuilder) -> bool:
        """A tensor a body makes from numbers (`torch.zeros_like(g)`, `torch.arange(4)`): its value now, as the body's
        constant; False for anything else (a draw, a write)."""
        value = made_value(ev) if ev.target in sub.leaves else None
        if value is None or value.shape != sub.leaves[ev.target].shape:
            return False
        sub.leaves[ev.target].value = value
        return True

    def compiled_body(self, sub: GraphBuilder, inputs: list[str], outputs: list[str | None], node: ast.AST, what: str,
                      also: tuple[str, ...] | list[str] = ()) -> tuple[Body, list[str]]:
        """The Body of a builder's nodes; also the program's tensors it reads (in order of first use, with `also`),
        which come in after `inputs`."""
        own = set(sub.leaves) | {n.name for n in sub.nodes}
        reads: dict[str, None] = {}
        for n in sub.nodes:
            for i in n.inputs:
                if isinstance(i, str) and i not in own:
                    reads[i] = None
        for i in [*also, *outputs]:
            if i is not None and i not in own:
                reads[i] = None
        written = next((n for n in sub.nodes if n.writes is not None and n.writes not in own), None)
        if written is not None:
            raise self.err(node, f"{what} changes the program's tensor '{written.writes}' in place (line {written.line}): "
                                 "not traced inside an autograd.Function (torch's body would change it for the rest of "
                                 "the program)")
        constants = {}
        for name, leaf in sub.leaves.items():
            if name in inputs:
                continue
            if leaf.value is None:
                raise self.err(node, f"{what} makes the tensor '{name}' from a draw or an event gradtrace runs later: not "
                                     "traced inside an autograd.Function (make it outside and pass it in)")
            constants[name] = leaf.value
        self.builder.used.update(reads)
        return Body([*inputs, *reads], list(sub.nodes), outputs, constants), list(reads)

    def apply_function(self, fn: AutogradFunction, node: ast.Call) -> T:
        """`MyReLU.apply(x, 2.0)`: one node, its value the forward body's on these arguments, its backward the
        program's backward body (numbers among the arguments are constants of both)."""
        if node.keywords:
            raise self.err(node, f"{fn.name}.apply takes its arguments by position (torch's Function.apply)")
        name = self.name_for(node)
        args, _ = self.call_args(node)
        main = self.builder
        if not any(isinstance(a, T) for a in args):
            raise self.err(node, f"{fn.name}.apply takes at least one tensor")
        needs = tuple(isinstance(a, T) and bool(main.grad[a.name]) for a in args)  # (under no_grad too, as torch's)
        fwd_params = [p.arg for p in (*fn.forward.node.args.posonlyargs, *fn.forward.node.args.args)][1:]
        if len(args) > len(fwd_params):
            raise self.err(node, f"{fn.name}.forward takes {len(fwd_params)} input(s), apply got {len(args)}")
        holders = {k: f"{fn.name}.{p}" for k, (p, a) in enumerate(zip(fwd_params, args, strict=False)) if isinstance(a, T)}
        leaves = [Leaf(holders[k], main.shapes[a.name], main.dtypes[a.name], False) for k, a in enumerate(args) if k in holders]
        self.argument_grad.update({holders[k]: needs[k] for k in holders})  # `x.requires_grad` in forward: the input's
        ctx = Ctx(needs)
        with self.own_builder(leaves, node, f"{fn.name}.forward") as sub:
            out = self.call_user(fn.forward, [ctx, *(T(holders[k]) if k in holders else a for k, a in enumerate(args))],
                                 {}, node, prefix=f"{fn.name}.")
            if not isinstance(out, T):
                raise self.err(node, f"{fn.name}.forward returns {_kind(out)}: gradtrace traces a Function that returns "
                                     "one tensor")
            if out.name in sub.leaves or out.name not in {n.name for n in sub.nodes}:
                # an input returned as it is: torch's output is a view of it
                out = self.emit("reshape", [out], {"shape": list(sub.shapes[out.name])}, node, self.fresh(f"{fn.name}.out"))
            shape, dtype = sub.shapes[out.name], sub.dtypes[out.name]
        saved = list(ctx.saved or ())
        if not all(s is None or isinstance(s, T) for s in saved):
            raise self.err(node, f"{fn.name}: save_for_backward takes tensors (or None)")
        links = [(s.name, f"{fn.name}.saved_tensors.{k}") for k, s in enumerate(saved) if isinstance(s, T)]
        n_saved = len(links)
        for attr, v in ctx.attrs.items():  # ctx.x = x; ctx.parts = (a, b)
            if isinstance(v, T):
                links.append((v.name, f"{fn.name}.ctx.{attr}"))
            elif isinstance(v, (tuple, list)):
                links += [(x.name, f"{fn.name}.ctx.{attr}.{i}") for i, x in enumerate(v) if isinstance(x, T)]
        fwd_body, fwd_reads = self.compiled_body(sub, [holders[k] for k in sorted(holders)], [out.name], node,
                                        f"{fn.name}.forward", [src for src, _ in links])
        shapes = {src: sub.shapes[src] for src, _ in links}
        dtypes = {src: sub.dtypes[src] for src, _ in links}
        bwd_params = [p.arg for p in (*fn.backward.node.args.posonlyargs, *fn.backward.node.args.args)]
        grad_name = f"{fn.name}.{bwd_params[1]}"
        back_leaves = [Leaf(ph, shapes[src], dtypes[src], False) for src, ph in links] + [Leaf(grad_name, shape, dtype, False)]
        by_src = dict(links)
        back = Ctx(needs, tuple(T(by_src[s.name]) if isinstance(s, T) else None for s in saved),
                   {attr: T(f"{fn.name}.ctx.{attr}") if isinstance(v, T) else type(v)(
                       T(f"{fn.name}.ctx.{attr}.{i}") if isinstance(x, T) else x for i, x in enumerate(v))
                    if isinstance(v, (tuple, list)) else v for attr, v in ctx.attrs.items()}, "backward")
        with self.own_builder(back_leaves, node, f"{fn.name}.backward") as bsub:
            got = self.call_user(fn.backward, [back, T(grad_name)], {}, node, prefix=f"{fn.name}.backward.")
            grads = list(got) if isinstance(got, (tuple, list)) else [got]
            while len(grads) > len(args) and grads[-1] is None:  # torch drops extra Nones (`bias=None` not given)
                grads.pop()
            if len(grads) != len(args):
                raise self.err(node, f"function {fn.name}Backward returned an incorrect number of gradients (expected "
                                     f"{len(args)}, got {len(grads)}): torch fails so at backward()")
            outs: list[str | None] = []
            for k, (g, a) in enumerate(zip(grads, args, strict=True)):
                if g is None:
                    outs.append(None)
                elif not isinstance(a, T):
                    raise self.err(node, f"function {fn.name}Backward returned a gradient different than None at position "
                                         f"{k + 1}, but the corresponding forward input was not a Variable: torch fails so")
                elif not isinstance(g, T) or not expandable(main.shapes[a.name], bsub.shapes[g.name]):
                    got_shape = list(bsub.shapes[g.name]) if isinstance(g, T) else _kind(g)
                    raise self.err(node, f"function {fn.name}Backward returned an invalid gradient at index {k}: got "
                                         f"{got_shape}, expected shape compatible with {list(main.shapes[a.name])}")
                else:
                    outs.append(self.summed_to(g, main.shapes[a.name], node).name)
        # the gradients of the tensor arguments (numbers take none), in order
        outs = [o for o, a in zip(outs, args, strict=True) if isinstance(a, T)]
        bwd_body, bwd_reads = self.compiled_body(bsub, [ph for _, ph in links] + [grad_name], outs, node, f"{fn.name}.backward")
        tensors = [a.name for a in args if isinstance(a, T)]
        op = CustomFunction(fn.name, fwd_body, [src for src, _ in links], bwd_body, len(tensors), shape, dtype, n_saved)
        self.backward_reads.append((fn.name, node.lineno, self.globals_read(fn.backward)))
        program_reads = [r for r in [*fwd_reads, *bwd_reads] if main.grad.get(r)]
        if program_reads:  # the classic custom-op bug: a weight not passed to apply gets no gradient through it
            self.res.notes.append(f"line {node.lineno}: {fn.name} reads '{program_reads[0]}', which requires grad, without "
                                  "taking it as an argument: no gradient flows to it through the Function (as in torch); "
                                  "pass it to apply for backward to give its gradient")
        program_of = {holders[k]: a.name for k, a in enumerate(args) if k in holders}
        for src, _ in links[n_saved:]:  # ctx.x = x: torch's backward reads x as it is then (no version check)
            self.ctx_holds[program_of.get(src, src)] = (fn.name, node.lineno, name)
        if fn.name not in self.functions_noted:
            self.functions_noted.add(fn.name)
            self.res.notes.append(f"line {node.lineno}: the gradient through {fn.name} is its backward's, the program's "
                                  "(torch and the reference engine both run it): the numeric engine's finite differences "
                                  "of its forward check it (on up to numeric.max_elements_per_leaf elements of each "
                                  "leaf: raise it to check every one)")
        self.builder.add(RawNode(name=name, op=op, inputs=[*tensors, *fwd_reads, *bwd_reads], expr=self.src(node),
                                 line=getattr(node, "lineno", self.line), col=node.col_offset + 1, loc=("program",)))
        return T(name)

    def globals_read(self, fn: UserFunction) -> dict[str, Any]:
        """The program's top-level names a body reads (not its parameters or locals), with what they hold now."""
        a = fn.node.args
        own = {p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)}
        for n in ast.walk(fn.node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                own.add(n.id)
        names = {n.id for n in ast.walk(fn.node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - own
        return {k: self.globals[k] for k in sorted(names) if k in self.globals}  # type: ignore[attr-defined]

    def rebound_reads(self) -> str | None:
        """At backward(): a name a Function's backward reads, bound again since its apply (torch's backward reads it
        then, gradtrace compiled the backward at the apply); the refusal's message, or None."""
        for fn, line, reads in self.backward_reads:
            for k, was in reads.items():
                now = self.globals.get(k)  # type: ignore[attr-defined]
                if now is not was and not (type(now) is type(was) and (isinstance(now, T) or type(now) in (int, float, bool, str))
                                           and now == was):
                    return (f"{fn}.backward reads '{k}', which the program binds again after {fn}.apply (line {line}) "
                            "and before backward(): torch's backward reads it then, gradtrace compiles it at the apply; "
                            f"pass it to apply, or leave '{k}' as it was")
        return None

    def summed_to(self, g: T, shape: tuple[int, ...], node: ast.Call) -> T:
        """A gradient of a shape the input broadcasts to, summed down to the input's (torch's at::sum_to)."""
        have = self.builder.shapes[g.name]
        lead = len(have) - len(shape)
        dims = list(range(lead)) + [lead + i for i, n in enumerate(shape) if n == 1 and have[lead + i] != 1]
        if not dims:
            return g
        summed = self.emit("sum", [g], {"dim": dims, "keepdim": True}, node)
        return self.emit("reshape", [summed], {"shape": list(shape)}, node) if lead else summed

    def ctx_attribute(self, ctx: Ctx, node: ast.Attribute) -> Value:
        """ctx.saved_tensors, ctx.needs_input_grad, ctx.<what forward set>."""
        if node.attr == "saved_tensors":
            if ctx.phase != "backward":
                raise self.err(node, "ctx.saved_tensors is read in backward")
            return ctx.saved or ()
        if node.attr == "needs_input_grad":
            return ctx.needs_input_grad
        if node.attr in ctx.attrs:
            return ctx.attrs[node.attr]  # type: ignore[no-any-return]
        raise self.err(node, f"ctx has no attribute '{node.attr}' (forward did not set it)")

    def ctx_write(self, ctx: Ctx, attr: str, value: ast.expr, stmt: ast.stmt) -> None:
        """`ctx.constant = constant` in forward: kept for backward (a tensor comes to backward as forward left it)."""
        if ctx.phase != "forward":
            raise self.err(stmt, "ctx's attributes are set in forward")
        if attr in ("saved_tensors", "needs_input_grad"):
            raise self.err(stmt, f"ctx.{attr} cannot be assigned")
        v = self.expr(value)
        def tensors_in(x: Any) -> bool:
            items = x.values() if isinstance(x, dict) else x if isinstance(x, (tuple, list)) else ()
            return any(isinstance(i, T) or tensors_in(i) for i in items)
        if (isinstance(v, dict) or isinstance(v, (tuple, list)) and any(isinstance(x, (dict, tuple, list)) for x in v)) \
                and tensors_in(v):
            raise self.err(stmt, f"ctx.{attr}: gradtrace keeps tensors on ctx as themselves or in a flat tuple or list, "
                                 "not in a dict or nested containers")
        ctx.attrs[attr] = v

    def ctx_call(self, ctx: Ctx, method: str, call: ast.Call) -> None:
        """ctx.save_for_backward(a, b) (once, in forward); ctx.set_materialize_grads(...)."""
        if method in CTX_IGNORED:
            return
        if method != "save_for_backward":
            raise self.err(call, f"ctx.{method}() is not traced (gradtrace traces save_for_backward, saved_tensors, "
                                 "needs_input_grad and attributes)")
        if ctx.phase != "forward" or ctx.saved is not None or call.keywords:
            raise self.err(call, "save_for_backward is called once, in forward, with tensors by position")
        values, _ = self.call_args(call)  # type: ignore[attr-defined]
        ctx.saved = tuple(values)


def expandable(shape: tuple[int, ...], to: tuple[int, ...]) -> bool:
    """Whether a tensor of `shape` broadcasts to `to` (torch's is_expandable_to)."""
    if len(shape) > len(to):
        return False
    return all(n == m or n == 1 for n, m in zip(shape[::-1], to[::-1], strict=False))
