"""Writing converted batches into a dataset directory: MP3 + JSON files first, then the batch's ledger part.

Every file is written atomically; a batch's files are made durable together (one filesystem sync for their
contents, one for their names; not an fsync per file) before its ledger part is written, so the ledger never
names a file that is not on disk.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from hugflow_ray.copies.batches import table_to_converted
from hugflow_ray.copies.layout import CopyLayout
from hugflow_ray.copies.ledger import Ledger
from hugflow_ray.core.records import RowStatus
from hugflow_ray.utils import atomic
from hugflow_ray.utils.failpoints import failpoint

# The one writer merges the ledger's small parts every this many blocks, so a sync of any size leaves at most this
# many parts beside its full ones (Ledger.FULL_PART_ROWS rows each) to read on a resume; finalize merges the rest.
COMPACT_EVERY_PARTS = 256


class DatasetWriter:
    """Writes converted batches into one dataset directory. Used by exactly one writer at a time."""

    def __init__(self, dataset_dir: Path) -> None:
        self.dataset_dir = dataset_dir
        self.ledger = Ledger(dataset_dir)
        layout = CopyLayout(dataset_dir)
        self.audio_dir, self.json_dir = layout.audio, layout.json
        for directory in (self.audio_dir, self.json_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.parts_written = 0
        self._folders: set[Path] = set()  # the audio folders (one per part) this writer has made

    def write_batch(self, batch: pa.Table) -> tuple[int, int]:
        """Write a converted batch (:func:`~hugflow_ray.copies.batches.converted_to_table`); returns its rows and
        row errors.

        The batch's files are made durable together (one filesystem sync per phase, not an fsync per file), and
        only then is its ledger part written.
        """
        rows = table_to_converted(batch)
        files = []
        for row in rows:
            if row.record.status is not RowStatus.OK:
                continue
            if row.mp3 is not None and row.record.audio_file is not None:
                path = self.dataset_dir / row.record.audio_file
                if path.parent not in self._folders:
                    path.parent.mkdir(exist_ok=True)
                    self._folders.add(path.parent)
                files.append((path, row.mp3))
            if row.json is not None and row.record.json_file is not None:
                files.append((self.dataset_dir / row.record.json_file, row.json))
        atomic.write_many(files, root=self.dataset_dir)
        failpoint("files-written")
        self.ledger.append([row.record for row in rows])
        self.parts_written += 1
        if self.parts_written % COMPACT_EVERY_PARTS == 0:
            self.ledger.compact()
        return len(rows), sum(row.record.status is RowStatus.ERROR for row in rows)


def remove_leftovers(dataset_dir: Path) -> int:
    """Delete the temp files an interrupted run left among a copy's files; returns how many. Called when a sync opens
    the copy, before anything writes there: the writer and the take-over of an incremental re-sync then run side by
    side, neither sweeping the other's files in flight."""
    layout = CopyLayout(dataset_dir)
    return atomic.remove_temp_files([layout.audio, *_folders(layout.audio), layout.json])


def _folders(directory: Path) -> list[Path]:
    """The folders directly in ``directory`` (the audio folder's part folders)."""
    return [p for p in directory.iterdir() if p.is_dir() and not p.is_symlink()] if directory.is_dir() else []
