"""Orchestration of one dataset: plan -> lock -> ledger -> stream (download beside conversion) -> finalize.

The sync streams: the split's parts download in split order beside the conversion (at most a window of them
downloading or waiting), each part is converted as soon as its files are local and verified, and with
``KEEP_SOURCES`` off a part's files are deleted once its rows are all in the ledger.

``sync`` is what ``hugflow local-sync`` (and the Python API) call; it returns a typed report.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from hugflow_ray.adapters.hub import Hub
from hugflow_ray.copies import manifests, store
from hugflow_ray.copies.layout import CopyLayout, StoreLayout
from hugflow_ray.copies.ledger import Ledger, LedgerDamagedError, LedgerMismatchError, LedgerSummary
from hugflow_ray.copies.locks import DatasetLock
from hugflow_ray.copies.part_rows import PartRows
from hugflow_ray.copies.status import read_status, read_status_or_none, write_status
from hugflow_ray.core import naming
from hugflow_ray.core.licences import LicenceVerdict
from hugflow_ray.core.plan import Plan
from hugflow_ray.core.records import DatasetState, DatasetStatus
from hugflow_ray.core.request import AddRequest, HubRef, request_of_kind
from hugflow_ray.errors import DamagedStateError, HugflowError, Interrupted, SyncError
from hugflow_ray.executors.base import Executor, Reads, RunResult, Steps
from hugflow_ray.executors.default import default_executor
from hugflow_ray.pipeline import incremental, writer
from hugflow_ray.pipeline.convert import RowConverter
from hugflow_ray.pipeline.download import PartDownloads, window
from hugflow_ray.pipeline.plan import check_licence, licence_verdict, make_plan, with_columns
from hugflow_ray.pipeline.progress import ProgressCallback, ProgressReporter
from hugflow_ray.pipeline.readers.parts import (
    OpenedPart,
    Part,
    SplitShape,
    cut_parts,
    iter_slice,
    json_columns,
    names_files,
    open_part,
    split_shape,
    units_per_part,
)
from hugflow_ray.pipeline.writer import DatasetWriter
from hugflow_ray.settings import Settings
from hugflow_ray.utils.failpoints import failpoint
from hugflow_ray.utils.humanize import human_size
from hugflow_ray.utils.machine import available_cpus
from hugflow_ray.utils.redact import redact

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class SyncReport:
    """What a sync did.

    Attributes:
        state: complete (newly or already), or failed.
        already_complete: nothing was done because the dataset was complete.
    """

    dataset_name: str
    dataset_dir: Path
    state: DatasetState
    sha: str | None
    rows_total: int
    rows_done: int
    row_errors: int
    resumed_from: int
    newly_processed: int
    already_complete: bool
    seconds: float
    ray_startup_seconds: float
    manifest: Path | None
    output_busy_fraction: float | None
    blocks_by_node: dict[str, int] = field(default_factory=dict)
    reused: int = 0
    """Rows taken over from the copy at the previous commit (an incremental re-sync), not converted."""
    replaced_sha: str | None = None
    """The commit of the copy this sync replaced (an incremental re-sync), None otherwise."""
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds by phase, in order: plan, download, ledger, waiting for the executor, executor start (its own length:
    it ran on a thread beside download and ledger, so only the wait adds to ``seconds``), convert, finalize; an
    incremental re-sync adds "take over" (the rows taken over from the copy it replaces)."""


def sync(
    source: Path | AddRequest,
    settings: Settings,
    *,
    restart: bool = False,
    owner: str = "local-sync",
    expect_sha: str | None = None,
    on_progress: ProgressCallback | None = None,
    progress_bar: bool = False,
    executor: Executor | None = None,
    licence: LicenceVerdict | None = None,
    dataset_name: str | None = None,
) -> SyncReport:
    """Bring one dataset onto this machine, resuming from the ledger; see the module docstring.

    Args:
        executor: where conversion runs; by default Ray (embedded, or the cluster at ``RAY_ADDRESS``).
        licence: the licence verdict a catalog reached (from its own licence); by default the policy judges the Hub
            card's licence with the request's ``licence_override``.
        dataset_name: the copy to write into, when not the one the request names: a repair asks for a copy's
            pinned commit, whose own directory name would differ from the copy's (named after its branch or tag).
            The ledger's fingerprint must still match, as for any resume.

    Raises:
        RequestError, HubError, PlanError: before any heavy work (LicenceError: the licence policy refuses it).
        SyncError: locked by another run, settings changed since the last run (use ``restart``), or more
            row errors than ``MAX_ROW_ERROR_RATE`` allows, or the revision no longer resolves to ``expect_sha``
            (the commit a plan was shown for), or ``dataset_name`` is not a plain name.
    """
    started = time.perf_counter()
    request = request_of_kind(source, AddRequest)
    assert isinstance(request, AddRequest)
    ref = request.dataset
    if dataset_name is not None and ("/" in dataset_name or dataset_name in ("", ".", "..")):
        raise SyncError(f"{dataset_name!r} is not a dataset copy's name; `hugflow status` lists them")
    start = _ExecutorStart(settings, executor)
    copy_dir = StoreLayout.of(settings).copy(dataset_name or naming.dataset_dir_name(ref)).root

    def resolved(sha: str) -> None:
        """The revision resolved: unless the copy is complete at that commit, there are rows to convert, and Ray's
        start-up need not wait for the rest of the plan (reading the split's files)."""
        moved = isinstance(ref, HubRef) and expect_sha is not None and sha != expect_sha  # refused below
        if not moved and (restart or not _complete_at(copy_dir, sha)):
            start.begin()

    try:
        hub = Hub.from_settings(settings) if isinstance(ref, HubRef) else None
        plan = make_plan(request, hub=hub, on_resolved=resolved)
        check_licence(plan, licence or licence_verdict(plan, settings))
        planned = time.perf_counter() - started
        if dataset_name is not None:
            plan = dataclasses.replace(plan, identity=dataclasses.replace(plan.identity, name=dataset_name))
        if isinstance(ref, HubRef) and expect_sha is not None and plan.identity.sha != expect_sha:
            raise SyncError(f"{ref.hf_id}@{ref.revision} now resolves to {plan.identity.sha}, not {expect_sha} "
                            "as planned: the revision moved; run again to plan the new commit")
        with DatasetLock(settings.state_dir, plan.identity.name, owner=owner):
            job = _DatasetSync(plan, settings, hub, restart=restart, started=started, start=start)
            job.phases["plan"] = planned
            return job.run(on_progress, progress_bar=progress_bar)
    finally:  # a plan that failed after Ray began to start: whoever stops it must not race its start-up
        start.settle()


def _complete_at(dataset_dir: Path, sha: str) -> bool:
    """Whether the copy's status says it is complete at commit ``sha`` (a damaged status says no; the sync's own
    reading of it warns)."""
    try:
        status = read_status(dataset_dir)
    except DamagedStateError:
        return False
    return status is not None and status.state is DatasetState.COMPLETE and status.identity.sha == sha


class _DatasetSync:
    """One sync of one dataset, under its lock: the steps of :func:`sync` sharing the plan, the ledger and the
    dataset directory."""

    def __init__(self, plan: Plan, settings: Settings, hub: Hub | None, *, restart: bool, started: float,
                 start: _ExecutorStart) -> None:
        self.plan, self.settings, self.hub = plan, settings, hub
        self.restart, self.started, self.start = restart, started, start
        self.store, name = StoreLayout.of(settings), plan.identity.name
        store = self.store
        self.copy_dir = store.copy(name).root
        incremental.settle(store, name, keep=settings.keep_previous_copy)
        # the copy complete at another commit: the new one is built beside it, taking over its unchanged rows
        fingerprint = plan.fingerprint(settings.encoder)
        self.replacing = None if restart else incremental.replaced_sha(self.copy_dir, fingerprint)
        self.dataset_dir = (incremental.begin(store, name, self.replacing, fingerprint) if self.replacing
                            else self.copy_dir)
        self.reused = 0
        self.ledger = Ledger(self.dataset_dir)
        self.current = read_status_or_none(self.dataset_dir)  # derived state: a damaged one is rebuilt
        self.status: DatasetStatus | None = None  # this run's, once the split's rows are counted
        self.reporter: ProgressReporter | None = None
        self.phases: dict[str, float] = {}
        self.request_audio, self.request_text = plan.audio_column, plan.text_column
        self._bytes_so_far = 0
        self._bytes_lock = threading.Lock()

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - began

    def run(self, on_progress: ProgressCallback | None, *, progress_bar: bool) -> SyncReport:
        """The sync's steps; a failure is recorded in the dataset's status (state and error) before it is raised,
        so whoever runs this driver reads the outcome as data."""
        try:
            try:
                return self._run(on_progress, progress_bar=progress_bar)
            except OSError as e:
                if _errno(e) not in _DISK_FULL:
                    raise
                raise self._disk_full() from None
            finally:  # whoever stops the executor after this must not race its start-up
                self.start.settle()
        except (KeyboardInterrupt, Interrupted) as e:
            signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
            kept = self._record_interruption()
            raise Interrupted(signum, dataset_name=self.plan.identity.name, rows_kept=kept,
                              rows_total=self.status.rows_total if self.status else None) from None
        except HugflowError as e:
            self._record_failure(str(e))
            raise
        except Exception as e:
            self._record_failure(f"unexpected error: {type(e).__name__}: {e}")
            raise

    def _run(self, on_progress: ProgressCallback | None, *, progress_bar: bool) -> SyncReport:
        if complete := self._already_complete():
            return self._replaced(complete)
        self.start.begin()  # Ray's start-up (seconds) runs while this thread downloads and counts rows
        parts, metadata = cut_parts(self.plan.format, self.plan.file_names(), _sizes(self.plan))
        downloads = PartDownloads(
            self.plan, self.hub, target=CopyLayout(self.dataset_dir).sources,
            concurrency=self.settings.max_concurrent_downloads,
            window=window(self.settings.max_concurrent_downloads),
            delete=not self.settings.keep_sources, on_bytes=self._downloaded)
        finished = False  # every row is in the ledger: the downloads' folder goes
        try:
            if self.restart:
                _clear_outputs(self.dataset_dir)
            with self._phase("download"):  # what must be local before the ledger: the split's shape
                shape = self._shape(parts, metadata, downloads)
            settled = (self.plan.audio_column, self.plan.text_column) != (self.request_audio, self.request_text)
            if settled and (complete := self._already_complete()):  # the first part settled the columns
                finished = True
                return self._replaced(complete)
            with self._phase("ledger"):
                opened = self._open_ledger()
                stream = _Stream(self, parts, shape, downloads, opened.finished, self._taken(parts, metadata))
            self.status = DatasetStatus(self.plan.identity, DatasetState.SYNCING, stream.estimated_total(),
                                        rows_done=len(opened.finished))
            write_status(self.dataset_dir, self.status)
            self.reporter = ProgressReporter(self.settings, self.plan.identity.name, self.dataset_dir,
                                             self.status.rows_total, opened.finished, opened.errors, on_progress,
                                             progress_bar, bytes_total=self.plan.download_bytes if self.hub else None)
            self.reporter.downloaded(self._bytes_so_far)
            self.reporter.update(0, 0, force=True)
            stream.start_taking()  # the unchanged parts, beside Ray's start, the downloads and the conversion
            try:
                startup, result = self._convert(stream, shape)
            except BaseException:
                stream.stop_taking(quietly=True)
                raise
            stream.stop_taking()  # raises what stopped the take-over (a damaged file of the old copy)
            self._take_over(stream)  # the rest, every part now counted
            finished = True
        finally:
            downloads.close(done=finished)  # an interruption or a failure does not wait for the files in flight
        self.status.rows_total = stream.total()
        with self._phase("finalize"):
            self._finalize()
        resumed = len(opened.finished)
        return self._report(self.status, resumed=resumed, new=self.status.rows_total - resumed - self.reused,
                            ray_startup=startup, result=result)

    def _take_over(self, stream: _Stream) -> None:
        if self.replacing is not None:
            with self._phase("take over"):
                stream.take_over()

    def _taken(self, parts: list[Part], metadata: list[int]) -> dict[int, incremental.TakenPart]:
        """The parts whose rows the copy being replaced gives (none when this sync replaces nothing)."""
        if self.replacing is None:
            return {}
        old = incremental.old_files(self.plan, self.copy_dir, self.hub)
        return incremental.taken_parts(self.copy_dir, old, self.plan, parts, metadata,
                                       max_seconds=self.settings.max_audio_seconds)

    def _replaced(self, report: SyncReport) -> SyncReport:
        """An already complete next version (a run cut short before the swap) takes the copy's place."""
        if self.replacing is None:
            return report
        self._take_place()
        return dataclasses.replace(report, dataset_dir=self.dataset_dir, replaced_sha=self.replacing,
                                   manifest=CopyLayout(self.dataset_dir).manifest_jsonl)

    def _take_place(self) -> None:
        """The complete copy becomes the one its users read: the next version swapped into the copy's place (when
        this sync replaces a copy), then the processed link."""
        name = self.plan.identity.name
        if self.replacing is not None:
            self.dataset_dir = incremental.replace(self.store, name, keep=self.settings.keep_previous_copy)
            log.info("%s: now at %s, in place of the copy at %s (%d rows taken over)", name,
                     (self.plan.identity.sha or "")[:12], self.replacing[:12], self.reused)
        store.link_processed(self.store, name, self.dataset_dir)

    def _downloaded(self, size: int) -> None:
        """A file finished downloading (called on a download thread)."""
        with self._bytes_lock:
            self._bytes_so_far += size
            if self.reporter is not None:
                self.reporter.downloaded(self._bytes_so_far)

    def _shape(self, parts: list[Part], metadata: list[int], downloads: PartDownloads) -> SplitShape:
        """How the split reads; a layout whose columns the plan could not tell (not parquet) settles them now, from
        its first part (an audio folder: from its metadata files)."""
        plan, names = self.plan, self.plan.file_names()
        if plan.format == "parquet":
            return SplitShape(plan.format, plan.audio_column)
        downloads.order(parts)
        first = downloads.wait(parts[0]) if plan.format != "audiofolder" else []
        meta = downloads.files(metadata)
        shape, columns = split_shape(plan.format, None, first, meta, [names[i] for i in metadata])
        self.plan = with_columns(plan, columns)
        return dataclasses.replace(shape, audio_column=self.plan.audio_column)

    def _disk_full(self) -> SyncError:
        """The one line a full disk gets: which filesystem, how much this dataset still needs, and that a re-run
        resumes (every row in the ledger has its files; what was being written is redone)."""
        name = self.plan.identity.name
        where = _mount_point(self.dataset_dir)
        free = shutil.disk_usage(where).free
        try:
            done = self.ledger.summary().rows
        except (OSError, HugflowError):
            done = 0
        total = self.status.rows_total if self.status else 0
        need = ""
        if done and total > done:
            layout = CopyLayout(self.dataset_dir)
            per_row = sum(store.dataset_size(folder) for folder in (layout.audio, layout.json)) / done
            need = f"; the {total - done:,} rows left need about {human_size(int(per_row * (total - done)))}"
        return SyncError(f"{name}: the filesystem at {where} is full ({human_size(free)} free){need}. Free space "
                         f"and run again: it resumes after the {done:,} rows kept")

    def _record_interruption(self) -> int | None:
        """Bring the status and progress files up to what the ledger keeps; returns its finished rows.

        Best-effort: the signal may have come before there was a ledger, or while a disk is full.
        """
        try:
            summary = self.ledger.summary()
            if self.status is not None:
                self.status.rows_done, self.status.row_errors = summary.rows, summary.errors
                write_status(self.dataset_dir, self.status)
            if self.reporter is not None:
                self.reporter.stopped(summary.finished, summary.errors)
            return summary.rows
        except (OSError, HugflowError) as e:
            log.warning("could not record the interrupted sync's progress (%s); the ledger has what was finished", e)
            return None

    def _record_failure(self, error: str) -> None:
        """Write the failed state and its error (redacted) to the status file and the progress file."""
        status = self.status or DatasetStatus(
            self.plan.identity, DatasetState.FAILED, self.current.rows_total if self.current else self.plan.rows or 0,
            rows_done=self.current.rows_done if self.current else 0,
            row_errors=self.current.row_errors if self.current else 0,
        )
        status.state, status.error = DatasetState.FAILED, redact(error, self.settings.secrets())
        status.size_bytes = None  # a size is recorded for a complete copy only
        try:
            write_status(self.dataset_dir, status)
            if self.reporter is not None:
                self.reporter.finish(DatasetState.FAILED)
        except OSError as e:  # e.g. the disk that failed the sync: the error itself is what must reach the user
            log.debug("could not record the failure in %s (%s)", self.dataset_dir, e)

    def _already_complete(self) -> SyncReport | None:
        """The report of a dataset already complete with these settings (None: there is work to do)."""
        current = self.current
        if self.restart or current is None or current.state is not DatasetState.COMPLETE:
            return None
        try:
            if self.ledger.recorded_fingerprint() != self.plan.fingerprint(self.settings.encoder):
                return None
        except LedgerDamagedError:
            return None
        if self.ledger.summary().rows != current.rows_total:  # a damaged ledger part: its rows are redone
            return None
        return self._report(current, resumed=current.rows_done, new=0, already=True)

    def _open_ledger(self) -> LedgerSummary:
        """Open (or start over) the ledger for this plan; returns the rows already finished."""
        try:
            opened = self.ledger.open(self.plan.fingerprint(self.settings.encoder), restart=self.restart)
        except LedgerMismatchError as e:
            raise SyncError(
                f"{self.plan.identity.name} was started with other settings ({e}); run again with --restart to "
                "discard its converted rows and start over"
            ) from None
        writer.remove_leftovers(self.dataset_dir)  # what an interrupted run left half-written
        return opened

    def _convert(self, stream: _Stream, shape: SplitShape) -> tuple[float, RunResult | None]:
        """Convert and write the rows not yet finished, the parts opening as they download; returns the executor's
        start-up seconds and what the run did (None when nothing was left to do)."""
        reads = stream.reads()
        if not reads.slices:
            return 0.0, None
        plan = self.plan
        local_parquet = plan.local is not None and plan.format == "parquet"
        files = [Path(f.path) for f in plan.files]
        converter = RowConverter(
            audio_column=plan.audio_column,
            text_column=plan.text_column,
            encoder=self.settings.encoder,
            json_columns=json_columns(shape),
            files_root=str(_files_root(plan)) if local_parquet and names_files(files, plan.audio_column) else None,
            max_seconds=self.settings.max_audio_seconds,
        )
        assert self.reporter is not None
        with self._phase("waiting for the executor"):
            executor, startup = self.start.wait()
        self.phases["executor start"] = startup
        with self._phase("convert"):
            steps = Steps(read=iter_slice, convert=converter, writer=DatasetWriter,
                          convert_on_storage=converter.files_root is not None)
            return startup, executor.run(reads, steps, self.dataset_dir, on_progress=stream.written)

    def _finalize(self) -> None:
        """Check every row is finished and the row errors are within the limit; then manifests, status, link."""
        assert self.status is not None and self.reporter is not None
        status, name, limit = self.status, self.plan.identity.name, self.settings.max_row_error_rate
        summary = self.ledger.summary()
        if summary.rows != status.rows_total:
            raise SyncError(f"{name}: {summary.rows} of {status.rows_total} rows finished; run the sync again")
        status.rows_done, status.row_errors = summary.rows, summary.errors
        if status.rows_total and summary.errors / status.rows_total > limit:
            raise SyncError(f"{name}: {summary.errors} of {status.rows_total} rows failed (limit {limit:.0%}); see "
                            f"`hugflow status {name} --errors`")
        self.ledger.compact()
        manifests.write_manifests(self.dataset_dir)
        failpoint("finalize")
        status.state = DatasetState.COMPLETE
        # measured once, now that nothing else will be written into the copy: `hugflow status` reads it from here
        store.write_measured_status(self.dataset_dir, status)
        self._take_place()
        self.reporter.finish(DatasetState.COMPLETE)

    def _report(self, status: DatasetStatus, *, resumed: int, new: int, already: bool = False,
                ray_startup: float = 0.0, result: RunResult | None = None) -> SyncReport:
        return SyncReport(
            dataset_name=self.plan.identity.name, dataset_dir=self.dataset_dir, state=status.state,
            sha=self.plan.identity.sha, rows_total=status.rows_total, rows_done=status.rows_done,
            row_errors=status.row_errors, resumed_from=resumed, newly_processed=new, already_complete=already,
            seconds=time.perf_counter() - self.started, ray_startup_seconds=ray_startup,
            manifest=CopyLayout(self.dataset_dir).manifest_jsonl,
            output_busy_fraction=result.writer_busy_fraction if result else None,
            blocks_by_node=result.blocks_by_node if result else {}, reused=self.reused, replaced_sha=self.replacing,
            phases=dict(self.phases),
        )


class _Stream:
    """The parts of one sync as they download, open and finish.

    Built before any part is read: the parts whose rows the record of counted parts and the ledger show all finished
    are skipped (never downloaded), and so are the parts whose rows the copy being replaced gives (taken over by
    :meth:`take_over`, once their ids are known); every other part is read as slices. :meth:`opened` runs on the executor's
    feeder thread, :meth:`written` on the thread that runs the executor, the take-over on a thread of its own
    (:meth:`start_taking`); a lock keeps their shared counts.
    """

    def __init__(self, sync: _DatasetSync, parts: list[Part], shape: SplitShape, downloads: PartDownloads,
                 finished: np.ndarray, taken: dict[int, incremental.TakenPart]) -> None:
        self._sync, self._parts, self._shape, self._downloads = sync, parts, shape, downloads
        self._finished = finished
        self._names = sync.plan.file_names()
        self._record = PartRows(sync.dataset_dir)
        self._counted = self._record.read([self._part_names(p) for p in parts])
        self._taken = taken
        self._old_rows = incremental.OldRows(sync.copy_dir, sync.plan.identity.name) if taken else None
        for index, part in taken.items():
            if index not in self._counted:
                self._record.add(index, self._part_names(parts[index]), part.rows)
                self._counted[index] = part.rows
        self._skipped: set[int] = set()
        first = 0
        for part in parts:  # the known prefix: ids are positions, so a part's ids need every earlier count
            rows = self._counted.get(part.index, part.rows)
            if rows is None:
                break
            lo, hi = np.searchsorted(finished, [first, first + rows], side="left")
            if hi - lo == rows:
                self._skipped.add(part.index)
            first += rows
        self._lock = threading.Lock()
        self._open: dict[int, tuple[OpenedPart, int]] = {}  # part -> (opened, rows still to write)
        self._total: int | None = None
        self._written = len(finished)
        self._converted = (0, 0)  # the executor's rows and row errors so far
        self._taking, self._reporting = threading.Lock(), threading.Lock()
        self._cursor = (0, 0)  # the first part (position, first id) not yet taken over or known to be converted
        self._counted_more = threading.Condition(self._lock)  # a part was counted: more ids may be known
        self._more, self._stopping = False, False
        self._taker: threading.Thread | None = None
        self._taker_error: BaseException | None = None
        self._estimate = self._estimated()
        downloads.order([p for p in parts if p.index not in self._skipped and p.index not in taken])

    def _part_names(self, part: Part) -> list[str]:
        return [self._names[i] for i in part.files]

    def take_over(self) -> None:
        """Take over the rows of every part the copy being replaced gives whose ids are known (every earlier part
        counted) and which are not yet in the ledger; each such part is then finished."""
        with self._taking:  # the take-over thread's and the sync's, one at a time
            position, first = self._cursor
            while position < len(self._parts):  # from the cursor: a call per counted part, never the whole list
                part = self._parts[position]
                with self._lock:
                    rows = self._counted.get(part.index, part.rows)
                    stopping = self._stopping and threading.current_thread() is self._taker
                if rows is None or stopping:
                    return  # ids are positions: no later part's ids are known yet (or the thread is to end)
                if part.index in self._taken and part.index not in self._skipped:
                    assert self._old_rows is not None
                    ids = self._old_rows.take(self._taken[part.index], first, self._sync.dataset_dir,
                                              self._finished)
                    with self._lock:
                        self._skipped.add(part.index)
                        self._sync.reused += len(ids)
                        self._written += len(ids)
                    if len(ids):
                        self._report(ids)
                position, first = position + 1, first + rows
                self._cursor = (position, first)

    def start_taking(self) -> None:
        """Take parts over on a thread of their own, each as soon as its ids are known (at once for those before the
        first part to convert, the others as the parts before them are counted), beside Ray's start, the downloads
        and the conversion: off the critical path wherever those leave a core idle."""
        if self._taken:
            self._taker = threading.Thread(target=self._take_as_counted, name="hugflow-take-over", daemon=True)
            self._taker.start()

    def _take_as_counted(self) -> None:
        try:
            while True:
                self.take_over()
                with self._counted_more:
                    while not (self._more or self._stopping):
                        self._counted_more.wait()
                    if self._stopping:
                        return
                    self._more = False
        except BaseException as e:  # noqa: BLE001 - raised on the sync's thread by stop_taking
            self._taker_error = e

    def stop_taking(self, *, quietly: bool = False) -> None:
        """End the take-over thread once the part it is taking over is done; raise what stopped it, if anything
        (``quietly``: the run failed, and that failure is the one to raise)."""
        if self._taker is None:
            return
        with self._counted_more:
            self._stopping = True
            self._counted_more.notify()
        self._taker.join()
        self._taker = None
        if self._taker_error is not None and not quietly:
            raise self._taker_error

    def reads(self) -> Reads:
        todo = [p for p in self._parts if p.index not in self._skipped and p.index not in self._taken]
        units = units_per_part(todo, self._shape.format, cpus=available_cpus())
        slices = [(p.index, u, n) for p, n in zip(todo, units, strict=True) for u in range(n)]
        sizes = [p.size or 0 for p in todo]
        return Reads(slices=slices, opened=self.opened(), cancel=self._downloads.cancel,
                     demand=self._downloads.demand, pending=self.pending, source_bytes=sum(sizes))

    def opened(self) -> Iterator[OpenedPart]:
        """The parts to read, in split order, each once its files are local and its rows are counted."""
        first = 0
        for part in self._parts:
            if part.index in self._skipped or part.index in self._taken:
                first += self._counted.get(part.index, part.rows or 0)
                continue
            paths = self._downloads.wait(part)
            opened = open_part(part, self._shape, paths, self._part_names(part), first, self._finished)
            if part.index not in self._counted:
                self._record.add(part.index, self._part_names(part), opened.rows)
            first += opened.rows
            with self._lock:
                self._counted[part.index] = opened.rows
                if opened.pending:
                    self._open[part.index] = (opened, opened.pending)
                self._more = True
                self._counted_more.notify()
            if not opened.pending:
                self._downloads.finished(part)
            self._estimate_changed()
            yield opened
        with self._lock:
            self._total = first

    def written(self, rows: int, errors: int, ids: np.ndarray) -> None:
        """Rows were written (the executor's progress call, with its rows and errors so far): a part whose rows are
        all written is finished."""
        done = []
        with self._lock:
            ids = np.sort(ids)
            self._written += len(ids)
            self._converted = (rows, errors)
            for index, (opened, left) in list(self._open.items()):
                lo, hi = np.searchsorted(ids, [opened.first_row_id, opened.first_row_id + opened.rows], side="left")
                if hi > lo:
                    left -= int(hi - lo)
                    if left <= 0:
                        del self._open[index]
                        done.append(index)
                    else:
                        self._open[index] = (opened, left)
        for index in done:
            self._downloads.finished(self._parts[index])
        self._report(ids)

    def _report(self, ids: np.ndarray) -> None:
        """The reporter's count: the rows this run converted and those it took over."""
        reporter = self._sync.reporter
        assert reporter is not None
        with self._reporting:  # the executor's progress and the take-over thread both report
            with self._lock:
                (rows, errors), taken = self._converted, self._sync.reused
            reporter.update(rows + taken, errors, ids)

    def _estimate_changed(self) -> None:
        self._estimate = self._estimated()
        reporter, status = self._sync.reporter, self._sync.status
        if reporter is not None:
            reporter.total = self._estimate
        if status is not None:
            status.rows_total = self._estimate

    def estimated_total(self) -> int:
        return self._estimate

    def _estimated(self) -> int:
        """The split's rows: exact once every part is counted; until then the counted parts' rows, and for the
        others the card's count, or the counted parts' rows per byte."""
        with_rows = [(p, self._counted.get(p.index, p.rows)) for p in self._parts]
        known = sum(r for _, r in with_rows if r is not None)
        unknown = [p for p, r in with_rows if r is None]
        if not unknown:
            return known
        card = self._sync.plan.rows
        if card is not None and card >= known:
            return card
        counted_bytes = sum(p.size or 0 for p, r in with_rows if r is not None)
        per_byte = known / counted_bytes if counted_bytes else 0.0
        return known + int(sum((p.size or 0) * per_byte for p in unknown))

    def pending(self) -> int:
        return max(0, self.estimated_total() - self._written)

    def total(self) -> int:
        """The split's rows, every part counted (after a run that read them all)."""
        if self._total is not None:
            return self._total
        missing = [p.index for p in self._parts if self._counted.get(p.index, p.rows) is None]
        if missing:
            raise SyncError(f"{self._sync.plan.identity.name}: {len(missing)} parts of the split were never read; "
                            "run the sync again")
        return sum(self._counted.get(p.index, p.rows or 0) for p in self._parts)


class _ExecutorStart:
    """The executor's start-up on its own thread, begun once the sync knows it has rows to convert, so that the
    download and the row counting do not wait for Ray to start, nor Ray for them.

    Every start runs on one thread that lives as long as this process: Ray's processes are tied to the thread that
    started them (they get the parent-death signal when it ends), so that thread must outlive the sync.
    """

    _thread: ClassVar[ThreadPoolExecutor | None] = None

    def __init__(self, settings: Settings, executor: Executor | None) -> None:
        self._settings, self._executor = settings, executor
        self._started: futures.Future[float] | None = None

    def begin(self) -> None:
        """Start the executor (by default Ray: embedded, or the cluster at ``RAY_ADDRESS``), unless already begun."""
        if self._started is not None:
            return
        if self._executor is None:
            settings = self._settings
            self._executor = default_executor(settings.ray_address, settings.storage_resource,
                                              record_metrics=settings.hugflow_metrics)
        if _ExecutorStart._thread is None:
            _ExecutorStart._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hugflow-executor-start")
        self._started = _ExecutorStart._thread.submit(self._executor.start)

    def wait(self) -> tuple[Executor, float]:
        """The started executor and its start-up's seconds (beginning it now if it was not); raises what the start
        raised."""
        self.begin()
        self.settle()
        assert self._started is not None and self._executor is not None
        return self._executor, self._started.result()

    def settle(self) -> None:
        """Wait until a start-up begun has ended; then put this process's own SIGTERM handler back, which a start on
        another thread can replace below Python (Ray's core worker installs one that prints a stack trace)."""
        if self._started is None:
            return
        futures.wait([self._started])
        if threading.current_thread() is threading.main_thread():
            handler = signal.getsignal(signal.SIGTERM)
            if handler is not None:
                signal.signal(signal.SIGTERM, handler)


def _sizes(plan: Plan) -> list[int | None]:
    """The bytes of the plan's files: the Hub's, or a local dataset's own."""
    return [f.size if f.size is not None or plan.local is None else os.path.getsize(f.path) for f in plan.files]


def _files_root(plan: Plan) -> Path:
    """The directory a local dataset's row's relative audio ``path`` is resolved against: the dataset's own files."""
    assert plan.local is not None
    local = plan.local.path
    return local if local.is_dir() else local.parent


def _clear_outputs(dataset_dir: Path) -> None:
    """Remove a copy's outputs and state for a restart; its downloaded sources stay (they are the same files)."""
    layout = CopyLayout(dataset_dir)
    for folder in (layout.audio, layout.json):
        if folder.is_dir():
            shutil.rmtree(folder)
    for path in layout.state.iterdir() if layout.state.is_dir() else []:
        if path == layout.sources:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    for manifest in (layout.manifest_parquet, layout.manifest_jsonl):
        manifest.unlink(missing_ok=True)


_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def _errno(error: OSError) -> int | None:
    """The errno of an OSError, also when it was raised in a Ray worker and arrives wrapped."""
    return error.errno if error.errno is not None else getattr(getattr(error, "cause", None), "errno", None)


def _mount_point(path: Path) -> Path:
    """The mount point of the filesystem ``path`` is on (the first existing parent, then upwards)."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path
