"""Converting a batch of source rows: audio -> MP3 bytes, every row -> its sidecar JSON, or a row error.

Pure with respect to where it runs: Ray ships a :class:`RowConverter` to every worker; it reads nothing but the
batch (and, through a safe resolver, audio files inside the dataset's own files) and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from hugflow_ray.codec import audio
from hugflow_ray.codec.audio import SafePathResolver
from hugflow_ray.copies.batches import converted_to_table
from hugflow_ray.core import naming, sidecar
from hugflow_ray.core.encoding import EncoderSettings
from hugflow_ray.core.records import ConvertedRow, RowColumn, RowRecord, RowStatus
from hugflow_ray.errors import AudioError
from hugflow_ray.pipeline.readers.parts import MP3_NAME, PART
from hugflow_ray.utils import atomic, failpoints

UNEXPECTED_ERROR = "unexpected"  # the ledger's code for a row that failed in a way no AudioError names


@dataclass(frozen=True)
class RowConverter:
    """Converts a batch of source rows (with ``row_id``) to output rows: MP3 bytes, sidecar JSON, or an error.

    Picklable and stateless: Ray ships it to every worker.
    """

    audio_column: str | None
    text_column: str | None
    encoder: EncoderSettings
    json_columns: frozenset[str] = frozenset()  # columns read as JSON text, parsed into the row's JSON
    files_root: str | None = None
    max_seconds: float | None = None

    def __call__(self, batch: pa.Table) -> pa.Table:
        resolver = SafePathResolver(Path(self.files_root)) if self.files_root else None
        return converted_to_table([self._convert(row, resolver) for row in batch.to_pylist()])

    def _convert(self, row: dict[str, Any], resolver: SafePathResolver | None) -> ConvertedRow:
        """One row; whatever goes wrong with it (a decoder's bug, memory) is that row's error, never the batch's."""
        row_id = row[RowColumn.ROW_ID]
        try:
            return self._convert_row(row, resolver)
        except Exception as e:  # noqa: BLE001 - recorded in the ledger with its type, the other rows go on
            text = row.get(self.text_column) if self.text_column else None
            return ConvertedRow(RowRecord(row_id, RowStatus.ERROR, text=text if isinstance(text, str) else None,
                                          error_code=UNEXPECTED_ERROR, error=f"{type(e).__name__}: {e}"))

    def _convert_row(self, row: dict[str, Any], resolver: SafePathResolver | None) -> ConvertedRow:
        row_id, part, mp3 = row.pop(RowColumn.ROW_ID), row.pop(PART), row.pop(MP3_NAME)
        for column in self.json_columns:
            if isinstance(row.get(column), str):
                row[column] = json.loads(row[column])
        failpoints.raise_in_row(row_id)
        value = row.pop(self.audio_column) if self.audio_column else None
        text = row.get(self.text_column) if self.text_column else None
        text = text if isinstance(text, str) else None
        facts = encoded = None
        audio_file = None
        if self.audio_column is not None:
            try:
                encoded = audio.convert(value, self.encoder, resolve_path=resolver, row_id=row_id,
                                        max_seconds=self.max_seconds)
            except AudioError as e:
                return ConvertedRow(RowRecord(row_id, RowStatus.ERROR, text=text, error_code=e.code, error=str(e)))
            audio_file = naming.mp3_path(part, mp3)
            facts = encoded.facts
        document = atomic.json_bytes(sidecar.sidecar(row_id, row, audio_file=audio_file, facts=facts))
        record = RowRecord(
            row_id, RowStatus.OK, json_file=naming.json_file(row_id), audio_file=audio_file, text=text,
            sha256=hashlib.sha256(encoded.mp3).hexdigest() if encoded else None,
            json_sha256=hashlib.sha256(document).hexdigest(), duration=facts.duration if facts else None,
        )
        return ConvertedRow(record, json=document, mp3=encoded.mp3 if encoded else None)
