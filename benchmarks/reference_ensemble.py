"""Benchmark: a trial's reference models trained as one batched ensemble, one after another,
and on 2 Ray workers.

K = 8 and K = 16 offline reference models of one default digits trial
(`attacks.lira_reference_models: K`, everything else the default trial), each way in a fresh
process: `reference_training: sequential` and `ensemble` in one process with `--threads`
torch threads (both cores by default), and sequential on `--workers` Ray actors in a
placement group of 1-CPU bundles, as a sweep trial with `--reference-workers 2` runs them
(the actors started before the timing, as a sweep trial starts them while it trains its
target). The same models each way: the workers' equal the sequential ones bit for bit with
one thread (checked), the ensemble's to float tolerance (the largest logit difference on the
test images and the share of equal predictions are printed). The last line is
``ratio: X``, sequential / ensemble seconds at K = 16.

    python benchmarks/reference_ensemble.py [--models 8,16] [--threads 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import fresh_result, local_ray, scratch

from raymia.data.datasets import load_splits
from raymia.trial.config import TrialConfig
from raymia.trial.reference_models import train_reference_models, training_jobs_run_by

WAYS = ("sequential", "ensemble", "workers")


def _train(k: int, way: str, threads: int, workers: int) -> tuple[float, list[torch.nn.Module]]:
    """Return (seconds, models) of training one default digits trial's K reference models."""
    path = "sequential" if way == "workers" else way
    config = TrialConfig.model_validate(
        {
            "dataset": "digits",
            "device": "cpu",
            "reference_training": path,
            "attacks": {"lira_reference_models": k},
        }
    )
    splits = load_splits("digits", config.seed)
    sizes = {"n_trained": len(splits.members), "n_held_out": len(splits.held_out)}

    def train() -> list[torch.nn.Module]:
        return train_reference_models(
            config, splits.info, splits.reference, k, torch.device("cpu"), **sizes
        )

    if way != "workers":
        torch.set_num_threads(threads)
        started = time.perf_counter()
        models = train()
        return time.perf_counter() - started, models
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from raymia.sweep.reference_tasks import BundleRunner

    torch.set_num_threads(1)
    with local_ray(workers):
        group = placement_group([{"CPU": 1.0}] * workers)
        ray.get(group.ready())
        runner = BundleRunner(group, range(workers))
        ray.get([worker.ready.remote() for worker in runner.start()])
        started = time.perf_counter()
        with training_jobs_run_by(runner):
            models = train()
        seconds = time.perf_counter() - started
        runner.close()
        remove_placement_group(group)
    return seconds, models


def one(k: int, way: str, threads: int, workers: int, out: Path) -> None:
    """Measure one case; save its models' logits on the test images, print its RESULT."""
    seconds, models = _train(k, way, threads, workers)
    test = load_splits("digits", 0).test.x
    with torch.no_grad():
        logits = torch.stack([m(test) for m in models])
    torch.save(logits, out)
    print("RESULT " + json.dumps({"seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="8,16", help="comma-separated K")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, in-process ways")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors of 1 CPU each")
    parser.add_argument("--one", nargs=2, metavar=("K", "WAY"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(int(args.one[0]), args.one[1], args.threads, args.workers, args.out)
        return
    ks = [int(k) for k in args.models.split(",")]
    rows = []
    with scratch() as tmp:
        for k in ks:
            seconds, logits = {}, {}
            for way in WAYS:
                out = tmp / f"{k}-{way}.pt"
                extra = ["--threads", str(args.threads), "--workers", str(args.workers)]
                result = fresh_result(
                    __file__, [str(k), way, *extra, "--out", str(out)], f"K = {k}, {way}"
                )
                seconds[way] = result["seconds"]
                logits[way] = torch.load(out)
                print(f"K = {k:>2}, {way:>10}: {seconds[way]:6.1f} s", flush=True)
            difference = (logits["ensemble"] - logits["sequential"]).abs().max().item()
            agree = (
                (logits["ensemble"].argmax(-1) == logits["sequential"].argmax(-1)).float().mean()
            )
            workers_same = torch.equal(logits["workers"], logits["sequential"])
            if args.threads == 1 and not workers_same:
                raise SystemExit("benchmark: the workers trained different models; no figure")
            rows.append((k, seconds, difference, float(agree), workers_same))
    print()
    print(
        f"| K | sequential ({args.threads} threads) | ensemble ({args.threads} threads) | "
        f"{args.workers} workers | sequential / ensemble | sequential / workers | "
        "ensemble vs sequential: largest logit difference, equal predictions |"
    )
    print("|---|---|---|---|---|---|---|")
    for k, s, difference, agree, _ in rows:
        print(
            f"| {k} | {s['sequential']:.1f} s | {s['ensemble']:.1f} s | {s['workers']:.1f} s | "
            f"{s['sequential'] / s['ensemble']:.2f}x | {s['sequential'] / s['workers']:.2f}x | "
            f"{difference:.2g}, {agree:.1%} |"
        )
    last = rows[-1][1]
    print(f"ratio: {last['sequential'] / last['ensemble']:.2f}")


if __name__ == "__main__":
    main()
