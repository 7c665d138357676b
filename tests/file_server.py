"""A plain HTTP file server on loopback for the URL source tests, with the faults a download meets.

``with FileServer({"/data.bin": payload}) as server:`` then ``server.url("/data.bin")``. It honours
``Range: bytes=N-`` (206 and Content-Range, 416 past the end) and logs every request. Per path, it can:

* ``cut_after``: send the headers of the whole answer, then only K bytes of the body, then close the connection
  (a download cut short);
* ``ignore_range``: answer 200 with the whole file whatever the Range header says;
* ``send_length=False``: send no Content-Length and end the body by closing the connection;
* ``status``: answer that status (a 503, a 404) instead of the file; with ``status_times``, only to that many
  requests (then the file), and with ``retry_after``, a ``Retry-After`` header beside it;
* ``redirect_to``: answer 302 to that location;
* ``stall``: send the headers, then wait (until the server closes) without sending the body.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
POLL_SECONDS = 0.01  # how often serve_forever looks for a shutdown: a test waits this long at its end


@dataclass
class Served:
    """One path's content and the faults to answer it with (the tests change them between requests)."""

    data: bytes
    cut_after: int | None = None
    ignore_range: bool = False
    send_length: bool = True
    status: int | None = None
    status_times: int | None = None
    retry_after: str | None = None
    redirect_to: str | None = None
    stall: bool = False


@dataclass(frozen=True)
class LoggedRequest:
    """A request as the server saw it."""

    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int = 0


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-answer (a download stopped on purpose) is expected; anything else is shown."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@dataclass
class FileServer:
    """Serves ``files`` (path -> bytes) and, for paths not among them, the files under ``root``."""

    files: Mapping[str, bytes] = field(default_factory=dict)
    root: Path | None = None

    def __post_init__(self) -> None:
        self.served: dict[str, Served] = {path: Served(data) for path, data in self.files.items()}
        self.requests: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": POLL_SECONDS},
                                        name="file-server", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def serve(self, path: str, data: bytes, **faults: object) -> Served:
        """Serve ``data`` at ``path`` with the faults given (fields of :class:`Served`)."""
        served = Served(data, **faults)  # type: ignore[arg-type]
        self.served[path] = served
        return served

    def gets(self, path: str) -> list[LoggedRequest]:
        """The GET requests for ``path`` so far."""
        with self._lock:
            return [r for r in self.requests if r.method == "GET" and r.path == path]

    def _lookup(self, path: str) -> Served | None:
        if path in self.served:
            return self.served[path]
        if self.root is not None:
            candidate = (self.root / path.lstrip("/")).resolve()
            if candidate.is_relative_to(self.root.resolve()) and candidate.is_file():
                return Served(candidate.read_bytes())
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, *, body: bool) -> None:
                served = server._lookup(self.path)
                with server._lock:
                    failing = served is not None and served.status is not None and served.status_times != 0
                    if failing and served is not None and served.status_times is not None:
                        served.status_times -= 1
                    status = served.status if failing and served is not None and served.status else self._status(
                        served)
                    server.requests.append(LoggedRequest(self.command, self.path, self.headers.get("Range"),
                                                         self.headers.get("Authorization"), status))
                if served is None or failing:
                    self._empty(status, retry_after=served.retry_after if served is not None else None)
                    return
                if served.redirect_to is not None:
                    self.send_response(status)
                    self.send_header("Location", served.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data, start = served.data, self._start(served)
                if start is not None and start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                part = data[start or 0:]
                self.send_response(status)
                if start is not None:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                if served.send_length:
                    self.send_header("Content-Length", str(len(part)))
                if not served.send_length or served.cut_after is not None or served.stall:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if not body:
                    return
                if served.stall:
                    self.wfile.flush()
                    server._closing.wait()
                    return
                self.wfile.write(part if served.cut_after is None else part[:served.cut_after])

            def _status(self, served: Served | None) -> int:
                if served is None:
                    return 404
                if served.redirect_to is not None:
                    return 302
                start = self._start(served)
                if start is None:
                    return 200
                return 416 if start >= len(served.data) else 206

            def _start(self, served: Served) -> int | None:
                """The first byte asked for, when the request has a range this server honours."""
                match = _RANGE.fullmatch(self.headers.get("Range") or "")
                return None if match is None or served.ignore_range else int(match[1])

            def _empty(self, status: int, *, retry_after: str | None = None) -> None:
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler
