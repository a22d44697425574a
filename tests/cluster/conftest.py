"""A throwaway multi-node Ray cluster on loopback, for the scaling-out tests.

Each node is a ``ray start --block`` process in its own session, started through
``python -m rl_models.app.loopback_ray`` (the recipe of docs/scaling_out.md) so every server
listens on 127.0.0.1 only, with its own ports, its own temp dir and token authentication on.
Every process the cluster spawns inherits a marker environment variable, so teardown kills
exactly this cluster's processes by pid and never touches another Ray on the machine
(``ray stop`` would kill every Ray of this user).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DRIVERS = Path(__file__).resolve().parent / "drivers"
_MARKER = "DEEPMIXING_TEST_CLUSTER"
LOOPBACK_RAY = [sys.executable, "-m", "rl_models.app.loopback_ray"]
"""Ray's CLI with loopback addresses kept (``rl_models/app/loopback_ray.py``)."""


def free_port() -> int:
    """Return a TCP port that is free on loopback right now."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """Return ``n`` distinct TCP ports free on loopback right now.

    The sockets stay bound until all are picked, so the kernel never hands out one twice.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_range(width: int, *, avoid: set[int]) -> int:
    """Return ``low`` such that ports ``low .. low + width`` are free and none is in ``avoid``.

    Ray refuses to start a node whose worker ports overlap any other port it was given.
    """
    for _ in range(100):
        low = free_port()
        span = range(low, low + width + 1)
        if span.stop <= 65536 and avoid.isdisjoint(span) and all(map(_bindable, span)):
            return low
    raise RuntimeError(f"no {width + 1} consecutive free ports on loopback")


def _pids_with_marker(marker: str) -> list[int]:
    """Pids of live processes whose environment carries ``_MARKER=marker``."""
    needle = f"{_MARKER}={marker}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:  # gone, or not ours
            continue
        if needle in environ.split(b"\0"):
            pids.append(int(entry))
    return pids


class DriverError(subprocess.CalledProcessError):
    """A driver subprocess failed; the message carries the tail of its output."""

    def __str__(self) -> str:
        return (f"{super().__str__()}\n--- stdout\n{(self.output or '')[-3000:]}"
                f"\n--- stderr\n{(self.stderr or '')[-5000:]}")


class LocalRayCluster:
    """Head and worker nodes started with ``ray start`` on 127.0.0.1.

    Args:
        root: A fresh directory for the Ray temp dir, logs and storage.
    """

    LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})
    """Addresses a loopback-only cluster may listen on."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.marker = secrets.token_hex(8)
        self.gcs_port = free_port()
        self.address = f"127.0.0.1:{self.gcs_port}"
        # Ray's unix socket paths must stay short (107 bytes): keep the temp dir shallow.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="dmray-", dir="/tmp"))
        self.nodes: dict[str, subprocess.Popen] = {}
        self.killed: set[str] = set()
        self.env = {
            **os.environ,
            _MARKER: self.marker,
            # Token authentication stays on, as in production.
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            # Notice a dead node in about a second instead of the default ~30 s.
            "RAY_health_check_initial_delay_ms": "500",
            "RAY_health_check_period_ms": "500",
            "RAY_health_check_timeout_ms": "500",
            "RAY_health_check_failure_threshold": "3",
            "RAY_USAGE_STATS_ENABLED": "0",
            # As the deploy images set it: snapshot Tune's experiment state every 2 s, so a
            # killed driver resumes from a recent checkpoint (the default waits >= 10 s).
            "TUNE_GLOBAL_CHECKPOINT_S": "2",
            # Two cores shared by a whole test suite: a worker importing torch can take long
            # to register; don't let the raylet kill it as hung (default 60 s).
            "RAY_worker_register_timeout_seconds": "300",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        self.env.pop("RAY_ADDRESS", None)

    def _node_ports(self) -> list[str]:
        names = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
                 "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")
        # Clear of the head's GCS port, which is not bound yet while the head starts.
        ports = [p for p in free_ports(len(names) + 1) if p != self.gcs_port][:len(names)]
        # A private worker port range, clear of this node's other ports too.
        low = free_port_range(40, avoid={*ports, self.gcs_port})
        return [
            *(f"--{name}={port}" for name, port in zip(names, ports, strict=True)),
            f"--min-worker-port={low}",
            f"--max-worker-port={low + 40}",
        ]

    def start_node(
        self, name: str, *, num_cpus: int = 1, resources: dict[str, float] | None = None
    ) -> None:
        """Start the head (first call) or a worker node and wait until it joined.

        Args:
            name: Key for :meth:`kill_node`.
            num_cpus: CPUs the node advertises.
            resources: Custom resources, e.g. ``{"node_b": 1}`` to pin actors to it.
        """
        head = not self.nodes
        cmd = [
            *LOOPBACK_RAY, "start", "--block", "--disable-usage-stats",
            "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}", "--num-gpus=0",
            f"--resources={json.dumps(resources or {})}",
            "--object-store-memory=100000000",
            *self._node_ports(),
        ]  # fmt: skip
        if head:
            cmd += [
                "--head", f"--port={self.gcs_port}", f"--temp-dir={self.temp_dir}",
                "--include-dashboard=false",
            ]  # fmt: skip
        else:
            cmd += [f"--address={self.address}"]
        log = open(self.root / f"ray-start-{name}.log", "wb")  # noqa: SIM115 - lives with node
        self.nodes[name] = subprocess.Popen(
            cmd, env=self.env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_for_nodes(len(self.nodes), timeout=90)

    def alive_nodes(self) -> int:
        """Number of alive nodes, asked from the GCS by a short-lived driver."""
        out = self.run_driver(
            "-c",
            "import ray; from rl_models.app.loopback_ray import loopback_addresses\n"
            "with loopback_addresses(): ray.init(address='auto', logging_level='ERROR')\n"
            "print('ALIVE', sum(n['Alive'] for n in ray.nodes()))",
            timeout=60,
        )
        return int(out.stdout.split("ALIVE")[-1].split()[0])

    def wait_for_nodes(self, n: int, *, timeout: float) -> None:
        """Block until ``n`` nodes are alive, failing with the node logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.nodes.items():
                if proc.poll() is not None and name not in self.killed:
                    pytest.fail(f"ray start for node {name!r} exited: {self.logs()}")
            try:
                if self.alive_nodes() == n:
                    return
            except (subprocess.SubprocessError, ValueError, IndexError):
                pass
            time.sleep(1.0)
        pytest.fail(f"cluster did not reach {n} alive nodes in {timeout}s: {self.logs()}")

    def run_driver(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        """Run ``python *args`` as a driver of this cluster, raising on failure."""
        out = subprocess.run(
            [sys.executable, *args],
            env={**self.env, "RAY_ADDRESS": self.address},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise DriverError(
                out.returncode, args, output=out.stdout, stderr=out.stderr
            )
        return out

    def popen_driver(self, *args: str, log: Path) -> subprocess.Popen:
        """Start ``python *args`` as a driver in the background, output to ``log``."""
        return subprocess.Popen(
            [sys.executable, *args],
            env={**self.env, "RAY_ADDRESS": self.address},
            cwd=REPO_ROOT,
            stdout=open(log, "wb"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def pids(self, cmdline_contains: str) -> list[int]:
        """Pids of this cluster's processes whose command line holds the given text.

        Ray retitles a worker after the actor it runs (``ray::DeepMixingTrainable.train``).
        """
        out = []
        for pid in _pids_with_marker(self.marker):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if cmdline_contains.encode() in cmdline:
                out.append(pid)
        return out

    def listening_hosts(self) -> set[str]:
        """The local addresses of every TCP socket this cluster's processes listen on."""
        inodes = set()
        for pid in _pids_with_marker(self.marker):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
                links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds]
            except OSError:
                continue
            inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
        hosts = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(fields[1].split(":")[0])
                # The kernel prints each 32-bit word of the address in host (little) order.
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                address = ipaddress.ip_address(raw)
                hosts.add(str(getattr(address, "ipv4_mapped", None) or address))
        return hosts

    def kill_node(self, name: str) -> None:
        """SIGKILL a node's whole process group: raylet, agents and its workers."""
        proc = self.nodes[name]
        self.killed.add(name)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def logs(self, tail: int = 3000) -> str:
        """The tail of every node's ``ray start`` log, for failure messages."""
        parts = []
        for path in sorted(self.root.glob("ray-start-*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def shutdown(self) -> None:
        """Stop every process of this cluster (and only this cluster), then clean up."""
        for proc in self.nodes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # ray start --block stops its children
        for proc in self.nodes.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        for _ in range(3):
            pids = _pids_with_marker(self.marker)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture
def ray_cluster(tmp_path):
    """A fresh loopback cluster with no nodes yet; always torn down, even on failure."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the loopback cluster harness reads /proc")
    cluster = LocalRayCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.shutdown()
