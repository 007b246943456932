"""Small torch helpers the measurement modules share (private)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Return the device and floating dtype the model's inputs must have."""
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


@contextmanager
def eval_mode(model: nn.Module, freeze: bool = False) -> Iterator[None]:
    """Put every submodule in eval mode (and, with `freeze`, stop parameters requiring
    gradients), then restore each submodule's own mode and each parameter's own flag.

    Eval mode turns dropout off and makes batch norm use its running statistics, so a sample's
    result does not depend on which other samples share its batch. Freezing keeps autograd
    from recording parameter gradients where only input gradients are needed (DtC).
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()] if freeze else []
    model.eval()
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad in flags:
            p.requires_grad_(requires_grad)
