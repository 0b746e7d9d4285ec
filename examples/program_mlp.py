import torch
import torch.nn.functional as F

x = torch.randn(4, 3)
w1 = torch.randn(5, 3, requires_grad=True)
b1 = torch.zeros(5, requires_grad=True)
h = F.gelu(F.linear(x, w1, b1))
w2 = torch.randn(2, 5, requires_grad=True)
logits = torch.matmul(h, w2.transpose(0, 1))
loss = logits.softmax(dim=1).max(dim=1).values.mean()
loss.backward()
