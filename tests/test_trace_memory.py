"""What a trace holds while its engines run: not the spec it was compiled from (~0.5 GB at 1M nodes)."""

from __future__ import annotations

import weakref

from services.store import Delivery
from services.trace import trace
from shared.spec import TraceSpec
from worker.tasks import _spec

PROGRAM = "x = torch.tensor(2.0, requires_grad=True)\nfx = x**2 + 3*x + 1\ngx = fx**3 + 4*fx + 2\ngx.backward()"


def test_the_spec_is_let_go_once_compiled() -> None:
    refs: list[weakref.ref[TraceSpec]] = []

    def spec() -> TraceSpec:
        s = TraceSpec.model_validate({"program": PROGRAM})
        refs.append(weakref.ref(s))
        return s

    alive: list[bool] = []
    done = trace(spec(), progress=lambda step, frac: alive.append(refs[0]() is not None))
    assert alive and not any(alive)  # gone before the first engine ran
    assert done.result is not None and done.result.nodes["x"].grad.data == 2569.0


def test_the_worker_parses_the_spec_and_drops_its_json() -> None:
    delivery = Delivery("running", 1, spec_json=TraceSpec.model_validate({"program": PROGRAM}).model_dump_json())
    spec = _spec(delivery)
    assert spec.program == PROGRAM and delivery.spec_json == ""
