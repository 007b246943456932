"""Check: reference models trained as one batched ensemble audit a target as the sequentially
trained ones do.

Over `--seeds` seeds of the default digits trial with `attacks.lira_reference_models: K`
(offline LiRA and offline RMIA read all K; the first is also the shadow), each seed's trial
runs twice, `reference_training: ensemble` and `sequential`: the same target (its training
does not depend on the path), reference models trained either way. Printed per seed and
summarized: the reference models' test accuracy (mean over the K) and the LiRA and RMIA AUCs
on the target, each path's AUC beside the sequential one's 95% bootstrap interval. The
ensemble's models equal the sequential ones only to float rounding, which Adam carries on
over 30 epochs, so the check is that their figures agree within sampling error: the last
line counts the seeds whose ensemble AUCs fall inside the sequential AUCs' intervals.

    python benchmarks/ensemble_equivalence.py [--seeds 10] [--models 8]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from raymia.data.datasets import load_splits
from raymia.trial.config import parse_trial_config
from raymia.trial.reference_models import train_reference_models
from raymia.trial.runner import run_trial
from raymia.trial.train import accuracy

PATHS = ("sequential", "ensemble")


def settings(seed: int, k: int, path: str) -> dict:
    """The default digits trial with K offline reference models, trained along `path`."""
    return {
        "seed": seed,
        "device": "cpu",
        "reference_training": path,
        "attacks": {"lira_reference_models": k},
        "dtc": {"enabled": False},
    }


def reference_accuracy(seed: int, k: int, path: str) -> float:
    """Return the mean test accuracy of the trial's K reference models trained along `path`."""
    config = parse_trial_config(settings(seed, k, path))
    splits = load_splits("digits", seed)
    sizes = {"n_trained": len(splits.members), "n_held_out": len(splits.held_out)}
    models = train_reference_models(
        config, splits.info, splits.reference, k, torch.device("cpu"), **sizes
    )
    return statistics.fmean(accuracy(m, splits.test, torch.device("cpu")) for m in models)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--models", type=int, default=8, help="K reference models")
    args = parser.parse_args()
    inside = {"lira": 0, "rmia": 0}
    differences: dict[str, list[float]] = {"acc": [], "lira": [], "rmia": []}
    print(
        "| seed | ref. accuracy seq / ens | LiRA AUC seq [95%] / ens | RMIA AUC seq [95%] / ens |"
    )
    print("|---|---|---|---|")
    for seed in range(args.seeds):
        acc = {path: reference_accuracy(seed, args.models, path) for path in PATHS}
        rows = {path: run_trial(settings(seed, args.models, path)) for path in PATHS}
        for row in rows.values():
            if row["status"] != "ok":
                raise SystemExit(f"check: seed {seed} trial ended {row['status']}: {row['error']}")
        seq, ens = rows["sequential"], rows["ensemble"]
        assert seq["reference_training"] == "sequential" and ens["reference_training"] == "ensemble"
        if seq["test_acc"] != ens["test_acc"]:
            raise SystemExit(f"check: seed {seed}: the targets differ; no figure")
        cells = []
        for attack in ("lira", "rmia"):
            lo, hi = seq[f"{attack}_auc_lo"], seq[f"{attack}_auc_hi"]
            inside[attack] += lo <= ens[f"{attack}_auc"] <= hi
            differences[attack].append(ens[f"{attack}_auc"] - seq[f"{attack}_auc"])
            cells.append(
                f"{seq[f'{attack}_auc']:.3f} [{lo:.3f}, {hi:.3f}] / {ens[f'{attack}_auc']:.3f}"
            )
        differences["acc"].append(acc["ensemble"] - acc["sequential"])
        print(
            f"| {seed} | {acc['sequential']:.3f} / {acc['ensemble']:.3f} | {cells[0]} | "
            f"{cells[1]} |",
            flush=True,
        )
    print()
    for name, values in differences.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(
            f"{name}: ensemble - sequential, mean {statistics.fmean(values):+.4f}, "
            f"sd {spread:.4f}, largest {max(values, key=abs):+.4f}"
        )
    print(
        f"ensemble AUC inside the sequential 95% interval: LiRA {inside['lira']} of "
        f"{args.seeds}, RMIA {inside['rmia']} of {args.seeds}"
    )


if __name__ == "__main__":
    main()
