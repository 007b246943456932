"""GPU check: the figures that only a CUDA GPU can give, in one script of about 5 minutes.

Four parts, each measured in fresh processes (one per run, as `trial_cost.py` and
`reference_ensemble.py` isolate theirs), so one part's CUDA memory, caches and warm kernels
never reach another's timings; `--parts` picks some of them:

  a  one trial of 10,000 synthetic 32x32x3 members (`synthetic-cifar10` sized as the
     `synthetic-10000` entry of `trial_cost.py`'s SIZES, the default 30 epochs) end to end
     with `device` = cuda: the row's device, its seconds and each part's seconds
     (`raymia.costs`), host and GPU peak memory; printed with `trial_cost.report`. Judged
     beside `trial_cost.py`'s targets: measurement apart from the reference models at most the
     target's training (<= 1x) and host memory under 4 GB.
  b  GPU sharing, `gpu_sharing.sweep_throughput` as `gpu_sharing.py` runs it: the same 8
     default digits trials through `run_sweep` one at a time at `--gpus-per-trial 1`, then four
     at a time at 0.25; trials per minute, target: sharing >= 3x.
  c  K = 16 reference models of the default digits trial (`attacks.lira_reference_models`),
     `reference_training` = ensemble against sequential, `device` = cuda, as
     `reference_ensemble.py` measures them on a CPU: seconds each way (after a 2-model
     warm-up in the same process, so neither side pays CUDA's start), the path taken, the
     largest logit difference and the share of equal test predictions; target: >= 8x.
  d  bf16 against fp32: the default mnist-5k trial (`--d-dataset`) on cuda once as it is and
     once with `run_trial` inside `torch.autocast("cuda", dtype=torch.bfloat16,
     cache_enabled=False)` (with the cast cache, one region around the whole training keeps
     the first step's bf16 copies of the weights and the model does not learn: seen with
     CPU autocast on digits, test accuracy 0.10 against 0.94): the times,
     the Spearman rank correlation of each attack's per-sample scores (`score_<attack>`)
     between the two, and whether each bf16 leakage figure (`<attack>_auc`, `adv`) lies in the
     fp32 run's 95% interval (`<attack>_auc_lo`/`_hi`; for `adv`, the interval
     `<attack>_adv_lo`/`_hi` of the fp32 run's best attack). A `precision` setting would be
     justified where every correlation is >= 0.99 and every figure lies inside its interval.
     "fp32" is torch's default (cuDNN's convolutions may use TF32). `--d-fp32-repeat` adds a
     second fp32 run, compared the same way: the floor that GPU non-determinism sets.

Time, estimated from the README's H200 figures of the older code (one trial per size through
`trial_cost.py`) and about 8 s for a fresh process to import torch and start CUDA:
(a) 75 s of parts at 10,000 members then (target 28 s, shadow 22 s, Merlin 10 s, intervals
6 s, RMIA 5 s, the rest 4 s; Merlin and DtC are cheaper now) plus data and start-up: 1.5-2
min. (b) a digits trial is 6-9 s on the GPU; one at a time 8 x 8 s plus Ray's start and the
worker's imports (about 10 s), four at a time two rounds of about 12 s: 1.5-2 min. (c) 16
digits models one after another at about 0.7 s each (the shadow's time on the H200) and the
ensemble in a few seconds, two processes: under 1 min. (d) a default mnist-5k trial is about
11 s (target 6 s, shadow 2 s, measurement 3 s) plus start-up, two runs: under 1 min (a third
with `--d-fp32-repeat`). In all about 4.5-5.5 minutes on an H100 or H200, under the 6 minutes
that let it run twice in a quarter of an hour; each run is stopped after `--step-timeout`
seconds (default 300). The total is printed and judged against 6 minutes.

Prints every figure, then as its last line a one-line JSON summary: every figure and each
target's met / not met (None where its part did not run). `--json-out FILE` writes the
summary after each part. Exits 1 when a part failed (the others still run), 0 otherwise.
Without CUDA it prints one line to stderr and exits 2, measuring nothing.

    python benchmarks/gpu_check.py [--parts a,b,c,d] [--json-out FILE] [--threads 8]
                                   [--set KEY=VALUE ...] [--d-fp32-repeat]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The parts, in the order they run, and what each measures (for --help).
PARTS: dict[str, str] = {
    "a": "one synthetic-10000 trial (10,000 members of 32x32x3) end to end on CUDA, per part",
    "b": "4 trials at --gpus-per-trial 0.25 against 1 at a time at 1.0: trials per minute",
    "c": "K = 16 reference models, ensemble against sequential, on the GPU",
    "d": "bf16 autocast against fp32: time, score rank correlation, figures in intervals",
}
#: The trial_cost.py size that part (a) runs.
SIZE = "synthetic-10000"
#: Targets: (b) sharing / one at a time, (c) sequential / ensemble, (d) the least correlation.
SHARING_TARGET = 3.0
ENSEMBLE_TARGET = 8.0
CORRELATION_TARGET = 0.99
#: (a), from trial_cost.py: (measure - reference) / train, and host memory in GB.
MEASURE_TARGET = 1.0
HOST_MEMORY_TARGET_GB = 4.0
#: The whole check, so that it runs twice in a quarter of an hour.
TOTAL_TARGET_SECONDS = 360.0
#: How a run in a fresh process hands back its result: the last line with this prefix.
RESULT = "RESULT "
NO_CUDA = "gpu_check: no CUDA GPU on this machine; nothing measured"


class StepFailed(Exception):
    """One run of the check failed, ran past its time or printed no result (one line)."""


# ---------------------------------------------------------------------------------------------
# Pure helpers: the comparison of two precisions, the targets, JSON-safe values.


def plain(value: Any) -> Any:
    """Return `value` with numpy scalars as Python numbers, tuples as lists and non-finite
    floats as None, recursively: what `json.dumps(..., allow_nan=False)` accepts."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(value: Any) -> float | None:
    """Return `value` as a finite float, or None (missing, None, NaN, infinite)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def score_attacks(scores: Mapping[str, Any]) -> list[str]:
    """Return the attacks whose per-sample scores `scores` holds (its `score_<attack>` keys),
    in its order."""
    return [key[len("score_") :] for key in scores if key.startswith("score_")]


def rank_correlations(
    reference: Mapping[str, Any], other: Mapping[str, Any]
) -> dict[str, float | None]:
    """Return, per attack scored in both runs (`score_<attack>` keys), the Spearman rank
    correlation of its per-sample scores between `reference` and `other`; None where it is
    undefined (constant scores, under 3 samples). NaN scores rank lowest, as
    `raymia.privacy.metrics` counts them least-member. Raises ValueError when both carry
    `sample_index` and the runs scored different samples or lengths differ."""
    from scipy.stats import spearmanr

    if "sample_index" in reference and "sample_index" in other:
        if not np.array_equal(np.asarray(reference["sample_index"]), other["sample_index"]):
            raise ValueError("the two runs scored different samples (sample_index differs)")
    out: dict[str, float | None] = {}
    for attack in score_attacks(reference):
        key = f"score_{attack}"
        if key not in other:
            continue
        a = np.asarray(reference[key], dtype=np.float64)
        b = np.asarray(other[key], dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"{key}: {a.shape[0]} scores against {b.shape[0]}")
        a = np.where(np.isnan(a), -np.inf, a)
        b = np.where(np.isnan(b), -np.inf, b)
        if a.size < 3 or np.all(a == a[0]) or np.all(b == b[0]):
            out[attack] = None
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rho = spearmanr(a, b).statistic
        out[attack] = _number(rho)
    return out


def leakage_figures(row: Mapping[str, Any], attacks: Sequence[str]) -> dict[str, float | None]:
    """Return the row's leakage figures that the comparison reads: per attack `<attack>_auc`,
    `_auc_lo`, `_auc_hi`, `_adv`, `_adv_lo`, `_adv_hi`, and the best attack's `adv`."""
    keys = [f"{a}_{m}" for a in attacks for m in ("auc", "auc_lo", "auc_hi", "adv", "adv_lo")]
    keys += [f"{a}_adv_hi" for a in attacks] + ["adv"]
    return {key: _number(row.get(key)) for key in keys}


def _inside(value: float | None, lo: float | None, hi: float | None) -> bool | None:
    """True where lo <= value <= hi; None where the value or the interval is missing."""
    if value is None or lo is None or hi is None:
        return None
    return lo <= value <= hi


def interval_checks(
    reference: Mapping[str, Any], other: Mapping[str, Any], attacks: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Return, per leakage figure (`<attack>_auc` for each attack, then `adv`), whether
    `other`'s value lies in `reference`'s 95% interval: {"value", "reference", "lo", "hi",
    "inside"} (inside None where either run lacks the figure or its interval, e.g. with
    `attacks.n_bootstrap` = 0). `adv` (the best attack's advantage) is judged against the
    interval `<attack>_adv_lo`/`_hi` of `reference`'s best attack, named under
    "interval_of"."""
    out: dict[str, dict[str, Any]] = {}
    for attack in attacks:
        key = f"{attack}_auc"
        lo, hi = _number(reference.get(f"{key}_lo")), _number(reference.get(f"{key}_hi"))
        value = _number(other.get(key))
        out[key] = {
            "value": value,
            "reference": _number(reference.get(key)),
            "lo": lo,
            "hi": hi,
            "inside": _inside(value, lo, hi),
        }
    advantages = {a: _number(reference.get(f"{a}_adv")) for a in attacks}
    known = {a: v for a, v in advantages.items() if v is not None}
    best = max(known, key=lambda a: known[a]) if known else None
    lo = _number(reference.get(f"{best}_adv_lo")) if best else None
    hi = _number(reference.get(f"{best}_adv_hi")) if best else None
    value = _number(other.get("adv"))
    out["adv"] = {
        "value": value,
        "reference": _number(reference.get("adv")),
        "lo": lo,
        "hi": hi,
        "inside": _inside(value, lo, hi),
        "interval_of": best,
    }
    return out


def precision_justified(
    correlations: Mapping[str, float | None],
    intervals: Mapping[str, Mapping[str, Any]],
    threshold: float = CORRELATION_TARGET,
) -> bool:
    """True where a `precision` setting would be justified: at least one attack compared,
    every attack's rank correlation >= `threshold`, and every figure inside its interval (a
    figure whose interval could not be judged counts against it)."""
    if not correlations or not intervals:
        return False
    correlated = all(c is not None and c >= threshold for c in correlations.values())
    return correlated and all(check.get("inside") is True for check in intervals.values())


def compare_precisions(
    reference_figures: Mapping[str, Any],
    reference_scores: Mapping[str, Any],
    other_figures: Mapping[str, Any],
    other_scores: Mapping[str, Any],
) -> dict[str, Any]:
    """Return how a run (`other`, e.g. bf16) agrees with the `reference` run (fp32): per
    attack the scores' rank correlation, the least of them, each leakage figure against the
    reference's interval (:func:`interval_checks`), how many lie inside, and `justified`
    (:func:`precision_justified`)."""
    correlations = rank_correlations(reference_scores, other_scores)
    attacks = [a for a in score_attacks(reference_scores) if a in correlations]
    intervals = interval_checks(reference_figures, other_figures, attacks)
    known = [c for c in correlations.values() if c is not None]
    return {
        "spearman": correlations,
        "least_spearman": min(known) if len(known) == len(correlations) and known else None,
        "intervals": intervals,
        "inside": sum(1 for check in intervals.values() if check["inside"] is True),
        "figures": len(intervals),
        "justified": precision_justified(correlations, intervals),
    }


def _flag(target: str, figure: Any, met: bool | None) -> dict[str, Any]:
    """One target's entry in the summary: what it asks, the figure, met (None: not run)."""
    return {"target": target, "figure": figure, "met": met}


def target_flags(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return every target of the check with its figure and whether it was met (None where
    its part did not run or failed), from the summary's parts `a`..`d` and `total_seconds`
    (judged only where every part gave its figures)."""
    a, b, c, d = (summary.get(part) for part in "abcd")
    flags: dict[str, dict[str, Any]] = {}
    device = a.get("device") if a else None
    flags["a_device_cuda"] = _flag("row's device = cuda", device, device == "cuda" if a else None)
    ratio = a.get("measure_apart_ratio") if a else None
    flags["a_measure_apart_within_training"] = _flag(
        f"(measure - reference) / train <= {MEASURE_TARGET:g}x",
        ratio,
        ratio <= MEASURE_TARGET if ratio is not None else None,
    )
    host = a.get("host_peak_gb") if a else None
    flags["a_host_peak_memory"] = _flag(
        f"host peak memory < {HOST_MEMORY_TARGET_GB:g} GB",
        host,
        host < HOST_MEMORY_TARGET_GB if host is not None else None,
    )
    ratio = b.get("ratio") if b else None
    flags["b_gpu_sharing"] = _flag(
        f"4 sharing / 1 at a time, trials per minute >= {SHARING_TARGET:g}x",
        ratio,
        ratio >= SHARING_TARGET if ratio is not None else None,
    )
    ratio = c.get("ratio") if c else None
    flags["c_ensemble"] = _flag(
        f"sequential / ensemble seconds >= {ENSEMBLE_TARGET:g}x",
        ratio,
        ratio >= ENSEMBLE_TARGET if ratio is not None else None,
    )
    bf16 = d.get("bf16_vs_fp32") if d else None
    flags["d_precision_setting_justified"] = _flag(
        f"Spearman >= {CORRELATION_TARGET:g} for every attack and every figure inside its "
        "fp32 interval",
        bf16.get("least_spearman") if bf16 else None,
        bool(bf16["justified"]) if bf16 else None,
    )
    total = summary.get("total_seconds")
    every_part = all(summary.get(part) for part in PARTS)  # each part ran and gave figures
    flags["total_within_6_minutes"] = _flag(
        f"every part in <= {TOTAL_TARGET_SECONDS:g} s",
        total,
        total <= TOTAL_TARGET_SECONDS if total is not None and every_part else None,
    )
    return flags


# ---------------------------------------------------------------------------------------------
# The runs, each in a fresh process (`--one STEP`): they print one RESULT line.


def cuda_available() -> bool:
    """True where torch can use a CUDA GPU; silent (torch's warnings about a missing or too
    old driver are not shown)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch

        return bool(torch.cuda.is_available())


def _sync(device: str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so a timing covers it."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _environment() -> dict[str, Any]:
    """Return the GPU's name and torch's version, as a run in a fresh process saw them."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"gpu": gpu, "torch_version": torch.__version__}


def trial_cost_run(
    epochs: int | None, settings: list[str], threads: int, size: str = SIZE, device: str = "cuda"
) -> dict[str, Any]:
    """Part (a): run one trial of `trial_cost.py`'s `size` on `device` in this (fresh)
    process under `raymia.costs` recording; return what `trial_cost.run_size` returns
    (scored samples, the row's seconds and test accuracy, each part's seconds, calls and
    peak host memory) plus the row's `device`, the wall seconds and the GPU's peak memory."""
    import torch
    from trial_cost import trial_config

    from raymia.costs import component, recording
    from raymia.data.datasets import load_pool
    from raymia.trial.config import parse_trial_config
    from raymia.trial.runner import run_trial

    torch.set_num_threads(threads)
    parsed = parse_trial_config(trial_config(size, epochs, [*settings, f"device={device}"]))
    started = time.perf_counter()
    with recording(memory=True) as costs:
        with component("data"):
            pool = load_pool(parsed.dataset)
        row = run_trial(parsed, pool)
        _sync(device)
    wall = time.perf_counter() - started
    gpu_peak = torch.cuda.max_memory_allocated() if device == "cuda" else None
    return {
        "size": size,
        "epochs": parsed.epochs,
        "device": row["device"],
        "scored": 2 * int(row["eval_members"]),
        "wall_seconds": wall,
        "train_seconds": row["train_seconds"],
        "reference_seconds": row["reference_seconds"],
        "measure_seconds": row["measure_seconds"],
        "test_acc": row["test_acc"],
        "gpu_peak_bytes": gpu_peak,
        "costs": {
            name: {"seconds": c.seconds, "calls": c.calls, "peak_bytes": c.peak_bytes}
            for name, c in costs.items()
        },
    }


def sharing_run(trials: int, dataset: str) -> dict[str, Any]:
    """Part (b): the same `trials` default trials of `dataset` through `run_sweep` one at a
    time at 1 GPU each, then `gpu_sharing.SHARING` at a time at 1/SHARING GPU each, timed by
    `gpu_sharing.sweep_throughput` (which stops unless every trial completed on cuda); return
    both timings and the ratio of their trials per minute."""
    from common import configurations, scratch, write_grid_space
    from gpu_sharing import SHARING, sweep_throughput

    cpus_per_trial = max(1, (os.cpu_count() or 1) // SHARING)
    with scratch() as tmp:
        points = configurations(trials)
        space = str(write_grid_space(tmp / "space.yaml", points, {"dataset": dataset}))
        one = sweep_throughput(space, str(tmp / "one"), 1.0, 1, cpus_per_trial, trials)
        shared = sweep_throughput(
            space, str(tmp / "shared"), 1 / SHARING, SHARING, cpus_per_trial, trials
        )
    return {
        "dataset": dataset,
        "trials": trials,
        "sharing": SHARING,
        "one": one,
        "shared": shared,
        "ratio": shared["trials_per_min"] / one["trials_per_min"],
    }


def reference_run(
    k: int, way: str, settings: list[str], threads: int, out: Path, device: str = "cuda"
) -> dict[str, Any]:
    """Part (c), one way: train the default digits trial's `k` reference models with
    `reference_training` = `way` on `device` in this (fresh) process, after a 2-model warm-up
    (CUDA's context, cuBLAS and cuDNN, the way's kernels); save their logits on the test
    images to `out`; return the seconds, the warm-up's seconds, the path taken and where the
    models are."""
    import torch

    from raymia.trial.config import apply_overrides, parse_trial_config
    from raymia.trial.reference_models import reference_training_path, train_reference_models
    from raymia.trial.runner import resolve_splits

    data = {
        "dataset": "digits",
        "device": device,
        "reference_training": way,
        "attacks": {"lira_reference_models": k},
    }
    config = parse_trial_config(apply_overrides(data, settings))
    torch.set_num_threads(threads)
    splits = resolve_splits(config)
    where = torch.device(device)
    sizes = {"n_trained": len(splits.members), "n_held_out": len(splits.held_out)}

    def train(count: int) -> tuple[float, list[torch.nn.Module]]:
        started = time.perf_counter()
        models = train_reference_models(
            config, splits.info, splits.reference, count, where, **sizes
        )
        _sync(device)
        return time.perf_counter() - started, models

    warmup, _ = train(min(2, k))
    seconds, models = train(k)
    with torch.no_grad():
        test = splits.test.x.to(where)
        logits = torch.stack([m(test) for m in models]).float().cpu()
    torch.save(logits, out)
    return {
        "k": k,
        "way": way,
        "path": reference_training_path(config, where),
        "seconds": seconds,
        "warmup_seconds": warmup,
        "model_device": next(models[0].parameters()).device.type,
    }


def precision_run(
    dataset: str,
    precision: str,
    settings: list[str],
    threads: int,
    out: Path,
    device: str = "cuda",
) -> dict[str, Any]:
    """Part (d), one precision: run the default trial of `dataset` on `device` in this
    (fresh) process, as it is ("fp32") or inside `torch.autocast(device, dtype=bfloat16)`
    with autocast's cast cache off ("bf16"); save its per-sample scores to `out` (.npz);
    return its seconds (wall, the row's training and measurement), test accuracy, device,
    attacks and leakage figures."""
    import torch

    from raymia.trial.config import apply_overrides, parse_trial_config
    from raymia.trial.runner import run_trial

    config = parse_trial_config(apply_overrides({"dataset": dataset, "device": device}, settings))
    torch.set_num_threads(threads)
    started = time.perf_counter()
    if precision == "bf16":
        # Without the cast cache: inside one autocast region that spans the optimizer's steps,
        # it keeps the first forward pass's bf16 copies of the weights and the model does not
        # learn (a digits target on a CPU: test accuracy 0.10 after 3 epochs, 0.94 without).
        with torch.autocast(device, dtype=torch.bfloat16, cache_enabled=False):
            row = run_trial(config)
    elif precision == "fp32":
        row = run_trial(config)
    else:
        raise ValueError(f"precision {precision!r}: expected fp32 or bf16")
    _sync(device)
    wall = time.perf_counter() - started
    scores = row.pop("scores")
    np.savez(out, **{key: np.asarray(value) for key, value in scores.items()})
    attacks = score_attacks(scores)
    return {
        "dataset": dataset,
        "precision": precision,
        "device": row["device"],
        "wall_seconds": wall,
        "train_seconds": row["train_seconds"],
        "measure_seconds": row["measure_seconds"],
        "test_acc": row["test_acc"],
        "attacks": attacks,
        "figures": leakage_figures(row, attacks),
    }


def run_one(step: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one step of the check in this process (`--one STEP`) and return its result with
    the GPU's name and torch's version."""
    part, _, way = step.partition(":")
    if step == "a":
        result = trial_cost_run(args.a_epochs, args.set, args.threads)
    elif step == "b":
        result = sharing_run(args.b_trials, args.b_dataset)
    elif part == "c":
        result = reference_run(args.c_models, way, args.set, args.threads, args.out)
    elif part == "d":
        result = precision_run(args.d_dataset, way, args.set, args.threads, args.out)
    else:
        raise SystemExit(f"gpu_check: unknown step {step!r}")
    return result | _environment()


def run_step(step: str, options: list[str], timeout: float) -> dict[str, Any]:
    """Run ``python gpu_check.py --one STEP OPTIONS`` in a fresh process (its own process
    group, stopped whole after `timeout` seconds) and return the JSON of its last RESULT
    line. Raises StepFailed (one line; the run's last output goes to stderr) when it fails,
    runs past `timeout` or prints no result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--one", step, *options]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, process_group=0
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()
        raise StepFailed(f"{step}: no result within {timeout:g} s; stopped") from None
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT)]
    if process.returncode == 0 and lines:
        return json.loads(lines[-1][len(RESULT) :])
    tail = [line for line in (stderr or stdout).splitlines() if line.strip()]
    print(f"--- {step}: last output ---\n" + "\n".join(tail[-30:]), file=sys.stderr, flush=True)
    last = tail[-1].strip() if tail else "no output"
    raise StepFailed(f"{step}: exit {process.returncode}: {last[:300]}")


# ---------------------------------------------------------------------------------------------
# The parts, as the check runs them: fresh processes, then the figures.


def _shared_options(args: argparse.Namespace) -> list[str]:
    """Return the options a step's fresh process needs from this one's."""
    options = ["--threads", str(args.threads)]
    for setting in args.set:
        options += ["--set", setting]
    return options


def part_a(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Run part (a); print its figures and `trial_cost.report`'s tables; return its summary."""
    from trial_cost import report

    epochs = [] if args.a_epochs is None else ["--a-epochs", str(args.a_epochs)]
    r = run_step("a", [*_shared_options(args), *epochs], args.step_timeout)
    peaks = [c["peak_bytes"] for c in r["costs"].values() if c["peak_bytes"]]
    host = max(peaks) / 2**30 if peaks else None
    gpu = r["gpu_peak_bytes"] / 2**30 if r["gpu_peak_bytes"] else None
    apart = (r["measure_seconds"] - r["reference_seconds"]) / r["train_seconds"]
    print(
        f"(a) {r['size']} ({r['epochs']} epochs) on {r['device']}: wall {r['wall_seconds']:.1f} s,"
        f" train {r['train_seconds']:.1f} s, measure {r['measure_seconds']:.1f} s (reference "
        f"models {r['reference_seconds']:.1f} s), {r['scored']:,} scored, test_acc "
        f"{r['test_acc']:.3f}, host peak {host or 0:.2f} GB, GPU peak {gpu or 0:.2f} GB",
        flush=True,
    )
    print(report({r["size"]: r}), flush=True)
    return {
        **{k: r[k] for k in ("size", "epochs", "device", "scored", "gpu", "torch_version")},
        **{k: r[k] for k in ("wall_seconds", "train_seconds", "reference_seconds")},
        "measure_seconds": r["measure_seconds"],
        "test_acc": r["test_acc"],
        "measure_apart_ratio": apart,
        "host_peak_gb": host,
        "gpu_peak_gb": gpu,
        "parts_seconds": {name: c["seconds"] for name, c in r["costs"].items()},
        "parts_peak_gb": {
            name: c["peak_bytes"] / 2**30 if c["peak_bytes"] else None
            for name, c in r["costs"].items()
        },
    }


def part_b(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Run part (b); print both sweeps' timings and the ratio; return its summary."""
    options = ["--b-trials", str(args.b_trials), "--b-dataset", args.b_dataset]
    r = run_step("b", options, args.step_timeout)
    for name in ("one", "shared"):
        s = r[name]
        print(
            f"(b) {s['concurrent']} at a time, {s['gpus_per_trial']:g} GPU each, "
            f"{s['cpus_per_trial']} CPUs each: {r['trials']} {r['dataset']} trials in "
            f"{s['seconds']:.1f} s, {s['trials_per_min']:.2f} trials/min (mean train "
            f"{s['mean_train_seconds']:.2f} s, measure {s['mean_measure_seconds']:.2f} s)",
            flush=True,
        )
    print(
        f"(b) GPU sharing ({r['sharing']} x 1/{r['sharing']} GPU / 1 x 1 GPU): "
        f"{r['ratio']:.2f}x (target >= {SHARING_TARGET:g}x)",
        flush=True,
    )
    return r


def part_c(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Run part (c), sequential then ensemble, each in a fresh process; print the seconds,
    the ratio and how far the two ways' models differ; return its summary."""
    import torch

    runs: dict[str, dict[str, Any]] = {}
    logits: dict[str, Any] = {}
    for way in ("sequential", "ensemble"):
        out = tmp / f"c-{way}.pt"
        options = [*_shared_options(args), "--c-models", str(args.c_models), "--out", str(out)]
        runs[way] = run_step(f"c:{way}", options, args.step_timeout)
        logits[way] = torch.load(out)
        r = runs[way]
        print(
            f"(c) K = {r['k']}, {way}: {r['seconds']:.2f} s (path {r['path']}, models on "
            f"{r['model_device']}; warm-up of 2 models {r['warmup_seconds']:.2f} s)",
            flush=True,
        )
    difference = (logits["ensemble"] - logits["sequential"]).abs().max().item()
    agree = (logits["ensemble"].argmax(-1) == logits["sequential"].argmax(-1)).float().mean()
    ratio = runs["sequential"]["seconds"] / runs["ensemble"]["seconds"]
    print(
        f"(c) sequential / ensemble at K = {args.c_models}: {ratio:.2f}x (target >= "
        f"{ENSEMBLE_TARGET:g}x); largest logit difference {difference:.2g}, equal test "
        f"predictions {float(agree):.1%}",
        flush=True,
    )
    return {
        "k": args.c_models,
        "sequential": runs["sequential"],
        "ensemble": runs["ensemble"],
        "ratio": ratio,
        "largest_logit_difference": difference,
        "equal_predictions": float(agree),
        "gpu": runs["ensemble"]["gpu"],
    }


def _print_comparison(name: str, comparison: Mapping[str, Any]) -> None:
    """Print one precision comparison: per attack the correlation, per figure the interval."""
    for attack, rho in comparison["spearman"].items():
        shown = "undefined" if rho is None else f"{rho:.4f}"
        print(f"(d) {name}: Spearman of score_{attack}: {shown}", flush=True)
    for figure, check in comparison["intervals"].items():
        verdict = {True: "inside", False: "OUTSIDE", None: "not judged"}[check["inside"]]

        def shown(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.4f}"

        of = f" ({check['interval_of']}'s adv interval)" if check.get("interval_of") else ""
        print(
            f"(d) {name}: {figure} {shown(check['value'])} against fp32 {shown(check['reference'])}"
            f" [{shown(check['lo'])}, {shown(check['hi'])}]{of}: {verdict}",
            flush=True,
        )


def part_d(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Run part (d): fp32, bf16 (and with --d-fp32-repeat fp32 again), each in a fresh
    process; print the times and the comparisons; return its summary."""
    steps = ["fp32", "bf16"] + (["fp32-repeat"] if args.d_fp32_repeat else [])
    runs: dict[str, dict[str, Any]] = {}
    scores: dict[str, dict[str, np.ndarray]] = {}
    for name in steps:
        precision = name.split("-")[0]
        out = tmp / f"d-{name}.npz"
        options = [*_shared_options(args), "--d-dataset", args.d_dataset, "--out", str(out)]
        runs[name] = run_step(f"d:{precision}", options, args.step_timeout)
        with np.load(out) as saved:
            scores[name] = {key: saved[key] for key in saved.files}
        r = runs[name]
        print(
            f"(d) {r['dataset']} {name} on {r['device']}: wall {r['wall_seconds']:.1f} s, train "
            f"{r['train_seconds']:.1f} s, measure {r['measure_seconds']:.1f} s, test_acc "
            f"{r['test_acc']:.3f}, adv {r['figures']['adv'] or 0:.4f}",
            flush=True,
        )
    fp32, bf16 = runs["fp32"], runs["bf16"]
    summary: dict[str, Any] = {
        "dataset": args.d_dataset,
        "runs": runs,
        "train_speedup": fp32["train_seconds"] / bf16["train_seconds"],
        "wall_speedup": fp32["wall_seconds"] / bf16["wall_seconds"],
        "gpu": fp32["gpu"],
    }
    print(
        f"(d) fp32 / bf16: training {summary['train_speedup']:.2f}x, whole trial "
        f"{summary['wall_speedup']:.2f}x",
        flush=True,
    )
    for name in steps[1:]:
        comparison = compare_precisions(
            fp32["figures"], scores["fp32"], runs[name]["figures"], scores[name]
        )
        summary[f"{name.replace('-', '_')}_vs_fp32"] = comparison
        _print_comparison(f"{name} vs fp32", comparison)
    comparison = summary["bf16_vs_fp32"]
    least = comparison["least_spearman"]
    print(
        f"(d) a `precision` setting would be justified: "
        f"{'yes' if comparison['justified'] else 'no'} (least Spearman "
        f"{'undefined' if least is None else f'{least:.4f}'}, target >= {CORRELATION_TARGET:g}; "
        f"{comparison['inside']} of {comparison['figures']} figures inside the fp32 intervals)",
        flush=True,
    )
    return summary


RUNNERS = {"a": part_a, "b": part_b, "c": part_c, "d": part_d}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Return the command line's options (argparse exits on --help and on bad options)."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="parts:\n" + "\n".join(f"  {p}  {what}" for p, what in PARTS.items()),
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated, of: " + ", ".join(PARTS)
    )
    parser.add_argument("--json-out", type=Path, default=None, help="write the summary here")
    parser.add_argument(
        "--threads",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="torch threads of the trials in (a), (c), (d) (default: up to 8)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a trial setting for (a), (c), (d), e.g. epochs=5 for a first look; the targets "
        "are judged at the defaults",
    )
    parser.add_argument("--a-epochs", type=int, help="(a)'s epochs (default: the trial's, 30)")
    parser.add_argument("--b-trials", type=int, default=8, help="(b)'s trials per sweep")
    parser.add_argument("--b-dataset", default="digits", help="(b)'s data set")
    parser.add_argument("--c-models", type=int, default=16, help="(c)'s K reference models")
    parser.add_argument("--d-dataset", default="mnist-5k", help="(d)'s data set")
    parser.add_argument(
        "--d-fp32-repeat",
        action="store_true",
        help="(d): also compare a second fp32 run with the first (GPU non-determinism's floor)",
    )
    parser.add_argument(
        "--step-timeout", type=float, default=300.0, help="seconds each fresh process may run"
    )
    parser.add_argument("--one", metavar="STEP", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown or not args.parts:
        parser.error(f"--parts: unknown {unknown}; expected some of {', '.join(PARTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the check; return the exit code: 0, 1 where a part failed, 2 without CUDA."""
    args = parse_args(argv)
    if not cuda_available():
        print(NO_CUDA, file=sys.stderr, flush=True)
        return 2
    if args.one:
        print(RESULT + json.dumps(plain(run_one(args.one, args))), flush=True)
        return 0
    from gpu_sharing import save

    started = time.perf_counter()
    parts = [p for p in PARTS if p in args.parts]
    summary: dict[str, Any] = {"parts": parts, "cpus": os.cpu_count(), "errors": {}}
    with tempfile.TemporaryDirectory(prefix="raymia-gpu-check-") as tmp:
        for part in parts:
            try:
                summary[part] = RUNNERS[part](args, Path(tmp))
            except StepFailed as failed:
                summary["errors"][part] = str(failed)
                print(f"({part}) failed: {failed}", flush=True)
            except Exception as error:  # a figure the check could not form: the rest still run
                summary["errors"][part] = f"{type(error).__name__}: {error}".splitlines()[0]
                print(f"({part}) failed: {summary['errors'][part]}", flush=True)
            gpu = (summary.get(part) or {}).get("gpu")
            if gpu and "gpu" not in summary:
                summary["gpu"] = gpu
            summary["total_seconds"] = time.perf_counter() - started
            summary["targets"] = target_flags(summary)
            save(plain(summary), args.json_out)
    total = summary["total_seconds"]
    print(f"total {total:.1f} s (target <= {TOTAL_TARGET_SECONDS:g} s with every part)")
    for name, flag in summary["targets"].items():
        met = {True: "met", False: "NOT met", None: "not measured"}[flag["met"]]
        print(f"target {name}: {flag['target']}: {met}", flush=True)
    print(json.dumps(plain(summary), allow_nan=False), flush=True)
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
