"""Input-level mechanisms: random crop + flip, Gaussian input noise, cutout, mixup."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Batch, Mechanism


class Augment(Mechanism):
    """Random crop after zero padding by `strength` pixels, plus a horizontal flip for data
    sets whose mirror images keep their label (not digits)."""

    name = "augment"
    hooks = frozenset({"batch"})
    order = 10

    def transform(self, batch: Batch) -> Batch:
        x = batch.x
        pad = int(self.strength)
        n, c, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = self.randint(2 * pad + 1, n)
        dx = self.randint(2 * pad + 1, n)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch_idx = torch.arange(n, device=x.device)[:, None, None, None]
        chan_idx = torch.arange(c, device=x.device)[None, :, None, None]
        out = padded[batch_idx, chan_idx, rows, cols]
        if self.context.info.flip:
            flip = self.rand(n) < 0.5
            out = torch.where(flip[:, None, None, None], out.flip(-1), out)
        return batch.with_(x=out)


class InputNoise(Mechanism):
    """Add Gaussian noise of standard deviation `strength` to every input."""

    name = "input_noise"
    hooks = frozenset({"batch"})
    order = 20

    def transform(self, batch: Batch) -> Batch:
        return batch.with_(x=batch.x + self.strength * self.randn(*batch.x.shape))


class Cutout(Mechanism):
    """Zero (the data mean) a `strength` x `strength` square at a random centre per image."""

    name = "cutout"
    hooks = frozenset({"batch"})
    order = 30

    def transform(self, batch: Batch) -> Batch:
        x = batch.x
        n, _, h, w = x.shape
        size = int(self.strength)
        cy = self.randint(h, n)[:, None]
        cx = self.randint(w, n)[:, None]
        ys = torch.arange(h, device=x.device)[None, :]
        xs = torch.arange(w, device=x.device)[None, :]
        # Centre-anchored square, clipped at the borders (DeVries & Taylor 2017).
        in_y = (ys >= cy - size // 2) & (ys < cy - size // 2 + size)
        in_x = (xs >= cx - size // 2) & (xs < cx - size // 2 + size)
        mask = in_y[:, :, None] & in_x[:, None, :]
        return batch.with_(x=x.masked_fill(mask[:, None], 0.0))


class Mixup(Mechanism):
    """Blend each batch with a shuffled copy of itself, inputs and soft targets alike, with
    lambda ~ Beta(alpha, alpha) (Zhang et al. 2018). Runs after every target transform."""

    name = "mixup"
    hooks = frozenset({"batch"})
    order = 90

    def transform(self, batch: Batch) -> Batch:
        lam = float(self.context.rng.beta(self.strength, self.strength))
        g = self.context.generator
        perm = torch.randperm(len(batch.y), generator=g, device=g.device)
        return batch.with_(
            x=lam * batch.x + (1 - lam) * batch.x[perm],
            targets=lam * batch.targets + (1 - lam) * batch.targets[perm],
        )
