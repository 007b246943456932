from __future__ import annotations

import importlib.metadata
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from raymia.trial.config import parse_trial_config
from raymia.trial.runner import run_trial
from raymia.trial.train import TrainingDiverged, soft_cross_entropy, train_model


def test_soft_cross_entropy_matches_torch_on_hard_targets():
    logits = torch.randn(5, 10, generator=torch.Generator().manual_seed(0))
    y = torch.arange(5)
    hard = torch.nn.functional.one_hot(y, 10).float()
    expected = torch.nn.functional.cross_entropy(logits, y)
    assert torch.allclose(soft_cross_entropy(logits, hard), expected)


@pytest.mark.slow
def test_default_digits_trial_reaches_090_test_accuracy(fast):
    row = run_trial(fast)
    assert row["status"] == "ok"
    assert row["test_acc"] >= 0.9
    assert row["dp_epsilon"] is None
    assert row["train_seconds"] > 0


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_metrics(fast):
    config = {**fast, "epochs": 5, "mechanisms": {"dropout": 0.3, "mixup": 0.4, "augment": 1}}
    first, second = run_trial(config), run_trial(config)
    for name, values in first.pop("scores").items():
        assert np.array_equal(values, second["scores"][name]), name
    second.pop("scores")
    timing = {"train_seconds", "measure_seconds"}
    assert {k: v for k, v in first.items() if k not in timing} == {
        k: v for k, v in second.items() if k not in timing
    }


@pytest.mark.slow
def test_four_mechanisms_compose_and_beat_chance(fast):
    mechanisms = {
        "augment": 1,
        "cutout": 2,
        "label_smoothing": 0.1,
        "confidence_penalty": 0.2,
        "dropout": 0.2,
        "weight_decay": 0.01,
        "early_stopping": 5,
        "dp_noise": 0.5,
    }
    row = run_trial({**fast, "epochs": 8, "lr": 0.005, "mechanisms": mechanisms})
    assert row["test_acc"] > 0.5  # chance is 0.1
    assert row["dp_epsilon"] is not None and math.isfinite(row["dp_epsilon"])


def test_non_finite_loss_raises_diverged(digits):
    config = parse_trial_config({"epochs": 2})
    subset = digits.members.take(slice(0, 100))
    x = subset.x.clone()  # never touch the shared fixture
    x[0, 0, 0, 0] = float("nan")
    poisoned = type(subset)(x, subset.y, subset.indices)
    with pytest.raises(TrainingDiverged, match="loss became nan"):
        train_model(config, digits.info, poisoned)


def test_versions_read_without_importing_the_libraries():
    # A fresh trial worker pays for every import; versions come from package metadata.
    code = (
        "import sys; from raymia.trial.runner import versions; v = versions(); "
        "print(v['optuna_version'], v['opacus_version'], 'opacus' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    optuna_version, opacus_version, imported = done.stdout.split()
    assert optuna_version == importlib.metadata.version("optuna")
    assert opacus_version == importlib.metadata.version("opacus")
    assert imported == "False"


@pytest.mark.slow
def test_trials_in_threads_give_the_same_rows_as_alone(fast):
    # Trials sharing a process (Optuna's n_jobs threads, a reused worker) must not share
    # randomness: weights, dropout masks, the adversary's model and DP noise are the trial's own.
    base = {**fast, "epochs": 4}
    configs = [
        {**base, "mechanisms": {"dropout": 0.3, "adv_reg": 1.0, "augment": 1, "mixup": 0.2}},
        {**base, "mechanisms": {"dp_noise": 1.0, "dropout": 0.2}},
    ]

    def key(row: dict) -> dict:
        scores = row.pop("scores")
        drop = {"train_seconds", "measure_seconds"}
        return {**{k: v for k, v in row.items() if k not in drop}, "scores": scores}

    alone = [key(run_trial(c)) for c in configs]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = [key(r) for r in pool.map(run_trial, configs + configs[::-1])]
    for expected, got in zip(alone + alone[::-1], together, strict=True):
        for name, values in expected["scores"].items():
            assert np.array_equal(values, got["scores"][name]), name
        assert {k: v for k, v in got.items() if k != "scores"} == {
            k: v for k, v in expected.items() if k != "scores"
        }
