"""Sizes and durations as people read them."""

from __future__ import annotations

import datetime as dt


def human_size(size: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """``3725.2`` -> ``1:02:05``."""
    return str(dt.timedelta(seconds=round(seconds)))


def gigabytes(size: int) -> str:
    """``2_600_000_000`` -> ``2.60 GB``: decimal gigabytes, the unit of catalog sizes and ``MAX_STORAGE_GB``."""
    return f"{size / 1000**3:.2f} GB"
