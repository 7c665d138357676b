"""The sidecar JSON of one row, pure: every non-audio column as JSON-safe data, the row id, the MP3's path and facts.

The seed's contract: ``"audio"`` is the MP3's path, relative to the dataset directory (``audio/<name>.mp3``), so
``open(dataset_dir / row["audio"])``, ``jq -r .audio`` and loaders that take a path column work, and the dataset
can be moved or reached through the processed symlink. What the conversion did is the sibling ``"audio_info"``.
These keys, and ``"row_id"``, win over source columns of the same name.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from hugflow_ray.core.encoding import AudioFacts
from hugflow_ray.core.records import RowColumn

AUDIO_KEY = "audio"  # the MP3's path, relative to the dataset directory
AUDIO_INFO_KEY = "audio_info"  # what the conversion did: duration, rates, bitrate, channels, source format


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
    """The JSON of one row: every non-audio column, the row id, the MP3's relative path and its facts."""
    document: dict[str, Any] = {name: jsonable(value) for name, value in metadata.items()}
    document[RowColumn.ROW_ID] = row_id
    document[AUDIO_KEY] = audio_file if facts is not None else None
    document[AUDIO_INFO_KEY] = facts.to_dict() if audio_file is not None and facts is not None else None
    return document
