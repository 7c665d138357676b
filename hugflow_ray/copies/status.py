"""A dataset copy's state, kept in ``<dataset dir>/.hugflow/status.json``: what ``hugflow status`` lists.

Layout of ``STORAGE_ROOT/<dataset_name>/``::

    audio/<name>.mp3          json/<row_id>.json
    manifest.parquet          manifest.jsonl (audio_filepath, duration, text: NeMo/Lhotse style)
    .hugflow/ledger/*.parquet .hugflow/meta.json (fingerprint)   .hugflow/status.json
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from stat import S_ISREG

from hugflow_ray.copies.layout import CopyLayout
from hugflow_ray.core.records import DatasetStatus
from hugflow_ray.errors import DamagedStateError
from hugflow_ray.utils import atomic
from hugflow_ray.utils.redact import redact
from hugflow_ray.utils.safe_paths import UnsafePathError, read_small

log = logging.getLogger(__name__)

MAX_STATUS_BYTES = 1 << 20  # a status is a few hundred bytes; a larger file is damage, not read whole


def status_path(dataset_dir: Path) -> Path:
    return CopyLayout(dataset_dir).status


def write_status(dataset_dir: Path, status: DatasetStatus) -> None:
    _prepare(status)
    atomic.write_json(status_path(dataset_dir), status.to_dict())


def write_sized_status(dataset_dir: Path, status: DatasetStatus, other_bytes: int) -> None:
    """Write the status with ``size_bytes`` set to the copy's whole size: ``other_bytes`` (its files but this status
    file) and the status file's own bytes, which depend on the number they hold, so a walk of the copy once this
    is written finds exactly ``size_bytes``."""
    _prepare(status)
    size = other_bytes
    while True:
        status.size_bytes = size
        data = atomic.json_bytes(status.to_dict())
        if other_bytes + len(data) == size:
            break
        size = other_bytes + len(data)  # grows only when the number gains a digit: a few rounds at most
    atomic.write_bytes(status_path(dataset_dir), data)


def _prepare(status: DatasetStatus) -> None:
    """Stamp the status, and keep token shapes and URL credentials in its error out of the file."""
    status.touch()
    if status.error:
        status.error = redact(status.error)


def status_file_size(dataset_dir: Path) -> int:
    """The bytes of the copy's status file as a size walk counts them (0 when there is none, or it is no regular
    file)."""
    try:
        info = os.lstat(status_path(dataset_dir))
    except FileNotFoundError:
        return 0
    return info.st_size if S_ISREG(info.st_mode) else 0


def read_status(dataset_dir: Path) -> DatasetStatus | None:
    """The dataset's status, or None when it has none yet.

    Raises:
        DamagedStateError: the status file cannot be read (it is derived state: a sync rewrites it).
    """
    path = status_path(dataset_dir)
    try:
        data = read_small(path, MAX_STATUS_BYTES)
    except UnsafePathError as e:
        raise DamagedStateError(f"{e}; remove it: a sync of the dataset rewrites it") from None
    except OSError as e:
        raise DamagedStateError(f"{path} cannot be read ({e.strerror})") from None
    if data is None:
        return None
    try:
        return DatasetStatus.from_dict(json.loads(data.decode("utf-8")))
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # UnicodeDecodeError is a ValueError
        raise DamagedStateError(f"{path} is damaged ({type(e).__name__}); a sync of the dataset rewrites it") from None


def read_status_or_none(dataset_dir: Path) -> DatasetStatus | None:
    """The dataset's status, or None when it has none or it is damaged (said in a warning)."""
    try:
        return read_status(dataset_dir)
    except DamagedStateError as e:
        log.warning("%s", e)
        return None


def status_version(dataset_dir: Path) -> tuple[int, int] | None:
    """Which write of the status file is on disk (inode and mtime: every atomic write makes a new file); None
    when there is none. A reader compares two versions to tell whether a run recorded its outcome."""
    try:
        stat = status_path(dataset_dir).stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns
