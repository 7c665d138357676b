"""Downloading a plan's files: in parallel, verified against the Hub's size and checksum, retried when transient.

A sync streams: :class:`PartDownloads` fetches the split's parts in split order ahead of the conversion, with at
most ``window`` parts downloading or downloaded and not yet converted, so the disk a sync needs for its source is
bounded by the window's largest parts when finished parts are deleted.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hugflow_ray.adapters.hub import Hub
from hugflow_ray.core.plan import Plan, SourceFile, peak_source_bytes
from hugflow_ray.core.request import HubRef, LocalRef
from hugflow_ray.errors import HubError, HubUnavailableError, SyncError
from hugflow_ray.pipeline.readers.parts import Part, cut_parts

log = logging.getLogger(__name__)

DOWNLOAD_ATTEMPTS = 4
DOWNLOAD_BACKOFF_SECONDS = 1.0
HASH_CHUNK = 1 << 20


WINDOW_PER_DOWNLOAD = 2  # parts downloading or local and not yet converted, per concurrent download


class Pacing:
    """When the next download may start, so that downloads sharing one link start in split order and end a part apart.

    Downloads that start together over one link share it and finish together: the parts arrive in batches of
    ``concurrency``, and the last batch converts after the link has gone quiet (the sync's tail). Here each download
    starts ``1/overlap`` of the last download's duration after the one before it, and at most ``overlap`` run at
    once. Until a download's duration is known the first runs alone; then ``overlap`` is ``concurrency`` and is
    measured again as each download ends:

    * where each connection is slower than the link, a download lasts as long however many run (a connection's
      speed, or each request's latency, limits it): more at once bring more, and ``overlap`` stays at
      ``concurrency``;
    * where the downloads share one link, each is slowed in proportion to how many run: more at once bring nothing,
      and many flows sharing a link share it unevenly, so that a later part overtakes an earlier one and the parts
      (opened in split order) wait for the slowest. ``overlap`` is then 2: one download ends while the next has
      begun, so the link never idles between files, and the parts arrive in order a part's time apart.

    A download's worth is the downloads it ran beside (itself included, averaged over its duration) times the share
    it kept of the best speed a download of its size or smaller reached (a small file is slower than a big one even
    alone: its requests' latency weighs more); ``overlap`` is that plus one, within 2 and ``concurrency``. A file
    the Hub cache holds is no download. Pure: the caller says what time it is and waits.
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = max(1, concurrency)
        self.overlap = self.concurrency  # downloads at once; measured as each ends
        self.running = 0
        self.last_start: float | None = None
        self.spacing: float | None = None  # seconds between starts; None until a download's duration is known
        self._best: dict[int, float] = {}  # the best bytes per second a download reached, by its size's bit length
        self._area, self._at = 0.0, 0.0  # downloads x seconds run so far, up to when
        self._began: dict[int, tuple[float, float]] = {}  # a running download -> (its start, the area then)
        self._ids = itertools.count()

    def delay(self, now: float) -> float | None:
        """Seconds until the next download may start (0: now); None: not before a download running now ends."""
        if self.running == 0 or self.last_start is None:
            return 0.0
        if self.spacing is None or self.running >= self.overlap:
            return None
        return max(0.0, self.last_start + self.spacing - now)

    def started(self, now: float) -> int:
        """A download started: the id :meth:`ended` takes."""
        self._advance(now)
        self.running += 1
        self.last_start = now
        download = next(self._ids)
        self._began[download] = (now, self._area)
        return download

    def ended(self, download: int, now: float, size: int | None) -> None:
        """A download ended, of ``size`` bytes (None: it failed, which says nothing of the link)."""
        self._advance(now)
        self.running -= 1
        began, area = self._began.pop(download)
        seconds = now - began
        if size is None or seconds <= 0:
            return
        speed, bits = size / seconds, size.bit_length()
        first = not self._best
        self._best[bits] = max(self._best.get(bits, 0.0), speed)
        if not first:  # the first ran alone: what others would bring is not known yet
            best = max(value for length, value in self._best.items() if length <= bits)
            worth = (self._area - area) / seconds * speed / best
            self.overlap = min(self.concurrency, max(min(2, self.concurrency), round(worth) + 1))
        self.spacing = seconds / self.overlap

    def _advance(self, now: float) -> None:
        self._area += self.running * max(0.0, now - self._at)
        self._at = max(self._at, now)


def window(concurrency: int) -> int:
    """Parts a sync holds downloading or local and not yet converted: one converting while the next downloads."""
    return WINDOW_PER_DOWNLOAD * max(1, concurrency)


def source_peak(plan: Plan, *, concurrency: int, keep: bool) -> int | None:
    """The most of the plan's source on disk at once during its sync (0 for a local dataset: its files are the
    user's, read where they are); None when the Hub does not say a file's size."""
    if isinstance(plan.request.dataset, LocalRef):
        return 0
    sizes = [f.size for f in plan.files]
    parts, metadata = cut_parts(plan.format, plan.file_names(), sizes)
    extra = sum(sizes[i] or 0 for i in metadata)
    peak = peak_source_bytes([p.size for p in parts], window=window(concurrency), keep=keep)
    return None if peak is None else peak + extra


class PartDownloads:
    """The parts' files, fetched in split order ahead of the conversion.

    At most ``window`` parts are downloading or local and not yet :meth:`finished`, beyond those a read is waiting
    for (:meth:`demand`); at most ``concurrency`` files download at once (:class:`Pacing` says how many). A local
    dataset's files are used where they are and never deleted. A Hub dataset's files go under ``target`` (the
    copy's own folder, not the shared Hub cache); with ``delete``, a part's files are deleted once it is finished.
    """

    def __init__(self, plan: Plan, hub: Hub | None, *, target: Path, concurrency: int, window: int, delete: bool,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        self._plan, self._hub, self._target = plan, hub, target
        self._local = isinstance(plan.request.dataset, LocalRef)
        self._delete = delete and not self._local
        self._window, self._on_bytes = max(1, window), on_bytes
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="download")
        self._futures: dict[int, list[Future[Path]]] = {}  # a part's files, each downloading on its own
        self._cancel: Future[None] = Future()  # done once cancelled: ends a wait for a file still downloading
        self._order: list[Part] = []
        self._submitted = 0
        self._held: set[int] = set()  # parts submitted and not yet finished
        self._demanded = -1  # the furthest part (by index) a read is waiting for: fetched whatever the window
        self._changed = threading.Condition()
        self._cancelled = False
        self._pacing = Pacing(concurrency)
        self._tickets = itertools.count()  # the parts' downloads start in the order they were submitted
        self._admitted = 0

    def files(self, indexes: Sequence[int]) -> list[Path]:
        """Files of the plan (by index) that are not parts' own, e.g. an audio folder's metadata: fetched now."""
        return [future.result() for future in [self._pool.submit(self._fetch, i) for i in indexes]]

    def order(self, parts: Sequence[Part]) -> None:
        """The parts to fetch, in the order :meth:`wait` asks for them; the window's first ones start downloading
        now (while Ray starts, and before any read task asks)."""
        with self._changed:
            self._order, self._submitted = list(parts), 0
            self._held &= {p.index for p in parts}  # a part fetched earlier (the shape's first) and still wanted
            self._top_up()

    def wait(self, part: Part) -> list[Path]:
        """The part's local files, once downloaded and verified; starts the downloads the window allows.

        Raises:
            HubError: a file failed to download (after retries) or failed its check.
            SyncError: the downloads were cancelled.
        """
        with self._changed:
            while part.index not in self._futures:
                self._top_up()
                if part.index in self._futures:
                    break
                if self._cancelled:
                    raise SyncError("the downloads were cancelled")
                self._changed.wait()
            files = self._futures[part.index]
        left = set(files)
        while left:  # until every file is here, one failed, or the downloads were cancelled
            done, _ = futures.wait([*left, self._cancel], return_when=futures.FIRST_COMPLETED)
            left -= done
            if any(f.cancelled() or f.exception() is not None for f in done if f is not self._cancel):
                break
            if self._cancel.done() and left:
                raise SyncError("the downloads were cancelled")
        if any(f.cancelled() for f in files):
            raise SyncError("the downloads were cancelled")
        return [f.result() for f in files]

    def _top_up(self) -> None:
        while self._submitted < len(self._order) and not self._cancelled and (
                len(self._held) < self._window or self._order[self._submitted].index <= self._demanded):
            part = self._order[self._submitted]
            self._submitted += 1
            if part.index in self._futures:
                continue  # fetched (or fetching) already
            self._held.add(part.index)
            self._futures[part.index] = [self._pool.submit(self._fetch, i, next(self._tickets)) for i in part.files]

    def demand(self, index: int) -> None:
        """A read waits for part ``index``: fetch it, and the parts before it, whatever the window (what reads wait
        for is bounded by the executor's own concurrency)."""
        with self._changed:
            self._demanded = max(self._demanded, index)
            self._top_up()
            self._changed.notify_all()

    def finished(self, part: Part) -> None:
        """Every row of ``part`` is in the ledger: delete its files (with ``delete``) and make room in the window."""
        with self._changed:
            self._held.discard(part.index)
            files = self._futures.pop(part.index, [])
            self._top_up()
            self._changed.notify_all()
        for future in files if self._delete else []:
            if future.done() and future.exception() is None:
                future.result().unlink(missing_ok=True)

    def cancel(self) -> None:
        """Start no further download (those in flight finish); a :meth:`wait` for one not started raises."""
        with self._changed:
            self._cancelled = True
            self._changed.notify_all()
        if not self._cancel.done():
            self._cancel.set_result(None)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self, *, done: bool) -> None:
        """Stop downloading. When the sync is ``done`` (its rows all finished), wait for the files in flight and,
        with ``delete``, remove the download folder; otherwise leave at once and keep what was downloaded, which a
        resume reads again without downloading it. A download waiting for its turn does not start."""
        with self._changed:
            self._cancelled = True
            self._changed.notify_all()
        self._pool.shutdown(wait=done, cancel_futures=True)
        if done and self._delete and self._target.is_dir():
            shutil.rmtree(self._target, ignore_errors=True)

    def _fetch(self, index: int, ticket: int | None = None) -> Path:
        source = self._plan.files[index]
        if self._local:
            return Path(source.path)
        ref, hub = self._plan.request.dataset, self._hub
        assert isinstance(ref, HubRef) and hub is not None and self._plan.identity.sha is not None
        sha = self._plan.files_sha or self._plan.identity.sha
        path = hub.cached(ref.hf_id, sha, source.path, local_dir=self._target)  # e.g. the shard the plan read
        paced = self._turn(ticket, download=path is None)
        size = None
        if path is None:
            try:
                path = _retrying(lambda: hub.download(ref.hf_id, sha, source.path, local_dir=self._target),
                                 what=source.path)
                size = path.stat().st_size
            finally:
                with self._changed:
                    assert paced is not None
                    self._pacing.ended(paced, time.monotonic(), size)
                    self._changed.notify_all()
        verify(path, source)
        if self._on_bytes is not None:
            self._on_bytes(path.stat().st_size if size is None else size)
        return path

    def _turn(self, ticket: int | None, *, download: bool) -> int | None:
        """Wait for this fetch's turn: its ticket's, and (a ``download``) the time :class:`Pacing` gives it; a file
        fetched outside the parts' order (``ticket`` None) goes at once. Returns a download's id in the pacing.

        Raises:
            SyncError: the downloads were cancelled meanwhile.
        """
        with self._changed:
            while True:
                if self._cancelled:
                    raise SyncError("the downloads were cancelled")
                delay = self._pacing.delay(time.monotonic()) if ticket is not None and download else 0.0
                if ticket is None or (ticket == self._admitted and delay == 0.0):
                    break
                self._changed.wait(timeout=delay if ticket == self._admitted else None)
            if ticket is not None:
                self._admitted += 1
            paced = self._pacing.started(time.monotonic()) if download else None
            self._changed.notify_all()
            return paced


def _retrying(call: Callable[[], Path], *, what: str) -> Path:
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            return call()
        except HubUnavailableError as e:
            if attempt == DOWNLOAD_ATTEMPTS:
                raise
            delay = DOWNLOAD_BACKOFF_SECONDS * 2 ** (attempt - 1)
            log.warning("download of %s failed (%s); retry %d in %.0f s", what, e, attempt, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def verify(path: Path, source: SourceFile) -> None:
    """Check a downloaded file against the Hub's size and checksum.

    Raises:
        HubError: the file differs; it is deleted so that the next attempt downloads it again.
    """
    problem = None
    size = path.stat().st_size
    if source.size is not None and size != source.size:
        problem = f"{size} bytes instead of {source.size}"
    elif source.sha256 is not None and _digest(path, hashlib.sha256()) != source.sha256:
        problem = "sha256 differs from the Hub's"
    elif source.blob_id is not None and source.sha256 is None:
        git = hashlib.sha1(f"blob {size}\0".encode())  # noqa: S324 - git's object id, not a security hash
        if _digest(path, git) != source.blob_id:
            problem = "git blob id differs from the Hub's"
    if problem:
        path.resolve().unlink(missing_ok=True)  # the Hub cache links snapshot files to blobs: drop the blob too
        path.unlink(missing_ok=True)
        raise HubError(f"{source.path}: downloaded file is corrupt ({problem}); run the sync again", hf_id=source.path)


def _digest(path: Path, hasher: Any) -> str:
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()
