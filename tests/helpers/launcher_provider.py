"""A node provider for Ray's cluster launcher whose one node is this machine.

Used through the launcher's `external` provider type, so that `ray up`, `ray submit`,
`ray rsync-up`, `ray rsync-down` and `ray down` run unchanged against a config that differs
from the shipped `cluster.yaml` only in its `provider:` section::

    provider:
      type: external
      module: launcher_provider.LocalLauncherProvider   # this file must be importable
      head_ip: 127.0.0.1
      worker_ips: []          # no worker "machines": a worker type can never be launched
      node_dir: /tmp/rml-...  # the node's disk: home/, Ray's temp dir, the launcher's state
      mark: <uuid>            # set as RAYMIA_TEST_CLUSTER in every process the node starts

It is Ray's local (on-premise) provider with two changes: the cluster state file lives in
`node_dir` (not in the shared /tmp/ray), and `get_command_runner` returns a
`LocalCommandRunner`, which runs a command with `bash -c` on this machine (no ssh) and copies
files instead of calling rsync. The launcher's `docker:` section is ignored: commands run on
this machine as they would inside the container.

What the runner changes on the way, so that a node can share a busy machine with other Rays
and with other test runs (the config the launcher reads stays `cluster.yaml`'s):

- Environment: `HOME=<node_dir>/home` (the node's `~`; a command starts in it, as an ssh
  login does), `RAY_TMPDIR=<node_dir>` (Ray's temp dir, its sockets and the address file that
  `--address auto` reads), `RAYMIA_TEST_CLUSTER=<mark>`, `PIP_NO_INDEX=1` (a pip install
  that would need the network fails instead of downloading), and `OMP_NUM_THREADS=1`,
  `PYTHONWARNINGS=ignore` as Ray's ssh runner sets them.
- `ray stop` (with any of its flags) becomes `python launcher_provider.py stop-marked`, which
  stops only the processes whose environment carries this node's mark: never other Rays.
- A `ray start`'s `--port`, `--object-manager-port` and `$RAY_HEAD_IP:<port>` numbers are
  mapped to free ports (one mapping per node_dir, kept in `ports.json`), and the ports that
  Ray would otherwise take by default (dashboard, dashboard agent, metrics export,
  runtime-env agent, and the Ray Client server where `ray[client]` is installed) are given
  free ones unless the command names them.
- `pip` is a stand-in (`<node_dir>/bin/pip`, first on the node's PATH) that installs nothing:
  it appends its arguments to `<node_dir>/pip.log` and fails where a real install on a fresh
  node would go wrong here: a constraints file (`-c`) missing on the node, or a pinned
  requirement (`name==version`) that is not the version this machine runs (the lock's versions
  are the ones the suite runs with). The shipped setup commands therefore run for real, stamp
  and all, and the test reads what they asked pip for.
- A command that starts with `docker`/`podman` (the launcher's `docker stop` on teardown)
  runs as `true`; `sudo shutdown -h now` (from `ray submit --stop`) becomes `true`.

Every command as run is appended to `<node_dir>/commands.log`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import click
from filelock import FileLock
from ray._private.utils import get_ray_client_dependency_error
from ray.autoscaler._private.command_runner import _with_environment_variables
from ray.autoscaler._private.local.node_provider import ClusterState, LocalNodeProvider
from ray.autoscaler.command_runner import CommandRunnerInterface
from ray.autoscaler.node_provider import NodeProvider

#: The environment variable that marks every process a node started.
MARK_VAR = "RAYMIA_TEST_CLUSTER"

_RAY_STOP = re.compile(
    r"\bray stop\b(?:[ \t]+(?:--force|-f|--verbose|-v|--grace-period[= ]\d+|-g[= ]?\d+))*"
)
_PORT_FLAG = re.compile(r"(--port[= ]|--object-manager-port[= ]|\$RAY_HEAD_IP:)(\d+)")
_RAY_START = re.compile(r"\bray start\b")
# ports `ray start` picks by default, possibly taken by another Ray on the machine
_DEFAULT_PORT_FLAGS = {
    "--dashboard-port": True,  # head only
    "--dashboard-agent-listen-port": False,
    "--dashboard-agent-grpc-port": False,
    "--metrics-export-port": False,
    "--runtime-env-agent-port": False,
}
if get_ray_client_dependency_error() is None:  # `ray start` refuses the flag without it
    _DEFAULT_PORT_FLAGS["--ray-client-server-port"] = True


def _free_port() -> int:
    """Return a TCP port that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _self_and_ancestors() -> set[int]:
    """Return this process and its ancestors (never stopped by stop_marked)."""
    keep = set()
    pid = os.getpid()
    while pid > 1 and pid not in keep:
        keep.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return keep


def marked_pids(mark: str) -> list[int]:
    """Return the ids of the live processes whose environment has MARK_VAR=mark."""
    needle = f"{MARK_VAR}={mark}".encode()
    keep = _self_and_ancestors()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in keep:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


def stop_marked(mark: str, grace_s: float = 10.0) -> list[int]:
    """Stop every process marked with mark, in `ray stop`'s order; return their ids.

    As `ray stop` does: the raylet first, then everything else, the GCS server last; each
    group gets SIGTERM, then SIGKILL if it is still running after its share of grace_s.
    """
    pids = marked_pids(mark)

    def group(pid: int) -> int:
        name = _name(pid)
        return 0 if "/raylet" in name else 2 if "/gcs_server" in name else 1

    for rank in range(3):
        chosen = [pid for pid in pids if group(pid) == rank]
        for pid in chosen:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s / 3
        while time.monotonic() < deadline and set(marked_pids(mark)) & set(chosen):
            time.sleep(0.1)
        for pid in set(marked_pids(mark)) & set(chosen):
            print(f"{_name(pid)} ({pid}) still running after SIGTERM: SIGKILL")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return pids


def _name(pid: int) -> str:
    """The command line of process pid, shortened ("?" once it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200] or "?"
    except OSError:
        return "?"


# ---- rsync's exclude rules, for the copies that stand in for rsync -------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate an rsync wildcard pattern (*, **, ?, [...]) to a regular expression."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i) and i == 0:
            out.append("(?:.*/)?")  # a leading **/ also matches no directory at all
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape("["))
                i += 1
            else:
                out.append(pattern[i : end + 1])
                i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


class _Rule:
    """One exclude rule, relative to the directory (`base`) whose merge file holds it."""

    def __init__(self, pattern: str, base: str = "") -> None:
        self.dir_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        self.anchored = pattern.startswith("/")
        pattern = pattern.lstrip("/")
        self.full_path = self.anchored or "/" in pattern or "**" in pattern
        self.regex = _glob_regex(pattern)
        self.base = base

    def excludes(self, rel: str, is_dir: bool) -> bool:
        """Whether this rule excludes the path rel (relative to the transfer root)."""
        if self.dir_only and not is_dir:
            return False
        if self.base:
            if not rel.startswith(self.base + "/"):
                return False
            rel = rel[len(self.base) + 1 :]
        if not self.full_path:
            return bool(self.regex.fullmatch(rel.rsplit("/", 1)[-1]))
        if self.anchored:
            return bool(self.regex.fullmatch(rel))
        parts = rel.split("/")
        return any(self.regex.fullmatch("/".join(parts[i:])) for i in range(len(parts)))


def _merge_rules(directory: str, rel: str, merge_files: list[str]) -> list[_Rule]:
    """Rules from the per-directory merge files (e.g. .gitignore) found in directory."""
    rules = []
    for name in merge_files:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith(("#", "!")):
                    rules.append(_Rule(line.removeprefix("- "), base=rel))
    return rules


def copy_like_rsync(
    source: str, target: str, excludes: list[str] | None = None, filters: list[str] | None = None
) -> None:
    """Copy source to target the way `rsync -a` (without --delete) would.

    A directory source ending in "/" has its contents copied into target; without the slash
    the directory itself goes into target. `excludes` are rsync exclude patterns, `filters`
    the names of per-directory merge files (`dir-merge,- NAME`, e.g. ".gitignore").
    """
    rules = [_Rule(p) for p in excludes or []]
    merge_files = list(filters or [])
    if not os.path.isdir(source):
        name = os.path.basename(source)
        if any(r.excludes(name, False) for r in rules):
            return
        if target.endswith("/") or os.path.isdir(target):
            target = os.path.join(target, name)
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
        return
    prefix = "" if source.endswith("/") else os.path.basename(source.rstrip("/"))
    if prefix and any(r.excludes(prefix, True) for r in rules):
        return
    root_target = os.path.join(target, prefix) if prefix else target

    def walk(src_dir: str, rel: str, dst_dir: str, inherited: list[_Rule]) -> None:
        os.makedirs(dst_dir, exist_ok=True)
        shutil.copystat(src_dir, dst_dir)
        active = inherited + _merge_rules(src_dir, rel, merge_files)
        for entry in sorted(os.scandir(src_dir), key=lambda e: e.name):
            entry_rel = f"{rel}/{entry.name}" if rel else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if any(r.excludes(entry_rel, is_dir) for r in active):
                continue
            dst = os.path.join(dst_dir, entry.name)
            if is_dir:
                walk(entry.path, entry_rel, dst, active)
            else:
                if os.path.lexists(dst) and os.path.islink(dst):
                    os.unlink(dst)
                shutil.copy2(entry.path, dst, follow_symlinks=False)

    walk(source.rstrip("/") or "/", prefix, root_target, rules)


# ---- the command runner and the provider -----------------------------------------------------


# the node's `pip` (see the module docstring); {log} is its log file
_PIP_SHIM = """import json, os, re, sys
from importlib import metadata

args = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(json.dumps(args) + "\\n")
for flag, value in zip(args, args[1:]):
    if flag in ("-c", "--constraint") and not os.path.isfile(value):
        sys.exit(f"pip (test node): constraints file {{value}} not found")
for arg in args:
    pin = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\\s]+)", arg)
    if pin and metadata.version(pin.group(1)).split("+")[0] != pin.group(2):
        have = metadata.version(pin.group(1))
        sys.exit(f"pip (test node): {{arg}}, but this machine runs {{have}}")
"""


class LocalCommandRunner(CommandRunnerInterface):
    """Runs a node's commands on this machine with `bash -c`; see the module docstring."""

    def __init__(self, log_prefix: str, node_id: str, provider_config: dict[str, Any]) -> None:
        self.log_prefix = log_prefix
        self.node_id = node_id
        self.node_dir = os.path.abspath(provider_config["node_dir"])
        self.home = os.path.join(self.node_dir, "home")
        self.mark = str(provider_config["mark"])
        os.makedirs(self.home, exist_ok=True)
        self.bin = os.path.join(self.node_dir, "bin")
        os.makedirs(self.bin, exist_ok=True)
        shim = os.path.join(self.bin, "pip")
        with open(shim, "w") as f:
            f.write(
                f"#!{sys.executable}\n"
                + _PIP_SHIM.format(log=os.path.join(self.node_dir, "pip.log"))
            )
        os.chmod(shim, 0o755)

    # -- what a command sees

    def _env(self) -> dict[str, str]:
        # a fresh machine's view: no cluster address, and none of the auth settings a Ray
        # started earlier in this process put in its environment (ray.init sets
        # RAY_AUTH_MODE=token; the node's own `ray start` makes its token in the node's HOME)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("RAY_ADDRESS", "PWD") and not k.startswith("RAY_AUTH_")
        }
        env.update(
            HOME=self.home,
            PWD=self.home,
            RAY_TMPDIR=self.node_dir,
            PIP_NO_INDEX="1",
            PATH=os.pathsep.join([self.bin, os.environ.get("PATH", "")]),
            OMP_NUM_THREADS="1",
            PYTHONWARNINGS="ignore",
        )
        env[MARK_VAR] = self.mark
        return env

    def _port_map(self) -> dict[str, int]:
        """The node's mapping from a config's port numbers to free ones (made once)."""
        path = os.path.join(self.node_dir, "ports.json")
        with FileLock(path + ".lock"):
            if os.path.exists(path):
                with open(path) as f:
                    return json.load(f)
            ports = {"__default__" + flag: _free_port() for flag in _DEFAULT_PORT_FLAGS}
            with open(path, "w") as f:
                json.dump(ports, f)
            return ports

    def _mapped_port(self, original: str) -> int:
        path = os.path.join(self.node_dir, "ports.json")
        self._port_map()
        with FileLock(path + ".lock"):
            with open(path) as f:
                ports = json.load(f)
            if original not in ports:
                ports[original] = _free_port()
                with open(path, "w") as f:
                    json.dump(ports, f)
            return int(ports[original])

    def localize(self, cmd: str) -> str:
        """Return cmd as this node runs it (the rewrites listed in the module docstring)."""
        if re.match(r"\s*(?:docker|podman)\b", cmd):
            return "true"
        stop = f"{shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(__file__))}"
        cmd = _RAY_STOP.sub(stop + " stop-marked", cmd)
        cmd = cmd.replace("sudo shutdown -h now", "true")
        cmd = _PORT_FLAG.sub(lambda m: m.group(1) + str(self._mapped_port(m.group(2))), cmd)
        if _RAY_START.search(cmd):
            defaults = self._port_map()
            head = "--head" in cmd
            extra = [
                f"{flag}={defaults['__default__' + flag]}"
                for flag, head_only in _DEFAULT_PORT_FLAGS.items()
                if flag not in cmd and (head or not head_only)
            ]
            cmd = _RAY_START.sub("ray start " + " ".join(extra), cmd)
        return cmd

    def remote_path(self, path: str) -> str:
        """A path on the node: `~` is the node's home, a relative path starts there."""
        if path == "~" or path.startswith("~/"):
            return self.home + path[1:]
        return path if os.path.isabs(path) else os.path.join(self.home, path)

    # -- CommandRunnerInterface

    def run(
        self,
        cmd: str | None = None,
        timeout: int = 120,
        exit_on_fail: bool = False,
        port_forward: Any = None,
        with_output: bool = False,
        environment_variables: dict[str, object] | None = None,
        run_env: str = "auto",
        ssh_options_override_ssh_key: str = "",
        shutdown_after_run: bool = False,
        silent: bool = False,
    ) -> Any:
        """Run cmd in the node's home; return its stdout (bytes) when with_output, else ""."""
        if not cmd:
            return ""
        if environment_variables:
            cmd = _with_environment_variables(cmd, environment_variables)
        local = self.localize(cmd)
        with open(os.path.join(self.node_dir, "commands.log"), "a") as log:
            log.write(f"$ {local}\n")
        argv = ["bash", "-c", local]
        try:
            if with_output:
                return subprocess.check_output(argv, env=self._env(), cwd=self.home)
            subprocess.run(argv, env=self._env(), cwd=self.home, check=True)
            return ""
        except subprocess.CalledProcessError as e:
            if exit_on_fail:
                raise click.ClickException(f"Command failed:\n\n  {local}\n") from None
            raise click.ClickException(f"Command failed (exit {e.returncode}): {local}") from None
        finally:
            sys.stdout.flush()
            sys.stderr.flush()

    def run_rsync_up(self, source: str, target: str, options: dict | None = None) -> None:
        """Copy a local source to the node's target (rsync -a semantics, excludes honoured)."""
        options = options or {}
        copy_like_rsync(
            source,
            self.remote_path(target),
            options.get("rsync_exclude"),
            options.get("rsync_filter"),
        )

    def run_rsync_down(self, source: str, target: str, options: dict | None = None) -> None:
        """Copy the node's source to a local target (rsync -a semantics, excludes honoured)."""
        options = options or {}
        copy_like_rsync(
            self.remote_path(source),
            target,
            options.get("rsync_exclude"),
            options.get("rsync_filter"),
        )

    def remote_shell_command_str(self) -> str:
        """The command that opens a shell "on" the node."""
        return f"cd {shlex.quote(self.home)} && HOME={shlex.quote(self.home)} bash\n"


class LocalLauncherProvider(LocalNodeProvider):
    """Ray's local node provider with its state in `node_dir` and a LocalCommandRunner."""

    def __init__(self, provider_config: dict[str, Any], cluster_name: str) -> None:
        NodeProvider.__init__(self, provider_config, cluster_name)
        node_dir = provider_config["node_dir"]
        self.state = ClusterState(
            os.path.join(node_dir, "cluster.lock"),
            os.path.join(node_dir, "cluster.state"),
            provider_config,
        )
        self.use_coordinator = False

    def get_command_runner(
        self,
        log_prefix: str,
        node_id: str,
        auth_config: dict[str, Any],
        cluster_name: str,
        process_runner: Any,
        use_internal_ip: bool,
        docker_config: dict[str, Any] | None = None,
    ) -> CommandRunnerInterface:
        """Return a runner for node_id that runs on this machine (docker_config ignored)."""
        return LocalCommandRunner(log_prefix, node_id, self.provider_config)


if __name__ == "__main__":
    # `ray stop` on a node: stop the processes carrying this node's mark, nothing else
    if sys.argv[1:] != ["stop-marked"] or not os.environ.get(MARK_VAR):
        sys.exit(f"usage: {MARK_VAR}=<mark> python launcher_provider.py stop-marked")
    stopped = stop_marked(os.environ[MARK_VAR])
    print(f"stopped {len(stopped)} processes marked {MARK_VAR}={os.environ[MARK_VAR]}")
