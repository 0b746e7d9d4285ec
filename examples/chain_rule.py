import torch

x = torch.tensor(2.0, requires_grad=True)
# build the graph
fx = x**2 + 3*x + 1
fx.retain_grad()  # fx is an intermediate: torch drops its grad unless retained (gradtrace keeps all)
gx = fx**3+4*fx+2
gx.retain_grad()
# backpropagate
gx.backward()

print("x:{}".format(x))
print("fx:{}".format(fx))
print("gx:{}".format(gx))
print("gx.grad:{}".format(gx.grad))
print("fx.grad:{}".format(fx.grad))
print("x.grad:{}".format(x.grad))
