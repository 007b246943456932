"""One Markdown report of a sweep: front, convergence, mechanisms, ROC curves, failures.

Usage::

    python analysis/report.py DIR [--objectives acc:max,adv_excess:min] [--budgets 0.5,1,2,5]
                              [--max-roc 4] [--tolerance 0.01]

Writes ``DIR/report.md`` and its figures under ``DIR/figures/``:

- first, the answer: at each accuracy budget, the configuration that leaks least, its
  leakage with interval and null, the runner-up, whether the two differ and DP-SGD at that
  accuracy (`raymia.analysis.answer`);
- the Pareto front and the trials within noise of it as a table, and ``pareto.png``
  (`analysis.pareto`);
- ``hypervolume.png``: the hypervolume of the front after each completed trial, in the
  order they finished (`raymia.results.front.hypervolume_trace` against `default_reference`), and
  a sentence on whether the search has flattened (see `convergence_sentence`);
- which mechanisms matter: each searched mechanism's importance for each objective and the
  front's configurations by their active mechanisms (`raymia.results.importance`);
- the mechanism table (`analysis.mechanisms`);
- ``roc-<trial>.png`` for the first ``--max-roc`` front trials (`analysis.roc`);
- the failed or diverged trials with their errors.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from raymia.analysis import common
from raymia.analysis.answer import BUDGETS, answer_text, front_summary
from raymia.analysis.configurations import TOLERANCE, mechanism_summary, mechanisms_markdown
from raymia.analysis.pareto import plot_pareto
from raymia.analysis.roc import plot_trial, roc_png_name
from raymia.errors import ConfigError, ResultsError
from raymia.privacy.leakage import NOT_DETECTABLE, UNKNOWN
from raymia.results.front import Objective, default_reference, hypervolume_trace
from raymia.results.importance import (
    front_configurations,
    front_mechanism_sets,
    front_mechanism_sets_markdown,
    importance_summary,
)
from raymia.results.rows import ok_trials
from raymia.results.tables import front_markdown, front_trials, markdown_table

__all__ = ["REPORT_FILE", "convergence_sentence", "main", "plot_hypervolume", "write_report"]

REPORT_FILE = "report.md"
FIGURES_DIR = "figures"
#: The last quarter of the completed trials must raise the hypervolume by at least 1%
#: for the search to count as still improving.
TAIL_FRACTION = 0.25
FLAT_THRESHOLD = 0.01
MIN_TRIALS_TO_JUDGE = 8


def tail_gain(trace: np.ndarray, tail: float = TAIL_FRACTION) -> tuple[int, float]:
    """Return (number of trials in the tail, relative hypervolume gain over that tail).

    The tail is the last ``ceil(tail * len(trace))`` trials; the gain is
    ``(trace[-1] - trace[before tail]) / trace[-1]`` (0 before any trial counts; NaN when the
    final hypervolume is 0).
    """
    n = len(trace)
    k = max(1, math.ceil(tail * n))
    before = trace[n - k - 1] if n - k - 1 >= 0 else 0.0
    final = trace[-1]
    return k, (float((final - before) / final) if final > 0 else math.nan)


def convergence_sentence(
    trace: np.ndarray, tail: float = TAIL_FRACTION, threshold: float = FLAT_THRESHOLD
) -> str:
    """Return one sentence on whether the hypervolume trace has flattened.

    Flattened: the last ``tail`` fraction of the completed trials raised the hypervolume by
    less than ``threshold`` (relative to its final value). Fewer than
    `MIN_TRIALS_TO_JUDGE` (8) completed trials are too few to judge; a final hypervolume
    of 0 means no trial beat the reference point.
    """
    n = len(trace)
    if n < MIN_TRIALS_TO_JUDGE:
        return (
            f"Only {n} completed trial(s): too few (< {MIN_TRIALS_TO_JUDGE}) to judge whether "
            "the search has converged."
        )
    k, gain = tail_gain(trace, tail)
    if not np.isfinite(gain):
        return "The hypervolume is 0: no completed trial beats the reference point."
    verdict = (
        f"The search has flattened: the last {k} of {n} completed trials raised the "
        f"hypervolume by {gain:.1%} (< {threshold:.0%})."
        if gain < threshold
        else f"The search is still improving: the last {k} of {n} completed trials raised "
        f"the hypervolume by {gain:.1%} (>= {threshold:.0%}); more trials may extend the front."
    )
    return verdict


def plot_hypervolume(
    trace: np.ndarray, objectives: list[Objective], reference: list[float], path: Path
) -> Path:
    """Plot the hypervolume after each completed trial, shading the judged tail; save a PNG."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    x = np.arange(1, len(trace) + 1)
    ax.step(
        x,
        trace,
        where="post",
        color="tab:blue",
        lw=1.8,
        marker="o",
        markersize=3,
        label="hypervolume of the front so far",
    )
    if len(trace) >= MIN_TRIALS_TO_JUDGE:
        k, gain = tail_gain(trace)
        ax.axvspan(
            len(trace) - k + 0.5,
            len(trace) + 0.5,
            color="tab:orange",
            alpha=0.15,
            label=f"last {TAIL_FRACTION:.0%} of trials: +{gain:.1%}"
            if np.isfinite(gain)
            else f"last {TAIL_FRACTION:.0%} of trials",
        )
    ax.set_xlabel("completed trials, in the order they finished")
    ax.set_ylabel("hypervolume (fraction of the objective box)")
    ref = ", ".join(f"{o.column} {r:g}" for o, r in zip(objectives, reference, strict=True))
    ax.set_title(
        f"Search progress over {', '.join(map(str, objectives))}\n(reference: {ref})", fontsize=10
    )
    ax.set_xlim(0.5, len(trace) + 0.5)
    ax.set_ylim(0, max(float(trace.max(initial=0.0)) * 1.1, 1e-6))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    return common.save_figure(fig, path)


def leakage_sentence(ok: pd.DataFrame) -> str:
    """Return a sentence counting the completed trials whose leakage lies within its null.

    A trial shows "no detectable leakage" when its best attack's advantage (`adv`) and its
    DtC advantage (`dtc_adv`) both lie within their permutation nulls' 95th percentiles
    (`raymia.privacy.leakage.leakage_verdict`); such trials are listed by id.
    """
    verdicts = common.leakage_verdicts(ok)
    quiet = ok.loc[verdicts == NOT_DETECTABLE, "trial_id"].astype(str).tolist()
    unknown = int((verdicts == UNKNOWN).sum())
    text = (
        f"{len(quiet)} of {len(ok)} completed trials show no detectable leakage (the best "
        "attack's advantage `adv` and the DtC advantage `dtc_adv` both within their "
        "permutation nulls' 95th percentiles, `adv_null_q95` being the null of the maximum "
        "over attacks)"
    )
    text += f": {', '.join(f'`{t}`' for t in quiet)}." if quiet else "."
    if unknown:
        text += f" {unknown} trial(s) have no null to judge against."
    return text


def which_mechanisms_matter(
    sweep_dir: Path, df: pd.DataFrame, objectives: list[Objective]
) -> list[str]:
    """Return the report's lines on which mechanisms matter: the importance of each searched
    mechanism for each objective (`raymia.results.importance.importance_summary`, with the domains
    of
    the sweep's ``space.yaml`` when it loads) and the front's configurations grouped by the
    set of mechanisms they switch on."""
    from raymia.sweep.settings import SPACE_FILE
    from raymia.sweep.space import load_space

    try:
        space = load_space(sweep_dir / SPACE_FILE)
    except (ConfigError, OSError):  # no readable copy: the rows' own ranges serve
        space = None
    front = front_configurations(df, objectives)
    few = int((front["n_on"] <= 2).sum())
    return [
        "## Which mechanisms matter",
        "",
        importance_summary(df, objectives, space),
        "",
        f"The front's {len(front)} configurations by the mechanisms they switch on ({few} with "
        "at most two):",
        "",
        front_mechanism_sets_markdown(front_mechanism_sets(front)),
        "",
    ]


def _failures_markdown(df: pd.DataFrame) -> str:
    failed = df[df["status"] != "ok"]
    if failed.empty:
        return "None: every trial completed."
    rows = [
        [str(r["trial_id"]), str(r["status"]), str(r.get("error") or "-")]
        for _, r in failed.iterrows()
    ]
    return markdown_table(["trial", "status", "error"], rows)


def write_report(
    sweep_dir: Path,
    objectives_spec: str = common.DEFAULT_OBJECTIVES,
    max_roc: int = 4,
    tolerance: float = TOLERANCE,
    budgets: tuple[float, ...] = BUDGETS,
) -> Path:
    """Write ``sweep_dir/report.md`` and its figures (``sweep_dir/figures/``); return its path.

    Raises AnalysisError or ResultsError (one line) for a directory without a readable
    trials table, with no completed trial, or an objective the table cannot serve.
    """
    df = common.load_sweeps([sweep_dir])
    objectives = common.check_objectives(df, objectives_spec)
    figures = sweep_dir / FIGURES_DIR
    ok = ok_trials(df)
    counts = df["status"].replace({"ok": "completed"}).value_counts()
    status = ", ".join(f"{int(n)} {s}" for s, n in counts.items())
    datasets = ", ".join(sorted(map(str, ok["dataset"].dropna().unique()))) or "-"
    objective_text = ", ".join(f"`{o}`" for o in objectives)

    front = front_trials(df, objectives)
    sentence, within = front_summary(df, objectives)
    within = within.assign(front=["Pareto" if on else "within noise" for on in within["on_front"]])
    plot_pareto(
        df,
        objectives,
        figures / "pareto.png",
        title=f"{sweep_dir.resolve().name}: {len(ok)} completed trials (upper left is better)",
    )

    lines = [
        f"# Sweep report: {sweep_dir.resolve().name}",
        "",
        f"{len(df)} trials ({status}) on {datasets}. Objectives: {objective_text}. "
        "Written by `analysis/report.py` from `trials.parquet` and `scores/`.",
        "",
        "## The answer",
        "",
        answer_text(df, objectives, budgets),
        "",
        "## Pareto front",
        "",
        f"Pareto-optimal over {objective_text} (no other trial is at least as good in every "
        f"objective and better in one): {', '.join(f'`{t}`' for t in front['trial_id'])}. "
        + sentence,
        "",
        front_markdown(within, objectives, extra=["front"]),
        "",
        leakage_sentence(ok),
        "",
        "![Pareto front: test accuracy against attack and DtC advantage]"
        f"({FIGURES_DIR}/pareto.png)",
        "",
        "Each point is a completed trial, colored by the mechanisms it switches on; the "
        "dashed staircase is each panel's own two-objective front, the rings mark the trials "
        "on the front of all objectives. Upper left is better: accurate and leaking little.",
        "",
        "## Has the search converged?",
        "",
    ]

    try:
        reference = default_reference(objectives)
    except ValueError as err:
        lines += [f"No hypervolume: {err}.", ""]
    else:
        trace = hypervolume_trace(df, objectives, reference)
        plot_hypervolume(trace, objectives, reference, figures / "hypervolume.png")
        lines += [
            f"![Hypervolume over completed trials]({FIGURES_DIR}/hypervolume.png)",
            "",
            f"{convergence_sentence(trace)} Final hypervolume {trace[-1]:.4f} "
            f"(reference point {reference}).",
            "",
        ]

    lines += which_mechanisms_matter(sweep_dir, df, objectives)
    summary = mechanism_summary(df, tolerance)
    lines += [
        "## Mechanisms",
        "",
        mechanisms_markdown(summary, tolerance),
        "",
        "## ROC curves and distance to confident, front trials",
        "",
    ]
    shown = list(front["trial_id"].astype(str))[: max(0, max_roc)]
    for trial_id in shown:
        row = front[front["trial_id"].astype(str) == trial_id].iloc[0]
        name = roc_png_name(trial_id)
        try:
            plot_trial(sweep_dir, row, figures / name)
        except ResultsError as err:  # e.g. a scores file lost: the rest of the report stands
            lines += [f"### Trial `{trial_id}`: {row['config']}", "", f"No figure: {err}.", ""]
            continue
        lines += [
            f"### Trial `{trial_id}`: {row['config']}",
            "",
            f"![ROC and DtC of trial {trial_id}]({FIGURES_DIR}/{name})",
            "",
        ]
    rest = list(front["trial_id"].astype(str))[len(shown) :]
    if rest:
        lines += [
            f"{len(rest)} more front trial(s) not plotted: {', '.join(f'`{t}`' for t in rest)} "
            "(`python analysis/roc.py DIR --trials ID ...`).",
            "",
        ]
    lines += [
        "Left: each attack's ROC on log-log axes; a curve above the dotted diagonal at low "
        "false-positive rates singles out some members with confidence. Right: distance to "
        "confident of members and non-members; members nearer to confident leak membership "
        "even where the attacks fail.",
        "",
        "## Failed trials",
        "",
        _failures_markdown(df),
    ]
    return common.write_text(sweep_dir / REPORT_FILE, "\n".join(lines))


def main(argv: list[str]) -> int:
    """Write the report of the sweep in ``argv``; return the exit code."""
    parser = common.make_parser("analysis/report.py", __doc__, sweeps="one")
    common.add_objectives(parser)
    parser.add_argument(
        "--max-roc",
        type=int,
        default=4,
        help="ROC figures for at most this many front trials (default 4)",
    )
    common.add_tolerance(parser, TOLERANCE, "the mechanisms table")
    common.add_budgets(parser)
    args = parser.parse_args(argv)
    if args.max_roc < 0:
        parser.error(f"--max-roc {args.max_roc}: expected a number >= 0")
    path = write_report(args.dir, args.objectives, args.max_roc, args.tolerance, args.budgets)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))
