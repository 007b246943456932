"""The tiny search space the sweep-level tests share (a few seconds per trial)."""

from __future__ import annotations


def tiny_space(epochs: int = 3, dropout: tuple[float, ...] = (0.0, 0.1, 0.2)) -> str:
    """Return a YAML search space: digits, small splits, pared-down measurement, 4 samples."""
    return f"""
trial:
  epochs: {epochs}
  members: 150
  non_members: 150
  reference: 200
  attacks: {{merlin_neighbours: 5, n_bootstrap: 20, n_permutations: 20, shadow_calibration: false}}
  dtc: {{max_samples: 40, bisection_steps: 3, pgd_steps: 4}}
sweep: {{samples: 4}}
mechanisms:
  label_smoothing: {{uniform: [0.0, 0.3]}}
  dropout: {{choice: {list(dropout)}}}
"""
