"""Benchmark: how soon the first trial starts after `run_sweep` is called.

A one-trial sweep of the benchmarks' light trial on a local Ray of its own, timed from the call
to the trial's `started_at` (the driver's own imports are done before the call): as it runs,
and with Ray's idle workers started for the first driver (Ray's default, which the sweep turns
off: `raymia.sweep.run.OWN_RAY_SYSTEM_CONFIG`). The floor, measured in the same run: `ray.init`
with the sweep's options, then one fresh Ray actor importing what a trial's worker imports
(Tune's function trainable and raymia's trial), one after the other: what any trial on a
fresh Ray pays before it can start. Each run is a fresh process; the three alternate. Prints
the medians and, last, first trial start / floor (the issue's absolute target, 4 s, beside it).

    python benchmarks/quick_start.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from common import alternating_runs, require_completed, scratch, write_grid_space

from raymia.sweep import run as sweep_run
from raymia.sweep.settings import SweepSettings

# a light trial with nothing varied: the one configuration is the trial defaults
ONE_TRIAL = [{"dropout": 0.0}]
#: What a trial's worker imports before its trial starts.
TRIAL_MODULES = (
    "ray.tune.trainable.function_trainable",
    "raymia.sweep.worker",
    "raymia.trial.runner",
)


def _first_trial(prestart: bool) -> tuple[float, float]:
    """Run a one-trial sweep; return (seconds from the call until Ray was up, until the
    trial started)."""
    if prestart:
        sweep_run.OWN_RAY_SYSTEM_CONFIG = {}
    init_ray = sweep_run._init_ray
    marks: dict[str, float] = {}

    def timed_init(settings):
        out = init_ray(settings)
        marks["ray_up"] = time.time()
        return out

    sweep_run._init_ray = timed_init
    with scratch() as tmp:
        space = write_grid_space(tmp / "space.yaml", ONE_TRIAL)
        settings = SweepSettings(
            space=str(space), out=str(tmp / "sweep"), search="grid", cpus_per_trial=1
        )
        called = time.time()
        df = sweep_run.run_sweep(settings)
    require_completed(df, 1)
    return marks["ray_up"] - called, float(df["started_at"].min()) - called


def sweep() -> tuple[float, float]:
    """The sweep as it runs."""
    return _first_trial(prestart=False)


def sweep_prestart() -> tuple[float, float]:
    """The sweep on a Ray that starts its idle workers for the first driver (Ray's default)."""
    return _first_trial(prestart=True)


def floor() -> tuple[float, float]:
    """Return (seconds for `ray.init`, seconds until a fresh actor has imported the trial's
    modules), from the call."""
    import ray

    called = time.time()
    ray.init(
        _temp_dir=tempfile.mkdtemp(prefix="raymia-ray-", dir="/tmp"),
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        configure_logging=False,
        _system_config=sweep_run.OWN_RAY_SYSTEM_CONFIG,
    )
    ray_up = time.time()

    @ray.remote(num_cpus=1)
    class Importer:
        def ready(self, modules: tuple[str, ...]) -> bool:
            import importlib

            for name in modules:
                importlib.import_module(name)
            return True

    ray.get(Importer.remote().ready.remote(TRIAL_MODULES))
    done = time.time()
    ray.shutdown()
    return ray_up - called, done - called


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, alternating")
    args = parser.parse_args()
    runs = alternating_runs(
        {"sweep": sweep, "floor": floor, "prestart": sweep_prestart},
        args.repeats,
        (),
        describe=lambda r: f"Ray up {r[0]:.2f} s, first trial / actor ready {r[1]:.2f} s",
    )
    median = {name: statistics.median(r[1] for r in results) for name, results in runs.items()}
    ray_up = {name: statistics.median(r[0] for r in results) for name, results in runs.items()}
    print(
        "Ray up, medians: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in ray_up.items())
    )
    print(
        f"first trial starts, median: {median['sweep']:.2f} s after the call "
        f"({median['prestart']:.2f} s with Ray's idle workers for the first driver; target 4 s)"
    )
    print(f"floor (ray.init, then a fresh worker's imports), median: {median['floor']:.2f} s")
    print(f"first trial start / floor: {median['sweep'] / median['floor']:.2f}")


if __name__ == "__main__":
    main()
