"""Training-level mechanisms: early stopping, adversarial regularization, DP-SGD."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import init_parameters
from .base import Batch, Mechanism

# Opacus' hooks on the first layer fire with no input gradient (images never need one): benign.
warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)


class EarlyStopping(Mechanism):
    """Stop when the loss on a validation slice of the members has not improved for
    `strength` epochs, and restore the best weights. Never looks at non-members."""

    name = "early_stopping"
    hooks = frozenset({"stopping"})

    def __init__(self, strength, context):
        super().__init__(strength, context)
        self.best_loss = float("inf")
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stale = 0

    def validation_loss(self, model: nn.Module) -> float:
        """Return the mean cross-entropy on the validation slice (eval mode)."""
        val = self.context.validation
        assert val is not None, "the training loop carves the validation slice"
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits = model(val.x.to(self.context.device))
            loss = F.cross_entropy(logits, val.y.to(self.context.device)).item()
        model.train(was_training)
        return loss

    def after_epoch(self, model: nn.Module, epoch: int) -> bool:
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


class AdversarialRegularization(Mechanism):
    """Min-max game with an inference model (Nasr et al. 2018).

    Each step first trains the inference model to tell the member batch from a batch of
    reference data, then adds lambda * E_members[log h(f(x), y)] to the classifier's loss: the
    classifier is rewarded for making its members look like non-members to h.
    """

    name = "adv_reg"
    hooks = frozenset({"prepare", "loss"})

    def prepare(self) -> None:
        ctx = self.context
        assert ctx.reference is not None and len(ctx.reference) > 0
        self.reference_x = ctx.reference.x.to(ctx.device)
        self.reference_y = ctx.reference.y.to(ctx.device)
        self.inference = InferenceModel(ctx.info.num_classes)
        init_parameters(self.inference, ctx.seeded("inference model weights", device="cpu"))
        self.inference = self.inference.to(ctx.device)
        self.inference_optimizer = torch.optim.Adam(self.inference.parameters(), lr=1e-3)

    def loss_term(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        model = self.context.model
        assert model is not None, "the training loop sets context.model"
        classes = logits.shape[1]
        member_onehot = F.one_hot(batch.y, classes).float()
        idx = self.randint(len(self.reference_y), len(batch.y))
        with torch.no_grad():
            ref_logits = model(self.reference_x[idx])
        ref_onehot = F.one_hot(self.reference_y[idx], classes).float()
        # 1) the inference model's step, on detached classifier outputs
        self.inference_optimizer.zero_grad(set_to_none=True)
        member_logit = self.inference(logits.detach(), member_onehot)
        ref_logit = self.inference(ref_logits, ref_onehot)
        attack_loss = F.binary_cross_entropy_with_logits(
            member_logit, torch.ones_like(member_logit)
        ) + F.binary_cross_entropy_with_logits(ref_logit, torch.zeros_like(ref_logit))
        attack_loss.backward()
        self.inference_optimizer.step()
        # 2) the classifier's privacy term; h's own grads from it are cleared at its next step
        gain = F.logsigmoid(self.inference(logits, member_onehot)).mean()
        return self.strength * gain


class DPSGD(Mechanism):
    """DP-SGD through Opacus: per-sample clipping at `dp_clip`, Gaussian noise with
    multiplier `strength`, Poisson sampling; epsilon at delta = 1 / len(members)."""

    name = "dp_noise"
    hooks = frozenset({"model", "wrapper"})

    def __init__(self, strength, context):
        super().__init__(strength, context)
        self.engine: Any = None

    def model_options(self) -> dict[str, Any]:
        # BatchNorm mixes samples within a batch, which per-sample gradients cannot allow.
        return {"norm": "group"}

    def fix_model(self, model: nn.Module) -> nn.Module:
        from opacus.validators import ModuleValidator

        # Any layer Opacus cannot give per-sample gradients for is swapped (BatchNorm ->
        # GroupNorm); validate(strict) then fails loudly on anything it could not fix.
        model = ModuleValidator.fix(model)
        ModuleValidator.validate(model, strict=True)
        return model

    def wrap(self, model, optimizer, loader):
        from opacus import PrivacyEngine

        with warnings.catch_warnings():
            # Opacus warns that its secure RNG is off: fine for measurement, not actionable.
            warnings.simplefilter("ignore")
            self.engine = PrivacyEngine(accountant="prv")
            return self.engine.make_private(
                module=model,
                optimizer=optimizer,
                data_loader=loader,
                noise_multiplier=float(self.strength),
                max_grad_norm=float(self.context.config.mechanisms.dp_clip),
                # Poisson sampling draws from the loader's own seeded generator; the noise
                # from this one, so neither depends on anything else in the process.
                noise_generator=self.context.seeded("dp noise"),
            )

    def epsilon(self) -> float | None:
        if self.engine is None:
            return None
        delta = 1.0 / len(self.context.members)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(self.engine.get_epsilon(delta=delta))
