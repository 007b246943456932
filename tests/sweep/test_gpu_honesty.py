"""GPU honesty: a trial that holds a GPU trains on CUDA or fails with one line, never on the
CPU; the sweep refuses at start when the driver's node offers GPUs that CUDA cannot use."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.local_ray import local_ray
from helpers.sweep_spaces import tiny_space

from raymia.errors import ConfigError
from raymia.sweep import worker
from raymia.sweep.run import run_sweep
from raymia.sweep.settings import SweepSettings

TOO_OLD = "The NVIDIA driver on your system is too old (found version 11040)."


@pytest.fixture
def no_cuda(monkeypatch):
    """CUDA unusable, as torch reports it where the driver is older than its CUDA build."""

    def init():
        raise RuntimeError(TOO_OLD + "\nPlease update your GPU driver.")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "init", init)


@pytest.fixture
def space(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_space(epochs=1))
    return path


class _Context:
    def get_assigned_resources(self):
        return {"CPU": 1.0, "GPU": 0.25}

    def get_node_id(self):
        return "ab" * 28


def test_a_trial_holding_a_gpu_without_cuda_fails_with_one_line(no_cuda, monkeypatch):
    import ray

    import raymia.trial.runner

    def cpu_fallback(config, pool=None, threads=1):
        raise AssertionError(f"trained on {config['device']} while holding a GPU")

    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])
    monkeypatch.setattr(ray, "get_runtime_context", _Context)
    monkeypatch.setattr(raymia.trial.runner, "run_trial", cpu_fallback)
    params = {"trial": {"epochs": 1}, "seed": 0, "mechanisms": {"dropout": 0.1}}
    with pytest.raises(worker.GPUUnusable) as info:
        worker.trainable(params)
    message = str(info.value)
    assert "\n" not in message
    assert "GPU [0]" in message and "node abababab" in message and TOO_OLD in message


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray with 4 logical CPUs and 1 logical GPU, in a temp dir of its own."""
    with local_ray(4, num_gpus=1):
        yield


def test_the_sweep_refuses_gpus_it_cannot_use_before_any_trial(
    ray_session, no_cuda, space, tmp_path
):
    out = tmp_path / "gpu"
    settings = SweepSettings(space=str(space), out=str(out), samples=4, gpus_per_trial=0.25)
    with pytest.raises(ConfigError) as info:
        run_sweep(settings)
    message = str(info.value)
    assert "\n" not in message and message.startswith("--gpus-per-trial 0.25: ")
    assert "driver's node" in message and TOO_OLD in message
    assert not out.exists()


def test_a_head_without_gpus_leaves_the_check_to_the_trials(ray_session, no_cuda, monkeypatch):
    import ray

    here = ray.get_runtime_context().get_node_id()
    cpu_head = [{"NodeID": here, "Resources": {"CPU": 8.0}}]
    monkeypatch.setattr(ray, "nodes", lambda: cpu_head)
    worker.check_driver_gpus(0.25)  # the GPU workers are not the driver's to judge
    worker.check_driver_gpus(0.0)


#: where the trials of the fractional-GPU test meet (set by the test)
MEETING = ""


def meeting_trainable(params, pool=None, timeout=None):
    """Holds its share of the GPU until all four trials hold theirs (or 90 s pass); reports
    on which GPU it ran and whether it met the other three."""
    import ray
    from ray import tune

    Path(MEETING, str(os.getpid())).touch()
    deadline = time.time() + 90
    while len(os.listdir(MEETING)) < 4 and time.time() < deadline:
        time.sleep(0.1)
    tune.report(
        {
            "status": "ok",
            "device": f"gpu{ray.get_gpu_ids()}",
            "together": len(os.listdir(MEETING)) >= 4,
            "test_acc": 0.9,
            "adv": 0.1,
            "adv_excess": 0.01,
            "dtc_adv": 0.1,
        }
    )


@pytest.mark.slow
def test_fractional_gpus_run_four_trials_at_once(ray_session, space, tmp_path, monkeypatch):
    from ray import cloudpickle

    from raymia.sweep import run as sweep_run

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    (tmp_path / "meeting").mkdir()
    monkeypatch.setattr(sys.modules[__name__], "MEETING", str(tmp_path / "meeting"))
    monkeypatch.setattr(sweep_run, "trainable", meeting_trainable)
    monkeypatch.setattr(sweep_run, "check_driver_gpus", lambda gpus: None)  # no CUDA here
    settings = SweepSettings(
        space=str(space),
        out=str(tmp_path / "gpu"),
        samples=4,
        search="random",
        gpus_per_trial=0.25,
        cpus_per_trial=1,
        max_concurrent=4,
    )
    df = run_sweep(settings)
    assert len(df) == 4 and (df["status"] == "ok").all()
    assert set(df["device"]) == {"gpu[0]"}, "each trial held a quarter of the one GPU"
    assert df["together"].all(), "all four trials held the GPU at the same moment"
