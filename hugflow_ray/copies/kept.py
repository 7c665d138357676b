"""A kept copy: a source's files as it holds them (``data: files``: MIDI, scores, text), under ``files/``, and an
index (``.hugflow/files.parquet``) with every file's size and sha256, which verify checks."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hugflow_ray.copies.batches import read_parquet
from hugflow_ray.copies.layout import FILES_DIR, CopyLayout, StoreLayout
from hugflow_ray.copies.locks import DatasetLock
from hugflow_ray.copies.status import read_status_or_none
from hugflow_ray.copies.verify import ChangedFile, MissingFile, VerifyReport, file_sha256, safe_files
from hugflow_ray.errors import DamagedStateError, RepairError
from hugflow_ray.utils import atomic
from hugflow_ray.utils.safe_paths import inside, open_regular, real_directory

INDEX_SCHEMA = pa.schema([("path", pa.string()), ("size", pa.int64()), ("sha256", pa.string())])


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


def index_tree(tree: Path) -> list[KeptFile]:
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


def verify_files(store: StoreLayout, name: str, dataset_dir: Path) -> VerifyReport:
    """Re-hash a kept copy's files against its index: missing, changed and unexpected files (a row is a file)."""
    started = time.perf_counter()
    with DatasetLock(store.state_dir, name, owner="verify"):
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


def repair_files(store: StoreLayout, name: str, report: VerifyReport, source: Callable[[], Path]) -> list[str]:
    """Put back a kept copy's missing and changed files from its source's tree and delete the unexpected ones;
    returns the paths restored or removed.

    Args:
        source: fetches the source's tree (downloaded and verified again: the catalog's URL sources), called once the
            copy's lock is held and nothing unsafe stands in the copy.

    Raises:
        RepairError: a path of the copy leads through a link or out of it (nothing is changed).
    """
    dataset_dir = store.copy(name).root
    with DatasetLock(store.state_dir, name, owner="repair"):
        if report.unsafe:
            raise RepairError(f"{name}: {report.unsafe[0]}; move the copy's own folder back (or remove the copy), "
                              "then repair; nothing was changed")
        data = source()
        touched = []
        for bad in [*report.missing, *report.changed]:
            relative = bad.path.removeprefix(f"{FILES_DIR}/")
            origin = inside(data, relative)
            target = inside(dataset_dir, bad.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_through(target, lambda temp, origin=origin: shutil.copyfile(origin, temp))  # durable
            touched.append(bad.path)
        for path in report.unexpected:
            inside(dataset_dir, path).unlink(missing_ok=True)
            touched.append(path)
    return touched
