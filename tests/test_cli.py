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


def trial_json(settings: list[str], *flags: str) -> dict:
    """Run `raymia trial --json` in a fresh interpreter with these --set values and flags;
    assert it exits 0 and return the printed row."""
    proc = subprocess.run(
        [sys.executable, "-m", "raymia.cli", "trial", "--json", *flags]
        + [arg for s in settings for arg in ("--set", s)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_trial_json_prints_one_object_with_the_metrics():
    settings = ["epochs=2", "dtc.enabled=false", "n_bootstrap=0"]
    row = trial_json(settings, "--threads", "1")
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


def test_human_report_lists_every_attack_and_dtc():
    from raymia.cli import format_row

    row = {
        "dataset": "digits",
        "seed": 0,
        "test_acc": 0.98,
        "train_acc": 1.0,
        "dp_epsilon": None,
        "epochs_run": 30,
        "adv": 0.3,
        "loss_yeom_adv": 0.2,
        "dtc_auc": 0.6,
        "dtc_adv": 0.2,
        "dtc_median_member": 0.5,
        "dtc_median_non_member": 0.9,
        "dtc_censored": 0.0,
        "dtc_tau": 0.99,
        "train_seconds": 2.0,
        "measure_seconds": 3.0,
    }
    for attack in ("loss", "merlin"):
        row.update(
            {
                f"{attack}_adv": 0.3,
                f"{attack}_adv_lo": 0.2,
                f"{attack}_adv_hi": 0.4,
                f"{attack}_auc": 0.7,
                f"{attack}_adv_null_q95": 0.1,
                f"{attack}_adv_p": 0.005,
                f"{attack}_adv_calibrated": 0.25,
            }
        )
    text = format_row(row, {"dropout": 0.3})
    assert "mechanisms: {'dropout': 0.3}" in text
    lines = {line.split()[0]: line for line in reversed(text.splitlines()) if line.strip()}
    assert "[0.20, 0.40]" in lines["loss"] and "0.005" in lines["merlin"]
    assert "best attack advantage (adv): 0.300" in text and "DtC: auc 0.600" in text


@pytest.mark.parametrize("args", [["--help"], ["trial", "--help"], ["sweep", "--help"]])
def test_help_answers_without_importing_torch_pandas_or_ray(args):
    """The parser loads nothing heavy: `raymia --help` answers in a fraction of a second
    (importing torch and pandas up front took about 6 s on a loaded machine)."""
    heavy = ("torch", "pandas", "ray", "pyarrow", "optuna", "sklearn")
    probe = (
        "import sys\n"
        "from raymia.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        f"print('heavy:', ','.join(sorted(m for m in {heavy!r} if m in sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: raymia" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "heavy: ", proc.stdout.splitlines()[-1]


def test_every_user_error_is_one_line_and_exit_2(monkeypatch, capsys):
    """The CLI catches the one base class: any UserError subclass is reported the same way."""
    import raymia.cli
    from raymia.errors import AnalysisError, ResultsError, UserError

    for error in (ResultsError("DIR: no trials.parquet"), AnalysisError("no ok trial")):
        assert isinstance(error, UserError)

        def fail(args, error=error):
            raise error

        monkeypatch.setattr(raymia.cli, "_cmd_trial", fail)
        code, out, err = _run(["trial"], capsys)
        assert code == 2 and err == f"raymia: error: {error}\n" and out == ""


@pytest.mark.slow
def test_mnist_5k_trial_reports_tpr_at_a_tenth_of_a_percent():
    """The bundled 28x28 set has enough non-members (1,000) for TPR at 0.1% FPR, offline."""
    settings = ["epochs=2", "merlin_neighbours=5", "n_bootstrap=0", "n_permutations=20"]
    settings += ["shadow_calibration=false", "dtc.enabled=false"]
    row = trial_json(settings, "--dataset", "mnist-5k")
    assert row["dataset"] == "mnist-5k" and row["eval_members"] == 1000
    assert row["test_acc"] > 0.5
    for attack in ("loss", "entropy"):
        value = row[f"{attack}_tpr_at_0p1pct"]
        assert value is not None and 0 <= value <= 1
        assert row[f"{attack}_tpr_at_0p1pct_lo"] <= value <= row[f"{attack}_tpr_at_0p1pct_hi"]
