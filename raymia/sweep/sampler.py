"""Optuna's NSGA-II sampler at a cost per trial that does not grow with the study.

Optuna's `NSGAIISampler` looks at every finished trial of the study for each new one: which
generation the new trial joins (a count over all finished trials) and who its parents are (a
filter over all trials). Over a long sweep that is the driver's largest cost that grows with
the number of trials. `IncrementalNSGAIISampler` draws the same samples for the same seed: it
keeps the count of finished trials per generation and each generation's parents in memory,
reads them from the study once per process, and updates the counts as trials are told.
The journal holds the same generation and parent records as Optuna's own sampler writes, so a
study begun with either sampler continues with the other.

This module imports Optuna; import it only where a sweep builds its searcher.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from optuna.samplers import NSGAIISampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

__all__ = ["IncrementalNSGAIISampler"]


class IncrementalNSGAIISampler(NSGAIISampler):
    """`optuna.samplers.NSGAIISampler` (same arguments, same samples) whose work per trial
    does not grow with the number of trials in the study.

    The in-memory counts are built from the study on first use in a process (a pickled
    sampler, as Ray Tune saves it, starts without them) and kept current by `after_trial`,
    through which every trial told to the study passes. One sampler serves one study.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clear_caches()

    def _clear_caches(self) -> None:
        self._study_id: int | None = None
        # COMPLETE trials per generation (-1: trials without one)
        self._complete: Counter[int] | None = None
        # each generation's parents, in study order (as Optuna returns them once cached)
        self._parents: dict[int, list[FrozenTrial]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_study_id=None, _complete=None, _parents={})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._clear_caches()

    def _counts(self, study: Study) -> Counter[int]:
        """Return the COMPLETE trials per generation, read from `study` on first use."""
        if self._complete is None or self._study_id != study._study_id:
            self._clear_caches()
            key = self._get_generation_key()
            trials = study._get_trials(deepcopy=False, states=[TrialState.COMPLETE])
            self._complete = Counter(t.system_attrs.get(key, -1) for t in trials)
            self._study_id = study._study_id
        return self._complete

    def get_trial_generation(self, study: Study, trial: FrozenTrial) -> int:
        """Return the generation of `trial`, as Optuna's sampler decides and records it."""
        key = self._get_generation_key()
        generation = trial.system_attrs.get(key, None)
        if generation is not None:
            return generation
        counts = self._counts(study)
        # the newest generation with a COMPLETE trial (0 when none) and how full it is
        newest = max((g for g, n in counts.items() if n > 0 and g >= 0), default=0)
        assert self._population_size is not None, "Population size must be set."
        generation = newest if counts.get(newest, 0) < self._population_size else newest + 1
        study._storage.set_trial_system_attr(trial._trial_id, key, generation)
        return generation

    def get_parent_population(self, study: Study, generation: int) -> list[FrozenTrial]:
        """Return the parents of `generation`, as Optuna's sampler selects and records them."""
        if generation == 0:
            return []
        self._counts(study)  # the caches belong to this study
        if generation in self._parents:
            return list(self._parents[generation])
        parents = super().get_parent_population(study, generation)
        # Optuna returns a generation's recorded parents in study order from then on
        self._parents[generation] = sorted(parents, key=lambda t: t.number)
        return parents

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        """Tell Optuna's sampler, and count a COMPLETE trial in its generation."""
        super().after_trial(study, trial, state, values)
        if state == TrialState.COMPLETE and self._complete is not None:
            if self._study_id == study._study_id:
                self._complete[trial.system_attrs.get(self._get_generation_key(), -1)] += 1


# the records Optuna's own sampler writes (a subclass would otherwise get keys of its own name)
IncrementalNSGAIISampler._GENERATION_KEY = NSGAIISampler._GENERATION_KEY
IncrementalNSGAIISampler._PARENT_CACHE_KEY_PREFIX = NSGAIISampler._PARENT_CACHE_KEY_PREFIX
