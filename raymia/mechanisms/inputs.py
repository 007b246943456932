"""Input-level mechanisms: random crop + flip, Gaussian input noise, cutout, mixup."""

from __future__ import annotations

import torch

from raymia.mechanisms.base import Batch, Mechanism, Setting, TrainContext
from raymia.mechanisms.registry import register


@register
class Augment(Mechanism):
    """Random crop after padding by `strength` pixels with the background, plus a horizontal
    flip for data sets whose mirror images keep their label (not digits).

    The images are standardized, so the padding is the standardized value of a raw 0 pixel
    per channel (`background`): what torchvision's pad-then-normalize gives, a black border,
    not the data mean's grey.
    """

    name = "augment"
    level = "input"
    setting = Setting(int, "crop padding in pixels", le=8)
    notes = "random crop, padded with the background (a raw 0 pixel); plus horizontal flip on CIFAR"
    # A shift of a quarter of the side keeps at least 3/4 of each axis (9/16 of the image) in
    # view; the common CIFAR setting, 4 on 32, is an eighth. Beyond it the digit shifts out.
    image_size_divisor = (4, "a quarter of the image side")
    hooks = frozenset({"batch"})
    order = 10

    def __init__(self, strength: float, context: TrainContext):
        super().__init__(strength, context)
        self.background = self.background_value(context).to(context.device)

    @staticmethod
    def background_value(context: TrainContext) -> torch.Tensor:
        """Return the standardized value of a raw 0 pixel, per channel, shape (C,).

        Taken from the data set's `background` when it carries one; otherwise the members'
        per-channel minimum, which is that value whenever some member pixel is raw 0 (every
        data set here: dark digit and clothing backgrounds, black CIFAR pixels).
        """
        known = getattr(context.info, "background", None)
        if known is not None:
            return torch.as_tensor(known, dtype=context.members.x.dtype).reshape(-1)
        return context.members.x.amin(dim=(0, 2, 3))

    def transform(self, batch: Batch) -> Batch:
        x = batch.x
        pad = int(self.strength)
        n, c, h, w = x.shape
        padded = self.background[None, :, None, None].expand(n, c, h + 2 * pad, w + 2 * pad)
        padded = padded.clone()
        padded[:, :, pad : pad + h, pad : pad + w] = x
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


@register
class InputNoise(Mechanism):
    """Add Gaussian noise of standard deviation `strength` to every input."""

    name = "input_noise"
    level = "input"
    setting = Setting(float, "Gaussian noise sigma", le=2.0)
    notes = "inputs are standardized"
    hooks = frozenset({"batch"})
    order = 20

    def transform(self, batch: Batch) -> Batch:
        return batch.with_(x=batch.x + self.strength * self.randn(*batch.x.shape))


@register
class Cutout(Mechanism):
    """Zero (the data mean) a `strength` x `strength` square at a random centre per image."""

    name = "cutout"
    level = "input"
    setting = Setting(int, "square size in pixels", le=32)
    notes = "a square of zeros (the data mean) at a random centre"
    # DeVries & Taylor's largest square is half the side (16 on CIFAR's 32), which covers at
    # most a quarter of the image; beyond it the square erases the digit itself.
    image_size_divisor = (2, "half the image side")
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


@register
class Mixup(Mechanism):
    """Blend each batch with a shuffled copy of itself, inputs and soft targets alike, with
    lambda ~ Beta(alpha, alpha) (Zhang et al. 2018). Runs after every target transform."""

    name = "mixup"
    level = "input"
    setting = Setting(float, "Beta(alpha, alpha) alpha", le=4.0)
    notes = "mixes soft targets too"
    dp_clash = "mixup blends samples, so one sample's influence is no longer clipped"
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
