"""One training loop, driven by the hooks of whichever mechanisms a config turns on."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raymia import deadline
from raymia.data.batches import ShuffledBatches
from raymia.data.datasets import DatasetInfo, Split
from raymia.mechanisms import REGISTRY as MECHANISMS
from raymia.mechanisms import Batch, Mechanism, TrainContext, build_mechanisms
from raymia.models.architectures import BUILT_IN, build_network
from raymia.models.ensemble import StackedModels
from raymia.models.networks import init_parameters, use_generator, weighted_parameters
from raymia.privacy.logits import chunked
from raymia.trial.config import ConfigError, TrialConfig, mechanisms_model


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
    per pass, None: :func:`raymia.privacy.logits.rows_per_pass` of the model's device). The samples
    go to the device the model is on, which `device` names."""
    if len(split) == 0:
        return 0.0

    def hits(logits: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"hit": logits.argmax(dim=1) == y}

    return float(chunked(model, split.x, split.y, batch_size, hits)["hit"].mean())


def _optimizer(
    config: TrialConfig, params: list[tuple[torch.Tensor, bool]], options: dict
) -> torch.optim.Optimizer:
    """Return the config's optimizer (Adam, or SGD with momentum 0.9) over `params`, each
    given with whether it is a weight (decayed) or not.

    `weight_decay` (lambda) is the L2 penalty lambda / 2 * ||w||^2 on the weights (every
    Conv2d and Linear weight, not biases or normalization parameters): its gradient lambda * w
    joins each weight's gradient before the step, in both optimizers' coupled `weight_decay`
    (the same as adding it to the loss; under DP-SGD, Opacus hands the inner optimizer the
    privatized gradient and the penalty joins it there). Not AdamW's decoupled decay, which at
    lr 1e-3 barely moves the weights.
    """
    decay = float(options.get("weight_decay", 0.0))
    groups = [
        {"params": [p for p, weight in params if weight], "weight_decay": decay},
        {"params": [p for p, weight in params if not weight], "weight_decay": 0.0},
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
    model = build_network(info, **options)
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


@dataclass(frozen=True)
class TrainSpec:
    """One model to train: on `members`, with `held_out` as its owner's held-out data (early
    stopping's validation set, adversarial regularization's reference set) and its own
    randomness from `seed_offset`."""

    members: Split
    held_out: Split | None = None
    seed_offset: int = 0


def ensemble_blocker(config: TrialConfig) -> str | None:
    """Return why no models of `config` can train as one batched ensemble, or None: every
    mechanism on must declare `ensemble` support in its registry entry, and the normalization
    must work sample by sample (not batch)."""
    blocked = [name for name in config.mechanisms.active() if not MECHANISMS[name].ensemble]
    if blocked:
        return f"mechanisms {', '.join(blocked)} do not support the ensemble"
    if config.norm == "batch":
        return "norm = 'batch' mixes a batch's samples (and keeps running statistics)"
    if config.arch not in ("auto", *BUILT_IN):
        return f"arch = {config.arch!r}: only the built-in networks are shown to batch as one"
    return None


def ensemble_problem(config: TrialConfig, specs: Sequence[TrainSpec]) -> str | None:
    """Return why the models of `specs` cannot train as one batched ensemble under `config`,
    or None when they can: :func:`ensemble_blocker`, and every model must take as many
    batches per epoch (their last batches may differ in size)."""
    if blocker := ensemble_blocker(config):
        return blocker
    counts = {batches_per_epoch(config, len(spec.members)) for spec in specs}
    if len(counts) > 1:
        return f"the models take different numbers of batches per epoch ({sorted(counts)})"
    return None


def batches_per_epoch(config: TrialConfig, rows: int) -> int:
    """Return how many batches an epoch over `rows` members takes under `config`."""
    return math.ceil(rows / min(config.batch_size, rows))


@dataclass
class _Member:
    """One model of a training run: its mechanisms (bound to its own context), its model and
    its batches, and how far it got."""

    context: TrainContext
    mechanisms: list[Mechanism]
    model: nn.Module
    batches: ShuffledBatches
    # the batch and target transforms, in the order they apply, and the loss terms
    transforms: list[Mechanism]
    loss_terms: list[Mechanism]
    epochs_run: int = 0
    last_loss: float = float("nan")
    stopped: bool = False

    def using(self, hook: str) -> list[Mechanism]:
        return [m for m in self.mechanisms if hook in m.hooks]


def _member(
    config: TrialConfig,
    info: DatasetInfo,
    spec: TrainSpec,
    device: torch.device,
    use_mechanisms: bool,
) -> _Member:
    """Return one model's mechanisms (prepared), fresh model and batches, all drawn from its
    seed (the trial's seed and the spec's offset) alone."""
    seed = config.seed * 1000 + spec.seed_offset
    context = TrainContext(
        config=config,
        info=info,
        device=device,
        generator=torch.Generator(device=device).manual_seed(seed),
        rng=np.random.default_rng(seed),
        members=spec.members,
        held_out=spec.held_out,
        seed=seed,
    )
    context.train_plain = lambda: (
        train_model(
            config,
            info,
            spec.members,
            device=device,
            seed_offset=spec.seed_offset + 1,
            use_mechanisms=False,
        ).model
    )
    plain = mechanisms_model()()
    mechanisms = build_mechanisms(config.mechanisms if use_mechanisms else plain, context)
    for m in mechanisms:
        if "prepare" in m.hooks:
            m.prepare()
    # The model's own randomness from the trial's seed, not torch's shared generator: what a
    # network draws as it is built (a ViT's position embedding, say) from a fork of it seeded
    # for the purpose, then every convolution and linear layer drawn afresh.
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(context.seeded("construction", device="cpu").initial_seed())
        model = _architecture(info, [m for m in mechanisms if "model" in m.hooks])
    init_parameters(model, context.seeded("weights", device="cpu"))
    model = model.to(device)
    use_generator(model, context.seeded("dropout"))
    # The members move to the device once; each batch indexes them there (the batches drawn on
    # the CPU from the seed: the same on every device).
    batches = ShuffledBatches(
        spec.members.x.to(device),
        spec.members.y.to(device),
        batch_size=min(config.batch_size, len(spec.members)),
        generator=torch.Generator().manual_seed(seed),
    )
    transforms = sorted(
        (m for m in mechanisms if m.hooks & {"batch", "targets"}), key=lambda m: m.order
    )
    loss_terms = [m for m in mechanisms if "loss" in m.hooks]
    return _Member(context, mechanisms, model, batches, transforms, loss_terms)


def _loss(member: _Member, logits: torch.Tensor, batch: Batch, temperature: float) -> torch.Tensor:
    """Return one model's training loss on its batch: the (soft) cross-entropy at the
    training temperature plus its mechanisms' loss terms."""
    if batch.hard:  # same value as the soft form on one-hot targets, and cheaper
        loss = F.cross_entropy(logits / temperature, batch.y) * temperature**2
    else:
        loss = soft_cross_entropy(logits, batch.targets, temperature)
    for m in member.loss_terms:
        loss = loss + m.loss_term(logits, batch)
    return loss


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
    spec = TrainSpec(members, held_out, seed_offset)
    return train_models(config, info, [spec], device=device, use_mechanisms=use_mechanisms)[0]


def train_models(
    config: TrialConfig,
    info: DatasetInfo,
    specs: Sequence[TrainSpec],
    *,
    device: torch.device | None = None,
    use_mechanisms: bool = True,
) -> list[TrainResult]:
    """Train one fresh model per spec under the config's mechanisms; return them in order.

    One model trains as itself; several train as one batched ensemble
    (:class:`raymia.models.ensemble.StackedModels`), which needs :func:`ensemble_problem` to be None
    (ValueError otherwise). It is the same loop either way: each model draws its weights,
    batches and mechanisms' randomness from its own seed, fits its own loss and stops on its
    own (a model that early stopping ends is held while the others go on), so each member is
    the model :func:`train_model` trains for its spec, to float tolerance. Every model's
    `seconds` is the whole run's. Raises TrainingDiverged when a model's loss becomes
    non-finite.
    """
    started = time.perf_counter()
    device = device or resolve_device(config.device)
    if len(specs) > 1 and (problem := ensemble_problem(config, specs)) is not None:
        raise ValueError(f"these {len(specs)} models cannot train as an ensemble: {problem}")
    training = _set_up(config, info, specs, device, use_mechanisms)
    for epoch in range(config.epochs):
        if _epoch(training, epoch):
            break
    return _finish(training, time.perf_counter() - started)


@dataclass
class _Training:
    """What one run of :func:`train_models` trains: its members, their stack (None for one
    model, trained as itself), the optimizer over them, the training temperature, the device
    and the data set's info."""

    run: list[_Member]
    stack: StackedModels | None
    optimizer: torch.optim.Optimizer
    temperature: float
    device: torch.device
    info: DatasetInfo

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Return each member's logits on its own inputs `xs` (in the members' order)."""
        return [self.run[0].model(xs[0])] if self.stack is None else self.stack.forward(xs)

    def module(self, k: int) -> nn.Module:
        """Return member `k`'s model (its own module, out of the stack when there is one)."""
        return self.run[k].model if self.stack is None else self.stack.module(k)


def _set_up(
    config: TrialConfig,
    info: DatasetInfo,
    specs: Sequence[TrainSpec],
    device: torch.device,
    use_mechanisms: bool,
) -> _Training:
    """Return the run of `specs` ready to train: each spec's member (:func:`_member`), one
    model wrapped by its mechanisms' wrappers or several stacked, the optimizer over them and
    the training temperature."""
    run = [_member(config, info, spec, device, use_mechanisms) for spec in specs]
    first = run[0]
    optimizer_options: dict = {}
    for m in first.using("optimizer"):
        optimizer_options.update(m.optimizer_options())
    stack = StackedModels([m.model for m in run]) if len(run) > 1 else None
    if stack is None:
        model = first.model
        optimizer = _optimizer(config, weighted_parameters(model), optimizer_options)
        for m in first.using("wrapper"):
            model, optimizer, first.batches = m.wrap(model, optimizer, first.batches)
        first.model = model
        first.context.model = model
    else:
        optimizer = _optimizer(config, stack.parameters(), optimizer_options)
    temperature = math.prod(m.train_temperature for m in first.mechanisms)
    return _Training(run, stack, optimizer, temperature, device, info)


def _epoch(training: _Training, epoch: int) -> bool:
    """Train every member one epoch (`epoch`, counted from 0) over its batches, then record
    each running member's epochs and mean loss and ask its stoppers; return whether every
    member has stopped. Raises TrainingDiverged when a member's loss is non-finite."""
    run, stack, optimizer = training.run, training.stack, training.optimizer
    if stack is None:
        run[0].model.train()
    else:
        stack.train()
    totals = [torch.zeros((), device=training.device) for _ in run]
    counts = [0 for _ in run]
    for step in zip(*(member.batches for member in run), strict=True):
        deadline.check()  # a sweep's --trial-timeout ends a slow trial within one batch
        if len(step[0][1]) == 0:  # Poisson sampling (DP-SGD, one model) can draw none
            continue
        batches = []
        for member, (x, y) in zip(run, step, strict=True):
            batch = Batch(x, y, training.info.num_classes)
            for m in member.transforms:
                batch = m.transform(batch)
            batches.append(batch)
        logits = training.forward([batch.x for batch in batches])
        losses = [
            _loss(member, z, batch, training.temperature)
            for member, z, batch in zip(run, logits, batches, strict=True)
        ]
        loss = sum(losses[k] for k in range(len(run)) if not run[k].stopped)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if stack is not None:
            stack.restore_held()
        for k, (value, batch) in enumerate(zip(losses, batches, strict=True)):
            totals[k] = totals[k] + value.detach() * len(batch.y)
            counts[k] += len(batch.y)
    for k, member in enumerate(run):
        if member.stopped:
            continue
        member.epochs_run = epoch + 1
        member.last_loss = float(totals[k]) / max(1, counts[k])
        if not math.isfinite(member.last_loss):
            raise TrainingDiverged(
                f"training loss became {member.last_loss} in epoch {member.epochs_run}"
            )
        # every stopper sees every epoch (no short-circuit), so each keeps its state right
        if any([m.after_epoch(training.module(k)) for m in member.using("stopping")]):
            member.stopped = True
            if stack is not None:
                stack.hold(k)
    return all(member.stopped for member in run)


def _finish(training: _Training, seconds: float) -> list[TrainResult]:
    """Return each member's TrainResult, in order: its model (its stoppers' on_train_end run
    on it, unwrapped, in eval mode), epochs run, DP epsilon, final loss and the run's
    `seconds`."""
    results = []
    for k, member in enumerate(training.run):
        trained = training.module(k)
        for m in member.using("stopping"):
            m.on_train_end(trained)
        epsilons = [e for m in member.mechanisms if (e := m.epsilon()) is not None]
        plain_model = _unwrap(trained)
        plain_model.eval()
        results.append(
            TrainResult(
                model=plain_model,
                epochs_run=member.epochs_run,
                dp_epsilon=epsilons[0] if epsilons else None,
                seconds=seconds,
                final_loss=member.last_loss,
            )
        )
    return results
