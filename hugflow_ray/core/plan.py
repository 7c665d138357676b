"""A plan, pure: what a sync of one add request will do, decided before any download.

The plan pins everything a sync depends on: the commit sha, the split's files (with the Hub's size and
checksum), the columns, and the encoder settings (its fingerprint). A resume with another fingerprint refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hugflow_ray.core.encoding import EncoderSettings
from hugflow_ray.core.records import DatasetIdentity
from hugflow_ray.core.request import AddRequest, LocalRef

# Bump when the output changes: a dataset made by another version refuses to resume (``--restart`` redoes it).
# 2: a row's JSON has the MP3's path as "audio" and the conversion's facts as "audio_info".
# 3: MP3s in a folder per part of the split (names decided within it); other layouts read in place (a WebDataset
#    row has its first shard's columns, an audio folder's metadata keeps its file's types).
FORMAT_VERSION = 3


def peak_source_bytes(sizes: list[int | None], *, window: int, keep: bool) -> int | None:
    """The most of a source on disk at once while it syncs: every file when they are kept, else the ``window``
    largest (a sync holds at most ``window`` parts downloading or waiting, and deletes each once converted); None
    when a size is unknown."""
    if any(s is None for s in sizes):
        return None
    known = sorted((s for s in sizes if s is not None), reverse=True)
    return sum(known if keep else known[:window])


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
    """Everything a sync of one add request will do, decided before any download.

    Attributes:
        identity: the dataset copy (directory name, source, pinned commit, subset, split, licence).
        format: the layout reader ``datasets`` picked (``parquet``, ``audiofolder``...).
        files: the split's files in read order.
        files_sha: the commit the files come from, when not the pinned one (the Hub's parquet conversion).
        rows: the row count the card states, before the download; the sync counts the files' rows.
        notes: what a user should know about the choice of columns: (level, message), as :class:`ColumnChoice`.
    """

    request: AddRequest
    identity: DatasetIdentity
    format: str
    files: tuple[SourceFile, ...]
    audio_column: str | None
    text_column: str | None
    files_sha: str | None = None
    rows: int | None = None
    notes: tuple[tuple[str, str], ...] = ()

    @property
    def local(self) -> LocalRef | None:
        """The local dataset this plan reads, or None for a Hub dataset."""
        ref = self.request.dataset
        return ref if isinstance(ref, LocalRef) else None

    @property
    def download_bytes(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    def file_names(self) -> list[str]:
        """The files as the fingerprint and staged rows name them: repository paths, or local basenames."""
        return [Path(f.path).name if self.local else f.path for f in self.files]

    def fingerprint(self, encoder: EncoderSettings) -> dict[str, Any]:
        """What the rows of a dataset depend on; a resume must match it."""
        identity = self.identity
        return {
            "format_version": FORMAT_VERSION,
            "source": identity.source,
            "sha": identity.sha,
            "files_sha": self.files_sha,
            "subset": identity.subset,
            "split": identity.split,
            "files": self.file_names(),
            "audio_column": self.audio_column,
            "text_column": self.text_column,
            "encoder": asdict(encoder),
        }
