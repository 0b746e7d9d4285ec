"""The spec compiler: program, nodes or model into one checked Graph, from shapes alone (values are
made later, by services.materialize)."""

from __future__ import annotations

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
    output, grad_output, notes = spec.output, spec.grad_output, list[str]()
    if spec.program is not None:
        prog = compile_program(spec.program, builder, torch_stream, spec.dtype, set(builder.leaves))
        output = prog.names.get(output, output) if output else prog.output
        grad_output = grad_output if grad_output is not None else prog.grad_output
        notes = prog.notes
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
                         "torch.Generator's); put torch.manual_seed(...) first to get the numbers your own run gets")
    return builder.finish(
        output, grad_output, no_ops_loc=("program",) if spec.program is not None else (),
        dtype=spec.dtype, device=spec.device, engines=list(dict.fromkeys(spec.engines)),
        numeric=spec.numeric, keep=spec.keep, streams=streams, notes=[*notes, *builder.notes],
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
