"""The ledger on its own: parts written by older versions, overlapping parts, dropping rows."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from hugflow_ray.copies.ledger import Ledger, _rewritten_name
from hugflow_ray.core.records import RowRecord, RowStatus


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


def ledger_of_parts(root: Path, firsts: Iterable[int], rows: int,
                    record: Callable[[int], RowRecord] = ok_record) -> Ledger:
    """A ledger under ``root`` with one part of ``rows`` records from each of ``firsts``, in that order."""
    ledger = Ledger(root)
    ledger.parts.mkdir(parents=True)
    for first in firsts:
        ledger.append([record(i) for i in range(first, first + rows)])
    return ledger


def raw_ids(ledger: Ledger) -> list[int]:
    return sorted(i for part in ledger.parts.glob("part-*.parquet")
                  for i in pq.read_table(part, columns=["row_id"]).column("row_id").to_pylist())


def test_dropped_rows_leave_every_part_that_held_them_and_the_other_rows_stay_as_they_were(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.parts.mkdir(parents=True)
    ledger.append([ok_record(i) for i in range(4)])
    ledger.append([ok_record(i) for i in range(2, 6)])  # overlaps the first, as a resume after a crash may
    ledger.append([ok_record(6)])
    before = {r.row_id: r for r in ledger.records()}

    dropped = ledger.drop_rows([3, 6, 99])
    assert dropped == [before[3], before[6]]
    assert [r.row_id for r in ledger.records()] == [0, 1, 2, 4, 5]
    assert all(r == before[r.row_id] for r in ledger.records())
    assert raw_ids(ledger) == [0, 1, 2, 2, 4, 5]  # the part of row 6 alone is gone
    assert ledger.drop_rows([3]) == [] and ledger.drop_rows([]) == []


def test_while_a_rewritten_part_and_its_old_part_both_exist_each_row_counts_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.parts.mkdir(parents=True)
    ledger.append([ok_record(i) for i in range(4)])
    [old] = ledger.parts.glob("part-*.parquet")
    table = pq.read_table(old)
    kept = table.filter(pc.not_equal(table.column("row_id"), 1))
    pq.write_table(kept, ledger.parts / _rewritten_name(kept))  # a drop of row 1 killed before the old part went

    assert ledger.finished_ids().tolist() == [0, 1, 2, 3]
    assert ledger.summary().rows == 4 and [r.row_id for r in ledger.records()] == [0, 1, 2, 3]
    assert ledger.drop_rows([1]) == [ok_record(1)]  # dropping again finishes it
    assert raw_ids(ledger) == [0, 2, 3]
    assert [r.row_id for r in ledger.records()] == [0, 2, 3]


def test_compaction_merges_every_part_into_one_with_the_same_records(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.parts.mkdir(parents=True)
    for first in range(0, 12, 3):
        ledger.append([ok_record(i) for i in range(first, first + 3)])
    ledger.append([ok_record(i) for i in range(5, 8)])  # an overlap, as a resume after a crash leaves
    before = ledger.records()
    assert ledger.compact() == 5
    assert len(list(ledger.parts.glob("part-*.parquet"))) == 1
    assert ledger.records() == before and raw_ids(ledger) == list(range(12))
    assert ledger.compact() == 0, "one part is compact already"
    ledger.append([ok_record(12)])
    assert ledger.compact() == 2 and [r.row_id for r in ledger.records()] == list(range(13))


def test_a_compaction_cut_short_leaves_every_row_once_and_compacting_again_finishes(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.parts.mkdir(parents=True)
    ledger.append([ok_record(i) for i in range(3)])
    ledger.append([ok_record(i) for i in range(3, 6)])
    before = ledger.records()
    merged = _rewritten_name(pa.Table.from_pylist([{"row_id": i} for i in range(6)]))
    # the moment after the merged part is durable and before the old parts are deleted
    pq.write_table(pa.concat_tables([pq.read_table(p) for p in sorted(ledger.parts.glob("part-*.parquet"))]),
                   ledger.parts / merged)
    assert ledger.records() == before and len(list(ledger.parts.glob("part-*.parquet"))) == 3
    assert ledger.compact() == 3
    assert [p.name for p in ledger.parts.glob("part-*.parquet")] == [merged] and ledger.records() == before


def test_compaction_leaves_full_parts_alone_so_its_cost_does_not_grow_with_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hugflow_ray.copies import ledger as ledger_module

    monkeypatch.setattr(ledger_module, "FULL_PART_ROWS", 8)
    ledger = ledger_of_parts(tmp_path, range(0, 9, 3), 3)
    assert ledger.compact() == 3
    (full,) = ledger.parts.glob("part-*.parquet")
    stamp = full.stat().st_mtime_ns
    ledger.append([ok_record(9)])
    ledger.append([ok_record(10)])
    assert ledger.compact() == 2, "only the two small parts are merged"
    assert full.stat().st_mtime_ns == stamp and len(list(ledger.parts.glob("part-*.parquet"))) == 2
    assert raw_ids(ledger) == list(range(11)) and [r.row_id for r in ledger.records()] == list(range(11))


def test_many_small_parts_merge_in_runs_of_about_a_full_part_never_into_one_whole_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A split of a few big blocks leaves few writer compactions and many rows in small parts: finalize merges them
    a run at a time, so no compaction holds the whole ledger."""
    from hugflow_ray.copies import ledger as ledger_module

    monkeypatch.setattr(ledger_module, "FULL_PART_ROWS", 8)
    ledger = ledger_of_parts(tmp_path, range(0, 35, 5), 5)
    assert ledger.compact() == 6
    sizes = sorted(pq.read_metadata(p).num_rows for p in ledger.parts.glob("part-*.parquet"))
    assert sizes == [5, 10, 10, 10], "runs of at least 8 rows, none of more than 16; the last part, alone, stays"
    assert raw_ids(ledger) == list(range(35)) and [r.row_id for r in ledger.records()] == list(range(35))
    assert ledger.compact() == 0, "every part is full but the last, which has nothing to merge with"


def manifest_record(row_id: int) -> RowRecord:
    if row_id % 7 == 6:
        return RowRecord(row_id=row_id, status=RowStatus.ERROR, error_code="decode", error="bad")
    return RowRecord(row_id=row_id, status=RowStatus.OK, json_file=f"json/{row_id}.json",
                     audio_file=f"audio/00000/{row_id}.mp3", sha256="ab" * 32, duration=0.5 + row_id,
                     text=None if row_id % 2 else f"words {row_id}")


def test_the_manifests_are_read_a_part_at_a_time_and_their_bytes_do_not_depend_on_the_ledgers_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written in fixed row groups from the parts in row order; parts a crash left overlapping are read together."""
    from hugflow_ray.copies import manifests
    from hugflow_ray.copies.layout import MANIFEST_JSONL, MANIFEST_PARQUET

    monkeypatch.setattr(manifests, "GROUP_ROWS", 4)
    ledger = ledger_of_parts(tmp_path, (10, 0, 5), 5, manifest_record)
    read: list[int] = []
    original = Ledger.sorted_parts

    def counted(self: Ledger) -> Iterator[pa.Table]:
        for part in original(self):
            read.append(part.num_rows)
            yield part

    monkeypatch.setattr(Ledger, "sorted_parts", counted)
    assert manifests.write_manifests(tmp_path) == 13
    assert read == [5, 5, 5], "one part at a time"
    manifest = pq.read_table(tmp_path / MANIFEST_PARQUET)
    assert manifest.column("row_id").to_pylist() == [i for i in range(15) if i % 7 != 6]
    assert pq.ParquetFile(tmp_path / MANIFEST_PARQUET).metadata.num_row_groups == 4
    lines = [json.loads(line) for line in (tmp_path / MANIFEST_JSONL).read_text().splitlines()]
    assert lines[:2] == [{"audio_filepath": "audio/00000/0.mp3", "duration": 0.5, "text": "words 0"},
                         {"audio_filepath": "audio/00000/1.mp3", "duration": 1.5, "text": ""}]
    parquet = (tmp_path / MANIFEST_PARQUET).read_bytes()
    jsonl = (tmp_path / MANIFEST_JSONL).read_bytes()

    ledger.append([manifest_record(i) for i in range(3, 8)])  # overlapping parts, as a crash mid-compaction leaves
    read.clear()
    manifests.write_manifests(tmp_path)
    assert read == [15], "overlapping parts are read together, each row once"
    assert (tmp_path / MANIFEST_PARQUET).read_bytes() == parquet
    ledger.compact()
    manifests.write_manifests(tmp_path)
    assert (tmp_path / MANIFEST_PARQUET).read_bytes() == parquet
    assert (tmp_path / MANIFEST_JSONL).read_bytes() == jsonl


def test_a_parquet_state_file_reads_as_the_schema_says_a_missing_column_as_nulls(tmp_path: Path) -> None:
    from hugflow_ray.copies.batches import read_parquet

    schema = pa.schema([("row_id", pa.int64()), ("sha256", pa.string()), ("duration", pa.float64())])
    pq.write_table(pa.table({"duration": pa.array([1, 2], pa.int32()), "row_id": [7, 8], "extra": ["a", "b"]}),
                   tmp_path / "old.parquet")
    table = read_parquet(tmp_path / "old.parquet", schema)
    assert table.schema == schema and table.to_pylist() == [
        {"row_id": 7, "sha256": None, "duration": 1.0}, {"row_id": 8, "sha256": None, "duration": 2.0}]
    assert read_parquet(tmp_path / "old.parquet", schema, ["sha256", "row_id"]).column_names == ["sha256", "row_id"]
    assert read_parquet(tmp_path / "old.parquet").column_names == ["duration", "row_id", "extra"]
