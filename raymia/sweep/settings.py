"""A sweep's settings: one table of their types, bounds and defaults, their checks, and
sweep.json.

`SweepSettings` is the table: each field is a setting, its annotation the type, its default
the default, and its `rule` the bounds or choices, whether a space file's ``sweep:`` block may
give it, whether a resume keeps it, and its flag's help. The command line's flags
(`raymia.sweep.command`), the space file's ``sweep:`` block (`raymia.sweep.space.SweepDefaults`),
sweep.json (`load_settings`) and the checks (`check_settings`) all read it through
`setting_problem`. Nothing heavy is imported here at module level: the command line reads the
table before any torch or Ray loads.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import Field, asdict, dataclass, field, fields
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
    "flag",
    "flagged",
    "setting_problem",
    "setting_type",
    "settings_where",
    "check_settings",
    "default_out",
    "parse_budgets",
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


def rule(
    help: str | None = None,
    *,
    lo: float | None = None,
    hi: float | None = None,
    above: float | None = None,
    below: float | None = None,
    choices: tuple[str, ...] | None = None,
    space: bool = False,
    fixed: bool = True,
    metavar: str | None = None,
    default_text: str | None = None,
) -> dict[str, Any]:
    """Return a setting's rule, the metadata of its `SweepSettings` field: bounds `lo` <=
    value <= `hi` and `above` < value < `below`, or `choices`; `space`: a space file's
    ``sweep:`` block may give it; `fixed`: sweep.json keeps it and a resume may not change
    it; `help` (None: no flag), `metavar` and `default_text` (the help's default, else the
    field's) for its flag."""
    return {
        "lo": lo,
        "hi": hi,
        "above": above,
        "below": below,
        "choices": choices,
        "space": space,
        "fixed": fixed,
        "help": help,
        "metavar": metavar,
        "default_text": default_text,
    }


@dataclass
class SweepSettings:
    """Everything a sweep needs, resolved from the space file and the flags: the table of the
    sweep's settings (see the module's docstring).

    The defaults here are the sweep's defaults: a flag or the space file's ``sweep:`` block
    overrides each (see `raymia.sweep.command.settings_from_args`).
    """

    space: str = field(metadata=rule("search space YAML", metavar="FILE", default_text="frontier"))
    out: str = field(
        metadata=rule("sweep directory", metavar="DIR", default_text="runs/sweep-<time>")
    )
    samples: int = field(
        default=16, metadata=rule("trials to run (optuna / random)", lo=1, hi=100_000, space=True)
    )
    search: str = field(default="optuna", metadata=rule("", choices=SEARCHES, space=True))
    sampler: str = field(
        default="tpe", metadata=rule("Optuna sampler", choices=SAMPLERS, space=True)
    )
    objectives: str = field(
        default=DEFAULT_OBJECTIVES,
        metadata=rule("what the search trades off, COLUMN:max|min,...", space=True),
    )
    cpus_per_trial: float = field(default=1.0, metadata=rule("", above=0, space=True, metavar="C"))
    gpus_per_trial: float = field(
        default=0.0, metadata=rule("may be fractional", lo=0, space=True, metavar="G")
    )
    max_concurrent: int | None = field(
        default=None,
        metadata=rule(
            "trials at once", lo=1, hi=10_000, space=True, metavar="K", default_text="all that fit"
        ),
    )
    address: str | None = field(
        default=None,
        metadata=rule(
            "join a running Ray cluster from one of its nodes: auto or HOST:PORT "
            "(not ray://: submit the sweep with `ray job submit` instead)",
            fixed=False,
            default_text="a Ray of the sweep's own on this machine",
        ),
    )
    sampler_seed: int = field(default=0, metadata=rule("seeds the Optuna sampler", lo=0))
    max_failures: int = field(default=1, metadata=rule(lo=0, hi=100))
    trial_timeout: float | None = field(
        default=DEFAULT_TRIAL_TIMEOUT,
        metadata=rule(
            "end a trial that runs longer as a `timeout` row",
            above=0,
            below=1e9,
            fixed=False,
            metavar="SECONDS",
        ),
    )
    # Ray actors per trial that train its reference models in parallel, each in a bundle of the
    # trial's size inside the trial's placement group (raymia.sweep.reference_tasks); 0: the
    # trial trains them itself, one after another.
    reference_workers: int = field(
        default=0,
        metadata=rule(
            "train each trial's reference models on P parallel Ray actors, each with the "
            "trial's CPUs and GPUs, inside the trial's resource request",
            lo=0,
            hi=MAX_REFERENCE_WORKERS,
            metavar="P",
            default_text="0: the trial trains them itself",
        ),
    )
    ray_init: dict[str, Any] = field(default_factory=dict, metadata=rule())

    def objective_list(self) -> list[Objective]:
        """Return the parsed objectives (ValueError, one line, for a malformed spec)."""
        from raymia.results.front import parse_objectives

        return parse_objectives(self.objectives)


def settings_where(**wanted: bool) -> list[Field]:
    """Return the fields of `SweepSettings` whose rule has each of `wanted` (``space=True``:
    those a space file may give; ``fixed=True``: those a resume keeps), in table order."""
    return [f for f in fields(SweepSettings) if all(f.metadata[k] == v for k, v in wanted.items())]


def flagged(**wanted: bool) -> list[Field]:
    """Return the fields of `settings_where(**wanted)` that have a command-line flag (a
    `help`, which may be empty), in table order."""
    return [f for f in settings_where(**wanted) if f.metadata["help"] is not None]


def flag(name: str) -> str:
    """Return a setting's command-line flag (``--cpus-per-trial``)."""
    return "--" + name.replace("_", "-")


def setting_type(name: str) -> type:
    """Return the type of the setting `name` without its None (`int | None` gives int)."""
    import types
    import typing

    hint = _hints()[name]
    if isinstance(hint, types.UnionType):
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


@functools.cache
def _hints() -> dict[str, Any]:
    """Return `SweepSettings`' field annotations, evaluated once."""
    import typing

    return typing.get_type_hints(SweepSettings)


def _shown(bound: float) -> str:
    """Return a bound as a message shows it: 64, 0.5, 1e9."""
    return f"{bound:g}".replace("e+0", "e").replace("e+", "e")


def setting_problem(name: str, value: Any) -> str | None:
    """Return what is wrong with `value` for the setting `name` as "expected ..." (its type
    first, then its bounds or choices, from its `SweepSettings` field), or None when it
    fits. A bool is no number; a float must be finite."""
    spec = next(f for f in fields(SweepSettings) if f.name == name)
    hint = _hints()[name]
    if not _fits(value, hint):
        expected = getattr(hint, "__name__", None) or str(hint)
        return f"expected {expected.replace('typing.', '')}"
    if value is None:
        return None
    r = spec.metadata
    if r["choices"] is not None and value not in r["choices"]:
        return f"expected one of {', '.join(r['choices'])}"
    kind = "an integer" if setting_type(name) is int else "a number"
    if r["lo"] is not None and r["hi"] is not None and not r["lo"] <= value <= r["hi"]:
        return f"expected {kind} from {_shown(r['lo'])} to {_shown(r['hi'])}"
    if r["lo"] is not None and r["hi"] is None and value < r["lo"]:
        return f"expected {kind} >= {_shown(r['lo'])}"
    if r["above"] is not None and value <= r["above"]:
        below = f" (and < {_shown(r['below'])})" if r["below"] is not None else ""
        return f"expected {kind} > {_shown(r['above'])}{below}"
    if r["below"] is not None and value >= r["below"]:
        return f"expected {kind} < {_shown(r['below'])}"
    return None


def check_settings(settings: SweepSettings, space: SearchSpace) -> None:
    """Raise ConfigError (one line) for any setting that cannot work, before anything runs."""
    from raymia.attacks import REGISTRY as ATTACKS
    from raymia.privacy.canaries import OBJECTIVES as CANARY_OBJECTIVES
    from raymia.trial.config import TrialConfig
    from raymia.trial.reference_models import online_model_count, reference_model_count
    from raymia.trial.runner import objective_columns

    for spec in fields(SweepSettings):
        value = getattr(settings, spec.name)
        if problem := setting_problem(spec.name, value):
            shown = (
                quote(value)
                if isinstance(value, str) and spec.metadata["choices"] is None
                else value
            )
            raise ConfigError(f"{flag(spec.name)} {shown}: {problem}")
    if settings.gpus_per_trial > 1 and settings.gpus_per_trial != int(settings.gpus_per_trial):
        raise ConfigError(
            f"--gpus-per-trial {settings.gpus_per_trial}: above 1 it must be a whole number"
        )
    if settings.address and settings.address.startswith("ray://"):
        # Under Ray Client, Tune runs the sweep's driver on the head while this process reads
        # and writes DIR locally: the sweep's own record would land on the other machine.
        raise ConfigError(
            f"--address {settings.address}: Ray Client is not supported; run the sweep on the "
            "cluster: ray job submit --address http://HEAD:8265 -- raymia sweep ... "
            "(or ray submit cluster.yaml scripts/sweep_entry.py -- ...)"
        )
    workers = settings.reference_workers
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

    if not isinstance(data, dict):
        return f"expected a JSON object of sweep settings, got a {type(data).__name__}"
    names = [f.name for f in fields(SweepSettings)]
    for key, value in data.items():
        if key not in names:
            return f"unknown key {quote(key)}; expected one of: {', '.join(names)}"
        if problem := setting_problem(key, value):
            return f"{key} = {quote(value)}: {problem}"
    missing = [
        f.name
        for f in fields(SweepSettings)
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
