"""Faults a sweep must survive: killed workers, a stopped driver, damaged files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from helpers.sweep_journal import trial_states
from helpers.sweep_spaces import tiny_space

from raymia.cli import main
from raymia.results.rows import load_results, write_trials

TINY_SPACE = tiny_space(epochs=6)


@pytest.fixture
def space(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return path


def _sweep_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "raymia.cli", "sweep", *args]


def _env(marker: str) -> dict[str, str]:
    env = dict(os.environ)
    env["RAYMIA_TEST_MARKER"] = marker  # inherited by Ray's workers: finds ours, not others'
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _start_sweep(marker: str, *args: str) -> subprocess.Popen:
    """Start `raymia sweep ARGS` under our marker, its output (stdout and stderr) piped."""
    return subprocess.Popen(
        _sweep_cmd(*args),
        env=_env(marker),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _resume_sweep(marker: str, out: Path) -> subprocess.CompletedProcess:
    """Run `raymia sweep --resume OUT` under our marker to its end."""
    return subprocess.run(
        _sweep_cmd("--resume", str(out)),
        env=_env(marker),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _trial_workers(marker: str) -> list[int]:
    """Return the pids of Ray trial actors started under our marker."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"ImplicitFunc" in cmdline and f"RAYMIA_TEST_MARKER={marker}".encode() in environ:
            pids.append(int(entry.name))
    return pids


def _rows(out: Path) -> int:
    try:
        return len(pd.read_parquet(out / "trials.parquet"))
    except (FileNotFoundError, OSError, ValueError):
        return 0


@pytest.mark.slow
def test_sigkill_of_a_trial_worker_is_retried_and_every_row_lands(space, tmp_path):
    marker = uuid.uuid4().hex
    out = tmp_path / "killed"
    proc = _start_sweep(marker, "--space", str(space), "--out", str(out), "--max-concurrent", "1")
    killed = None
    deadline = time.time() + 180
    while killed is None and time.time() < deadline and proc.poll() is None:
        workers = _trial_workers(marker)
        if workers and _rows(out) >= 1:  # mid-sweep: one trial done, the next one running
            time.sleep(0.5)
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    output, _ = proc.communicate(timeout=300)
    assert killed is not None, "no trial worker was seen running"
    assert proc.returncode == 0, output[-3000:]
    df = load_results(out)
    errors = df.loc[df["status"] != "ok", ["status", "error"]].to_dict("records")
    assert len(df) == 4 and df["trial_id"].is_unique and not errors, (errors, output[-3000:])


@pytest.mark.slow
def test_stopping_the_driver_then_resume_reruns_nothing_finished(space, tmp_path, monkeypatch):
    # SIGTERM, turned into Tune's graceful stop (SIGINT is Tune's own: the Ctrl-C test below);
    # Tune holds 1 finished trial (`raymia.sweep.window`), so the resume reads a state that
    # no longer lists the trials finished before it
    monkeypatch.setenv("RAYMIA_TUNE_KEEP_FINISHED", "1")
    stop = signal.SIGTERM
    marker = uuid.uuid4().hex
    out = tmp_path / "terminated"
    proc = _start_sweep(
        marker, "--space", str(space), "--out", str(out), "--samples", "6", "--max-concurrent", "1"
    )
    deadline = time.time() + 240
    while _rows(out) < 2 and time.time() < deadline:
        time.sleep(0.3)
    proc.send_signal(stop)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-3000:]
    assert "--resume" in output
    before = load_results(out)
    assert 2 <= len(before) < 6
    done = _resume_sweep(marker, out)
    assert done.returncode == 0, done.stderr[-3000:]
    # Tune's restore looks for the per-trial metric files raymia turns off; it says nothing
    assert "Could not fetch metrics" not in done.stdout + done.stderr, done.stderr[-3000:]
    after = load_results(out)
    assert len(after) == 6 and after["trial_id"].is_unique
    # finished trials were not re-run: their rows are untouched
    kept = after.set_index("trial_id").loc[before["trial_id"], "finished_at"]
    assert list(kept) == list(before["finished_at"])
    states = trial_states(out)
    assert states.count("COMPLETE") == 6 and "RUNNING" not in states


def _sweep_dir(tmp_path: Path, space: Path) -> Path:
    """A finished-looking sweep directory (settings, two rows, a journal) without running it."""
    out = tmp_path / "sweep"
    out.mkdir()
    settings = {"space": str(space), "out": str(out), "samples": 4}
    (out / "sweep.json").write_text(json.dumps(settings))
    write_trials(
        out,
        [
            {"trial_id": "a", "status": "ok", "seed": 0, "test_acc": 0.9},
            {"trial_id": "b", "status": "ok", "seed": 0, "test_acc": 0.8},
        ],
    )
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out / "optuna.journal")))
    study = optuna.create_study(
        study_name="raymia", storage=storage, directions=["maximize", "minimize"]
    )
    for _ in range(2):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, [0.5, 0.5])
    return out


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("truncate_parquet", "trials.parquet: not a readable Parquet file"),
        ("garbage_parquet", "trials.parquet: not a readable Parquet file"),
        ("garbage_journal", "optuna.journal: damaged Optuna journal (line"),
        ("truncate_journal", "optuna.journal"),
        ("missing_journal", "optuna.journal: missing, but trials.parquet has 2 rows"),
    ],
)
def test_damaged_files_are_named_on_resume_never_read_as_empty(
    damage, expected, space, tmp_path, capsys
):
    out = _sweep_dir(tmp_path, space)
    parquet, journal = out / "trials.parquet", out / "optuna.journal"
    if damage == "truncate_parquet":
        parquet.write_bytes(parquet.read_bytes()[: parquet.stat().st_size // 2])
    elif damage == "garbage_parquet":
        parquet.write_bytes(b"\x00garbage" * 10)
    elif damage == "garbage_journal":
        with open(journal, "a") as f:
            f.write("{not json\n")
    elif damage == "missing_journal":
        journal.unlink()
    else:
        lines = journal.read_text().splitlines(keepends=True)
        journal.write_text("".join(lines[: len(lines) // 2]))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()  # drop what setting up the directory logged (Optuna's study message)
    assert main(["sweep", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("raymia: error: ") and expected in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_damaged_trials_parquet_in_a_fresh_out_dir_is_refused_before_writing(
    space, tmp_path, capsys
):
    out = tmp_path / "fresh"
    out.mkdir()
    (out / "trials.parquet").write_bytes(b"\x00garbage" * 10)
    assert main(["sweep", "--space", str(space), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "trials.parquet: not a readable Parquet file" in err and err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["trials.parquet"]  # no sweep.json


@pytest.mark.slow
def test_ctrl_c_before_the_first_row_exits_130_and_resumes(space, tmp_path):
    marker = uuid.uuid4().hex
    out = tmp_path / "early"
    proc = _start_sweep(marker, "--space", str(space), "--out", str(out), "--max-concurrent", "1")
    deadline = time.time() + 180
    while not _trial_workers(marker) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert _rows(out) == 0, "the first trial finished before the test could interrupt it"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-3000:]
    assert f"--resume {out}" in output
    done = _resume_sweep(marker, out)
    assert done.returncode == 0, done.stderr[-3000:]
    df = load_results(out)
    assert len(df) == 4 and df["trial_id"].is_unique and (df["status"] == "ok").all()
    states = trial_states(out)
    assert states.count("COMPLETE") == 4 and "RUNNING" not in states
