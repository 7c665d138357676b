"""Writing converted batches into a dataset directory: MP3 + JSON files first, then the batch's ledger part.

Every file is written atomically; a batch's files are made durable together (one filesystem sync for their
contents, one for their names; not an fsync per file) before its ledger part is written, so the ledger never
names a file that is not on disk.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from hugflow_ray.core import naming
from hugflow_ray.pipeline.ledger import SCHEMA as LEDGER_SCHEMA
from hugflow_ray.pipeline.ledger import STATUS_OK, Ledger
from hugflow_ray.utils import atomic
from hugflow_ray.utils.failpoints import failpoint


class DatasetWriter:
    """Writes converted batches into one dataset directory. Used by exactly one writer at a time."""

    def __init__(self, dataset_dir: Path) -> None:
        self.dataset_dir = dataset_dir
        self.ledger = Ledger(dataset_dir)
        self.audio_dir = dataset_dir / naming.AUDIO_DIR
        self.json_dir = dataset_dir / naming.JSON_DIR
        for directory in (self.audio_dir, self.json_dir):
            directory.mkdir(parents=True, exist_ok=True)
        atomic.remove_temp_files([self.audio_dir, self.json_dir])

    def write_batch(self, batch: pa.Table) -> tuple[int, int]:
        """Write a converted batch (see ``convert.OUTPUT_SCHEMA``); returns its rows and row errors.

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
