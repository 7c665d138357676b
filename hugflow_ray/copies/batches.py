"""The Arrow form of the row records: how converted rows travel between Ray tasks and how the ledger stores them.

Derived from :class:`~hugflow_ray.core.records.RowRecord`'s fields, so the row schema is written once.
"""

from __future__ import annotations

import typing
from dataclasses import fields
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from hugflow_ray.core.records import ConvertedRow, RowRecord, RowStatus

_ARROW_TYPES: dict[object, pa.DataType] = {
    int: pa.int64(), float: pa.float64(), str: pa.string(), bytes: pa.binary(), RowStatus: pa.string(),
}


def _arrow_type(annotation: object) -> pa.DataType:
    """``int``, ``str | None``... as an Arrow type (a None member only makes the column nullable)."""
    members = [m for m in typing.get_args(annotation) if m is not type(None)] or [annotation]
    return _ARROW_TYPES[members[0]]


def _schema(cls: type) -> pa.Schema:
    hints = typing.get_type_hints(cls)
    return pa.schema([(f.name, _arrow_type(hints[f.name])) for f in fields(cls)])


LEDGER_SCHEMA = _schema(RowRecord)
_FILE_FIELDS = [f.name for f in fields(ConvertedRow) if f.name != "record"]
CONVERTED_SCHEMA = pa.schema([*LEDGER_SCHEMA, *(pa.field(name, pa.binary()) for name in _FILE_FIELDS)])


def records_to_table(records: list[RowRecord]) -> pa.Table:
    return pa.Table.from_pylist([r.to_dict() for r in records], schema=LEDGER_SCHEMA)


def table_to_records(table: pa.Table) -> list[RowRecord]:
    return [RowRecord.from_dict(row) for row in table.to_pylist()]


def converted_to_table(rows: list[ConvertedRow]) -> pa.Table:
    return pa.Table.from_pylist(
        [{**row.record.to_dict(), **{name: getattr(row, name) for name in _FILE_FIELDS}} for row in rows],
        schema=CONVERTED_SCHEMA,
    )


def table_to_converted(table: pa.Table) -> list[ConvertedRow]:
    return [ConvertedRow(RowRecord.from_dict(row), **{name: row[name] for name in _FILE_FIELDS})
            for row in table.to_pylist()]


def read_parquet(source: Path | BinaryIO, schema: pa.Schema | None = None, columns: list[str] | None = None
                 ) -> pa.Table:
    """A parquet file's ``columns`` (all of them by default), as ``schema`` says when given: a column of the schema
    that the file lacks (written by an older version) reads as nulls, one of another type is cast.

    Read with the parquet file reader, never ``pq.read_table``: that scans through Arrow's dataset layer, whose
    background threads can outlive the read and abort the process as it exits ("terminate called without an active
    exception", apache/arrow#34314 and #39862): a sync that found nothing to do exited with SIGABRT in 1 of 62 runs.
    """
    parquet = pq.ParquetFile(source)
    if schema is None:
        return parquet.read(columns=columns)
    wanted = [schema.field(name) for name in (columns or schema.names)]
    present = set(parquet.schema_arrow.names)
    table = parquet.read(columns=[f.name for f in wanted if f.name in present])
    arrays = [table.column(f.name).cast(f.type) if f.name in present else pa.nulls(table.num_rows, f.type)
              for f in wanted]
    return pa.Table.from_arrays(arrays, schema=pa.schema(wanted))
