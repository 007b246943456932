"""What a mechanism is: a small unit that declares its setting and the training-loop hooks
it uses.

Declarations (class attributes; the registry, `raymia.mechanisms.registry`, reads them):
- ``name``, ``level`` (input | output | model | optimizer | training) and ``setting``: the
  strength's config field (`Setting`: type, range, description; 0 means off);
- ``riders``: further settings that ride with the strength (DP-SGD's ``dp_clip``), never a
  mechanism of their own;
- ``dp_sgd`` (this is DP-SGD) and ``dp_clash`` (why this one cannot combine with DP-SGD);
- ``image_size_divisor``: a strength in pixels bounded by the data set's image side;
- ``row_columns``: result columns the mechanism adds beside its strength (``dp_accountant``);
- classmethods ``strength_problem`` and ``trial_problem``: checks beyond the range.

Hooks (:data:`HOOKS`; the loop in `raymia.trial.train` knows these, never the mechanisms
themselves; `register` refuses an unknown hook and a hook method without its hook):
- ``batch`` / ``targets``: `transform(batch)` rewrites inputs and/or soft targets, applied in
  ascending `order` (input transforms, then target transforms, then batch mixing);
- ``loss``: `loss_term(logits, batch)` adds a term to the training loss;
- ``model``: `model_options()` feeds `build_model` (dropout rate, normalization), then
  `fix_model(model)` may adapt the built model (Opacus' layer checks);
- ``optimizer``: `optimizer_options()` feeds the optimizer (weight decay);
- ``wrapper``: `wrap(model, optimizer, batches)` replaces them (DP-SGD), `epsilon()` reports;
- ``stopping``: `after_epoch(model)` may stop training, `on_train_end(model)` tidies up;
- ``prepare``: `prepare()` runs once before training, with `self.context` (a teacher, an
  inference model).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raymia.registry import Setting

if TYPE_CHECKING:
    from raymia.data.datasets import DatasetInfo, Split
    from raymia.trial.config import TrialConfig


#: The training loop's hooks (`raymia.trial.train` calls them, never a mechanism by name), each with
#: the `Mechanism` methods a mechanism using it overrides. A mechanism declares the hooks it
#: uses in `hooks`; `register` refuses a name not here, and a method overridden without a hook
#: that calls it (it would never run).
HOOKS: dict[str, tuple[str, ...]] = {
    "prepare": ("prepare",),
    "batch": ("transform",),
    "targets": ("transform",),
    "loss": ("loss_term",),
    "model": ("model_options", "fix_model"),
    "optimizer": ("optimizer_options",),
    "wrapper": ("wrap", "epsilon"),
    "stopping": ("after_epoch", "on_train_end"),
}


def hook_problem(cls: type) -> str | None:
    """Return why a mechanism class's `hooks` cannot be what the loop runs, or None: a hook
    name not in :data:`HOOKS`, or a hook method overridden whose hook is not declared."""
    declared = getattr(cls, "hooks", None)
    if not isinstance(declared, frozenset | set) or not all(isinstance(h, str) for h in declared):
        return f"hooks must be a set of hook names ({', '.join(HOOKS)}), got {declared!r}"
    unknown = sorted(set(declared) - set(HOOKS))
    if unknown:
        return f"unknown hook(s) {unknown}; expected some of: {', '.join(HOOKS)}"
    for method in dict.fromkeys(m for methods in HOOKS.values() for m in methods):
        if getattr(cls, method) is getattr(Mechanism, method):
            continue
        owners = [hook for hook, methods in HOOKS.items() if method in methods]
        if not set(owners) & set(declared):
            return f"overrides {method}() but declares no hook that runs it ({' or '.join(owners)})"
    return None


@dataclass(frozen=True)
class Batch:
    """One training batch: inputs, true hard labels and the soft targets the loss fits.

    The soft targets stay implicit (one-hot of `y`) until a mechanism asks for them, so a
    batch no target transform touches costs the loop nothing extra (`hard` is then True).
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    soft: torch.Tensor | None = None

    @property
    def hard(self) -> bool:
        """True while the targets are still the one-hot labels."""
        return self.soft is None

    @property
    def targets(self) -> torch.Tensor:
        """Return the soft targets (N, C): the one-hot labels unless a mechanism changed them."""
        if self.soft is None:
            return F.one_hot(self.y, self.num_classes).to(self.x.dtype)
        return self.soft

    def with_(self, x: torch.Tensor | None = None, targets: torch.Tensor | None = None) -> Batch:
        """Return a copy with new inputs and/or new soft targets."""
        return replace(
            self,
            x=self.x if x is None else x,
            soft=self.soft if targets is None else targets,
        )


@dataclass
class TrainContext:
    """What mechanisms may use: the config, data, device and a random generator."""

    config: TrialConfig
    info: DatasetInfo
    device: torch.device
    generator: torch.Generator
    rng: np.random.Generator
    members: Split
    # The owner's held-out data (never trained on): early stopping validates on it, adversarial
    # regularization draws its non-member reference batches from it.
    held_out: Split | None = None
    # The model being trained, as the loop runs it (set once it is built and wrapped).
    model: nn.Module | None = None
    # Trains a plain model (no mechanisms) on the members; set by the training loop.
    train_plain: Callable[[], nn.Module] | None = None
    # The seed `generator` and `rng` were made from; `seeded` derives more from it.
    seed: int = 0

    def seeded(self, purpose: str, device: torch.device | str | None = None) -> torch.Generator:
        """Return a new generator for one purpose (weights, dropout, DP noise, ...).

        Seeded from the trial's seed and the purpose's name, so each purpose has a stream of
        its own that no other draw can shift; on `device` (default: the trial's device).
        """
        digest = hashlib.sha256(f"{self.seed}/{purpose}".encode()).digest()
        generator = torch.Generator(device=self.device if device is None else device)
        return generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class Mechanism:
    """Base class: every hook is a no-op; a mechanism overrides the ones it declares (see the
    module docstring for the declarations and hooks)."""

    name: ClassVar[str]
    level: ClassVar[str]
    setting: ClassVar[Setting]
    # One line for the README's table: what the mechanism does beyond its strength's meaning.
    notes: ClassVar[str] = ""
    riders: ClassVar[Mapping[str, Setting]] = {}
    dp_sgd: ClassVar[bool] = False
    dp_clash: ClassVar[str | None] = None
    # (divisor, why): the strength is at most image side // divisor on every data set.
    image_size_divisor: ClassVar[tuple[int, str] | None] = None
    row_columns: ClassVar[tuple[str, ...]] = ()
    # Whether models under this mechanism can train as one batched ensemble
    # (`raymia.models.ensemble`): its hooks act on each model's own batch, loss and state alone, and
    # nothing random runs inside the model's forward pass. False falls back to training one
    # model after another.
    ensemble: ClassVar[bool] = True
    hooks: ClassVar[frozenset[str]]
    order: ClassVar[int] = 0
    # Distillation trains the student at the teacher's temperature; 1 for everyone else.
    train_temperature: float = 1.0

    @classmethod
    def strength_problem(cls, strength: float) -> str | None:
        """Return why `strength` (in range, not 0) cannot be used, or None when it can."""
        return None

    @classmethod
    def trial_problem(cls, strength: float, config: TrialConfig) -> str | None:
        """Return why `strength` cannot run under the trial `config` (its data set and other
        settings), or None when it can: by default the image-size bound, when declared."""
        if cls.image_size_divisor is None:
            return None
        from raymia.data.datasets import dataset_info

        side = dataset_info(config.dataset).image_size
        divisor, why = cls.image_size_divisor
        limit = side // divisor
        if strength <= limit:
            return None
        return (
            f"mechanisms.{cls.name} = {strength} is too large for {config.dataset} "
            f"({side}x{side} images): expected at most {limit} ({why})"
        )

    @classmethod
    def row_values(cls, strength: float, config: TrialConfig) -> dict[str, Any]:
        """Return the `row_columns` of a trial that turns this mechanism on."""
        return {}

    def __init__(self, strength: float, context: TrainContext):
        self.strength = strength
        self.context = context

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.strength})"

    def prepare(self) -> None:
        """Run once before training."""

    def transform(self, batch: Batch) -> Batch:
        """Return the batch rewritten (``batch`` / ``targets`` hooks)."""
        return batch

    def loss_term(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Return a scalar added to the training loss (``loss`` hook)."""
        return logits.new_zeros(())

    def model_options(self) -> dict[str, Any]:
        """Return keyword arguments for `build_model` (``model`` hook)."""
        return {}

    def fix_model(self, model: nn.Module) -> nn.Module:
        """Return the model adapted before its optimizer is built (``model`` hook)."""
        return model

    def optimizer_options(self) -> dict[str, Any]:
        """Return keyword arguments for the optimizer (``optimizer`` hook)."""
        return {}

    def wrap(self, model: nn.Module, optimizer: torch.optim.Optimizer, batches: Any) -> tuple:
        """Return (model, optimizer, batches), possibly replaced (``wrapper`` hook); `batches`
        is the loop's :class:`raymia.data.batches.ShuffledBatches` over the members."""
        return model, optimizer, batches

    def epsilon(self) -> float | None:
        """Return the privacy budget spent, where the mechanism accounts for one."""
        return None

    def after_epoch(self, model: nn.Module) -> bool:
        """Return True to stop training after this epoch (``stopping`` hook)."""
        return False

    def on_train_end(self, model: nn.Module) -> None:
        """Tidy up once training ends (``stopping`` hook)."""

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) noise from the trial's generator, on the trial's device."""
        g = self.context.generator
        return torch.rand(*shape, generator=g, device=g.device)

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normal noise from the trial's generator, on the trial's device."""
        g = self.context.generator
        return torch.randn(*shape, generator=g, device=g.device)

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        """Integers in [0, high) from the trial's generator, on the trial's device."""
        g = self.context.generator
        return torch.randint(high, shape, generator=g, device=g.device)
