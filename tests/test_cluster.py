"""`local-sync` joins a running Ray cluster through RAY_ADDRESS (a real `ray start --head`, on loopback only)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import datasets_fixtures as fx

pytestmark = pytest.mark.cluster

# Ray advertises the node's outward address unless cluster mode is off; off, everything stays on 127.0.0.1.
# Ray 2.60 starts heads with token auth, and a driver must then say so.
LOOPBACK_RAY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}
HEAD_START_SECONDS = 60
PID_NAMESPACE = ("unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount-proc")  # as root, as CI runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A `ray start --head --block` in its own process group and temp dir; killed with its group after."""
    temp_dir = tempfile.mkdtemp(prefix="hfr-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **LOOPBACK_RAY}
    ray = Path(sys.executable).with_name("ray")
    # Its own PID namespace: when the namespace's first process dies, the kernel ends every process in it, so
    # nothing of this head outlives the test and nothing else is touched (no `ray stop`, no pattern kill).
    head = subprocess.Popen(
        [*PID_NAMESPACE, str(ray), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True,
    )
    deadline = time.monotonic() + HEAD_START_SECONDS
    while not list(Path(temp_dir).glob("session_*/logs/raylet.out")) or not _answers(port):
        if head.poll() is not None or time.monotonic() > deadline:
            _kill_group(head)
            pytest.fail(f"ray start --head did not come up (exit {head.returncode}): {head.stdout.read()}")
        time.sleep(0.5)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _kill_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _kill_group(head: subprocess.Popen[str]) -> None:
    """SIGKILL the head's process group (unshare, whose child is the namespace's first process: the kernel then ends
    every process of the namespace); it may already be gone when `ray start` exited by itself."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait(timeout=30)


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_local_sync_joins_the_cluster_at_ray_address(ray_head: str, tmp_path: Path) -> None:
    shard = fx.parquet_bytes(fx.speech_records(12), fx.speech_features(), row_group_size=4)
    fx.write_local_dataset(tmp_path / "source", [shard])
    request = tmp_path / "requests" / "add" / "cluster.yaml"
    request.parent.mkdir(parents=True)
    request.write_text("path: ../../source\ndescription: cluster test\n")
    env = {**os.environ, **LOOPBACK_RAY, "RAY_ADDRESS": ray_head, "STORAGE_ROOT": str(tmp_path / "out"),
           "STATE_DIR": str(tmp_path / "state"), "PROCESSED_ROOT": str(tmp_path / "processed")}
    done = subprocess.run([sys.executable, "-m", "hugflow_ray", "local-sync", str(request)], env=env,
                          capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Connected to Ray cluster" in output and "Started a local Ray instance" not in output
    assert "completed (12 rows" in output
    assert len(list((tmp_path / "out").glob("*/audio/*.mp3"))) == 12
