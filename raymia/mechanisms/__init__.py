"""The regularization mechanisms, one small unit each, and their registry.

Every module of this package but `base` and `registry` declares mechanisms (classes
decorated with `registry.register`) and is imported here: adding a mechanism is adding one
module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raymia.mechanisms.base import Batch, Mechanism, Setting, TrainContext
from raymia.mechanisms.model import Normalization
from raymia.mechanisms.registry import REGISTRY, register, unregister
from raymia.registry import import_submodules

if TYPE_CHECKING:
    from raymia.trial.config import MechanismsBase

import_submodules(__name__, __path__, skip={"base", "registry"})


def build_mechanisms(settings: MechanismsBase, context: TrainContext) -> list[Mechanism]:
    """Return the mechanisms `settings` turns on, bound to the training context, after the
    always-on `Normalization` unit (the trial's `norm` setting, not a mechanism)."""
    active = [REGISTRY[name](strength, context) for name, strength in settings.active().items()]
    return [Normalization(0, context), *active]


__all__ = [
    "REGISTRY",
    "Batch",
    "Mechanism",
    "Setting",
    "TrainContext",
    "build_mechanisms",
    "register",
    "unregister",
]
