"""Training-level mechanisms: early stopping, adversarial regularization, DP-SGD."""

from __future__ import annotations

import copy
import math
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from raymia.mechanisms.base import Batch, Mechanism, Setting
from raymia.mechanisms.registry import register
from raymia.models.networks import init_parameters

if TYPE_CHECKING:
    from raymia.trial.config import TrialConfig

# Opacus' hooks on the first layer fire with no input gradient (images never need one): benign.
warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)


@register
class EarlyStopping(Mechanism):
    """Stop when the loss on the owner's held-out data has not improved for `strength`
    epochs, and restore the best weights. Trains on every member; never looks at non-members."""

    name = "early_stopping"
    level = "training"
    setting = Setting(int, "patience in epochs", le=100)
    notes = "judged on the `held_out` split; the best weights are restored"
    hooks = frozenset({"stopping"})

    def __init__(self, strength, context):
        super().__init__(strength, context)
        self.best_loss = float("inf")
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stale = 0
        self.validation: tuple[torch.Tensor, torch.Tensor] | None = None

    def validation_loss(self, model: nn.Module) -> float:
        """Return the mean cross-entropy on the held-out data (eval mode); the data moves to
        the training device at the first epoch's end and stays there."""
        if self.validation is None:
            val = self.context.held_out
            if val is None or len(val) == 0:
                raise ValueError("early stopping needs held-out data (train_model's held_out)")
            self.validation = (val.x.to(self.context.device), val.y.to(self.context.device))
        x, y = self.validation
        was_training = model.training
        model.eval()
        with torch.no_grad():
            loss = F.cross_entropy(model(x), y).item()
        model.train(was_training)
        return loss

    def after_epoch(self, model: nn.Module) -> bool:
        loss = self.validation_loss(model)
        if loss < self.best_loss - 1e-6:
            self.best_loss, self.stale = loss, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.stale += 1
        return self.stale >= self.strength

    def on_train_end(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


class InferenceModel(nn.Module):
    """The defender's membership classifier h(f(x), y) of Nasr et al. (2018)."""

    def __init__(self, num_classes: int, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * num_classes + 1, width),
            nn.ReLU(),
            nn.Linear(width, width // 2),
            nn.ReLU(),
            nn.Linear(width // 2, 1),
        )

    def forward(self, logits: torch.Tensor, labels_one_hot: torch.Tensor) -> torch.Tensor:
        """Return the membership logit per sample (N,) from the classifier's logits."""
        # Log-probabilities, not probabilities: members differ from non-members mostly in how
        # close to 1 the top probability is, which softmax squashes (and its gradient with it).
        # Sorted, so h judges confidence rather than class identity; the true class's own
        # log-probability and the label ride alongside.
        log_p = F.log_softmax(logits, dim=1).clamp(min=-30.0)
        true_log_p = (log_p * labels_one_hot).sum(dim=1, keepdim=True)
        ranked = log_p.sort(dim=1, descending=True).values
        return self.net(torch.cat([ranked, true_log_p, labels_one_hot], dim=1)).squeeze(1)


@register
class AdversarialRegularization(Mechanism):
    """Min-max game with an inference model (Nasr et al. 2018).

    Each step first trains the inference model h to tell the member batch from a batch of the
    owner's held-out data (never the attacker's reference data), then adds
    lambda * E_members[log h(f(x), y)] to the classifier's loss: the classifier is rewarded
    for making its members look like non-members to h.

    Both sides are seen alike, so h cannot learn "transformed vs clean" instead of membership:
    its member logits come from the CLEAN member inputs with their true labels (this
    mechanism's `batch` hook runs before every input transform and mixup and only records the
    batch), its non-member logits from clean held-out inputs, both in the model's train mode
    (batch statistics). Neither extra pass moves BatchNorm's running statistics. The privacy
    term's gradient flows into the classifier through the clean member pass.
    """

    name = "adv_reg"
    level = "training"
    setting = Setting(float, "adversarial regularization lambda", le=10.0)
    notes = "Nasr et al. 2018 min-max game against the owner's `held_out` data"
    dp_clash = "the inference model's updates are not clipped or noised"
    ensemble = False  # an inference model per classifier, and extra passes through it
    hooks = frozenset({"prepare", "batch", "loss"})
    order = -100  # before every other transform: it records the clean batch

    def prepare(self) -> None:
        ctx = self.context
        if ctx.held_out is None or len(ctx.held_out) == 0:
            raise ValueError(
                "adversarial regularization needs held-out data (train_model's held_out)"
            )
        self.reference_x = ctx.held_out.x.to(ctx.device)
        self.reference_y = ctx.held_out.y.to(ctx.device)
        self.clean: Batch | None = None
        self.inference = InferenceModel(ctx.info.num_classes)
        init_parameters(self.inference, ctx.seeded("inference model weights", device="cpu"))
        self.inference = self.inference.to(ctx.device)
        self.inference_optimizer = torch.optim.Adam(self.inference.parameters(), lr=1e-3)

    def transform(self, batch: Batch) -> Batch:
        """Record the clean batch for :meth:`loss_term`; return it unchanged."""
        self.clean = batch
        return batch

    @staticmethod
    def forward_without_stats(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Return model(x) in the model's current mode without updating any running statistics.

        In train mode normalization layers still use the batch's own statistics, exactly as
        in the training forward pass; they just do not feed them into their running estimates
        (nor count the batch).
        """
        tracking = [m for m in model.modules() if getattr(m, "track_running_stats", False)]
        for m in tracking:
            m.track_running_stats = False
        try:
            return model(x)
        finally:
            for m in tracking:
                m.track_running_stats = True

    def loss_term(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        model = self.context.model
        if model is None:
            raise ValueError("adversarial regularization's loss term needs context.model set")
        # Called without the batch hook (a direct call), the batch given is the clean one.
        clean = self.clean if self.clean is not None else batch
        self.clean = None
        if clean.x is batch.x:  # no transform touched the inputs: the loop's pass is clean
            member_logits = logits
        else:
            member_logits = self.forward_without_stats(model, clean.x)
        classes = member_logits.shape[1]
        member_onehot = F.one_hot(clean.y, classes).to(member_logits.dtype)
        idx = self.randint(len(self.reference_y), len(clean.y))
        with torch.no_grad():
            ref_logits = self.forward_without_stats(model, self.reference_x[idx])
        ref_onehot = F.one_hot(self.reference_y[idx], classes).to(ref_logits.dtype)
        # 1) the inference model's step, on detached classifier outputs
        self.inference_optimizer.zero_grad(set_to_none=True)
        member_logit = self.inference(member_logits.detach(), member_onehot)
        ref_logit = self.inference(ref_logits, ref_onehot)
        attack_loss = F.binary_cross_entropy_with_logits(
            member_logit, torch.ones_like(member_logit)
        ) + F.binary_cross_entropy_with_logits(ref_logit, torch.zeros_like(ref_logit))
        attack_loss.backward()
        self.inference_optimizer.step()
        # 2) the classifier's privacy term; h's own grads from it are cleared at its next step
        gain = F.logsigmoid(self.inference(member_logits, member_onehot)).mean()
        return self.strength * gain


@register
class DPSGD(Mechanism):
    """DP-SGD through Opacus: per-sample clipping at `dp_clip`, Gaussian noise with
    multiplier `strength`, Poisson sampling; epsilon at the config's `dp_delta`.

    The accountant is chosen before training (`choose_accountant`): Opacus' PRV accountant
    (Gopi et al. 2021, the tighter bound) where its discretization grid fits in
    `PRV_MEMORY_BUDGET`, else the RDP accountant (Mironov 2017), whose cost does not depend on
    the noise. At tiny noise multipliers PRV's grid grows past any machine's memory (at noise
    0.01 on digits, tens of GiB), so no value a user can type reaches it.
    """

    name = "dp_noise"
    level = "training"
    setting = Setting(float, "DP-SGD noise multiplier", le=20.0)
    notes = "DP-SGD via Opacus; `dp_epsilon` at `dp_delta`, by the `dp_accountant` named"
    riders = {
        "dp_clip": Setting(
            float,
            "DP-SGD per-sample clipping norm",
            default=1.0,
            ge=None,
            gt=0,
            le=100.0,
            in_label=True,
        ),
        "dp_delta": Setting(
            float, "DP-SGD delta (far below 1/members)", default=1e-5, ge=None, gt=0, lt=1.0
        ),
    }
    dp_sgd = True
    ensemble = False  # Opacus wraps one model, its optimizer and its sampler
    row_columns = ("dp_accountant",)
    hooks = frozenset({"model", "wrapper"})

    # Opacus' get_epsilon defaults: the error in epsilon, and delta's error as delta / 1000.
    PRV_EPS_ERROR: ClassVar[float] = 0.01
    # Peak memory per grid point of PRVAccountant.get_epsilon (measured: 170-180 bytes at
    # 2e6-8e6 points, opacus 1.6), rounded up.
    PRV_BYTES_PER_POINT: ClassVar[int] = 200
    PRV_MEMORY_BUDGET: ClassVar[int] = 512 * 2**20

    def __init__(self, strength, context):
        super().__init__(strength, context)
        self.engine: Any = None
        self.accountant: str | None = None

    @classmethod
    def prv_grid_points(cls, noise: float, sample_rate: float, steps: int, delta: float) -> float:
        """Return how many points PRV's discretization would take (Opacus' own domain rule:
        [-L, L] with L from an RDP tail bound, mesh eps_error / sqrt(steps log(12/delta_err)
        / 2)); computing it costs a few RDP evaluations, not the grid."""
        from opacus.accountants.analysis.prv import (
            PoissonSubsampledGaussianPRV,
            compute_safe_domain_size,
        )

        delta_error = delta / 1000
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # RDP's "optimal order is the largest alpha"
            half_width = compute_safe_domain_size(
                [PoissonSubsampledGaussianPRV(sample_rate, noise)],
                [steps],
                eps_error=cls.PRV_EPS_ERROR,
                delta_error=delta_error,
            )
        mesh = cls.PRV_EPS_ERROR / math.sqrt(steps * math.log(12 / delta_error) / 2)
        return 2 * half_width / mesh

    @classmethod
    def choose_accountant(cls, noise: float, sample_rate: float, steps: int, delta: float) -> str:
        """Return "prv" when PRV's grid fits in PRV_MEMORY_BUDGET, else "rdp"."""
        points = cls.prv_grid_points(noise, sample_rate, steps, delta)
        return "prv" if points * cls.PRV_BYTES_PER_POINT <= cls.PRV_MEMORY_BUDGET else "rdp"

    @classmethod
    def trial_problem(cls, strength: float, config: TrialConfig) -> str | None:
        """BatchNorm mixes a batch's samples, and a delta of 1/members or more is no bound."""
        if config.norm == "batch":
            return (
                f"norm = 'batch' cannot combine with mechanisms.dp_noise = {strength}: "
                "BatchNorm mixes a batch's samples, so per-sample gradients are not clipped; "
                "use norm group or none"
            )
        from raymia.models.architectures import batch_norm_left

        if batch_norm_left(config):
            return (
                f"arch = {config.arch!r} holds BatchNorm layers whatever its norm, which "
                f"mechanisms.dp_noise = {strength} cannot clip per sample: build it with "
                "GroupNorm or none (the factory receives norm)"
            )
        delta, members = config.mechanisms.dp_delta, config.member_count()
        if delta >= 1.0 / members:
            return (
                f"mechanisms.dp_delta = {delta}: expected below 1/members = 1/{members} (far "
                "below: a delta of 1/n lets the mechanism publish one member's record outright)"
            )
        return None

    @classmethod
    def row_values(cls, strength: float, config: TrialConfig) -> dict[str, Any]:
        """The accountant the trial will use ("prv" or "rdp"), decided before training."""
        return {"dp_accountant": cls.planned_accountant(config)}

    @classmethod
    def planned_accountant(cls, config: TrialConfig) -> str:
        """Return the accountant a trial of `config` uses: its member count, batch size and
        epochs fix Opacus' sample rate (1 / batches per epoch) and the step count."""
        n = config.member_count()
        batches = math.ceil(n / min(config.batch_size, n))
        mech = config.mechanisms
        return cls.choose_accountant(
            mech.dp_noise, 1 / batches, config.epochs * batches, mech.dp_delta
        )

    def fix_model(self, model: nn.Module) -> nn.Module:
        from opacus.validators import ModuleValidator

        # The config refuses norm = batch under DP-SGD; validate(strict) fails loudly on any
        # layer Opacus cannot give per-sample gradients for.
        ModuleValidator.validate(model, strict=True)
        return model

    def wrap(self, model, optimizer, batches):
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        from raymia.data.batches import PoissonBatches

        steps = len(batches)
        sample_rate = 1 / steps
        self.accountant = self.choose_accountant(
            float(self.strength),
            sample_rate,
            self.context.config.epochs * steps,
            self.context.config.mechanisms.dp_delta,
        )
        # Opacus reads the sample rate (1 / batches per epoch) and the expected batch size from
        # a loader; the loop never iterates it: Poisson sampling draws on-device batches from
        # the loop's own seeded generator, as Opacus' DPDataLoader would draw them.
        loader = DataLoader(TensorDataset(batches.x, batches.y), batch_size=batches.batch_size)
        with warnings.catch_warnings():
            # Opacus warns that its secure RNG is off: fine for measurement, not actionable.
            warnings.simplefilter("ignore")
            self.engine = PrivacyEngine(accountant=self.accountant)
            model, optimizer, _ = self.engine.make_private(
                module=model,
                optimizer=optimizer,
                data_loader=loader,
                noise_multiplier=float(self.strength),
                max_grad_norm=float(self.context.config.mechanisms.dp_clip),
                poisson_sampling=False,
                # the noise from this generator, so it depends on nothing else in the process
                noise_generator=self.context.seeded("dp noise"),
            )
        # Opacus' own count of Poisson batches per epoch: int(1 / sample_rate)
        poisson = PoissonBatches(
            batches.x, batches.y, sample_rate, int(1 / sample_rate), batches.generator
        )
        return model, optimizer, poisson

    def epsilon(self) -> float | None:
        if self.engine is None:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            delta = self.context.config.mechanisms.dp_delta
            return float(self.engine.get_epsilon(delta=delta))
