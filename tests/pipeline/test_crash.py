"""Crash consistency: SIGKILL `hugflow local-sync` at random moments, rerun, get exactly the uninterrupted tree.

Randomness is seeded (CRASH_SEED), so a failure reproduces. Three kills are aimed at the moments random timing
rarely hits: after a batch's files are durable but before its ledger part, after a ledger compaction, and during
finalize. Every other random kill is of a driver joined to a running Ray (the Ray lives on, as a cluster does when
a CI runner dies), the rest of a driver whose embedded Ray dies with it.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hugflow_ray.utils.failpoints import FAILPOINT_VARIABLE
from tests import datasets_fixtures as fx
from tests.conftest import LICENSED, HubFixture
from tests.helpers import digest_tree, raw_ledger_ids

CRASH_SEED = 20261122
RANDOM_KILLS = 10
MAX_ATTEMPTS = 40
ROWS_PER_SHARD = (70, 50, 80)
RUN_TIMEOUT = 240

pytestmark = pytest.mark.crash


def ledger_rows(parts_dir: Path) -> int:
    """Rows the ledger's parts hold, from their footers (a row in two parts counts twice: progress, not truth)."""
    paths = list(parts_dir.glob("part-*.parquet")) if parts_dir.is_dir() else []
    rows = 0
    for path in paths:
        try:
            rows += pq.ParquetFile(path).metadata.num_rows
        except (OSError, pa.ArrowException):  # deleted or replaced between the listing and the read
            continue
    return rows


class Runner:
    """Runs `local-sync` of one request into a storage root of its own: on an embedded Ray (killed with the driver,
    as when an operator's machine loses its run), or joined to a running Ray (only the driver is killed, as when a
    CI runner dies beside the cluster)."""

    def __init__(self, root: Path, request: Path, joined: dict[str, str], extra: dict[str, str] | None = None) -> None:
        self.root, self.request, self.joined, self.extra = root, request, joined, extra or {}

    def env(self, storage: str, failpoint: str | None = None, *, joined: bool = False) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != FAILPOINT_VARIABLE}
        env.update(STORAGE_ROOT=str(self.root / storage), STATE_DIR=str(self.root / f"{storage}-state"),
                   PROCESSED_ROOT=str(self.root / f"{storage}-processed"), **(self.joined if joined else {}),
                   **self.extra)
        if failpoint:
            env[FAILPOINT_VARIABLE] = failpoint
        return env

    def start(self, storage: str, failpoint: str | None = None, *, joined: bool = False) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "hugflow_ray", "local-sync", str(self.request)],
            env=self.env(storage, failpoint, joined=joined), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def complete(self, storage: str, *, joined: bool = False) -> bytes:
        proc = self.start(storage, joined=joined)
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
        assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
        return out

    @staticmethod
    def kill_after(proc: subprocess.Popen[bytes], parts_dir: Path, more_rows: int, delay: float) -> None:
        """SIGKILL the run's process group once the ledger holds ``more_rows`` more rows, ``delay`` s later.

        Tying the moment to progress (not to wall time) lands kills during start-up, conversion and finalize
        whatever the machine's speed; rows, not parts, because finalize merges the parts into one.
        """
        target = ledger_rows(parts_dir) + more_rows
        deadline = time.monotonic() + RUN_TIMEOUT
        while proc.poll() is None and ledger_rows(parts_dir) < target and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)


def test_killed_syncs_resume_to_exactly_the_uninterrupted_tree(tmp_path: Path, joined_ray: dict[str, str]) -> None:
    shards = [
        fx.parquet_bytes(fx.speech_records(n, start=sum(ROWS_PER_SHARD[:i]), seconds=1.0,
                                           names=fx.HOSTILE_NAMES), fx.speech_features(with_names=True),
                         row_group_size=16)
        for i, n in enumerate(ROWS_PER_SHARD)
    ]
    fx.write_local_dataset(tmp_path / "source", shards)
    request = tmp_path / "requests" / "add" / "crash.yaml"
    request.parent.mkdir(parents=True)
    request.write_text("path: ../../source\ndescription: crash test\n")
    runner = Runner(tmp_path, request, joined_ray)
    total = sum(ROWS_PER_SHARD)

    runner.complete("reference", joined=True)
    reference_dir = next((tmp_path / "reference").iterdir())
    reference = digest_tree(reference_dir)
    assert len([k for k in reference if k.startswith("audio/")]) == total

    def check(storage: str) -> Path:
        dataset_dir = tmp_path / storage / reference_dir.name
        assert digest_tree(dataset_dir) == reference
        assert sorted(raw_ledger_ids(dataset_dir)) == list(range(total)), "each row exactly once in the ledger"
        assert not list(dataset_dir.rglob(".*.tmp-hugflow"))
        return dataset_dir

    for point in ("files-written", "ledger-compacted", "finalize"):
        proc = runner.start(point, failpoint=point)
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
        assert proc.returncode != 0, f"failpoint {point} not reached: " + out.decode(errors="replace")[-2000:]
        runner.complete(point, joined=True)
        check(point)

    rng = random.Random(CRASH_SEED)
    parts_dir = tmp_path / "crashed" / reference_dir.name / ".hugflow" / "ledger"
    kills = 0
    for attempt in range(MAX_ATTEMPTS):
        if kills >= RANDOM_KILLS:
            break
        done = ledger_rows(parts_dir)
        proc = runner.start("crashed", joined=attempt % 2 == 1)  # every other run joins: both kinds of death
        runner.kill_after(proc, parts_dir, rng.randint(0, max(0, total - done)), rng.uniform(0.0, 0.3))
        if proc.returncode == -signal.SIGKILL:
            kills += 1
            continue
        assert proc.returncode == 0
        check("crashed")  # this chain of killed runs ended in a complete, correct dataset: start another
        shutil.rmtree(tmp_path / "crashed")
    assert kills >= RANDOM_KILLS
    runner.complete("crashed", joined=True)
    crashed_dir = check("crashed")

    stamps = {p: p.stat().st_mtime_ns for p in crashed_dir.rglob("*")}
    out = runner.complete("crashed", joined=True)
    assert b"already complete" in out
    assert {p: p.stat().st_mtime_ns for p in crashed_dir.rglob("*")} == stamps


STREAMED_SHARDS = (40, 30, 50, 40)
STREAMED_KILLS = 4


@pytest.mark.hub
def test_killed_streaming_syncs_from_the_hub_resume_to_the_same_tree(tmp_path: Path, hub: HubFixture,
                                                                     joined_ray: dict[str, str]) -> None:
    """A Hub dataset streams (one download at a time, two parts held, finished parts deleted): killed while parts
    download, convert and are deleted, it resumes to the tree of an uninterrupted run with every source deleted."""
    from tests.hub_server import make_dataset_repo

    files = {
        f"data/train-{i:05d}-of-{len(STREAMED_SHARDS):05d}.parquet": fx.parquet_bytes(
            fx.speech_records(n, start=sum(STREAMED_SHARDS[:i]), seconds=0.5, names=fx.HOSTILE_NAMES),
            fx.speech_features(with_names=True), row_group_size=8)
        for i, n in enumerate(STREAMED_SHARDS)
    }
    make_dataset_repo(hub.server.mirrors_dir, "crash/streamed", files, card=LICENSED)
    request = tmp_path / "requests" / "add" / "streamed.yaml"
    request.parent.mkdir(parents=True)
    request.write_text("hf_id: crash/streamed\ndescription: crash test\n")
    runner = Runner(tmp_path, request, joined_ray, {"HF_ENDPOINT": hub.endpoint, "MAX_CONCURRENT_DOWNLOADS": "1"})
    total = sum(STREAMED_SHARDS)
    runner.complete("reference", joined=True)
    name = next((tmp_path / "reference").iterdir()).name
    reference = digest_tree(tmp_path / "reference" / name)
    assert len([k for k in reference if k.startswith("audio/")]) == total

    rng = random.Random(CRASH_SEED + 1)
    copy = tmp_path / "crashed" / name
    kills = 0
    for attempt in range(MAX_ATTEMPTS):
        if kills >= STREAMED_KILLS:
            break
        done = ledger_rows(copy / ".hugflow" / "ledger")
        proc = runner.start("crashed", joined=attempt % 2 == 0)
        runner.kill_after(proc, copy / ".hugflow" / "ledger", rng.randint(1, max(1, (total - done) // 2)),
                          rng.uniform(0.0, 0.3))
        kills += proc.returncode == -signal.SIGKILL
        if proc.returncode == 0:
            break
    runner.complete("crashed", joined=True)
    assert kills >= 1
    assert digest_tree(copy) == reference
    assert sorted(raw_ledger_ids(copy)) == list(range(total)), "each row exactly once in the ledger"
    downloaded = [p for p in (copy / ".hugflow" / "sources").rglob("*.parquet")] if (copy / ".hugflow").is_dir() else []
    assert downloaded == [], "every source file is deleted once its rows are in the ledger"
