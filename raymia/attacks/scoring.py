"""Run the registered attacks on a model: one forward pass for every attack that scores from
the logits, then the attacks that need more (noisy copies, reference models)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from raymia.attacks.registry import REGISTRY, Attack, ReferenceSet, Target
from raymia.costs import component
from raymia.privacy.logits import ArrayLike, chunked, device_dtype, rows_per_pass

__all__ = ["score_all", "scores_from_logits"]


def _runs(
    attack: Attack,
    options: Any,
    reference_models: Sequence[nn.Module] | None,
    online: ReferenceSet | None = None,
) -> bool:
    """True when the attack runs: always, or with reference models when they are given and
    its option asks for some (online attacks: online reference models)."""
    if not attack.needs_reference_models:
        return True
    if attack.online:
        given = online is not None
    elif attack.reference_kind == "reuse":
        given = bool(reference_models)
    else:
        given = reference_models is not None
    return given and getattr(options, str(attack.reference_models)) > 0


def scores_from_logits(logits: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Return every logit-based attack's per-sample scores for one chunk of logits."""
    return {a.name: a.from_logits(logits, y) for a in REGISTRY.values() if a.from_logits}


def score_all(
    model: nn.Module,
    x: ArrayLike,
    y: ArrayLike,
    options: Any,
    seed: int,
    batch_size: int | None = None,
    reference_models: Sequence[nn.Module] | None = None,
    *,
    offline: ReferenceSet | None = None,
    online: ReferenceSet | None = None,
    flip: bool = False,
) -> dict[str, np.ndarray]:
    """Return each attack's scores on (x, y), keyed by name in registry order.

    Every attack runs that does not need reference models; one that does runs when
    `reference_models` are given and its option asks for some (LiRA: lira_reference_models
    > 0). `offline` carries those models with the reference data they saw (RMIA needs it),
    `online` the online reference models (the online attacks run with them); `flip` says
    whether mirror images keep their class (augmented queries). `options` are the trial's
    `AttackOptions`; `seed` seeds any randomness (Merlin's noise). Each value is a float64
    array of shape (N,).
    """
    if batch_size is None:
        batch_size = rows_per_pass(device_dtype(model)[0], x)
    if reference_models is None and offline is not None:
        reference_models = offline.models
    chosen = [a for a in REGISTRY.values() if _runs(a, options, reference_models, online)]
    from_logits = [a for a in chosen if a.from_logits is not None]

    def chunk_scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {a.name: a.from_logits(logits, labels) for a in from_logits}  # type: ignore[misc]

    found = {}
    if from_logits:
        with component("logit attacks"):  # one forward pass shared by all of them
            found = chunked(model, x, y, batch_size, chunk_scores)
    target = Target(
        model,
        torch.as_tensor(x),
        torch.as_tensor(y),
        options,
        seed,
        batch_size,
        tuple(reference_models or ()),
        offline=offline,
        online=online,
        flip=flip,
    )
    scores = {}
    for a in chosen:
        if a.from_logits:
            scores[a.name] = found[a.name]
        else:
            with component(a.name):
                scores[a.name] = a.score(target)  # type: ignore[misc]
    return scores
