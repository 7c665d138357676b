"""The next version of a copy: built beside it under a mark, swapped into its place, and a swap cut short finished by
the next sync (the whole update against olah is tests/pipeline/test_incremental.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hugflow_ray.cli.main import app
from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.copies.ledger import Ledger
from hugflow_ray.copies.status import write_status
from hugflow_ray.core.records import DatasetIdentity, DatasetState, DatasetStatus
from hugflow_ray.pipeline import incremental
from tests.helpers import digest_tree

NAME = "org__calls__split_train__rev_main"
FINGERPRINT = {"sha": "b" * 40, "encoder": {"bitrate_kbps": 192}}


def copy_at(root: Path, sha: str, text: str) -> Path:
    """A complete copy at commit ``sha`` whose one file holds ``text``."""
    (root / ".hugflow").mkdir(parents=True, exist_ok=True)
    (root / "json").mkdir()
    (root / "json" / "0.json").write_text(text)
    identity = DatasetIdentity(name=NAME, source="org/calls", sha=sha, subset=None, split="train", license=None)
    write_status(root, DatasetStatus(identity, DatasetState.COMPLETE, 1, rows_done=1))
    return root


@pytest.fixture
def store(tmp_path: Path) -> StoreLayout:
    return StoreLayout(tmp_path / "datasets", tmp_path / "state", tmp_path / "processed")


@pytest.mark.parametrize("keep", [False, True])
def test_the_complete_next_version_takes_the_copys_place_and_the_old_one_goes_or_is_kept(
        store: StoreLayout, keep: bool) -> None:
    old = copy_at(store.copy(NAME).root, "a" * 40, "old")
    before = digest_tree(old)
    built = incremental.begin(store, NAME, "a" * 40, FINGERPRINT)
    assert built == store.next_copy(NAME).root and json.loads((built / ".hugflow" / "replaces.json").read_text()) == {
        "sha": "a" * 40}
    copy_at(built, "b" * 40, "new")
    assert incremental.replace(store, NAME, keep=keep) == old
    assert (old / "json" / "0.json").read_text() == "new" and not (old / ".hugflow" / "replaces.json").exists()
    assert not (store.storage_root / ".next").exists()
    kept = store.previous_copy(NAME, "a" * 40)
    assert (digest_tree(kept) == before) if keep else not kept.exists()


def test_a_swap_cut_short_is_finished_and_a_build_of_another_version_discarded(store: StoreLayout) -> None:
    copy_at(store.copy(NAME).root, "b" * 40, "new")
    left = copy_at(store.next_copy(NAME).root, "a" * 40, "old")  # swapped out, not yet deleted: no mark
    incremental.settle(store, NAME, keep=False)
    assert not left.exists()

    built = incremental.begin(store, NAME, "b" * 40, FINGERPRINT)
    Ledger(built).open(FINGERPRINT)
    (built / "json").mkdir()
    (built / "json" / "0.json").write_text("half made")
    incremental.settle(store, NAME, keep=False)
    assert (built / "json" / "0.json").exists(), "a build under its mark is resumed, never settled away"
    assert incremental.begin(store, NAME, "b" * 40, FINGERPRINT) == built and (built / "json" / "0.json").exists()
    incremental.begin(store, NAME, "b" * 40, {**FINGERPRINT, "sha": "c" * 40})
    assert not (built / "json").exists(), "a build of another commit is discarded"


def test_remove_deletes_the_copy_its_update_in_progress_and_its_kept_versions_and_nothing_else(
        store: StoreLayout, tmp_path: Path) -> None:
    copy_at(store.copy(NAME).root, "b" * 40, "current")
    built = incremental.begin(store, NAME, "b" * 40, FINGERPRINT)
    copy_at(built, "c" * 40, "half made")
    kept = copy_at(store.previous_copy(NAME, "a" * 40), "a" * 40, "replaced")
    other = copy_at(store.previous_copy(NAME + "_other", "a" * 40), "a" * 40, "another dataset's")
    request = tmp_path / "remove.yaml"
    request.write_text("hf_id: org/calls\nreason: not needed any more\n")
    env = {"STORAGE_ROOT": str(store.storage_root), "STATE_DIR": str(store.state_dir),
           "PROCESSED_ROOT": str(store.processed_root)}
    result = CliRunner().invoke(app, ["remove", str(request)], env=env)
    assert result.exit_code == 0, result.output
    assert {line.strip() for line in result.output.splitlines()[1:]} == {
        str(store.copy(NAME).root), str(built), str(kept)}
    assert not store.copy(NAME).root.exists() and not built.exists() and not kept.exists()
    assert (other / "json" / "0.json").read_text() == "another dataset's"
