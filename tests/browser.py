"""A real headless browser (Debian's ``chromium``) that opens a page as a person would, driven over the Chrome
DevTools protocol: the page's own JavaScript renders it, and the test reads the text a person would see.

Signing in to the Ray dashboard: its "Authentication Token Required" dialog posts the token to ``/api/authenticate``,
which answers with the ``ray-authentication-token`` cookie; :func:`page_text` sets that same cookie before it opens
the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

RAY_TOKEN_COOKIE = "ray-authentication-token"
START_SECONDS = 60


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found is not None, "the browser tests need Debian's chromium (.ci/run installs it)"
    return found


def page_text(url: str, *, until: Callable[[str], bool], cookies: dict[str, str] | None = None,
              seconds: float = 90) -> str:
    """The visible text of ``url`` once ``until(text)`` holds, with ``cookies`` set for its origin first; the last
    text seen when ``seconds`` pass first (the caller's assertion then says what was on the page)."""
    profile = Path(tempfile.mkdtemp(prefix="hfr-browser-"))
    browser = subprocess.Popen([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port = _debugging_port(profile, browser)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as answer:
            page = next(t for t in json.load(answer) if t["type"] == "page")
        return asyncio.run(_read(page["webSocketDebuggerUrl"], url, until, cookies or {}, seconds))
    finally:  # the browser and every process it started (renderers keep the page's connections open)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGKILL)
        browser.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)


def _debugging_port(profile: Path, browser: subprocess.Popen[bytes]) -> int:
    """The DevTools port the browser chose, from the file it writes into its profile once it listens."""
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_SECONDS
    while not (active.exists() and active.read_text().strip()):
        assert browser.poll() is None, f"chromium exited with {browser.returncode}"
        assert time.monotonic() < deadline, "chromium did not open its DevTools port"
        time.sleep(0.1)
    return int(active.read_text().split()[0])


async def _read(endpoint: str, url: str, until: Callable[[str], bool], cookies: dict[str, str],
                seconds: float) -> str:
    async with aiohttp.ClientSession() as session, session.ws_connect(endpoint, max_msg_size=0) as ws:
        ids = iter(range(1, 1_000_000))

        async def call(method: str, **params: Any) -> dict[str, Any]:
            sent = next(ids)
            await ws.send_json({"id": sent, "method": method, "params": params})
            while True:
                message = await ws.receive_json(timeout=60)
                if message.get("id") == sent:
                    assert "error" not in message, message
                    return message.get("result", {})

        for name, value in cookies.items():
            await call("Network.setCookie", name=name, value=value, url=url)
        await call("Page.navigate", url=url)
        deadline = time.monotonic() + seconds
        text = ""
        while time.monotonic() < deadline:
            result = await call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                                returnByValue=True)
            text = str(result.get("result", {}).get("value", ""))
            if until(text):
                break
            await asyncio.sleep(0.5)
        return text
