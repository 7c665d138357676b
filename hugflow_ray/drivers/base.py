"""What the control plane needs from a data-plane driver: start ``hugflow local-sync`` for a request, or find the one
an earlier run left running, then follow it to its end."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from hugflow_ray.drivers.local import LocalDriver
from hugflow_ray.settings import Settings


class DriverRun(Protocol):
    """A running data-plane driver: its exit status once it ends (negative: killed by that signal), where it runs
    (a Ray job's id and dashboard link; None for a process here), and how it ended when it says more than that."""

    where: str | None

    def poll(self) -> int | None: ...
    def wait(self) -> int: ...
    def ended(self) -> str | None: ...


class Driver(Protocol):
    def attach(self, dataset_name: str, sha: str | None) -> DriverRun | None:
        """The driver of this dataset at this commit that an earlier run of the job left running, if any."""
        ...

    def start(self, root: Path, request: Path, *, owner: str, expect_sha: str | None, dataset_name: str,
              metadata: dict[str, str]) -> DriverRun:
        """Start ``hugflow local-sync`` for the request file ``root / request``."""
        ...


def default_driver(settings: Settings) -> Driver:
    """A Ray job when ``RAY_ADDRESS`` names the cluster's job server, else a child process on this host."""
    if settings.ray_job_server:
        from hugflow_ray.drivers.ray_job import RayJobs

        return RayJobs(settings)
    return LocalDriver(settings.secrets())
