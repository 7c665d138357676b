"""Splits that are not parquet: audio folders, WebDataset shards, arrow, CSV; staged as parquet, then synced."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc
import pytest

from hugflow_ray.api import sync
from hugflow_ray.settings import Settings, load_settings
from tests.audio_fixtures import decode_back
from tests.conftest import HubFixture

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture
def settings(hub: HubFixture, tmp_path: Path) -> Settings:
    return load_settings(hf_endpoint=hub.endpoint, storage_root=tmp_path / "datasets", state_dir=tmp_path / "state",
                         processed_root=tmp_path / "processed")


def request(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "requests" / "add" / "req.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def row(report: object, row_id: int) -> dict:
    return json.loads((report.dataset_dir / "json" / f"{row_id}.json").read_text())  # type: ignore[attr-defined]


@pytest.mark.hub
def test_an_audio_folder_joins_metadata_by_file_name(settings: Settings, tmp_path: Path) -> None:
    path = request(tmp_path, "hf_id: org/audiofolder\ndescription: d\n")
    report = sync(path, settings)
    assert (report.rows_done, report.row_errors) == (3, 0)
    first, second, third = row(report, 0), row(report, 1), row(report, 2)
    assert (first["text"], first["speaker"], first["audio"]) == ("hello there", "s1", "audio/00000/a.mp3")
    assert (second["audio_info"]["source_channels"], second["audio_info"]["output_sample_rate"]) == (2, 22050)
    assert third["text"] is None and third["audio_info"]["output_sample_rate"] == 8000
    assert decode_back((report.dataset_dir / first["audio"]).read_bytes()).sample_rate == 16000
    stamps = {p: p.stat().st_mtime_ns for p in report.dataset_dir.rglob("*")}
    assert sync(path, settings).already_complete
    assert {p: p.stat().st_mtime_ns for p in report.dataset_dir.rglob("*")} == stamps


@pytest.mark.hub
def test_webdataset_shards_give_a_column_per_extension(settings: Settings, tmp_path: Path) -> None:
    report = sync(request(tmp_path, "hf_id: org/wds\ndescription: d\naudio_column: flac\ntext_column: txt\n"), settings)
    assert report.rows_done == 3
    sample = row(report, 2)
    assert (sample["__key__"], sample["txt"], sample["json"]) == ("s2", "text of s2", {"speaker": "2", "quality": 0})
    assert sample["audio"] == "audio/00001/s2.mp3"
    manifest = (report.dataset_dir / "manifest.jsonl").read_text().splitlines()
    assert json.loads(manifest[0])["text"] == "text of s0"


@pytest.mark.hub
def test_a_webdataset_without_the_named_audio_column_fails_with_the_columns(settings: Settings, tmp_path: Path) -> None:
    from hugflow_ray.errors import PlanError

    with pytest.raises(PlanError, match=r"audio column 'audio' does not exist\. Columns: __key__, flac, txt, json"):
        sync(request(tmp_path, "hf_id: org/wds\ndescription: d\n"), settings)


def test_a_local_arrow_split_is_read(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "ds" / "data").mkdir(parents=True)
    table = pa.table({"text": ["x", "y", "z"], "n": [1, 2, 3]})
    with pa.OSFile(str(tmp_path / "ds" / "data" / "train-00000-of-00001.arrow"), "wb") as sink:
        with pyarrow.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    report = sync(request(tmp_path, "path: ../../ds\ndescription: d\n"), settings)
    assert report.rows_done == 3 and row(report, 2) == {"text": "z", "n": 3, "row_id": 2, "audio": None,
                                                    "audio_info": None}


def test_a_local_csv_split_is_metadata_only(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "train.csv").write_text("text,label\nfirst,0\nsecond,1\n")
    report = sync(request(tmp_path, "path: ../../ds\ndescription: d\n"), settings)
    assert report.rows_done == 2 and row(report, 1)["text"] == "second"
    assert not list((report.dataset_dir / "audio").iterdir())


@pytest.mark.hub
def test_a_repo_with_a_loading_script_is_read_from_the_hubs_parquet_conversion(
    hub: HubFixture, settings: Settings, tmp_path: Path
) -> None:
    from hugflow_ray.adapters.hub import Hub
    from hugflow_ray.core.request import parse_request
    from hugflow_ray.pipeline.plan import make_plan

    plan = make_plan(parse_request("hf_id: org/script\ndescription: d\n"), hub=Hub(endpoint=hub.endpoint))
    assert (plan.identity.sha, plan.files_sha) == (hub.shas["org/script"], hub.shas["org/script@parquet"])
    assert [f.path for f in plan.files] == ["default/train/0000.parquet"]
    report = sync(request(tmp_path, "hf_id: org/script\ndescription: d\n"), settings)
    assert (report.rows_done, report.sha) == (5, hub.shas["org/script"])
    assert row(report, 4)["text"] == "utterance 4"


@pytest.mark.hub
def test_a_loading_script_without_a_conversion_is_refused_with_the_reason(
    settings: Settings, tmp_path: Path
) -> None:
    from hugflow_ray.errors import UnreadableLayoutError

    with pytest.raises(UnreadableLayoutError, match="has no parquet conversion"):
        sync(request(tmp_path, "hf_id: org/script-only\ndescription: d\n"), settings)
