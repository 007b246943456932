"""The module paths raymia's code had before its layers became packages, for old sweeps.

Tune's state in a sweep directory (``tune/tuner.pkl``, the searcher's state) pickles some of
raymia's classes and functions by their module path (``raymia.space.SearchSpace``,
``raymia.storage.after_row``, ``raymia.results.TrialsAppender``), and its recorder callback by
value, with the modules it read. A sweep written before the move resumes when those paths
lead to the new modules: :func:`alias_old_paths` makes each old path import its new module,
and an old path that is now a package (``raymia.results``) hand on the names of the module
that took its place. `raymia.sweep.run` calls it before Tune restores a sweep.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

#: Each module path before the layers became packages, and the module that holds it now.
MOVED = {
    "raymia.data": "raymia.data.datasets",
    "raymia.file_data": "raymia.data.files",
    "raymia.batches": "raymia.data.batches",
    "raymia.models": "raymia.models.networks",
    "raymia.architectures": "raymia.models.architectures",
    "raymia.ensemble": "raymia.models.ensemble",
    "raymia.outputs": "raymia.privacy.logits",
    "raymia.metrics": "raymia.privacy.metrics",
    "raymia.leakage": "raymia.privacy.leakage",
    "raymia.privacy_audit": "raymia.privacy.empirical_epsilon",
    "raymia.one_run_audit": "raymia.privacy.one_run_audit",
    "raymia.dtc": "raymia.privacy.dtc",
    "raymia.canaries": "raymia.privacy.canaries",
    "raymia.config": "raymia.trial.config",
    "raymia.train": "raymia.trial.train",
    "raymia.attacks.reference": "raymia.trial.reference_models",
    "raymia.measure": "raymia.trial.measure",
    "raymia.trial": "raymia.trial.runner",
    "raymia.audit": "raymia.trial.audit",
    "raymia.results": "raymia.results.rows",
    "raymia.pareto": "raymia.results.front",
    "raymia.labels": "raymia.results.labels",
    "raymia.tables": "raymia.results.tables",
    "raymia.importance": "raymia.results.importance",
    "raymia.space": "raymia.sweep.space",
    "raymia.sweep_cli": "raymia.sweep.command",
    "raymia.storage": "raymia.sweep.storage",
    "raymia.cluster_config": "raymia.sweep.cluster_config",
    "raymia.analysis.mechanisms": "raymia.analysis.configurations",
}


def alias_old_paths() -> None:
    """Make every old module path of `MOVED` import its new module (in this process): an old
    path that is no module now becomes a name for the new one; one that is a package now
    (``raymia.data``, ``raymia.models``, ``raymia.trial``, ``raymia.results``) keeps its own
    names and hands on those it lacks to its old module's new home. Returns nothing; calling
    it again changes nothing."""
    for old, new in MOVED.items():
        module = importlib.import_module(new)
        try:
            now = importlib.import_module(old)
        except ModuleNotFoundError:
            sys.modules[old] = module
            parent, _, name = old.rpartition(".")
            setattr(sys.modules[parent], name, module)
            continue
        if now is not module and "__getattr__" not in vars(now):
            now.__getattr__ = _hand_on(now, module)  # type: ignore[attr-defined]


def _hand_on(package: ModuleType, module: ModuleType) -> Any:
    """Return a module-level ``__getattr__`` for `package` that finds a missing name in
    `module` (PEP 562), and raises AttributeError where neither has it."""

    def __getattr__(name: str) -> Any:
        try:
            return getattr(module, name)
        except AttributeError:
            raise AttributeError(f"module {package.__name__!r} has no attribute {name!r}") from None

    return __getattr__
