"""One trial: split the data, train under the config's mechanisms, measure. No Ray here."""

from __future__ import annotations

import functools
import json
import logging
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from raymia import __version__
from raymia.attacks import REGISTRY as ATTACKS
from raymia.costs import component
from raymia.data.datasets import (
    Pool,
    Split,
    Splits,
    check_reference_size,
    concat_splits,
    load_splits,
    split_pool,
)
from raymia.data.files import remember
from raymia.privacy.canaries import MIN_TEST_LEFT, Canaries, draw_canaries
from raymia.privacy.canaries import OBJECTIVES as CANARY_OBJECTIVES
from raymia.privacy.empirical_epsilon import OBJECTIVE_COLUMNS
from raymia.privacy.metrics import clopper_pearson
from raymia.privacy.one_run_audit import canary_note
from raymia.trial.config import TrialConfig, parse_trial_config
from raymia.trial.measure import measure_privacy
from raymia.trial.reference_models import online_model_count, reference_model_count
from raymia.trial.train import TrainResult, accuracy, resolve_device, train_model

logger = logging.getLogger(__name__)

# The row's own columns an objective may name, beside each attack's `Attack.columns()`.
_OBJECTIVES = ("test_acc", "train_acc", "adv", "adv_excess", "dtc_adv", "dtc_auc", "dtc_adv_excess")


def objective_columns() -> frozenset[str]:
    """Return the result columns a sweep may optimize: accuracies, the best attack's and
    DtC's advantage (and their excess over the null), DtC's AUC, and each registered attack's
    advantage, AUC and own columns (`loss_yeom_adv`), the empirical epsilon `eps_lb`, and the
    leakage on canaries (`raymia.privacy.canaries.OBJECTIVES`, `canary_tpr_at_1pct`, ...)."""
    return frozenset(_OBJECTIVES).union(
        OBJECTIVE_COLUMNS, CANARY_OBJECTIVES, *(a.columns() for a in ATTACKS.values())
    )


def resolve_splits(config: TrialConfig, data: Splits | Pool | None = None) -> Splits:
    """Return the config's membership splits from given splits, a shared pool, or the disk."""
    if isinstance(data, Splits):
        return data
    sizes = dict(
        members=config.members,
        non_members=config.non_members,
        reference=config.reference,
        held_out=config.held_out,
    )
    if isinstance(data, Pool):
        return split_pool(data, config.seed, **sizes)
    return load_splits(
        config.dataset, config.seed, data_root=config.data_root, download=config.download, **sizes
    )


def versions() -> dict[str, str]:
    """Return the versions of raymia and the libraries that shape a result."""
    out = {"raymia_version": __version__, "torch_version": torch.__version__}
    for name in ("ray", "optuna", "opacus"):
        # Read the installed metadata rather than importing: importing optuna and opacus just
        # for their versions cost a fresh trial worker 0.8 s.
        try:
            out[f"{name}_version"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[f"{name}_version"] = "absent"
    out["python_version"] = platform.python_version()
    out["git_sha"] = _git_sha()
    return out


@functools.cache
def _git_sha() -> str | None:
    """Return the commit of the raymia checkout, or None outside a git checkout."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def prepare_data(
    config: TrialConfig, data: Splits | Pool | None = None
) -> tuple[Splits, Canaries | None]:
    """Return a trial's splits and canaries (None when off), drawn by `config.seed` from
    `data` (see `resolve_splits`), after every check that needs no training: the splits fit
    the data set, the reference set fits the reference models, the canaries fit the test
    split, the online models are not 1. Raises DataError or ConfigError (one line) otherwise.

    A sweep calls it on the driver with the space's trial settings, so a trial that no seed
    could run is refused before any starts (sizes do not depend on the seed).
    """
    splits = resolve_splits(config, data)
    online_model_count(config.attacks)  # refuses 1 before training the target
    if reference_model_count(config.attacks):
        # Fail before training the target, not after it.
        check_reference_size(len(splits.reference), len(splits.members), len(splits.held_out))
    canaries = draw_canaries(
        splits.test, config.attacks.canaries, splits.info.num_classes, config.seed
    )
    most = max(0, len(splits.test) - MIN_TEST_LEFT)
    note = canary_note(config.attacks.canaries, most, config.dataset, config.mechanisms.dp_delta)
    if note:
        logger.warning("raymia: note: %s", note)
    return splits, canaries


def run_trial(
    config: TrialConfig | dict[str, Any],
    data: Splits | Pool | None = None,
    *,
    threads: int | None = None,
    save_model: str | Path | None = None,
) -> dict[str, Any]:
    """Train one model under `config` and return its result row.

    The row holds the flattened config, `status` "ok", `test_acc` with its exact 95%
    interval over the test images (`test_acc_lo`, `test_acc_hi`), `train_acc`, `dp_epsilon`
    (None without DP-SGD), `epochs_run`, every attack's metrics (`<attack>_adv`, `_auc`, ...),
    `adv` (the largest advantage), the `dtc_*` summary, `train_seconds` (the target's
    training), `reference_seconds` (the shadow's and reference models' training, part of)
    `measure_seconds` (everything after the target's training) and versions. Per-sample
    scores ride separately under the key `scores` (a dict of equal-length arrays:
    sample_index, is_member, score_<attack>, dtc, dtc_censored).
    `threads` caps torch's intra-op threads at the CPUs the scheduler gave this trial. The
    target trains on every member (`members_trained` = len(members)); early stopping and
    adversarial regularization use the held-out split. With `attacks.canaries` = N the target
    also trains on the N / 2 member canaries (`members_trained` counts them), `test_acc` is
    measured on the test images not drawn as canaries, and the row's `canary_*` columns
    report the leakage on the canaries (:mod:`raymia.privacy.canaries`; None when off); canary
    scores
    are not among the per-sample `scores`. Raises TrainingDiverged when the loss becomes
    non-finite, DataError when the splits (or the canaries) do not fit the protocol.
    With `save_model` a directory, the trained target's weights, config and member rows are
    written there (`raymia.trial.audit.save_target`) for `raymia audit` to measure again.
    """
    if isinstance(data, Pool | Splits) and data.info.path is not None and isinstance(config, dict):
        # a file data set loaded already (a sweep's shared pool): read nothing from the file
        remember(str(config.get("dataset")), data.info)
    if not isinstance(config, TrialConfig):
        config = parse_trial_config(config)
    if threads:
        torch.set_num_threads(threads)
    splits, canaries = prepare_data(config, data)
    device = resolve_device(config.device)
    # Every split moves to the device once: training, evaluation and each attack index it
    # there (no copy per batch; on the CPU nothing moves).
    splits = splits.to(device)
    canaries = canaries.to(device) if canaries is not None else None
    # The target trains on every member (and the member canaries); its mechanisms' side data
    # is the owner's held-out set.
    trained_on = trained_split(splits, canaries)
    with component("target training"):
        trained = train_model(
            config, splits.info, trained_on, held_out=splits.held_out, device=device
        )
    if save_model is not None:
        save_target(save_model, config, trained.model, trained_on, splits.info.sha256)
    return measure_model(config, splits, canaries, trained.model, device, trained)


#: What `save_target` writes (and `raymia audit` reads) in a saved model's directory.
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
MEMBERS_FILE = "members.json"


def save_target(
    directory: str | Path,
    config: TrialConfig,
    model: torch.nn.Module,
    trained_on: Split,
    dataset_sha256: str | None = None,
) -> Path:
    """Write a trained target to `directory` (created): its weights, config and member rows,
    and a file data set's content hash (`dataset_sha256`, checked by the audit). Returns the
    directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    torch.save(state, out / MODEL_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(config.model_dump(mode="json"), indent=1) + "\n")
    members = {
        "members": [int(i) for i in trained_on.indices],
        "dataset": config.dataset,
        "dataset_sha256": dataset_sha256,
    }
    (out / MEMBERS_FILE).write_text(json.dumps(members) + "\n")
    return out


def trained_split(splits: Splits, canaries: Canaries | None) -> Split:
    """Return what the target trains on: every member, then the member canaries."""
    return splits.members if canaries is None else concat_splits(splits.members, canaries.members)


def measure_model(
    config: TrialConfig,
    splits: Splits,
    canaries: Canaries | None,
    model: torch.nn.Module,
    device: torch.device,
    trained: TrainResult | None = None,
) -> dict[str, Any]:
    """Return the row of a target `model` trained on `splits`' members (and the member
    canaries) under `config`: accuracy, every privacy column and the per-sample scores, as
    :func:`run_trial` describes; the training columns (`dp_epsilon`, `epochs_run`,
    `train_seconds`) come from `trained`, None without it (a model audited, not trained
    here)."""
    started = time.perf_counter()
    members = splits.members
    row: dict[str, Any] = {
        "status": "ok",
        "error": None,
        **config.flat(),
        # a data set from files: the SHA-256 of its content (None for a built-in)
        "dataset_sha256": splits.info.sha256,
        "device": device.type,
        "members_trained": len(trained_split(splits, canaries)),
    }
    with component("accuracy"):
        test = splits.test if canaries is None else canaries.test
        row["test_acc"] = accuracy(model, test, device)
        # the accuracy's own noise: exact 95% interval over the test images it counts
        row["test_acc_lo"], row["test_acc_hi"] = (
            clopper_pearson(round(row["test_acc"] * len(test)), len(test))
            if len(test)
            else (None, None)
        )
        row["train_acc"] = accuracy(model, members, device)
    row |= {
        "dp_epsilon": trained.dp_epsilon if trained else None,
        "epochs_run": trained.epochs_run if trained else None,
        "train_seconds": trained.seconds if trained else None,
    }
    privacy, scores = measure_privacy(config, splits, model, members, device, canaries=canaries)
    row.update(privacy)
    row["measure_seconds"] = time.perf_counter() - started
    row.update(versions())
    row["scores"] = scores
    return row
