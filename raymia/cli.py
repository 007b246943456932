"""The `raymia` command line: `raymia trial` runs one trial, `raymia sweep` a search.

Bad input (a typo'd key, an out-of-range strength, a missing data root, a bad flag: any
`raymia.errors.UserError`; an unreadable, binary or mis-encoded file; a path naming the wrong
kind of thing; an alias bomb in YAML) ends with one line on stderr and exit code 2, never a
traceback, and the line quotes at most a bounded part of the input.
The parser imports nothing heavy: torch, pandas and Ray load only when a command runs, so
`raymia --help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from raymia.errors import ConfigError, UsageError, UserError, bound_quoted, one_line, show_path
from raymia.sweep.command import add_sweep_parser

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (and exit 2) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {bound_quoted(message)} (see {self.prog} --help)")


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
    _add_trial_settings(p)
    p.add_argument(
        "--save-model",
        metavar="DIR",
        help="also write the trained target (weights, config, member rows) to DIR, for "
        "`raymia audit DIR`",
    )
    p.set_defaults(handler=_cmd_trial)


def _add_audit_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "audit",
        help="measure a saved model again, or a model trained elsewhere",
        description="Measure a trained model's privacy as a trial does: `raymia audit DIR` "
        "for a model `raymia trial --save-model DIR` kept; `raymia audit --weights FILE "
        "--members FILE` with the data set, arch and recipe stated as for a trial, for one "
        "trained elsewhere (its reference models then follow the stated recipe: a claim).",
    )
    p.add_argument("dir", nargs="?", metavar="DIR", help="a directory --save-model wrote")
    p.add_argument("--weights", metavar="FILE", help="a state dict of the model (torch.save)")
    p.add_argument(
        "--members",
        metavar="FILE",
        help="the images it trained on: indices into the data set's training pool (an .npz's "
        "x) or a folder's image paths, as a JSON list or one per line",
    )
    _add_trial_settings(p)
    p.set_defaults(handler=_cmd_audit)


def _add_trial_settings(p: argparse.ArgumentParser) -> None:
    """Add the flags that state a trial's settings (--config, --dataset, --set, ...)."""
    p.add_argument("--config", metavar="FILE", help="YAML file with trial settings")
    # Written out so that --help imports no torch; a test checks it names
    # raymia.data.datasets.DATASETS.
    p.add_argument(
        "--dataset",
        help="digits (default), mnist-5k, fashion-mnist, cifar10, cifar100, synthetic-cifar10 "
        "(generated images, for cost only), or the PATH of an image folder (one sub-folder per "
        "class) or an .npz with x and y",
    )
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


def build_parser() -> argparse.ArgumentParser:
    """Return the `raymia` argument parser with its subcommands."""
    parser = _Parser(prog="raymia", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_trial_parser(sub)
    add_sweep_parser(sub)
    _add_audit_parser(sub)
    return parser


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def trial_config_from_args(args: argparse.Namespace) -> Any:
    """Return the validated TrialConfig that the trial flags describe."""
    from raymia.trial.config import apply_overrides, load_yaml, parse_trial_config

    data: dict[str, Any] = {}
    source = "--set"
    if args.config:
        loaded = load_yaml(args.config)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(
                f"{show_path(args.config)}: expected a mapping of settings at the top level"
            )
        data = loaded or {}
        source = show_path(args.config)
    for flag, key in (("dataset", "dataset"), ("seed", "seed"), ("data_root", "data_root")):
        if getattr(args, flag) is not None:
            data[key] = getattr(args, flag)
    if args.download:
        data["download"] = True
    data = apply_overrides(data, args.set)
    if args.config and args.set:
        source = f"{show_path(args.config)} with --set"
    return parse_trial_config(data, source)


def _cmd_trial(args: argparse.Namespace) -> int:
    from raymia.trial.runner import run_trial
    from raymia.trial.train import TrainingDiverged, resolve_device

    config = trial_config_from_args(args)
    resolve_device(config.device)  # a device that is not there fails here, before any work
    try:
        row = run_trial(config, threads=args.threads, save_model=args.save_model)
    except TrainingDiverged as err:
        print(f"raymia: trial diverged: {err}", file=sys.stderr)
        return 1
    return _print_row(row, args.json)


def _print_row(row: dict[str, Any], as_json: bool) -> int:
    """Print a trial's or an audit's row (JSON, or the short report); return exit code 0."""
    from raymia.results.labels import active_mechanisms

    row.pop("scores", None)
    if as_json:
        print(json.dumps({k: _json_safe(v) for k, v in row.items()}))
        return 0
    print(format_row(row, active_mechanisms(row)))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    import torch

    from raymia.trial.audit import CONFIG_FILE, audit_external, audit_saved

    external = args.weights is not None or args.members is not None
    if args.dir is not None and external:
        raise UsageError("raymia audit: give DIR, or --weights and --members, not both")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dir is not None:
        stated = args.config or args.dataset or args.set or args.seed is not None
        if stated:
            raise UsageError(
                f"raymia audit DIR: the settings come from DIR/{CONFIG_FILE}; --config, "
                "--dataset, --seed and --set are for --weights"
            )
        return _print_row(audit_saved(args.dir), args.json)
    if args.weights is None or args.members is None:
        raise UsageError("raymia audit: give DIR, or both --weights FILE and --members FILE")
    config = trial_config_from_args(args)
    return _print_row(audit_external(args.weights, args.members, config), args.json)


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _epochs(row: dict[str, Any]) -> str:
    """Return the epochs run, or n/a for a model audited rather than trained here."""
    return "n/a" if row.get("epochs_run") is None else str(row["epochs_run"])


def _dp_detail(row: dict[str, Any]) -> str:
    """Return " (accountant, delta)" for a DP-SGD row (both come with its config), else ""."""
    if not row.get("dp_accountant"):
        return ""
    return f" ({row['dp_accountant']}, delta {row['dp_delta']:g})"


_SYNTHETIC_NOTE = "SYNTHETIC images: for cost and throughput, not for conclusions about leakage"


def format_row(row: dict[str, Any], active: dict[str, float]) -> str:
    """Return a trial's result as a short human-readable report."""
    from raymia.data.datasets import DATASETS

    info = DATASETS.get(row["dataset"])
    synthetic = info is not None and info.synthetic
    lines = [
        f"dataset {row['dataset']}, seed {row['seed']}, mechanisms: {active or 'none'}",
        *([_SYNTHETIC_NOTE] if synthetic else []),
        f"test_acc {_num(row['test_acc'])}   train_acc {_num(row['train_acc'])}   "
        f"dp_epsilon {_num(row['dp_epsilon'], 2)}{_dp_detail(row)}   epochs {_epochs(row)}",
        "",
        f"{'attack':<18}{'adv':>7}  {'95% CI':<15}{'AUC':>7}{'null q95':>10}{'p':>8}"
        f"{'calibrated':>12}",
    ]
    from raymia.attacks import REGISTRY as ATTACKS

    for name in (a for a in ATTACKS if f"{a}_adv" in row and f"{a}_auc" in row):
        lo, hi = row.get(f"{name}_adv_lo"), row.get(f"{name}_adv_hi")
        ci = f"[{_num(lo, 2)}, {_num(hi, 2)}]" if lo is not None else "n/a"
        lines.append(
            f"{name:<18}{_num(row[f'{name}_adv']):>7}  {ci:<15}{_num(row[f'{name}_auc']):>7}"
            f"{_num(row.get(f'{name}_adv_null_q95')):>10}{_num(row.get(f'{name}_adv_p')):>8}"
            f"{_num(row.get(f'{name}_adv_calibrated')):>12}"
        )
    lines.append(f"{'loss (Yeom)':<18}{_num(row.get('loss_yeom_adv')):>7}")
    lines.append(f"best attack advantage (adv): {_num(row.get('adv'))}")
    if row.get("eps_lb_one_run") is not None:
        lines.append(
            f"one-run epsilon bound: {_num(row['eps_lb_one_run'], 2)} (ceiling at "
            f"{row['canary_members'] + row['canary_non_members']} canaries "
            f"{_num(row['eps_lb_one_run_max'], 2)}; {row['eps_lb_one_run_correct']} of "
            f"{row['eps_lb_one_run_guesses']} guesses right, {row['eps_lb_one_run_attack']})"
        )
    if "dtc_auc" in row:
        lines.append(
            f"DtC: auc {_num(row['dtc_auc'])}, adv {_num(row['dtc_adv'])}, median member "
            f"{_num(row['dtc_median_member'])} / non-member {_num(row['dtc_median_non_member'])}"
            f", censored {_num(row['dtc_censored'])}"
        )
    reference = row.get("reference_seconds")
    trained = row.get("train_seconds")
    lines.append(
        (f"train {trained:.1f} s, " if trained is not None else "")
        + f"measure {row['measure_seconds']:.1f} s"
        + (f" (of it reference models {reference:.1f} s)" if reference else "")
    )
    if row.get("audit"):
        lines.append(f"audit ({row['audit']}): reference models follow {row['reference_recipe']}")
    return "\n".join(lines)


def _report(message: str) -> None:
    """Print `message` (one line) on stderr, escaping what the stream cannot encode (a path
    or value holding undecodable bytes)."""
    try:
        print(message, file=sys.stderr)
    except UnicodeEncodeError:
        print(message.encode("ascii", "backslashreplace").decode("ascii"), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code: 2 for bad input (any UserError, or an
    OSError naming a path, reported in one bounded line without a traceback)."""
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except UserError as err:
        _report(f"raymia: error: {one_line(err)}")
        return getattr(err, "exit_code", EXIT_BAD_INPUT)
    except OSError as err:
        if err.filename is None:  # not about a path the user gave: keep the traceback
            raise
        _report(f"raymia: error: {show_path(err.filename)}: {err.strerror or one_line(err)}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("raymia: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
