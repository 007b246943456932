"""Output-level mechanisms: label smoothing, confidence penalty, DisturbLabel, distillation.

Target transforms run in `order`: distillation first (50), so that under distillation every
other target transform acts on what the student is actually trained to fit, the teacher's soft
targets; then DisturbLabel (55), label smoothing (60) and, last, mixup (90, inputs.py). Run
before distillation, a transform's targets would be overwritten by the teacher's and the
mechanism would be silently off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raymia.mechanisms.base import Batch, Mechanism, Setting
from raymia.mechanisms.registry import register


@register
class LabelSmoothing(Mechanism):
    """Mix the targets with the uniform distribution: (1 - alpha) * t + alpha / C."""

    name = "label_smoothing"
    level = "output"
    setting = Setting(float, "label smoothing alpha", lt=1.0)
    hooks = frozenset({"targets"})
    order = 60

    def transform(self, batch: Batch) -> Batch:
        classes = batch.targets.shape[1]
        targets = (1 - self.strength) * batch.targets + self.strength / classes
        return batch.with_(targets=targets)


@register
class ConfidencePenalty(Mechanism):
    """Subtract beta times the predictive entropy from the loss (Pereyra et al. 2017)."""

    name = "confidence_penalty"
    level = "output"
    setting = Setting(float, "entropy penalty beta", le=10.0)
    notes = "minus beta x entropy"
    hooks = frozenset({"loss"})

    def loss_term(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1)
        entropy = -(log_p.exp() * log_p).sum(dim=1).mean()
        return -self.strength * entropy


@register
class DisturbLabel(Mechanism):
    """With probability `strength`, replace a sample's target by a uniformly drawn class
    (Xie et al. 2016).

    DisturbLabel disturbs the supervision the network fits. Under distillation that
    supervision is the teacher's soft targets (the student never sees the hard labels;
    Hinton et al. 2015, Shejwalkar & Houmansadr 2021), so there a disturbed sample's teacher
    target is replaced by a random class. Runs after distillation and before label smoothing
    and mixup, which then act on the disturbed targets.
    """

    name = "disturb_label"
    level = "output"
    setting = Setting(float, "DisturbLabel alpha", lt=1.0)
    notes = (
        "under distillation it disturbs the teacher's soft targets, the student's only supervision"
    )
    hooks = frozenset({"targets"})
    order = 55

    def transform(self, batch: Batch) -> Batch:
        n, classes = batch.targets.shape
        disturbed = self.rand(n) < self.strength
        random_targets = F.one_hot(self.randint(classes, n), classes).to(batch.targets.dtype)
        targets = torch.where(disturbed[:, None], random_targets, batch.targets)
        return batch.with_(targets=targets)


@register
class Distillation(Mechanism):
    """Train on a teacher's soft targets at temperature `strength` (Hinton et al. 2015).

    The teacher is a plain model trained first on the same members; the student fits
    softmax(teacher / T) with its own logits divided by T during training. It runs first among
    the target transforms: the others (DisturbLabel, label smoothing, mixup) then act on the
    teacher's targets rather than being overwritten by them.
    """

    name = "distillation"
    level = "output"
    setting = Setting(float, "distillation temperature", le=100.0)
    notes = "0 (off) or >= 1; teacher trained first on the same members"
    dp_clash = "the teacher is trained without DP on the same members"
    hooks = frozenset({"prepare", "targets"})
    order = 50

    def __init__(self, strength, context):
        super().__init__(strength, context)
        self.train_temperature = float(strength)
        self.teacher: torch.nn.Module | None = None

    @classmethod
    def strength_problem(cls, strength: float) -> str | None:
        if strength < 1:
            return f"mechanisms.distillation = {strength}: expected 0 (off) or a temperature >= 1"
        return None

    def prepare(self) -> None:
        if self.context.train_plain is None:
            raise ValueError("distillation trains its teacher with context.train_plain; none set")
        self.teacher = self.context.train_plain()
        self.teacher.eval()

    def transform(self, batch: Batch) -> Batch:
        if self.teacher is None:
            raise ValueError("distillation's transform runs after prepare() trained the teacher")
        with torch.no_grad():
            soft = F.softmax(self.teacher(batch.x) / self.strength, dim=1)
        return batch.with_(targets=soft)
