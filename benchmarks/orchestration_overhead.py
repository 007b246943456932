"""Benchmark: orchestration overhead of `raymia sweep` over a plain loop of `run_trial`.

The same 16 digits trials (the default trial: 30 epochs and the full privacy measurement,
under 16 seeded mechanism settings) run twice, side by side in one process: through the sweep
engine (Ray Tune, one trial at a time, Ray's start-up and shut-down included) and as a plain
in-process loop over `run_trial`. Both use 2 torch threads per trial. Each run starts in a
fresh process, and with `--repeats 2` (default) the order is loop-sweep then sweep-loop, so a
shared machine's drift over minutes favours neither (single runs swung from 0.98 to 1.20).
Prints the fixed start-up cost, then total sweep time / total loop time last (target <= 1.15).
`--trial light` uses the benchmarks' light trial (10 epochs, pared-down measurement), where the
fixed cost weighs more.

    python benchmarks/orchestration_overhead.py [--trials 16] [--repeats 2] [--trial default|light]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import (
    TRIAL,
    alternating_runs,
    configurations,
    require_completed,
    scratch,
    write_grid_space,
)

from raymia.data.datasets import load_pool
from raymia.sweep.run import run_sweep
from raymia.sweep.settings import SweepSettings
from raymia.trial.runner import run_trial


def plain_loop(points: list[dict], trial: dict, threads: int) -> tuple[float, float]:
    """Run the trials in a loop in this process; return (seconds, 0.0 start-up)."""
    started = time.perf_counter()
    pool = load_pool("digits")
    for point in points:
        run_trial({**trial, "mechanisms": point}, pool, threads=threads)
    return time.perf_counter() - started, 0.0


def sweep(points: list[dict], trial: dict, threads: int) -> tuple[float, float]:
    """Run the trials through `run_sweep`, one at a time; return (seconds, seconds from the call
    to the first trial's start)."""
    torch.set_num_threads(threads)
    with scratch() as tmp:
        space = write_grid_space(tmp / "space.yaml", points, trial)
        settings = SweepSettings(
            space=str(space),
            out=str(tmp / "sweep"),
            search="grid",
            cpus_per_trial=threads,
            max_concurrent=1,
        )
        started, started_wall = time.perf_counter(), time.time()
        df = run_sweep(settings)
        elapsed = time.perf_counter() - started
    require_completed(df, len(points))
    return elapsed, float(df["started_at"].min() - started_wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, in A-B-B-A order")
    parser.add_argument("--trial", choices=["default", "light"], default="default")
    args = parser.parse_args()
    points = configurations(args.trials)
    trial = TRIAL if args.trial == "light" else {"dataset": "digits"}

    runs = alternating_runs(
        {"loop": plain_loop, "sweep": sweep},
        args.repeats,
        (points, trial, args.threads),
        describe=lambda result: f"{result[0]:.1f} s",
    )
    times = {name: [seconds for seconds, _ in results] for name, results in runs.items()}
    startups = [startup for _, startup in runs["sweep"]]
    loop_s, sweep_s = sum(times["loop"]), sum(times["sweep"])
    print(
        f"{args.trials} {args.trial} trials x {len(times['loop'])} runs: "
        f"plain loop {loop_s:.1f} s, raymia sweep {sweep_s:.1f} s (first trial started "
        f"{sum(startups) / len(startups):.1f} s after the call)"
    )
    print(f"orchestration overhead (sweep / loop): {sweep_s / loop_s:.2f}")


if __name__ == "__main__":
    main()
