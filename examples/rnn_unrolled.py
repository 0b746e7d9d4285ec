# A plain RNN over 4 time steps: the loop is unrolled, so every step's hidden state is a node
# (h@1, h@2, h@3, then h) and its gradient shows how the loss reaches back through time.
import torch

torch.manual_seed(0)
x = torch.randn(4, 3)  # 4 time steps, 3 features each
W_xh = torch.randn(3, 5, requires_grad=True)
W_hh = torch.randn(5, 5, requires_grad=True)
h = torch.zeros(5)
for t in range(4):
    h = torch.tanh(x[t] @ W_xh + h @ W_hh)
loss = h.sum()
loss.backward()
