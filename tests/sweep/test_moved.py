"""A sweep directory written before raymia's layers became packages still resumes: Tune's
state names modules by their old paths (`raymia.sweep.moved`).

`tests/fixtures/sweep_before_packages/` is a sweep stopped after its first of three trials by
the code before the move (SIGTERM, as `test_faults` stops one)."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from raymia.sweep.moved import MOVED

BEFORE = Path(__file__).resolve().parents[1] / "fixtures" / "sweep_before_packages"

#: Loads the Tune state of a sweep directory (argv[1]) as `Tuner.restore` does, after
#: `alias_old_paths` when argv[2] is "aliased"; prints what it found.
PROBE = """
import pickle, sys
from pathlib import Path

tune = Path(sys.argv[1]) / "tune"
if sys.argv[2] == "aliased":
    from raymia.sweep.moved import alias_old_paths

    alias_old_paths()
try:
    for path in [tune / "tuner.pkl", *sorted(tune.glob("searcher-state-*.pkl"))]:
        with path.open("rb") as f:
            pickle.load(f)
except (ModuleNotFoundError, AttributeError) as err:
    print("failed:", type(err).__name__, err)
else:
    print("loaded")
"""


def _probe(aliased: bool) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(BEFORE), "aliased" if aliased else "plain"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_the_old_tune_state_names_modules_that_moved():
    # without the old paths, the state of a sweep written before the move cannot be read
    assert _probe(aliased=False).startswith("failed: ModuleNotFoundError No module named 'raymia.")


def test_the_old_tune_state_loads_once_the_old_paths_lead_to_the_new_modules():
    assert _probe(aliased=True) == "loaded"


def test_every_old_path_leads_to_its_new_module_and_no_old_module_is_left():
    package = Path(importlib.import_module("raymia").__file__).parent
    probe = (
        "import importlib, json, sys\n"
        "from raymia.sweep.moved import MOVED, alias_old_paths\n"
        "alias_old_paths()\n"
        "alias_old_paths()  # twice changes nothing\n"
        "out = {}\n"
        "for old, new in MOVED.items():\n"
        "    module, target = importlib.import_module(old), importlib.import_module(new)\n"
        "    names = [n for n in vars(target) if not n.startswith('_')]\n"
        "    out[old] = all(getattr(module, n) is getattr(target, n) for n in names)\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    assert json.loads(proc.stdout.splitlines()[-1]) == dict.fromkeys(MOVED, True)
    for old, new in MOVED.items():
        assert not (package.parent / (old.replace(".", "/") + ".py")).exists(), old
        assert (package.parent / (new.replace(".", "/") + ".py")).exists(), new


@pytest.mark.slow
def test_a_sweep_stopped_before_the_move_resumes_to_its_end(tmp_path):
    out = tmp_path / "before"
    shutil.copytree(BEFORE, out)
    before = pd.read_parquet(out / "trials.parquet")
    assert len(before) == 1
    done = subprocess.run(
        [sys.executable, "-m", "raymia.cli", "sweep", "--resume", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    from raymia.results.rows import load_results

    after = load_results(out)
    assert len(after) == 3 and after["trial_id"].is_unique
    assert (after["status"] == "ok").all(), after[["status", "error"]]
    kept = after.set_index("trial_id").loc[before["trial_id"], "finished_at"]
    assert list(kept) == list(before["finished_at"])  # the finished trial was not run again
