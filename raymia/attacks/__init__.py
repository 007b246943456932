"""Membership inference attacks from a model's outputs, one module each, and their registry.

Every module of this package but the plumbing (`registry`, `scoring`) declares an attack
(`registry.register`) and is imported here: adding an attack is adding one module. Higher
score = more likely a member; see :mod:`raymia.attacks.registry` for what an attack declares
and :func:`score_all` for running them. The reference models an attack asks for are trained
by the trial (`raymia.trial.reference_models`).
"""

from __future__ import annotations

from raymia.attacks.registry import REGISTRY, Attack, Target, register, unregister
from raymia.attacks.scoring import score_all, scores_from_logits
from raymia.registry import import_submodules

import_submodules(__name__, __path__, skip={"registry", "scoring"})

from raymia.attacks.lira import lira_offline_scores  # noqa: E402
from raymia.attacks.loss import yeom_score_threshold, yeom_threshold  # noqa: E402
from raymia.attacks.merlin import merlin_scores  # noqa: E402

__all__ = [
    "REGISTRY",
    "Attack",
    "Target",
    "lira_offline_scores",
    "merlin_scores",
    "register",
    "score_all",
    "scores_from_logits",
    "unregister",
    "yeom_score_threshold",
    "yeom_threshold",
]
