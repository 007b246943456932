"""A registry: the one list of the mechanisms (or attacks) raymia knows, in a fixed order,
and `Setting`, the numeric config field an entry declares.

Everything that needs the list (the pydantic settings models, the search-space parser, the
result columns, the sweep's objectives, the analysis tables, the README tables) asks the
registry when it runs, so an entry registered at runtime (a test's toy attack) shows up
everywhere. `version` counts the changes, for whatever is built once per registry state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Setting:
    """A numeric setting of the trial config that a registered entry declares: its type,
    default, bounds and meaning.

    A mechanism's strength is one (default 0, off), a rider such as DP-SGD's clipping norm
    another, an attack's option (Merlin's neighbour count) a third. `field` gives the pydantic
    field the `Mechanisms` and `AttackOptions` models are built from.
    """

    type: type[int] | type[float]
    description: str
    default: float = 0
    ge: float | None = 0
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    # For a rider: part of what a configuration is, so shown in its label (dp_clip: yes).
    in_label: bool = False

    def field(self) -> tuple[type, Any]:
        """Return (type, pydantic FieldInfo) for `pydantic.create_model`."""
        from pydantic import Field

        bounds = {"ge": self.ge, "gt": self.gt, "le": self.le, "lt": self.lt}
        return self.type, Field(self.type(self.default), description=self.description, **bounds)

    def example(self) -> float:
        """Return a valid value that turns the setting on: 1 where the range allows."""
        low = self.ge if self.ge is not None else self.gt or 0
        high = self.le if self.le is not None else self.lt or 1
        if low < 1 < high or (high == 1 and self.le is not None):
            return self.type(1)
        return self.type((low + high) / 2)

    def range_text(self) -> str:
        """Return the allowed range as an interval, e.g. ``[0, 1)``."""
        low = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}"
        high = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})"
        return f"{low}, {high}"


class Registry(Mapping[str, T], Generic[T]):
    """Entries by name, iterated in the order `sort_key` gives (ties: registration order)."""

    def __init__(self, kind: str, sort_key: Callable[[T], Any]):
        self.kind = kind
        self._sort_key = sort_key
        self._entries: dict[str, T] = {}
        self._ordered: dict[str, T] = {}
        self.version = 0

    def add(self, name: str, entry: T) -> T:
        """Register `entry` under `name` and return it; a name may be registered once."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered already")
        self._entries[name] = entry
        self._changed()
        return entry

    def remove(self, name: str) -> T:
        """Unregister `name` and return its entry (KeyError when it is not registered)."""
        entry = self._entries.pop(name)
        self._changed()
        return entry

    def _changed(self) -> None:
        # sorted() is stable: entries with equal keys keep their registration order.
        items = sorted(self._entries.items(), key=lambda item: self._sort_key(item[1]))
        self._ordered = dict(items)
        self.version += 1

    def __getitem__(self, name: str) -> T:
        return self._ordered[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._ordered))

    def __len__(self) -> int:
        return len(self._ordered)

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self._ordered)})"


def import_submodules(package: str, path: list[str], skip: set[str]) -> None:
    """Import every module of `package` (at `path`) not in `skip`, so that each registers what
    it declares: adding a mechanism or an attack is adding one module."""
    import importlib
    import pkgutil

    for module in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if module.name not in skip and not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
