"""The sidecar JSON of one row, pure: every non-audio column as JSON-safe data, the row id and the MP3's facts."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from hugflow_ray.core.encoding import AudioFacts


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
