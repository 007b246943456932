"""A trial's data moves to its device once, and every pass after that reads it there.

On an accelerator a trial moves its splits to the device once (`Splits.to`); training,
evaluation and every attack then index them there, and only results come back to the host.
This machine has no accelerator, so the tests mark the moved tensors instead: `Split.to`
returns them as `Resident`, a tensor subclass that stays itself through every torch operation
and refuses a host conversion (`.numpy()`, `np.asarray`) unless brought back with `.cpu()`,
as a CUDA tensor would. A forward pass whose input is not `Resident` read data that did not
come from the moved splits: on CUDA, a copy from the host per batch.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from raymia.data.datasets import Split, Splits
from raymia.trial.runner import run_trial


class Resident(torch.Tensor):
    """A tensor standing for one on the trial's device: `.cpu()` brings a plain host tensor
    back; converting it to numpy without that raises, as a CUDA tensor's `.numpy()` does."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
        if func in (torch.Tensor.numpy, torch.Tensor.__array__):
            raise AssertionError("a device tensor converted to numpy without .cpu()")
        out = super().__torch_function__(func, types, args, kwargs or {})
        if func is torch.Tensor.cpu and isinstance(out, torch.Tensor):
            return out.as_subclass(torch.Tensor)
        return out


@pytest.fixture
def on_device(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, collections.Counter]]:
    """Make `Split.to` mark what it moves as `Resident`; count the forward passes of raymia's
    networks by whether their input was resident, and the splits moved."""
    seen: dict[str, collections.Counter] = {"passes": collections.Counter()}
    seen["moves"] = collections.Counter()

    def to(self: Split, device: torch.device) -> Split:
        seen["moves"][str(device)] += 1
        return Split(self.x.as_subclass(Resident), self.y.as_subclass(Resident), self.indices)

    def hook(module: torch.nn.Module, args: tuple) -> None:
        if type(module).__module__.startswith("raymia") and args:
            seen["passes"][isinstance(args[0], Resident)] += 1

    monkeypatch.setattr(Split, "to", to)
    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def test_splits_to_the_same_device_are_the_same_tensors(digits: Splits) -> None:
    moved = digits.to(torch.device("cpu"))
    for name in ("members", "non_members", "held_out", "reference", "test"):
        before, after = getattr(digits, name), getattr(moved, name)
        assert after.x.data_ptr() == before.x.data_ptr()
        assert after.y.data_ptr() == before.y.data_ptr()
        assert after.indices is before.indices
    assert moved.info is digits.info and moved.seed == digits.seed


@pytest.mark.parametrize(
    "settings",
    [
        # every attack (Merlin, LiRA offline and online, RMIA, the logit attacks), canaries,
        # DtC, the shadow's calibration and input / output / training mechanisms
        {
            "mechanisms": {
                "augment": 1,
                "cutout": 2,
                "mixup": 0.4,
                "input_noise": 0.1,
                "label_smoothing": 0.1,
                "distillation": 2,
                "early_stopping": 1,
            },
            "attacks": {
                "canaries": 20,
                "online_models": 2,
                "lira_reference_models": 2,
                "n_bootstrap": 20,
                "n_permutations": 20,
            },
            "dtc": {"max_samples": 40},
        },
        # adversarial regularization's inference model, dropout and DP-SGD's own loop
        {
            "mechanisms": {"adv_reg": 1.0, "dropout": 0.3},
            "attacks": {"n_bootstrap": 20, "n_permutations": 20},
            "dtc": {"max_samples": 40},
        },
        {
            "mechanisms": {"dp_noise": 1.0},
            "attacks": {"n_bootstrap": 0, "n_permutations": 0},
            "dtc": {"enabled": False},
        },
    ],
    ids=["attacks-canaries-dtc", "adv-reg-dropout", "dp-sgd"],
)
def test_a_trial_reads_its_data_only_where_it_was_moved(
    digits: Splits, on_device: dict[str, collections.Counter], settings: dict
) -> None:
    row = run_trial({"dataset": "digits", "epochs": 2, **settings}, digits)

    assert row["status"] == "ok" and np.isfinite(row["adv"])
    passes = on_device["passes"]
    assert passes[True] > 50, passes  # training, evaluation and the attacks all ran
    assert passes[False] == 0, f"{passes[False]} forward passes on data never moved"
    # the five splits (and the canaries' three) moved once, at the trial's start
    assert on_device["moves"]["cpu"] >= 5
