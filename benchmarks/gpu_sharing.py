"""Benchmark: trials per minute with 4 trials sharing one GPU against 1 trial holding it.

The same N default trials (the default trial under N seeded mechanism settings, on the GPU
the default `device: auto` picks) run through `raymia sweep` twice in one process: one at a
time at `--gpus-per-trial 1`, then four at a time at `--gpus-per-trial 0.25`, each trial with
a quarter of the machine's CPUs in both runs, Ray's start-up included in both. Every row's
`device` must be `cuda`. Then one `raymia trial --json` of the default configuration runs on
CUDA and one on the CPU (with the same CPUs as a sweep trial), for the time of a trial on each.

Prints the throughput ratio (4 sharing / 1) and writes the summary to `--json-out` if given.
Exits 2 on a machine without a CUDA GPU.

    python benchmarks/gpu_sharing.py [--trials 8] [--dataset digits] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import configurations, require_completed, scratch, write_grid_space

#: Trials that share the GPU in the second run, each holding 1/SHARING of it.
SHARING = 4


def sweep_throughput(
    space: str, out: str, gpus_per_trial: float, concurrent: int, cpus_per_trial: int, n: int
) -> dict[str, Any]:
    """Run the sweep and return its timing: seconds, trials per minute, the trials' mean
    training and measuring seconds. Stops the benchmark (exit 1) unless all `n` trials
    completed, each on CUDA."""
    from raymia.sweep.run import run_sweep
    from raymia.sweep.settings import SweepSettings

    settings = SweepSettings(
        space=space,
        out=out,
        search="grid",
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        max_concurrent=concurrent,
    )
    started = time.perf_counter()
    df = run_sweep(settings)
    elapsed = time.perf_counter() - started
    require_completed(df, n)
    devices = sorted(set(df["device"].astype(str)))
    if devices != ["cuda"]:
        raise SystemExit(
            f"benchmark: --gpus-per-trial {gpus_per_trial}: trials ran on {', '.join(devices)}, "
            "not only cuda; no figure"
        )
    return {
        "gpus_per_trial": gpus_per_trial,
        "concurrent": concurrent,
        "cpus_per_trial": cpus_per_trial,
        "seconds": round(elapsed, 2),
        "trials_per_min": round(n / elapsed * 60, 3),
        "mean_train_seconds": round(float(df["train_seconds"].mean()), 3),
        "mean_measure_seconds": round(float(df["measure_seconds"].mean()), 3),
    }


def trial_seconds(dataset: str, device: str, threads: int) -> dict[str, Any]:
    """Run `raymia trial --json` of the default configuration on `device` in a fresh process
    and return its wall seconds and the trial's own training and measuring seconds."""
    command = [
        sys.executable,
        "-c",
        "import sys; from raymia.cli import main; sys.exit(main())",
        "trial",
        "--dataset",
        dataset,
        "--threads",
        str(threads),
        "--set",
        f"device={device}",
        "--json",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"benchmark: raymia trial on {device} failed: {done.stderr.strip()[-500:]}"
        )
    row = json.loads(done.stdout)
    if row["device"] != device:
        raise SystemExit(f"benchmark: raymia trial asked for {device} ran on {row['device']}")
    return {
        "device": device,
        "wall_seconds": round(elapsed, 2),
        "train_seconds": round(float(row["train_seconds"]), 3),
        "measure_seconds": round(float(row["measure_seconds"]), 3),
    }


def save(summary: dict[str, Any], path: Path | None) -> None:
    """Write the summary so far to `path` (if given), so a run cut short keeps what it measured."""
    if path is not None:
        path.write_text(json.dumps(summary, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu_sharing: no CUDA GPU on this machine; this benchmark needs one", flush=True)
        raise SystemExit(2)
    cpus_per_trial = max(1, (os.cpu_count() or 1) // SHARING)
    summary: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0),
        "torch_version": torch.__version__,
        "cpus": os.cpu_count(),
        "dataset": args.dataset,
        "trials": args.trials,
    }
    print(
        f"{summary['gpu']}, {summary['cpus']} CPUs, {args.trials} {args.dataset} trials", flush=True
    )
    with scratch() as tmp:
        points = configurations(args.trials)
        space = str(write_grid_space(tmp / "space.yaml", points, {"dataset": args.dataset}))
        one = sweep_throughput(space, str(tmp / "one"), 1.0, 1, cpus_per_trial, args.trials)
        print(f"1 trial at a time, 1 GPU each: {json.dumps(one)}", flush=True)
        summary["one"] = one
        save(summary, args.json_out)
        shared = sweep_throughput(
            space, str(tmp / "shared"), 1 / SHARING, SHARING, cpus_per_trial, args.trials
        )
        print(f"{SHARING} at a time, 1/{SHARING} GPU each: {json.dumps(shared)}", flush=True)
    summary["shared"] = shared
    summary["ratio"] = round(shared["trials_per_min"] / one["trials_per_min"], 3)
    save(summary, args.json_out)
    summary["trial_cuda"] = trial_seconds(args.dataset, "cuda", cpus_per_trial)
    summary["trial_cpu"] = trial_seconds(args.dataset, "cpu", cpus_per_trial)
    print(f"raymia trial on cuda: {json.dumps(summary['trial_cuda'])}")
    print(f"raymia trial on cpu ({cpus_per_trial} threads): {json.dumps(summary['trial_cpu'])}")
    save(summary, args.json_out)
    print(
        f"1 at a time: {one['trials_per_min']:.1f} trials/min, {SHARING} sharing: "
        f"{shared['trials_per_min']:.1f} trials/min"
    )
    print(f"GPU sharing ({SHARING} x 1/{SHARING} GPU / 1 x 1 GPU): {summary['ratio']:.2f}x")


if __name__ == "__main__":
    main()
