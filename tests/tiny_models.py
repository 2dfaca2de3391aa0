"""A tiny CNN for tests; also copied into test projects as a factory file."""
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, num_classes=3, width=4, channels=3, kernel=3):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, kernel, padding=kernel // 2)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel, padding=kernel // 2)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(width * 4, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x)) + x
        return self.fc(torch.flatten(self.pool(x), 1))


def build(num_classes=3, width=4, channels=3, kernel=3):
    return Tiny(num_classes, width, channels, kernel)
