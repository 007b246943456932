"""Canaries: the most vulnerable samples, audited apart (Aerni, Zhang & Tramer, CCS 2024).

An average over the evaluation set hides the samples a model must memorize to fit: a defence
can look private on average while leaking those almost entirely. With `attacks.canaries` = N
a trial draws N images, gives each a wrong label (uniform over the other classes), trains the
target on a random half of them beside its members, and reports every attack's leakage on
the N canaries alone, under the :data:`COLUMNS`: the strongest attack's TPR at 1% and 0.1%
FPR with exact Clopper-Pearson intervals, its AUC and advantage.

Where the canaries come from: the official test split. It is the only data of a trial that no
model trains, stops, regularizes or is scored on (the pool's four splits all are: members and
non-members scored, held-out used by early stopping and adversarial regularization, reference
by the shadow and reference models), so drawing canaries there changes none of the membership
splits, and the ordinary evaluation, shadow and reference models stay exactly as without
canaries. The canary images leave the test split: `test_acc` is measured on the rest (at least
:data:`MIN_TEST_LEFT` images), never on an image the target trained on under a wrong label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from raymia.data.datasets import Split, concat_splits
from raymia.errors import DataError
from raymia.privacy import metrics

__all__ = [
    "COLUMNS",
    "MAX_CANARIES",
    "MIN_TEST_LEFT",
    "OBJECTIVES",
    "Canaries",
    "canary_columns",
    "draw_canaries",
]

#: The most canaries a trial may ask for (`attacks.canaries`).
MAX_CANARIES = 10_000
#: The fewest test images left for `test_acc` once the canaries are drawn.
MIN_TEST_LEFT = 100
# The canaries' random stream is (seed, 31): clear of the splits' (seed) and the evaluation's.
_STREAM = 31
# The metrics of the chosen attack that become canary columns (metrics.summarize's names).
_METRICS = (
    "tpr_at_1pct",
    "tpr_at_1pct_lo",
    "tpr_at_1pct_hi",
    "tpr_at_0p1pct",
    "tpr_at_0p1pct_lo",
    "tpr_at_0p1pct_hi",
    "auc",
    "adv",
)
#: The row's canary columns, in order; all None when canaries are off.
COLUMNS = (
    "canary_members",
    "canary_non_members",
    "canary_attack",
    *(f"canary_{metric}" for metric in _METRICS),
)

#: The canary columns a sweep may optimize, each with the fewest canaries (`attacks.canaries`)
#: that measure it: a TPR at 1% (0.1%) FPR needs 100 (1,000) non-member canaries, and each
#: canary is a non-member with probability 1/2, so 260 (2,200) leave fewer in about 1 draw in
#: 10,000 (3.8 and 4.2 standard deviations).
OBJECTIVES = {
    "canary_tpr_at_1pct": 260,
    "canary_tpr_at_0p1pct": 2200,
    "canary_auc": 2,
    "canary_adv": 2,
    # the epsilon bound of one training run from the canaries (raymia.privacy.one_run_audit)
    "eps_lb_one_run": 2,
}


@dataclass(frozen=True)
class Canaries:
    """A trial's canaries, each with its wrong label, and the test split left for test_acc.

    `members` the target trains on; `non_members` no model ever sees. Their `indices` are
    positions in the test split.
    """

    members: Split
    non_members: Split
    test: Split

    def scored(self) -> Split:
        """Return the canaries the attacks score: the members, then the non-members."""
        return concat_splits(self.members, self.non_members)

    def to(self, device: torch.device) -> Canaries:
        """Return the canaries and the test split left with their tensors on `device`."""
        return Canaries(self.members.to(device), self.non_members.to(device), self.test.to(device))

    def is_member(self) -> np.ndarray:
        """Return the membership labels of :meth:`scored`'s samples."""
        return np.r_[np.ones(len(self.members), bool), np.zeros(len(self.non_members), bool)]


def draw_canaries(test: Split, n: int, num_classes: int, seed: int) -> Canaries | None:
    """Return `n` canaries drawn by `seed` from the test split, or None when `n` is 0.

    The images are n distinct test images; each gets a label drawn uniformly from the
    num_classes - 1 classes that are not its own; each is a member independently with
    probability 1/2 (drawn by the same seed), so the members number about half. Raises
    DataError, one line, when fewer than :data:`MIN_TEST_LEFT` test images would be left for
    test_acc, or ValueError for an odd or negative `n` (the config refuses those first).
    """
    if n == 0:
        return None
    if n < 0 or n % 2:
        raise ValueError(f"canaries must be even and >= 0, got {n}")
    most = len(test) - MIN_TEST_LEFT
    if n > most:
        raise DataError(
            f"attacks.canaries = {n}: canaries are drawn from the test split ({len(test)} "
            f"images), which keeps at least {MIN_TEST_LEFT} for test_acc; use at most "
            f"{max(0, most - most % 2)}"
        )
    rng = np.random.default_rng([seed, _STREAM])
    rows = rng.choice(len(test), size=n, replace=False)
    shift = torch.from_numpy(rng.integers(1, num_classes, size=n))
    wrong = (test.y[torch.from_numpy(rows)] + shift) % num_classes
    # each canary in the training data independently, with probability 1/2: what the one-run
    # audit's theorem needs (raymia.privacy.one_run_audit)
    member = rng.random(n) < 0.5
    kept = np.setdiff1d(np.arange(len(test)), rows)

    def canaries(mask: np.ndarray) -> Split:
        picked = rows[mask]
        return Split(test.x[torch.from_numpy(picked)], wrong[torch.from_numpy(mask)], picked)

    return Canaries(members=canaries(member), non_members=canaries(~member), test=test.take(kept))


def canary_columns(
    scores: Mapping[str, np.ndarray] | None, is_member: np.ndarray | None
) -> dict[str, Any]:
    """Return the :data:`COLUMNS` for every attack's canary scores (all None when `scores` is
    None: canaries off).

    Each attack is summarized by :func:`raymia.privacy.metrics.summarize` (TPR at the last ROC point
    whose FPR is strictly below 1% / 0.1%, exact Clopper-Pearson intervals over the member
    canaries; None when the non-member canaries are too few for that FPR). `canary_attack` is
    the attack with the highest TPR at 1% FPR, or, when there are fewer than 100 non-member
    canaries, the highest advantage; ties go to the first in registry order (`scores`' order).
    The other columns are that attack's; all None but the counts when the independent draws
    left every canary on one side (possible with a few canaries).
    """
    if scores is None or is_member is None:
        return dict.fromkeys(COLUMNS)
    counts = {"canary_members": int(is_member.sum()), "canary_non_members": int((~is_member).sum())}
    if not all(counts.values()):  # a few canaries, all drawn to one side: nothing to compare
        return {**dict.fromkeys(COLUMNS), **counts}
    summaries = {
        name: metrics.summarize(values, is_member, prefix="c", n_boot=0, n_permutations=0)
        for name, values in scores.items()
    }
    first = next(iter(summaries.values()))
    key = "c_tpr_at_1pct" if first["c_tpr_at_1pct"] is not None else "c_adv"
    best = max(summaries, key=lambda name: summaries[name][key])  # the first of equals
    chosen = summaries[best]
    return {
        **counts,
        "canary_attack": best,
        **{f"canary_{metric}": chosen[f"c_{metric}"] for metric in _METRICS},
    }
