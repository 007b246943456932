"""The `arch` setting (raymia.models.architectures): a torchvision classifier and a user's factory
each
run a trial, adapted to the data; a bad network is one line; DP-SGD refuses BatchNorm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raymia.data.datasets import DATASETS
from raymia.errors import ConfigError
from raymia.models.architectures import build_network, has_batch_norm
from raymia.models.networks import Dropout, SmallCNN
from raymia.trial.config import parse_trial_config
from raymia.trial.runner import run_trial

DIGITS = DATASETS["digits"]
FAST = {
    "epochs": 1,
    "dtc": {"max_samples": 20, "bisection_steps": 2, "pgd_steps": 2},
    "attacks": {"n_bootstrap": 0, "n_permutations": 0},
}


def test_a_torchvision_resnet_is_adapted_to_the_data():
    model = build_network(DIGITS, "resnet18", dropout=0.2, norm="group")
    assert model.conv1.in_channels == 1 and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)  # the small-image stem
    assert not has_batch_norm(model) and any(isinstance(m, nn.GroupNorm) for m in model.modules())
    assert isinstance(model.fc, nn.Sequential) and isinstance(model.fc[0], Dropout)
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    kept = build_network(DIGITS, "resnet18", norm="batch")
    assert has_batch_norm(kept)
    bare = build_network(DIGITS, "resnet18", norm="none")
    assert not has_batch_norm(bare) and not any(isinstance(m, nn.GroupNorm) for m in bare.modules())


def test_the_built_in_networks_by_name():
    assert isinstance(build_network(DIGITS, "small-cnn"), SmallCNN)
    assert type(build_network(DIGITS, "auto")) is type(build_network(DIGITS, "small-cnn"))
    colour = build_network(DATASETS["synthetic-cifar10"], "small-cnn")
    assert colour(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("arch", ["resnet18", "helpers.toy_networks:tiny_mlp"])
def test_a_torchvision_and_a_factory_network_each_run_a_trial(arch):
    row = run_trial({"arch": arch, "reference_training": "ensemble", **FAST})
    assert row["status"] == "ok" and row["arch"] == arch
    assert 0.0 <= row["test_acc"] <= 1.0 and row["adv"] >= 0.0
    # asked for the ensemble, the shadow trains alone: only built-in networks are shown to batch
    assert row["reference_training"] == "sequential"


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("nope_net", "expected auto, small-cnn, vgg-style, a torchvision"),
        ("missing_module_xyz:f", "cannot import 'missing_module_xyz'"),
        ("helpers.toy_networks:nothing", "toy_networks has no function 'nothing'"),
        ("helpers.toy_networks:not_a_module", "returned str, expected an nn.Module"),
        (
            "helpers.toy_networks:wrong_output",
            r"gives \(2, 11\) for 2 images .* expected \(2, 10\)",
        ),
        ("helpers.toy_networks:tuple_in_training", "in training mode; expected"),
    ],
)
def test_a_network_that_cannot_serve_the_data_is_one_line(arch, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        parse_trial_config({"arch": arch})
    assert "\n" not in str(err.value)


def test_dp_sgd_refuses_a_network_that_keeps_batch_norm():
    with pytest.raises(ConfigError, match="holds BatchNorm layers whatever its norm") as err:
        parse_trial_config(
            {"arch": "helpers.toy_networks:with_batch_norm", "mechanisms": {"dp_noise": 1}}
        )
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="norm = 'batch' cannot combine"):
        parse_trial_config({"arch": "resnet18", "norm": "batch", "mechanisms": {"dp_noise": 1}})
    # the default norm swaps a torchvision network's BatchNorm for GroupNorm, as Opacus would
    assert (
        parse_trial_config({"arch": "resnet18", "mechanisms": {"dp_noise": 1}}).arch == "resnet18"
    )


def test_every_parameter_and_dropout_mask_comes_from_the_seed():
    """Two trainings of one seed give the same model: a parameter drawn as the network is built
    (not a convolution or a linear layer: a ViT's position embedding, say) and torchvision's
    own dropout (swapped for the seeded one) included."""
    from raymia.data.datasets import load_splits
    from raymia.trial.train import train_model

    splits = load_splits("digits", 0)
    built = build_network(DIGITS, "mobilenet_v3_small")
    assert not any(type(m) is nn.Dropout for m in built.modules())
    assert any(isinstance(m, Dropout) for m in built.modules())
    for arch in ("helpers.toy_networks:free_parameter", "mobilenet_v3_small"):
        config = parse_trial_config({"arch": arch, "epochs": 1})
        first = train_model(config, splits.info, splits.members).model.state_dict()
        torch.randn(5)  # the process-wide generator moves on: nothing may depend on it
        second = train_model(config, splits.info, splits.members).model.state_dict()
        assert all(torch.equal(first[k], second[k]) for k in first), arch
