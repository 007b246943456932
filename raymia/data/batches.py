"""Training batches cut from tensors that sit on the training device.

The training loop's rows are moved to its device once; each batch is an index into them, so
no batch is copied from the host and no DataLoader (no collate, no worker processes) runs for
data that is already in memory. The indices are drawn on the CPU from a seeded generator, so
the same seed gives the same batches on every device: :class:`ShuffledBatches` draws exactly
what ``torch.utils.data.DataLoader(..., shuffle=True, generator=g)`` draws from ``g``, and
:class:`PoissonBatches` exactly what Opacus' Poisson sampler (``DPDataLoader``) draws, so a
model trained through either is the model the loaders trained.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

__all__ = ["PoissonBatches", "ShuffledBatches"]


class ShuffledBatches:
    """One epoch: a fresh permutation of the rows, cut into batches of `batch_size` (the last
    one smaller); iterating yields (x, y) on the rows' device.

    Each epoch draws from `generator` what ``DataLoader(shuffle=True, generator=generator)``
    draws: one 64-bit integer (the loader's base seed for its workers), then two permutations,
    the first of which orders the rows (``RandomSampler``'s second, sliced to no rows, still
    advances the generator); so epoch after epoch the batches are the loader's.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator
    ) -> None:
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"need as many labels as rows, at least one: {len(x)} and {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        """Return the number of batches per epoch."""
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        _draw_base_seed(self.generator)
        order = torch.randperm(n, generator=self.generator).to(self.y.device)
        for start in range(0, n, self.batch_size):
            rows = order[start : start + self.batch_size]
            yield self.x[rows], self.y[rows]
        torch.randperm(n, generator=self.generator)  # RandomSampler's second draw


class PoissonBatches:
    """Poisson sampling for DP-SGD: `steps` batches per epoch, each row in each batch
    independently with probability `sample_rate` (a batch may be empty); iterating yields
    (x, y) on the rows' device. The draws are Opacus' ``DPDataLoader``'s: a base seed per
    epoch, as every DataLoader draws, then one ``torch.rand(rows)`` from `generator` per batch,
    the rows kept where it is below the rate (``UniformWithReplacementSampler``)."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        sample_rate: float,
        steps: int,
        generator: torch.Generator,
    ) -> None:
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.x, self.y = x, y
        self.sample_rate = sample_rate
        self.steps = steps
        self.generator = generator

    def __len__(self) -> int:
        """Return the number of batches per epoch."""
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        _draw_base_seed(self.generator)
        for _ in range(self.steps):
            drawn = torch.rand(n, generator=self.generator) < self.sample_rate
            rows = drawn.nonzero().reshape(-1).to(self.y.device)
            yield self.x[rows], self.y[rows]


def _draw_base_seed(generator: torch.Generator) -> None:
    """Advance `generator` as a DataLoader's iterator does when it starts: by the one 64-bit
    integer it draws as its workers' base seed (unused here: there are no workers)."""
    torch.empty((), dtype=torch.int64).random_(generator=generator)
