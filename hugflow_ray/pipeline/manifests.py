"""The finalize step's manifests, made from the ledger's finished rows: ``manifest.parquet`` and ``manifest.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hugflow_ray.core.records import RowStatus
from hugflow_ray.pipeline.ledger import Ledger
from hugflow_ray.utils import atomic

MANIFEST_PARQUET = "manifest.parquet"
MANIFEST_JSONL = "manifest.jsonl"


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
    lines = [
        json.dumps({"audio_filepath": r["audio_filepath"], "duration": r["duration"], "text": r["text"] or ""},
                   ensure_ascii=False)
        for r in manifest.select(["audio_filepath", "duration", "text"]).to_pylist()
        if r["audio_filepath"] is not None
    ]
    atomic.write_bytes(dataset_dir / MANIFEST_JSONL, ("\n".join(lines) + "\n" if lines else "").encode("utf-8"))
    return manifest.num_rows
