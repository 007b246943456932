"""Membership metrics for a score vector: higher score means "more likely a member"."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def advantage(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Return the membership advantage: max over thresholds of TPR - FPR (in [0, 1])."""
    fpr, tpr, _ = roc_curve(np.asarray(is_member, bool), np.asarray(scores, float))
    return float(max(0.0, np.max(tpr - fpr)))


def auc(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Return the area under the ROC curve of the scores (0.5 = no signal)."""
    return float(roc_auc_score(np.asarray(is_member, bool), np.asarray(scores, float)))
