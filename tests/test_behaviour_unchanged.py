"""The same configurations give the same rows: fixed trials against their stored records."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from reference_rows import CONFIGS, STORED, run

REL = 1e-9


def _same(stored: Any, fresh: Any) -> bool:
    """Floats to REL relative (1e-12 absolute near 0); everything else exactly."""
    if isinstance(stored, float) and isinstance(fresh, int | float) and not isinstance(fresh, bool):
        return math.isclose(stored, fresh, rel_tol=REL, abs_tol=1e-12)
    if isinstance(stored, list) and isinstance(fresh, list) and len(stored) == len(fresh):
        return all(_same(a, b) for a, b in zip(stored, fresh, strict=True))
    if isinstance(stored, dict) and isinstance(fresh, dict) and stored.keys() == fresh.keys():
        return all(_same(stored[k], fresh[k]) for k in stored)
    return type(stored) is type(fresh) and stored == fresh


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fixed_trial_gives_the_stored_row(name):
    stored = json.loads(STORED.read_text())[name]
    fresh = json.loads(json.dumps(run(name)))  # the same JSON round trip as the stored one
    assert list(fresh["columns"]) == list(stored["columns"]), "columns or their order changed"
    changed = {
        column: (value, fresh["columns"][column])
        for column, value in stored["columns"].items()
        if not _same(value, fresh["columns"][column])
    }
    assert not changed, f"columns changed (stored, now): {changed}"
    assert list(fresh["scores"]) == list(stored["scores"])
    changed = {
        key: (value, fresh["scores"][key])
        for key, value in stored["scores"].items()
        if not _same(value, fresh["scores"][key])
    }
    assert not changed, f"per-sample scores changed (stored, now): {changed}"


def test_the_comparison_catches_a_changed_value():
    """Guard against a comparison that cannot fail."""
    assert _same({"a": 1.0, "b": [1, "x"]}, {"a": 1.0 + 1e-12, "b": [1, "x"]})
    assert not _same({"a": 1.0}, {"a": 1.0 + 1e-6})
    assert not _same({"a": 1}, {"a": 2})
    assert not _same({"a": None}, {"a": 0.0})
    assert not _same({"a": "prv"}, {"a": "rdp"})
    assert not _same({"a": 1.0}, {"b": 1.0})
