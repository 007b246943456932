"""Each defence beside DP-SGD at equal accuracy, on the leakage of the most vulnerable samples.

Usage::

    python analysis/defences.py DIR [DIR ...] [--fpr 1pct|0p1pct] [--out FILE]

After Aerni, Zhang & Tramer (CCS 2024): a heuristic defence is judged by what it leaks on the
samples a model must memorize (the canaries: trials run with ``attacks.canaries`` > 0, e.g.
``search_spaces/canaries.yaml``) and against DP-SGD tuned to the same accuracy, not against
the unregularized model. The rules:

1. *Configurations.* Completed trials with canary leakage are grouped by configuration
   (mechanisms with strengths; training settings that differ keep trials apart, as in
   ``analysis/configurations.py``). A configuration's accuracy is the mean ``test_acc`` of its
   trials; its canary TPR at the FPR chosen (``canary_tpr_at_1pct`` by default) pools its
   seeds: k of n member canaries found (each trial's TPR times its member canaries), TPR =
   k / n with the exact 95% Clopper-Pearson interval of k of n (one trial: the row's own).
2. *DP-SGD's curve.* The configurations with DP-SGD alone (``dp_noise`` > 0, no other
   mechanism) give points (accuracy, TPR, interval). DP-SGD's leakage is taken to rise with
   its accuracy: the TPRs, and apart their lower and upper bounds, are fitted by isotonic
   (non-decreasing) regression over accuracy (scikit-learn, weighted by n; points out of order
   are pooled), then interpolated linearly between the DP-SGD accuracies. Nothing is
   extrapolated: outside the range of DP-SGD's accuracies the comparison is None, and the
   output says so. DP-SGD combined with another mechanism is neither on the curve nor
   compared (counted in the output).
3. *Each other configuration* (the unregularized model, every heuristic defence or
   combination) at its accuracy a: DP-SGD's interpolated TPR(a) and band [lo(a), hi(a)], the
   ratio TPR / TPR(a) (None where TPR(a) is 0) and the difference TPR - TPR(a).
4. *Verdict*, respecting both intervals: **leaks more than DP-SGD** when the defence's lower
   bound exceeds DP-SGD's band, lo > hi(a); **leaks less than DP-SGD** when its upper bound is
   below the band, hi < lo(a); **no clear difference** when they overlap; **outside DP-SGD's
   accuracy range** when a lies outside it.

Prints the Markdown and writes it to FILE (default: the first DIR's ``defences.md``). A sweep
without canary leakage, without a DP-SGD configuration or without any other configuration is
a one-line error (exit 2).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from raymia.analysis import common
from raymia.analysis.configurations import SETTINGS
from raymia.errors import AnalysisError
from raymia.mechanisms import REGISTRY
from raymia.mechanisms.registry import riders
from raymia.privacy.metrics import clopper_pearson
from raymia.results.labels import config_key, config_label
from raymia.results.rows import ok_trials
from raymia.results.tables import fmt, markdown_table

__all__ = [
    "FPRS",
    "LESS",
    "MORE",
    "OUTSIDE",
    "SAME",
    "DpCurve",
    "canary_configurations",
    "configuration_kind",
    "seed_count",
    "compare_with_dp",
    "defences_markdown",
    "main",
    "verdict",
]

#: The FPRs a comparison can read: the suffix of the `canary_tpr_at_<fpr>` column -> its text.
FPRS = {"1pct": "1%", "0p1pct": "0.1%"}
MORE = "leaks more than DP-SGD"
LESS = "leaks less than DP-SGD"
SAME = "no clear difference"
OUTSIDE = "outside DP-SGD's accuracy range"
#: Settings that keep configurations apart when they differ: the training settings and the
#: number of canaries (members and non-members together: which of them are members is drawn
#: per seed, so the member count varies between the seeds of one configuration).
GROUP_SETTINGS = (*SETTINGS, "canaries")


def _column(fpr: str) -> str:
    return f"canary_tpr_at_{fpr}"


def seed_count(row: Mapping[str, Any]) -> int:
    """Return how many seeds a row stands for: a replicate row's ``seeds`` ("0,1,2"), else 1."""
    listed = row.get("seeds")
    if listed is None or pd.isna(listed) or not str(listed).strip():
        return 1
    return len([s for s in str(listed).split(",") if s.strip()])


def configuration_kind(key: tuple) -> str:
    """Return "dp" (DP-SGD alone), "dp+" (DP-SGD with another mechanism) or "defence"."""
    names = [name for name, _ in key if name not in riders()]
    dp = [name for name in names if REGISTRY[name].dp_sgd]  # the registry's DP-SGD flag
    if not dp:
        return "defence"
    return "dp" if len(dp) == len(names) else "dp+"


def canary_configurations(df: pd.DataFrame, fpr: str = "1pct") -> pd.DataFrame:
    """Return one row per configuration of the completed trials in ``df`` with canary leakage.

    Columns: the settings of `GROUP_SETTINGS` that vary between those trials, ``kind`` ("dp":
    DP-SGD alone, "dp+": DP-SGD with another mechanism, "defence": anything else, the
    unregularized model included), ``config`` (its label), ``trials``, ``test_acc`` (mean),
    ``dp_epsilon`` (mean, NaN without DP-SGD), ``k`` and ``n`` (member canaries found and
    audited, over its seeds), ``tpr`` = k / n and its exact 95% interval ``lo``, ``hi``.
    Trials whose `canary_tpr_at_<fpr>` is null (canaries off, or too few non-member canaries
    for that FPR) are left out; an empty frame when none is left.
    """
    column = _column(fpr)
    ok = ok_trials(df)
    if column not in ok.columns or "canary_members" not in ok.columns:
        return pd.DataFrame()
    tpr = pd.to_numeric(ok[column], errors="coerce")
    ok = ok[np.isfinite(tpr.to_numpy(float))].copy()
    if ok.empty:
        return pd.DataFrame()
    members = pd.to_numeric(ok["canary_members"], errors="coerce")
    others = pd.to_numeric(ok.get("canary_non_members", members), errors="coerce")
    ok["canaries"] = (members + others).round().astype("Int64")
    settings = [s for s in GROUP_SETTINGS if s in ok.columns and ok[s].nunique(dropna=False) > 1]
    groups: dict[tuple, list[int]] = {}
    records = ok.to_dict("records")
    for i, record in enumerate(records):
        values = tuple(None if pd.isna(record[s]) else record[s] for s in settings)
        groups.setdefault((*values, config_key(record)), []).append(i)
    rows = []
    for (*values, key), members in groups.items():
        sel = ok.iloc[members]
        n = k = 0
        for _, trial in sel.iterrows():
            audited = int(round(float(trial["canary_members"]) * seed_count(trial)))
            n += audited
            k += int(round(float(trial[column]) * audited))
        lo, hi = clopper_pearson(k, n)
        epsilon = pd.to_numeric(sel["dp_epsilon"], errors="coerce") if "dp_epsilon" in sel else None
        one_run = _mean(sel, "eps_lb_one_run")
        rows.append(
            {
                **dict(zip(settings, values, strict=True)),
                "kind": configuration_kind(key),
                "config": config_label(records[members[0]]),
                "trials": len(sel),
                "test_acc": float(pd.to_numeric(sel["test_acc"]).mean()),
                "dp_epsilon": float(epsilon.mean()) if epsilon is not None else np.nan,
                "eps_one_run": one_run,
                "eps_one_run_max": _mean(sel, "eps_lb_one_run_max"),
                "k": k,
                "n": n,
                "tpr": k / n,
                "lo": lo,
                "hi": hi,
            }
        )
    return pd.DataFrame(rows).sort_values([*settings, "kind", "test_acc"], ignore_index=True)


def _mean(rows: pd.DataFrame, column: str) -> float:
    """Return the mean of a numeric column over `rows` (NaN where absent or all null)."""
    if column not in rows:
        return np.nan
    values = pd.to_numeric(rows[column], errors="coerce").dropna()
    return float(values.mean()) if len(values) else np.nan


@dataclass(frozen=True)
class DpCurve:
    """DP-SGD's canary TPR (and its interval's bounds) against accuracy: non-decreasing fits
    through the DP-SGD configurations, interpolated linearly, never extrapolated."""

    acc: np.ndarray
    tpr: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    weight: np.ndarray

    @property
    def acc_range(self) -> tuple[float, float]:
        """Return the lowest and highest DP-SGD accuracy: the curve's domain."""
        return float(self.acc.min()), float(self.acc.max())

    def at(self, acc: float) -> tuple[float, float, float] | None:
        """Return (TPR, lo, hi) of DP-SGD at accuracy ``acc``, or None outside its range."""
        low, high = self.acc_range
        if not low <= acc <= high:
            return None
        if low == high:  # one accuracy: the (pooled) point itself
            tpr, lo, hi = (float(np.average(y, weights=self.weight)) for y in self.series())
            return tpr, lo, hi
        values = []
        for y in self.series():
            fit = IsotonicRegression(increasing=True, out_of_bounds="nan")
            fit.fit(self.acc, y, sample_weight=self.weight)
            values.append(float(fit.predict([acc])[0]))
        return values[0], values[1], values[2]

    def series(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the three measured series (TPR, lo, hi) at the DP-SGD accuracies."""
        return self.tpr, self.lo, self.hi

    @classmethod
    def from_points(cls, points: pd.DataFrame) -> DpCurve:
        """Return the curve through `canary_configurations` rows (``test_acc``, ``tpr``,
        ``lo``, ``hi``, ``n``); raises ValueError for an empty frame."""
        if points.empty:
            raise ValueError("no DP-SGD point")
        return cls(
            acc=points["test_acc"].to_numpy(float),
            tpr=points["tpr"].to_numpy(float),
            lo=points["lo"].to_numpy(float),
            hi=points["hi"].to_numpy(float),
            weight=points["n"].to_numpy(float),
        )


def _dp_at(dp: pd.DataFrame, row: pd.Series, settings: list[str], column: str) -> float:
    """Return DP-SGD's `column` at `row`'s accuracy: the non-decreasing fit through the
    DP-SGD configurations under the same settings, interpolated, never extrapolated (NaN)."""
    same = np.ones(len(dp), dtype=bool)
    for s in settings:
        same &= (dp[s] == row[s]).to_numpy()
    points = dp[same & np.isfinite(dp[column].to_numpy(float))]
    if points.empty:
        return np.nan
    values = points[column].to_numpy(float)
    curve = DpCurve(
        points["test_acc"].to_numpy(float), values, values, values, points["n"].to_numpy(float)
    )
    at = curve.at(float(row["test_acc"]))
    return np.nan if at is None else at[0]


def verdict(lo: float, hi: float, band: tuple[float, float, float] | None) -> str:
    """Return the verdict of a defence whose TPR interval is [lo, hi] against DP-SGD's value
    and band (tpr, lo, hi) at the same accuracy (None: outside DP-SGD's range): `MORE` when
    lo exceeds the band's upper bound, `LESS` when hi is below its lower bound, `SAME` when
    they overlap, `OUTSIDE` without a band."""
    if band is None:
        return OUTSIDE
    _, dp_lo, dp_hi = band
    if lo > dp_hi:
        return MORE
    if hi < dp_lo:
        return LESS
    return SAME


def _settings(configs: pd.DataFrame) -> list[str]:
    return [s for s in GROUP_SETTINGS if s in configs.columns]


def compare_with_dp(configs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (DP-SGD's points, the other configurations compared with DP-SGD).

    ``configs`` is `canary_configurations`' frame. Each compared row gains ``dp_tpr``,
    ``dp_lo``, ``dp_hi`` (DP-SGD at its accuracy, NaN outside DP-SGD's range), ``ratio``,
    ``difference`` and ``verdict``; configurations are compared only with DP-SGD under the
    same settings. DP-SGD combined with another mechanism is in neither frame.
    """
    settings = _settings(configs)
    dp = configs[configs["kind"] == "dp"]
    others = configs[configs["kind"] == "defence"].copy()
    bands: list[tuple[float, float, float] | None] = []
    for _, row in others.iterrows():
        same = np.ones(len(dp), dtype=bool)
        for s in settings:
            same &= (dp[s] == row[s]).to_numpy()
        points = dp[same]
        bands.append(None if points.empty else DpCurve.from_points(points).at(row["test_acc"]))
    for column in ("dp_epsilon", "eps_one_run"):  # DP-SGD's at the same accuracy, alike
        others[f"dp_{column}"] = [_dp_at(dp, row, settings, column) for _, row in others.iterrows()]
    others["dp_tpr"] = [np.nan if b is None else b[0] for b in bands]
    others["dp_lo"] = [np.nan if b is None else b[1] for b in bands]
    others["dp_hi"] = [np.nan if b is None else b[2] for b in bands]
    others["ratio"] = [
        r["tpr"] / r["dp_tpr"] if np.isfinite(r["dp_tpr"]) and r["dp_tpr"] > 0 else np.nan
        for _, r in others.iterrows()
    ]
    others["difference"] = others["tpr"] - others["dp_tpr"]
    others["verdict"] = [
        verdict(r["lo"], r["hi"], band)
        for (_, r), band in zip(others.iterrows(), bands, strict=True)
    ]
    return dp.reset_index(drop=True), others.reset_index(drop=True)


def _interval(value: float, lo: float, hi: float) -> str:
    if not np.isfinite(value):
        return "None"
    return f"{fmt(value)} [{fmt(lo)}, {fmt(hi)}]"


def _optional(value: float) -> str:
    return fmt(value) if np.isfinite(value) else "None"


def _one_run(eps: float, ceiling: float) -> str:
    """Return the one-run epsilon bound with its ceiling, or "-" where it was not measured."""
    if not np.isfinite(eps):
        return "-"
    return f"{fmt(eps, 2)} ({fmt(ceiling, 2)})"


def _ratio(row: pd.Series) -> str:
    if np.isfinite(row["ratio"]):
        return f"{row['ratio']:.2f}x"
    return "None" if not np.isfinite(row["dp_tpr"]) else "- (DP-SGD 0)"


def _outside_note(row: pd.Series, dp: pd.DataFrame, settings: list[str]) -> str:
    same = np.ones(len(dp), dtype=bool)
    for s in settings:
        same &= (dp[s] == row[s]).to_numpy()
    accs = dp.loc[same, "test_acc"]
    if accs.empty:
        return f"{OUTSIDE} (no DP-SGD trial under these settings)"
    side = "above" if row["test_acc"] > accs.max() else "below"
    return f"{OUTSIDE} ({side} {fmt(accs.min())}-{fmt(accs.max())})"


def _audited(df: pd.DataFrame, column: str) -> str:
    """Return a sentence on how many member and non-member canaries each trial audited."""
    ok = ok_trials(df)
    used = ok[np.isfinite(pd.to_numeric(ok[column], errors="coerce").to_numpy(float))]

    def counts(name: str) -> str:
        if name not in used:
            return "?"
        values = sorted({int(v) for v in pd.to_numeric(used[name]).dropna()})
        return "/".join(map(str, values)) or "?"

    return (
        f"Each trial audits {counts('canary_members')} member and "
        f"{counts('canary_non_members')} non-member canaries."
    )


def defences_markdown(df: pd.DataFrame, fpr: str = "1pct") -> str:
    """Return the comparison of the completed trials in ``df`` as Markdown: a sentence of
    counts, the defences' table (verdicts per the module docstring) and DP-SGD's points.

    Raises AnalysisError, one line, when no trial has canary leakage at that FPR, none is
    DP-SGD alone, or none is anything else.
    """
    column, rate = _column(fpr), FPRS[fpr]
    configs = canary_configurations(df, fpr)
    if configs.empty:
        raise AnalysisError(
            f"no completed trial with canary leakage (`{column}`): run the sweep with "
            "attacks.canaries > 0, e.g. --space search_spaces/canaries.yaml"
            + (" (0.1% FPR needs 1,000 non-member canaries)" if fpr == "0p1pct" else "")
        )
    if not (configs["kind"] == "dp").any():
        raise AnalysisError(
            f"no DP-SGD trial (dp_noise > 0, no other mechanism) with canary leakage among "
            f"{len(configs)} configurations: nothing to compare with"
        )
    if not (configs["kind"] == "defence").any():
        raise AnalysisError("no trial without DP-SGD with canary leakage: nothing to compare")
    settings = _settings(configs)
    dp, others = compare_with_dp(configs)
    counts = others["verdict"].value_counts()
    inside = others[others["verdict"] != OUTSIDE]
    ratios = inside["ratio"].dropna()
    text = (
        f"Canary TPR at {rate} FPR (`{column}`) of {len(others)} configurations against "
        f"DP-SGD's at equal accuracy, from {len(dp)} DP-SGD configurations (accuracy "
        f"{fmt(dp['test_acc'].min())}-{fmt(dp['test_acc'].max())}): {MORE}: "
        f"{counts.get(MORE, 0)}, {LESS}: {counts.get(LESS, 0)}, {SAME}: "
        f"{counts.get(SAME, 0)}, {OUTSIDE}: {counts.get(OUTSIDE, 0)} (None: no extrapolation)."
    )
    if len(ratios):
        text += (
            f" Within the range the ratio to DP-SGD is {ratios.min():.2f}x-"
            f"{ratios.max():.2f}x (median {ratios.median():.2f}x)."
        )
    text += f" {_audited(df, column)}"
    dropped = int((configs["kind"] == "dp+").sum())
    if dropped:
        text += f" {dropped} configuration(s) combining DP-SGD with another mechanism left out."
    legend = (
        f"TPR: the share of member canaries the strongest attack finds at {rate} FPR, pooled "
        "over the configuration's seeds, with its exact 95% interval. DP-SGD at this "
        "accuracy: the non-decreasing fit through DP-SGD's points, interpolated linearly, with "
        "the band fitted through their intervals. Verdict: leaks more (less) than DP-SGD when "
        "the interval lies wholly above (below) DP-SGD's band; no clear difference when they "
        "overlap. One-run ε: the epsilon lower bound of the trial's own canaries (Steinke, "
        "Nasr & Jagielski 2023; mean over seeds), with the most its canaries can show; beside "
        "it DP-SGD's accountant epsilon (`dp_epsilon`) and one-run bound at the same accuracy, "
        "fitted and interpolated as the TPR is (None outside DP-SGD's accuracies)."
    )
    body = [
        [
            *[str(r[s]) for s in settings],
            r["config"],
            int(r["trials"]),
            fmt(r["test_acc"]),
            _interval(r["tpr"], r["lo"], r["hi"]),
            _interval(r["dp_tpr"], r["dp_lo"], r["dp_hi"]),
            _ratio(r),
            fmt(r["difference"]) if np.isfinite(r["difference"]) else "None",
            r["verdict"] if r["verdict"] != OUTSIDE else _outside_note(r, dp, settings),
            _one_run(r["eps_one_run"], r["eps_one_run_max"]),
            _optional(r["dp_dp_epsilon"]),
            _optional(r["dp_eps_one_run"]),
        ]
        for _, r in others.iterrows()
    ]
    header = [*settings, "configuration", "trials", "test_acc", f"canary TPR at {rate} FPR"]
    header += ["DP-SGD at this accuracy", "ratio", "difference", "verdict"]
    header += ["one-run ε (ceiling)", "DP-SGD's dp_epsilon here", "DP-SGD's one-run ε here"]
    dp_body = [
        [
            *[str(r[s]) for s in settings],
            r["config"],
            int(r["trials"]),
            fmt(r["test_acc"]),
            fmt(r["dp_epsilon"]),
            _interval(r["tpr"], r["lo"], r["hi"]),
            _one_run(r["eps_one_run"], r["eps_one_run_max"]),
        ]
        for _, r in dp.iterrows()
    ]
    dp_header = [*settings, "DP-SGD", "trials", "test_acc", "dp_epsilon"]
    dp_header += [f"canary TPR at {rate} FPR", "one-run ε (ceiling)"]
    return "\n\n".join(
        [
            text,
            legend,
            markdown_table(header, body),
            "DP-SGD's points:",
            markdown_table(dp_header, dp_body),
        ]
    )


def main(argv: list[str]) -> int:
    """Print and write the comparison of the sweeps in ``argv``; return the exit code."""
    parser = common.make_parser("analysis/defences.py", __doc__)
    parser.add_argument(
        "--fpr",
        choices=list(FPRS),
        default="1pct",
        help="the canary TPR's false-positive rate (default 1pct; 0p1pct needs 1,000 "
        "non-member canaries)",
    )
    parser.add_argument("--out", metavar="FILE", help="Markdown output file")
    args = parser.parse_args(argv)
    df = common.load_sweeps(args.dirs)
    text = "# Defences against DP-SGD at equal accuracy, on canaries\n\n"
    text += defences_markdown(df, args.fpr)
    out = Path(args.out) if args.out else Path(args.dirs[0]) / "defences.md"
    common.write_text(out, text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))
