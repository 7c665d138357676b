"""The finalize step's manifests, made from the ledger's finished rows: ``manifest.parquet`` and ``manifest.jsonl``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hugflow_ray.copies.batches import LEDGER_SCHEMA
from hugflow_ray.copies.layout import CopyLayout
from hugflow_ray.copies.ledger import Ledger
from hugflow_ray.core.records import RowColumn, RowStatus
from hugflow_ray.utils import atomic

JSONL_BATCH_ROWS = 10000
AUDIO_FILEPATH, DURATION, TEXT = "audio_filepath", "duration", "text"  # NeMo's manifest keys: what audio tools read
# manifest.parquet's columns from the ledger's; manifest.jsonl holds NeMo's three
COLUMNS = {RowColumn.ROW_ID: RowColumn.ROW_ID, AUDIO_FILEPATH: RowColumn.AUDIO_FILE, DURATION: RowColumn.DURATION,
           TEXT: RowColumn.TEXT, RowColumn.JSON_FILE: RowColumn.JSON_FILE, RowColumn.SHA256: RowColumn.SHA256}


MANIFEST_SCHEMA = pa.schema([pa.field(str(name), LEDGER_SCHEMA.field(column).type) for name, column in COLUMNS.items()])
GROUP_ROWS = 65536  # manifest.parquet's row groups: fixed, so its bytes depend on its rows, not the ledger's parts


def write_manifests(dataset_dir: Path) -> int:
    """Write ``manifest.parquet`` and ``manifest.jsonl`` from the ledger's finished rows; returns their count.

    The ledger is read a part at a time (:meth:`Ledger.sorted_parts`) and written in row groups of ``GROUP_ROWS``, so
    the manifests cost about a part's rows in memory whatever the ledger's size; then the JSON lines are written
    from the parquet manifest, ``JSONL_BATCH_ROWS`` at a time.
    """
    written = 0

    def write_parquet(path: Path) -> None:
        nonlocal written
        with pq.ParquetWriter(path, MANIFEST_SCHEMA, compression="zstd") as writer:
            for group in _groups(_manifest_rows(Ledger(dataset_dir).sorted_parts()), GROUP_ROWS):
                writer.write_table(group, row_group_size=GROUP_ROWS)
                written += group.num_rows

    parquet = CopyLayout(dataset_dir).manifest_parquet
    atomic.write_through(parquet, write_parquet)
    batches = pq.ParquetFile(parquet).iter_batches(batch_size=JSONL_BATCH_ROWS,
                                                   columns=[AUDIO_FILEPATH, DURATION, TEXT])
    atomic.write_chunks(CopyLayout(dataset_dir).manifest_jsonl, _jsonl(batches))
    return written


def _manifest_rows(parts: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """The manifest's rows of each ledger part: its converted rows, in the manifest's columns."""
    for part in parts:
        ok = part.filter(pc.equal(part.column(RowColumn.STATUS), RowStatus.OK.value))
        yield pa.table({str(name): ok.column(column) for name, column in COLUMNS.items()}, schema=MANIFEST_SCHEMA)


def _groups(tables: Iterator[pa.Table], rows: int) -> Iterator[pa.Table]:
    """The rows of ``tables``, in order, cut again into tables of ``rows`` rows (the last one: the rest)."""
    pending: list[pa.Table] = []
    count = 0
    for table in tables:
        pending.append(table)
        count += table.num_rows
        while count >= rows:
            whole = pa.concat_tables(pending)
            yield whole.slice(0, rows)
            pending, count = [whole.slice(rows)], count - rows
    if count:
        yield pa.concat_tables(pending)


def _jsonl(batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """The JSON lines of the rows with audio, a batch at a time (never a Python object per row of the whole
    manifest at once)."""
    for batch in batches:
        lines = [json.dumps({**r, TEXT: r[TEXT] or ""}, ensure_ascii=False) + "\n"
                 for r in batch.to_pylist() if r[AUDIO_FILEPATH] is not None]
        yield "".join(lines).encode("utf-8")
