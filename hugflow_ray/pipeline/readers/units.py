"""Reading parquet splits as read units: the designed parallelism of a sync.

Row ids are the rows' 0-based positions in the split (file order, then row order). A read unit is a slice of a
parquet row group, small enough that a single big file still spreads over every core. Finished rows (from the
ledger) are dropped while reading, before any decode.

A unit is read as a stream of blocks: its row group is decoded a few rows at a time (parquet pages read through a
small buffer, never the whole column chunk), rows before the unit's slice are passed over, and each block holds at
most ``BLOCK_BYTES`` of source (at least one row). So what a read holds is bounded by the block, whatever the row
group's size: a 2,000-row group of 300 MB is never held whole, by one read or by eight.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hugflow_ray.core import naming
from hugflow_ray.errors import PlanError

MIN_UNIT_ROWS = 8
MAX_UNIT_ROWS = 256
UNITS_PER_CPU = 4
ROW_ID = "row_id"
BLOCK_BYTES = 64 * 1024 * 1024  # source bytes per block a read hands on (the memory a block in flight costs)
NAME_BATCH_ROWS = 65536  # rows of name columns read at a time
STREAM_BUFFER_BYTES = 1024 * 1024  # a column chunk is read through a buffer of this size, not loaded whole
SKIP_BATCH_ROWS = 64  # rows decoded at a time while passing over the rows before a unit's slice

@dataclass(frozen=True)
class ReadUnit:
    """Rows ``[offset, offset + num_rows)`` of one row group of one file; the first has id ``first_row_id``."""

    path: str
    row_group: int
    offset: int
    num_rows: int
    first_row_id: int

    @property
    def last_row_id(self) -> int:
        return self.first_row_id + self.num_rows - 1


def available_cpus() -> int:
    """CPUs this process may use (its affinity mask, e.g. a container's or taskset's limit)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def plan_units(files: list[tuple[str, list[int]]], *, cpus: int) -> list[ReadUnit]:
    """Cut files (path, rows per row group) into read units of a size that keeps ``cpus`` cores busy."""
    total = sum(sum(groups) for _, groups in files)
    target = min(MAX_UNIT_ROWS, max(MIN_UNIT_ROWS, math.ceil(total / max(1, cpus * UNITS_PER_CPU))))
    units: list[ReadUnit] = []
    row_id = 0
    for path, groups in files:
        for group, group_rows in enumerate(groups):
            pieces = max(1, math.ceil(group_rows / target))
            bounds = np.linspace(0, group_rows, pieces + 1).round().astype(int)
            for start, end in zip(bounds[:-1], bounds[1:], strict=True):
                if end > start:
                    units.append(ReadUnit(path, group, int(start), int(end - start), row_id + int(start)))
            row_id += group_rows
    return units


def pending(units: list[ReadUnit], finished: np.ndarray) -> list[tuple[ReadUnit, np.ndarray]]:
    """Units with rows still to do, each with the finished ids that fall inside it (sorted ``finished``)."""
    result = []
    for unit in units:
        lo = np.searchsorted(finished, unit.first_row_id, side="left")
        hi = np.searchsorted(finished, unit.last_row_id, side="right")
        if hi - lo < unit.num_rows:
            result.append((unit, finished[lo:hi]))
    return result


def iter_unit(unit: ReadUnit, finished: np.ndarray, *, block_bytes: int = BLOCK_BYTES) -> Iterator[pa.Table]:
    """The unit's rows not yet finished, with a ``row_id`` column first, in blocks of at most ``block_bytes`` of
    source (one row at least), streamed from the file."""
    parquet = pq.ParquetFile(unit.path, buffer_size=STREAM_BUFFER_BYTES, pre_buffer=False)
    group = parquet.metadata.row_group(unit.row_group)
    row_bytes = max(1, group.total_byte_size // max(1, group.num_rows))
    block_rows = max(1, min(unit.num_rows, block_bytes // row_bytes))
    batch_rows = min(block_rows, SKIP_BATCH_ROWS) if unit.offset else block_rows
    end = unit.offset + unit.num_rows
    position = 0  # rows of the group decoded so far
    pieces: list[pa.RecordBatch] = []
    for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[unit.row_group], use_threads=False):
        start, position = position, position + batch.num_rows
        if position <= unit.offset:
            continue
        lo, hi = max(start, unit.offset), min(position, end)
        pieces.append(batch.slice(lo - start, hi - lo))
        held = sum(p.num_rows for p in pieces)
        if held >= block_rows or hi >= end:
            table = _with_ids(pa.Table.from_batches(pieces, schema=parquet.schema_arrow),
                              unit.first_row_id + (hi - unit.offset) - held)
            pieces = []
            if len(finished):
                table = table.filter(pa.array(~np.isin(table.column(ROW_ID).to_numpy(), finished)))
            if table.num_rows:
                yield table
        if hi >= end:
            return


def _with_ids(table: pa.Table, first_row_id: int) -> pa.Table:
    ids = np.arange(first_row_id, first_row_id + table.num_rows, dtype=np.int64)
    return table.add_column(0, ROW_ID, pa.array(ids))


def names_files(paths: list[Path], audio_column: str | None) -> bool:
    """Whether a row of these files may hold its audio as a ``path`` into the dataset's files rather than as bytes,
    told from the footers alone: the null count of ``<audio>.bytes`` in every row group (no statistics: maybe)."""
    if audio_column is None:
        return False
    for path in paths:
        metadata = pq.ParquetFile(path).metadata
        columns = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
        if f"{audio_column}.bytes" not in columns:
            continue
        index = columns.index(f"{audio_column}.bytes")
        for group in range(metadata.num_row_groups):
            stats = metadata.row_group(group).column(index).statistics
            if stats is None or not stats.has_null_count or stats.null_count > 0:
                return True
    return False


def name_candidates(path: str, audio_column: str | None, schema: pa.Schema) -> list[str]:
    """The MP3 stem each row of a file asks for, read column-wise: exactly what the converter picks.

    Only the name columns' own pages are read (``iter_batches`` of the nested ``audio.path`` leaf): ``read_table``
    with the same column list reads the whole audio struct, its bytes included (700 MB and 8 s at 100,000 rows).
    """
    parquet = pq.ParquetFile(path, buffer_size=STREAM_BUFFER_BYTES, pre_buffer=False)
    columns = []
    if naming.NAME_COLUMN in schema.names:
        columns.append(naming.NAME_COLUMN)
    field = schema.field(audio_column) if audio_column in schema.names else None
    with_path = field is not None and pa.types.is_struct(field.type) and field.type.get_field_index("path") >= 0
    if with_path:
        columns.append(f"{audio_column}.path")
    if not columns:
        return [naming.name_candidate(None, None)] * parquet.metadata.num_rows
    filenames: list[Any] = []
    paths: list[Any] = []
    for batch in parquet.iter_batches(columns=columns, batch_size=NAME_BATCH_ROWS):
        rows = batch.num_rows
        filenames += batch.column(naming.NAME_COLUMN).to_pylist() if naming.NAME_COLUMN in columns else [None] * rows
        paths += batch.column(audio_column).field("path").to_pylist() if with_path else [None] * rows
    return [naming.name_candidate(f, p) for f, p in zip(filenames, paths, strict=True)]


def parquet_row_groups(path: Path) -> list[int]:
    """Rows in each row group of a parquet file.

    Raises:
        PlanError: the file is not a readable parquet file.
    """
    try:
        metadata = pq.ParquetFile(path).metadata
    except (pa.ArrowException, OSError) as e:
        raise PlanError(f"{path} is not a readable parquet file ({e}); check that it is the dataset's file and "
                        "complete") from None
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
