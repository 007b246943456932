from __future__ import annotations

import pytest
import torch
from torch import nn

from raymia.data import DATASETS
from raymia.models import build_model


@pytest.mark.parametrize("name", list(DATASETS))
def test_each_family_maps_images_to_class_logits(name):
    info = DATASETS[name]
    model = build_model(info).eval()
    x = torch.zeros(2, info.channels, info.image_size, info.image_size)
    assert model(x).shape == (2, info.num_classes)


def test_dropout_acts_only_in_train_mode():
    torch.manual_seed(0)
    model = build_model(DATASETS["digits"], dropout=0.5)
    x = torch.randn(4, 1, 8, 8)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_group_norm_variant_has_no_batch_norm_and_passes_opacus():
    from opacus.validators import ModuleValidator

    for name in ("digits", "cifar10"):
        model = build_model(DATASETS[name], norm="group")
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
        assert ModuleValidator.validate(model, strict=False) == []


def test_fusing_batch_norm_keeps_the_function():
    from raymia.models import fuse_for_inference

    torch.manual_seed(0)
    model = build_model(DATASETS["digits"])
    model.train()
    for _ in range(3):  # give BatchNorm non-trivial running statistics
        model(torch.randn(32, 1, 8, 8) * 2 + 0.5)
    model.eval()
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), fused(x), atol=1e-5)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
