"""The study's table: each mechanism configuration's accuracy and leakage, over seeds.

Usage::

    python analysis/configurations.py DIR [DIR ...] [--tolerance 0.01] [--out OUTDIR]

One row per configuration (the baseline, every single mechanism at every strength, every
combination), grouping the completed trials that share it (its seeds): test accuracy, each
attack's membership advantage, the best attack's advantage (``adv``) and the DtC advantage,
each as mean ± standard deviation over the trials, with their count ``n``. Printed as
Markdown and written to ``OUTDIR/configurations.md`` (``OUTDIR`` defaults to the first DIR).

Does a combination beat the best single mechanism? The rule, per combination C (means over
seeds; ``tolerance`` defaults to 0.01):

1. the rivals of C are the single-mechanism configurations (the baseline is not one) whose
   mean test accuracy is at least C's minus ``tolerance``: as accurate as C, or nearly so;
2. C *beats the best single mechanism* ("yes") when its mean ``adv`` is strictly lower than
   that of every rival, i.e. lower than the least-leaking rival's; "no" otherwise;
3. "n/a" when C has no rival (no single mechanism comes within ``tolerance`` of its
   accuracy, or the sweeps hold no single-mechanism row).

Configurations are compared only with those of the same data set and training settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from raymia.analysis import common
from raymia.mechanisms import REGISTRY
from raymia.mechanisms.registry import riders
from raymia.privacy.leakage import DETECTED
from raymia.results.labels import config_key, config_label
from raymia.results.rows import ok_trials
from raymia.results.tables import fmt, markdown_table

__all__ = ["BEATS_RULE", "main", "mechanism_summary", "mechanisms_markdown"]

#: Default accuracy tolerance of the "beats the best single mechanism" rule.
TOLERANCE = 0.01
#: Training settings that, when they differ between trials, keep configurations apart.
SETTINGS = ("dataset", "epochs", "members", "optimizer", "lr", "batch_size")
# Float slack for the ">= accuracy - tolerance" comparison (0.91 - 0.01 is not 0.9 in floats).
_EPS = 1e-9

BEATS_RULE = (
    "A combination *beats the best single mechanism* when its mean `adv` is lower than that "
    "of every single-mechanism configuration whose mean test accuracy is at least the "
    "combination's minus {tol:g}; *n/a* when no single mechanism is that accurate."
)


def _seeds(rows: pd.DataFrame) -> set[int]:
    """Return the seeds behind `rows`: each row's ``seed``, or a replicate row's ``seeds``
    ("0,1,2": one row of a sweep that ran its configuration once per seed)."""
    seeds = {int(s) for s in rows["seed"].dropna()} if "seed" in rows else set()
    if "seeds" in rows:
        for listed in rows["seeds"].dropna():
            seeds.update(int(s) for s in str(listed).split(",") if s.strip())
    return seeds


def _mechanisms(key: tuple) -> list[str]:
    """Return the mechanisms of a configuration key (`raymia.results.labels.config_key`), not
    riders."""
    return [name for name, _ in key if name not in riders()]


def _kind(key: tuple) -> str:
    return {0: "baseline", 1: "single"}.get(len(_mechanisms(key)), "combination")


def _sort_key(key: tuple) -> tuple:
    names = _mechanisms(key)
    order = [list(REGISTRY).index(n) for n in names]
    return (min(len(names), 2), len(names), order, [value for _, value in key])


def _setting_order(value: object) -> tuple:
    """Sort key for a setting value: missing first, numbers by value, then text."""
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, (int, float, np.number)):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def mechanism_summary(df: pd.DataFrame, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """Return one row per configuration of the completed trials in ``df``.

    Columns: the training settings that vary between trials (of `SETTINGS`), ``kind``
    (baseline | single | combination), ``config`` (mechanisms with strengths), ``n`` (trials),
    ``seeds``, then ``<metric>_mean`` and ``<metric>_std`` (sample standard deviation; NaN
    for one trial) for test_acc, each attack's ``<attack>_adv`` present, ``adv`` and
    ``dtc_adv`` (and the nulls ``adv_null_q95``, ``adv_excess``, ``dtc_adv_null_q95`` where
    present), ``leaks`` (how many of the trials show leakage above a null,
    `raymia.privacy.leakage.leakage_verdict`), then ``beats`` ("yes" | "no" | "n/a", blank for
    non-combinations) and ``beats_detail`` (the rival it was judged against). Rows are
    sorted: baseline, singles by mechanism and strength, then combinations. See the module
    docstring for the rule.
    """
    ok = ok_trials(df)
    metrics = ["test_acc"] + [f"{a}_adv" for a in common.attacks_in(ok)] + ["adv", "dtc_adv"]
    metrics += ["adv_null_q95", "adv_excess", "dtc_adv_null_q95"]
    metrics = [m for m in metrics if m in ok.columns]
    verdicts = common.leakage_verdicts(ok)
    settings = [s for s in SETTINGS if s in ok.columns and ok[s].nunique(dropna=False) > 1]
    records = ok.to_dict("records")
    keys = [config_key(r) for r in records]
    groups: dict[tuple, list[int]] = {}
    for i, (record, key) in enumerate(zip(records, keys, strict=True)):
        group = tuple(None if pd.isna(record[s]) else record[s] for s in settings) + (key,)
        groups.setdefault(group, []).append(i)

    rows = []
    for group, members in groups.items():
        *setting_values, key = group
        sel = ok.iloc[members]
        row: dict = dict(zip(settings, setting_values, strict=True))
        row["kind"] = _kind(key)
        row["config"] = config_label(records[members[0]])
        row["n"] = len(members)
        seeds = sorted(_seeds(sel))
        row["seeds"] = ",".join(map(str, seeds))
        row["leaks"] = int((verdicts.iloc[members] == DETECTED).sum())
        for m in metrics:
            values = pd.to_numeric(sel[m]).to_numpy(dtype=float)
            finite = values[np.isfinite(values)]
            row[f"{m}_mean"] = float(finite.mean()) if len(finite) else np.nan
            row[f"{m}_std"] = float(finite.std(ddof=1)) if len(finite) > 1 else np.nan
        row["_key"] = key
        rows.append(row)
    rows.sort(key=lambda r: (tuple(_setting_order(r[s]) for s in settings), _sort_key(r["_key"])))
    summary = pd.DataFrame(rows)
    summary["beats"], summary["beats_detail"] = _beats(summary, settings, tolerance)
    return summary.drop(columns="_key")


def _beats(summary: pd.DataFrame, settings: list[str], tolerance: float) -> tuple[list, list]:
    """Apply the "beats the best single mechanism" rule to every combination row."""
    verdicts, details = [], []
    for _, row in summary.iterrows():
        if row["kind"] != "combination":
            verdicts.append("")
            details.append("")
            continue
        same = np.ones(len(summary), dtype=bool)
        for s in settings:
            same &= (summary[s] == row[s]).to_numpy()
        singles = summary[same & (summary["kind"] == "single").to_numpy()]
        singles = singles[np.isfinite(singles["adv_mean"].to_numpy(float))]
        rivals = singles[singles["test_acc_mean"] >= row["test_acc_mean"] - tolerance - _EPS]
        if singles.empty:
            verdicts.append("n/a")
            details.append("no single-mechanism rows")
        elif rivals.empty or not np.isfinite(row["adv_mean"]):
            verdicts.append("n/a")
            details.append(f"no single mechanism within {tolerance:g} of its accuracy")
        else:
            best = rivals.loc[rivals["adv_mean"].idxmin()]
            better = row["adv_mean"] < best["adv_mean"]
            verdicts.append("yes" if better else "no")
            sign = "<" if better else ">="
            details.append(
                f"adv {fmt(row['adv_mean'])} {sign} {fmt(best['adv_mean'])} of {best['config']}, "
                f"acc {fmt(best['test_acc_mean'])}"
            )
    return verdicts, details


def _mean_std(row: pd.Series, metric: str) -> str:
    mean, std = row.get(f"{metric}_mean"), row.get(f"{metric}_std")
    if mean is None or not np.isfinite(mean):
        return "-"
    return fmt(mean) if std is None or not np.isfinite(std) else f"{fmt(mean)} ± {fmt(std)}"


def mechanisms_markdown(summary: pd.DataFrame, tolerance: float = TOLERANCE) -> str:
    """Return `mechanism_summary`'s table as Markdown, with a legend line and the rule."""
    metrics = [c[: -len("_mean")] for c in summary.columns if c.endswith("_mean")]
    settings = [s for s in SETTINGS if s in summary.columns]
    header = settings + ["kind", "configuration", "n"] + metrics + ["leaks"]
    combos = (summary["kind"] == "combination").any()
    if combos:
        header.append("beats best single?")
    rows = []
    for _, row in summary.iterrows():
        cells = [str(row[s]) for s in settings] + [row["kind"], row["config"], str(row["n"])]
        cells += [_mean_std(row, m) for m in metrics]
        cells.append(f"{row['leaks']}/{row['n']}")
        if combos:
            verdict = row["beats"]
            cells.append(f"{verdict} ({row['beats_detail']})" if verdict else "")
        rows.append(cells)
    legend = (
        "Mean ± standard deviation over the n completed trials (seeds) of each configuration; "
        "`<attack>_adv` is that attack's membership advantage (TPR - FPR at the best "
        "threshold), `adv` the best attack's, `dtc_adv` the DtC advantage; lower leaks less. "
        "`adv_null_q95` is the 95th percentile of `adv` on label-permuted data (the null of "
        "the maximum over attacks), `adv_excess` = max(0, adv - adv_null_q95); `leaks` counts "
        "the trials whose `adv` or `dtc_adv` clears its null (the rest show no detectable "
        "leakage)."
    )
    text = f"{legend}\n\n{markdown_table(header, rows)}"
    if combos:
        text += "\n\n" + BEATS_RULE.format(tol=tolerance)
    return text


def main(argv: list[str]) -> int:
    """Print and write the mechanism table of the sweeps in ``argv``; return the exit code."""
    parser = common.make_parser("analysis/configurations.py", __doc__)
    common.add_tolerance(parser, TOLERANCE, "the 'beats' rule")
    common.add_out_dir(parser, "configurations.md")
    args = parser.parse_args(argv)
    df = common.load_sweeps(args.dirs)
    summary = mechanism_summary(df, args.tolerance)
    n_ok = len(ok_trials(df))
    skipped = len(df) - n_ok
    title = f"Mechanisms: {len(summary)} configurations from {n_ok} completed trials"
    if skipped:
        title += f" ({skipped} failed or diverged trials left out)"
    text = f"{title}\n\n{mechanisms_markdown(summary, args.tolerance)}"
    out = args.out if args.out is not None else Path(args.dirs[0])
    path = common.write_text(out / "configurations.md", text)
    print(f"wrote {path}", file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))
