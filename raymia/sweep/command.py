"""`raymia sweep`: flags, their defaults from the space file, and the run. Ray loads lazily.

A setting comes from its flag, else the space file's ``sweep:`` block, else the default of
`raymia.sweep.settings.SweepSettings` (the one place the sweep's defaults live).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from raymia.errors import ConfigError, show_path
from raymia.sweep.settings import (
    DEFAULT_BUDGETS,
    SETTINGS_FILE,
    SweepSettings,
    budgets_argument,
    default_out,
    flag,
    flagged,
    setting_type,
)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


#: A flag's argparse type by its setting's type.
_FLAG_TYPES = {int: int, float: _float, str: str}


def _default_text(spec: dataclasses.Field) -> str:
    """Return a setting's default as its flag's help shows it."""
    value = spec.default
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def add_sweep_parser(subparsers: Any) -> None:
    """Add the `sweep` subcommand to the `raymia` parser."""
    p = subparsers.add_parser(
        "sweep",
        help="search mechanisms and strengths for the accuracy / privacy Pareto front",
        description="Run many trials with Ray Tune; Optuna searches the Pareto front.",
    )
    for spec in flagged():
        rule = spec.metadata
        default = rule["default_text"] or _default_text(spec)
        help_text = f"{rule['help']} (default {default})" if rule["help"] else f"default {default}"
        p.add_argument(
            flag(spec.name),
            type=None if rule["choices"] else _FLAG_TYPES[setting_type(spec.name)],
            choices=rule["choices"],
            metavar=rule["metavar"],
            help=help_text,
        )
    p.add_argument(
        "--budgets",
        type=budgets_argument,
        default=DEFAULT_BUDGETS,
        metavar="POINTS",
        help="accuracy budgets the answer reads, in points of test accuracy given up against "
        f"the undefended model (default {','.join(f'{b:g}' for b in DEFAULT_BUDGETS)})",
    )
    p.add_argument("--resume", metavar="DIR", help="continue an interrupted sweep")
    p.set_defaults(handler=cmd_sweep)


def settings_from_args(args: argparse.Namespace) -> tuple[SweepSettings, bool]:
    """Return (SweepSettings, resume) from the flags, the space file's defaults and built-ins."""
    from raymia.sweep.settings import load_settings
    from raymia.sweep.space import load_space, shipped_space

    if args.resume:
        out = Path(args.resume)
        fixed = [s.name for s in flagged(fixed=True) if getattr(args, s.name) is not None]
        if fixed:
            free = [flag(s.name) for s in flagged(fixed=False)]
            raise ConfigError(
                f"--resume {out}: {', '.join(map(flag, fixed))} cannot change on resume (the "
                f"sweep keeps the settings in {out / SETTINGS_FILE}); only "
                f"{' and '.join(free)} can be given"
            )
        from raymia.sweep.storage import is_uri, open_sweep

        if not is_uri(args.resume) and not out.is_dir():
            kind = "is a file, not a sweep directory" if out.exists() else "no such directory"
            raise ConfigError(f"--resume {show_path(out)}: {kind}")
        settings = load_settings(open_sweep(args.resume, resume=True)[0])
        if is_uri(args.resume):  # the staging copy was read; the sweep lives at the URI
            settings.out = args.resume
        for spec in flagged(fixed=False):
            if getattr(args, spec.name) is not None:
                setattr(settings, spec.name, getattr(args, spec.name))
        return settings, True
    space_path = Path(args.space) if args.space else shipped_space("frontier")
    from_space = load_space(space_path).sweep
    chosen: dict[str, Any] = {}
    for spec in flagged():
        if spec.name in ("space", "out"):
            continue
        value = getattr(args, spec.name)
        if value is None and spec.metadata["space"]:
            value = getattr(from_space, spec.name)
        if value is not None:
            chosen[spec.name] = value
    settings = SweepSettings(space=str(space_path), out=args.out or default_out(), **chosen)
    return settings, False


def no_trial_completed(df: Any) -> str | None:
    """Return a one-line message naming the first error when trials ran but none completed
    (status ``ok``), else None."""
    if not len(df) or "status" not in df or (df["status"] == "ok").any():
        return None
    first = df.iloc[0]
    error = first.get("error")
    error = error if isinstance(error, str) and error else first["status"]
    return (
        f"no trial of {len(df)} completed; the first ({first['trial_id']}, {first['status']}): "
        f"{error}"
    )


def mechanisms_that_matter(df: Any, settings: SweepSettings) -> str:
    """Return the importance of each searched mechanism for each objective as a table, or one
    line saying why there is none (`raymia.results.importance.importance_summary`)."""
    from raymia.results.importance import importance_summary
    from raymia.sweep.settings import SPACE_FILE
    from raymia.sweep.space import load_space

    try:
        space = load_space(Path(settings.out) / SPACE_FILE)
    except (ConfigError, OSError):  # the importance falls back to the ranges the rows show
        space = None
    try:
        return importance_summary(df, settings.objective_list(), space)
    except Exception as err:  # noqa: BLE001 - the rows are saved; this summary is an extra
        return f"(no importance table: {type(err).__name__}: {err})"


def sweep_answer(df: Any, settings: SweepSettings, budgets: tuple[float, ...]) -> str:
    """Return what the sweep's end prints before the importance table: the answer at each
    accuracy budget (`raymia.analysis.answer`), then the Pareto front and the trials within
    noise of it, as one table; one line where no trial completed."""
    from raymia.analysis.answer import answer_text, front_summary
    from raymia.results.rows import ok_trials
    from raymia.results.tables import front_markdown

    objectives = settings.objective_list()
    if ok_trials(df).empty:
        return "(no successful trials: no answer and no Pareto front)"
    sentence, within = front_summary(df, objectives)
    within = within.assign(front=["Pareto" if on else "within noise" for on in within["on_front"]])
    return "\n".join(
        [
            f"The answer ({settings.objectives}; budgets in points of accuracy):",
            answer_text(df, objectives, budgets),
            "",
            f"Pareto front ({settings.objectives}):",
            sentence,
            front_markdown(within, objectives, extra=["front"]),
        ]
    )


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep the flags describe; print the answer and the Pareto front at the end."""
    settings, resume = settings_from_args(args)
    from raymia.sweep.run import run_sweep

    started = time.perf_counter()
    try:
        df = run_sweep(settings, resume=resume)
    except KeyboardInterrupt:
        from raymia.sweep.storage import is_uri

        if is_uri(settings.out) or (Path(settings.out) / SETTINGS_FILE).exists():
            print(
                f"raymia: interrupted; continue the sweep with raymia sweep --resume "
                f"{settings.out}",
                file=sys.stderr,
            )
        else:
            print(
                "raymia: interrupted before the sweep started; nothing was written", file=sys.stderr
            )
        return 130
    elapsed = time.perf_counter() - started
    counts = df["status"].value_counts().to_dict() if "status" in df else {}
    print(f"\nraymia: {len(df)} trials in {settings.out} ({counts}), {elapsed:.0f} s")
    print(sweep_answer(df, settings, args.budgets))
    print(f"\nWhich mechanisms matter ({settings.objectives}):")
    print(mechanisms_that_matter(df, settings))
    failure = no_trial_completed(df)
    if failure:
        print(f"raymia: {failure}", file=sys.stderr)
    expected = expected_trials(settings)
    if len(df) < expected:
        print(
            f"raymia: sweep stopped after {len(df)} of {expected} trials; continue it with "
            f"raymia sweep --resume {settings.out}"
        )
        return 130
    return 1 if failure else 0


def expected_trials(settings: SweepSettings) -> int:
    """Return how many trials the sweep runs when it is not interrupted."""
    if settings.search != "grid":
        return settings.samples
    from raymia.sweep.space import load_space

    space = load_space(settings.space)
    return len(space.grid if space.grid is not None else [{}]) * len(space.seeds)
