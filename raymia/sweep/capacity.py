"""How many trials a sweep can run at once: from what the cluster *can* have, not only what is up.

On an autoscaling cluster the nodes that are up when the sweep starts say little: the GPU
workers of the shipped `cluster.yaml` scale from zero, so a sweep that asked Ray's current
resources would see no GPU and one CPU head. The autoscaler's node types say what the
cluster can grow to: each worker type's ``resources`` times its ``max_workers`` (capped by the
cluster's own ``max_workers``), plus the head. `sweep_capacity` reads them, in this order:

1. the cluster config the autoscaler reports to the GCS (``ClusterConfig``: node groups with
   their resources and ``max_count``), where the autoscaler reports one;
2. the autoscaling config file the autoscaler on the driver's node runs with (the
   ``--autoscaling-config`` of its ``monitor.py`` for this GCS; ``ray up`` starts it with
   ``~/ray_bootstrap_config.yaml``, ``ray start --head --autoscaling-config=FILE`` with FILE).
   The driver of a cluster sweep runs on the head (``ray submit``, ``ray job submit``), where
   the autoscaler runs;
3. otherwise the nodes that are up (a local Ray, a fixed cluster).

The trials then ask Ray for their resources as usual: the placement groups of queued trials
are the autoscaler's demand, so it starts workers for them and stops idle ones afterwards.
(`ray.autoscaler.sdk.request_resources` is not used: its request holds the nodes until it is
withdrawn, which a killed driver never does.)

A sweep whose trial fits no node type is refused with one line naming the request and the
largest node type; a GPU sweep on a cluster that can never have a GPU likewise.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from raymia.errors import ConfigError

__all__ = [
    "Capacity",
    "NodeType",
    "autoscaling_config_path",
    "capacity_from_node_types",
    "node_types_from_autoscaling_config",
    "sweep_capacity",
    "trials_per_node",
]

#: Slack for float division (0.3 GPU x 10 is 3.0000000000000004 GPUs).
_EPS = 1e-9


@dataclass(frozen=True)
class NodeType:
    """A kind of node the cluster has or can add: its resources and how many it can have."""

    name: str
    resources: dict[str, float]
    max_count: int  # nodes of this type the cluster can have at once, the head included

    def describe(self) -> str:
        """Return e.g. ``ray.worker.gpu {CPU: 2, GPU: 1} x2``."""
        shown = ", ".join(f"{k}: {_number(self.resources.get(k, 0))}" for k in ("CPU", "GPU"))
        return f"{self.name} {{{shown}}} x{self.max_count}"


@dataclass(frozen=True)
class Capacity:
    """What a sweep can run at once on this cluster."""

    max_concurrent: int  # trials of the requested size that can run at once (>= 1)
    has_gpus: bool  # whether any node the cluster has or can add offers a GPU
    source: str  # where the node types came from, for the user
    node_types: list[NodeType] = field(default_factory=list)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _request(cpus: float, gpus: float) -> dict[str, float]:
    return {"CPU": cpus, "GPU": gpus}


def trials_per_node(resources: dict[str, float], cpus: float, gpus: float) -> int:
    """Return how many trials of `cpus` CPUs and `gpus` GPUs fit on one node with `resources`."""
    fits = math.inf
    for name, need in _request(cpus, gpus).items():
        if need > 0:
            fits = min(fits, math.floor(resources.get(name, 0.0) / need + _EPS))
    return 0 if fits == math.inf else int(fits)


def capacity_from_node_types(
    node_types: list[NodeType],
    cpus_per_trial: float,
    gpus_per_trial: float,
    max_workers: int | None = None,
    head: str | None = None,
    source: str = "node types",
    bundles: int = 1,
) -> Capacity:
    """Return the sweep's capacity on a cluster of `node_types`.

    A trial asks for `bundles` bundles of `cpus_per_trial` CPUs and `gpus_per_trial` GPUs
    each (its own and one per reference worker, `raymia.sweep.reference_tasks`): its whole
    request is what is counted.

    Each type adds ``trials_per_node x max_count`` trials. `max_workers` caps the nodes beyond
    the head (the cluster's own ``max_workers``): the types holding the most trials per node
    are counted first. `head` names the head's type (one node of it is always there, outside
    the cap). Raises ConfigError (one line) when trials ask for GPUs and no type has one, or
    when no node the cluster can have holds a trial.
    """
    has_gpus = any(t.resources.get("GPU", 0) > 0 and t.max_count > 0 for t in node_types)
    flags = f"--cpus-per-trial {_number(cpus_per_trial)} --gpus-per-trial {_number(gpus_per_trial)}"
    if bundles > 1:
        flags += f" --reference-workers {bundles - 1}"
    cpus_per_trial, gpus_per_trial = cpus_per_trial * bundles, gpus_per_trial * bundles
    request = _request(cpus_per_trial, gpus_per_trial)
    if gpus_per_trial > 0 and not has_gpus:
        raise ConfigError(
            f"--gpus-per-trial {_number(gpus_per_trial)}: the Ray cluster has no GPUs, and no "
            f"node type it can add has one ({source}: {_describe(node_types)})"
        )
    per_node = {
        t.name: trials_per_node(t.resources, cpus_per_trial, gpus_per_trial) for t in node_types
    }
    total = 0
    workers_left = math.inf if max_workers is None else max(0, max_workers)
    for t in sorted(node_types, key=lambda t: -per_node[t.name]):
        count = t.max_count
        if t.name == head and count > 0:
            total += per_node[t.name]  # the head itself, outside the workers' cap
            count -= 1
        added = min(count, workers_left)
        workers_left -= added
        total += per_node[t.name] * int(added)
    if total == 0:  # no node the cluster has or can add holds one trial
        largest = max(node_types, key=lambda t: _closeness(t.resources, request), default=None)
        shown = largest.describe() if largest else "none"
        raise ConfigError(
            f"{flags}: a trial needs {{CPU: {_number(cpus_per_trial)}, GPU: "
            f"{_number(gpus_per_trial)}}}, more than any node type offers (largest: {shown}; "
            f"{source})"
        )
    return Capacity(total, has_gpus, source, list(node_types))


def _closeness(resources: dict[str, float], request: dict[str, float]) -> tuple[float, float]:
    """Sort key for the node nearest to holding one trial: the share of the request its
    scarcest resource covers, then the shares' sum."""
    shares = [resources.get(k, 0.0) / v for k, v in request.items() if v > 0]
    return (min(shares, default=0.0), sum(shares))


def _describe(node_types: list[NodeType]) -> str:
    return ", ".join(t.describe() for t in node_types) or "none"


def node_types_from_autoscaling_config(
    config: dict[str, Any], head_resources: dict[str, float] | None = None
) -> tuple[list[NodeType], int | None, str | None]:
    """Return (node types, the cluster's max_workers, the head's type) of an autoscaling config.

    `config` is a cluster-launcher / autoscaler YAML mapping (``available_node_types``,
    ``head_node_type``, ``max_workers``). A worker type's ``max_workers`` defaults to the
    cluster's, the head type's to 0, as Ray fills them in; the head's type counts one node more
    (the head). A type without ``resources`` (the cloud
    fills them in from the instance type at launch) is left out, except the head's, which
    takes `head_resources` (the live head's) when given.
    """
    cluster_max = config.get("max_workers")
    head = config.get("head_node_type")
    types: list[NodeType] = []
    for name, spec in (config.get("available_node_types") or {}).items():
        spec = spec or {}
        resources = spec.get("resources")
        if resources is None and name == head:
            resources = head_resources
        if not resources:
            continue
        default = 0 if name == head or cluster_max is None else cluster_max  # as Ray fills in
        workers = spec.get("max_workers", default)
        count = int(workers) + (1 if name == head else 0)
        types.append(NodeType(str(name), {k: float(v) for k, v in resources.items()}, count))
    return types, (int(cluster_max) if cluster_max is not None else None), head


def _node_types_from_gcs() -> tuple[list[NodeType], str] | None:
    """Return the node groups the autoscaler reported to the GCS, or None when none were."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # a Ray without the call, or a GCS that does not answer it
        return None
    if config is None or not config.node_group_configs:
        return None
    types = []
    for group in config.node_group_configs:
        count = group.max_count if group.max_count >= 0 else 10**6  # -1: unbounded
        types.append(NodeType(group.name, dict(group.resources), int(count)))
    return types, "the cluster config the autoscaler reported"


def autoscaling_config_path(gcs_address: str, proc: Path = Path("/proc")) -> Path | None:
    """Return the ``--autoscaling-config`` file of the autoscaler serving `gcs_address` on this
    node, or None when no such autoscaler runs here (or /proc is not readable)."""
    try:
        entries = list(proc.iterdir())
    except OSError:
        return None
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(a.endswith("monitor.py") and "autoscaler" in a for a in args):
            continue
        if f"--gcs-address={gcs_address}" not in args:
            continue
        for a in args:
            if a.startswith("--autoscaling-config="):
                path = Path(os.path.expanduser(a.split("=", 1)[1]))
                if not path.is_absolute():
                    try:
                        path = Path(os.readlink(entry / "cwd")) / path
                    except OSError:
                        return None
                return path
    return None


def _autoscaler_node_types(
    gcs_address: str, head_resources: dict[str, float] | None
) -> tuple[list[NodeType], int | None, str | None, str] | None:
    """Return (node types, max_workers, head type, source) of the cluster's autoscaler, or None
    when neither the GCS nor an autoscaler on this node says what the cluster can add."""
    import yaml

    reported = _node_types_from_gcs()
    if reported is not None:
        return reported[0], None, None, reported[1]
    path = autoscaling_config_path(gcs_address)
    if path is None:
        return None
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(config, dict):
        return None
    types, max_workers, head = node_types_from_autoscaling_config(config, head_resources)
    if not types:
        return None
    return types, max_workers, head, f"the autoscaler's node types in {path}"


def _live_node_types(nodes: list[dict[str, Any]]) -> list[NodeType]:
    """Return one node type per node that is up (count 1 each)."""
    types = []
    for node in nodes:
        resources = {k: float(v) for k, v in node.get("Resources", {}).items()}
        name = f"node {node.get('NodeManagerAddress', '?')}"
        types.append(NodeType(name, resources, 1))
    return types


def sweep_capacity(cpus_per_trial: float, gpus_per_trial: float, bundles: int = 1) -> Capacity:
    """Return how many trials of this size (`bundles` bundles of it: the trial's own and one
    per reference worker) the connected Ray cluster can run at once.

    From the autoscaler's node types where the cluster autoscales (see the module docstring),
    else from the nodes that are up; nodes that are up count too, so a node whose type
    declares no resources still holds trials once it is up. Raises ConfigError (one line)
    when the cluster can never hold one trial. Needs ``ray.init`` to have run.
    """
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive", True)]
    live = _live_node_types(nodes)
    head_resources = next(
        (t.resources for t in live if "node:__internal_head__" in t.resources), None
    )
    up = "the nodes that are up"
    planned = _autoscaler_node_types(ray.get_runtime_context().gcs_address, head_resources)
    if planned is None:
        return capacity_from_node_types(
            live, cpus_per_trial, gpus_per_trial, source=up, bundles=bundles
        )
    types, max_workers, head, source = planned
    try:
        capacity = capacity_from_node_types(
            types, cpus_per_trial, gpus_per_trial, max_workers, head, source, bundles
        )
    except ConfigError as refused:
        try:  # a node that is up may hold a trial although no declared type does
            return capacity_from_node_types(
                live, cpus_per_trial, gpus_per_trial, source=up, bundles=bundles
            )
        except ConfigError:
            raise refused from None
    try:
        now = capacity_from_node_types(
            live, cpus_per_trial, gpus_per_trial, source=up, bundles=bundles
        )
    except ConfigError:
        return capacity
    return replace(capacity, max_concurrent=max(capacity.max_concurrent, now.max_concurrent))
