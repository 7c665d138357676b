"""``hugflow validate``: a request file's schema, then (online) what the Hub says about it, as one verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from hugflow_ray.adapters.hub import Hub
from hugflow_ray.core.licences import DEFAULT_ALLOWED, judge
from hugflow_ray.core.naming import dataset_dir_name
from hugflow_ray.core.plan import Plan
from hugflow_ray.core.request import AddRequest, HubRef, Request, load_request
from hugflow_ray.errors import HubError, PlanError, RequestError
from hugflow_ray.pipeline.plan import make_plan


class Level(StrEnum):
    """How a finding bears on the verdict: only errors make a request invalid."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    level: Level
    message: str


@dataclass
class ValidationReport:
    """What validating one request file found.

    Attributes:
        request_path: the file.
        request: the parsed request, when the schema was valid.
        plan: the plan a sync would run, when the request could be planned.
        findings: every finding, in the order they were made.
    """

    request_path: Path
    request: Request | None = None
    plan: Plan | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def sha(self) -> str | None:
        """The commit the revision resolved to, when the Hub was asked."""
        return self.plan.identity.sha if self.plan else None

    @property
    def valid(self) -> bool:
        return not any(f.level is Level.ERROR for f in self.findings)

    def add(self, level: Level, message: str) -> None:
        self.findings.append(Finding(level, message))


def validate_file(path: Path, *, hub: Hub | None, licences: frozenset[str] = DEFAULT_ALLOWED) -> ValidationReport:
    """Validate one request file; ``hub=None`` checks the schema only (offline).

    Online, the request is planned exactly as a sync plans it (:func:`~hugflow_ray.pipeline.plan.make_plan`): what
    validates is what syncs. Never raises for a problem with the request or the dataset: those become error findings
    (a licence outside ``licences``, without an override, is one).
    """
    report = ValidationReport(request_path=path)
    try:
        request = load_request(path)
    except RequestError as e:
        report.add(Level.ERROR, str(e))
        return report
    report.request = request
    ref = request.dataset
    report.add(Level.INFO, f"{request.kind.value} request for {ref.source} -> {dataset_dir_name(ref)}")
    if not isinstance(request, AddRequest) or (isinstance(ref, HubRef) and hub is None):
        return report
    try:
        plan = make_plan(request, hub=hub)
    except (HubError, PlanError) as e:
        report.add(Level.ERROR, str(e))
        return report
    report.plan = plan
    if isinstance(ref, HubRef):
        report.add(Level.INFO, f"revision {ref.revision!r} resolves to commit {plan.identity.sha}")
        verdict = judge(plan.identity.license, allowed=licences, override=request.licence_override)
        report.add(Level.INFO if verdict.allowed else Level.ERROR, f"licence: {verdict.line()}")
    if plan.files_sha is not None:
        report.add(Level.INFO, f"its own files cannot be read: the Hub's parquet conversion ({plan.files_sha}) is used")
    subset = f"subset {plan.identity.subset!r}, " if plan.identity.subset else ""
    report.add(Level.INFO, f"{subset}split {plan.identity.split!r}: {len(plan.files)} {plan.format} file(s)")
    for level, message in plan.notes:
        report.add(Level(level), message)
    return report
