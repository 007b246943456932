"""A local Ray for the tests that start one: its own temp dir, no dashboard, shut down after.

Only what the test started is shut down (`ray.shutdown()`), never other Rays on the machine.
The helper is the benchmarks' (`benchmarks/common.py`), loaded from its file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_path = Path(__file__).resolve().parents[2] / "benchmarks" / "common.py"
_spec = importlib.util.spec_from_file_location("benchmark_common", _path)
assert _spec is not None and _spec.loader is not None
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

local_ray = _common.local_ray

__all__ = ["local_ray"]
