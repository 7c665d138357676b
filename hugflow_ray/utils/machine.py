"""What this machine lends a process."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may use (its affinity mask, e.g. a container's or taskset's limit)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
