"""On-device training batches draw exactly what torch's DataLoader and Opacus' Poisson
sampler draw from the same seeded generator, so models trained through them are unchanged."""

from __future__ import annotations

import pytest
import torch
from opacus.data_loader import DPDataLoader
from torch.utils.data import DataLoader, TensorDataset

from raymia.data.batches import PoissonBatches, ShuffledBatches


def _rows(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    return x, torch.arange(n) % 4


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (12, 4), (5, 5), (7, 64)])
def test_shuffled_batches_equal_a_shuffling_dataloader_epoch_after_epoch(n, batch_size):
    x, y = _rows(n)
    batch_size = min(batch_size, n)
    ours = ShuffledBatches(x, y, batch_size, torch.Generator().manual_seed(5))
    theirs = DataLoader(
        TensorDataset(x, y),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(5),
    )
    assert len(ours) == len(theirs)
    for _ in range(3):
        got, expected = list(ours), list(theirs)
        assert len(got) == len(expected)
        for (xa, ya), (xb, yb) in zip(got, expected, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_shuffled_batches_cover_every_row_once_per_epoch_in_a_new_order():
    x, y = _rows(50)
    batches = ShuffledBatches(x, y, 8, torch.Generator().manual_seed(0))
    epochs = [torch.cat([xb[:, 0] for xb, _ in batches]) for _ in range(2)]
    for rows in epochs:
        assert sorted(rows.tolist()) == x[:, 0].tolist()
    assert not torch.equal(epochs[0], epochs[1])
    assert [len(yb) for _, yb in batches] == [8] * 6 + [2]


def test_poisson_batches_equal_opacus_poisson_sampler():
    x, y = _rows(40)
    rate = 1 / 5
    ours = PoissonBatches(x, y, rate, 5, torch.Generator().manual_seed(3))
    theirs = DPDataLoader(
        TensorDataset(x, y), sample_rate=rate, generator=torch.Generator().manual_seed(3)
    )
    assert len(ours) == len(theirs) == 5
    for _ in range(2):
        for (xa, ya), (xb, yb) in zip(ours, theirs, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_poisson_batches_draw_each_row_at_the_sample_rate():
    x, y = _rows(200)
    batches = PoissonBatches(x, y, 0.1, 10, torch.Generator().manual_seed(0))
    sizes = [len(yb) for _ in range(50) for _, yb in batches]
    # 500 batches of Binomial(200, 0.1): mean 20, sd of the mean 4.24 / sqrt(500) = 0.19
    assert abs(sum(sizes) / len(sizes) - 20.0) < 0.8
    assert len(set(sizes)) > 5  # sizes vary, unlike fixed-size batches


def test_batches_refuse_impossible_settings():
    x, y = _rows(4)
    with pytest.raises(ValueError, match="batch_size"):
        ShuffledBatches(x, y, 0, torch.Generator())
    with pytest.raises(ValueError, match="sample_rate"):
        PoissonBatches(x, y, 0.0, 3, torch.Generator())
