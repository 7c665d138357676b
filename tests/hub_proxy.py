"""Test helper: an HTTP proxy on loopback in front of the Hub server that can hold a file back.

``HoldingProxy(upstream, hold=("train-00002",), until=condition)`` forwards every request to ``upstream``; a request
whose path contains one of ``hold`` waits until ``until()`` is true (checked whenever :meth:`check` is called, and
at least every ``CHECK_SECONDS``), and is answered 503 if ``deadline`` seconds pass first. It records every path
asked for, in order, with what ``until()`` was when it came (``requests``).

A sync that downloads every file before it converts asks for the held file before any row is converted, so it
waits the whole deadline and fails; a streaming sync converts the first file meanwhile, which releases it.
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from types import TracebackType

CHECK_SECONDS = 0.05
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
               "proxy-authenticate", "host", "content-length"}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the client behind the proxy follows redirects itself, through the proxy


class HoldingProxy:
    def __init__(self, upstream: str, *, hold: Sequence[str], until: Callable[[], bool], deadline: float) -> None:
        self.upstream, self.hold, self.until, self.deadline = upstream.rstrip("/"), tuple(hold), until, deadline
        self.requests: list[tuple[str, bool]] = []
        self.timed_out: list[str] = []
        self._changed = threading.Condition()
        self._opener = urllib.request.build_opener(_NoRedirect)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._forward(self, "GET")

            def do_HEAD(self) -> None:
                proxy._forward(self, "HEAD")

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HoldingProxy:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def check(self) -> None:
        """Re-check ``until`` now (a held request is also re-checked every ``CHECK_SECONDS``)."""
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, condition: Callable[[], bool], timeout: float = 60.0) -> None:
        """Wait until ``condition`` holds, checked as each request arrives."""
        ends = time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = ends - time.monotonic()
                assert left > 0, f"not within {timeout} s; requests: {self.requests}"
                self._changed.wait(left)

    def _wait(self, path: str) -> bool:
        ends = time.monotonic() + self.deadline
        with self._changed:
            while not self.until():
                left = ends - time.monotonic()
                if left <= 0:
                    self.timed_out.append(path)
                    return False
                self._changed.wait(min(left, CHECK_SECONDS))
        return True

    def _forward(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        path = handler.path
        with self._changed:
            self.requests.append((path, self.until()))
            self._changed.notify_all()
        if any(h in path for h in self.hold) and not self._wait(path):
            handler.send_response(503)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_HEADERS}
        request = urllib.request.Request(self.upstream + path, method=method, headers=headers)
        try:
            response = self._opener.open(request, timeout=60)
        except urllib.error.HTTPError as e:
            response = e
        body = response.read() if method == "GET" else b""
        handler.send_response(response.status)
        for key, value in response.headers.items():
            if key.lower() not in HOP_HEADERS:
                handler.send_header(key, value.replace(self.upstream, self.endpoint))
        handler.send_header("Content-Length", str(len(body) if method == "GET" else
                                                  response.headers.get("Content-Length", "0")))
        handler.end_headers()
        if method == "GET":
            handler.wfile.write(body)
