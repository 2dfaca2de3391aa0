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


class Odd(nn.Module):
    """Grouped and dilated convolutions, then a layer of a single unit."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2)
        self.conv3 = nn.Conv2d(4, 1, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv3(x))), 1))


def build_odd(num_classes=3):
    return Odd(num_classes)


def build_mlp(num_classes=3, pixels=3 * 12 * 12):
    """No convolution at all."""
    return nn.Sequential(nn.Flatten(), nn.Linear(pixels, 8), nn.ReLU(), nn.Linear(8, num_classes))
