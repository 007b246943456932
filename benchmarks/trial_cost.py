"""Benchmark: where one trial's time and memory go, at four data sizes, and how each part grows.

One trial per size, each in a fresh process, its parts timed by `raymia.costs` (target
training, the shadow's and reference models' training, each attack's scoring, intervals and
nulls, eps_lb, canaries, DtC, ...) with each part's peak resident memory. Sizes:

    digits           350 members, 8x8 grey (the default trial)
    mnist-5k         1,000 members, 28x28 grey
    synthetic-2500   2,500 members of synthetic-cifar10 (32x32x3, the VGG-style network)
    synthetic-10000  10,000 members of synthetic-cifar10

`synthetic-cifar10` is generated in memory: its figures are the cost of data of CIFAR-10's
shape, never a statement about leakage. Printed: seconds per part and size, each part's log-log
slope against the number of scored samples (members + non-members in the evaluation set), the
peak memory per size, and last, per size, measurement apart from the reference models'
training against the target's training (`(measure_seconds - reference_seconds) /
train_seconds`; the target is 1x, 1.5x on digits).

    python benchmarks/trial_cost.py [--sizes digits,mnist-5k,synthetic-2500,synthetic-10000]
                                    [--epochs N] [--set KEY=VALUE ...] [--threads 2]

`--epochs` and `--set` (any trial setting, e.g. `--set attacks.merlin_neighbours=20`) apply to
every size: a cheaper run for a first look; the targets are judged at the defaults.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

SIZES: dict[str, dict[str, Any]] = {
    "digits": {"dataset": "digits"},
    "mnist-5k": {"dataset": "mnist-5k"},
    "synthetic-2500": {"dataset": "synthetic-cifar10"},
    "synthetic-10000": {
        "dataset": "synthetic-cifar10",
        "members": 10_000,
        "non_members": 10_000,
        "held_out": 1_000,
        "reference": 12_000,
    },
}
#: the target's training, apart from the measurement
TRAINING = "target training"
#: the reference models' training: measured, but apart from the measurement's target
REFERENCE = "reference training"


def trial_config(size: str, epochs: int | None, settings: list[str]) -> dict[str, Any]:
    """Return the trial config of one benchmark size, with `--epochs` and `--set` applied
    as `raymia trial --set` applies them (:func:`raymia.trial.config.apply_overrides`)."""
    from raymia.trial.config import apply_overrides

    config: dict[str, Any] = dict(SIZES[size])
    if epochs is not None:
        config["epochs"] = epochs
    return apply_overrides(config, settings)


def run_size(config: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run one trial in this (fresh) process; return its row's timings, the number of scored
    samples and each part's seconds and peak memory."""
    import torch

    from raymia.costs import component, recording
    from raymia.data.datasets import load_pool
    from raymia.trial.config import parse_trial_config
    from raymia.trial.runner import run_trial

    torch.set_num_threads(threads)
    parsed = parse_trial_config(config)
    with recording(memory=True) as costs:
        with component("data"):
            pool = load_pool(parsed.dataset)
        row = run_trial(parsed, pool)
    return {
        "scored": 2 * int(row["eval_members"]),
        "train_seconds": row["train_seconds"],
        "reference_seconds": row["reference_seconds"],
        "measure_seconds": row["measure_seconds"],
        "test_acc": row["test_acc"],
        "costs": {
            name: {"seconds": c.seconds, "calls": c.calls, "peak_bytes": c.peak_bytes}
            for name, c in costs.items()
        },
    }


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Return the least-squares slope of log(y) on log(x), or None with under two points."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(points) < 2 or len({p[0] for p in points}) < 2:
        return None
    lx, ly = np.array(points).T
    return float(np.polyfit(lx, ly, 1)[0])


def report(results: dict[str, dict[str, Any]]) -> str:
    """Return the benchmark's tables: seconds per part, slopes, peak memory, ratios.

    Two slopes per part: over the sizes of one data set (the same network and image size, so
    the slope is the growth in the scored samples alone: the synthetic pair) and over every
    size (which mixes networks: an 8x8 digit costs far less than a 32x32x3 image)."""
    sizes = list(results)
    parts: list[str] = []
    for result in results.values():
        parts += [p for p in result["costs"] if p not in parts and p != "data"]
    scored = [results[s]["scored"] for s in sizes]
    same = [s for s in sizes if s.startswith("synthetic-")]

    def seconds_of(part: str, names: list[str]) -> list[float]:
        return [results[s]["costs"].get(part, {}).get("seconds", 0.0) for s in names]

    def shown(fit: float | None) -> str:
        return "n/a" if fit is None else f"{fit:.2f}"

    lines = [
        "| part | "
        + " | ".join(f"{s} ({n:,} scored)" for s, n in zip(sizes, scored, strict=True))
        + " | slope, one data set | slope, all sizes |",
        "|---" * (len(sizes) + 3) + "|",
    ]
    for part in parts:
        seconds = seconds_of(part, sizes)
        within = slope([results[s]["scored"] for s in same], seconds_of(part, same))
        cells = " | ".join(f"{x:.2f}" for x in seconds)
        lines.append(f"| {part} | {cells} | {shown(within)} | {shown(slope(scored, seconds))} |")
    peaks = []
    for s in sizes:
        found = [c["peak_bytes"] for c in results[s]["costs"].values() if c["peak_bytes"]]
        peaks.append(f"{max(found) / 2**30:.2f} GB" if found else "n/a")
    lines.append("| peak memory | " + " | ".join(peaks) + " | | |")
    lines.append("")
    lines.append("where the peak memory is reached: each part's own peak (GB)")
    lines.append("| part | " + " | ".join(sizes) + " |")
    lines.append("|---" * (len(sizes) + 1) + "|")
    for part in parts:
        cells = []
        for s in sizes:
            peak = results[s]["costs"].get(part, {}).get("peak_bytes")
            cells.append(f"{peak / 2**30:.2f}" if peak else "n/a")
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("measurement apart from the reference models / the target's training:")
    for s in sizes:
        r = results[s]
        apart = r["measure_seconds"] - r["reference_seconds"]
        lines.append(
            f"  {s}: ({r['measure_seconds']:.1f} - {r['reference_seconds']:.1f}) / "
            f"{r['train_seconds']:.1f} s = {apart / r['train_seconds']:.2f}x"
            f"  (test_acc {r['test_acc']:.3f})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default=",".join(SIZES), help="comma-separated, of: " + ", ".join(SIZES)
    )
    parser.add_argument("--epochs", type=int, help="every size's epochs (default: the data set's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per trial")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"--sizes: unknown {unknown}; expected some of {', '.join(SIZES)}")
    fresh = multiprocessing.get_context("spawn")
    results = {}
    for size in sizes:
        config = trial_config(size, args.epochs, args.set)
        with ProcessPoolExecutor(max_workers=1, mp_context=fresh) as process:
            results[size] = process.submit(run_size, config, args.threads).result()
        r = results[size]
        print(
            f"{size}: train {r['train_seconds']:.1f} s, measure {r['measure_seconds']:.1f} s "
            f"(reference models {r['reference_seconds']:.1f} s), {r['scored']:,} scored",
            flush=True,
        )
    print()
    print(report(results))


if __name__ == "__main__":
    main()
