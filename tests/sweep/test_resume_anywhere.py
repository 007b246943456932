"""A sweep directory moved or copied resumes in its new place, and writes only there; the
settings sweep.json fixes cannot change on resume."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
from helpers.local_ray import local_ray
from helpers.sweep_spaces import tiny_space

from raymia.cli import main
from raymia.results.rows import load_results
from raymia.sweep.settings import SweepSettings, load_settings, save_settings

#: the pytest process: the sweep's driver, which the test's trainable stops mid-sweep
DRIVER = os.getpid()
#: where the trainable counts the trials it started (set by the test)
COUNTER = ""


@pytest.fixture
def space(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_space(epochs=1))
    return path


def test_settings_travel_with_the_directory(space, tmp_path):
    out = tmp_path / "first"
    out.mkdir()
    save_settings(SweepSettings(space=str(space), out=str(out), samples=5), out)
    moved = tmp_path / "elsewhere" / "second"
    moved.parent.mkdir()
    shutil.move(out, moved)
    space.unlink()  # the original space file is gone too
    settings = load_settings(moved)
    assert settings.space == str(moved / "space.yaml") and Path(settings.space).exists()
    assert settings.out == str(moved) and settings.samples == 5


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--samples", "8"], "--samples"),
        (["--space", "x.yaml", "--gpus-per-trial", "1"], "--space, --gpus-per-trial"),
        (["--out", "elsewhere", "--sampler-seed", "3"], "--out, --sampler-seed"),
    ],
)
def test_flags_fixed_by_the_sweep_are_refused_on_resume(flags, named, tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    assert main(["sweep", "--resume", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{named} cannot change on resume" in err


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray with 2 logical CPUs, in a temp dir of its own."""
    with local_ray(2):
        yield


def stopping_trainable(params, pool=None, timeout=None):
    """A quick trial; the second one started stops the driver (SIGTERM) before it reports."""
    from ray import tune

    number = 1
    while True:
        try:
            os.close(os.open(f"{COUNTER}.{number}", os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            number += 1
    if number == 2:
        os.kill(DRIVER, signal.SIGTERM)
        time.sleep(30)
    tune.report(
        {"status": "ok", "test_acc": 0.9, "adv": 0.1, "adv_excess": 0.01, "dtc_adv": 0.1 * number}
    )


def _snapshot(path: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")
    }


@pytest.mark.slow
def test_a_copied_sweep_resumes_in_its_new_place_and_writes_nothing_to_the_original(
    ray_session, space, tmp_path, monkeypatch
):
    from ray import cloudpickle

    from raymia.sweep import run as sweep_run
    from raymia.sweep.run import run_sweep

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(sys.modules[__name__], "COUNTER", str(tmp_path / "started"))
    monkeypatch.setattr(sweep_run, "trainable", stopping_trainable)
    original = tmp_path / "original"
    settings = SweepSettings(space=str(space), out=str(original), samples=4, max_concurrent=1)
    assert len(run_sweep(settings)) == 1  # stopped by the second trial
    copy = tmp_path / "moved" / "copy"
    shutil.copytree(original, copy)
    space.unlink()
    before = _snapshot(original)
    assert main(["sweep", "--resume", str(copy)]) == 0
    assert _snapshot(original) == before, "the resume wrote to the original directory"
    df = load_results(copy)
    assert len(df) == 4 and (df["status"] == "ok").all() and df["trial_id"].is_unique
