"""The URL adapter: one catalog :class:`UrlSource` downloaded to a local file, resumed and verified.

A download goes to ``<dest>.part`` first. A run that stops early (a dropped connection, a timeout, a server
error) keeps the partial file, and the next run asks for the rest with ``Range: bytes=<kept>-``; a server that
ignores the range sends the whole file again and the partial file starts over. The whole file must have the
catalog's size and sha256 (hashed as it arrives, the kept prefix included) before it is renamed to ``dest``; a
file that does not match is deleted, since its bytes are known to be wrong. Only http and https are fetched, and
credentials in a URL (``user:pass@``) are sent as basic auth but never shown in a message.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import IO

from hugflow_ray.core.catalog import UrlSource
from hugflow_ray.errors import SourceError
from hugflow_ray.utils.atomic import fsync_dir
from hugflow_ray.utils.redact import shown_url

log = logging.getLogger(__name__)

ALLOWED_SCHEMES = frozenset({"http", "https"})
CHUNK_BYTES = 1024 * 1024  # one read and one write at a time: memory stays bounded whatever the file's size
DEFAULT_TIMEOUT_SECONDS = 60.0  # for connecting and for each read: a stalled server fails, a slow one does not
DOWNLOAD_ATTEMPTS = 4  # a transient failure (5xx, 429, a cut connection) is tried again within the run
BACKOFF_SECONDS = 2.0  # the first wait between attempts; it doubles each time
MAX_WAIT_SECONDS = 300.0  # never wait longer than this for one attempt, whatever Retry-After asks
PARTIAL_SUFFIX = ".part"
FILE_MODE = 0o644
HTTP_PARTIAL_CONTENT = 206
HTTP_RANGE_NOT_SATISFIABLE = 416
# Answers a later run may get past: timeouts, rate limits and server failures.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def partial_path(dest: Path) -> Path:
    """Where the download of ``dest`` is kept until it is complete and verified."""
    return dest.with_name(dest.name + PARTIAL_SUFFIX)


def fetch_url(source: UrlSource, dest: Path, *, timeout: float = DEFAULT_TIMEOUT_SECONDS,
              attempts: int = DOWNLOAD_ATTEMPTS, sleep: Callable[[float], None] = time.sleep) -> Path:
    """Download ``source`` to ``dest``, resuming a partial download, and verify its size and sha256.

    A ``dest`` already there with the catalog's size is hashed again and returned without a download; one that
    does not match is deleted and downloaded again. One caller at a time per ``dest`` (the caller holds the
    dataset's lock).

    Args:
        source: the catalog's URL, sha256 and size.
        dest: the final path of the file; its directory is created when missing.
        timeout: seconds to wait for the connection and for each read.
        attempts: tries of a download that fails transiently (resuming from what arrived), waiting between them as
            the server's ``Retry-After`` asks, else with exponential back-off.
        sleep: how to wait between attempts (tests pass one that records).

    Returns:
        ``dest``, verified.

    Raises:
        SourceError: the URL is not http(s), the server refused or failed (``status``), the download stopped
            early (``transient``: the partial file is kept and the next run resumes), or what arrived does not
            match the catalog's size or sha256 (the partial file is deleted).
    """
    target = _Target.of(source)
    if dest.exists():
        if dest.stat().st_size == source.size and _hash_file(dest, source.size).hexdigest() == source.sha256:
            partial_path(dest).unlink(missing_ok=True)
            return dest
        log.warning("%s does not match the catalog's size and sha256 for %s: downloading it again", dest, target.url)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    kept = part.stat().st_size if part.exists() else 0
    if kept > source.size:
        part.unlink()
        kept = 0
    hasher = _hash_file(part, kept) if kept else hashlib.sha256()
    for attempt in range(1, attempts + 1):
        if kept >= source.size:
            break
        try:
            hasher = _download(target, part, kept=kept, hasher=hasher, timeout=timeout)
            break
        except SourceError as e:
            if not e.transient or attempt == attempts:
                raise
            wait = min(e.retry_after if e.retry_after is not None else BACKOFF_SECONDS * 2 ** (attempt - 1),
                       MAX_WAIT_SECONDS)
            log.warning("%s; trying again in %.1f s (attempt %d of %d)", e, wait, attempt + 1, attempts)
            sleep(wait)
            kept = _size(part)
            hasher = _hash_file(part, kept) if kept else hashlib.sha256()
    actual = hasher.hexdigest()
    if actual != source.sha256:
        part.unlink(missing_ok=True)
        raise SourceError(
            f"{target.url}: the download's sha256 is {actual} but the catalog declares {source.sha256}: the file "
            f"changed at its source or the catalog's sha256 is wrong: check it and correct the catalog "
            f"(the partial download was deleted)",
            url=target.url, expected=source.sha256, actual=actual,
        )
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return dest


@dataclass(frozen=True)
class _Target:
    """A source's URL split for the request: the URL without credentials (asked for, and shown in messages) and the
    credentials as a basic-auth header."""

    source: UrlSource
    url: str
    authorization: str | None

    @classmethod
    def of(cls, source: UrlSource) -> _Target:
        parts = urllib.parse.urlsplit(source.url)
        url = shown_url(source.url)
        if parts.scheme.lower() not in ALLOWED_SCHEMES or not parts.hostname:
            raise SourceError(f"{url}: only http and https URLs with a host are downloaded: give the catalog entry "
                              f"an http(s) URL", url=url)
        authorization = None
        if parts.username is not None or parts.password is not None:
            user = urllib.parse.unquote(parts.username or "")
            password = urllib.parse.unquote(parts.password or "")
            authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return cls(source, url, authorization)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http and https only (urllib's own handler also follows ftp)."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Message, newurl: str) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ALLOWED_SCHEMES:
            fp.close()
            raise SourceError(
                f"{shown_url(req.full_url)}: the server redirects to {shown_url(newurl)}, which is not http(s): "
                f"give the catalog entry a URL that serves the file over http(s)",
                url=shown_url(req.full_url), status=code,
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def _hash_file(path: Path, length: int) -> hashlib._Hash:
    """The sha256 of the first ``length`` bytes of ``path``, read a chunk at a time."""
    hasher = hashlib.sha256()
    with path.open("rb") as file:
        left = length
        while left > 0:
            chunk = file.read(min(CHUNK_BYTES, left))
            if not chunk:
                break
            hasher.update(chunk)
            left -= len(chunk)
    return hasher


def _open(target: _Target, offset: int, timeout: float) -> http.client.HTTPResponse:
    request = urllib.request.Request(target.url, headers={"Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    if target.authorization is not None:
        request.add_unredirected_header("Authorization", target.authorization)  # never sent on to another host
    response: http.client.HTTPResponse = _OPENER.open(request, timeout=timeout)
    return response


def _download(target: _Target, part: Path, *, kept: int, hasher: hashlib._Hash, timeout: float) -> hashlib._Hash:
    """Append the rest of the file to ``part`` (or all of it, when the server sends all of it); returns the hash of
    the whole file."""
    try:
        for offset in dict.fromkeys((kept, 0)):  # from the kept prefix; from the start if its range comes back wrong
            with _open_at(target, part, offset, timeout) as response:
                start = _start_of(target, response, offset)
                if start is None:
                    log.info("%s answers a range other than the one asked for: asking for all of it", target.url)
                    continue
                if start != kept:
                    log.info("%s ignores the range asked for: downloading it from the start", target.url)
                    hasher = hashlib.sha256()
                _copy(target, response, part, offset=start, hasher=hasher)
                return hasher
        raise SourceError(f"{target.url}: the server answers a range that was not asked for: run again later; "
                          f"if it persists, the server cannot serve this file", url=target.url, transient=True)
    except SourceError as e:
        if e.expected is not None and not e.transient:  # a mismatch: the bytes kept are known to be wrong
            part.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as e:
        e.close()
        transient = e.code in TRANSIENT_STATUSES
        then = f"run again later: the download resumes from byte {_size(part)}" if transient else (
            "check the catalog entry's url" + (" and its credentials" if e.code in AUTH_STATUSES else ""))
        raise SourceError(f"{target.url}: the server answered HTTP {e.code} {e.reason}: {then}",
                          url=target.url, status=e.code, transient=transient,
                          retry_after=_retry_after(e.headers.get("Retry-After"))) from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        got = _size(part)
        raise SourceError(
            f"{target.url}: the download stopped after {got} of {target.source.size} bytes "
            f"({type(reason).__name__}: {reason}): run again to resume from byte {got}",
            url=target.url, expected=target.source.size, actual=got, transient=True,
        ) from e


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds, or an HTTP date (None when absent or unreadable)."""
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _open_at(target: _Target, part: Path, offset: int, timeout: float) -> http.client.HTTPResponse:
    """The server's answer to a GET from ``offset``; a kept prefix longer than the server's file is dropped and the
    whole file asked for."""
    try:
        return _open(target, offset, timeout)
    except urllib.error.HTTPError as e:
        if e.code != HTTP_RANGE_NOT_SATISFIABLE or not offset:
            raise
        e.close()
        part.unlink(missing_ok=True)
        return _open(target, 0, timeout)


def _start_of(target: _Target, response: http.client.HTTPResponse, offset: int) -> int | None:
    """Where the response's body starts in the file: ``offset`` for a 206 with the range asked for, 0 for a 200,
    None for a 206 with another range (a broken server: ask again for the whole file).

    Raises:
        SourceError: the response declares a size other than the catalog's.
    """
    length = response.headers.get("Content-Length")
    if response.status == HTTP_PARTIAL_CONTENT:
        match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
        if match is None or int(match[1]) != offset or not offset:
            return None
        if match[3] != "*":
            _check_size(target, int(match[3]))
        start = offset
    else:
        start = 0
    if length is not None and length.isdigit():
        _check_size(target, start + int(length))
    return start


def _check_size(target: _Target, declared: int) -> None:
    if declared != target.source.size:
        raise _size_mismatch(target, declared, what="the server declares")


def _size_mismatch(target: _Target, actual: int, *, what: str) -> SourceError:
    return SourceError(
        f"{target.url}: {what} {actual} bytes but the catalog declares {target.source.size}: the file changed at "
        f"its source or the catalog's size is wrong: check it and correct the catalog's size and sha256 "
        f"(the partial download was deleted)",
        url=target.url, expected=target.source.size, actual=actual,
    )


def _copy(target: _Target, response: http.client.HTTPResponse, part: Path, *, offset: int,
          hasher: hashlib._Hash) -> None:
    """Write the body at ``offset`` of ``part``, never past the catalog's size; the written prefix is made durable
    whatever happens, so that the next run can resume after it."""
    size = target.source.size
    fd = os.open(part, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
        written = offset
        while True:
            # One byte more than is missing: a body that goes past the declared size shows it here, unwritten.
            chunk = response.read(min(CHUNK_BYTES, size - written + 1))
            if not chunk:
                break
            if written + len(chunk) > size:
                raise _size_mismatch(target, written + len(chunk), what="the server sends at least")
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
            hasher.update(chunk)
            written += len(chunk)
        if written < size:
            raise http.client.IncompleteRead(b"", size - written)
    finally:
        os.fsync(fd)
        os.close(fd)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0
