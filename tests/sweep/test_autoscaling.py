"""Autoscaling from zero with GPUs, on one machine: Ray's `fake_multinode` provider.

The head has no GPU; the only GPU node type scales from 0. A sweep at --gpus-per-trial 0.5
must take its capacity from the autoscaler's node types (not refuse "no GPUs"), queue its
trials, and the autoscaler must start GPU workers for them. The fake nodes' GPUs are logical,
declared so to the trials by RAYMIA_LOGICAL_GPUS=1 in the nodes' environment: the trials train
on the CPU and record `cpu-logical-gpu` (a trial that holds a GPU never falls back silently).

Everything the test starts carries a marker in its environment (the head's `ray start`
passes it to every node the autoscaler adds, and those to their workers); teardown ends the
processes holding that marker and nothing else (never `ray stop`).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers.sweep_spaces import tiny_space

from raymia.results.rows import load_results
from raymia.sweep.worker import LOGICAL_GPU_DEVICE, LOGICAL_GPUS_ENV

#: The fake provider names the head's node type so (ray.autoscaler._private.fake_multi_node).
HEAD_TYPE = "ray.head.default"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _autoscaling_config(gcs_address: str) -> dict:
    """A complete autoscaler config: a 2-CPU head without GPU, 0..2 workers {CPU: 2, GPU: 1}."""
    return {
        "cluster_name": "raymia-fake",
        "max_workers": 2,
        "upscaling_speed": 2.0,
        "idle_timeout_minutes": 5,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": gcs_address,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": {
            HEAD_TYPE: {"resources": {"CPU": 2, "GPU": 0}, "node_config": {}, "max_workers": 0},
            "ray.worker.gpu": {
                "resources": {"CPU": 2, "GPU": 1},
                "node_config": {},
                "min_workers": 0,
                "max_workers": 2,
            },
        },
        "head_node_type": HEAD_TYPE,
        "auth": {},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def _marked(marker: str) -> list[int]:
    """Return the pids of the processes whose environment holds our marker."""
    needle = f"RAYMIA_TEST_MARKER={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _end_marked(marker: str) -> None:
    """End every process started under `marker`: SIGTERM, a grace period, then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 1.0)):
        for pid in _marked(marker):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.time() + grace
        while _marked(marker) and time.time() < deadline:
            time.sleep(0.1)


@pytest.fixture
def fake_cluster() -> Iterator[tuple[str, dict[str, str], Path]]:
    """Start a fake autoscaling cluster; yield (GCS address, environment to use it, temp dir)."""
    import ray._private.services

    # short: Ray's socket paths under it must stay within 107 bytes
    root = Path(tempfile.mkdtemp(prefix="raymia-fake-", dir="/tmp"))
    (root / "ray").mkdir()  # $RAY_TMPDIR/ray: where nodes added later keep their sessions
    ip = ray._private.services.get_node_ip_address()
    port = _free_port()
    config = root / "autoscaling.yaml"
    config.write_text(yaml.safe_dump(_autoscaling_config(f"{ip}:{port}")))
    marker = uuid.uuid4().hex
    env = {
        **os.environ,
        "RAYMIA_TEST_MARKER": marker,
        "RAY_FAKE_CLUSTER": "1",
        "RAY_TMPDIR": str(root),
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        # `ray start` turns token authentication on; every process of ours gets one token
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        LOGICAL_GPUS_ENV: "1",
        "PYTHONUNBUFFERED": "1",
    }
    ports = [
        f"--{flag}={_free_port()}"
        for flag in (
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "metrics-export-port",
            "runtime-env-agent-port",
        )
    ]
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        f"--autoscaling-config={config}",
        f"--port={port}",
        "--num-cpus=2",
        "--num-gpus=0",
        f"--temp-dir={root / 'ray'}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        *ports,
    ]
    try:
        started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        yield f"{ip}:{port}", env, root
    finally:
        _end_marked(marker)
        shutil.rmtree(root, ignore_errors=True)


def _session_log(root: Path, name: str) -> str:
    logs = sorted((root / "ray").glob(f"session_*/logs/{name}"))
    return "\n".join(p.read_text(errors="replace") for p in logs)


@pytest.mark.slow
def test_a_gpu_sweep_scales_gpu_workers_up_from_zero_and_completes(fake_cluster, tmp_path):
    address, env, root = fake_cluster
    space = tmp_path / "tiny.yaml"
    space.write_text(tiny_space(epochs=1))
    out = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "raymia.cli",
        "sweep",
        "--address",
        address,
        "--space",
        str(space),
        "--samples",
        "4",
        "--gpus-per-trial",
        "0.5",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, output
    df = load_results(out)
    assert len(df) == 4 and (df["status"] == "ok").all(), output
    assert (df["device"] == LOGICAL_GPU_DEVICE).all()
    # every trial ran on a GPU worker the autoscaler added (the head has no GPU); the fake
    # provider numbers the nodes it adds fff...00001, fff...00002
    workers = set(df["node_id"])
    assert all(node.startswith("fffff") and not node.endswith("00000") for node in workers)
    assert re.search(
        r"Adding \d+ node\(s\) of type ray.worker.gpu", _session_log(root, "monitor.log")
    )


class _Context:
    def get_assigned_resources(self):
        return {"CPU": 1.0, "GPU": 0.5}

    def get_node_id(self):
        return "ab" * 28


def test_a_trial_on_declared_logical_gpus_trains_on_the_cpu_and_says_so(monkeypatch):
    import ray
    import torch

    import raymia.trial.runner
    from raymia.sweep import worker

    seen = {}

    def run_trial(config, pool=None, threads=1):
        seen["device"] = config["device"]
        return {"device": "cpu", "scores": {}}

    monkeypatch.setenv(LOGICAL_GPUS_ENV, "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])
    monkeypatch.setattr(ray, "get_runtime_context", _Context)
    monkeypatch.setattr(raymia.trial.runner, "run_trial", run_trial)
    row = worker.trial_row({"trial": {"epochs": 1}, "seed": 0, "mechanisms": {}})
    assert not ray.is_initialized(), "a trial run outside Ray started a Ray of its own"
    assert seen["device"] == "cpu"
    assert row["device"] == LOGICAL_GPU_DEVICE
