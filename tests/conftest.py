"""Hermetic tests: no credentials leak in, every cache lives in a temporary directory, no network but loopback."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The Hub client reads these when first imported, so they are set before any test module imports it.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="hugflow-tests-"))
os.environ["HF_HOME"] = str(_SESSION_HOME / "hf")
os.environ["HF_DATASETS_CACHE"] = str(_SESSION_HOME / "hf" / "datasets")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens there: a test that forgets its server fails fast
os.environ.pop("HF_HUB_OFFLINE", None)

_CREDENTIALS = (
    "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "GITHUB_TOKEN", "GH_TOKEN", "SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN",
    "RAY_AUTH_TOKEN",
)
_SETTINGS = (
    "STORAGE_ROOT", "PROCESSED_ROOT", "STATE_DIR", "SLACK_CHANNEL", "PROGRESS_INTERVAL", "MAX_CONCURRENT_DOWNLOADS",
    "AUTO_MERGE", "LOG_LEVEL", "MP3_BITRATE", "MP3_QUALITY", "HUGFLOW_DEBUG", "RAY_ADDRESS", "MAX_ROW_ERROR_RATE",
    "SLACK_API_URL", "GITHUB_ACTIONS", "GITHUB_EVENT_PATH", "GITHUB_REPOSITORY", "GITHUB_API_URL",
    "SYNC_APPROVAL_LABEL", "HUGFLOW_FAILPOINT", "MAX_AUDIO_SECONDS", "STORAGE_RESOURCE", "HUGFLOW_METRICS",
    "CATALOG_PATH", "HUGFLOW_TIER", "MAX_STORAGE_GB", "ALLOWED_LICENCES", "KEEP_SOURCES", "KEEP_PREVIOUS_COPY",
)

# What a test costs, from the fixtures it uses (directly or through others): `make test-fast` runs the tests with
# none of these marks. A test that starts such a thing itself says so with the mark (pytest.ini's markers list).
_COSTS = {
    "ray_session": "ray", "joined_ray": "ray", "cluster": "ray", "head": "ray",
    "hub": "server", "world": "server", "server": "server", "prometheus": "server",
}
_COST_OF_MARK = {"crash": "subprocess_sync", "cluster": "ray", "hub": "server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        costs = {cost for fixture, cost in _COSTS.items() if fixture in names}
        costs |= {cost for mark, cost in _COST_OF_MARK.items() if item.get_closest_marker(mark)}
        for cost in sorted(costs):
            item.add_marker(cost)


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Clear credentials and settings, and run each test in its own empty directory (so no stray .env is read)."""
    for name in _CREDENTIALS + _SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", os.environ["HF_ENDPOINT"])
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """What a test's `configure_logging` installs (root handlers, level, record factory) goes away after it."""
    import logging

    root = logging.getLogger()
    handlers, level, factory = list(root.handlers), root.level, logging.getLogRecordFactory()
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    logging.setLogRecordFactory(factory)


@dataclass(frozen=True)
class HubFixture:
    """A Hub-compatible server on loopback and the commits of the repositories it serves."""

    endpoint: str
    server: Any
    shas: dict[str, str]


def _speech_shard(rows: int, *, text: bool = True, seed: int = 0) -> bytes:
    import datasets

    from tests.audio_fixtures import encoded, sine
    from tests.datasets_fixtures import parquet_bytes

    columns: dict[str, Any] = {"audio": datasets.Audio(sampling_rate=16000), "speaker_id": datasets.Value("int32")}
    if text:
        columns["text"] = datasets.Value("string")
    records = [
        {
            "audio": {"bytes": encoded(sine(16000, 0.1), 16000), "path": f"clip_{seed + i}.flac"},
            "speaker_id": i % 3,
            **({"text": f"utterance {seed + i}"} if text else {}),
        }
        for i in range(rows)
    ]
    return parquet_bytes(records, datasets.Features(columns), row_group_size=100)


def _text_shard() -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"text": ["a", "b"], "label": [0, 1]}), buffer)
    return buffer.getvalue()


LICENSED = {"license": "cc-by-4.0"}  # the licence policy lets these in; org/nc-speech's is refused


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubFixture]:
    """olah serving: org/speech (two subsets, a tag, a licence), org/plain (no configs in the card, no 'text'),
    org/textonly (no audio), org/private (answers like a private repo)."""
    from tests.hub_server import HubServer, block_non_loopback, make_dataset_repo

    root = tmp_path_factory.mktemp("hub")
    mirrors = root / "mirrors"
    configs = [
        {"config_name": "clean", "data_files": [
            {"split": "train", "path": "clean/train-*.parquet"}, {"split": "test", "path": "clean/test-*.parquet"}]},
        {"config_name": "other", "data_files": [{"split": "train", "path": "other/train-*.parquet"}]},
    ]
    shas = {
        "org/speech@v1.0": make_dataset_repo(
            mirrors, "org/speech",
            {"clean/train-00000-of-00001.parquet": _speech_shard(3), "clean/test-00000-of-00001.parquet":
             _speech_shard(2, seed=10), "other/train-00000-of-00001.parquet": _speech_shard(2, seed=20)},
            card={"license": "cc-by-4.0", "configs": configs}, tag="v1.0",
        ),
    }
    shas["org/speech"] = make_dataset_repo(
        mirrors, "org/speech", {"clean/train-00000-of-00001.parquet": _speech_shard(4)},
        card={"license": "cc-by-4.0", "configs": configs}, message="more rows",
    )
    shas["org/plain"] = make_dataset_repo(
        mirrors, "org/plain", {"data/train-00000-of-00001.parquet": _speech_shard(2, text=False)}, card=LICENSED
    )
    shas["org/textonly"] = make_dataset_repo(
        mirrors, "org/textonly", {"data/train-00000-of-00001.parquet": _text_shard()}, card={"license": "mit"}
    )
    shas["org/private"] = make_dataset_repo(mirrors, "org/private", {"data/train.parquet": _text_shard()}, card=LICENSED)
    _add_sync_repos(mirrors, shas)
    with block_non_loopback() as attempts, HubServer(root, mirrors_dir=mirrors, deny_repos=["org/private"]) as server:
        yield HubFixture(endpoint=server.endpoint, server=server, shas=shas)
    assert attempts == [], f"tests tried to reach beyond loopback: {attempts}"


def _add_sync_repos(mirrors: Path, shas: dict[str, str]) -> None:
    """org/shards (3 shards, row groups of 4, hostile and duplicate audio_filename values), org/bigfile (one file,
    one row group), org/mixed (rates MP3 cannot carry, stereo, corrupt rows), org/calls (12 rows, a card stating
    its row count and licence)."""
    from tests import datasets_fixtures as fx
    from tests.hub_server import make_dataset_repo

    named = fx.speech_features(with_names=True)
    shards = {
        f"data/train-{i:05d}-of-00003.parquet": fx.parquet_bytes(
            fx.speech_records(count, start=start, names=fx.HOSTILE_NAMES), named, row_group_size=4
        )
        for i, (start, count) in enumerate([(0, 10), (10, 7), (17, 9)])
    }
    shas["org/shards"] = make_dataset_repo(mirrors, "org/shards", shards, card={"license": "cc-by-4.0"})
    big = fx.parquet_bytes(fx.speech_records(64, seconds=0.1), fx.speech_features(), row_group_size=64)
    shas["org/bigfile"] = make_dataset_repo(mirrors, "org/bigfile", {"data/train.parquet": big}, card=LICENSED)
    mixed = fx.parquet_bytes(fx.mixed_records(), fx.mixed_features(), row_group_size=3)
    shas["org/mixed"] = make_dataset_repo(mirrors, "org/mixed", {"data/train.parquet": mixed}, card=LICENSED)
    calls = fx.parquet_bytes(fx.speech_records(12, seconds=0.1), fx.speech_features(), row_group_size=4)
    card = {"license": "cc-by-4.0", "dataset_info": {"splits": [{"name": "train", "num_examples": 12}]}}
    shas["org/calls"] = make_dataset_repo(mirrors, "org/calls", {"data/train.parquet": calls}, card=card)
    shas["org/audiofolder"] = make_dataset_repo(mirrors, "org/audiofolder", fx.audiofolder_files(), card=LICENSED)
    shas["org/wds"] = make_dataset_repo(mirrors, "org/wds", fx.webdataset_files(), card=LICENSED)
    nc = fx.parquet_bytes(fx.speech_records(3, seconds=0.1), fx.speech_features(), row_group_size=3)
    shas["org/nc-speech"] = make_dataset_repo(mirrors, "org/nc-speech", {"data/train.parquet": nc},
                                              card={"license": "cc-by-nc-4.0"})
    _add_script_repos(mirrors, shas)


def _add_script_repos(mirrors: Path, shas: dict[str, str]) -> None:
    """org/script: a loading script on main and the Hub's parquet conversion on refs/convert/parquet;
    org/script-only: a loading script and no conversion."""
    from tests import datasets_fixtures as fx
    from tests.hub_server import _git, make_dataset_repo

    script = {"script.py": b"# a dataset loading script\n"}
    main = make_dataset_repo(mirrors, "org/script", script, card=LICENSED)
    shard = fx.parquet_bytes(fx.speech_records(5), fx.speech_features(), row_group_size=2)
    converted = make_dataset_repo(mirrors, "org/script", {"default/train/0000.parquet": shard}, card=LICENSED,
                                  replace=True, message="parquet conversion")
    repo = mirrors / "datasets" / "org" / "script"
    _git(repo, "update-ref", "refs/convert/parquet", converted)
    _git(repo, "reset", "--hard", main)
    shas["org/script"], shas["org/script@parquet"] = main, converted
    shas["org/script-only"] = make_dataset_repo(mirrors, "org/script-only", script, card=LICENSED)


def _init_session_ray() -> None:
    """One small embedded Ray (2 CPUs, small object store, no dashboard), its one node the storage node as an
    embedded sync's is."""
    import ray

    from hugflow_ray.settings import Settings

    storage = Settings.model_fields["storage_resource"].default
    ray.init(address="local", num_cpus=2, object_store_memory=256 * 1024**2, include_dashboard=False,
             log_to_driver=False, resources={storage: 1})


@pytest.fixture(scope="session")
def _session_ray() -> Iterator[None]:
    import ray

    _init_session_ray()
    yield
    ray.shutdown()


@pytest.fixture
def ray_session(_session_ray: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's embedded Ray, kept for the whole session: an in-process command run by the test (`local-sync`,
    `verify`, `retry`, `catalog apply`) ends by releasing the Ray it used, which would stop this one and make the
    next test's sync start a Ray of its own (seconds of CPU each time); within the test, releasing it is a no-op.
    Started again if something stopped it. Stopping an embedded Ray is tested where it is the subject
    (``tests/cluster/test_embedded_ray.py`` and every embedded ``local-sync`` child)."""
    import ray

    if not ray.is_initialized():
        _init_session_ray()
    monkeypatch.setattr("hugflow_ray.executors.default.release_ray", lambda: 0.0)


@pytest.fixture(scope="session")
def joined_ray() -> Iterator[dict[str, str]]:
    """A Ray kept running for the session (`ray start --head` in PID and mount namespaces of its own, 2 CPUs, the
    storage resource) and the environment that makes a `hugflow` subprocess join it, as it joins a running cluster,
    instead of starting one of its own: for tests of what a sync does rather than of an embedded Ray's start and
    end, it saves that start and end on every run. Not the in-process ``ray_session``, which only the test
    process itself uses."""
    from tests.ray_nodes import MEMORY, TOKEN, storage_head

    with storage_head("--num-cpus=2", *MEMORY, "--include-dashboard=false") as (address, _):
        yield {"RAY_ADDRESS": address, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def git_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset-requests repository of the PR-flow tests (``tests/gitops_world.py``)."""
    from tests.gitops_world import make_git_repo

    return make_git_repo(tmp_path_factory.mktemp("requests-repo"))


@pytest.fixture
def world(hub: HubFixture, git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[Any]:
    """A pull request's world: the fake GitHub and Slack, and an Actions run's environment (``tests/gitops_world.py``)."""
    from tests.gitops_world import open_world

    with open_world(hub, git_repo, tmp_path, monkeypatch, capfd, caplog) as opened:
        yield opened


@pytest.fixture
def settings(hub: HubFixture, tmp_path: Path) -> Any:
    """Settings for a sync against the session's Hub, with every directory in the test's own tmp_path."""
    from hugflow_ray.settings import load_settings

    return load_settings(hf_endpoint=hub.endpoint, storage_root=tmp_path / "datasets", state_dir=tmp_path / "state",
                         processed_root=tmp_path / "processed")


def hub_request(root: Path, hf_id: str) -> Path:
    """``requests/add/<name>.yaml`` under ``root`` asking for the Hub dataset ``hf_id``."""
    path = root / "requests" / "add" / f"{hf_id.split('/')[1]}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"hf_id: {hf_id}\ndescription: d\n")
    return path
