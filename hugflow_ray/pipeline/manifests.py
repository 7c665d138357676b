"""The finalize step's manifests, made from the ledger's finished rows: ``manifest.parquet`` and ``manifest.jsonl``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hugflow_ray.core.records import RowStatus
from hugflow_ray.pipeline.ledger import Ledger
from hugflow_ray.utils import atomic

MANIFEST_PARQUET = "manifest.parquet"
MANIFEST_JSONL = "manifest.jsonl"
JSONL_BATCH_ROWS = 10000


def write_manifests(dataset_dir: Path) -> int:
    """Write ``manifest.parquet`` and ``manifest.jsonl`` from the ledger's finished rows; returns their count."""
    ledger = Ledger(dataset_dir).read()
    ok = ledger.filter(pc.equal(ledger.column("status"), RowStatus.OK.value))
    manifest = pa.table(
        {
            "row_id": ok.column("row_id"),
            "audio_filepath": ok.column("audio_file"),
            "duration": ok.column("duration"),
            "text": ok.column("text"),
            "json_file": ok.column("json_file"),
            "sha256": ok.column("sha256"),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(manifest, sink, compression="zstd")
    atomic.write_bytes(dataset_dir / MANIFEST_PARQUET, sink.getvalue().to_pybytes())
    atomic.write_chunks(dataset_dir / MANIFEST_JSONL, _jsonl(manifest.select(["audio_filepath", "duration", "text"])))
    return manifest.num_rows


def _jsonl(manifest: pa.Table) -> Iterator[bytes]:
    """The JSON lines of the rows with audio, ``JSONL_BATCH_ROWS`` at a time (never a Python object per row of the
    whole manifest at once)."""
    for batch in manifest.to_batches(max_chunksize=JSONL_BATCH_ROWS):
        lines = [json.dumps({"audio_filepath": r["audio_filepath"], "duration": r["duration"], "text": r["text"] or ""},
                            ensure_ascii=False) + "\n"
                 for r in batch.to_pylist() if r["audio_filepath"] is not None]
        yield "".join(lines).encode("utf-8")
