"""A real multi-node Ray cluster on this machine, for tests and benchmarks.

``LocalCluster`` starts a head node and any number of worker nodes with ``ray start``, each in a
process group and a temporary directory of its own, with token authentication and a token of
its own (set in this process's environment by :meth:`LocalCluster.start`: start the cluster
before this process imports ray, or set ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` before
that), so one node can be killed (as a machine
failure would) and nothing is left behind: :meth:`LocalCluster.stop` kills every process group it
started and every process still naming its directories, without ``ray stop`` (which would stop
every Ray node on the machine, other people's included)::

    with LocalCluster(head_cpus=1) as cluster:
        node = cluster.add_node(cpus=1)
        runner = RayRunner(RayRunnerSettings(address=cluster.address))
        ...
        cluster.kill_node(node)
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess  # nosec B404 - starting Ray nodes is this module's purpose
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from neuromosaic_runner_ray.worker import WORKDIR_PREFIX


class ClusterStartError(RuntimeError):
    """``ray start`` failed; the message carries the end of its output."""


@attrs.define
class Node:
    """One ``ray start`` process group: its directory and process group id."""

    temp_dir: Path
    pgid: int
    head: bool = False
    alive: bool = True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCluster:
    """A head (``head_cpus`` CPUs, no dashboard) listening on 127.0.0.1 and nodes added on demand."""

    def __init__(self, head_cpus: float = 1, start_timeout_s: float = 60.0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nm-ray-"))  # short: Ray's socket paths must stay < 108 bytes
        self.head_cpus = head_cpus
        self.start_timeout_s = start_timeout_s
        self.nodes: list[Node] = []
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Token authentication with a token of its own, given to the nodes and to this process
        # (which joins as the driver) through the environment: Ray 2.60 turns token auth on for a
        # head when ~/.ray/auth_token exists but not for a joining node, so leaving it to Ray's
        # defaults makes the cluster depend on that file.
        # Ray reads the mode when it is imported: a process that imports ray before start() must
        # set both variables first (the tests' conftest does); their token is then reused here.
        token = os.environ.get("RAY_AUTH_TOKEN") if os.environ.get("RAY_AUTH_MODE") == "token" else None
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token or secrets.token_hex(32)}
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **self.auth}
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> Node:
        """Start the head, and let this process (and its children) join with the cluster's token."""
        for key, value in self.auth.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        return self._ray_start(
            "head", head=True, cpus=self.head_cpus,
            args=["--head", f"--port={self.port}", "--include-dashboard=false", f"--dashboard-port={free_port()}",
                  f"--dashboard-agent-listen-port={free_port()}"],
        )

    def add_node(self, cpus: float = 1) -> Node:
        """A worker node joining the head (a separate raylet with its own worker processes)."""
        return self._ray_start(f"node{len(self.nodes)}", head=False, cpus=cpus, args=[f"--address={self.address}",
                               f"--dashboard-agent-listen-port={free_port()}"])

    def _ray_start(self, name: str, head: bool, cpus: float, args: list[str]) -> Node:
        temp_dir = self.root / name
        temp_dir.mkdir()
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus:g}",
               "--num-gpus=0", f"--temp-dir={temp_dir}", "--disable-usage-stats", *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,  # noqa: S603  # nosec B603
                                start_new_session=True, env=self.env)
        node = Node(temp_dir, proc.pid, head)
        self.nodes.append(node)  # registered before waiting: stop() must find it even if start fails
        try:
            output, _ = proc.communicate(timeout=self.start_timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise ClusterStartError(f"ray start ({name}) did not finish in {self.start_timeout_s:g} s") from None
        if proc.returncode != 0:
            self.stop()
            raise ClusterStartError(f"ray start ({name}) failed with exit code {proc.returncode}: {output[-2000:]}")
        return node

    def kill_node(self, node: Node) -> None:
        """SIGKILL every process of the node, as a machine that loses power would."""
        _kill_group(node.pgid)
        for pid in pids_naming(str(node.temp_dir)):
            _kill(pid)
        node.alive = False

    def stop(self) -> None:
        """Kill every node (worker nodes first) and remove the directories."""
        for node in sorted(self.nodes, key=lambda n: n.head):
            if node.alive:
                self.kill_node(node)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pids_naming(str(self.root)):
            time.sleep(0.1)
        for pid in pids_naming(str(self.root)):  # a straggler that left its group
            _kill(pid)
        shutil.rmtree(self.root, ignore_errors=True)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def processes(self) -> list[int]:
        """PIDs of this cluster's processes still alive (for leak checks)."""
        pids = set(pids_naming(str(self.root)))
        for node in self.nodes:
            pids.update(_group_members(node.pgid))
        return sorted(pids)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _proc_entries() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def pids_naming(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (a node's directory, say)."""
    found = []
    for pid in _proc_entries():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(pid)
    return found


def _group_members(pgid: int) -> list[int]:
    members = []
    for pid in _proc_entries():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(pid)
    return members


# -- inspecting the processes of trials (tests, benchmarks) ------------------------------------


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ray_trial_workers() -> list[int]:
    """Ray worker processes executing a trial task right now (Ray titles them ``ray::<task>``)."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _cmdline(int(p)).startswith("ray::neuromosaic_trial")]


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return 0


def _is_harness(pid: int) -> bool:
    cmdline = _cmdline(pid)
    return (f"{WORKDIR_PREFIX}" in cmdline and "neuromosaic_core.harness" in cmdline
            and not cmdline.startswith(("bwrap", "/usr/bin/bwrap")))


def harness_processes() -> list[int]:
    """Harness processes of ray trials running now on this machine, one per trial (a fork inside a
    harness, which shows its parent's command line until it execs, is not counted)."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_harness(int(p))]
    return [p for p in pids if not _is_harness(_parent(p))]


def wait_for(predicate: Callable[[], object], timeout: float = 90.0, what: str = "condition") -> object:
    """Poll until ``predicate()`` is truthy (a generous deadline against a hang, not a benchmark)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def all_gone(pids: list[int]) -> bool:
    return not any(_alive(p) for p in pids)
