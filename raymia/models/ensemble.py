"""K models of one architecture trained as one batched model.

Their parameters are stacked along a new first dimension (``torch.func.stack_module_state``)
and one forward pass runs all of them (``torch.func.vmap`` over ``functional_call``), so K
small models cost about as many kernel launches as one. An optimizer over the stacked
tensors is each member's own optimizer: Adam and SGD act element by element, and a member's
loss reaches only its own slice. The training loop (`raymia.trial.train`) drives this as it drives a
single model; :func:`raymia.trial.train.ensemble_problem` says when a trial's models can be stacked.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from raymia.models.networks import is_weight

__all__ = ["StackedModels"]


class StackedModels:
    """K models of one architecture as stacked parameters (K, ...) run in one batched pass.

    The models keep their own modules (:meth:`module` writes a member's current slice back
    into its module, for early stopping's checks and for the results); the stacked tensors
    are what the optimizer updates. A member can be held (:meth:`hold`): after each step
    :meth:`restore_held` puts its weights back, so it stops learning while the others go on.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if len(models) < 2:
            raise ValueError(f"an ensemble needs at least 2 models, got {len(models)}")
        self.models = list(models)
        params, buffers = stack_module_state(self.models)
        if buffers:
            raise ValueError(
                f"models with buffers ({', '.join(buffers)}) cannot be stacked: their running "
                "statistics update in place"
            )
        self.params: dict[str, torch.Tensor] = params
        # The architecture without storage: functional_call runs it on each member's slice.
        self._base = copy.deepcopy(self.models[0]).to("meta")
        self._held: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.models)

    def parameters(self) -> list[tuple[torch.Tensor, bool]]:
        """Return every stacked parameter with whether its members' parameter is a weight
        (:func:`raymia.models.networks.is_weight`), for the optimizer's weight decay."""
        return [(self.params[name], is_weight(p)) for name, p in self.models[0].named_parameters()]

    def train(self, mode: bool = True) -> None:
        """Put the batched pass in train (or eval) mode."""
        self._base.train(mode)

    def _one(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._base, params, (x,))

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Return each member's logits on its own batch (member k: ``xs[k]``, its rows).

        Batches of different lengths are padded with zero rows to the longest, which the
        members compute and this drops: every layer works sample by sample (no batch
        normalization in an ensemble), so the padding changes no real row's output.
        """
        rows = max(len(x) for x in xs)
        padded = torch.stack(
            [
                x if len(x) == rows else torch.cat([x, x.new_zeros((rows - len(x), *x.shape[1:]))])
                for x in xs
            ]
        )
        out = vmap(self._one)(self.params, padded)
        return [out[k, : len(x)] for k, x in enumerate(xs)]

    @torch.no_grad()
    def module(self, k: int) -> nn.Module:
        """Return member k's own module holding its current weights."""
        model = self.models[k]
        for name, value in model.named_parameters():
            value.copy_(self.params[name][k])
        return model

    @torch.no_grad()
    def hold(self, k: int) -> None:
        """Keep member k's weights as they are now: :meth:`restore_held` restores them."""
        self._held[k] = {name: p[k].clone() for name, p in self.params.items()}

    @torch.no_grad()
    def restore_held(self) -> None:
        """Put every held member's weights back (after an optimizer step moved them)."""
        for k, saved in self._held.items():
            for name, p in self.params.items():
                p[k].copy_(saved[name])
