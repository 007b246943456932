"""One training loop, driven by the hooks of whichever mechanisms a config turns on."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import deadline
from .batches import ShuffledBatches
from .config import ConfigError, TrialConfig, mechanisms_model
from .data import DatasetInfo, Split
from .mechanisms import Batch, Mechanism, TrainContext, build_mechanisms
from .models import build_model, init_parameters, use_generator
from .outputs import chunked


class TrainingDiverged(RuntimeError):
    """The training loss became non-finite."""


@dataclass
class TrainResult:
    """A trained model (unwrapped, in eval mode) and what the run cost and spent."""

    model: nn.Module
    epochs_run: int
    dp_epsilon: float | None
    seconds: float
    final_loss: float


def resolve_device(setting: str) -> torch.device:
    """Return the torch device for a config's `device` ("auto" picks CUDA when present).

    Raises ConfigError (one line) when "cuda" is asked for on a machine without CUDA; the
    command line calls this before any data is loaded.
    """
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device = 'cuda': CUDA is not available on this machine; use device=cpu or auto"
        )
    return torch.device(setting)


def soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Return the mean cross-entropy of soft `targets` under softmax(logits / T), times T^2.

    The T^2 keeps gradient magnitudes comparable across temperatures (Hinton et al. 2015).
    """
    log_p = F.log_softmax(logits / temperature, dim=1)
    return -(targets * log_p).sum(dim=1).mean() * temperature**2


def accuracy(
    model: nn.Module, split: Split, device: torch.device, batch_size: int | None = None
) -> float:
    """Return the top-1 accuracy of `model` on `split` (eval mode, no grad; `batch_size` rows
    per pass, None: :func:`raymia.outputs.rows_per_pass` of the model's device). The samples
    go to the device the model is on, which `device` names."""
    if len(split) == 0:
        return 0.0

    def hits(logits: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"hit": logits.argmax(dim=1) == y}

    return float(chunked(model, split.x, split.y, batch_size, hits)["hit"].mean())


def _optimizer(config: TrialConfig, model: nn.Module, options: dict) -> torch.optim.Optimizer:
    """Return the config's optimizer (Adam, or SGD with momentum 0.9) over `model`.

    `weight_decay` (lambda) is the L2 penalty lambda / 2 * ||w||^2 on the weights (every
    parameter with more than one dimension: Conv2d and Linear weights, not biases or
    normalization parameters): its gradient lambda * w joins each weight's gradient before the
    step, in both optimizers' coupled `weight_decay` (the same as adding it to the loss; under
    DP-SGD, Opacus hands the inner optimizer the privatized gradient and the penalty joins it
    there). Not AdamW's decoupled decay, which at lr 1e-3 barely moves the weights.
    """
    decay = float(options.get("weight_decay", 0.0))
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9)
    return torch.optim.Adam(groups, lr=config.lr)


def _unwrap(model: nn.Module) -> nn.Module:
    """Return the plain module inside an Opacus GradSampleModule (or the model itself).

    Opacus' per-sample-gradient hooks live on the inner module's layers; they are removed so
    that later gradient work (Merlin, DtC) sees an ordinary model.
    """
    if hasattr(model, "remove_hooks") and hasattr(model, "_module"):
        model.remove_hooks()
        return model._module
    return model


def _architecture(info: DatasetInfo, mechanisms: list[Mechanism]) -> nn.Module:
    """Return a fresh model with the options and fixes of the mechanisms' model hooks."""
    options: dict = {}
    for m in mechanisms:
        options.update(m.model_options())
    model = build_model(info, **options)
    for m in mechanisms:
        model = m.fix_model(model)
    return model


def untrained_model(config: TrialConfig, info: DatasetInfo, members: Split) -> nn.Module:
    """Return a model of the architecture `train_model` builds for `config` on `members` (its
    mechanisms' model options and fixes), on the CPU, its parameters not yet drawn from the
    trial's seed: what the state_dict of a model `train_model` trained elsewhere loads into."""
    context = TrainContext(
        config=config,
        info=info,
        device=torch.device("cpu"),
        generator=torch.Generator(),
        rng=np.random.default_rng(0),
        members=members,
    )
    mechanisms = build_mechanisms(config.mechanisms, context)
    return _architecture(info, [m for m in mechanisms if "model" in m.hooks])


def train_model(
    config: TrialConfig,
    info: DatasetInfo,
    members: Split,
    *,
    held_out: Split | None = None,
    device: torch.device | None = None,
    seed_offset: int = 0,
    use_mechanisms: bool = True,
) -> TrainResult:
    """Train a fresh model on `members` under the config's mechanisms and return it.

    `held_out` is the model owner's own data beside the members, never trained on: early
    stopping's validation set and adversarial regularization's reference set (needed only
    when one of them is on). `seed_offset` gives teachers and reference models their own
    randomness; `use_mechanisms` False trains the plain model (the distillation teacher).
    Raises TrainingDiverged when the loss becomes non-finite.
    """
    started = time.perf_counter()
    device = device or resolve_device(config.device)
    seed = config.seed * 1000 + seed_offset
    generator = torch.Generator(device=device).manual_seed(seed)
    context = TrainContext(
        config=config,
        info=info,
        device=device,
        generator=generator,
        rng=np.random.default_rng(seed),
        members=members,
        held_out=held_out,
        seed=seed,
    )
    context.train_plain = lambda: (
        train_model(
            config, info, members, device=device, seed_offset=seed_offset + 1, use_mechanisms=False
        ).model
    )
    plain = mechanisms_model()()
    mechanisms = build_mechanisms(config.mechanisms if use_mechanisms else plain, context)

    def using(hook: str) -> list[Mechanism]:
        return [m for m in mechanisms if hook in m.hooks]

    for m in using("prepare"):
        m.prepare()

    optimizer_options: dict = {}
    for m in using("optimizer"):
        optimizer_options.update(m.optimizer_options())
    model = _architecture(info, using("model"))
    # The model's own randomness from the trial's seed, not torch's shared generator.
    init_parameters(model, context.seeded("weights", device="cpu"))
    model = model.to(device)
    use_generator(model, context.seeded("dropout"))
    optimizer = _optimizer(config, model, optimizer_options)
    # The members move to the device once; each batch indexes them there (the batches drawn on
    # the CPU from the seed: the same on every device).
    batches: ShuffledBatches = ShuffledBatches(
        members.x.to(device),
        members.y.to(device),
        batch_size=min(config.batch_size, len(members)),
        generator=torch.Generator().manual_seed(seed),
    )
    for m in using("wrapper"):
        model, optimizer, batches = m.wrap(model, optimizer, batches)
    context.model = model

    transforms = sorted(
        (m for m in mechanisms if m.hooks & {"batch", "targets"}), key=lambda m: m.order
    )
    loss_terms = using("loss")
    stoppers = using("stopping")
    temperature = math.prod(m.train_temperature for m in mechanisms)

    epochs_run, last_loss = 0, float("nan")
    for epoch in range(config.epochs):
        model.train()
        total, count = 0.0, 0
        for x, y in batches:
            deadline.check()  # a sweep's --trial-timeout ends a slow trial within one batch
            if len(y) == 0:  # Poisson sampling (DP-SGD) can draw an empty batch
                continue
            batch = Batch(x, y, info.num_classes)
            for m in transforms:
                batch = m.transform(batch)
            logits = model(batch.x)
            if batch.hard:  # same value as the soft form on one-hot targets, and cheaper
                loss = F.cross_entropy(logits / temperature, y) * temperature**2
            else:
                loss = soft_cross_entropy(logits, batch.targets, temperature)
            for m in loss_terms:
                loss = loss + m.loss_term(logits, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(y)
            count += len(y)
        epochs_run = epoch + 1
        last_loss = float(total) / max(1, count)
        if not math.isfinite(last_loss):
            raise TrainingDiverged(f"training loss became {last_loss} in epoch {epochs_run}")
        # every stopper sees every epoch (no short-circuit), so each keeps its own state right
        if any([m.after_epoch(model) for m in stoppers]):
            break
    for m in stoppers:
        m.on_train_end(model)

    epsilons = [e for m in mechanisms if (e := m.epsilon()) is not None]
    plain = _unwrap(model)
    plain.eval()
    return TrainResult(
        model=plain,
        epochs_run=epochs_run,
        dp_epsilon=epsilons[0] if epsilons else None,
        seconds=time.perf_counter() - started,
        final_loss=last_loss,
    )
