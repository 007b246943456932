"""The entropy attack: minus the entropy of the prediction (in [-log C, 0]; a confident
prediction scores high), from stable log-probabilities, so confident predictions stay
ordered."""

from __future__ import annotations

import torch

from raymia.attacks.registry import Attack, register
from raymia.privacy.logits import LOG_FLOOR, stable_log_softmax


def _scores(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    log_p = stable_log_softmax(logits)[0].clamp(min=LOG_FLOOR)
    return (log_p.exp() * log_p).sum(dim=1)


register(
    Attack(
        name="entropy",
        summary="-entropy of the prediction",
        citation="Song & Mittal 2021",
        rank=40,
        from_logits=_scores,
    )
)
