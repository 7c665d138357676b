"""Fault-injection hooks: kill this process at a named point of the pipeline, or fail one row, so tests can prove
resumes exact and faults contained."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

FAILPOINT_VARIABLE = "HUGFLOW_FAILPOINT"


def failpoint(name: str) -> None:
    """SIGKILL this process at the point ``name`` when ``HUGFLOW_FAILPOINT`` names it.

    Points: ``files-written`` (a batch's files are durable, its ledger part is not yet written; in the writer
    actor) and ``finalize`` (manifests written, status not yet complete; in the driver).
    """
    if os.environ.get(FAILPOINT_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def raise_in_row(row_id: int) -> None:
    """Raise an unexpected error while converting ``row_id`` when ``HUGFLOW_FAILPOINT=raise-in-row:<row_id>``."""
    if os.environ.get(FAILPOINT_VARIABLE) == f"raise-in-row:{row_id}":
        raise RuntimeError(f"failpoint raise-in-row:{row_id}")


def pause(name: str) -> None:
    """Hold this process at the point ``name`` when ``HUGFLOW_FAILPOINT=pause:<name>:<file>``: it creates
    ``<file>.reached``, then waits until ``<file>`` exists (a test's release), once per process.

    Points: ``rows-written`` (the driver, after the first block's rows are in the ledger).
    """
    value = os.environ.get(FAILPOINT_VARIABLE, "")
    prefix = f"pause:{name}:"
    if not value.startswith(prefix) or name in _paused:
        return
    _paused.add(name)
    release = Path(value[len(prefix):])
    Path(f"{release}.reached").touch()
    while not release.exists():
        time.sleep(0.05)


_paused: set[str] = set()
