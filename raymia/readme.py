"""The README's mechanism and attack tables, rendered from the registries.

The README holds each table between two markers, ``<!-- begin NAME table (python -m
raymia.readme) -->`` and ``<!-- end NAME table -->``; ``python -m raymia.readme`` rewrites
them in place and ``--check`` exits 1 when they differ from the registries (a test runs it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from raymia.attacks import REGISTRY as ATTACKS
from raymia.data.datasets import DATASETS
from raymia.errors import UsageError, UserError, one_line, read_text_file
from raymia.mechanisms import REGISTRY as MECHANISMS
from raymia.mechanisms.base import Mechanism
from raymia.results.tables import markdown_table

__all__ = ["README", "attack_table", "mechanism_table", "render", "tables"]

#: The repository's README.
README = Path(__file__).resolve().parent.parent / "README.md"

_BLOCK = re.compile(
    r"(<!-- begin (?P<name>\w+) table \(python -m raymia\.readme\) -->\n)"
    r"(?P<body>.*?)"
    r"(<!-- end (?P=name) table -->)",
    re.S,
)


def _image_bound(cls: type[Mechanism]) -> str:
    """Return the image-size bound of a strength in pixels, with its value per image side."""
    if cls.image_size_divisor is None:
        return ""
    divisor = cls.image_size_divisor[0]
    sides: dict[int, list[str]] = {}
    for name, info in DATASETS.items():
        sides.setdefault(info.image_size, []).append(name)
    limits = ", ".join(f"{side // divisor} on {'/'.join(names)}" for side, names in sides.items())
    return f"; at most image side / {divisor} ({limits})"


def _mechanism_notes(cls: type[Mechanism]) -> str:
    notes = [cls.notes] if cls.notes else []
    for rider, setting in cls.riders.items():
        notes.append(
            f"with `{rider}`: {setting.description}, {setting.range_text()}, "
            f"default {setting.default:g}"
        )
    if cls.dp_clash:
        notes.append(f"not with DP-SGD: {cls.dp_clash}")
    if not cls.ensemble:
        notes.append("reference models train one at a time (no batched ensemble)")
    return "; ".join(notes)


def mechanism_table() -> str:
    """Return the Markdown table of the registered mechanisms: level, name, strength (what
    it is and its range; 0 is off) and notes (riders, DP-SGD clashes)."""
    rows = [
        [
            cls.level,
            f"`{name}`",
            f"{cls.setting.description}, {cls.setting.range_text()}{_image_bound(cls)}",
            _mechanism_notes(cls),
        ]
        for name, cls in MECHANISMS.items()
    ]
    return markdown_table(["level", "name", "strength", "notes"], rows)


def attack_table() -> str:
    """Return the Markdown table of the registered attacks: name, score, the options it reads
    (with defaults), whether it needs reference models, and its source."""
    rows = []
    for name, attack in ATTACKS.items():
        options = ", ".join(f"`{o}` ({s.default:g})" for o, s in attack.options.items())
        needs = f"yes: `{attack.reference_models}` > 0" if attack.reference_models else "no"
        extra = ", ".join(f"`{c}`" for c in attack.extra_columns)
        rows.append(
            [f"`{name}`", attack.summary, options or "-", needs, extra or "-", attack.citation]
        )
    header = ["attack", "score (higher: member)", "options", "reference models", "also", "from"]
    return markdown_table(header, rows)


def tables() -> dict[str, str]:
    """Return every generated table by its marker name."""
    return {"mechanisms": mechanism_table(), "attacks": attack_table()}


def render(text: str) -> str:
    """Return `text` with each marked table replaced by its rendering from the registries."""
    rendered = tables()

    def replace(match: re.Match[str]) -> str:
        body = rendered[match["name"]]
        return f"{match.group(1)}{body}\n{match.group(4)}"

    return _BLOCK.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or, with --check, compare) the README's generated tables; return the exit code."""
    from raymia.cli import _Parser  # a bad flag: one line, as in `raymia`

    parser = _Parser(prog="python -m raymia.readme", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    parser.add_argument("--file", type=Path, default=README, help="the README to update")
    try:
        args = parser.parse_args(argv)
        text = read_text_file(args.file, UsageError, what="Markdown file")
        new = render(text)
        if args.check:
            if new != text:
                print(f"{args.file}: generated tables are stale; run python -m raymia.readme")
                return 1
            return 0
        args.file.write_text(new)
    except UserError as err:
        print(f"python -m raymia.readme: error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # the README cannot be written
        print(f"python -m raymia.readme: error: {args.file}: {err.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
