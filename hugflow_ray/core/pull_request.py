"""What the pull-request workflow knows about a PR, as plain records: its facts and the files it changes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChangedFile:
    """One file a pull request changes: its path, GitHub's status, and the old path of a rename."""

    path: str
    status: str  # added | modified | removed | renamed | copied | changed | unchanged
    previous_path: str | None = None


@dataclass(frozen=True)
class PullFacts:
    """What the sync needs to know about a pull request, fresh from the API."""

    number: int
    head_sha: str
    base_sha: str
    head_repo: str | None  # None when the fork was deleted
    base_repo: str
    labels: tuple[str, ...]
    state: str
    merged: bool

    @property
    def from_fork(self) -> bool:
        return self.head_repo != self.base_repo
