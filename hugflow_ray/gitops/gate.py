"""Which pull requests may sync what (the security model in docs/DESIGN.md), pure.

No I/O here: :mod:`hugflow_ray.gitops.control` feeds in the event, the PR's facts and its changed files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from hugflow_ray.core.pull_request import ChangedFile, PullFacts
from hugflow_ray.core.request import RequestKind

REQUEST_DIRS = {RequestKind.ADD: "requests/add", RequestKind.REMOVE: "requests/remove"}
REQUEST_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class EventFacts:
    """What the Actions event says: the action that fired and the commit it is about."""

    number: int
    action: str
    head_sha: str
    label: str | None = None  # the label just applied, for a ``labeled`` action


@dataclass(frozen=True)
class RequestFile:
    kind: RequestKind
    path: str


@dataclass(frozen=True)
class Gate:
    """The decision on a PR: the requests to run, or why none are run.

    Attributes:
        refusal: why the PR is not synced (None: it is).
        drop_approval: the approval label must come off (new commits since a maintainer applied it).
        ignored: changed files under ``requests/`` that are not requests to run (deleted, not YAML).
    """

    requests: tuple[RequestFile, ...] = ()
    refusal: str | None = None
    drop_approval: bool = False
    ignored: tuple[str, ...] = field(default_factory=tuple)


def gate(event: EventFacts, pull: PullFacts, changed: list[ChangedFile], approval_label: str) -> Gate:
    """Decide whether this PR is synced and which request files are run (security model: docs/DESIGN.md)."""
    if pull.state != "open":
        return Gate(refusal=f"this PR is {'merged' if pull.merged else pull.state}: nothing is synced for it.")
    outside = sorted({p for f in changed for p in (f.path, f.previous_path) if p and not _under(p, "requests")})
    if outside:
        listed = ", ".join(outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
        return Gate(refusal=f"this PR changes files outside `requests/` ({listed}). Datasets are synced only from "
                            "PRs that change nothing but request files: move the other changes to their own PR.")
    if pull.from_fork:
        approved = event.action == "labeled" and event.label == approval_label and approval_label in pull.labels
        if not approved or pull.head_sha != event.head_sha:
            again = approval_label in pull.labels
            return Gate(
                refusal=(f"this PR comes from a fork ({pull.head_repo or 'deleted'}). "
                         + ("New commits arrived after the approval, so it was withdrawn. " if again else "")
                         + f"A maintainer reviews the request files at the head commit and then applies the "
                         f"`{approval_label}` label; that commit is then synced."),
                drop_approval=again and event.action != "labeled",
            )
    requests: list[RequestFile] = []
    ignored: list[str] = []
    misplaced: list[str] = []
    for f in changed:
        kind = next((k for k, d in REQUEST_DIRS.items() if _under(f.path, d)), None)
        if f.status == "removed" or not f.path.endswith(REQUEST_SUFFIXES) or kind is None:
            ignored.append(f.path)
        elif PurePosixPath(f.path).parent != PurePosixPath(REQUEST_DIRS[kind]):
            misplaced.append(f.path)
        else:
            requests.append(RequestFile(kind, f.path))
    if misplaced:
        return Gate(refusal=f"request files go directly in `requests/add/` or `requests/remove/`, not in a "
                            f"subdirectory: {', '.join(misplaced)}. Move them.")
    removals_first = sorted(requests, key=lambda r: (r.kind is not RequestKind.REMOVE, r.path))
    return Gate(requests=tuple(removals_first), ignored=tuple(ignored))


def _under(path: str, directory: str) -> bool:
    parts = PurePosixPath(path).parts
    return parts[: len(PurePosixPath(directory).parts)] == PurePosixPath(directory).parts and ".." not in parts
