"""Trial configuration, validated once at the edge.

Everything past this module trusts a `TrialConfig`. A bad value fails here with one line that
names the source (file or flag), the key path, the value and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from raymia.attacks.registry import REGISTRY as ATTACKS
from raymia.data.datasets import dataset_info
from raymia.errors import ConfigError, DataError, one_line, quote, read_text_file, show_path
from raymia.mechanisms.registry import REGISTRY as MECHANISMS
from raymia.mechanisms.registry import settings as mechanism_settings
from raymia.models.architectures import arch_problem
from raymia.models.networks import Norm as LayerNorm
from raymia.privacy.canaries import MAX_CANARIES
from raymia.privacy.dtc import DtcOptions, parse_tau
from raymia.privacy.dtc import Norm as DtcNorm
from raymia.registry import Registry


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class MechanismsBase(_Strict):
    """Every regularization mechanism's strength (0 = off) and the settings that ride with
    one. The fields come from the mechanism registry: `mechanisms_model` builds the model."""

    @model_validator(mode="after")
    def _check(self) -> MechanismsBase:
        on = self.active()
        for name, strength in on.items():
            if problem := MECHANISMS[name].strength_problem(strength):
                raise ValueError(problem)
        # Each clash breaks the per-sample sensitivity bound DP-SGD's epsilon rests on.
        for dp in (name for name in on if MECHANISMS[name].dp_sgd):
            for name, strength in on.items():
                if reason := MECHANISMS[name].dp_clash:
                    raise ValueError(
                        f"mechanisms.{name} = {strength} cannot combine with "
                        f"mechanisms.{dp} = {on[dp]}: {reason}"
                    )
        return self

    def active(self) -> dict[str, float]:
        """Return the mechanisms that are on, name -> strength (riders such as dp_clip and
        dp_delta ride with their mechanism and are never listed)."""
        return {name: value for name in MECHANISMS if (value := getattr(self, name, 0))}


# One model per registry state: name -> (registry version, model).
_BUILT: dict[str, tuple[int, type[BaseModel]]] = {}


def _built(
    name: str, base: type[BaseModel], registry: Registry, fields: Callable[[], dict[str, Any]]
) -> Any:
    """Return the model `name` with `fields()` on `base`, built once per registry version."""
    built = _BUILT.get(name)
    if built is None or built[0] != registry.version:
        model = create_model(name, __base__=base, __module__=__name__, **fields())
        built = _BUILT[name] = (registry.version, model)
    return built[1]


def mechanisms_model() -> type[MechanismsBase]:
    """Return the pydantic `Mechanisms` model of the registered mechanisms (their strengths
    and riders, in registry order), rebuilt after the registry changes."""
    return _built(
        "Mechanisms",
        MechanismsBase,
        MECHANISMS,
        lambda: {name: setting.field() for name, setting in mechanism_settings().items()},
    )


def _section(model_of: Callable[[], type[BaseModel]], base: type[BaseModel]) -> Any:
    """Return an annotation that validates with the model `model_of()` gives when it runs, so
    a TrialConfig field follows its registry (an instance of an older build is re-checked)."""

    def validate(value: Any) -> BaseModel:
        model = model_of()
        if isinstance(value, model):
            return value
        if isinstance(value, base):
            value = value.model_dump()
        return model.model_validate(value)

    return Annotated[base, PlainValidator(validate), PlainSerializer(lambda m: m.model_dump())]


MechanismsSection = _section(mechanisms_model, MechanismsBase)


class AttackOptionsBase(_Strict):
    """Which membership inference attacks run after training, and their knobs. The fields
    are the general ones below plus each registered attack's own options
    (`attack_options_model` builds the model)."""


# The options of every trial's measurement, beside each attack's own.
_GENERAL_ATTACK_OPTIONS: dict[str, Any] = {
    "shadow_calibration": (
        bool,
        Field(
            True, description="train one shadow model on reference data for calibrated thresholds"
        ),
    ),
    "n_bootstrap": (
        int,
        Field(200, ge=0, le=10_000, description="bootstrap replicates of each AUC interval"),
    ),
    "n_permutations": (
        int,
        Field(200, ge=0, le=10_000, description="label permutations of each advantage's null"),
    ),
    "canaries": (
        int,
        Field(
            0,
            ge=0,
            le=MAX_CANARIES,
            multiple_of=2,
            description="mislabeled test images audited apart, half of them trained on "
            "(raymia.privacy.canaries); 0 = off",
        ),
    ),
}


def attack_options_model() -> type[AttackOptionsBase]:
    """Return the pydantic `AttackOptions` model: every registered attack's options, in
    registry order, then the general ones; rebuilt after the registry changes."""

    def fields() -> dict[str, Any]:
        options = {n: s.field() for attack in ATTACKS.values() for n, s in attack.options.items()}
        return {**options, **_GENERAL_ATTACK_OPTIONS}

    return _built("AttackOptions", AttackOptionsBase, ATTACKS, fields)


AttackOptionsSection = _section(attack_options_model, AttackOptionsBase)


class DtcSettings(_Strict):
    """Distance-to-confident options (raymia.privacy.dtc; docs/ARCHITECTURE.md, "DtC"); the search's
    defaults are those of `raymia.privacy.dtc.DtcOptions`."""

    enabled: bool = True
    norm: DtcNorm = DtcOptions.norm
    tau: str = Field(
        "quantile:0.9",
        description="quantile:q of reference true-class margins, or absolute:p (margin logit(p))",
    )
    eps_max: float | None = Field(None, gt=0, description="radius cap (None: norm default)")
    bisection_steps: int = Field(DtcOptions.bisection_steps, ge=1, le=30)
    pgd_steps: int = Field(DtcOptions.pgd_steps, ge=1, le=500)
    max_samples: int = Field(
        500, ge=2, le=100_000, description="members + non-members measured, class-balanced"
    )

    @field_validator("tau")
    @classmethod
    def _check_tau(cls, value: str) -> str:
        try:
            parse_tau(value)
        except ValueError:
            raise ValueError(
                f"dtc.tau = {quote(value)}: expected 'quantile:q' or 'absolute:p', 0 < q, p < 1"
            ) from None
        return value


class TrialConfig(_Strict):
    """One trial: data, training settings, mechanisms, and what to measure."""

    dataset: str = Field(
        "digits",
        description="a built-in data set's name, or the path of an image folder or an .npz",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1)
    data_root: str | None = None
    download: bool = False
    members: int | None = Field(None, ge=10, description="member count (None: data set default)")
    non_members: int | None = Field(None, ge=10)
    held_out: int | None = Field(
        None, ge=10, description="the owner's held-out data: early stopping, adv_reg"
    )
    reference: int | None = Field(None, ge=10)
    epochs: int = Field(30, ge=1, le=1000)
    batch_size: int = Field(64, ge=1, le=8192)
    lr: float = Field(1e-3, gt=0, le=10.0)
    optimizer: Literal["adam", "sgd"] = "adam"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    reference_training: Literal["auto", "ensemble", "sequential"] = Field(
        "auto",
        description=(
            "how the reference models train: as one batched ensemble, one after another, or "
            "auto (the faster path on the device); the row's reference_training is the path "
            "taken"
        ),
    )
    # One architecture for every trial: GroupNorm works under DP-SGD (BatchNorm mixes the
    # samples of a batch, which per-sample clipping cannot allow), so DP-versus-rest compares
    # mechanisms, not normalization layers.
    norm: LayerNorm = Field("group", description="normalization layers: batch | group | none")
    arch: str = Field(
        "auto",
        description=(
            "the network: auto (the built-in one for the data), small-cnn, vgg-style, a "
            "torchvision classifier (resnet18, ...) or package.module:factory"
        ),
    )
    mechanisms: MechanismsSection = Field(
        default_factory=dict, description="mechanism strengths (raymia.mechanisms)"
    )
    attacks: AttackOptionsSection = Field(
        default_factory=dict, description="attack options (raymia.attacks)"
    )
    dtc: DtcSettings = DtcSettings()

    @model_validator(mode="after")
    def _check_the_network_fits_the_data(self) -> TrialConfig:
        info = dataset_info(self.dataset)
        shape = (info.channels, info.image_size, info.num_classes)
        if problem := arch_problem(self.arch, *shape, self.norm):
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _check_mechanisms_fit_the_trial(self) -> TrialConfig:
        # Rules that need the data set or another trial setting (image-size bounds, DP-SGD's
        # norm and delta), declared by each mechanism.
        for name, strength in self.mechanisms.active().items():
            if problem := MECHANISMS[name].trial_problem(strength, self):
                raise ValueError(problem)
        return self

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        # a built-in name, or a file data set whose data reads (one line otherwise)
        try:
            dataset_info(value)
        except DataError as err:
            raise ValueError(str(err)) from None
        return value

    def member_count(self) -> int:
        """Return the number of members the trial trains on (the data set's default if unset)."""
        return self.members or dataset_info(self.dataset).members

    def flat(self) -> dict[str, Any]:
        """Return the config as one flat dict: the top-level settings, the columns mechanisms
        add (``dp_accountant``: None where the mechanism is off), then every mechanism strength
        and rider."""
        out = self.model_dump(exclude={"mechanisms", "attacks", "dtc"})
        for name, cls in MECHANISMS.items():
            if cls.row_columns:
                strength = getattr(self.mechanisms, name, 0)
                values = cls.row_values(strength, self) if strength else {}
                out.update({column: values.get(column) for column in cls.row_columns})
        out.update(self.mechanisms.model_dump())
        return out


def _sections() -> dict[str, type[BaseModel]]:
    """Return TrialConfig's sections and their current models; their keys are accepted by
    `--set KEY=VALUE` without a section prefix."""
    return {
        "mechanisms": mechanisms_model(),
        "attacks": attack_options_model(),
        "dtc": DtcSettings,
    }


def _key_path(key: str) -> list[str]:
    """Resolve a possibly unqualified key (`label_smoothing`) to its path in TrialConfig."""
    parts = key.split(".")
    if len(parts) == 1 and key not in TrialConfig.model_fields:
        for section, model in _sections().items():
            if key in model.model_fields:
                return [section, key]
    return parts


def _known_keys() -> str:
    sections = _sections()
    names = [k for k in TrialConfig.model_fields if k not in sections]
    for model in sections.values():
        names += list(model.model_fields)
    return ", ".join(names)


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "--set") -> dict:
    """Return a copy of `data` with each `KEY=VALUE` override applied (values parsed as YAML,
    a value that is not YAML kept as its text); raise ConfigError, one line, for a malformed
    item, an unknown key, or a value that is an alias bomb or nested too deeply."""
    import yaml

    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{source} {quote(item)}: expected KEY=VALUE")
        path = _key_path(key)
        if len(path) == 1 and path[0] not in TrialConfig.model_fields:
            raise ConfigError(
                f"{source} {one_line(item, 120)}: unknown key {quote(key)}; "
                f"expected one of: {_known_keys()}"
            )
        try:
            value = _yaml_document(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        except _YamlTooBig as err:
            raise ConfigError(f"{source} {quote(key)}: the value {err}") from None
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source} {quote(key)}: {quote(part)} is not a section")
        node[path[-1]] = value
    return out


def describe_error(err: ValidationError, source: str) -> str:
    """Return one line naming the source, the key path, the value and what was expected."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        parent = first["loc"][:-1]
        model: type[BaseModel] = _sections()[str(parent[0])] if parent else TrialConfig
        expected = ", ".join(model.model_fields)
        return f"{source}: unknown key {quote(loc)}; expected one of: {expected}"
    msg = first["msg"]
    if kind == "value_error":
        # Our own cross-field checks already name the keys and values.
        return f"{source}: {one_line(msg.removeprefix('Value error, '), 400)}"
    value = first.get("input")
    expected = one_line(msg[0].lower() + msg[1:], 300)
    return f"{source}: {one_line(loc, 120)} = {quote(value)}: {expected}"


def parse_trial_config(data: dict[str, Any] | None, source: str = "config") -> TrialConfig:
    """Validate a plain dict into a TrialConfig, or raise ConfigError with one clear line."""
    try:
        return TrialConfig.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(describe_error(err, source)) from None


#: The most values a YAML document may hold, each alias (*name) counting as the values it
#: repeats: far above any space or trial config (a 1 MB grid holds about 200,000), far below
#: an alias bomb ("billion laughs") that would stall whatever walks the result.
MAX_YAML_VALUES = 250_000
#: The deepest nesting of lists and mappings a YAML document may have.
MAX_YAML_DEPTH = 100


class _YamlTooBig(Exception):
    """A YAML document over the value or nesting budget; the message says which."""


def _yaml_loader() -> Any:
    """Return PyYAML's safe loader, libyaml's where installed (same constructor, faster)."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_yaml_events(text: str, loader: Any) -> None:
    """Raise _YamlTooBig when the YAML in `text` nests deeper than `MAX_YAML_DEPTH` or holds
    more than `MAX_YAML_VALUES` values with its aliases expanded, or an alias that refers to
    a value containing it. Reads the parser's events once, keeping only the expanded size of
    each anchor: nothing is built, so an alias bomb is refused in microseconds. Malformed
    YAML raises the parser's yaml.YAMLError."""
    import yaml

    sizes: dict[str, int] = {}  # anchor -> values it stands for
    frames: list[list[Any]] = [[None, 0]]  # open collections: [anchor, values so far]
    total = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(frames) > MAX_YAML_DEPTH:
                raise _YamlTooBig(
                    f"nests lists or mappings more than {MAX_YAML_DEPTH} deep; "
                    "expected a settings file"
                )
            frames.append([event.anchor, 1])
            total += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = frames.pop()
            if anchor is not None:
                sizes[anchor] = size
            frames[-1][1] += size
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                sizes[event.anchor] = 1
            frames[-1][1] += 1
            total += 1
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in sizes:
                frames[-1][1] += sizes[event.anchor]
                total += sizes[event.anchor]
            elif any(frame[0] == event.anchor for frame in frames):
                raise _YamlTooBig("holds a value that contains itself through an alias")
            # an undefined alias: the composer reports it as malformed YAML
        if total > MAX_YAML_VALUES:
            raise _YamlTooBig(
                f"holds more than {MAX_YAML_VALUES} values (an alias, *name, counting as "
                "the values it repeats); expected a settings file"
            )


def _yaml_document(text: str) -> Any:
    """Return the one YAML document in `text` (None when it holds none), built only after
    `_check_yaml_events` passes it. Raises yaml.YAMLError (malformed) or _YamlTooBig."""
    import yaml

    loader = _yaml_loader()
    _check_yaml_events(text, loader)
    return yaml.load(text, Loader=loader)  # a safe loader: plain data only


def parse_yaml(text: str, source: str) -> Any:
    """Return the YAML document in `text` (None when it holds none), parsed safely.

    Raises ConfigError, one line naming `source`, for malformed YAML and for a document that
    nests deeper than `MAX_YAML_DEPTH`, holds a value containing itself through an alias, or
    holds more than `MAX_YAML_VALUES` values once its aliases are expanded (an alias bomb):
    such a document is refused from the parser's events, before any value is built.
    """
    import yaml

    try:
        return _yaml_document(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{source}:{where}: malformed YAML: {one_line(problem, 200)}") from None
    except _YamlTooBig as err:
        raise ConfigError(f"{source}: {err}") from None


def load_yaml(path: str | Path) -> Any:
    """Return the parsed YAML document at `path`, or raise ConfigError, one line naming the
    file, when it cannot be read (missing, a directory, unreadable, larger than 1 MB, binary,
    not UTF-8), is malformed, holds no document (empty, or comments only), or is an alias
    bomb or nested too deeply (`parse_yaml`)."""
    shown = show_path(path)
    text = read_text_file(path, ConfigError, what="YAML file")
    data = parse_yaml(text, shown)
    if data is None:
        raise ConfigError(f"{shown}: holds no settings (empty); expected a YAML mapping")
    return data


def __getattr__(name: str) -> Any:
    """`Mechanisms` and `AttackOptions` are the models of the registries as they are now."""
    if name == "Mechanisms":
        return mechanisms_model()
    if name == "AttackOptions":
        return attack_options_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
