"""Writing a dataset directory: per-batch MP3 + JSON files, the ledger after them, and the finalize step.

Layout of ``STORAGE_ROOT/<dataset_name>/``::

    audio/<name>.mp3          json/<row_id>.json
    manifest.parquet          manifest.jsonl (audio_filepath, duration, text: NeMo/Lhotse style)
    .hugflow/ledger/*.parquet .hugflow/meta.json (fingerprint)   .hugflow/status.json

Every file is written atomically; a batch's files are made durable together (one filesystem sync for their
contents, one for their names; not an fsync per file) before its ledger part is written, so the ledger never
names a file that is not on disk.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hugflow_ray import atomic, rows
from hugflow_ray.ledger import SCHEMA as LEDGER_SCHEMA
from hugflow_ray.ledger import STATUS_OK, Ledger
from hugflow_ray.settings import failpoint

STATUS_FILE = "status.json"
MANIFEST_PARQUET = "manifest.parquet"
MANIFEST_JSONL = "manifest.jsonl"


class DatasetWriter:
    """Writes converted batches into one dataset directory. Used by exactly one writer at a time."""

    def __init__(self, dataset_dir: Path) -> None:
        self.dataset_dir = dataset_dir
        self.ledger = Ledger(dataset_dir)
        self.audio_dir = dataset_dir / rows.AUDIO_DIR
        self.json_dir = dataset_dir / rows.JSON_DIR
        for directory in (self.audio_dir, self.json_dir):
            directory.mkdir(parents=True, exist_ok=True)
        atomic.remove_temp_files([self.audio_dir, self.json_dir])

    def write_batch(self, batch: pa.Table) -> tuple[int, int]:
        """Write a converted batch (see ``transform.OUTPUT_SCHEMA``); returns its rows and row errors.

        The batch's files are made durable together (one filesystem sync per phase, not an fsync per file), and
        only then is its ledger part written.
        """
        records = batch.to_pylist()
        files = []
        for record in records:
            if record["status"] != STATUS_OK:
                continue
            if record["mp3"] is not None:
                files.append((self.dataset_dir / record["audio_file"], record["mp3"]))
            files.append((self.dataset_dir / record["json_file"], record["json"]))
        atomic.write_many(files, root=self.dataset_dir)
        failpoint("files-written")
        self.ledger.append([{name: record.get(name) for name in LEDGER_SCHEMA.names} for record in records])
        return len(records), sum(record["status"] != STATUS_OK for record in records)


@dataclass
class DatasetStatus:
    """The state of one dataset copy, kept in ``.hugflow/status.json``."""

    dataset_name: str
    state: str  # "syncing" | "complete" | "failed"
    source: str
    sha: str | None
    subset: str | None
    split: str
    rows_total: int
    rows_done: int = 0
    row_errors: int = 0
    license: str | None = None
    error: str | None = None
    updated: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetStatus:
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__ if name in data})


def status_path(dataset_dir: Path) -> Path:
    return dataset_dir / ".hugflow" / STATUS_FILE


def write_status(dataset_dir: Path, status: DatasetStatus) -> None:
    status.updated = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    atomic.write_json(status_path(dataset_dir), status.to_dict())


def read_status(dataset_dir: Path) -> DatasetStatus | None:
    path = status_path(dataset_dir)
    if not path.is_file():
        return None
    return DatasetStatus.from_dict(json.loads(path.read_text()))


def write_manifests(dataset_dir: Path) -> int:
    """Write ``manifest.parquet`` and ``manifest.jsonl`` from the ledger's finished rows; returns their count."""
    ledger = Ledger(dataset_dir).read()
    ok = ledger.filter(pc.equal(ledger.column("status"), STATUS_OK))
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
