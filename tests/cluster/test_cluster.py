"""hugflow on real Ray clusters started with `ray start` on loopback, never a mock of Ray.

* A one-node head: `local-sync` joins it through RAY_ADDRESS, and a cluster without the storage resource is refused.
* A two-node cluster, as separate machines would be: a head (dashboard, job server, token auth) that cannot see
  the storage node's files (its own mount namespace puts an empty tmpfs over them), and a worker that holds the
  storage resource. Syncs reach it through `ray job submit` (`hugflow submit`, `sync --ci-mode`).

Every node runs in a PID namespace of its own: when the test kills the namespace's first process, the kernel ends
every process in it, so nothing outlives the module and nothing else on the host is touched (no `ray stop`, no
pattern kill). The suite runs in a network namespace of its own when root (tests/in_own_network.sh), where Ray
advertises 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray.job_submission import JobStatus

from hugflow_ray.drivers.ray_job import job_base
from hugflow_ray.gitops import comments
from hugflow_ray.pipeline.readers.parts import Part, units_per_part
from hugflow_ray.utils.machine import available_cpus
from tests import datasets_fixtures as fx
from tests.conftest import HubFixture
from tests.gitops_world import CANARIES, CANARY_GH, World, request_yaml
from tests.ray_nodes import TOKEN, Cluster, two_node_cluster

pytestmark = pytest.mark.cluster
PAUSE_SECONDS = 300.0  # the longest a job may take to reach its pause point, or to end


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with two_node_cluster() as started:
        yield started


def hugflow(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hugflow_ray", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def local_request(root: Path, rows: int, *, row_group_size: int) -> Path:
    """A local dataset under ``root`` and an add request for it (with the dataset's absolute path)."""
    shard = fx.parquet_bytes(fx.speech_records(rows), fx.speech_features(), row_group_size=row_group_size)
    source = fx.write_local_dataset(root / "source", [shard])
    request = root / "requests" / "add" / "cluster.yaml"
    request.parent.mkdir(parents=True)
    request.write_text(f"path: {source}\ndescription: cluster test\n")
    return request


def outputs(dataset_root: Path) -> dict[str, bytes]:
    """Every output file of the one dataset under ``dataset_root`` (not the ledger), by relative path."""
    (dataset,) = dataset_root.iterdir()
    return {str(p.relative_to(dataset)): p.read_bytes() for p in sorted(dataset.rglob("*"))
            if p.is_file() and ".hugflow" not in p.parts}


def embedded(request: Path, root: Path) -> dict[str, bytes]:
    """The same request synced on an embedded Ray: the reference output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(STORAGE_ROOT=str(root / "out"), STATE_DIR=str(root / "state"), PROCESSED_ROOT=str(root / "processed"))
    done = hugflow("local-sync", str(request), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return outputs(root / "out")


# --- one node, joined through its GCS address ------------------------------------------------------------------


def test_local_sync_joins_the_cluster_at_ray_address(joined_ray: dict[str, str], tmp_path: Path) -> None:
    """A one-node head (the session's running Ray), joined through its GCS address."""
    request = local_request(tmp_path, 12, row_group_size=4)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, **joined_ray,
           "STORAGE_ROOT": str(tmp_path / "out"), "STATE_DIR": str(tmp_path / "state"),
           "PROCESSED_ROOT": str(tmp_path / "processed")}
    done = hugflow("local-sync", str(request), env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Connected to Ray cluster" in output and "Started a local Ray instance" not in output
    assert "completed (12 rows" in output
    assert len(list((tmp_path / "out").glob("*/audio/*/*.mp3"))) == 12
    assert TOKEN not in output

    refused = hugflow("local-sync", str(request), env={**env, "STORAGE_RESOURCE": "elsewhere",
                                                      "STORAGE_ROOT": str(tmp_path / "other")})
    assert refused.returncode == 1
    line = refused.stderr.strip().splitlines()[-1]
    assert "declares the resource 'elsewhere'" in refused.stderr
    assert """--resources='{"elsewhere": 1}'""" in refused.stderr
    assert "Traceback" not in refused.stderr, line


# --- two nodes, through the job server -------------------------------------------------------------------------


def test_two_nodes_convert_everywhere_while_reads_and_writes_stay_on_the_storage_node(cluster: Cluster,
                                                                                     tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(dir=cluster.hidden))
    request = local_request(root, 32, row_group_size=2)
    head_view = subprocess.run(["nsenter", f"--target={cluster.head.first_pid()}", "--mount", "ls", "-A",
                                str(cluster.hidden)], capture_output=True, text=True, check=True)
    assert head_view.stdout == "", "the head must not see the storage node's files"

    env = cluster.env(STORAGE_ROOT=str(root / "out"), STATE_DIR=str(root / "state"),
                      PROCESSED_ROOT=str(root / "processed"))
    done = hugflow("submit", str(request), env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "SUCCEEDED" in output and "completed (32 rows" in output
    per_node = re.search(r"blocks converted per node: (.*)", output)
    assert per_node is not None, output[-3000:]
    counts = dict(item.rsplit(" ", 1) for item in per_node.group(1).split(", "))
    assert len(counts) == 2 and all(int(c) > 0 for c in counts.values()), counts
    source = next((root / "source" / "data").glob("*.parquet"))
    slices = units_per_part([Part(0, (0,), source.stat().st_size)], "parquet", cpus=available_cpus())
    assert sum(int(c) for c in counts.values()) == sum(slices) > 4, "a block per read task (each a few rows)"
    assert outputs(root / "out") == embedded(request, tmp_path / "embedded")
    assert TOKEN not in output

    again = hugflow("submit", str(request), "--no-wait", env=env)
    assert again.returncode == 0, again.stderr
    job_id = again.stdout.strip().splitlines()[-1]
    assert job_id.endswith("-2") and job_id.startswith(job_base(next((root / "out").iterdir()).name, None))


def test_submit_refuses_a_cluster_without_the_storage_resource_and_a_wrong_token(cluster: Cluster,
                                                                               tmp_path: Path) -> None:
    request = local_request(tmp_path, 2, row_group_size=2)
    env = cluster.env(STORAGE_ROOT=str(tmp_path / "out"), STATE_DIR=str(tmp_path / "state"))
    no_storage = hugflow("submit", str(request), env={**env, "STORAGE_RESOURCE": "elsewhere"})
    assert no_storage.returncode == 1 and "Traceback" not in no_storage.stderr
    assert """--resources='{"elsewhere": 1}'""" in no_storage.stderr
    wrong = hugflow("submit", str(request), env={**env, "RAY_AUTH_TOKEN": "not-the-token"})
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert "RAY_AUTH_TOKEN" in wrong.stderr and "not-the-token" not in wrong.stderr
    # Ray's token file instead of RAY_AUTH_TOKEN (what `ray` itself reads): accepted.
    (tmp_path / "home" / ".ray").mkdir(parents=True)
    (tmp_path / "home" / ".ray" / "auth_token").write_text(TOKEN)
    from_file = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
    by_file = hugflow("submit", str(request), "--no-wait", env={**from_file, "HOME": str(tmp_path / "home")})
    assert by_file.returncode == 0, by_file.stdout + by_file.stderr
    assert by_file.stdout.strip().splitlines()[-1].startswith("hugflow-")
    relative = tmp_path / "requests" / "add" / "relative.yaml"
    relative.write_text("path: ../../source\ndescription: cluster test\n")
    refused = hugflow("submit", str(relative), env=env)
    assert refused.returncode == 1 and "absolute path" in refused.stderr
    assert not any(j.submission_id and "relative" in j.submission_id for j in cluster.client().list_jobs())


def test_a_job_killed_mid_run_and_submitted_again_resumes_byte_identical(cluster: Cluster, tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(dir=cluster.hidden))
    request = local_request(root, 24, row_group_size=2)
    release = root / "release"
    env = cluster.env(STORAGE_ROOT=str(root / "out"), STATE_DIR=str(root / "state"),
                      PROCESSED_ROOT=str(root / "processed"), PROGRESS_INTERVAL="1")
    first = hugflow("submit", str(request), "--no-wait",
                    env={**env, "HUGFLOW_FAILPOINT": f"pause:rows-written:{release}"})
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.strip().splitlines()[-1]
    _wait_for(Path(f"{release}.reached"), cluster, job_id)
    cluster.client().stop_job(job_id)
    assert _wait_ended(cluster, job_id) is JobStatus.STOPPED

    done = hugflow("submit", str(request), env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    resumed = re.search(r"resumed from row (\d+)", done.stdout)
    assert resumed is not None and 0 < int(resumed.group(1)) < 24, done.stdout[-3000:]
    assert outputs(root / "out") == embedded(request, tmp_path / "embedded")


def test_a_job_whose_driver_dies_fails_submit_with_how_it_ended(cluster: Cluster) -> None:
    root = Path(tempfile.mkdtemp(dir=cluster.hidden))
    request = local_request(root, 4, row_group_size=2)
    env = cluster.env(STORAGE_ROOT=str(root / "out"), STATE_DIR=str(root / "state"),
                      PROCESSED_ROOT=str(root / "processed"), HUGFLOW_FAILPOINT="finalize")  # SIGKILL, no record
    done = hugflow("submit", str(request), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert "ended FAILED: " in line and "Ray job [`hugflow-" in line and "Traceback" not in done.stderr


def test_a_submitted_job_carries_no_token_to_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    """The submitter's HF_TOKEN stays with the submitter: not in the job's runtime env (Ray logs it on the node), its
    metadata or entrypoint, nor any file Ray keeps; the job's driver uses its node's own token."""
    root = Path(tempfile.mkdtemp(dir=cluster.hidden))
    request = local_request(root, 4, row_group_size=2)
    env = cluster.env(STORAGE_ROOT=str(root / "out"), STATE_DIR=str(root / "state"),
                      PROCESSED_ROOT=str(root / "processed"), HF_TOKEN=CANARY_SUBMITTER)
    done = hugflow("submit", str(request), env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert CANARY_SUBMITTER not in done.stdout + done.stderr
    (job,) = [j for j in cluster.client().list_jobs() if j.submission_id and j.submission_id in done.stdout]
    assert "HF_TOKEN" not in (job.runtime_env or {}).get("env_vars", {})
    assert_nowhere_on_the_cluster(cluster, CANARY_SUBMITTER)


CANARY_SUBMITTER = "hf_SubmitterCanaryToken0123456789"


def assert_nowhere_on_the_cluster(cluster: Cluster, *canaries: str) -> None:
    """No canary in any file under any node's Ray temp dir (logs, runtime envs, sessions), nor in any job's
    metadata, runtime env, entrypoint or log."""
    found = []
    for node in (cluster.head, cluster.storage):
        for path in Path(node.temp_dir).rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                found += [(str(path), c) for c in canaries if c.encode() in data]
    client = cluster.client()
    for job in client.list_jobs():
        seen = json.dumps([job.metadata, job.runtime_env, job.entrypoint])
        if job.submission_id:
            seen += client.get_job_logs(job.submission_id)
        found += [(f"job {job.submission_id}", c) for c in canaries if c in seen]
    assert found == [], f"a token reached the cluster: {found}"


def _wait_for(path: Path, cluster: Cluster, job_id: str) -> None:
    """Until the job reaches its pause point (it creates ``path``); a job that ends first, or not there within
    ``PAUSE_SECONDS``, fails the test."""
    ends = time.monotonic() + PAUSE_SECONDS
    while not path.exists():
        status = cluster.client().get_job_status(job_id)
        assert status not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED), (
            cluster.client().get_job_logs(job_id)[-3000:])
        assert time.monotonic() < ends, f"job {job_id} did not reach its pause in {PAUSE_SECONDS:.0f} s"
        time.sleep(0.2)


def _wait_ended(cluster: Cluster, job_id: str) -> JobStatus:
    """The job's final status; fails the test when it has not ended within ``PAUSE_SECONDS``."""
    ends, deadline = time.monotonic() + PAUSE_SECONDS, PAUSE_SECONDS
    while (status := cluster.client().get_job_status(job_id)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED,
                                                                       JobStatus.STOPPED):
        assert time.monotonic() < ends, f"job {job_id} still {status} after {deadline:.0f} s"
        time.sleep(0.2)
    return status


# --- the pull-request flow with the data plane as a Ray job ------------------------------------------------------


def test_the_pr_flow_runs_the_data_plane_as_a_ray_job(world: World, cluster: Cluster, hub: HubFixture) -> None:
    path = "requests/add/calls.yaml"
    world.open_pull(41, {path: request_yaml("org/calls")})
    for key, value in cluster.env().items():
        if key.startswith("RAY_"):
            world.monkeypatch.setenv(key, value)
    started = time.time()
    assert world.run() == 0
    final = world.comment(41, path)
    assert "✅ synced" in final and "| rows | 12 |" in final
    (job,) = [j for j in cluster.client().list_jobs() if (j.metadata or {}).get("hugflow_pr") == "acme/datasets#41"]
    assert job.status == JobStatus.SUCCEEDED
    assert f"Ray job [`{job.submission_id}`]({cluster.job_server}/#/jobs/{job.submission_id})" in final
    assert job.runtime_env is not None
    env_vars = job.runtime_env.get("env_vars", {})
    assert not {"GITHUB_TOKEN", "SLACK_WEBHOOK_URL", "HF_TOKEN", "RAY_AUTH_TOKEN"} & set(env_vars)
    logs = cluster.client().get_job_logs(job.submission_id)
    assert "completed (12 rows" in logs
    assert [c for c in CANARIES if c in logs] == []
    assert any("synced: 12 rows" in m for m in world.slack.messages)
    world.assert_no_canary(logs)
    assert_nowhere_on_the_cluster(cluster, *CANARIES)
    # GitHub's "Re-run jobs" after the success: the job found ended, the copy complete: synced, nothing started.
    slack = list(world.slack.messages)
    assert world.run() == 0
    again = world.comment(41, path)
    assert "✅ synced" in again and "Already complete at this commit" in again
    assert world.slack.messages == slack
    assert [j.submission_id for j in cluster.client().list_jobs()
            if (j.metadata or {}).get("hugflow_pr") == "acme/datasets#41"] == [job.submission_id]
    # The timeline (pytest -s shows it): the PR hears of the sync (its plan) before the job even starts.
    marker = comments.request_marker(path)
    posted = [t for (method, _, body), t in zip(world.github.requests, world.github.times, strict=True)
              if method in ("POST", "PATCH") and marker in body]
    assert job.start_time is not None and job.end_time is not None
    assert posted[0] < job.start_time / 1000 < job.end_time / 1000 < posted[-1]
    print(f"timeline: first comment {posted[0] - started:.1f} s, job started {job.start_time / 1000 - started:.1f} s,"
          f" job ended {job.end_time / 1000 - started:.1f} s, final comment {posted[-1] - started:.1f} s")


def test_an_actions_rerun_mid_job_follows_the_running_job(
        world: World, cluster: Cluster, hub: HubFixture) -> None:
    path = "requests/add/calls.yaml"
    world.open_pull(42, {path: request_yaml("org/calls")})
    release = world.root / "release"
    env = {**os.environ, **cluster.env(), "HUGFLOW_FAILPOINT": f"pause:rows-written:{release}"}
    first = subprocess.Popen([sys.executable, "-m", "hugflow_ray", "sync", "--ci-mode"], env=env, text=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ends = time.monotonic() + PAUSE_SECONDS
    while not Path(f"{release}.reached").exists():
        assert first.poll() is None, "the first run ended before its job reached the pause"
        assert time.monotonic() < ends, f"the job did not reach its pause in {PAUSE_SECONDS:.0f} s"
        time.sleep(0.2)
    first.kill()  # the runner lost the job; the Ray job goes on
    first.wait()

    rerun = subprocess.Popen([sys.executable, "-m", "hugflow_ray", "sync", "--ci-mode"], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert rerun.stdout is not None
    seen = []
    for line in rerun.stdout:
        seen.append(line)
        if "following the run an earlier attempt of this job started" in line:
            break
    release.touch()
    rest = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0, "".join(seen) + rest
    jobs = [j for j in cluster.client().list_jobs() if (j.metadata or {}).get("hugflow_pr") == "acme/datasets#42"]
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED], "one job: the re-run followed it, started none"
    assert "✅ synced" in world.comment(42, path)


def test_a_closed_pr_stops_its_running_job(world: World, cluster: Cluster, hub: HubFixture) -> None:
    path = "requests/add/tones.yaml"
    head = world.open_pull(43, {path: request_yaml("org/calls", revision="main", split="train")})
    release = world.root / "release"
    env = {**os.environ, **cluster.env(), "HUGFLOW_FAILPOINT": f"pause:rows-written:{release}"}
    running = subprocess.Popen([sys.executable, "-m", "hugflow_ray", "sync", "--ci-mode"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ends = time.monotonic() + PAUSE_SECONDS
    while not Path(f"{release}.reached").exists():
        assert running.poll() is None, running.stdout.read() if running.stdout else ""
        assert time.monotonic() < ends, f"the job did not reach its pause in {PAUSE_SECONDS:.0f} s"
        time.sleep(0.2)
    world.event(43, head, action="closed")
    closing = subprocess.run([sys.executable, "-m", "hugflow_ray", "sync", "--ci-mode"], env=dict(os.environ,
                             **cluster.env()), capture_output=True, text=True, timeout=120)
    assert closing.returncode == 0, closing.stdout + closing.stderr
    output = running.communicate(timeout=300)[0]
    assert running.returncode == 1, output
    (job,) = [j for j in cluster.client().list_jobs() if (j.metadata or {}).get("hugflow_pr") == "acme/datasets#43"]
    assert job.status == JobStatus.STOPPED
    failed = world.comment(43, path)
    assert "❌ failed" in failed and "was stopped" in failed and job.submission_id in failed
    assert any("stopped 1 Ray job" in m for m in world.slack.messages)
    world.assert_no_canary(output, closing.stdout, closing.stderr)
    assert CANARY_GH not in cluster.client().get_job_logs(job.submission_id)


def test_the_cluster_benchmark_runs_in_smoke_mode(cluster: Cluster, tmp_path: Path) -> None:
    from tests.helpers import load_benchmark

    result = load_benchmark("cluster").main(["--smoke", "--json", str(tmp_path / "out.json")], cluster=cluster)
    assert result["clips"] == 16 and result["embedded_seconds"] > 0 and result["submit_seconds"] > 0
    assert all(count > 0 for count in result["blocks_by_node"].values())
    assert json.loads((tmp_path / "out.json").read_text()) == result
