"""Test helper: a real Hugging Face Hub-compatible server on loopback.

It runs `olah <https://github.com/vtuber-plan/olah>`_ (installed in the venv as
``olah-cli``) in *offline* mode with a ``mirrors-path`` directory.  Every git
repository found at ``<mirrors>/datasets/<org>/<name>`` (branch ``main``) is
served through the Hub HTTP API that ``huggingface_hub`` and ``datasets`` use:

* ``GET /api/datasets/<id>/revision/<rev>``  -> ``HfApi.dataset_info(..., revision=...)``
  (``sha``, ``cardData`` parsed from the README.md YAML front matter, ``siblings``)
* ``GET /api/datasets/<id>/tree/<rev>/<path>`` -> ``HfApi.list_repo_tree`` / ``HfFileSystem.ls``/glob
* ``GET /api/datasets/<id>/refs``            -> ``HfApi.list_repo_refs``
* ``HEAD|GET /datasets/<id>/resolve/<rev>/<file>`` -> ``hf_hub_download`` / ``snapshot_download``

Limitations of olah 0.5.4, measured while this helper was written:

* ``/api/datasets/<id>`` *without* a revision answers 401 ``RepoNotFound``: always pass
  ``revision=`` to ``HfApi.dataset_info``/``repo_info``.
* A missing repo, a missing revision, or a missing file at a *branch/tag* answer 401
  ``X-Error-Code: RepoNotFound`` -> ``RepositoryNotFoundError`` (never ``RevisionNotFoundError``).
  A missing file at a *full sha* answers 404 ``EntryNotFound`` -> ``RemoteEntryNotFoundError``.
  Consequence: ``datasets`` cannot resolve a repo that has no README.md at a branch name
  (its README probe gets 401 -> ``DatasetNotFoundError``); pass the full sha, or add a README.md.
* A well-formed but unknown 40-hex sha crashes olah (500 -> plain ``HfHubHTTPError``) and the
  kept-alive connection is then reset: the next request fails with ``httpx2.ReadError`` unless
  ``huggingface_hub.utils.close_session()`` is called.
* HTTP ``Range`` is ignored: whole-file downloads work, ``HfFileSystem.open`` + seek silently
  returns bytes from offset 0 (so ``pq.read_schema(fs.open(...))`` fails).
* Repos are never gated (``gated``/``private`` are hard-coded False). ``deny_repos`` makes
  a repo answer 401 ``RepoNotFound``, which is what the Hub answers an anonymous client for a
  private repo.
* Any git blob of 121..149 bytes is decoded as UTF-8 to sniff for a git-lfs pointer: a *binary*
  file of that size crashes the request (500). ``make_dataset_repo`` refuses such files.

Usage: the session fixture ``hub`` in tests/conftest.py; production code points the Hub client at
the server itself (``hugflow_ray.adapters.hub.Hub(endpoint=...)``).

Repos may be created before or after the server starts: olah reads the mirrors
directory on every request.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_BASE_DATE",
    "HubServer",
    "HubServerError",
    "block_non_loopback",
    "find_olah_cli",
    "make_dataset_repo",
    "render_card",
]

GIT_AUTHOR_NAME = "Hub Test"
GIT_AUTHOR_EMAIL = "hub-test@example.invalid"
#: Unix timestamp of the first commit of every repo; commit N gets ``GIT_BASE_DATE + N`` seconds.
GIT_BASE_DATE = 1_704_067_200  # 2024-01-01T00:00:00Z

LOOPBACK = "127.0.0.1"


class HubServerError(RuntimeError):
    """The olah server could not be started (message includes the log tail)."""


# --------------------------------------------------------------------------- git repos


def _git_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GIT_")  # do not inherit GIT_DIR & co from a surrounding git hook
    }
    env.update(
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME=GIT_AUTHOR_NAME,
        GIT_AUTHOR_EMAIL=GIT_AUTHOR_EMAIL,
        GIT_COMMITTER_NAME=GIT_AUTHOR_NAME,
        GIT_COMMITTER_EMAIL=GIT_AUTHOR_EMAIL,
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
    )
    return env


def _git(repo: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        env=dict(env) if env is not None else _git_env(),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def render_card(card: Mapping[str, Any], body: str = "") -> bytes:
    """README.md with ``card`` as YAML front matter (what the Hub parses into ``cardData``)."""
    front = yaml.safe_dump(dict(card), sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n{body}".encode()


def _check_olah_safe(path: str, data: bytes) -> None:
    # olah sniffs every blob of 121..149 bytes for a git-lfs pointer with .decode("utf-8").
    if 120 < len(data) < 150:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                f"{path!r} is a {len(data)}-byte binary file: olah 0.5.4 crashes (HTTP 500) on non-UTF-8 "
                "blobs of 121..149 bytes; pad or resize it"
            ) from None


def make_dataset_repo(
    mirrors_dir: Path | str,
    repo_id: str,
    files: Mapping[str, bytes | str],
    *,
    card: Mapping[str, Any] | None = None,
    card_body: str = "",
    message: str = "init",
    tag: str | None = None,
    branch: str | None = None,
    replace: bool = False,
) -> str:
    """Create (or add one commit to) the dataset git repo served as ``repo_id``; return the commit sha.

    The repo lives at ``<mirrors_dir>/datasets/<org>/<name>`` on branch ``main``.

    files:    path-in-repo -> content, written on top of the current tree.
    card:     if given, README.md is (re)written with this dict as YAML front matter
              (e.g. ``{"license": "mit", "configs": [...], "dataset_info": {...}}``).
    replace:  remove every tracked file first, so the commit's tree is exactly ``files`` (+ card).
    tag:      create/move a lightweight tag to the new commit.
    branch:   create/move a branch to the new commit (``main`` always gets the commit too).

    Commits are deterministic: fixed author/committer and date ``GIT_BASE_DATE + <commit index>``,
    so the same calls always give the same shas. An identical tree still yields a new
    (empty) commit.
    """
    org, sep, name = repo_id.partition("/")
    if not sep or not org or not name or "/" in name:
        raise ValueError(f"repo_id must be 'org/name', got {repo_id!r}")
    if "README.md" in files and card is not None:
        raise ValueError("give either card= or a README.md file, not both")

    repo = Path(mirrors_dir) / "datasets" / org / name
    env = _git_env()
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _git(repo, "init", "--quiet", "--initial-branch=main", env=env)
        n_commits = 0
    else:
        n_commits = int(_git(repo, "rev-list", "--count", "--all", env=env) or 0)
        _git(repo, "checkout", "--quiet", "main", env=env)

    if replace:
        _git(repo, "rm", "-r", "--quiet", "--ignore-unmatch", ".", env=env)

    to_write: dict[str, bytes] = {}
    for rel, data in files.items():
        to_write[rel] = data.encode() if isinstance(data, str) else bytes(data)
    if card is not None:
        to_write["README.md"] = render_card(card, card_body)
    for rel, data in to_write.items():
        if rel.startswith("/") or ".." in Path(rel).parts or rel.startswith(".git"):
            raise ValueError(f"bad path in repo: {rel!r}")
        _check_olah_safe(rel, data)
        dest = repo / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)

    _git(repo, "add", "--all", env=env)
    date = f"@{GIT_BASE_DATE + n_commits} +0000"
    env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    _git(repo, "commit", "--quiet", "--allow-empty", "--no-gpg-sign", "--no-verify", "-m", message, env=env)
    sha = _git(repo, "rev-parse", "HEAD", env=env)
    if tag is not None:
        _git(repo, "tag", "--force", tag, sha, env=env)
    if branch is not None and branch != "main":
        _git(repo, "branch", "--force", branch, sha, env=env)
    return sha


# --------------------------------------------------------------------------- audio / parquet






# --------------------------------------------------------------------------- server


def find_olah_cli() -> Path:
    """``olah-cli`` next to the running interpreter (venv bin), else on PATH."""
    exe = "olah-cli.exe" if os.name == "nt" else "olah-cli"
    candidate = Path(sys.executable).parent / exe
    if candidate.exists():
        return candidate
    found = shutil.which(exe)
    if found:
        return Path(found)
    raise HubServerError(f"olah-cli not found next to {sys.executable} nor on PATH (pip install olah)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class HubServer:
    """olah in offline mode on ``127.0.0.1:<free port>``, serving git repos under ``mirrors_dir``.

    ``with HubServer(root) as hub:`` -> ``hub.endpoint`` ("http://127.0.0.1:PORT"),
    ``hub.mirrors_dir``, ``hub.log_path``, ``hub.startup_seconds``. ``root`` defaults to a
    fresh temp dir (deleted on exit); ``mirrors_dir`` defaults to ``root / "mirrors"``.

    ``deny_repos``: ``org/name`` fnmatch patterns olah refuses (``[[accessibility.proxy]]``
    ``allow = false``); they answer 401 ``X-Error-Code: RepoNotFound`` on every route even if the
    git repo exists -- the same answer the real Hub gives an anonymous client for a *private*
    repo. olah cannot emulate a *gated* repo (403 ``GatedRepo``): its mirror metadata hard-codes
    ``private: false, gated: false``.
    """

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        mirrors_dir: Path | str | None = None,
        startup_timeout: float = 30.0,
        port: int | None = None,
        deny_repos: Sequence[str] = (),
    ) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="hub-server-")) if root is None else Path(root)
        self.mirrors_dir = Path(mirrors_dir) if mirrors_dir is not None else self.root / "mirrors"
        self.startup_timeout = startup_timeout
        self._requested_port = port
        self.deny_repos = tuple(deny_repos)
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self.config_path = self.root / "olah.toml"
        self.log_path = self.root / "olah.log"
        self._log_file: Any = None

    # -- properties
    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise HubServerError("server not started")
        return f"http://{LOOPBACK}:{self.port}"

    # -- lifecycle
    def __enter__(self) -> HubServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> HubServer:
        if self.process is not None:
            raise HubServerError("server already started")
        olah_cli = find_olah_cli()
        self.root.mkdir(parents=True, exist_ok=True)
        self.mirrors_dir.mkdir(parents=True, exist_ok=True)
        (self.mirrors_dir / "datasets").mkdir(exist_ok=True)
        attempts = 1 if self._requested_port else 3  # a free port can be stolen before olah binds it
        for attempt in range(attempts):
            self.port = self._requested_port or _free_port()
            self._write_config()
            try:
                self._spawn_and_wait(olah_cli)
                return self
            except HubServerError:
                port_in_use = "address already in use" in self.log_tail().lower()
                self._terminate()
                if not port_in_use or attempt == attempts - 1:
                    raise
        return self  # pragma: no cover

    def _write_config(self) -> None:
        netloc = f"{LOOPBACK}:{self.port}"
        self.config_path.write_text(
            "[basic]\n"
            f"host = {_toml_str(LOOPBACK)}\n"
            f"port = {self.port}\n"
            f"repos-path = {_toml_str(str(self.root / 'repos'))}\n"
            f"mirrors-path = [{_toml_str(str(self.mirrors_dir))}]\n"
            'mirror-scheme = "http"\n'
            f"mirror-netloc = {_toml_str(netloc)}\n"
            f"mirror-lfs-netloc = {_toml_str(netloc)}\n"
            "metadata-cache-ttl = 0\n"
            "\n[accessibility]\n"
            "offline = true\n"
            + "".join(
                f"\n[[accessibility.proxy]]\nrepo = {_toml_str(pattern)}\nallow = {str(allow).lower()}\n"
                for pattern, allow in [("*", True), ("*/*", True), *((p, False) for p in self.deny_repos)]
            )
        )

    def _spawn_and_wait(self, olah_cli: Path) -> None:
        env = dict(os.environ)
        env.update(
            HF_HUB_OFFLINE="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
            PYTHONUNBUFFERED="1",
        )
        self._log_file = open(self.log_path, "ab")
        started = time.monotonic()
        self.process = subprocess.Popen(
            [str(olah_cli), "-c", str(self.config_path), "--log-path", str(self.root / "logs")],
            cwd=self.root,  # olah writes relative paths (db, logs) into its cwd
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C in the test run does not hit it first
        )
        deadline = started + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise HubServerError(
                    f"olah-cli exited with code {self.process.returncode} during startup\n"
                    f"--- {self.log_path} (tail) ---\n{self.log_tail()}"
                )
            if self._answers_http():
                self.startup_seconds = time.monotonic() - started
                return
            if time.monotonic() > deadline:
                raise HubServerError(
                    f"olah-cli did not answer HTTP on {self.endpoint} within {self.startup_timeout:.0f}s\n"
                    f"--- {self.log_path} (tail) ---\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _answers_http(self) -> bool:
        # Any HTTP answer means uvicorn is serving. (olah's "/" index page answers 500 with
        # this Jinja2 version, so probe an API route; a repo that does not exist answers 401.)
        try:
            with _NO_PROXY_OPENER.open(f"{self.endpoint}/api/datasets/hub-server/probe/revision/main", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except (OSError, ValueError):
            return False

    def log_tail(self, n_bytes: int = 4000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "<no log>"
        return data[-n_bytes:].decode("utf-8", "replace")

    def _terminate(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        self._terminate()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __repr__(self) -> str:
        return f"HubServer(endpoint={self.endpoint if self.port else None!r}, mirrors_dir={str(self.mirrors_dir)!r})"


# --------------------------------------------------------------------------- client configuration


@contextlib.contextmanager
def block_non_loopback() -> Iterator[list[tuple[str, Any]]]:
    """Make DNS lookups and TCP/UDP connects to anything but loopback fail in *this* process.

    Yields the list of blocked attempts (``("dns", host)`` / ``("connect", address)``) so a test
    can assert it stayed empty: libraries swallow some network errors (``datasets`` download
    counters, dataset-viewer probes), so a raised error alone would not prove isolation.
    Unix sockets and loopback (127.0.0.0/8, ::1, localhost) are allowed.
    """
    import ipaddress

    attempts: list[tuple[str, Any]] = []
    orig_getaddrinfo = socket.getaddrinfo
    orig_connect = socket.socket.connect
    orig_connect_ex = socket.socket.connect_ex

    def is_loopback(host: Any) -> bool:
        if host is None:
            return True
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        host = str(host).strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_loopback(host):
            attempts.append(("dns", host))
            raise socket.gaierror(socket.EAI_NONAME, f"blocked by block_non_loopback: {host}")
        return orig_getaddrinfo(host, *args, **kwargs)

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
            attempts.append(("connect", address))
            raise ConnectionRefusedError(f"blocked by block_non_loopback: {address}")

    def connect(self: socket.socket, address: Any) -> Any:
        check(self, address)
        return orig_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        check(self, address)
        return orig_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    try:
        yield attempts
    finally:
        socket.getaddrinfo = orig_getaddrinfo  # type: ignore[assignment]
        socket.socket.connect = orig_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = orig_connect_ex  # type: ignore[method-assign]
