"""Where a trial's time goes: components timed, recordings nested, reference training apart."""

from __future__ import annotations

import time

import pytest

from raymia.costs import component, recording


def test_components_add_up_by_name_in_every_open_recording():
    with recording() as outer:
        with component("a"):
            time.sleep(0.02)
        with recording() as inner:
            with component("a"), component("b"):
                time.sleep(0.01)
    assert list(outer) == ["a", "b"] and set(inner) == {"a", "b"}
    assert outer["a"].calls == 2 and inner["a"].calls == 1
    assert outer["a"].seconds >= 0.03 and 0.01 <= inner["a"].seconds < outer["a"].seconds
    assert inner["b"].peak_bytes is None  # memory only when asked
    with component("c") as cost:  # outside any recording: still timed, recorded nowhere
        time.sleep(0.01)
    assert cost.seconds >= 0.01 and "c" not in outer


def test_a_components_peak_memory_is_its_own():
    import mmap

    with recording(memory=True) as costs:
        with component("big"):
            # 64 MiB of fresh anonymous pages, touched: resident whatever the heap already
            # holds free (an array could reuse freed resident memory and raise nothing)
            block = mmap.mmap(-1, 64 * 2**20)
            block.write(b"\x01" * len(block))
            block.close()
        with component("small"):
            pass
    if costs["big"].peak_bytes is None:
        pytest.skip("this system does not let a process reset its peak memory")
    assert costs["big"].peak_bytes - costs["small"].peak_bytes > 48 * 2**20


@pytest.mark.slow
def test_the_row_says_what_the_reference_models_cost():
    from raymia.trial.runner import run_trial

    base = {
        "epochs": 1,
        "attacks": {"merlin_neighbours": 2, "n_bootstrap": 0},
        "dtc": {"enabled": False},
    }
    with recording() as costs:
        shadow = run_trial({**base, "attacks": {**base["attacks"], "shadow_calibration": True}})
    assert 0 < shadow["reference_seconds"] < shadow["measure_seconds"]
    assert shadow["reference_seconds"] == pytest.approx(costs["reference training"].seconds)
    assert {"target training", "accuracy", "logit attacks", "merlin", "intervals and nulls"} <= set(
        costs
    )
    plain = run_trial({**base, "attacks": {**base["attacks"], "shadow_calibration": False}})
    assert plain["reference_seconds"] == 0.0


def test_inference_rows_follow_the_device_and_the_image_size():
    import torch

    from raymia.privacy.logits import ACCELERATOR_ROWS, CPU_ROWS, rows_per_pass

    cpu = torch.device("cpu")
    digits, mnist, cifar = (
        torch.zeros(2, *shape) for shape in ((1, 8, 8), (1, 28, 28), (3, 32, 32))
    )
    assert rows_per_pass(cpu, digits) > rows_per_pass(cpu, mnist) >= rows_per_pass(cpu, cifar)
    assert rows_per_pass(cpu, cifar) == CPU_ROWS[0] == rows_per_pass(cpu)  # never below
    assert rows_per_pass(cpu, torch.zeros(2, 1, 2, 2)) == CPU_ROWS[1]  # nor above
    assert rows_per_pass(torch.device("cuda"), cifar) == ACCELERATOR_ROWS


def test_chunking_changes_no_score_beyond_rounding(digits):
    import numpy as np

    from raymia.models.networks import build_model
    from raymia.privacy.logits import chunked

    model = build_model(digits.info).eval()
    x, y = digits.members.x, digits.members.y
    fn = lambda z, t: {"z": z}  # noqa: E731
    auto = chunked(model, x, y, None, fn)["z"]
    for rows in (1, 7, 128, 4096):
        assert np.allclose(chunked(model, x, y, rows, fn)["z"], auto, rtol=1e-5, atol=1e-6)
