"""The regularization mechanisms, one small unit each, and their registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Batch, Mechanism, TrainContext
from .inputs import Augment, Cutout, InputNoise, Mixup
from .model import Dropout, Normalization, WeightDecay
from .outputs import ConfidencePenalty, Distillation, DisturbLabel, LabelSmoothing
from .training import DPSGD, AdversarialRegularization, EarlyStopping

if TYPE_CHECKING:
    from ..config import Mechanisms

REGISTRY: dict[str, type[Mechanism]] = {
    cls.name: cls
    for cls in (
        Augment,
        InputNoise,
        Cutout,
        Mixup,
        LabelSmoothing,
        ConfidencePenalty,
        DisturbLabel,
        Distillation,
        Dropout,
        WeightDecay,
        EarlyStopping,
        AdversarialRegularization,
        DPSGD,
    )
}


def build_mechanisms(settings: Mechanisms, context: TrainContext) -> list[Mechanism]:
    """Return the mechanisms `settings` turns on, bound to the training context, after the
    always-on `Normalization` unit (the trial's `norm` setting, not a mechanism)."""
    active = [REGISTRY[name](strength, context) for name, strength in settings.active().items()]
    return [Normalization(0, context), *active]


__all__ = ["REGISTRY", "Batch", "Mechanism", "TrainContext", "build_mechanisms"]
