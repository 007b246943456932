"""Whether a trial's measured leakage stands out from what chance alone reaches.

Every leakage objective carries its permutation null (the 95th percentile of the same statistic
on label-shuffled data): ``adv`` (the largest advantage over the attacks) with
``adv_null_q95``, the null of that maximum, and ``dtc_adv`` with ``dtc_adv_null_q95``. A trial
whose every measured objective lies within its null shows *no detectable leakage*: at the
evaluation set's size, the attacks cannot tell its members from non-members better than they
tell two random halves apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DETECTED",
    "LEAKAGE_NULLS",
    "NOT_DETECTABLE",
    "UNKNOWN",
    "excess",
    "finite_number",
    "leakage_verdict",
]

#: Each leakage statistic and the column holding its null's 95th percentile.
LEAKAGE_NULLS: dict[str, str] = {"adv": "adv_null_q95", "dtc_adv": "dtc_adv_null_q95"}

DETECTED = "detected"
NOT_DETECTABLE = "no detectable leakage"
UNKNOWN = "no null"


def finite_number(value: Any) -> float | None:
    """Return value as a finite float, or None (missing, None, NaN, not a number)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def excess(value: float, null_q95: float | None) -> float | None:
    """Return max(0, value - null_q95): how far a statistic clears its null (None: no null)."""
    if null_q95 is None:
        return None
    return max(0.0, float(value) - float(null_q95))


def leakage_verdict(row: Mapping[str, Any]) -> str:
    """Return DETECTED, NOT_DETECTABLE or UNKNOWN for one result row.

    DETECTED when any statistic of ``LEAKAGE_NULLS`` present in the row exceeds its null's
    95th percentile; NOT_DETECTABLE when every present statistic has a null and lies within
    it; UNKNOWN otherwise (no statistic present, or one without its null and none above).
    """
    clears: list[bool | None] = []
    for column, null_column in LEAKAGE_NULLS.items():
        value = finite_number(row.get(column))
        if value is None:
            continue
        null = finite_number(row.get(null_column))
        clears.append(None if null is None else value > null)
    if any(c is True for c in clears):
        return DETECTED
    if clears and all(c is False for c in clears):
        return NOT_DETECTABLE
    return UNKNOWN
