"""The seed's per-row JSON contract: ``"audio"`` is the MP3's path, relative to the dataset directory, so plain
scripts, ``jq -r .audio`` and path-column loaders (the ``datasets`` library's ``Audio()``) read it as it is."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from hugflow_ray.api import sync
from hugflow_ray.errors import SyncError
from hugflow_ray.settings import Settings
from tests.audio_fixtures import decode_back
from tests.conftest import hub_request

pytestmark = [pytest.mark.hub, pytest.mark.usefixtures("ray_session")]


def test_every_json_names_its_mp3_by_a_relative_path_that_opens(settings: Settings, tmp_path: Path) -> None:
    report = sync(hub_request(tmp_path, "org/shards"), settings)
    root, link = report.dataset_dir, settings.processed_root / report.dataset_name
    rows = [json.loads(p.read_text()) for p in sorted((root / "json").glob("*.json"))]
    assert len(rows) == 26
    for row in rows:
        assert isinstance(row["audio"], str) and row["audio"].startswith("audio/") and row["audio"].endswith(".mp3")
        mp3 = (root / row["audio"]).read_bytes()
        assert decode_back(mp3).sample_rate == row["audio_info"]["output_sample_rate"]
        assert (link / row["audio"]).read_bytes() == mp3, "the same path works through the processed symlink"
    assert {row["audio"] for row in rows} == {p.relative_to(root).as_posix() for p in (root / "audio").glob("*/*")}


def test_the_jsons_load_with_the_datasets_library_and_cast_to_audio(settings: Settings, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)  # the library's own call home
    report = sync(hub_request(tmp_path, "org/calls"), settings)
    files = sorted((report.dataset_dir / "json").glob("*.json"), key=lambda p: int(p.stem))
    loaded = datasets.load_dataset("json", data_files=[str(p) for p in files], split="train",
                                   cache_dir=str(tmp_path / "cache"))
    cast = loaded.cast_column("audio", datasets.Audio())
    assert isinstance(cast.features["audio"], datasets.Audio)
    stored = cast.data.column("audio").to_pylist()  # the Audio storage: {"bytes", "path"}, not decoded here
    assert [value["path"] for value in stored] == [json.loads(p.read_text())["audio"] for p in files]
    assert all((report.dataset_dir / value["path"]).is_file() for value in stored)
    assert cast["row_id"] == list(range(12)) and cast["audio_info"][0]["bitrate_kbps"] == 160


def test_a_dataset_made_in_the_older_output_format_asks_for_restart(settings: Settings, tmp_path: Path) -> None:
    path = hub_request(tmp_path, "org/calls")
    report = sync(path, settings)
    meta = report.dataset_dir / ".hugflow" / "meta.json"
    recorded = json.loads(meta.read_text())
    recorded["fingerprint"]["format_version"] = 1  # what a dataset synced before "audio" became a path says
    meta.write_text(json.dumps(recorded))
    with pytest.raises(SyncError, match=r"other settings \(format_version\); run again with --restart"):
        sync(path, settings)
    assert sync(path, settings, restart=True).rows_done == 12
