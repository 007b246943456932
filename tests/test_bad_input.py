"""Every bad input is one line: whatever file, directory or value a user hands the command
line (`raymia trial`, `raymia sweep`, a resume, the analysis scripts, the README generator),
a refusal is one short line on stderr naming the file, exit code 2, no traceback, and no
file of an existing sweep changed."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raymia.cli import main

# A settings file big enough to stall a parser or flood a terminal if echoed.
HUGE = 1_000_000
# The longest line a refusal may print (a path of tmp_path's length included).
MAX_LINE = 300

# "billion laughs": nine levels of nine aliases, 9**9 values once expanded
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)

# The bytes of each kind of bad settings file; None: made by `_make` (not a plain file).
BAD_TEXT: dict[str, bytes | None] = {
    "binary": random.Random(0).randbytes(4096),
    "nul_bytes": b"epochs: 3\x00\x00\n",
    "latin1": "description: caf\xe9\n".encode("latin-1"),
    "utf16": "epochs: 3\n".encode("utf-16"),
    "empty": b"",
    "alias_bomb": ALIAS_BOMB.encode(),
    "deep_nesting": b"[" * 100_000,
    "huge_value": b"dataset: " + b"x" * HUGE + b"\n",
    "long_value": b"dataset: " + b"x" * 100_000 + b"\n",
    "directory": None,
    "missing": None,
    "unreadable": None,
}


def _make(path: Path, kind: str, content: dict[str, bytes | None] = BAD_TEXT) -> Path:
    """Create the bad `kind` of file at `path` (a directory, nothing, a chmod-000 file, or
    the bytes of `content[kind]`) and return `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "directory":
        path.mkdir()
    elif kind == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads a chmod-000 file")
        path.write_text("epochs: 3\n")
        path.chmod(0)
    elif kind != "missing":
        data = content[kind]
        assert data is not None
        path.write_bytes(data)
    return path


def _assert_one_line(code: int, err: str, name: str, limit: int = MAX_LINE) -> str:
    """Assert a refusal: exit 2, one non-empty stderr line naming `name`, at most `limit`
    characters, no run of the huge values' characters; return the line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err[:500]
    assert len(lines) == 1, err[:500]
    line = lines[0]
    assert "Traceback" not in err and name in line, line[:500]
    assert len(line) < limit, line[:500]
    assert "x" * 100 not in line and "k" * 100 not in line, line[:500]
    return line


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    started = time.perf_counter()
    code = main(argv)
    assert time.perf_counter() - started < 10, "a refusal must be quick"
    return code, capsys.readouterr().err


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep that got past its checks would start Ray: fail the test instead."""
    import raymia.sweep.run

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the bad input was not refused before Ray started")

    monkeypatch.setattr(raymia.sweep.run, "_init_ray", refuse)


# --------------------------------------------------------------------------------------------
# Settings files: `raymia trial --config FILE`, `raymia sweep --space FILE`


@pytest.mark.parametrize("kind", list(BAD_TEXT))
@pytest.mark.parametrize("surface", ["trial --config", "sweep --space"])
def test_a_bad_settings_file_is_one_line(surface, kind, tmp_path, capsys):
    path = _make(tmp_path / "settings.yaml", kind)
    out = tmp_path / "sweep"
    argv = [*surface.split(), str(path)] + (["--out", str(out)] if "sweep" in surface else [])
    code, err = _run(argv, capsys)
    _assert_one_line(code, err, str(path))
    assert not out.exists()  # refused before anything was written


def test_an_alias_bomb_where_a_value_is_expected_is_refused_before_it_is_built(tmp_path, capsys):
    """The bomb sits in a choice a space accepts: building it (or quoting it in a message
    about the strengths) would walk 9**9 values; it is refused from its events instead."""
    levels = ["&a [x, x, x, x, x, x, x, x, x]"] + [
        f"&{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    path = tmp_path / "space.yaml"
    path.write_text(f"mechanisms:\n  dropout: {{choice: [{', '.join(levels)}]}}\n")
    started = time.perf_counter()
    code, err = _run(["sweep", "--space", str(path)], capsys)
    assert "alias" in _assert_one_line(code, err, str(path))
    assert time.perf_counter() - started < 2


def test_yaml_that_is_whole_still_loads(tmp_path):
    """Anchors, aliases and merge keys within the budget keep working."""
    from raymia.trial.config import load_yaml

    path = tmp_path / "trial.yaml"
    path.write_text("\ufeffbase: &b {epochs: 2}\nrun: {<<: *b, seed: 1}\nagain: *b\n")
    assert load_yaml(path) == {
        "base": {"epochs": 2},
        "run": {"epochs": 2, "seed": 1},
        "again": {"epochs": 2},
    }


# --------------------------------------------------------------------------------------------
# Values on the command line


@pytest.mark.parametrize(
    "argv",
    [
        ["trial", "--set", "dataset=" + "x" * HUGE],
        ["trial", "--set", "x" * HUGE + "=1"],
        ["trial", "--set", "dataset={" + ALIAS_BOMB.replace("\n", ", ") + "}"],
        ["trial", "--set", "dataset=" + "[" * 100_000],
        ["trial", "--set", "mechanisms.dropout=" + "x" * HUGE],
        ["sweep", "--samples", "x" * HUGE],
        ["trial", "--dataset", "cifar10", "--data-root", "x" * HUGE],
    ],
    ids=["huge_value", "huge_key", "alias_bomb", "deep", "huge_nested", "huge_flag", "huge_root"],
)
def test_a_bad_value_on_the_command_line_is_one_bounded_line(argv, capsys):
    code, err = _run(argv, capsys)
    _assert_one_line(code, err, "raymia", limit=1100)  # the list of known keys is long


def test_data_root_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "data"
    path.write_text("not a directory")
    code, err = _run(["trial", "--dataset", "cifar10", "--data-root", str(path)], capsys)
    assert "not a directory" in _assert_one_line(code, err, str(path))


# --------------------------------------------------------------------------------------------
# Sweep directories: --out, --resume and the files a resume reads


def _sweep_dir(path: Path) -> Path:
    """Return a stopped sweep at `path`: sweep.json, space.yaml, one row, a journal line."""
    from raymia.results.rows import write_trials
    from raymia.sweep.settings import SweepSettings, save_settings
    from raymia.sweep.space import shipped_space

    path.mkdir()
    save_settings(SweepSettings(space=str(shipped_space("frontier")), out=str(path)), path)
    write_trials(path, [{"trial_id": "t0", "status": "failed", "error": "x"}])
    (path / "optuna.journal").write_text('{"op_code": 0, "worker_id": "w"}\n')
    return path


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


# the bad contents a resume meets, by file
RESUME_TEXT: dict[str, bytes | None] = {
    **BAD_TEXT,
    "huge_key": b'{"space": "space.yaml", "out": ".", "' + b"k" * 100_000 + b'": 1}',
    "wrong_type": b'{"space": "space.yaml", "out": ".", "samples": "many"}',
    "infinite": b'{"space": "space.yaml", "out": ".", "samples": 1e400}',
    "text": b"just some text\n",
    "torn_only": b'{"op_code": 0, "worker',
}
RESUME_CASES = [
    *[
        ("sweep.json", kind)
        for kind in ("binary", "latin1", "utf16", "empty", "directory", "huge_value")
        + ("huge_key", "wrong_type", "infinite", "unreadable")
    ],
    *[
        ("space.yaml", kind)
        for kind in ("binary", "latin1", "utf16", "empty", "directory", "missing")
        + ("alias_bomb", "huge_value", "deep_nesting")
    ],
    *[("trials.parquet", kind) for kind in ("binary", "empty", "directory", "text", "utf16")],
    *[("optuna.journal", kind) for kind in ("binary", "utf16", "directory", "text", "torn_only")],
    ("trials.parts", "text"),
    ("trials.parts/0000000001.parquet", "binary"),
]


@pytest.mark.parametrize("name, kind", RESUME_CASES)
def test_resume_refuses_a_bad_file_and_changes_nothing(name, kind, tmp_path, capsys):
    sweep = _sweep_dir(tmp_path / "sweep")
    target = sweep / name
    if target.exists():
        target.unlink()
    _make(target, kind, RESUME_TEXT)
    before = _snapshot(sweep)
    code, err = _run(["sweep", "--resume", str(sweep)], capsys)
    limit = 500 if kind == "huge_key" else MAX_LINE  # the line lists the keys it knows
    _assert_one_line(code, err, name.split("/")[0] if kind != "missing" else name, limit)
    assert _snapshot(sweep) == before


@pytest.mark.parametrize(
    "flag, where",
    [("--out", "file"), ("--out", "file/sub"), ("--resume", "file")],
)
def test_a_file_where_a_sweep_directory_is_expected(flag, where, tmp_path, capsys):
    (tmp_path / "file").write_text("a file")
    path = tmp_path / where
    code, err = _run(["sweep", flag, str(path)], capsys)
    assert "a file, not a" in _assert_one_line(code, err, str(path))
    assert (tmp_path / "file").read_text() == "a file"


# --------------------------------------------------------------------------------------------
# The analysis scripts and the README generator

SCRIPTS = ["report", "pareto", "mechanisms", "reproduction", "roc"]


def _analysis(script: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    import importlib

    from raymia.analysis.common import run_main

    module = importlib.import_module(f"raymia.analysis.{script}")
    extra = ["--trials", "t0"] if script == "roc" else []
    code = run_main(module.main, argv + extra)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("kind", ["binary", "directory", "empty"])
@pytest.mark.parametrize("script", SCRIPTS)
def test_analysis_refuses_a_bad_trials_file_in_one_line(script, kind, tmp_path, capsys):
    sweep = _sweep_dir(tmp_path / "sweep")
    (sweep / "trials.parquet").unlink()
    _make(sweep / "trials.parquet", kind)
    code, err = _analysis(script, [str(sweep)], capsys)
    _assert_one_line(code, err, "trials.parquet")


@pytest.mark.parametrize("script", SCRIPTS)
def test_analysis_refuses_a_file_for_a_sweep_directory(script, tmp_path, capsys):
    path = tmp_path / "file"
    path.write_bytes(BAD_TEXT["binary"] or b"")
    code, err = _analysis(script, [str(path)], capsys)
    _assert_one_line(code, err, str(path))


@pytest.mark.parametrize("kind", ["binary", "latin1", "directory", "missing"])
def test_readme_generator_refuses_a_bad_file_in_one_line(kind, tmp_path, capsys):
    from raymia.readme import main as readme_main

    path = _make(tmp_path / "README.md", kind)
    code = readme_main(["--check", "--file", str(path)])
    _assert_one_line(code, capsys.readouterr().err, str(path))


def test_quote_is_bounded_in_length_and_time():
    from raymia.errors import quote

    nested: list = []
    inner = nested
    for _ in range(5000):
        inner.append([])
        inner = inner[0]
    started = time.perf_counter()
    for value in ("x" * HUGE, nested, {"k" * HUGE: list(range(HUGE))}, b"\x00" * HUGE):
        assert len(quote(value)) <= 80
    assert time.perf_counter() - started < 1


# --------------------------------------------------------------------------------------------
# From a console: no traceback


@pytest.mark.parametrize(
    "command, kind",
    [
        ([sys.executable, "-m", "raymia.cli", "trial", "--config"], "alias_bomb"),
        ([sys.executable, "-m", "raymia.readme", "--check", "--file"], "binary"),
    ],
    ids=["trial_config_alias_bomb", "readme_binary"],
)
def test_a_console_user_sees_one_line_and_no_traceback(command, kind, tmp_path):
    path = _make(tmp_path / "input", kind)
    proc = subprocess.run(
        [*command, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    _assert_one_line(proc.returncode, proc.stderr, str(path))
    assert proc.stdout == ""
