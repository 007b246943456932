"""Benchmark: the sweep engine's driver cost per trial at 1,000 and 10,000 trials.

A real `run_sweep` (Ray Tune schedules, Optuna's NSGA-II searches, raymia's recorder writes
every row and its scores) whose trainable returns a synthetic row of about 130 columns and a
small scores blob in milliseconds, so what is measured is the engine's bookkeeping, not
training. Each size runs in a fresh process, 2 trials at a time. Per size it prints the
driver's CPU seconds and wall seconds per trial in the steady state (from the first recorded
row to the last, so Ray's start-up does not flatter the small size), the recorder's own
milliseconds per trial, and the driver's peak memory; then the ratio of the per-trial CPU
cost between the largest and the smallest size (target <= 1.5).

    python benchmarks/sweep_scale.py [--sizes 1000 10000] [--full]   (--full adds 100,000)
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
from common import fresh_result, require_completed, scratch

COLUMNS = 125  # metric columns of the synthetic row (about 130 with the leading ones)


def synthetic_trainable(params: dict, pool: object = None, timeout: float | None = None) -> None:
    """A millisecond trial: a row of the real row's width, seeded by the parameters."""
    from ray import tune

    from raymia.sweep.worker import encode_scores

    mechanisms = params["mechanisms"]
    rng = np.random.default_rng(abs(hash(json.dumps(mechanisms, sort_keys=True))) % 2**32)
    row: dict = {"status": "ok", "error": None, "seed": params["seeds"][0], "dataset": "digits"}
    row.update(mechanisms)
    row.update({f"metric_{i:03d}": float(v) for i, v in enumerate(rng.random(COLUMNS))})
    row["test_acc"], row["adv"], row["dtc_adv"] = (float(v) for v in rng.random(3))
    scores = {"is_member": rng.random(200) < 0.5, "score_loss": rng.random(200)}
    row["scores_npz"] = encode_scores(scores)
    tune.report(row)


def one_size(trials: int) -> dict:
    """Run one sweep of `trials` synthetic trials in this process; return its figures."""
    from raymia.results import rows as results
    from raymia.sweep import run as sweep_run
    from raymia.sweep.run import run_sweep
    from raymia.sweep.settings import SweepSettings

    stamps: list[tuple[float, float]] = []
    in_recorder = [0.0]
    add = results.TrialsAppender.add

    def timed_add(self, row):
        started = time.process_time()
        try:
            return add(self, row)
        finally:
            now = time.process_time()
            in_recorder[0] += now - started
            stamps.append((now, time.perf_counter()))

    results.TrialsAppender.add = timed_add
    sweep_run.trainable = synthetic_trainable
    with scratch() as tmp:
        space = tmp / "space.yaml"
        space.write_text(
            "trial: {epochs: 1, dtc: {max_samples: 20}}\n"
            "mechanisms:\n  label_smoothing: {uniform: [0.0, 0.3]}\n"
            "  dropout: {uniform: [0.0, 0.5]}\n"
        )
        settings = SweepSettings(
            space=str(space),
            out=str(tmp / "sweep"),
            samples=trials,
            max_concurrent=2,
            sampler="nsga2",  # the engine's cost, not TPE's (which grows with the trials)
        )
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        df = run_sweep(settings)
        require_completed(df, trials)
        files = sum(1 for p in (tmp / "sweep").rglob("*") if p.is_file())
    (cpu0, wall0), (cpu1, wall1) = stamps[0], stamps[-1]
    steady = max(1, len(stamps) - 1)
    return {
        "trials": trials,
        "cpu_per_trial_ms": 1000 * (cpu1 - cpu0) / steady,
        "wall_per_trial_ms": 1000 * (wall1 - wall0) / steady,
        "recorder_per_trial_ms": 1000 * in_recorder[0] / len(stamps),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_growth_kb_per_trial": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before)
        / trials,
        "files": files,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--full", action="store_true", help="add a 100,000-trial sweep")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a fresh process per size
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one_size(args.one)), flush=True)
        return
    sizes = sorted(set(args.sizes + ([100_000] if args.full else [])))
    figures = []
    for size in sizes:
        figure = fresh_result(__file__, [str(size)], f"the {size}-trial sweep")
        figures.append(figure)
        print(
            f"{size:>7} trials: driver {figure['cpu_per_trial_ms']:.2f} ms CPU and "
            f"{figure['wall_per_trial_ms']:.2f} ms wall per trial, recorder "
            f"{figure['recorder_per_trial_ms']:.2f} ms per trial, peak memory "
            f"{figure['peak_rss_mb']:.0f} MB ({figure['rss_growth_kb_per_trial']:.1f} KB per "
            f"trial), {figure['files']} files",
            flush=True,
        )
    if len(figures) > 1:
        first, last = figures[0], figures[-1]
        ratio = last["cpu_per_trial_ms"] / first["cpu_per_trial_ms"]
        wall = last["wall_per_trial_ms"] / first["wall_per_trial_ms"]
        print(
            f"per-trial driver CPU, {last['trials']} / {first['trials']} trials: {ratio:.2f}x "
            f"(wall {wall:.2f}x; target <= 1.5)"
        )


if __name__ == "__main__":
    main()
