"""The GitHub adapter: one pull request, through PyGithub, with retries that never give up the data.

Reads (the PR, its changed files, a file at a commit) raise :class:`GitHubError` once the retries are spent:
without them the run cannot know what to sync. Writes that only report (comments) are the caller's to forgive.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from github import Auth, Github, GithubException
from github.IssueComment import IssueComment

from hugflow_ray.core.pull_request import ChangedFile, PullFacts
from hugflow_ray.errors import GitHubError

log = logging.getLogger(__name__)

T = TypeVar("T")

COMMENT_LIMIT = 65536  # GitHub's maximum comment body, in characters
ATTEMPTS = 5
BACKOFF_SECONDS = 2.0
MAX_WAIT_SECONDS = 300.0  # never sleep longer than this for one rate-limit reset


class RepositoryClient:
    """One repository, every call retried alike.

    Args:
        api_url: the REST API (``GITHUB_API_URL``: github.com or GitHub Enterprise Server).
        seconds_between_writes: PyGithub's pause between writes, which keeps clear of secondary rate limits.
        sleep: how to wait between attempts (tests pass a short one).
    """

    def __init__(
        self,
        *,
        api_url: str,
        token: str,
        repository: str,
        attempts: int = ATTEMPTS,
        backoff_seconds: float = BACKOFF_SECONDS,
        seconds_between_writes: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # Retries are ours (below), so that 5xx and rate limits are retried the same way for every call.
        self._github = Github(auth=Auth.Token(token), base_url=api_url, retry=None, timeout=30,
                              seconds_between_requests=None, seconds_between_writes=seconds_between_writes)
        self.repository = repository
        self._attempts, self._backoff, self._sleep = attempts, backoff_seconds, sleep
        self._repository = None

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()``, retried with back-off on 5xx, rate limits and connection errors."""
        for attempt in range(1, self._attempts + 1):
            try:
                return fn()
            except GithubException as e:
                wait = _retry_wait(e, attempt, self._backoff)
                problem = f"HTTP {e.status}: {_message(e)}"
            except (requests.ConnectionError, requests.Timeout) as e:
                wait, problem = self._backoff * 2 ** (attempt - 1), f"no connection ({type(e).__name__})"
            if wait is None or attempt == self._attempts:
                raise GitHubError(f"GitHub {what} failed ({problem})") from None
            log.warning("GitHub %s: %s; retrying in %.1f s (attempt %d of %d)", what, problem, wait, attempt,
                        self._attempts)
            self._sleep(wait)
        raise AssertionError("unreachable")

    @property
    def _repo(self):  # noqa: ANN202 - PyGithub's Repository
        if self._repository is None:
            self._repository = self._call("read repository", lambda: self._github.get_repo(self.repository))
        return self._repository


class PullRequestClient(RepositoryClient):
    """One pull request of one repository (``number``; the other arguments are :class:`RepositoryClient`'s)."""

    def __init__(self, *, number: int, **client: Any) -> None:
        super().__init__(**client)
        self.number = number
        self._pull = None
        self._comments: dict[str, IssueComment] = {}
        self._ours: list[IssueComment] | None = None  # our comments on the PR, listed once per run
        self._login: str | None = None

    def _pr(self):  # noqa: ANN202 - PyGithub's PullRequest
        if self._pull is None:
            self._pull = self._call("read pull request", lambda: self._repo.get_pull(self.number))
        return self._pull

    def facts(self) -> PullFacts:
        """The pull request as it is now."""
        pr = self._call("read pull request", lambda: self._repo.get_pull(self.number))
        self._pull = pr
        head_repo = pr.head.repo.full_name if pr.head.repo is not None else None
        return PullFacts(number=pr.number, head_sha=pr.head.sha, base_sha=pr.base.sha, head_repo=head_repo,
                         base_repo=pr.base.repo.full_name, labels=tuple(label.name for label in pr.labels),
                         state=pr.state, merged=bool(pr.merged))

    def changed_files(self) -> list[ChangedFile]:
        """Every file the pull request changes (GitHub lists up to 3000)."""
        return self._call("list changed files", lambda: [
            ChangedFile(path=f.filename, status=f.status, previous_path=f.previous_filename)
            for f in self._pr().get_files()
        ])

    def file_at(self, path: str, sha: str) -> bytes:
        """A file's bytes at a commit, read as data through the contents API (never checked out)."""
        def get() -> bytes:
            content = self._repo.get_contents(path, ref=sha)
            if isinstance(content, list) or content.type != "file":
                raise GitHubError(f"{path} at {sha[:12]} is not a file")
            return content.decoded_content

        return self._call(f"read {path} at {sha[:12]}", get)

    def upsert_comment(self, marker: str, body: str) -> None:
        """Create or edit in place the one comment carrying ``marker`` (a hidden HTML comment)."""
        body = fit_comment(f"{body}\n\n{marker}")
        comment = self._comments.get(marker) or self._find_comment(marker)
        if comment is None:
            self._comments[marker] = self._call("create comment", lambda: self._pr().create_issue_comment(body))
            self._our_comments().append(self._comments[marker])
        else:
            self._call("edit comment", lambda: comment.edit(body))
            self._comments[marker] = comment

    def edit_comment_if_present(self, marker: str, body: str) -> bool:
        """Edit the comment carrying ``marker`` when there is one (never creates one); True when it was edited."""
        comment = self._comments.get(marker) or self._find_comment(marker)
        if comment is None:
            return False
        body = fit_comment(f"{body}\n\n{marker}")
        self._call("edit comment", lambda: comment.edit(body))
        self._comments[marker] = comment
        return True

    def comment_body(self, marker: str) -> str | None:
        """The body of our comment carrying ``marker``, or None when there is none."""
        comment = self._comments.get(marker) or self._find_comment(marker)
        return comment.body if comment is not None else None

    def markers(self, pattern: re.Pattern[str]) -> list[str]:
        """Every hidden marker matching ``pattern`` in the comments this token's user (or a bot) wrote."""
        return sorted({m.group(0) for comment in self._our_comments() for m in pattern.finditer(comment.body or "")})

    def _our_comments(self) -> list[IssueComment]:
        """The comments this token's user (or a bot) wrote, listed once: the run's own are added as it makes them."""
        if self._ours is None:
            login = self._whoami()
            self._ours = [c for c in self._call("list comments", lambda: list(self._pr().get_issue_comments()))
                          if (c.user.login == login if login else c.user.type == "Bot")]
        return self._ours

    def _find_comment(self, marker: str) -> IssueComment | None:
        """Our earlier comment with ``marker`` (a re-run edits it): written by this token's user, or a bot."""
        return next((c for c in self._our_comments() if marker in (c.body or "")), None)

    def _whoami(self) -> str | None:
        """This token's login; None for an Actions token, which may not read ``/user``."""
        if self._login is None:
            try:
                self._login = self._call("read user", lambda: self._github.get_user().login)
            except GitHubError:
                self._login = ""
        return self._login or None

    def remove_label(self, name: str) -> None:
        self._call(f"remove label {name!r}", lambda: self._pr().remove_from_labels(name))

    def enable_auto_merge(self, sha: str) -> None:
        """Turn on GitHub's auto-merge: GitHub merges once the required checks pass, only while the head is ``sha``.

        Raises:
            GitHubError: GitHub refused (auto-merge not allowed in the repository, the PR already mergeable...).
        """
        self._call("enable auto-merge", lambda: self._pr().enable_automerge(merge_method="MERGE",
                                                                             expected_head_oid=sha))

    def merge(self, sha: str) -> None:
        """Merge, but only if the head is still ``sha`` (what was synced)."""
        status = self._call("merge", lambda: self._pr().merge(sha=sha, merge_method="merge"))
        if not status.merged:
            raise GitHubError(f"GitHub did not merge #{self.number}: {status.message}")


@dataclass(frozen=True)
class Proposal:
    """A pull request the tool opened or kept current: its number, its page, and what this run did to it."""

    number: int
    url: str
    action: str  # "opened", "updated" or "unchanged"


class ProposalClient(RepositoryClient):
    """The pull requests the tool opens itself: one per branch, each setting one file on the default branch."""

    def propose(self, branch: str, path: str, content: bytes, *, title: str, body: str, message: str) -> Proposal:
        """Open the pull request from ``branch`` that sets ``path`` to ``content``, or bring the open one up to date
        (the file, then the title and body); a branch left by a closed one starts again from the default branch.

        Raises:
            GitHubError: GitHub refused or did not answer, after the retries.
        """
        repo = self._repo
        base, owner = repo.default_branch, self.repository.split("/")[0]
        pulls = self._call("list pull requests", lambda: list(repo.get_pulls(state="open", head=f"{owner}:{branch}",
                                                                            base=base)))
        if pulls:
            pull = pulls[0]
            changed = self._put(path, content, branch, message)
            if not changed and (pull.title, pull.body or "") == (title, body):
                return Proposal(pull.number, pull.html_url or pull.url, "unchanged")
            self._call("edit pull request", lambda: pull.edit(title=title, body=body))
            return Proposal(pull.number, pull.html_url or pull.url, "updated")
        start = self._call(f"read branch {base}", lambda: repo.get_git_ref(f"heads/{base}")).object.sha
        if (ref := self._call(f"read branch {branch}", lambda: _or_none(lambda: repo.get_git_ref(f"heads/{branch}")))):
            self._call(f"reset branch {branch}", lambda: ref.edit(start, force=True))
        else:
            self._call(f"create branch {branch}", lambda: repo.create_git_ref(f"refs/heads/{branch}", start))
        self._put(path, content, branch, message)
        pull = self._call("open pull request", lambda: repo.create_pull(base=base, head=branch, title=title,
                                                                         body=body))
        return Proposal(pull.number, pull.html_url or pull.url, "opened")

    def _put(self, path: str, content: bytes, branch: str, message: str) -> bool:
        """Set ``path`` to ``content`` on ``branch`` (one commit); False when it already holds it."""
        current = self._call(f"read {path} on {branch}", lambda: self._repo.get_contents(path, ref=branch))
        if isinstance(current, list):
            raise GitHubError(f"{path} on {branch} is a folder")
        if current.decoded_content == content:
            return False
        self._call(f"write {path} on {branch}", lambda: self._repo.update_file(path, message, content, current.sha,
                                                                              branch=branch))
        return True


def _or_none(read: Callable[[], T]) -> T | None:
    """``read()``, or None when GitHub answers 404."""
    try:
        return read()
    except GithubException as e:
        if e.status == 404:
            return None
        raise


def fit_comment(body: str, limit: int = COMMENT_LIMIT) -> str:
    """``body`` cut under GitHub's comment limit, keeping its end (the marker) and saying it was cut."""
    if len(body) <= limit:
        return body
    note = "\n\n… (cut to fit GitHub's comment limit) …\n\n"
    tail = body[-200:]
    return body[: limit - len(note) - len(tail)] + note + tail


def _message(e: GithubException) -> str:
    data = e.data if isinstance(e.data, dict) else {}
    graphql = "; ".join(str(error.get("message")) for error in data.get("errors") or [] if isinstance(error, dict))
    return str(data.get("message") or graphql or e.message or "no message")[:300]


def _retry_wait(e: GithubException, attempt: int, backoff: float) -> float | None:
    """Seconds to wait before retrying ``e``, or None when retrying cannot help (404, 422, a plain 403)."""
    headers = {k.lower(): v for k, v in (e.headers or {}).items()}
    rate_limited = e.status == 429 or (
        e.status == 403 and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers
                             or "rate limit" in _message(e).lower())
    )
    if not (rate_limited or e.status >= 500):
        return None
    if "retry-after" in headers and headers["retry-after"].isdigit():
        return min(float(headers["retry-after"]), MAX_WAIT_SECONDS)
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset", "").isdigit():
        return min(max(float(headers["x-ratelimit-reset"]) - time.time(), 0.0) + 1.0, MAX_WAIT_SECONDS)
    return backoff * 2 ** (attempt - 1)
