"""Search-space files: which mechanisms a sweep varies, and how.

A search space is a YAML file (see search_spaces/ for the shipped ones):

```yaml
trial:              # fixed trial settings: any TrialConfig key except `mechanisms`
  dataset: digits
  epochs: 20
sweep:              # this space's sweep settings (a flag wins; unset: SweepSettings' default)
  samples: 32       # default 16
  search: optuna    # optuna (default) | grid | random
  sampler: nsga2    # tpe (default) | nsga2 (optuna only)
  objectives: acc:max,adv:min,dtc_adv:min  # default acc:max,adv_excess:min
seeds: [0]          # replicates: every configuration runs once per seed (see below)
mechanisms:         # per mechanism: off, a fixed strength, or a distribution
  label_smoothing: {uniform: [0.0, 0.3]}
  weight_decay: {loguniform: [1.0e-5, 0.1]}
  augment: {int: [1, 2]}
  dropout: {choice: [0.25, 0.5]}
  distillation: {choice: [4.0]}   # on/off at one strength
  input_noise: {uniform: [0.05, 0.2], always: true}  # on in every trial
  cutout: 2         # fixed
  dp_noise: off     # off (the same as leaving it out)
grid:               # OR an explicit list of mechanism settings (grid search): one trial each
  - {}                           # the unregularized baseline
  - {label_smoothing: 0.1}
```

**A searched mechanism is first on or off, then its strength is drawn only when it is on.**
Each trial of an optuna or random search draws an on/off switch per mechanism with a
distribution (Optuna parameter ``on/<name>``) and, where it came up on, the strength from the
distribution (``mechanisms/<name>``); an off mechanism is 0 in the row and has no strength in
the Optuna journal. Why the switch is the default: a question a sweep answers is *which*
mechanisms buy privacy, and a distribution such as ``uniform: [0, x]`` is never exactly 0, so
without the switch every trial would run every mechanism at once. A 0 in a ``choice`` or at
the low end of an ``int`` range is the off state, which the switch already draws, so the
strength is drawn from the other values (``{choice: [0, 3, 5]}`` is off, 3 or 5;
``{int: [0, 2]}`` is off, 1 or 2). ``always: true`` drops the switch: the strength is drawn in
every trial, 0 included where the distribution holds it (the format's meaning before
switches). A rider (``dp_clip``, ``dp_delta``) has no switch of its own: it is drawn where its
mechanism is on.

DP-SGD's incompatibilities are part of the space: a trial draws DP-SGD first, and where it is
on, mixup, distillation and adversarial regularization (the mechanisms that declare a
``dp_clash``) are never drawn, so what Optuna records is what ran. A fixed setting is never
overridden: with DP-SGD fixed on, the clashing mechanisms are never drawn; with one of them
fixed on, DP-SGD is never drawn. (Fixed together they are refused, below.)

**Seeds are replicates, never a searched parameter.** With several seeds, a search trial runs
its configuration once per seed and reports one row: every measured number is the mean over
the seeds, `<objective>_sd` the seeds' standard deviation (ddof=1) of the main objectives and
the sweep's own, ``seeds`` the seeds ("0,1,2"), ``seed`` empty; Optuna sees the means. The
per-sample scores of every seed are kept, in one file with a ``seed`` column. A grid search
runs each listed configuration once per seed, one row each (the analysis averages them).

Every strength and every distribution bound is checked against the mechanism's allowed range,
and every grid entry and the fixed strengths as a whole (so a fixed DP-SGD + mixup is rejected
here, not mid-sweep). Both are also checked against the fixed trial settings: cutout and crop
padding against the data set's image size, DP-SGD against `trial.norm: batch`, `dp_delta`
against the member count; a space that can draw a strength these rule out is rejected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from raymia.errors import quote, show_path
from raymia.mechanisms import REGISTRY
from raymia.mechanisms.registry import riders
from raymia.sweep.settings import setting_problem, settings_where
from raymia.trial.config import (
    ConfigError,
    TrialConfig,
    describe_error,
    load_yaml,
    mechanisms_model,
)

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
#: The Optuna parameter names of a mechanism's on/off switch and of its strength.
SWITCH = "on/{}"
STRENGTH = "mechanisms/{}"


def _sweep_block() -> type[BaseModel]:
    """Return the model of a space file's ``sweep:`` block: the settings whose rule in
    `raymia.sweep.settings.SweepSettings` says a space may give them, each optional and
    checked by `setting_problem` (the command line overrides each; the table holds the
    defaults of those a space leaves out)."""
    names = [f.name for f in settings_where(space=True)]

    def check(block: BaseModel) -> BaseModel:
        for name in names:
            value = getattr(block, name)
            if value is not None and (problem := setting_problem(name, value)):
                raise ValueError(f"sweep.{name} = {quote(value)}: {problem}")
        return block

    return create_model(
        "SweepDefaults",
        __config__=ConfigDict(extra="forbid"),
        __doc__="Sweep settings a space may carry (None: not given).",
        __module__=__name__,
        __validators__={"check": model_validator(mode="after")(check)},
        **{name: (Any, None) for name in names},
    )


#: A space file's ``sweep:`` block (Tune's state of a sweep pickles it by this name).
SweepDefaults = _sweep_block()


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
    always: list[str] = []

    def is_grid(self) -> bool:
        """Return True when the space is an explicit list of configurations."""
        return self.grid is not None

    def varied(self) -> list[str]:
        """Return the mechanisms whose strength the search chooses."""
        return [n for n, (kind, _) in self.mechanisms.items() if kind in DISTRIBUTIONS]

    def draw(self, trial: Any) -> dict[str, Any]:
        """Draw one configuration with `trial` (an Optuna trial, define-by-run) and return the
        mechanism settings it runs: every mechanism of the space (0 where off) and the riders
        that are fixed or drawn.

        Switches and strengths are asked of the trial under the names `SWITCH` and `STRENGTH`,
        DP-SGD first, then in registry order (module docstring): a conditional mechanism asks
        its switch, then its strength only when on; a clashing mechanism is never asked where
        DP-SGD is on; a rider is asked only where its mechanism is on.
        """
        owners = riders()
        out: dict[str, Any] = {}
        for name, (kind, args) in self.mechanisms.items():
            if kind == "fixed":
                out[name] = args
            elif name not in owners:
                out[name] = 0
        dp_names = [n for n, cls in REGISTRY.items() if cls.dp_sgd]
        clash_fixed_on = any(
            REGISTRY[n].dp_clash and self.mechanisms[n][0] == "fixed" and out[n]
            for n in self.mechanisms
            if n in REGISTRY
        )
        dp_on = any(out.get(n) for n in dp_names)
        order = sorted(REGISTRY, key=lambda n: not REGISTRY[n].dp_sgd)  # stable: DP-SGD first
        for name in order:
            for setting in (name, *REGISTRY[name].riders):
                kind, args = self.mechanisms.get(setting, ("off", None))
                if kind not in DISTRIBUTIONS:
                    continue
                if setting != name:  # a rider: drawn where its mechanism is on
                    if out.get(name):
                        out[setting] = _suggest(trial, STRENGTH.format(setting), kind, args)
                    continue
                cls = REGISTRY[name]
                if (cls.dp_clash and dp_on) or (cls.dp_sgd and clash_fixed_on):
                    continue  # never drawn: it cannot run beside what is on
                if name in self.always:
                    out[name] = _suggest(trial, STRENGTH.format(name), kind, args)
                else:
                    on_kind, on_args = _on_values(kind, args)
                    if on_args and trial.suggest_categorical(SWITCH.format(name), [False, True]):
                        out[name] = _suggest(trial, STRENGTH.format(name), on_kind, on_args)
                if cls.dp_sgd and out[name]:
                    dp_on = True
        return out


def _on_values(kind: str, args: list[Any]) -> tuple[str, list[Any]]:
    """Return the distribution of a conditional mechanism's strength once it is on: without
    the 0 of a choice (empty when nothing else is left), from 1 for an int range from 0."""
    if kind == "choice":
        return kind, [v for v in args if v != 0]
    if kind == "int" and args[0] == 0:
        return kind, [1, args[1]]
    return kind, args


def _suggest(trial: Any, name: str, kind: str, args: list[Any]) -> Any:
    """Ask `trial` for parameter `name` from one distribution of the space file."""
    if kind == "uniform":
        return trial.suggest_float(name, args[0], args[1])
    if kind == "loguniform":
        return trial.suggest_float(name, args[0], args[1], log=True)
    if kind == "int":
        return trial.suggest_int(name, args[0], args[1])
    return trial.suggest_categorical(name, list(args))


def _strength_error(key: str, value: Any) -> str | None:
    """Return why `value` is not a valid strength for mechanism `key`, or None if it is."""
    try:
        mechanisms_model().model_validate({key: value})
    except ValidationError as err:
        first = err.errors()[0]
        msg = first["msg"].removeprefix("Value error, ")
        return msg[0].lower() + msg[1:]
    return None


def _parse_entry(path: str, name: str, raw: Any) -> tuple[Entry, bool]:
    """Return one mechanism's entry and whether it is drawn in every trial (`always: true`)."""
    where = f"{path}: mechanisms.{name}"
    known_names = mechanisms_model().model_fields
    if name not in known_names:
        known = ", ".join(known_names)
        raise ConfigError(
            f"{path}: unknown mechanism {quote(f'mechanisms.{name}')}; expected one of: {known}"
        )
    if raw is None or raw is False or raw == "off":
        return ("off", None), False
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if problem := _strength_error(name, raw):
            raise ConfigError(f"{where} = {quote(raw)}: {problem}")
        return ("off", None) if raw == 0 and name not in riders() else ("fixed", raw), False
    always = raw.get("always", False) if isinstance(raw, dict) else False
    if not isinstance(raw, dict) or len(raw) != 1 + ("always" in raw):
        raise ConfigError(
            f"{where} = {quote(raw)}: expected off, a number, or one of "
            "{uniform: [lo, hi]}, {loguniform: [lo, hi]}, {int: [lo, hi]}, {choice: [...]} "
            "(with always: true to draw it in every trial)"
        )
    if not isinstance(always, bool):
        raise ConfigError(f"{where}.always = {quote(always)}: expected true or false")
    if always and name in riders():
        raise ConfigError(
            f"{where}.always: {name} rides with {riders()[name]} and is drawn wherever "
            f"{riders()[name]} is on; always applies to a mechanism"
        )
    ((kind, args),) = ((k, v) for k, v in raw.items() if k != "always")
    if kind not in DISTRIBUTIONS:
        raise ConfigError(
            f"{where}: unknown distribution {quote(kind)}; expected one of: "
            + ", ".join(DISTRIBUTIONS)
        )
    if not isinstance(args, list) or not args:
        raise ConfigError(f"{where}.{kind} = {quote(args)}: expected a non-empty list")
    if kind == "choice":
        values = args
    else:
        if len(args) != 2 or not all(isinstance(a, (int, float)) for a in args):
            raise ConfigError(f"{where}.{kind} = {quote(args)}: expected [low, high]")
        low, high = args
        if not low < high:
            raise ConfigError(f"{where}.{kind} = {quote(args)}: expected low < high")
        if kind == "loguniform" and low <= 0:
            raise ConfigError(
                f"{where}.loguniform = {quote(args)}: expected low > 0 (use choice to include 0)"
            )
        if kind == "int" and not all(isinstance(a, int) for a in args):
            raise ConfigError(f"{where}.int = {quote(args)}: expected integer bounds")
        values = [low, high]
    for value in values:
        if problem := _strength_error(name, value):
            raise ConfigError(
                f"{where}.{kind} = {quote(args)}: {quote(value)} is out of range: {problem}"
            )
    return (kind, list(args)), always


def load_space(path: str | Path) -> SearchSpace:
    """Load and validate a search-space YAML file; raise ConfigError naming file and key."""
    path = Path(path)
    data = load_yaml(path)
    where = show_path(path)
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
    parsed = {name: _parse_entry(where, name, raw) for name, raw in doc.mechanisms.items()}
    entries = {name: entry for name, (entry, _) in parsed.items()}
    if doc.grid is not None:
        for i, point in enumerate(doc.grid):
            if not isinstance(point, dict):
                raise ConfigError(f"{where}: grid[{i}] = {quote(point)}: expected a mapping")
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
        always=[name for name, (_, always) in parsed.items() if always],
    )


def _check_fixed_combination(where: str, entries: dict[str, Entry]) -> None:
    """Reject spaces where every sampled point combines mechanisms that cannot work together."""
    fixed = {name: args for name, (kind, args) in entries.items() if kind == "fixed"}
    try:
        mechanisms_model().model_validate(fixed)
    except ValidationError as err:
        raise ConfigError(describe_error(err, where)) from None
    # A searched DP-SGD next to a searched (or fixed) clashing mechanism is allowed: a trial
    # never draws what cannot run beside what is on (SearchSpace.draw).


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
                raise ConfigError(f"{where}: {entry} = {quote(shown)}: {problem}")
    for i, point in enumerate(grid):
        if problem := _trial_error(trial, point):
            raise ConfigError(f"{where}: grid[{i}]: {problem}")


def _space_error(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        parent = first["loc"][:-1]
        model: type[BaseModel] = SweepDefaults if parent else SpaceFile
        expected = ", ".join(model.model_fields)
        return f"{where}: unknown key {quote(loc)}; expected one of: {expected}"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "value_error":
        return f"{where}: {msg}"
    return f"{where}: {loc} = {quote(first.get('input'))}: {msg[0].lower() + msg[1:]}"


def shipped_space(name: str) -> Path:
    """Return the path of a search space shipped with raymia (e.g. 'frontier')."""
    return Path(__file__).resolve().parents[2] / "search_spaces" / f"{name}.yaml"
