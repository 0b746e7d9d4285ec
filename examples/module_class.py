"""A model as the PyTorch tutorials write one: a class Net(nn.Module) with __init__ and forward. gradtrace inlines
forward where model(images) calls it; parameters are named model.conv1.weight, ... and drawn as torch draws them."""

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(42)
device = torch.device("cpu")


class ConvNet(nn.Module):
    """The PyTorch tutorial's CNN, smaller."""

    def __init__(self, num_classes: int = 4) -> None:
        super(ConvNet, self).__init__()
        self.conv1 = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.dropout = nn.Dropout(0.25)
        self.fc = nn.Linear(4 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.dropout(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


model = ConvNet().to(device)
model.eval()
criterion = nn.CrossEntropyLoss()
images = torch.randn(2, 1, 8, 8)
labels = torch.tensor([1, 3])
outputs = model(images)
loss = criterion(outputs, labels)
loss.backward()
