"""Durable, all-or-nothing file writes: temp file in the same directory, fsync, rename, directory fsync.

A reader (or a crash) sees either the old file or the whole new one, never a half-written file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp-hugflow"


def fsync_dir(directory: Path) -> None:
    """Make the directory entries (new and renamed files) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` atomically and durably.

    Args:
        sync_dir: fsync the directory too. Batch writers pass False and call :func:`fsync_dir` once per batch.
    """
    temp = path.with_name(f".{path.name}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    if sync_dir:
        fsync_dir(path.parent)


def json_bytes(value: Any) -> bytes:
    """``value`` as canonical JSON: UTF-8, sorted keys, no NaN; the same value always gives the same bytes."""
    return (json.dumps(value, ensure_ascii=False, sort_keys=True, indent=1, allow_nan=False) + "\n").encode("utf-8")


def write_json(path: Path, value: Any, *, sync_dir: bool = True) -> None:
    """Write ``value`` as canonical JSON (:func:`json_bytes`) atomically."""
    write_bytes(path, json_bytes(value), sync_dir=sync_dir)


def remove_temp_files(directories: Iterable[Path]) -> int:
    """Delete temp files a crash left behind; returns how many."""
    removed = 0
    for directory in directories:
        if directory.is_dir():
            for temp in directory.glob(f".*{TEMP_SUFFIX}"):
                temp.unlink(missing_ok=True)
                removed += 1
    return removed
