"""Shared fixtures: one CPU thread per test process, the digits splits loaded once."""

from __future__ import annotations

import pytest
import torch

from raymia.data.datasets import Splits, load_splits

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits() -> Splits:
    """The default digits splits for seed 0."""
    return load_splits("digits", 0)


@pytest.fixture(scope="session")
def small_digits() -> Splits:
    """A small member set that a plain model memorizes quickly (for privacy effects)."""
    return load_splits("digits", 0, members=200, non_members=200, reference=400)


# Settings that keep a whole trial to a few seconds: privacy measurement pared down.
FAST_MEASURE = {
    "dtc": {"enabled": False},
    "attacks": {
        "n_bootstrap": 0,
        "n_permutations": 0,
        "merlin_neighbours": 10,
        "shadow_calibration": False,
    },
}


@pytest.fixture
def fast() -> dict:
    """Trial settings with a pared-down privacy measurement (training untouched)."""
    return {key: dict(value) for key, value in FAST_MEASURE.items()}
