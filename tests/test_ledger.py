"""The ledger on its own: parts written by older versions, overlapping parts, dropping rows."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hugflow_ray.core.records import RowRecord, RowStatus
from hugflow_ray.pipeline.ledger import Ledger


def ok_record(row_id: int) -> RowRecord:
    return RowRecord(row_id, RowStatus.OK, json_file=f"json/{row_id}.json", audio_file=f"audio/{row_id}.mp3",
                     sha256=f"{row_id:064x}", json_sha256=f"{row_id + 100:064x}", duration=0.1, text=f"t{row_id}")


def test_a_part_written_before_json_checksums_reads_with_none(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.parts.mkdir(parents=True)
    old = pa.table({"row_id": [0, 1], "status": ["ok", "error"], "json_file": ["json/0.json", None],
                    "audio_file": ["audio/0.mp3", None], "sha256": ["ab" * 32, None], "duration": [0.1, None],
                    "text": ["a", "b"], "error_code": [None, "empty"], "error": [None, "no samples"]})
    pq.write_table(old, ledger.parts / "part-000000000000-000002.parquet")
    ledger.append([ok_record(2)])
    records = ledger.records()
    assert [(r.row_id, r.json_sha256) for r in records] == [(0, None), (1, None), (2, f"{102:064x}")]
    assert records[0].sha256 == "ab" * 32 and records[1].error_code == "empty"
    assert ledger.summary().rows == 3
