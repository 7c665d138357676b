"""The data-plane driver as a child process on this host: ``hugflow local-sync`` without the control plane's
credentials, its output echoed (redacted) to the job's log."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from hugflow_ray.utils.redact import redact

# The control plane's credentials: the data-plane driver never needs them, so it never gets them.
CONTROL_PLANE_VARIABLES = (
    "GITHUB_TOKEN", "GH_TOKEN", "GH_ENTERPRISE_TOKEN", "SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN",
    "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL",
)


def driver_environment() -> dict[str, str]:
    """The environment for a data-plane driver process: this one without the control plane's credentials."""
    return {k: v for k, v in os.environ.items() if k.upper() not in CONTROL_PLANE_VARIABLES}


class LocalDriver:
    """Runs ``hugflow local-sync`` as a child process on this host, without the control plane's credentials."""

    def __init__(self, secrets: list[str]) -> None:
        self._secrets = secrets

    def attach(self, dataset_name: str, sha: str | None) -> None:
        """A child process does not outlive the job that started it: there is never one to follow."""
        return None

    def start(self, root: Path, request: Path, *, owner: str, expect_sha: str | None, dataset_name: str,
              metadata: dict[str, str]) -> _ProcessRun:
        command = [sys.executable, "-m", "hugflow_ray", "local-sync", str(root / request), "--lock-owner", owner]
        if expect_sha:
            command += ["--expect-sha", expect_sha]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=driver_environment(), errors="replace")
        return _ProcessRun(process, self._secrets)


class _ProcessRun:
    """A driver process whose output is echoed (redacted) to this job's log."""

    where = None

    def __init__(self, process: subprocess.Popen[str], secrets: list[str]) -> None:
        self._process, self._secrets = process, secrets
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            text = redact(line.rstrip("\n"), self._secrets)
            print(f"  | {text}", flush=True)

    def poll(self) -> int | None:
        return self._process.poll()

    def wait(self) -> int:
        code = self._process.wait()
        self._reader.join(timeout=10)
        return code

    def ended(self) -> None:
        """Its exit status says how it ended."""
        return None
