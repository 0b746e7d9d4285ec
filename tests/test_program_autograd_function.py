"""A program's own torch.autograd.Function, as the tutorials and torch's docs write one: forward(ctx, ...) and
backward(ctx, grad_output) with save_for_backward, saved_tensors, ctx attributes and needs_input_grad. torch runs
it as a Function of the same name (grad_fn MyReLUBackward); the reference engine runs the same bodies in numpy; the
numeric engine's finite differences of the forward check the program's backward (a wrong one disagrees)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_program_pytorch import EXAMPLES, in_torch, same_as_torch, traced

from services.compiler import compile_spec
from services.errors import SpecError
from shared.spec import TraceSpec

ALL = ["torch", "reference", "numeric"]

DOCS = """
import torch
from torch.autograd import Function


class LinearFunction(Function):
    @staticmethod
    def forward(ctx, input, weight, bias=None):
        ctx.save_for_backward(input, weight, bias)
        output = input.mm(weight.t())
        if bias is not None:
            output += bias.unsqueeze(0).expand_as(output)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        input, weight, bias = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = grad_output.mm(weight)
        if ctx.needs_input_grad[1]:
            grad_weight = grad_output.t().mm(input)
        if bias is not None and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(0)
        return grad_input, grad_weight, grad_bias


class MulConstant(Function):
    @staticmethod
    def forward(ctx, tensor, constant):
        ctx.constant = constant
        return tensor * constant

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.constant, None


class Exp(Function):
    @staticmethod
    def forward(ctx, i):
        result = i.exp()
        ctx.save_for_backward(result)
        return result

    @staticmethod
    def backward(ctx, grad_output):
        result, = ctx.saved_tensors
        return grad_output * result


torch.manual_seed(0)
x = torch.randn(4, 3, requires_grad=True)
w = torch.randn(2, 3, requires_grad=True)
b = torch.randn(2, requires_grad=True)
y = LinearFunction.apply(x, w, b)
y2 = LinearFunction.apply(x, w)
z = MulConstant.apply(y, 0.5)
e = Exp.apply(z)
loss = e.sum() + y2.pow(2).sum()
loss.backward()
"""

LEGENDRE = """
import math
import torch


class LegendrePolynomial3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return 0.5 * (5 * input ** 3 - 3 * input)

    @staticmethod
    def backward(ctx, grad_output):
        input, = ctx.saved_tensors
        return grad_output * 1.5 * (5 * input ** 2 - 1)


x = torch.linspace(-math.pi, math.pi, 20)
y = torch.sin(x)
a = torch.full((), 0.0, requires_grad=True)
b = torch.full((), -1.0, requires_grad=True)
c = torch.full((), 0.0, requires_grad=True)
d = torch.full((), 0.3, requires_grad=True)
P3 = LegendrePolynomial3.apply
y_pred = a + b * P3(c + d * x)
loss = (y_pred - y).pow(2).sum()
loss.backward()
"""

GRL = """
import torch
from torch import nn


class GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.neg() * ctx.alpha, None


class DomainHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, f):
        return self.fc(GradReverse.apply(f, 0.5))


torch.manual_seed(0)
feat = nn.Linear(4, 3)
head = DomainHead()
x = torch.randn(5, 4)
f = feat(x)
loss = head(f).sum() + f.pow(2).sum()
loss.backward()
"""


def test_the_tutorials_relu_of_your_own_equals_torch(tmp_path: Path) -> None:
    program = (EXAMPLES / "custom_function.py").read_text()
    t = traced(program, engines=ALL)
    same_as_torch(t, in_torch(program, tmp_path), ["x", "w1", "w2", "h", "y_pred", "loss"])
    h = t.result.nodes["h"]
    assert h.grad_fn == "MyReLUBackward" and [n.grad_fn for n in h.next_functions] == ["MmBackward0"]
    assert t.result.comparison.verdict == "agree"
    assert any("the gradient through MyReLU is its backward's" in n for n in t.result.notes)


def test_torch_docs_functions_with_needs_input_grad_constants_and_saved_outputs(tmp_path: Path) -> None:
    """LinearFunction with and without its optional bias (backward returns an extra None, as torch allows),
    MulConstant's number kept on ctx, Exp saving its own output."""
    t = traced(DOCS, engines=ALL)
    same_as_torch(t, in_torch(DOCS, tmp_path), ["x", "w", "b", "y", "y2", "z", "e", "loss"])
    assert [t.result.nodes[k].grad_fn for k in ("y", "z", "e")] == ["LinearFunctionBackward", "MulConstantBackward",
                                                                      "ExpBackward"]
    assert t.result.comparison.verdict == "agree"


def test_a_wrong_backward_is_caught_by_finite_differences(tmp_path: Path) -> None:
    """The Legendre example fits as torch fits it; with its derivative's sign flipped, torch and the reference (which
    both run the program's backward) agree with each other, and finite differences of the forward do not."""
    good = traced(LEGENDRE, engines=ALL)
    same_as_torch(good, in_torch(LEGENDRE, tmp_path), ["a", "b", "c", "d", "y_pred", "loss"])
    assert good.result.comparison.verdict == "agree"
    bad = traced(LEGENDRE.replace("5 * input ** 2 - 1", "5 * input ** 2 + 1"), engines=ALL)
    pairs = {p.engines: p for p in bad.result.comparison.pairs}
    assert bad.result.comparison.verdict == "disagree"
    assert pairs["torch~reference"].ok and not pairs["torch~numeric"].ok
    assert set(pairs["torch~numeric"].failures) & {"grad:c", "grad:d"}


def test_a_gradient_reversal_layer_inside_a_module(tmp_path: Path) -> None:
    """DANN's gradient reversal (its backward is on purpose not its forward's derivative): torch's numbers; the
    numeric engine says so."""
    t = traced(GRL, engines=ALL)
    same_as_torch(t, in_torch(GRL, tmp_path), ["feat", "head", "x", "f", "loss"])
    pairs = {p.engines: p for p in t.result.comparison.pairs}
    assert pairs["torch~reference"].ok and not pairs["torch~numeric"].ok


HEAD = "import torch\nfrom torch.autograd import Function\n"
FN = "class F1(Function):\n    @staticmethod\n    def forward(ctx, x, k=2.0):\n{fwd}\n    @staticmethod\n" \
     "    def backward(ctx, g):\n{bwd}\n"


@pytest.mark.parametrize(("fwd", "bwd", "call", "needle"), [
    ("        return x * k", "        return g * 3.0, g", "F1.apply(x, 3.0)", "returned a gradient different than None at position 2"),
    ("        return x * k", "        return g.sum()", "F1.apply(x)", "returned an invalid gradient at index 0"),
    ("        return x * torch.rand(3)", "        return g", "F1.apply(x)", "draws random numbers"),
    ("        ctx.mark_dirty(x)\n        return x * k", "        return g", "F1.apply(x)", "ctx.mark_dirty() is not traced"),
    ("        return x * k, x", "        return g", "F1.apply(x)", "returns one tensor"),
    ("        return x * k", "        return ctx.saved_tensors", "F1.apply(x)", "incorrect number of gradients (expected 1, got 0)"),
    ("        s.add_(1.0)\n        return x * k", "        return g", "F1.apply(x)", "changes the program's tensor 's' in place"),
])
def test_what_torch_refuses_or_gradtrace_does_not_trace_is_refused(fwd: str, bwd: str, call: str, needle: str) -> None:
    program = HEAD + FN.format(fwd=fwd, bwd=bwd) + f"s = torch.ones(3)\nx = torch.ones(3, requires_grad=True)\ny = {call}\ny.sum().backward()\n"
    with pytest.raises(SpecError) as info:
        compile_spec(TraceSpec(program=program))
    assert needle in str(info.value), str(info.value)


def test_a_forward_without_ctx_and_setup_context_is_refused_with_the_way_out() -> None:
    program = (HEAD + "class F2(Function):\n    @staticmethod\n    def forward(x):\n        return x * 2\n"
               "    @staticmethod\n    def setup_context(ctx, inputs, output):\n        pass\n"
               "    @staticmethod\n    def backward(ctx, g):\n        return g * 2\n"
               "x = torch.ones(3, requires_grad=True)\nF2.apply(x).sum().backward()\n")
    with pytest.raises(SpecError, match="setup_context are not traced yet"):
        compile_spec(TraceSpec(program=program))


IN_THE_WILD = """
import torch
from torch.autograd.function import once_differentiable


class SurrGradSpike(torch.autograd.Function):
    scale = 10.0

    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        out = torch.zeros_like(input)
        out[input > 0] = 1.0
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        input, = ctx.saved_tensors
        grad = torch.zeros_like(grad_output) + grad_output.clone()
        return grad / (SurrGradSpike.scale * torch.abs(input) + 1.0) ** 2


class AddBias(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b):
        return (x + b).float()

    @staticmethod
    def backward(ctx, g):
        return g, g


class Flag(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        k = 2.0 if ctx.needs_input_grad[0] else 3.0
        ctx.k = k
        return x * k

    @staticmethod
    def backward(ctx, g):
        return g * ctx.k


torch.manual_seed(0)
x = torch.randn(4, 3, requires_grad=True)
b = torch.randn(3, requires_grad=True)
s = SurrGradSpike.apply(x)
y = AddBias.apply(x, b)
with torch.no_grad():
    f0 = Flag.apply(b)
f = Flag.apply(b) * f0
loss = (s * y).sum() + (y ** 2).sum() + f.sum()
loss.backward()
"""


def test_functions_as_found_in_the_wild(tmp_path: Path) -> None:
    """SpyTorch's surrogate spike (a class attribute, zeros_like and a masked write in the bodies,
    @once_differentiable), a bias gradient of the broadcast shape (summed to the input's, as torch does), a cast
    that changes nothing, needs_input_grad read under no_grad (true: it is the input's requires_grad)."""
    t = traced(IN_THE_WILD, engines=ALL)
    same_as_torch(t, in_torch(IN_THE_WILD, tmp_path), ["x", "b", "s", "y", "f0", "f", "loss"])
    pairs = {p.engines: p for p in t.result.comparison.pairs}
    assert pairs["torch~reference"].ok  # (the surrogate gradient is on purpose not the step's derivative)


def test_a_tensor_kept_on_ctx_and_changed_in_place_before_backward_is_refused() -> None:
    program = (HEAD + "class Keep(Function):\n    @staticmethod\n    def forward(ctx, x):\n        ctx.x = x\n"
               "        return x * x\n    @staticmethod\n    def backward(ctx, g):\n        return 2 * g * ctx.x\n"
               "w = torch.ones(4, requires_grad=True)\nh = w * 1.0\ny = Keep.apply(h)\nh.add_(1.0)\ny.sum().backward()\n")
    with pytest.raises(SpecError, match="after Keep.forward kept it on ctx"):
        compile_spec(TraceSpec(program=program))


def test_a_function_reading_a_tensor_that_requires_grad_says_no_gradient_flows_to_it(tmp_path: Path) -> None:
    program = (HEAD + "class Scale(Function):\n    @staticmethod\n    def forward(ctx, x):\n        return x * s\n"
               "    @staticmethod\n    def backward(ctx, g):\n        return g * s\n"
               "torch.manual_seed(0)\ns = torch.tensor(2.0, requires_grad=True)\nx = torch.randn(4, requires_grad=True)\n"
               "loss = Scale.apply(x).sum() + s\nloss.backward()\n")
    t = traced(program)
    same_as_torch(t, in_torch(program, tmp_path), ["s", "x", "loss"])
    assert any("reads 's', which requires grad, without taking it as an argument" in n for n in t.result.notes)


def test_reviewed_function_forms(tmp_path: Path) -> None:
    """x.requires_grad read in forward (the input's, as torch's), a ctx attribute holding a tuple of tensors, a forward
    that returns its input as it is (a view of it, in torch): torch's numbers."""
    program = (HEAD + "class F3(Function):\n    @staticmethod\n    def forward(ctx, x):\n"
               "        k = 2.0 if x.requires_grad else 3.0\n        ctx.parts = (x * k, x * 3.0)\n        ctx.k = k\n"
               "        return x * k\n    @staticmethod\n    def backward(ctx, g):\n        a, b = ctx.parts\n"
               "        return g * ctx.k + 0 * (a + b)\n\n\nclass Same(Function):\n    @staticmethod\n"
               "    def forward(ctx, x):\n        return x\n    @staticmethod\n    def backward(ctx, g):\n        return g * 3\n\n\n"
               "torch.manual_seed(0)\nx = torch.randn(3, requires_grad=True)\ny = F3.apply(x)\nz = Same.apply(x * 1.0)\n"
               "(y + z).sum().backward()\n")
    same_as_torch(traced(program), in_torch(program, tmp_path), ["x", "y", "z"])


def test_a_backward_reading_a_name_bound_again_before_backward_is_refused() -> None:
    program = (HEAD + "class Scale(Function):\n    @staticmethod\n    def forward(ctx, x):\n        return x * 2.0\n"
               "    @staticmethod\n    def backward(ctx, g):\n        return g * s * scale\n"
               "s = torch.ones(3)\nscale = 2.0\nx = torch.ones(3, requires_grad=True)\ny = Scale.apply(x)\n"
               "s = torch.full((3,), 5.0)\nscale = 3.0\ny.sum().backward()\n")
    with pytest.raises(SpecError, match="reads '(s|scale)', which the program binds again after Scale.apply"):
        compile_spec(TraceSpec(program=program))


def test_the_bodies_count_against_the_limits() -> None:
    """Five applies of an 8-op body on 100 elements: refused under limits the same code written inline exceeds."""
    from services.compiler.build import Limits

    program = (HEAD + "class Big(Function):\n    @staticmethod\n    def forward(ctx, x):\n        h = x\n"
               "        for i in range(4):\n            h = h * 1.01 + 0.5\n        return h\n    @staticmethod\n"
               "    def backward(ctx, g):\n        return g\nx = torch.randn(100, requires_grad=True)\ny = x\n"
               "for k in range(5):\n    y = Big.apply(y)\ny.sum().backward()\n")
    with pytest.raises(SpecError, match="more than 15 nodes"):
        compile_spec(TraceSpec(program=program), Limits(max_nodes=15))
    with pytest.raises(SpecError, match="more than 1500 elements"):
        compile_spec(TraceSpec(program=program), Limits(max_total_elements=1500))


def test_gradcheck_is_noted_not_run(tmp_path: Path) -> None:
    """The Extending PyTorch docs' `torch.autograd.gradcheck(Fn.apply, (x,))`: not run (the numeric engine is
    gradtrace's check), noted; the rest traces as torch runs it."""
    program = (HEAD + "class Square(Function):\n    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n"
               "        return x * x\n    @staticmethod\n    def backward(ctx, g):\n        x, = ctx.saved_tensors\n"
               "        return 2 * x * g\ntorch.manual_seed(0)\nx = torch.randn(4, dtype=torch.double, requires_grad=True)\n"
               "ok = torch.autograd.gradcheck(Square.apply, (x,), eps=1e-6, atol=1e-4)\ny = Square.apply(x)\n"
               "y.sum().backward()\n")
    t = traced(program, engines=ALL)
    same_as_torch(t, in_torch(program, tmp_path), ["x", "y"])
    assert any("gradcheck is not run" in n for n in t.result.notes) and t.result.comparison.verdict == "agree"
