"""Fixed trials whose rows must not change when the code is reorganized.

`CONFIGS` are small digits trials that between them switch on every mechanism, a shadow,
LiRA and DtC. `record(row)` keeps what a row says about the model and its measurement: every
column but the timings, the versions and the git sha, plus a summary of each per-sample score
array (exact for integer arrays, mean / std / quantiles for floats). Regenerate the stored
rows only for a deliberate change of behaviour:

    PYTHONPATH=. python tests/reference_rows.py
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

STORED = Path(__file__).resolve().parent / "data" / "reference_rows.json"

_MEASURE = {
    "attacks": {
        "merlin_neighbours": 5,
        "n_bootstrap": 20,
        "n_permutations": 20,
        "shadow_calibration": True,
    },
    "dtc": {"max_samples": 40, "bisection_steps": 3, "pgd_steps": 4},
}

#: name -> trial config: each runs in a few seconds on one CPU thread.
CONFIGS: dict[str, dict[str, Any]] = {
    # No DP-SGD: input, output and model mechanisms together, plus LiRA with two references.
    "dropout+label_smoothing+augment": {
        "epochs": 3,
        "seed": 1,
        "mechanisms": {"dropout": 0.2, "label_smoothing": 0.1, "augment": 1},
        **_MEASURE,
        "attacks": {**_MEASURE["attacks"], "lira_reference_models": 2},
    },
    # DP-SGD with its riders, next to the mechanisms that combine with it.
    "dp_noise+weight_decay+early_stopping+cutout+input_noise": {
        "epochs": 3,
        "mechanisms": {
            "dp_noise": 1.0,
            "dp_clip": 2.0,
            "weight_decay": 0.01,
            "early_stopping": 2,
            "cutout": 2,
            "input_noise": 0.1,
        },
        **_MEASURE,
    },
    # The mechanisms DP-SGD excludes, and the remaining output-level ones.
    "distillation+adv_reg+mixup+disturb_label+confidence_penalty": {
        "epochs": 2,
        "seed": 2,
        "norm": "batch",
        "mechanisms": {
            "distillation": 4.0,
            "adv_reg": 0.5,
            "mixup": 0.4,
            "disturb_label": 0.1,
            "confidence_penalty": 0.5,
        },
        **_MEASURE,
    },
}

#: Columns that depend on the machine, the clock or the checkout, not on the trial.
VOLATILE = {"train_seconds", "measure_seconds", "git_sha", "device"}


def _is_volatile(column: str) -> bool:
    return column in VOLATILE or column.endswith("_version")


def _summary(values: np.ndarray) -> dict[str, Any]:
    """Return a comparable summary of one per-sample array."""
    array = np.asarray(values)
    if array.dtype.kind in "biu":
        digest = hashlib.sha256(np.ascontiguousarray(array.astype(np.int64)).tobytes())
        return {"kind": "int", "n": int(array.size), "sha256": digest.hexdigest()}
    floats = array.astype(np.float64)
    finite = floats[np.isfinite(floats)]
    quantiles = np.quantile(finite, [0.0, 0.1, 0.5, 0.9, 1.0]) if finite.size else []
    return {
        "kind": "float",
        "n": int(floats.size),
        "finite": int(finite.size),
        "mean": float(finite.mean()) if finite.size else None,
        "std": float(finite.std()) if finite.size else None,
        "quantiles": [float(q) for q in quantiles],
    }


def record(row: dict[str, Any]) -> dict[str, Any]:
    """Return the stable part of a `run_trial` row: its columns and score summaries."""
    columns = {k: v for k, v in row.items() if k != "scores" and not _is_volatile(k)}
    for key, value in columns.items():
        if isinstance(value, float) and not math.isfinite(value):
            columns[key] = repr(value)
    scores = {name: _summary(values) for name, values in row["scores"].items()}
    return {"columns": columns, "scores": scores}


def run(name: str) -> dict[str, Any]:
    """Run one of the fixed trials on one CPU thread and return its record."""
    import torch

    from raymia.trial import run_trial

    torch.set_num_threads(1)
    return record(run_trial({**CONFIGS[name], "device": "cpu"}))


if __name__ == "__main__":
    STORED.parent.mkdir(parents=True, exist_ok=True)
    STORED.write_text(json.dumps({name: run(name) for name in CONFIGS}, indent=1) + "\n")
    print(f"wrote {STORED}")
