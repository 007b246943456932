from __future__ import annotations

import pytest
import torch
from torch import nn

from raymia.data.datasets import DATASETS
from raymia.models.networks import Dropout, build_model, init_parameters, use_generator


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
    from raymia.models.networks import fuse_for_inference

    torch.manual_seed(0)
    model = build_model(DATASETS["digits"], norm="batch")
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


@pytest.mark.parametrize("name", ["mnist-5k", "cifar10"])
def test_inference_copy_is_channels_last_on_a_cpu_and_keeps_the_function(name):
    # The attacks' copy runs channels-last on a CPU (faster there), the logits the same to
    # float rounding, on NCHW inputs as the attacks pass them; the trained model is untouched.
    from raymia.models.networks import fuse_for_inference

    info = DATASETS[name]
    model = init_parameters(build_model(info), torch.Generator().manual_seed(0)).eval()
    fused = fuse_for_inference(model)
    convs = [m for m in fused.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert all(
        m.weight.is_contiguous() for m in model.modules() if isinstance(m, nn.Conv2d)
    )  # original untouched
    x = torch.randn(8, info.channels, info.image_size, info.image_size)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["digits", "cifar10"])
def test_init_parameters_draws_torchs_default_init_from_a_generator(name):
    # Known answer: the same draws, in the same order, as torch's own init after manual_seed.
    torch.manual_seed(5)
    expected = build_model(DATASETS[name], dropout=0.2)
    torch.manual_seed(123)  # whatever the shared generator holds must not matter
    model = init_parameters(
        build_model(DATASETS[name], dropout=0.2), torch.Generator().manual_seed(5)
    )
    for (key, a), b in zip(expected.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_dropout_masks_come_from_its_generator():
    layer = Dropout(0.5).train()
    x = torch.ones(4, 1000)
    masks = []
    for _ in range(2):
        use_generator(nn.Sequential(layer), torch.Generator().manual_seed(7))
        torch.manual_seed(len(masks))  # the shared generator differs each time
        masks.append(layer(x))
    assert torch.equal(masks[0], masks[1])
    kept = masks[0] != 0
    assert 0.45 < kept.float().mean() < 0.55
    assert torch.all(masks[0][kept] == 2.0)  # survivors scaled by 1 / (1 - p)
    assert torch.equal(layer.eval()(x), x)
