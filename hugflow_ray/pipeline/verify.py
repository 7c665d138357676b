"""Checking a dataset copy against its ledger, and repairing what the check finds.

:func:`verify` re-hashes every file the ledger names (the MP3 against ``sha256``, the sidecar JSON against
``json_sha256``) and lists what is missing, what changed, and what lies under ``audio/`` and ``json/`` that no
ledger row names (a stray file, a temp file a crash left). A copy that is not complete (syncing, failed) is
verified too: the check covers the rows its ledger holds, and the report says the copy's state.

:func:`repair` makes such a copy whole again with the machinery a resume already has: rows not in the ledger are
converted by the next sync, with the same bytes and names. So it drops exactly the bad rows (a file missing or
changed) from the ledger (:meth:`~hugflow_ray.copies.ledger.Ledger.drop_rows`, crash-safe), deletes their
remaining files and the unexpected ones, and runs the sync of the copy, which converts exactly those rows.

The request a re-sync needs is rebuilt from the ledger's fingerprint (``.hugflow/meta.json``), the record a
resume is already checked against: the source, the pinned commit, the subset, the split, and the audio and text
columns the rows were made with. The revision the copy was requested at (``main``, a tag) is not recorded, only
in the directory name, and a branch may have moved since; so a Hub copy is re-synced from its pinned commit
(``HubRef(revision=sha)``), which reads exactly the files the copy was made from, and ``sync`` is told which
copy to write into (``dataset_name``) instead of the directory a request for the sha would name. Nothing new is
stored (no change to the status or fingerprint formats), so every existing copy can be repaired; a copy whose
fingerprint names no commit is a local (or in-memory) dataset, re-read from its recorded path.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

from hugflow_ray.copies.ledger import Ledger, LedgerDamagedError
from hugflow_ray.copies.locks import DatasetLock
from hugflow_ray.copies.status import read_status, write_status
from hugflow_ray.copies.store import dataset_dir_of, write_measured_status
from hugflow_ray.core import naming
from hugflow_ray.core.licences import LicenceVerdict
from hugflow_ray.core.plan import FORMAT_VERSION
from hugflow_ray.core.records import DatasetState, RowColumn, RowRecord, RowStatus
from hugflow_ray.core.request import DEFAULT_AUDIO_COLUMN, DEFAULT_TEXT_COLUMN, AddRequest, HubRef, LocalRef
from hugflow_ray.errors import DamagedStateError, RepairError
from hugflow_ray.executors.base import Executor
from hugflow_ray.pipeline.progress import ProgressCallback
from hugflow_ray.pipeline.sync import SyncReport, sync
from hugflow_ray.settings import Settings
from hugflow_ray.utils.safe_paths import UnsafePathError, inside, open_regular, real_directory

# Threads hashing at once, each over its own contiguous share of the files: hashlib releases the GIL, so a few
# threads keep a disk busy; one task per file costs more in hand-overs than hashing a 100 KB MP3 (measured:
# 2.1x slower with the page cache warm; benchmarks/verify.py).
HASH_THREADS = 4
VERIFY_BATCH_ROWS = 8192  # ledger rows turned into Python objects at a time: verify's memory beyond the ledger's
_FOLDERS = (naming.AUDIO_DIR, naming.JSON_DIR)  # a converted copy's files, all under these
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


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair` did.

    Attributes:
        rows_dropped: the bad rows taken out of the ledger, to be converted again.
        files_removed: the bad rows' remaining files and the unexpected files, deleted.
        sync: the sync that converted the dropped rows again (None when there was nothing to convert).
    """

    dataset_name: str
    rows_dropped: list[int]
    files_removed: list[str]
    sync: SyncReport | None


def verify(settings: Settings, name: str) -> VerifyReport:
    """Re-hash every file the ledger of the copy ``name`` names; list missing, changed and unexpected files.

    Raises:
        DatasetNotFoundError: no copy of that name under ``STORAGE_ROOT``.
        RepairError: the copy has no ledger (hugflow did not make it, or its first sync never began).
        SyncError: a sync or removal of the copy holds its lock.
    """
    started = time.perf_counter()
    dataset_dir = dataset_dir_of(settings, name)
    with DatasetLock(settings.state_dir, name, owner="verify"):
        ledger = _ledger_of(dataset_dir)
        state, rows_expected = _state(dataset_dir)
        table, unreadable = ledger.read_checked(_LEDGER_FILE_COLUMNS)
        unsafe = [why for folder in _FOLDERS if (why := real_directory(dataset_dir / folder)) is not None]
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


def repair(
    settings: Settings,
    name: str,
    *,
    report: VerifyReport | None = None,
    executor: Executor | None = None,
    on_progress: ProgressCallback | None = None,
    request: AddRequest | None = None,
) -> RepairReport:
    """Make the copy ``name`` whole: drop its bad rows from the ledger, delete their files and the unexpected ones,
    and sync it, which converts exactly those rows again (see the module docstring).

    Args:
        report: what :func:`verify` found; verified now when not given.
        executor: where the re-sync converts; by default Ray, as for any sync.
        request: the request that re-makes the copy, when the fingerprint cannot say it alone (a catalog URL
            source's copy: its files downloaded again, pinned to the same URL and sha256).

    Raises:
        DatasetNotFoundError: no copy of that name.
        RepairError: the copy cannot be re-synced as it was made (no ledger fingerprint, another format version
            or other encoder settings), or ``report`` is another copy's; nothing was changed.
        SyncError, HubError, PlanError: from the re-sync, after the bad rows were dropped; running the repair (or
            the sync) again finishes it.
    """
    report = report if report is not None else verify(settings, name)
    if report.dataset_name != name:
        raise RepairError(f"the verify report given is of {report.dataset_name}, not {name}; verify {name} first")
    dataset_dir = dataset_dir_of(settings, name)
    with DatasetLock(settings.state_dir, name, owner="repair"):
        if report.unsafe:
            raise RepairError(f"{name}: {report.unsafe[0]}: hugflow neither reads nor writes through it; move the "
                              "copy's own folder back (or remove the copy), then repair; nothing was changed")
        ledger = _ledger_of(dataset_dir)
        fingerprint = _fingerprint(ledger, name)
        _check_reproducible(fingerprint, settings, name)
        request = request or _request_of(fingerprint, name)
        _check_same_source(fingerprint, request, name)
        bad = report.bad_rows
        # Rows a damaged ledger lost are not known: their files are no strays but rows to convert again (the same
        # bytes under the same names), so nothing is deleted for want of a ledger row.
        ledger_short = bool(report.unreadable_parts) or report.short
        if bad or ledger_short:
            _mark_syncing(dataset_dir)
        dropped = ledger.drop_rows(bad)
        removed = [path for record in dropped for path in _files_of(record) if _remove(dataset_dir, path)]
        if not ledger_short:
            removed += [path for path in report.unexpected if _remove(dataset_dir, path)]
        if removed and not bad:
            _measure_again(dataset_dir)  # no re-sync finalizes a complete copy that only lost unexpected files
    if not bad and not ledger_short and report.state is DatasetState.COMPLETE:
        return RepairReport(dataset_name=name, rows_dropped=[], files_removed=sorted(removed), sync=None)
    synced = sync(request, settings, owner="repair", dataset_name=name,
                  expect_sha=fingerprint.get("sha"), executor=executor, on_progress=on_progress, licence=_RESTORING)
    return RepairReport(dataset_name=name, rows_dropped=[r.row_id for r in dropped], files_removed=sorted(removed),
                        sync=synced)


# A repair restores rows of a copy the licence policy let in when it was made (with the override its request or
# catalog entry carried, which the fingerprint does not keep): the policy is not asked again.
_RESTORING = LicenceVerdict(licence=None, allowed=True, overridden=False, reason="a repair restores an existing copy")


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
    known: set[Path] = set()
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
    for directory in _FOLDERS:
        if real_directory(dataset_dir / directory) is not None:
            continue  # a link (or a file) in the folder's place: reported as unsafe, never walked
        for folder, subfolders, files in os.walk(dataset_dir / directory):  # links to folders are not followed
            prefix = Path(folder).relative_to(dataset_dir).as_posix()
            links = [d for d in subfolders if os.path.islink(os.path.join(folder, d))]
            found += [f"{prefix}/{name}" for name in (*files, *links) if f"{prefix}/{name}" not in named]
    return sorted(found)


def _ledger_of(dataset_dir: Path) -> Ledger:
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


def _fingerprint(ledger: Ledger, name: str) -> dict[str, Any]:
    try:
        fingerprint = ledger.recorded_fingerprint()
    except LedgerDamagedError as e:
        raise RepairError(f"{name}: {e}; it cannot be re-synced as it was made: sync it with --restart") from None
    if fingerprint is None:
        raise RepairError(f"{name} has no ledger fingerprint: it cannot be re-synced as it was made; sync it")
    return fingerprint


def _check_reproducible(fingerprint: dict[str, Any], settings: Settings, name: str) -> None:
    """Refuse, before anything is dropped, a repair whose re-sync would refuse to resume the copy."""
    if fingerprint.get("format_version") != FORMAT_VERSION:
        raise RepairError(f"{name} was made by another version of hugflow (output format "
                          f"{fingerprint.get('format_version')}, this one writes {FORMAT_VERSION}); sync it with "
                          "--restart to redo it")
    encoder = asdict(settings.encoder)
    if fingerprint.get("encoder") != encoder:
        raise RepairError(f"{name} was converted with MP3 settings {fingerprint.get('encoder')}, these settings ask "
                          f"for {encoder}; set MP3_BITRATE and MP3_QUALITY as it was made to repair it")


def _check_same_source(fingerprint: dict[str, Any], request: AddRequest, name: str) -> None:
    """Refuse, before anything is dropped, a repair from another version of the copy's source."""
    origin = request.dataset.origin if isinstance(request.dataset, LocalRef) else None
    if origin is not None and (fingerprint.get("source"), fingerprint.get("sha")) != (origin.url, origin.sha256):
        raise RepairError(f"{name} was made from {fingerprint.get('source')} (sha256 {fingerprint.get('sha')}), its "
                          f"catalog entry now names {origin.url} (sha256 {origin.sha256}): a repair never mixes the "
                          "two; apply the tier to make the copy again from the new source")


def _request_of(fingerprint: dict[str, Any], name: str) -> AddRequest:
    """The add request that re-syncs the copy as it was made: its pinned commit (or local path), subset, split and
    columns (a column the fingerprint names is asked for explicitly; none recorded: the default, which the split
    lacks, so the same choice is made again)."""
    source, sha = fingerprint["source"], fingerprint.get("sha")
    if "://" in source:
        raise RepairError(f"{name} was made from a downloaded source ({source}): repair it through its catalog "
                          "(`hugflow verify NAME --repair` with CATALOG_PATH set)")
    subset, split = fingerprint.get("subset"), fingerprint["split"]
    ref = LocalRef(Path(source), subset, split) if sha is None else HubRef(source, sha, subset, split)
    audio, text = fingerprint.get("audio_column"), fingerprint.get("text_column")
    return AddRequest(dataset=ref, description=f"repair of {name}", audio_column=audio or DEFAULT_AUDIO_COLUMN,
                      text_column=text or DEFAULT_TEXT_COLUMN, audio_column_explicit=audio is not None,
                      text_column_explicit=text is not None)


def _mark_syncing(dataset_dir: Path) -> None:
    """Say in the status that the copy is no longer complete, before any row is dropped."""
    try:
        status = read_status(dataset_dir)
    except DamagedStateError:
        return  # the re-sync rewrites it
    if status is not None and status.state is not DatasetState.SYNCING:
        status.state, status.error, status.size_bytes = DatasetState.SYNCING, None, None  # the re-sync measures it
        write_status(dataset_dir, status)


def _measure_again(dataset_dir: Path) -> None:
    """Record a complete copy's size again after files were deleted from it (it was measured with them there)."""
    try:
        status = read_status(dataset_dir)
    except DamagedStateError:
        return
    if status is not None and status.state is DatasetState.COMPLETE and status.size_bytes is not None:
        write_measured_status(dataset_dir, status)


def _files_of(record: RowRecord) -> list[str]:
    return [path for path in (record.audio_file, record.json_file) if path is not None]


def _remove(dataset_dir: Path, relative: str) -> bool:
    """Delete a file of the copy named relative to it (never outside ``audio/`` or ``json/``); whether it was
    there."""
    parts = Path(relative).parts
    if len(parts) < 2 or parts[0] not in _FOLDERS:
        return False
    try:
        inside(dataset_dir, relative).unlink()
    except (FileNotFoundError, UnsafePathError):
        return False
    except IsADirectoryError:
        raise RepairError(f"{dataset_dir / relative} is a folder where the copy keeps a file: hugflow deletes no "
                          "folder it did not make; remove it, then repair again") from None
    return True

