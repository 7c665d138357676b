"""URL sources: downloaded (resumed), verified against size and sha256, extracted safely, then either read as a
local dataset or kept as their files.

Downloads and extractions live in ``STORAGE_ROOT/.sources/<entry>/`` (the same filesystem as the copies, so a
kept tree is moved, not copied) until the copy is complete; then they are deleted and a repair downloads again.

A kept copy (``data: files``: MIDI, scores, text) is ``files/`` with the tree as the source holds it, and
``.hugflow/files.parquet`` listing every file with its size and sha256, which ``hugflow verify`` checks.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from hugflow_ray.adapters.urls import fetch_url
from hugflow_ray.catalog.archives import COMPLETE_MARKER, extract
from hugflow_ray.copies import kept, store
from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.copies.locks import DatasetLock
from hugflow_ray.copies.status import read_status_or_none, write_status
from hugflow_ray.core.catalog import CatalogEntry, UrlSource
from hugflow_ray.core.licences import LicenceVerdict
from hugflow_ray.core.records import DatasetIdentity, DatasetState, DatasetStatus
from hugflow_ray.errors import CatalogError, HugflowError
from hugflow_ray.pipeline.sync import SyncReport
from hugflow_ray.settings import Settings
from hugflow_ray.utils import atomic

FILES_SPLIT = "files"  # the identity's split of a kept copy: it has no rows, only files
EXTRACTION_SLACK = 2  # an archive may expand to twice the larger of its declared sizes, no more
DEFAULT_FILE_NAME = "download"
DOWNLOAD_DIR = "download"  # under a source's working folder, beside the extraction ("data")




def extraction_cap(entry: CatalogEntry, source: UrlSource) -> int:
    """The most an archive may expand to: audio barely compresses, so an audio archive's files are about its
    download size; a kept tree's are about the entry's expected size. Twice the larger of the two."""
    return EXTRACTION_SLACK * max(entry.size_bytes, source.size)


def fetch(entry: CatalogEntry, source: UrlSource, root: Path) -> Path:
    """The entry's data on this machine: downloaded (resumed) and verified into ``root``, extracted safely; returns
    the directory (or ``directory`` inside it) to read.

    Raises:
        SourceError: the download failed, or its size or sha256 is not the catalog's.
        ArchiveError: the archive holds something that may not be extracted, or expands past its cap.
        CatalogError: the archive has no ``directory`` the entry names.
    """
    (root / DOWNLOAD_DIR).mkdir(parents=True, exist_ok=True)
    # The download in a folder of its own: whatever the URL's file is called ('data', '.data.extracting'), it never
    # meets the extraction beside it.
    archive = fetch_url(source, root / DOWNLOAD_DIR / _file_name(source.url))
    data = extract(archive, source.archive, root / "data", max_bytes=extraction_cap(entry, source),
                   identity=source.sha256)
    if source.directory is None:
        return data
    inner = (data / source.directory).resolve()
    if not inner.is_relative_to(data.resolve()) or not inner.is_dir():
        raise CatalogError(f"the archive has no directory {source.directory!r}",
                           fix=f"Correct 'directory' (the archive holds: {_top_level(data)}).",
                           field=f"{entry.name}.source.directory")
    return inner


def _file_name(url: str) -> str:
    name = PurePosixPath(urlsplit(url).path).name
    return name if name and name not in (".", "..") else DEFAULT_FILE_NAME


def _top_level(directory: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir())
    return ", ".join(names[:10]) + (", ..." if len(names) > 10 else "") or "nothing"


def sync_files(settings: Settings, entry: CatalogEntry, dataset_name: str, root: Path, *, licence: LicenceVerdict,
               owner: str) -> SyncReport:
    """Bring a URL source's files onto this machine as they are, indexed with their checksums.

    The tree is moved into ``files/`` and the index written before the status says complete; an interrupted run
    starts the entry over (the download itself resumes).
    """
    assert isinstance(entry.source, UrlSource)
    source = entry.source
    started = time.perf_counter()
    layout = StoreLayout.of(settings).copy(dataset_name)
    dataset_dir = layout.root
    identity = DatasetIdentity(name=dataset_name, source=source.url, sha=source.sha256, subset=None,
                               split=FILES_SPLIT, license=licence.licence)
    with DatasetLock(settings.state_dir, dataset_name, owner=owner):
        current = read_status_or_none(dataset_dir)
        if (current is not None and current.state is DatasetState.COMPLETE and current.identity.sha == source.sha256
                and kept.is_kept(dataset_dir)):
            return _report(dataset_dir, current, started, already=True)
        status = DatasetStatus(identity, DatasetState.SYNCING, rows_total=0)
        layout.state.mkdir(parents=True, exist_ok=True)
        write_status(dataset_dir, status)
        try:
            data = fetch(entry, source, root)
        except HugflowError as e:
            status.state, status.error = DatasetState.FAILED, str(e)
            write_status(dataset_dir, status)
            raise
        (data / COMPLETE_MARKER).unlink(missing_ok=True)  # the extraction's own mark is not one of the files
        files = kept.index_tree(data)
        target = layout.files
        if target.exists():
            shutil.rmtree(target)
        os.replace(data, target)
        atomic.fsync_dir(dataset_dir)
        kept.write_index(dataset_dir, files)
        status.state, status.rows_total, status.rows_done = DatasetState.COMPLETE, len(files), len(files)
        write_status(dataset_dir, status)
        store.link_processed(StoreLayout.of(settings), dataset_name, dataset_dir)
        shutil.rmtree(root, ignore_errors=True)
        return _report(dataset_dir, status, started, already=False)


def _report(dataset_dir: Path, status: DatasetStatus, started: float, *, already: bool) -> SyncReport:
    return SyncReport(
        dataset_name=status.dataset_name, dataset_dir=dataset_dir, state=status.state, sha=status.identity.sha,
        rows_total=status.rows_total, rows_done=status.rows_done, row_errors=0, resumed_from=0,
        newly_processed=0 if already else status.rows_done, already_complete=already,
        seconds=time.perf_counter() - started, ray_startup_seconds=0.0, manifest=None, output_busy_fraction=None,
    )
