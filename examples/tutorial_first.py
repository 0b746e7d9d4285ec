# The tutorial's first example, pasted exactly as printed there: x.grad is 7.
import torch

x = torch.tensor(2.0, requires_grad=True)
y = x ** 2 + 3*x  # 构建计算图
y.backward()       # 自动反向传播
print(x.grad)      # 输出梯度值 7.0
