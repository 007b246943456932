"""Which network a trial trains: the built-in ones, any torchvision classifier, or the user's.

The trial's `arch` setting names it:

- ``auto`` (default): the built-in network for the data (`raymia.models.networks`: the small CNN for
  grey images, the VGG-style one for colour), or either by name, ``small-cnn`` /
  ``vgg-style``;
- a torchvision classification architecture by name (``resnet18``, ``mobilenet_v3_small``,
  ...; `torchvision.models.list_models`), built without pretrained weights for the data's
  classes, its first convolution taking the data's channels and, for images of 32 pixels or
  less, a ResNet's stem made small (3x3 stride-1 first convolution, no max-pool: the usual
  CIFAR adaptation);
- ``package.module:factory``: a function the user writes, called as
  ``factory(channels=..., image_size=..., num_classes=..., dropout=..., norm=...)``, that
  returns an ``nn.Module`` mapping (N, channels, image_size, image_size) images to
  (N, num_classes) logits. The module is imported where each trial runs, so it must be
  importable there (installed, or on PYTHONPATH).

The trial's `norm` applies to torchvision networks as to the built-in ones: ``group`` (the
default) swaps every BatchNorm layer for GroupNorm, as Opacus' ``ModuleValidator.fix`` does,
``none`` for the identity, ``batch`` keeps them. A factory receives `norm` and builds what it
likes; DP-SGD refuses, in one line, any model that still holds BatchNorm. The dropout
mechanism puts a raymia dropout layer (seeded masks) before a torchvision network's last
linear layer. Every network's convolution and linear weights are drawn afresh from the
trial's seed (`raymia.models.networks.init_parameters`).
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

import torch
from torch import nn

from raymia.errors import ConfigError, quote

if TYPE_CHECKING:
    from raymia.data.datasets import DatasetInfo
    from raymia.trial.config import TrialConfig

__all__ = [
    "AUTO",
    "BUILT_IN",
    "arch_problem",
    "batch_norm_left",
    "build_network",
    "has_batch_norm",
    "holds_batch_norm",
]

AUTO = "auto"
#: The built-in networks by name (raymia.models.networks).
BUILT_IN = ("small-cnn", "vgg-style")
#: Images this small or smaller get a ResNet's small stem.
SMALL_IMAGES = 32


def _torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def _factory(arch: str):  # noqa: ANN202 - any callable
    """Return the callable `package.module:factory` names; ConfigError (one line) otherwise."""
    module_name, _, attribute = arch.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - any failure to import is the user's to fix
        raise ConfigError(
            f"arch = {quote(arch)}: cannot import {module_name!r} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); expected an importable "
            "package.module:factory"
        ) from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ConfigError(
            f"arch = {quote(arch)}: {module_name} has no function {attribute!r}; expected "
            "package.module:factory"
        )
    return factory


def _replace_norms(model: nn.Module, norm: str) -> nn.Module:
    """Return the model with its BatchNorm layers swapped as `norm` says (see the module)."""
    if norm == "batch":
        return model
    if norm == "group":
        from opacus.validators import ModuleValidator

        return ModuleValidator.fix(model)
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, nn.Identity())
        else:
            _replace_norms(child, norm)
    return model


def _first_conv_takes(model: nn.Module, channels: int) -> None:
    """Make the model's first Conv2d take `channels` input channels (a fresh layer)."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels != channels:
                    setattr(parent, name, _conv_like(child, in_channels=channels))
                return


def _conv_like(conv: nn.Conv2d, **changes: object) -> nn.Conv2d:
    settings = {
        "in_channels": conv.in_channels,
        "out_channels": conv.out_channels,
        "kernel_size": conv.kernel_size,
        "stride": conv.stride,
        "padding": conv.padding,
        "bias": conv.bias is not None,
    }
    settings.update(changes)
    return nn.Conv2d(**settings)  # type: ignore[arg-type]


def _small_stem(model: nn.Module) -> None:
    """A ResNet's stem for small images: a 3x3 stride-1 first convolution, no max-pool."""
    if isinstance(getattr(model, "conv1", None), nn.Conv2d) and hasattr(model, "maxpool"):
        model.conv1 = _conv_like(model.conv1, kernel_size=3, stride=1, padding=1)
        model.maxpool = nn.Identity()


def _dropout_before_last_linear(model: nn.Module, p: float) -> None:
    """Put a raymia Dropout (seeded masks) in front of the model's last Linear layer."""
    from raymia.models.networks import Dropout

    last = None
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                last = (parent, name, child)
    if last is not None and p > 0:
        parent, name, child = last
        setattr(parent, name, nn.Sequential(Dropout(p), child))


def _seeded_dropout(model: nn.Module) -> None:
    """Swap the network's own nn.Dropout layers for raymia's (the same rate), whose masks the
    trial's generator draws."""
    from raymia.models.networks import Dropout

    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p))


def _torchvision_network(arch: str, info: DatasetInfo, dropout: float, norm: str) -> nn.Module:
    import torchvision

    model = torchvision.models.get_model(arch, weights=None, num_classes=info.num_classes)
    _seeded_dropout(model)
    _first_conv_takes(model, info.channels)
    if info.image_size <= SMALL_IMAGES:
        _small_stem(model)
    _dropout_before_last_linear(model, dropout)
    return _replace_norms(model, norm)


def build_network(
    info: DatasetInfo, arch: str = AUTO, dropout: float = 0.0, norm: str = "group"
) -> nn.Module:
    """Return a fresh network of `arch` for the data `info` describes (see the module)."""
    from raymia.models.networks import SmallCNN, VGGStyle, build_model

    if arch == AUTO:
        return build_model(info, dropout=dropout, norm=norm)  # type: ignore[arg-type]
    if arch == "vgg-style":
        return VGGStyle(info.channels, info.num_classes, dropout=dropout, norm=norm)  # type: ignore[arg-type]
    if arch == "small-cnn":
        width = 16 if info.image_size <= 8 else 32
        return SmallCNN(
            info.channels,
            info.num_classes,
            dropout=dropout,
            norm=norm,  # type: ignore[arg-type]
            width=width,
            image_size=info.image_size,
        )
    if ":" in arch:
        model = _factory(arch)(
            channels=info.channels,
            image_size=info.image_size,
            num_classes=info.num_classes,
            dropout=dropout,
            norm=norm,
        )
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"arch = {quote(arch)}: the factory returned {type(model).__name__}, expected "
                "an nn.Module"
            )
        return model
    return _torchvision_network(arch, info, dropout, norm)


def has_batch_norm(model: nn.Module) -> bool:
    """Return whether the model holds a BatchNorm layer (which DP-SGD cannot clip per sample)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@functools.lru_cache(maxsize=8)
def _probe(arch: str, channels: int, image_size: int, num_classes: int, norm: str) -> nn.Module:
    """Return a network of `arch` built once per process and data shape, for the checks (never
    trained: a trial builds its own)."""
    from raymia.data.datasets import DatasetInfo

    info = DatasetInfo("check", channels, image_size, num_classes, 1, 1, 1, 1, flip=False)
    return build_network(info, arch, 0.0, norm)


@functools.lru_cache(maxsize=64)
def arch_problem(
    arch: str, channels: int, image_size: int, num_classes: int, norm: str
) -> str | None:
    """Return why `arch` cannot serve this data (one line), or None: an unknown name, a
    factory that does not import or returns no module, or a network whose forward pass on two
    images does not give (2, num_classes) logits. Builds the network once per process and
    data shape (cached)."""
    if arch == AUTO or arch in BUILT_IN:
        return None
    if ":" not in arch and arch not in _torchvision_names():
        return (
            f"arch = {quote(arch)}: expected auto, {', '.join(BUILT_IN)}, a torchvision "
            "classification model (e.g. resnet18) or package.module:factory"
        )
    images = torch.zeros(2, channels, image_size, image_size)
    try:
        model = _probe(arch, channels, image_size, num_classes, norm)
        with torch.no_grad():  # training mode too: some networks answer otherwise there
            outputs = {"training": model.train()(images), "evaluation": model.eval()(images)}
    except ConfigError as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - the user's network failed: say so in one line
        message = str(err).splitlines()[0] if str(err) else ""
        return (
            f"arch = {quote(arch)}: fails on {image_size}x{image_size} images with {channels} "
            f"channel(s) ({type(err).__name__}: {message[:120]})"
        )
    for mode, logits in outputs.items():
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, num_classes):
            what = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
            return (
                f"arch = {quote(arch)}: gives {what} for 2 images in {mode} mode; expected "
                f"(2, {num_classes}) logits"
            )
    return None


@functools.lru_cache(maxsize=64)
def holds_batch_norm(
    arch: str, channels: int, image_size: int, num_classes: int, norm: str
) -> bool:
    """Return whether the network `arch` builds for this data holds BatchNorm after `norm`
    (cached per process)."""
    if arch == AUTO or arch in BUILT_IN:
        return norm == "batch"
    return has_batch_norm(_probe(arch, channels, image_size, num_classes, norm))


def batch_norm_left(config: TrialConfig) -> bool:
    """Return whether the network of the trial `config` holds BatchNorm after its `norm`."""
    from raymia.data.datasets import dataset_info

    info = dataset_info(config.dataset)
    shape = (info.channels, info.image_size, info.num_classes)
    return holds_batch_norm(config.arch, *shape, config.norm)
