"""Networks a user might bring, as `package.module:factory` (the tests' own, on their path)."""

from __future__ import annotations

import torch
from torch import nn


def tiny_mlp(channels: int, image_size: int, num_classes: int, dropout: float, norm: str):
    """A two-layer perceptron over the flattened image: a factory raymia calls by name."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(channels * image_size**2, 64),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(64, num_classes),
    )


def with_batch_norm(channels: int, image_size: int, num_classes: int, dropout: float, norm: str):
    """A network that keeps BatchNorm whatever `norm` says (DP-SGD must refuse it)."""
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def wrong_output(channels: int, image_size: int, num_classes: int, dropout: float, norm: str):
    """Returns one logit too many."""
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size**2, num_classes + 1))


def not_a_module(channels: int, image_size: int, num_classes: int, dropout: float, norm: str):
    """Returns no network at all."""
    return "a string"


class _TwoHeads(nn.Module):
    """Logits in evaluation, (logits, auxiliary logits) in training, as GoogLeNet answers."""

    def __init__(self, channels: int, image_size: int, num_classes: int):
        super().__init__()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size**2, num_classes))

    def forward(self, x):
        logits = self.head(x)
        return (logits, logits) if self.training else logits


def tuple_in_training(channels: int, image_size: int, num_classes: int, dropout: float, norm: str):
    """A network whose training-mode output is a tuple."""
    return _TwoHeads(channels, image_size, num_classes)


class _Offset(nn.Module):
    """A linear head plus a learned offset drawn at construction from torch's generator (as a
    ViT's position embedding is): neither a convolution nor a linear layer."""

    def __init__(self, channels: int, image_size: int, num_classes: int):
        super().__init__()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size**2, num_classes))
        self.offset = nn.Parameter(torch.randn(num_classes))

    def forward(self, x):
        return self.head(x) + self.offset


def free_parameter(channels: int, image_size: int, num_classes: int, dropout: float, norm: str):
    """A network with a parameter drawn as it is built."""
    return _Offset(channels, image_size, num_classes)
