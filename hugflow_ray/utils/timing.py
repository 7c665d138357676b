"""How long this process has been running: the seconds spent before a command's own work (interpreter start and
imports) are what is left of it when the work starts."""

from __future__ import annotations

import os
from pathlib import Path


def process_age() -> float | None:
    """Seconds since this process started (Linux: from ``/proc``; None where that cannot be read)."""
    try:
        started_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
