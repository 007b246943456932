"""The sweep engine end to end, on a local Ray of the tests' own (never `ray stop`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.local_ray import local_ray
from helpers.sweep_journal import trial_states
from helpers.sweep_spaces import tiny_space

from raymia.cli import main
from raymia.results.rows import load_results, load_scores
from raymia.sweep.run import run_sweep
from raymia.sweep.settings import SweepSettings

ROOT = Path(__file__).resolve().parents[2]

TINY_SPACE = tiny_space()

OBJECTIVES = ["test_acc", "adv", "dtc_adv"]


class Records(logging.Handler):
    """Keeps the messages a logger emits."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray with 4 logical CPUs and 1 logical GPU, in a temp dir of its own."""
    with local_ray(4, num_gpus=1):
        yield


@pytest.fixture
def space(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return path


@pytest.mark.slow
def test_four_trial_sweep_end_to_end(ray_session, space, tmp_path, capsys):
    out = tmp_path / "sweep"
    tune_logger = logging.getLogger("ray.tune.analysis.experiment_analysis")
    heard = Records()
    tune_logger.addHandler(heard)
    try:
        code = main(["sweep", "--space", str(space), "--out", str(out), "--max-concurrent", "2"])
    finally:
        tune_logger.removeHandler(heard)
    assert code == 0
    # Tune's per-trial files are off on purpose: no warning per trial that they are missing
    assert not [m for m in heard.messages if "Failed to fetch metrics" in m], heard.messages
    df = load_results(out)
    assert len(df) == 4 and df["trial_id"].is_unique
    assert (df["status"] == "ok").all()
    for column in OBJECTIVES + [
        "label_smoothing",
        "dropout",
        "seed",
        "dataset",
        "train_seconds",
        "measure_seconds",
        "dp_epsilon",
        "loss_auc",
        "raymia_version",
        "torch_version",
        "ray_version",
        "optuna_version",
        "git_sha",
    ]:
        assert column in df.columns, column
    assert np.isfinite(df[OBJECTIVES].to_numpy(float)).all()
    assert df["dp_epsilon"].isna().all()
    scores = load_scores(out, df["trial_id"].iloc[0])
    assert {"is_member", "score_loss", "dtc"} <= set(scores.columns)
    printed = capsys.readouterr().out
    assert "Pareto front" in printed and "| trial |" in printed
    assert any(trial_id in printed for trial_id in df["trial_id"])
    assert (out / "optuna.journal").exists() and (out / "sweep.json").exists()


def flaky_trainable(params, pool=None, timeout=None):
    """Fails for dropout 0.1, diverges for dropout 0.2, else runs the real trial."""
    from raymia.sweep.worker import trainable  # in the worker: the real one
    from raymia.trial.train import TrainingDiverged

    dropout = params["mechanisms"]["dropout"]
    if dropout == 0.1:
        raise RuntimeError("injected failure for the test")
    if dropout == 0.2:
        raise TrainingDiverged("training loss became nan in epoch 1")
    return trainable(params, pool, timeout)


@pytest.mark.slow
def test_raising_and_diverging_trials_are_recorded_and_failed_in_optuna(
    ray_session, space, tmp_path, monkeypatch
):
    from ray import cloudpickle

    from raymia.sweep import run as sweep_run

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(sweep_run, "trainable", flaky_trainable)
    out = tmp_path / "faults"
    settings = SweepSettings(
        space=str(space),
        out=str(out),
        samples=8,
        max_failures=0,
        max_concurrent=2,
        search="random",  # seeded draws in ask order: the same 8 whatever finishes first
    )
    df = run_sweep(settings)
    assert len(df) == 8 and df["trial_id"].is_unique
    failed = df[df["dropout"] == 0.1]
    diverged = df[df["dropout"] == 0.2]
    assert len(failed) and len(diverged), "the seeded sampler drew both faulty strengths"
    assert (failed["status"] == "failed").all()
    assert failed["error"].str.contains("injected failure").all()
    assert (diverged["status"] == "diverged").all()
    assert (df[df["dropout"] == 0.0]["status"] == "ok").all()
    states = trial_states(out)
    assert states.count("FAIL") == len(failed) + len(diverged)
    assert "RUNNING" not in states and states.count("COMPLETE") == (df["status"] == "ok").sum()


def _listing(path: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in path.rglob("*")}


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--space", "{malformed}"], "malformed YAML"),
        (["--space", "{unknown}"], "unknown mechanism 'mechanisms.labl_smoothing'"),
        (["--space", "{space}", "--objectives", "acc:max,privacy:min"], "unknown objective"),
        (["--space", "{space}", "--gpus-per-trial", "-1"], "--gpus-per-trial -1.0"),
        (["--space", "{space}", "--objectives", "acc:maximize"], "expected name:max|min"),
        (["--space", "{range}"], "is out of range"),
        (["--space", "{grid}", "--search", "random"], "run it with --search grid"),
        (["--space", "{grid}", "--search", "optuna"], "run it with --search grid"),
        # what no trial could run is refused before Ray starts, not once per trial
        (["--space", "{canaries}"], "canaries.yaml: trial: attacks.canaries = 2000"),
        (["--space", "{members}"], "members.yaml: trial: "),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_dir_alone(args, expected, tmp_path, capsys):
    spaces = {
        "space": TINY_SPACE,
        "malformed": "mechanisms: [oops\n",
        "unknown": "mechanisms:\n  labl_smoothing: {uniform: [0, 0.1]}\n",
        "range": "mechanisms:\n  label_smoothing: {uniform: [0, 1.5]}\n",
        "grid": "grid:\n  - {}\n  - {dropout: 0.1}\n",
        "canaries": "trial: {attacks: {canaries: 2000}}\nmechanisms:\n  dropout: {choice: [0.1]}\n",
        "members": "trial: {members: 100000}\nmechanisms:\n  dropout: {choice: [0.1]}\n",
    }
    for name, text in spaces.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    out = tmp_path / "existing"
    out.mkdir()
    (out / "trials.parquet").write_bytes(b"previous results")
    before = _listing(out)
    filled = [a.format(**{k: tmp_path / f"{k}.yaml" for k in spaces}) for a in args]
    code = main(["sweep", *filled, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("raymia: error: ") and expected in err and err.count("\n") == 1
    assert _listing(out) == before
    assert (out / "trials.parquet").read_bytes() == b"previous results"


def test_an_existing_sweep_is_not_overwritten(tmp_path, space, capsys):
    out = tmp_path / "done"
    out.mkdir()
    (out / "sweep.json").write_text("{}")
    assert main(["sweep", "--space", str(space), "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_front_table_says_whether_leakage_is_detectable():
    import pandas as pd

    from raymia.results.front import parse_objectives
    from raymia.results.tables import front_table

    df = pd.DataFrame(
        [
            {"trial_id": "a", "status": "ok", "test_acc": 0.98, "adv": 0.40, "adv_null_q95": 0.09},
            {"trial_id": "b", "status": "ok", "test_acc": 0.80, "adv": 0.05, "adv_null_q95": 0.09},
            {"trial_id": "c", "status": "ok", "test_acc": 0.70, "adv": 0.30, "adv_null_q95": 0.09},
        ]
    )
    df["dp_noise"], df["dp_clip"] = [0.0, 1.0, 0.0], 1.0
    table = front_table(df, parse_objectives("acc:max,adv:min"))
    assert "| a | none | - | 0.980 | 0.400 | detected |" in table
    assert "| b | dp_noise=1 (dp_clip=1) | - | 0.800 | 0.050 | no detectable leakage |" in table
    assert "| c |" not in table  # dominated by b
    failed = df.assign(status="failed")
    assert front_table(failed, parse_objectives("acc:max")) == (
        "(no successful trials: no Pareto front)"
    )


def test_excess_objective_needs_the_null(tmp_path):
    from raymia.sweep.settings import SweepSettings, check_settings
    from raymia.sweep.space import load_space

    path = tmp_path / "space.yaml"
    path.write_text(
        "trial: {epochs: 1, attacks: {n_permutations: 0}}\n"
        "mechanisms: {dropout: {uniform: [0.0, 0.5]}}\n"
    )
    space = load_space(path)
    settings = SweepSettings(
        space=str(path), out=str(tmp_path / "out"), objectives="acc:max,adv_excess:min"
    )
    with pytest.raises(Exception, match="n_permutations: 0"):
        check_settings(settings, space)
    path.write_text("trial: {epochs: 1}\nmechanisms: {dropout: {uniform: [0.0, 0.5]}}\n")
    check_settings(settings, load_space(path))


def nan_trainable(params, pool=None, timeout=None):
    """A millisecond trial: NaN accuracy for dropout 0.2, finite objectives otherwise."""
    from ray import tune

    nan = params["mechanisms"]["dropout"] == 0.2
    tune.report(
        {
            "status": "ok",
            "test_acc": float("nan") if nan else 0.9,
            "adv": 0.1,
            "adv_excess": 0.01,
            "dtc_adv": 0.05,
            "dropout": params["mechanisms"]["dropout"],
        }
    )


@pytest.mark.slow
def test_a_nan_objective_fails_in_optuna_the_sweep_resumes_no_tune_files_per_trial(
    ray_session, space, tmp_path, monkeypatch
):
    from ray import cloudpickle

    from raymia.sweep import run as sweep_run

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(sweep_run, "trainable", nan_trainable)
    out = tmp_path / "nan"
    # random search: seeded draws in ask order, the same whatever finishes first (TPE's
    # constant liar makes its draws depend on which trials are still running)
    settings = SweepSettings(
        space=str(space), out=str(out), samples=6, max_concurrent=2, search="random"
    )
    df = run_sweep(settings)
    assert len(df) == 6 and (df["dropout"] == 0.2).any(), "the seeded sampler drew a NaN"
    states = trial_states(out)
    assert "RUNNING" not in states and states.count("FAIL") == (df["dropout"] == 0.2).sum()
    # the row says what Optuna recorded, and why
    nan_rows = df[df["dropout"] == 0.2]
    assert (nan_rows["status"] == "failed").all() and (
        df[df["dropout"] != 0.2]["status"] == "ok"
    ).all()
    assert nan_rows["error"].str.contains("test_acc = nan").all()
    # the resume accepts the journal (a RUNNING trial used to read as a truncated journal)
    assert len(run_sweep(settings, resume=True)) == 6
    # Tune's per-trial loggers are off: no file of Tune's per trial, whatever the sweep's size
    tune_dir = out / "tune"
    per_trial = [p for p in tune_dir.rglob("trial_*/**/*") if p.is_file()]
    assert len(list(tune_dir.glob("trial_*"))) == 6  # (the check below looks in the right place)
    assert per_trial == []
    # the sweep's own few files (settings, rows, journal, Tune's state of each run), not 6 x 5
    assert len([p for p in out.rglob("*") if p.is_file()]) <= 16


@pytest.mark.slow
def test_tune_holds_only_a_window_of_finished_trials_and_every_row_is_recorded(
    ray_session, space, tmp_path, monkeypatch
):
    import json

    from ray import cloudpickle

    from raymia.sweep import run as sweep_run
    from raymia.sweep import window

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(sweep_run, "trainable", nan_trainable)
    monkeypatch.setattr(window, "KEEP_FINISHED", 2)
    out = tmp_path / "window"
    settings = SweepSettings(
        space=str(space), out=str(out), samples=10, max_concurrent=2, search="random"
    )
    df = run_sweep(settings)
    assert len(df) == 10 and df["trial_id"].is_unique
    assert sorted(trial_states(out)) == sorted(
        ["FAIL" if d == 0.2 else "COMPLETE" for d in df["dropout"]]
    )
    # Tune's saved state lists the window and the running, not all 10 ever run
    state = max((out / "tune").glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    assert 1 <= len(json.loads(state.read_text())["trial_data"]) <= 2 + 2
    assert len(run_sweep(settings, resume=True)) == 10
