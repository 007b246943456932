"""Sweep directories at a storage URI: `raymia sweep --out s3://bucket/runs/s1` (or ``gs://``,
``file:///shared/runs/s1``, any URI pyarrow's filesystems open).

A sweep writes to a local staging directory on the driver's machine (Optuna's journal needs
a local file it can append to and lock) and `Mirror` copies what it writes to the URI as it
goes, so the results survive the machine the driver ran on:

- files written once (sweep.json, space.yaml, each row's part in trials.parts/, each trial's
  scores) are uploaded once, and a part the sweep compacted away is deleted there too;
- the Optuna journal, which only grows, is uploaded as segments of its new whole lines
  (``optuna.journal.segments/<byte offset>``): each upload costs what was appended since the
  last one, not the whole journal;
- Ray Tune's own experiment state goes to the URI through Ray's storage (``--out`` is Tune's
  ``storage_path``), so it is not mirrored here.

Uploads happen after a row is recorded, at most every `Mirror.interval` seconds, and always
when the sweep ends or stops. ``raymia sweep --resume URI`` pulls the directory back into the
staging directory first (on any machine), and ``python -m raymia.sweep.storage URI DIR`` downloads a
sweep for the analysis scripts (the journal put back together).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from raymia.errors import ConfigError

__all__ = ["Mirror", "after_row", "is_uri", "mirroring", "open_sweep", "staging_dir"]

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: Files that only grow: uploaded as segments of their new lines.
APPEND_ONLY = ("optuna.journal",)
#: Where an append-only file's segments live at the URI: ``<file>.segments/<offset>``.
SEGMENTS = ".segments"
#: Not mirrored: Ray Tune's state (Ray stores it at the URI itself) and files in the making.
_SKIP_DIRS = ("tune",)

_active: Mirror | None = None


def is_uri(out: str) -> bool:
    """Return whether `out` is a storage URI (``scheme://...``) rather than a local path."""
    return bool(_URI.match(out))


def staging_dir(uri: str) -> Path:
    """Return the local staging directory of the sweep at `uri` (under ~/.cache/raymia, or
    $RAYMIA_STAGING when set): one per URI, on the machine that runs the driver."""
    root = Path(os.environ.get("RAYMIA_STAGING", "~/.cache/raymia/staging")).expanduser()
    return root / hashlib.sha256(uri.encode()).hexdigest()[:16]


class Mirror:
    """Copies a local sweep directory to a storage URI, and back."""

    def __init__(self, uri: str, local: Path, filesystem: Any = None, interval: float = 10.0):
        """Mirror `local` at `uri`; `filesystem` (a pyarrow FileSystem, with `uri` then a path
        in it) overrides the one pyarrow picks for the URI. Raises ConfigError (one line) when
        pyarrow cannot open the URI."""
        import pyarrow.fs as pafs

        self.uri, self.local, self.interval = uri, Path(local), interval
        if filesystem is None:
            try:
                filesystem, root = pafs.FileSystem.from_uri(uri)
            except Exception as err:  # pyarrow raises several kinds; the user fixes the URI
                reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise ConfigError(
                    f"--out {uri[:200]}: cannot open this storage URI ({reason[:200]}); "
                    "expected s3://, gs://, file:// or a local directory"
                ) from None
        else:
            root = uri
        self.fs, self.root = filesystem, root.rstrip("/")
        self._uploaded: dict[str, tuple[int, int]] = {}  # file -> (size, mtime_ns) sent
        self._offsets: dict[str, int] = {}  # append-only file -> bytes sent
        self._last_push = float("-inf")

    def _remote(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def exists(self, rel: str) -> bool:
        """Return whether the URI holds file `rel` (e.g. sweep.json)."""
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self._remote(rel))
        return info.type != pafs.FileType.NotFound

    def _write(self, rel: str, data: bytes) -> None:
        path = self._remote(rel)
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(path) as stream:
            stream.write(data)

    def _local_files(self) -> list[str]:
        files = []
        for folder, dirs, names in os.walk(self.local):
            if Path(folder) == self.local:
                dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
            for name in names:
                if not name.endswith((".tmp", ".lock")):
                    files.append(os.path.relpath(os.path.join(folder, name), self.local))
        return files

    def push(self, force: bool = False) -> int:
        """Upload what changed since the last push; return how many uploads it took. Without
        `force`, does nothing when the last push was under `interval` seconds ago."""
        now = time.monotonic()
        if not force and now - self._last_push < self.interval:
            return 0
        self._last_push = now
        sent = 0
        present = set()
        for rel in self._local_files():
            path = self.local / rel
            if rel in APPEND_ONLY:
                sent += self._push_appended(rel, path)
                continue
            present.add(rel)
            stat = path.stat()
            key = (stat.st_size, stat.st_mtime_ns)
            if self._uploaded.get(rel) != key:
                self._write(rel, path.read_bytes())
                self._uploaded[rel] = key
                sent += 1
        for rel in [r for r in self._uploaded if r not in present]:  # compacted away here
            self.fs.delete_file(self._remote(rel))
            del self._uploaded[rel]
        return sent

    def _push_appended(self, rel: str, path: Path) -> int:
        start = self._offsets.get(rel, 0)
        with open(path, "rb") as f:
            f.seek(start)
            new = f.read()
        whole = new[: new.rfind(b"\n") + 1]  # only whole lines: a line in the making waits
        if not whole:
            return 0
        self._write(f"{rel}{SEGMENTS}/{start:020d}", whole)
        self._offsets[rel] = start + len(whole)
        return 1

    def pull(self) -> int:
        """Download the sweep at the URI into the local directory (the caller's to empty
        first); return how many files it holds. Append-only files are put back together
        from their segments."""
        import pyarrow.fs as pafs

        self.local.mkdir(parents=True, exist_ok=True)
        selector = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        infos = [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]
        segments: dict[str, list[tuple[int, str]]] = {}
        count = 0
        for info in infos:
            rel = info.path[len(self.root) + 1 :]
            if rel.split("/", 1)[0] in _SKIP_DIRS:
                continue
            owner, sep, offset = rel.rpartition(SEGMENTS + "/")
            if sep and owner in APPEND_ONLY:
                segments.setdefault(owner, []).append((int(offset), info.path))
                continue
            target = self.local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.fs.open_input_stream(info.path) as stream:
                target.write_bytes(stream.read())
            stat = target.stat()
            self._uploaded[rel] = (stat.st_size, stat.st_mtime_ns)
            count += 1
        for rel, parts in segments.items():
            with open(self.local / rel, "wb") as out:
                for _, path in sorted(parts):
                    with self.fs.open_input_stream(path) as stream:
                        out.write(stream.read())
            self._offsets[rel] = (self.local / rel).stat().st_size
            count += 1
        return count


_opened: dict[str, Mirror] = {}


def open_sweep(out: str, resume: bool) -> tuple[Path, Mirror | None]:
    """Return (the local sweep directory, its Mirror or None) for a sweep's ``--out`` /
    ``--resume`` value.

    A local path is the directory itself. A URI gets a fresh staging directory: pulled from
    the URI for a resume (ConfigError when the URI holds no sweep), empty for a new sweep
    (ConfigError when the URI already holds one). Opened once per command: a second call
    before the sweep ends (`mirroring`) returns the same pair.
    """
    if not is_uri(out):
        return Path(out).resolve(), None
    if out in _opened:
        return _opened[out].local, _opened[out]
    from raymia.sweep.settings import SETTINGS_FILE

    mirror = Mirror(out, staging_dir(out))
    if mirror.local.exists():
        shutil.rmtree(mirror.local)  # the staging copy is ours; the URI is the record
    if resume:
        if not mirror.exists(SETTINGS_FILE):
            raise ConfigError(f"--resume {out[:200]}: no {SETTINGS_FILE} there; is it a sweep?")
        mirror.pull()
    elif mirror.exists(SETTINGS_FILE):
        raise ConfigError(
            f"--out {out[:200]}: already holds a sweep; continue it with --resume {out[:200]} "
            "or pick a new location"
        )
    mirror.local.mkdir(parents=True, exist_ok=True)
    _opened[out] = mirror
    return mirror.local, mirror


class mirroring:  # noqa: N801 (used as a context manager: `with mirroring(m):`)
    """Make `mirror` the one `after_row` pushes to while the block runs; push at the end."""

    def __init__(self, mirror: Mirror | None):
        self.mirror = mirror

    def __enter__(self) -> Mirror | None:
        global _active
        _active = self.mirror
        return self.mirror

    def __exit__(self, *exc: object) -> None:
        global _active
        _active = None
        if self.mirror is not None:
            _opened.pop(self.mirror.uri, None)  # the next command opens (and pulls) afresh
            self.mirror.push(force=True)


def after_row() -> None:
    """Called by the sweep's recorder after each row: push to the active mirror, if any (at
    most every `Mirror.interval` seconds)."""
    if _active is not None:
        _active.push()


def main(argv: list[str] | None = None) -> int:
    """``python -m raymia.sweep.storage URI DIR``: download the sweep at URI into DIR."""
    parser = argparse.ArgumentParser(
        prog="python -m raymia.sweep.storage", description="Download a sweep stored at a URI."
    )
    parser.add_argument("uri", help="the sweep's --out, e.g. s3://bucket/runs/s1")
    parser.add_argument("dir", help="local directory to write (new or empty)")
    args = parser.parse_args(argv)
    target = Path(args.dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        print(
            f"raymia: error: {args.dir[:200]}: exists and is not an empty directory",
            file=sys.stderr,
        )
        return 2
    try:
        count = Mirror(args.uri, Path(args.dir)).pull()
    except ConfigError as err:
        print(f"raymia: error: {err}", file=sys.stderr)
        return 2
    print(f"raymia: {count} files of {args.uri} in {args.dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
