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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from hugflow_ray.adapters.urls import fetch_url
from hugflow_ray.catalog.archives import COMPLETE_MARKER, extract
from hugflow_ray.copies import store
from hugflow_ray.copies.batches import read_parquet
from hugflow_ray.copies.layout import FILES_DIR, CopyLayout, StoreLayout
from hugflow_ray.copies.locks import DatasetLock
from hugflow_ray.copies.status import read_status_or_none, write_status
from hugflow_ray.core.catalog import CatalogEntry, UrlSource
from hugflow_ray.core.licences import LicenceVerdict
from hugflow_ray.core.records import DatasetIdentity, DatasetState, DatasetStatus
from hugflow_ray.errors import CatalogError, DamagedStateError, HugflowError, RepairError
from hugflow_ray.pipeline.sync import SyncReport
from hugflow_ray.pipeline.verify import ChangedFile, MissingFile, VerifyReport, file_sha256, safe_files
from hugflow_ray.settings import Settings
from hugflow_ray.utils import atomic
from hugflow_ray.utils.safe_paths import inside, open_regular, real_directory

FILES_SPLIT = "files"  # the identity's split of a kept copy: it has no rows, only files
EXTRACTION_SLACK = 2  # an archive may expand to twice the larger of its declared sizes, no more
DEFAULT_FILE_NAME = "download"
DOWNLOAD_DIR = "download"  # under a source's working folder, beside the extraction ("data")

INDEX_SCHEMA = pa.schema([("path", pa.string()), ("size", pa.int64()), ("sha256", pa.string())])


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


@dataclass(frozen=True)
class KeptFile:
    """A file of a kept copy, as its index records it."""

    path: str  # relative to files/, POSIX
    size: int
    sha256: str


def read_index(dataset_dir: Path) -> list[KeptFile]:
    """The kept copy's index (empty when it has none).

    Raises:
        DamagedStateError: it cannot be read (the way out: remove the copy and apply the tier again).
    """
    path = CopyLayout(dataset_dir).files_index
    if not os.path.lexists(path):
        return []
    fd = open_regular(path)
    try:
        if fd is None:
            raise OSError("not a regular file (a link, a folder, a FIFO...)")
        with os.fdopen(fd, "rb") as f:
            rows = read_parquet(f, INDEX_SCHEMA).to_pylist()
        return [KeptFile(**row) for row in rows]
    except (OSError, pa.ArrowException, TypeError) as e:
        raise DamagedStateError(f"{path}, the index of the kept copy {dataset_dir.name}, cannot be read ({e}); remove "
                                "the copy and apply its tier again") from None


def is_kept(dataset_dir: Path) -> bool:
    """Whether the copy holds files kept as they are (rather than MP3 + JSON rows)."""
    return CopyLayout(dataset_dir).files_index.exists()


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
                and is_kept(dataset_dir)):
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
        files = _index(data)
        target = layout.files
        if target.exists():
            shutil.rmtree(target)
        os.replace(data, target)
        atomic.fsync_dir(dataset_dir)
        write_index(dataset_dir, files)
        status.state, status.rows_total, status.rows_done = DatasetState.COMPLETE, len(files), len(files)
        write_status(dataset_dir, status)
        store.link_processed(settings, dataset_name, dataset_dir)
        shutil.rmtree(root, ignore_errors=True)
        return _report(dataset_dir, status, started, already=False)


def _index(tree: Path) -> list[KeptFile]:
    files = []
    for path in sorted(tree.rglob("*")):
        sha, size = file_sha256(path)
        if sha is not None:
            files.append(KeptFile(path.relative_to(tree).as_posix(), size, sha))
    return files


def write_index(dataset_dir: Path, files: list[KeptFile]) -> None:
    table = pa.Table.from_pylist([f.__dict__ for f in files], schema=INDEX_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic.write_bytes(CopyLayout(dataset_dir).files_index, sink.getvalue().to_pybytes())


def _report(dataset_dir: Path, status: DatasetStatus, started: float, *, already: bool) -> SyncReport:
    return SyncReport(
        dataset_name=status.dataset_name, dataset_dir=dataset_dir, state=status.state, sha=status.identity.sha,
        rows_total=status.rows_total, rows_done=status.rows_done, row_errors=0, resumed_from=0,
        newly_processed=0 if already else status.rows_done, already_complete=already,
        seconds=time.perf_counter() - started, ray_startup_seconds=0.0, manifest=None, output_busy_fraction=None,
    )


def verify_files(settings: Settings, name: str, dataset_dir: Path) -> VerifyReport:
    """Re-hash a kept copy's files against its index: missing, changed and unexpected files (a row is a file)."""
    started = time.perf_counter()
    with DatasetLock(settings.state_dir, name, owner="verify"):
        root = CopyLayout(dataset_dir).files
        index, unsafe = safe_files(root, read_index(dataset_dir))
        if (why := real_directory(root)) is not None:
            index, unsafe = [], [why]  # nothing is read through it
        checked = [file_sha256(root / f.path) for f in index]
        named = {f.path for f in index}
        unexpected = [] if unsafe else sorted(
            f"{FILES_DIR}/{p.relative_to(root).as_posix()}" for p in root.rglob("*")
            if (p.is_symlink() or not p.is_dir()) and p.relative_to(root).as_posix() not in named)
        current = read_status_or_none(dataset_dir)
    missing = [MissingFile(i, f"{FILES_DIR}/{f.path}") for i, (f, (sha, _)) in enumerate(zip(index, checked))
               if sha is None]
    changed = [ChangedFile(i, f"{FILES_DIR}/{f.path}", f.sha256, sha) for i, (f, (sha, _)) in
               enumerate(zip(index, checked)) if sha is not None and sha != f.sha256]
    return VerifyReport(
        dataset_name=name, dataset_dir=dataset_dir, state=current.state if current else None, rows=len(index),
        files_checked=len(index), bytes_checked=sum(size for _, size in checked),
        seconds=time.perf_counter() - started, missing=missing, changed=changed, unexpected=unexpected,
        no_checksum=[], unsafe=unsafe,
    )


def repair_files(settings: Settings, entry: CatalogEntry, name: str, root: Path, report: VerifyReport) -> list[str]:
    """Put back a kept copy's missing and changed files from its source (downloaded and verified again) and delete
    the unexpected ones; returns the paths restored or removed."""
    assert isinstance(entry.source, UrlSource)
    dataset_dir = StoreLayout.of(settings).copy(name).root
    with DatasetLock(settings.state_dir, name, owner="repair"):
        if report.unsafe:
            raise RepairError(f"{name}: {report.unsafe[0]}; move the copy's own folder back (or remove the copy), "
                              "then repair; nothing was changed")
        data = fetch(entry, entry.source, root)
        touched = []
        for bad in [*report.missing, *report.changed]:
            relative = bad.path.removeprefix(f"{FILES_DIR}/")
            source = inside(data, relative)
            target = inside(dataset_dir, bad.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.repair")
            shutil.copyfile(source, temp)
            os.replace(temp, target)
            touched.append(bad.path)
        for path in report.unexpected:
            inside(dataset_dir, path).unlink(missing_ok=True)
            touched.append(path)
    shutil.rmtree(root, ignore_errors=True)
    return touched
