"""Offline validation of the Ray cluster-launcher config (`cluster.yaml`).

`ray up` validates a cluster config only after it has started talking to the cloud, so a typo
costs a round trip (and sometimes half-created resources). `validate_cluster_config` runs the
same checks Ray runs, with Ray's own schema, without any network access:

1. ``prepare_config`` fills in the provider's ``defaults.yaml`` (read from the installed Ray
   package), merges ``setup_commands`` into the head/worker lists, checks the Docker block and
   fills per-node-type worker bounds. This is exactly the first step of ``ray up``.
2. ``validate_config`` checks the result against ``ray/autoscaler/ray-schema.json``
   (unknown keys, wrong types) and the cross-field rules (``head_node_type`` must name one of
   ``available_node_types``; the sum of ``min_workers`` must not exceed ``max_workers``).

What ``ray up`` does in between and after, and this module skips because it is online:
``provider_cls.fillout_available_node_types_resources`` (for AWS, a boto3
``describe_instance_types`` call to fill missing ``resources``) and
``provider_cls.bootstrap_config`` (for AWS, IAM role, key pair, subnets, security group, AMI).
So instance types, AMIs, zones and credentials are *not* checked here; schema and structure are.

Both functions come from ``ray.autoscaler._private.util``, a private module: Ray exposes no
public API for validating a cluster config. The import is pinned in this one helper (and
covered by tests/sweep/test_cluster_config.py) so a Ray upgrade that moves it breaks one place,
loudly. No Ray cluster is started and ``ray.init`` is never called.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from raymia.errors import ClusterConfigError, ConfigError, read_text_file, show_path

__all__ = ["ClusterConfigError", "validate_cluster_config"]


def _one_line(text: str) -> str:
    """Collapse whitespace so an error message stays on one line."""
    return re.sub(r"\s+", " ", str(text)).strip()


def _fail(path: Path, problem: str) -> ClusterConfigError:
    return ClusterConfigError(f"{path}: {_one_line(problem)}")


def _schema_problem(error: Any) -> str:
    """Describe a jsonschema ValidationError as 'key.path: message'."""
    key = ".".join(str(p) for p in error.absolute_path) or "top level"
    return f"{key}: {error.message}"


def _load_yaml(path: Path) -> dict[str, Any]:
    """Read the YAML mapping at `path`, raising ClusterConfigError (one line naming the file)
    on a file that cannot be read or is not text (`read_text_file`), malformed YAML, an alias
    bomb or a document nested too deeply (`parse_yaml`), or a top level that is no mapping."""
    from raymia.trial.config import parse_yaml

    text = read_text_file(path, ClusterConfigError, what="cluster config (YAML)")
    try:
        config = parse_yaml(text, show_path(path))
    except ConfigError as err:
        raise ClusterConfigError(str(err)) from None
    if not isinstance(config, dict):
        raise _fail(path, f"expected a YAML mapping at the top level, got {type(config).__name__}")
    return config


def validate_cluster_config(path: str | Path) -> dict[str, Any]:
    """Validate a Ray cluster-launcher YAML file offline with Ray's own schema and rules.

    Returns the prepared config: the file's contents merged with the provider's defaults,
    as ``ray up`` would hand it to the provider (before the provider's online bootstrap).
    Raises ClusterConfigError (a ValueError) with a one-line message naming the file and the
    problem: file not found, YAML syntax error, missing ``provider.type``, an unknown or
    mistyped key (with its key path), a ``head_node_type`` that is not one of
    ``available_node_types``, or (AWS) a GPU node type without an ``ImageId``. Never contacts
    the cloud provider or the network.
    """
    # Private API, pinned here on purpose (see the module docstring). jsonschema is imported
    # by validate_config itself; it is one of ray's own install requirements.
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    path = Path(path)
    config = _load_yaml(path)

    # prepare_config indexes config["provider"]["type"] before any schema check runs.
    provider = config.get("provider")
    if not isinstance(provider, dict) or not isinstance(provider.get("type"), str):
        raise _fail(path, "missing provider.type (e.g. provider: {type: aws, region: us-west-2})")

    try:
        prepared = prepare_config(config)
    except NotImplementedError as e:  # unknown provider type
        raise _fail(path, str(e)) from None
    except (ValueError, AssertionError, KeyError, TypeError, AttributeError) as e:
        # prepare_config runs before the schema check, so a malformed section (a list where
        # a mapping belongs) surfaces here as a Python error. The schema, applied to the file
        # as written, usually names the real problem; report that when it does.
        try:
            validate_config(config)
        except jsonschema.ValidationError as schema_error:
            raise _fail(path, _schema_problem(schema_error)) from None
        except Exception:  # the raw file fails for other reasons (e.g. no defaults yet)
            pass
        raise _fail(path, f"cannot prepare config ({type(e).__name__}: {e})") from None

    try:
        validate_config(prepared)
    except jsonschema.ValidationError as e:
        raise _fail(path, _schema_problem(e)) from None
    except (ValueError, RuntimeError) as e:
        # Ray's cross-field rules; add the offending value, which Ray's message leaves out.
        detail = str(e)
        if "head_node_type" in detail:
            node_types = ", ".join(prepared.get("available_node_types") or {})
            head = prepared.get("head_node_type")
            if "head_node_type" in config:
                detail = (
                    f"head_node_type {head!r} is not one of available_node_types ({node_types})"
                )
            else:
                detail = (
                    f"head_node_type is not set (Ray's default {head!r} is not one of "
                    f"available_node_types: {node_types})"
                )
        raise _fail(path, detail) from None
    _check_gpu_images(path, prepared)
    return prepared


def _check_gpu_images(path: Path, config: dict[str, Any]) -> None:
    """Raise ClusterConfigError for an AWS GPU node type that leaves its AMI to Ray's default.

    Ray's default AMI carries an NVIDIA driver too old for current torch CUDA builds, so its
    GPU trials could not use CUDA; cluster.yaml names an AMI whose driver fits the torch build
    its setup commands install.
    """
    if config["provider"].get("type") != "aws":
        return
    for name, node in (config.get("available_node_types") or {}).items():
        gpus = (node.get("resources") or {}).get("GPU", 0)
        image = (node.get("node_config") or {}).get("ImageId", "")
        if gpus and str(image).lower() in ("", "latest_dlami"):
            raise _fail(
                path,
                f"available_node_types.{name}.node_config.ImageId: not set on a GPU node type; "
                "Ray's default AMI has an NVIDIA driver too old for the torch CUDA build, so "
                "name an AMI whose driver fits it (see cluster.yaml)",
            )
