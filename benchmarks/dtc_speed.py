"""Benchmark: batched DtC (raymia.privacy.dtc.dtc) against the per-sample loop (dtc_reference).

Trains the digits trial's own model (raymia's SmallCNN, the default trial's settings), takes
500 evaluation samples (250 members, 250 non-members), runs both implementations on the same
samples in the same process, checks that they agree, and prints the speedup as its last line.

    python benchmarks/dtc_speed.py [--samples 500] [--threads N] [--norm l2] [--batched-runs 5]

The batched run takes about a second, so a neighbour's burst on a shared machine can double
it; it is timed several times (the first run cold, as in a trial) and the median is used. The
per-sample loop takes half a minute and averages such bursts out on its own.

Threads default to torch's default (all cores): the batched path is compute-bound and uses
them; the per-sample loop is dispatch-bound and barely does.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from raymia.data.datasets import load_splits
from raymia.models.networks import fuse_for_inference
from raymia.privacy.dtc import DtcOptions, dtc, dtc_reference, resolve_tau
from raymia.privacy.logits import true_class_margin
from raymia.trial.config import parse_trial_config
from raymia.trial.measure import balanced_evaluation
from raymia.trial.train import train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--norm", choices=["l2", "linf"], default="l2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batched-runs", type=int, default=5, help="median of this many runs")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    config = parse_trial_config({"epochs": args.epochs, "dtc": {"norm": args.norm}})
    splits = load_splits("digits", 0)
    # the model as the trial measures it (BatchNorm folded into the convolutions)
    model = fuse_for_inference(train_model(config, splits.info, splits.members).model)
    evaluation = balanced_evaluation(splits.members, splits.non_members, seed=0)
    half = args.samples // 2
    n = len(evaluation.is_member) // 2
    rows = np.r_[np.arange(half), n + np.arange(half)]
    x, y = evaluation.x[rows], evaluation.y[rows]

    options = DtcOptions(norm=args.norm)
    margin = true_class_margin(
        model, splits.reference.x, splits.reference.y, batch_size=options.batch_size
    )
    tau = resolve_tau(config.dtc.tau, margin)

    batched_times = []
    for _ in range(max(1, args.batched_runs)):
        started = time.perf_counter()
        batched = dtc(model, x, y, tau, options)
        batched_times.append(time.perf_counter() - started)
    batched_s = float(np.median(batched_times))
    started = time.perf_counter()
    loop = dtc_reference(model, x, y, tau, options)
    loop_s = time.perf_counter() - started

    agree = np.allclose(batched.distance, loop.distance, rtol=1e-6, atol=1e-9)
    same_censoring = np.array_equal(batched.censored, loop.censored)
    print(f"samples {len(y)}, norm {args.norm}, tau {tau:.6f}, threads {torch.get_num_threads()}")
    print(f"censored {batched.censored.mean():.3f}, median DtC {np.median(batched.distance):.3f}")
    print(f"agree with the per-sample loop: {agree and same_censoring}")
    runs = ", ".join(f"{t:.2f}" for t in batched_times)
    print(f"batched {batched_s:.2f} s (median of {runs}), per-sample loop {loop_s:.2f} s")
    print(f"dtc batched speedup over per-sample loop: {loop_s / batched_s:.1f}x")


if __name__ == "__main__":
    main()
