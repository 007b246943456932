"""The README's cluster commands through Ray's real cluster launcher, on this machine.

`ray up`, `ray submit ... scripts/sweep_entry.py`, `ray rsync-down` and `ray down` run as the
README's "On a cluster" section writes them, against a config made from the shipped
`cluster.yaml` whose only change is the `provider:` section: Ray's `external` provider with
`launcher_provider.LocalLauncherProvider`, whose one node is this machine (a home of its own,
Ray in a temp dir of its own, every process it starts marked; see that module). The launcher
syncs the project to the node's `~/raymia`, runs the shipped setup and start commands, and
the sweep runs from the node's home beside that checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from helpers.launcher_provider import marked_pids, stop_marked
from helpers.sweep_spaces import tiny_space

from raymia.results.rows import load_results

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]


def readme_cluster_commands(text: str | None = None) -> dict[str, list[str]]:
    """The `ray ...` commands of the README's first cluster code block, by subcommand."""
    text = (ROOT / "README.md").read_text() if text is None else text
    section = re.split(r"\n#{2,3} ", text.split("### On a cluster", 1)[1], maxsplit=1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README: no bash block in the cluster section"
    commands = {}
    for line in block.group(1).replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["ray"]:
            commands.setdefault(words[1], words)
    return commands


def launcher_config(node_dir: Path, mark: str) -> dict:
    """cluster.yaml with its provider section replaced by the one-machine provider."""
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["provider"] = {
        "type": "external",
        "module": "helpers.launcher_provider.LocalLauncherProvider",
        "head_ip": "127.0.0.1",
        "worker_ips": [],
        "node_dir": str(node_dir),
        "mark": mark,
    }
    return config


@pytest.mark.slow
def test_readme_cluster_commands_run_a_sweep_through_the_ray_cluster_launcher(tmp_path):
    readme = readme_cluster_commands()
    assert {"up", "submit", "rsync-down", "down"} <= set(readme), readme
    submit = readme["submit"]
    assert submit[2:4] == ["cluster.yaml", "scripts/sweep_entry.py"], submit
    readme_args = submit[submit.index("--") + 1 :] if "--" in submit else []
    out = readme_args[readme_args.index("--out") :][:2] if "--out" in readme_args else []
    remote_rows, local_rows = readme["rsync-down"][3:5]

    node_dir = Path(tempfile.mkdtemp(prefix="rml-", dir="/tmp"))  # short: Ray's socket paths
    home = node_dir / "home"
    home.mkdir()
    mark = uuid.uuid4().hex
    config = launcher_config(node_dir, mark)
    # the shipped setup commands run for real against the node's stand-in pip
    # (launcher_provider), which records what they ask for and installs nothing
    assert ".raymia-installed-" in str(config["setup_commands"]), config["setup_commands"]
    lock = ROOT / "requirements.lock"
    digest = hashlib.md5((ROOT / "pyproject.toml").read_bytes() + lock.read_bytes())
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(yaml.safe_dump(config, sort_keys=False))
    space = tmp_path / "tiny.yaml"
    space.write_text(tiny_space(epochs=1))
    (tmp_path / "tmp").mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
        "RAY_USAGE_STATS_ENABLED": "0",
        "TMPDIR": str(tmp_path / "tmp"),  # the launcher's config cache
    }

    def ray(*args: str, timeout: float = 120) -> str:
        """Run the ray CLI from the repository root (file_mounts' "."); return its output."""
        log = tmp_path / f"ray-{args[0]}.log"
        with log.open("w") as f:  # a file, not a pipe: Ray's daemons may inherit it
            done = subprocess.run(
                [sys.executable, "-m", "ray.scripts.scripts", *args],
                cwd=ROOT,
                env=env,
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        text = log.read_text()
        assert done.returncode == 0, f"ray {shlex.join(args)}:\n{text[-4000:]}"
        return text

    started = time.monotonic()
    try:
        ray("up", "-y", "--no-config-cache", str(cluster), timeout=180)
        assert (home / "raymia" / "raymia" / "__init__.py").is_file()  # file_mounts synced
        assert not (home / "raymia" / ".git").exists()  # rsync_exclude honoured
        # torch at the lock's version from the CUDA index, then raymia and its cluster extra
        # through the lock, once: the stamp is named after pyproject.toml and the lock
        node_lock = str(home / "raymia" / "requirements.lock")
        pins = [line for line in lock.read_text().splitlines() if line.startswith("torch")]
        assert [pin.split("==")[0] for pin in pins] == ["torch", "torchvision"], pins
        asked = [json.loads(line) for line in (node_dir / "pip.log").read_text().splitlines()]
        assert asked == [
            ["install", *pins, "--index-url", "https://download.pytorch.org/whl/cu128"],
            ["install", "-e", f"{home}/raymia[cluster]", "-c", node_lock],
        ], asked
        assert (home / f".raymia-installed-{digest.hexdigest()[:12]}").is_file()
        ray("rsync-up", str(cluster), str(space), "~/tiny.yaml")
        light = ["--space", "~/tiny.yaml", "--samples", "4", "--max-concurrent", "2"]
        light += ["--cpus-per-trial", "1", *out]
        submitted = ray(
            "submit",
            "--no-config-cache",
            str(cluster),
            "scripts/sweep_entry.py",
            "--",
            *light,
            timeout=240,
        )
        assert "ImportError" not in submitted, submitted[-4000:]
        fetched = tmp_path / local_rows
        ray("rsync-down", str(cluster), remote_rows, str(fetched))
        df = load_results(fetched)
        assert len(df) == 4 and (df["status"] == "ok").all(), df.get("error")
        ray("down", "-y", str(cluster))
        deadline = time.monotonic() + 15
        while marked_pids(mark) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not marked_pids(mark), "ray down left processes of the node running"
    finally:
        stop_marked(mark)
        commands = (node_dir / "commands.log").read_text() if node_dir.exists() else ""
        shutil.rmtree(node_dir, ignore_errors=True)
    # the shipped commands ran, with `ray stop` confined to the node's own processes
    assert "requirements.lock" in commands
    assert "ray start" in commands and "stop-marked" in commands
    assert "ray stop" not in commands
    print(f"launcher round trip: {time.monotonic() - started:.0f} s")
