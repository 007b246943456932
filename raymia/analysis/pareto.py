"""The privacy/utility Pareto front of one or more sweeps: a Markdown table and a PNG.

Usage::

    python analysis/pareto.py DIR [DIR ...] [--objectives acc:max,adv_excess:min]
                              [--out OUTDIR]

Prints the Pareto-optimal completed trials (over the objectives) as a Markdown table and
writes it to ``OUTDIR/pareto.md``, with ``OUTDIR/pareto.png``: test accuracy against the
best attack's advantage (left) and against the DtC advantage (right), every trial colored by
which mechanisms it switches on, with light bars for its own 95% intervals (the test
accuracy's, ``test_acc_lo`` / ``_hi``, and the leakage's,
`raymia.analysis.answer.row_interval`), the 2-D front of each panel drawn as a staircase and
the trials on the front of all objectives ringed. Each panel shades what chance reaches: the
band from 0 to the trials' permutation null's 95th percentile (``adv_null_q95``,
``dtc_adv_null_q95``; the median over the trials where their nulls differ, as the legend
says; no band where no trial has a null). ``OUTDIR`` defaults to the first DIR. Several DIRs
are analysed as one set of trials (a ``sweep`` column tells them apart).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from raymia.analysis import common
from raymia.analysis.answer import row_interval, row_null
from raymia.results.front import Objective, pareto_front
from raymia.results.labels import NONE_LABEL, add_labels
from raymia.results.rows import ok_trials
from raymia.results.tables import front_markdown, front_trials

__all__ = ["main", "null_band", "pareto_figure", "plot_pareto"]

#: The two panels: (x column, x-axis label, title).
PANELS = (
    ("adv", "best attack's membership advantage (TPR − FPR)", "accuracy vs attack"),
    ("dtc_adv", "DtC advantage (TPR − FPR, members nearer to confident)", "accuracy vs DtC"),
)
ACC_LABEL = "test accuracy (fraction correct)"
#: What an x-axis label adds when the panel shades its null, and when no trial has one.
NULL_LABEL = "shaded: what chance reaches (permutation null, 95th pct)"
NO_NULL_LABEL = "no permutation null in these trials: chance level unknown"
# More mechanism combinations than this and the rarest share one "other" color.
MAX_CATEGORIES = 12
SWEEP_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: The interval bars: thin and faint, so that the points stay readable.
BAR_STYLE = {"linewidths": 0.8, "alpha": 0.35, "zorder": 2.5}
BAND_COLOR = (0.55, 0.55, 0.55)
BAND_ALPHA = 0.2


def _category_colors(labels: pd.Series) -> tuple[pd.Series, dict[str, tuple]]:
    """Map each trial's mechanisms label to a plotted category and each category to a color.

    ``none`` comes first, then categories by how many trials they hold; beyond
    `MAX_CATEGORIES` the rarest are merged into one ``other`` category.
    """
    counts = labels.value_counts()
    order = sorted(counts.index, key=lambda c: (c != NONE_LABEL, -counts[c], c))
    if len(order) > MAX_CATEGORIES:
        kept = set(order[: MAX_CATEGORIES - 1])
        other = f"other ({len(order) - len(kept)} combinations)"
        labels = labels.where(labels.isin(kept), other)
        order = order[: MAX_CATEGORIES - 1] + [other]
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    colors = {c: cmap(i % cmap.N) for i, c in enumerate(order)}
    if NONE_LABEL in colors:
        colors[NONE_LABEL] = (0.2, 0.2, 0.2, 1.0)  # the baseline in near-black
    if len(order) == MAX_CATEGORIES and order[-1].startswith("other ("):
        colors[order[-1]] = (0.78, 0.78, 0.78, 1.0)  # the merged rest in light grey
    return labels, colors


def _staircase(ax: Axes, points: pd.DataFrame, x: str) -> None:
    """Draw the 2-D front (max test_acc, min x) of ``points`` as a staircase through them."""
    front = pareto_front(points, [Objective("test_acc", "max"), Objective(x, "min")])
    front = front.sort_values([x, "test_acc"])
    xs, ys = front[x].to_numpy(float), front["test_acc"].to_numpy(float)
    # Between two front points the best accuracy reachable is the left one's: steps "post".
    ax.step(xs, ys, where="post", color="black", lw=1.2, ls="--", zorder=2)


def _intervals(
    points: pd.DataFrame, x: str, column: str
) -> list[tuple[float, float, float, float]]:
    """Return, for each row of ``points`` with its own 95% interval of ``column``
    (`row_interval`), the tuple (its ``x``, its test accuracy, lo, hi); rows without one are
    left out."""
    out = []
    for record in points.to_dict("records"):
        interval = row_interval(record, column)
        if interval is not None:
            out.append((float(record[x]), float(record["test_acc"]), *interval))
    return out


def _interval_bars(ax: Axes, points: pd.DataFrame, x: str, color: tuple) -> None:
    """Draw each point's 95% intervals as thin bars in ``color``: horizontal for the leakage
    ``x`` (`row_interval`), vertical for the test accuracy (``test_acc_lo`` / ``_hi``); no
    bar where a row has no interval (older sweeps)."""
    leak = _intervals(points, x, x)
    if leak:
        _, ys, los, his = zip(*leak, strict=True)
        bars = ax.hlines(ys, los, his, colors=[color], **BAR_STYLE)
        bars.set_gid(f"interval-{x}")
    acc = _intervals(points, x, "test_acc")
    if acc:
        xs, _, los, his = zip(*acc, strict=True)
        bars = ax.vlines(xs, los, his, colors=[color], **BAR_STYLE)
        bars.set_gid("interval-test_acc")


def null_band(points: pd.DataFrame, x: str) -> tuple[float, str] | None:
    """Return the top of the chance band of a panel on ``x`` and its legend label: the
    trials' permutation null's 95th percentile (`row_null`), the median over the trials
    where their nulls differ; None where no trial of ``points`` has a null."""
    nulls = [row_null(record, x) for record in points.to_dict("records")]
    found = np.array([n for n in nulls if n is not None], dtype=float)
    if not len(found):
        return None
    top = float(np.median(found))
    spread = f"median over trials {top:.3g}" if np.ptp(found) > 1e-9 else f"{top:.3g}"
    if len(found) < len(nulls):
        spread += f"; {len(found)} of {len(nulls)} trials have one"
    return top, f"chance: permutation null's 95th pct ({spread})"


def _shade_null(ax: Axes, points: pd.DataFrame, x: str) -> bool:
    """Shade the panel's chance band from 0 to its null (`null_band`) with a legend saying
    what it is; return whether there was a null to shade."""
    band = null_band(points, x)
    if band is None:
        return False
    top, label = band
    patch = ax.axvspan(0.0, top, color=BAND_COLOR, alpha=BAND_ALPHA, lw=0, zorder=0.5)
    patch.set_gid(f"null-{x}")
    patch.set_label(label)
    ax.legend(handles=[patch], loc="best", fontsize=8, framealpha=0.8)
    return True


def _scatter_categories(
    ax: Axes,
    points: pd.DataFrame,
    x: str,
    colors: dict[str, tuple],
    markers: dict[str, str],
) -> None:
    """Draw every trial of ``points`` as a point colored by category (marker by sweep when
    ``markers`` has sweeps), with its interval bars."""
    for category, color in colors.items():
        for sweep in list(markers) or [None]:
            sel = points[points["category"] == category]
            if sweep is not None:
                sel = sel[sel["sweep"] == sweep]
            if sel.empty:
                continue
            _interval_bars(ax, sel, x, color)
            ax.scatter(
                sel[x],
                sel["test_acc"],
                color=color,
                s=36,
                alpha=0.85,
                marker=markers.get(sweep, "o"),
                edgecolors="white",
                linewidths=0.5,
                zorder=3,
            )


def _ring_front(ax: Axes, front: pd.DataFrame, x: str) -> None:
    """Ring the trials on the front of all objectives (with their ids when at most 12)."""
    ringed = front[np.isfinite(front[x].to_numpy(float))]
    ax.scatter(
        ringed[x],
        ringed["test_acc"],
        s=170,
        facecolors="none",
        edgecolors="black",
        linewidths=1.4,
        zorder=4,
    )
    if len(ringed) <= 12:
        for _, row in ringed.iterrows():
            ax.annotate(
                str(row["trial_id"]),
                (row[x], row["test_acc"]),
                fontsize=7,
                xytext=(6, -10),
                textcoords="offset points",
                color="0.2",
            )


def _draw_panel(
    ax: Axes,
    ok: pd.DataFrame,
    front: pd.DataFrame,
    panel: tuple[str, str, str],
    colors: dict[str, tuple],
    markers: dict[str, str],
) -> None:
    """Draw one panel: test accuracy against the leakage column of ``panel`` (x column,
    label, title), with the chance band, the points and their intervals, the panel's 2-D
    front and the rings; a note instead where no trial measured the column."""
    x, xlabel, title = panel
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    points = ok[np.isfinite(ok[x].to_numpy(float))] if x in ok else ok.iloc[0:0]
    if points.empty:
        ax.set_xlabel(xlabel)
        ax.text(
            0.5,
            0.5,
            f"{x} not measured in these trials",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="grey",
        )
        return
    shaded = _shade_null(ax, points, x)
    ax.set_xlabel(f"{xlabel}\n{NULL_LABEL if shaded else NO_NULL_LABEL}")
    _scatter_categories(ax, points, x, colors, markers)
    _staircase(ax, points, x)
    _ring_front(ax, front, x)


def _legend_handles(
    colors: dict[str, tuple], objectives: list[Objective], markers: dict[str, str]
) -> list[Line2D]:
    """Return the figure legend's handles: the categories' colors, the ring of the front of
    all objectives, the panels' staircase, the interval bars and, for several sweeps, their
    markers."""
    handles = [
        Line2D([], [], ls="", marker="o", color=c, markersize=7, label=cat)
        for cat, c in colors.items()
    ]
    handles.append(
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            markersize=12,
            markerfacecolor="none",
            markeredgecolor="black",
            label=f"Pareto front ({', '.join(map(str, objectives))})",
        )
    )
    handles.append(Line2D([], [], ls="--", color="black", label="2-D front of the panel"))
    handles.append(
        Line2D([], [], color="0.3", lw=0.8, alpha=0.5, label="a trial's 95% intervals (bars)")
    )
    if len(markers) > 1:
        handles += [
            Line2D([], [], ls="", marker=m, color="0.3", label=f"sweep {s}")
            for s, m in markers.items()
        ]
    return handles


def pareto_figure(
    df: pd.DataFrame, objectives: list[Objective], title: str | None = None
) -> Figure:
    """Return the figure `plot_pareto` saves (see there), unsaved."""
    ok = add_labels(ok_trials(df))
    ok["category"], colors = _category_colors(ok["mechanisms_on"])
    front = pareto_front(ok, objectives)
    sweeps = list(dict.fromkeys(ok["sweep"])) if "sweep" in ok else []
    markers = {s: SWEEP_MARKERS[i % len(SWEEP_MARKERS)] for i, s in enumerate(sweeps)}

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6), sharey=True)
    for ax, panel in zip(axes, PANELS, strict=True):
        _draw_panel(ax, ok, front, panel, colors, markers)
    axes[0].set_ylabel(ACC_LABEL)
    handles = _legend_handles(colors, objectives, markers)
    fig.legend(
        handles=handles,
        title="mechanisms on (color)",
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(3, len(handles)),
        frameon=False,
        fontsize=9,
    )
    fig.suptitle(
        title or f"Privacy/utility trade-off: {len(ok)} completed trials (upper left is better)"
    )
    fig.tight_layout()
    return fig


def plot_pareto(
    df: pd.DataFrame, objectives: list[Objective], path: Path, title: str | None = None
) -> Path:
    """Draw test accuracy against attack advantage and against DtC advantage; save a PNG.

    Every completed trial is a point colored by which mechanisms it switches on (marker
    shape by sweep when there are several), with thin bars for its own 95% intervals of the
    test accuracy and of the panel's leakage where the row holds them; each panel shades the
    band chance reaches (0 to the permutation null's 95th percentile, `null_band`), its own
    2-D front is a dashed staircase, and the trials on the front of all ``objectives`` are
    ringed (labelled with their trial id when there are at most 12). Returns ``path``.
    """
    return common.save_figure(pareto_figure(df, objectives, title), path)


def main(argv: list[str]) -> int:
    """Print and write the Pareto front of the sweeps in ``argv``; return the exit code."""
    parser = common.make_parser("analysis/pareto.py", __doc__)
    common.add_objectives(parser)
    common.add_out_dir(parser, "pareto.md and pareto.png")
    args = parser.parse_args(argv)
    df = common.load_sweeps(args.dirs)
    objectives = common.check_objectives(df, args.objectives)
    out = args.out if args.out is not None else Path(args.dirs[0])
    front = front_trials(df, objectives)
    n_ok = len(ok_trials(df))
    table = (
        f"Pareto front over {', '.join(map(str, objectives))}: {len(front)} of "
        f"{n_ok} completed trials\n\n{front_markdown(front, objectives)}"
    )
    md = common.write_text(out / "pareto.md", table)
    png = plot_pareto(df, objectives, out / "pareto.png")
    print(f"wrote {md} and {png}", file=sys.stderr)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))
