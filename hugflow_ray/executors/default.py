"""The default executor, Ray, and releasing it: where the sync and the commands reach Ray without loading it (Ray
loads here, when there is work)."""

from __future__ import annotations

import sys

from hugflow_ray.executors.base import Executor


def default_executor(ray_address: str | None, storage_resource: str, *, dashboard_port: int | None = None,
                     record_metrics: bool = True) -> Executor:
    """Ray: an embedded one (with its dashboard on ``dashboard_port`` when given), or the cluster at ``ray_address``
    (its storage node declares ``storage_resource``); hugflow's metrics recorded unless ``record_metrics`` is
    False. Ray itself loads here, when there is work."""
    from hugflow_ray.executors.ray_runner import RayExecutor

    return RayExecutor(ray_address, storage_resource, dashboard_port=dashboard_port, record_metrics=record_metrics)


def release_ray() -> float:
    """Stop the Ray that a sync in this process started (or joined); returns the seconds it took."""
    if "ray" not in sys.modules:
        return 0.0
    from hugflow_ray.executors import ray_runner

    return ray_runner.shutdown()
