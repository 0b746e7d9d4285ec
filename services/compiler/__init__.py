"""The spec compiler: program, nodes or model into one checked Graph, from shapes alone (values are
made later, by services.materialize)."""

from __future__ import annotations

import ast

from services.compiler.build import GraphBuilder, Limits, RawNode, topo_order
from services.compiler.creation import RANDOM
from services.compiler.inputs import make_leaf
from services.compiler.layers import Emitter
from services.compiler.model import compile_model
from services.compiler.program import compile_program
from services.errors import SpecError
from services.ir import TORCH_DEFAULT_SEED, Graph, Stream
from shared.spec import TraceSpec

__all__ = ["Limits", "compile_spec"]


def compile_spec(spec: TraceSpec, limits: Limits | None = None) -> Graph:
    """Compile a validated spec into a Graph, or raise SpecError naming the field, node and line."""
    limits = limits or Limits()
    if spec.program is not None and "dtype" not in spec.model_fields_set and (dtype := program_dtype(spec.program)):
        spec = spec.model_copy(update={"dtype": dtype})  # `torch.set_default_dtype(torch.float64)` at the top
    builder = GraphBuilder(limits)
    builder.default_dtype = spec.dtype
    streams: list[Stream] = []
    for name, ispec in spec.input_specs().items():
        if not name.isidentifier() and spec.program is not None:
            raise SpecError("input names used in a program must be identifiers", loc=("inputs", name))
        leaf, stream = make_leaf(name, ispec, spec.dtype, limits.max_tensor_elements)
        builder.add_leaf(leaf, ("inputs", name))
        if stream is not None:
            streams.append(stream)
    torch_stream = Stream("torch", spec.seed if spec.seed is not None else TORCH_DEFAULT_SEED)
    output, grad_output, notes, aliases = spec.output, spec.grad_output, list[str](), dict[str, str]()
    if spec.program is not None:
        prog = compile_program(spec.program, builder, torch_stream, spec.dtype, set(builder.leaves))
        output = prog.names.get(output, output) if output else prog.output
        grad_output = grad_output if grad_output is not None else prog.grad_output
        notes, aliases = prog.notes, prog.aliases
        streams += prog.streams
    elif spec.nodes is not None:
        if len(spec.nodes) > limits.max_nodes:
            raise SpecError(f"{len(spec.nodes)} nodes exceed the limit of {limits.max_nodes}", loc=("nodes",))
        raws = [
            RawNode(n.name, n.op, list(n.inputs), dict(n.args), expr=_expr(n.op, n.inputs, n.args), loc=("nodes", i))
            for i, n in enumerate(spec.nodes)
        ]
        for raw in topo_order(raws, set(builder.leaves)):
            if raw.op == "dropout" and len(raw.inputs) == 1 and isinstance(raw.inputs[0], str) and raw.inputs[0] in builder:
                e = Emitter(builder, torch_stream, spec.dtype, loc=raw.loc)
                p = raw.args.get("p", 0.5)
                raw.inputs.append(e.dropout_mask(f"{raw.name}.mask", raw.inputs[0], float(p) if isinstance(p, (int, float)) else 0.5))
            builder.add(raw)
    else:
        assert spec.model is not None
        loss, model_stream = compile_model(spec.model, builder, spec.dtype, limits.max_tensor_elements)
        output = output or loss
        streams.append(model_stream)
    if spec.device == "cuda":
        notes.append("on the GPU, torch ran convolutions and matmuls in full float32 (TF32 off), as on the CPU: torch's "
                     "own default lets cuDNN use TF32 for convolutions on recent GPUs, whose results differ by ~1e-3")
        notes += dict.fromkeys(n for node in builder.nodes if (n := node.op.on_cuda(node.args)))
    if torch_stream.events:
        streams.append(torch_stream)
        if spec.seed is None and _draws_before_seed(torch_stream):
            notes.append(f"torch's generator was not seeded: gradtrace drew from seed {TORCH_DEFAULT_SEED} (a fresh "
                         "torch.Generator's), while torch seeds its default generator anew in each process; put "
                         "torch.manual_seed(...) first to get the numbers your own run gets")
    return builder.finish(
        output, grad_output, no_ops_loc=("program",) if spec.program is not None else (),
        dtype=spec.dtype, device=spec.device, engines=list(dict.fromkeys(spec.engines)),
        numeric=spec.numeric, keep=spec.keep, streams=streams, notes=[*notes, *builder.notes], aliases=aliases,
    )


def _draws_before_seed(stream: Stream) -> bool:
    """Whether the stream draws a random number before any torch.manual_seed."""
    for ev in stream.events:
        if ev.op == "seed":
            return False
        if ev.op in ("module", "dropout_mask", "init") or (ev.op == "tensor" and ev.args["fn"] in RANDOM) or (
            ev.op == "inplace" and ev.args["method"] in ("uniform_", "normal_", "bernoulli_", "exponential_")
        ):
            return True
    return False


def _expr(op: str, inputs: list[str | float], args: dict[str, object]) -> str:
    parts = [i if isinstance(i, str) else str(i) for i in inputs]
    if args:
        parts += [f"{k}={v!r}" for k, v in args.items()]
    return f"{op}({', '.join(parts)})"


DTYPE_NAMES = {"float64": "float64", "double": "float64", "float32": "float32", "float": "float32"}


def program_dtype(program: str) -> str | None:
    """The dtype a program sets with `torch.set_default_dtype(torch.float64)` before it makes anything (only imports,
    definitions, constants and seeds come first), as the spec's dtype would; None otherwise (a later call is refused
    where it differs from the spec's)."""
    if "set_default_dtype" not in program:
        return None
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # the compiler reports it
    for stmt in tree.body:
        call = stmt.value if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) else None
        f = call.func if call is not None else None
        if (isinstance(f, ast.Attribute) and f.attr == "set_default_dtype" and isinstance(f.value, ast.Name)
                and f.value.id == "torch" and len(call.args) == 1 and isinstance(call.args[0], ast.Attribute)  # type: ignore[union-attr]
                and isinstance(call.args[0].value, ast.Name) and call.args[0].value.id == "torch"):  # type: ignore[union-attr]
            return DTYPE_NAMES.get(call.args[0].attr)  # type: ignore[union-attr]
        if not _makes_nothing(stmt) and not (isinstance(f, ast.Attribute) and f.attr in ("manual_seed", "seed")):
            return None
    return None


def _makes_nothing(stmt: object) -> bool:
    """An import, a constant, a docstring, or a def/class whose definition runs nothing (no defaults, decorators
    or class-level code that could make a tensor)."""
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Pass)):
        return True
    if isinstance(stmt, (ast.Expr, ast.Assign)) and isinstance(stmt.value, ast.Constant):
        return True
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = stmt.args
        return not stmt.decorator_list and all(isinstance(d, ast.Constant) for d in [*a.defaults, *a.kw_defaults] if d)
    if isinstance(stmt, ast.ClassDef):
        return not stmt.decorator_list and all(_makes_nothing(s) for s in stmt.body)
    return False

