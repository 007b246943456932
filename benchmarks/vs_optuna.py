"""Benchmark: raymia sweep against Optuna alone on the same objective and trial budget.

The alternative a user would pick: `optuna.create_study(...).optimize(objective, n_trials=N,
n_jobs=2)`, where the objective calls `run_trial` (1 torch thread) and returns test accuracy,
advantage and DtC advantage. raymia runs the same search space with the same NSGA-II sampler
seed, 2 trials at a time. Both name and order the parameters alike, so the seeded sampler
draws the same configurations for both (checked and printed). Prints trials/minute of each and
the final hypervolume of each (reference: accuracy 0, advantages 1), and the trials/minute
ratio last (target >= 1.0 at an equal or better hypervolume). The trial is the default digits
trial; `--trial light` uses the benchmarks' light one.

Left alone, Optuna's `n_jobs=2` would search other configurations than raymia and the
hypervolumes would differ by the luck of the draw: it reseeds the sampler from OS entropy for
every trial (so the seed means nothing), and its two threads' `suggest_*` calls interleave on
the sampler's one random stream. The Optuna side therefore keeps its seed (a sampler whose
`reseed_rng` does nothing) and takes each trial's four suggestions under a lock (microseconds;
nothing else waits on it), so each trial draws one consecutive block of the stream, as
raymia's searcher does. Neither touches how fast Optuna runs trials; both make the two runs
search the same configurations, so the comparison is of the tools, not of the draws.

Each run starts in a fresh process, and with `--repeats 2` (default) the tools go
Optuna-raymia then raymia-Optuna, so a shared machine's drift over minutes favours neither;
the rates pool the runs. Afterwards `--recheck` configurations are re-run alone in this
process: a tool's row should equal its trial run alone (it did not for Optuna's threads while
trials drew from torch's shared generator).

    python benchmarks/vs_optuna.py [--trials 64] [--repeats 2] [--trial default|light]
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass

import numpy as np
import optuna
from common import TRIAL, alternating_runs, scratch, write_search_space

from raymia.data.datasets import load_pool
from raymia.results.front import default_reference, hypervolume, parse_objectives
from raymia.sweep.run import make_sampler, run_sweep
from raymia.sweep.settings import SweepSettings
from raymia.sweep.space import load_space
from raymia.trial.runner import run_trial

OBJECTIVES = "acc:max,adv:min,dtc_adv:min"
# NSGA-II on both sides, its population sized to the budget as raymia sizes it: a sampler whose
# draws do not depend on which trial finished first, so both tools search the same points
SAMPLER = ("optuna", "nsga2")
NAMES = ["augment", "dropout", "label_smoothing", "weight_decay"]


def _key(params: dict) -> tuple:
    """A configuration as a hashable key, rounded so both tools' floats compare equal."""
    return tuple((k, round(float(params[k]), 9)) for k in sorted(params))


def _mechanisms(key: tuple) -> dict:
    return {k.split("/", 1)[1]: (int(v) if k.endswith("augment") else v) for k, v in key}


@dataclass
class Run:
    """One tool's run: throughput, the objective values found, what it searched, and where the
    time went (mean seconds per trial; seconds from the call to the first trial's start)."""

    rate: float
    results: dict[tuple, tuple[float, float, float]]  # configuration -> objective values
    trial_s: float
    first_start_s: float

    @property
    def points(self) -> np.ndarray:
        return np.array(list(self.results.values()), dtype=float)


class SeededNSGAII(optuna.samplers.NSGAIISampler):
    """NSGA-II that keeps its seed under `n_jobs` (Optuna reseeds it per trial otherwise)."""

    def reseed_rng(self) -> None:
        pass


def optuna_alone(n: int, seed: int, settings: dict) -> Run:
    pool = load_pool("digits")
    draws = threading.Lock()
    with scratch() as tmp:
        space = load_space(write_search_space(tmp / "space.yaml", settings))

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        # raymia's own define-by-run draw (names, order, on/off switches), so the draws match
        with draws:
            mechanisms = space.draw(trial)
        trial.set_user_attr("mechanisms", mechanisms)
        row = run_trial({**settings, "mechanisms": mechanisms}, pool, threads=1)
        return row["test_acc"], row["adv"], row["dtc_adv"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=["maximize", "minimize", "minimize"],
        sampler=SeededNSGAII(
            seed=seed, population_size=make_sampler(*SAMPLER, n, seed)._population_size
        ),
    )
    called = time.time()
    study.optimize(objective, n_trials=n, n_jobs=2)
    elapsed = time.time() - called
    results = {
        _key({f"mechanisms/{k}": v for k, v in t.user_attrs["mechanisms"].items()}): tuple(t.values)
        for t in study.trials
        if t.values is not None
    }
    first = min(t.datetime_start.timestamp() for t in study.trials) - called
    trial_s = float(np.mean([t.duration.total_seconds() for t in study.trials]))
    return Run(n / elapsed * 60, results, trial_s, first)


def raymia_sweep(n: int, seed: int, trial: dict) -> Run:
    with scratch() as tmp:
        settings = SweepSettings(
            space=str(write_search_space(tmp / "space.yaml", trial)),
            out=str(tmp / "sweep"),
            samples=n,
            objectives=OBJECTIVES,
            cpus_per_trial=1,
            max_concurrent=2,
            sampler_seed=seed,
            sampler="nsga2",
        )
        called = time.time()
        df = run_sweep(settings)
        elapsed = time.time() - called
    ok = df[df["status"] == "ok"]
    results = {
        _key({f"mechanisms/{k}": r[k] for k in NAMES}): (r["test_acc"], r["adv"], r["dtc_adv"])
        for r in ok.to_dict("records")
    }
    trial_s = float((ok["finished_at"] - ok["started_at"]).mean())
    first = float(ok["started_at"].min()) - called
    return Run(n / elapsed * 60, results, trial_s, first)


def _pooled(runs: list[Run]) -> Run:
    """One tool's runs as one: trials over total time, mean per-trial and start-up times, and
    the results of the first run (every run searches the same configurations)."""
    rate = len(runs) / sum(1.0 / r.rate for r in runs)
    trial_s = float(np.mean([r.trial_s for r in runs]))
    first = float(np.mean([r.first_start_s for r in runs]))
    return Run(rate, runs[0].results, trial_s, first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trial", choices=["default", "light"], default="default")
    parser.add_argument("--recheck", type=int, default=2, help="trials re-run alone to compare")
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs of each tool, in A-B-B-A order"
    )
    args = parser.parse_args()
    trial = TRIAL if args.trial == "light" else {"dataset": "digits"}
    objectives = parse_objectives(OBJECTIVES)
    directions = [o.direction for o in objectives]
    reference = default_reference(objectives)

    runs = alternating_runs(
        {"optuna": optuna_alone, "raymia": raymia_sweep},
        args.repeats,
        (args.trials, args.seed, trial),
        describe=lambda run: f"{run.rate:.1f} trials/min",
    )
    optuna_run, raymia_run = _pooled(runs["optuna"]), _pooled(runs["raymia"])
    same = all(set(r.results) == set(raymia_run.results) for r in runs["optuna"] + runs["raymia"])
    print(f"same configurations searched by both: {same}")
    hv = {}
    for name, run in [
        ("Optuna alone (n_jobs=2)", optuna_run),
        ("raymia sweep (2 at once)", raymia_run),
    ]:
        hv[name] = hypervolume(run.points, directions, reference)
        print(
            f"{name}: {run.rate:.1f} trials/min, hypervolume {hv[name]:.4f}; "
            f"{run.trial_s:.1f} s per trial, first trial started after {run.first_start_s:.1f} s"
            f" (over {len(runs['optuna'])} runs each)"
        )
    optuna_hv, raymia_hv = hv.values()
    if same:
        # Which tool's rows are the trials' own? Re-run a few configurations one at a time in
        # this process (nothing else running) and compare.
        pool = load_pool("digits")
        keys = sorted(raymia_run.results)[: args.recheck]
        agree = {"Optuna": 0, "raymia": 0}
        for key in keys:
            row = run_trial({**trial, "mechanisms": _mechanisms(key)}, pool, threads=1)
            alone = (row["test_acc"], row["adv"], row["dtc_adv"])
            agree["Optuna"] += bool(np.allclose(optuna_run.results[key], alone))
            agree["raymia"] += bool(np.allclose(raymia_run.results[key], alone))
        print(
            f"rows equal to the same trial re-run alone, of {len(keys)}: "
            f"Optuna {agree['Optuna']}, raymia {agree['raymia']}"
        )
    print(f"hypervolume ratio (raymia / Optuna): {raymia_hv / optuna_hv:.3f}")
    print(f"trials/minute ratio (raymia / Optuna alone): {raymia_run.rate / optuna_run.rate:.2f}x")


if __name__ == "__main__":
    main()
