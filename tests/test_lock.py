"""The locked environment: requirements.lock agrees with pyproject.toml, the README's set-up
command and CI install through it, and the lock script reads and checks it."""

from __future__ import annotations

import importlib.util
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock.py")
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def test_the_lock_pins_every_dependency_inside_its_range():
    pins = lock.read_lock(lock.LOCK.read_text())
    for requirement in _requirements():
        name = lock.canonical(requirement.name)
        if name == "raymia":  # dev's own extra: raymia[cluster]
            continue
        assert name in pins, f"requirements.lock has no pin for {requirement}"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]}: {requirement}"
    # the releases the round asked for: Optuna 5.1 or later, torch at the machine's cap
    assert tuple(int(p) for p in pins["optuna"].split(".")[:2]) >= (5, 1)
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert "boto3" in pins  # the cluster extra: `ray up` on AWS and the head's autoscaler


def test_the_lock_leaves_out_raymia_pip_and_torchs_cuda_runtime():
    pins = lock.read_lock(lock.LOCK.read_text())
    assert not [n for n in pins if not lock.lockable(n)], "regenerate: python scripts/lock.py"
    assert not lock.lockable("nvidia-cublas") and not lock.lockable("triton")
    assert not lock.lockable("Raymia") and lock.lockable("ray") and lock.lockable("numpy")


def test_a_freeze_becomes_a_sorted_lock_without_what_is_left_out():
    frozen = "\n".join(
        [
            "Scikit_Learn==1.9.1",
            "numpy==2.4.6",
            "nvidia-cublas==13.1.1.3",
            "triton==3.8.0",
            "pip==23.2.1",
            "-e git+https://example.invalid/raymia#egg=raymia",
            "raymia==0.1.0",
        ]
    )
    text = lock.render_lock(frozen)
    assert [line for line in text.splitlines() if not line.startswith("#")] == [
        "numpy==2.4.6",
        "scikit-learn==1.9.1",
    ]
    assert lock.read_lock(text) == {"numpy": "2.4.6", "scikit-learn": "1.9.1"}


def test_a_line_that_is_not_a_pin_is_named():
    with pytest.raises(ValueError, match=r"line 2: 'numpy>=2' is not name==version"):
        lock.read_lock("# header\nnumpy>=2\n")


def test_an_environment_off_the_lock_is_found():
    pins = {"numpy": "2.4.6", "torch": "2.14.1", "boto3": "1.44.8"}
    have = {"numpy": "2.4.5", "torch": "2.14.1+cu128"}  # a CUDA build's local label is fine
    assert lock.mismatches(pins, have) == ["numpy: locked 2.4.6, installed 2.4.5"]
    assert lock.mismatches(pins, {"numpy": "2.4.6"}) == []  # a pin not installed: fine


def _ci_readme_command(label: str) -> str:
    """What .ci/run reads from the README as the command labelled `label`."""
    script = (ROOT / ".ci" / "run").read_text()
    function = script[script.index("readme_command()") : script.index("\n}\n") + 3]
    done = subprocess.run(
        ["bash", "-c", f'{function}readme_command "{label}"'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_ci_runs_the_readmes_set_up_and_test_commands_in_a_fresh_virtualenv():
    assert _ci_readme_command("set up") == 'pip install -e ".[dev]" -c requirements.lock'
    assert _ci_readme_command("the test suite") == "pytest"
    script = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m venv" in script and "--system-site-packages" not in script
    assert "trap 'rm -rf \"$venv\"' EXIT" in script  # removed at the end, pass or fail
    assert "python scripts/lock.py --check" in script
