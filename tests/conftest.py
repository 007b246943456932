"""Shared fixtures: one CPU thread per test process, the digits splits loaded once."""

from __future__ import annotations

import pytest
import torch

from raymia.data import Splits, load_splits

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits() -> Splits:
    """The default digits splits for seed 0."""
    return load_splits("digits", 0)


@pytest.fixture(scope="session")
def small_digits() -> Splits:
    """A small member set that a plain model memorizes quickly (for privacy effects)."""
    return load_splits("digits", 0, members=200, non_members=200, reference=400)
