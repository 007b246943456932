"""Model- and optimizer-level mechanisms: dropout and weight decay."""

from __future__ import annotations

from typing import Any

from .base import Mechanism


class Dropout(Mechanism):
    """Dropout with probability `strength` in the model's head (active in train mode only)."""

    name = "dropout"
    hooks = frozenset({"model"})

    def model_options(self) -> dict[str, Any]:
        return {"dropout": float(self.strength)}


class WeightDecay(Mechanism):
    """Weight decay `strength` (decoupled, AdamW-style, under Adam; L2 under SGD)."""

    name = "weight_decay"
    hooks = frozenset({"optimizer"})

    def optimizer_options(self) -> dict[str, Any]:
        return {"weight_decay": float(self.strength)}
