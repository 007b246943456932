"""The regularization mechanisms, one small unit each, and their registry.

Every module of this package but `base` and `registry` declares mechanisms (classes
decorated with `registry.register`) and is imported here: adding a mechanism is adding one
module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import import_submodules
from .base import Batch, Mechanism, Setting, TrainContext
from .model import Normalization
from .registry import REGISTRY, register, unregister

if TYPE_CHECKING:
    from ..config import MechanismsBase

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
