"""Real Ray nodes on this host for tests and benchmarks: `ray start --block` in PID namespaces of their own (and, for
a head that must not see the storage node's files, a mount namespace with an empty tmpfs over them), token auth,
ports of their own. Killing a namespace's first process ends everything in it: no `ray stop`, no pattern kill."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ray.job_submission import JobSubmissionClient


class NodeError(RuntimeError):
    """A node did not come up."""


def _die_with_parent() -> None:
    """In the child before exec: the kernel SIGKILLs it when the process that started it dies (a test run killed
    mid-way), and unshare's --kill-child then ends its namespace: no node outlives its test run."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1


TOKEN = "hfrtest" + "5" * 57
# The storage node's own Hub token, as its unit's environment file gives it (cluster/README.md): a job's driver
# inherits it there; no submitter sends one.
NODE_HF_TOKEN = "hf_StorageNodeOwnToken0123456789"
RAY = str(Path(sys.executable).with_name("ray"))
# The jobs' entrypoint runs `python -m hugflow_ray`: the nodes' PATH leads to this environment first, as the
# units in cluster/ set it.
NODE_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
START_SECONDS = 90
PID_NAMESPACE = ("unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount-proc")  # as root, as CI runs
MEMORY = ("--object-store-memory=200000000",)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Node:
    """One `ray start --block` in its own PID namespace (and, with ``hide``, its own mount namespace where ``hide``
    is an empty tmpfs), in its own temp dir; killed with its namespace."""

    def __init__(self, args: list[str], *, hide: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="hfr-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, **NODE_ENV, **(env or {})}
        # Ports Ray would otherwise take at fixed defaults: two nodes on one host would collide on them.
        self.metrics_port = free_port()
        ports = [f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={self.metrics_port}"]
        if "--head" in args:
            ports.append(f"--ray-client-server-port={free_port()}")
        command = [RAY, "start", "--block", "--disable-usage-stats", f"--temp-dir={self.temp_dir}", *ports, *args]
        if hide is not None:
            command = ["sh", "-c", 'mount -t tmpfs hidden "$0" && exec "$@"', str(hide), *command]
        self.process = subprocess.Popen([*PID_NAMESPACE, *command], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True, text=True,
                                        preexec_fn=_die_with_parent)

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_SECONDS
        while not ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                output = self.process.stdout.read() if self.process.stdout else ""
                raise NodeError(f"{what} did not come up (exit {self.process.returncode}): {output}")
            time.sleep(0.5)

    def first_pid(self) -> int:
        """The namespace's first process (unshare's child), for nsenter."""
        return int(Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()[0])

    def kill(self) -> None:
        """SIGKILL unshare's process group; its child is the namespace's first process, so the kernel then ends every
        process of the namespace. It may already be gone when `ray start` exited by itself."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@dataclass
class Cluster:
    head: Node
    storage: Node
    gcs: str
    job_server: str
    hidden: Path  # on the storage node's disk (and the test's); the head sees an empty tmpfs there

    def client(self) -> JobSubmissionClient:
        return JobSubmissionClient(self.job_server, headers={"Authorization": f"Bearer {TOKEN}"})

    def env(self, **extra: str) -> dict[str, str]:
        """A submitter's environment: the job server, Ray's token, and these settings."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        return {**base, "RAY_ADDRESS": self.job_server, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, **extra}


def alive_nodes(job_server: str) -> int:
    request = urllib.request.Request(f"{job_server}/api/v0/nodes", headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            nodes = json.load(answer)["data"]["result"]["result"]
    except OSError:
        return 0
    return sum(1 for n in nodes if n["state"] == "ALIVE")


@contextlib.contextmanager
def storage_head(*args: str) -> Iterator[tuple[str, Node]]:
    """One `ray start --head` on loopback that is also the storage node (it declares the storage resource), as an
    operator keeps one running on the machine that holds the files; yields its GCS address and the node once its
    raylet is up."""
    port = free_port()
    head = Node(["--head", f"--port={port}", "--node-ip-address=127.0.0.1", '--resources={"hugflow_storage": 1}',
                 *args])
    try:
        head.wait_until(lambda: bool(list(Path(head.temp_dir).glob("session_*/logs/raylet.out"))) and answers(port),
                        "the head")
        yield f"127.0.0.1:{port}", head
    finally:
        head.kill()


@contextlib.contextmanager
def two_node_cluster(*, cpus_each: int = 1) -> Iterator[Cluster]:
    """A head (dashboard, job server) that cannot see ``hidden``, and a storage node that holds the storage resource
    and sees it, as two machines would be."""
    hidden = Path(tempfile.mkdtemp(prefix="hfr-storage-", dir="/tmp"))
    port, dashboard = free_port(), free_port()
    head = Node(["--head", f"--port={port}", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus_each}", *MEMORY,
                 "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}"],
                hide=hidden)
    try:
        head.wait_until(lambda: alive_nodes(f"http://127.0.0.1:{dashboard}") == 1, "the head")
        storage = Node([f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus_each}",
                        *MEMORY, '--resources={"hugflow_storage": 1}'], env={"HF_TOKEN": NODE_HF_TOKEN})
        try:
            storage.wait_until(lambda: alive_nodes(f"http://127.0.0.1:{dashboard}") == 2, "the storage node")
            yield Cluster(head, storage, f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}", hidden)
        finally:
            storage.kill()
    finally:
        head.kill()
        shutil.rmtree(hidden, ignore_errors=True)
