"""The same configurations behave the same: fixed trials against their record, on any CPU.

What a trial computes splits into parts that reproduce across machines exactly (the draws,
and every number computed from stored arrays), parts that depend on float kernels only
through inference (stored weights give the stored logits, to a tolerance rounding cannot
exceed), and training, which is deterministic on one machine but rounds differently on another
(AVX-512 and AMX against AVX2 kernels): the same trial twice in one process gives the same row,
and on the machine the record was made on, the stored row. See tests/helpers/behaviour_record.py;
regenerate the record only for a deliberate change of behaviour.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers.behaviour_record import (
    CONFIGS,
    _splits,
    canary_draws,
    config,
    load,
    load_target,
    logits,
    machine,
    run,
    stable,
)
from helpers.behaviour_record import protocol as draw_protocol

from raymia.attacks import REGISTRY as ATTACKS
from raymia.attacks import scores_from_logits
from raymia.models.networks import fuse_for_inference
from raymia.privacy.dtc import DtcResult, balanced_rows, resolve_tau, summarize_dtc
from raymia.privacy.leakage import excess
from raymia.privacy.logits import true_class_margin
from raymia.trial.measure import balanced_evaluation, leakage_columns

REL = 1e-9
#: Inference of stored weights: kernels of other CPUs round the float32 logits differently,
#: by far less than this (about 1e-6 seen between AVX-512 and AVX2 kernels on one machine).
INFERENCE_RTOL = INFERENCE_ATOL = 1e-4
NAMES = list(CONFIGS)


@functools.cache
def _stored() -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    return load()


def _same(stored: Any, fresh: Any, rel: float = REL) -> bool:
    """Floats to `rel` relative (1e-12 absolute near 0); everything else exactly."""
    if isinstance(stored, float) and isinstance(fresh, int | float) and not isinstance(fresh, bool):
        return math.isclose(stored, fresh, rel_tol=rel, abs_tol=1e-12)
    if isinstance(stored, list) and isinstance(fresh, list) and len(stored) == len(fresh):
        return all(_same(a, b, rel) for a, b in zip(stored, fresh, strict=True))
    if isinstance(stored, dict) and isinstance(fresh, dict) and stored.keys() == fresh.keys():
        return all(_same(stored[k], fresh[k], rel) for k in stored)
    return type(stored) is type(fresh) and stored == fresh


def differences(stored: dict[str, Any], fresh: dict[str, Any], rel: float = REL) -> dict:
    """Return {key: (stored, fresh)} for every key of `stored` whose fresh value differs
    (fresh values through the JSON round trip the stored ones went through)."""
    fresh = json.loads(json.dumps(fresh))
    missing = object()
    return {
        key: (value, fresh.get(key, missing))
        for key, value in stored.items()
        if not _same(value, fresh.get(key, missing), rel)
    }


# ---- the checks, each returning what differs from the record ---------------------------------


def check_protocol(name: str) -> dict:
    """The trial's draws: splits, balanced evaluation rows, DtC's rows."""
    return differences(_stored()[0]["trials"][name]["protocol"], draw_protocol(name))


def _attack_scores(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {a: arrays[f"{prefix}{a}"] for a in ATTACKS if f"{prefix}{a}" in arrays}


def check_leakage(name: str) -> dict:
    """Every leakage column that is a function of the stored scores: each attack's metrics,
    intervals and null, the best attack's null, the empirical epsilon, DtC's summary."""
    meta, arrays = _stored()[0]["trials"][name], _stored()[1][name]
    c = config(name)
    scores = _attack_scores(arrays, "score/score_")
    is_member = arrays["score/is_member"]
    shadow = _attack_scores(arrays, "shadow/") or None
    per_attack, best = leakage_columns(
        scores,
        is_member,
        c,
        shadow_scores=shadow,
        shadow_is_member=arrays.get("shadow_is_member"),
    )
    fresh = {**per_attack, **best}
    # DtC from the stored distances of the measured rows (the others are NaN)
    distance, censored = arrays["score/dtc"], arrays["score/dtc_censored"]
    n = len(is_member) // 2
    measured = np.flatnonzero(~np.isnan(distance))
    member_rows, non_member_rows = measured[measured < n], measured[measured >= n]
    y = arrays["score/label"]
    expected = balanced_rows(y[:n], y[n:], min(n, c.dtc.max_samples // 2), c.seed)
    fresh["dtc_rows_are_the_balanced_rows"] = np.array_equal(
        member_rows, expected[0]
    ) and np.array_equal(non_member_rows - n, expected[1])
    fresh.update(
        summarize_dtc(
            DtcResult(distance[member_rows], censored[member_rows]),
            DtcResult(distance[non_member_rows], censored[non_member_rows]),
            n_permutations=c.attacks.n_permutations,
            seed=c.seed,
            n_boot=c.attacks.n_bootstrap,
        )
    )
    fresh["dtc_samples"] = len(member_rows) + len(non_member_rows)
    fresh["dtc_adv_excess"] = excess(fresh["dtc_adv"], fresh["dtc_adv_null_q95"])
    stored = {k: v for k, v in meta["columns"].items() if k in fresh}
    stored["dtc_rows_are_the_balanced_rows"] = True
    assert len(stored) >= 40, sorted(stored)  # the comparison covers the leakage columns
    return differences(stored, fresh)


def check_scores_from_logits(name: str) -> dict:
    """The logit-based attacks' per-sample scores from the stored logits."""
    arrays = _stored()[1][name]
    found = scores_from_logits(
        torch.from_numpy(arrays["logits"]), torch.from_numpy(arrays["score/label"]).long()
    )
    assert found, "no logit-based attack"
    out = {}
    for attack, values in found.items():
        stored = arrays[f"score/score_{attack}"]
        fresh = values.numpy()
        if not np.allclose(fresh, stored, rtol=REL, atol=1e-12, equal_nan=True):
            out[attack] = float(np.nanmax(np.abs(fresh - stored)))
    return out


def check_inference(name: str, arrays: dict[str, np.ndarray] | None = None) -> dict:
    """The stored target weights, in the trial's architecture: the stored logits and DtC's
    tau (from the reference split's margins), to the inference tolerance."""
    meta = _stored()[0]["trials"][name]
    arrays = _stored()[1][name] if arrays is None else arrays
    model = load_target(name, arrays)
    out = {}
    fresh = logits(model, name)
    if not np.allclose(fresh, arrays["logits"], rtol=INFERENCE_RTOL, atol=INFERENCE_ATOL):
        out["logits"] = float(np.max(np.abs(fresh - arrays["logits"])))
    reference = _splits(name).reference
    margin = true_class_margin(fuse_for_inference(model), reference.x, reference.y)
    tau = resolve_tau(config(name).dtc.tau, margin)
    if not math.isclose(tau, meta["columns"]["dtc_tau"], rel_tol=INFERENCE_RTOL):
        out["dtc_tau"] = (meta["columns"]["dtc_tau"], tau)
    return out


# ---- on any machine -------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_the_trial_draws_the_stored_samples(name):
    assert not (changed := check_protocol(name)), f"draws changed (stored, now): {changed}"


def test_the_canaries_are_drawn_as_stored():
    changed = differences(_stored()[0]["canaries"], canary_draws())
    assert not changed, f"canary draws changed (stored, now): {changed}"


@pytest.mark.parametrize("name", NAMES)
def test_the_stored_scores_give_the_stored_leakage_columns(name):
    assert not (changed := check_leakage(name)), f"columns changed (stored, now): {changed}"


@pytest.mark.parametrize("name", NAMES)
def test_the_stored_logits_give_the_stored_attack_scores(name):
    changed = check_scores_from_logits(name)
    assert not changed, f"scores changed (largest difference per attack): {changed}"


@pytest.mark.parametrize("name", NAMES)
def test_the_stored_weights_give_the_stored_logits(name):
    changed = check_inference(name)
    assert not changed, f"inference changed beyond rounding: {changed}"


def test_the_kernels_are_the_ones_asked_for():
    """The AVX2 run below really runs AVX2 kernels (torch honours ATEN_CPU_CAPABILITY)."""
    asked = os.environ.get("ATEN_CPU_CAPABILITY")
    if asked:
        assert torch.backends.cpu.get_cpu_capability() == asked.upper()
    assert machine()["kernels"] == torch.backends.cpu.get_cpu_capability()


@pytest.mark.slow
def test_the_checks_hold_with_avx2_kernels():
    """The checks meant for any machine pass where torch, MKL and oneDNN run AVX2 code only:
    what another x86-64 CPU without AVX-512 would run."""
    env = {
        **os.environ,
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"]
        + [str(Path(__file__))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout[-2000:]


# ---- training: deterministic on one machine -------------------------------------------------


@functools.cache
def _first_run(name: str) -> dict[str, Any]:
    return run(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_a_trial_run_twice_gives_the_same_row_and_the_stored_schema(name):
    first, second = _first_run(name), run(name)
    assert [k for k in first if not k.startswith("_") and k != "scores"] == (
        _stored()[0]["trials"][name]["schema"]
    ), "the row's columns or their order changed"
    assert json.dumps(stable(first)) == json.dumps(stable(second))  # every value, exactly
    assert first["scores"].keys() == second["scores"].keys()
    for key, values in first["scores"].items():
        assert np.array_equal(values, second["scores"][key], equal_nan=True), key


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_on_the_recording_machine_the_trial_gives_the_stored_row(name):
    recorded = _stored()[0]["machine"]
    if machine() != recorded:
        pytest.skip(f"training rounds differently here: recorded on {recorded}, not {machine()}")
    stored = _stored()[0]["trials"][name]["columns"]
    changed = differences(stored, stable(_first_run(name)))
    assert not changed, f"columns changed (stored, now): {changed}"
    for key, values in _first_run(name)["scores"].items():
        assert np.allclose(values, _stored()[1][name][f"score/{key}"], rtol=REL, equal_nan=True)


# ---- the checks catch a deliberate change of behaviour --------------------------------------


def test_the_comparison_catches_a_changed_value():
    assert _same({"a": 1.0, "b": [1, "x"]}, {"a": 1.0 + 1e-12, "b": [1, "x"]})
    assert not _same({"a": 1.0}, {"a": 1.0 + 1e-6})
    assert not _same({"a": 1}, {"a": 2})
    assert not _same({"a": None}, {"a": 0.0})
    assert not _same({"a": "prv"}, {"a": "rdp"})
    assert not _same({"a": 1.0}, {"b": 1.0})
    assert list(differences({"a": 1.0, "b": 2}, {"a": 1.0})) == ["b"]
    assert not differences({"a": 1.0, "b": [2]}, {"a": 1.0, "b": [2], "c": 3})


def test_a_changed_draw_is_caught(monkeypatch):
    import raymia.trial.measure

    monkeypatch.setattr(
        raymia.trial.measure,
        "balanced_evaluation",
        lambda members, non_members, seed: balanced_evaluation(members, non_members, seed + 1),
    )
    changed = check_protocol(NAMES[0])
    assert "evaluation" in changed and "members" not in changed, changed


def test_a_changed_interval_is_caught(monkeypatch):
    import raymia.privacy.metrics

    real = raymia.privacy.metrics.clopper_pearson
    monkeypatch.setattr(
        raymia.privacy.metrics, "clopper_pearson", lambda k, n, level=0.95: real(k, n, level - 0.01)
    )
    changed = check_leakage(NAMES[0])
    assert changed and all("tpr_at" in key for key in changed), changed


def test_a_changed_attack_is_caught(monkeypatch):
    import raymia.attacks.loss

    real = raymia.attacks.loss.sample_loss
    monkeypatch.setattr(raymia.attacks.loss, "sample_loss", lambda z, y: real(z, y) * (1 + 1e-7))
    assert list(check_scores_from_logits(NAMES[0])) == ["loss"]


def test_changed_weights_are_caught():
    arrays = dict(_stored()[1][NAMES[0]])
    key = next(k for k in arrays if k.startswith("weight/") and k.endswith("weight"))
    arrays[key] = arrays[key] * np.float32(1.001)
    assert "logits" in check_inference(NAMES[0], arrays)
