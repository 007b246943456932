"""Benchmark: orchestration overhead of `raymia sweep` over a plain loop of `run_trial`.

The same 16 digits trials (the default trial: 30 epochs and the full privacy measurement,
under 16 seeded mechanism settings) run twice, side by side in one process: through the sweep
engine (Ray Tune, one trial at a time, Ray's start-up and shut-down included) and as a plain
in-process loop over `run_trial`. Both use 2 torch threads per trial. Prints the fixed start-up
cost, then sweep time / loop time last (target <= 1.15). `--trial light` uses the benchmarks'
light trial (10 epochs, pared-down measurement), where the fixed cost weighs more.

    python benchmarks/orchestration_overhead.py [--trials 16] [--trial default|light]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import TRIAL, configurations, scratch, write_grid_space

from raymia.data import load_pool
from raymia.sweep import SweepSettings, run_sweep
from raymia.trial import run_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trial", choices=["default", "light"], default="default")
    args = parser.parse_args()
    points = configurations(args.trials)
    trial = TRIAL if args.trial == "light" else {"dataset": "digits"}

    started = time.perf_counter()
    pool = load_pool("digits")
    for point in points:
        run_trial({**trial, "mechanisms": point}, pool, threads=args.threads)
    loop_s = time.perf_counter() - started
    torch.set_num_threads(args.threads)

    with scratch() as tmp:
        space = write_grid_space(tmp / "space.yaml", points, trial)
        settings = SweepSettings(
            space=str(space),
            out=str(tmp / "sweep"),
            search="grid",
            cpus_per_trial=args.threads,
            max_concurrent=1,
        )
        started, started_wall = time.perf_counter(), time.time()
        df = run_sweep(settings)
        sweep_s = time.perf_counter() - started
    assert len(df) == args.trials and (df["status"] == "ok").all()
    startup = df["started_at"].min() - started_wall
    print(
        f"{args.trials} {args.trial} trials: plain loop {loop_s:.1f} s, raymia sweep "
        f"{sweep_s:.1f} s (first trial started {startup:.1f} s after the call)"
    )
    print(f"orchestration overhead (sweep / loop): {sweep_s / loop_s:.2f}")


if __name__ == "__main__":
    main()
