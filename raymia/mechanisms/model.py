"""Model- and optimizer-level mechanisms: dropout and weight decay, and the trial's
normalization layers (not a mechanism: a model option every trial feeds, see `Normalization`)."""

from __future__ import annotations

from typing import Any

from raymia.mechanisms.base import Mechanism, Setting
from raymia.mechanisms.registry import register


@register
class Dropout(Mechanism):
    """Dropout with probability `strength` in the model's head (active in train mode only)."""

    name = "dropout"
    level = "model"
    setting = Setting(float, "dropout probability", le=0.9)
    notes = "in the model's head"
    # its masks come from each model's own generator inside the forward pass
    ensemble = False
    hooks = frozenset({"model"})

    def model_options(self) -> dict[str, Any]:
        return {"dropout": float(self.strength)}


@register
class WeightDecay(Mechanism):
    """An L2 penalty `strength` / 2 * ||w||^2 on the weights of every Conv2d and Linear layer
    (not biases or normalization parameters), for Adam and SGD alike.

    The optimizer adds the penalty's gradient, strength * w, to each weight's gradient before
    its step (`raymia.trial.train._optimizer`): the same as adding the penalty to the loss, and it
    also holds under DP-SGD, where Opacus rebuilds the gradient from per-sample gradients of
    the loss alone (a penalty inside the loss would be silently dropped there).
    """

    name = "weight_decay"
    level = "optimizer"
    setting = Setting(float, "L2 penalty lambda (lambda/2 ‖w‖²)", le=1.0)
    notes = (
        "the study's L2 penalty on conv and linear weights (not biases or norm parameters), "
        "Adam or SGD"
    )
    hooks = frozenset({"optimizer"})

    def optimizer_options(self) -> dict[str, Any]:
        return {"weight_decay": float(self.strength)}


class Normalization(Mechanism):
    """Not a regularizer: feeds the trial's `arch` and `norm` (batch | group | none) settings
    to `raymia.models.architectures.build_network`. `build_mechanisms` adds it to every trial,
    teachers included."""

    name = "norm"
    hooks = frozenset({"model"})

    def model_options(self) -> dict[str, Any]:
        return {"arch": self.context.config.arch, "norm": self.context.config.norm}
