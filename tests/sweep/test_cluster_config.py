"""Tests for raymia.sweep.cluster_config: the shipped cluster.yaml passes Ray's schema, offline."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from raymia.sweep.cluster_config import ClusterConfigError, validate_cluster_config

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything tries to open a network connection or resolve a name."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _write_copy(tmp_path: Path, edit) -> Path:
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    edit(config)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _message(path: Path) -> str:
    with pytest.raises(ClusterConfigError) as info:
        validate_cluster_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_shipped_cluster_yaml_validates_offline(no_network):
    config = validate_cluster_config(CLUSTER_YAML)
    assert config["cluster_name"] == "raymia"
    assert config["provider"]["type"] == "aws"
    head = config["head_node_type"]
    assert config["available_node_types"][head]["resources"]["GPU"] == 0
    workers = [node for name, node in config["available_node_types"].items() if name != head]
    assert any(node["resources"].get("GPU", 0) >= 1 for node in workers)
    assert all(node["min_workers"] == 0 for node in workers)  # autoscales from zero
    assert config["file_mounts"] == {"~/raymia": "."}
    # prepare_config merges the common setup commands into both node kinds: torch's CUDA
    # build that fits the AMI's driver at the locked version, then raymia with its cluster
    # extra (boto3 for the head's autoscaler) through the lock, once per node (a stamp skips
    # repeats)
    for kind in ("head_setup_commands", "worker_setup_commands"):
        install = config[kind][0]
        assert "whl/cu128" in install and "^(torch|torchvision)==' $LOCK" in install
        assert 'pip install -e "$HOME/raymia[cluster]" -c $LOCK' in install
        assert "LOCK=$HOME/raymia/requirements.lock" in install
        assert "test -f $STAMP ||" in install
    # nothing installed by hand on the head: boto3 comes with the cluster extra
    assert not any("pip" in command for command in config["head_setup_commands"][1:])
    assert "torch.cuda.is_available()" in config["worker_setup_commands"][-1]
    # every node names its AMI: Ray's default one has a driver too old for torch's CUDA build
    for node in config["available_node_types"].values():
        assert "base-oss-nvidia-driver-gpu" in node["node_config"]["ImageId"]


def test_a_gpu_node_type_without_an_image_fails(tmp_path):
    def edit(c):
        del c["available_node_types"]["ray.worker.gpu"]["node_config"]["ImageId"]

    message = _message(_write_copy(tmp_path, edit))
    assert "available_node_types.ray.worker.gpu.node_config.ImageId: not set" in message


def test_clusterconfigerror_is_a_valueerror():
    assert issubclass(ClusterConfigError, ValueError)


def test_unknown_top_level_key_fails(tmp_path):
    path = _write_copy(tmp_path, lambda c: c.update(max_wrokers=3))
    message = _message(path)
    assert "max_wrokers" in message


def test_unknown_key_in_node_type_names_its_path(tmp_path):
    def edit(c):
        c["available_node_types"]["ray.worker.gpu"]["min_worker"] = 1

    message = _message(_write_copy(tmp_path, edit))
    assert "available_node_types.ray.worker.gpu" in message
    assert "min_worker" in message


def test_head_node_type_not_in_available_node_types_fails(tmp_path):
    path = _write_copy(tmp_path, lambda c: c.update(head_node_type="ray.head.gpu"))
    message = _message(path)
    assert "'ray.head.gpu'" in message
    assert "ray.head.cpu" in message  # lists the node types that do exist


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "cluster.yaml"
    message = _message(path)
    assert "no such file" in message


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("cluster_name: raymia\nprovider: {type: aws\n")
    message = _message(path)
    assert "malformed YAML" in message
    assert "line" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "holds NUL bytes"),
        (b"cluster_name: r\xe9mia\n", "not UTF-8 text"),
        (
            b"a: &a [x, x, x, x, x, x, x, x, x]\n"
            + b"".join(
                f"{k}: &{k} [*{j}, *{j}, *{j}, *{j}, *{j}, *{j}, *{j}, *{j}, *{j}]\n".encode()
                for j, k in zip("abcdefgh", "bcdefghi", strict=True)
            ),
            "alias",
        ),
        (None, "is a directory"),
    ],
)
def test_unreadable_cluster_configs_are_one_line(tmp_path, content, expected):
    path = tmp_path / "cluster.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    message = _message(path)
    assert expected in message and str(path) in message and "\n" not in message
    assert len(message) < 400


def test_missing_provider_fails(tmp_path):
    path = _write_copy(tmp_path, lambda c: c.pop("provider"))
    assert "provider.type" in _message(path)


def test_wrong_type_fails_with_key_path(tmp_path):
    path = _write_copy(tmp_path, lambda c: c.update(idle_timeout_minutes="five"))
    message = _message(path)
    assert "idle_timeout_minutes" in message


def test_malformed_section_reports_the_schema_problem(tmp_path):
    # prepare_config trips over this before Ray's schema check; the schema names it.
    path = _write_copy(tmp_path, lambda c: c.update(available_node_types=["ray.worker.gpu"]))
    message = _message(path)
    assert "available_node_types" in message
    assert "not of type 'object'" in message


def test_missing_head_node_type_says_it_is_not_set(tmp_path):
    path = _write_copy(tmp_path, lambda c: c.pop("head_node_type"))
    assert "head_node_type is not set" in _message(path)
