"""The parquet ledger: which rows of a dataset are finished, with their files, checksums and errors.

It lives inside the dataset directory (``.hugflow/ledger/part-<first row>-<n>.parquet``) and is appended to only
after the files a part describes are durable, so a row in the ledger always has its files; a row whose files
were written but whose part was not is simply converted and written again (same bytes, same names).
Each part is written atomically; a reader never sees half a part, and counts a row in two parts once. A repair
takes rows out by rewriting parts (:meth:`Ledger.drop_rows`). The fingerprint in ``meta.json`` pins the
request and encoder settings the rows were made with.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hugflow_ray.copies.batches import LEDGER_SCHEMA, read_parquet, records_to_table, table_to_records
from hugflow_ray.copies.layout import CopyLayout
from hugflow_ray.core.records import RowColumn, RowRecord, RowStatus
from hugflow_ray.utils import atomic
from hugflow_ray.utils.failpoints import failpoint
from hugflow_ray.utils.safe_paths import UnsafePathError, open_regular, read_small

log = logging.getLogger(__name__)

DAMAGED_DIR = "damaged"
REWRITTEN_DIGEST_LENGTH = 12
FULL_PART_ROWS = 1 << 16  # a part this big is left alone by compaction (see Ledger.compact)
MAX_META_BYTES = 1 << 20  # the fingerprint is a few hundred bytes: a larger meta.json is damage, never read whole


class LedgerMismatchError(ValueError):
    """The ledger was written for other settings than this run's (or cannot say which)."""


class LedgerDamagedError(LedgerMismatchError):
    """The ledger's fingerprint file exists but cannot be read."""


def _read_part(path: Path, columns: list[str] | None) -> pa.Table | None:
    """One ledger part, or None (with a warning) when it cannot be read.

    Read against today's schema, so a column a part written by an older version lacks (``json_sha256``) reads as
    nulls.
    """
    try:
        fd = open_regular(path)
        if fd is None:
            raise OSError(f"{path.name} is not a regular file (a link, a folder, a FIFO...)")
        with os.fdopen(fd, "rb") as f:
            return read_parquet(f, LEDGER_SCHEMA, columns)
    except (pa.ArrowException, OSError) as e:
        log.warning("ledger part %s cannot be read (%s); its rows count as not finished", path, e)
        return None


@dataclass(frozen=True)
class LedgerSummary:
    """The finished rows (sorted ids) and how many of them are row errors."""

    finished: np.ndarray
    errors: int

    @property
    def rows(self) -> int:
        return len(self.finished)


class Ledger:
    """Append-only record of finished rows under ``<dataset dir>/.hugflow``."""

    def __init__(self, dataset_dir: Path) -> None:
        layout = CopyLayout(dataset_dir)
        self.root = layout.state
        self.parts = layout.ledger
        self.meta_path = layout.ledger_meta

    def open(self, fingerprint: dict[str, Any], *, restart: bool = False) -> LedgerSummary:
        """Start or resume: create the ledger, or check that it was made with the same ``fingerprint``; returns what
        it holds (every part read once).

        A part that cannot be read (cut short by a full disk, damaged) is moved to ``ledger/damaged/``: its rows are
        converted again, and their files rewritten with the same bytes.

        Raises:
            LedgerMismatchError: the existing ledger has another fingerprint, or finished rows and no readable
                fingerprint, and ``restart`` is False.
        """
        self.parts.mkdir(parents=True, exist_ok=True)
        tables: list[pa.Table] = []
        if restart:
            for part in self.parts.glob("part-*.parquet"):
                part.unlink()
        else:
            try:
                recorded = self.recorded_fingerprint()
            except LedgerDamagedError as e:
                if any(self.parts.glob("part-*.parquet")):
                    raise LedgerMismatchError(str(e)) from None
                recorded = None
            if recorded is not None and recorded != fingerprint:
                changed = sorted(k for k in {*recorded, *fingerprint} if recorded.get(k) != fingerprint.get(k))
                raise LedgerMismatchError(", ".join(changed))
            tables = self._read_setting_aside_unreadable(_SUMMARY_COLUMNS)
        atomic.remove_temp_files([self.parts, self.root])
        atomic.write_json(self.meta_path, {"fingerprint": fingerprint})
        return _summary(_unique_rows(tables, _SUMMARY_COLUMNS))

    def recorded_fingerprint(self) -> dict[str, Any] | None:
        """The fingerprint the ledger was opened with, or None when there is no ledger yet.

        Raises:
            LedgerDamagedError: the fingerprint file exists but cannot be read.
        """
        try:
            data = read_small(self.meta_path, MAX_META_BYTES)
        except UnsafePathError as e:
            raise LedgerDamagedError(f"its fingerprint file: {e}") from None
        except OSError as e:
            raise LedgerDamagedError(f"its fingerprint file {self.meta_path} cannot be read ({e.strerror})") from None
        if data is None:
            return None
        try:
            fingerprint = json.loads(data.decode("utf-8"))["fingerprint"]
        except (ValueError, KeyError, TypeError):
            fingerprint = None
        if not isinstance(fingerprint, dict):
            raise LedgerDamagedError(f"its fingerprint file {self.meta_path} is damaged")
        return fingerprint

    def _read_setting_aside_unreadable(self, columns: list[str]) -> list[pa.Table]:
        """Every part's ``columns``; a part that cannot be read is moved to ``ledger/damaged/``."""
        tables = []
        for part in sorted(self.parts.glob("part-*.parquet")):
            table = _read_part(part, columns)
            if table is not None:
                tables.append(table)
                continue
            damaged = self.parts / DAMAGED_DIR
            damaged.mkdir(exist_ok=True)
            os.replace(part, damaged / part.name)
            log.warning("%s cannot be read; moved to %s, and its rows will be converted again", part, damaged)
        return tables

    def append(self, records: list[RowRecord]) -> Path | None:
        """Durably add the records of one batch (call only once their files are durable)."""
        if not records:
            return None
        first = min(r.row_id for r in records)
        path = self.parts / f"part-{first:012d}-{len(records):06d}.parquet"
        _write_part(path, records_to_table(records))
        return path

    def drop_rows(self, row_ids: Iterable[int]) -> list[RowRecord]:
        """Take rows out of the ledger, so the next sync converts them again; returns the records dropped (each
        once, sorted by row id).

        Crash-safe without a journal. Each part holding a dropped row is replaced by a part of its other rows,
        exact copies of their records: the new part is written durably under a name of its own (its first row,
        its count and a digest of its ids, so it never overwrites a part with other rows), and only then is the
        old part deleted (one atomic unlink, made durable). A reader counts a row that is in both once (it has the
        same record in both), so at any moment the ledger holds every row it held before but for the dropped rows
        of the parts already replaced: a row never half-dropped, a kept row never lost. A crash leaves a ledger
        whose rows all still have their files and records; dropping the same rows again finishes the job (the new
        part is written again with the same name and bytes, and the old one deleted).
        """
        drop = pa.array(sorted(set(row_ids)), pa.int64())
        if len(drop) == 0 or not self.parts.is_dir():
            return []
        dropped: list[pa.Table] = []
        for part in sorted(self.parts.glob("part-*.parquet")):
            table = _read_part(part, None)
            if table is None:
                continue  # unreadable: its rows already count as not finished, and the next sync sets it aside
            hit = pc.is_in(table.column(RowColumn.ROW_ID), value_set=drop)
            if not pc.any(hit).as_py():
                continue
            dropped.append(table.filter(hit))
            kept = table.filter(pc.invert(hit))
            if kept.num_rows:
                _write_part(self.parts / _rewritten_name(kept), kept)
            failpoint("ledger-part-rewritten")
            part.unlink()
            atomic.fsync_dir(self.parts)
        return table_to_records(_unique_rows(dropped, None))

    def compact(self) -> int:
        """Merge the small parts, so reading the ledger costs a file per ``FULL_PART_ROWS`` rows however many blocks
        made it; returns the number of parts merged (0: there was nothing to merge).

        A part of ``FULL_PART_ROWS`` rows or more is left as it is, and the small parts are merged in runs (in row
        order) of about ``FULL_PART_ROWS`` rows, each into a part of its own: a compaction holds one run at a time,
        never the whole ledger, so a sync of any size merges in bounded memory (a million rows in a few big blocks
        are a few small parts), and the one writer compacting every ``COMPACT_EVERY_PARTS`` blocks does linear work
        in all, not quadratic.

        Crash-safe as :meth:`drop_rows` is: a merged part is written durably under a name of its own first (a digest
        of its ids), then each old part of its run is unlinked, and a reader counts a row that is in both once. A
        crash between the two leaves the same rows readable; compacting again finishes the job. Call it where no
        other writer appends (the sync's finalize, or the one writer between its blocks).
        """
        paths = sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []
        small = [p for p in paths if _part_rows(p) < FULL_PART_ROWS]
        merged = 0
        for run in _runs(small):
            tables = [t for t in (_read_part(p, None) for p in run) if t is not None]
            if len(run) <= 1 or len(tables) < len(run):  # an unreadable part is the next open's to set aside
                continue
            table = _unique_rows(tables, None)
            target = self.parts / _rewritten_name(table)
            _write_part(target, table)
            failpoint("ledger-compacted")
            for path in run:
                if path != target:
                    path.unlink()
            atomic.fsync_dir(self.parts)
            merged += len(run)
        return merged

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """Every recorded row (rows written twice by overlapping parts count once), sorted by row id; an unreadable
        part is left out with a warning (the next sync sets it aside and redoes its rows)."""
        return self.read_checked(columns)[0]

    def sorted_parts(self) -> Iterator[pa.Table]:
        """Every recorded row, sorted by row id and each once, as :meth:`read` gives them but a part at a time: a
        sync's parts hold row ranges that do not overlap, so the ledger is never in memory whole. Parts a crash left
        overlapping (a compaction or a repair cut short) are read together, as :meth:`read` does."""
        spans = []
        for path in sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []:
            ids = _read_part(path, [RowColumn.ROW_ID])
            if ids is not None and ids.num_rows:
                bounds = pc.min_max(ids.column(RowColumn.ROW_ID))
                spans.append((bounds["min"].as_py(), bounds["max"].as_py(), path))
        spans.sort()
        if any(later[0] <= earlier[1] for earlier, later in itertools.pairwise(spans)):
            yield self.read()
            return
        for _, _, path in spans:
            table = _read_part(path, None)
            if table is not None:
                yield _unique_rows([table], None)

    def read_checked(self, columns: list[str] | None = None) -> tuple[pa.Table, list[Path]]:
        """:meth:`read`, and the parts that could not be read (whose rows it therefore lacks)."""
        paths = sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []
        tables = {path: _read_part(path, columns) for path in paths}
        unreadable = [path for path, table in tables.items() if table is None]
        return _unique_rows([t for t in tables.values() if t is not None], columns), unreadable

    def finished_ids(self) -> np.ndarray:
        """Sorted row ids already recorded."""
        return self.read([RowColumn.ROW_ID]).column(RowColumn.ROW_ID).to_numpy()

    def records(self) -> list[RowRecord]:
        """Every recorded row as a typed record, sorted by row id."""
        return table_to_records(self.read())

    def summary(self) -> LedgerSummary:
        return _summary(self.read(_SUMMARY_COLUMNS))


_SUMMARY_COLUMNS = [RowColumn.ROW_ID, RowColumn.STATUS]


def _part_rows(path: Path) -> int:
    """The rows a part holds, as its name says (``part-<first row>-<rows>[-<digest>].parquet``)."""
    try:
        return int(path.name.split("-")[2].split(".")[0])
    except (IndexError, ValueError):
        return 0  # not a name this ledger writes: merged with the small parts, whose reading sets it aside if need be


def _runs(small: list[Path]) -> list[list[Path]]:
    """The small parts (sorted by first row) in runs of about ``FULL_PART_ROWS`` rows: each run but the last holds at
    least that many, and none more than twice that many."""
    runs: list[list[Path]] = [[]]
    rows = 0
    for path in small:
        runs[-1].append(path)
        rows += _part_rows(path)
        if rows >= FULL_PART_ROWS:
            runs.append([])
            rows = 0
    return [run for run in runs if run]


def _rewritten_name(table: pa.Table) -> str:
    """The name of a part rewritten without some rows: deterministic, and another set of rows gets another name."""
    ids = table.column(RowColumn.ROW_ID).to_numpy()
    digest = hashlib.sha256(np.sort(ids).astype("<i8").tobytes()).hexdigest()[:REWRITTEN_DIGEST_LENGTH]
    return f"part-{int(ids.min()):012d}-{len(ids):06d}-{digest}.parquet"


def _write_part(path: Path, table: pa.Table) -> None:
    """Write one part atomically and durably: a reader sees the whole part or none of it."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic.write_bytes(path, sink.getvalue().to_pybytes())


def _unique_rows(tables: list[pa.Table], columns: list[str] | None) -> pa.Table:
    """The parts' rows together, each row id once (parts may overlap after a crash), sorted by row id."""
    empty = LEDGER_SCHEMA.empty_table().select(columns or LEDGER_SCHEMA.names)
    table = pa.concat_tables(tables) if tables else empty
    if table.num_rows == 0:
        return table
    ids = table.column(RowColumn.ROW_ID).to_numpy()
    order = np.argsort(ids, kind="stable")
    _, first = np.unique(ids[order], return_index=True)
    return table.take(pa.array(order[first]))


def _summary(table: pa.Table) -> LedgerSummary:
    errors = pc.sum(pc.equal(table.column(RowColumn.STATUS), RowStatus.ERROR.value)).as_py() if table.num_rows else 0
    return LedgerSummary(finished=table.column(RowColumn.ROW_ID).to_numpy(), errors=int(errors or 0))


def id_ranges(ids: np.ndarray) -> list[tuple[int, int]]:
    """Sorted ids as compact inclusive ranges: [0,1,2,5,6] -> [(0, 2), (5, 6)]."""
    if len(ids) == 0:
        return []
    ids = np.asarray(ids, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(ids) != 1)
    starts = np.concatenate(([ids[0]], ids[breaks + 1]))
    ends = np.concatenate((ids[breaks], [ids[-1]]))
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]
