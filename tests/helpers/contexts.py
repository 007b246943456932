"""The training context the loop hands each mechanism, built for tests that drive a
mechanism directly: on the CPU, seeded 0, with the splits' members and held-out data."""

from __future__ import annotations

import numpy as np
import torch

from raymia.data.datasets import Splits
from raymia.mechanisms import TrainContext
from raymia.trial.config import TrialConfig


def cpu_context(config: TrialConfig, splits: Splits) -> TrainContext:
    """Return a CPU training context for `config` over `splits` (members and held-out)."""
    return TrainContext(
        config=config,
        info=splits.info,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
        rng=np.random.default_rng(0),
        members=splits.members,
        held_out=splits.held_out,
    )
