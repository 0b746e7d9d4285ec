"""A training script as tutorials write it, pasted whole: data, a model, an optimizer and 1,000 epochs. gradtrace
traces its first step (forward, backward: every value and gradient, before optimizer.step() changes anything); the
trace ends at `optimizer.step()` (what follows would see updated parameters), and a note in the result says so."""

import torch
import torch.nn as nn

torch.manual_seed(0)
X = torch.randn(64, 3)
y = X @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(64, 1)

model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loss_fn = nn.MSELoss()

losses = []
for epoch in range(1000):
    optimizer.zero_grad()
    pred = model(X)
    loss = loss_fn(pred, y)
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
    if epoch % 100 == 0:
        print(f"epoch {epoch}: loss {loss.item():.4f}")
