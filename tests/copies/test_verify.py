"""Verify and repair of a dataset copy: real syncs of a small Hub dataset, damaged on disk, checked, made whole."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hugflow_ray.copies import verify as verify_module
from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.copies.ledger import Ledger
from hugflow_ray.copies.status import read_status, write_status
from hugflow_ray.copies.verify import VERIFY_BATCH_ROWS, MissingFile, verify
from hugflow_ray.core.records import DatasetState
from hugflow_ray.errors import DatasetNotFoundError, RepairError
from hugflow_ray.pipeline.repair import repair
from hugflow_ray.pipeline.sync import SyncReport, sync
from hugflow_ray.settings import Settings, load_settings
from hugflow_ray.utils.failpoints import FAILPOINT_VARIABLE
from tests.conftest import HubFixture, hub_request
from tests.helpers import raw_ledger_ids

pytestmark = [pytest.mark.hub, pytest.mark.usefixtures("ray_session")]

ROWS = 12  # org/calls
KILL_TIMEOUT = 120


def outputs(dataset_dir: Path) -> dict[str, bytes]:
    """Every file of the copy but the ledger's own bookkeeping under .hugflow/."""
    return {str(p.relative_to(dataset_dir)): p.read_bytes() for p in sorted(dataset_dir.rglob("*"))
            if p.is_file() and ".hugflow" not in p.relative_to(dataset_dir).parts}


def walked_size(directory: Path) -> int:
    """Bytes of the regular files under ``directory``, counted without the code under test."""
    return sum(p.lstat().st_size for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def synced(settings: Settings, tmp_path: Path) -> SyncReport:
    report = sync(hub_request(tmp_path, "org/calls"), settings)
    assert (report.state, report.rows_done) == (DatasetState.COMPLETE, ROWS)
    return report


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def audio_of(dataset_dir: Path, row_id: int) -> str:
    return next(r.audio_file for r in Ledger(dataset_dir).records() if r.row_id == row_id and r.audio_file)


@pytest.mark.parametrize("batch_rows", [VERIFY_BATCH_ROWS, 5], ids=["one-batch", "batches-of-5"])
def test_a_clean_copy_verifies_ok(settings: Settings, tmp_path: Path, batch_rows: int,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_module, "VERIFY_BATCH_ROWS", batch_rows)
    copy = synced(settings, tmp_path)
    report = verify(StoreLayout.of(settings), copy.dataset_name)
    assert report.ok and report.state is DatasetState.COMPLETE
    assert (report.rows, report.files_checked) == (ROWS, 2 * ROWS)
    assert report.bytes_checked == sum(len(data) for name, data in outputs(copy.dataset_dir).items()
                                       if name.startswith(("audio/", "json/")))
    assert (report.missing, report.changed, report.unexpected, report.no_checksum) == ([], [], [], [])
    assert report.lines()[0].startswith(f"{copy.dataset_name}: ok (12 rows, 24 files")


@pytest.mark.parametrize("batch_rows", [VERIFY_BATCH_ROWS, 5], ids=["one-batch", "batches-of-5"])
def test_damaged_files_are_found_and_repair_reconverts_exactly_their_rows_byte_identically(
    settings: Settings, tmp_path: Path, batch_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verify reads the ledger a batch at a time: rows 3 and 7 fall in different batches of 5."""
    monkeypatch.setattr(verify_module, "VERIFY_BATCH_ROWS", batch_rows)
    copy = synced(settings, tmp_path)
    directory, name = copy.dataset_dir, copy.dataset_name
    before = outputs(directory)
    changed_mp3 = audio_of(directory, 3)
    flip_a_byte(directory / changed_mp3)
    (directory / "json" / "7.json").unlink()
    (directory / "audio" / "stray.mp3").write_bytes(b"not ours")
    (directory / "json" / ".8.json.tmp-hugflow").write_bytes(b"{")

    report = verify(StoreLayout.of(settings), name)
    assert not report.ok
    assert report.missing == [MissingFile(7, "json/7.json")]
    [changed] = report.changed
    assert changed[:2] == (3, changed_mp3) and changed.expected != changed.actual
    assert changed.expected == next(r.sha256 for r in Ledger(directory).records() if r.row_id == 3)
    assert report.unexpected == ["audio/stray.mp3", "json/.8.json.tmp-hugflow"]
    assert report.bad_rows == [3, 7]
    assert any(line.startswith("changed: ") and changed.actual in line for line in report.lines())

    repaired = repair(settings, name, report=report)
    assert repaired.rows_dropped == [3, 7]
    assert set(repaired.files_removed) == {changed_mp3, "json/3.json", audio_of(directory, 7), "audio/stray.mp3",
                                           "json/.8.json.tmp-hugflow"}
    assert repaired.sync is not None
    assert (repaired.sync.newly_processed, repaired.sync.resumed_from) == (2, ROWS - 2)
    assert repaired.sync.dataset_dir == directory
    assert outputs(directory) == before
    assert sorted(raw_ledger_ids(directory)) == list(range(ROWS)), "each row exactly once in the ledger"
    again = verify(StoreLayout.of(settings), name)
    assert again.ok and again.state is DatasetState.COMPLETE
    status = read_status(directory)
    assert status is not None and (status.state, status.rows_done) == (DatasetState.COMPLETE, ROWS)
    assert status.size_bytes == walked_size(directory), "the re-sync measured the repaired copy"


def test_a_repair_that_only_deletes_unexpected_files_measures_the_complete_copy_again(
    settings: Settings, tmp_path: Path
) -> None:
    directory = settings.storage_root / "org__calls__split_train__rev_main"
    (directory / "audio").mkdir(parents=True)
    (directory / "audio" / "stray.mp3").write_bytes(b"not ours" * 1000)  # there while the copy was made
    copy = synced(settings, tmp_path)
    assert copy.dataset_dir == directory
    counted = read_status(directory)
    assert counted is not None and counted.size_bytes == walked_size(directory)

    report = verify(StoreLayout.of(settings), copy.dataset_name)
    assert report.unexpected == ["audio/stray.mp3"] and report.bad_rows == []
    repaired = repair(settings, copy.dataset_name, report=report)
    assert repaired.sync is None and repaired.files_removed == ["audio/stray.mp3"]
    status = read_status(directory)
    assert status is not None and status.state is DatasetState.COMPLETE
    assert status.size_bytes == walked_size(directory) <= counted.size_bytes - 8000


def test_an_unknown_copy_is_refused_naming_the_command_that_lists_them(settings: Settings) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"no dataset 'org__nope' under .*; `hugflow status` lists them"):
        verify(StoreLayout.of(settings), "org__nope")
    with pytest.raises(DatasetNotFoundError):
        repair(settings, "../elsewhere")


def test_a_copy_made_before_json_checksums_says_so_and_still_finds_a_missing_json(
    settings: Settings, tmp_path: Path
) -> None:
    copy = synced(settings, tmp_path)
    ledger = Ledger(copy.dataset_dir)
    for part in ledger.parts.glob("part-*.parquet"):
        table = pq.read_table(part)
        pq.write_table(table.drop_columns(["json_sha256"]), part)
    (copy.dataset_dir / "json" / "2.json").unlink()
    report = verify(StoreLayout.of(settings), copy.dataset_name)
    assert report.missing == [MissingFile(2, "json/2.json")] and report.changed == []
    assert len(report.no_checksum) == ROWS - 1
    assert any("no checksum recorded" in line for line in report.lines())


def test_an_unfinished_copy_is_verified_for_the_rows_its_ledger_holds_and_repair_finishes_it(
    settings: Settings, tmp_path: Path
) -> None:
    copy = synced(settings, tmp_path)
    directory = copy.dataset_dir
    before = outputs(directory)
    ledger = Ledger(directory)
    last = max(ledger.parts.glob("part-*.parquet"))
    forgotten = pq.read_table(last, columns=["row_id"]).column("row_id").to_pylist()
    last.unlink()  # as if the sync was killed before this part was written
    status = read_status(directory)
    assert status is not None
    status.state = DatasetState.FAILED
    write_status(directory, status)

    report = verify(StoreLayout.of(settings), copy.dataset_name)
    assert report.state is DatasetState.FAILED and report.rows == ROWS - len(forgotten)
    assert report.missing == report.changed == []
    assert len(report.unexpected) == 2 * len(forgotten)  # written, but never recorded
    assert "not complete (failed)" in report.lines()[1]
    repaired = repair(settings, copy.dataset_name, report=report)
    assert repaired.rows_dropped == []
    assert repaired.sync is not None and repaired.sync.newly_processed == len(forgotten)
    assert outputs(directory) == before
    assert verify(StoreLayout.of(settings), copy.dataset_name).ok


def test_a_repair_with_other_encoder_settings_is_refused_before_anything_changes(
    settings: Settings, tmp_path: Path
) -> None:
    copy = synced(settings, tmp_path)
    (copy.dataset_dir / "json" / "0.json").unlink()
    parts = sorted(p.name for p in Ledger(copy.dataset_dir).parts.iterdir())
    lower = load_settings(**{**settings.model_dump(), "mp3_bitrate": 64})
    with pytest.raises(RepairError, match="set MP3_BITRATE and MP3_QUALITY as it was made"):
        repair(lower, copy.dataset_name)
    assert sorted(p.name for p in Ledger(copy.dataset_dir).parts.iterdir()) == parts
    assert read_status(copy.dataset_dir).state is DatasetState.COMPLETE  # type: ignore[union-attr]


@pytest.mark.crash
def test_a_repair_killed_between_a_rewritten_ledger_part_and_the_old_ones_removal_leaves_a_consistent_ledger(
    hub: HubFixture, settings: Settings, tmp_path: Path
) -> None:
    copy = synced(settings, tmp_path)
    directory, name = copy.dataset_dir, copy.dataset_name
    before = outputs(directory)
    flip_a_byte(directory / audio_of(directory, 5))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", FAILPOINT_VARIABLE)}
    env.update(STORAGE_ROOT=str(settings.storage_root), STATE_DIR=str(settings.state_dir),
               PROCESSED_ROOT=str(settings.processed_root), HF_ENDPOINT=hub.endpoint,
               **{FAILPOINT_VARIABLE: "ledger-part-rewritten"})
    script = ("import sys; from hugflow_ray.pipeline.repair import repair; from hugflow_ray.settings import "
              "load_settings; repair(load_settings(), sys.argv[1])")
    killed = subprocess.run([sys.executable, "-c", script, name], env=env, capture_output=True, timeout=KILL_TIMEOUT,
                            check=False)
    assert killed.returncode == -9, killed.stderr.decode(errors="replace")[-2000:]

    raw = raw_ledger_ids(directory)
    assert len(raw) > ROWS and raw.count(5) == 1, "killed with the rewritten part and the old one both there"
    ledger = Ledger(directory)
    assert ledger.finished_ids().tolist() == list(range(ROWS)) and ledger.summary().rows == ROWS
    assert sorted(r.row_id for r in ledger.records()) == list(range(ROWS))

    repaired = repair(settings, name)
    assert repaired.rows_dropped == [5]
    assert repaired.sync is not None and repaired.sync.newly_processed == 1
    assert outputs(directory) == before
    assert sorted(raw_ledger_ids(directory)) == list(range(ROWS))
    assert verify(StoreLayout.of(settings), name).ok


# --- repair deletes only what it can prove bad, and never reads or writes outside the copy ---------------------


def test_a_truncated_ledger_is_never_a_reason_to_empty_the_copy(settings: Settings, tmp_path: Path) -> None:
    copy = synced(settings, tmp_path)
    directory, name = copy.dataset_dir, copy.dataset_name
    before = outputs(directory)
    for part in (directory / ".hugflow" / "ledger").glob("part-*.parquet"):
        os.truncate(part, 100)
    report = verify(StoreLayout.of(settings), name)
    assert not report.ok and report.unreadable_parts and report.short
    assert any(line.startswith("unreadable ledger part: ") for line in report.lines())
    assert "a damaged ledger" in report.lines()[0]
    repaired = repair(settings, name, report=report)
    assert repaired.files_removed == [], "no file is deleted for want of a ledger row"
    assert repaired.sync is not None and repaired.sync.rows_done == ROWS
    assert outputs(directory) == before
    assert verify(StoreLayout.of(settings), name).ok


def test_a_folder_of_the_copy_replaced_by_a_link_out_of_storage_is_neither_read_nor_written(
        settings: Settings, tmp_path: Path) -> None:
    copy = synced(settings, tmp_path)
    directory, name = copy.dataset_dir, copy.dataset_name
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("not hugflow's")
    shutil.rmtree(directory / "json")
    (directory / "json").symlink_to(outside)
    report = verify(StoreLayout.of(settings), name)
    assert not report.ok and report.unsafe and "json is a symbolic link" in report.unsafe[0]
    assert "json/precious.txt" not in report.unexpected
    with pytest.raises(RepairError, match="neither reads nor writes through it"):
        repair(settings, name, report=report)
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]


def test_a_fifo_in_place_of_an_mp3_is_missing_not_a_hang(settings: Settings, tmp_path: Path) -> None:
    copy = synced(settings, tmp_path)
    mp3 = copy.dataset_dir / audio_of(copy.dataset_dir, 2)
    mp3.unlink()
    os.mkfifo(mp3)
    env = {**os.environ, "STORAGE_ROOT": str(settings.storage_root), "STATE_DIR": str(settings.state_dir)}
    done = subprocess.run([sys.executable, "-m", "hugflow_ray", "verify", copy.dataset_name], env=env,
                          capture_output=True, text=True, timeout=KILL_TIMEOUT)
    assert done.returncode == 1 and f"missing: {mp3.relative_to(copy.dataset_dir)} (row 2)" in done.stdout, done


def test_verify_all_goes_on_past_a_copy_it_cannot_check(settings: Settings, tmp_path: Path) -> None:
    copy = synced(settings, tmp_path)
    first = settings.storage_root / "0-made-elsewhere"  # sorted before the synced copy
    (first / ".hugflow").mkdir(parents=True)
    write_status(first, read_status(copy.dataset_dir).__class__.from_dict(  # type: ignore[union-attr]
        {**read_status(copy.dataset_dir).to_dict(), "dataset_name": first.name}))  # type: ignore[union-attr]
    env = {**os.environ, "STORAGE_ROOT": str(settings.storage_root), "STATE_DIR": str(settings.state_dir)}
    done = subprocess.run([sys.executable, "-m", "hugflow_ray", "verify", "--all"], env=env, capture_output=True,
                          text=True, timeout=KILL_TIMEOUT)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"{first.name}: " in done.stdout and "has no ledger" in done.stdout
    assert f"{copy.dataset_name}: ok (12 rows" in done.stdout

    (copy.dataset_dir / "json" / "7.json").unlink()
    as_json = subprocess.run([sys.executable, "-m", "hugflow_ray", "verify", "--all", "--json"], env=env,
                             capture_output=True, text=True, timeout=KILL_TIMEOUT)
    assert as_json.returncode == 1, as_json.stderr
    elsewhere, checked = json.loads(as_json.stdout)
    assert elsewhere["dataset_name"] == first.name and not elsewhere["ok"] and "has no ledger" in elsewhere["error"]
    assert (checked["dataset_name"], checked["ok"]) == (copy.dataset_name, False)
    assert checked["verify"]["missing"] == [{"row_id": 7, "path": "json/7.json"}]
    assert (checked["verify"]["rows"], checked["verify"]["files_checked"]) == (12, 24)

    listed = subprocess.run([sys.executable, "-m", "hugflow_ray", "status", "--json"], env=env, capture_output=True,
                            text=True, timeout=KILL_TIMEOUT)
    assert listed.returncode == 0, listed.stderr
    rows = {row["dataset_name"]: row for row in json.loads(listed.stdout)}
    assert (rows[copy.dataset_name]["state"], rows[copy.dataset_name]["rows_done"]) == ("complete", 12)
    assert rows[copy.dataset_name]["size_bytes"] > 0 and set(rows) == {first.name, copy.dataset_name}


def test_a_status_file_of_bytes_that_are_not_text_is_one_line_not_a_traceback(settings: Settings,
                                                                               tmp_path: Path) -> None:
    from hugflow_ray.copies.status import status_path
    from hugflow_ray.errors import DamagedStateError

    copy = synced(settings, tmp_path)
    status_path(copy.dataset_dir).write_bytes(b'{"dataset_name": "\xff\xfe"}')
    with pytest.raises(DamagedStateError, match="is damaged"):
        read_status(copy.dataset_dir)
    env = {**os.environ, "STORAGE_ROOT": str(settings.storage_root), "STATE_DIR": str(settings.state_dir),
           "PROCESSED_ROOT": str(settings.processed_root), "HF_ENDPOINT": settings.hf_endpoint}
    request = hub_request(tmp_path, "org/calls")
    done = subprocess.run([sys.executable, "-m", "hugflow_ray", "local-sync", str(request)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "is damaged" in done.stderr and "a sync of the dataset rewrites it" in done.stderr
    status_path(copy.dataset_dir).unlink()
    os.mkfifo(status_path(copy.dataset_dir))
    with pytest.raises(DamagedStateError, match="not a regular file"):
        read_status(copy.dataset_dir)
