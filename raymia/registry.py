"""A registry: the one list of the mechanisms (or attacks) raymia knows, in a fixed order.

Everything that needs the list (the pydantic settings models, the search-space parser, the
result columns, the sweep's objectives, the analysis tables, the README tables) asks the
registry when it runs, so an entry registered at runtime (a test's toy attack) shows up
everywhere. `version` counts the changes, for whatever is built once per registry state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


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
