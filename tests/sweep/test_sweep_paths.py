"""The cluster path: a sweep imports the installed raymia in every trial, whatever folder it
starts in; a sweep in which no trial completed exits non-zero, naming the first error; Ray
Client addresses are refused with the command to use instead."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from helpers.sweep_spaces import tiny_space

from raymia.cli import main
from raymia.results.rows import load_results

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def space(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_space(epochs=1))
    return path


@pytest.mark.slow
def test_a_folder_named_raymia_beside_the_driver_does_not_shadow_the_package(space, tmp_path):
    # what `ray submit` leaves in the head's home: the checkout at ~/raymia beside the copied
    # entry script, which runs there; Ray puts that folder first on every worker's path
    home = tmp_path / "home"
    (home / "raymia" / "raymia").mkdir(parents=True)
    (home / "raymia" / "pyproject.toml").write_text("[project]\nname = 'raymia'\n")
    shutil.copy(ROOT / "scripts" / "sweep_entry.py", home)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rms-", dir="/tmp"))  # Ray's sockets: short paths
    out = tmp_path / "sweep"
    try:
        done = subprocess.run(
            # --address local: a Ray of its own (in RAY_TMPDIR) instead of the entry's auto
            [sys.executable, "sweep_entry.py", "--address", "local", "--space", str(space)]
            + ["--out", str(out), "--samples", "2", "--search", "random", "--max-concurrent", "2"],
            cwd=home,
            env={**os.environ, "RAY_TMPDIR": str(ray_tmp)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    df = load_results(out)
    assert len(df) == 2 and (df["status"] == "ok").all(), df.get("error")
    assert set(df["device"]) == {"cpu"}  # each row records the device it trained on
    assert "ImportError" not in done.stdout + done.stderr


def test_a_sweep_in_which_no_trial_completed_exits_1_naming_the_first_error(
    space, tmp_path, monkeypatch, capsys
):
    from raymia.sweep import run as sweep_run

    rows = pd.DataFrame(
        {
            "trial_id": ["a1", "b2", "c3", "d4"],
            "status": ["failed", "failed", "diverged", "failed"],
            "error": ["ImportError: cannot import name 'x'", "boom", "nan loss", "boom"],
            "test_acc": [0.9] * 4,
            "adv": [0.1] * 4,
            "adv_excess": [0.01] * 4,
            "dtc_adv": [0.1] * 4,
        }
    )
    monkeypatch.setattr(sweep_run, "run_sweep", lambda settings, resume=False: rows)
    assert main(["sweep", "--space", str(space), "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no trial of 4 completed" in err and "a1" in err and "cannot import name 'x'" in err
    # one trial completed: the sweep succeeded
    rows.loc[1, "status"] = "ok"
    assert main(["sweep", "--space", str(space), "--out", str(tmp_path / "t")]) == 0


def test_a_ray_client_address_is_refused_naming_what_to_use(space, tmp_path):
    from raymia.errors import ConfigError
    from raymia.sweep.settings import SweepSettings, check_settings
    from raymia.sweep.space import load_space

    settings = SweepSettings(
        space=str(space), out=str(tmp_path / "s"), address="ray://10.0.0.1:10001"
    )
    with pytest.raises(ConfigError) as info:
        check_settings(settings, load_space(space))
    message = str(info.value)
    assert "\n" not in message and message.startswith("--address ray://10.0.0.1:10001: ")
    assert "ray job submit" in message
    settings.address = "10.0.0.1:6379"  # a cluster address from one of its nodes is fine
    check_settings(settings, load_space(space))
