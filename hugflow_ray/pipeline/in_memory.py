"""Rows handed in through the Python API (e.g. a ``datasets.Dataset`` with decoded audio), staged and synced.

The rows are staged losslessly as one parquet file under ``STATE_DIR/incoming/<name>/`` and synced like a local
dataset of that name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hugflow_ray.codec import audio
from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.core import naming
from hugflow_ray.core.request import AddRequest, LocalRef
from hugflow_ray.errors import AudioError, PlanError
from hugflow_ray.pipeline.progress import ProgressCallback
from hugflow_ray.pipeline.sync import SyncReport, sync
from hugflow_ray.settings import Settings
from hugflow_ray.utils import atomic

log = logging.getLogger(__name__)


def sync_rows(
    records: Iterable[Mapping[str, Any]],
    settings: Settings,
    *,
    name: str,
    description: str = "rows handed in through the Python API",
    audio_column: str = "audio",
    text_column: str = "text",
    restart: bool = False,
    on_progress: ProgressCallback | None = None,
) -> SyncReport:
    """Sync rows held in memory, e.g. from a ``datasets.Dataset`` with decoded audio.

    Audio values may be anything :func:`hugflow_ray.codec.audio.decode` reads: Hub audio dicts and bytes are kept as
    they are; ``{"array", "sampling_rate"}`` dicts and AudioDecoder objects are staged losslessly as float WAV.
    The rows are staged under ``STATE_DIR/incoming/<name>/`` and synced like a local dataset of that name.
    """
    stem = naming.safe_stem(name)
    if not stem:
        raise PlanError(f"{name!r} is not usable as a dataset name; use letters, digits, '.', '_' and '-'")
    incoming = StoreLayout.of(settings).incoming(stem)
    (incoming / "data").mkdir(parents=True, exist_ok=True)
    staged = []
    for row_id, record in enumerate(records):
        values = dict(record)
        try:
            values[audio_column] = _staged_audio(values.get(audio_column))
        except AudioError as e:
            log.warning("row %d of %s: %s; recorded as a row without audio", row_id, name, e)
            values[audio_column] = None
        staged.append(values)
    if not staged:
        raise PlanError(f"{name}: no rows were handed in")
    table = pa.Table.from_pylist(staged)
    index = table.schema.get_field_index(audio_column)
    table = table.set_column(index, audio_column, table.column(index).cast(_AUDIO_TYPE))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic.write_bytes(incoming / "data" / "train-00000-of-00001.parquet", sink.getvalue().to_pybytes())
    request = AddRequest(
        dataset=LocalRef(incoming), description=description, audio_column=audio_column,
        text_column=text_column, audio_column_explicit=True,
    )
    return sync(request, settings, restart=restart, owner="python-api", on_progress=on_progress)


_AUDIO_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _staged_audio(value: object) -> dict[str, Any] | None:
    """An in-memory audio value as a Hub audio dict; decoded audio is staged as float WAV."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": bytes(value), "path": None}
    if isinstance(value, Mapping) and value.get("array") is None:
        return {"bytes": value.get("bytes"), "path": value.get("path")}
    return {"bytes": audio.to_lossless_wav(value), "path": None}


