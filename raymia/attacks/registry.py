"""The attack registry: every membership inference attack raymia runs, in column order
(docs/ARCHITECTURE.md, "Registries").

An `Attack` declares its name, how it scores (from one chunk's logits, sharing the one forward
pass, or from the model itself), the options it reads (the fields of `AttackOptions`, built
from this registry by `raymia.trial.config.attack_options_model`), whether it needs reference
models, and any result column of its own. The trial's scoring, the objective columns a sweep
accepts, the analysis scripts' attack lists and the README's table all read the registry.

Convention: higher score = more likely a member, one float64 score per sample (see
:mod:`raymia.privacy.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from raymia.registry import Registry, Setting

if TYPE_CHECKING:
    from raymia.data.datasets import Split

__all__ = ["REGISTRY", "Attack", "ReferenceSet", "Target", "register", "unregister"]


@dataclass(frozen=True)
class Target:
    """What an attack scores: a model and a labelled set, with the trial's attack settings
    and, for attacks that need them, the reference models (never trained on the set)."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    options: Any
    seed: int
    batch_size: int = 1024
    reference_models: Sequence[nn.Module] = ()
    # The offline reference models with what each saw, and the online (IN/OUT) ones.
    offline: ReferenceSet | None = None
    online: ReferenceSet | None = None
    # Whether a mirror image keeps the label (the data set's `flip`): augmented queries.
    flip: bool = False


@dataclass(frozen=True)
class ReferenceSet:
    """Reference models and what each trained on, for the attacks that compare against them.

    `is_in` (K, N): model k trained on scored sample n (online models; None offline, where no
    model saw a scored sample). `population` holds samples the target never saw;
    `population_out` (K, M) marks the models that never trained, stopped or regularized on
    each, `population_trained` (K, M) those that trained on it (None: none did).
    """

    models: tuple[nn.Module, ...]
    population: Split
    population_out: np.ndarray
    population_trained: np.ndarray | None = None
    is_in: np.ndarray | None = None
    seed: int = 0


@dataclass(frozen=True)
class Attack:
    """One membership inference attack.

    Exactly one of `from_logits` (per-sample scores from one chunk of float64 logits and
    labels; these attacks share one forward pass) and `score` (scores from a `Target`).
    `reference_models` names the option that says how many reference models the attack needs
    (it runs only when that is above 0); `extra` adds `extra_columns` to the row from the
    model, its members, the attack's scores and the membership labels.
    """

    name: str
    summary: str
    citation: str
    rank: int
    from_logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    score: Callable[[Target], np.ndarray] | None = None
    options: Mapping[str, Setting] = field(default_factory=dict)
    reference_models: str | None = None
    extra_columns: tuple[str, ...] = ()
    extra: Callable[[nn.Module, Split, np.ndarray, np.ndarray], dict[str, Any]] | None = None
    # Which reference models: "offline" (its option counts the models the trial trains for
    # it), "reuse" (it runs on the offline models trained for others, the shadow and LiRA's;
    # its option switches it on) or "online" (models trained on halves of a population
    # holding the scored samples; its option may be another attack's).
    reference_kind: str = "offline"

    def __post_init__(self) -> None:
        if (self.from_logits is None) == (self.score is None):
            raise ValueError(f"attack {self.name!r}: give exactly one of from_logits and score")
        if self.reference_kind not in ("offline", "reuse", "online"):
            raise ValueError(
                f"attack {self.name!r}: unknown reference_kind {self.reference_kind!r}"
            )
        if (
            self.reference_models is not None
            and self.reference_models not in self.options
            and self.reference_kind != "online"
        ):
            raise ValueError(
                f"attack {self.name!r}: reference_models names {self.reference_models!r}, "
                "which is not one of its options"
            )

    @property
    def online(self) -> bool:
        """True when the attack needs online (IN and OUT) reference models."""
        return self.reference_kind == "online"

    @property
    def needs_reference_models(self) -> bool:
        """True when the attack scores with reference models (LiRA)."""
        return self.reference_models is not None

    def columns(self) -> list[str]:
        """Return the attack's headline result columns (advantage, AUC, its own extras)."""
        return [f"{self.name}_adv", f"{self.name}_auc", *self.extra_columns]


REGISTRY: Registry[Attack] = Registry("attack", lambda attack: attack.rank)


def register(attack: Attack) -> Attack:
    """Register an attack and return it; raises ValueError when its name or an option is
    taken."""
    taken = {option for other in REGISTRY.values() for option in other.options}
    if clash := taken & set(attack.options):
        raise ValueError(f"attack {attack.name!r}: options {sorted(clash)} are taken")
    count = attack.reference_models
    if count is not None and count not in taken | set(attack.options):
        raise ValueError(
            f"attack {attack.name!r}: reference_models names {count!r}, which is no "
            "registered attack's option"
        )
    return REGISTRY.add(attack.name, attack)


def unregister(name: str) -> Attack:
    """Remove a registered attack (a test's toy one); return it."""
    return REGISTRY.remove(name)
