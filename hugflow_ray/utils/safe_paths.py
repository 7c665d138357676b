"""Paths a copy's own state names, checked before anything opens, creates or deletes them.

A ledger, a file index or a status file is data on disk: damage or a hostile edit can make it name ``..``, an
absolute path, or a file behind a symbolic link that leads out of the copy. Every such path goes through
:func:`inside` first; files are opened with :func:`open_regular`, which never follows a final link and never
blocks on a FIFO.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath


class UnsafePathError(ValueError):
    """A path a copy's state names would lead out of the copy (or through a link); the message says which."""


def inside(root: Path, relative: str, *, known: set[str] | None = None) -> Path:
    """``root / relative``, once ``relative`` is shown to stay inside ``root``: relative, no ``..``, and no symbolic
    link (nor anything but a directory) in any component between ``root`` and the last one.

    Args:
        known: folders (relative to ``root``) already seen to be plain directories (filled in here), so that a
            million files in a few folders cost a few ``lstat`` calls, and little else, not a million.

    Raises:
        UnsafePathError: it would not stay inside.
    """
    head, _, last = relative.rpartition("/")
    if known is not None and head in known and last not in ("..", ".", "") and "\\" not in last:
        return root / relative  # its folder is known plain (never absolute, never with ``..``): only its name to check
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or "\\" in relative or any(
            p in ("..", ".", "") for p in parts):
        raise UnsafePathError(f"{relative!r} is not a plain path inside {root}")
    folder = root
    for depth, part in enumerate(parts[:-1], start=1):
        folder = folder / part
        name = "/".join(parts[:depth])
        if known is not None and name in known:
            continue
        try:
            mode = os.lstat(folder).st_mode
        except FileNotFoundError:
            break  # nothing below a missing folder exists: no link to follow
        if not stat.S_ISDIR(mode):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a directory"
            raise UnsafePathError(f"{folder} is {kind}: hugflow neither reads nor writes through it")
        if known is not None:
            known.add(name)
    return root / relative


def real_directory(path: Path) -> str | None:
    """Why ``path`` is not a plain directory of its own (a link, a file...), or None when it is one or is absent."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return f"{path} is a symbolic link (to {os.readlink(path)})"
    return f"{path} is not a directory"


def open_regular(path: Path) -> int | None:
    """A read-only descriptor of ``path`` when it is a regular file, else None (gone, a link, a directory, a FIFO,
    a device): never follows the last component, never blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENXIO):  # a link where the file was; a socket
            return None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return fd


def read_small(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of a small state file (a status, a fingerprint, a progress file), None when there is none.

    Raises:
        UnsafePathError: something else stands there (a link, a folder, a FIFO, a device), or it holds more than
            ``max_bytes`` (it is never read whole then).
        OSError: it cannot be read.
    """
    fd = open_regular(path)
    if fd is None:
        if not os.path.lexists(path):
            return None
        raise UnsafePathError(f"{path} is not a regular file (a link, a folder, a FIFO...)")
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(min(size, max_bytes) + 1)  # never a buffer of max_bytes for a file of a few hundred bytes
        if size < len(data) <= max_bytes:  # it grew since
            data += f.read(max_bytes + 1 - len(data))
    if len(data) > max_bytes:
        raise UnsafePathError(f"{path} holds more than {max_bytes:,} bytes: it is no file hugflow wrote")
    return data
