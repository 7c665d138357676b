"""The pipeline end to end: the olah Hub -> Ray Data -> one writer actor -> MP3 + JSON, ledger, resume, remove."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hugflow_ray.api import dataset_size, remove, status, sync
from hugflow_ray.cli.main import app
from hugflow_ray.copies.ledger import Ledger
from hugflow_ray.copies.locks import DatasetLock
from hugflow_ray.core import naming
from hugflow_ray.errors import PlanError, SyncError
from hugflow_ray.pipeline.progress import read_progress
from hugflow_ray.pipeline.readers.parts import Part, units_per_part
from hugflow_ray.settings import Settings, load_settings
from tests.audio_fixtures import decode_back
from tests.conftest import HubFixture

pytestmark = [pytest.mark.hub, pytest.mark.usefixtures("ray_session")]


@pytest.fixture
def settings(hub: HubFixture, tmp_path: Path) -> Settings:
    return load_settings(
        hf_endpoint=hub.endpoint,
        storage_root=tmp_path / "datasets",
        state_dir=tmp_path / "state",
        processed_root=tmp_path / "processed",
        progress_interval=5,
    )


def request(tmp_path: Path, text: str, name: str = "req.yaml", kind: str = "add") -> Path:
    path = tmp_path / "requests" / kind / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def walked_size(directory: Path) -> int:
    """Bytes of the regular files under ``directory``, counted without the code under test."""
    return sum(p.lstat().st_size for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_sharded_dataset_becomes_mp3s_jsons_ledger_and_manifest(
    hub: HubFixture, settings: Settings, tmp_path: Path
) -> None:
    report = sync(request(tmp_path, "hf_id: org/shards\ndescription: d\n"), settings)
    assert (report.state, report.rows_total, report.rows_done, report.row_errors) == ("complete", 26, 26, 0)
    assert report.sha == hub.shas["org/shards"]
    directory = settings.storage_root / "org__shards__split_train__rev_main"
    assert report.dataset_dir == directory
    jsons = sorted(directory.glob("json/*.json"))
    assert [int(p.stem) for p in sorted(jsons, key=lambda p: int(p.stem))] == list(range(26))
    assert len(list(directory.glob("audio/*/*.mp3"))) == 26
    row = json.loads((directory / "json" / "11.json").read_text())
    assert row["row_id"] == 11 and row["text"] == "utterance 11" and row["speaker_id"] == 3
    assert row["meta"] == {"tags": ["a", "b"], "score": pytest.approx(1.1)}
    assert "bytes" not in json.dumps(row)
    mp3 = directory / row["audio"]
    assert decode_back(mp3.read_bytes()).sample_rate == row["audio_info"]["output_sample_rate"] == 16000
    assert row["audio_info"]["bitrate_kbps"] == 160 and row["audio_info"]["duration"] == pytest.approx(0.2)
    ledger = Ledger(directory).read()
    assert ledger.column("row_id").to_pylist() == list(range(26))
    manifest = [json.loads(line) for line in (directory / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 26 and manifest[0]["text"] == "utterance 0"
    assert all((directory / m["audio_filepath"]).is_file() for m in manifest)
    assert pq.read_table(directory / "manifest.parquet").num_rows == 26
    assert (settings.processed_root / directory.name).resolve() == directory.resolve()


def test_hostile_and_duplicate_audio_filenames_get_safe_unique_deterministic_names(
    settings: Settings, tmp_path: Path
) -> None:
    report = sync(request(tmp_path, "hf_id: org/shards\ndescription: d\n"), settings)
    audio = report.dataset_dir / "audio"
    names = sorted(p.relative_to(audio).as_posix() for p in audio.glob("*/*"))
    assert len(names) == len(set(n.lower() for n in names)) == 26
    assert all(len(n) <= naming.MAX_STEM_LENGTH + 26 and n.count("/") == 1 and "\x00" not in n for n in names)
    # names are decided within a part (a shard: its own folder): "ok_name" is plain in each shard that has it once,
    # "x", "dup" and "DUP" share a shard with another row asking for the same name (case-insensitively)
    assert {"00000/ok_name.mp3", "00002/ok_name.mp3", "00000/x+0.mp3", "00000/dup+4.mp3", "00000/DUP+5.mp3"} <= set(names)
    assert "00000/clip_1.mp3" in names  # empty name -> source path stem
    again = load_settings(**{**settings.model_dump(), "storage_root": tmp_path / "again"})
    second = sync(request(tmp_path, "hf_id: org/shards\ndescription: d\n", "b.yaml"), again)
    assert sorted(p.relative_to(second.dataset_dir / "audio").as_posix()
                  for p in (second.dataset_dir / "audio").glob("*/*")) == names


def test_the_last_part_is_read_as_a_slice_per_core_as_no_other_part_is_left_to_share_them() -> None:
    mb = 1 << 20
    # eight shards of 12 MB on 2 cores: a slice each (about 12 MB), but the last, which arrives last, is cut in two
    assert units_per_part([Part(i, (i,), 12 * mb) for i in range(8)], "parquet", cpus=2) == [1] * 7 + [2]
    assert units_per_part([Part(i, (i,), 12 * mb) for i in range(8)], "webdataset", cpus=8) == [4] * 7 + [8]
    # a last part already cut finer stays so; one too small to cut is not cut; formats read whole stay whole
    assert units_per_part([Part(0, (0,), 64 * mb), Part(1, (1,), 64 * mb)], "parquet", cpus=2) == [4, 4]
    assert units_per_part([Part(0, (0,), 12 * mb), Part(1, (1,), 1500)], "parquet", cpus=4) == [16, 1]
    assert units_per_part([Part(i, (i,), 12 * mb) for i in range(3)], "json", cpus=4) == [1, 1, 1]
    assert units_per_part([], "parquet", cpus=4) == []


def test_a_single_big_file_is_cut_into_units_that_use_every_core(settings: Settings, tmp_path: Path) -> None:
    assert units_per_part([Part(0, (0,), 64 << 20)], "parquet", cpus=2) == [8]
    report = sync(request(tmp_path, "hf_id: org/bigfile\ndescription: d\n"), settings)
    assert (report.rows_done, report.row_errors) == (64, 0)
    assert len(list((report.dataset_dir / "json").iterdir())) == 64


def test_a_subset_syncs_its_own_split(hub: HubFixture, settings: Settings, tmp_path: Path) -> None:
    report = sync(request(tmp_path, "hf_id: org/speech\ndescription: d\nsubset: clean\nsplit: test\n"), settings)
    assert report.dataset_dir.name == "org__speech__subset_clean__split_test__rev_main"
    assert report.rows_done == 2


def test_awkward_rates_are_converted_and_bad_rows_recorded_not_fatal(settings: Settings, tmp_path: Path) -> None:
    lenient = load_settings(**{**settings.model_dump(), "max_row_error_rate": 0.6})
    report = sync(request(tmp_path, "hf_id: org/mixed\ndescription: d\n"), lenient)
    assert (report.state, report.rows_done, report.row_errors) == ("complete", 8, 4)
    facts = {
        row_id: json.loads((report.dataset_dir / "json" / f"{row_id}.json").read_text())["audio_info"]
        for row_id in range(4)
    }
    assert (facts[0]["source_sample_rate"], facts[0]["source_channels"], facts[0]["output_sample_rate"]) == (
        44100, 2, 44100
    )
    assert facts[1]["output_sample_rate"] == 48000 and facts[1]["bitrate_kbps"] == 192
    assert facts[2]["output_sample_rate"] == 8000 and facts[2]["bitrate_kbps"] == 64
    assert (facts[3]["source_sample_rate"], facts[3]["output_sample_rate"]) == (96000, 48000)
    assert not any((report.dataset_dir / "json" / f"{row_id}.json").exists() for row_id in range(4, 8))
    result = CliRunner().invoke(app, ["status", report.dataset_name, "--errors"],
                                env={"STORAGE_ROOT": str(settings.storage_root)})
    assert result.exit_code == 0, result.output
    assert "4 row errors" in result.output
    assert "row 4: [undecodable]" in result.output and "row 5: [non_finite]" in result.output
    assert "row 7: [empty]" in result.output
    listed = CliRunner().invoke(app, ["status", report.dataset_name, "--errors", "--json"],
                                env={"STORAGE_ROOT": str(settings.storage_root)})
    assert listed.exit_code == 0, listed.output
    errors = {e["row_id"]: e["error_code"] for e in json.loads(listed.stdout)}
    assert sorted(errors) == [4, 5, 6, 7] and (errors[4], errors[5], errors[7]) == ("undecodable", "non_finite", "empty")


def test_too_many_row_errors_fail_the_sync(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(SyncError, match=r"4 of 8 rows failed \(limit 5%\)"):
        sync(request(tmp_path, "hf_id: org/mixed\ndescription: d\n"), settings)
    assert status(settings)[0].state == "failed"


def test_a_text_only_dataset_is_synced_metadata_only(settings: Settings, tmp_path: Path) -> None:
    report = sync(request(tmp_path, "hf_id: org/textonly\ndescription: d\n"), settings)
    assert report.rows_done == 2
    assert not list((report.dataset_dir / "audio").iterdir())
    assert json.loads((report.dataset_dir / "json" / "1.json").read_text()) == {
        "text": "b", "label": 1, "row_id": 1, "audio": None, "audio_info": None
    }


def test_a_missing_split_fails_before_any_work(settings: Settings, tmp_path: Path) -> None:
    from hugflow_ray.errors import SplitNotFoundError

    with pytest.raises(SplitNotFoundError):
        sync(request(tmp_path, "hf_id: org/shards\ndescription: d\nsplit: dev\n"), settings)
    assert not settings.storage_root.exists()


def test_a_missing_explicit_audio_column_fails_before_any_work(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="audio column 'speech' does not exist"):
        sync(request(tmp_path, "hf_id: org/shards\ndescription: d\naudio_column: speech\n"), settings)


def test_a_complete_dataset_is_left_untouched(settings: Settings, tmp_path: Path) -> None:
    path = request(tmp_path, "hf_id: org/bigfile\ndescription: d\n")
    first = sync(path, settings)
    stamps = {p: p.stat().st_mtime_ns for p in first.dataset_dir.rglob("*")}
    second = sync(path, settings)
    assert second.already_complete and second.newly_processed == 0
    assert {p: p.stat().st_mtime_ns for p in first.dataset_dir.rglob("*")} == stamps


def test_a_resume_converts_only_the_missing_rows(settings: Settings, tmp_path: Path) -> None:
    path = request(tmp_path, "hf_id: org/shards\ndescription: d\n")
    first = sync(path, settings)
    expected = tree(first.dataset_dir / "audio")
    ledger = Ledger(first.dataset_dir)
    ledger.drop_rows(range(13, 26))  # as if the sync had stopped half way (finalize merged its parts into one)
    for mp3 in (first.dataset_dir / "audio").glob("*/*"):
        mp3.unlink()  # a resumed row must be rewritten; a finished one must not be touched
    remaining = ledger.finished_ids()
    (first.dataset_dir / ".hugflow" / "status.json").unlink()
    report = sync(path, settings)
    assert report.resumed_from == len(remaining) > 0
    assert report.newly_processed == 26 - len(remaining)
    rewritten = tree(first.dataset_dir / "audio")
    assert len(rewritten) == 26 - len(remaining)
    assert all(expected[name] == data for name, data in rewritten.items())
    progress = read_progress(settings.state_dir, report.dataset_name)
    assert progress is not None and progress.resumed_from == len(remaining)
    assert progress.resume_data["finished_ranges"] == [[0, 25]]


def test_changed_settings_refuse_to_resume_until_restart(settings: Settings, tmp_path: Path) -> None:
    path = request(tmp_path, "hf_id: org/bigfile\ndescription: d\n")
    sync(path, settings)
    lower = load_settings(**{**settings.model_dump(), "mp3_bitrate": 64})
    (settings.storage_root / "org__bigfile__split_train__rev_main" / ".hugflow" / "status.json").unlink()
    with pytest.raises(SyncError, match=r"other settings \(encoder\); run again with --restart"):
        sync(path, lower)
    report = sync(path, lower, restart=True)
    row = json.loads((report.dataset_dir / "json" / "0.json").read_text())
    assert row["audio_info"]["bitrate_kbps"] == 64


def test_a_second_sync_of_a_locked_dataset_is_refused_naming_the_holder(settings: Settings, tmp_path: Path) -> None:
    path = request(tmp_path, "hf_id: org/bigfile\ndescription: d\n")
    with DatasetLock(settings.state_dir, "org__bigfile__split_train__rev_main", owner="PR #42"):
        with pytest.raises(SyncError, match=rf"locked by PR #42 \(pid {os.getpid()} on "):
            sync(path, settings)


def test_progress_is_written_at_the_interval_and_reported(settings: Settings, tmp_path: Path) -> None:
    seen: list[int] = []
    sync(request(tmp_path, "hf_id: org/shards\ndescription: d\n"), settings,
         on_progress=lambda p: seen.append(p.rows_done))
    assert seen[0] == 0 and seen[-1] == 26
    assert len(seen) >= 3 and seen == sorted(seen)
    progress = read_progress(settings.state_dir, "org__shards__split_train__rev_main")
    assert progress is not None
    assert (progress.status, progress.rows_total, progress.percent_complete) == ("complete", 26, 100.0)
    written = json.loads((settings.state_dir / "progress" / "org__shards__split_train__rev_main.json").read_text())
    assert (written["total_files"], written["downloaded_files"], written["newly_downloaded"]) == (26, 26, 26), (
        "the file keeps the seed's keys")


def test_remove_deletes_the_copy_its_link_and_progress(settings: Settings, tmp_path: Path) -> None:
    report = sync(request(tmp_path, "hf_id: org/bigfile\ndescription: d\n"), settings)
    link = settings.processed_root / report.dataset_name
    assert link.is_symlink()
    removal = remove(request(tmp_path, "hf_id: org/bigfile\nreason: r\n", kind="remove"), settings)
    assert not report.dataset_dir.exists() and not link.exists()
    assert read_progress(settings.state_dir, report.dataset_name) is None
    assert str(report.dataset_dir) in removal.removed
    with pytest.raises(SyncError, match="nothing to remove"):
        remove(request(tmp_path, "hf_id: org/bigfile\nreason: r\n", kind="remove"), settings)


def test_remove_never_follows_a_symlink_out_of_storage(settings: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    settings.storage_root.mkdir(parents=True)
    (settings.storage_root / "org__bigfile__split_train__rev_main").symlink_to(outside)
    remove(request(tmp_path, "hf_id: org/bigfile\nreason: r\n", kind="remove"), settings)
    assert (outside / "keep.txt").read_text() == "keep"


def test_a_foreign_file_at_the_processed_link_is_never_replaced(settings: Settings, tmp_path: Path) -> None:
    settings.processed_root.mkdir(parents=True)
    foreign = settings.processed_root / "org__bigfile__split_train__rev_main"
    foreign.write_text("not ours")
    report = sync(request(tmp_path, "hf_id: org/bigfile\ndescription: d\n"), settings)
    assert report.state == "complete" and foreign.read_text() == "not ours"


def test_the_cli_syncs_reports_status_and_removes(hub: HubFixture, tmp_path: Path) -> None:
    env = {"HF_ENDPOINT": hub.endpoint, "STORAGE_ROOT": str(tmp_path / "ds"), "STATE_DIR": str(tmp_path / "st"),
           "PROCESSED_ROOT": str(tmp_path / "pr")}
    runner = CliRunner()
    add = request(tmp_path, "hf_id: org/bigfile\ndescription: d\n")
    result = runner.invoke(app, ["local-sync", str(add)], env=env)
    assert result.exit_code == 0, result.output
    assert "org__bigfile__split_train__rev_main: completed (64 rows" in result.output
    result = runner.invoke(app, ["local-sync", str(add)], env=env)
    assert "is already complete (64 rows): nothing to do." in result.output
    result = runner.invoke(app, ["status"], env=env)
    assert "org__bigfile__split_train__rev_main" in result.output and "complete" in result.output
    assert "64/64" in result.output and hub.shas["org/bigfile"][:12] in result.output
    gone = request(tmp_path, "hf_id: org/bigfile\nreason: r\n", kind="remove")
    result = runner.invoke(app, ["remove", str(gone)], env=env)
    assert result.exit_code == 0 and "removed org__bigfile__split_train__rev_main" in result.output


def test_in_memory_rows_with_arrays_decoders_and_bytes_reach_the_codec(settings: Settings) -> None:
    import numpy as np

    from hugflow_ray.api import sync_rows
    from tests.audio_fixtures import FakeAudioDecoder, encoded, sine

    nan = sine(16000)[:, 0].copy()
    nan[3] = np.nan
    records = [
        {"audio": {"array": sine(24000)[:, 0], "sampling_rate": 24000}, "text": "array"},
        {"audio": FakeAudioDecoder(sine(44100, channels=2).T.copy(), 44100), "text": "decoder"},
        {"audio": {"bytes": encoded(sine(8000), 8000), "path": "x.flac"}, "text": "hub dict"},
        {"audio": encoded(sine(16000), 16000, format="WAV"), "text": "raw bytes"},
        {"audio": {"array": nan, "sampling_rate": 16000}, "text": "nan"},
    ]
    lenient = load_settings(**{**settings.model_dump(), "max_row_error_rate": 0.5})
    report = sync_rows(records, lenient, name="my rows")
    assert (report.rows_done, report.row_errors) == (5, 1)
    facts = [json.loads((report.dataset_dir / "json" / f"{i}.json").read_text())["audio_info"] for i in range(4)]
    assert [f["output_sample_rate"] for f in facts] == [24000, 44100, 8000, 16000]
    assert facts[1]["source_channels"] == 2
    assert Ledger(report.dataset_dir).read().to_pylist()[4]["error_code"] == "non_finite"
    assert sync_rows(records, lenient, name="my rows").already_complete


def test_rows_that_name_their_audio_files_are_read_from_the_datasets_own_files(settings: Settings,
                                                                              tmp_path: Path) -> None:
    """A parquet split whose audio values carry only a ``path`` (the files sit beside it in the repository): the
    footers say so (a null count in ``audio.bytes``), and the files are read; one with bytes everywhere needs none."""
    from hugflow_ray.pipeline.readers.parts import names_files
    from tests import datasets_fixtures as fx
    from tests.audio_fixtures import encoded, sine

    records = [{"audio": {"bytes": None, "path": f"clips/{i}.flac"}, "text": f"row {i}"} for i in range(3)]
    source = fx.write_local_dataset(tmp_path / "named", [fx.parquet_bytes(records, fx.mixed_features(),
                                                                          row_group_size=2)])
    (source / "clips").mkdir()
    for i in range(3):
        (source / "clips" / f"{i}.flac").write_bytes(encoded(sine(16000, 0.2 + 0.1 * i), 16000))
    with_bytes = fx.write_local_dataset(tmp_path / "inline", [fx.parquet_bytes(fx.speech_records(3),
                                                                               fx.speech_features(),
                                                                               row_group_size=2)])
    assert names_files(sorted(source.rglob("*.parquet")), "audio")
    assert not names_files(sorted(with_bytes.rglob("*.parquet")), "audio")
    assert not names_files(sorted(source.rglob("*.parquet")), None)

    report = sync(request(tmp_path, f"path: {source}\ndescription: named files\n"), settings)
    assert (report.rows_done, report.row_errors) == (3, 0)
    durations = sorted(json.loads(p.read_text())["audio_info"]["duration"]
                       for p in (report.dataset_dir / "json").glob("*.json"))
    assert durations == pytest.approx([0.2, 0.3, 0.4], abs=0.01)


def test_dataset_size_counts_regular_files_and_never_follows_a_symlink(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    (copy / "audio" / "deep").mkdir(parents=True)
    (copy / "json").mkdir()
    files = {copy / "audio" / "0.mp3": 1000, copy / "audio" / "deep" / "1.mp3": 77, copy / "json" / "0.json": 3,
             copy / "manifest.jsonl": 0}
    for path, size in files.items():
        path.write_bytes(os.urandom(size))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big.bin").write_bytes(b"\0" * 1_000_000)
    (copy / "audio" / "link.mp3").symlink_to(outside / "big.bin")
    (copy / "json" / "linked_dir").symlink_to(outside, target_is_directory=True)
    (copy / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(copy / "fifo")
    assert dataset_size(copy) == sum(files.values()) == 1080
    assert dataset_size(tmp_path / "absent") == 0


def test_a_completed_copy_records_its_size_on_disk_in_its_status_file(settings: Settings, tmp_path: Path) -> None:
    report = sync(request(tmp_path, "hf_id: org/shards\ndescription: d\n"), settings)
    recorded = json.loads((report.dataset_dir / ".hugflow" / "status.json").read_text())
    assert recorded["state"] == "complete"
    assert recorded["size_bytes"] == walked_size(report.dataset_dir)
    assert recorded["size_bytes"] > walked_size(report.dataset_dir / "audio") > 0


def test_status_reports_a_complete_copys_recorded_size_and_walks_any_other(settings: Settings, tmp_path: Path) -> None:
    report = sync(request(tmp_path, "hf_id: org/shards\ndescription: d\n"), settings)
    status_file = report.dataset_dir / ".hugflow" / "status.json"
    recorded = json.loads(status_file.read_text())["size_bytes"]
    (row,) = status(settings)
    assert row.size_bytes == recorded == walked_size(report.dataset_dir)
    with next((report.dataset_dir / "audio").glob("*/*")).open("ab") as mp3:
        mp3.write(b"\0" * 4096)  # a change status cannot see without walking the copy
    (row,) = status(settings)
    assert row.size_bytes == recorded == walked_size(report.dataset_dir) - 4096, "read, not walked"

    failed = {**json.loads(status_file.read_text()), "state": "failed", "error": "e"}  # keeps its old size_bytes
    status_file.write_text(json.dumps(failed))
    (row,) = status(settings)
    assert (row.state, row.size_bytes) == ("failed", walked_size(report.dataset_dir))

    old = {k: v for k, v in json.loads(status_file.read_text()).items() if k != "size_bytes"}
    status_file.write_text(json.dumps({**old, "state": "complete", "error": None}))  # as written before sizes were
    (row,) = status(settings)
    assert (row.state, row.rows_done, row.size_bytes) == ("complete", 26, walked_size(report.dataset_dir))
