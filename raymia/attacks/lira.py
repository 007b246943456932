"""Offline LiRA (Carlini et al. 2022): the target's true-class margin against a Gaussian fit
of the margins K reference models (never trained on the sample) give it."""

from __future__ import annotations

import numpy as np
import torch

from ..outputs import ArrayLike, true_class_margin
from ..registry import Setting
from .registry import Attack, Target, register

__all__ = ["LIRA_PER_SAMPLE_STD_MIN_K", "lira_offline_scores"]

# Below this many reference models a per-sample standard deviation is too noisy to estimate;
# Carlini et al. (2022) then fix one variance for all samples.
LIRA_PER_SAMPLE_STD_MIN_K = 16

# A zero spread (identical reference outputs) would divide by zero in the Gaussian fit.
_MIN_STD = 1e-12


def lira_offline_scores(target_phi: ArrayLike, reference_phi: ArrayLike) -> np.ndarray:
    """Return offline LiRA's score per sample: log Phi((phi - mu_out) / sigma_out).

    ``target_phi`` (N,) is the target model's :func:`raymia.outputs.true_class_margin`,
    ``reference_phi`` (K, N) that of K reference models never trained on these samples (OUT
    models). mu_out is each sample's mean over the K models. sigma_out is per sample (ddof 1)
    when K >= 16; below that one standard deviation is shared by all samples (Carlini's fixed
    variance): the pooled within-sample one, sqrt(sum (phi_kn - mu_n)^2 / (N (K - 1))), or
    with K = 1 the standard deviation of all N reference values. A sample whose target phi
    lies far above what models without it produce scores near 0 (member); far below, very
    negative.

    Returns:
        float64 log-probabilities, shape (N,), <= 0.
    """
    target = np.asarray(target_phi, dtype=np.float64)
    ref = np.asarray(reference_phi, dtype=np.float64)
    if target.ndim != 1 or ref.ndim != 2 or ref.shape[1] != target.shape[0] or ref.shape[0] < 1:
        raise ValueError(
            "lira_offline_scores: expected target_phi (N,) and reference_phi (K, N) with K >= 1, "
            f"got shapes {target.shape} and {ref.shape}"
        )
    k = ref.shape[0]
    mean = ref.mean(axis=0)
    if k >= LIRA_PER_SAMPLE_STD_MIN_K:
        std = ref.std(axis=0, ddof=1)
    elif k >= 2:
        std = np.full_like(mean, np.sqrt(np.sum((ref - mean) ** 2) / (ref.size - ref.shape[1])))
    else:
        std = np.full_like(mean, ref.std() if ref.size else 0.0)
    std = np.maximum(std, _MIN_STD)
    try:
        from scipy.stats import norm  # imported here: scipy.stats takes a while to load

        return np.asarray(norm.logcdf(target, loc=mean, scale=std), dtype=np.float64)
    except ImportError:  # scipy ships with scikit-learn, but torch has the same stable function
        z = torch.from_numpy((target - mean) / std)
        return torch.special.log_ndtr(z).numpy()


def _scores(target: Target) -> np.ndarray:
    target_phi = true_class_margin(target.model, target.x, target.y)
    reference_phi = np.stack(
        [true_class_margin(m, target.x, target.y) for m in target.reference_models]
    )
    return lira_offline_scores(target_phi, reference_phi)


register(
    Attack(
        name="lira",
        summary="offline LiRA: the margin's Gaussian likelihood under reference models",
        citation="Carlini et al. 2022",
        rank=60,
        score=_scores,
        options={"lira_reference_models": Setting(int, "LiRA's K (0 = off)", le=256)},
        reference_models="lira_reference_models",
    )
)
