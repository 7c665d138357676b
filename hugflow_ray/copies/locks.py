"""One sync or removal of a dataset at a time on this host: per-dataset ``flock``s under ``STATE_DIR/locks/``."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import stat
from pathlib import Path

from hugflow_ray.copies.layout import lock_path
from hugflow_ray.errors import SyncError
from hugflow_ray.utils import atomic
from hugflow_ray.utils.safe_paths import read_small

MAX_HOLDER_BYTES = 1 << 16  # who holds a lock: a few dozen bytes


class DatasetLock:
    """One sync or removal of a dataset at a time on this host: an ``flock`` a killed process releases.

    The holder (pid, host, owner, since) is recorded next to the lock so a refused caller can say who holds it.
    """

    def __init__(self, state_dir: Path, dataset_name: str, *, owner: str) -> None:
        self.path = lock_path(state_dir, dataset_name)
        self.holder_path = self.path.with_suffix(".holder.json")
        self.dataset_name = dataset_name
        self.owner = owner
        self._fd: int | None = None

    def _try_acquire(self) -> int | None:
        """An open descriptor holding the lock, or None when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as e:
            raise SyncError(f"{self.path} cannot be {self.dataset_name}'s lock ({e.strerror}: a link or a folder "
                            "where hugflow keeps a lock file); remove it, then run again") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise SyncError(f"{self.path} is not a regular file (a FIFO or a device where hugflow keeps "
                            f"{self.dataset_name}'s lock file); remove it, then run again")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def __enter__(self) -> DatasetLock:
        fd = self._try_acquire()
        if fd is None:
            raise SyncError(f"{self.dataset_name} is locked by {self._holder()}; wait for it to finish")
        self._fd = fd
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "owner": self.owner,
                  "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        atomic.write_json(self.holder_path, holder)
        return self

    def held_by(self) -> str | None:
        """Who holds the lock now, or None when it is free (checked without keeping it)."""
        fd = self._try_acquire()
        if fd is None:
            return self._holder()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        return None

    def _holder(self) -> str:
        try:
            holder = json.loads((read_small(self.holder_path, MAX_HOLDER_BYTES) or b"").decode("utf-8"))
            return f"{holder['owner']} (pid {holder['pid']} on {holder['host']}, since {holder['since']})"
        except (OSError, ValueError, KeyError, TypeError):  # gone, damaged, or no file: the lock still holds
            return "another process"

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            self.holder_path.unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
