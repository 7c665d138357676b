"""Faults a real server meets, each ending in one clear line and nothing lost: damaged state files, a full disk,
SIGTERM and Ctrl-C, a local shard that is not what it claims."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hugflow_ray.api import load_settings, status, sync
from hugflow_ray.cli.main import app
from hugflow_ray.copies.ledger import Ledger
from hugflow_ray.errors import Interrupted, SyncError
from hugflow_ray.executors.base import Executor, RunResult
from hugflow_ray.pipeline.progress import read_progress
from hugflow_ray.settings import Settings
from tests import datasets_fixtures as fx
from tests.conftest import HubFixture, hub_request
from tests.helpers import digest_tree
from tests.hub_proxy import HoldingProxy

RUN_TIMEOUT = 240
HELD_SECONDS = 60  # a request held until something the test waits for: a failure once this passes


def local_dataset(root: Path, rows: int, seconds: float) -> Path:
    """A local dataset of ``rows`` FLAC rows and its add request; returns the request."""
    shard = fx.parquet_bytes(fx.speech_records(rows, seconds=seconds), fx.speech_features(), row_group_size=8)
    fx.write_local_dataset(root / "source", [shard])
    request = root / "requests" / "add" / "local.yaml"
    request.parent.mkdir(parents=True, exist_ok=True)
    request.write_text("path: ../../source\ndescription: faults\n")
    return request


def cli_env(root: Path, storage: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "HUGFLOW_FAILPOINT")}
    env.update(STORAGE_ROOT=str(storage), STATE_DIR=str(root / "state"), PROCESSED_ROOT=str(root / "processed"),
               **extra)
    return env


def local_sync(request: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hugflow_ray", "local-sync", str(request)], env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)


RAY_CORE_LOG = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+ [DIWEF] \d+ \d+\] \S+\.cc:\d+: ")


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What the run printed on stderr, Ray's own log lines aside (its Python logging, ``... -- message``, and its
    core's, ``[date W pid tid] file.cc:line: message``, such as the warning that no route leads off this machine)."""
    return [line for line in result.stderr.splitlines()
            if line.strip() and " -- " not in line and not RAY_CORE_LOG.match(line)]


# ---- signals -------------------------------------------------------------------------------------------------

# Ctrl-C at an operator's terminal stops a driver on its embedded Ray; SIGTERM is how a stopped Ray job's driver ends,
# joined to the cluster.
@pytest.mark.parametrize(("signum", "code", "joined"), [
    pytest.param(signal.SIGTERM, 143, True, id="sigterm-joined"),
    pytest.param(signal.SIGINT, 130, False, id="sigint-embedded"),
])
def test_an_interrupted_local_sync_says_what_it_kept_in_one_line(tmp_path: Path, signum: int, code: int,
                                                                 joined: bool, joined_ray: dict[str, str]) -> None:
    request = local_dataset(tmp_path, rows=96, seconds=1.0)
    # The signal comes while the driver is between Ray Data's blocks (held just after the first block's rows are in
    # the ledger): an execution abandoned there must be shut down while Ray is up, or it restarts Ray at exit.
    release = tmp_path / "release"
    env = cli_env(tmp_path, tmp_path / "datasets", PROGRESS_INTERVAL="100000",
                  HUGFLOW_FAILPOINT=f"pause:rows-written:{release}", **(joined_ray if joined else {}))
    # As at a terminal: Ctrl-C raises KeyboardInterrupt even when this suite runs as a background job, whose
    # children start with SIGINT ignored (a shell's rule, which Python and hugflow respect).
    as_at_a_terminal = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                        "sys.argv = ['hugflow', 'local-sync', sys.argv[1]]; runpy.run_module('hugflow_ray', "
                        "run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", as_at_a_terminal, str(request)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    parts = tmp_path / "datasets"
    deadline = time.monotonic() + RUN_TIMEOUT
    while proc.poll() is None and not Path(f"{release}.reached").exists():
        assert time.monotonic() < deadline, "the sync did not write its first block"
        time.sleep(0.05)
    os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == code, out + err
    lines = stderr_lines(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert len(lines) == 1 and lines[0].startswith(f"interrupted by {signal.Signals(signum).name}: "), err
    dataset_dir = next(parts.iterdir())
    kept = Ledger(dataset_dir).summary().rows
    assert 0 < kept < 96 and f": {kept} of 96 rows of {dataset_dir.name} are kept" in lines[0]
    progress = read_progress(tmp_path / "state", dataset_dir.name)
    assert progress is not None and (progress.status, progress.rows_done) == ("syncing", kept)
    resumed = local_sync(request, cli_env(tmp_path, tmp_path / "datasets", **joined_ray))
    assert resumed.returncode == 0 and f"resumed from row {kept}" in resumed.stdout, resumed.stderr


# ---- a full disk ---------------------------------------------------------------------------------------------

@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of this test's own, unmounted after it (mounting needs root, as CI and these machines run)."""
    assert os.geteuid() == 0, "the full-disk test mounts a small tmpfs: run the suite as root (CI does)"
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_and_a_rerun_after_freeing_space_resumes_exactly(tmp_path: Path,
                                                                                  small_filesystem: Path,
                                                                                  joined_ray: dict[str, str]) -> None:
    request = local_dataset(tmp_path, rows=48, seconds=2.0)
    reference = local_sync(request, cli_env(tmp_path, tmp_path / "reference", **joined_ray))
    assert reference.returncode == 0, reference.stderr
    storage = small_filesystem / "datasets"
    full = local_sync(request, cli_env(tmp_path, storage))  # embedded: its Ray ends with the failed run
    assert full.returncode == 1
    lines = stderr_lines(full)
    assert lines[0].startswith("error: ") and f"the filesystem at {small_filesystem} is full" in lines[0], full.stderr
    assert "Free space and run again: it resumes after the" in lines[0] and "rows left need about" in lines[0]
    assert "Traceback" not in full.stderr and len(lines) <= 2, full.stderr  # the line, and the HUGFLOW_DEBUG hint
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_filesystem)], check=True)
    resumed = local_sync(request, cli_env(tmp_path, storage))  # the running Ray cannot see this test's mount
    assert resumed.returncode == 0, resumed.stderr
    name = next((tmp_path / "reference").iterdir()).name
    assert digest_tree(storage / name) == digest_tree(tmp_path / "reference" / name)


# ---- a shard that is not what it claims ----------------------------------------------------------------------

def test_a_local_shard_that_is_not_parquet_is_named_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "source" / "data").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("not a parquet file\n")
    (tmp_path / "source" / "data" / "train-00000-of-00001.parquet").symlink_to(tmp_path / "notes.txt")
    request = tmp_path / "requests" / "add" / "fake.yaml"
    request.parent.mkdir(parents=True)
    request.write_text("path: ../../source\ndescription: d\n")
    result = local_sync(request, cli_env(tmp_path, tmp_path / "datasets"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = stderr_lines(result)
    assert "train-00000-of-00001.parquet is not a readable parquet file" in lines[0], result.stderr


# ---- damaged state files -------------------------------------------------------------------------------------

def cli(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"STORAGE_ROOT": str(settings.storage_root),
                                                     "STATE_DIR": str(settings.state_dir)})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.hub
@pytest.mark.usefixtures("ray_session")
def test_a_damaged_fingerprint_refuses_to_resume_instead_of_mixing_settings(settings: Settings,
                                                                             tmp_path: Path) -> None:
    path = hub_request(tmp_path, "org/shards")
    report = sync(path, load_settings(**{**settings.model_dump(), "mp3_bitrate": 64}))
    hugflow = report.dataset_dir / ".hugflow"
    for part in sorted((hugflow / "ledger").glob("part-*.parquet"))[3:]:
        part.unlink()  # as if the 64 kbps sync had been interrupted
    (hugflow / "status.json").unlink()
    (hugflow / "meta.json").write_text("{garbage")
    before = digest_tree(report.dataset_dir)
    with pytest.raises(SyncError, match=r"fingerprint file .*meta\.json is damaged\); run again with --restart"):
        sync(path, settings)
    assert digest_tree(report.dataset_dir) == before, "no MP3 was made at another bitrate"
    redone = sync(path, settings, restart=True)
    rates = {json.loads(p.read_text())["audio_info"]["bitrate_kbps"] for p in (redone.dataset_dir / "json").iterdir()}
    assert rates == {160}


@pytest.mark.hub
@pytest.mark.usefixtures("ray_session")
def test_a_truncated_ledger_part_is_set_aside_and_its_rows_redone_identically(settings: Settings,
                                                                              tmp_path: Path) -> None:
    report = sync(hub_request(tmp_path, "org/shards"), settings)
    before = digest_tree(report.dataset_dir)
    [part] = (report.dataset_dir / ".hugflow" / "ledger").glob("part-*.parquet")  # finalize merged them into one
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    code, out = cli(settings, "status")
    assert code == 0 and report.dataset_name in out
    code, out = cli(settings, "status", report.dataset_name, "--errors")
    assert code == 0 and "0 row errors" in out
    again = sync(hub_request(tmp_path, "org/shards"), settings)
    assert not again.already_complete and again.rows_done == 26
    assert digest_tree(report.dataset_dir) == before
    assert (report.dataset_dir / ".hugflow" / "ledger" / "damaged" / part.name).is_file()
    assert Ledger(report.dataset_dir).summary().rows == 26


@pytest.mark.hub
@pytest.mark.usefixtures("ray_session")
def test_a_damaged_status_file_lists_as_damaged_and_a_sync_rebuilds_it(settings: Settings, tmp_path: Path) -> None:
    calls = sync(hub_request(tmp_path, "org/calls"), settings)
    shards = sync(hub_request(tmp_path, "org/shards"), settings)
    (shards.dataset_dir / ".hugflow" / "status.json").write_text("\x00{not json")
    code, out = cli(settings, "status")
    assert code == 0
    listed = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if line and not line.startswith(" ")}
    assert listed[calls.dataset_name] == "complete" and listed[shards.dataset_name] == "damaged"
    assert "26/?" in out and "status.json is damaged" in out
    assert sync(hub_request(tmp_path, "org/shards"), settings).state == "complete"
    (shards.dataset_dir / ".hugflow" / "status.json").write_text("[]")
    assert sync(hub_request(tmp_path, "org/shards"), settings, restart=True).rows_done == 26
    assert [row.state for row in status(settings)] == ["complete", "complete"]


class _StopAfterFirstBlock:
    """The Ray executor, interrupted (as by Ctrl-C) once the first block is written."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    def start(self) -> float:
        return self.inner.start()

    def run(self, units: list, converter: object, dataset_dir: Path, *, on_progress: object) -> RunResult:
        def written(rows: int, errors: int, ids: np.ndarray) -> None:
            on_progress(rows, errors, ids)  # type: ignore[operator]
            raise KeyboardInterrupt

        return self.inner.run(units, converter, dataset_dir, on_progress=written)  # type: ignore[arg-type]


@pytest.mark.hub
@pytest.mark.usefixtures("ray_session")
def test_status_and_progress_report_what_the_ledger_keeps_after_an_interruption(settings: Settings,
                                                                                tmp_path: Path) -> None:
    from hugflow_ray.executors.ray_runner import RayExecutor

    with pytest.raises(Interrupted) as caught:
        executor = _StopAfterFirstBlock(RayExecutor(None, settings.storage_resource))
        sync(hub_request(tmp_path, "org/shards"), settings, executor=executor)
    kept = caught.value.rows_kept
    assert kept is not None and 0 < kept < 26 and caught.value.rows_total == 26
    (row,) = status(settings)
    assert (row.state, row.rows_done, row.rows_total) == ("syncing", kept, 26)
    progress = read_progress(settings.state_dir, row.dataset_name)
    assert progress is not None and (progress.status, progress.rows_done) == ("syncing", kept)
    assert sync(hub_request(tmp_path, "org/shards"), settings).resumed_from == kept


class _StartsAfterTheRowsAreCounted:
    """The Ray executor, whose start waits until the sync has downloaded the split and counted its rows (the first
    progress report): a sync that waited for the start before doing that would never get there."""

    def __init__(self, inner: Executor, counted: threading.Event) -> None:
        self.inner, self.counted = inner, counted
        self.thread: str | None = None

    def start(self) -> float:
        self.thread = threading.current_thread().name
        if not self.counted.wait(RUN_TIMEOUT):
            raise AssertionError("the sync did not download and count its rows while its executor was starting")
        return self.inner.start()

    def run(self, units: list, converter: object, dataset_dir: Path, *, on_progress: object) -> RunResult:
        return self.inner.run(units, converter, dataset_dir, on_progress=on_progress)  # type: ignore[arg-type]


@pytest.mark.hub
@pytest.mark.usefixtures("ray_session")
def test_the_executor_starts_while_the_sync_downloads_and_counts_its_rows(settings: Settings,
                                                                          tmp_path: Path) -> None:
    from hugflow_ray.executors.ray_runner import RayExecutor

    counted = threading.Event()
    executor = _StartsAfterTheRowsAreCounted(RayExecutor(None, settings.storage_resource), counted)
    report = sync(hub_request(tmp_path, "org/shards"), settings, executor=executor,
                  on_progress=lambda progress: counted.set())
    assert report.rows_done == 26 and executor.thread != threading.current_thread().name
    assert list(report.phases) == ["plan", "download", "ledger", "waiting for the executor", "executor start",
                                   "convert", "finalize"]
    assert all(seconds >= 0 for seconds in report.phases.values())


class _FailsToStart(_StartsAfterTheRowsAreCounted):
    def start(self) -> float:
        raise SyncError("cannot join the Ray cluster at RAY_ADDRESS=ray://nowhere: refused")


@pytest.mark.hub
def test_an_executor_that_cannot_start_fails_the_sync_with_its_own_error(settings: Settings, tmp_path: Path) -> None:
    executor = _FailsToStart(None, threading.Event())  # type: ignore[arg-type]
    with pytest.raises(SyncError, match="cannot join the Ray cluster"):
        sync(hub_request(tmp_path, "org/shards"), settings, executor=executor)
    (row,) = status(settings)
    assert row.state == "failed" and row.error is not None and "cannot join the Ray cluster" in row.error


class _RecordsItsStart:
    """The Ray executor, recording whether (and when) its start began."""

    def __init__(self, inner: Executor) -> None:
        self.inner, self.began = inner, threading.Event()

    def start(self) -> float:
        self.began.set()
        return self.inner.start()

    def run(self, units: list, converter: object, dataset_dir: Path, *, on_progress: object) -> RunResult:
        return self.inner.run(units, converter, dataset_dir, on_progress=on_progress)  # type: ignore[arg-type]


@pytest.mark.hub
@pytest.mark.usefixtures("ray_session")
def test_the_executor_starts_once_the_revision_resolves_and_not_for_a_copy_complete_at_it(
    hub: HubFixture, settings: Settings, tmp_path: Path
) -> None:
    """After the revision resolves, the plan asks the Hub about the split's files at that commit; those answers are
    held back until the executor began to start. A sync that planned first and started Ray after would wait out the
    deadline."""
    from hugflow_ray.adapters.hub import Hub
    from hugflow_ray.executors.ray_runner import RayExecutor

    sha = Hub(endpoint=hub.endpoint).snapshot("org/shards", "main").sha
    executor = _RecordsItsStart(RayExecutor(None, settings.storage_resource))
    with HoldingProxy(hub.endpoint, hold=(f"/revision/{sha}",), until=executor.began.is_set,
                      deadline=HELD_SECONDS) as proxy:
        held = settings.model_copy(update={"hf_endpoint": proxy.endpoint})
        report = sync(hub_request(tmp_path, "org/shards"), held, executor=executor)
        assert any(f"/revision/{sha}" in path for path, _ in proxy.requests), "the plan asked at the commit"
        assert proxy.timed_out == [] and report.rows_done == 26

        idle = _RecordsItsStart(RayExecutor(None, settings.storage_resource))
        again = sync(hub_request(tmp_path, "org/shards"), held, executor=idle)
    assert again.already_complete and not idle.began.is_set(), "a copy complete at the commit starts no Ray"
