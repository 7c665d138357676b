"""How many rows each part of a copy's split holds, as counted when the part was opened.

A part's rows are counted from its files (ids are positions in the split), so without this record a resume would
download every part again to learn the ids of the rows after it. With it, a resume skips the parts whose rows are
all in the ledger without downloading them: with finished parts deleted, the disk a resume needs stays bounded.

``.hugflow/part_rows.jsonl``: a line per counted part, ``{"part", "files", "rows"}``, appended as parts are opened.
Derived state: a line that cannot be read, or whose files are not the part's, is ignored (the part is downloaded
and counted again); the ledger is cleared with it on ``--restart``, and a ledger of other settings refuses to resume.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from hugflow_ray.copies.layout import CopyLayout
from hugflow_ray.utils.safe_paths import read_small

log = logging.getLogger(__name__)

MAX_PART_ROWS_BYTES = 256 << 20  # ~100 bytes a part: a larger file is damage, never read whole


class PartRows:
    """The record of counted parts of one copy (see the module docstring)."""

    def __init__(self, dataset_dir: Path) -> None:
        self.path = CopyLayout(dataset_dir).part_rows

    def read(self, files: Sequence[Sequence[str]]) -> dict[int, int]:
        """Rows by part index, for the parts whose recorded files are ``files[part]``."""
        try:
            data = read_small(self.path, MAX_PART_ROWS_BYTES)
        except (OSError, ValueError) as e:  # UnsafePathError is a ValueError
            log.warning("%s cannot be read (%s); parts are counted again", self.path, e)
            return {}
        counted: dict[int, int] = {}
        for line in (data or b"").splitlines():
            try:
                entry = json.loads(line)
                part, rows = int(entry["part"]), int(entry["rows"])
                if 0 <= part < len(files) and entry["files"] == list(files[part]) and rows >= 0:
                    counted[part] = rows
            except (ValueError, KeyError, TypeError):
                continue  # a torn or damaged line: that part is counted again
        return counted

    def add(self, part: int, files: Sequence[str], rows: int) -> None:
        """Record a counted part (appended: a crash tears at most this line, which a read then ignores)."""
        line = json.dumps({"part": part, "files": list(files), "rows": rows}) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # never through a link, never blocking on a FIFO: whatever stands there instead is damage, left alone
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(f"{self.path.name} is not a regular file")
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as e:  # derived state: without the line, a resume counts the part again
            log.warning("could not record part %d's rows in %s (%s); a resume counts it again", part, self.path, e)
