"""What the orchestration needs from an executor: make ready, then run the steps it is handed over the pending reads.

Pure: no Ray here, so the orchestration and its tests name the contract without loading Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from hugflow_ray.errors import SyncError

if TYPE_CHECKING:
    import pyarrow as pa

STORAGE_SHARE = 0.001  # of the storage resource, per task or actor that must run on the storage node

BlockWritten = Callable[[int, int, np.ndarray], None]
"""``(rows, errors, ids)``: totals written so far, and the ids of the rows written since the last call."""


@dataclass(frozen=True)
class Reads:
    """What a run reads: its read tasks, planned before any file is local, and the parts as their files arrive.

    Attributes:
        slices: ``(part, slice, slices)`` in split order: one read task each.
        opened: the parts in split order (objects with an ``index``: the part's position), each once its files are
            local and its rows counted; blocks until then (the executor consumes it on a thread of its own, beside
            the conversion, and hands each to the read step).
        cancel: stops ``opened`` early (the run failed or was interrupted): no further download starts.
        demand: a read task waits for this part: fetch it (and every part before it) whatever the window, so that
            no wait depends on a read task the executor has not launched yet.
        pending: the rows not yet finished, as far as the parts counted so far tell (the split's estimate for the
            rest); read after each write.
        source_bytes: the bytes the parts' files hold.
    """

    slices: list[tuple[int, int, int]]
    opened: Iterator[Any]
    cancel: Callable[[], None]
    demand: Callable[[int], None]
    pending: Callable[[], int]
    source_bytes: int = 0


ReadStep = Callable[[Any, int, int], "Iterator[pa.Table]"]
"""``(opened part, slice, slices)`` -> that slice's unfinished source rows as Arrow blocks (:attr:`Steps.read`)."""


class BlockWriter(Protocol):
    """The one writer of a dataset directory: a converted block's files made durable, then its ledger part."""

    def write_batch(self, batch: pa.Table) -> tuple[int, int]:
        """Write a converted block; returns its rows and row errors."""
        ...


@dataclass(frozen=True)
class Steps:
    """The stages a run is handed, as datatrove's executors are handed their ``PipelineStep``s: the executor places
    them (reads and conversion on every node, the writer on the storage node) and runs them, knowing nothing of what
    they do.

    Attributes:
        read: ``(opened part, slice, slices)`` -> that slice's unfinished source rows as Arrow blocks, each row with
            its ``row_id``.
        convert: a block of source rows -> the converted block (the ledger's columns and the files' bytes); runs on
            the workers, so it must pickle.
        writer: ``dataset_dir`` -> the dataset's one :class:`BlockWriter` (made on the storage node); must pickle.
        convert_on_storage: conversion reads files that only the storage node has (rows that name their audio files).
    """

    read: ReadStep
    convert: Callable[[pa.Table], pa.Table]
    writer: Callable[[Path], BlockWriter]
    convert_on_storage: bool = False


@dataclass(frozen=True)
class RunResult:
    """What a run wrote, how busy the output writer was (``writer_seconds`` of ``seconds``), and how many converted
    blocks each node (by Ray node id) made."""

    rows: int
    errors: int
    seconds: float
    writer_seconds: float
    blocks_by_node: dict[str, int] = field(default_factory=dict)

    @property
    def writer_busy_fraction(self) -> float:
        return self.writer_seconds / self.seconds if self.seconds > 0 else 0.0


class Executor(Protocol):
    """Runs read -> convert -> write over the pending units of one dataset."""

    def start(self) -> float:
        """Make ready to run (start or join the workers); returns the seconds it took."""
        ...

    def run(self, reads: Reads, steps: Steps, dataset_dir: Path, *, on_progress: BlockWritten) -> RunResult:
        """Read, convert and write the rows ``reads`` holds (each part's finished rows left out) into
        ``dataset_dir`` with ``steps``."""
        ...


def no_storage_node(cluster: str, resource: str) -> SyncError:
    """The error for a cluster where no live node declares the storage resource, with the command that fixes it."""
    return SyncError(
        f"no live node of the Ray cluster at {cluster} declares the resource {resource!r} that marks the storage "
        f"node (the one that owns STORAGE_ROOT): start Ray there with `ray start ... "
        f"--resources='{{\"{resource}\": 1}}'` (or set STORAGE_RESOURCE to the resource it declares)"
    )
