"""Fault-injection hooks: kill this process at a named point of the pipeline, or fail one row, so tests can prove
resumes exact and faults contained."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

FAILPOINT_VARIABLE = "HUGFLOW_FAILPOINT"


def _armed() -> list[str]:
    """The failpoints ``HUGFLOW_FAILPOINT`` arms: one, or several separated by commas."""
    return [entry for entry in os.environ.get(FAILPOINT_VARIABLE, "").split(",") if entry]


def failpoint(name: str) -> None:
    """SIGKILL this process at the point ``name`` when ``HUGFLOW_FAILPOINT`` names it.

    Points: ``files-written`` (a batch's files are durable, its ledger part is not yet written; in the writer
    actor), ``ledger-compacted`` (the merged ledger part is durable, the parts it merged not yet deleted; in the
    driver's finalize, or the writer every ``COMPACT_EVERY_PARTS`` blocks), ``finalize`` (manifests written, status
    not yet complete; in the driver) and ``ledger-part-rewritten`` (a repair dropping rows: a part's replacement is
    durable, the old part not yet deleted).
    """
    if name in _armed():
        os.kill(os.getpid(), signal.SIGKILL)


def raise_in_row(row_id: int) -> None:
    """Raise an unexpected error while converting ``row_id`` when ``HUGFLOW_FAILPOINT=raise-in-row:<row_id>``."""
    if f"raise-in-row:{row_id}" in _armed():
        raise RuntimeError(f"failpoint raise-in-row:{row_id}")


def pause(name: str) -> None:
    """Hold this process at the point ``name`` when ``HUGFLOW_FAILPOINT=pause:<name>:<file>``: it creates
    ``<file>.reached``, then waits until ``<file>`` exists (a test's release), once per process.

    Points: ``rows-written`` (the driver, after the first block's rows are in the ledger) and ``all-written`` (the
    driver, after the last block is written, while the workers and the output actor still live).
    """
    prefix = f"pause:{name}:"
    value = next((entry for entry in _armed() if entry.startswith(prefix)), None)
    if value is None or name in _paused:
        return
    _paused.add(name)
    release = Path(value[len(prefix):])
    Path(f"{release}.reached").touch()
    while not release.exists():
        time.sleep(0.05)


_paused: set[str] = set()
