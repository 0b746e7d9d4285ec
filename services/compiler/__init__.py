"""The spec compiler: program, nodes or model into one checked Graph."""

from __future__ import annotations

from services.compiler.build import Limits, RawNode, build_graph
from services.compiler.inputs import make_leaf
from services.compiler.model import compile_model
from services.compiler.program import compile_program
from services.errors import SpecError
from services.ir import Graph, Leaf
from shared.spec import TraceSpec

__all__ = ["Limits", "compile_spec"]


def compile_spec(spec: TraceSpec, limits: Limits | None = None) -> Graph:
    """Compile a validated spec into a Graph, or raise SpecError naming the field, node and line."""
    limits = limits or Limits()
    leaves: dict[str, Leaf] = {}
    for name, ispec in spec.input_specs().items():
        if not name.isidentifier() and spec.program is not None:
            raise SpecError("input names used in a program must be identifiers", loc=("inputs", name))
        leaves[name] = make_leaf(name, ispec, spec.dtype, limits.max_tensor_elements)
    output, grad_output = spec.output, spec.grad_output
    raws: list[RawNode]
    if spec.program is not None:
        prog = compile_program(spec.program, set(leaves))
        for name, ispec in prog.inputs.items():
            leaf = make_leaf(name, ispec, spec.dtype, limits.max_tensor_elements, literal_ints=True)
            leaf.expr = f"line {prog.input_lines[name]}"
            leaves[name] = leaf
        raws = prog.nodes
        output = prog.names.get(output, output) if output else prog.output
        grad_output = grad_output if grad_output is not None else prog.grad_output
    elif spec.nodes is not None:
        raws = [
            RawNode(n.name, n.op, list(n.inputs), dict(n.args), expr=_expr(n.op, n.inputs, n.args), loc=("nodes", i))
            for i, n in enumerate(spec.nodes)
        ]
    else:
        assert spec.model is not None
        params, raws = compile_model(spec.model, leaves, spec.dtype)
        leaves.update(params)
    return build_graph(
        leaves, raws, output, grad_output, limits,
        dtype=spec.dtype, device=spec.device, engines=list(dict.fromkeys(spec.engines)),
        numeric=spec.numeric, keep=spec.keep,
    )


def _expr(op: str, inputs: list[str | float], args: dict[str, object]) -> str:
    parts = [str(i) for i in inputs] + [f"{k}={v!r}" for k, v in args.items()]
    return f"{op}({', '.join(parts)})"
