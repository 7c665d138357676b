"""Reconcile: make ``STORAGE_ROOT`` hold what the repository asks for, and say what else it holds.

The desired state is every add request under ``requests/add/``, the chosen catalog tier (``--tier`` or
``HUGFLOW_TIER``), and the removals ``requests/remove/`` names. The plan brings in what is missing, resumes what
was started, removes what a removal names and is there, and lists the directories nothing asks for (unmanaged)
without touching them. Applying a plan and planning again gives an empty plan: it is what a machine runs at
start-up (``cluster/hugflow-reconcile.service``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from hugflow_ray.catalog import manager
from hugflow_ray.copies import store
from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.core.naming import dataset_dir_name
from hugflow_ray.core.request import AddRequest, RemoveRequest, load_request
from hugflow_ray.core.tiers import Decision, PlannedEntry, Presence
from hugflow_ray.errors import HugflowError
from hugflow_ray.pipeline.sync import sync
from hugflow_ray.settings import Settings

log = logging.getLogger(__name__)


class Action(StrEnum):
    """What a reconcile step does."""

    REMOVE = "remove"
    BRING_IN = "bring in"
    RESUME = "resume"


@dataclass(frozen=True)
class Step:
    """One change to the disk.

    Attributes:
        origin: what asks for it: a request file, or ``catalog:<entry>``.
    """

    action: Action
    dataset_name: str
    origin: str
    request: Path | None = None
    planned: PlannedEntry | None = None


@dataclass(frozen=True)
class ReconcilePlan:
    """The steps in the order they are carried out (removals first, to free space; then requests; then the
    catalog tier by priority), what is already in place, what the tier leaves out, and the unmanaged
    directories."""

    steps: list[Step]
    in_place: list[str]
    unmanaged: list[str]
    catalog: manager.CatalogPlan | None = None
    left_out: list[PlannedEntry] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.steps


def plan(settings: Settings, *, requests_dir: Path = Path("requests"), tier: str | None = None,
         offline: bool = False) -> ReconcilePlan:
    """Compare the desired state with ``STORAGE_ROOT``; see the module docstring.

    The catalog takes part when a tier is chosen (``tier`` or ``HUGFLOW_TIER``).

    Raises:
        RequestError: a request file is invalid. CatalogError: the catalog is invalid or the tier unknown.
    """
    removals = requests_of(requests_dir / "remove", RemoveRequest)
    removed = {dataset_dir_name(r.dataset) for _, r in removals}
    steps: list[Step] = []
    in_place: list[str] = []
    desired: set[str] = set()
    for path, request in requests_of(requests_dir / "add", AddRequest):
        name = dataset_dir_name(request.dataset)
        if name in removed or name in desired:
            continue
        desired.add(name)
        there, _ = manager.presence(settings, name)
        if there is Presence.COMPLETE:
            in_place.append(name)
        else:
            action = Action.BRING_IN if there is Presence.ABSENT else Action.RESUME
            steps.append(Step(action, name, str(path), request=path))
    catalog_plan = None
    left_out: list[PlannedEntry] = []
    if tier is not None or settings.hugflow_tier is not None:
        catalog_plan = manager.plan(settings, tier=tier, offline=offline)
        for planned in catalog_plan.tier.entries:
            name = planned.candidate.dataset_name
            if name in desired or name in removed:
                continue
            desired.add(name)
            if planned.decision is Decision.PRESENT:
                in_place.append(name)
            elif planned.decision in (Decision.BRING_IN, Decision.RESUME):
                action = Action.BRING_IN if planned.decision is Decision.BRING_IN else Action.RESUME
                steps.append(Step(action, name, f"catalog:{planned.entry.name}", planned=planned))
            else:
                left_out.append(planned)
    removals_steps = [Step(Action.REMOVE, dataset_dir_name(r.dataset), str(p), request=p) for p, r in removals
                      if StoreLayout.of(settings).copy(dataset_dir_name(r.dataset)).root.exists()]
    on_disk = sorted(p.name for p in settings.storage_root.iterdir()
                     if p.is_dir() and not p.name.startswith(".")) if settings.storage_root.is_dir() else []
    unmanaged = [name for name in on_disk if name not in desired and name not in removed]
    return ReconcilePlan(removals_steps + steps, in_place, unmanaged, catalog_plan, left_out)


def requests_of(directory: Path, kind: type[AddRequest | RemoveRequest]) -> list[tuple[Path, AddRequest]]:
    """The requests of ``kind`` in ``directory`` (its .yaml and .yml files, in name order), each with its path."""
    found = []
    for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
        request = load_request(path)
        if isinstance(request, kind):
            found.append((path, request))
    return found  # type: ignore[return-value]


@dataclass(frozen=True)
class StepResult:
    step: Step
    ok: bool
    detail: str


@dataclass(frozen=True)
class ReconcileReport:
    plan: ReconcilePlan
    results: list[StepResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def apply(settings: Settings, reconcile_plan: ReconcilePlan, *, on_step: Callable[[Step], None] | None = None
          ) -> ReconcileReport:
    """Carry out a plan's steps in order; a failing step is reported and the next goes on."""
    results: list[StepResult] = []
    for step in reconcile_plan.steps:
        if on_step is not None:
            on_step(step)
        try:
            results.append(_carry_out(settings, step, reconcile_plan))
        except HugflowError as e:
            log.warning("%s: %s", step.dataset_name, e)
            results.append(StepResult(step, False, str(e)))
    return ReconcileReport(reconcile_plan, results)


def _carry_out(settings: Settings, step: Step, reconcile_plan: ReconcilePlan) -> StepResult:
    if step.action is Action.REMOVE:
        assert step.request is not None
        removed = store.remove(step.request, StoreLayout.of(settings), owner="reconcile")
        return StepResult(step, True, f"removed {len(removed.removed)} paths")
    if step.planned is not None:
        assert reconcile_plan.catalog is not None
        result = manager.apply_entry(settings, step.planned, reconcile_plan.catalog, owner="reconcile")
        return StepResult(step, result.outcome is not manager.Outcome.FAILED, f"{result.outcome.value}: {result.detail}")
    assert step.request is not None
    report = sync(step.request, settings, owner="reconcile")
    return StepResult(step, True, f"{report.rows_done:,} rows" +
                      (f", {report.row_errors} row errors" if report.row_errors else ""))
