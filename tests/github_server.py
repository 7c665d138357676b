"""A stateful fake of the GitHub REST API on loopback, answering what PyGithub asks for one repository.

Pull requests, their changed files and file contents come from a **real git repository** (``git diff`` and
``git show`` between real base and head commits); comments, labels and merges are kept in memory. Faults
(5xx, rate limits) can be queued for matching requests; every request body is recorded for the canary checks.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BOT = {"login": "hugflow-bot", "id": 41, "type": "Bot"}


@dataclass
class Pull:
    number: int
    head_sha: str
    base_sha: str
    head_repo: str
    labels: list[str] = field(default_factory=list)
    merged: bool = False
    merge_sha: str | None = None
    auto_merge: dict[str, str] | None = None  # what enablePullRequestAutoMerge set: {"method", "head"}
    head_ref: str | None = None  # the branch, for a pull request opened through the API (it follows the branch)
    title: str = ""
    body: str = ""


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    headers: dict[str, str]
    times: int


class FakeGitHub:
    """``with FakeGitHub(git_dir, "acme/datasets") as gh:`` then ``gh.api_url`` for PyGithub's base_url."""

    def __init__(self, git_dir: Path, repository: str) -> None:
        self.git_dir, self.repository = git_dir, repository
        self.pulls: dict[int, Pull] = {}
        self.comments: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str]] = []  # (method, path, body) of every request
        self.times: list[float] = []  # when each of them came (time.time()), for timelines
        self._faults: list[Fault] = []
        self.allow_auto_merge = False  # the repository setting "Allow auto-merge"
        self.required_check_running = False  # a required status check (this job) is pending: direct merges refused
        self._next_id = 1000
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---- set-up and inspection ----

    def open_pull(self, number: int, *, head_sha: str, base_sha: str, head_repo: str | None = None,
                  labels: list[str] | None = None) -> Pull:
        known = self.pulls.get(number)  # one opened through the API keeps its branch, title and body
        pull = Pull(number, head_sha, base_sha, head_repo or self.repository, list(labels or []),
                    head_ref=known.head_ref if known else None, title=known.title if known else "",
                    body=known.body if known else "")
        self.pulls[number] = pull
        return pull

    def fail(self, method: str, path_regex: str, status: int, *, times: int = 1,
             headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` matching requests with ``status`` (and ``headers``) instead."""
        self._faults.append(Fault(method, re.compile(path_regex), status, headers or {}, times))

    def comments_on(self, number: int) -> list[str]:
        return [c["body"] for c in self.comments.values() if c["issue"] == number]

    def add_foreign_comment(self, number: int, body: str, login: str = "someone") -> None:
        self._comment(number, body, {"login": login, "id": 7, "type": "User"})

    def bodies(self) -> list[str]:
        """Everything clients sent (request bodies), for canary checks."""
        return [body for _, _, body in self.requests]

    # ---- the API ----

    def _git(self, *args: str) -> bytes:
        return subprocess.run(["git", "-C", str(self.git_dir), *args], check=True, capture_output=True).stdout

    def _comment(self, number: int, body: str, user: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        comment = {"id": self._next_id, "issue": number, "body": body, "user": user,
                   "url": f"{self.api_url}/repos/{self.repository}/issues/comments/{self._next_id}"}
        self.comments[self._next_id] = comment
        return comment

    def _pull_json(self, pull: Pull) -> dict[str, Any]:
        base = f"{self.api_url}/repos/{self.repository}"

        def side(sha: str, repo: str, ref: str = "branch") -> dict[str, Any]:
            return {"sha": sha, "ref": ref, "repo": {"full_name": repo, "name": repo.split("/")[1]}}

        return {
            "number": pull.number, "state": "closed" if pull.merged else "open", "merged": pull.merged,
            "url": f"{base}/pulls/{pull.number}", "html_url": f"https://github.test/{self.repository}/pull/{pull.number}",
            "issue_url": f"{base}/issues/{pull.number}",
            "head": side(pull.head_sha, pull.head_repo, pull.head_ref or "branch"),
            "base": side(pull.base_sha, self.repository, "main"), "title": pull.title, "body": pull.body,
            "labels": [{"name": name} for name in pull.labels], "user": {"login": "author", "type": "User"},
            "node_id": f"PR_node{pull.number}",
        }

    def _files(self, pull: Pull) -> list[dict[str, Any]]:
        statuses = {"A": "added", "M": "modified", "D": "removed", "R": "renamed", "C": "copied", "T": "changed"}
        out = self._git("diff", "--name-status", "-M", pull.base_sha, pull.head_sha).decode()
        files = []
        for line in out.splitlines():
            parts = line.split("\t")
            entry = {"filename": parts[-1], "status": statuses[parts[0][0]]}
            if parts[0][0] == "R":
                entry["previous_filename"] = parts[1]
            files.append(entry)
        return files

    def _branches(self, method: str, rest: str, body: dict[str, Any], head: str) -> tuple[int, Any] | None:
        """Branches (git refs) and the pull requests opened from them through the API; None: not such a call."""
        if (m := re.fullmatch(r"/git/refs?/heads/(.+)", rest)) and method in ("GET", "PATCH"):
            branch = urllib.parse.unquote(m.group(1))
            if method == "PATCH":
                self._git("update-ref", f"refs/heads/{branch}", body["sha"])
                self._follow(branch)
            try:
                sha = self._git("rev-parse", "--verify", f"refs/heads/{branch}").decode().strip()
            except subprocess.CalledProcessError:
                return 404, {"message": "Not Found"}
            return 200, self._ref_json(f"refs/heads/{branch}", sha)
        if rest == "/git/refs" and method == "POST":
            if self._git("for-each-ref", body["ref"]).strip():
                return 422, {"message": "Reference already exists"}
            self._git("update-ref", body["ref"], body["sha"])
            return 201, self._ref_json(body["ref"], body["sha"])
        if rest == "/pulls" and method == "GET":
            return 200, [self._pull_json(p) for p in self.pulls.values() if p.head_ref is not None and not p.merged
                         and head in ("", f"{self.repository.split('/')[0]}:{p.head_ref}")]
        if rest == "/pulls" and method == "POST":
            number = max([0, *self.pulls]) + 1
            head = self._git("rev-parse", f"refs/heads/{body['head']}").decode().strip()
            base = self._git("rev-parse", f"refs/heads/{body['base']}").decode().strip()
            self.pulls[number] = Pull(number, head, base, self.repository, head_ref=body["head"],
                                      title=body["title"], body=body.get("body") or "")
            return 201, self._pull_json(self.pulls[number])
        if (m := re.fullmatch(r"/pulls/(\d+)", rest)) and method == "PATCH":
            pull = self.pulls[int(m.group(1))]
            pull.title, pull.body = body.get("title", pull.title), body.get("body", pull.body)
            return 200, self._pull_json(pull)
        return None

    def _ref_json(self, ref: str, sha: str) -> dict[str, Any]:
        return {"ref": ref, "url": f"{self.api_url}/repos/{self.repository}/git/{ref}",
                "object": {"sha": sha, "type": "commit"}}

    def _put_file(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """A commit on ``body["branch"]`` that writes one file (the contents API), made with git's plumbing."""
        branch = body["branch"]
        parent = self._git("rev-parse", f"refs/heads/{branch}").decode().strip()
        try:
            current = self._git("rev-parse", f"{parent}:{path}").decode().strip()
        except subprocess.CalledProcessError:
            current = None
        if body.get("sha") != current:
            return 409, {"message": f"{path} does not match {body.get('sha')}"}
        data = base64.b64decode(body["content"])
        blob = subprocess.run(["git", "-C", str(self.git_dir), "hash-object", "-w", "--stdin"], input=data,
                              check=True, capture_output=True).stdout.decode().strip()
        index = {**os.environ, "GIT_INDEX_FILE": str(self.git_dir / ".git" / f"index-{branch.replace('/', '-')}")}

        def staged(*args: str) -> str:  # the branch's own index: the work tree and HEAD are never touched
            return subprocess.run(["git", "-C", str(self.git_dir), *args], check=True, capture_output=True,
                                  env=index).stdout.decode().strip()

        staged("read-tree", parent)
        staged("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
        tree = staged("write-tree")
        commit = self._git("commit-tree", tree, "-p", parent, "-m", body["message"]).decode().strip()
        self._git("update-ref", f"refs/heads/{branch}", commit)
        self._follow(branch)
        return 200, {"content": {"path": path, "sha": blob, "name": path.rsplit("/", 1)[-1]},
                     "commit": {"sha": commit}}

    def _follow(self, branch: str) -> None:
        """An open pull request from ``branch`` shows its new head."""
        head = self._git("rev-parse", f"refs/heads/{branch}").decode().strip()
        for pull in self.pulls.values():
            if pull.head_ref == branch and not pull.merged:
                pull.head_sha = head

    def _graphql(self, body: dict[str, Any]) -> tuple[int, Any]:
        """GitHub's GraphQL endpoint, for the one mutation the sync uses: enablePullRequestAutoMerge."""
        if "enablePullRequestAutoMerge" not in body.get("query", ""):
            return 200, {"errors": [{"type": "NOT_SUPPORTED", "message": "only enablePullRequestAutoMerge"}]}
        variables = body["variables"]["input"]
        pull = next((p for p in self.pulls.values() if f"PR_node{p.number}" == variables["pullRequestId"]), None)
        if pull is None:
            return 200, {"errors": [{"type": "NOT_FOUND", "message": "Could not resolve to a PullRequest"}]}
        if not self.allow_auto_merge:
            return 200, {"errors": [{"type": "UNPROCESSABLE",
                                     "message": "Auto merge is not allowed for this repository"}]}
        if variables.get("expectedHeadOid") not in (None, pull.head_sha):
            return 200, {"errors": [{"type": "UNPROCESSABLE", "message": "Head sha didn't match expected head sha"}]}
        pull.auto_merge = {"method": variables.get("mergeMethod", "MERGE"), "head": variables.get("expectedHeadOid")}
        return 200, {"data": {"enablePullRequestAutoMerge": {"actor": BOT, "clientMutationId": None}}}

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any]) -> tuple[int, Any]:
        repo = f"/repos/{self.repository}"
        if method == "GET" and path == "/user":
            return 200, BOT
        if method == "POST" and path == "/graphql":
            return self._graphql(body)
        if not path.startswith(repo):
            return 404, {"message": "Not Found"}
        rest = path[len(repo):]
        if rest == "" and method == "GET":
            return 200, {"full_name": self.repository, "name": self.repository.split("/")[1],
                         "url": f"{self.api_url}{repo}", "default_branch": "main"}
        if (branches := self._branches(method, rest, body, query.get("head", [""])[0])) is not None:
            return branches
        if m := re.fullmatch(r"/pulls/(\d+)(/files|/merge)?", rest):
            pull = self.pulls.get(int(m.group(1)))
            if pull is None:
                return 404, {"message": "Not Found"}
            if m.group(2) is None and method == "GET":
                return 200, self._pull_json(pull)
            if m.group(2) == "/files" and method == "GET":
                return 200, self._files(pull)
            if m.group(2) == "/merge" and method == "PUT":
                if self.required_check_running:
                    return 405, {"message": 'Required status check "dataset-sync / sync" is in progress.'}
                if body.get("sha") != pull.head_sha:
                    return 409, {"message": "Head branch was modified. Review and try the merge again."}
                pull.merged, pull.merge_sha = True, pull.head_sha
                return 200, {"merged": True, "sha": pull.head_sha, "message": "Pull Request successfully merged"}
        if (m := re.fullmatch(r"/contents/(.+)", rest)) and method == "GET":
            ref = query.get("ref", ["HEAD"])[0]
            path = urllib.parse.unquote(m.group(1))
            try:
                data = self._git("show", f"{ref}:{path}")
                blob = self._git("rev-parse", f"{ref}:{path}").decode().strip()
            except subprocess.CalledProcessError:
                return 404, {"message": "Not Found"}
            name = m.group(1).rsplit("/", 1)[-1]
            return 200, {"type": "file", "encoding": "base64", "content": base64.b64encode(data).decode(),
                         "path": m.group(1), "name": name, "size": len(data), "sha": blob}
        if (m := re.fullmatch(r"/contents/(.+)", rest)) and method == "PUT":
            return self._put_file(urllib.parse.unquote(m.group(1)), body)
        if m := re.fullmatch(r"/issues/(\d+)/comments", rest):
            number = int(m.group(1))
            if method == "GET":
                return 200, [c for c in self.comments.values() if c["issue"] == number]
            if method == "POST":
                return 201, self._comment(number, body["body"], BOT)
        if (m := re.fullmatch(r"/issues/comments/(\d+)", rest)) and method == "PATCH":
            comment = self.comments.get(int(m.group(1)))
            if comment is None:
                return 404, {"message": "Not Found"}
            if comment["user"]["login"] != BOT["login"]:
                return 403, {"message": "Must have admin rights to Repository."}
            comment["body"] = body["body"]
            return 200, comment
        if (m := re.fullmatch(r"/issues/(\d+)/labels/(.+)", rest)) and method == "DELETE":
            pull = self.pulls[int(m.group(1))]
            name = urllib.parse.unquote(m.group(2))
            if name not in pull.labels:
                return 404, {"message": "Label does not exist"}
            pull.labels.remove(name)
            return 200, [{"name": label} for label in pull.labels]
        return 404, {"message": "Not Found"}

    def _fault_for(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.times > 0 and fault.method == method and fault.path.search(path):
                fault.times -= 1
                return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                with fake._lock:
                    fake.requests.append((self.command, url.path, raw))
                    fake.times.append(time.time())
                    fault = fake._fault_for(self.command, url.path)
                    if fault is not None:
                        message = _FAULT_MESSAGES.get(fault.status, "Server Error")
                        status, payload, headers = fault.status, {"message": message}, fault.headers
                    else:
                        status, payload = fake._route(self.command, url.path, urllib.parse.parse_qs(url.query),
                                                      json.loads(raw) if raw else {})
                        headers = {}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        return Handler


_FAULT_MESSAGES = {403: "API rate limit exceeded for installation.", 429: "Too Many Requests", 502: "Bad Gateway"}


def rate_limit_headers(reset_in: float = 0.0) -> dict[str, str]:
    """Headers of GitHub's primary rate-limit answer (403), resetting ``reset_in`` seconds from now."""
    return {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time() + reset_in))}


class SlackReceiver:
    """Loopback Slack: an incoming-webhook path and the Web API's ``chat.postMessage``; records every body."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.messages: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                receiver.bodies.append(raw)
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    payload = json.loads(raw)
                else:
                    payload = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
                receiver.messages.append(payload.get("text", ""))
                is_api = self.path.endswith("/chat.postMessage")
                data = json.dumps({"ok": True, "channel": payload.get("channel"), "ts": "1.0"}).encode() \
                    if is_api else b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "application/json" if is_api else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SlackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"
