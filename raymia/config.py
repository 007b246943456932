"""Trial configuration, validated once at the edge.

Everything past this module trusts a `TrialConfig`. A bad value fails here with one line that
names the source (file or flag), the key path, the value and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)

from .errors import ConfigError

DATASETS = ("digits", "fashion-mnist", "cifar10", "cifar100")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Mechanisms(_Strict):
    """Every regularization mechanism's strength; 0 means off."""

    # input level
    # Strengths in pixels are bounded per data set by TrialConfig (see IMAGE_SIZE_DIVISORS);
    # the ranges here are loose outer bounds.
    augment: int = Field(0, ge=0, le=8, description="random-crop padding in pixels (+ flip)")
    input_noise: float = Field(0.0, ge=0, le=2.0, description="Gaussian input noise sigma")
    cutout: int = Field(0, ge=0, le=32, description="cutout square size in pixels")
    mixup: float = Field(0.0, ge=0, le=4.0, description="mixup Beta(alpha, alpha) alpha")
    # output level
    label_smoothing: float = Field(0.0, ge=0, lt=1.0, description="label smoothing alpha")
    confidence_penalty: float = Field(0.0, ge=0, le=10.0, description="entropy penalty beta")
    disturb_label: float = Field(0.0, ge=0, lt=1.0, description="DisturbLabel alpha")
    distillation: float = Field(0.0, ge=0, le=100.0, description="distillation temperature")
    # model / optimizer level
    dropout: float = Field(0.0, ge=0, le=0.9, description="dropout probability")
    weight_decay: float = Field(
        0.0, ge=0, le=1.0, description="L2 penalty lambda: lambda / 2 * ||w||^2 on the weights"
    )
    # training level
    early_stopping: int = Field(0, ge=0, le=100, description="patience in epochs")
    adv_reg: float = Field(0.0, ge=0, le=10.0, description="adversarial regularization lambda")
    dp_noise: float = Field(0.0, ge=0, le=20.0, description="DP-SGD noise multiplier")
    dp_clip: float = Field(1.0, gt=0, le=100.0, description="DP-SGD per-sample clipping norm")
    dp_delta: float = Field(1e-5, gt=0, lt=1.0, description="DP-SGD delta (far below 1/members)")

    # Settings that ride with dp_noise: never a mechanism of their own (see `active`).
    RIDERS: ClassVar[tuple[str, ...]] = ("dp_clip", "dp_delta")

    @model_validator(mode="after")
    def _check(self) -> Mechanisms:
        if 0 < self.distillation < 1:
            raise ValueError(
                f"mechanisms.distillation = {self.distillation}: expected 0 (off) or a "
                "temperature >= 1"
            )
        if self.dp_noise > 0:
            # Each of these breaks the per-sample sensitivity bound DP-SGD's epsilon rests on.
            clashes = {
                "mixup": "mixup blends samples, so one sample's influence is no longer clipped",
                "distillation": "the teacher is trained without DP on the same members",
                "adv_reg": "the inference model's updates are not clipped or noised",
            }
            for name, reason in clashes.items():
                if getattr(self, name) > 0:
                    raise ValueError(
                        f"mechanisms.{name} = {getattr(self, name)} cannot combine with "
                        f"mechanisms.dp_noise = {self.dp_noise}: {reason}"
                    )
        return self

    def active(self) -> dict[str, float]:
        """Return the mechanisms that are on, name -> strength (the RIDERS, dp_clip and
        dp_delta, ride with dp_noise and are never listed)."""
        return {
            name: value
            for name, value in self.model_dump().items()
            if name not in self.RIDERS and value
        }

    # Strengths measured in pixels, bounded by the data set's image side: side // divisor.
    # Cutout: DeVries & Taylor's largest square is half the side (16 on CIFAR's 32), which
    # covers at most a quarter of the image. Crop padding: a shift of a quarter of the side
    # keeps at least 3/4 of each axis (9/16 of the image) in view; the common CIFAR setting,
    # 4 on 32, is an eighth. Beyond these the transform erases or shifts out the digit itself.
    IMAGE_SIZE_DIVISORS: ClassVar[dict[str, tuple[int, str]]] = {
        "cutout": (2, "half the image side"),
        "augment": (4, "a quarter of the image side"),
    }

    @classmethod
    def image_size_problem(cls, name: str, value: float, dataset: str) -> str | None:
        """Return why `value` is too large a `name` strength for `dataset`'s images (one
        clause naming key, value, data set and limit), or None when it fits."""
        if name not in cls.IMAGE_SIZE_DIVISORS:
            return None
        from .data import DATASETS as INFO

        side = INFO[dataset].image_size
        divisor, why = cls.IMAGE_SIZE_DIVISORS[name]
        limit = side // divisor
        if value <= limit:
            return None
        return (
            f"mechanisms.{name} = {value} is too large for {dataset} ({side}x{side} images): "
            f"expected at most {limit} ({why})"
        )


class AttackOptions(_Strict):
    """Which membership inference attacks run after training, and their knobs."""

    merlin_neighbours: int = Field(100, ge=1, le=1000, description="Merlin's T")
    merlin_sigma: float = Field(0.1, gt=0, le=5.0, description="Merlin's noise sigma")
    lira_reference_models: int = Field(0, ge=0, le=256, description="LiRA's K (0 = off)")
    shadow_calibration: bool = Field(
        True, description="train one shadow model on reference data for calibrated thresholds"
    )
    n_bootstrap: int = Field(200, ge=0, le=10_000)
    n_permutations: int = Field(200, ge=0, le=10_000)


class DtcSettings(_Strict):
    """Distance-to-confident options (see DESIGN.md)."""

    enabled: bool = True
    norm: Literal["l2", "linf"] = "l2"
    tau: str = Field(
        "quantile:0.9",
        description="quantile:q of reference true-class margins, or absolute:p (margin logit(p))",
    )
    eps_max: float | None = Field(None, gt=0, description="radius cap (None: norm default)")
    bisection_steps: int = Field(10, ge=1, le=30)
    pgd_steps: int = Field(20, ge=1, le=500)
    max_samples: int = Field(
        500, ge=2, le=100_000, description="members + non-members measured, class-balanced"
    )

    @field_validator("tau")
    @classmethod
    def _check_tau(cls, value: str) -> str:
        kind, _, number = value.partition(":")
        try:
            ok = kind in ("quantile", "absolute") and 0 < float(number) < 1
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"dtc.tau = {value!r}: expected 'quantile:q' or 'absolute:p', 0 < q, p < 1"
            )
        return value


class TrialConfig(_Strict):
    """One trial: data, training settings, mechanisms, and what to measure."""

    dataset: Literal["digits", "fashion-mnist", "cifar10", "cifar100"] = "digits"
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
    # One architecture for every trial: GroupNorm works under DP-SGD (BatchNorm mixes the
    # samples of a batch, which per-sample clipping cannot allow), so DP-versus-rest compares
    # mechanisms, not normalization layers.
    norm: Literal["batch", "group", "none"] = Field(
        "group", description="normalization layers: batch | group | none"
    )
    mechanisms: Mechanisms = Mechanisms()
    attacks: AttackOptions = AttackOptions()
    dtc: DtcSettings = DtcSettings()

    @model_validator(mode="after")
    def _check_dataset_bounds(self) -> TrialConfig:
        mech = self.mechanisms
        for name in Mechanisms.IMAGE_SIZE_DIVISORS:
            if problem := Mechanisms.image_size_problem(name, getattr(mech, name), self.dataset):
                raise ValueError(problem)
        if mech.dp_noise > 0 and self.norm == "batch":
            raise ValueError(
                f"norm = 'batch' cannot combine with mechanisms.dp_noise = {mech.dp_noise}: "
                "BatchNorm mixes a batch's samples, so per-sample gradients are not clipped; "
                "use norm group or none"
            )
        if mech.dp_noise > 0 and mech.dp_delta >= 1.0 / self.member_count():
            raise ValueError(
                f"mechanisms.dp_delta = {mech.dp_delta}: expected below 1/members = "
                f"1/{self.member_count()} (far below: a delta of 1/n lets the mechanism "
                "publish one member's record outright)"
            )
        return self

    def member_count(self) -> int:
        """Return the number of members the trial trains on (the data set's default if unset)."""
        from .data import DATASETS as INFO

        return self.members or INFO[self.dataset].members

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dp_accountant(self) -> str | None:
        """The privacy accountant DP-SGD uses ("prv" or "rdp"; None without DP-SGD): PRV
        where its discretization fits in memory, else RDP (see raymia.mechanisms.training)."""
        if not self.mechanisms.dp_noise:
            return None
        from .mechanisms.training import DPSGD

        return DPSGD.planned_accountant(self)

    def flat(self) -> dict[str, Any]:
        """Return the config as one flat dict: top-level settings plus every mechanism strength."""
        out = self.model_dump(exclude={"mechanisms", "attacks", "dtc"})
        out.update(self.mechanisms.model_dump())
        return out


# Names accepted by `--set KEY=VALUE` without a section prefix.
_SECTIONS = {
    "mechanisms": Mechanisms.model_fields,
    "attacks": AttackOptions.model_fields,
    "dtc": DtcSettings.model_fields,
}


def _key_path(key: str) -> list[str]:
    """Resolve a possibly unqualified key (`label_smoothing`) to its path in TrialConfig."""
    parts = key.split(".")
    if len(parts) == 1 and key not in TrialConfig.model_fields:
        for section, fields in _SECTIONS.items():
            if key in fields:
                return [section, key]
    return parts


def _known_keys() -> str:
    names = [k for k in TrialConfig.model_fields if k not in _SECTIONS]
    for fields in _SECTIONS.values():
        names += list(fields)
    return ", ".join(names)


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "--set") -> dict:
    """Return a copy of `data` with each `KEY=VALUE` override applied (values parsed as YAML)."""
    import yaml

    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{source} {item!r}: expected KEY=VALUE")
        path = _key_path(key)
        if len(path) == 1 and path[0] not in TrialConfig.model_fields:
            raise ConfigError(
                f"{source} {key}={raw}: unknown key {key!r}; expected one of: {_known_keys()}"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source} {key}: {part!r} is not a section")
        node[path[-1]] = value
    return out


def describe_error(err: ValidationError, source: str) -> str:
    """Return one line naming the source, the key path, the value and what was expected."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        parent = first["loc"][:-1]
        model: type[BaseModel] = TrialConfig
        for part in parent:
            model = model.model_fields[str(part)].annotation  # type: ignore[assignment]
        expected = ", ".join(model.model_fields)
        return f"{source}: unknown key {loc!r}; expected one of: {expected}"
    msg = first["msg"]
    if kind == "value_error":
        # Our own cross-field checks already name the keys and values.
        return f"{source}: {msg.removeprefix('Value error, ')}"
    value = first.get("input")
    return f"{source}: {loc} = {value!r}: {msg[0].lower() + msg[1:]}"


def parse_trial_config(data: dict[str, Any] | None, source: str = "config") -> TrialConfig:
    """Validate a plain dict into a TrialConfig, or raise ConfigError with one clear line."""
    try:
        return TrialConfig.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(describe_error(err, source)) from None


def load_yaml(path: str | Path) -> Any:
    """Return the parsed YAML document at `path`, or raise ConfigError naming the file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None
