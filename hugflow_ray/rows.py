"""Per-row output, pure: the MP3 file name and the sidecar JSON of a row.

MP3 names come from the ``audio_filename`` column when present, else the source audio path's stem, else the
row id. They are basenames in ``[A-Za-z0-9._-]``, capped in length. A name shared by several rows of the dataset
(compared case-insensitively, for case-insensitive filesystems) is disambiguated as ``<stem>+<row id>``; since
clean stems never contain ``+``, disambiguated names cannot collide with plain ones, and the same dataset
always yields the same names whatever the scheduling.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from hugflow_ray.audio import AudioFacts

NAME_COLUMN = "audio_filename"
MAX_STEM_LENGTH = 120
AUDIO_DIR = "audio"
JSON_DIR = "json"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_AUDIO_EXTENSIONS = re.compile(r"\.(mp3|wav|flac|ogg|opus|m4a|aac|webm|aiff?|au|sph)$", re.IGNORECASE)


def safe_stem(value: object) -> str:
    """A filesystem-safe stem of a file name or path; empty when nothing usable is left."""
    if not isinstance(value, str):
        return ""
    base = re.split(r"[/\\]", value.replace("\x00", ""))[-1]
    base = _AUDIO_EXTENSIONS.sub("", base)
    return _UNSAFE.sub("_", base).strip("._-")[:MAX_STEM_LENGTH].rstrip("._-")


def name_candidate(filename: object, source_path: object) -> str:
    """The stem a row asks for: its ``audio_filename``, else its source path's stem."""
    return safe_stem(filename) or safe_stem(source_path)


def duplicated_stems(candidates: Iterable[str]) -> frozenset[str]:
    """The (lower-cased) stems more than one row asks for."""
    seen: set[str] = set()
    duplicated: set[str] = set()
    for stem in candidates:
        key = stem.lower()
        if key in seen:
            duplicated.add(key)
        seen.add(key)
    return frozenset(duplicated)


def mp3_name(candidate: str, row_id: int, duplicated: frozenset[str]) -> str:
    """The MP3 basename of a row (see the module docstring)."""
    if candidate and candidate.lower() not in duplicated:
        return f"{candidate}.mp3"
    return f"{candidate or 'row'}+{row_id}.mp3"


def jsonable(value: Any) -> Any:
    """``value`` as JSON-safe data. Bytes, numeric arrays and audio values become None; NaN/Inf become None."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.floating):
        return jsonable(float(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None
    if isinstance(value, np.ndarray):
        return None if value.dtype.kind in "fiucb" and value.ndim > 0 else jsonable(value.tolist())
    if isinstance(value, Mapping):
        if _looks_like_audio(value):
            return None
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)


def _looks_like_audio(value: Mapping[str, Any]) -> bool:
    keys = set(value)
    return keys <= {"bytes", "path", "array", "sampling_rate"} and bool(keys & {"bytes", "array"})


def sidecar(
    row_id: int, metadata: Mapping[str, Any], *, audio_file: str | None, facts: AudioFacts | None
) -> dict[str, Any]:
    """The JSON of one row: every non-audio column, the row id and the MP3's relative path with its facts."""
    document: dict[str, Any] = {name: jsonable(value) for name, value in metadata.items()}
    document["row_id"] = row_id
    document["audio"] = None if audio_file is None or facts is None else {"path": audio_file, **facts.to_dict()}
    return document
