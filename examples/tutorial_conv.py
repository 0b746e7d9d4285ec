# The tutorial's conv example (../shared/seed), pasted exactly as printed there.
import torch
import torch.nn as nn

# 创建卷积层（无偏置，固定权重为2）
conv = nn.Conv2d(in_channels=1, out_channels=1, kernel_size=2, bias=False)
with torch.no_grad():
    conv.weight.data = torch.rand(1, 1, 2, 2)

# 输入数据（全1的3x3矩阵）
x = torch.rand(1, 1, 3, 3)

print("输入：\n", x)
print("权重：\n", conv.weight)

# 前向传播
output = conv(x)
print("输出：\n", output)
loss = output.sum()     # 损失函数为输出所有元素的和
print("损失：\n", loss)
# 反向传播
loss.backward()

# 打印梯度
print("权重梯度：\n", conv.weight.grad)
