"""The loss-threshold attack (Yeom et al. 2018): score = -cross-entropy, since members were
fit and their loss is lower. Its own column, ``loss_yeom_adv``, applies the attacker's
threshold of Yeom et al.: the mean training loss."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from raymia.attacks.registry import Attack, register
from raymia.privacy.logits import ArrayLike, per_sample_loss, sample_loss
from raymia.privacy.metrics import advantage_at_threshold

if TYPE_CHECKING:
    from raymia.data.datasets import Split

__all__ = ["yeom_score_threshold", "yeom_threshold"]


def yeom_threshold(train_losses: ArrayLike) -> float:
    """Return the loss threshold of Yeom et al.: the mean training loss the attacker knows.

    The attack predicts member when loss <= threshold; on scores (-loss) that is score >=
    :func:`yeom_score_threshold`.
    """
    losses = np.asarray(train_losses, dtype=np.float64)
    if losses.size == 0:
        raise ValueError("yeom_threshold needs at least one training loss")
    return float(losses.mean())


def yeom_score_threshold(train_losses: ArrayLike) -> float:
    """Return -yeom_threshold(train_losses): the score threshold for
    :func:`raymia.privacy.metrics.advantage_at_threshold` on the loss attack's scores."""
    return -yeom_threshold(train_losses)


def _scores(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -sample_loss(logits, y)


def _yeom(model: nn.Module, members: Split, scores: np.ndarray, is_member: np.ndarray) -> dict:
    """Return ``loss_yeom_adv``: TPR - FPR at the mean training loss of the members."""
    threshold = yeom_score_threshold(per_sample_loss(model, members.x, members.y))
    return {"loss_yeom_adv": advantage_at_threshold(scores, is_member, threshold)}


register(
    Attack(
        name="loss",
        summary="-cross-entropy of the true label",
        citation="Yeom et al. 2018",
        rank=10,
        from_logits=_scores,
        extra_columns=("loss_yeom_adv",),
        extra=_yeom,
    )
)
