"""`hugflow drift --open-prs`: one pull request per moved copy, kept current while open, which the PR flow syncs as an
incremental update. Against the fake GitHub (branches, commits and pull requests made in a real git repository) and
olah with commits pushed after the copy was made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hugflow_ray.catalog.drift import NOTE
from hugflow_ray.cli.main import app
from hugflow_ray.copies.status import read_status
from tests import datasets_fixtures as fx
from tests.conftest import LICENSED, HubFixture
from tests.gitops_world import World, commit, request_yaml
from tests.hub_server import make_dataset_repo

pytestmark = pytest.mark.hub

HF_ID = "drift/prs"
PATH = "requests/add/prs.yaml"


@pytest.fixture(autouse=True)
def drivers_join_a_running_ray(joined_ray: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in joined_ray.items():
        monkeypatch.setenv(name, value)


def shard(rows: int, start: int) -> bytes:
    return fx.parquet_bytes(fx.speech_records(rows, start=start), fx.speech_features(), row_group_size=4)


def drift_prs(checkout: Path) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(app, ["drift", "--requests", str(checkout / "requests"), "--open-prs", "--json"])
    assert result.exit_code == 0, result.output
    (found,) = json.loads(result.stdout)
    return result.exit_code, found


def at(repo: Path, ref: str, path: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "show", f"{ref}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def test_a_moved_copy_gets_one_pull_request_kept_current_which_the_pr_flow_syncs_incrementally(
        world: World, hub: HubFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_dataset_repo(hub.server.mirrors_dir, HF_ID, {"data/train-0.parquet": shard(3, 0),
                                                            "data/train-1.parquet": shard(2, 3)}, card=LICENSED)
    text = request_yaml(HF_ID)
    merged = commit(world.repo, {PATH: text})  # the request, merged on the default branch
    subprocess.run(["git", "-C", str(world.repo), "update-ref", "refs/heads/main", merged], check=True)
    checkout = tmp_path / "checkout"  # the scheduled workflow's checkout of the default branch
    (checkout / PATH).parent.mkdir(parents=True)
    (checkout / PATH).write_text(text)
    monkeypatch.setenv("KEEP_PREVIOUS_COPY", "true")
    synced = subprocess.run([sys.executable, "-m", "hugflow_ray", "local-sync", str(checkout / PATH)],
                            check=False, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert synced.returncode == 0, synced.stdout + synced.stderr
    (copy_dir,) = (tmp_path / "datasets").iterdir()

    second = make_dataset_repo(hub.server.mirrors_dir, HF_ID, {"data/train-1.parquet": shard(3, 10)}, card=LICENSED)
    _, found = drift_prs(checkout)
    pull = found["pull_request"]
    assert isinstance(pull, dict) and pull["action"] == "opened"
    opened = world.github.pulls[pull["number"]]
    assert opened.head_ref == f"hugflow/drift/{copy_dir.name}" and opened.title == \
        f"Update {HF_ID} (main) to {second[:12]}"
    note = f"{NOTE}{HF_ID}@main moved from {first[:12]} to {second[:12]} on the Hub"
    assert at(world.repo, opened.head_sha, PATH) == f"{note}\n{text}", "the request itself is unchanged"
    assert world.github._files(opened) == [{"filename": PATH, "status": "modified"}]
    assert first in opened.body and second in opened.body

    assert drift_prs(checkout)[1]["pull_request"] == {**pull, "action": "unchanged"}
    assert len(world.github.pulls) == 1

    # the PR flow syncs it: the copy is updated, the rows of the unchanged file taken over from it
    world.event(opened.number, opened.head_sha, action="opened")
    assert world.run() == 0
    assert "✅ synced" in world.comment(opened.number, PATH)
    status = read_status(copy_dir)
    assert status is not None and status.identity.sha == second
    kept = tmp_path / "datasets" / ".previous" / f"{copy_dir.name}@{first[:12]}"
    taken = {p.name for p in (copy_dir / "audio").rglob("*.mp3")
             if p.stat().st_ino in {q.stat().st_ino for q in (kept / "audio").rglob("*.mp3")}}
    assert taken == {"clip_0.mp3", "clip_1.mp3", "clip_2.mp3"}, "the unchanged shard's rows were taken over"

    # the Hub moves again before the merge: the same pull request follows
    third = make_dataset_repo(hub.server.mirrors_dir, HF_ID, {"data/train-2.parquet": shard(1, 20)}, card=LICENSED)
    _, found = drift_prs(checkout)
    assert found["pull_request"] == {**pull, "action": "updated"}
    updated = world.github.pulls[pull["number"]]
    assert at(world.repo, updated.head_sha, PATH) == \
        f"{NOTE}{HF_ID}@main moved from {second[:12]} to {third[:12]} on the Hub\n{text}"
    assert len(world.github.pulls) == 1

    # the Hub moves to a commit whose new file cannot be converted: the PR flow reports the update's own error (the
    # build beside the copy recorded it) and the copy stays at the commit it was synced at
    broken = fx.speech_records(2, start=30)
    for row in broken:
        row["audio"] = {"bytes": b"not audio", "path": "broken.flac"}
    make_dataset_repo(hub.server.mirrors_dir, HF_ID, {"data/train-3.parquet": fx.parquet_bytes(
        broken, fx.speech_features(), row_group_size=4)}, card=LICENSED)
    drift_prs(checkout)
    failing = world.github.pulls[pull["number"]]
    world.event(failing.number, failing.head_sha, action="synchronize")
    assert world.run(MAX_ROW_ERROR_RATE="0.1") == 1
    build = read_status(tmp_path / "datasets" / ".next" / copy_dir.name)
    assert build is not None and build.state == "failed" and "rows failed" in (build.error or "")
    assert build.error in world.comment(failing.number, PATH), "the comment quotes the update's recorded error"
    status = read_status(copy_dir)
    assert status is not None and (status.state, status.identity.sha) == ("complete", second)
