"""The confidence attack: the true-class probability p_y, reported as its logit
phi = log p_y - log(1 - p_y), which orders samples exactly as p_y does (every ROC metric is
that of p_y) but never rounds to 1 for confident samples, which would tie them."""

from __future__ import annotations

from raymia.attacks.registry import Attack, register
from raymia.privacy.logits import margin

register(
    Attack(
        name="confidence",
        summary="true-class confidence, as its logit log p_y - log(1 - p_y)",
        citation="Song & Mittal 2021",
        rank=30,
        from_logits=margin,
    )
)
