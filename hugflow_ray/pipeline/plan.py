"""Planning: an add request resolved against the Hub (or a local path) to a :class:`~hugflow_ray.core.plan.Plan`."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from hugflow_ray.adapters.hub import Hub, RepoSnapshot, SplitLayout, local_layout
from hugflow_ray.core.licences import LicenceVerdict, judge
from hugflow_ray.core.naming import dataset_dir_name
from hugflow_ray.core.plan import Plan, SourceFile, choose_columns
from hugflow_ray.core.records import DatasetIdentity
from hugflow_ray.core.request import AddRequest, LocalRef
from hugflow_ray.errors import LicenceError, PlanError, UnreadableLayoutError
from hugflow_ray.pipeline.readers.parts import FORMATS
from hugflow_ray.settings import Settings

log = logging.getLogger(__name__)



def make_plan(request: AddRequest, *, hub: Hub | None, on_resolved: Callable[[str], None] | None = None) -> Plan:
    """Resolve an add request (Hub or local path) to a :class:`Plan`.

    Args:
        on_resolved: called with the commit a Hub request's revision resolves to, as soon as it does: before the
            split's files are listed and read (seconds on a slow link), which a caller can spend meanwhile.

    Raises:
        HubError: the repository, revision, subset or split does not exist or cannot be read.
        PlanError: the columns do not fit the request, or the layout is not one the sync reads.
    """
    ref = request.dataset
    source = ref.source
    sha: str | None = None
    files_sha: str | None = None
    license: str | None = None
    rows: int | None = None
    if isinstance(ref, LocalRef):
        layout = local_layout(ref.path, ref.subset, ref.split)
        files = tuple(SourceFile(path=str(Path(p).resolve())) for p in layout.data_files)
        if ref.origin is not None:  # downloaded files: the copy is pinned to the download's identity
            source, sha, license = ref.origin.url, ref.origin.sha256, ref.origin.licence
    else:
        if hub is None:
            raise PlanError(f"{ref.hf_id}: a Hub request needs the Hub (HF_ENDPOINT)")
        snapshot = hub.snapshot(ref.hf_id, ref.revision)
        if on_resolved is not None:
            on_resolved(snapshot.sha)
        sha, license, rows = snapshot.sha, snapshot.license, snapshot.rows(ref.subset, ref.split)
        files_sha, layout = resolve_hub_layout(hub, snapshot, ref.subset, ref.split)
        meta = hub.file_metadata(RepoSnapshot(ref.hf_id, ref.revision, files_sha or sha))
        files = tuple(SourceFile(path=p, **meta.get(p, {})) for p in layout.data_files)
    _check_readable(request, layout)
    identity = DatasetIdentity(name=dataset_dir_name(ref), source=source, sha=sha, subset=ref.subset,
                               split=ref.split, license=license)
    unread = (("warning", f"columns of the {layout.format} layout are checked when the sync reads the files"),)
    plan = Plan(request=request, identity=identity, format=layout.format, files=files,
                audio_column=request.audio_column, text_column=request.text_column, files_sha=files_sha, rows=rows,
                notes=unread if layout.columns is None else ())
    return with_columns(plan, layout.columns) if layout.columns is not None else plan


def with_columns(plan: Plan, columns: Mapping[str, str]) -> Plan:
    """The plan with its audio and text columns chosen from the split's actual ``columns``.

    Raises:
        PlanError: a column the request names explicitly (or the audio column of an audio dataset) is missing.
    """
    choice = choose_columns(plan.request, columns)
    errors = [message for level, message in choice.notes if level == "error"]
    if errors:
        raise PlanError(f"{plan.request.request_path or plan.identity.source}: {' '.join(errors)}")
    return dataclasses.replace(plan, audio_column=choice.audio, text_column=choice.text, notes=choice.notes)


def resolve_hub_layout(
    hub: Hub, snapshot: RepoSnapshot, subset: str | None, split: str
) -> tuple[str | None, SplitLayout]:
    """The split's layout from the repository's own files, else from the Hub's parquet conversion.

    Returns:
        The commit of the parquet conversion when it is used (else None), and the layout.
    """
    try:
        layout = hub.split_layout(snapshot, subset, split)
    except UnreadableLayoutError:
        layout = None
    if layout is not None and layout.format in FORMATS:
        return None, layout
    files_sha, converted = hub.parquet_conversion(snapshot, subset, split)
    log.info("%s: reading the Hub's parquet conversion at %s", snapshot.hf_id, files_sha)
    return files_sha, converted


def _check_readable(request: AddRequest, layout: SplitLayout) -> None:
    if layout.format not in FORMATS:
        readable = ", ".join(sorted(FORMATS))
        raise PlanError(
            f"{request.dataset.source}: the {layout.format} layout is not synced; readable layouts: {readable}. "
            "Convert the split to parquet (the Hub does this on its refs/convert/parquet branch)."
        )
    if not layout.data_files:
        raise PlanError(f"{request.dataset.source}: split {layout.split!r} has no data files")


def licence_verdict(plan: Plan, settings: Settings) -> LicenceVerdict | None:
    """The licence policy's verdict on a Hub dataset's card licence, with the request's override; None for a local
    dataset, which has no card (the operator's own files; a catalog judges its URL sources by the catalog)."""
    if plan.local is not None:
        return None
    return judge(plan.identity.license, allowed=settings.licence_policy, override=plan.request.licence_override)


def check_licence(plan: Plan, verdict: LicenceVerdict | None) -> None:
    """Refuse a dataset the licence policy refuses.

    Raises:
        LicenceError: the verdict does not allow it; the message says how to override.
    """
    if verdict is not None and not verdict.allowed:
        where = plan.request.request_path or plan.identity.source
        raise LicenceError(f"{where}: licence {verdict.line()}")
