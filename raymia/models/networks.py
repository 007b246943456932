"""Architectures per data set family.

Grey 8x8 and 28x28 images get a small CNN; 32x32 colour images a VGG-style CNN. Both take a
dropout rate and a normalization choice (the trial's `norm` setting): GroupNorm by default, for
every trial alike, since DP-SGD's per-sample gradients rule out BatchNorm's batch statistics
and one architecture keeps DP and non-DP trials comparable; BatchNorm or none on request.

A model's randomness (initial weights, dropout masks) comes from generators the trial seeds,
never from torch's process-wide generator: trials that share a process, one after another on a
reused worker or side by side in threads, would otherwise draw from one stream and get results
that depend on what else ran.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from raymia.data.datasets import DatasetInfo

Norm = Literal["batch", "group", "none"]


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class Dropout(nn.Dropout):
    """nn.Dropout that draws its masks from `generator` when one is set (see the module doc).

    Set the generator with :func:`use_generator` once the model is on its device; without one
    it behaves exactly as nn.Dropout.
    """

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return x with each element zeroed with probability p and the rest scaled by 1/(1-p)
        in train mode; x itself in eval mode or at p = 0."""
        if not self.training or self.p == 0.0 or self.generator is None:
            return super().forward(x)
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        return x * keep / (1.0 - self.p)


def init_parameters(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Draw every Conv2d and Linear layer's parameters afresh from `generator` (a CPU one).

    The draws follow torch's default initialization (kaiming-uniform weights with a = sqrt(5),
    biases uniform in +-1/sqrt(fan_in)), so a model is initialized as torch would, from the
    trial's seed alone. Normalization layers start at ones and zeros either way.

    Returns:
        The same model, for chaining.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return model


def is_weight(parameter: torch.Tensor) -> bool:
    """Return whether a model parameter is a weight (a Conv2d or Linear weight: more than one
    dimension), which weight decay reaches, rather than a bias or normalization parameter."""
    return parameter.ndim > 1


def weighted_parameters(model: nn.Module) -> list[tuple[torch.Tensor, bool]]:
    """Return the model's parameters, each with :func:`is_weight`, for the optimizer."""
    return [(p, is_weight(p)) for p in model.parameters()]


def use_generator(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Make every raymia Dropout in the model draw its masks from `generator` (on the model's
    device). Returns the same model."""
    for module in model.modules():
        if isinstance(module, Dropout):
            module.generator = generator
    return model


def _conv(c_in: int, c_out: int, norm: Norm) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), _norm(norm, c_out), nn.ReLU()]


class SmallCNN(nn.Module):
    """Three conv layers and a two-layer head, for grey 8x8 or 28x28 images.

    `width` is the first layer's channel count (the others use twice that).
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        dropout: float = 0.0,
        norm: Norm = "batch",
        width: int = 32,
        image_size: int = 8,
    ):
        super().__init__()
        wide = 2 * width
        # 8x8 inputs are 4x4 after the max-pool already: an adaptive pool would be a costly no-op
        pool = nn.Identity() if image_size // 2 == 4 else nn.AdaptiveAvgPool2d(4)
        self.features = nn.Sequential(
            *_conv(channels, width, norm),
            *_conv(width, wide, norm),
            nn.MaxPool2d(2),
            *_conv(wide, wide, norm),
            pool,
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            Dropout(dropout),
            nn.Linear(wide * 16, 128),
            nn.ReLU(),
            Dropout(dropout),
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
        self.head = nn.Sequential(nn.Flatten(), Dropout(dropout), nn.Linear(256, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits (N, num_classes)."""
        return self.head(self.features(x))


def build_model(info: DatasetInfo, dropout: float = 0.0, norm: Norm = "group") -> nn.Module:
    """Return a model for the data set, initialized from torch's process-wide generator
    (a trial re-draws it from its own with :func:`init_parameters`)."""
    if info.channels == 3:
        return VGGStyle(info.channels, info.num_classes, dropout=dropout, norm=norm)
    # 8x8 digits need far fewer channels than 28x28 images; width drives every trial's cost.
    width = 16 if info.image_size <= 8 else 32
    return SmallCNN(
        info.channels,
        info.num_classes,
        dropout=dropout,
        norm=norm,
        width=width,
        image_size=info.image_size,
    )


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy laid out for fast inference, computing the same function:
    each Conv2d + BatchNorm2d pair folded into one Conv2d and, on a CPU, the convolution
    weights channels-last.

    The attacks and DtC run many forward and backward passes through a trained model: in
    eval mode BatchNorm is only an affine map, and on a CPU channels-last convolution,
    normalization and pooling kernels infer 1.3-1.5x faster than NCHW ones for raymia's
    networks (measured on 2 cores: the 28x28 network at 165 rows, the 8x8 at 2,048, the
    VGG-style at 128; logits equal to float rounding, about 1e-7). Inputs stay NCHW: each
    convolution takes the layout of its weights.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if not isinstance(module, nn.Sequential):
            continue
        layers = list(module)
        for i in range(len(layers) - 1):
            if isinstance(layers[i], nn.Conv2d) and isinstance(layers[i + 1], nn.BatchNorm2d):
                module[i] = fuse_conv_bn_eval(layers[i], layers[i + 1])
                module[i + 1] = nn.Identity()
    on_cpu = all(p.device.type == "cpu" for p in fused.parameters())
    if on_cpu and any(isinstance(m, nn.Conv2d) for m in fused.modules()):
        fused = fused.to(memory_format=torch.channels_last)
    return fused
