"""Reading parquet splits as read units: the designed parallelism of a sync.

Row ids are the rows' 0-based positions in the split (file order, then row order). A read unit is a slice of a
parquet row group, small enough that a single big file still spreads over every core. Finished rows (from the
ledger) are dropped while reading, before any decode.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hugflow_ray.core import naming
from hugflow_ray.errors import PlanError

MIN_UNIT_ROWS = 8
MAX_UNIT_ROWS = 256
UNITS_PER_CPU = 4
ROW_ID = "row_id"

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


def read_unit(unit: ReadUnit, finished: np.ndarray) -> pa.Table:
    """The unit's rows not yet finished, with a ``row_id`` column first."""
    group = pq.ParquetFile(unit.path).read_row_group(unit.row_group)
    table = group.slice(unit.offset, unit.num_rows)
    ids = pa.array(np.arange(unit.first_row_id, unit.first_row_id + unit.num_rows, dtype=np.int64))
    table = table.add_column(0, ROW_ID, ids)
    if len(finished):
        table = table.filter(pa.array(~np.isin(ids.to_numpy(), finished)))
    return table


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
    """The MP3 stem each row of a file asks for, read column-wise: exactly what the converter picks."""
    num_rows = pq.ParquetFile(path).metadata.num_rows
    columns = {}
    if naming.NAME_COLUMN in schema.names:
        columns["filename"] = naming.NAME_COLUMN
    field = schema.field(audio_column) if audio_column in schema.names else None
    if field is not None and pa.types.is_struct(field.type) and field.type.get_field_index("path") >= 0:
        columns["path"] = f"{audio_column}.path"
    table = pq.read_table(path, columns=list(columns.values())) if columns else None
    values = {key: table.column(i).to_pylist() if table is not None else None for i, key in enumerate(columns)}
    filenames = values.get("filename") or [None] * num_rows
    paths = values.get("path") or [None] * num_rows
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
