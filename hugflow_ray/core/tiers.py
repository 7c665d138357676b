"""Which catalog entries a tier brings in under a storage budget, pure: decided from sizes, licence verdicts and
what is on disk, so ``catalog plan`` shows exactly what ``catalog apply`` will do.

What is on disk already occupies it: every present copy (of this tier or not, a PR's dataset or a catalog entry)
is counted first. The entries still to bring in are then taken highest priority first; one that does not fit
what is left is skipped and the next, smaller one may still fit (a greedy fill in priority order, as the issue's
seed did by hand).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hugflow_ray.core.catalog import CatalogEntry
from hugflow_ray.utils.humanize import gigabytes


class Presence(StrEnum):
    """What the disk holds of an entry."""

    ABSENT = "absent"
    PARTIAL = "partial"  # a sync started (syncing, failed or damaged): it resumes
    COMPLETE = "complete"
    OUTDATED = "outdated"  # a copy of another version of the entry's source: made again from the new one


class Decision(StrEnum):
    """What a plan does with an entry."""

    BRING_IN = "bring in"
    RESUME = "resume"
    PRESENT = "already present"
    OVER_BUDGET = "over budget"
    LICENCE = "licence refused"
    UNAVAILABLE = "source unavailable"

    @property
    def included(self) -> bool:
        """Whether the entry is (or will be) on disk after the plan is applied."""
        return self in (Decision.BRING_IN, Decision.RESUME, Decision.PRESENT)


@dataclass(frozen=True)
class Candidate:
    """An entry as the planner sees it.

    Attributes:
        dataset_name: its directory under ``STORAGE_ROOT``.
        expected_bytes: the catalog's expected size on disk.
        disk_bytes: what its directory holds now (0 when absent).
        presence: absent, partial or complete.
        licence_problem: why the licence policy refuses it, or None when it may come in.
        source_problem: why its source cannot be read now (the Hub does not answer for it...), or None.
        transient_bytes: what its sync holds besides the copy while it runs (its source's files at the peak),
            given back when it ends.
    """

    entry: CatalogEntry
    dataset_name: str
    expected_bytes: int
    disk_bytes: int
    presence: Presence
    licence_problem: str | None = None
    source_problem: str | None = None
    transient_bytes: int = 0

    @property
    def still_needed_bytes(self) -> int:
        """What bringing the entry in (or finishing it, or making it again) adds to what its directory holds."""
        held = self.disk_bytes if self.presence in (Presence.PARTIAL, Presence.OUTDATED) else 0
        return self.needed_bytes - held

    @property
    def needed_bytes(self) -> int:
        """What the entry occupies once complete: the expected size, or what it already holds when that is more."""
        return self.disk_bytes if self.presence is Presence.COMPLETE else max(self.expected_bytes, self.disk_bytes)


@dataclass(frozen=True)
class PlannedEntry:
    """One line of a plan."""

    candidate: Candidate
    decision: Decision
    reason: str
    running_bytes: int  # the budget used once this entry and every included one above it are in

    @property
    def entry(self) -> CatalogEntry:
        return self.candidate.entry


@dataclass(frozen=True)
class TierPlan:
    """What a tier brings in under the budget, in priority order.

    Attributes:
        other_bytes: what the storage root holds outside this tier's entries (counted against the budget).
    """

    tier: str
    budget_bytes: int
    other_bytes: int
    entries: tuple[PlannedEntry, ...]

    @property
    def total_bytes(self) -> int:
        """The budget used once the plan is applied."""
        return self.entries[-1].running_bytes if self.entries else self.other_bytes

    @property
    def to_sync(self) -> list[PlannedEntry]:
        """The entries apply syncs (new or resumed), highest priority first."""
        return [p for p in self.entries if p.decision in (Decision.BRING_IN, Decision.RESUME)]

    @property
    def left_out(self) -> list[PlannedEntry]:
        return [p for p in self.entries if not p.decision.included]


# The decision on an entry that fits the budget, by what the disk holds of it.
_ADMITTED = {
    Presence.ABSENT: (Decision.BRING_IN, "fits the budget"),
    Presence.PARTIAL: (Decision.RESUME, "started before: resumes from its ledger"),
    Presence.OUTDATED: (Decision.BRING_IN, "its source changed since the copy was made: made again from the new one"),
}


def plan_tier(candidates: list[Candidate], *, tier: str, budget_bytes: int, other_bytes: int) -> TierPlan:
    """Decide each entry of a tier (``candidates`` highest priority first): present, resumed, brought in, or left
    out with its reason; the included entries never add up to more than ``budget_bytes``.

    What is on disk counts first, as it is (a partial copy with what it holds so far). An entry to resume or bring
    in then needs what it still lacks: one that does not fit is left out (a partial copy keeps what it holds, and
    is not resumed), and the next, smaller one may still fit.
    """
    on_disk = [c for c in candidates if c.presence is not Presence.ABSENT]
    used = other_bytes + sum(c.disk_bytes for c in on_disk)
    decisions: dict[str, tuple[Decision, str]] = {}
    for c in candidates:
        more = c.still_needed_bytes
        if c.licence_problem is not None:
            decisions[c.entry.name] = (Decision.LICENCE, c.licence_problem)
        elif c.source_problem is not None:
            decisions[c.entry.name] = (Decision.UNAVAILABLE, c.source_problem)
        elif c.presence is Presence.COMPLETE:
            decisions[c.entry.name] = (Decision.PRESENT, "complete on disk")
        elif used + more + c.transient_bytes <= budget_bytes:  # entries sync one at a time: one source at a time
            used += more
            decisions[c.entry.name] = _ADMITTED[c.presence]
        else:
            left, still = gigabytes(max(0, budget_bytes - used)), gigabytes(more)
            source = f" (and {gigabytes(c.transient_bytes)} of source while it syncs)" if c.transient_bytes else ""
            decisions[c.entry.name] = (Decision.OVER_BUDGET, f"needs {still} more to finish{source}, {left} left; "
                                       "what it holds is kept" if c.presence is not Presence.ABSENT else
                                       f"needs {gigabytes(c.needed_bytes)}{source}, {left} left")
    # on disk and left as it is (refused, unavailable, or partial over the budget): what it holds now
    running = other_bytes + sum(c.disk_bytes for c in on_disk if not decisions[c.entry.name][0].included)
    planned = []
    for c in candidates:
        decision, reason = decisions[c.entry.name]
        if decision.included:
            running += c.needed_bytes
        planned.append(PlannedEntry(c, decision, reason, running))
    return TierPlan(tier=tier, budget_bytes=budget_bytes, other_bytes=other_bytes, entries=tuple(planned))
