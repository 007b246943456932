"""Benchmark: does a cheaper attack setting keep the attack's power? Defaults against variants.

Trains one trial per seed on a data set (default mnist-5k) and measures it under the default
attack settings and under each variant (`--variant NAME:KEY=VALUE[,KEY=VALUE]`, trial settings
as `raymia trial --set` takes them), on the same trained target: the measurement is re-run,
not the training. For each attack column asked for (`--columns`, default Merlin's AUC and
advantage, RMIA's and DtC's), it prints the default's value with its 95% interval where the row has
one, each variant's value, whether it lies inside the default's interval, and the seconds
each measurement took apart from training the shadow and reference models.

    python benchmarks/attack_power.py [--dataset mnist-5k] [--seeds 0,1,2] [--device cpu]
        --variant merlin20:attacks.merlin_neighbours=20 --variant dtc250:dtc.max_samples=250

`--baseline KEY=VALUE[,KEY=VALUE]` measures the reference row under those settings instead
(for example the defaults before a change) and the current defaults as a variant beside it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

COLUMNS = ("merlin_auc", "merlin_adv", "rmia_auc", "rmia_adv", "dtc_auc", "dtc_adv")


def parse_variant(text: str) -> tuple[str, list[str]]:
    """Return (name, [KEY=VALUE, ...]) of `NAME:KEY=VALUE[,KEY=VALUE]`."""
    name, _, settings = text.partition(":")
    items = [s for s in settings.split(",") if s.strip()]
    if not name or not items or not all("=" in s for s in items):
        raise SystemExit(f"--variant {text!r}: expected NAME:KEY=VALUE[,KEY=VALUE]")
    return name, items


def inside(row: dict[str, Any], column: str, value: float | None) -> str:
    """Return 'yes'/'no' for `value` within the default row's 95% interval of `column`, or
    'n/a' where the row has none."""
    lo, hi = row.get(f"{column}_lo"), row.get(f"{column}_hi")
    if value is None or lo is None or hi is None:
        return "n/a"
    return "yes" if lo <= value <= hi else "no"


def measure(config: dict[str, Any], splits: Any, model: Any, device: Any) -> dict[str, Any]:
    """Return the measurement columns of `model` under `config`, with the seconds the
    measurement took apart from training the shadow and reference models (`seconds`)."""
    from raymia.trial.config import parse_trial_config
    from raymia.trial.measure import measure_privacy

    parsed = parse_trial_config(config)
    started = time.perf_counter()
    columns, _ = measure_privacy(parsed, splits, model, splits.members, device)
    columns["seconds"] = time.perf_counter() - started - columns["reference_seconds"]
    return columns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, help="the target's epochs (default: the data set's)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...")
    parser.add_argument("--columns", default=",".join(COLUMNS))
    parser.add_argument("--baseline", metavar="KEY=VALUE,...", help="the reference row's settings")
    args = parser.parse_args(argv)
    variants = dict(parse_variant(v) for v in args.variant)
    baseline: list[str] = []
    if args.baseline:
        baseline = parse_variant(f"baseline:{args.baseline}")[1]
        variants = {"defaults": [], **variants}
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]

    from raymia.trial.config import apply_overrides, parse_trial_config
    from raymia.trial.runner import prepare_data
    from raymia.trial.train import resolve_device, train_model

    base: dict[str, Any] = {"dataset": args.dataset, "device": args.device}
    if args.epochs:
        base["epochs"] = args.epochs
    print(f"| seed | setting | seconds | {' | '.join(columns)} |")
    print("|---" * (len(columns) + 3) + "|")
    for seed in [int(s) for s in args.seeds.split(",")]:
        config = {**base, "seed": seed}
        parsed = parse_trial_config(config)
        splits, _ = prepare_data(parsed)
        device = resolve_device(parsed.device)
        model = train_model(
            parsed, splits.info, splits.members, held_out=splits.held_out, device=device
        ).model
        default = measure(apply_overrides(config, baseline), splits, model, device)

        def cell(row: dict[str, Any], column: str, ref: dict[str, Any] | None) -> str:
            value = row.get(column)
            if value is None:
                return "n/a"
            if ref is None:
                lo, hi = row.get(f"{column}_lo"), row.get(f"{column}_hi")
                span = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
                return f"{value:.3f}{span}"
            return f"{value:.3f} (in: {inside(ref, column, value)})"

        print(
            f"| {seed} | {'baseline' if baseline else 'default'} | {default['seconds']:.1f} | "
            + " | ".join(cell(default, c, None) for c in columns)
            + " |",
            flush=True,
        )
        for name, items in variants.items():
            row = measure(apply_overrides(config, items), splits, model, device)
            print(
                f"| {seed} | {name} | {row['seconds']:.1f} | "
                + " | ".join(cell(row, c, default) for c in columns)
                + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
