"""The dataset copies under ``STORAGE_ROOT``: list them, size them, read their row errors, link and remove them."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.copies.ledger import Ledger, LedgerDamagedError
from hugflow_ray.copies.locks import DatasetLock
from hugflow_ray.copies.status import read_status, status_file_size, write_sized_status
from hugflow_ray.core.naming import dataset_dir_name
from hugflow_ray.core.records import DatasetIdentity, DatasetState, DatasetStatus, RowRecord, RowStatus
from hugflow_ray.core.request import RemoveRequest, request_of_kind
from hugflow_ray.errors import DamagedStateError, DatasetNotFoundError, SyncError

log = logging.getLogger(__name__)


def link_processed(store: StoreLayout, name: str, dataset_dir: Path) -> Path | None:
    """Point ``PROCESSED_ROOT/<name>`` at the dataset atomically; never replace what is not our symlink.

    Problems (no permission, a foreign file in the way) are warnings: the data sync itself succeeded.
    """
    link = store.processed_link(name)
    target = dataset_dir.resolve()
    try:
        if link.is_symlink():
            current = Path(os.readlink(link))
            if current != target and not current.resolve().is_relative_to(store.storage_root.resolve()):
                log.warning("%s points outside STORAGE_ROOT (%s); left as it is", link, current)
                return None
        elif link.exists():
            log.warning("%s exists and is not a symlink; the processed link was not made", link)
            return None
        link.parent.mkdir(parents=True, exist_ok=True)
        temp = link.with_name(f".{name}.link-tmp")
        temp.unlink(missing_ok=True)
        temp.symlink_to(target, target_is_directory=True)
        os.replace(temp, link)
    except OSError as e:
        log.warning("could not link %s -> %s (%s); the dataset is at %s", link, target, e.strerror, dataset_dir)
        return None
    return link


@dataclass
class StatusRow(DatasetStatus):
    """A dataset copy's status as ``hugflow status`` lists it: with its size on disk, always known."""

    size_bytes: int = 0


def status(store: StoreLayout) -> list[StatusRow]:
    """Every dataset copy under ``STORAGE_ROOT`` with its state and size. An unfinished copy reports the rows its
    ledger holds (the status file only knows what the last progress update said); a copy whose status file is
    damaged is listed as damaged, from its ledger, and the others list normally. A complete copy's size is the one
    recorded when it completed; the others' are walked (:func:`copy_size`)."""
    rows: list[StatusRow] = []
    root = store.storage_root
    for dataset_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        try:
            current = read_status(dataset_dir)
        except DamagedStateError as e:
            current = _from_ledger(dataset_dir, str(e))
        if current is None:
            continue
        if current.state is not DatasetState.COMPLETE:
            summary = Ledger(dataset_dir).summary()
            current.rows_done, current.row_errors = summary.rows, summary.errors
        values = {f.name: getattr(current, f.name) for f in fields(DatasetStatus)}
        rows.append(StatusRow(**{**values, "size_bytes": copy_size(dataset_dir, current)}))
    return rows


def write_measured_status(dataset_dir: Path, status: DatasetStatus) -> None:
    """Write a complete copy's status with its size measured now: nothing else may be writing into the copy."""
    write_sized_status(dataset_dir, status, dataset_size(dataset_dir) - status_file_size(dataset_dir))


def copy_size(dataset_dir: Path, current: DatasetStatus | None) -> int:
    """A copy's bytes on disk: what its status (``current``) recorded when the copy completed, else (not complete,
    or a status written before sizes were recorded) a walk of its files (:func:`dataset_size`)."""
    if current is not None and current.state is DatasetState.COMPLETE and current.size_bytes is not None:
        return current.size_bytes
    return dataset_size(dataset_dir)


def _from_ledger(dataset_dir: Path, problem: str) -> DatasetStatus:
    """A damaged copy's status as its ledger's fingerprint tells it (what was asked for, at which commit)."""
    try:
        fingerprint = Ledger(dataset_dir).recorded_fingerprint() or {}
    except LedgerDamagedError:
        fingerprint = {}
    identity = DatasetIdentity(name=dataset_dir.name, source=fingerprint.get("source", "?"),
                               sha=fingerprint.get("sha"), subset=fingerprint.get("subset"),
                               split=fingerprint.get("split", "?"))
    return DatasetStatus(identity, DatasetState.DAMAGED, rows_total=0, error=problem)


def dataset_size(dataset_dir: Path) -> int:
    """Bytes of a dataset copy's own files: its regular files, symlinks neither counted nor followed.

    One ``scandir`` per directory, whose entries already tell a file from a directory or a link, and one ``lstat``
    per file: a third of the system calls a ``Path.rglob`` walk with ``is_file``, ``is_symlink`` and ``stat``
    makes (measured in docs/DESIGN.md). A directory that cannot be read is skipped, as ``rglob`` skips it, and so is
    a file removed while the walk runs (a sync's temp file renamed into place).
    """
    total = 0
    pending = [os.fspath(dataset_dir)]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        try:
                            total += entry.stat(follow_symlinks=False).st_size
                        except FileNotFoundError:
                            pass
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    return total


def row_errors(store: StoreLayout, name: str) -> list[RowRecord]:
    """The failed rows of a dataset, with their error codes and messages."""
    return [r for r in Ledger(dataset_dir_of(store, name)).records() if r.status is RowStatus.ERROR]


def dataset_dir_of(store: StoreLayout, name: str) -> Path:
    """The directory of the copy ``name``, never a path outside ``STORAGE_ROOT`` nor a symlink.

    Raises:
        DatasetNotFoundError: no such copy.
    """
    root = store.storage_root.resolve()
    candidate = root / name
    if "/" in name or name in ("", ".", "..") or not candidate.is_dir() or candidate.is_symlink():
        raise DatasetNotFoundError(f"no dataset {name!r} under {store.storage_root}; `hugflow status` lists them",
                                   dataset_name=name)
    return candidate


@dataclass(frozen=True)
class RemoveReport:
    dataset_name: str
    removed: list[str]


def remove(source: Path | RemoveRequest, store: StoreLayout, *, owner: str = "remove") -> RemoveReport:
    """Delete a dataset copy: files, manifests, ledger, progress file, processed symlink; and its other versions (an
    update being built, the copies updates replaced and kept).

    Never follows a symlink out of ``STORAGE_ROOT``; refuses while a sync of the dataset holds its lock.
    """
    request = request_of_kind(source, RemoveRequest)
    name = dataset_dir_name(request.dataset)
    removed: list[str] = []
    with DatasetLock(store.state_dir, name, owner=owner):
        dataset_dir = store.copy(name).root
        if dataset_dir.is_symlink():
            dataset_dir.unlink()
            removed.append(str(dataset_dir))
        elif dataset_dir.is_dir():
            shutil.rmtree(dataset_dir)  # removes symlinks inside without following them
            removed.append(str(dataset_dir))
        # a new commit's copy being built beside it, and the versions updates replaced (KEEP_PREVIOUS_COPY)
        for version in [store.next_copy(name).root, *store.previous_copies(name)]:
            if version.is_dir() and not version.is_symlink():
                shutil.rmtree(version)
                removed.append(str(version))
        link = store.processed_link(name)
        if link.is_symlink() and Path(os.readlink(link)) == dataset_dir.resolve():
            link.unlink()
            removed.append(str(link))
        progress = store.progress(name)
        if os.path.lexists(progress):
            try:
                progress.unlink()
            except IsADirectoryError:
                raise SyncError(f"{progress} is a folder where hugflow keeps {name}'s progress file: remove it, then "
                                "remove the dataset again (its copy is already gone)") from None
            removed.append(str(progress))
    if not removed:
        raise SyncError(f"nothing to remove: {name} is not under {store.storage_root}")
    return RemoveReport(dataset_name=name, removed=removed)
