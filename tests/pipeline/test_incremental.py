"""An incremental re-sync: a copy synced again after the Hub moved takes the rows of its unchanged files from the old
copy (MP3s linked, JSONs and ledger records renumbered), converts only the rest, and ends identical to a fresh sync
at the new commit; the old copy stays whole until then. Against olah, with commits pushed between the syncs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from hugflow_ray.cli.main import app
from hugflow_ray.copies.ledger import Ledger
from hugflow_ray.copies.status import read_status
from hugflow_ray.core.records import DatasetState
from hugflow_ray.errors import SyncError
from hugflow_ray.pipeline.progress import read_progress
from hugflow_ray.pipeline.sync import sync
from hugflow_ray.settings import Settings, load_settings
from tests import datasets_fixtures as fx
from tests.conftest import LICENSED, HubFixture, hub_request
from tests.helpers import digest_tree
from tests.hub_server import make_dataset_repo

pytestmark = [pytest.mark.hub, pytest.mark.usefixtures("ray_session")]

REPO = "moving/calls"


def shard(rows: int, start: int, *, names: list[str] | None = None, broken: bool = False) -> bytes:
    """A parquet shard of ``rows`` rows from row ``start``; ``names`` gives them audio file names (one name for all:
    each MP3 is named ``<name>+<row id>.mp3``, so the name moves with the id); ``broken`` rows hold no audio."""
    records = fx.speech_records(rows, start=start, names=names or [f"clip-{start + i}" for i in range(rows)])
    if broken:
        for row in records:
            row["audio"] = {"bytes": np.random.default_rng(start).bytes(2000), "path": "broken.flac"}
    return fx.parquet_bytes(records, fx.speech_features(with_names=True), row_group_size=4)


FIRST = {  # the copy's commit: four shards
    "data/train-0.parquet": shard(2, 0),
    "data/train-1.parquet": shard(3, 2, names=["same"]),
    "data/train-2.parquet": shard(2, 5),
    "data/train-3.parquet": shard(2, 7),
}
SECOND = {  # shard 0 rewritten with one row more (every later id moves), shard 2 gone, shard 4 new
    "data/train-0.parquet": shard(3, 100),
    "data/train-1.parquet": FIRST["data/train-1.parquet"],
    "data/train-3.parquet": FIRST["data/train-3.parquet"],
    "data/train-4.parquet": shard(2, 200),
}
TAKEN_OVER = 3 + 2  # shards 1 and 3
CONVERTED = 3 + 2  # shards 0 and 4


def settings_in(hub: HubFixture, root: Path, **changes: Any) -> Settings:
    return load_settings(hf_endpoint=hub.endpoint, storage_root=root / "datasets", state_dir=root / "state",
                         processed_root=root / "processed", **changes)


def local_sync(settings: Settings, request: Path) -> tuple[int, str]:
    env = {"STORAGE_ROOT": str(settings.storage_root), "STATE_DIR": str(settings.state_dir),
           "PROCESSED_ROOT": str(settings.processed_root), "HF_ENDPOINT": settings.hf_endpoint,
           "KEEP_PREVIOUS_COPY": str(settings.keep_previous_copy).lower(),
           "MAX_ROW_ERROR_RATE": str(settings.max_row_error_rate)}
    result = CliRunner().invoke(app, ["local-sync", str(request)], env=env)
    return result.exit_code, result.output


def inodes(folder: Path) -> dict[int, Path]:
    return {p.stat().st_ino: p for p in folder.rglob("*.mp3")}


def test_a_copy_synced_after_the_hub_moved_takes_over_its_unchanged_files_and_equals_a_fresh_sync(
        hub: HubFixture, settings: Settings, tmp_path: Path) -> None:
    first = make_dataset_repo(hub.server.mirrors_dir, REPO, FIRST, card=LICENSED, replace=True)
    request = hub_request(tmp_path, REPO)
    mine = settings_in(hub, tmp_path / "mine", keep_previous_copy=True, max_row_error_rate=0.2)
    old = sync(request, mine)
    old_tree, old_inodes = digest_tree(old.dataset_dir), inodes(old.dataset_dir)

    # the Hub moves to a commit whose new shard cannot be converted: the sync fails, the copy stays as it was
    make_dataset_repo(hub.server.mirrors_dir, REPO, {**SECOND, "data/train-4.parquet": shard(3, 200, broken=True)},
                      card=LICENSED, replace=True)
    with pytest.raises(SyncError, match="rows failed"):
        sync(request, mine)
    status = read_status(old.dataset_dir)
    assert status is not None and (status.state, status.identity.sha) == (DatasetState.COMPLETE, first)
    assert digest_tree(old.dataset_dir) == old_tree
    assert (mine.processed_root / old.dataset_name).resolve() == old.dataset_dir

    # fixed on the Hub: the next sync discards that build and converts only the changed and new files
    second = make_dataset_repo(hub.server.mirrors_dir, REPO, SECOND, card=LICENSED, replace=True)
    code, out = local_sync(mine, request)
    assert code == 0, out
    assert f"  updated:  from {first[:12]} to {second[:12]}: {TAKEN_OVER} rows of unchanged files taken over, " \
           f"{CONVERTED} converted" in out.splitlines(), out
    progress = read_progress(mine.state_dir, old.dataset_name)
    assert progress is not None and progress.rows_done == progress.rows_total == TAKEN_OVER + CONVERTED, (
        "the progress counts the rows taken over with those converted")
    new_status = read_status(old.dataset_dir)
    assert new_status is not None and (new_status.state, new_status.identity.sha) == (DatasetState.COMPLETE, second)
    assert (mine.processed_root / old.dataset_name).resolve() == old.dataset_dir
    assert not (mine.storage_root / ".next" / old.dataset_name).exists()

    # the old copy, kept as the setting says, is exactly what it was; the taken-over MP3s are its files, linked
    kept = mine.storage_root / ".previous" / f"{old.dataset_name}@{first[:12]}"
    assert digest_tree(kept) == old_tree
    shared = {ino for ino in inodes(old.dataset_dir) if ino in old_inodes}
    assert len(shared) == TAKEN_OVER
    assert {old_inodes[i].name for i in shared} == {"same+2.mp3", "same+3.mp3", "same+4.mp3", "clip-7.mp3",
                                                    "clip-8.mp3"}
    assert sorted(p.name for p in (old.dataset_dir / "audio" / "00001").iterdir()) == [
        "same+3.mp3", "same+4.mp3", "same+5.mp3"], "the part's names carry the rows' new ids"

    # identical to a fresh sync at the new commit: every file, the manifests and the ledger's records
    fresh = sync(request, settings_in(hub, tmp_path / "fresh"))
    assert fresh.reused == 0 and fresh.replaced_sha is None
    assert digest_tree(old.dataset_dir) == digest_tree(fresh.dataset_dir)
    assert Ledger(old.dataset_dir).records() == Ledger(fresh.dataset_dir).records()

    code, out = local_sync(mine, request)
    assert code == 0 and "is already complete" in out, "synced again: nothing to do"

    # the last shard rewritten with as many rows: no other row's id or folder moves, so its JSON is linked too
    third = make_dataset_repo(hub.server.mirrors_dir, REPO, {**SECOND, "data/train-4.parquet": shard(2, 300)},
                              card=LICENSED, replace=True)
    before = {p.stat().st_ino for p in (old.dataset_dir / "json").iterdir()}
    updated = sync(request, mine)
    assert (updated.reused, updated.newly_processed) == (TAKEN_OVER + 3, 2)
    linked = {p.name for p in (old.dataset_dir / "json").iterdir() if p.stat().st_ino in before}
    assert linked == {f"{i}.json" for i in range(TAKEN_OVER + 3)}, "every row before the changed shard"
    assert digest_tree(old.dataset_dir) == digest_tree(sync(request, settings_in(hub, tmp_path / "third")).dataset_dir)
    assert read_status(old.dataset_dir).identity.sha == third  # type: ignore[union-attr]


def test_the_replaced_copy_is_deleted_by_default_and_a_damaged_file_of_it_is_one_line(
        hub: HubFixture, settings: Settings, tmp_path: Path) -> None:
    repo = "moving/other"
    make_dataset_repo(hub.server.mirrors_dir, repo, FIRST, card=LICENSED, replace=True)
    request = hub_request(tmp_path, repo)
    old = sync(request, settings)
    make_dataset_repo(hub.server.mirrors_dir, repo, SECOND, card=LICENSED, replace=True)
    victim = old.dataset_dir / "audio" / "00003" / "clip-7.mp3"
    victim.write_bytes(b"not the MP3 the ledger names")
    with pytest.raises(SyncError) as failed:
        sync(request, settings)
    assert str(failed.value) == (
        f"{old.dataset_name}: audio/00003/clip-7.mp3 of the copy being updated is missing or damaged, so its rows "
        f"cannot be taken over: run `hugflow verify {old.dataset_name} --repair`, then sync again (or sync with "
        "--restart to convert every row)")
    repaired = CliRunner().invoke(app, ["verify", old.dataset_name, "--repair"], env={
        "STORAGE_ROOT": str(settings.storage_root), "STATE_DIR": str(settings.state_dir),
        "HF_ENDPOINT": settings.hf_endpoint})
    assert repaired.exit_code == 0, repaired.output
    report = sync(request, settings)  # resumes the build: shard 1 was taken over before the damage was found
    assert report.reused == 2 and report.resumed_from + report.newly_processed == 8, (
        "the build resumes: what it converted before the damage was found (beside the take-over) is kept")
    assert report.replaced_sha is not None and report.dataset_dir == old.dataset_dir
    assert [p.name for p in settings.storage_root.iterdir()] == [old.dataset_name], "the old copy is gone"
    fresh = sync(request, settings_in(hub, tmp_path / "fresh"))
    assert digest_tree(old.dataset_dir) == digest_tree(fresh.dataset_dir)
