# A ResNet basic block (conv-bn-relu-conv-bn + skip), as in torchvision's BasicBlock.
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
conv1 = nn.Conv2d(4, 4, kernel_size=3, padding=1, bias=False)
bn1 = nn.BatchNorm2d(4)
conv2 = nn.Conv2d(4, 4, kernel_size=3, padding=1, bias=False)
bn2 = nn.BatchNorm2d(4)

x = torch.randn(2, 4, 6, 6, requires_grad=True)
out = F.relu(bn1(conv1(x)))
out = bn2(conv2(out))
out = out + x  # the skip connection
out = F.relu(out)
loss = out.pow(2).mean()
loss.backward()
