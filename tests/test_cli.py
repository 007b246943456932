from __future__ import annotations

import json
import subprocess
import sys

import pytest

from raymia.cli import main


def _run(args, capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args, expected",
    [
        (["trial", "--set", "label_smothing=0.1"], "unknown key 'label_smothing'"),
        (["trial", "--set", "label_smoothing=1.5"], "mechanisms.label_smoothing = 1.5"),
        (["trial", "--dataset", "mnist"], "dataset = 'mnist'"),
        (["trial", "--dataset", "cifar10", "--data-root", "/nonexistent/x"], "--download"),
        (["trial", "--bogus"], "unrecognized arguments: --bogus"),
        (["trial", "--threads", "0"], "expected a positive integer"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, expected, capsys):
    code, out, err = _run(args, capsys)
    assert code == 2
    assert err.startswith("raymia: error: ") and expected in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out == ""


def test_config_file_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "trial.yaml"
    bad.write_text("mechanisms:\n  dropout: 2.0\n")
    code, _, err = _run(["trial", "--config", str(bad)], capsys)
    assert code == 2 and f"{bad}: mechanisms.dropout = 2.0" in err
    bad.write_text("mechanisms: [oops\n")
    code, _, err = _run(["trial", "--config", str(bad)], capsys)
    assert code == 2 and "malformed YAML" in err


@pytest.mark.slow
def test_trial_json_prints_one_object_with_the_metrics():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "raymia.cli",
            "trial",
            "--set",
            "epochs=2",
            "--json",
            "--set",
            "dtc.enabled=false",
            "--set",
            "n_bootstrap=0",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert {"test_acc", "train_acc", "dp_epsilon", "train_seconds", "seed"} <= set(row)
    assert 0 <= row["test_acc"] <= 1 and row["dp_epsilon"] is None


def test_bad_input_from_the_console_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "raymia.cli", "trial", "--set", "dp_noise=1", "--set", "mixup=0.2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "cannot combine" in proc.stderr
