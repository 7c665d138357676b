"""Drift: the copies of the repository's Hub requests whose source moved on the Hub since they were made (a new
commit at their revision), or whose dataset card now states another licence."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

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
