"""Optuna's NSGA-II sampler, picklable: Ray Tune saves the searcher, sampler included, to
resume a sweep.

Optuna 5.1's `NSGAIISampler` keeps its own per-process cache of each generation's trials
(its cost per trial no longer grows with the study: about 56 reads of trial records per new
trial at 2,000 trials, tests/sweep/test_sampler.py), but holds a `threading.Lock` around that cache,
which cannot be pickled. `PicklableNSGAIISampler` is Optuna's sampler with that lock made
anew on unpickling; it draws what Optuna's own draws, writes the same generation and parent
records to the journal (a study begun with either continues with the other), and a sampler
restored from its pickle continues the draws of the uninterrupted one.

This module imports Optuna; import it only where a sweep builds its searcher.
"""

from __future__ import annotations

import threading
from typing import Any

from optuna.samplers import NSGAIISampler

__all__ = ["PicklableNSGAIISampler"]


class PicklableNSGAIISampler(NSGAIISampler):
    """`optuna.samplers.NSGAIISampler` (same arguments, same samples, same journal records)
    that pickles: its cache lock is left out of the pickle and made anew when loaded."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


# the records Optuna's own sampler writes (a subclass would otherwise get keys of its own name)
PicklableNSGAIISampler._GENERATION_KEY = NSGAIISampler._GENERATION_KEY
PicklableNSGAIISampler._PARENT_CACHE_KEY_PREFIX = NSGAIISampler._PARENT_CACHE_KEY_PREFIX
