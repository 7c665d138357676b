"""`hugflow drift`: which copies of the repository's Hub requests the Hub has moved past, against olah with a second
commit pushed after the copy was made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hugflow_ray.cli.main import app
from hugflow_ray.pipeline.sync import sync
from hugflow_ray.settings import Settings
from tests import datasets_fixtures as fx
from tests.conftest import LICENSED, HubFixture
from tests.hub_server import make_dataset_repo

pytestmark = [pytest.mark.hub, pytest.mark.usefixtures("ray_session")]


def drift_cli(settings: Settings, requests: Path, *args: str, endpoint: str | None = None) -> tuple[int, str]:
    env = {"STORAGE_ROOT": str(settings.storage_root), "STATE_DIR": str(settings.state_dir),
           "HF_ENDPOINT": endpoint or settings.hf_endpoint}
    result = CliRunner().invoke(app, ["drift", "--requests", str(requests), *args], env=env)
    return result.exit_code, result.stdout


def test_drift_lists_a_copy_whose_revision_moved_and_whose_licence_changed(hub: HubFixture, settings: Settings,
                                                                          tmp_path: Path) -> None:
    first = make_dataset_repo(hub.server.mirrors_dir, "drift/calls", {"data/train.parquet": fx.parquet_bytes(
        fx.speech_records(3), fx.speech_features(), row_group_size=4)}, card=LICENSED)
    requests = tmp_path / "requests"
    (requests / "add").mkdir(parents=True)
    (requests / "add" / "calls.yaml").write_text("hf_id: drift/calls\ndescription: d\n")
    (requests / "add" / "shards.yaml").write_text("hf_id: org/shards\ndescription: no copy yet\n")
    (tmp_path / "local").mkdir()
    (requests / "add" / "local.yaml").write_text("path: ../../local\ndescription: not on the Hub\n")
    name = sync(requests / "add" / "calls.yaml", settings).dataset_name

    code, out = drift_cli(settings, requests, "--json")
    assert code == 0, out
    (same,) = json.loads(out)  # the request without a copy and the local one are not drift's
    assert (same["dataset_name"], same["copy_sha"], same["hub_sha"]) == (name, first, first)
    assert not same["moved"] and not same["licence_changed"] and same["error"] is None
    assert drift_cli(settings, requests)[1].strip() == "no drift: 1 copies of Hub requests match the Hub"

    second = make_dataset_repo(hub.server.mirrors_dir, "drift/calls", {"data/train-more.parquet": fx.parquet_bytes(
        fx.speech_records(2, start=3), fx.speech_features(), row_group_size=4)}, card={"license": "cc-by-nc-4.0"})
    code, out = drift_cli(settings, requests, "--json")
    (moved,) = json.loads(out)
    assert (moved["copy_sha"], moved["hub_sha"], moved["moved"]) == (first, second, True)
    assert (moved["licence_before"], moved["licence_now"], moved["licence_changed"]) == (
        "cc-by-4.0", "cc-by-nc-4.0", True)
    assert moved["licence_verdict"].startswith("CC-BY-NC-4.0: refused")
    code, out = drift_cli(settings, requests)
    assert code == 0 and out.splitlines() == [
        f"moved     {name}: drift/calls@main {first[:12]} -> {second[:12]}  ({requests / 'add' / 'calls.yaml'})",
        f"licence   {name}: cc-by-4.0 -> {moved['licence_verdict']}",
        "1 of 1 copies of Hub requests drifted",
    ]

    code, out = drift_cli(settings, requests, endpoint="http://127.0.0.1:9")
    assert code == 1, "a Hub that does not answer fails the check"
    lines = out.splitlines()
    assert lines[0].startswith(f"error     {name}: ") and len(lines) == 2
    assert lines[1] == "no drift: 0 copies of Hub requests match the Hub; 1 could not be checked"
