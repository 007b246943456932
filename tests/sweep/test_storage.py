"""Sweeps at a storage URI (`--out s3://...`): the mirror, and a real sweep through file://."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.local_ray import local_ray
from helpers.sweep_journal import trial_states
from helpers.sweep_spaces import tiny_space

from raymia.cli import main
from raymia.results.rows import load_results
from raymia.sweep.storage import Mirror, is_uri
from raymia.sweep.storage import main as storage_main


def _mock_mirror(local: Path) -> Mirror:
    from pyarrow.fs import _MockFileSystem

    return Mirror("bucket/runs/s1", local, filesystem=_MockFileSystem(), interval=3600)


def _remote(mirror: Mirror) -> dict[str, bytes]:
    import pyarrow.fs as pafs

    infos = mirror.fs.get_file_info(pafs.FileSelector(mirror.root, recursive=True))
    files = {}
    for info in infos:
        if info.type == pafs.FileType.File:
            with mirror.fs.open_input_stream(info.path) as stream:
                files[info.path[len(mirror.root) + 1 :]] = stream.read()
    return files


def test_uris_are_told_from_paths():
    assert is_uri("s3://bucket/x") and is_uri("gs://b/y") and is_uri("file:///tmp/z")
    assert not is_uri("runs/s1") and not is_uri("/abs/path") and not is_uri("C:/x")


def test_the_mirror_uploads_each_file_once_the_journal_by_new_lines_and_pulls_back(tmp_path):
    local = tmp_path / "sweep"
    (local / "trials.parts").mkdir(parents=True)
    (local / "sweep.json").write_text("{}")
    (local / "trials.parts" / "000001.parquet").write_bytes(b"part one")
    (local / "optuna.journal").write_bytes(b'{"a": 1}\n{"b": 2}\n{"torn')
    mirror = _mock_mirror(local)
    assert mirror.push(force=True) == 3
    remote = _remote(mirror)
    assert remote["sweep.json"] == b"{}" and remote["trials.parts/000001.parquet"] == b"part one"
    segments = {k: v for k, v in remote.items() if k.startswith("optuna.journal.segments/")}
    assert list(segments.values()) == [b'{"a": 1}\n{"b": 2}\n']  # the torn line waits
    assert mirror.push() == 0  # within the interval: nothing
    assert mirror.push(force=True) == 0  # nothing changed: nothing sent again
    # the journal grows: only the new whole lines go up; a compacted part goes away
    with open(local / "optuna.journal", "ab") as f:
        f.write(b'": 3}\n')
    (local / "trials.parts" / "000001.parquet").unlink()
    (local / "trials.parquet").write_bytes(b"compacted")
    assert mirror.push(force=True) == 2
    remote = _remote(mirror)
    assert "trials.parts/000001.parquet" not in remote and remote["trials.parquet"] == b"compacted"
    segments = sorted(k for k in remote if k.startswith("optuna.journal.segments/"))
    assert [remote[k] for k in segments] == [b'{"a": 1}\n{"b": 2}\n', b'{"torn": 3}\n']
    # pulled elsewhere: the same files, the journal whole again
    copy = Mirror(mirror.root, tmp_path / "copy", filesystem=mirror.fs)
    assert copy.pull() == 3
    assert (tmp_path / "copy" / "optuna.journal").read_bytes() == (
        local / "optuna.journal"
    ).read_bytes()
    assert (tmp_path / "copy" / "trials.parquet").read_bytes() == b"compacted"
    assert copy.push(force=True) == 0  # what was pulled is not sent back


def test_an_unopenable_uri_is_one_line(tmp_path, capsys):
    code = main(["sweep", "--out", "nosuchscheme://bucket/x", "--samples", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "--out nosuchscheme://bucket/x: cannot open this storage URI" in err


@pytest.mark.slow
def test_a_sweep_at_a_file_uri_lands_there_and_resumes_from_there_alone(
    tmp_path, monkeypatch, capsys
):

    monkeypatch.setenv("RAYMIA_STAGING", str(tmp_path / "staging"))
    space = tmp_path / "tiny.yaml"
    space.write_text(tiny_space(epochs=2))
    remote = tmp_path / "bucket" / "s1"
    uri = f"file://{remote}"
    with local_ray(2):
        assert main(["sweep", "--space", str(space), "--out", uri, "--max-concurrent", "2"]) == 0
        assert len(load_results(remote)) == 4  # the rows are at the URI, compacted
        assert (remote / "sweep.json").exists() and (remote / "space.yaml").exists()
        assert (remote / "tune").is_dir()  # Tune's state, through Ray's storage
        assert len(list((remote / "scores").glob("*.parquet"))) == 4
        # a new machine: no staging copy; the resume reads everything from the URI
        import shutil

        shutil.rmtree(tmp_path / "staging")
        assert main(["sweep", "--resume", uri]) == 0
        assert main(["sweep", "--out", uri]) == 2
    assert "already holds a sweep" in capsys.readouterr().err
    # downloaded for the analysis scripts, the journal put back together
    local = tmp_path / "local"
    assert storage_main([uri, str(local)]) == 0
    assert len(load_results(local)) == 4
    assert trial_states(local).count("COMPLETE") == 4
    assert storage_main([uri, str(local)]) == 2  # never over an existing directory
