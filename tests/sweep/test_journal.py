"""The Optuna side of a sweep: no trial stays RUNNING, a torn journal line is repaired."""

from __future__ import annotations

import math

import pytest

from raymia.errors import ConfigError
from raymia.sweep.journal import JOURNAL_FILE, STUDY_NAME, check_journal, finite_optuna_search


def _storage(path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def _states(path) -> list[str]:
    import optuna

    study = optuna.load_study(study_name=STUDY_NAME, storage=_storage(path))
    return [t.state.name for t in study.trials]


@pytest.mark.parametrize(
    "result, state",
    [
        ({"acc": math.nan, "adv": 0.1}, "FAIL"),
        ({"acc": 0.9, "adv": math.inf}, "FAIL"),
        ({"acc": 0.9}, "FAIL"),  # an objective missing
        (None, "FAIL"),
        ({"acc": 0.9, "adv": 0.1}, "COMPLETE"),
    ],
    ids=["nan", "inf", "missing", "no-result", "finite"],
)
def test_a_bad_objective_is_told_to_optuna_as_fail_never_left_running(tmp_path, result, state):
    import optuna
    from ray import tune

    journal = tmp_path / JOURNAL_FILE
    searcher = finite_optuna_search(
        space={"x": tune.uniform(0.0, 1.0)},
        metric=["acc", "adv"],
        mode=["max", "min"],
        sampler=optuna.samplers.TPESampler(seed=0),
        study_name=STUDY_NAME,
        storage=_storage(journal),
    )
    assert searcher.suggest("t1") is not None
    searcher.on_trial_complete("t1", result=result)
    assert _states(journal) == [state]


def _journal_with_two_trials(tmp_path):
    import optuna

    journal = tmp_path / JOURNAL_FILE
    study = optuna.create_study(
        study_name=STUDY_NAME, storage=_storage(journal), directions=["maximize", "minimize"]
    )
    for _ in range(2):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, [0.5, 0.5])
    return journal


def test_a_torn_last_journal_line_is_cut_off_with_a_note(tmp_path, capsys):
    journal = _journal_with_two_trials(tmp_path)
    whole = journal.read_bytes()
    capsys.readouterr()  # drop Optuna's message about creating the study
    journal.write_bytes(whole + b'{"op_code": 4, "worker_id": "a", "trial_id": 1, "sta')
    check_journal(tmp_path, finished_rows=2)
    assert journal.read_bytes() == whole
    err = capsys.readouterr().err
    assert "torn last line" in err and err.count("\n") == 1
    assert _states(journal) == ["COMPLETE", "COMPLETE"]


def test_a_whole_journal_is_left_alone_and_real_damage_is_refused(tmp_path, capsys):
    journal = _journal_with_two_trials(tmp_path)
    whole = journal.read_bytes()
    capsys.readouterr()  # drop Optuna's message about creating the study
    check_journal(tmp_path, finished_rows=2)
    assert journal.read_bytes() == whole and capsys.readouterr().err == ""
    # a bad line that ends in a newline is not a torn write: refused, not repaired
    lines = whole.splitlines(keepends=True)
    journal.write_bytes(lines[0] + b"{not json\n" + b"".join(lines[1:]))
    with pytest.raises(ConfigError, match="line 2 is not a JSON record"):
        check_journal(tmp_path, finished_rows=2)
