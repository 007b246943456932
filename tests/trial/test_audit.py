"""Auditing a trained model (raymia.trial.audit): a saved target measured again gives the trial's
privacy columns; a model trained elsewhere is audited from its weights and member list, its
reference models' recipe marked as the user's claim; bad input is one line, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raymia.cli import main
from raymia.errors import DataError
from raymia.trial.audit import (
    CLAIMED_RECIPE,
    MEMBERS_FILE,
    audit_external,
    audit_saved,
    read_members,
)
from raymia.trial.config import parse_trial_config
from raymia.trial.runner import run_trial

SETTINGS = {
    "epochs": 2,
    "mechanisms": {"label_smoothing": 0.1},
    "dtc": {"max_samples": 40, "bisection_steps": 3, "pgd_steps": 3},
    "attacks": {"n_bootstrap": 20, "n_permutations": 20, "canaries": 20},
}
#: Columns of the training run itself, or of the clock: not re-measured by an audit.
NOT_MEASURED = {
    "train_seconds",
    "measure_seconds",
    "reference_seconds",
    "dp_epsilon",
    "epochs_run",
    "scores",
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trial with canaries and its saved target: (row, directory)."""
    out = tmp_path_factory.mktemp("saved") / "model"
    row = run_trial(SETTINGS, save_model=out)
    return row, out


def test_a_saved_target_audited_again_gives_the_trials_privacy_columns(saved):
    row, out = saved
    again = audit_saved(out)
    assert again["audit"] == "saved" and again["epochs_run"] is None
    compared = [k for k in row if k not in NOT_MEASURED]
    assert len(compared) > 80  # every privacy column, the canaries' and DtC's included
    differ = {k: (row[k], again[k]) for k in compared if row[k] != again[k]}
    assert not differ
    assert np.array_equal(row["scores"]["score_loss"], again["scores"]["score_loss"])


def test_a_model_trained_elsewhere_is_audited_from_its_weights_and_members(saved, tmp_path):
    row, out = saved
    members = json.loads((out / MEMBERS_FILE).read_text())["members"][:-10]  # no canaries
    listed = tmp_path / "members.txt"
    listed.write_text("\n".join(map(str, members)) + "\n")
    config = parse_trial_config({**SETTINGS, "attacks": {"n_bootstrap": 20, "n_permutations": 20}})
    audited = audit_external(out / "model.pt", listed, config)
    assert audited["audit"] == "external" and audited["reference_recipe"] == CLAIMED_RECIPE
    assert audited["members_trained"] == audited["members"] == len(members) == 350
    assert audited["eval_members"] > 300  # as many non-members as members, class by class
    # the members it names are the ones it trained on: its train accuracy is the trial's
    assert audited["train_acc"] == row["train_acc"]
    assert audited["canary_members"] is None


def test_members_of_a_file_data_set_are_named_by_its_own_index(tmp_path):
    from raymia.data.datasets import load_pool
    from raymia.data.files import pool_rows

    x = np.repeat(np.arange(100, dtype=np.uint8), 64).reshape(100, 8, 8)  # image i is all i
    path = tmp_path / "own.npz"
    np.savez(path, x=x, y=np.arange(100) % 4)  # no test split: raymia cuts a fixed fifth
    pool = load_pool(str(path))
    mapped = {}
    for index in range(100):
        try:
            mapped[index] = int(pool_rows(str(path), [index])[0])
        except DataError as err:  # in the test fifth: one line, saying so
            assert "lies in the test split raymia cut" in str(err) and "\n" not in str(err)
    assert len(mapped) == 80 and sorted(mapped.values()) == list(range(80))
    values = [float(pool.train_x[row, 0, 0, 0]) for _, row in sorted(mapped.items())]
    assert values == sorted(values)  # the row of x[i] holds image i
    with pytest.raises(DataError, match="member 100 is not an image index 0..99"):
        pool_rows(str(path), [100])


def test_members_files_are_read_in_either_form_and_refused_in_one_line(tmp_path):
    listed = tmp_path / "m.json"
    listed.write_text(json.dumps({"members": [3, 1, 2]}))
    assert read_members(listed) == [3, 1, 2]
    listed.write_text("a/1.png\nb/2.png\n")
    assert read_members(listed) == ["a/1.png", "b/2.png"]
    for text, expected in [
        ("[]", "non-empty list"),
        ("[1, 1]", "lists a member twice"),
        ("[1, true]", "expected an index or a name"),
        ("[1, ", "not valid JSON"),
    ]:
        listed.write_text(text)
        with pytest.raises(DataError, match=expected) as err:
            read_members(listed)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["audit"], "give DIR, or both --weights FILE and --members FILE"),
        (["audit", "DIR", "--weights", "w.pt"], "not both"),
        (["audit", "nowhere"], "no model.pt"),
        (["audit", "DIR", "--set", "epochs=2"], "the settings come from DIR/config.json"),
        (
            ["audit", "--weights", "w.pt", "--members", "m.txt", "--set", "arch=resnet18"],
            "does not fit",
        ),
        (["audit", "--weights", "w.pt", "--members", "far.txt"], "expected a row of digits"),
    ],
)
def test_bad_audits_are_one_line_and_exit_2(saved, tmp_path, monkeypatch, capsys, argv, expected):
    _, out = saved
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.pt").write_bytes((out / "model.pt").read_bytes())
    (tmp_path / "m.txt").write_text("0\n1\n2\n")
    (tmp_path / "far.txt").write_text("0\n99999\n")
    argv = [str(out) if a == "DIR" else a for a in argv]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1 and "Traceback" not in err


def test_members_of_an_image_folder_are_named_by_their_paths(tmp_path):
    from PIL import Image

    from raymia.data.files import pool_rows

    for split, count in (("train", 12), ("test", 4)):
        for i in range(count):
            folder = tmp_path / "images" / split / f"c{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("L", (8, 8), color=i).save(folder / f"{i:02d}.png")
    root = str(tmp_path / "images")
    # sorted listing: c0/00, c0/02, ..., c1/01, ...; with a test folder the pool keeps it
    assert pool_rows(root, ["c0/00.png", "c1/01.png", "c0/02.png"]).tolist() == [0, 6, 1]
    assert pool_rows(root, [6, "c0/00.png"]).tolist() == [6, 0]
    with pytest.raises(DataError, match="no image 'c2/99.png' among its 12 images"):
        pool_rows(root, ["c2/99.png"])


def test_a_saved_model_of_a_file_data_set_refuses_a_changed_file(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((200, 8, 8)).astype(np.float32), np.arange(200) % 4
    data = tmp_path / "own.npz"
    np.savez(data, x=x, y=y)
    quick = {"dataset": str(data), "epochs": 1, "dtc": {"enabled": False}}
    run_trial(
        {**quick, "attacks": {"n_bootstrap": 0, "n_permutations": 0}}, save_model=tmp_path / "m"
    )
    x[0, 0, 0] += 1.0  # the same images but one pixel, the same count
    np.savez(data, x=x, y=y)
    with pytest.raises(DataError, match="the data set has changed"):
        audit_saved(tmp_path / "m")
