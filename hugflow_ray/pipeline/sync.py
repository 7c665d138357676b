"""Orchestration of one dataset: plan -> lock -> download -> ledger -> run on an executor -> finalize.

``sync`` is what ``hugflow local-sync`` (and the Python API) call; it returns a typed report.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from hugflow_ray.adapters.hub import Hub
from hugflow_ray.core import naming
from hugflow_ray.core.plan import Plan
from hugflow_ray.core.request import AddRequest, request_of_kind
from hugflow_ray.errors import SyncError
from hugflow_ray.pipeline import manifests
from hugflow_ray.pipeline.convert import RowConverter
from hugflow_ray.pipeline.download import download
from hugflow_ray.pipeline.ledger import Ledger, LedgerMismatchError
from hugflow_ray.pipeline.locks import DatasetLock
from hugflow_ray.pipeline.plan import hub_for, make_plan, with_columns
from hugflow_ray.pipeline.progress import ProgressCallback, ProgressReporter
from hugflow_ray.pipeline.readers.staged import STAGED_FORMATS, stage
from hugflow_ray.pipeline.readers.units import available_cpus, name_candidates, parquet_row_groups, pending, plan_units
from hugflow_ray.pipeline.status import DatasetStatus, read_status, write_status
from hugflow_ray.pipeline.store import link_processed
from hugflow_ray.settings import Settings
from hugflow_ray.utils.failpoints import failpoint


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
    request = request_of_kind(source, AddRequest)
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
    current = read_status(dataset_dir)

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
    write_status(dataset_dir, status)
    reporter = ProgressReporter(settings, plan.dataset_name, dataset_dir, total, finished, earlier_errors,
                                 on_progress, progress_bar)
    reporter.update(0, 0, force=True)

    units = pending(plan_units(groups, cpus=available_cpus()), finished)
    startup = 0.0
    busy: float | None = None
    if units:
        from hugflow_ray.executors import ray_runner

        _, startup = ray_runner.ensure_ray(settings.ray_address)
        schema = pq.read_schema(local_files[0])
        candidates = [c for path, _ in groups for c in name_candidates(path, plan.audio_column, schema)]
        converter = RowConverter(
            audio_column=plan.audio_column,
            text_column=plan.text_column,
            encoder=settings.encoder,
            duplicated=naming.duplicated_stems(c for c in candidates if c),
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
        write_status(dataset_dir, status)
        reporter.finish("failed")
        raise SyncError(f"{plan.dataset_name}: {status.error}; see `hugflow status {plan.dataset_name} --errors`")
    manifests.write_manifests(dataset_dir)
    failpoint("finalize")
    status.state = "complete"
    write_status(dataset_dir, status)
    link_processed(settings, plan.dataset_name, dataset_dir)
    reporter.finish("complete")
    return _report(plan, dataset_dir, status, resumed=len(finished), new=total - len(finished), already=False,
                   started=started, ray_startup=startup, output_busy=busy)


def release_ray() -> float:
    """Stop the Ray that a sync in this process started (or joined); returns the seconds it took."""
    if "ray" not in sys.modules:
        return 0.0
    from hugflow_ray.executors import ray_runner

    return ray_runner.shutdown()


def _report(plan: Plan, dataset_dir: Path, status: DatasetStatus, *, resumed: int, new: int, already: bool,
            started: float, ray_startup: float = 0.0, output_busy: float | None = None) -> SyncReport:
    return SyncReport(
        dataset_name=plan.dataset_name, dataset_dir=dataset_dir, state=status.state, sha=plan.sha,
        rows_total=status.rows_total, rows_done=status.rows_done, row_errors=status.row_errors,
        resumed_from=resumed, newly_processed=new, already_complete=already,
        seconds=time.perf_counter() - started, ray_startup_seconds=ray_startup,
        manifest=dataset_dir / manifests.MANIFEST_JSONL, output_busy_fraction=output_busy,
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
    for name in (naming.AUDIO_DIR, naming.JSON_DIR, ".hugflow"):
        if (dataset_dir / name).is_dir():
            shutil.rmtree(dataset_dir / name)
    for name in (manifests.MANIFEST_PARQUET, manifests.MANIFEST_JSONL):
        (dataset_dir / name).unlink(missing_ok=True)


