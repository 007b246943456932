"""The modified-entropy attack (Song & Mittal 2021): -Mentr per sample, <= 0.

Mentr(p, y) = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i): unlike entropy it uses the
label, so a confidently wrong prediction scores low, not high. 1 - p_y and log p_y come from
the logits directly, so confident predictions stay ordered.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raymia.attacks.registry import Attack, register
from raymia.privacy.logits import LOG_FLOOR, stable_log_softmax


def _scores(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    log_p, log_1m_p = (t.clamp(min=LOG_FLOOR) for t in stable_log_softmax(logits))
    p = log_p.exp()
    is_true = F.one_hot(y, logits.shape[1]).bool()
    log_p_true = log_p.gather(1, y.view(-1, 1)).squeeze(1)
    one_minus_p_true = log_1m_p.gather(1, y.view(-1, 1)).squeeze(1).exp()
    mentr = -one_minus_p_true * log_p_true - torch.where(is_true, 0.0, p * log_1m_p).sum(dim=1)
    return -mentr


register(
    Attack(
        name="modified_entropy",
        summary="-modified entropy (Mentr), which uses the label",
        citation="Song & Mittal 2021",
        rank=50,
        from_logits=_scores,
    )
)
