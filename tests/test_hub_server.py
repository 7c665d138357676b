"""The test Hub itself (olah on loopback): it starts, fails loudly, and serves deterministic, real-looking repos."""

from __future__ import annotations

import io
import socket
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import Features

from tests.conftest import HubFixture, _speech_shard
from tests.hub_server import HubServer, HubServerError, make_dataset_repo

pytestmark = pytest.mark.hub


def test_the_server_is_up_on_loopback(hub: HubFixture) -> None:
    assert hub.endpoint.startswith("http://127.0.0.1:")
    assert hub.server.process is not None and hub.server.process.poll() is None


def test_a_failed_start_reports_the_server_log(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = HubServer(tmp_path, port=busy.getsockname()[1], startup_timeout=20)
        with pytest.raises(HubServerError, match=r"(?s)olah-cli exited with code \d+ during startup.*address"):
            server.start()
    assert server.process is None


def test_repositories_are_deterministic_git_repos_on_main(tmp_path: Path) -> None:
    first = make_dataset_repo(tmp_path / "a", "x/y", {"f.txt": b"1"}, card={"license": "mit"})
    again = make_dataset_repo(tmp_path / "b", "x/y", {"f.txt": b"1"}, card={"license": "mit"})
    assert first == again and len(first) == 40
    replaced = make_dataset_repo(tmp_path / "a", "x/y", {"g.txt": b"2"}, replace=True)
    assert replaced != first
    listing = subprocess.run(
        ["git", "-C", str(tmp_path / "a/datasets/x/y"), "ls-tree", "-r", "--name-only", "main"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert listing == ["g.txt"]


def test_audio_shards_carry_the_datasets_feature_metadata() -> None:
    schema = pq.read_schema(io.BytesIO(_speech_shard(1)))
    assert '"_type": "Audio"' in schema.metadata[b"huggingface"].decode()
    assert type(Features.from_arrow_schema(schema)["audio"]).__name__ == "Audio"
