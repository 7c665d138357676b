"""Drift: the copies of the repository's Hub requests whose source moved on the Hub since they were made (a new
commit at their revision), or whose dataset card now states another licence; and the pull requests that bring them
up to date.

A drifted request gets one pull request (branch ``hugflow/drift/<copy>``) whose only change is a note on its request
file's first line, a YAML comment that says what moved (``# hugflow drift: org/x@main moved from <old> to <new> on
the Hub``): the request itself is unchanged, so the PR flow syncs it as any request, which updates the copy
incrementally, and merging it records what was brought in. A later drift edits the same pull request while it is
open.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from hugflow_ray.adapters.github import Proposal, ProposalClient
from hugflow_ray.adapters.hub import Hub
from hugflow_ray.catalog.reconcile import requests_of
from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.copies.status import read_status_or_none
from hugflow_ray.core.licences import LicenceVerdict, judge, normalise
from hugflow_ray.core.naming import dataset_dir_name
from hugflow_ray.core.request import AddRequest, HubRef
from hugflow_ray.errors import HubError
from hugflow_ray.settings import Settings


@dataclass(frozen=True)
class Drift:
    """One Hub request's copy against the Hub now.

    Attributes:
        copy_sha: the commit the copy was made from.
        hub_sha: the commit the request's revision resolves to now (None: the Hub did not say; see ``error``).
        licence_before: the licence the card stated when the copy was made; ``licence_now``: what it states now.
        verdict: the licence policy's verdict on the licence now (with the request's override).
    """

    request: Path
    dataset_name: str
    hf_id: str
    revision: str
    copy_sha: str | None
    hub_sha: str | None = None
    licence_before: str | None = None
    licence_now: str | None = None
    verdict: LicenceVerdict | None = None
    error: str | None = None

    @property
    def moved(self) -> bool:
        return self.hub_sha is not None and self.hub_sha != self.copy_sha

    @property
    def licence_changed(self) -> bool:
        return self.error is None and _spelled(self.licence_before) != _spelled(self.licence_now)

    @property
    def drifted(self) -> bool:
        return self.moved or self.licence_changed


def _spelled(licence: str | None) -> str | None:
    return normalise(licence) if licence and licence.strip() else None


def drift(settings: Settings, *, requests_dir: Path = Path("requests")) -> list[Drift]:
    """Every add request for a Hub dataset under ``requests_dir/add`` whose copy is on this machine, against the Hub
    now (a request without a copy is reconcile's to bring in, not drift). A request the Hub cannot answer for is
    listed with its error; the others go on.

    Raises:
        RequestError: a request file is invalid (file, line, field).
    """
    hub = Hub.from_settings(settings)
    layout = StoreLayout.of(settings)
    found = []
    for path, request in requests_of(requests_dir / "add", AddRequest):
        ref = request.dataset
        if not isinstance(ref, HubRef):
            continue
        name = dataset_dir_name(ref)
        status = read_status_or_none(layout.copy(name).root)  # a damaged one: None, with a warning
        if status is None:
            continue
        copy = Drift(path, name, ref.hf_id, ref.revision, status.identity.sha, licence_before=status.identity.license)
        try:
            snapshot = hub.snapshot(ref.hf_id, ref.revision)
        except HubError as e:
            found.append(replace(copy, error=str(e)))
            continue
        verdict = judge(snapshot.license, allowed=settings.licence_policy, override=request.licence_override)
        found.append(replace(copy, hub_sha=snapshot.sha, licence_now=snapshot.license, verdict=verdict))
    return found


NOTE = "# hugflow drift: "  # the first line of a request file a drift pull request changes
BRANCH = "hugflow/drift/"


def with_note(text: str, note: str) -> str:
    """A request file's ``text`` with its drift note (the first line, a YAML comment) set to ``note``."""
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith(NOTE):
        lines = lines[1:]
    return f"{NOTE}{note}\n{''.join(lines)}"


def note(found: Drift) -> str:
    """What drifted, in one line."""
    said = []
    if found.moved:
        said.append(f"{found.hf_id}@{found.revision} moved from {(found.copy_sha or '?')[:12]} to "
                    f"{(found.hub_sha or '?')[:12]} on the Hub")
    if found.licence_changed:
        said.append(f"its card's licence changed from {found.licence_before or '(none)'} to "
                    f"{found.licence_now or '(none)'}")
    return "; ".join(said)


def _body(found: Drift) -> str:
    verdict = found.verdict.line() if found.verdict is not None else "(not judged)"
    rows = [
        "| | |", "|---|---|",
        f"| dataset | `{found.hf_id}` (revision `{found.revision}`) |",
        f"| copy | `{found.dataset_name}` at `{found.copy_sha}` |",
        f"| the Hub now | `{found.hub_sha}` |",
        f"| licence | {found.licence_before or '(none)'} → {found.licence_now or '(none)'}: {verdict} |",
    ]
    return "\n".join([
        f"The Hub moved past this repository's copy of `{found.hf_id}`: {note(found)}.", "", *rows, "",
        ("This pull request changes only the note on the request's first line. Its sync updates the copy: the rows "
         "of files that did not change are taken over from it, only changed and new files are converted, and the copy "
         "stays as it is until the update is complete. Merge once the sync has succeeded; close it to stay at the "
         "copy's commit. Opened by `hugflow drift --open-prs`, which keeps it current while it is open."),
    ])


def open_pull_requests(found: list[Drift], client: ProposalClient) -> list[tuple[Drift, Proposal]]:
    """Open, or bring up to date, one pull request for every drifted request (those the Hub answered for).

    Raises:
        GitHubError: GitHub refused or did not answer (the pull requests opened before it stay).
    """
    proposed = []
    for item in found:
        if item.error is not None or not item.drifted:
            continue
        content = with_note(item.request.read_text(encoding="utf-8"), note(item)).encode()
        proposal = client.propose(
            f"{BRANCH}{item.dataset_name}", f"requests/add/{item.request.name}", content,
            title=f"Update {item.hf_id} ({item.revision}) to {(item.hub_sha or item.copy_sha or '?')[:12]}",
            body=_body(item), message=f"{item.request.name}: {note(item)}")
        proposed.append((item, proposal))
    return proposed
