"""Durable, all-or-nothing file writes: temp file in the same directory, fsync, rename, directory fsync.

A reader (or a crash) sees either the old file or the whole new one, never a half-written file.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from hugflow_ray.errors import DamagedStateError

TEMP_SUFFIX = ".tmp-hugflow"
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def fsync_dir(directory: Path) -> None:
    """Make the directory entries (new and renamed files) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(directory: Path) -> None:
    """Make everything written so far on ``directory``'s filesystem durable: one ``syncfs`` on Linux.

    One call per batch costs far less than an fsync per file (measured in docs/DESIGN.md); elsewhere ``sync``.
    """
    if _LIBC is None:
        os.sync()
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _LIBC.syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"syncfs failed: {os.strerror(error)}", str(directory))
    finally:
        os.close(fd)


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_SUFFIX}")


def _write_temp(path: Path, data: bytes, *, fsync: bool) -> Path:
    temp = _temp_path(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return temp


def _rename(temp: Path, path: Path) -> None:
    """Put ``temp`` in ``path``'s place.

    Raises:
        DamagedStateError: a folder stands where the file goes (hugflow never deletes a folder it did not make).
    """
    try:
        os.replace(temp, path)
    except IsADirectoryError:
        temp.unlink(missing_ok=True)
        raise DamagedStateError(f"{path} is a folder where hugflow keeps a file: remove it, then run again") from None


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temp file, fsync, rename, directory fsync)."""
    _rename(_write_temp(path, data, fsync=True), path)
    fsync_dir(path.parent)


def write_chunks(path: Path, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` one after another to ``path`` atomically and durably, never holding them all at once."""
    temp = _temp_path(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    _rename(temp, path)
    fsync_dir(path.parent)


def write_through(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` make the file at the temp path it is given (a library that writes a file by name, in pieces),
    then put it at ``path`` atomically and durably; a failure leaves ``path`` as it was and no temp file."""
    temp = _temp_path(path)
    try:
        write(temp)
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _rename(temp, path)
    fsync_dir(path.parent)


def write_many(files: Sequence[tuple[Path, bytes]], *, root: Path) -> None:
    """Write a batch of files atomically and durably, syncing the filesystem of ``root`` once per phase.

    Every file goes to a temp name first; one sync makes their contents durable, the renames follow, and a
    second sync makes the names durable. A crash at any point leaves each path with its old content or the whole
    new one, and when this returns every file is on disk.
    """
    temps = [(_write_temp(path, data, fsync=False), path) for path, data in files]
    if not temps:
        return
    sync_filesystem(root)
    for temp, path in temps:
        _rename(temp, path)
    sync_filesystem(root)


def link_many(links: Sequence[tuple[Path, Path]], *, root: Path) -> None:
    """Give each existing file (``source``) a second name (``path``) atomically and durably: a hard link, so the
    bytes are shared, never copied; a filesystem that refuses hard links gets a copy. One sync for the names."""
    if not links:
        return
    for source, path in links:
        try:
            os.link(source, path, follow_symlinks=False)  # a new name appears whole: no temp name needed
            continue
        except FileExistsError:
            pass  # replaced through a temp name, below
        except OSError as e:
            if e.errno not in _NO_HARD_LINK:
                raise
        temp = _temp_path(path)
        temp.unlink(missing_ok=True)
        try:
            os.link(source, temp, follow_symlinks=False)
        except OSError as e:
            if e.errno not in _NO_HARD_LINK:
                raise
            shutil.copyfile(source, temp, follow_symlinks=False)
        _rename(temp, path)
    sync_filesystem(root)


_NO_HARD_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP)  # a filesystem that refuses: a copy instead


_RENAME_EXCHANGE = 2  # renameat2's flag (linux/fs.h)
_AT_FDCWD = -100


def exchange(first: Path, second: Path) -> None:
    """Swap two directories (or files) in one atomic step, so a reader sees one or the other at each name, never
    neither: ``renameat2(RENAME_EXCHANGE)``. A filesystem without it (NFS) gets three renames, and a crash between
    them leaves ``first``'s old content under ``<second>.swap``; the names are made durable either way."""
    done = False
    if _LIBC is not None and hasattr(_LIBC, "renameat2"):
        result = _LIBC.renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
        if result == 0:
            done = True
        elif (error := ctypes.get_errno()) not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(error, f"could not swap {first} and {second}: {os.strerror(error)}", str(first))
    if not done:
        aside = second.with_name(f"{second.name}.swap")
        os.rename(first, aside)
        os.rename(second, first)
        os.rename(aside, second)
    for directory in {first.parent, second.parent}:
        fsync_dir(directory)


def json_bytes(value: Any) -> bytes:
    """``value`` as canonical JSON: UTF-8, sorted keys, no NaN; the same value always gives the same bytes."""
    return (json.dumps(value, ensure_ascii=False, sort_keys=True, indent=1, allow_nan=False) + "\n").encode("utf-8")


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as canonical JSON (:func:`json_bytes`) atomically."""
    write_bytes(path, json_bytes(value))


def remove_temp_files(directories: Iterable[Path]) -> int:
    """Delete temp files a crash left behind; returns how many."""
    removed = 0
    for directory in directories:
        if directory.is_dir():
            for temp in directory.glob(f".*{TEMP_SUFFIX}"):
                temp.unlink(missing_ok=True)
                removed += 1
    return removed
