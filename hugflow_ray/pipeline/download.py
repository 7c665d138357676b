"""Downloading a plan's files: in parallel, verified against the Hub's size and checksum, retried when transient."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hugflow_ray.adapters.hub import Hub
from hugflow_ray.core.plan import Plan, SourceFile
from hugflow_ray.core.request import LocalRef
from hugflow_ray.errors import HubError, HubUnavailableError

log = logging.getLogger(__name__)

DOWNLOAD_ATTEMPTS = 4
DOWNLOAD_BACKOFF_SECONDS = 1.0
HASH_CHUNK = 1 << 20


def download(plan: Plan, *, hub: Hub | None, concurrency: int) -> list[Path]:
    """Fetch the plan's files (in parallel, verified, retried on transient errors); local files as they are.

    Returns:
        Local paths in the plan's file order.
    """
    ref = plan.request.dataset
    if isinstance(ref, LocalRef):
        return [Path(f.path) for f in plan.files]
    assert hub is not None and plan.identity.sha is not None
    hf_id, sha = ref.hf_id, plan.files_sha or plan.identity.sha

    def fetch(source: SourceFile) -> Path:
        path = _retrying(lambda: hub.download(hf_id, sha, source.path), what=source.path)
        verify(path, source)
        return path

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="download") as pool:
        return list(pool.map(fetch, plan.files))


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
