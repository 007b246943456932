"""Benchmark: raymia's hook-driven training loop against a bare PyTorch loop.

Same model (raymia's digits CNN), same data (the default members), same optimizer (Adam,
lr 1e-3), same batch size and epochs, no mechanisms, alternating runs in one process. Prints
bare time / raymia time last: the speed of raymia's loop relative to the bare loop
(target >= 0.95).

    python benchmarks/train_loop.py [--epochs 30] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from raymia.data.datasets import load_splits
from raymia.models.networks import build_model
from raymia.trial.config import parse_trial_config
from raymia.trial.train import train_model


def bare_loop(splits, epochs: int, batch_size: int, seed: int) -> float:
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = build_model(splits.info)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(
        TensorDataset(splits.members.x, splits.members.y),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - started


def raymia_loop(splits, epochs: int, batch_size: int) -> float:
    config = parse_trial_config({"epochs": epochs, "batch_size": batch_size, "device": "cpu"})
    started = time.perf_counter()
    train_model(config, splits.info, splits.members)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_splits("digits", 0)
    bare_loop(splits, 1, args.batch_size, 0)  # warm-up both paths
    raymia_loop(splits, 1, args.batch_size)
    bare, ours = [], []
    for _ in range(args.repeats):  # alternate, so drifting load hits both alike
        bare.append(bare_loop(splits, args.epochs, args.batch_size, 0))
        ours.append(raymia_loop(splits, args.epochs, args.batch_size))
    bare_s, ours_s = min(bare), min(ours)
    print(
        f"{args.epochs} epochs: bare PyTorch {bare_s:.2f} s, raymia {ours_s:.2f} s (best of "
        f"{args.repeats})"
    )
    print(f"training loop speed (bare / raymia): {bare_s / ours_s:.3f}")


if __name__ == "__main__":
    main()
