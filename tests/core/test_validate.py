"""``hugflow validate`` against a real Hub-compatible server (olah) on loopback, and offline."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
from huggingface_hub.utils import hf_raise_for_status
from typer.testing import CliRunner

from hugflow_ray.adapters.hub import Hub
from hugflow_ray.cli.main import app
from hugflow_ray.core.request import load_request
from hugflow_ray.errors import HubUnavailableError, RepoAccessError, RepoNotFoundError
from hugflow_ray.pipeline.validate import Level, ValidationReport, validate_file
from tests.conftest import HubFixture

pytestmark = pytest.mark.hub


def write_request(directory: Path, text: str, name: str = "req.yaml", kind: str = "add") -> Path:
    path = directory / "requests" / kind / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def validate(hub: HubFixture, tmp_path: Path, text: str, *, token: str | None = None) -> ValidationReport:
    return validate_file(write_request(tmp_path, text), hub=Hub(endpoint=hub.endpoint, token=token))


def messages(report: ValidationReport, level: Level) -> str:
    return "\n".join(f.message for f in report.findings if f.level is level)


def test_a_valid_request_resolves_to_a_pinned_commit(hub: HubFixture, tmp_path: Path) -> None:
    report = validate(hub, tmp_path, "hf_id: org/speech\ndescription: d\nsubset: clean\n")
    assert report.valid, report.findings
    assert report.sha == hub.shas["org/speech"]
    info = messages(report, Level.INFO)
    assert f"revision 'main' resolves to commit {hub.shas['org/speech']}" in info
    assert "licence: CC-BY-4.0: allowed" in info
    assert "audio column 'audio' found" in info and "text column 'text' found" in info
    assert report.plan is not None and [f.path for f in report.plan.files] == ["clean/train-00000-of-00001.parquet"]


def test_a_tag_resolves_to_its_own_commit(hub: HubFixture, tmp_path: Path) -> None:
    report = validate(hub, tmp_path, "hf_id: org/speech\ndescription: d\nsubset: other\nrevision: v1.0\n")
    assert report.valid, report.findings
    assert report.sha == hub.shas["org/speech@v1.0"] != hub.shas["org/speech"]


def test_a_full_sha_is_accepted_as_revision(hub: HubFixture, tmp_path: Path) -> None:
    sha = hub.shas["org/speech@v1.0"]
    report = validate(hub, tmp_path, f"hf_id: org/speech\ndescription: d\nsubset: clean\nrevision: {sha}\n")
    assert report.valid and report.sha == sha


def test_a_missing_repo_says_so_and_mentions_the_token(hub: HubFixture, tmp_path: Path) -> None:
    report = validate(hub, tmp_path, "hf_id: org/missing\ndescription: d\n")
    assert not report.valid
    assert "org/missing was not found" in messages(report, Level.ERROR)
    assert "set HF_TOKEN if it is private" in messages(report, Level.ERROR)


def test_a_private_repo_without_token_points_at_hf_token(hub: HubFixture, tmp_path: Path) -> None:
    report = validate(hub, tmp_path, "hf_id: org/private\ndescription: d\n")
    assert "HF_TOKEN is missing" in messages(report, Level.ERROR)
    with_token = validate(hub, tmp_path, "hf_id: org/private\ndescription: d\n", token="hf_" + "x" * 30)
    assert "HF_TOKEN lacks access to it" in messages(with_token, Level.ERROR)


def test_a_missing_revision_lists_branches_and_tags(hub: HubFixture, tmp_path: Path) -> None:
    report = validate(hub, tmp_path, "hf_id: org/speech\ndescription: d\nsubset: clean\nrevision: v9\n")
    error = messages(report, Level.ERROR)
    assert "org/speech has no revision 'v9'" in error
    assert "main" in error and "v1.0" in error


def test_a_missing_subset_lists_the_subsets(hub: HubFixture, tmp_path: Path) -> None:
    report = validate(hub, tmp_path, "hf_id: org/speech\ndescription: d\nsubset: noisy\n")
    assert "has no subset 'noisy'. Available subsets: clean, other." in messages(report, Level.ERROR)


def test_several_subsets_need_a_choice(hub: HubFixture, tmp_path: Path) -> None:
    report = validate(hub, tmp_path, "hf_id: org/speech\ndescription: d\n")
    assert "has several subsets: clean, other. Choose one with 'subset:'" in messages(report, Level.ERROR)


def test_a_missing_split_lists_the_splits(hub: HubFixture, tmp_path: Path) -> None:
    report = validate(hub, tmp_path, "hf_id: org/speech\ndescription: d\nsubset: clean\nsplit: validation\n")
    assert "has no split 'validation'. Available splits: train, test." in messages(report, Level.ERROR)


def test_a_missing_explicit_audio_column_is_an_error(hub: HubFixture, tmp_path: Path) -> None:
    report = validate(hub, tmp_path, "hf_id: org/speech\ndescription: d\nsubset: clean\naudio_column: speech\n")
    error = messages(report, Level.ERROR)
    assert "audio column 'speech' does not exist. Columns: audio, speaker_id, text. Audio columns: audio." in error


def test_a_missing_explicit_text_column_is_an_error(hub: HubFixture, tmp_path: Path) -> None:
    report = validate(hub, tmp_path, "hf_id: org/plain\ndescription: d\ntext_column: sentence\n")
    assert "text column 'sentence' does not exist. Columns: audio, speaker_id." in messages(report, Level.ERROR)


def test_an_absent_default_text_column_is_only_a_warning(hub: HubFixture, tmp_path: Path) -> None:
    report = validate(hub, tmp_path, "hf_id: org/plain\ndescription: d\n")
    assert report.valid
    assert "no text column 'text'" in messages(report, Level.WARNING)


def test_a_dataset_without_audio_is_metadata_only(hub: HubFixture, tmp_path: Path) -> None:
    report = validate(hub, tmp_path, "hf_id: org/textonly\ndescription: d\n")
    assert report.valid
    assert "metadata-only" in messages(report, Level.WARNING)
    assert "licence: MIT: allowed" in messages(report, Level.INFO)


def test_gated_repos_name_the_token_and_the_page(hub: HubFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    client = Hub(endpoint=hub.endpoint)
    url = f"{hub.endpoint}/api/datasets/org/gated/revision/main"

    def gated(*args: object, **kwargs: object) -> None:
        response = httpx2.Response(
            403,
            headers={"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to dataset org/gated is restricted."},
            request=httpx2.Request("GET", url),
        )
        hf_raise_for_status(response)

    monkeypatch.setattr(client._api, "dataset_info", gated)
    with pytest.raises(RepoAccessError) as caught:
        client.snapshot("org/gated", "main")
    assert "org/gated is a gated dataset and HF_TOKEN is missing" in str(caught.value)
    assert f"{hub.endpoint}/datasets/org/gated" in str(caught.value)


def test_an_unreachable_hub_is_a_clear_error(unused_port_endpoint: str) -> None:
    with pytest.raises(HubUnavailableError, match="could not be reached"):
        Hub(endpoint=unused_port_endpoint).snapshot("org/speech", "main")


@pytest.fixture
def unused_port_endpoint() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_the_cli_validates_against_the_hub(hub: HubFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = write_request(tmp_path, "hf_id: org/speech\ndescription: d\nsubset: clean\n", "good.yaml")
    bad = write_request(tmp_path, "hf_id: org/speech\ndescription: d\nsubset: clean\nsplit: dev\n", "bad.yaml")
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    result = CliRunner().invoke(app, ["validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert f"valid: {good}" in result.output and f"INVALID: {bad}" in result.output
    assert hub.shas["org/speech"] in result.output
    assert "1 valid, 1 invalid" in result.output


def test_the_installed_command_runs_end_to_end(hub: HubFixture, tmp_path: Path) -> None:
    good = write_request(tmp_path, "hf_id: org/speech\ndescription: d\nsubset: clean\n", "good.yaml")
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint}
    done = subprocess.run(
        [sys.executable, "-m", "hugflow_ray", "validate", str(good)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert f"resolves to commit {hub.shas['org/speech']}" in done.stdout


def test_offline_validation_checks_the_schema_only(tmp_path: Path) -> None:
    good = write_request(tmp_path, "hf_id: org/whatever\ndescription: d\n", "good.yaml")
    bad = write_request(tmp_path, "hf_id: org/whatever\ndescription: d\nrevision: 1.10\n", "bad.yaml")
    result = CliRunner().invoke(app, ["validate", "--offline", str(good)])
    assert result.exit_code == 0, result.output
    assert "1 valid, 0 invalid (schema only: --offline)" in result.output
    result = CliRunner().invoke(app, ["validate", "--offline", str(good), str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:3: revision: must be text" in result.output


def test_the_version_flag(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("hugflow 0.1.0")


def test_a_local_parquet_file_is_checked_without_the_hub(tmp_path: Path) -> None:
    from tests.conftest import _speech_shard

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "speech.parquet").write_bytes(_speech_shard(2))
    path = write_request(tmp_path, "path: ../../data/speech.parquet\ndescription: d\ntext_column: words\n")
    report = validate_file(path, hub=None)
    assert "text column 'words' does not exist. Columns: audio, speaker_id, text." in messages(report, Level.ERROR)


def test_a_local_directory_in_hub_layout_resolves_its_splits(tmp_path: Path) -> None:
    from tests.conftest import _speech_shard

    (tmp_path / "ds" / "data").mkdir(parents=True)
    (tmp_path / "ds" / "data" / "train-00000-of-00001.parquet").write_bytes(_speech_shard(2))
    (tmp_path / "ds" / "data" / "test-00000-of-00001.parquet").write_bytes(_speech_shard(1))
    ok = validate_file(write_request(tmp_path, "path: ../../ds\ndescription: d\nsplit: test\n"), hub=None)
    assert ok.valid, ok.findings
    missing = validate_file(write_request(tmp_path, "path: ../../ds\ndescription: d\nsplit: dev\n", "m.yaml"), hub=None)
    assert "has no split 'dev'. Available splits: train, test." in messages(missing, Level.ERROR)
    nowhere = validate_file(write_request(tmp_path, "path: ../../nope\ndescription: d\n", "n.yaml"), hub=None)
    assert "does not exist" in messages(nowhere, Level.ERROR)


def test_a_loading_script_repo_validates_through_the_parquet_conversion(hub: HubFixture, tmp_path: Path) -> None:
    report = validate(hub, tmp_path, "hf_id: org/script\ndescription: d\n")
    assert report.valid, report.findings
    assert f"the Hub's parquet conversion ({hub.shas['org/script@parquet']}) is used" in messages(report, Level.INFO)
    refused = validate(hub, tmp_path, "hf_id: org/script-only\ndescription: d\n")
    assert "has no parquet conversion" in messages(refused, Level.ERROR)


def test_init_creates_the_working_directories(tmp_path: Path) -> None:
    env = {"STORAGE_ROOT": str(tmp_path / "ds"), "STATE_DIR": str(tmp_path / "st"),
           "PROCESSED_ROOT": str(tmp_path / "pr")}
    result = CliRunner().invoke(app, ["init"], env=env)
    assert result.exit_code == 0, result.output
    for directory in ("ds", "st/progress", "st/locks", "pr", "requests/add", "requests/remove"):
        assert (tmp_path / directory).is_dir(), directory
    assert f"ready: {tmp_path / 'pr'}" in result.output


def test_two_hubs_in_one_process_each_answer_from_their_own_server(hub: HubFixture, tmp_path: Path) -> None:
    """No process-global endpoint: a second Hub made later does not take the first one's resolution away."""
    import datasets.config
    import huggingface_hub.constants

    from tests import datasets_fixtures as fx
    from tests.hub_server import HubServer, make_dataset_repo

    mirrors = tmp_path / "mirrors"
    shard = fx.parquet_bytes(fx.speech_records(2), fx.speech_features(), row_group_size=2)
    make_dataset_repo(mirrors, "org/elsewhere", {"data/validation-00000-of-00001.parquet": shard}, card={})
    before = (datasets.config.HF_ENDPOINT, huggingface_hub.constants.ENDPOINT)
    with HubServer(tmp_path, mirrors_dir=mirrors) as other:
        first, second = Hub(endpoint=hub.endpoint), Hub(endpoint=other.endpoint)
        speech, elsewhere = first.snapshot("org/speech", "main"), second.snapshot("org/elsewhere", "main")
        for _ in range(3):  # interleaved, as two syncs in two threads of one process would be
            with ThreadPoolExecutor(max_workers=2) as pool:
                ours = pool.submit(first.split_layout, speech, "clean", "train")
                theirs = pool.submit(second.split_layout, elsewhere, None, "validation")
                assert ours.result().data_files == ("clean/train-00000-of-00001.parquet",)
                assert theirs.result().data_files == ("data/validation-00000-of-00001.parquet",)
        with pytest.raises(RepoNotFoundError):
            first.snapshot("org/elsewhere", "main")
        with pytest.raises(RepoNotFoundError):
            second.snapshot("org/speech", "main")
    assert (datasets.config.HF_ENDPOINT, huggingface_hub.constants.ENDPOINT) == before, "nothing global was changed"


def test_validate_refuses_a_layout_the_sync_refuses_with_the_same_words(tmp_path: Path) -> None:
    """One planning path: a local split in a layout no reader takes (plain text) fails `validate` as `local-sync`."""
    from hugflow_ray.errors import PlanError
    from hugflow_ray.pipeline.plan import make_plan

    (tmp_path / "ds" / "data").mkdir(parents=True)
    (tmp_path / "ds" / "data" / "train.txt").write_text("one line\nanother line\n")
    path = write_request(tmp_path, "path: ../../ds\ndescription: d\n")
    report = validate_file(path, hub=None)
    assert not report.valid
    with pytest.raises(PlanError) as refused:
        make_plan(load_request(path), hub=None)  # type: ignore[arg-type]
    assert messages(report, Level.ERROR) == str(refused.value)
    assert "the text layout is not synced" in str(refused.value)
