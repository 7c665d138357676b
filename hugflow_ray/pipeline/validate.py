"""``hugflow validate``: a request file's schema, then (online) what the Hub says about it, as one verdict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from hugflow_ray.adapters.hub import Hub, RepoSnapshot, SplitLayout, local_layout
from hugflow_ray.core.licences import DEFAULT_ALLOWED, judge
from hugflow_ray.core.naming import dataset_dir_name
from hugflow_ray.core.plan import choose_columns
from hugflow_ray.core.request import AddRequest, HubRef, LocalRef, Request, load_request
from hugflow_ray.errors import HubError, RequestError
from hugflow_ray.pipeline.plan import resolve_hub_layout


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
        sha: the commit the revision resolved to, when the Hub was asked.
        layout: the resolved subset/split, when the Hub (or the local path) was read.
        findings: every finding, in the order they were made.
    """

    request_path: Path
    request: Request | None = None
    sha: str | None = None
    layout: SplitLayout | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not any(f.level is Level.ERROR for f in self.findings)

    def add(self, level: Level, message: str) -> None:
        self.findings.append(Finding(level, message))


def validate_file(path: Path, *, hub: Hub | None, licences: frozenset[str] = DEFAULT_ALLOWED) -> ValidationReport:
    """Validate one request file; ``hub=None`` checks the schema only (offline).

    Never raises for a problem with the request or the dataset: those become error findings (a licence outside
    ``licences``, without an override, is one).
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
    if not isinstance(request, AddRequest):
        return report
    if isinstance(ref, LocalRef):
        local = ref
        _check_dataset(report, request, lambda: local_layout(local.path, local.subset, local.split))
    elif hub is not None:
        hub_ref = ref
        _check_dataset(report, request, lambda: _hub_layout(report, hub, hub_ref, request, licences))
    return report


def _hub_layout(report: ValidationReport, hub: Hub, ref: HubRef, request: AddRequest, licences: frozenset[str]
                ) -> SplitLayout:
    snapshot: RepoSnapshot = hub.snapshot(ref.hf_id, ref.revision)
    report.sha = snapshot.sha
    report.add(Level.INFO, f"revision {ref.revision!r} resolves to commit {snapshot.sha}")
    verdict = judge(snapshot.license, allowed=licences, override=request.licence_override)
    report.add(Level.INFO if verdict.allowed else Level.ERROR, f"licence: {verdict.line()}")
    files_sha, layout = resolve_hub_layout(hub, snapshot, ref.subset, ref.split)
    if files_sha is not None:
        report.add(Level.INFO, f"its own files cannot be read: the Hub's parquet conversion ({files_sha}) is used")
    return layout


def _check_dataset(report: ValidationReport, request: AddRequest, resolve: Callable[[], SplitLayout]) -> None:
    try:
        layout = resolve()
    except HubError as e:
        report.add(Level.ERROR, str(e))
        return
    report.layout = layout
    subset = f"subset {layout.subset!r}, " if layout.subset else ""
    report.add(Level.INFO, f"{subset}split {layout.split!r}: {len(layout.data_files)} {layout.format} file(s)")
    _check_columns(report, request, layout)


def _check_columns(report: ValidationReport, request: AddRequest, layout: SplitLayout) -> None:
    if layout.columns is None:
        report.add(Level.WARNING, f"columns of the {layout.format} layout are checked when the sync reads the files")
        return
    for level, message in choose_columns(request, layout.columns).notes:
        report.add(Level(level), message)
