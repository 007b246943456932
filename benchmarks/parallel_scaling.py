"""Benchmark: trials per minute with 2 concurrent trials against 1, on a 2-core machine.

The same 8 digits trials (the default trial under 8 seeded mechanism settings; 1 CPU and
1 torch thread each) run through `raymia sweep` twice in one process: one at a time, then two
at a time, Ray's start-up included in both. Prints the throughput ratio last (target >= 1.7).
`--trial light` uses the benchmarks' light trial, where the fixed start-up weighs more.

    python benchmarks/parallel_scaling.py [--trials 8] [--trial default|light]
"""

from __future__ import annotations

import argparse
import time

from common import TRIAL, configurations, require_completed, scratch, write_grid_space

from raymia.sweep.run import run_sweep
from raymia.sweep.settings import SweepSettings


def trials_per_minute(space: str, out: str, concurrent: int, n: int) -> float:
    settings = SweepSettings(
        space=space, out=out, search="grid", cpus_per_trial=1, max_concurrent=concurrent
    )
    started = time.perf_counter()
    df = run_sweep(settings)
    elapsed = time.perf_counter() - started
    require_completed(df, n)
    return n / elapsed * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--trial", choices=["default", "light"], default="default")
    args = parser.parse_args()
    trial = TRIAL if args.trial == "light" else {"dataset": "digits"}
    with scratch() as tmp:
        space = str(write_grid_space(tmp / "space.yaml", configurations(args.trials), trial))
        one = trials_per_minute(space, str(tmp / "one"), 1, args.trials)
        two = trials_per_minute(space, str(tmp / "two"), 2, args.trials)
    print(f"1 concurrent: {one:.1f} trials/min, 2 concurrent: {two:.1f} trials/min")
    print(f"parallel scaling (2 concurrent / 1): {two / one:.2f}x")


if __name__ == "__main__":
    main()
