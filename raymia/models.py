"""Architectures per data set family.

Grey 8x8 and 28x28 images get a small CNN; 32x32 colour images a VGG-style CNN. Both take a
dropout rate and a normalization choice: BatchNorm normally, GroupNorm for DP-SGD, whose
per-sample gradients BatchNorm's batch statistics would break.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .data import DatasetInfo

Norm = Literal["batch", "group", "none"]


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


def _conv(c_in: int, c_out: int, norm: Norm) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), _norm(norm, c_out), nn.ReLU()]


class SmallCNN(nn.Module):
    """Two conv blocks and a two-layer head, for grey 8x8 or 28x28 images."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.0, norm: Norm = "batch"):
        super().__init__()
        self.features = nn.Sequential(
            *_conv(channels, 32, norm),
            *_conv(32, 64, norm),
            nn.MaxPool2d(2),
            *_conv(64, 64, norm),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(64 * 16, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits (N, num_classes)."""
        return self.head(self.features(x))


class VGGStyle(nn.Module):
    """Three VGG blocks (64-128-256) and a linear head, for 32x32 colour images."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.0, norm: Norm = "batch"):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = channels
        for width in (64, 128, 256):
            layers += _conv(c_in, width, norm) + _conv(width, width, norm) + [nn.MaxPool2d(2)]
            c_in = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(256, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits (N, num_classes)."""
        return self.head(self.features(x))


def build_model(info: DatasetInfo, dropout: float = 0.0, norm: Norm = "batch") -> nn.Module:
    """Return a freshly initialized model for the data set (seed torch before calling)."""
    cls = VGGStyle if info.channels == 3 else SmallCNN
    return cls(info.channels, info.num_classes, dropout=dropout, norm=norm)
