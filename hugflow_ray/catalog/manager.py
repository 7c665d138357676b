"""The dataset manager: a catalog tier brought onto this machine under a storage budget, and its status.

``plan`` decides (pure, in :mod:`hugflow_ray.core.tiers`) from the catalog, the licence policy, the Hub's cards and
what ``STORAGE_ROOT`` holds; ``apply`` carries the plan out one entry at a time, highest priority first, each
through the same pipeline as a request (ledger, resume, locks, progress, status), checking the budget against
the disk again before each entry; ``status`` reports every entry of the catalog.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from hugflow_ray.adapters.hub import Hub
from hugflow_ray.catalog import sources
from hugflow_ray.copies import kept, store
from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.copies.status import read_status, read_status_or_none
from hugflow_ray.copies.store import dataset_dir_of
from hugflow_ray.copies.verify import VerifyReport, verify
from hugflow_ray.core.catalog import GB, Catalog, CatalogEntry, DataKind, UrlSource, load_catalog
from hugflow_ray.core.licences import LicenceVerdict, check_agrees, judge
from hugflow_ray.core.naming import catalog_dir_name, dataset_dir_name, is_catalog_dir_name
from hugflow_ray.core.plan import peak_source_bytes
from hugflow_ray.core.records import DatasetState, DatasetStatus
from hugflow_ray.core.request import AddRequest, HubRef, LocalRef, Origin
from hugflow_ray.core.tiers import Candidate, Decision, PlannedEntry, Presence, TierPlan, plan_tier
from hugflow_ray.errors import CatalogError, DamagedStateError, HubError, HugflowError, RepairError, SourceError
from hugflow_ray.executors.base import Executor
from hugflow_ray.pipeline.download import window
from hugflow_ray.pipeline.progress import ProgressCallback
from hugflow_ray.pipeline.repair import RepairReport, RetryReport, repair, retry
from hugflow_ray.pipeline.sync import SyncReport, sync
from hugflow_ray.settings import Settings
from hugflow_ray.utils.humanize import gigabytes

log = logging.getLogger(__name__)

_T = TypeVar("_T")



def entry_dataset_name(entry: CatalogEntry) -> str:
    """The directory of an entry's copy: a Hub source's is the one a request for it gets (so a dataset asked for
    by both is one copy); a URL source's is named after the entry."""
    return dataset_dir_name(entry.source) if isinstance(entry.source, HubRef) else catalog_dir_name(entry.name)


def read_catalog(settings: Settings, path: Path | None = None) -> Catalog:
    """The catalog at ``path`` (default ``CATALOG_PATH``), strictly validated.

    Raises:
        CatalogError: it is missing or invalid (file, line, field, fix).
    """
    return load_catalog(path or settings.catalog_path)


def chosen_tier(catalog: Catalog, settings: Settings, tier: str | None) -> str:
    """The tier asked for (``--tier``, else ``HUGFLOW_TIER``), checked against the catalog's tiers.

    Raises:
        CatalogError: none given, or the catalog has no such tier.
    """
    name = tier or settings.hugflow_tier
    if name is None:
        raise CatalogError("no tier chosen", fix=f"Pass --tier ({', '.join(catalog.tiers)}) or set HUGFLOW_TIER.",
                           catalog_path=catalog.path)
    if name not in catalog.tiers:
        raise CatalogError(f"there is no tier {name!r}", fix=f"Use one of: {', '.join(catalog.tiers)}.",
                           catalog_path=catalog.path, field="tiers")
    return name


def presence(settings: Settings, dataset_name: str, *, pinned: str | None = None) -> tuple[Presence, int]:
    """What ``STORAGE_ROOT`` holds of a dataset copy, and its size on disk.

    Args:
        pinned: the source identity the copy must have (a URL source's sha256): a copy recorded with another is
            outdated, whatever its state.
    """
    dataset_dir = StoreLayout.of(settings).copy(dataset_name).root
    if not dataset_dir.is_dir() or dataset_dir.is_symlink():
        return Presence.ABSENT, 0
    current = read_status_or_none(dataset_dir)
    size = store.copy_size(dataset_dir, current)
    if pinned is not None and current is not None and current.identity.sha != pinned:
        return Presence.OUTDATED, size
    complete = current is not None and current.state is DatasetState.COMPLETE
    return (Presence.COMPLETE if complete else Presence.PARTIAL), size


def storage_used(settings: Settings, *, excluding: frozenset[str] = frozenset()) -> int:
    """Bytes under ``STORAGE_ROOT`` (dataset copies and downloaded sources), but for the directories named: a
    complete copy's as its status recorded them, the rest walked."""
    root = settings.storage_root
    if not root.is_dir():
        return 0
    return sum(store.copy_size(p, _status_quietly(p)) for p in root.iterdir() if p.is_dir() and not p.is_symlink()
               and p.name not in excluding)


def _status_quietly(directory: Path) -> DatasetStatus | None:
    """The status of a copy (None for a directory without one, such as the downloads, or a damaged one: walked, as
    before, without a warning for each budget check)."""
    try:
        return read_status(directory)
    except DamagedStateError:
        return None


def budget_bytes(settings: Settings) -> int:
    """``MAX_STORAGE_GB``, or else what the storage root holds plus its filesystem's free space."""
    if settings.max_storage_gb is not None:
        return round(settings.max_storage_gb * GB)
    root = settings.storage_root
    existing = next(p for p in (root, *root.resolve().parents) if p.exists())
    return storage_used(settings) + shutil.disk_usage(existing).free


def licence_verdict(entry: CatalogEntry, settings: Settings, card_licence: str | None, *, card_read: bool
                    ) -> tuple[LicenceVerdict, str | None]:
    """The policy's verdict on an entry's licence, and the problem that keeps it out (None: it may come in).

    A Hub card that states another licence than the catalog refuses the entry whatever the policy says: one of
    the two is wrong, and a person must say which.
    """
    verdict = judge(entry.licence, allowed=settings.licence_policy, override=entry.licence_override)
    if card_read and (disagreement := check_agrees(entry.licence, card_licence)):
        return verdict, f"{disagreement}; correct the catalog or check the dataset's card"
    return verdict, None if verdict.allowed else verdict.line()


@dataclass(frozen=True)
class EntryFacts:
    """What the plan learnt about an entry besides the decision."""

    verdict: LicenceVerdict
    source_bytes: int | None  # the Hub repository's files, or the URL's file
    source_problem: str | None = None
    source_peak_bytes: int | None = None  # the most of the source on disk at once while it syncs


@dataclass(frozen=True)
class CatalogPlan:
    """A tier's plan (or named entries') with what each entry's source and licence were found to be.

    Attributes:
        named: the entries asked for by name, when not a tier (``tier.tier`` is then empty).
    """

    catalog: Catalog
    tier: TierPlan
    facts: dict[str, EntryFacts]
    offline: bool
    named: tuple[str, ...] = ()


def plan(settings: Settings, *, tier: str | None = None, names: Sequence[str] = (), catalog: Catalog | None = None,
         offline: bool = False) -> CatalogPlan:
    """What ``apply`` would do for ``tier``, or for the entries ``names`` (of any tier), without doing it: either way
    under the budget (every other copy on the disk counted) and the licence policy.

    Args:
        offline: do not ask the Hub (no card licence check, no Hub file sizes).

    Raises:
        CatalogError: the catalog is invalid, the tier or a name unknown, or both a tier and names given.
    """
    catalog = catalog or read_catalog(settings)
    if names:
        entries, name = _named(catalog, tier, names), ""
    else:
        name = chosen_tier(catalog, settings, tier)
        entries = catalog.tier_entries(name)
    hub = None if offline else Hub.from_settings(settings)
    candidates: list[Candidate] = []
    facts: dict[str, EntryFacts] = {}
    for entry in entries:
        dataset = entry_dataset_name(entry)
        there, disk = presence(settings, dataset, pinned=_pin(entry))
        entry_facts, problem = _inspect(entry, settings, hub)
        facts[entry.name] = entry_facts
        candidates.append(Candidate(entry, dataset, entry.size_bytes, disk, there, licence_problem=problem,
                                    source_problem=entry_facts.source_problem,
                                    transient_bytes=entry_facts.source_peak_bytes or 0))
    other = storage_used(settings, excluding=frozenset(c.dataset_name for c in candidates))
    tier_plan = plan_tier(candidates, tier=name, budget_bytes=budget_bytes(settings), other_bytes=other)
    return CatalogPlan(catalog, tier_plan, facts, offline, tuple(e.name for e in entries) if names else ())


def _named(catalog: Catalog, tier: str | None, names: Sequence[str]) -> list[CatalogEntry]:
    """The catalog's entries ``names``, highest priority first.

    Raises:
        CatalogError: a name the catalog does not list, or a tier given as well.
    """
    if tier is not None:
        raise CatalogError("both a tier and entry names given", fix="Name entries, or pass --tier; not both.",
                           catalog_path=catalog.path)
    try:
        return catalog.named_entries(names)
    except KeyError as e:
        listed = ", ".join(entry.name for entry in catalog.entries)
        raise CatalogError(f"there is no entry {e.args[0]!r}", fix=f"Name one of: {listed}.",
                           catalog_path=catalog.path) from None


def _pin(entry: CatalogEntry) -> str | None:
    """The identity a URL source's copy is pinned to (its sha256); None for a Hub source (pinned to a commit)."""
    return entry.source.sha256 if isinstance(entry.source, UrlSource) else None


def _inspect(entry: CatalogEntry, settings: Settings, hub: Hub | None) -> tuple[EntryFacts, str | None]:
    """The entry's licence verdict and source size; a Hub source's card is read for its licence."""
    source = entry.source
    verdict, problem = licence_verdict(entry, settings, None, card_read=False)
    if isinstance(source, UrlSource):  # the download is kept until the copy is complete
        return EntryFacts(verdict, source.size, source_peak_bytes=source.size), problem
    if entry.data is DataKind.FILES:
        return EntryFacts(verdict, None, "a Hub source is synced as audio; 'data: files' is for URL sources"), problem
    if hub is None:
        return EntryFacts(verdict, None), problem
    try:
        snapshot = hub.snapshot(source.hf_id, source.revision)
        sizes = [m.get("size") for m in hub.file_metadata(snapshot).values()]
    except HubError as e:
        return EntryFacts(verdict, None, f"the Hub: {e}"), problem
    size = None if None in sizes else sum(int(s) for s in sizes if s is not None)  # mirrors may not say
    verdict, problem = licence_verdict(entry, settings, snapshot.license, card_read=True)
    peak = peak_source_bytes([None if s is None else int(s) for s in sizes],
                             window=window(settings.max_concurrent_downloads), keep=settings.keep_sources)
    return EntryFacts(verdict, size, source_peak_bytes=peak), problem


class Outcome(StrEnum):
    """What ``apply`` did with an entry."""

    SYNCED = "synced"
    PRESENT = "already present"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class EntryResult:
    """One entry's outcome in ``apply``."""

    name: str
    dataset_name: str
    outcome: Outcome
    detail: str
    report: SyncReport | None = None


@dataclass(frozen=True)
class ApplyReport:
    """What ``apply`` did, entry by entry in priority order."""

    plan: CatalogPlan
    results: list[EntryResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.outcome is not Outcome.FAILED for r in self.results)


def apply(settings: Settings, *, tier: str | None = None, names: Sequence[str] = (), catalog: Catalog | None = None,
          on_entry: Callable[[PlannedEntry], None] | None = None) -> ApplyReport:
    """Bring a tier (or the entries ``names``) onto this machine: its plan, carried out highest priority first.

    An entry is synced only if, measured on the disk just before it starts, it still fits the budget. A failing
    entry is reported and the next one goes on; complete entries are not touched.
    """
    decided = plan(settings, tier=tier, names=names, catalog=catalog)
    report = ApplyReport(decided)
    for planned in decided.tier.entries:
        if on_entry is not None and planned.decision in (Decision.BRING_IN, Decision.RESUME):
            on_entry(planned)
        report.results.append(apply_entry(settings, planned, decided, owner="catalog apply"))
    return report


def apply_entry(settings: Settings, planned: PlannedEntry, decided: CatalogPlan, *, owner: str) -> EntryResult:
    """Carry out one line of a plan: sync it if it is to be synced and, measured on the disk now, still fits."""
    entry, name = planned.entry, planned.candidate.dataset_name
    if planned.decision is Decision.PRESENT:
        return EntryResult(entry.name, name, Outcome.PRESENT, planned.reason)
    if not planned.decision.included:
        return EntryResult(entry.name, name, Outcome.SKIPPED, f"{planned.decision.value}: {planned.reason}")
    if planned.decision is Decision.BRING_IN:
        used = storage_used(settings)
        if used + planned.candidate.still_needed_bytes + planned.candidate.transient_bytes > decided.tier.budget_bytes:
            return EntryResult(entry.name, name, Outcome.SKIPPED,
                               f"over budget: {gigabytes(used)} used on the disk now")
    try:
        synced = sync_entry(settings, entry, verdict=decided.facts[entry.name].verdict, owner=owner,
                            restart=planned.candidate.presence is Presence.OUTDATED)
    except HugflowError as e:
        log.warning("%s: %s", entry.name, e)
        return EntryResult(entry.name, name, Outcome.FAILED, str(e))
    detail = f"{synced.rows_done:,} rows" + (f", {synced.row_errors} row errors" if synced.row_errors else "")
    return EntryResult(entry.name, name, Outcome.SYNCED, detail, synced)


def sync_entry(settings: Settings, entry: CatalogEntry, *, verdict: LicenceVerdict, owner: str,
               restart: bool = False) -> SyncReport:
    """Sync one entry through the pipeline: a Hub source as a request; a URL source downloaded, verified and
    extracted first, then read as a local dataset (audio) pinned to the download's identity, or kept as its files.

    Args:
        restart: the copy is of another version of the source: make it again (its old rows are never mixed in).
    """
    source = entry.source
    if isinstance(source, HubRef):
        if entry.data is DataKind.FILES:
            raise CatalogError("a Hub source is synced as audio", fix="Remove 'data: files' or use a URL source.",
                               field=f"{entry.name}.data")
        return sync(_request(entry, source), settings, owner=owner, licence=verdict)
    root = StoreLayout.of(settings).url_source(entry.name)
    try:
        if entry.data is DataKind.FILES:
            return sources.sync_files(settings, entry, catalog_dir_name(entry.name), root, licence=verdict,
                                      owner=owner)
        data = sources.fetch(entry, source, root)
    except HugflowError as e:
        if not (isinstance(e, SourceError) and e.transient):  # nothing to resume: the download is not kept
            shutil.rmtree(root, ignore_errors=True)
        raise
    synced = sync(_request(entry, _downloaded(entry, data)), settings, owner=owner, licence=verdict, restart=restart)
    if synced.state is DatasetState.COMPLETE:
        shutil.rmtree(root, ignore_errors=True)  # the copy is complete; a repair downloads the source again
    return synced


def _downloaded(entry: CatalogEntry, data: Path) -> LocalRef:
    """A URL source's downloaded data as the local dataset its copy is made from, pinned to the download."""
    assert isinstance(entry.source, UrlSource)
    return LocalRef(data, name=entry.name, origin=Origin(entry.source.url, entry.source.sha256, entry.licence))


def _request(entry: CatalogEntry, ref: HubRef | LocalRef) -> AddRequest:
    return AddRequest(dataset=ref, description=entry.description, audio_column=entry.audio_column,
                      text_column=entry.text_column, audio_column_explicit=entry.audio_column_explicit,
                      text_column_explicit=entry.text_column_explicit, licence_override=entry.licence_override)


@dataclass(frozen=True)
class EntryStatus:
    """One catalog entry as ``catalog status`` shows it."""

    name: str
    dataset_name: str
    tier: str
    priority: int
    licence: str
    state: str  # absent, or the copy's state (syncing, complete, failed, damaged)
    rows_done: int
    rows_total: int
    size_bytes: int
    expected_bytes: int

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CatalogStatus:
    """Every entry's state, totals per tier (cumulative, on disk) and the budget."""

    entries: list[EntryStatus]
    tiers: dict[str, int]  # tier -> bytes on disk of its entries (its own and the smaller tiers')
    used_bytes: int  # all of STORAGE_ROOT
    budget_bytes: int

    def to_dict(self) -> dict[str, object]:
        return {"entries": [e.to_dict() for e in self.entries], "tiers": self.tiers, "used_bytes": self.used_bytes,
                "budget_bytes": self.budget_bytes}


def status(settings: Settings, *, catalog: Catalog | None = None) -> CatalogStatus:
    """Every catalog entry's state on this machine, in catalog order."""
    catalog = catalog or read_catalog(settings)
    rows = {r.dataset_name: r for r in store.status(StoreLayout.of(settings))}
    entries: list[EntryStatus] = []
    for entry in catalog.entries:
        name = entry_dataset_name(entry)
        row = rows.get(name)
        entries.append(EntryStatus(
            name=entry.name, dataset_name=name, tier=entry.tier, priority=entry.priority, licence=entry.licence,
            state=row.state.value if row else Presence.ABSENT.value, rows_done=row.rows_done if row else 0,
            rows_total=row.rows_total if row else 0, size_bytes=row.size_bytes if row else 0,
            expected_bytes=entry.size_bytes,
        ))
    tiers = {}
    for rank, tier in enumerate(catalog.tiers):
        included = set(catalog.tiers[: rank + 1])
        tiers[tier] = sum(e.size_bytes for e in entries if e.tier in included)
    return CatalogStatus(entries, tiers, storage_used(settings), budget_bytes(settings))


def verify_copy(settings: Settings, name: str) -> VerifyReport:
    """Verify a copy: its MP3s and JSONs against its ledger, or a kept copy's files against their index.

    Raises:
        DatasetNotFoundError: no such copy. RepairError: it has no ledger or index. SyncError: it is locked.
    """
    dataset_dir = dataset_dir_of(StoreLayout.of(settings), name)
    if kept.is_kept(dataset_dir):
        return kept.verify_files(StoreLayout.of(settings), name, dataset_dir)
    return verify(StoreLayout.of(settings), name)


def repair_copy(settings: Settings, name: str, report: VerifyReport | None = None, *, catalog: Catalog | None = None,
                executor: Executor | None = None, on_progress: ProgressCallback | None = None) -> RepairReport:
    """Repair what ``report`` found (verified now when not given): a copy's bad rows re-converted, or a kept copy's
    bad files put back. A copy of a URL source needs its source again: it is downloaded (and verified) from the
    catalog entry that made the copy. ``executor`` and ``on_progress`` are the re-sync's (see
    :func:`hugflow_ray.pipeline.repair.repair`).

    Raises:
        RepairError: a catalog copy whose entry the catalog no longer lists, or a copy that cannot be re-made as it
            was (see :func:`hugflow_ray.pipeline.repair.repair`).
    """
    report = report if report is not None else verify_copy(settings, name)
    entry = _url_entry_of(settings, name, catalog)
    if entry is None:
        return repair(settings, name, report=report, executor=executor, on_progress=on_progress)
    assert isinstance(entry.source, UrlSource)
    layout = StoreLayout.of(settings)
    root = layout.url_source(entry.name)
    if kept.is_kept(layout.copy(name).root):
        touched = kept.repair_files(layout, name, report, lambda: sources.fetch(entry, entry.source, root))
        shutil.rmtree(root, ignore_errors=True)  # the source goes once the copy is whole again
        return RepairReport(dataset_name=name, rows_dropped=[f.row_id for f in [*report.missing, *report.changed]],
                            files_removed=touched, sync=None)
    return _from_source(entry, root, lambda request: repair(settings, name, report=report, request=request,
                                                             executor=executor, on_progress=on_progress))


def retry_copy(settings: Settings, name: str, *, code: str | None = None, catalog: Catalog | None = None,
               executor: Executor | None = None, on_progress: ProgressCallback | None = None) -> RetryReport:
    """Convert again a copy's rows recorded as row errors (see :func:`hugflow_ray.pipeline.repair.retry`). A copy of
    a URL source with row errors needs its source again: it is downloaded (and verified) from its catalog entry."""
    entry = _url_entry_of(settings, name, catalog)
    if entry is None:
        return retry(settings, name, code=code, executor=executor, on_progress=on_progress)
    if not [r for r in store.row_errors(StoreLayout.of(settings), name) if code is None or r.error_code == code]:
        return RetryReport(dataset_name=name, retried=[], still_failing={}, sync=None)  # no download for nothing
    root = StoreLayout.of(settings).url_source(entry.name)
    return _from_source(entry, root, lambda request: retry(settings, name, code=code, request=request,
                                                            executor=executor, on_progress=on_progress))


def _from_source(entry: CatalogEntry, root: Path, resync: Callable[[AddRequest], _T]) -> _T:
    """``resync`` with the request that re-makes a URL source's copy, its source downloaded into ``root`` for it
    (and deleted after)."""
    assert isinstance(entry.source, UrlSource)
    data = sources.fetch(entry, entry.source, root)
    try:
        return resync(_request(entry, _downloaded(entry, data)))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _url_entry_of(settings: Settings, name: str, catalog: Catalog | None) -> CatalogEntry | None:
    """The catalog entry with a URL source that made the copy ``name`` (None: not a URL source's copy)."""
    if not is_catalog_dir_name(name):
        return None
    try:
        catalog = catalog or read_catalog(settings)
    except CatalogError as e:
        raise RepairError(f"{name} was made from a catalog URL source, and the catalog is needed to download it "
                          f"again: {e}") from None
    entry = next((e for e in catalog.entries if entry_dataset_name(e) == name), None)
    if entry is None or not isinstance(entry.source, UrlSource):
        raise RepairError(f"{name} was made from a catalog entry that {catalog.path or 'the catalog'} no longer "
                          "lists; restore the entry to repair the copy, or remove the copy and apply the tier again")
    return entry
