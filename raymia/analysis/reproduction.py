"""Does the study reproduce? Our measured tables for each of its findings, and a verdict.

Usage::

    python analysis/reproduction.py DIR [DIR ...] [--out FILE]

Give it the sweeps of `search_spaces/paper.yaml` (each mechanism alone, several seeds) and of
`search_spaces/combinations.yaml`. For each finding of Kaya, Hong & Dumitras (2020) it prints
the numbers that bear on it and whether they reproduce it, by these rules (means over seeds):

1. *Label smoothing can raise attack advantage*: some label-smoothing strength has a mean
   ``adv`` above the baseline's mean plus one baseline standard deviation.
2. *DP-SGD lowers advantage at an accuracy cost*: the strongest DP-SGD noise has both a lower
   mean ``adv`` and a lower mean test accuracy than the baseline.
3. *Some combination beats the best single mechanism*: `analysis/configurations.py`'s rule says
   "yes" for at least one combination.
4. *DtC still separates members where the attacks fail*: trials where the best attack's
   advantage does not clear the null of the maximum over attacks (``adv_p`` > 0.05) but DtC's
   does (members closer to confident, ``dtc_adv_p`` < 0.05); "weak evidence" when that count
   is within about twice what chance alone gives (+1).

Findings 1-3 are judged against the nulls too: a raised advantage must also clear its null,
and every table counts the trials whose leakage clears a null (``leaks``). A section states
the measured size of the nulls. Where the rows have them, the tables add the strong attacks'
advantages (``rmia_adv``, ``rmia_online_adv``, ``lira_online_adv``) and the canaries' TPR at
1% FPR (pooled over seeds, with its exact interval).

Give it the sweep of `search_spaces/canaries.yaml` too, and a last section sets each defence
beside DP-SGD at equal accuracy on canary leakage (`analysis/defences.py`, after Aerni, Zhang
& Tramer 2024). A canary trial's model also trains on mislabeled images, so the findings read
the trials without canaries (all trials when every one has canaries) and the last section
the trials with them.

Trials of several data sets give one part per data set, in the order they first appear,
each with its own findings, tables and nulls. Writes Markdown to FILE (default: the first
DIR's ``reproduction.md``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from raymia.analysis import common
from raymia.analysis.configurations import SETTINGS, mechanism_summary
from raymia.analysis.defences import canary_configurations, defences_markdown
from raymia.errors import AnalysisError, ResultsError
from raymia.privacy.metrics import null_advantage
from raymia.results.labels import add_labels
from raymia.results.rows import load_scores, ok_trials
from raymia.results.tables import fmt, markdown_table

ALPHA = 0.05


def _rows(summary: pd.DataFrame, prefix: str) -> pd.DataFrame:
    keep = (summary["kind"] == "baseline") | summary["config"].str.startswith(prefix)
    return summary[keep & summary["kind"].isin(["baseline", "single"])]


#: The strong attacks whose advantage the tables show beside the loss attack's, when measured.
STRONG_ATTACKS = ("rmia", "rmia_online", "lira_online")


def _mean_std(row: pd.Series, metric: str) -> str:
    return f"{fmt(row.get(f'{metric}_mean'))} ± {fmt(row.get(f'{metric}_std'))}"


def _measured(rows: pd.DataFrame, column: str) -> bool:
    """True when ``column`` is in ``rows`` with a finite value."""
    return column in rows and bool(np.isfinite(pd.to_numeric(rows[column]).to_numpy(float)).any())


def _table(rows: pd.DataFrame) -> str:
    """Return the per-configuration table: accuracy, the best attack's and the loss attack's
    advantage, each strong attack's (`STRONG_ATTACKS`) and the canaries' TPR at 1% FPR
    (``canary``: pooled over seeds, exact interval; `raymia.analysis.defences`) where the
    rows have them, DtC's, the null and the count of trials that leak."""
    strong = [a for a in STRONG_ATTACKS if _measured(rows, f"{a}_adv_mean")]
    canary = _measured(rows, "canary_tpr")
    body = []
    for _, r in rows.iterrows():
        cells = [
            r["config"],
            int(r["n"]),
            _mean_std(r, "test_acc"),
            _mean_std(r, "adv"),
            _mean_std(r, "loss_adv"),
            *[_mean_std(r, f"{a}_adv") for a in strong],
        ]
        if canary:
            value = r.get("canary_tpr")
            cells.append(
                f"{fmt(value)} [{fmt(r['canary_lo'])}, {fmt(r['canary_hi'])}]"
                if value is not None and np.isfinite(value)
                else "-"
            )
        cells += [
            _mean_std(r, "dtc_adv"),
            fmt(r.get("adv_null_q95_mean")),
            f"{r['leaks']}/{int(r['n'])}",
        ]
        body.append(cells)
    header = ["configuration", "n", "test_acc", "adv (best attack)", "loss_adv"]
    header += [f"{a}_adv" for a in strong]
    header += ["canary TPR at 1% FPR"] if canary else []
    header += ["dtc_adv", "adv null q95", "leaks"]
    return markdown_table(header, body)


def _null_bar(row: pd.Series) -> float:
    """Return the mean null 95th percentile of `adv` for a summary row (0 when unmeasured)."""
    value = row.get("adv_null_q95_mean")
    return float(value) if value is not None and np.isfinite(value) else 0.0


def label_smoothing(summary: pd.DataFrame) -> tuple[str, str]:
    """Return (verdict, section) for finding 1."""
    rows = _rows(summary, "label_smoothing")
    base = summary[summary["kind"] == "baseline"].iloc[0]
    bar = base["adv_mean"] + (base["adv_std"] if np.isfinite(base["adv_std"]) else 0.0)
    ls = rows[rows["kind"] == "single"]
    if ls.empty:
        return "not measured", "No label-smoothing trial was given (run paper.yaml)."
    raised = ls[(ls["adv_mean"] > bar) & (ls["adv_mean"] > ls.apply(_null_bar, axis=1))]
    verdict = "reproduced" if len(raised) else "not reproduced"
    text = f"Baseline mean adv {fmt(base['adv_mean'])} (+1 sd = {fmt(bar)}). " + (
        f"Label smoothing at {', '.join(raised['config'])} raises it above that and above "
        "its own null (`adv null q95`, the 95th percentile of the best attack's advantage on "
        "label-permuted data)."
        if len(raised)
        else "No label-smoothing strength raises the mean advantage above that bar and its null."
    )
    return verdict, text + "\n\n" + _table(rows)


def dp_sgd(summary: pd.DataFrame) -> tuple[str, str]:
    """Return (verdict, section) for finding 2."""
    rows = _rows(summary, "dp_noise")
    base = summary[summary["kind"] == "baseline"].iloc[0]
    dp = rows[rows["kind"] == "single"].copy()
    if dp.empty:
        return "not measured", "No DP-SGD trial was given (run paper.yaml)."
    dp["noise"] = dp["config"].str.extract(r"dp_noise=([0-9.]+)")[0].astype(float)
    strongest = dp.sort_values("noise").iloc[-1]
    lower_adv = strongest["adv_mean"] < base["adv_mean"]
    lower_acc = strongest["test_acc_mean"] < base["test_acc_mean"]
    verdict = "reproduced" if lower_adv and lower_acc else "not reproduced"
    text = (
        f"Strongest DP-SGD ({strongest['config']}): mean adv {fmt(strongest['adv_mean'])} vs "
        f"baseline {fmt(base['adv_mean'])}; mean test accuracy "
        f"{fmt(strongest['test_acc_mean'])} vs {fmt(base['test_acc_mean'])}. Leakage above "
        f"a null in {strongest['leaks']} of its {int(strongest['n'])} trials (baseline: "
        f"{base['leaks']} of {int(base['n'])})."
    )
    return verdict, text + "\n\n" + _table(rows)


def combinations(summary: pd.DataFrame) -> tuple[str, str]:
    """Return (verdict, section) for finding 3."""
    combos = summary[summary["kind"] == "combination"]
    if combos.empty:
        return "not measured", "No combination trials were given (run combinations.yaml)."
    wins = combos[combos["beats"] == "yes"]
    verdict = "reproduced" if len(wins) else "not reproduced"
    body = [
        [
            r["config"],
            int(r["n"]),
            fmt(r["test_acc_mean"]),
            fmt(r["adv_mean"]),
            r["beats"],
            r["beats_detail"],
        ]
        for _, r in combos.iterrows()
    ]
    header = ["combination", "n", "test_acc", "adv", "beats best single?", "compared with"]
    text = (
        f"{len(wins)} of {len(combos)} combinations beat the best single mechanism at equal "
        "accuracy."
    )
    return verdict, text + "\n\n" + markdown_table(header, body)


def _attack_p(trial: pd.Series, attacks: list[str]) -> float | None:
    """Return the p-value that the attacks leak: the null of their maximum (`adv_p`) where the
    row has it, else (older rows) the smallest single-attack p-value."""
    pvalues = [trial.get("adv_p")] if "adv_p" in trial else []
    if not pvalues or pvalues[0] is None or not np.isfinite(pvalues[0]):
        pvalues = [trial.get(f"{a}_adv_p") for a in attacks]
    if any(p is None or not np.isfinite(p) for p in pvalues):
        return None
    return float(min(pvalues))


def _dtc_p(trial: pd.Series, n_permutations: int) -> float | None:
    """Return DtC's permutation p-value: the row's `dtc_adv_p`, else from the saved scores."""
    p = trial.get("dtc_adv_p")
    if p is not None and np.isfinite(p):
        return float(p)
    try:
        scores = load_scores(Path(trial["sweep_dir"]), trial["trial_id"])
    except ResultsError:
        return None
    measured = scores["dtc"].notna().to_numpy()
    distance = scores["dtc"].to_numpy(float)[measured]
    is_member = scores["is_member"].to_numpy(bool)[measured]
    return null_advantage(-distance, is_member, n_permutations=n_permutations, seed=0).p_value


def dtc_where_attacks_fail(df: pd.DataFrame, n_permutations: int = 500) -> tuple[str, str]:
    """Return (verdict, section) for finding 4."""
    ok = ok_trials(df)
    attacks = common.attacks_in(ok)
    rows, hits, failing = [], 0, 0
    for _, trial in ok.iterrows():
        attack_p = _attack_p(trial, attacks)
        if attack_p is None or attack_p <= ALPHA:
            continue  # unjudged, or the attacks already show leakage
        failing += 1
        dtc_p = _dtc_p(trial, n_permutations)
        separates = dtc_p is not None and dtc_p < ALPHA and trial["dtc_auc"] > 0.5
        hits += separates
        if separates:
            rows.append(
                [
                    trial["trial_id"],
                    trial["config"],
                    fmt(trial["test_acc"]),
                    fmt(attack_p),
                    fmt(trial["dtc_auc"]),
                    fmt(dtc_p),
                ]
            )
    weak = hits <= 2 * failing * ALPHA + 1
    verdict = "not reproduced" if not hits else "weak evidence" if weak else "reproduced"
    text = (
        f"{failing} of {len(ok)} completed trials show no attack advantage above the null "
        f"of the best attack (`adv_p` > {ALPHA}: labels permuted, every attack recomputed, "
        f"the maximum taken); in {hits} of them DtC still separates members from non-members "
        f"(members closer, DtC's own permutation p < {ALPHA}); by chance alone about "
        f"{failing * ALPHA:.1f} of {failing} would, so {hits} is "
        f"{'weak' if weak else 'clear'} evidence."
    )
    above = ok[pd.to_numeric(ok["dtc_adv"]) > pd.to_numeric(ok["adv"])]
    text += (
        f" For comparison, DtC's advantage exceeds the best attack's in {len(above)} of "
        f"{len(ok)} trials ({', '.join(sorted(above['mechanisms_on'].unique())) or 'none'}); "
        "DtC is measured on fewer samples (`dtc.max_samples`), which inflates an optimistic "
        "advantage (its own null, `dtc_adv_null_q95`, is larger), so that count is an upper "
        "bound."
    )
    if rows:
        header = ["trial", "configuration", "test_acc", "attacks' p", "dtc_auc", "dtc p"]
        text += "\n\n" + markdown_table(header, rows)
    return verdict, text


def null_sizes(df: pd.DataFrame) -> str:
    """Return a section stating the measured size of the nulls in these trials.

    For one attack (the loss attack's `loss_adv_null_q95`), the maximum over the attacks
    (`adv_null_q95`) and DtC (`dtc_adv_null_q95`): mean and range over completed trials, with
    the evaluation set's size per side (`eval_members`) and DtC's measured samples.
    """
    ok = ok_trials(df)
    lines = []
    for column, what in (
        ("loss_adv_null_q95", "one attack (loss)"),
        ("adv_null_q95", "the maximum over the attacks (`adv`)"),
        ("dtc_adv_null_q95", "DtC (`dtc_adv`)"),
    ):
        if column not in ok:
            continue
        values = pd.to_numeric(ok[column], errors="coerce").dropna()
        if values.empty:
            continue
        lines.append(
            f"- {what}: 95th percentile of the no-leakage advantage {fmt(values.mean())} on "
            f"average (range {fmt(values.min())}-{fmt(values.max())}, {len(values)} trials)"
        )
    if not lines:
        return "These trials carry no permutation nulls."
    sizes = []
    if "eval_members" in ok:
        sizes.append(f"{pd.to_numeric(ok['eval_members']).median():.0f} members per side")
    head = "Measured on these trials' own scores (labels permuted, statistic recomputed"
    head += f"; {', '.join(sizes)})" if sizes else ")"
    return head + ":\n\n" + "\n".join(lines)


def canary_trials(df: pd.DataFrame) -> pd.Series:
    """Return which rows of ``df`` ran with canaries (``canary_members`` > 0), on its index."""
    if "canary_members" not in df:
        return pd.Series(False, index=df.index)
    return pd.to_numeric(df["canary_members"], errors="coerce").fillna(0) > 0


def with_canaries(summary: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Return ``summary`` (`mechanism_summary` of ``df``) with each configuration's canary TPR
    at 1% FPR, pooled over its seeds (`raymia.analysis.defences.canary_configurations`):
    ``canary_tpr``, ``canary_lo``, ``canary_hi``; ``summary`` itself when no trial has it."""
    configs = canary_configurations(df)
    if configs.empty:
        return summary
    keys = ["config"] + [s for s in SETTINGS if s in summary.columns and s in configs.columns]
    canary = configs[[*keys, "tpr", "lo", "hi"]].drop_duplicates(keys)
    canary = canary.rename(columns={"tpr": "canary_tpr", "lo": "canary_lo", "hi": "canary_hi"})
    return summary.merge(canary, on=keys, how="left")


def defences_section(df: pd.DataFrame) -> str:
    """Return the section comparing each defence with DP-SGD at equal accuracy on canaries
    (`raymia.analysis.defences`), or a line saying why it is not measured."""
    try:
        return defences_markdown(df)
    except AnalysisError as err:
        return f"Not measured: {err}."


def dataset_part(everything: pd.DataFrame, sources: str) -> tuple[list[str], int]:
    """Return (Markdown lines, lines of its summary) of the study's findings on one data set's
    trials, `everything` (with labels; canary trials among them), read from `sources`."""
    # A canary trial's model also trains on mislabeled images: the findings read the other
    # trials where there are any, the canary section the canary trials.
    canaries = canary_trials(everything)
    df = everything[~canaries] if len(ok_trials(everything[~canaries])) else everything
    summary = with_canaries(mechanism_summary(df), df)
    datasets = ", ".join(sorted(map(str, ok_trials(everything)["dataset"].dropna().unique())))
    if not (summary["kind"] == "baseline").any():
        raise AnalysisError(
            f"no baseline trial (no mechanism on) on {datasets} in these sweeps; run paper.yaml"
        )
    findings = [
        ("Label smoothing can raise attack advantage", label_smoothing(summary)),
        ("DP-SGD lowers advantage at an accuracy cost", dp_sgd(summary)),
        ("Some combination beats the best single mechanism", combinations(summary)),
        ("DtC still separates members where the attacks fail", dtc_where_attacks_fail(df)),
    ]
    ok = ok_trials(df)
    apart = len(ok_trials(everything)) - len(ok)
    lines = [
        f"# Reproducing Kaya, Hong & Dumitras (2020) on {datasets}",
        "",
        f"{len(ok)} completed trials from {sources}"
        + (f" (and {apart} with canaries, read by the last section alone)" if apart else "")
        + f"; data set(s) {datasets}, seeds "
        f"{', '.join(map(str, sorted(ok['seed'].unique())))}. Written by "
        "`analysis/reproduction.py`; means ± standard deviations over seeds.",
        "",
        "| finding | verdict |",
        "|---|---|",
        *[f"| {name} | {verdict} |" for name, (verdict, _) in findings],
        "",
    ]
    head = len(lines) - 1
    for i, (name, (verdict, section)) in enumerate(findings, start=1):
        lines += [f"## {i}. {name}: {verdict}", "", section, ""]
    singles = summary[summary["kind"].isin(["baseline", "single"])]
    lines += [
        "## Every mechanism alone",
        "",
        "Each single-mechanism configuration beside the baseline (the rows behind the findings "
        "above, weight decay and DP-SGD among them).",
        "",
        _table(singles),
        "",
        "## The size of the nulls",
        "",
        null_sizes(df),
        "",
        "## Defences against DP-SGD at equal accuracy, on canaries",
        "",
        "After Aerni, Zhang & Tramer (2024), from the trials run with canaries "
        "(`search_spaces/canaries.yaml`; `analysis/defences.py` gives the rules).",
        "",
        defences_section(everything[canaries] if canaries.any() else everything),
        "",
    ]
    return lines, head


def _by_dataset(df: pd.DataFrame) -> list[pd.DataFrame]:
    """Return the rows of each data set the completed trials used, in order of appearance (all
    rows as one part when they used one data set or do not say which)."""
    datasets = ok_trials(df)["dataset"].dropna().unique() if "dataset" in df else []
    if len(datasets) <= 1:
        return [df]
    return [df[df["dataset"] == d] for d in datasets]


def main(argv: list[str]) -> int:
    parser = common.make_parser("analysis/reproduction.py", __doc__)
    parser.add_argument("--out", metavar="FILE", help="Markdown output file")
    args = parser.parse_args(argv)
    everything = add_labels(common.load_sweeps(args.dirs))
    lines: list[str] = []
    for rows in _by_dataset(everything):
        sources = ", ".join(d for d in map(str, args.dirs) if (rows["sweep_dir"] == d).any())
        part, head = dataset_part(rows, sources)
        lines += part
        print("\n".join(part[:head]))
    out = Path(args.out) if args.out else Path(args.dirs[0]) / "reproduction.md"
    common.write_text(out, "\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))
