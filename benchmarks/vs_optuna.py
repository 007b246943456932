"""Benchmark: raymia sweep against Optuna alone on the same objective and trial budget.

The alternative a user would pick: `optuna.create_study(...).optimize(objective, n_trials=N,
n_jobs=2)`, where the objective calls `run_trial` (1 torch thread) and returns test accuracy,
advantage and DtC advantage. raymia runs the same search space with the same NSGA-II sampler
seed, 2 trials at a time. Both name and order the parameters alike, so the seeded sampler
draws the same configurations for both (checked and printed). Prints trials/minute of each and
the final hypervolume of each (reference: accuracy 0, advantages 1), and the trials/minute
ratio last (target >= 1.0 at an equal or better hypervolume). The trial is the default digits
trial; `--trial light` uses the benchmarks' light one.

    python benchmarks/vs_optuna.py [--trials 16] [--trial default|light]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import optuna
from common import TRIAL, scratch, write_search_space

from raymia.data import load_pool
from raymia.pareto import default_reference, hypervolume, parse_objectives
from raymia.sweep import SweepSettings, run_sweep
from raymia.trial import run_trial

OBJECTIVES = "acc:max,adv:min,dtc_adv:min"


def optuna_alone(n: int, seed: int, settings: dict) -> tuple[float, np.ndarray, list]:
    pool = load_pool("digits")

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        # the names and order raymia's Tune space gives Optuna, so the draws match
        mechanisms = {
            "augment": trial.suggest_int("mechanisms/augment", 0, 1),
            "dropout": trial.suggest_float("mechanisms/dropout", 0.0, 0.5),
            "label_smoothing": trial.suggest_float("mechanisms/label_smoothing", 0.0, 0.3),
            "weight_decay": trial.suggest_float("mechanisms/weight_decay", 1e-5, 0.1, log=True),
        }
        row = run_trial({**settings, "mechanisms": mechanisms}, pool, threads=1)
        return row["test_acc"], row["adv"], row["dtc_adv"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=["maximize", "minimize", "minimize"],
        sampler=optuna.samplers.NSGAIISampler(seed=seed),
    )
    started = time.perf_counter()
    study.optimize(objective, n_trials=n, n_jobs=2)
    elapsed = time.perf_counter() - started
    points = np.array([t.values for t in study.trials if t.values is not None])
    configs = sorted(tuple(sorted(t.params.items())) for t in study.trials)
    return n / elapsed * 60, points, configs


def raymia_sweep(n: int, seed: int, trial: dict) -> tuple[float, np.ndarray, list]:
    with scratch() as tmp:
        settings = SweepSettings(
            space=str(write_search_space(tmp / "space.yaml", trial)),
            out=str(tmp / "sweep"),
            samples=n,
            objectives=OBJECTIVES,
            cpus_per_trial=1,
            max_concurrent=2,
            sampler_seed=seed,
        )
        started = time.perf_counter()
        df = run_sweep(settings)
        elapsed = time.perf_counter() - started
    ok = df[df["status"] == "ok"]
    names = ["augment", "dropout", "label_smoothing", "weight_decay"]
    configs = sorted(
        tuple(sorted((f"mechanisms/{k}", r[k]) for k in names)) for r in df.to_dict("records")
    )
    return n / elapsed * 60, ok[["test_acc", "adv", "dtc_adv"]].to_numpy(float), configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trial", choices=["default", "light"], default="default")
    args = parser.parse_args()
    trial = TRIAL if args.trial == "light" else {"dataset": "digits"}
    objectives = parse_objectives(OBJECTIVES)
    directions = [o.direction for o in objectives]
    reference = default_reference(objectives)

    optuna_rate, optuna_points, optuna_configs = optuna_alone(args.trials, args.seed, trial)
    raymia_rate, raymia_points, raymia_configs = raymia_sweep(args.trials, args.seed, trial)
    same = len(optuna_configs) == len(raymia_configs) and all(
        a[0] == b[0] and np.allclose([v for _, v in a], [v for _, v in b])
        for a, b in zip(optuna_configs, raymia_configs, strict=True)
    )
    print(f"same configurations drawn by both: {same}")
    optuna_hv = hypervolume(optuna_points, directions, reference)
    raymia_hv = hypervolume(raymia_points, directions, reference)
    print(f"Optuna alone (n_jobs=2): {optuna_rate:.1f} trials/min, hypervolume {optuna_hv:.4f}")
    print(f"raymia sweep (2 at once): {raymia_rate:.1f} trials/min, hypervolume {raymia_hv:.4f}")
    print(f"hypervolume ratio (raymia / Optuna): {raymia_hv / optuna_hv:.3f}")
    print(f"trials/minute ratio (raymia / Optuna alone): {raymia_rate / optuna_rate:.2f}x")


if __name__ == "__main__":
    main()
