"""Orchestration of one dataset: plan -> lock -> download -> ledger -> Ray run -> finalize; status and removal.

This is the Python API the CLI calls (``sync``, ``status``, ``remove``), returning typed reports.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hugflow_ray import atomic, audio, output, rows
from hugflow_ray.errors import AudioError, PlanError, SyncError
from hugflow_ray.hub import Hub
from hugflow_ray.layouts import STAGED_FORMATS, stage
from hugflow_ray.ledger import STATUS_ERROR, Ledger, LedgerMismatchError, id_ranges
from hugflow_ray.naming import dataset_dir_name
from hugflow_ray.output import DatasetStatus
from hugflow_ray.plan import Plan, download, make_plan, parquet_row_groups, with_columns
from hugflow_ray.settings import Settings, failpoint
from hugflow_ray.spec import AddRequest, DatasetRef, RemoveRequest, Request, load_request
from hugflow_ray.state import DatasetLock, Progress, progress_path, write_progress
from hugflow_ray.transform import RowConverter, available_cpus, name_candidates, pending, plan_units

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class SyncReport:
    """What a sync did.

    Attributes:
        state: "complete" (newly or already), or "failed".
        already_complete: nothing was done because the dataset was complete.
    """

    dataset_name: str
    dataset_dir: Path
    state: str
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


def hub_for(settings: Settings) -> Hub:
    """The Hub client these settings point at (``HF_ENDPOINT``, ``HF_TOKEN``)."""
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    return Hub(endpoint=settings.hf_endpoint, token=token)


def _request(source: Path | Request, kind: type) -> Request:
    request = load_request(source) if isinstance(source, Path) else source
    if not isinstance(request, kind):
        raise PlanError(f"{getattr(request, 'request_path', None) or source}: expected a {kind.__name__}")
    return request


def sync(
    source: Path | AddRequest,
    settings: Settings,
    *,
    restart: bool = False,
    owner: str = "local-sync",
    expect_sha: str | None = None,
    on_progress: ProgressCallback | None = None,
    progress_bar: bool = False,
) -> SyncReport:
    """Bring one dataset onto this machine, resuming from the ledger; see the module docstring.

    Raises:
        RequestError, HubError, PlanError: before any heavy work.
        SyncError: locked by another run, settings changed since the last run (use ``restart``), or more
            row errors than ``MAX_ROW_ERROR_RATE`` allows, or the revision no longer resolves to ``expect_sha``
            (the commit a plan was shown for).
    """
    started = time.perf_counter()
    request = _request(source, AddRequest)
    assert isinstance(request, AddRequest)
    hub = hub_for(settings) if request.dataset.hf_id is not None else None
    plan = make_plan(request, hub=hub)
    if expect_sha is not None and plan.sha != expect_sha:
        raise SyncError(f"{plan.source}@{request.dataset.revision} now resolves to {plan.sha}, not {expect_sha} "
                        "as planned: the revision moved; run again to plan the new commit")
    dataset_dir = settings.storage_root / plan.dataset_name
    with DatasetLock(settings.state_dir, plan.dataset_name, owner=owner):
        return _sync_locked(plan, dataset_dir, settings, hub, restart, started, on_progress, progress_bar)


def _sync_locked(
    plan: Plan,
    dataset_dir: Path,
    settings: Settings,
    hub: Hub | None,
    restart: bool,
    started: float,
    on_progress: ProgressCallback | None,
    progress_bar: bool,
) -> SyncReport:
    fingerprint = plan.fingerprint(settings.encoder)
    ledger = Ledger(dataset_dir)
    current = output.read_status(dataset_dir)

    def already_complete() -> SyncReport | None:
        if restart or current is None or current.state != "complete" or ledger.recorded_fingerprint() != fingerprint:
            return None
        return _report(plan, dataset_dir, current, resumed=current.rows_done, new=0, already=True, started=started)

    if plan.format not in STAGED_FORMATS and (done := already_complete()):
        return done

    local_files = download(plan, hub=hub, concurrency=settings.max_concurrent_downloads)
    if restart:
        _clear_outputs(dataset_dir)
    if plan.format in STAGED_FORMATS:
        names = [f.path if plan.sha else Path(f.path).name for f in plan.files]
        staged, columns = stage(plan.format, local_files, names, dataset_dir / ".hugflow" / "staging")
        plan = with_columns(plan, columns)
        local_files = [staged]
        fingerprint = plan.fingerprint(settings.encoder)
        if done := already_complete():
            return done
    groups = [(str(path), parquet_row_groups(path)) for path in local_files]
    total = sum(sum(g) for _, g in groups)
    try:
        ledger.open(fingerprint, restart=restart)
    except LedgerMismatchError as e:
        raise SyncError(
            f"{plan.dataset_name} was started with other settings ({e}); run again with --restart to discard "
            "its converted rows and start over"
        ) from None
    finished = ledger.finished_ids()
    earlier_errors = ledger.summary().errors
    status = DatasetStatus(plan.dataset_name, "syncing", plan.source, plan.sha, plan.subset, plan.split, total,
                           rows_done=len(finished), license=plan.license)
    output.write_status(dataset_dir, status)
    reporter = _ProgressReporter(settings, plan.dataset_name, dataset_dir, total, finished, earlier_errors,
                                 on_progress, progress_bar)
    reporter.update(0, 0, force=True)

    units = pending(plan_units(groups, cpus=available_cpus()), finished)
    startup = 0.0
    busy: float | None = None
    if units:
        from hugflow_ray import ray_runner

        _, startup = ray_runner.ensure_ray(settings.ray_address)
        schema = pq.read_schema(local_files[0])
        candidates = [c for path, _ in groups for c in name_candidates(path, plan.audio_column, schema)]
        converter = RowConverter(
            audio_column=plan.audio_column,
            text_column=plan.text_column,
            encoder=settings.encoder,
            duplicated=rows.duplicated_stems(c for c in candidates if c),
            files_root=None if plan.format in STAGED_FORMATS else str(_files_root(plan, local_files[0])),
        )
        busy = ray_runner.run(units, converter, dataset_dir, columns=None,
                              on_progress=reporter.update).writer_busy_fraction

    summary = ledger.summary()
    if summary.rows != total:
        raise SyncError(f"{plan.dataset_name}: {summary.rows} of {total} rows finished; run the sync again")
    status.rows_done, status.row_errors = summary.rows, summary.errors
    if total and summary.errors / total > settings.max_row_error_rate:
        status.state = "failed"
        status.error = f"{summary.errors} of {total} rows failed (limit {settings.max_row_error_rate:.0%})"
        output.write_status(dataset_dir, status)
        reporter.finish("failed")
        raise SyncError(f"{plan.dataset_name}: {status.error}; see `hugflow status {plan.dataset_name} --errors`")
    output.write_manifests(dataset_dir)
    failpoint("finalize")
    status.state = "complete"
    output.write_status(dataset_dir, status)
    link_processed(settings, plan.dataset_name, dataset_dir)
    reporter.finish("complete")
    return _report(plan, dataset_dir, status, resumed=len(finished), new=total - len(finished), already=False,
                   started=started, ray_startup=startup, output_busy=busy)


def release_ray() -> float:
    """Stop the Ray that a sync in this process started (or joined); returns the seconds it took."""
    if "ray" not in sys.modules:
        return 0.0
    from hugflow_ray import ray_runner

    return ray_runner.shutdown()


def sync_rows(
    records: Iterable[Mapping[str, Any]],
    settings: Settings,
    *,
    name: str,
    description: str = "rows handed in through the Python API",
    audio_column: str = "audio",
    text_column: str = "text",
    restart: bool = False,
    on_progress: ProgressCallback | None = None,
) -> SyncReport:
    """Sync rows held in memory, e.g. from a ``datasets.Dataset`` with decoded audio.

    Audio values may be anything :func:`hugflow_ray.audio.decode` reads: Hub audio dicts and bytes are kept as
    they are; ``{"array", "sampling_rate"}`` dicts and AudioDecoder objects are staged losslessly as float WAV.
    The rows are staged under ``STATE_DIR/incoming/<name>/`` and synced like a local dataset of that name.
    """
    stem = rows.safe_stem(name)
    if not stem:
        raise PlanError(f"{name!r} is not usable as a dataset name; use letters, digits, '.', '_' and '-'")
    incoming = settings.state_dir / "incoming" / stem
    (incoming / "data").mkdir(parents=True, exist_ok=True)
    staged = []
    for row_id, record in enumerate(records):
        values = dict(record)
        try:
            values[audio_column] = _staged_audio(values.get(audio_column))
        except AudioError as e:
            log.warning("row %d of %s: %s; recorded as a row without audio", row_id, name, e)
            values[audio_column] = None
        staged.append(values)
    if not staged:
        raise PlanError(f"{name}: no rows were handed in")
    table = pa.Table.from_pylist(staged)
    index = table.schema.get_field_index(audio_column)
    table = table.set_column(index, audio_column, table.column(index).cast(_AUDIO_TYPE))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic.write_bytes(incoming / "data" / "train-00000-of-00001.parquet", sink.getvalue().to_pybytes())
    request = AddRequest(
        dataset=DatasetRef(path=incoming), description=description, audio_column=audio_column,
        text_column=text_column, audio_column_explicit=True,
    )
    return sync(request, settings, restart=restart, owner="python-api", on_progress=on_progress)


_AUDIO_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _staged_audio(value: object) -> dict[str, Any] | None:
    """An in-memory audio value as a Hub audio dict; decoded audio is staged as float WAV."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": bytes(value), "path": None}
    if isinstance(value, Mapping) and value.get("array") is None:
        return {"bytes": value.get("bytes"), "path": value.get("path")}
    return {"bytes": audio.to_lossless_wav(value), "path": None}


def _report(plan: Plan, dataset_dir: Path, status: DatasetStatus, *, resumed: int, new: int, already: bool,
            started: float, ray_startup: float = 0.0, output_busy: float | None = None) -> SyncReport:
    return SyncReport(
        dataset_name=plan.dataset_name, dataset_dir=dataset_dir, state=status.state, sha=plan.sha,
        rows_total=status.rows_total, rows_done=status.rows_done, row_errors=status.row_errors,
        resumed_from=resumed, newly_processed=new, already_complete=already,
        seconds=time.perf_counter() - started, ray_startup_seconds=ray_startup,
        manifest=dataset_dir / output.MANIFEST_JSONL, output_busy_fraction=output_busy,
    )


def _files_root(plan: Plan, first_local: Path) -> Path:
    """The directory a row's relative audio ``path`` is resolved against: the dataset's own files."""
    if plan.sha is None:
        local = plan.request.dataset.path
        assert local is not None
        return local if local.is_dir() else local.parent
    depth = len(Path(plan.files[0].path).parts)
    return first_local.parents[depth - 1]


def _clear_outputs(dataset_dir: Path) -> None:
    for name in (rows.AUDIO_DIR, rows.JSON_DIR, ".hugflow"):
        if (dataset_dir / name).is_dir():
            shutil.rmtree(dataset_dir / name)
    for name in (output.MANIFEST_PARQUET, output.MANIFEST_JSONL):
        (dataset_dir / name).unlink(missing_ok=True)


class _ProgressReporter:
    """Writes the progress file every ``PROGRESS_INTERVAL`` rows, calls the callback, draws a terminal bar.

    It keeps the finished row ids itself (the ledger's at the start, then the ids of each written block), so a
    progress update costs the same whether the ledger holds ten parts or ten thousand.
    """

    def __init__(self, settings: Settings, name: str, dataset_dir: Path, total: int, finished: np.ndarray,
                 earlier_errors: int, callback: ProgressCallback | None, bar: bool) -> None:
        self.settings, self.name, self.dataset_dir = settings, name, dataset_dir
        self.total, self.resumed, self.earlier_errors = total, len(finished), earlier_errors
        self.finished = [finished]
        self.callback, self.bar = callback, bar and sys.stderr.isatty()
        self.started = time.perf_counter()
        self.last_reported = -1
        self.progress = Progress(dataset_name=name, status="syncing", total_files=total, resumed_from=self.resumed)

    def update(self, new_rows: int, new_errors: int, written: np.ndarray | None = None, *, force: bool = False) -> None:
        if written is not None:
            self.finished.append(written)
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        p = self.progress
        p.newly_downloaded = new_rows
        p.downloaded_files = self.resumed + new_rows
        p.row_errors = self.earlier_errors + new_errors
        p.percent_complete = round(100.0 * p.downloaded_files / self.total, 2) if self.total else 100.0
        p.rows_per_second = round(new_rows / elapsed, 2) if new_rows else None
        remaining = self.total - p.downloaded_files
        p.eta_seconds = round(remaining / p.rows_per_second, 1) if p.rows_per_second else None
        if self.bar:
            eta = f"{p.eta_seconds:.0f}s" if p.eta_seconds is not None else "?"
            print(f"\r{self.name[:40]}: {p.downloaded_files}/{self.total} rows {p.percent_complete:5.1f}% "
                  f"{p.rows_per_second or 0:.1f} rows/s ETA {eta}  ", end="", file=sys.stderr, flush=True)
        if force or new_rows - self.last_reported >= self.settings.progress_interval:
            self._emit()
            self.last_reported = new_rows

    def finish(self, state: str) -> None:
        self.progress.status = state
        self._emit()
        if self.bar:
            print(file=sys.stderr)

    def _emit(self) -> None:
        self.finished = [np.unique(np.concatenate(self.finished))]
        self.progress.resume_data = {"ledger": str(Ledger(self.dataset_dir).parts),
                                     "finished_ranges": id_ranges(self.finished[0])}
        write_progress(self.settings.state_dir, self.progress)
        if self.callback is not None:
            self.callback(self.progress)


def link_processed(settings: Settings, name: str, dataset_dir: Path) -> Path | None:
    """Point ``PROCESSED_ROOT/<name>`` at the dataset atomically; never replace what is not our symlink.

    Problems (no permission, a foreign file in the way) are warnings: the data sync itself succeeded.
    """
    link = settings.processed_root / name
    target = dataset_dir.resolve()
    try:
        if link.is_symlink():
            current = Path(os.readlink(link))
            if current != target and not current.resolve().is_relative_to(settings.storage_root.resolve()):
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


@dataclass(frozen=True)
class StatusRow:
    dataset_name: str
    state: str
    rows_done: int
    rows_total: int
    row_errors: int
    size_bytes: int
    sha: str | None
    updated: str


def status(settings: Settings) -> list[StatusRow]:
    """Every dataset copy under ``STORAGE_ROOT`` with its state."""
    rows_: list[StatusRow] = []
    root = settings.storage_root
    for dataset_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        current = output.read_status(dataset_dir)
        if current is None:
            continue
        rows_.append(StatusRow(current.dataset_name, current.state, current.rows_done, current.rows_total,
                               current.row_errors, dataset_size(dataset_dir), current.sha, current.updated))
    return rows_


def dataset_size(dataset_dir: Path) -> int:
    """Bytes of a dataset copy's own files (symlinks not followed)."""
    return sum(f.stat().st_size for f in dataset_dir.rglob("*") if f.is_file() and not f.is_symlink())


def row_errors(settings: Settings, name: str) -> list[dict]:
    """The failed rows of a dataset: row id, error code and message."""
    dataset_dir = _dataset_dir(settings, name)
    table = Ledger(dataset_dir).read(["row_id", "status", "error_code", "error"])
    return [r for r in table.to_pylist() if r["status"] == STATUS_ERROR]


def _dataset_dir(settings: Settings, name: str) -> Path:
    root = settings.storage_root.resolve()
    candidate = root / name
    if "/" in name or name in ("", ".", "..") or not candidate.is_dir() or candidate.is_symlink():
        raise SyncError(f"no dataset {name!r} under {settings.storage_root}; `hugflow status` lists them")
    return candidate


@dataclass(frozen=True)
class RemoveReport:
    dataset_name: str
    removed: list[str]


def remove(source: Path | RemoveRequest, settings: Settings, *, owner: str = "remove") -> RemoveReport:
    """Delete a dataset copy: files, manifests, ledger, progress file, processed symlink.

    Never follows a symlink out of ``STORAGE_ROOT``; refuses while a sync of the dataset holds its lock.
    """
    request = _request(source, RemoveRequest)
    name = dataset_dir_name(request.dataset)
    removed: list[str] = []
    with DatasetLock(settings.state_dir, name, owner=owner):
        dataset_dir = settings.storage_root / name
        if dataset_dir.is_symlink():
            dataset_dir.unlink()
            removed.append(str(dataset_dir))
        elif dataset_dir.is_dir():
            shutil.rmtree(dataset_dir)  # removes symlinks inside without following them
            removed.append(str(dataset_dir))
        link = settings.processed_root / name
        if link.is_symlink() and Path(os.readlink(link)) == (settings.storage_root / name).resolve():
            link.unlink()
            removed.append(str(link))
        progress = progress_path(settings.state_dir, name)
        if progress.exists():
            progress.unlink()
            removed.append(str(progress))
    if not removed:
        raise SyncError(f"nothing to remove: {name} is not under {settings.storage_root}")
    return RemoveReport(dataset_name=name, removed=removed)
