"""Benchmark: orchestration overhead of `raymia sweep` over a plain loop of `run_trial`.

The same 16 digits trials run twice, side by side in one process: through the sweep engine
(Ray Tune, one trial at a time, Ray's start-up included) and as a plain in-process loop over
`run_trial`. Both use 2 torch threads per trial. Prints sweep time / loop time last
(target <= 1.15).

    python benchmarks/orchestration_overhead.py [--trials 16]
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
    args = parser.parse_args()
    points = configurations(args.trials)

    started = time.perf_counter()
    pool = load_pool("digits")
    for point in points:
        run_trial({**TRIAL, "mechanisms": point}, pool, threads=args.threads)
    loop_s = time.perf_counter() - started
    torch.set_num_threads(args.threads)

    with scratch() as tmp:
        space = write_grid_space(tmp / "space.yaml", points)
        settings = SweepSettings(
            space=str(space),
            out=str(tmp / "sweep"),
            search="grid",
            cpus_per_trial=args.threads,
            max_concurrent=1,
        )
        started = time.perf_counter()
        df = run_sweep(settings)
        sweep_s = time.perf_counter() - started
    assert len(df) == args.trials and (df["status"] == "ok").all()
    print(f"{args.trials} trials: plain loop {loop_s:.1f} s, raymia sweep {sweep_s:.1f} s")
    print(f"orchestration overhead (sweep / loop): {sweep_s / loop_s:.2f}")


if __name__ == "__main__":
    main()
