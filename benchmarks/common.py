"""What the sweep benchmarks share: a light digits trial, a fixed set of configurations, and a
local Ray of their own (own temp dir, shut down afterwards)."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

# Light enough that 16 trials take about a minute on 2 cores, heavy enough to be a real trial.
TRIAL = {
    "dataset": "digits",
    "epochs": 10,
    "attacks": {"merlin_neighbours": 20, "n_bootstrap": 100, "n_permutations": 100},
    "dtc": {"max_samples": 100, "bisection_steps": 6, "pgd_steps": 10},
}


R = TypeVar("R")


def require_completed(df: Any, n: int) -> None:
    """Stop the benchmark (exit message, no figure) unless the sweep ran `n` trials, all ok:
    a timing over failed trials would mislead."""
    ok = int((df["status"] == "ok").sum()) if "status" in df else 0
    if len(df) != n or ok != n:
        raise SystemExit(f"benchmark: {ok} of {n} trials completed ({len(df)} rows); no figure")


def alternating_runs(
    runners: dict[str, Callable[..., R]],
    repeats: int,
    args: tuple,
    describe: Callable[[R], str],
) -> dict[str, list[R]]:
    """Run each of two runners `repeats` times, each call in a fresh process, in A-B, B-A, ...
    order; print one line per run (`describe` of its result) and return the results by name.

    A shared machine speeds up and slows down over minutes: alternating which side goes first
    keeps a drift from favouring either, and a fresh process per run (as a user's script or
    `raymia sweep` would have) keeps any run from inheriting another's warm caches.
    """
    names = list(runners)
    results: dict[str, list[Any]] = {name: [] for name in names}
    fresh = multiprocessing.get_context("spawn")
    for repeat in range(max(1, repeats)):
        for name in names if repeat % 2 == 0 else names[::-1]:
            with ProcessPoolExecutor(max_workers=1, mp_context=fresh) as process:
                result = process.submit(runners[name], *args).result()
            results[name].append(result)
            print(f"run {repeat + 1}, {name}: {describe(result)}", flush=True)
    return results


def configurations(n: int, seed: int = 0) -> list[dict]:
    """Return n seeded mechanism settings (each a few mechanisms at random strengths)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        out.append(
            {
                "label_smoothing": round(float(rng.uniform(0, 0.3)), 3),
                "dropout": round(float(rng.uniform(0, 0.5)), 3),
                "weight_decay": round(float(10 ** rng.uniform(-5, -1)), 6),
                "augment": int(rng.integers(0, 2)),
            }
        )
    return out


def write_grid_space(path: Path, points: list[dict], trial: dict | None = None) -> Path:
    """Write a grid search space with `trial` settings (default: the light trial) and `points`."""
    settings = TRIAL if trial is None else trial
    path.write_text(yaml.safe_dump({"trial": settings, "seeds": [0], "grid": points}))
    return path


def write_search_space(path: Path, trial: dict | None = None) -> Path:
    """Write the space the Optuna comparisons search, with `trial` settings (default: light)."""
    space = {
        "trial": TRIAL if trial is None else trial,
        "mechanisms": {
            "label_smoothing": {"uniform": [0.0, 0.3]},
            "dropout": {"uniform": [0.0, 0.5]},
            "weight_decay": {"loguniform": [1.0e-5, 0.1]},
            "augment": {"int": [0, 1]},
        },
    }
    path.write_text(yaml.safe_dump(space))
    return path


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A temporary directory for sweep outputs, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="raymia-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fresh_result(script: str, args: list[str], what: str) -> dict:
    """Run ``python script --one ARGS`` (the benchmark measuring one case in a fresh process)
    and return the JSON of the last ``RESULT `` line it prints; stop the benchmark, naming
    `what` and the error, when it fails or prints none."""
    done = subprocess.run(
        [sys.executable, str(Path(script).resolve()), "--one", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"benchmark: {what} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


@contextlib.contextmanager
def local_ray(num_cpus: int, num_gpus: int = 0) -> Iterator[None]:
    """A local Ray of the caller's own (own temp dir, no dashboard, these logical resources),
    shut down afterwards: only what it started, never another Ray on the machine. The tests
    start theirs through this one too (`tests/helpers/local_ray.py`)."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix="raymia-local-ray-", dir="/tmp")
    ray.init(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        _temp_dir=temp_dir,
        include_dashboard=False,
        configure_logging=False,
        _node_ip_address="127.0.0.1",
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
