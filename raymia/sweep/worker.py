"""The trial side of a sweep, inside a Ray worker: one Tune trial is one `run_trial` call.

The row goes back to the driver through `tune.report`, its per-sample scores packed as one
npz blob (unpacked by `raymia.sweep.recorder`).
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np

from ..mechanisms.registry import dp_sgd_precedence

__all__ = ["decode_scores", "encode_scores", "trainable", "trial_config"]


def trial_config(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Return the TrialConfig dict for one Tune trial's parameters, and what DP switched off
    (a trial that samples DP-SGD on switches off the mechanisms it cannot run with)."""
    mechanisms, switched_off = dp_sgd_precedence(params["mechanisms"])
    config = {**params["trial"], "seed": params["seed"], "mechanisms": mechanisms}
    return config, switched_off


def encode_scores(scores: dict[str, np.ndarray]) -> bytes:
    """Return the per-sample score arrays packed as one npz blob."""
    buffer = io.BytesIO()
    np.savez(buffer, **scores)
    return buffer.getvalue()


def decode_scores(blob: bytes) -> dict[str, np.ndarray]:
    """Return the score arrays of an `encode_scores` blob."""
    with np.load(io.BytesIO(blob)) as data:
        return {name: data[name] for name in data.files}


def trainable(params: dict[str, Any], pool: Any = None) -> None:
    """Tune's function trainable: run one trial and report its row (or raise on failure)."""
    import ray
    import torch
    from ray import tune

    from ..trial import run_trial

    config, switched_off = trial_config(params)
    resources = ray.get_runtime_context().get_assigned_resources()
    gpu = bool(ray.get_gpu_ids()) and torch.cuda.is_available()
    # Ray's GPUs are logical: without CUDA the trial falls back to the CPU.
    config["device"] = "cuda" if gpu else "cpu"
    threads = max(1, int(resources.get("CPU", 1)))
    started = time.time()
    row = run_trial(config, pool, threads=threads)
    row["started_at"], row["finished_at"] = started, time.time()
    row["node_id"] = ray.get_runtime_context().get_node_id()
    scores = row.pop("scores")
    row["switched_off"] = ",".join(switched_off)
    row["scores_npz"] = encode_scores(scores)
    tune.report(row)
