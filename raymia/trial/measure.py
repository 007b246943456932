"""Privacy measurement of a trained target: the registered attacks, their metrics, and DtC.

Returns the result columns (docs/ARCHITECTURE.md, "Results schema") plus the per-sample
scores, which travel separately so later stages can draw ROC curves and DtC histograms.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from raymia.attacks import REGISTRY as ATTACKS
from raymia.attacks import score_all
from raymia.attacks.registry import ReferenceSet
from raymia.costs import component
from raymia.data.datasets import Split, Splits, class_pairs, concat_splits
from raymia.models.networks import fuse_for_inference
from raymia.privacy import metrics
from raymia.privacy.canaries import Canaries, canary_columns
from raymia.privacy.dtc import DtcOptions, DtcResult, balanced_rows, dtc, resolve_tau, summarize_dtc
from raymia.privacy.empirical_epsilon import epsilon_columns
from raymia.privacy.leakage import excess
from raymia.privacy.logits import device_dtype, rows_per_pass, true_class_margin
from raymia.privacy.one_run_audit import one_run_columns
from raymia.trial.config import TrialConfig
from raymia.trial.reference_models import (
    offline_reference_set,
    online_model_count,
    reference_model_count,
    reference_rows,
    reference_training_path,
    train_online_models,
    train_reference_models,
)


@dataclass(frozen=True)
class Evaluation:
    """The balanced attack evaluation set: as many members as non-members."""

    x: torch.Tensor
    y: torch.Tensor
    is_member: np.ndarray
    indices: np.ndarray  # pool indices, to join scores back to samples


def balanced_evaluation(members: Split, non_members: Split, seed: int) -> Evaluation:
    """Return equally many members and non-members of every class, drawn by `seed`.

    Stratifying by class matters for small sets: two random halves of a data set differ in
    class make-up, a model learns its members' class prior (an aggregate that even DP-SGD
    does not hide), and an attack would then separate the halves by class, not by membership.
    Members come first in the returned arrays.
    """
    y_m, y_n = members.labels(), non_members.labels()
    classes = np.union1d(y_m, y_n)
    every = np.array([min(np.sum(y_m == c), np.sum(y_n == c)) for c in classes], np.int64)
    rows_m, rows_n = class_pairs(y_m, y_n, classes, every, np.random.default_rng([seed, 11]))
    n = len(rows_m)
    return Evaluation(
        x=torch.cat([members.x[rows_m], non_members.x[rows_n]]),
        y=torch.cat([members.y[rows_m], non_members.y[rows_n]]),
        is_member=np.r_[np.ones(n, bool), np.zeros(n, bool)],
        indices=np.r_[members.indices[rows_m], non_members.indices[rows_n]],
    )


def _reference_scores(
    config: TrialConfig, splits: Splits, device: torch.device
) -> tuple[list[nn.Module], dict[str, np.ndarray] | None, np.ndarray | None, float]:
    """Train the reference models; return them, the shadow's calibration scores + labels, and
    the seconds their training took.

    The first reference model doubles as the shadow. Trained like the target (as many
    reference samples as the target has members, its own held-out slice as large as the
    target's), its trained rows are its members and the rest of the reference split, which it
    never trained, stopped or regularized on, its non-members; the thresholds that separate
    them best are what the calibrated protocol applies to the target.
    """
    options = config.attacks
    k = reference_model_count(options)
    if k == 0:
        return [], None, None, 0.0
    sizes = {"n_trained": len(splits.members), "n_held_out": len(splits.held_out)}
    with component("reference training") as training:
        models = train_reference_models(config, splits.info, splits.reference, k, device, **sizes)
    models = [fuse_for_inference(m) for m in models]  # only ever queried from here on
    if not options.shadow_calibration:
        return models, None, None, training.seconds
    trained, _held_out, calibration = reference_rows(
        len(splits.reference), sizes["n_trained"], sizes["n_held_out"], 1, config.seed
    )[0]
    shadow_eval = balanced_evaluation(
        splits.reference.take(trained), splits.reference.take(calibration), config.seed
    )
    # The shadow calibrates the attacks that need no reference models (LiRA is calibrated).
    with component("shadow scoring"):
        scores = score_all(models[0], shadow_eval.x, shadow_eval.y, options, config.seed)
    return models, scores, shadow_eval.is_member, training.seconds


def measure_privacy(
    config: TrialConfig,
    splits: Splits,
    model: nn.Module,
    members: Split,
    device: torch.device,
    *,
    canaries: Canaries | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run every registered attack that is on, and DtC, on `model`; return (columns,
    per-sample scores).

    `members` are the samples the model was actually trained on. Columns: `eval_members`;
    for each attack `<attack>_adv`, `_auc`, CIs, `_tpr_at_1pct`, null baseline,
    `_adv_calibrated` where a shadow model calibrates, then each attack's own columns
    (`loss_yeom_adv`: threshold = mean training loss); `adv` (max advantage over attacks) with
    its own null `adv_null_q95` / `adv_p` (the null of the maximum) and `adv_excess` =
    max(0, adv - adv_null_q95); `dtc_*` when DtC is on, with `dtc_adv_null_q95`, `dtc_adv_p`
    and `dtc_adv_excess` likewise; the `canary_*` columns (:mod:`raymia.privacy.canaries`) from the
    attacks' scores on `canaries` and the one-run epsilon bound `eps_lb_one_run*`
    (:mod:`raymia.privacy.one_run_audit`; all None without them). Online reference models train on
    the canaries like on the other scored samples (each IN for half of the models); the
    canaries are scored apart, never in the evaluation set, and not among the per-sample
    scores. Last, `reference_seconds`: the wall time spent training the shadow, offline and
    online reference models.
    """
    options = config.attacks
    model = fuse_for_inference(model)
    evaluation = balanced_evaluation(members, splits.non_members, config.seed)
    reference_models, shadow_scores, shadow_is_member, reference_seconds = _reference_scores(
        config, splits, device
    )
    sizes = {"n_trained": len(splits.members), "n_held_out": len(splits.held_out)}
    offline = (
        offline_reference_set(reference_models, splits.reference, seed=config.seed, **sizes)
        if reference_models
        else None
    )
    online = None
    scored = Split(evaluation.x, evaluation.y, evaluation.indices)
    if k_online := online_model_count(options):
        pool = scored if canaries is None else concat_splits(scored, canaries.scored())
        with component("reference training") as training:
            online = train_online_models(
                config, splits.info, pool, splits.reference, k_online, device, **sizes
            )
        online = replace(online, models=tuple(fuse_for_inference(m) for m in online.models))
        reference_seconds += training.seconds

    def attack(target: Split, online_part: ReferenceSet | None) -> dict[str, np.ndarray]:
        return score_all(
            model,
            target.x,
            target.y,
            options,
            config.seed,
            reference_models=reference_models,
            offline=offline,
            online=online_part,
            flip=splits.info.flip,
        )

    n_scored = len(scored)
    scores = attack(scored, _online_part(online, slice(0, n_scored)))

    columns: dict[str, Any] = {"eval_members": int(evaluation.is_member.sum())}
    per_attack, best = leakage_columns(
        scores,
        evaluation.is_member,
        config,
        shadow_scores=shadow_scores,
        shadow_is_member=shadow_is_member,
    )
    columns.update(per_attack)
    with component("extra columns"):
        for name, values in scores.items():
            if extra := ATTACKS[name].extra:
                columns.update(extra(model, members, values, evaluation.is_member))
    columns.update(best)
    if canaries is None:
        columns.update(canary_columns(None, None))
        columns.update(one_run_columns(None, None, None, config.mechanisms.dp_delta))
    else:
        with component("canaries"):
            canary_scores = attack(canaries.scored(), _online_part(online, slice(n_scored, None)))
            columns.update(canary_columns(canary_scores, canaries.is_member()))
            # the one-run bound reads the attack strongest on the evaluation set, which holds
            # no canary: chosen without looking at the canaries' inclusion bits
            strongest = max(scores, key=lambda name: per_attack[f"{name}_adv"])
            columns.update(
                one_run_columns(
                    canary_scores,
                    canaries.is_member(),
                    strongest,
                    config.mechanisms.dp_delta,
                    seed=config.seed,
                )
            )

    per_sample: dict[str, np.ndarray] = {
        "sample_index": evaluation.indices,
        "label": evaluation.y.cpu().numpy(),
        "is_member": evaluation.is_member,
        **{f"score_{name}": values for name, values in scores.items()},
    }
    if config.dtc.enabled:
        with component("dtc"):
            dtc_columns, distance, censored = _measure_dtc(config, splits, model, evaluation)
        columns.update(dtc_columns)
        columns["dtc_adv_excess"] = excess(columns["dtc_adv"], columns.get("dtc_adv_null_q95"))
        per_sample["dtc"] = distance
        per_sample["dtc_censored"] = censored
    columns["reference_seconds"] = reference_seconds
    # the path taken ("ensemble", "sequential", "workers"), where the setting asked for one
    trained_any = bool(reference_models) or online is not None
    columns["reference_training"] = (
        reference_training_path(config, device) if trained_any else "none"
    )
    return columns, per_sample


def leakage_columns(
    scores: dict[str, np.ndarray],
    is_member: np.ndarray,
    config: TrialConfig,
    *,
    shadow_scores: dict[str, np.ndarray] | None = None,
    shadow_is_member: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the leakage columns that are a function of the attacks' scores alone, as
    (per attack, best attack): each attack's :func:`raymia.privacy.metrics.summarize` (calibrated at
    the shadow's thresholds where `shadow_scores` has the attack), in `scores`' order; then
    `adv` (the largest advantage), its null (:func:`_best_attack_null`) and the empirical
    epsilon (`eps_lb`, `eps_lb_attack`). With the config's bootstrap and permutation counts,
    seed and `dp_delta`: the same scores give the same columns on any machine."""
    options = config.attacks
    columns: dict[str, Any] = {}
    nulls: dict[str, metrics.NullResult] = {}
    best_null: metrics.NullResult | None = None
    with component("intervals and nulls"):
        if options.n_permutations:
            # every attack's null and the best attack's from one pass over the permutations
            nulls, best_null = metrics.null_advantages(
                scores, is_member, options.n_permutations, config.seed
            )
    for name, values in scores.items():
        reference = shadow_scores.get(name) if shadow_scores is not None else None
        with component("intervals and nulls"):
            summary = metrics.summarize(
                values,
                is_member,
                prefix=name,
                reference_scores=reference,
                reference_is_member=shadow_is_member if reference is not None else None,
                n_boot=options.n_bootstrap,
                n_permutations=options.n_permutations,
                seed=config.seed,
                null=nulls.get(name),
            )
        columns.update(summary)
    best: dict[str, Any] = {"adv": max(columns[f"{name}_adv"] for name in scores)}
    best.update(_best_attack_null(best_null))
    with component("eps_lb"):
        best.update(epsilon_columns(scores, is_member, config.mechanisms.dp_delta, config.seed))
    return columns, best


def _online_part(online: ReferenceSet | None, part: slice) -> ReferenceSet | None:
    """Return the online reference set restricted to the scored samples at `part` (its
    IN-mask's columns), or None without online models."""
    if online is None or online.is_in is None:
        return online
    return replace(online, is_in=online.is_in[:, part])


def _best_attack_null(null: metrics.NullResult | None) -> dict[str, float | None]:
    """Return `adv`'s null columns from the null of the maximum over the attacks
    (:func:`raymia.privacy.metrics.null_advantages`; None when `attacks.n_permutations` is 0).

    `adv_null_q95` and `adv_p` come from permuting the membership labels once per replicate,
    recomputing every attack's advantage and keeping the maximum (a single attack's null is too
    small for a best-of-several); `adv_excess` = max(0, adv - adv_null_q95). All None without
    a null.
    """
    if null is None:
        return {"adv_null_q95": None, "adv_p": None, "adv_excess": None}
    return {
        "adv_null_q95": null.q95,
        "adv_p": null.p_value,
        "adv_excess": excess(null.observed, null.q95),
    }


def _measure_dtc(
    config: TrialConfig, splits: Splits, model: nn.Module, evaluation: Evaluation
) -> tuple[dict[str, float | None], np.ndarray, np.ndarray]:
    """Return DtC's summary and per-sample distances (NaN for samples not measured).

    At most `dtc.max_samples` samples are measured, half members and half non-members, with
    as many members as non-members of every class (:func:`raymia.privacy.dtc.balanced_rows`, seeded
    by
    config.seed; classes in proportion to the evaluation set). Confidence is the true-class
    margin phi = z_y - logsumexp_{i != y} z_i (the logit of p_y, see :mod:`raymia.privacy.dtc`);
    tau's
    quantile comes from the margins of the reference data, which are non-members of the target.
    The summary's ``dtc_tau`` is that margin target (logit domain: p_y = sigmoid(dtc_tau)),
    ``dtc_samples`` the number of samples measured (members and non-members together; every
    interval and null is computed on these), and ``dtc_adv_null_q95`` / ``dtc_adv_p`` the
    permutation null (config.attacks.n_permutations
    label shuffles; None when 0).
    """
    settings = config.dtc
    options = DtcOptions(
        norm=settings.norm,
        eps_max=settings.eps_max,
        bisection_steps=settings.bisection_steps,
        pgd_steps=settings.pgd_steps,
        # the inference passes' rows on a CPU (the same distances at any batch size)
        batch_size=min(DtcOptions.batch_size, rows_per_pass(device_dtype(model)[0], evaluation.x)),
    )
    reference_margin = true_class_margin(
        model, splits.reference.x, splits.reference.y, batch_size=options.batch_size
    )
    tau = resolve_tau(settings.tau, reference_margin)
    n = len(evaluation.is_member) // 2
    y = evaluation.y.cpu().numpy()
    member_rows, non_member_rows = balanced_rows(
        y[:n], y[n:], min(n, settings.max_samples // 2), config.seed
    )
    rows = np.r_[member_rows, n + non_member_rows]
    result = dtc(model, evaluation.x[rows], evaluation.y[rows], tau, options)
    per_side = len(member_rows)
    summary = summarize_dtc(
        _take(result, np.arange(per_side)),
        _take(result, per_side + np.arange(per_side)),
        n_permutations=config.attacks.n_permutations,
        seed=config.seed,
        n_boot=config.attacks.n_bootstrap,
    )
    summary["dtc_tau"] = tau
    summary["dtc_samples"] = len(rows)
    distance = np.full(2 * n, np.nan)
    censored = np.zeros(2 * n, bool)
    distance[rows] = result.distance
    censored[rows] = result.censored
    return summary, distance, censored


def _take(result: DtcResult, rows: np.ndarray) -> DtcResult:
    """Return the DtC results of ``rows``."""
    return DtcResult(distance=result.distance[rows], censored=result.censored[rows])
