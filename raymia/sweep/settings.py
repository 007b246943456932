"""A sweep's settings: their defaults (the one place), their checks, and sweep.json.

Nothing heavy is imported here at module level: the command line reads the choices and
defaults below before any torch or Ray loads.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raymia.errors import ConfigError, one_line, quote, read_text_file, show_path

if TYPE_CHECKING:
    from raymia.results.front import Objective
    from raymia.sweep.space import SearchSpace

__all__ = [
    "DEFAULT_BUDGETS",
    "DEFAULT_OBJECTIVES",
    "SAMPLERS",
    "SEARCHES",
    "SETTINGS_FILE",
    "SPACE_FILE",
    "SweepSettings",
    "budgets_argument",
    "check_settings",
    "default_out",
    "parse_budgets",
    "expected_trials",
    "load_settings",
    "save_settings",
]

#: The resolved settings inside a sweep directory (what --resume reads back).
SETTINGS_FILE = "sweep.json"
#: The sweep's copy of its search space, inside the sweep directory.
SPACE_FILE = "space.yaml"
#: How the trials are chosen: Optuna's search, a grid space's list, or random draws.
SEARCHES = ("optuna", "grid", "random")
#: Optuna's multi-objective samplers, each fitted to the budget (`raymia.sweep.run.make_sampler`):
#: TPE (the default) or NSGA-II.
SAMPLERS = ("nsga2", "tpe")
#: The default objectives: accuracy up, and the best attack's advantage over chance down
#: (`adv_excess`: how far `adv` clears its permutation null; 0 where chance explains it). Two
#: objectives, one of them 0 for every trial whose leakage chance explains, give a front of the
#: most accurate trial at each level of leakage: a few trials, not most of them (with
#: `acc:max,adv:min,dtc_adv:min`, 11 of the same 16 trials of the default sweep were on it,
#: against 7 now). DtC is still measured and shown for every trial.
DEFAULT_OBJECTIVES = "acc:max,adv_excess:min"
#: The accuracy budgets the sweep's answer reads (`raymia.analysis.answer`), in points of
#: test accuracy given up against the undefended model.
DEFAULT_BUDGETS = (0.5, 1.0, 2.0, 5.0)
#: A trial's time limit in seconds (--trial-timeout): generous, it ends only a hung trial.
DEFAULT_TRIAL_TIMEOUT = 4 * 3600.0
#: The most reference workers a trial may ask for (--reference-workers).
MAX_REFERENCE_WORKERS = 64
#: Where a sweep goes without --out (a strftime pattern).
DEFAULT_OUT = "runs/sweep-%Y%m%d-%H%M%S"


def parse_budgets(text: str) -> tuple[float, ...]:
    """Return the accuracy budgets of ``--budgets`` ("0.5,1,2,5": points of test accuracy
    given up), sorted and without repeats. Raises ValueError (one line) for a piece that is
    not a number from 0 to 100."""
    import math

    budgets = set()
    for piece in text.split(","):
        try:
            value = float(piece)
        except ValueError:
            raise ValueError(
                f"--budgets {text!r}: {piece.strip()!r} is not a number; expected points of "
                "accuracy, e.g. 0.5,1,2,5"
            ) from None
        if not math.isfinite(value) or not 0 <= value <= 100:
            raise ValueError(f"--budgets {text!r}: {value:g} is not within 0 to 100 points")
        budgets.add(value)
    return tuple(sorted(budgets))


def budgets_argument(text: str) -> tuple[float, ...]:
    """Return the budgets of a ``--budgets`` flag (`parse_budgets`), refused in argparse's
    one line (`raymia sweep` and the analysis scripts share it)."""
    import argparse

    try:
        return parse_budgets(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def default_out() -> str:
    """Return the default sweep directory for a sweep starting now: runs/sweep-<time>."""
    import time

    return time.strftime(DEFAULT_OUT)


@dataclass
class SweepSettings:
    """Everything a sweep needs, resolved from the space file and the flags.

    The defaults here are the sweep's defaults: a flag or the space file's ``sweep:`` block
    overrides each (see `raymia.sweep.command.settings_from_args`).
    """

    space: str
    out: str
    samples: int = 16
    search: str = "optuna"
    sampler: str = "tpe"
    objectives: str = DEFAULT_OBJECTIVES
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    address: str | None = None
    sampler_seed: int = 0
    max_failures: int = 1
    trial_timeout: float | None = DEFAULT_TRIAL_TIMEOUT
    # Ray actors per trial that train its reference models in parallel, each in a bundle of the
    # trial's size inside the trial's placement group (raymia.sweep.reference_tasks); 0: the
    # trial trains them itself, one after another.
    reference_workers: int = 0
    ray_init: dict[str, Any] = field(default_factory=dict)

    def objective_list(self) -> list[Objective]:
        """Return the parsed objectives (ValueError, one line, for a malformed spec)."""
        from raymia.results.front import parse_objectives

        return parse_objectives(self.objectives)


def check_settings(settings: SweepSettings, space: SearchSpace) -> None:
    """Raise ConfigError (one line) for any setting that cannot work, before anything runs."""
    from raymia.attacks import REGISTRY as ATTACKS
    from raymia.privacy.canaries import OBJECTIVES as CANARY_OBJECTIVES
    from raymia.trial.config import TrialConfig
    from raymia.trial.reference_models import online_model_count, reference_model_count
    from raymia.trial.runner import objective_columns

    if settings.search not in SEARCHES:
        raise ConfigError(f"--search {settings.search}: expected one of {', '.join(SEARCHES)}")
    if settings.sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {settings.sampler}: expected one of {', '.join(SAMPLERS)}")
    if settings.cpus_per_trial <= 0:
        raise ConfigError(f"--cpus-per-trial {settings.cpus_per_trial}: expected a number > 0")
    if settings.gpus_per_trial < 0:
        raise ConfigError(f"--gpus-per-trial {settings.gpus_per_trial}: expected a number >= 0")
    if settings.gpus_per_trial > 1 and settings.gpus_per_trial != int(settings.gpus_per_trial):
        raise ConfigError(
            f"--gpus-per-trial {settings.gpus_per_trial}: above 1 it must be a whole number"
        )
    if settings.samples < 1:
        raise ConfigError(f"--samples {settings.samples}: expected a positive integer")
    if settings.address and settings.address.startswith("ray://"):
        # Under Ray Client, Tune runs the sweep's driver on the head while this process reads
        # and writes DIR locally: the sweep's own record would land on the other machine.
        raise ConfigError(
            f"--address {settings.address}: Ray Client is not supported; run the sweep on the "
            "cluster: ray job submit --address http://HEAD:8265 -- raymia sweep ... "
            "(or ray submit cluster.yaml scripts/sweep_entry.py -- ...)"
        )
    if settings.trial_timeout is not None and not 0 < settings.trial_timeout < 1e9:
        raise ConfigError(
            f"--trial-timeout {settings.trial_timeout}: expected seconds > 0 (and < 1e9)"
        )
    workers = settings.reference_workers
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ConfigError(f"--reference-workers {quote(workers)}: expected an integer")
    if not 0 <= workers <= MAX_REFERENCE_WORKERS:
        raise ConfigError(
            f"--reference-workers {workers}: expected an integer from 0 to {MAX_REFERENCE_WORKERS}"
        )
    if settings.max_concurrent is not None and settings.max_concurrent < 1:
        raise ConfigError(f"--max-concurrent {settings.max_concurrent}: expected >= 1")
    try:
        objectives = settings.objective_list()
    except ValueError as err:
        raise ConfigError(f"--objectives: {err}") from None
    trial = TrialConfig.model_validate(space.trial)
    if workers and not reference_model_count(trial.attacks) + online_model_count(trial.attacks):
        # each trial would hold P bundles of CPUs that nothing uses
        raise ConfigError(
            f"--reference-workers {workers}: {space.path} trains no reference models (no "
            "shadow calibration, LiRA reference models or online models); use 0"
        )
    dtc_on = trial.dtc.enabled
    known = objective_columns()
    for objective in objectives:
        if objective.column not in known:
            raise ConfigError(
                f"--objectives {settings.objectives}: unknown objective {objective.column!r}; "
                f"expected one of: acc, {', '.join(sorted(known))}"
            )
        if objective.column.startswith("dtc_") and not dtc_on:
            raise ConfigError(
                f"--objectives: {objective.column} needs DtC, but {space.path} sets "
                "trial.dtc.enabled: false"
            )
        needed = CANARY_OBJECTIVES.get(objective.column, 0)
        if trial.attacks.canaries < needed:
            raise ConfigError(
                f"--objectives: {objective.column} needs trial.attacks.canaries >= {needed} "
                f"(half of them non-members), but {space.path} sets {trial.attacks.canaries}"
            )
        if objective.column.endswith("_excess") and not trial.attacks.n_permutations:
            raise ConfigError(
                f"--objectives: {objective.column} is measured against the permutation null, "
                f"but {space.path} sets trial.attacks.n_permutations: 0"
            )
        for attack in ATTACKS.values():
            option = attack.reference_models
            if option and objective.column in attack.columns():
                if not getattr(trial.attacks, option):
                    raise ConfigError(
                        f"--objectives: {objective.column} needs trial.attacks.{option}"
                    )
    if settings.search == "optuna":
        if space.is_grid():
            raise ConfigError(
                f"{space.path}: a grid space lists its configurations; run it with --search grid"
            )
        if not space.varied():
            raise ConfigError(
                f"{space.path}: no mechanism has a distribution, so Optuna has nothing to "
                "search; use --search grid or give a mechanism {uniform: [lo, hi]}"
            )
    if settings.search == "random" and space.is_grid():
        raise ConfigError(
            f"{space.path}: a grid space lists its configurations; run it with --search grid"
        )
    if settings.search == "grid" and not space.is_grid() and space.varied():
        raise ConfigError(
            f"{space.path}: --search grid needs a space with a grid: list (this one has "
            "distributions); use --search optuna or random"
        )


def save_settings(settings: SweepSettings, out_dir: Path) -> None:
    """Copy the space file into DIR/space.yaml and write the settings to DIR/sweep.json
    (atomically), both paths relative to DIR: the directory resumes wherever it is moved."""
    copy = out_dir / SPACE_FILE
    if Path(settings.space).resolve() != copy.resolve():
        shutil.copyfile(settings.space, copy)
    path = out_dir / SETTINGS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**asdict(settings), "space": SPACE_FILE, "out": "."}, indent=2))
    os.replace(tmp, path)


def _fits(value: Any, hint: Any) -> bool:
    """Return whether the JSON value `value` fits the type annotation `hint` (a number that
    is a float field must be finite; a bool is not a number)."""
    import math
    import types
    import typing

    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if (typing.get_origin(hint) or hint) is dict:
        return isinstance(value, dict)
    return True


def _settings_problem(data: Any) -> str | None:
    """Return why the JSON value `data` cannot be a SweepSettings (one line), or None."""
    import dataclasses
    import typing

    if not isinstance(data, dict):
        return f"expected a JSON object of sweep settings, got a {type(data).__name__}"
    hints = typing.get_type_hints(SweepSettings)
    for key, value in data.items():
        if key not in hints:
            return f"unknown key {quote(key)}; expected one of: {', '.join(hints)}"
        if not _fits(value, hints[key]):
            expected = getattr(hints[key], "__name__", None) or str(hints[key])
            return f"{key} = {quote(value)}: expected {expected.replace('typing.', '')}"
    missing = [
        f.name
        for f in dataclasses.fields(SweepSettings)
        if f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    return f"missing {', '.join(missing)}" if missing else None


def load_settings(out_dir: Path) -> SweepSettings:
    """Read DIR/sweep.json back, its relative paths (the space file, the directory itself)
    resolved against DIR where it is now; raise ConfigError (one line naming the file) if it
    is missing, unreadable, not JSON, or holds a key or value a SweepSettings cannot take."""
    path = out_dir / SETTINGS_FILE
    if not os.path.lexists(path):
        raise ConfigError(
            f"--resume {show_path(out_dir)}: no {SETTINGS_FILE}; is this a sweep dir?"
        )
    text = read_text_file(path, ConfigError, what="sweep settings file (JSON)")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:  # RecursionError: arrays nested too deeply
        raise ConfigError(
            f"{show_path(path)}: unreadable sweep settings ({one_line(err, 120)})"
        ) from None
    if problem := _settings_problem(data):
        raise ConfigError(f"{show_path(path)}: unreadable sweep settings: {problem}")
    settings = SweepSettings(**data)
    settings.space = str(out_dir / settings.space)  # an absolute path stays as it is
    settings.out = str(out_dir)
    return settings


def expected_trials(settings: SweepSettings) -> int:
    """Return how many trials the sweep runs when it is not interrupted."""
    if settings.search != "grid":
        return settings.samples
    from raymia.sweep.space import load_space

    space = load_space(settings.space)
    return len(space.grid if space.grid is not None else [{}]) * len(space.seeds)
