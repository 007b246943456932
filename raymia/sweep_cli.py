"""`raymia sweep`: flags, their defaults from the space file, and the run. Ray loads lazily."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .errors import ConfigError


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_sweep_parser(subparsers: Any) -> None:
    """Add the `sweep` subcommand to the `raymia` parser."""
    p = subparsers.add_parser(
        "sweep",
        help="search mechanisms and strengths for the accuracy / privacy Pareto front",
        description="Run many trials with Ray Tune; Optuna searches the Pareto front.",
    )
    p.add_argument("--space", metavar="FILE", help="search space YAML (default: frontier)")
    p.add_argument("--samples", type=int, help="trials to run (optuna / random)")
    p.add_argument("--search", choices=["optuna", "grid", "random"])
    p.add_argument("--objectives", help="e.g. acc:max,adv:min,dtc_adv:min")
    p.add_argument("--sampler", choices=["nsga2", "tpe"], help="Optuna sampler")
    p.add_argument("--cpus-per-trial", type=_float, metavar="C")
    p.add_argument("--gpus-per-trial", type=_float, metavar="G", help="may be fractional")
    p.add_argument("--max-concurrent", type=int, metavar="K")
    p.add_argument("--address", help="join a running Ray cluster: auto or ray://host:port")
    p.add_argument("--out", metavar="DIR", help="sweep directory (default: runs/<time>)")
    p.add_argument("--resume", metavar="DIR", help="continue an interrupted sweep")
    p.add_argument("--sampler-seed", type=int, default=0, help="seeds the Optuna sampler")
    p.set_defaults(handler=cmd_sweep)


def settings_from_args(args: argparse.Namespace) -> tuple[Any, bool]:
    """Return (SweepSettings, resume) from the flags, the space file's defaults and built-ins."""
    from .space import load_space, shipped_space
    from .sweep import SweepSettings, load_settings

    if args.resume:
        out = Path(args.resume)
        if not out.is_dir():
            raise ConfigError(f"--resume {out}: no such directory")
        settings = load_settings(out)
        settings.out = str(out)
        if args.address:
            settings.address = args.address
        return settings, True
    space_path = Path(args.space) if args.space else shipped_space("frontier")
    space = load_space(space_path)
    defaults = space.sweep
    out = args.out or str(Path("runs") / time.strftime("sweep-%Y%m%d-%H%M%S"))

    def pick(flag: Any, from_space: Any, builtin: Any) -> Any:
        return flag if flag is not None else from_space if from_space is not None else builtin

    settings = SweepSettings(
        space=str(space_path),
        out=out,
        samples=pick(args.samples, defaults.samples, 16),
        search=pick(args.search, defaults.search, "optuna"),
        sampler=pick(args.sampler, defaults.sampler, "nsga2"),
        objectives=pick(args.objectives, defaults.objectives, "acc:max,adv:min,dtc_adv:min"),
        cpus_per_trial=pick(args.cpus_per_trial, defaults.cpus_per_trial, 1.0),
        gpus_per_trial=pick(args.gpus_per_trial, defaults.gpus_per_trial, 0.0),
        max_concurrent=pick(args.max_concurrent, defaults.max_concurrent, None),
        address=args.address,
        sampler_seed=args.sampler_seed,
    )
    return settings, False


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep the flags describe; print the Pareto front at the end."""
    settings, resume = settings_from_args(args)
    from .sweep import expected_trials, run_sweep
    from .tables import front_table

    started = time.perf_counter()
    df = run_sweep(settings, resume=resume)
    elapsed = time.perf_counter() - started
    counts = df["status"].value_counts().to_dict() if "status" in df else {}
    print(f"\nraymia: {len(df)} trials in {settings.out} ({counts}), {elapsed:.0f} s")
    print(f"Pareto front ({settings.objectives}):")
    print(front_table(df, settings.objective_list()))
    expected = expected_trials(settings)
    if len(df) < expected:
        print(
            f"raymia: sweep stopped after {len(df)} of {expected} trials; continue it with "
            f"raymia sweep --resume {settings.out}"
        )
        return 130
    return 0
