"""Plans and downloads: files are verified against the Hub's size and checksums; the Hub's metadata is used."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub.hf_api import DatasetInfo

from hugflow_ray.adapters.hub import Hub, RepoSnapshot
from hugflow_ray.codec.audio import EncoderSettings
from hugflow_ray.core.plan import SourceFile
from hugflow_ray.core.request import parse_request
from hugflow_ray.errors import HubError
from hugflow_ray.pipeline.download import verify
from hugflow_ray.pipeline.plan import make_plan
from tests.conftest import HubFixture


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


@pytest.mark.parametrize(
    "source",
    [
        SourceFile("a.parquet", size=999),
        SourceFile("a.parquet", size=5, sha256="0" * 64),
        SourceFile("a.parquet", blob_id="0" * 40),
    ],
    ids=["size", "sha256", "git-blob-id"],
)
def test_a_download_that_differs_from_the_hub_is_rejected_and_deleted(tmp_path: Path, source: SourceFile) -> None:
    blob = tmp_path / "blobs" / "abc"
    blob.parent.mkdir()
    blob.write_bytes(b"hello")
    link = tmp_path / "snapshot" / "a.parquet"
    link.parent.mkdir()
    link.symlink_to(blob)
    with pytest.raises(HubError, match="downloaded file is corrupt"):
        verify(link, source)
    assert not link.exists() and not blob.exists()


def test_a_download_matching_the_hub_passes(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    path.write_bytes(b"hello")
    verify(path, SourceFile("a.parquet", size=5, sha256=hashlib.sha256(b"hello").hexdigest()))
    verify(path, SourceFile("a.parquet", size=5, blob_id=git_blob_id(b"hello")))
    assert path.read_bytes() == b"hello"


@pytest.mark.hub
def test_a_plan_pins_the_sha_the_files_and_the_columns(hub: HubFixture) -> None:
    request = parse_request("hf_id: org/shards\ndescription: d\n")
    plan = make_plan(request, hub=Hub(endpoint=hub.endpoint))
    assert plan.identity.sha == hub.shas["org/shards"]
    assert [f.path for f in plan.files] == [f"data/train-{i:05d}-of-00003.parquet" for i in range(3)]
    assert (plan.audio_column, plan.text_column, plan.identity.license) == ("audio", "text", "cc-by-4.0")
    assert plan.fingerprint(EncoderSettings())["sha"] == plan.identity.sha
    assert plan.fingerprint(EncoderSettings(bitrate_kbps=128)) != plan.fingerprint(EncoderSettings())


def test_the_hubs_sizes_and_checksums_reach_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub answers files_metadata=True with size, blobId and (for LFS files) lfs.sha256: the mapping."""
    hub = Hub(endpoint="http://127.0.0.1:9")
    answer = DatasetInfo(
        id="org/x",
        sha="a" * 40,
        siblings=[
            {"rfilename": "README.md", "size": 120, "blobId": "b" * 40},
            {"rfilename": "data/train.parquet", "size": 123, "blobId": "c" * 40,
             "lfs": {"sha256": "d" * 64, "size": 5000, "pointerSize": 130}},
        ],
    )
    monkeypatch.setattr(hub._api, "dataset_info", lambda *a, **k: answer)
    metadata = hub.file_metadata(RepoSnapshot(hf_id="org/x", revision="main", sha="a" * 40))
    assert metadata["README.md"] == {"size": 120, "sha256": None, "blob_id": "b" * 40}
    assert metadata["data/train.parquet"] == {"size": 5000, "sha256": "d" * 64, "blob_id": "c" * 40}


def test_the_pr_comment_says_how_much_source_a_sync_holds_at_once() -> None:
    from hugflow_ray.core.records import DatasetIdentity
    from hugflow_ray.gitops.comments import PlanView, planned

    identity = DatasetIdentity(name="org__d__split_train__rev_main", source="org/d", sha="a" * 40, subset=None,
                               split="train", license="cc-by-4.0")
    view = PlanView(identity=identity, rows=10, download_bytes=30 << 30, target="/data/x", audio_column="audio",
                    text_column="text", source_peak_bytes=3 << 30)
    assert "| source on disk | at most 3.0 GiB at once: each file is deleted once its rows are converted |" in planned(
        "requests/add/d.yaml", view)
    kept = planned("requests/add/d.yaml", PlanView(**{**view.__dict__, "source_peak_bytes": 30 << 30,
                                                      "keep_sources": True}))
    assert "| source on disk | 30.0 GiB: every file is kept (KEEP_SOURCES) |" in kept
