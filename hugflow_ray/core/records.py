"""The records every stage shares, pure: a finished row, a dataset copy's identity and state, and their enums.

One row schema: :class:`RowRecord` is what the converter produces (inside a :class:`ConvertedRow`, with the bytes
to write), what the writer writes and the ledger keeps, and what status and the CLI read back. Its Arrow form is
derived from these fields in one place (:mod:`hugflow_ray.copies.batches`).
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from typing import Any


class RowColumn(StrEnum):
    """The row schema's column names, said once: the ledger's (:class:`RowRecord`'s fields, in order), then the bytes
    a converted block carries (:class:`ConvertedRow`'s). ``row_id`` is also every row's column from the read on, and
    a key of its JSON. Checked against the records below when this module loads."""

    ROW_ID = "row_id"
    STATUS = "status"
    JSON_FILE = "json_file"
    AUDIO_FILE = "audio_file"
    SHA256 = "sha256"
    JSON_SHA256 = "json_sha256"
    DURATION = "duration"
    TEXT = "text"
    ERROR_CODE = "error_code"
    ERROR = "error"
    JSON = "json"
    MP3 = "mp3"



class RowStatus(StrEnum):
    """Whether a finished row was converted or recorded as a row error."""

    OK = "ok"
    ERROR = "error"


class DatasetState(StrEnum):
    """Where a dataset copy stands."""

    SYNCING = "syncing"
    COMPLETE = "complete"
    FAILED = "failed"
    DAMAGED = "damaged"  # its status file cannot be read; listed from its ledger until a sync rewrites it


@dataclass(frozen=True)
class RowRecord:
    """What the ledger keeps about one finished row: its files and their checksums, or its error.

    Attributes:
        row_id: the row's 0-based position in the split (file order, then row order).
        status: converted, or a row error.
        json_file: the sidecar JSON, relative to the dataset directory (None for a row error).
        audio_file: the MP3, relative to the dataset directory (None without audio or for a row error).
        sha256: the MP3's checksum.
        json_sha256: the sidecar JSON's checksum (None in ledgers written before it was recorded).
        duration: the audio's duration in seconds.
        text: the transcript, for the manifests.
        error_code: the row error's stable code (``AudioError.code``).
        error: the row error's message.
    """

    row_id: int
    status: RowStatus
    json_file: str | None = None
    audio_file: str | None = None
    sha256: str | None = None
    json_sha256: str | None = None
    duration: float | None = None
    text: str | None = None
    error_code: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, RowColumn.STATUS: self.status.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RowRecord:
        values = {f.name: data.get(f.name) for f in fields(cls)}
        return cls(**{**values, RowColumn.STATUS: RowStatus(values[RowColumn.STATUS])})


@dataclass(frozen=True)
class ConvertedRow:
    """A finished row on its way to the writer: its record and the bytes of its files."""

    record: RowRecord
    json: bytes | None = None
    mp3: bytes | None = None


_RECORDED = [f.name for f in fields(RowRecord)] + [f.name for f in fields(ConvertedRow) if f.name != "record"]
if _RECORDED != [c.value for c in RowColumn]:
    raise TypeError(f"RowColumn lists {[c.value for c in RowColumn]}, but the records hold {_RECORDED}: make them agree")


@dataclass(frozen=True)
class DatasetIdentity:
    """Which dataset copy: what the plan, its PR comment and its status file all name it by.

    Attributes:
        name: the directory name under ``STORAGE_ROOT`` (:func:`hugflow_ray.core.naming.dataset_dir_name`).
        source: the Hub id, or the local path.
        sha: the pinned commit (None for a local dataset).
        subset: the config, or None.
        split: the split.
        license: as the dataset card states it.
    """

    name: str
    source: str
    sha: str | None
    subset: str | None
    split: str
    license: str | None = None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


_STATUS_KEYS = {"name": "dataset_name"}  # the identity's name, as the status file spells it (flat: one object)


def _field_values(cls: type, data: Mapping[str, Any], keys: Mapping[str, str], *,
                  leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """The values of the dataclass ``cls``'s fields in ``data`` (a field's key there: ``keys``' spelling, else its
    name). A field with a default, or one that may be None, may be missing; any other missing field raises KeyError.
    A missing (or empty) value of a field made by a factory is made now."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in leave_out:
            continue
        key = keys.get(f.name, f.name)
        if f.default_factory is not MISSING:
            values[f.name] = data.get(key) or f.default_factory()
        elif f.default is not MISSING:
            values[f.name] = data.get(key, f.default)
        elif type(None) in typing.get_args(hints[f.name]):
            values[f.name] = data.get(key)
        else:
            values[f.name] = data[key]
    return values


@dataclass
class DatasetStatus:
    """The state of one dataset copy, kept in ``.hugflow/status.json`` (flat, as ``to_dict`` writes it).

    Attributes:
        size_bytes: the copy's bytes on disk (its regular files, this status file included), measured when the copy
            completed; None until then, and in status files written before it was recorded.
    """

    identity: DatasetIdentity
    state: DatasetState
    rows_total: int
    rows_done: int = 0
    row_errors: int = 0
    error: str | None = None
    updated: str = field(default_factory=_now)
    size_bytes: int | None = None

    @property
    def dataset_name(self) -> str:
        return self.identity.name

    def to_dict(self) -> dict[str, Any]:
        identity = {_STATUS_KEYS.get(f.name, f.name): getattr(self.identity, f.name) for f in fields(DatasetIdentity)}
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "identity"}
        return {**identity, **own, "state": self.state.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetStatus:
        """The status a file holds (flat, as :meth:`to_dict` writes it).

        Raises:
            KeyError, TypeError, ValueError: the file lacks a field or holds one that is not what it should be.
        """
        identity = DatasetIdentity(**_field_values(DatasetIdentity, data, _STATUS_KEYS))
        values = _field_values(cls, data, {}, leave_out=("identity",))
        size = values["size_bytes"]
        if size is not None and (type(size) is not int or size < 0):
            raise ValueError(f"size_bytes is {size!r}, not a number of bytes")
        return cls(identity=identity, **{**values, "state": DatasetState(values["state"])})

    def touch(self) -> None:
        """Mark the status as written now."""
        self.updated = _now()


# The progress file keeps the seed's keys, which counted a file per row
_PROGRESS_KEYS = {"rows_total": "total_files", "rows_done": "downloaded_files", "rows_new": "newly_downloaded"}


@dataclass
class Progress:
    """The seed's progress file, one per dataset: ``STATE_DIR/progress/<dataset>.json`` (its keys the seed's:
    ``_PROGRESS_KEYS``)."""

    dataset_name: str
    status: DatasetState
    rows_total: int  # rows of the split
    rows_done: int = 0  # rows finished (converted or recorded as row errors)
    row_errors: int = 0
    resumed_from: int = 0
    rows_new: int = 0  # rows finished by this run
    percent_complete: float = 0.0
    rows_per_second: float | None = None
    eta_seconds: float | None = None
    bytes_downloaded: int = 0  # of the source, this run (a streaming sync downloads beside the conversion)
    bytes_total: int | None = None  # of the source, when the Hub says
    resume_data: dict[str, Any] = field(default_factory=dict)
    updated: str = ""

    def to_dict(self) -> dict[str, Any]:
        values = {_PROGRESS_KEYS.get(f.name, f.name): getattr(self, f.name) for f in fields(self)}
        return {**values, "status": self.status.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Progress:
        values = _field_values(cls, data, _PROGRESS_KEYS)
        return cls(**{**values, "status": DatasetState(values["status"])})

    def touch(self) -> None:
        """Mark the progress as written now."""
        self.updated = _now()
