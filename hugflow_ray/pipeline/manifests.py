"""The finalize step's manifests, made from the ledger's finished rows: ``manifest.parquet`` and ``manifest.jsonl``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hugflow_ray.core.records import RowColumn, RowStatus
from hugflow_ray.pipeline.ledger import Ledger
from hugflow_ray.utils import atomic

MANIFEST_PARQUET = "manifest.parquet"
MANIFEST_JSONL = "manifest.jsonl"
JSONL_BATCH_ROWS = 10000
AUDIO_FILEPATH, DURATION, TEXT = "audio_filepath", "duration", "text"  # NeMo's manifest keys: what audio tools read
# manifest.parquet's columns from the ledger's; manifest.jsonl holds NeMo's three
COLUMNS = {RowColumn.ROW_ID: RowColumn.ROW_ID, AUDIO_FILEPATH: RowColumn.AUDIO_FILE, DURATION: RowColumn.DURATION,
           TEXT: RowColumn.TEXT, RowColumn.JSON_FILE: RowColumn.JSON_FILE, RowColumn.SHA256: RowColumn.SHA256}


def write_manifests(dataset_dir: Path) -> int:
    """Write ``manifest.parquet`` and ``manifest.jsonl`` from the ledger's finished rows; returns their count."""
    ledger = Ledger(dataset_dir).read()
    ok = ledger.filter(pc.equal(ledger.column(RowColumn.STATUS), RowStatus.OK.value))
    manifest = pa.table({str(name): ok.column(column) for name, column in COLUMNS.items()})
    sink = pa.BufferOutputStream()
    pq.write_table(manifest, sink, compression="zstd")
    atomic.write_bytes(dataset_dir / MANIFEST_PARQUET, sink.getvalue().to_pybytes())
    atomic.write_chunks(dataset_dir / MANIFEST_JSONL, _jsonl(manifest.select([AUDIO_FILEPATH, DURATION, TEXT])))
    return manifest.num_rows


def _jsonl(manifest: pa.Table) -> Iterator[bytes]:
    """The JSON lines of the rows with audio, ``JSONL_BATCH_ROWS`` at a time (never a Python object per row of the
    whole manifest at once)."""
    for batch in manifest.to_batches(max_chunksize=JSONL_BATCH_ROWS):
        lines = [json.dumps({**r, TEXT: r[TEXT] or ""}, ensure_ascii=False) + "\n"
                 for r in batch.to_pylist() if r[AUDIO_FILEPATH] is not None]
        yield "".join(lines).encode("utf-8")
