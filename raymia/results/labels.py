"""Configuration labels: which mechanisms a trial switches on, as text.

One trial is a result row (a dict or a pandas row) holding every registered mechanism's
strength; the labels read the mechanism registry, so a mechanism registered at runtime is
labelled like the built-in ones. Shared by the sweep's summary table and the analysis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from raymia.mechanisms import REGISTRY

__all__ = [
    "NONE_LABEL",
    "active_mechanisms",
    "add_labels",
    "config_key",
    "config_label",
    "fmt_strength",
    "is_on",
    "mechanisms_label",
]

#: Label of a trial with every mechanism off.
NONE_LABEL = "none"


def is_on(value: Any) -> bool:
    """True for a strength that switches its mechanism on: a number other than 0 or NaN."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return not math.isnan(number) and number != 0


def active_mechanisms(row: Mapping[str, Any]) -> dict[str, float]:
    """Return the mechanisms a trial row switches on, name -> strength, in registry order."""
    return {name: float(row[name]) for name in REGISTRY if name in row and is_on(row[name])}


def _labelled_riders(row: Mapping[str, Any], name: str) -> dict[str, float]:
    """Return the riders of mechanism `name` that are part of its configuration (dp_clip)."""
    riders = REGISTRY[name].riders
    return {
        rider: float(row[rider])
        for rider, setting in riders.items()
        if setting.in_label and rider in row and is_on(row[rider])
    }


def fmt_strength(value: float) -> str:
    """Return a strength compactly: ``2`` for whole numbers, else 3 significant digits."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def mechanisms_label(row: Mapping[str, Any]) -> str:
    """Return which mechanisms a trial switches on, e.g. ``label_smoothing+dropout``, or
    ``none`` when every mechanism is off."""
    return "+".join(active_mechanisms(row)) or NONE_LABEL


def config_label(row: Mapping[str, Any]) -> str:
    """Return a trial's mechanisms with strengths, e.g. ``label_smoothing=0.1, dropout=0.3``,
    or ``none`` when every mechanism is off; a mechanism's labelled riders follow it in
    parentheses, ``dp_noise=1 (dp_clip=1)``."""
    parts = []
    for name, strength in active_mechanisms(row).items():
        part = f"{name}={fmt_strength(strength)}"
        if riders := _labelled_riders(row, name):
            part += " (" + ", ".join(f"{r}={fmt_strength(v)}" for r, v in riders.items()) + ")"
        parts.append(part)
    return ", ".join(parts) or NONE_LABEL


def config_key(row: Mapping[str, Any]) -> tuple[tuple[str, float], ...]:
    """Return a hashable key for a trial's configuration: (setting, strength) pairs of the
    mechanisms on and their labelled riders, to 6 significant digits (equal grid strengths
    group together, float noise does not split them)."""
    pairs: list[tuple[str, float]] = []
    for name, strength in active_mechanisms(row).items():
        pairs.append((name, strength))
        pairs += _labelled_riders(row, name).items()
    return tuple((name, float(f"{value:.6g}")) for name, value in pairs)


def add_labels(df: Any) -> Any:
    """Return a copy of the trials DataFrame `df` with ``mechanisms_on`` (`mechanisms_label`)
    and ``config`` (`config_label`) columns."""
    out = df.copy()
    records = out.to_dict("records")
    out["mechanisms_on"] = [mechanisms_label(r) for r in records]
    out["config"] = [config_label(r) for r in records]
    return out
