"""Fixed trials whose behaviour must not change when the code is reorganized, and their record.

`CONFIGS` are small digits trials that between them switch on every mechanism, a shadow,
LiRA and DtC. What is recorded of each, and how exactly it must hold
(tests/test_behaviour_unchanged.py):

- on any machine, exactly: the protocol's draws (the five splits, the balanced evaluation rows
  and DtC's rows, as digests of their pool indices), the canary draws, and every number that is
  a function of stored arrays alone: the attacks' scores from the stored logits, the leakage
  columns from the stored scores (`raymia.trial.measure.leakage_columns`: metrics, intervals, nulls,
  the empirical epsilon) and DtC's summary from the stored distances;
- on any machine, to a tolerance that rounding cannot exceed: the stored target weights, loaded
  into the trial's architecture, give the stored logits and DtC's tau;
- the row's schema (its columns, in order), and on the machine and library builds the record
  was made with (`machine()`), the whole row to 1e-9 (training rounds differently elsewhere).

`record(name)` returns (what goes in behaviour.json, the arrays of behaviour/<name>.npz).
Regenerate the record only for a deliberate change of behaviour:

    PYTHONPATH=tests python tests/helpers/behaviour_record.py
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "fixtures"
STORED = DATA / "behaviour.json"
ARRAYS = DATA / "behaviour"

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

#: Canary draws recorded: (seed, number of canaries) on digits' test split.
CANARY_DRAWS = ((0, 40), (1, 40), (7, 100))

#: Columns that depend on the machine, the clock or the checkout, not on the trial.
VOLATILE = {"train_seconds", "reference_seconds", "measure_seconds", "git_sha", "device"}


def _is_volatile(column: str) -> bool:
    return column in VOLATILE or column.endswith("_version")


def config(name: str) -> Any:
    """Return the validated TrialConfig of `CONFIGS[name]`, on the CPU."""
    from raymia.trial.config import parse_trial_config

    return parse_trial_config({**CONFIGS[name], "device": "cpu"})


def digest(*arrays: Any) -> str:
    """Return a SHA-256 of integer or boolean arrays (values and lengths; any machine)."""
    h = hashlib.sha256()
    for array in arrays:
        values = np.ascontiguousarray(np.asarray(array).astype(np.int64))
        h.update(str(values.shape).encode())
        h.update(values.tobytes())
    return h.hexdigest()


def machine() -> dict[str, str]:
    """Return what decides how a trained model rounds: the processor, the kernels torch
    dispatches to, and the builds of torch and numpy."""
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "machine": platform.machine(),
        "kernels": torch.backends.cpu.get_cpu_capability(),
        "mkl": os.environ.get("MKL_ENABLE_INSTRUCTIONS", ""),
        "onednn": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }


@functools.cache
def _splits(name: str) -> Any:
    from raymia.trial.runner import prepare_data

    return prepare_data(config(name))[0]


def protocol(name: str) -> dict[str, str]:
    """Return digests of the trial's draws: each split's pool indices, the balanced evaluation
    set (indices, membership) and DtC's member / non-member rows."""
    from raymia.privacy.dtc import balanced_rows
    from raymia.trial.measure import balanced_evaluation

    c = config(name)
    splits = _splits(name)
    found = {
        part: digest(getattr(splits, part).indices)
        for part in ("members", "non_members", "held_out", "reference", "test")
    }
    evaluation = balanced_evaluation(splits.members, splits.non_members, c.seed)
    found["evaluation"] = digest(evaluation.indices, evaluation.is_member, evaluation.y)
    n = len(evaluation.is_member) // 2
    y = evaluation.y.numpy()
    rows = balanced_rows(y[:n], y[n:], min(n, c.dtc.max_samples // 2), c.seed)
    found["dtc_rows"] = digest(*rows)
    return found


def canary_draws() -> dict[str, str]:
    """Return digests of `CANARY_DRAWS`: each canary's test row, wrong label and membership."""
    from raymia.privacy.canaries import draw_canaries

    splits = _splits(next(iter(CONFIGS)))
    found = {}
    for seed, n in CANARY_DRAWS:
        drawn = draw_canaries(splits.test, n, splits.info.num_classes, seed)
        scored = drawn.scored()
        found[f"seed={seed},n={n}"] = digest(scored.indices, scored.y, drawn.is_member())
    return found


def logits(model: Any, name: str) -> np.ndarray:
    """Return `model`'s float64 logits on the trial's evaluation set, as the attacks see
    them (the inference-fused model, in chunks)."""
    from raymia.models.networks import fuse_for_inference
    from raymia.privacy.logits import chunked
    from raymia.trial.measure import balanced_evaluation

    splits = _splits(name)
    evaluation = balanced_evaluation(splits.members, splits.non_members, config(name).seed)
    fused = fuse_for_inference(model)
    return chunked(fused, evaluation.x, evaluation.y, None, lambda z, _y: {"z": z})["z"]


def load_target(name: str, arrays: dict[str, np.ndarray]) -> Any:
    """Return the trial's architecture holding the stored target weights (`weight/...`)."""
    import torch

    from raymia.trial.train import untrained_model

    splits = _splits(name)
    model = untrained_model(config(name), splits.info, splits.members)
    state = {k[len("weight/") :]: torch.from_numpy(v) for k, v in arrays.items() if "weight/" in k}
    model.load_state_dict(state)
    return model.eval()


def stable(row: dict[str, Any]) -> dict[str, Any]:
    """Return the columns of a `run_trial` row that describe the trial (not the machine, the
    clock or the checkout), non-finite floats as their repr (JSON has none)."""
    columns = {
        k: v
        for k, v in row.items()
        if k != "scores" and not k.startswith("_") and not _is_volatile(k)
    }
    return {
        k: repr(v) if isinstance(v, float) and not math.isfinite(v) else v
        for k, v in columns.items()
    }


def run(name: str) -> dict[str, Any]:
    """Run one of the fixed trials on one CPU thread; return its row, and under `_target` the
    trained target model and under `_shadow` the shadow's (scores, is_member) or None."""
    import torch

    from raymia.trial import measure, runner

    captured: dict[str, Any] = {}
    train, reference_scores = runner.train_model, measure._reference_scores

    def capture_target(*args: Any, **kwargs: Any) -> Any:
        result = train(*args, **kwargs)
        captured.setdefault("target", result.model)
        return result

    def capture_shadow(*args: Any, **kwargs: Any) -> Any:
        found = reference_scores(*args, **kwargs)
        scores, is_member = found[1], found[2]
        captured["shadow"] = None if scores is None else (scores, is_member)
        return found

    torch.set_num_threads(1)
    runner.train_model, measure._reference_scores = capture_target, capture_shadow
    try:
        row = runner.run_trial(config(name))
    finally:
        runner.train_model, measure._reference_scores = train, reference_scores
    return {**row, "_target": captured["target"], "_shadow": captured.get("shadow")}


def record(name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run the trial; return what behaviour.json keeps of it and its arrays."""
    row = run(name)
    target, shadow = row.pop("_target"), row.pop("_shadow")
    arrays = {f"score/{k}": np.asarray(v) for k, v in row["scores"].items()}
    arrays["logits"] = logits(target, name)
    arrays.update({f"weight/{k}": v.detach().numpy() for k, v in target.state_dict().items()})
    if shadow is not None:
        arrays.update({f"shadow/{k}": np.asarray(v) for k, v in shadow[0].items()})
        arrays["shadow_is_member"] = np.asarray(shadow[1])
    meta = {
        "schema": [k for k in row if k != "scores"],
        "columns": json.loads(json.dumps(stable(row))),
        "protocol": protocol(name),
    }
    return meta, arrays


def load() -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Return the stored record and each trial's arrays."""
    meta = json.loads(STORED.read_text())
    arrays = {}
    for name in CONFIGS:
        with np.load(ARRAYS / f"{name}.npz") as f:
            arrays[name] = {k: f[k] for k in f.files}
    return meta, arrays


def main() -> None:
    """Record every fixed trial (and the canary draws) to behaviour.json and behaviour/."""
    ARRAYS.mkdir(parents=True, exist_ok=True)
    stored: dict[str, Any] = {"machine": machine(), "canaries": canary_draws(), "trials": {}}
    for name in CONFIGS:
        meta, arrays = record(name)
        stored["trials"][name] = meta
        np.savez_compressed(ARRAYS / f"{name}.npz", **arrays)
    STORED.write_text(json.dumps(stored, indent=1) + "\n")
    print(f"wrote {STORED} and {ARRAYS}/")


if __name__ == "__main__":
    main()
