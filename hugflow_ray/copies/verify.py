"""Checking a dataset copy against its ledger.

:func:`verify` re-hashes every file the ledger names (the MP3 against ``sha256``, the sidecar JSON against
``json_sha256``) and lists what is missing, what changed, and what lies under ``audio/`` and ``json/`` that no
ledger row names (a stray file, a temp file a crash left). A copy that is not complete (syncing, failed) is
verified too: the check covers the rows its ledger holds, and the report says the copy's state. Making a copy
whole again is :mod:`hugflow_ray.pipeline.repair`'s.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.copies.ledger import Ledger
from hugflow_ray.copies.locks import DatasetLock
from hugflow_ray.copies.status import read_status
from hugflow_ray.copies.store import dataset_dir_of
from hugflow_ray.core import naming
from hugflow_ray.core.records import DatasetState, RowColumn, RowStatus
from hugflow_ray.errors import DamagedStateError, RepairError
from hugflow_ray.utils.safe_paths import UnsafePathError, inside, open_regular, real_directory

# Threads hashing at once, each over its own contiguous share of the files: hashlib releases the GIL, so a few
# threads keep a disk busy; one task per file costs more in hand-overs than hashing a 100 KB MP3 (measured:
# 2.1x slower with the page cache warm; benchmarks/verify.py).
HASH_THREADS = 4
VERIFY_BATCH_ROWS = 8192  # ledger rows turned into Python objects at a time: verify's memory beyond the ledger's
CONVERTED_FOLDERS = (naming.AUDIO_DIR, naming.JSON_DIR)  # a converted copy's files, all under these
_LEDGER_FILE_COLUMNS = [RowColumn.ROW_ID, RowColumn.STATUS, RowColumn.AUDIO_FILE, RowColumn.SHA256, RowColumn.JSON_FILE,
                        RowColumn.JSON_SHA256]


class MissingFile(NamedTuple):
    """A file the ledger names that is not on disk (or is no longer a plain file)."""

    row_id: int
    path: str


class ChangedFile(NamedTuple):
    """A file whose bytes no longer hash to the checksum the ledger recorded."""

    row_id: int
    path: str
    expected: str
    actual: str


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found in one dataset copy.

    Attributes:
        state: the copy's state from its status file (None without one; damaged when it cannot be read).
        files_checked: files the ledger names, all looked at.
        bytes_checked: bytes read to hash them.
        missing: files the ledger names that are not there, by row.
        changed: files whose checksum differs from the ledger's, by row.
        unexpected: files under ``audio/`` and ``json/`` that no ledger row names (temp files included).
        no_checksum: JSONs that exist but whose checksum the ledger does not hold (rows recorded before JSON
            checksums were), so their content was not checked.
        unreadable_parts: ledger parts that cannot be read: the rows they recorded are unknown, so no file is
            called unexpected for want of them (a repair re-converts those rows instead of deleting their files).
        rows_expected: the rows a complete copy's status says it holds (None for a copy not complete).
        unsafe: folders of the copy that are links or no directories: hugflow neither reads nor writes through them.
    """

    dataset_name: str
    dataset_dir: Path
    state: DatasetState | None
    rows: int
    files_checked: int
    bytes_checked: int
    seconds: float
    missing: list[MissingFile]
    changed: list[ChangedFile]
    unexpected: list[str]
    no_checksum: list[str]
    unreadable_parts: list[str] = field(default_factory=list)
    rows_expected: int | None = None
    unsafe: list[str] = field(default_factory=list)

    @property
    def short(self) -> bool:
        """A complete copy whose ledger holds fewer rows than its status says it has."""
        return self.rows_expected is not None and self.rows < self.rows_expected

    @property
    def ok(self) -> bool:
        """Every file the ledger names is there with its checksum, nothing else is, the ledger is whole (every part
        readable, every row of a complete copy there), and the copy's folders are its own."""
        return not (self.missing or self.changed or self.unexpected or self.unreadable_parts or self.short
                    or self.unsafe)

    @property
    def bad_rows(self) -> list[int]:
        """The rows with a missing or changed file: what a repair converts again."""
        return sorted({f.row_id for f in self.missing} | {f.row_id for f in self.changed})

    def lines(self) -> list[str]:
        """The report as one-line messages, the verdict first."""
        verdict = "ok" if self.ok else f"{len(self.bad_rows)} damaged rows, {len(self.unexpected)} unexpected files"
        if self.unreadable_parts or self.short:
            verdict += ", a damaged ledger"
        if self.unsafe:
            verdict += ", unsafe folders"
        state = self.state.value if self.state is not None else "no status"
        lines = [(f"{self.dataset_name}: {verdict} ({self.rows} rows, {self.files_checked} files, "
                  f"{self.bytes_checked:,} bytes checked in {self.seconds:.1f} s; {state})")]
        if self.state is not DatasetState.COMPLETE:
            lines.append(f"the copy is not complete ({state}): only the rows its ledger holds were checked")
        lines += [f"missing: {f.path} (row {f.row_id})" for f in self.missing]
        lines += [f"changed: {f.path} (row {f.row_id}): sha256 {f.actual}, recorded {f.expected}"
                  for f in self.changed]
        lines += [f"unexpected: {path}" for path in self.unexpected]
        lines += [f"unsafe: {why}; move the copy's own folder back (or remove the copy), then repair"
                  for why in self.unsafe]
        lines += [f"unreadable ledger part: {part} (its rows are converted again by a repair or a sync)"
                  for part in self.unreadable_parts]
        if self.short:
            lines.append(f"the ledger holds {self.rows} of the {self.rows_expected} rows the copy's status records "
                         "(a repair converts the others again)")
        if self.no_checksum:
            lines.append(f"{len(self.no_checksum)} JSON files have no checksum recorded (converted before JSON "
                         "checksums were kept): checked to exist only")
        return lines


def verify(store: StoreLayout, name: str) -> VerifyReport:
    """Re-hash every file the ledger of the copy ``name`` names; list missing, changed and unexpected files.

    Raises:
        DatasetNotFoundError: no copy of that name under ``STORAGE_ROOT``.
        RepairError: the copy has no ledger (hugflow did not make it, or its first sync never began).
        SyncError: a sync or removal of the copy holds its lock.
    """
    started = time.perf_counter()
    dataset_dir = dataset_dir_of(store, name)
    with DatasetLock(store.state_dir, name, owner="verify"):
        ledger = ledger_of(dataset_dir)
        state, rows_expected = _state(dataset_dir)
        table, unreadable = ledger.read_checked(_LEDGER_FILE_COLUMNS)
        unsafe = [why for folder in CONVERTED_FOLDERS if (why := real_directory(dataset_dir / folder)) is not None]
        found = _Found()
        with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
            for batch in table.to_batches(max_chunksize=VERIFY_BATCH_ROWS):  # Python objects for a batch at a time
                named, outside = safe_files(dataset_dir, _named_files(batch.to_pylist()))
                unsafe += outside
                shares = [named[i * len(named) // HASH_THREADS:(i + 1) * len(named) // HASH_THREADS]
                          for i in range(HASH_THREADS)]
                checked = [c for share in pool.map(lambda files: [_check(dataset_dir, f) for f in files], shares)
                           for c in share]
                found.add(named, checked)
        unexpected = _unexpected(dataset_dir, found.paths)
    return VerifyReport(
        dataset_name=name, dataset_dir=dataset_dir, state=state, rows=table.num_rows, files_checked=found.files,
        bytes_checked=found.bytes, seconds=time.perf_counter() - started, missing=found.missing,
        changed=found.changed, unexpected=unexpected, no_checksum=found.no_checksum,
        unreadable_parts=[str(part.relative_to(dataset_dir)) for part in unreadable],
        rows_expected=rows_expected if state is DatasetState.COMPLETE else None, unsafe=unsafe,
    )


class _Located(Protocol):
    @property
    def path(self) -> str: ...


_F = TypeVar("_F", bound=_Located)


class _Found:
    """What verify found so far, batch by batch: the files' problems, and the paths the ledger names (for the
    unexpected files)."""

    def __init__(self) -> None:
        self.missing: list[MissingFile] = []
        self.changed: list[ChangedFile] = []
        self.no_checksum: list[str] = []
        self.paths: set[str] = set()
        self.files = self.bytes = 0

    def add(self, named: list[_NamedFile], checked: list[tuple[str | None, int]]) -> None:
        self.files += len(named)
        for file, (actual, size) in zip(named, checked, strict=True):
            self.paths.add(file.path)
            self.bytes += size
            if actual is None:
                self.missing.append(MissingFile(file.row_id, file.path))
            elif file.sha is None:
                self.no_checksum.append(file.path)
            elif actual != file.sha:
                self.changed.append(ChangedFile(file.row_id, file.path, file.sha, actual))


class _NamedFile(NamedTuple):
    row_id: int
    path: str
    sha: str | None


def _named_files(rows: list[dict[str, Any]]) -> Iterator[_NamedFile]:
    """The files the ledger's converted rows name, each with the checksum recorded for it."""
    for row in rows:
        if row[RowColumn.STATUS] != RowStatus.OK.value:
            continue
        if row[RowColumn.AUDIO_FILE] is not None:
            yield _NamedFile(row[RowColumn.ROW_ID], row[RowColumn.AUDIO_FILE], row[RowColumn.SHA256])
        if row[RowColumn.JSON_FILE] is not None:
            yield _NamedFile(row[RowColumn.ROW_ID], row[RowColumn.JSON_FILE], row[RowColumn.JSON_SHA256])


def safe_files(root: Path, files: Iterable[_F]) -> tuple[list[_F], list[str]]:
    """The files (anything with a ``path`` relative to ``root``) whose path stays inside ``root`` through plain
    folders, and why each other one does not (never opened: a repair refuses while there is one)."""
    known: set[str] = set()
    safe, unsafe = [], []
    for file in files:
        try:
            inside(root, file.path, known=known)
        except UnsafePathError as e:
            unsafe.append(str(e))
        else:
            safe.append(file)
    return safe, unsafe


def _check(dataset_dir: Path, file: _NamedFile) -> tuple[str | None, int]:
    return file_sha256(dataset_dir / file.path)


def file_sha256(path: Path) -> tuple[str | None, int]:
    """The sha256 of a file (None when it is not there as a plain file: gone, a link, a directory, a FIFO) and the
    bytes read."""
    fd = open_regular(path)
    if fd is None:
        return None, 0
    with os.fdopen(fd, "rb", buffering=0) as f:
        digest = hashlib.file_digest(f, "sha256")  # reads in bounded chunks
        return digest.hexdigest(), f.tell()


def _unexpected(dataset_dir: Path, named: set[str]) -> list[str]:
    """Files (and links) under ``audio/`` and ``json/`` that no ledger row names, relative to the copy."""
    found = []
    for directory in CONVERTED_FOLDERS:
        if real_directory(dataset_dir / directory) is not None:
            continue  # a link (or a file) in the folder's place: reported as unsafe, never walked
        for folder, subfolders, files in os.walk(dataset_dir / directory):  # links to folders are not followed
            prefix = Path(folder).relative_to(dataset_dir).as_posix()
            links = [d for d in subfolders if os.path.islink(os.path.join(folder, d))]
            found += [f"{prefix}/{name}" for name in (*files, *links) if f"{prefix}/{name}" not in named]
    return sorted(found)


def ledger_of(dataset_dir: Path) -> Ledger:
    ledger = Ledger(dataset_dir)
    if not ledger.meta_path.exists() and not ledger.parts.is_dir():
        raise RepairError(f"{dataset_dir.name} has no ledger: hugflow did not make it, or its first sync never "
                          "began; sync it")
    return ledger


def _state(dataset_dir: Path) -> tuple[DatasetState | None, int | None]:
    """The copy's state, and the rows its status says it holds."""
    try:
        status = read_status(dataset_dir)
    except DamagedStateError:
        return DatasetState.DAMAGED, None
    return (status.state, status.rows_done) if status is not None else (None, None)
