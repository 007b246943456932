"""The trial side of a sweep, inside a Ray worker: one Tune trial is one configuration, run
by `run_trial` once per replicate seed (`raymia.sweep.space`: seeds are replicates).

The row goes back to the driver through `tune.report` (with several seeds, one row of their
means, `aggregate_replicates`), its per-sample scores packed as one npz blob (unpacked by
`raymia.sweep.recorder`).
"""

from __future__ import annotations

import io
import math
import os
import statistics
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from raymia.errors import ConfigError
from raymia.mechanisms.registry import dp_sgd_precedence

__all__ = [
    "SETUP_HOOK",
    "SPREAD_COLUMNS",
    "GPUUnusable",
    "LOGICAL_GPUS_ENV",
    "LOGICAL_GPU_DEVICE",
    "aggregate_replicates",
    "check_driver_gpus",
    "cuda_problem",
    "decode_scores",
    "encode_scores",
    "failure_status",
    "guarded_row",
    "logical_gpus",
    "replicate_seeds",
    "trainable",
    "trial_row",
    "trial_config",
    "use_installed_package",
    "worker_runtime_env",
]

#: Set to 1 in the environment of a Ray node whose GPUs are logical only (a test cluster that
#: declares GPUs it does not have): trials given one train on the CPU and say so in `device`.
LOGICAL_GPUS_ENV = "RAYMIA_LOGICAL_GPUS"
#: The row's `device` for a trial that held such a logical GPU.
LOGICAL_GPU_DEVICE = "cpu-logical-gpu"


def logical_gpus() -> bool:
    """Return whether this process's node declares its Ray GPUs logical (`LOGICAL_GPUS_ENV`)."""
    return os.environ.get(LOGICAL_GPUS_ENV, "") == "1"


#: The setup hook Ray runs in every worker process of a sweep (`use_installed_package`).
SETUP_HOOK = "raymia.sweep.worker.use_installed_package"
#: Columns whose spread over the replicate seeds a row keeps (`<column>_sd`), beside the
#: sweep's own objectives.
SPREAD_COLUMNS = ("test_acc", "adv", "adv_excess", "dtc_adv", "dtc_adv_excess")


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


def replicate_seeds(params: dict[str, Any]) -> list[int]:
    """Return the seeds one Tune trial runs: a search's replicate ``seeds``, or a grid
    trial's one ``seed``."""
    return list(params["seeds"]) if "seeds" in params else [params["seed"]]


def trial_config(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Return the TrialConfig dict for one Tune trial's parameters (at its first seed), and
    what DP switched off: nothing in a sweep whose space draws no clash (`SearchSpace.draw`);
    a sweep recorded before that switched off what DP-SGD could not run with."""
    mechanisms, switched_off = dp_sgd_precedence(params["mechanisms"])
    config = {**params["trial"], "seed": replicate_seeds(params)[0], "mechanisms": mechanisms}
    return config, switched_off


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def aggregate_replicates(rows: list[dict[str, Any]], spread: Sequence[str] = ()) -> dict[str, Any]:
    """Return one row for a configuration run at several seeds (`rows`, one per seed, in
    order, each with its ``seed``).

    A value every seed shares is kept as it is (the configuration, the versions); a number
    that differs is the mean over the seeds that measured it (NaN-free; None where none did);
    other differing values are joined with commas. ``seed`` is None, ``seeds`` lists the seeds
    ("0,1"), and each of `SPREAD_COLUMNS` and `spread` gets ``<column>_sd``, the standard
    deviation over the seeds (ddof=1).
    """
    keys = list(dict.fromkeys(k for row in rows for k in row))
    out: dict[str, Any] = {}
    for key in keys:
        values = [row.get(key) for row in rows]
        if all(v == values[0] for v in values[1:]) and not (
            _number(values[0]) and math.isnan(values[0])
        ):
            out[key] = values[0]
        elif all(v is None or _number(v) for v in values):
            finite = [float(v) for v in values if v is not None and math.isfinite(v)]
            out[key] = statistics.fmean(finite) if finite else None
        else:
            out[key] = ",".join(dict.fromkeys(str(v) for v in values if v is not None))
    out["seed"] = None
    out["seeds"] = ",".join(str(row["seed"]) for row in rows)
    for column in dict.fromkeys([*SPREAD_COLUMNS, *spread]):
        values = [row.get(column) for row in rows]
        finite = [float(v) for v in values if _number(v) and math.isfinite(v)]
        if column in out:
            out[f"{column}_sd"] = statistics.stdev(finite) if len(finite) > 1 else None
    return out


def _replicate_scores(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Return the per-sample scores of every seed in one set of arrays, with a ``seed`` array
    (one seed's alone where there is one)."""
    if len(rows) == 1:
        return rows[0]["scores"]
    out: dict[str, np.ndarray] = {}
    names = list(dict.fromkeys(n for row in rows for n in row["scores"]))
    lengths = [len(next(iter(row["scores"].values()))) for row in rows]
    for name in names:
        parts = []
        for row, n in zip(rows, lengths, strict=True):
            part = row["scores"].get(name)
            parts.append(np.asarray(part) if part is not None else np.full(n, np.nan))
        out[name] = np.concatenate(parts)
    out["seed"] = np.concatenate(
        [np.full(n, row["seed"]) for row, n in zip(rows, lengths, strict=True)]
    )
    return out


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
    if node is None or not node.get("Resources", {}).get("GPU") or logical_gpus():
        return
    problem = cuda_problem()
    if problem:
        raise ConfigError(
            f"--gpus-per-trial {gpus_per_trial}: Ray offers GPUs on the driver's node "
            f"({node.get('NodeManagerAddress')}), but {problem}"
        )


#: Seconds (at most; never more than the limit itself) a trial that ran past its limit gets
#: to stop at its next check (`raymia.deadline`) before it is given up as hung.
HUNG_GRACE_S = 30.0

# A timed-out trial's thread that never stopped (stuck outside raymia's loops, e.g. in a C
# call): the process is replaced before it runs another trial.
_hung: threading.Thread | None = None


def failure_status(error: BaseException | None) -> tuple[str, str]:
    """Return (status, one-line message) for a trial's exception: ``timeout`` for a trial past
    its time limit, ``diverged`` for a diverged training, else ``failed``."""
    if error is None:
        return "failed", "unknown error"
    text = "".join(traceback.format_exception_only(type(error), error))
    cause = error
    while getattr(cause, "cause", None) is not None or cause.__cause__ is not None:
        cause = getattr(cause, "cause", None) or cause.__cause__
    kinds = type(cause).__name__ + " " + text
    if "TrialTimeout" in kinds:
        status = "timeout"
    elif "TrainingDiverged" in kinds:
        status = "diverged"
    else:
        status = "failed"
    last = [line for line in text.strip().splitlines() if line.strip()]
    message = last[-1].strip() if last else type(cause).__name__
    if len(message) > 500:
        message = message[:497] + "..."
    return status, message


def trial_row(params: dict[str, Any], pool: Any = None) -> dict[str, Any]:
    """Run one trial in this worker and return its row (raises when the trial fails)."""
    import ray

    from raymia.sweep.reference_tasks import in_trial_placement_group
    from raymia.trial.runner import run_trial

    config, switched_off = trial_config(params)
    gpu_ids = ray.get_gpu_ids()
    logical = bool(gpu_ids) and logical_gpus()  # declared logical: the CPU, said in the row
    problem = cuda_problem() if gpu_ids and not logical else None
    if problem:
        # Ray's GPUs are logical: a trial holding one never trains on the CPU instead.
        node = ray.get_runtime_context().get_node_id()[:8]
        raise GPUUnusable(f"Ray gave this trial GPU {gpu_ids} on node {node}, but {problem}")
    config["device"] = "cuda" if gpu_ids and not logical else "cpu"
    resources = ray.get_runtime_context().get_assigned_resources()
    threads = max(1, int(resources.get("CPU", 1)))
    # with --reference-workers, reference models train on Ray actors in this trial's bundles
    with in_trial_placement_group():
        rows = [
            run_trial({**config, "seed": seed}, pool, threads=threads)
            for seed in replicate_seeds(params)
        ]
    scores = _replicate_scores(rows)
    for one in rows:
        del one["scores"]
    row = rows[0] if len(rows) == 1 else aggregate_replicates(rows, params.get("spread", []))
    if logical:
        row["device"] = LOGICAL_GPU_DEVICE
    row["switched_off"] = ",".join(switched_off)
    row["scores_npz"] = encode_scores(scores)
    return row


def guarded_row(
    run: Callable[[dict[str, Any], Any], dict[str, Any]],
    params: dict[str, Any],
    pool: Any = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Return the row of `run(params, pool)`, or a failure row when the trial fails.

    A trial's own failure (a configuration it refuses, divergence, a bug, its time limit) is
    deterministic: it becomes a row (``status`` failed / diverged / timeout, ``error`` one
    line, NaN objectives, so Optuna is told FAIL) and is never retried. Only what a retry can
    cure propagates to Tune, which retries it (``--max-failures``): a crashed worker process,
    or a GPU that is unusable on this node.

    The trial runs in a thread of its own under `timeout` seconds (`raymia.deadline`): past
    the limit its loops raise TrialTimeout within a batch; a trial stuck elsewhere is given
    up after min(HUNG_GRACE_S, timeout) more seconds with a ``timeout`` row, and this worker
    process is replaced before it runs another trial (the next trial here fails as a crashed
    worker and Tune retries it on a fresh one).
    """
    global _hung
    import ray

    from raymia import deadline
    from raymia.trial.runner import objective_columns

    if _hung is not None and _hung.is_alive():
        os._exit(70)  # a hung trial's thread still runs here: let Ray start a fresh worker
    started = time.time()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["row"] = run(params, pool)
        except BaseException as err:  # noqa: BLE001 (handed to the caller's thread)
            box["error"] = err

    deadline.start(timeout)
    thread = threading.Thread(target=target, name="raymia-trial", daemon=True)
    thread.start()
    thread.join(None if timeout is None else timeout + min(HUNG_GRACE_S, timeout))
    if thread.is_alive():
        _hung = thread
        box["error"] = deadline.TrialTimeout(
            f"the trial ran past its time limit of {timeout:g} s (--trial-timeout) and did not stop"
        )
    else:
        deadline.clear()
    error = box.get("error")
    if isinstance(error, GPUUnusable | KeyboardInterrupt | SystemExit):
        raise error
    if error is not None:
        status, message = failure_status(error)
        row: dict[str, Any] = dict.fromkeys(sorted(objective_columns()), float("nan"))
        row.update(status=status, error=message)
    else:
        row = box["row"]
    row["started_at"], row["finished_at"] = started, time.time()
    row["node_id"] = ray.get_runtime_context().get_node_id()
    return row


def trainable(params: dict[str, Any], pool: Any = None, timeout: float | None = None) -> None:
    """Tune's function trainable: run one trial under the sweep's time limit (`timeout`
    seconds, --trial-timeout; None for none) and report its row (a failure row for a trial's
    own failure; see `guarded_row`)."""
    from ray import tune

    tune.report(guarded_row(trial_row, params, pool, timeout))
