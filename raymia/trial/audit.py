"""Audit a trained model: one `raymia trial --save-model DIR` kept, or one trained elsewhere.

`raymia trial --save-model DIR` writes the target's weights (``model.pt``, a state dict), its
config (``config.json``) and its member rows (``members.json``: the training pool's rows it
trained on, and the canaries' test-split positions). `raymia audit DIR` draws the same splits
and canaries from that config, loads the weights into the same architecture and measures the
model as the trial did (:func:`raymia.trial.runner.measure_model`): the privacy columns equal the
trial's row on the same machine (the reference models retrain from the same seed).

A model trained elsewhere: `raymia audit --weights FILE --members FILE` with the data set,
architecture and recipe stated as for a trial (`--dataset`, `--set arch=...`, `--config`).
The members file lists the images the model trained on: indices into the data set's training
pool (for an ``.npz``, into its ``x``; for an image folder, its images in sorted order, or
their paths relative to its training folder), as a JSON list or one per line. The rest of the
pool is cut by the config's seed into as many non-members as members (the config's
`non_members` if set), a held-out set and the reference set. Reference models train with the
config's recipe, which is the user's claim about how the model was trained, not something
raymia saw: the row says so (`reference_recipe`). Canaries need the training run, so an
external audit has none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raymia.data.datasets import Split, Splits, load_pool
from raymia.errors import DataError, UsageError, quote, read_text_file, show_path
from raymia.trial.config import TrialConfig, parse_trial_config
from raymia.trial.runner import (
    CONFIG_FILE,
    MEMBERS_FILE,
    MODEL_FILE,
    measure_model,
    prepare_data,
    save_target,
    trained_split,
)
from raymia.trial.train import resolve_device, untrained_model

__all__ = [
    "CONFIG_FILE",
    "MEMBERS_FILE",
    "MODEL_FILE",
    "audit_external",
    "audit_saved",
    "read_members",
    "save_target",
]
# `raymia trial --save-model` writes with `save_target` (raymia.trial.runner) what is read back
# here.

#: `reference_recipe` in an audit's row: where the reference models' training recipe came from.
OWN_RECIPE = "the trial's config (measured)"
CLAIMED_RECIPE = "the user's stated config (a claim, not measured)"


def _load_weights(model: torch.nn.Module, weights: Path) -> torch.nn.Module:
    """Load a state dict into `model`; one line naming the file when it does not fit."""
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as err:
        raise DataError(f"{show_path(weights)}: not a readable weights file ({err})") from None
    if not isinstance(state, dict):
        raise DataError(f"{show_path(weights)}: expected a state dict, got {type(state).__name__}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise DataError(
            f"{show_path(weights)}: does not fit the architecture ({first[:160]}); expected the "
            "weights of the arch the config names"
        ) from None
    return model


def _measure(config: TrialConfig, splits: Splits, canaries: Any, weights: Path) -> dict[str, Any]:
    """Return the audit row of the weights in `weights` trained on `splits`' members."""
    device = resolve_device(config.device)
    splits = splits.to(device)
    canaries = canaries.to(device) if canaries is not None else None
    model = untrained_model(config, splits.info, trained_split(splits, canaries))
    model = _load_weights(model, weights).to(device)
    return measure_model(config, splits, canaries, model, device)


def audit_saved(directory: str | Path) -> dict[str, Any]:
    """Return the row of the target `raymia trial --save-model` wrote to `directory`, measured
    again. Raises DataError / ConfigError (one line) for a missing or mismatched file."""
    root = Path(directory)
    for name in (MODEL_FILE, CONFIG_FILE, MEMBERS_FILE):
        if not (root / name).is_file():
            raise DataError(
                f"{show_path(root)}: no {name}; expected a directory `raymia trial "
                "--save-model` wrote"
            )
    source = show_path(root / CONFIG_FILE)
    config = parse_trial_config(json.loads(read_text_file(root / CONFIG_FILE, DataError)), source)
    splits, canaries = prepare_data(config)
    record = json.loads(read_text_file(root / MEMBERS_FILE, DataError))
    saved = record.get("members", [])
    if record.get("dataset_sha256") not in (None, splits.info.sha256):
        raise DataError(
            f"{show_path(root / MEMBERS_FILE)}: the model trained on {config.dataset!r} with "
            f"content {str(record['dataset_sha256'])[:12]}..., which is now "
            f"{str(splits.info.sha256)[:12]}...: the data set has changed"
        )
    drawn = np.concatenate([splits.members.indices, canaries.members.indices if canaries else []])
    if [int(i) for i in drawn] != [int(i) for i in saved]:
        raise DataError(
            f"{show_path(root / MEMBERS_FILE)}: the members differ from those "
            f"{show_path(root / CONFIG_FILE)} draws from {config.dataset!r} (has the data set "
            "changed?)"
        )
    row = _measure(config, splits, canaries, root / MODEL_FILE)
    return row | {"audit": "saved", "reference_recipe": OWN_RECIPE}


def read_members(path: str | Path) -> list[int | str]:
    """Return the members a file lists: a JSON list (or an object with a ``members`` list) of
    indices or names, or one per line. Raises DataError (one line) for anything else."""
    text = read_text_file(path, DataError, "members file").strip()
    try:
        found = json.loads(text) if text[:1] in "[{" else None
    except json.JSONDecodeError as err:
        raise DataError(
            f"{show_path(path)}: not valid JSON ({err.msg}, line {err.lineno})"
        ) from None
    if isinstance(found, dict):
        found = found.get("members")
    if found is None:
        found = [line.strip() for line in text.splitlines() if line.strip()]
        found = [int(item) if item.lstrip("-").isdigit() else item for item in found]
    if not isinstance(found, list) or not found:
        raise DataError(f"{show_path(path)}: expected a non-empty list of member indices or names")
    bad = [item for item in found if not isinstance(item, int | str) or isinstance(item, bool)]
    if bad:
        raise DataError(f"{show_path(path)}: member {quote(bad[0])}: expected an index or a name")
    if len(set(found)) != len(found):
        raise DataError(f"{show_path(path)}: lists a member twice")
    return found


def _member_rows(config: TrialConfig, members: list[int | str], available: int) -> np.ndarray:
    """Return the training-pool rows of the listed members."""
    from raymia.data.files import is_file_dataset, pool_rows

    if is_file_dataset(config.dataset):
        return pool_rows(config.dataset, members)
    if any(isinstance(m, str) for m in members):
        raise DataError(f"data set {config.dataset!r}: its members are pool row indices, not names")
    rows = np.asarray(members, dtype=np.int64)
    if ((rows < 0) | (rows >= available)).any():
        raise DataError(
            f"member {int(rows[(rows < 0) | (rows >= available)][0])}: expected a row of "
            f"{config.dataset}'s training pool, 0..{available - 1}"
        )
    return rows


def external_splits(config: TrialConfig, members: list[int | str]) -> Splits:
    """Return the protocol's splits around a model trained elsewhere: the listed members, then
    the rest of the pool cut by the config's seed into non-members (as many as members, or
    the config's `non_members`), a held-out set and the reference set (the config's sizes,
    else what is left). Raises DataError (one line) when they do not fit."""
    pool = load_pool(config.dataset, config.data_root, config.download)
    info, available = pool.info, len(pool.train_y)
    rows = np.sort(_member_rows(config, members, available))
    rest = np.random.default_rng(config.seed).permutation(np.setdiff1d(np.arange(available), rows))
    n_non = config.non_members or len(rows)
    n_held = config.held_out or info.held_out
    n_ref = config.reference or len(rest) - n_non - n_held
    if n_non + n_held + n_ref > len(rest) or n_ref <= 0:
        raise DataError(
            f"{len(rows)} members leave {len(rest)} images of {config.dataset!r} for non-members "
            f"+ held_out + reference = {n_non} + {n_held} + {max(n_ref, 0)}: too few"
        )
    cuts = np.cumsum([n_non, n_held, n_ref])
    parts = np.split(rest[: cuts[-1]], cuts[:-1])

    def make(idx: np.ndarray) -> Split:
        idx = np.sort(idx)
        return Split(pool.train_x[torch.from_numpy(idx)], pool.train_y[torch.from_numpy(idx)], idx)

    test = Split(pool.test_x, pool.test_y, np.arange(len(pool.test_y)))
    non, held, reference = (make(part) for part in parts)
    return Splits(info, config.seed, make(rows), non, held, reference, test)


def audit_external(
    weights: str | Path, members_file: str | Path, config: TrialConfig
) -> dict[str, Any]:
    """Return the audit row of weights trained elsewhere on the members `members_file` lists,
    with `config` (data set, arch, recipe) as the user states it."""
    from raymia.data.datasets import check_reference_size
    from raymia.trial.reference_models import reference_model_count

    if config.attacks.canaries:
        raise UsageError(
            "attacks.canaries: an external model's canaries would have to be in its training "
            "run; audit it with canaries 0"
        )
    splits = external_splits(config, read_members(members_file))
    # the row's split sizes are the ones audited, not the data set's defaults
    config = config.model_copy(
        update={
            "members": len(splits.members),
            "non_members": len(splits.non_members),
            "held_out": len(splits.held_out),
            "reference": len(splits.reference),
        }
    )
    if reference_model_count(config.attacks):
        check_reference_size(len(splits.reference), len(splits.members), len(splits.held_out))
    row = _measure(config, splits, None, Path(weights))
    return row | {"audit": "external", "reference_recipe": CLAIMED_RECIPE}
