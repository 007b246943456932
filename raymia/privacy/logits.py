"""A model's outputs as the measurements read them: forward passes in eval mode, chunk by
chunk, and log-probabilities in float64 from a log-softmax that stays accurate where p_y
rounds to 1.

The model-level functions take a model and a labelled set (x: (N, C, H, W) float, y: (N,)
integer labels, tensors or arrays). The model runs in eval mode without gradients (each
submodule's previous mode is restored afterwards), on its own device; x and y move there
chunk by chunk, so the evaluated set never has to fit on the device at once.

Post-processing of the logits runs in float64 (on any device but MPS, which lacks it): members
of a memorizing model have losses near 1e-8, which float32 would round to exact ties. Even
float64's log_softmax rounds log p_y to exactly 0 beyond a logit margin of about 37, so the
scores come from a log-softmax that keeps those differences (:func:`stable_log_softmax`), and
confidence is the true-class margin phi = log p_y - log(1 - p_y) (:func:`margin`), which
never rounds to a tie.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

__all__ = [
    "LOG_FLOOR",
    "ArrayLike",
    "check_xy",
    "chunked",
    "device_dtype",
    "eval_mode",
    "margin",
    "per_sample_loss",
    "sample_loss",
    "stable_log_softmax",
    "true_class_margin",
    "wide",
]

ArrayLike = np.ndarray | torch.Tensor

#: Floor for every log taken of a probability: no probability representable in float64 has a
#: log below -745, so this only replaces -inf (from infinite logits) and keeps 0 * log 0 from
#: NaN.
LOG_FLOOR = -1e4


def check_xy(x: ArrayLike, y: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Return x and y as (still host-side) tensors, y flat, after checking they match."""
    xt = torch.as_tensor(x)
    yt = torch.as_tensor(y).reshape(-1)
    if xt.shape[0] != yt.shape[0]:
        raise ValueError(f"x has {xt.shape[0]} samples but y has {yt.shape[0]} labels")
    return xt, yt


def wide(t: torch.Tensor) -> torch.Tensor:
    """Return t in float64 where the device supports it (MPS does not: float32 there)."""
    return t.to(torch.float32 if t.device.type == "mps" else torch.float64)


#: Input values per pass on a CPU: batches that small keep each layer's activations in cache.
#: Measured on 2 cores with the networks' channels-last inference copies (forward passes,
#: best of three after a warm-up): the 28x28 network infers 4,300 images/s at 32-41 rows
#: against 2,740 at 167; the VGG-style one 860 at 16-32 against 720 at 128; the 8x8 one
#: 100,000 at 512-1,024 against 68,000 at 2,048. 2**15 values give 512, 41 and 32 rows (the
#: floor). DtC's input gradients ran as fast at 41 rows as at 167.
CPU_VALUES_PER_PASS = 2**15
CPU_ROWS = (32, 4096)
ACCELERATOR_ROWS = 4096


def rows_per_pass(device: torch.device, x: ArrayLike | None = None) -> int:
    """Return how many samples one inference pass takes on `device`: on a CPU
    :data:`CPU_VALUES_PER_PASS` input values' worth of `x`'s samples, within :data:`CPU_ROWS`
    (the smallest without `x`); elsewhere :data:`ACCELERATOR_ROWS`. Chunking bounds memory
    and speed; the results are the same up to float rounding."""
    if device.type != "cpu":
        return ACCELERATOR_ROWS
    low, high = CPU_ROWS
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) < 2:
        return low
    values = max(1, math.prod(int(n) for n in shape[1:]))
    return min(high, max(low, CPU_VALUES_PER_PASS // values))


def chunked(
    model: nn.Module,
    x: ArrayLike,
    y: ArrayLike,
    batch_size: int | None,
    fn: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
) -> dict[str, np.ndarray]:
    """Run the model over (x, y) in chunks and return fn(logits, y)'s columns as float64 arrays.

    fn maps one chunk's logits (float64 where supported) and labels to per-sample tensors;
    `batch_size` None takes :func:`rows_per_pass` for the model's device.
    """
    device, dtype = device_dtype(model)
    batch_size = rows_per_pass(device, x) if batch_size is None else batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    xt, yt = check_xy(x, y)
    n = xt.shape[0]
    # Each column is one preallocated array, filled chunk by chunk: a list of tiny per-chunk
    # tensors, pinned between the passes' large freed buffers, kept the heap from shrinking.
    out: dict[str, np.ndarray] = {}
    with eval_mode(model), torch.no_grad():
        for start in range(0, n, batch_size):
            xb = xt[start : start + batch_size].to(device=device, dtype=dtype)
            yb = yt[start : start + batch_size].to(device=device, dtype=torch.long)
            for key, value in fn(wide(model(xb)), yb).items():
                part = value.detach().cpu().to(torch.float64).numpy()
                if key not in out:
                    out[key] = np.empty((n, *part.shape[1:]), dtype=np.float64)
                out[key][start : start + part.shape[0]] = part
    if not out:  # empty input: learn the keys from a zero-sample call on the host
        keys = fn(torch.zeros(0, 1, dtype=torch.float64), torch.zeros(0, dtype=torch.long))
        return {key: np.zeros(0, dtype=np.float64) for key in keys}
    return out


def stable_log_softmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return log p_i and log(1 - p_i) for every class, both accurate where p_top rounds to 1.

    With s = sum_{i != top} exp(z_i - z_top), log p_i = (z_i - z_top) - log1p(s): unlike
    log_softmax, which rounds log(1 + s) to 0 once the margin passes about 37, log1p keeps s,
    so log p_top = -log1p(s) stays nonzero and ordered. Only the arg-max class can have
    p > 1/2; for the others log(1 - p_i) = log1p(-p_i) is accurate, for the arg-max
    1 - p_top = s / (1 + s) is taken from log s = logsumexp_{i != top}(z_i - z_top).
    """
    top = logits.argmax(dim=1, keepdim=True)
    shifted = logits - logits.gather(1, top)  # <= 0, 0 at the arg-max
    log_rest = torch.logsumexp(shifted.scatter(1, top, float("-inf")), dim=1, keepdim=True)
    log_norm = torch.log1p(log_rest.exp())  # log(1 + s); s <= C - 1, so exp cannot overflow
    log_p = shifted - log_norm
    log_1m_p = torch.log1p(-log_p.exp()).scatter(1, top, log_rest - log_norm)
    return log_p, log_1m_p


def sample_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return the per-sample cross-entropy, -log p_y, from the stable log-softmax."""
    log_p, _ = stable_log_softmax(logits)
    return -log_p.gather(1, y.view(-1, 1)).squeeze(1).clamp(min=LOG_FLOOR)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return phi = log p_y - log(sum_{i != y} p_i) = z_y - logsumexp_{i != y} z_i per sample.

    The softmax normalizer cancels, so phi is finite for finite logits even where p_y rounds
    to 1; p_y = sigmoid(phi). Differentiable (DtC ascends it).
    """
    others = logits.scatter(1, y.view(-1, 1), float("-inf"))
    return logits.gather(1, y.view(-1, 1)).squeeze(1) - torch.logsumexp(others, dim=1)


def per_sample_loss(
    model: nn.Module, x: ArrayLike, y: ArrayLike, batch_size: int | None = None
) -> np.ndarray:
    """Return the cross-entropy loss of each sample (float64, shape (N,), >= 0).

    Computed as -log p_y from a stable log-softmax: it stays > 0 and ordered far past the
    logit margin (about 37) where float64's log_softmax rounds it to exactly 0.
    """
    return chunked(model, x, y, batch_size, lambda z, t: {"loss": sample_loss(z, t)})["loss"]


def true_class_margin(
    model: nn.Module, x: ArrayLike, y: ArrayLike, batch_size: int | None = None
) -> np.ndarray:
    """Return the true-class margin phi = log p_y - log(sum_{i != y} p_i) per sample (float64).

    phi is the logit of the true-class confidence: LiRA's statistic, close to Gaussian across
    models (Carlini et al. 2022), and the confidence DtC measures; members have larger phi.
    """
    return chunked(model, x, y, batch_size, lambda z, t: {"phi": margin(z, t)})["phi"]


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
