"""The analysis scripts (raymia.analysis, run as analysis/*.py): tables, plots and report
from sweep directories.

Fast tests use synthetic trials tables written with `raymia.results.rows`; the slow ones run a
tiny real sweep once per module (on a local Ray of the tests' own, never `ray stop`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.local_ray import local_ray
from helpers.sweep_spaces import tiny_space

from raymia.analysis import common, configurations, pareto, report, reproduction, roc
from raymia.analysis.common import DEFAULT_OBJECTIVES, run_main
from raymia.results.front import pareto_front, parse_objectives
from raymia.results.labels import config_label, mechanisms_label
from raymia.results.rows import load_results, write_scores, write_trials

ROOT = Path(__file__).resolve().parents[2]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ATTACKS = ("loss", "merlin", "confidence", "entropy", "modified_entropy")

TINY_SPACE = tiny_space(epochs=2, dropout=(0.0, 0.3))


def assert_png(path: Path, min_bytes: int = 5_000) -> None:
    """The file is a PNG of at least ``min_bytes`` (an empty figure is ~2 KB)."""
    assert path.exists(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert len(data) > min_bytes, f"{path} is only {len(data)} bytes"


def run(module, argv: list[str], capsys) -> tuple[int, str, str]:
    """Run a script's main through run_main; return (exit code, stdout, stderr)."""
    code = run_main(module.main, [str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_script(name: str, *args: object) -> subprocess.CompletedProcess:
    """Run ``python analysis/<name> ARGS`` the way a user does, in a fresh process."""
    command = [sys.executable, str(ROOT / "analysis" / name), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def reproduce(out: Path, rows: list[dict], report: Path, capsys) -> str:
    """Write the trials, run reproduction.py on them; return the Markdown it wrote."""
    write_trials(out, rows)
    code, _, err = run(reproduction, [out, "--out", report], capsys)
    assert code == 0, err
    return report.read_text()


def front_ids(sweep_dir: Path, spec: str = DEFAULT_OBJECTIVES) -> list[str]:
    """The Pareto front's trial ids, computed straight from raymia.results.front."""
    front = pareto_front(load_results(sweep_dir), parse_objectives(spec))
    return [str(t) for t in front["trial_id"]]


# --------------------------------------------------------------------------------------------
# Synthetic sweeps (no Ray)


def trial_row(trial_id: str, seed: int, acc: float, adv: float, **strengths) -> dict:
    """One completed trial row: every attack at ``adv``, DtC advantage 0.3."""
    row = {"trial_id": trial_id, "status": "ok", "seed": seed, "dataset": "digits"}
    for name in ("augment", "label_smoothing", "dropout", "weight_decay", "dp_noise"):
        row[name] = 0.0
    row["dp_clip"] = 1.0
    row.update(strengths)
    row.update({f"{a}_adv": adv for a in ATTACKS})
    row.update(test_acc=acc, adv=adv, dtc_adv=0.3, dtc_auc=0.6)
    row.update(adv_null_q95=0.1, adv_excess=max(0.0, adv - 0.1))
    return row


def write_synthetic_scores(out: Path, trial_id: str, rng: np.random.Generator, shift: float):
    """Per-sample scores for 200 members and 200 non-members, DtC for 80 of them."""
    n = 400
    is_member = np.arange(n) < n // 2
    scores = {"sample_index": np.arange(n), "label": np.arange(n) % 10, "is_member": is_member}
    for a in ATTACKS:
        scores[f"score_{a}"] = rng.normal(0, 1, n) + shift * is_member
    dtc = np.full(n, np.nan)
    dtc[:40] = np.minimum(rng.gamma(2.0, 1.0, 40), 6.0)
    dtc[200:240] = np.minimum(rng.gamma(3.0, 1.0, 40), 6.0)
    scores["dtc"] = dtc
    scores["dtc_censored"] = dtc >= 6.0
    write_scores(out, trial_id, scores)


@pytest.fixture(scope="module")
def synthetic_sweep(tmp_path_factory) -> Path:
    """Twelve trials (two failed) over a few mechanism combinations, with scores."""
    out = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    configs = [
        {},
        {"label_smoothing": 0.1},
        {"dropout": 0.3},
        {"label_smoothing": 0.1, "dropout": 0.3},
        {"augment": 2, "dp_noise": 1.0},
    ]
    rows = []
    for i in range(10):
        config = configs[i % len(configs)]
        acc = 0.97 - 0.02 * len(config) - 0.01 * rng.random()
        adv = 0.35 - 0.08 * len(config) + 0.03 * rng.random()
        trial_id = f"syn{i:02d}"
        row = trial_row(trial_id, i // len(configs), acc, adv, **config)
        row["finished_at"] = 1000.0 + i
        rows.append(row)
        write_synthetic_scores(out, trial_id, rng, shift=2 * adv)
    rows.append({"trial_id": "bad00", "status": "failed", "error": "RuntimeError: boom"})
    rows.append({"trial_id": "bad01", "status": "diverged", "error": "TrainingDiverged: nan"})
    write_trials(out, rows)
    return out


def test_mechanism_labels():
    row = {"label_smoothing": 0.1, "dropout": 0.3, "augment": 0, "mixup": float("nan")}
    assert mechanisms_label(row) == "label_smoothing+dropout"
    assert config_label(row) == "label_smoothing=0.1, dropout=0.3"
    assert mechanisms_label({"augment": 0, "dp_clip": 1.0}) == "none"
    assert config_label({"dp_noise": 1.0, "dp_clip": 2.0}) == "dp_noise=1 (dp_clip=2)"


def test_beats_best_single_rule_by_hand(tmp_path, capsys):
    """The 'beats the best single mechanism' rule against hand-computed verdicts.

    Singles (means over two seeds): label_smoothing=0.1 acc 0.94 adv 0.21;
    dropout=0.3 acc 0.90 adv 0.10. The baseline (acc 0.99, adv 0.05) is no rival.
    - A = ls+dropout, acc 0.945 adv 0.15: rivals need acc >= 0.935 -> ls only (0.21) -> yes.
    - B = ls+weight_decay, acc 0.91 adv 0.12: rivals need acc >= 0.90 -> ls (0.21) and
      dropout (0.10, exactly at the bound) -> best 0.10 < 0.12 -> no.
    - C = dropout+weight_decay, acc 0.99 adv 0.50: rivals need acc >= 0.98 -> none -> n/a.
    """
    rows = [
        trial_row("base0", 0, 0.99, 0.05),
        trial_row("ls0", 0, 0.93, 0.20, label_smoothing=0.1),
        trial_row("ls1", 1, 0.95, 0.22, label_smoothing=0.1),
        trial_row("do0", 0, 0.89, 0.09, dropout=0.3),
        trial_row("do1", 1, 0.91, 0.11, dropout=0.3),
        trial_row("A0", 0, 0.94, 0.14, label_smoothing=0.1, dropout=0.3),
        trial_row("A1", 1, 0.95, 0.16, label_smoothing=0.1, dropout=0.3),
        trial_row("B0", 0, 0.91, 0.12, label_smoothing=0.1, weight_decay=0.01),
        trial_row("C0", 0, 0.99, 0.50, dropout=0.3, weight_decay=0.01),
        {"trial_id": "F0", "status": "failed", "error": "boom", "dropout": 0.9},
    ]
    write_trials(tmp_path, rows)
    summary = configurations.mechanism_summary(common.load_sweeps([tmp_path]))
    by_config = summary.set_index("config")
    assert list(summary["kind"]) == ["baseline"] + ["single"] * 2 + ["combination"] * 3
    assert by_config.loc["label_smoothing=0.1", "n"] == 2
    assert by_config.loc["label_smoothing=0.1", "test_acc_mean"] == pytest.approx(0.94)
    assert by_config.loc["label_smoothing=0.1", "adv_std"] == pytest.approx(
        np.std([0.2, 0.22], ddof=1)
    )
    assert np.isnan(by_config.loc["none", "adv_std"])  # one trial: no spread
    assert by_config.loc["label_smoothing=0.1, dropout=0.3", "beats"] == "yes"
    assert by_config.loc["label_smoothing=0.1, weight_decay=0.01", "beats"] == "no"
    assert "dropout=0.3" in by_config.loc["label_smoothing=0.1, weight_decay=0.01", "beats_detail"]
    assert by_config.loc["dropout=0.3, weight_decay=0.01", "beats"] == "n/a"
    assert set(by_config.loc[["none", "dropout=0.3"], "beats"]) == {""}

    code, out, err = run(configurations, [tmp_path, "--out", tmp_path / "md"], capsys)
    assert code == 0, err
    assert "6 configurations from 9 completed trials (1 failed" in out
    assert "| combination | label_smoothing=0.1, dropout=0.3 | 2 | 0.945 ± 0.007 |" in out
    assert (tmp_path / "md" / "configurations.md").read_text().strip() == out.strip()
    # With tolerance 0.05, label_smoothing=0.1 (acc 0.94 = 0.99 - 0.05) becomes C's rival.
    loose = configurations.mechanism_summary(common.load_sweeps([tmp_path]), tolerance=0.05)
    assert loose.set_index("config").loc["dropout=0.3, weight_decay=0.01", "beats"] == "no"


def test_reproduction_verdicts_by_hand(tmp_path, capsys):
    """Baseline adv 0.20; label smoothing raises it, DP lowers it and accuracy, a combination
    beats every single mechanism as accurate as it, and one trial leaks to DtC alone."""
    out = tmp_path / "paper"
    rng = np.random.default_rng(1)
    rows = []
    configs = [
        ({}, 0.97, 0.20),
        ({"label_smoothing": 0.1}, 0.96, 0.30),
        ({"dp_noise": 1.0}, 0.70, 0.05),
        ({"dropout": 0.3}, 0.95, 0.15),
        ({"dropout": 0.3, "label_smoothing": 0.1}, 0.955, 0.10),
    ]
    for seed in (0, 1):
        for i, (config, acc, adv) in enumerate(configs):
            trial_id = f"t{seed}{i}"
            row = trial_row(trial_id, seed, acc + 0.001 * seed, adv + 0.001 * seed, **config)
            row.update(
                {f"{a}_adv_p": 0.5 if config == {"dp_noise": 1.0} else 0.001 for a in ATTACKS}
            )
            rows.append(row)
            # DtC in these scores: members clearly nearer to confident than non-members
            write_synthetic_scores(out, trial_id, rng, shift=0.0)
    text = reproduce(out, rows, tmp_path / "R.md", capsys)
    for finding in (
        "Label smoothing can raise attack advantage",
        "DP-SGD lowers advantage at an accuracy cost",
        "Some combination beats the best single mechanism",
        "DtC still separates members where the attacks fail",
    ):
        assert f"| {finding} | reproduced |" in text, finding
    assert "2 of 10 completed trials show no attack advantage" in text


def test_reproduction_needs_a_baseline(synthetic_sweep, tmp_path, capsys):
    only_mechanisms = tmp_path / "nobase"
    rows = [trial_row("a", 0, 0.9, 0.1, dropout=0.3)]
    write_trials(only_mechanisms, rows)
    code, _, err = run(reproduction, [only_mechanisms], capsys)
    assert code == 2 and "no baseline trial" in err and err.count("\n") == 1


def test_reproduction_writes_one_part_per_data_set(tmp_path, capsys):
    """Sweeps on two data sets: each part judges its own trials against its own baseline (on
    digits label smoothing raises the advantage, on mnist-5k it lowers it)."""
    rng = np.random.default_rng(2)
    dirs = []
    for dataset, smoothed in (("digits", 0.40), ("mnist-5k", 0.05)):
        out = tmp_path / dataset
        rows = []
        for seed in (0, 1):
            for i, (config, acc, adv) in enumerate(
                [({}, 0.97, 0.20), ({"label_smoothing": 0.1}, 0.96, smoothed)]
            ):
                trial_id = f"{dataset}{seed}{i}"
                row = trial_row(trial_id, seed, acc, adv, **config)
                row.update({f"{a}_adv_p": 0.001 for a in ATTACKS}, dataset=dataset)
                rows.append(row)
                write_synthetic_scores(out, trial_id, rng, shift=0.0)
        write_trials(out, rows)
        dirs.append(out)
    code, printed, err = run(reproduction, [*dirs, "--out", tmp_path / "R.md"], capsys)
    assert code == 0, err
    text = (tmp_path / "R.md").read_text()
    digits, mnist = text.split("# Reproducing Kaya, Hong & Dumitras (2020) on ")[1:]
    assert digits.startswith("digits\n") and mnist.startswith("mnist-5k\n")
    assert f"4 completed trials from {dirs[0]};" in digits
    assert f"4 completed trials from {dirs[1]};" in mnist
    finding = "| Label smoothing can raise attack advantage |"
    assert f"{finding} reproduced |" in digits
    assert f"{finding} not reproduced |" in mnist
    assert "Baseline mean adv 0.200" in digits and "Baseline mean adv 0.200" in mnist
    assert printed.count("| finding | verdict |") == 2


def test_convergence_sentence():
    assert "too few" in report.convergence_sentence(np.array([0.1, 0.2, 0.3]))
    flat = np.array([0.1, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.502])
    assert report.tail_gain(flat) == (3, pytest.approx(0.002 / 0.502))
    assert "has flattened" in report.convergence_sentence(flat)
    rising = np.linspace(0.1, 0.6, 12)
    assert "still improving" in report.convergence_sentence(rising)
    assert "is 0" in report.convergence_sentence(np.zeros(10))


def test_pareto_on_synthetic_sweeps(synthetic_sweep, tmp_path, capsys):
    code, out, err = run(pareto, [synthetic_sweep, "--out", tmp_path], capsys)
    assert code == 0, err
    for trial_id in front_ids(synthetic_sweep):
        assert f"| {trial_id} |" in out
    assert_png(tmp_path / "pareto.png")
    assert (tmp_path / "pareto.md").read_text().strip() == out.strip()
    # two sweeps at once: a sweep column tells them apart
    other = tmp_path / "copy"
    shutil.copytree(synthetic_sweep, other)
    code, out, err = run(
        pareto,
        [synthetic_sweep, other, "--objectives", "acc:max,adv:min", "--out", tmp_path / "two"],
        capsys,
    )
    assert code == 0, err
    assert "| sweep | trial |" in out and "| copy |" in out
    assert_png(tmp_path / "two" / "pareto.png")


def test_roc_and_report_on_synthetic_sweep(synthetic_sweep, tmp_path, capsys):
    code, out, err = run(
        roc, [synthetic_sweep, "--trials", "syn00", "syn03", "--out", tmp_path], capsys
    )
    assert code == 0, err
    assert_png(tmp_path / "roc-syn00.png")
    assert_png(tmp_path / "roc-syn03.png")
    code, out, err = run(report, [synthetic_sweep, "--max-roc", "2"], capsys)
    assert code == 0, err
    text = (synthetic_sweep / "report.md").read_text()
    for trial_id in front_ids(synthetic_sweep):
        assert f"| {trial_id} |" in text
    assert "| bad00 | failed | RuntimeError: boom |" in text
    assert "too few" not in text and ("has flattened" in text or "still improving" in text)
    assert text.count("](figures/roc-") == min(2, len(front_ids(synthetic_sweep)))


# --------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit code 2, no traceback


@pytest.mark.parametrize("module", [pareto, configurations, report])
def test_directory_without_trials(module, tmp_path, capsys):
    code, out, err = run(module, [tmp_path], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("analysis: error: ")
    assert "no trials.parquet" in err


def test_roc_directory_without_trials(tmp_path, capsys):
    code, _, err = run(roc, [tmp_path / "missing", "--trials", "x"], capsys)
    assert code == 2 and err.count("\n") == 1 and "no such directory" in err


@pytest.mark.parametrize("module", [pareto, report])
def test_unknown_objective(module, synthetic_sweep, tmp_path, capsys):
    code, _, err = run(module, [synthetic_sweep, "--objectives", "acc:max,bogus:min"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "unknown column 'bogus'" in err and "adv" in err
    code, _, err = run(module, [synthetic_sweep, "--objectives", "acc:up"], capsys)
    assert code == 2 and err.count("\n") == 1 and "bad objective" in err


@pytest.mark.parametrize("module", [pareto, configurations, report])
def test_only_failed_trials(module, tmp_path, capsys):
    write_trials(
        tmp_path,
        [
            {"trial_id": "a", "status": "failed", "error": "ValueError: bad config"},
            {"trial_id": "b", "status": "diverged", "error": "TrainingDiverged: loss is nan"},
        ],
    )
    code, _, err = run(module, [tmp_path], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "no completed trial" in err and "1 failed" in err and "bad config" in err


def test_roc_unknown_or_failed_trial(synthetic_sweep, capsys):
    code, _, err = run(roc, [synthetic_sweep, "--trials", "nope"], capsys)
    assert code == 2 and err.count("\n") == 1 and "'nope' is not in" in err
    code, _, err = run(roc, [synthetic_sweep, "--trials", "bad00"], capsys)
    assert code == 2 and err.count("\n") == 1 and "status failed" in err


def test_bad_input_from_the_command_line(tmp_path):
    """As a script: exit 2, exactly one stderr line, no traceback."""
    result = run_script("pareto.py", tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("analysis: error: ")
    assert "Traceback" not in result.stderr


def test_scripts_never_import_ray():
    code = (
        "import sys; import raymia.analysis.report, raymia.analysis.pareto, "
        "raymia.analysis.configurations, raymia.analysis.roc, raymia.analysis.reproduction; "
        "ray_side = ('raymia.sweep.run', 'raymia.sweep.worker', 'raymia.sweep.recorder'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray' or m in ray_side))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# A tiny real sweep (Ray), once for the module


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory) -> Path:
    """Four real trials on digits (label smoothing x dropout), on a 2-CPU Ray of our own."""
    from raymia.sweep.run import run_sweep
    from raymia.sweep.settings import SweepSettings

    base = tmp_path_factory.mktemp("real")
    space = base / "tiny.yaml"
    space.write_text(TINY_SPACE)
    out = base / "sweep"
    with local_ray(2):
        df = run_sweep(SweepSettings(space=str(space), out=str(out), samples=4, max_concurrent=2))
    assert (df["status"] == "ok").sum() >= 2, df[["trial_id", "status", "error"]]
    return out


@pytest.mark.slow
def test_pareto_on_a_real_sweep(real_sweep, tmp_path, capsys):
    code, out, err = run(pareto, [real_sweep, "--out", tmp_path], capsys)
    assert code == 0, err
    ids = front_ids(real_sweep)
    assert ids and all(f"| {t} |" in out for t in ids)
    assert_png(tmp_path / "pareto.png")


@pytest.mark.slow
def test_mechanisms_table_on_a_real_sweep(real_sweep, tmp_path, capsys):
    code, out, err = run(configurations, [real_sweep, "--out", tmp_path], capsys)
    assert code == 0, err
    ok = load_results(real_sweep).query("status == 'ok'")
    configs = {config_label(r) for r in ok.to_dict("records")}
    table_rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table_rows) - 1 == len(configs)  # minus the header
    for config in configs:
        assert f"| {config} |" in out


@pytest.mark.slow
def test_roc_on_a_real_sweep(real_sweep, tmp_path, capsys):
    ids = list(load_results(real_sweep).query("status == 'ok'")["trial_id"])[:2]
    code, out, err = run(roc, [real_sweep, "--trials", *ids, "--out", tmp_path], capsys)
    assert code == 0, err
    for trial_id in ids:
        assert_png(tmp_path / f"roc-{trial_id}.png")


@pytest.mark.slow
def test_report_on_a_real_sweep_as_a_script(real_sweep):
    """report.py run as a file, the way a user runs it, on the real sweep."""
    result = run_script("report.py", real_sweep)
    assert result.returncode == 0, result.stderr
    text = (real_sweep / "report.md").read_text()
    ids = front_ids(real_sweep)
    for trial_id in ids:
        assert f"| {trial_id} |" in text
    for name in ["pareto.png", "hypervolume.png"] + [f"roc-{t}.png" for t in ids[:4]]:
        assert f"(figures/{name})" in text
        assert_png(real_sweep / "figures" / name)
    assert "## Mechanisms" in text and "completed trial" in text


def test_report_marks_trials_without_detectable_leakage(tmp_path, capsys):
    """A trial whose adv and dtc_adv lie within their nulls reads "no detectable leakage"."""
    rng = np.random.default_rng(1)
    rows = []
    for i, (acc, adv, adv_q95, dtc_adv, dtc_q95) in enumerate(
        [(0.98, 0.40, 0.09, 0.30, 0.16), (0.80, 0.05, 0.09, 0.10, 0.16)]
    ):
        row = trial_row(f"t{i}", 0, acc, adv, dp_noise=float(i))
        row.update(adv_null_q95=adv_q95, dtc_adv=dtc_adv, dtc_adv_null_q95=dtc_q95)
        row["finished_at"] = 1000.0 + i
        rows.append(row)
        write_synthetic_scores(tmp_path, f"t{i}", rng, shift=2 * adv)
    write_trials(tmp_path, rows)
    code, out, err = run(pareto, [tmp_path, "--out", tmp_path / "p"], capsys)
    assert code == 0, err
    table = (tmp_path / "p" / "pareto.md").read_text()
    lines = {line.split("|")[1].strip(): line for line in table.splitlines() if "| t" in line}
    assert lines["t0"].rstrip(" |").endswith("detected")
    assert lines["t1"].rstrip(" |").endswith("no detectable leakage")
    code, out, err = run(report, [tmp_path, "--max-roc", "0"], capsys)
    assert code == 0, err
    text = (tmp_path / "report.md").read_text()
    assert "1 of 2 completed trials show no detectable leakage" in text
    assert "`t1`." in text


def test_reproduction_judges_against_the_nulls(tmp_path, capsys):
    """A label-smoothing rise that stays within the null of the maximum is not a finding; the
    DtC finding reads the rows' own adv_p / dtc_adv_p; the nulls' sizes are reported."""
    out = tmp_path / "paper"
    rng = np.random.default_rng(2)
    rows = []
    configs = [
        ({}, 0.97, 0.05, 0.5, 0.01),
        ({"label_smoothing": 0.1}, 0.96, 0.08, 0.3, 0.5),
        ({"dp_noise": 1.0}, 0.70, 0.03, 0.6, 0.6),
    ]
    for seed in (0, 1):
        for i, (config, acc, adv, adv_p, dtc_p) in enumerate(configs):
            trial_id = f"t{seed}{i}"
            row = trial_row(trial_id, seed, acc, adv + 0.001 * seed, **config)
            row.update(adv_p=adv_p, adv_null_q95=0.09, dtc_adv_p=dtc_p, dtc_adv_null_q95=0.16)
            row.update({f"{a}_adv_p": 0.001 for a in ATTACKS})  # single-attack p: ignored
            row.update(loss_adv_null_q95=0.07, dtc_adv=0.1, eval_members=340)
            rows.append(row)
            write_synthetic_scores(out, trial_id, rng, shift=0.0)
    text = reproduce(out, rows, tmp_path / "R.md", capsys)
    assert "| Label smoothing can raise attack advantage | not reproduced |" in text
    # the baseline's two seeds: attacks within the null of their maximum, DtC p = 0.01; 2 hits
    # of 6 is above twice chance (0.6) + 1
    assert "| DtC still separates members where the attacks fail | reproduced |" in text
    assert "6 of 6 completed trials show no attack advantage above the null" in text
    assert "in 2 of them DtC still separates" in text
    assert "## The size of the nulls" in text
    assert "one attack (loss): 95th percentile of the no-leakage advantage 0.07" in text
    assert "the maximum over the attacks (`adv`): 95th percentile" in text


def test_a_replicate_row_names_its_seeds_in_the_study_table_and_the_front(tmp_path):
    from raymia.results.front import parse_objectives
    from raymia.results.tables import front_table

    replicate = trial_row("rep0", 0, 0.95, 0.10, label_smoothing=0.1)
    replicate.update(seed=None, seeds="0,1,2")  # one row: the mean over three seeds
    write_trials(tmp_path, [replicate, trial_row("one0", 4, 0.97, 0.30)])
    summary = configurations.mechanism_summary(common.load_sweeps([tmp_path]))
    seeds = dict(zip(summary["config"], summary["seeds"], strict=True))
    assert seeds == {"label_smoothing=0.1": "0,1,2", "none": "4"}
    printed = front_table(load_results(tmp_path), parse_objectives("acc:max,adv:min"))
    assert "| 0,1,2 |" in printed
