"""Benchmark: does the default search find a better front than random search, for the budget?

On digits, light trials (few epochs, few DtC samples, no reference models: about a second
each), over the default space's mechanisms (`search_spaces/frontier.yaml`, its `trial:`
block swapped for the light one), `raymia sweep`'s default search (`--search optuna`, the
sampler the space and the defaults choose) runs against `--search random` at equal budgets,
once per sampler seed. Each run goes through the command line's own settings
(`raymia.sweep.command.settings_from_args`, so the space's `sweep:` block counts as it does for
`raymia sweep`) and the real `run_sweep`, two trials at a time.

The default search runs once per budget and seed (it may size itself to the budget).
Random search draws each trial independently of the budget, so one run of the largest
budget per seed serves every budget: its first N trials (in the order they started) are a
random search of N trials.

Hypervolume is over acc:max, adv:min, dtc_adv:min (the sweep's default before it became
acc:max, adv_excess:min; kept so the figures compare across rounds), each
normalized to [0, 1] by the best and worst values any run of this benchmark reached, with
the fixed reference point 1.1 (just past the worst) in every normalized objective; the same
normalization serves every run, so the hypervolumes compare. Printed: each method's mean and
standard deviation over seeds at each budget, the ratio default / random at each budget,
and last whether the target holds: the default search's mean hypervolume at the middle
budget (32) reaches random search's at the largest (64).

    python benchmarks/search_quality.py [--budgets 16,32,64] [--seeds 0,1,2,3,4]
                                        [--max-concurrent 2] [--keep DIR]

The full run takes about 17 minutes on 2 cores (estimated from a run of budgets 16 and 32
with 2 seeds: 216 s, about 0.8 s per trial plus 15 s per sweep). With `--keep DIR` it can be
run a few seeds at a time (`--seeds 0,1 --keep DIR`, then `--seeds 2,3,4 --keep DIR`); a
last call with every seed reads the kept runs and prints the figures over all of them.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from common import scratch

from raymia.cli import build_parser
from raymia.results.front import hypervolume
from raymia.results.rows import TRIALS_FILE, load_results
from raymia.sweep.command import settings_from_args
from raymia.sweep.run import run_sweep
from raymia.sweep.space import shipped_space
from raymia.trial.config import attack_options_model

#: About a second per trial on one core: few epochs, a small DtC, no reference models.
LIGHT_TRIAL: dict[str, Any] = {
    "dataset": "digits",
    "epochs": 5,
    "attacks": {
        "merlin_neighbours": 10,
        "n_bootstrap": 50,
        "n_permutations": 50,
        "shadow_calibration": False,
        "rmia_reference_models": 0,
        "lira_reference_models": 0,
    },
    "dtc": {"max_samples": 40, "bisection_steps": 4, "pgd_steps": 5},
}
METHODS = ("optuna", "random")
REFERENCE = 1.1  # in normalized units: just past the worst value any run reached


#: The objectives the search is judged on (three continuous ones: the hypervolume moves with
#: every trial, where adv_excess is 0 for every trial within chance).
OBJECTIVES = "acc:max,adv:min,dtc_adv:min"


def light_space(path: Path) -> Path:
    """Write the default space with its trial settings swapped for the light trial's (attack
    options this raymia does not have are left out); return the path."""
    space = yaml.safe_load(shipped_space("frontier").read_text())
    known = attack_options_model().model_fields
    trial = {
        **LIGHT_TRIAL,
        "attacks": {k: v for k, v in LIGHT_TRIAL["attacks"].items() if k in known},
    }
    space["trial"] = trial
    space.setdefault("sweep", {})["objectives"] = OBJECTIVES
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def one_sweep(space: Path, out: Path, search: str, samples: int, seed: int, k: int) -> pd.DataFrame:
    """Run one sweep as `raymia sweep` would with these flags; return its rows, in the order
    the trials started."""
    argv = [
        "sweep",
        "--space", str(space),
        "--search", search,
        "--samples", str(samples),
        "--sampler-seed", str(seed),
        "--max-concurrent", str(k),
        "--cpus-per-trial", "1",
        "--out", str(out),
    ]  # fmt: skip
    settings, resume = settings_from_args(build_parser().parse_args(argv))
    return started_order(run_sweep(settings, resume=resume))


def started_order(df: pd.DataFrame) -> pd.DataFrame:
    """Return a sweep's rows in the order its trials started."""
    order = "started_at" if "started_at" in df.columns else "trial_id"
    return df.sort_values(order, kind="stable").reset_index(drop=True)


def objective_points(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Return the completed trials' objective values with every value finite, (n, m)."""
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    values = ok[columns].to_numpy(dtype=float)
    return values[np.isfinite(values).all(axis=1)]


def normalized_hypervolume(
    points: np.ndarray, directions: list[str], low: np.ndarray, high: np.ndarray
) -> float:
    """Return the hypervolume of `points` with each objective scaled to [0, 1] by (low, high),
    oriented so that 0 is best, against the reference point REFERENCE in every objective."""
    span = np.where(high > low, high - low, 1.0)
    scaled = (points - low) / span
    for j, direction in enumerate(directions):
        if direction == "max":
            scaled[:, j] = 1.0 - scaled[:, j]
    return hypervolume(scaled, ["min"] * len(directions), [REFERENCE] * len(directions))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="16,32,64", help="comma-separated trial budgets")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated sampler seeds")
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the sweep directories here; a run already kept there is read, not re-run",
    )
    args = parser.parse_args()
    budgets = sorted(int(b) for b in args.budgets.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]

    with scratch() as tmp:
        space = light_space(tmp / "space.yaml")
        probe, _ = settings_from_args(build_parser().parse_args(["sweep", "--space", str(space)]))
        objectives = probe.objective_list()
        columns = [o.column for o in objectives]
        directions = [o.direction for o in objectives]
        # points[(method, budget, seed)]: the objective values of that run's completed trials
        points: dict[tuple[str, int, int], np.ndarray] = {}
        started = time.perf_counter()
        for seed in seeds:
            runs = [("optuna", b) for b in budgets] + [("random", budgets[-1])]
            for search, budget in runs:
                out = tmp / f"{search}-{budget}-seed{seed}"
                kept = args.keep / out.name if args.keep else None
                t0 = time.perf_counter()
                if kept and (kept / TRIALS_FILE).exists():
                    df = started_order(load_results(kept))
                    how = f"kept in {kept}"
                else:
                    df = one_sweep(space, out, search, budget, seed, args.max_concurrent)
                    how = f"{time.perf_counter() - t0:.0f} s"
                    if kept:
                        shutil.copytree(out, kept, dirs_exist_ok=True)
                ok = int((df["status"] == "ok").sum())
                print(f"seed {seed}, {search}, {budget} trials: {ok} completed, {how}", flush=True)
                if search == "random":
                    for b in budgets:
                        points[(search, b, seed)] = objective_points(df.head(b), columns)
                else:
                    points[(search, budget, seed)] = objective_points(df, columns)
        elapsed = time.perf_counter() - started

    pooled = np.concatenate([p for p in points.values() if len(p)])
    low, high = pooled.min(axis=0), pooled.max(axis=0)
    hv = {
        key: normalized_hypervolume(p, directions, low, high) if len(p) else 0.0
        for key, p in points.items()
    }
    ranges = ", ".join(
        f"{c} {lo:.3f}-{hi:.3f}" for c, lo, hi in zip(columns, low, high, strict=True)
    )
    print(
        f"\nhypervolume over {', '.join(map(str, objectives))}, normalized by the range every "
        f"run reached ({ranges}), reference {REFERENCE} in each; {len(seeds)} seeds, "
        f"{elapsed:.0f} s in all"
    )
    for method in METHODS:
        for b in budgets:
            values = ", ".join(f"{hv[(method, b, s)]:.4f}" for s in seeds)
            print(f"{method}, {b} trials, by seed: {values}")
    print("| budget | default search (mean ± sd) | random search (mean ± sd) | ratio |")
    print("|---|---|---|---|")
    means: dict[tuple[str, int], float] = {}
    for b in budgets:
        cells = []
        for method in METHODS:
            values = np.array([hv[(method, b, s)] for s in seeds])
            means[(method, b)] = float(values.mean())
            cells.append(
                f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0:.4f}"
            )
        ratio = means[("optuna", b)] / means[("random", b)]
        print(f"| {b} | {cells[0]} | {cells[1]} | {ratio:.3f} |")
    middle = budgets[len(budgets) // 2] if len(budgets) > 2 else budgets[0]
    top = budgets[-1]
    reached = means[("optuna", middle)] >= means[("random", top)]
    print(
        f"default search at {middle} trials / random search at {top}: "
        f"{means[('optuna', middle)] / means[('random', top)]:.3f} "
        f"(target >= 1: {'met' if reached else 'not met'})"
    )


if __name__ == "__main__":
    main()
