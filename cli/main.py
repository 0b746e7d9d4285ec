"""`gradtrace run SPEC`: trace in this process and print values, grads and the verdict."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from cli.client import cancel, fetch, graph, status, submit
from cli.render import print_result, print_tensors
from cli.specfile import load_spec
from services.errors import SpecError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="See backpropagation: trace values and gradients.")
err = Console(stderr=True)

EXIT_AGREE, EXIT_DISAGREE, EXIT_BAD_SPEC, EXIT_NO_GRAPHVIZ = 0, 1, 2, 4


@app.callback()
def main() -> None:
    """gradtrace: every forward value and gradient of a computation, checked by independent engines."""


def bad_spec(message: str) -> typer.Exit:
    """Print the reason on stderr and exit 2."""
    err.print(f"[red]bad spec:[/] {message}", highlight=False)
    return typer.Exit(EXIT_BAD_SPEC)


def format_validation(e: ValidationError) -> str:
    """pydantic errors as 'field.path: message' lines."""
    return "\n".join(f"{'.'.join(str(p) for p in x['loc']) or '(spec)'}: {x['msg']}" for x in e.errors())


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A .json TraceSpec or a .py program.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the TraceResult as JSON.")] = False,
    dot: Annotated[Path | None, typer.Option(help="Write the backward graph as Graphviz DOT.")] = None,
    svg: Annotated[Path | None, typer.Option(help="Write the backward graph as SVG.")] = None,
    engines: Annotated[str | None, typer.Option(help="Comma-separated engines, e.g. torch,reference,numeric.")] = None,
    dtype: Annotated[str | None, typer.Option(help="The default dtype, float32 or float64 (the spec's \"dtype\").")] = None,
    show: Annotated[list[str] | None, typer.Option("--show", help="Print this node's value and grad in full (repeatable).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Print every tensor in full.")] = False,
    fail_on_nonfinite: Annotated[bool, typer.Option("--fail-on-nonfinite", help="Exit 1 when any value or grad is inf/NaN.")] = False,
) -> None:
    """Run a spec in one process (no Redis, no Celery). Exit 0 when engines agree, 1 when not (or, with
    --fail-on-nonfinite, when a value or grad is not finite), 2 on a bad spec, 4 when --svg needs Graphviz's dot."""
    from services.compiler import Limits
    from services.graph import GraphvizMissing, render
    from services.listing import graph_view
    from services.trace import trace
    from shared.settings import get_settings

    try:
        s = load_spec(spec)
        if engines:
            s = type(s).model_validate({**s.model_dump(exclude_unset=True), "engines": [e.strip() for e in engines.split(",") if e.strip()]})
        if dtype:
            s = type(s).model_validate({**s.model_dump(exclude_unset=True), "dtype": dtype})
    except ValidationError as e:
        raise bad_spec(format_validation(e)) from None
    except ValueError as e:  # not valid JSON
        raise bad_spec(str(e)) from None
    settings = get_settings()
    try:
        done = trace(s, Limits.from_settings(settings), settings.inline_limit)
    except SpecError as e:
        raise bad_spec(str(e)) from None
    except Exception as e:  # an engine failed on the data, as torch would (an index out of range): say why, as a job does
        err.print(f"[red]trace failed:[/] {type(e).__name__}: {e}", highlight=False)
        raise typer.Exit(EXIT_BAD_SPEC) from None
    result = done.result
    assert result is not None  # in one process the whole result is always built
    unknown = [n for n in show or [] if n not in result.nodes]
    if unknown:
        raise bad_spec(f"--show: no node named {', '.join(map(repr, unknown))} (nodes: {', '.join(list(result.nodes)[:20])}...)")
    if json_out:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        print_result(result)
        console = Console(width=None if Console().is_terminal else 160)
        for name in result.nodes if full else show or []:
            print_tensors(console, name, {f"{field} ({engine})": done.arrays.get(f"{engine}/{field}/{name}")
                                          for engine in result.engines[:1] for field in ("value", "grad")})
    if dot:
        dot.write_bytes(render(graph_view(done.table, None, done.fetch), "dot"))
    if svg:
        try:
            svg.write_bytes(render(graph_view(done.table, None, done.fetch), "svg"))
        except GraphvizMissing as e:
            err.print(f"[red]error:[/] --svg: {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_NO_GRAPHVIZ) from None
    bad = result.comparison.verdict == "disagree" or (fail_on_nonfinite and bool(result.anomalies))
    raise typer.Exit(EXIT_DISAGREE if bad else EXIT_AGREE)


app.command()(submit)
app.command()(status)
app.command()(fetch)
app.command()(cancel)
app.command()(graph)

if __name__ == "__main__":
    app()
