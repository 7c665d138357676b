"""The pipeline's pure core: read units, reading a unit's rows, and converting a batch of rows.

Row ids are the rows' 0-based positions in the split (file order, then row order). A read unit is a slice of a
parquet row group, small enough that a single big file still spreads over every core. Finished rows (from the
ledger) are dropped while reading, before any decode.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hugflow_ray import atomic, audio, rows
from hugflow_ray.audio import EncoderSettings, SafePathResolver
from hugflow_ray.errors import AudioError
from hugflow_ray.ledger import STATUS_ERROR, STATUS_OK

MIN_UNIT_ROWS = 8
MAX_UNIT_ROWS = 256
UNITS_PER_CPU = 4
ROW_ID = "row_id"

OUTPUT_SCHEMA = pa.schema(
    [
        (ROW_ID, pa.int64()),
        ("status", pa.string()),
        ("json_file", pa.string()),
        ("json", pa.binary()),
        ("audio_file", pa.string()),
        ("mp3", pa.binary()),
        ("sha256", pa.string()),
        ("duration", pa.float64()),
        ("text", pa.string()),
        ("error_code", pa.string()),
        ("error", pa.string()),
    ]
)


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


def read_unit(unit: ReadUnit, finished: np.ndarray, columns: list[str] | None = None) -> pa.Table:
    """The unit's rows not yet finished, with a ``row_id`` column first."""
    group = pq.ParquetFile(unit.path).read_row_group(unit.row_group, columns=columns)
    table = group.slice(unit.offset, unit.num_rows)
    ids = pa.array(np.arange(unit.first_row_id, unit.first_row_id + unit.num_rows, dtype=np.int64))
    table = table.add_column(0, ROW_ID, ids)
    if len(finished):
        table = table.filter(pa.array(~np.isin(ids.to_numpy(), finished)))
    return table


def name_candidates(path: str, audio_column: str | None, schema: pa.Schema) -> list[str]:
    """The MP3 stem each row of a file asks for, read column-wise: exactly what :class:`RowConverter` picks."""
    num_rows = pq.ParquetFile(path).metadata.num_rows
    columns = {}
    if rows.NAME_COLUMN in schema.names:
        columns["filename"] = rows.NAME_COLUMN
    field = schema.field(audio_column) if audio_column in schema.names else None
    if field is not None and pa.types.is_struct(field.type) and field.type.get_field_index("path") >= 0:
        columns["path"] = f"{audio_column}.path"
    table = pq.read_table(path, columns=list(columns.values())) if columns else None
    values = {key: table.column(i).to_pylist() if table is not None else None for i, key in enumerate(columns)}
    filenames = values.get("filename") or [None] * num_rows
    paths = values.get("path") or [None] * num_rows
    return [rows.name_candidate(f, p) for f, p in zip(filenames, paths, strict=True)]


@dataclass(frozen=True)
class RowConverter:
    """Converts a batch of source rows (with ``row_id``) to output rows: MP3 bytes, sidecar JSON, or an error.

    Picklable and stateless: Ray ships it to every worker.
    """

    audio_column: str | None
    text_column: str | None
    encoder: EncoderSettings
    duplicated: frozenset[str]
    files_root: str | None = None

    def __call__(self, batch: pa.Table) -> pa.Table:
        resolver = SafePathResolver(Path(self.files_root)) if self.files_root else None
        records = [self._convert(row, resolver) for row in batch.to_pylist()]
        return pa.Table.from_pylist(records, schema=OUTPUT_SCHEMA)

    def _convert(self, row: dict[str, Any], resolver: SafePathResolver | None) -> dict[str, Any]:
        row_id = row.pop(ROW_ID)
        value = row.pop(self.audio_column) if self.audio_column else None
        text = row.get(self.text_column) if self.text_column else None
        record: dict[str, Any] = {
            ROW_ID: row_id,
            "text": text if isinstance(text, str) else None,
            "json_file": f"{rows.JSON_DIR}/{row_id}.json",
        }
        facts = None
        audio_file = None
        if self.audio_column is not None:
            try:
                encoded = audio.convert(value, self.encoder, resolve_path=resolver, row_id=row_id)
            except AudioError as e:
                return {**record, "status": STATUS_ERROR, "json_file": None, "error_code": e.code, "error": str(e)}
            source_path = value.get("path") if isinstance(value, dict) else None
            candidate = rows.name_candidate(row.get(rows.NAME_COLUMN), source_path)
            audio_file = f"{rows.AUDIO_DIR}/{rows.mp3_name(candidate, row_id, self.duplicated)}"
            facts = encoded.facts
            record.update(mp3=encoded.mp3, sha256=hashlib.sha256(encoded.mp3).hexdigest(), duration=facts.duration)
        document = rows.sidecar(row_id, row, audio_file=audio_file, facts=facts)
        return {**record, "status": STATUS_OK, "audio_file": audio_file, "json": atomic.json_bytes(document)}
