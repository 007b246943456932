"""The GPU check's own logic, without a GPU: its command line, its refusal on a machine
without CUDA, the bf16-against-fp32 comparison, the targets and the summary it prints."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

_benchmarks = Path(__file__).resolve().parents[2] / "benchmarks"
_path = _benchmarks / "gpu_check.py"
_spec = importlib.util.spec_from_file_location("gpu_check", _path)
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)

ATTACKS = ("loss", "merlin", "rmia")


def _run(*args: str) -> subprocess.CompletedProcess:
    """Run the script as a user would, with CUDA hidden from torch."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, str(_path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_help_names_every_part_and_option():
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    for part, what in gpu_check.PARTS.items():
        assert f"  {part}  {what}" in done.stdout
    for option in ("--parts", "--json-out", "--d-fp32-repeat", "--step-timeout"):
        assert option in done.stdout


@pytest.mark.parametrize("args", [[], ["--parts", "d", "--json-out", "OUT"], ["--one", "a"]])
def test_without_cuda_it_says_so_in_one_line_and_exits_2(args, tmp_path):
    out = tmp_path / "summary.json"
    done = _run(*[str(out) if a == "OUT" else a for a in args])
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [gpu_check.NO_CUDA]
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_unknown_parts_are_refused():
    with pytest.raises(SystemExit) as info:
        gpu_check.parse_args(["--parts", "a,e"])
    assert info.value.code == 2
    assert gpu_check.parse_args(["--parts", " d, b "]).parts == ["d", "b"]


# --- the comparison of two precisions --------------------------------------------------------


def _scores(seed: int = 0, n: int = 400) -> dict[str, np.ndarray]:
    """Per-sample scores as a trial's row carries them, for ATTACKS."""
    rng = np.random.default_rng(seed)
    out = {"sample_index": np.arange(n), "is_member": np.arange(n) % 2 == 0}
    out |= {f"score_{a}": rng.normal(size=n) for a in ATTACKS}
    out["dtc"] = rng.normal(size=n)  # not an attack's score: not compared
    return out


def _figures(auc: float = 0.6, adv: float = 0.2) -> dict[str, float]:
    """A row's leakage figures: every attack at `auc` +- 0.05, advantage `adv` +- 0.1."""
    row: dict[str, float] = {}
    for i, a in enumerate(ATTACKS):
        row |= {f"{a}_auc": auc, f"{a}_auc_lo": auc - 0.05, f"{a}_auc_hi": auc + 0.05}
        value = adv - 0.01 * i  # the first attack is the best
        row |= {f"{a}_adv": value, f"{a}_adv_lo": value - 0.1, f"{a}_adv_hi": value + 0.1}
    row["adv"] = adv
    return row


def test_identical_scores_and_figures_justify_a_precision_setting():
    scores = _scores()
    result = gpu_check.compare_precisions(_figures(), scores, _figures(), dict(scores))
    assert result["spearman"] == pytest.approx({a: 1.0 for a in ATTACKS})
    assert result["least_spearman"] == pytest.approx(1.0)
    assert result["inside"] == result["figures"] == len(ATTACKS) + 1
    assert result["justified"] is True


def test_a_monotone_change_keeps_the_ranks():
    scores = _scores()
    other = {k: np.exp(v) if k.startswith("score_") else v for k, v in scores.items()}
    result = gpu_check.compare_precisions(_figures(), scores, _figures(), other)
    assert result["least_spearman"] == pytest.approx(1.0)
    assert result["justified"] is True


def test_shuffled_scores_correlate_little_and_do_not_justify_it():
    scores = _scores()
    rng = np.random.default_rng(1)
    shuffled = dict(scores) | {"score_merlin": rng.permutation(scores["score_merlin"])}
    result = gpu_check.compare_precisions(_figures(), scores, _figures(), shuffled)
    assert abs(result["spearman"]["merlin"]) < 0.2
    assert result["spearman"]["loss"] == pytest.approx(1.0)
    assert result["least_spearman"] == pytest.approx(result["spearman"]["merlin"])
    assert result["justified"] is False


def test_a_figure_outside_its_interval_does_not_justify_it():
    scores = _scores()
    other = _figures() | {"rmia_auc": 0.7}  # the fp32 interval is [0.55, 0.65]
    result = gpu_check.compare_precisions(_figures(), scores, other, dict(scores))
    assert result["intervals"]["rmia_auc"]["inside"] is False
    assert result["intervals"]["loss_auc"]["inside"] is True
    assert result["inside"] == len(ATTACKS)
    assert result["justified"] is False


def test_adv_is_judged_against_the_best_attacks_interval():
    reference = _figures(adv=0.2)  # loss is best: [0.1, 0.3]; rmia's is [0.08, 0.28]
    checks = gpu_check.interval_checks(reference, {"adv": 0.29}, ATTACKS)
    assert checks["adv"]["interval_of"] == "loss"
    assert checks["adv"]["lo"] == pytest.approx(0.1) and checks["adv"]["inside"] is True
    assert gpu_check.interval_checks(reference, {"adv": 0.31}, ATTACKS)["adv"]["inside"] is False
    assert checks["loss_auc"]["inside"] is None  # the other run lacks it: not judged


def test_a_missing_interval_is_not_judged_and_does_not_justify_it():
    scores = _scores()
    reference = _figures() | {"merlin_auc_lo": None, "merlin_auc_hi": None}  # n_bootstrap 0
    result = gpu_check.compare_precisions(reference, scores, _figures(), dict(scores))
    assert result["intervals"]["merlin_auc"]["inside"] is None
    assert result["justified"] is False


def test_rank_correlation_edge_cases():
    scores = _scores(n=50)
    constant = dict(scores) | {"score_loss": np.zeros(50)}
    with_nan = dict(scores)
    with_nan["score_rmia"] = scores["score_rmia"].copy()
    with_nan["score_rmia"][np.argmin(scores["score_rmia"])] = np.nan  # NaN ranks lowest
    result = gpu_check.rank_correlations(scores, constant)
    assert result["loss"] is None and result["merlin"] == pytest.approx(1.0)
    assert gpu_check.rank_correlations(scores, with_nan)["rmia"] == pytest.approx(1.0)
    missing = {k: v for k, v in scores.items() if k != "score_merlin"}
    assert set(gpu_check.rank_correlations(scores, missing)) == {"loss", "rmia"}
    moved = dict(scores) | {"sample_index": scores["sample_index"] + 1}
    with pytest.raises(ValueError, match="different samples"):
        gpu_check.rank_correlations(scores, moved)
    # an undefined correlation counts against the setting
    assert not gpu_check.precision_justified({"loss": None}, {"adv": {"inside": True}})
    assert not gpu_check.precision_justified({}, {})


def test_leakage_figures_read_every_attack_and_the_best():
    row = _figures() | {"test_acc": 0.9, "merlin_auc": float("nan")}
    figures = gpu_check.leakage_figures(row, ATTACKS)
    assert len(figures) == 6 * len(ATTACKS) + 1 and figures["adv"] == 0.2
    assert figures["merlin_auc"] is None and "test_acc" not in figures


# --- the targets and the summary --------------------------------------------------------------


def test_target_flags_judge_each_figure_and_leave_unrun_parts_open():
    summary = {
        "parts": ["a", "b", "c", "d"],
        "a": {"device": "cuda", "measure_apart_ratio": 0.8, "host_peak_gb": 5.0},
        "b": {"ratio": 3.2},
        "c": {"ratio": 7.9},
        "d": {"bf16_vs_fp32": {"least_spearman": 0.995, "justified": True}},
        "total_seconds": 300.0,
    }
    flags = gpu_check.target_flags(summary)
    met = {name: flag["met"] for name, flag in flags.items()}
    assert met == {
        "a_device_cuda": True,
        "a_measure_apart_within_training": True,
        "a_host_peak_memory": False,
        "b_gpu_sharing": True,
        "c_ensemble": False,
        "d_precision_setting_justified": True,
        "total_within_6_minutes": True,
    }
    assert flags["b_gpu_sharing"]["figure"] == 3.2 and ">= 3x" in flags["b_gpu_sharing"]["target"]
    assert flags["c_ensemble"]["figure"] == 7.9 and ">= 8x" in flags["c_ensemble"]["target"]

    only_b = {"parts": ["b"], "b": {"ratio": 2.0}, "total_seconds": 100.0}
    met = {name: flag["met"] for name, flag in gpu_check.target_flags(only_b).items()}
    assert met["b_gpu_sharing"] is False
    # parts not run, and the whole check's time with a part left out: not judged
    assert {v for k, v in met.items() if k != "b_gpu_sharing"} == {None}
    failed_b = {k: v for k, v in summary.items() if k != "b"}  # b failed: no full total
    assert gpu_check.target_flags(failed_b)["total_within_6_minutes"]["met"] is None
    cpu_row = gpu_check.target_flags({"parts": ["a"], "a": {"device": "cpu"}})
    assert cpu_row["a_device_cuda"]["met"] is False


def test_plain_values_are_strict_json():
    value = {"a": np.float64(0.5), "b": [float("nan"), np.int64(3)], "c": (np.inf, None)}
    assert gpu_check.plain(value) == {"a": 0.5, "b": [None, 3], "c": [None, None]}
    json.dumps(gpu_check.plain(value), allow_nan=False)


def _fake_step(failing: str | None = None):
    """A stand-in for run_step: canned results, the files a step writes, `failing` fails."""

    def step(name: str, options: list[str], timeout: float) -> dict:
        if name == failing:
            raise gpu_check.StepFailed(f"{name}: exit 1: CUDA out of memory")
        out = Path(options[options.index("--out") + 1]) if "--out" in options else None
        base = {"gpu": "Test GPU", "torch_version": torch.__version__}
        if name == "a":
            costs = {
                "data": {"seconds": 1.0, "calls": 1, "peak_bytes": 2**30},
                "target training": {"seconds": 30.0, "calls": 1, "peak_bytes": 3 * 2**30},
            }
            return base | {
                "size": "synthetic-10000",
                "epochs": 30,
                "device": "cuda",
                "scored": 19_694,
                "wall_seconds": 80.0,
                "train_seconds": 30.0,
                "reference_seconds": 20.0,
                "measure_seconds": 45.0,
                "test_acc": 0.5,
                "gpu_peak_bytes": 2**31,
                "costs": costs,
            }
        if name == "b":
            one = {
                "gpus_per_trial": 1.0,
                "concurrent": 1,
                "cpus_per_trial": 4,
                "seconds": 80.0,
                "trials_per_min": 6.0,
                "mean_train_seconds": 5.0,
                "mean_measure_seconds": 2.0,
            }
            shared = one | {"gpus_per_trial": 0.25, "concurrent": 4, "trials_per_min": 19.2}
            b = {"dataset": "digits", "trials": 8, "sharing": 4, "one": one, "shared": shared}
            return base | b | {"ratio": 3.2}
        if name.startswith("c:"):
            way = name[2:]
            torch.save(torch.ones(3, 5, 10), out)
            seconds = 12.0 if way == "sequential" else 1.2
            c = {"k": 16, "way": way, "path": way, "seconds": seconds, "warmup_seconds": 1.0}
            return base | c | {"model_device": "cuda"}
        scores = _scores()
        np.savez(out, **scores)
        figures = gpu_check.leakage_figures(_figures(), ATTACKS)
        d = {"dataset": "mnist-5k", "precision": name[2:], "device": "cuda", "test_acc": 0.9}
        seconds = {"wall_seconds": 20.0, "train_seconds": 8.0 if name == "d:fp32" else 6.0}
        return (
            base
            | d
            | seconds
            | {"measure_seconds": 5.0, "attacks": list(ATTACKS)}
            | {"figures": figures}
        )

    return step


def test_the_check_prints_every_part_and_ends_with_the_json_summary(monkeypatch, capsys, tmp_path):
    monkeypatch.syspath_prepend(str(_benchmarks))
    monkeypatch.setattr(gpu_check, "cuda_available", lambda: True)
    monkeypatch.setattr(gpu_check, "run_step", _fake_step())
    out = tmp_path / "summary.json"
    assert gpu_check.main(["--json-out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    summary = json.loads(lines[-1])
    assert summary == json.loads(out.read_text())
    assert summary["gpu"] == "Test GPU" and summary["errors"] == {}
    assert summary["a"]["measure_apart_ratio"] == pytest.approx(0.8333, abs=1e-3)
    assert summary["a"]["host_peak_gb"] == pytest.approx(3.0)
    assert summary["c"]["ratio"] == pytest.approx(10.0)
    assert summary["d"]["bf16_vs_fp32"]["justified"] is True
    assert summary["d"]["train_speedup"] == pytest.approx(8 / 6)
    met = {name: flag["met"] for name, flag in summary["targets"].items()}
    assert met["b_gpu_sharing"] and met["c_ensemble"] and met["d_precision_setting_justified"]
    text = "\n".join(lines)
    assert "| target training | 30.00 |" in text  # trial_cost's table
    assert "GPU sharing (4 x 1/4 GPU / 1 x 1 GPU): 3.20x" in text
    assert "sequential / ensemble at K = 16: 10.00x" in text
    assert "a `precision` setting would be justified: yes" in text


def test_a_failed_part_is_recorded_and_the_others_still_run(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(_benchmarks))
    monkeypatch.setattr(gpu_check, "cuda_available", lambda: True)
    monkeypatch.setattr(gpu_check, "run_step", _fake_step(failing="c:ensemble"))
    assert gpu_check.main(["--parts", "c,d"]) == 1
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["parts"] == ["c", "d"] and "c" not in summary
    assert summary["errors"] == {"c": "c:ensemble: exit 1: CUDA out of memory"}
    assert summary["targets"]["c_ensemble"]["met"] is None
    assert summary["targets"]["d_precision_setting_justified"]["met"] is True
