"""A sweep's capacity comes from what the cluster can grow to (the autoscaler's node types),
not only from the nodes that are up; a trial no node type can hold is refused in one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from raymia.errors import ConfigError
from raymia.sweep.capacity import (
    NodeType,
    autoscaling_config_path,
    capacity_from_node_types,
    node_types_from_autoscaling_config,
    trials_per_node,
)

# The shape of the shipped cluster.yaml in small: a CPU head, GPU workers that scale from 0.
CONFIG = {
    "max_workers": 2,
    "head_node_type": "ray.head.default",
    "available_node_types": {
        "ray.head.default": {"resources": {"CPU": 2, "GPU": 0}, "max_workers": 0},
        "ray.worker.gpu": {"resources": {"CPU": 2, "GPU": 1}, "min_workers": 0, "max_workers": 2},
    },
}


def _capacity(config: dict, cpus: float, gpus: float):
    types, max_workers, head = node_types_from_autoscaling_config(config)
    return capacity_from_node_types(types, cpus, gpus, max_workers, head)


def test_gpu_workers_that_scale_from_zero_hold_four_half_gpu_trials():
    capacity = _capacity(CONFIG, cpus=1, gpus=0.5)
    assert capacity.max_concurrent == 4  # 2 workers x 2 trials; the head has no GPU
    assert capacity.has_gpus


def test_cpu_trials_count_the_head_and_every_worker_the_autoscaler_can_add():
    assert _capacity(CONFIG, cpus=1, gpus=0).max_concurrent == 2 + 2 * 2


def test_a_trial_that_fits_no_node_type_is_refused_naming_request_and_largest_type():
    with pytest.raises(ConfigError) as info:
        _capacity(CONFIG, cpus=1, gpus=2)
    message = str(info.value)
    assert "\n" not in message
    assert "{CPU: 1, GPU: 2}" in message
    assert "largest: ray.worker.gpu {CPU: 2, GPU: 1} x2" in message


def test_a_gpu_sweep_on_a_cluster_that_can_never_have_a_gpu_is_refused():
    config = {**CONFIG, "available_node_types": {"ray.head.default": {"resources": {"CPU": 8}}}}
    with pytest.raises(ConfigError, match="the Ray cluster has no GPUs"):
        _capacity(config, cpus=1, gpus=0.25)


def test_the_clusters_max_workers_caps_the_workers_best_types_first():
    config = {
        "max_workers": 3,
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 4}, "max_workers": 0},
            "small": {"resources": {"CPU": 2}, "max_workers": 5},
            "big": {"resources": {"CPU": 8}, "max_workers": 2},
        },
    }
    # head 4 + big 2 x 8 + small 1 x 2 (3 workers in all)
    assert _capacity(config, cpus=1, gpus=0).max_concurrent == 4 + 16 + 2


def test_a_type_without_declared_resources_is_left_out_but_the_head_takes_its_live_ones():
    config = {
        "max_workers": 4,
        "head_node_type": "head",
        "available_node_types": {"head": {}, "gpu": {"node_config": {}}},
    }
    types, _, _ = node_types_from_autoscaling_config(config, head_resources={"CPU": 3.0})
    assert types == [NodeType("head", {"CPU": 3.0}, 1)]


def test_fractions_that_add_up_to_a_whole_gpu_fill_it():
    assert trials_per_node({"CPU": 16, "GPU": 1}, cpus=1, gpus=0.1) == 10
    assert trials_per_node({"CPU": 16, "GPU": 1}, cpus=1, gpus=0.3) == 3
    assert trials_per_node({"CPU": 3, "GPU": 4}, cpus=2, gpus=1) == 1


def test_the_autoscalers_config_file_is_found_from_its_process(tmp_path):
    """The autoscaler on this node (monitor.py for our GCS) names its config file."""
    proc = tmp_path / "proc"
    ours, other = proc / "101", proc / "102"
    for entry, gcs in ((ours, "10.0.0.1:6380"), (other, "10.0.0.1:6379")):
        entry.mkdir(parents=True)
        args = [
            sys.executable,
            "-u",
            "/x/ray/autoscaler/_private/monitor.py",
            f"--gcs-address={gcs}",
            f"--autoscaling-config=cfg-{entry.name}.yaml",
        ]
        (entry / "cmdline").write_bytes("\0".join(args).encode() + b"\0")
        os.symlink(tmp_path, entry / "cwd")
    assert autoscaling_config_path("10.0.0.1:6380", proc) == Path(tmp_path) / "cfg-101.yaml"
    assert autoscaling_config_path("10.0.0.1:7000", proc) is None


def test_gpu_workers_the_clusters_max_workers_never_allows_are_no_capacity():
    with pytest.raises(ConfigError, match=r"largest: ray.worker.gpu"):
        _capacity({**CONFIG, "max_workers": 0}, cpus=1, gpus=0.5)
