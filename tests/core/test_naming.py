"""Dataset directory names: the seed's layout, deterministic, filesystem-safe and injective."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from hugflow_ray.core.naming import dataset_dir_name, duplicated_stems, moved_mp3_path, mp3_name, mp3_path
from hugflow_ray.core.request import DatasetRef, HubRef, LocalRef


def test_the_seed_layout_for_ordinary_names() -> None:
    assert (
        dataset_dir_name(HubRef(hf_id="openslr/librispeech_asr", subset="clean", split="train.100"))
        == "openslr__librispeech_asr__subset_clean__split_train.100__rev_main"
    )


def test_the_subset_part_is_omitted_when_there_is_none() -> None:
    assert dataset_dir_name(HubRef(hf_id="org/name", revision="v1.0")) == "org__name__split_train__rev_v1.0"


def test_names_are_deterministic() -> None:
    ref = HubRef(hf_id="org/name", revision="refs/pr/7", subset="en US")
    assert dataset_dir_name(ref) == dataset_dir_name(HubRef(hf_id="org/name", revision="refs/pr/7", subset="en US"))


TRICKY_IDS = ["a/b", "a__b/c", "a/b__c", "a_/b", "a/_b", "a.b/c", "a/b.c", "a-b/c", "a/b-c", "A/b", "a/B"]
TRICKY_SUBSETS = [None, "x", "x__y", "x_y", "split_x", "x y", "x-y", "x+y", "rev_main", "s" * 81]
TRICKY_SPLITS = ["train", "train.100", "x__y", "x_y", "test"]
TRICKY_REVISIONS = ["main", "refs/pr/1", "refs-pr-1", "v1.0", "a" * 40, "x__y"]


def _tricky_refs() -> list[DatasetRef]:
    refs = [
        HubRef(hf_id=hf_id, subset=subset, split=split, revision=revision)
        for hf_id, subset, split, revision in itertools.product(
            TRICKY_IDS, TRICKY_SUBSETS, TRICKY_SPLITS, TRICKY_REVISIONS
        )
    ]
    local = [Path("/data/speech.parquet"), Path("/other/speech.parquet"), Path("/data/speech"), Path("/data/b")]
    refs += [LocalRef(path=p, subset=s, split=sp) for p in local for s in (None, "x") for sp in ("train", "test")]
    return refs


def test_different_requests_never_share_a_directory() -> None:
    refs = _tricky_refs()
    names = {dataset_dir_name(ref) for ref in refs}
    assert len(names) == len(set(refs))


@pytest.mark.parametrize("ref", _tricky_refs()[::37], ids=str)
def test_names_are_one_safe_path_component(ref: DatasetRef) -> None:
    name = dataset_dir_name(ref)
    assert "/" not in name and "\x00" not in name and " " not in name
    assert not name.startswith((".", "-"))
    assert len(name.encode()) <= 255
    assert name.isascii()


def test_unsafe_components_are_sanitised_and_hashed() -> None:
    name = dataset_dir_name(HubRef(hf_id="org/name", revision="refs/pr/1"))
    assert name.startswith("org__name__split_train__rev_refs-pr-1+")
    assert name != dataset_dir_name(HubRef(hf_id="org/name", revision="refs-pr-1"))


def test_local_paths_name_their_stem_and_hash_the_location(tmp_path: Path) -> None:
    first = dataset_dir_name(LocalRef(path=tmp_path / "a" / "speech.parquet"))
    second = dataset_dir_name(LocalRef(path=tmp_path / "b" / "speech.parquet"))
    assert first.startswith("local__speech+") and second.startswith("local__speech+")
    assert first != second
    assert first.endswith("__split_train") and "__rev_" not in first


def test_a_hub_copy_of_an_org_called_catalog_is_no_catalog_entrys_copy(tmp_path: Path) -> None:
    from hugflow_ray.catalog.manager import _url_entry_of
    from hugflow_ray.core.naming import catalog_dir_name, is_catalog_dir_name
    from hugflow_ray.settings import load_settings

    hub_copy = dataset_dir_name(HubRef("catalog/speech", "main", None, "train"))
    assert hub_copy.startswith("catalog__") and not is_catalog_dir_name(hub_copy)
    assert all(is_catalog_dir_name(catalog_dir_name(name)) for name in ("midi", "a__b", "x_y", "Über"))
    settings = load_settings(storage_root=tmp_path, catalog_path=tmp_path / "no-catalog.yaml")
    assert _url_entry_of(settings, hub_copy, None) is None, "repaired as the Hub copy it is, no catalog needed"


@pytest.mark.parametrize("candidate", ["speech", "", "Same"])
def test_a_row_moved_to_another_part_and_id_gets_the_path_a_conversion_there_gives(candidate: str) -> None:
    duplicated = duplicated_stems([candidate, candidate.upper()]) if candidate == "Same" else frozenset()
    old = mp3_path(3, mp3_name(candidate, 17, duplicated))
    assert moved_mp3_path(old, 5, 17, 170) == mp3_path(5, mp3_name(candidate, 170, duplicated))
    assert moved_mp3_path("audio/00003/x+7.mp3", 0, 17, 170) == "audio/00000/x+7.mp3", "only the row's own id moves"
