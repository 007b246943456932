"""The sweep's NSGA-II sampler: Optuna's samples across a resume, at a cost per trial that does
not grow."""

from __future__ import annotations

import pickle

import optuna
from optuna.distributions import FloatDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from raymia.sweep.sampler import PicklableNSGAIISampler

SPACE = {"a": FloatDistribution(0.0, 1.0), "b": FloatDistribution(0.0, 0.5)}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sweep(study: optuna.Study, start: int, stop: int, running: list) -> None:
    """Ask and tell as a sweep of 2 concurrent trials does: completions out of order, some
    trials failed."""
    for i in range(start, stop):
        running.append(study.ask(SPACE))
        if len(running) < 2:
            continue
        trial = running.pop(-1 if i % 3 == 0 else 0)
        if i % 17 == 5:
            study.tell(trial, state=TrialState.FAIL)
        else:
            a, b = trial.params["a"], trial.params["b"]
            study.tell(trial, [a * (1 - b), a + b])


def _history(study: optuna.Study) -> list[tuple]:
    return [(t.params, t.state, t.values, t.system_attrs) for t in study.trials]


def test_the_sampler_draws_what_optunas_nsga2_draws_across_a_resume(tmp_path):
    def study(sampler, path):
        return optuna.create_study(
            study_name="s",
            directions=["maximize", "minimize"],
            sampler=sampler,
            storage=JournalStorage(JournalFileBackend(str(path))),
            load_if_exists=True,
        )

    reference = study(optuna.samplers.NSGAIISampler(seed=3, population_size=8), tmp_path / "a")
    running: list = []
    _sweep(reference, 0, 160, running)

    ours = PicklableNSGAIISampler(seed=3, population_size=8)
    first = study(ours, tmp_path / "b")
    running_b: list = []
    _sweep(first, 0, 80, running_b)
    # a resume: Ray Tune restores the pickled sampler and Optuna reopens the journal
    resumed = study(pickle.loads(pickle.dumps(ours)), tmp_path / "b")
    running_b = [optuna.Trial(resumed, t._trial_id) for t in running_b]
    _sweep(resumed, 80, 160, running_b)

    assert _history(resumed) == _history(reference)
    generations = {t.system_attrs["NSGAIISampler:generation"] for t in resumed.trials}
    assert len(generations) > 10  # many generations, parents chosen from each


def _system_attrs_reads(monkeypatch) -> list[int]:
    reads = [0]
    prop = FrozenTrial.system_attrs

    def counted(self):
        reads[0] += 1
        return prop.fget(self)

    monkeypatch.setattr(FrozenTrial, "system_attrs", property(counted, prop.fset))
    return reads


def test_the_sweeps_nsga2_does_not_read_every_trial_for_each_new_one(monkeypatch):
    from raymia.sweep.run import make_sampler

    nsga2 = make_sampler("optuna", "nsga2", samples=2000, seed=0)  # a population of 50
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=nsga2)
    reads = _system_attrs_reads(monkeypatch)
    running: list = []
    _sweep(study, 0, 1900, running)
    before = reads[0]
    _sweep(study, 1900, 2000, running)
    per_trial = (reads[0] - before) / 100
    # Optuna before 5.1 read every finished trial for each new one (about 1,900 here); what is
    # left is one pass over a generation's candidates per generation (50 trials)
    assert per_trial < 100, per_trial
