"""The trial side of a sweep, inside a Ray worker: one Tune trial is one `run_trial` call.

The row goes back to the driver through `tune.report`, its per-sample scores packed as one
npz blob (unpacked by `raymia.sweep.recorder`).
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..mechanisms.registry import dp_sgd_precedence

__all__ = [
    "SETUP_HOOK",
    "GPUUnusable",
    "check_driver_gpus",
    "cuda_problem",
    "decode_scores",
    "encode_scores",
    "trainable",
    "trial_config",
    "use_installed_package",
    "worker_runtime_env",
]

#: The setup hook Ray runs in every worker process of a sweep (`use_installed_package`).
SETUP_HOOK = "raymia.sweep.worker.use_installed_package"


def use_installed_package() -> None:
    """Ray's worker setup hook: bind ``raymia`` in this worker to the installed package.

    When a worker runs its first task of a job, Ray puts the driver's working directory (and
    its script's folder) first on the worker's ``sys.path``. A folder named ``raymia`` there,
    such as the checkout's root beside the ``sweep_entry.py`` that ``ray submit`` copies,
    would then shadow the installed package and every trial would fail to import. Ray runs
    this hook when the worker process starts, before that: importing it (``raymia.sweep.worker``)
    puts the installed ``raymia`` in ``sys.modules``, where later imports find it whatever
    the path says. Raises ImportError if even this import found something else.
    """
    import raymia

    if getattr(raymia, "__file__", None) is None:
        raise ImportError(f"raymia resolved to a folder, not the installed package: {raymia}")


def worker_runtime_env(runtime_env: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the sweep's Ray runtime_env: `runtime_env` (the caller's) with the setup hook."""
    return {**(runtime_env or {}), "worker_process_setup_hook": SETUP_HOOK}


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


class GPUUnusable(RuntimeError):
    """A trial was given GPUs on a node where CUDA is unusable (one-line message)."""


def cuda_problem() -> str | None:
    """Return why CUDA is unusable in this process (one line), or None when it is usable."""
    import torch

    if torch.cuda.is_available():
        return None
    build = f"torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}"
    try:
        torch.cuda.init()
    except Exception as err:  # torch says why: no driver, a driver too old for the build, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"CUDA is unusable here ({build}): {reason}"
    return f"CUDA is unusable here ({build}): torch.cuda.is_available() is False"


def check_driver_gpus(gpus_per_trial: float) -> None:
    """Raise ConfigError (one line) before any trial runs when trials ask for GPUs and Ray
    offers GPUs on the driver's own node but CUDA is unusable there.

    The check is what the driver can know: its own node. A node without GPUs in Ray (the
    cluster's CPU head) says nothing about the GPU workers, so there nothing is checked here
    and each trial checks its own node (`trainable` fails with one line).
    """
    import ray

    if gpus_per_trial <= 0:
        return
    here = ray.get_runtime_context().get_node_id()
    node = next((n for n in ray.nodes() if n["NodeID"] == here), None)
    if node is None or not node.get("Resources", {}).get("GPU"):
        return
    problem = cuda_problem()
    if problem:
        raise ConfigError(
            f"--gpus-per-trial {gpus_per_trial}: Ray offers GPUs on the driver's node "
            f"({node.get('NodeManagerAddress')}), but {problem}"
        )


def trainable(params: dict[str, Any], pool: Any = None) -> None:
    """Tune's function trainable: run one trial and report its row (or raise on failure)."""
    import ray
    from ray import tune

    from ..trial import run_trial

    config, switched_off = trial_config(params)
    resources = ray.get_runtime_context().get_assigned_resources()
    gpu_ids = ray.get_gpu_ids()
    problem = cuda_problem() if gpu_ids else None
    if problem:
        # Ray's GPUs are logical: a trial holding one never trains on the CPU instead.
        node = ray.get_runtime_context().get_node_id()[:8]
        raise GPUUnusable(f"Ray gave this trial GPU {gpu_ids} on node {node}, but {problem}")
    config["device"] = "cuda" if gpu_ids else "cpu"
    threads = max(1, int(resources.get("CPU", 1)))
    started = time.time()
    row = run_trial(config, pool, threads=threads)
    row["started_at"], row["finished_at"] = started, time.time()
    row["node_id"] = ray.get_runtime_context().get_node_id()
    scores = row.pop("scores")
    row["switched_off"] = ",".join(switched_off)
    row["scores_npz"] = encode_scores(scores)
    tune.report(row)
