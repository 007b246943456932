"""Reference (shadow) models: trained like the target on the attacker's reference data.

The first doubles as the shadow model whose scores calibrate the attacks' thresholds; LiRA
uses all of them. None of them sees a member or non-member of the target.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import TrialConfig
from ..data import DatasetInfo, Split, check_reference_size
from ..train import train_model
from .registry import REGISTRY

__all__ = ["reference_model_count", "reference_rows", "train_reference_models"]

# Reference model i trains with seed_offset 100 + 2 i: clear of the target (0) and its
# distillation teacher (1), and the stride 2 keeps each model's own teacher (offset + 1) from
# sharing its seed with the next reference model.
_REFERENCE_SEED_OFFSET = 100
_REFERENCE_SEED_STRIDE = 2


def reference_model_count(options: Any) -> int:
    """Return how many reference models a trial trains: as many as the attacks that need them
    ask for (LiRA's lira_reference_models), and at least one for shadow calibration."""
    wanted = [getattr(options, a.reference_models) for a in REGISTRY.values() if a.reference_models]
    return max([*wanted, 1 if options.shadow_calibration else 0])


def reference_rows(
    n: int, n_trained: int, n_held_out: int, k: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Return, per reference model, its (trained, held-out, calibration) rows of range(n).

    Model i trains on n_trained rows and stops / regularizes on n_held_out others, drawn by
    (seed, i) alone; the remaining rows are its calibration non-members, which it never sees.
    The three are disjoint and sorted. Raises DataError (naming the sizes) when fewer than
    :data:`raymia.data.MIN_CALIBRATION` calibration rows would be left.
    """
    check_reference_size(n, n_trained, n_held_out)
    cut = n_trained + n_held_out
    out = []
    for i in range(k):
        order = np.random.default_rng([seed, _REFERENCE_SEED_OFFSET, i]).permutation(n)
        out.append(
            (np.sort(order[:n_trained]), np.sort(order[n_trained:cut]), np.sort(order[cut:]))
        )
    return out


def train_reference_models(
    config: TrialConfig,
    info: DatasetInfo,
    reference: Split,
    k: int,
    device: torch.device | None = None,
    *,
    n_trained: int,
    n_held_out: int,
) -> list[nn.Module]:
    """Train k reference (shadow) models for offline LiRA and return them in eval mode.

    Each model is trained like the target: by :func:`raymia.train.train_model` under the same
    config (same mechanisms and strengths) on exactly n_trained samples of the attacker's
    reference data (the target's member count), with its own held-out slice of n_held_out
    reference samples (the target's held-out count) for early stopping and adversarial
    regularization, both from :func:`reference_rows` with config.seed, and its own seed
    (seed_offset 100 + 2 i). None of these models sees a member or non-member, so all are OUT
    models for both; none sees its own calibration rows. Raises DataError when the reference
    split is too small.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if k == 0:
        return []
    models: list[nn.Module] = []
    rows = reference_rows(len(reference), n_trained, n_held_out, k, config.seed)
    for i, (trained, held_out, _calibration) in enumerate(rows):
        result = train_model(
            config,
            info,
            reference.take(trained),
            held_out=reference.take(held_out),
            device=device,
            seed_offset=_REFERENCE_SEED_OFFSET + _REFERENCE_SEED_STRIDE * i,
        )
        models.append(result.model.eval())
    return models
