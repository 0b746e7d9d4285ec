# PyTorch's tutorial "Learning PyTorch with Examples": a ReLU of your own, as a torch.autograd.Function.
# gradtrace runs your backward in torch and in its numpy engine; add the numeric engine to check it against finite
# differences of your forward (`gradtrace run examples/custom_function.py --engines torch,reference,numeric`).
import torch


class MyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return input.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        input, = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[input < 0] = 0
        return grad_input


torch.manual_seed(0)
x = torch.randn(8, 4)
y = torch.randn(8, 2)
w1 = torch.randn(4, 6, requires_grad=True)
w2 = torch.randn(6, 2, requires_grad=True)
relu = MyReLU.apply
h = relu(x.mm(w1))
y_pred = h.mm(w2)
loss = (y_pred - y).pow(2).sum()
loss.backward()
