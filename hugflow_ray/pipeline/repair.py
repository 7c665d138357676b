"""Repairing what :func:`~hugflow_ray.copies.verify.verify` finds.

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

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.copies.ledger import Ledger, LedgerDamagedError
from hugflow_ray.copies.locks import DatasetLock
from hugflow_ray.copies.status import read_status, write_status
from hugflow_ray.copies.store import dataset_dir_of, write_measured_status
from hugflow_ray.copies.verify import CONVERTED_FOLDERS, VerifyReport, ledger_of, verify
from hugflow_ray.core.licences import LicenceVerdict
from hugflow_ray.core.plan import FORMAT_VERSION
from hugflow_ray.core.records import DatasetState, RowColumn, RowRecord, RowStatus
from hugflow_ray.core.request import DEFAULT_AUDIO_COLUMN, DEFAULT_TEXT_COLUMN, AddRequest, HubRef, LocalRef
from hugflow_ray.errors import DamagedStateError, RepairError
from hugflow_ray.executors.base import Executor
from hugflow_ray.pipeline.progress import ProgressCallback
from hugflow_ray.pipeline.sync import SyncReport, sync
from hugflow_ray.settings import Settings
from hugflow_ray.utils.safe_paths import UnsafePathError, inside


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
    report = report if report is not None else verify(StoreLayout.of(settings), name)
    if report.dataset_name != name:
        raise RepairError(f"the verify report given is of {report.dataset_name}, not {name}; verify {name} first")
    dataset_dir = dataset_dir_of(StoreLayout.of(settings), name)
    with DatasetLock(settings.state_dir, name, owner="repair"):
        if report.unsafe:
            raise RepairError(f"{name}: {report.unsafe[0]}: hugflow neither reads nor writes through it; move the "
                              "copy's own folder back (or remove the copy), then repair; nothing was changed")
        ledger = ledger_of(dataset_dir)
        fingerprint, request = _as_made(ledger, settings, name, request)
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
    synced = _resync(request, settings, name, fingerprint, owner="repair", executor=executor, on_progress=on_progress)
    return RepairReport(dataset_name=name, rows_dropped=[r.row_id for r in dropped], files_removed=sorted(removed),
                        sync=synced)


# A repair restores rows of a copy the licence policy let in when it was made (with the override its request or
# catalog entry carried, which the fingerprint does not keep): the policy is not asked again.
_RESTORING = LicenceVerdict(licence=None, allowed=True, overridden=False, reason="a repair restores an existing copy")


def _as_made(ledger: Ledger, settings: Settings, name: str, request: AddRequest | None
             ) -> tuple[dict[str, Any], AddRequest]:
    """The copy's fingerprint, and the request that re-makes it as it was made (``request`` when given), both checked
    before anything is dropped: the same output format, encoder settings and source."""
    fingerprint = _fingerprint(ledger, name)
    _check_reproducible(fingerprint, settings, name)
    request = request or _request_of(fingerprint, name)
    _check_same_source(fingerprint, request, name)
    return fingerprint, request


def _resync(request: AddRequest, settings: Settings, name: str, fingerprint: dict[str, Any], *, owner: str,
            executor: Executor | None, on_progress: ProgressCallback | None) -> SyncReport:
    """Sync the copy ``name`` at its pinned commit: the rows not in its ledger are converted, as made before."""
    return sync(request, settings, owner=owner, dataset_name=name, expect_sha=fingerprint.get("sha"),
                executor=executor, on_progress=on_progress, licence=_RESTORING)


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
    if len(parts) < 2 or parts[0] not in CONVERTED_FOLDERS:
        return False
    try:
        inside(dataset_dir, relative).unlink()
    except (FileNotFoundError, UnsafePathError):
        return False
    except IsADirectoryError:
        raise RepairError(f"{dataset_dir / relative} is a folder where the copy keeps a file: hugflow deletes no "
                          "folder it did not make; remove it, then repair again") from None
    return True


@dataclass(frozen=True)
class RetryReport:
    """What :func:`retry` did.

    Attributes:
        retried: the rows recorded as row errors (of the code asked for) that were converted again.
        still_failing: those of them that are row errors again, with their codes.
        sync: the sync that converted them (None when there was nothing to retry).
    """

    dataset_name: str
    retried: list[int]
    still_failing: dict[int, str]
    sync: SyncReport | None


def retry(
    settings: Settings,
    name: str,
    *,
    code: str | None = None,
    executor: Executor | None = None,
    on_progress: ProgressCallback | None = None,
    request: AddRequest | None = None,
) -> RetryReport:
    """Convert again exactly the rows of the copy ``name`` recorded as row errors (only those of ``code`` when
    given): after a codec fix, or with ``MAX_AUDIO_SECONDS`` raised. Their records are dropped from the ledger and
    the copy re-synced, which converts exactly them (as a repair does); the status, manifests and metrics are the
    sync's own.

    Args:
        request: the request that re-makes the copy, when the fingerprint cannot say it alone (a catalog URL
            source's copy; see :func:`repair`).

    Raises:
        DatasetNotFoundError: no copy of that name.
        RepairError: the copy cannot be re-synced as it was made; nothing was changed.
        SyncError, HubError, PlanError: from the re-sync, after the rows were dropped; running it again finishes it.
    """
    dataset_dir = dataset_dir_of(StoreLayout.of(settings), name)
    with DatasetLock(settings.state_dir, name, owner="retry"):
        ledger = ledger_of(dataset_dir)
        fingerprint, request = _as_made(ledger, settings, name, request)
        failed = _error_ids(ledger, code)
        if not failed:
            return RetryReport(dataset_name=name, retried=[], still_failing={}, sync=None)
        _mark_syncing(dataset_dir)
        ledger.drop_rows(failed)
    synced = _resync(request, settings, name, fingerprint, owner="retry", executor=executor, on_progress=on_progress)
    again = _errors_among(Ledger(dataset_dir), failed)
    return RetryReport(dataset_name=name, retried=failed, still_failing=again, sync=synced)


def _row_errors(ledger: Ledger) -> pa.Table:
    """The ledger's row errors: their ids and codes."""
    table = ledger.read([RowColumn.ROW_ID, RowColumn.STATUS, RowColumn.ERROR_CODE])
    return table.filter(pc.equal(table.column(RowColumn.STATUS), RowStatus.ERROR.value))


def _error_ids(ledger: Ledger, code: str | None) -> list[int]:
    """The ids of the ledger's row errors (of ``code`` only, when given)."""
    errors = _row_errors(ledger)
    if code is not None:
        errors = errors.filter(pc.equal(errors.column(RowColumn.ERROR_CODE), code))
    return errors.column(RowColumn.ROW_ID).to_pylist()


def _errors_among(ledger: Ledger, ids: list[int]) -> dict[int, str]:
    """Which of the rows ``ids`` are row errors, with their codes."""
    errors = _row_errors(ledger)
    errors = errors.filter(pc.is_in(errors.column(RowColumn.ROW_ID), value_set=pa.array(ids, pa.int64())))
    return dict(zip(errors.column(RowColumn.ROW_ID).to_pylist(), errors.column(RowColumn.ERROR_CODE).to_pylist(),
                    strict=True))
