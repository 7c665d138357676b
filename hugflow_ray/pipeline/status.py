"""A dataset copy's state, kept in ``<dataset dir>/.hugflow/status.json``: what ``hugflow status`` lists.

Layout of ``STORAGE_ROOT/<dataset_name>/``::

    audio/<name>.mp3          json/<row_id>.json
    manifest.parquet          manifest.jsonl (audio_filepath, duration, text: NeMo/Lhotse style)
    .hugflow/ledger/*.parquet .hugflow/meta.json (fingerprint)   .hugflow/status.json
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hugflow_ray.utils import atomic

STATUS_FILE = "status.json"


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
