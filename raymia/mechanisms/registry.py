"""The mechanism registry: every mechanism raymia knows, in the order of the result columns
(docs/ARCHITECTURE.md, "Registries").

The source of truth for the mechanisms: the pydantic `Mechanisms` model
(`raymia.trial.config.mechanisms_model`), the search-space parser, DP-SGD's combination rule, the
result columns and the analysis labels all read it. Mechanisms are ordered by level (input,
output, model, optimizer, training), then by registration (a module's classes in the order
they are written, the modules in alphabetical order).
"""

from __future__ import annotations

from typing import TypeVar

from raymia.mechanisms.base import Mechanism, Setting, hook_problem
from raymia.registry import Registry

__all__ = [
    "LEVELS",
    "REGISTRY",
    "dp_sgd_precedence",
    "register",
    "riders",
    "settings",
    "unregister",
]

#: Where a mechanism acts, in the order the registry lists them.
LEVELS = ("input", "output", "model", "optimizer", "training")

REGISTRY: Registry[type[Mechanism]] = Registry("mechanism", lambda cls: LEVELS.index(cls.level))

M = TypeVar("M", bound=type[Mechanism])


def register(cls: M) -> M:
    """Register a mechanism class (a class decorator); return it unchanged.

    Raises ValueError when its declarations are incomplete or its name (or a rider's) is taken.
    """
    for attribute in ("name", "level", "setting", "hooks"):
        if not hasattr(cls, attribute):
            raise ValueError(f"mechanism {cls.__name__} declares no {attribute!r}")
    if cls.level not in LEVELS:
        raise ValueError(f"mechanism {cls.name!r}: level {cls.level!r} is not one of {LEVELS}")
    if problem := hook_problem(cls):
        raise ValueError(f"mechanism {cls.name!r}: {problem}")
    taken = set(settings())
    for name in (cls.name, *cls.riders):
        if name in taken:
            raise ValueError(f"mechanism {cls.name!r}: setting {name!r} is taken")
    REGISTRY.add(cls.name, cls)
    return cls


def unregister(name: str) -> type[Mechanism]:
    """Remove a registered mechanism (a test's toy one); return its class."""
    return REGISTRY.remove(name)


def settings() -> dict[str, Setting]:
    """Return every mechanism config field in order: each strength, then its riders."""
    out: dict[str, Setting] = {}
    for name, cls in REGISTRY.items():
        out[name] = cls.setting
        out.update(cls.riders)
    return out


def riders() -> dict[str, str]:
    """Return each rider setting (``dp_clip``, ``dp_delta``) with the mechanism it rides with."""
    return {rider: name for name, cls in REGISTRY.items() for rider in cls.riders}


def dp_sgd_precedence(strengths: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """Return `strengths` with every mechanism that cannot combine with DP-SGD switched off
    where DP-SGD is on, and the names switched off (a sweep searching both samples them
    together; DP-SGD takes precedence)."""
    dp_on = any(strengths.get(name) for name, cls in REGISTRY.items() if cls.dp_sgd)
    out, switched_off = dict(strengths), []
    if dp_on:
        for name, cls in REGISTRY.items():
            if cls.dp_clash and out.get(name):
                out[name] = 0
                switched_off.append(name)
    return out, switched_off
