"""The Pareto plot's intervals and chance band, read off its matplotlib objects (no pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from raymia.analysis import common, pareto
from raymia.results.front import parse_objectives
from raymia.results.rows import write_trials

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OBJECTIVES = parse_objectives("acc:max,adv:min,dtc_adv:min")


def row(
    trial_id: str,
    acc: float,
    adv: float,
    dtc: float = 0.2,
    *,
    intervals: bool = True,
    adv_null: float | None = 0.1,
    dtc_null: float | None = 0.05,
    **strengths: float,
) -> dict:
    """One completed trial: the loss attack reaches ``adv`` (the best), entropy 0.05 less;
    with ``intervals`` each statistic's 95% interval is its value -/+ 0.05 (test accuracy
    -/+ 0.02); nulls as given (None: the column is left out, as in older sweeps)."""
    out = {"trial_id": trial_id, "status": "ok", "seed": 0, "dataset": "digits"}
    out |= {"dropout": 0.0, "label_smoothing": 0.0, **strengths}
    out |= {"test_acc": acc, "adv": adv, "loss_adv": adv, "entropy_adv": adv - 0.05}
    out["dtc_adv"] = dtc
    if intervals:
        out |= {"test_acc_lo": acc - 0.02, "test_acc_hi": acc + 0.02}
        for name in ("loss_adv", "entropy_adv", "dtc_adv"):
            out |= {f"{name}_lo": out[name] - 0.05, f"{name}_hi": out[name] + 0.05}
    if adv_null is not None:
        out["adv_null_q95"] = adv_null
    if dtc_null is not None:
        out["dtc_adv_null_q95"] = dtc_null
    return out


def sweep(out: Path, rows: list[dict]) -> Path:
    """Write ``rows`` as a sweep directory's trials (plus one failed trial); return it."""
    write_trials(out, rows + [{"trial_id": "bad", "status": "failed", "error": "boom"}])
    return out


def draw(tmp_path: Path, monkeypatch, dirs: list[Path]) -> tuple[Figure, Path]:
    """Plot the sweeps in ``dirs``; return the figure as it was saved and the PNG's path."""
    saved: list[Figure] = []
    real_save = common.save_figure

    def keep(fig: Figure, path: Path) -> Path:
        saved.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(common, "save_figure", keep)
    png = pareto.plot_pareto(common.load_sweeps(dirs), OBJECTIVES, tmp_path / "out" / "p.png")
    assert len(saved) == 1
    return saved[0], png


def collections(ax, gid: str) -> list[np.ndarray]:
    """Return every segment (a 2x2 array of points) of the axes' collections named ``gid``."""
    return [np.asarray(s) for c in ax.collections if c.get_gid() == gid for s in c.get_segments()]


def bands(ax) -> list:
    """Return the axes' shaded null bands."""
    return [p for p in ax.patches if (p.get_gid() or "").startswith("null-")]


def band_extent(patch) -> tuple[float, float]:
    """Return the (left, right) x data coordinates of a band, however matplotlib drew it."""
    xs = patch.get_patch_transform().transform(patch.get_path().vertices)[:, 0]
    return float(xs.min()), float(xs.max())


def assert_png(path: Path) -> None:
    assert path.exists(), path
    assert path.read_bytes()[:8] == PNG_MAGIC


ROWS = [
    row("t0", 0.95, 0.30, 0.25),
    row("t1", 0.93, 0.20, 0.15, dropout=0.3),
    row("t2", 0.90, 0.12, 0.10, label_smoothing=0.1),
]


def test_points_carry_their_intervals_in_both_directions(tmp_path, monkeypatch):
    fig, png = draw(tmp_path, monkeypatch, [sweep(tmp_path / "s", ROWS)])
    assert_png(png)
    attack, dtc = fig.axes[:2]
    # the leakage bars: horizontal, at each trial's accuracy, the best attack's interval
    got = sorted((s[0, 0], s[1, 0], s[0, 1]) for s in collections(attack, "interval-adv"))
    want = sorted((r["loss_adv_lo"], r["loss_adv_hi"], r["test_acc"]) for r in ROWS)
    np.testing.assert_allclose(got, want)
    got = sorted((s[0, 0], s[1, 0], s[0, 1]) for s in collections(dtc, "interval-dtc_adv"))
    want = sorted((r["dtc_adv_lo"], r["dtc_adv_hi"], r["test_acc"]) for r in ROWS)
    np.testing.assert_allclose(got, want)
    # the accuracy bars: vertical, at each trial's leakage, test_acc_lo..test_acc_hi
    for ax, x in ((attack, "adv"), (dtc, "dtc_adv")):
        got = sorted((s[0, 0], s[0, 1], s[1, 1]) for s in collections(ax, "interval-test_acc"))
        want = sorted((r[x], r["test_acc_lo"], r["test_acc_hi"]) for r in ROWS)
        np.testing.assert_allclose(got, want)


def test_each_panel_shades_its_null_and_says_so(tmp_path, monkeypatch):
    fig, _ = draw(tmp_path, monkeypatch, [sweep(tmp_path / "s", ROWS)])
    for ax, null in zip(fig.axes[:2], (0.1, 0.05), strict=True):
        (band,) = bands(ax)
        np.testing.assert_allclose(band_extent(band), (0.0, null))
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == [f"chance: permutation null's 95th pct ({null:.3g})"]
        label = ax.get_xlabel()
        assert "permutation null" in label and "95th pct" in label
        assert "no leakage" not in label


def test_differing_nulls_shade_to_their_median(tmp_path, monkeypatch):
    rows = [
        row(f"t{i}", 0.9 + 0.01 * i, 0.1 + 0.05 * i, adv_null=n)
        for i, n in enumerate((0.08, 0.1, 0.2))
    ]
    fig, _ = draw(tmp_path, monkeypatch, [sweep(tmp_path / "s", rows)])
    attack = fig.axes[0]
    (band,) = bands(attack)
    np.testing.assert_allclose(band_extent(band), (0.0, 0.1))
    (text,) = attack.get_legend().get_texts()
    assert "median over trials 0.1" in text.get_text()


def test_older_sweeps_plot_without_intervals_or_band(tmp_path, monkeypatch):
    rows = [
        row(r["trial_id"], r["test_acc"], r["adv"], intervals=False, adv_null=None, dtc_null=None)
        for r in ROWS
    ]
    fig, png = draw(tmp_path, monkeypatch, [sweep(tmp_path / "old", rows)])
    assert_png(png)
    for ax in fig.axes[:2]:
        assert not [c for c in ax.collections if (c.get_gid() or "").startswith("interval-")]
        assert not bands(ax)
        assert ax.get_legend() is None
        assert "no permutation null" in ax.get_xlabel()
        assert len(ax.collections) >= 2  # the points and the rings are still drawn


def test_an_old_and_a_new_sweep_together(tmp_path, monkeypatch):
    old = [row(f"o{i}", 0.9, 0.2 + 0.1 * i, intervals=False, adv_null=None) for i in range(2)]
    dirs = [sweep(tmp_path / "new", ROWS), sweep(tmp_path / "old", old)]
    fig, png = draw(tmp_path, monkeypatch, dirs)
    assert_png(png)
    attack = fig.axes[0]
    assert len(collections(attack, "interval-adv")) == len(ROWS)  # only the new rows' bars
    (band,) = bands(attack)
    np.testing.assert_allclose(band_extent(band), (0.0, 0.1))
    (text,) = attack.get_legend().get_texts()
    assert f"{len(ROWS)} of {len(ROWS) + len(old)} trials have one" in text.get_text()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "sweep new" in legend and "sweep old" in legend
