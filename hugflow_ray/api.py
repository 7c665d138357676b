"""The Python API, in one import: sync a request or in-memory rows; list, inspect, verify and repair copies (one
verify and one repair for every kind of copy: converted rows or kept files), retry their row errors, remove one;
plan, apply and inspect a catalog tier or named entries, and reconcile the disk with the repository.

    from hugflow_ray.api import load_settings, sync
    report = sync(Path("requests/add/my_dataset.yaml"), load_settings())

    from hugflow_ray.api import catalog_apply, catalog_plan, catalog_status
    plan = catalog_plan(load_settings(), tier="minimal")      # a CatalogPlan: plan.tier.entries, .left_out
    report = catalog_apply(load_settings(), tier="minimal")   # an ApplyReport: report.results, report.ok

    from hugflow_ray.api import download_dataset
    result = download_dataset("ljspeech")                     # one entry, any tier: an EntryResult
"""

from __future__ import annotations

from pathlib import Path

from hugflow_ray.catalog.manager import (
    ApplyReport,
    CatalogPlan,
    CatalogStatus,
    EntryResult,
    EntryStatus,
)
from hugflow_ray.catalog.manager import apply as catalog_apply
from hugflow_ray.catalog.manager import plan as catalog_plan
from hugflow_ray.catalog.manager import repair_copy as repair
from hugflow_ray.catalog.manager import retry_copy as retry
from hugflow_ray.catalog.manager import status as catalog_status
from hugflow_ray.catalog.manager import verify_copy as verify
from hugflow_ray.catalog.reconcile import ReconcilePlan, ReconcileReport
from hugflow_ray.catalog.reconcile import apply as reconcile_apply
from hugflow_ray.catalog.reconcile import plan as reconcile_plan
from hugflow_ray.copies import store
from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.copies.store import RemoveReport, StatusRow, dataset_size
from hugflow_ray.copies.verify import VerifyReport
from hugflow_ray.core.records import RowRecord
from hugflow_ray.core.request import RemoveRequest
from hugflow_ray.executors.default import release_ray
from hugflow_ray.pipeline.in_memory import sync_rows
from hugflow_ray.pipeline.repair import RepairReport, RetryReport
from hugflow_ray.pipeline.sync import SyncReport, sync
from hugflow_ray.settings import Settings, load_settings


def status(settings: Settings) -> list[StatusRow]:
    """Every copy under ``STORAGE_ROOT`` with its state and size, as ``hugflow status`` lists them."""
    return store.status(StoreLayout.of(settings))


def row_errors(settings: Settings, name: str) -> list[RowRecord]:
    """The failed rows of the copy ``name``, with their error codes and messages."""
    return store.row_errors(StoreLayout.of(settings), name)


def remove(source: Path | RemoveRequest, settings: Settings, *, owner: str = "remove") -> RemoveReport:
    """Delete a copy as ``hugflow remove`` does (refused while a sync of it holds its lock)."""
    return store.remove(source, StoreLayout.of(settings), owner=owner)


def download_dataset(name: str, settings: Settings | None = None) -> EntryResult:
    """Bring the catalog entry ``name`` onto this machine (whatever its tier) under the budget and the licence
    policy, as ``hugflow catalog apply NAME`` does; the settings from the environment unless given. Returns its
    result: synced, already present, skipped (with why: over budget, licence) or failed (with the error)."""
    (result,) = catalog_apply(settings or load_settings(), names=[name]).results
    return result


__all__ = [
    "ApplyReport", "CatalogPlan", "CatalogStatus", "EntryResult", "EntryStatus", "ReconcilePlan", "ReconcileReport",
    "RemoveReport", "RepairReport", "RetryReport", "Settings", "StatusRow", "SyncReport", "VerifyReport",
    "catalog_apply", "catalog_plan", "catalog_status", "dataset_size", "download_dataset", "load_settings",
    "reconcile_apply", "reconcile_plan", "release_ray", "remove", "repair", "retry", "row_errors", "status", "sync",
    "sync_rows", "verify",
]
