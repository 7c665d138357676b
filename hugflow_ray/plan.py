"""A request resolved to a plan before any heavy work, and the download of the plan's files.

The plan pins everything a sync depends on: the commit sha, the split's files (with the Hub's size and
checksum), the columns, and the encoder settings (its fingerprint). A resume with another fingerprint refuses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from hugflow_ray.audio import EncoderSettings
from hugflow_ray.errors import HubError, HubUnavailableError, PlanError, UnreadableLayoutError
from hugflow_ray.hub import Hub, RepoSnapshot, SplitLayout, local_layout
from hugflow_ray.layouts import STAGED_FORMATS
from hugflow_ray.naming import dataset_dir_name
from hugflow_ray.spec import AddRequest

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the output layout changes: old ledgers then refuse to resume
DOWNLOAD_ATTEMPTS = 4
DOWNLOAD_BACKOFF_SECONDS = 1.0
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class SourceFile:
    """One data file of the split.

    Attributes:
        path: repository path (Hub) or local path.
        size: bytes, when the Hub says.
        sha256: LFS checksum, when the Hub says.
        blob_id: git blob id (sha1), when the Hub says (small, non-LFS files).
    """

    path: str
    size: int | None = None
    sha256: str | None = None
    blob_id: str | None = None


@dataclass(frozen=True)
class ColumnChoice:
    """Which columns the sync uses, and what a user should know about the choice."""

    audio: str | None
    text: str | None
    notes: tuple[tuple[str, str], ...]  # (level: "info" | "warning" | "error", message)


def choose_columns(request: AddRequest, columns: Mapping[str, str]) -> ColumnChoice:
    """Decide the audio and text columns from the request and the split's columns."""
    names = ", ".join(columns) or "none"
    audio_columns = [name for name, kind in columns.items() if kind == "Audio"]
    notes: list[tuple[str, str]] = []
    audio: str | None = request.audio_column
    if audio in columns:
        if columns[audio] != "Audio":
            notes.append(("warning", f"audio column {audio!r} is not declared as Audio ({columns[audio]})"))
        else:
            notes.append(("info", f"audio column {audio!r} found"))
    elif request.audio_column_explicit or audio_columns:
        others = f" Audio columns: {', '.join(audio_columns)}." if audio_columns else ""
        notes.append(("error", f"audio column {audio!r} does not exist. Columns: {names}.{others} Set 'audio_column'."))
        audio = None
    else:
        notes.append(("warning", "the dataset has no audio column: the sync will be metadata-only (JSON, no MP3)"))
        audio = None
    text: str | None = request.text_column
    if text in columns:
        notes.append(("info", f"text column {text!r} found"))
    elif request.text_column_explicit:
        notes.append(("error", f"text column {text!r} does not exist. Columns: {names}. Fix 'text_column'."))
        text = None
    else:
        notes.append(("warning", f"no text column {text!r}: manifests will carry no transcript"))
        text = None
    return ColumnChoice(audio=audio, text=text, notes=tuple(notes))


@dataclass(frozen=True)
class Plan:
    """Everything a sync of one add request will do, decided before any download."""

    request: AddRequest
    dataset_name: str
    source: str
    sha: str | None
    subset: str | None
    split: str
    format: str
    files: tuple[SourceFile, ...]
    audio_column: str | None
    text_column: str | None
    license: str | None
    files_sha: str | None = None  # the commit the files come from, when not ``sha`` (the parquet conversion)
    rows: int | None = None  # as the card states it, before the download; the sync counts the files' rows

    @property
    def download_bytes(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    def fingerprint(self, encoder: EncoderSettings) -> dict[str, Any]:
        """What the rows of a dataset depend on; a resume must match it."""
        return {
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "sha": self.sha,
            "files_sha": self.files_sha,
            "subset": self.subset,
            "split": self.split,
            "files": [f.path if self.sha else Path(f.path).name for f in self.files],
            "audio_column": self.audio_column,
            "text_column": self.text_column,
            "encoder": asdict(encoder),
        }


def make_plan(request: AddRequest, *, hub: Hub | None) -> Plan:
    """Resolve an add request (Hub or local path) to a :class:`Plan`.

    Raises:
        HubError: the repository, revision, subset or split does not exist or cannot be read.
        PlanError: the columns do not fit the request, or the layout is not one the sync reads.
    """
    ref = request.dataset
    sha: str | None = None
    files_sha: str | None = None
    license: str | None = None
    rows: int | None = None
    if ref.path is not None:
        layout = local_layout(ref.path, ref.subset, ref.split)
        files = tuple(SourceFile(path=str(Path(p).resolve())) for p in layout.data_files)
    else:
        if hub is None:
            raise PlanError(f"{ref.hf_id}: a Hub request needs the Hub (HF_ENDPOINT)")
        assert ref.hf_id is not None
        snapshot = hub.snapshot(ref.hf_id, ref.revision)
        sha, license, rows = snapshot.sha, snapshot.license, snapshot.rows(ref.subset, ref.split)
        files_sha, layout = resolve_hub_layout(hub, snapshot, ref.subset, ref.split)
        meta = hub.file_metadata(RepoSnapshot(ref.hf_id, ref.revision, files_sha or sha))
        files = tuple(SourceFile(path=p, **meta.get(p, {})) for p in layout.data_files)
    _check_readable(request, layout)
    plan = Plan(
        request=request,
        dataset_name=dataset_dir_name(ref),
        source=ref.source,
        sha=sha,
        subset=ref.subset,
        split=ref.split,
        format=layout.format,
        files=files,
        audio_column=request.audio_column,
        text_column=request.text_column,
        license=license,
        files_sha=files_sha,
        rows=rows,
    )
    return with_columns(plan, layout.columns) if layout.columns is not None else plan


def with_columns(plan: Plan, columns: Mapping[str, str]) -> Plan:
    """The plan with its audio and text columns chosen from the split's actual ``columns``.

    Raises:
        PlanError: a column the request names explicitly (or the audio column of an audio dataset) is missing.
    """
    choice = choose_columns(plan.request, columns)
    errors = [message for level, message in choice.notes if level == "error"]
    if errors:
        raise PlanError(f"{plan.request.request_path or plan.source}: {' '.join(errors)}")
    return dataclasses.replace(plan, audio_column=choice.audio, text_column=choice.text)


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
    if layout is not None and (layout.format == "parquet" or layout.format in STAGED_FORMATS):
        return None, layout
    files_sha, converted = hub.parquet_conversion(snapshot, subset, split)
    log.info("%s: reading the Hub's parquet conversion at %s", snapshot.hf_id, files_sha)
    return files_sha, converted


def _check_readable(request: AddRequest, layout: SplitLayout) -> None:
    if layout.format != "parquet" and layout.format not in STAGED_FORMATS:
        readable = ", ".join(sorted({"parquet", *STAGED_FORMATS}))
        raise PlanError(
            f"{request.dataset.source}: the {layout.format} layout is not synced; readable layouts: {readable}. "
            "Convert the split to parquet (the Hub does this on its refs/convert/parquet branch)."
        )
    if not layout.data_files:
        raise PlanError(f"{request.dataset.source}: split {layout.split!r} has no data files")


def download(plan: Plan, *, hub: Hub | None, concurrency: int) -> list[Path]:
    """Fetch the plan's files (in parallel, verified, retried on transient errors); local files as they are.

    Returns:
        Local paths in the plan's file order.
    """
    if plan.sha is None:
        return [Path(f.path) for f in plan.files]
    assert hub is not None and plan.request.dataset.hf_id is not None
    hf_id, sha = plan.request.dataset.hf_id, plan.files_sha or plan.sha

    def fetch(source: SourceFile) -> Path:
        path = _retrying(lambda: hub.download(hf_id, sha, source.path), what=source.path)
        verify(path, source)
        return path

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="download") as pool:
        return list(pool.map(fetch, plan.files))


def _retrying(call: Callable[[], Path], *, what: str) -> Path:
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            return call()
        except HubUnavailableError as e:
            if attempt == DOWNLOAD_ATTEMPTS:
                raise
            delay = DOWNLOAD_BACKOFF_SECONDS * 2 ** (attempt - 1)
            log.warning("download of %s failed (%s); retry %d in %.0f s", what, e, attempt, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def verify(path: Path, source: SourceFile) -> None:
    """Check a downloaded file against the Hub's size and checksum.

    Raises:
        HubError: the file differs; it is deleted so that the next attempt downloads it again.
    """
    problem = None
    size = path.stat().st_size
    if source.size is not None and size != source.size:
        problem = f"{size} bytes instead of {source.size}"
    elif source.sha256 is not None and _digest(path, hashlib.sha256()) != source.sha256:
        problem = "sha256 differs from the Hub's"
    elif source.blob_id is not None and source.sha256 is None:
        git = hashlib.sha1(f"blob {size}\0".encode())  # noqa: S324 - git's object id, not a security hash
        if _digest(path, git) != source.blob_id:
            problem = "git blob id differs from the Hub's"
    if problem:
        path.resolve().unlink(missing_ok=True)  # the Hub cache links snapshot files to blobs: drop the blob too
        path.unlink(missing_ok=True)
        raise HubError(f"{source.path}: downloaded file is corrupt ({problem}); run the sync again", hf_id=source.path)


def _digest(path: Path, hasher: Any) -> str:
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def parquet_row_groups(path: Path) -> list[int]:
    """Rows in each row group of a parquet file."""
    metadata = pq.ParquetFile(path).metadata
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
