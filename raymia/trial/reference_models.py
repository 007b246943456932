"""Reference (shadow) models: trained like the target on the attacker's reference data.

Offline models (:func:`train_reference_models`): the first doubles as the shadow model whose
scores calibrate the attacks' thresholds; offline LiRA and RMIA use all of them. None of them
sees a member or non-member of the target. Online models (:func:`train_online_models`), only
when an online attack asks for them: each trains on a random half of the scored samples and
some reference data, every scored sample IN for half of the models, with the IN-mask recorded.
Both train through one map over training jobs (:func:`train_jobs`): serially in this process,
or, under a sweep with reference workers, on Ray actors in the trial's placement group
(`raymia.sweep.reference_tasks`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from raymia.attacks.registry import REGISTRY, ReferenceSet
from raymia.data.datasets import (
    MIN_CALIBRATION,
    DatasetInfo,
    Split,
    check_reference_size,
    concat_splits,
)
from raymia.errors import ConfigError, DataError
from raymia.trial.config import TrialConfig
from raymia.trial.train import (
    TrainSpec,
    batches_per_epoch,
    ensemble_blocker,
    resolve_device,
    train_model,
    train_models,
    untrained_model,
)

__all__ = [
    "JobRunner",
    "TrainingJob",
    "load_trained",
    "offline_reference_set",
    "online_model_count",
    "online_rows",
    "reference_model_count",
    "reference_rows",
    "reference_training_path",
    "train_job",
    "train_jobs",
    "train_online_models",
    "train_reference_models",
    "training_jobs_run_by",
]

# Reference model i trains with seed_offset 100 + 2 i: clear of the target (0) and its
# distillation teacher (1), and the stride 2 keeps each model's own teacher (offset + 1) from
# sharing its seed with the next reference model.
_REFERENCE_SEED_OFFSET = 100
_REFERENCE_SEED_STRIDE = 2
# Online model i: seed_offset 1000 + 2 i, clear of 256 offline models (100 .. 611).
_ONLINE_SEED_OFFSET = 1000


@dataclass(frozen=True)
class TrainingJob:
    """One reference model to train: `train_model` under `config` on `train`, with `held_out`
    as its owner's held-out data and its own randomness from `seed_offset`."""

    config: TrialConfig
    info: DatasetInfo
    train: Split
    held_out: Split
    seed_offset: int


#: Trains a list of jobs somewhere else and returns their models, in order, on `device` and in
#: eval mode, identical to what :func:`train_job` returns for each.
JobRunner = Callable[[Sequence[TrainingJob], torch.device | None], list[nn.Module]]

_runner: ContextVar[JobRunner | None] = ContextVar("raymia_training_job_runner", default=None)


@contextmanager
def training_jobs_run_by(runner: JobRunner) -> Iterator[None]:
    """Within the block (this thread and context), :func:`train_jobs` hands its jobs to
    `runner` (e.g. Ray actors in a sweep trial's placement group) instead of training them
    here one after another."""
    token = _runner.set(runner)
    try:
        yield
    finally:
        _runner.reset(token)


def train_job(job: TrainingJob, device: torch.device | None = None) -> nn.Module:
    """Train one job's model here (:func:`raymia.trial.train.train_model`) and return it in eval
    mode."""
    result = train_model(
        job.config,
        job.info,
        job.train,
        held_out=job.held_out,
        device=device,
        seed_offset=job.seed_offset,
    )
    return result.model.eval()


def load_trained(
    job: TrainingJob, state: dict[str, torch.Tensor], device: torch.device | None = None
) -> nn.Module:
    """Return the model of `job` built as `train_model` builds it, with the weights `state`
    (the state_dict of the model :func:`train_job` trained for it elsewhere), on `device`
    (default: the config's), in eval mode."""
    model = untrained_model(job.config, job.info, job.train)
    model.load_state_dict(state)
    return model.to(device or resolve_device(job.config.device)).eval()


def train_jobs(jobs: Sequence[TrainingJob], device: torch.device | None = None) -> list[nn.Module]:
    """Train every job's model and return them in order, in eval mode: the one map every
    reference model (offline and online) trains through.

    By default the jobs train here one after another (:func:`train_job`). Within
    :func:`training_jobs_run_by` they go to that runner instead: a sweep trial with reference
    workers runs them on Ray actors in its own placement group and loads the weights they return
    into models built the same way (`raymia.sweep.reference_tasks`); each job's model depends
    only on the job, so both give the same models.

    The replicate seeds of one configuration (a search trial's ``seeds``) do not share one
    pool of reference models: the membership protocol draws every split from the seed
    (`raymia.data.datasets.split_pool`), so seed s's reference models train on seed s's reference
    split, which overlaps the members and non-members of every other seed. Reused for another
    seed they would have trained on that seed's scored samples, and offline models must see
    none of them (docs/ARCHITECTURE.md, "Membership protocol"); online models are drawn
    around the seed's own scored samples. Each seed therefore trains its own.
    """
    if not jobs:
        return []
    path = reference_training_path(jobs[0].config, device)
    if path == "workers":
        runner = _runner.get()
        assert runner is not None
        return runner(jobs, device)
    if path == "sequential":
        return [train_job(job, device) for job in jobs]
    return _train_as_ensembles(jobs, device)


def reference_training_path(config: TrialConfig, device: torch.device | None = None) -> str:
    """Return how :func:`train_jobs` trains a trial's reference models here: "workers" (Ray
    actors, within :func:`training_jobs_run_by`), "ensemble" (batched, where the config's
    `reference_training` asks for it, or "auto" asks on CUDA, and no mechanism on blocks it:
    :func:`raymia.trial.train.ensemble_blocker`) or "sequential" (one after another; the
    fallback)."""
    if _runner.get() is not None:
        return "workers"
    wanted = config.reference_training
    if wanted == "auto":
        kind = (device or resolve_device(config.device)).type
        wanted = "ensemble" if kind == "cuda" else "sequential"
    if wanted == "ensemble" and ensemble_blocker(config) is None:
        return "ensemble"
    return "sequential"


def _train_as_ensembles(
    jobs: Sequence[TrainingJob], device: torch.device | None
) -> list[nn.Module]:
    """Train the jobs as batched ensembles, one per number of batches per epoch (a job alone
    in its group trains by itself); return the models in the jobs' order, in eval mode."""
    groups: dict[tuple[int, int, int], list[int]] = {}
    for i, job in enumerate(jobs):
        key = (id(job.config), id(job.info), batches_per_epoch(job.config, len(job.train)))
        groups.setdefault(key, []).append(i)
    models: list[nn.Module | None] = [None] * len(jobs)
    for members in groups.values():
        config, info = jobs[members[0]].config, jobs[members[0]].info
        specs = [TrainSpec(jobs[i].train, jobs[i].held_out, jobs[i].seed_offset) for i in members]
        for i, result in zip(
            members, train_models(config, info, specs, device=device), strict=True
        ):
            models[i] = result.model.eval()
    return [m for m in models if m is not None]


def reference_model_count(options: Any) -> int:
    """Return how many offline reference models a trial trains: as many as the attacks that
    need them ask for (LiRA's lira_reference_models), and at least one for shadow calibration.
    Offline RMIA trains none of its own: it reuses these."""
    wanted = [
        getattr(options, a.reference_models)
        for a in REGISTRY.values()
        if a.reference_models and a.reference_kind == "offline"
    ]
    return max([*wanted, 1 if options.shadow_calibration else 0])


def online_model_count(options: Any) -> int:
    """Return how many online reference models a trial trains: the largest count the online
    attacks ask for (`online_models`; 0 = none). Raises ConfigError for 1: every scored sample
    needs an IN and an OUT model."""
    wanted = [getattr(options, a.reference_models) for a in REGISTRY.values() if a.online]
    k = max([0, *wanted])
    if k == 1:
        raise ConfigError(
            "attacks.online_models = 1: online attacks need at least 2 models (every scored "
            "sample IN for half of them); use 0 (off) or >= 2"
        )
    return k


def reference_rows(
    n: int, n_trained: int, n_held_out: int, k: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Return, per reference model, its (trained, held-out, calibration) rows of range(n).

    Model i trains on n_trained rows and stops / regularizes on n_held_out others, drawn by
    (seed, i) alone; the remaining rows are its calibration non-members, which it never sees.
    The three are disjoint and sorted. Raises DataError (naming the sizes) when fewer than
    :data:`raymia.data.datasets.MIN_CALIBRATION` calibration rows would be left.
    """
    check_reference_size(n, n_trained, n_held_out)
    cut = n_trained + n_held_out
    out = []
    for i in range(k):
        order = np.random.default_rng([seed, _REFERENCE_SEED_OFFSET, i]).permutation(n)
        out.append(
            (np.sort(order[:n_trained]), np.sort(order[n_trained:cut]), np.sort(order[cut:]))
        )
    return out


def train_reference_models(
    config: TrialConfig,
    info: DatasetInfo,
    reference: Split,
    k: int,
    device: torch.device | None = None,
    *,
    n_trained: int,
    n_held_out: int,
) -> list[nn.Module]:
    """Train k reference (shadow) models for offline LiRA and return them in eval mode.

    Each model is trained like the target (through :func:`train_jobs`) by
    :func:`raymia.trial.train.train_model` under the same
    config (same mechanisms and strengths) on exactly n_trained samples of the attacker's
    reference data (the target's member count), with its own held-out slice of n_held_out
    reference samples (the target's held-out count) for early stopping and adversarial
    regularization, both from :func:`reference_rows` with config.seed, and its own seed
    (seed_offset 100 + 2 i). None of these models sees a member or non-member, so all are OUT
    models for both; none sees its own calibration rows. Raises DataError when the reference
    split is too small.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if k == 0:
        return []
    rows = reference_rows(len(reference), n_trained, n_held_out, k, config.seed)
    jobs = [
        TrainingJob(
            config,
            info,
            reference.take(trained),
            reference.take(held_out),
            _REFERENCE_SEED_OFFSET + _REFERENCE_SEED_STRIDE * i,
        )
        for i, (trained, held_out, _calibration) in enumerate(rows)
    ]
    return train_jobs(jobs, device)


def offline_reference_set(
    models: list[nn.Module], reference: Split, n_trained: int, n_held_out: int, seed: int
) -> ReferenceSet:
    """Return the offline reference models as a ReferenceSet over the whole reference split:
    per model the rows it trained on (`population_trained`) and those it never trained, stopped
    or regularized on (`population_out`), as :func:`reference_rows` drew them."""
    n, k = len(reference), len(models)
    trained = np.zeros((k, n), dtype=bool)
    out = np.zeros((k, n), dtype=bool)
    for i, (rows, _held_out, calibration) in enumerate(
        reference_rows(n, n_trained, n_held_out, k, seed)
    ):
        trained[i, rows] = True
        out[i, calibration] = True
    return ReferenceSet(
        models=tuple(models),
        population=reference,
        population_out=out,
        population_trained=trained,
        seed=seed,
    )


def online_rows(
    n_scored: int, n_reference: int, n_trained: int, n_held_out: int, k: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the online design: (pool reference rows, held-out rows, population rows, IN-mask).

    The pool is the n_scored scored samples followed by as many reference rows as make it
    2 n_trained long (none when the scored samples alone reach that), so that a model trained
    on half of it trains on about as many samples as the target. The IN-mask (k, pool) puts
    every pool sample IN for exactly k // 2 of the models (k odd: k // 2 or k // 2 + 1, by a
    coin), drawn by (seed); the next n_held_out reference rows are the models' shared held-out
    slice, the rest the population no online model sees. Raises DataError when fewer than
    :data:`raymia.data.datasets.MIN_CALIBRATION` population rows would be left.
    """
    extra = max(0, 2 * n_trained - n_scored)
    need = extra + n_held_out + MIN_CALIBRATION
    if n_reference < need:
        raise DataError(
            f"reference = {n_reference} is too small for online reference models: they need "
            f"{extra} reference samples beside the {n_scored} scored ones, a held-out slice of "
            f"{n_held_out} and {MIN_CALIBRATION} population samples = {need}"
        )
    rng = np.random.default_rng([seed, _ONLINE_SEED_OFFSET])
    order = rng.permutation(n_reference)
    pool_rows = np.sort(order[:extra])
    held_out = np.sort(order[extra : extra + n_held_out])
    population = np.sort(order[extra + n_held_out :])
    size = n_scored + extra
    ranks = np.argsort(rng.random((k, size)), axis=0)
    quota = k // 2 + ((rng.random(size) < 0.5) if k % 2 else 0)
    return pool_rows, held_out, population, ranks < quota


def train_online_models(
    config: TrialConfig,
    info: DatasetInfo,
    scored: Split,
    reference: Split,
    k: int,
    device: torch.device | None = None,
    *,
    n_trained: int,
    n_held_out: int,
) -> ReferenceSet:
    """Train k online reference models and return them with their IN-mask over `scored`.

    Model i trains like the target (:func:`raymia.trial.train.train_model`, the same config and
    mechanisms, seed_offset 1000 + 2 i) on the pool samples its row of the IN-mask of
    :func:`online_rows` selects: about half of the scored samples (members and non-members of
    the target alike) and of a few reference samples, about n_trained in all, with a held-out
    slice of n_held_out reference samples. The returned set's `is_in` (k, len(scored)) says
    which model trained on which scored sample; its population, the remaining reference
    samples, is OUT for every model. Raises DataError when the reference split is too small.
    """
    if k < 2:
        raise ValueError(f"online reference models need k >= 2, got {k}")
    pool_rows, held_rows, population, mask = online_rows(
        len(scored), len(reference), n_trained, n_held_out, k, config.seed
    )
    extra = reference.take(pool_rows)
    pool = concat_splits(scored, extra)
    held_out = reference.take(held_rows)
    jobs = [
        TrainingJob(
            config,
            info,
            pool.take(np.flatnonzero(mask[i])),
            held_out,
            _ONLINE_SEED_OFFSET + _REFERENCE_SEED_STRIDE * i,
        )
        for i in range(k)
    ]
    models = train_jobs(jobs, device)
    return ReferenceSet(
        models=tuple(models),
        population=reference.take(population),
        population_out=np.ones((k, len(population)), dtype=bool),
        is_in=mask[:, : len(scored)],
        seed=config.seed,
    )
