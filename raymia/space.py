"""Search-space files: which mechanisms a sweep varies, and how.

A search space is a YAML file (see search_spaces/ for the three shipped ones):

```yaml
trial:              # fixed trial settings: any TrialConfig key except `mechanisms`
  dataset: digits
  epochs: 20
sweep:              # this space's sweep settings (a flag wins; unset: SweepSettings' default)
  samples: 32       # default 16
  search: optuna    # optuna (default) | grid | random
  sampler: tpe      # nsga2 (default) | tpe (optuna only)
  objectives: acc:max,adv_excess:min  # default acc:max,adv:min,dtc_adv:min
seeds: [0]          # every configuration runs once per seed
mechanisms:         # per mechanism: off, a fixed strength, or a distribution
  label_smoothing: {uniform: [0.0, 0.3]}
  weight_decay: {loguniform: [1.0e-5, 0.1]}
  augment: {int: [0, 2]}
  dropout: {choice: [0.0, 0.25, 0.5]}
  cutout: 2         # fixed
  dp_noise: off     # off (the same as leaving it out)
grid:               # OR an explicit list of mechanism settings (grid search): one trial each
  - {}                           # the unregularized baseline
  - {label_smoothing: 0.1}
```

Every strength and every distribution bound is checked against the mechanism's allowed range,
and every grid entry and the fixed strengths as a whole (so a fixed DP-SGD + mixup is rejected
here, not mid-sweep). Both are also checked against the fixed trial settings: cutout and crop
padding against the data set's image size, DP-SGD against `trial.norm: batch`, `dp_delta`
against the member count; a space that can draw a strength these rule out is rejected.

Where DP-SGD and mixup, distillation or adversarial regularization are all searched, DP-SGD
takes precedence: in a trial that samples DP-SGD on, the sweep switches the other off and
records which in the row's `switched_off` column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import ConfigError, TrialConfig, describe_error, load_yaml, mechanisms_model
from .mechanisms import REGISTRY
from .mechanisms.registry import riders
from .sweep.settings import SAMPLERS, SEARCHES

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")


class SweepDefaults(BaseModel):
    """Sweep settings a space may carry; the command line overrides each, and
    `raymia.sweep.settings.SweepSettings` holds the defaults of those a space leaves out."""

    model_config = ConfigDict(extra="forbid")

    samples: int | None = Field(None, ge=1, le=100_000)
    search: Literal[SEARCHES] | None = None  # type: ignore[valid-type]
    sampler: Literal[SAMPLERS] | None = None  # type: ignore[valid-type]
    objectives: str | None = None
    max_concurrent: int | None = Field(None, ge=1, le=10_000)
    cpus_per_trial: float | None = Field(None, gt=0)
    gpus_per_trial: float | None = Field(None, ge=0)


class SpaceFile(BaseModel):
    """The YAML document's shape (mechanism entries are checked separately)."""

    model_config = ConfigDict(extra="forbid")

    trial: dict[str, Any] = Field(default_factory=dict)
    sweep: SweepDefaults = SweepDefaults()
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    mechanisms: dict[str, Any] = Field(default_factory=dict)
    grid: list[dict[str, Any]] | None = None
    description: str | None = None

    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds = {seeds}: expected distinct non-negative integers")
        return seeds


# One mechanism's entry: ("off", None) | ("fixed", value) | (distribution, bounds or options)
Entry = tuple[str, Any]


class SearchSpace(BaseModel):
    """A validated search space: fixed trial settings plus the mechanisms it varies."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: str
    trial: dict[str, Any]
    sweep: SweepDefaults
    seeds: list[int]
    mechanisms: dict[str, Entry]
    grid: list[dict[str, Any]] | None

    def is_grid(self) -> bool:
        """Return True when the space is an explicit list of configurations."""
        return self.grid is not None

    def varied(self) -> list[str]:
        """Return the mechanisms whose strength the search chooses."""
        return [n for n, (kind, _) in self.mechanisms.items() if kind in DISTRIBUTIONS]


def _strength_error(key: str, value: Any) -> str | None:
    """Return why `value` is not a valid strength for mechanism `key`, or None if it is."""
    try:
        mechanisms_model().model_validate({key: value})
    except ValidationError as err:
        first = err.errors()[0]
        msg = first["msg"].removeprefix("Value error, ")
        return msg[0].lower() + msg[1:]
    return None


def _parse_entry(path: str, name: str, raw: Any) -> Entry:
    where = f"{path}: mechanisms.{name}"
    known_names = mechanisms_model().model_fields
    if name not in known_names:
        known = ", ".join(known_names)
        raise ConfigError(
            f"{path}: unknown mechanism 'mechanisms.{name}'; expected one of: {known}"
        )
    if raw is None or raw is False or raw == "off":
        return ("off", None)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if problem := _strength_error(name, raw):
            raise ConfigError(f"{where} = {raw!r}: {problem}")
        return ("off", None) if raw == 0 and name not in riders() else ("fixed", raw)
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConfigError(
            f"{where} = {raw!r}: expected off, a number, or one of "
            "{uniform: [lo, hi]}, {loguniform: [lo, hi]}, {int: [lo, hi]}, {choice: [...]}"
        )
    ((kind, args),) = raw.items()
    if kind not in DISTRIBUTIONS:
        raise ConfigError(
            f"{where}.{kind}: unknown distribution {kind!r}; expected one of: "
            + ", ".join(DISTRIBUTIONS)
        )
    if not isinstance(args, list) or not args:
        raise ConfigError(f"{where}.{kind} = {args!r}: expected a non-empty list")
    if kind == "choice":
        values = args
    else:
        if len(args) != 2 or not all(isinstance(a, (int, float)) for a in args):
            raise ConfigError(f"{where}.{kind} = {args!r}: expected [low, high]")
        low, high = args
        if not low < high:
            raise ConfigError(f"{where}.{kind} = {args!r}: expected low < high")
        if kind == "loguniform" and low <= 0:
            raise ConfigError(
                f"{where}.loguniform = {args!r}: expected low > 0 (use choice to include 0)"
            )
        if kind == "int" and not all(isinstance(a, int) for a in args):
            raise ConfigError(f"{where}.int = {args!r}: expected integer bounds")
        values = [low, high]
    for value in values:
        if problem := _strength_error(name, value):
            raise ConfigError(f"{where}.{kind} = {args!r}: {value!r} is out of range: {problem}")
    return (kind, list(args))


def load_space(path: str | Path) -> SearchSpace:
    """Load and validate a search-space YAML file; raise ConfigError naming file and key."""
    path = Path(path)
    data = load_yaml(path)
    where = str(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with keys trial, sweep, mechanisms, ...")
    try:
        doc = SpaceFile.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_space_error(err, where)) from None
    if "mechanisms" in doc.trial:
        raise ConfigError(f"{where}: trial.mechanisms: put mechanisms under the top-level key")
    try:
        TrialConfig.model_validate(doc.trial)
    except ValidationError as err:
        raise ConfigError(
            describe_error(err, f"{where}: trial").replace(": trial: ", ": trial.", 1)
        ) from None
    if doc.grid is not None and doc.mechanisms:
        raise ConfigError(f"{where}: give either mechanisms (a space) or grid (a list), not both")
    entries = {name: _parse_entry(where, name, raw) for name, raw in doc.mechanisms.items()}
    if doc.grid is not None:
        for i, point in enumerate(doc.grid):
            if not isinstance(point, dict):
                raise ConfigError(f"{where}: grid[{i}] = {point!r}: expected a mapping")
            try:
                mechanisms_model().model_validate(point)
            except ValidationError as err:
                raise ConfigError(
                    describe_error(err, f"{where}: grid[{i}]").replace("mechanisms.", "")
                ) from None
    _check_fixed_combination(where, entries)
    _check_against_trial(where, doc.trial, entries, doc.grid or [])
    return SearchSpace(
        path=where,
        trial=doc.trial,
        sweep=doc.sweep,
        seeds=doc.seeds,
        mechanisms=entries,
        grid=doc.grid,
    )


def _check_fixed_combination(where: str, entries: dict[str, Entry]) -> None:
    """Reject spaces where every sampled point combines mechanisms that cannot work together."""
    fixed = {name: args for name, (kind, args) in entries.items() if kind == "fixed"}
    try:
        mechanisms_model().model_validate(fixed)
    except ValidationError as err:
        raise ConfigError(describe_error(err, where)) from None
    # A searched DP-SGD next to a searched clashing mechanism is allowed: the sweep switches
    # the clashing one off in the trials where DP-SGD is on (see
    # raymia.mechanisms.registry.dp_sgd_precedence).


def _trial_error(trial: dict[str, Any], mechanisms: dict[str, Any]) -> str | None:
    """Return why `mechanisms` cannot run under the fixed `trial` settings (a rule that needs
    the data set or a trial setting: image-size bounds, norm under DP-SGD, dp_delta against
    the member count), or None when they can."""
    try:
        TrialConfig.model_validate({**trial, "mechanisms": mechanisms})
    except ValidationError as err:
        return describe_error(err, "").removeprefix(": ")
    return None


def _check_against_trial(
    where: str, trial: dict[str, Any], entries: dict[str, Entry], grid: list[dict[str, Any]]
) -> None:
    """Reject a space that can draw a strength the trial settings rule out.

    Every value a distribution can reach at its ends (every option of a choice) is checked
    with the trial's data set and settings, one mechanism at a time (a rider such as dp_delta
    next to its mechanism at a stand-in strength, `Setting.example`, where the space can turn
    that mechanism on); every grid point as a whole.
    """
    owners = riders()
    for name, (kind, args) in entries.items():
        owner = owners.get(name)
        if kind == "off" or (owner and entries.get(owner, ("off", None))[0] == "off"):
            continue
        stand_in = {owner: REGISTRY[owner].setting.example()} if owner else {}
        for value in [args] if kind == "fixed" else args:
            if problem := _trial_error(trial, {**stand_in, name: value}):
                entry = f"mechanisms.{name}" if kind == "fixed" else f"mechanisms.{name}.{kind}"
                shown = args if kind == "fixed" else list(args)
                raise ConfigError(f"{where}: {entry} = {shown!r}: {problem}")
    for i, point in enumerate(grid):
        if problem := _trial_error(trial, point):
            raise ConfigError(f"{where}: grid[{i}]: {problem}")


def _space_error(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        parent = first["loc"][:-1]
        model: type[BaseModel] = SweepDefaults if parent else SpaceFile
        return f"{where}: unknown key {loc!r}; expected one of: {', '.join(model.model_fields)}"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "value_error":
        return f"{where}: {msg}"
    return f"{where}: {loc} = {first.get('input')!r}: {msg[0].lower() + msg[1:]}"


def shipped_space(name: str) -> Path:
    """Return the path of a search space shipped with raymia (e.g. 'frontier')."""
    return Path(__file__).resolve().parent.parent / "search_spaces" / f"{name}.yaml"
