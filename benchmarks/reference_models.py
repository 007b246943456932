"""Benchmark: K = 8 offline reference models on parallel Ray actors against serial training.

One default digits trial's reference models (`attacks.lira_reference_models: 8`, everything
else the default trial) trained twice in one run: serially in this process (torch's threads
set to 1, what a trial with --cpus-per-trial 1 has; `--serial-threads 2` gives it both
cores), then through the same map on P Ray actors in a placement group of P bundles of 1 CPU
(`raymia.sweep.reference_tasks.BundleRunner`, as a sweep trial with --reference-workers P runs
them). With one serial thread both give the same models (checked bit for bit; with more, the
largest difference is printed). The bundles' workers (Ray actors) are started (torch
imported) before the timing, as a sweep trial starts them while it trains its target; their
start-up is printed apart. Each side runs `--repeats` times, alternating which goes first (a
shared machine drifts); the ratio of the medians is printed last (target >= 1.6 on 2 cores).

    python benchmarks/reference_models.py [--models 8] [--workers 2] [--repeats 3]
                                          [--serial-threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import local_ray

from raymia.data.datasets import load_splits
from raymia.sweep.reference_tasks import BundleRunner
from raymia.trial.config import TrialConfig
from raymia.trial.reference_models import train_reference_models, training_jobs_run_by


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8, help="K reference models")
    parser.add_argument("--workers", type=int, default=2, help="P parallel tasks, 1 CPU each")
    parser.add_argument(
        "--serial-threads", type=int, default=1, help="torch threads of the serial run"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, median taken")
    args = parser.parse_args()

    config = TrialConfig.model_validate(
        {"dataset": "digits", "attacks": {"lira_reference_models": args.models}}
    )
    splits = load_splits("digits", config.seed)
    sizes = {"n_trained": len(splits.members), "n_held_out": len(splits.held_out)}

    def train() -> list[torch.nn.Module]:
        return train_reference_models(
            config, splits.info, splits.reference, args.models, torch.device("cpu"), **sizes
        )

    torch.set_num_threads(args.serial_threads)
    threads = f"{args.serial_threads} torch thread{'s' if args.serial_threads > 1 else ''}"

    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    times: dict[str, list[float]] = {"serial": [], "parallel": []}
    models: dict[str, list[torch.nn.Module]] = {}
    with local_ray(args.workers):
        started = time.perf_counter()
        group = placement_group([{"CPU": 1.0}] * args.workers)
        ray.get(group.ready())
        runner = BundleRunner(group, range(args.workers))
        ray.get([worker.ready.remote() for worker in runner.start()])
        print(f"workers started in {time.perf_counter() - started:.1f} s (not timed below)")
        for repeat in range(args.repeats):  # serial first, then parallel first, ...
            for name in ("serial", "parallel")[:: 1 if repeat % 2 == 0 else -1]:
                started = time.perf_counter()
                if name == "serial":
                    models[name] = train()
                else:
                    with training_jobs_run_by(runner):
                        models[name] = train()
                times[name].append(time.perf_counter() - started)
                print(f"run {repeat + 1}, {name}: {times[name][-1]:.1f} s", flush=True)
        runner.close()
        remove_placement_group(group)
    differences = [
        (x - y).abs().max().item() if x.is_floating_point() else float((x != y).any())
        for a, b in zip(models["serial"], models["parallel"], strict=True)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    ]
    if args.serial_threads == 1 and any(differences):
        raise SystemExit("benchmark: the two gave different models; no figure")
    same = "the same models, bit for bit"
    if any(differences):
        same = f"largest parameter difference {max(differences):.2g}"
    serial_s, parallel_s = statistics.median(times["serial"]), statistics.median(times["parallel"])
    print(
        f"{args.models} models, median of {args.repeats}: serial (1 process, {threads}) "
        f"{serial_s:.1f} s, {args.workers} bundles of 1 CPU {parallel_s:.1f} s; {same}"
    )
    print(f"reference models, {args.workers} parallel / serial: {serial_s / parallel_s:.2f}x")


if __name__ == "__main__":
    main()
