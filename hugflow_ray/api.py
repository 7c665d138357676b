"""The Python API, in one import: sync a request or in-memory rows, list, inspect, verify and repair copies, remove one.

    from hugflow_ray.api import load_settings, sync
    report = sync(Path("requests/add/my_dataset.yaml"), load_settings())
"""

from __future__ import annotations

from hugflow_ray.executors.base import release_ray
from hugflow_ray.pipeline.in_memory import sync_rows
from hugflow_ray.pipeline.store import RemoveReport, StatusRow, dataset_size, remove, row_errors, status
from hugflow_ray.pipeline.sync import SyncReport, sync
from hugflow_ray.pipeline.verify import RepairReport, VerifyReport, repair, verify
from hugflow_ray.settings import Settings, load_settings

__all__ = [
    "RemoveReport", "RepairReport", "Settings", "StatusRow", "SyncReport", "VerifyReport", "dataset_size",
    "load_settings", "release_ray", "remove", "repair", "row_errors", "status", "sync", "sync_rows", "verify",
]
