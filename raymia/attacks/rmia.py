"""RMIA (Zarifzadeh et al., ICML 2024): how often a sample's likelihood ratio beats those of
population samples that no model trained on.

The signal is p(x|theta), the softmax probability of the true label. Its reference p(x) is
what models that did not see x give it: online, the mean of p(x|theta') over IN and OUT
reference models; offline (OUT models only), 0.5 ((1 + a) mean_OUT(x) + (1 - a)), the linear
approximation of p_IN from p_OUT whose `a` is tuned by attacking one reference model with the
others (0.3 when there is no second model). With population samples z, which neither the
target nor the reference models trained on,

    LR(x, z) = (p(x|theta) / p(x)) / (p(z|theta) / p(z)),   score(x) = share of z with LR >= gamma.

The counts come from sorting the population's ratios once and a binary search per sample
(O((N + M) log M)), never an N x M matrix; everything runs in the log domain. With augmented
queries (:func:`raymia.attacks.lira.query_views`) the score is computed per view and averaged.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from raymia.attacks.lira import background_of, query_signal, target_views
from raymia.attacks.registry import Attack, ReferenceSet, Target, register
from raymia.privacy.logits import ArrayLike, chunked, stable_log_softmax
from raymia.registry import Setting

__all__ = [
    "OFFLINE_A_DEFAULT",
    "OFFLINE_A_GRID",
    "log_offline_reference",
    "log_online_reference",
    "rmia_counts",
    "rmia_offline_scores",
    "rmia_online_scores",
    "true_class_log_probability",
    "tune_offline_a",
]

#: Offline `a` when it cannot be tuned (one reference model), as the RMIA paper's default.
OFFLINE_A_DEFAULT = 0.3
#: The values of `a` tried when tuning, as the reference implementation: 0, 0.1, ..., 1.
OFFLINE_A_GRID = tuple(round(0.1 * i, 1) for i in range(11))


def true_class_log_probability(model: torch.nn.Module, x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """Return log p(y|x, theta) per sample (float64, (N,)), from the stable log-softmax, so a
    memorized sample's probability keeps its distance from 1."""

    def chunk(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        log_p, _ = stable_log_softmax(logits)
        return {"log_p": log_p.gather(1, labels.view(-1, 1)).squeeze(1)}

    return chunked(model, x, y, None, chunk)["log_p"]


def _log_mean(log_values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Return log of the mean over axis 0 of exp(log_values), over the rows `weights` marks."""
    values = np.asarray(log_values, dtype=np.float64)
    if weights is None:
        weights = np.ones(values.shape[:2], dtype=bool)
    mask = np.asarray(weights, dtype=bool)
    while mask.ndim < values.ndim:
        mask = mask[..., None]
    masked = np.where(mask, values, -np.inf)
    count = np.broadcast_to(mask, values.shape).sum(axis=0)
    top = np.max(masked, axis=0)
    safe_top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = np.log(np.sum(np.exp(masked - safe_top), axis=0)) + safe_top
        return np.where(count > 0, total - np.log(np.maximum(count, 1)), np.nan)


def log_online_reference(reference_log_p: ArrayLike) -> np.ndarray:
    """Return online RMIA's log p(x): the log of the mean of p(x|theta') over all K reference
    models (IN and OUT), from their log-probabilities of shape (K, N) or (K, N, A)."""
    return _log_mean(reference_log_p)


def log_offline_reference(
    reference_log_p: ArrayLike, a: float, out: ArrayLike | None = None
) -> np.ndarray:
    """Return offline RMIA's log p(x) = log(0.5 ((1 + a) mean_OUT(x) + (1 - a))).

    ``reference_log_p`` (K, N) or (K, N, A) are OUT models' log-probabilities; ``out`` (K, N),
    when given, marks which models are OUT for each sample (the mean runs over those; a sample
    without one is NaN). ``a`` in [0, 1].
    """
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"offline a must be in [0, 1], got {a}")
    log_out = _log_mean(reference_log_p, out)
    with np.errstate(divide="ignore"):
        return math.log(0.5) + np.logaddexp(
            math.log1p(a) + log_out, math.log(1.0 - a) if a < 1 else -np.inf
        )


def rmia_counts(log_ratio_x: ArrayLike, log_ratio_z: ArrayLike, gamma: float = 1.0) -> np.ndarray:
    """Return, per sample x, the share of population samples z with LR(x, z) >= gamma.

    Inputs are log(p(.|theta) / p(.)) of the samples, shape (N,), and of the population, (M,).
    LR(x, z) >= gamma is log_ratio_z <= log_ratio_x - log(gamma), so the population is sorted
    once and each sample's count is one binary search: O((N + M) log M) time, O(N + M) memory.
    NaN population ratios are dropped; a NaN sample ratio counts no z.
    """
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    x = np.asarray(log_ratio_x, dtype=np.float64)
    z = np.asarray(log_ratio_z, dtype=np.float64)
    z = np.sort(z[~np.isnan(z)])
    if z.size == 0:
        raise ValueError("RMIA needs at least one population sample")
    bound = np.where(np.isnan(x), -np.inf, x - math.log(gamma))
    return np.searchsorted(z, bound, side="right") / z.size


def _scores_per_view(
    target_x: np.ndarray,
    log_px: np.ndarray,
    target_z: np.ndarray,
    log_pz: np.ndarray,
    gamma: float,
) -> np.ndarray:
    """Return the RMIA counts averaged over query views (last axis of (N, A) / (M, A))."""
    ratio_x = np.atleast_2d((target_x - log_px).T).T
    ratio_z = np.atleast_2d((target_z - log_pz).T).T
    return np.mean(
        [rmia_counts(ratio_x[:, j], ratio_z[:, j], gamma) for j in range(ratio_x.shape[1])], axis=0
    )


def rmia_offline_scores(
    target_log_p: ArrayLike,
    reference_log_p: ArrayLike,
    population_target_log_p: ArrayLike,
    population_reference_log_p: ArrayLike,
    *,
    a: float = OFFLINE_A_DEFAULT,
    gamma: float = 1.0,
    population_out: ArrayLike | None = None,
) -> np.ndarray:
    """Return offline RMIA's score per sample: the share of population z with LR >= gamma.

    ``target_log_p`` (N,) or (N, A): the target's log p(y|x) (A query views);
    ``reference_log_p`` (K, N[, A]): K OUT reference models' on the same samples;
    ``population_*`` the same for M population samples, with ``population_out`` (K, M)
    marking the models OUT for each z (all when None; a z without one is dropped).

    Returns:
        float64 shares in [0, 1], shape (N,); higher means more likely a member.
    """
    log_px = log_offline_reference(reference_log_p, a)
    log_pz = log_offline_reference(population_reference_log_p, a, population_out)
    return _scores_per_view(
        np.asarray(target_log_p, np.float64),
        log_px,
        np.asarray(population_target_log_p, np.float64),
        log_pz,
        gamma,
    )


def rmia_online_scores(
    target_log_p: ArrayLike,
    reference_log_p: ArrayLike,
    population_target_log_p: ArrayLike,
    population_reference_log_p: ArrayLike,
    *,
    gamma: float = 1.0,
) -> np.ndarray:
    """Return online RMIA's score per sample; p(x) is the mean of p(x|theta') over all K
    reference models, about half of which trained on x. Shapes as :func:`rmia_offline_scores`
    (the population is OUT for every model).

    Returns:
        float64 shares in [0, 1], shape (N,).
    """
    return _scores_per_view(
        np.asarray(target_log_p, np.float64),
        log_online_reference(reference_log_p),
        np.asarray(population_target_log_p, np.float64),
        log_online_reference(population_reference_log_p),
        gamma,
    )


def tune_offline_a(
    stand_in_log_p: np.ndarray,
    stand_in_is_member: np.ndarray,
    reference_log_p: np.ndarray,
    reference_out: np.ndarray,
    population_stand_in_log_p: np.ndarray,
    population_reference_log_p: np.ndarray,
    population_out: np.ndarray,
    gamma: float = 1.0,
) -> float:
    """Return the `a` of :data:`OFFLINE_A_GRID` under which offline RMIA best attacks a
    stand-in target (a reference model whose members are known) by AUC; ties: the smallest.

    ``stand_in_log_p`` (N[, A]) and ``stand_in_is_member`` (N,) are the stand-in's audited
    samples; ``reference_log_p`` (K, N[, A]) the other models' log-probabilities with
    ``reference_out`` (K, N) marking which are OUT for each sample (samples without an OUT
    model are left out); the population likewise (its samples are OUT for the stand-in).
    """
    from raymia.privacy.metrics import auc

    usable = np.asarray(reference_out, bool).any(axis=0)
    member = np.asarray(stand_in_is_member, bool)[usable]
    if member.all() or not member.any():
        return OFFLINE_A_DEFAULT
    best, best_auc = OFFLINE_A_DEFAULT, -1.0
    for a in OFFLINE_A_GRID:
        log_px = log_offline_reference(reference_log_p[:, usable], a, reference_out[:, usable])
        log_pz = log_offline_reference(population_reference_log_p, a, population_out)
        scores = _scores_per_view(
            np.asarray(stand_in_log_p)[usable], log_px, population_stand_in_log_p, log_pz, gamma
        )
        value = auc(scores, member)
        if value > best_auc + 1e-12:
            best, best_auc = a, value
    return best


def _gamma(target: Target) -> float:
    return float(target.options.rmia_gamma)


def _signals(
    target: Target, reference: ReferenceSet, population_rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return log p(y|x) on every query view: the target's and each reference model's on the
    scored samples, then on the population (its `population_rows`, default all): (N, A),
    (K, N, A), (M, A), (K, M, A)."""
    pop = reference.population
    # The shifted views' border is the whole population's background, whichever rows are read.
    background = background_of(pop.x)
    if population_rows is not None:
        pop = pop.take(population_rows)
    views_x, views_z = target_views(target), target_views(target, pop.x, background)

    def signal(model: torch.nn.Module, views: list[torch.Tensor], y: torch.Tensor) -> np.ndarray:
        return query_signal(model, views[0], y, views, log_probability=True)

    return (
        signal(target.model, views_x, target.y),
        np.stack([signal(m, views_x, target.y) for m in reference.models]),
        signal(target.model, views_z, pop.y),
        np.stack([signal(m, views_z, pop.y) for m in reference.models]),
    )


def _offline_scores(target: Target) -> np.ndarray:
    reference = target.offline
    if reference is None:
        raise ValueError("offline RMIA needs the trial's reference models and their data")
    out = reference.population_out
    usable = out.any(axis=0)
    a = float(target.options.rmia_offline_a)
    if a < 0 and _tunable(reference):
        # tuned on the first reference model, attacked with the others: every row is read
        target_x, refs_x, target_z, refs_z = _signals(target, reference)
        a = _tuned_a(reference, refs_z, out, _gamma(target))
        target_z, refs_z = target_z[usable], refs_z[:, usable]
    else:  # only the population rows some model never saw are read: score only those
        target_x, refs_x, target_z, refs_z = _signals(target, reference, np.flatnonzero(usable))
        a = OFFLINE_A_DEFAULT if a < 0 else a
    return rmia_offline_scores(
        target_x,
        refs_x,
        target_z,
        refs_z,
        a=a,
        gamma=_gamma(target),
        population_out=out[:, usable],
    )


def _tunable(reference: ReferenceSet) -> bool:
    """True when `a` can be tuned: a second reference model, and rows known to be trained."""
    return len(reference.models) >= 2 and reference.population_trained is not None


def _tuned_a(reference: ReferenceSet, refs_z: np.ndarray, out: np.ndarray, gamma: float) -> float:
    """Return `a` tuned on reference model 0 as a stand-in target (the default with one model).

    The stand-in's audited samples are its trained rows (members) and half of the rows it never
    saw (non-members); the other half of those rows is the population; models 1..K-1 are the
    references, each only where it is OUT.
    """
    trained = reference.population_trained
    if not _tunable(reference) or trained is None:
        return OFFLINE_A_DEFAULT
    unseen = np.flatnonzero(out[0])
    rng = np.random.default_rng([reference.seed, 17])
    unseen = rng.permutation(unseen)
    audit_out, population = np.sort(unseen[: unseen.size // 2]), np.sort(unseen[unseen.size // 2 :])
    members = np.flatnonzero(trained[0])
    rows = np.r_[members, audit_out]
    others = out[1:]
    pop_rows = population[others[:, population].any(axis=0)]
    if pop_rows.size == 0 or rows.size == 0:
        return OFFLINE_A_DEFAULT
    return tune_offline_a(
        refs_z[0][rows],
        np.r_[np.ones(members.size, bool), np.zeros(audit_out.size, bool)],
        refs_z[1:][:, rows],
        others[:, rows],
        refs_z[0][pop_rows],
        refs_z[1:][:, pop_rows],
        others[:, pop_rows],
        gamma,
    )


def _online_scores(target: Target) -> np.ndarray:
    online = target.online
    if online is None:
        raise ValueError("online RMIA needs the trial's online reference models")
    target_x, refs_x, target_z, refs_z = _signals(target, online)
    return rmia_online_scores(target_x, refs_x, target_z, refs_z, gamma=_gamma(target))


register(
    Attack(
        name="rmia",
        summary="offline RMIA: share of population samples z with LR(x, z) = "
        "(p(x|theta) / p(x)) / (p(z|theta) / p(z)) >= gamma; p(x) from OUT models",
        citation="Zarifzadeh et al. 2024",
        rank=62,
        score=_offline_scores,
        options={
            "rmia_offline": Setting(
                int,
                "offline RMIA on the offline reference models the trial trains anyway (the "
                "shadow, LiRA's); 0 = off",
                default=1,
                le=1,
            ),
            "rmia_offline_a": Setting(
                float,
                "offline a (-1: tuned on a reference model, 0.3 with one)",
                default=-1,
                ge=-1,
                le=1,
            ),
            "rmia_gamma": Setting(float, "RMIA's gamma", default=1.0, ge=None, gt=0, le=1e6),
        },
        reference_models="rmia_offline",
        reference_kind="reuse",
    )
)

register(
    Attack(
        name="rmia_online",
        summary="online RMIA: as `rmia`, p(x) the mean over IN and OUT reference models",
        citation="Zarifzadeh et al. 2024",
        rank=63,
        score=_online_scores,
        reference_models="online_models",
        reference_kind="online",
    )
)
