"""The `raymia` command line: `raymia trial` runs one trial, `raymia sweep` a search.

Bad input (a typo'd key, an out-of-range strength, a missing data root, a bad flag) ends with
one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .config import ConfigError, apply_overrides, load_yaml, parse_trial_config
from .data import DataError
from .results import ResultsError
from .sweep_cli import add_sweep_parser

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad command-line input; the message is the one line the user sees."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (and exit 2) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _add_trial_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "trial",
        help="train one model under a set of mechanisms and measure it",
        description="Train one model and print its accuracy, privacy and cost.",
    )
    p.add_argument("--config", metavar="FILE", help="YAML file with trial settings")
    p.add_argument("--dataset", help="digits (default), fashion-mnist, cifar10, cifar100")
    p.add_argument("--seed", type=int, help="fixes the splits and the training randomness")
    p.add_argument("--data-root", metavar="DIR", help="where torchvision data sets live")
    p.add_argument("--download", action="store_true", help="fetch the data set if absent")
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a setting or mechanism strength, e.g. --set label_smoothing=0.1 (repeatable)",
    )
    p.add_argument("--threads", type=_positive_int, help="torch CPU threads (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_trial)


def build_parser() -> argparse.ArgumentParser:
    """Return the `raymia` argument parser with its subcommands."""
    parser = _Parser(prog="raymia", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_trial_parser(sub)
    add_sweep_parser(sub)
    return parser


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def trial_config_from_args(args: argparse.Namespace) -> Any:
    """Return the validated TrialConfig that the trial flags describe."""
    data: dict[str, Any] = {}
    source = "--set"
    if args.config:
        loaded = load_yaml(args.config)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{args.config}: expected a mapping of settings at the top level")
        data = loaded or {}
        source = args.config
    for flag, key in (("dataset", "dataset"), ("seed", "seed"), ("data_root", "data_root")):
        if getattr(args, flag) is not None:
            data[key] = getattr(args, flag)
    if args.download:
        data["download"] = True
    data = apply_overrides(data, args.set)
    if args.config and args.set:
        source = f"{args.config} with --set"
    return parse_trial_config(data, source)


def _cmd_trial(args: argparse.Namespace) -> int:
    from .train import TrainingDiverged
    from .trial import run_trial

    config = trial_config_from_args(args)
    try:
        row = run_trial(config, threads=args.threads)
    except TrainingDiverged as err:
        print(f"raymia: trial diverged: {err}", file=sys.stderr)
        return 1
    row.pop("scores", None)
    if args.json:
        print(json.dumps({k: _json_safe(v) for k, v in row.items()}))
        return 0
    shown = [k for k in row if k.endswith(("_acc", "_adv", "_auc", "_epsilon", "seconds"))]
    active = config.mechanisms.active()
    print(f"dataset {row['dataset']}, seed {row['seed']}, mechanisms: {active or 'none'}")
    for key in shown:
        value = row[key]
        text = "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else value
        print(f"  {key:<28} {text}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code (2 for bad input)."""
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except (UsageError, ConfigError, DataError, ResultsError) as err:
        print(f"raymia: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("raymia: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
