"""Networks a user might bring, as `package.module:factory` (the tests' own, on their path)."""

from __future__ import annotations

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
